//! Kubernetes resource quantities (`500m`, `1`, `2Gi`, `1e3`) compared by value, not by spelling.
//! The API server rewrites quantities into a canonical form on write (`1000m` → `1`, `1024Mi` →
//! `1Gi`), so comparing the strings would report a change that no apply can remove.
//!
//! Grammar (k8s.io/apimachinery `pkg/api/resource/quantity.go`):
//! `<signedNumber><suffix>`, suffix = binary `Ki|Mi|Gi|Ti|Pi|Ei`, decimal `n|u|m|""|k|M|G|T|P|E`,
//! or an exponent `e<int>` / `E<int>`. Values are kept exactly, in units of 10^-9 (the finest
//! decimal suffix), as an `i128`; anything finer or larger than that is not a quantity here.

use std::collections::BTreeMap;

/// Nano-units per unit.
const NANO: i128 = 1_000_000_000;

/// The exact value of a quantity in units of 10^-9, or `None` when `s` is not a quantity this
/// module can represent exactly.
pub fn nano_value(s: &str) -> Option<i128> {
    let s = s.trim();
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let digits = format!("{int_part}{frac_part}");
    if digits.len() > 30 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    // value = mantissa * 10^(-frac) * multiplier; in nano-units: mantissa * multiplier_nano / 10^frac.
    let frac = u32::try_from(frac_part.len()).ok()?;
    let (num, den): (i128, i128) = match suffix {
        "Ki" => (NANO << 10, 1),
        "Mi" => (NANO << 20, 1),
        "Gi" => (NANO << 30, 1),
        "Ti" => (NANO << 40, 1),
        "Pi" => (NANO << 50, 1),
        "Ei" => (NANO << 60, 1),
        "n" => (1, 1),
        "u" => (1_000, 1),
        "m" => (1_000_000, 1),
        "" => (NANO, 1),
        "k" => (NANO * 1_000, 1),
        "M" => (NANO * 1_000_000, 1),
        "G" => (NANO * 1_000_000_000, 1),
        "T" => (NANO * 1_000_000_000_000, 1),
        "P" => (NANO * 1_000_000_000_000_000, 1),
        "E" => (NANO * 1_000_000_000_000_000_000, 1),
        exp if exp.starts_with(['e', 'E']) => {
            let e: i32 = exp[1..].parse().ok()?;
            // 10^e in nano-units = 10^(e + 9).
            let shift = e.checked_add(9)?;
            if shift >= 0 {
                (10i128.checked_pow(u32::try_from(shift).ok()?)?, 1)
            } else {
                (1, 10i128.checked_pow(u32::try_from(-shift).ok()?)?)
            }
        }
        _ => return None,
    };
    let scaled = mantissa.checked_mul(num)?;
    let den = den.checked_mul(10i128.checked_pow(frac)?)?;
    if scaled % den != 0 {
        return None;
    }
    let value = scaled / den;
    Some(if negative { -value } else { value })
}

/// Whether two quantity strings are the same amount (falls back to string equality when either
/// is not a quantity).
pub fn same_quantity(a: &str, b: &str) -> bool {
    match (nano_value(a), nano_value(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Whether two resource maps (`cpu: 500m, memory: 1Gi`) hold the same keys with the same amounts.
pub fn same_quantities(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(k, v)| b.get(k).is_some_and(|w| same_quantity(v, w)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_the_same_amount_are_equal() {
        for (a, b) in [
            ("1000m", "1"),
            ("1024Mi", "1Gi"),
            ("0.5", "500m"),
            ("1.5Gi", "1536Mi"),
            ("1e3", "1k"),
            ("1000", "1k"),
            ("250m", "0.25"),
            ("+2", "2"),
        ] {
            assert!(same_quantity(a, b), "{a} == {b}");
        }
    }

    #[test]
    fn different_amounts_and_non_quantities_are_not_equal() {
        for (a, b) in [("1", "1001m"), ("1Gi", "1G"), ("1Mi", "1M"), ("abc", "1")] {
            assert!(!same_quantity(a, b), "{a} != {b}");
        }
        assert_eq!(nano_value("1n"), Some(1));
        assert_eq!(nano_value("0.1n"), None);
        assert_eq!(nano_value("12x"), None);
        assert!(same_quantity("abc", "abc"));
    }
}
