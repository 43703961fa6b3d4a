//! The gate grammar of `rollout:` stages: `<signal> <op> <value>`, e.g. `error_rate < 2%`,
//! `p99 < 1.2x baseline`, `requests >= 100`.
//!
//! ```text
//! gate      = signal ws* op ws* value
//! signal    = "error_rate" | "p95" | "p99" | "requests"
//! op        = "<" | "<=" | ">="
//! value     = decimal "x" ws+ "baseline"      (any signal: a factor of the baseline's value)
//!           | decimal "%"                     (error_rate: stored as a fraction, 2% = 0.02)
//!           | decimal ("ms" | "s")            (p95, p99: stored in milliseconds)
//!           | digits                          (requests: a count)
//! decimal   = digits ("." digits)?
//! ```
//!
//! Three tokens do not need a parser crate: this is a small hand parser that says where in the
//! string it stopped (a character offset), so the loader can point at it.

use thiserror::Error;

use super::located::suggestion;
use crate::metrics::Signal;
use crate::rollout::{Comparison, Gate, Threshold};

/// The signal names a gate may use, as written.
pub const SIGNAL_NAMES: &[&str] = &["error_rate", "p95", "p99", "requests"];

/// Why a gate does not parse, and where: `offset` counts characters from the start of the gate.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct GateError {
    pub offset: usize,
    pub message: String,
}

fn err(text: &str, byte: usize, message: impl Into<String>) -> GateError {
    GateError {
        offset: text[..byte].chars().count(),
        message: message.into(),
    }
}

/// Parses one gate expression.
pub fn parse_gate(text: &str) -> Result<Gate, GateError> {
    let start = text.len() - text.trim_start().len();
    let sig_end = start
        + text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(text.len() - start);
    let name = &text[start..sig_end];
    if name.is_empty() {
        return Err(err(
            text,
            start,
            "expected `<signal> <op> <value>`, e.g. `error_rate < 2%`",
        ));
    }
    let signal = match name {
        "error_rate" => Signal::ErrorRate,
        "p95" => Signal::LatencyP95,
        "p99" => Signal::LatencyP99,
        "requests" => Signal::Requests,
        _ => {
            let hint = suggestion(name, SIGNAL_NAMES);
            return Err(err(
                text,
                start,
                format!(
                    "unknown signal `{name}`, expected one of `error_rate`, `p95`, `p99`, `requests`{hint}"
                ),
            ));
        }
    };
    let op_start = skip_ws(text, sig_end);
    let op_end = op_start
        + text[op_start..]
            .find(|c: char| !matches!(c, '<' | '>' | '=' | '!'))
            .unwrap_or(text.len() - op_start);
    let comparison = match &text[op_start..op_end] {
        "<" => Comparison::Below,
        "<=" => Comparison::AtMost,
        ">=" => Comparison::AtLeast,
        "" => {
            return Err(err(
                text,
                op_start,
                format!("expected a comparison (`<`, `<=` or `>=`) after `{name}`"),
            ));
        }
        other => {
            return Err(err(
                text,
                op_start,
                format!("unknown comparison `{other}`, expected `<`, `<=` or `>=`"),
            ));
        }
    };
    let value_start = skip_ws(text, op_end);
    let threshold = value(text, value_start, signal)?;
    Ok(Gate {
        signal,
        comparison,
        threshold,
    })
}

fn skip_ws(text: &str, from: usize) -> usize {
    from + (text[from..].len() - text[from..].trim_start().len())
}

/// The value after the comparison, starting at byte `start`.
fn value(text: &str, start: usize, signal: Signal) -> Result<Threshold, GateError> {
    let rest = &text[start..];
    let first_end = start + rest.find(char::is_whitespace).unwrap_or(rest.len());
    let first = &text[start..first_end];
    if first.is_empty() {
        return Err(err(text, start, "expected a value after the comparison"));
    }
    let second_start = skip_ws(text, first_end);
    let second_end = second_start
        + text[second_start..]
            .find(char::is_whitespace)
            .unwrap_or(text.len() - second_start);
    let second = &text[second_start..second_end];
    let after = skip_ws(text, second_end);
    if second == "baseline" {
        if after < text.len() {
            let extra = text[after..].trim_end();
            return Err(err(
                text,
                after,
                format!("unexpected `{extra}` after the value"),
            ));
        }
        let Some(factor) = first.strip_suffix('x').and_then(decimal) else {
            return Err(err(
                text,
                start,
                format!("expected a factor like `1.2x` before `baseline`, found `{first}`"),
            ));
        };
        if factor <= 0.0 {
            return Err(err(
                text,
                start,
                format!("the baseline factor must be above 0, found `{first}`"),
            ));
        }
        return Ok(Threshold::RelativeToBaseline(factor));
    }
    if !second.is_empty() {
        return Err(err(
            text,
            second_start,
            format!(
                "unexpected `{}` after the value",
                text[second_start..].trim_end()
            ),
        ));
    }
    let absolute = match signal {
        Signal::ErrorRate => first.strip_suffix('%').and_then(decimal).map(|p| {
            if p > 100.0 {
                Err(err(
                    text,
                    start,
                    format!("error_rate `{first}` is above 100%"),
                ))
            } else {
                Ok(p / 100.0)
            }
        }),
        Signal::LatencyP95 | Signal::LatencyP99 => latency_ms(first).map(Ok),
        Signal::Requests => first
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| first.parse::<u64>().ok())
            .flatten()
            .map(|n| Ok(n as f64)),
    };
    match absolute {
        Some(v) => v.map(Threshold::Absolute),
        None => {
            let expected = match signal {
                Signal::ErrorRate => "a percentage (`2%`, `0.5%`)",
                Signal::LatencyP95 | Signal::LatencyP99 => "a latency (`250ms`, `1.5s`)",
                Signal::Requests => "a whole number (`100`)",
            };
            Err(err(
                text,
                start,
                format!("{signal} takes {expected} or a factor (`1.2x baseline`), found `{first}`"),
            ))
        }
    }
}

/// `250ms` or `1.5s`, in milliseconds.
fn latency_ms(s: &str) -> Option<f64> {
    if let Some(ms) = s.strip_suffix("ms") {
        return decimal(ms);
    }
    s.strip_suffix('s').and_then(decimal).map(|v| v * 1000.0)
}

/// `12` or `0.5`: digits with at most one dot, never `inf`, `NaN` or an exponent.
fn decimal(s: &str) -> Option<f64> {
    let (int, frac) = s.split_once('.').unwrap_or((s, "0"));
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !(digits(int) && digits(frac)) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(text: &str) -> (Signal, Comparison, Threshold) {
        let g = parse_gate(text).unwrap_or_else(|e| panic!("{text}: {e} at {}", e.offset));
        (g.signal, g.comparison, g.threshold)
    }

    fn fails(text: &str) -> (usize, String) {
        let e = parse_gate(text).expect_err(text);
        (e.offset, e.message)
    }

    #[test]
    fn an_error_rate_percentage_is_stored_as_a_fraction() {
        assert_eq!(
            gate("error_rate < 2%"),
            (
                Signal::ErrorRate,
                Comparison::Below,
                Threshold::Absolute(0.02)
            )
        );
        assert_eq!(
            gate("error_rate <= 0.5%"),
            (
                Signal::ErrorRate,
                Comparison::AtMost,
                Threshold::Absolute(0.005)
            )
        );
    }

    #[test]
    fn latencies_are_stored_in_milliseconds() {
        assert_eq!(
            gate("p95 < 250ms"),
            (
                Signal::LatencyP95,
                Comparison::Below,
                Threshold::Absolute(250.0)
            )
        );
        assert_eq!(
            gate("p99 <= 1.5s"),
            (
                Signal::LatencyP99,
                Comparison::AtMost,
                Threshold::Absolute(1500.0)
            )
        );
    }

    #[test]
    fn requests_take_a_count_and_any_signal_a_baseline_factor() {
        assert_eq!(
            gate("requests >= 100"),
            (
                Signal::Requests,
                Comparison::AtLeast,
                Threshold::Absolute(100.0)
            )
        );
        assert_eq!(
            gate("p99 < 1.2x baseline"),
            (
                Signal::LatencyP99,
                Comparison::Below,
                Threshold::RelativeToBaseline(1.2)
            )
        );
        assert_eq!(
            gate("error_rate<=2x   baseline"),
            (
                Signal::ErrorRate,
                Comparison::AtMost,
                Threshold::RelativeToBaseline(2.0)
            )
        );
    }

    #[test]
    fn a_parsed_gate_displays_as_it_was_written() {
        for text in [
            "error_rate < 2%",
            "p99 < 1.2x baseline",
            "requests >= 100",
            "p95 <= 250ms",
        ] {
            assert_eq!(parse_gate(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn an_unknown_signal_gets_a_suggestion_at_its_start() {
        assert_eq!(
            fails("  erorr_rate < 2%"),
            (
                2,
                "unknown signal `erorr_rate`, expected one of `error_rate`, `p95`, `p99`, `requests`, did you mean `error_rate`?".into()
            )
        );
    }

    #[test]
    fn a_missing_or_unknown_comparison_is_reported_where_it_should_be() {
        assert_eq!(
            fails("p99 250ms"),
            (
                4,
                "expected a comparison (`<`, `<=` or `>=`) after `p99`".into()
            )
        );
        assert_eq!(
            fails("p99 > 250ms"),
            (
                4,
                "unknown comparison `>`, expected `<`, `<=` or `>=`".into()
            )
        );
        assert_eq!(
            fails("p99 == 250ms"),
            (
                4,
                "unknown comparison `==`, expected `<`, `<=` or `>=`".into()
            )
        );
    }

    #[test]
    fn a_value_in_the_wrong_unit_is_reported_at_the_value() {
        assert_eq!(
            fails("error_rate < 0.02"),
            (
                13,
                "error_rate takes a percentage (`2%`, `0.5%`) or a factor (`1.2x baseline`), found `0.02`".into()
            )
        );
        assert_eq!(
            fails("p99 < 250"),
            (
                6,
                "p99 takes a latency (`250ms`, `1.5s`) or a factor (`1.2x baseline`), found `250`"
                    .into()
            )
        );
        assert_eq!(
            fails("requests >= 1.5"),
            (
                12,
                "requests takes a whole number (`100`) or a factor (`1.2x baseline`), found `1.5`"
                    .into()
            )
        );
        assert_eq!(
            fails("error_rate < 150%"),
            (13, "error_rate `150%` is above 100%".into())
        );
    }

    #[test]
    fn odd_numbers_and_factors_are_refused() {
        assert_eq!(fails("p99 < infms").0, 6);
        assert_eq!(fails("p99 < 1e3ms").0, 6);
        assert_eq!(fails("error_rate < -1%").0, 13);
        assert_eq!(
            fails("p99 < 0x baseline"),
            (6, "the baseline factor must be above 0, found `0x`".into())
        );
        assert_eq!(
            fails("p99 < 1.2 baseline"),
            (
                6,
                "expected a factor like `1.2x` before `baseline`, found `1.2`".into()
            )
        );
    }

    #[test]
    fn a_missing_value_or_trailing_text_is_reported() {
        assert_eq!(
            fails("p99 <"),
            (5, "expected a value after the comparison".into())
        );
        assert_eq!(
            fails("p99 < 1.2x baseline please"),
            (20, "unexpected `please` after the value".into())
        );
        assert_eq!(
            fails("p99 < 250ms or so"),
            (12, "unexpected `or so` after the value".into())
        );
        assert_eq!(
            fails(""),
            (
                0,
                "expected `<signal> <op> <value>`, e.g. `error_rate < 2%`".into()
            )
        );
    }
}
