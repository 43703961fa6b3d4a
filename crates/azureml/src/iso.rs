//! ISO-8601 durations as ARM uses them for probes and request settings ([AML §2.3],
//! §2.6: YAML seconds / milliseconds ↔ `PT10S`, `PT0.5S`).

/// Whole seconds → `PT10S`.
pub(crate) fn from_secs(secs: u32) -> String {
    format!("PT{secs}S")
}

/// Milliseconds → `PT5S` or `PT0.5S`.
pub(crate) fn from_millis(ms: u32) -> String {
    let (secs, frac) = (ms / 1000, ms % 1000);
    if frac == 0 {
        return format!("PT{secs}S");
    }
    let frac = format!("{frac:03}");
    format!("PT{secs}.{}S", frac.trim_end_matches('0'))
}

/// Parses `P[nD][T[nH][nM][n[.f]S]]` into milliseconds (rounded). `None` when malformed.
pub(crate) fn to_millis(text: &str) -> Option<u64> {
    let rest = text.trim().strip_prefix(['P', 'p'])?;
    let (date, time) = match rest.find(['T', 't']) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let mut total = 0f64;
    let mut seen = false;
    for (part, units) in [
        (date, &[('D', 86_400f64), ('W', 604_800f64)][..]),
        (
            time.unwrap_or(""),
            &[('H', 3_600f64), ('M', 60f64), ('S', 1f64)][..],
        ),
    ] {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' || c == ',' {
                number.push(if c == ',' { '.' } else { c });
                continue;
            }
            let (_, scale) = units.iter().find(|(u, _)| u.eq_ignore_ascii_case(&c))?;
            let value: f64 = number.parse().ok()?;
            total += value * scale;
            number.clear();
            seen = true;
        }
        if !number.is_empty() {
            return None;
        }
    }
    if time == Some("") || !seen {
        return None;
    }
    Some((total * 1000.0).round() as u64)
}

/// Parses into whole seconds, rounding.
pub(crate) fn to_secs(text: &str) -> Option<u64> {
    to_millis(text).map(|ms| (ms + 500) / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_format_like_arm() {
        assert_eq!(from_secs(10), "PT10S");
        assert_eq!(from_millis(5000), "PT5S");
        assert_eq!(from_millis(500), "PT0.5S");
        assert_eq!(from_millis(1250), "PT1.25S");
        assert_eq!(from_millis(0), "PT0S");
    }

    #[test]
    fn durations_parse_with_every_unit() {
        assert_eq!(to_millis("PT0.5S"), Some(500));
        assert_eq!(to_millis("PT1M30S"), Some(90_000));
        assert_eq!(to_millis("PT1H"), Some(3_600_000));
        assert_eq!(to_millis("P1DT1S"), Some(86_401_000));
        assert_eq!(to_secs("PT2S"), Some(2));
        assert_eq!(to_secs("PT1.6S"), Some(2));
    }

    #[test]
    fn malformed_durations_are_rejected() {
        for bad in ["", "10", "PT", "P", "PT5", "PTxS", "5S", "PT1Y"] {
            assert_eq!(to_millis(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn millis_round_trip(ms in 0u32..100_000_000) {
            proptest::prop_assert_eq!(to_millis(&from_millis(ms)), Some(u64::from(ms)));
        }
    }
}
