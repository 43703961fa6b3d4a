//! The API server's quantity canonicalisation (k8s.io/apimachinery `resource.Quantity`
//! `CanonicalizeBytes`): on write, container resource quantities are rewritten into the largest
//! suffix of their format that keeps the value whole: `1000m` → `1`, `1024Mi` → `1Gi`,
//! `0.5` → `500m`, `1536Mi` stays. Written independently of flightdeck's parser.

use serde_json::Value;

const DECIMAL: [(&str, u32); 10] = [
    ("E", 27),
    ("P", 24),
    ("T", 21),
    ("G", 18),
    ("M", 15),
    ("k", 12),
    ("", 9),
    ("m", 6),
    ("u", 3),
    ("n", 0),
];
const BINARY: [(&str, u32); 6] = [
    ("Ei", 60),
    ("Pi", 50),
    ("Ti", 40),
    ("Gi", 30),
    ("Mi", 20),
    ("Ki", 10),
];

/// The canonical spelling of `q`, or `None` when the fake does not understand it.
pub fn canonical(q: &str) -> Option<String> {
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits: u128 = format!("{int}{frac}").parse().ok()?;
    let frac_len = u32::try_from(frac.len()).ok()?;
    let binary = BINARY.iter().find(|(s, _)| *s == suffix);
    // Value in nano-units (exact for everything the tests write).
    let nano = match binary {
        Some((_, shift)) => ((digits * 10u128.pow(9)) << shift) / 10u128.pow(frac_len),
        None => {
            let (_, exp) = DECIMAL.iter().find(|(s, _)| *s == suffix)?;
            digits * 10u128.pow(*exp) / 10u128.pow(frac_len)
        }
    };
    if binary.is_some() && nano % 10u128.pow(9) == 0 {
        let whole = nano / 10u128.pow(9);
        for (s, shift) in BINARY {
            if whole >= 1 << shift && whole.is_multiple_of(1 << shift) {
                return Some(format!("{}{s}", whole >> shift));
            }
        }
        return Some(whole.to_string());
    }
    for (s, exp) in DECIMAL {
        let unit = 10u128.pow(exp);
        if nano >= unit && nano % unit == 0 {
            return Some(format!("{}{s}", nano / unit));
        }
    }
    Some("0".to_string())
}

/// Rewrites `spec.template.spec.containers[].resources.{requests,limits}` of a Deployment.
pub fn canonicalize_deployment(object: &mut Value) {
    let Some(containers) = object
        .pointer_mut("/spec/template/spec/containers")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for c in containers {
        for section in ["requests", "limits"] {
            let Some(map) = c
                .pointer_mut(&format!("/resources/{section}"))
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            for v in map.values_mut() {
                if let Some(q) = v.as_str().and_then(canonical) {
                    *v = Value::String(q);
                }
            }
        }
    }
}
