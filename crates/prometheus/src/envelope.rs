//! The query API's answer [PROM P3], [PROM P4], parsed into one gate value. Pure.
//!
//! - `status: error` (any HTTP status) or a non-2xx answer → [`PrometheusError::Api`] with the
//!   `errorType` as an open string;
//! - an empty vector → no data [PROM P5]; a `NaN` sample → no data (0/0 of a deployment
//!   without requests, [PROM P4]); `+Inf` / `-Inf` are values (a quantile in the last bucket);
//! - one vector sample or a scalar → its value; several series, a matrix or a string →
//!   [`PrometheusError::Unusable`]: a gate template must aggregate to one number.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{PrometheusError, excerpt};

#[derive(Debug, Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(rename = "errorType", default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Value,
}

/// One parsed answer: the value (`None`: no data) and the server's warnings.
#[derive(Debug, PartialEq)]
pub(crate) struct Answer {
    pub value: Option<f64>,
    pub warnings: Vec<String>,
}

pub(crate) fn parse(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    query: &str,
) -> Result<Answer, PrometheusError> {
    let envelope = serde_json::from_slice::<Envelope>(body);
    let ok = (200..300).contains(&status);
    let envelope = match envelope {
        Ok(e) if ok && e.status == "success" => e,
        Ok(e) => {
            return Err(PrometheusError::Api {
                status,
                error_type: e.error_type.unwrap_or_default(),
                message: excerpt(e.error.as_deref().unwrap_or("")),
                retry_after,
            });
        }
        Err(_) if !ok => {
            return Err(PrometheusError::Api {
                status,
                error_type: String::new(),
                message: excerpt(&String::from_utf8_lossy(body)),
                retry_after,
            });
        }
        Err(e) => {
            return Err(PrometheusError::Malformed {
                status,
                detail: e.to_string(),
            });
        }
    };
    let malformed = |detail: &str| PrometheusError::Malformed {
        status,
        detail: detail.to_string(),
    };
    let unusable = |message: String| PrometheusError::Unusable {
        query: query.to_string(),
        message,
    };
    let data = envelope
        .data
        .ok_or_else(|| malformed("success without data"))?;
    let value = match data.result_type.as_str() {
        "vector" => {
            let series = data
                .result
                .as_array()
                .ok_or_else(|| malformed("a vector result that is not an array"))?;
            match series.as_slice() {
                [] => None,
                [one] => {
                    let pair = one.get("value").ok_or_else(|| {
                        unusable("the sample has no float value (a native histogram?)".into())
                    })?;
                    sample(pair).map_err(|d| malformed(&d))?
                }
                many => {
                    return Err(unusable(format!(
                        "returned {} series; a gate query must return one (aggregate it, e.g. with sum)",
                        many.len()
                    )));
                }
            }
        }
        "scalar" => sample(&data.result).map_err(|d| malformed(&d))?,
        "matrix" => {
            return Err(unusable(
                "returned a range vector; wrap the range selector in a function such as rate()"
                    .into(),
            ));
        }
        other => return Err(unusable(format!("returned a {other} result, not a number"))),
    };
    Ok(Answer {
        value,
        warnings: envelope.warnings,
    })
}

/// `[<unix seconds>, "<value>"]`; the value is a string that may be `NaN`, `+Inf`, `-Inf`.
fn sample(pair: &Value) -> Result<Option<f64>, String> {
    let text = pair
        .as_array()
        .filter(|p| p.len() == 2)
        .and_then(|p| p[1].as_str())
        .ok_or_else(|| format!("sample {pair} is not [time, \"value\"]"))?;
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("sample value {text:?} is not a number"))?;
    Ok((!value.is_nan()).then_some(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(body: Value) -> Result<Answer, PrometheusError> {
        parse(200, None, body.to_string().as_bytes(), "q")
    }

    fn vector(values: &[&str]) -> Value {
        let result: Vec<Value> = values
            .iter()
            .map(|v| json!({"metric": {}, "value": [1767261600.0, v]}))
            .collect();
        json!({"status": "success", "data": {"resultType": "vector", "result": result}})
    }

    #[test]
    fn sample_strings_parse_with_nan_as_no_data_and_infinities_as_values() {
        assert_eq!(ok(vector(&["0.125"])).unwrap().value, Some(0.125));
        assert_eq!(ok(vector(&["NaN"])).unwrap().value, None);
        assert_eq!(ok(vector(&["+Inf"])).unwrap().value, Some(f64::INFINITY));
        assert_eq!(
            ok(vector(&["-Inf"])).unwrap().value,
            Some(f64::NEG_INFINITY)
        );
        assert_eq!(ok(vector(&[])).unwrap().value, None);
        let scalar =
            json!({"status": "success", "data": {"resultType": "scalar", "result": [1.0, "3"]}});
        assert_eq!(ok(scalar).unwrap().value, Some(3.0));
    }

    #[test]
    fn several_series_a_matrix_or_a_bad_sample_are_refused() {
        assert!(matches!(
            ok(vector(&["1", "2"])),
            Err(PrometheusError::Unusable { .. })
        ));
        let matrix = json!({"status": "success", "data": {"resultType": "matrix", "result": []}});
        assert!(matches!(ok(matrix), Err(PrometheusError::Unusable { .. })));
        assert!(matches!(
            ok(vector(&["many"])),
            Err(PrometheusError::Malformed { .. })
        ));
        assert!(matches!(
            parse(200, None, b"<html>", "q"),
            Err(PrometheusError::Malformed { .. })
        ));
    }

    #[test]
    fn error_envelopes_keep_an_unknown_error_type_and_warnings_are_returned() {
        let body = json!({"status": "error", "errorType": "brand_new", "error": "nope", "warnings": ["w"]});
        match parse(422, None, body.to_string().as_bytes(), "q") {
            Err(PrometheusError::Api {
                status: 422,
                error_type,
                message,
                ..
            }) => {
                assert_eq!(
                    (error_type.as_str(), message.as_str()),
                    ("brand_new", "nope")
                );
            }
            other => panic!("{other:?}"),
        }
        let mut warned = vector(&["1"]);
        warned["warnings"] = json!(["PromQL info: metric might not be a counter"]);
        assert_eq!(ok(warned).unwrap().warnings.len(), 1);
        assert!(matches!(
            parse(502, None, b"bad gateway", "q"),
            Err(PrometheusError::Api { status: 502, .. })
        ));
    }
}
