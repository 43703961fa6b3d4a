//! PromQL templates, one per signal, as configuration data: the Istio defaults of [PROM P10]
//! over the gate's window, which a user may replace one by one. Placeholders are exactly
//! `{endpoint}`, `{deployment}`, `{namespace}` and `{window}`; every other brace is PromQL.
//! Pure: validation and substitution only.

use flightdeck_core::metrics::Signal;

use crate::error::PrometheusError;

/// The placeholders a template may use.
pub const PLACEHOLDERS: [&str; 4] = ["{endpoint}", "{deployment}", "{namespace}", "{window}"];

/// The Istio selector of one deployment, as the server-side proxy saw it [PROM P9]: one
/// reporter (else mesh-internal requests count twice), the Service named like the endpoint,
/// the pods' `version` label equal to the deployment name.
const SELECTOR: &str = r#"reporter="destination",destination_service_name="{endpoint}",destination_version="{deployment}""#;

/// One PromQL template per signal. Each must return a single series or a scalar, and must
/// use `{deployment}` (the candidate and the baseline must not read the same query).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryTemplates {
    /// Requests in the window (a count).
    pub requests: String,
    /// 5xx share of requests, 0..=1.
    pub error_rate: String,
    /// 95th percentile latency, ms.
    pub latency_p95: String,
    /// 99th percentile latency, ms.
    pub latency_p99: String,
}

impl Default for QueryTemplates {
    /// [PROM P10]: `increase` of `istio_requests_total` for requests, 5xx `rate` (0 without a 5xx
    /// series) over all `rate` for the error rate, `histogram_quantile` over
    /// `istio_request_duration_milliseconds_bucket` for latency; all `[{window}]`, evaluated at
    /// the window's end.
    fn default() -> Self {
        let s = SELECTOR;
        let quantile = |q: &str| {
            format!(
                "histogram_quantile({q}, sum by (le) (rate(istio_request_duration_milliseconds_bucket{{{s}}}[{{window}}])))"
            )
        };
        QueryTemplates {
            requests: format!("sum(increase(istio_requests_total{{{s}}}[{{window}}]))"),
            // `or vector(0)`: a deployment that served requests but no 5xx has no 5xx series,
            // and `empty / x` is empty, which would read as no data instead of 0 (found against
            // a real Prometheus 2.42, benches/prometheus_check.rs). Without requests the
            // denominator stays empty (or 0, giving NaN), so that is still no data [PROM P5].
            error_rate: format!(
                "(sum(rate(istio_requests_total{{{s},response_code=~\"5..\"}}[{{window}}])) or vector(0)) / sum(rate(istio_requests_total{{{s}}}[{{window}}]))"
            ),
            latency_p95: quantile("0.95"),
            latency_p99: quantile("0.99"),
        }
    }
}

/// The values substituted into a template.
#[derive(Clone, Debug)]
pub struct Vars<'a> {
    pub endpoint: &'a str,
    pub deployment: &'a str,
    pub namespace: &'a str,
    /// The window as a PromQL duration, `300s`.
    pub window: &'a str,
}

impl QueryTemplates {
    pub fn get(&self, signal: Signal) -> &str {
        match signal {
            Signal::Requests => &self.requests,
            Signal::ErrorRate => &self.error_rate,
            Signal::LatencyP95 => &self.latency_p95,
            Signal::LatencyP99 => &self.latency_p99,
        }
    }

    /// Every template non-empty, using `{deployment}`, and with no unknown `{name}`
    /// placeholder (a typo such as `{deploymnet}` is an error, not a silent literal).
    pub fn validate(&self) -> Result<(), PrometheusError> {
        for signal in Signal::ALL {
            let template = self.get(signal);
            let bad = |message: String| {
                PrometheusError::Config(format!("query template for {signal}: {message}"))
            };
            if template.trim().is_empty() {
                return Err(bad("is empty".into()));
            }
            if let Some(unknown) = unknown_placeholder(template) {
                return Err(bad(format!(
                    "unknown placeholder {unknown}; known: {}",
                    PLACEHOLDERS.join(", ")
                )));
            }
            if !template.contains("{deployment}") {
                return Err(bad(
                    "does not use {deployment}, so every deployment would read the same series"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// The template of `signal` with the placeholders replaced. Values are escaped for a
    /// double-quoted PromQL string, so a name cannot end the label matcher early.
    pub fn render(&self, signal: Signal, vars: &Vars<'_>) -> String {
        self.get(signal)
            .replace("{endpoint}", &escape(vars.endpoint))
            .replace("{deployment}", &escape(vars.deployment))
            .replace("{namespace}", &escape(vars.namespace))
            .replace("{window}", vars.window)
    }
}

/// `{ident}` that is not one of [`PLACEHOLDERS`]. PromQL braces hold matchers (`{a="b"}`),
/// never a bare identifier, so this does not flag valid PromQL.
fn unknown_placeholder(template: &str) -> Option<String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        if let Some(close) = after.find('}') {
            let name = &after[..close];
            let ident = !name.is_empty()
                && name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            let candidate = format!("{{{name}}}");
            if ident && !PLACEHOLDERS.contains(&candidate.as_str()) {
                return Some(candidate);
            }
        }
        rest = after;
    }
    None
}

/// Escapes `\` and `"` (and line breaks) for a double-quoted PromQL string literal.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// A window length as a PromQL duration in whole seconds: `300s`.
pub fn window_duration(seconds: i64) -> String {
    format!("{seconds}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(deployment: &'a str) -> Vars<'a> {
        Vars {
            endpoint: "fraud",
            deployment,
            namespace: "ml",
            window: "300s",
        }
    }

    #[test]
    fn the_defaults_are_the_istio_queries_over_the_window() {
        let t = QueryTemplates::default();
        t.validate().unwrap();
        assert_eq!(
            t.render(Signal::ErrorRate, &vars("green")),
            r#"(sum(rate(istio_requests_total{reporter="destination",destination_service_name="fraud",destination_version="green",response_code=~"5.."}[300s])) or vector(0)) / sum(rate(istio_requests_total{reporter="destination",destination_service_name="fraud",destination_version="green"}[300s]))"#
        );
        assert_eq!(
            t.render(Signal::LatencyP99, &vars("green")),
            r#"histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{reporter="destination",destination_service_name="fraud",destination_version="green"}[300s])))"#
        );
        assert_eq!(
            t.render(Signal::Requests, &vars("blue")),
            r#"sum(increase(istio_requests_total{reporter="destination",destination_service_name="fraud",destination_version="blue"}[300s]))"#
        );
    }

    #[test]
    fn a_quote_in_a_name_cannot_close_the_matcher() {
        let t = QueryTemplates::default();
        let q = t.render(Signal::Requests, &vars(r#"g",x="y"#));
        assert!(q.contains(r#"destination_version="g\",x=\"y""#), "{q}");
    }

    #[test]
    fn unknown_placeholders_empty_templates_and_templates_without_the_deployment_are_refused() {
        let with = |requests: &str| QueryTemplates {
            requests: requests.into(),
            ..QueryTemplates::default()
        };
        for (template, says) in [
            (
                "sum(x{v=\"{deploymnet}\"})",
                "unknown placeholder {deploymnet}",
            ),
            ("  ", "is empty"),
            ("sum(x{app=\"{endpoint}\"})", "does not use {deployment}"),
        ] {
            let err = with(template).validate().unwrap_err().to_string();
            assert!(err.contains(says), "{template}: {err}");
            assert!(err.contains("query template for requests"), "{err}");
        }
        with(r#"sum(x{ns="{namespace}",v="{deployment}"}[{window}])"#)
            .validate()
            .unwrap();
    }
}
