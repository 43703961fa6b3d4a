//! The query of the Azure Monitor metrics API [MON R3, R4]: parameters (names matched
//! case-insensitively, as the examples mix `resultType` and `resulttype`), ISO-8601 durations
//! and timespans, aggregations and the `$filter` grammar.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// A query the sandbox refuses: answered 400 with a flat `{code, message}` [MON R14].
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum QueryError {
    #[error("api-version must be 2023-10-01, got {0:?}")]
    ApiVersion(Option<String>),
    #[error("invalid {name} {value:?}: {why}")]
    Invalid {
        name: &'static str,
        value: String,
        why: String,
    },
    #[error("invalid $filter {filter:?}: {why}")]
    Filter { filter: String, why: String },
}

fn invalid(name: &'static str, value: &str, why: impl Into<String>) -> QueryError {
    QueryError::Invalid {
        name,
        value: value.to_string(),
        why: why.into(),
    }
}

/// The raw query string's pairs, looked up case-insensitively.
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(raw: Option<&str>) -> Self {
        Params(
            url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn check_api_version(&self) -> Result<(), QueryError> {
        match self.get("api-version") {
            Some("2023-10-01") => Ok(()),
            other => Err(QueryError::ApiVersion(other.map(str::to_string))),
        }
    }

    /// A boolean parameter (`true` / `false`, any case), `default` when absent.
    pub fn flag(&self, name: &'static str, default: bool) -> Result<bool, QueryError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(invalid(name, v, "expected true or false")),
        }
    }
}

/// An ISO-8601 duration of whole seconds: `P[nD][T[nH][nM][nS]]` (`PT1M`, `PT30S`, `P1D`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let rest = s.strip_prefix(['P', 'p'])?;
    let (days, time) = match rest.split_once(['T', 't']) {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut secs: u64 = 0;
    let mut any = false;
    let mut take = |part: &str, units: &[(char, u64)]| -> Option<()> {
        let mut num = String::new();
        let mut allowed = units.iter();
        for c in part.chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let c = c.to_ascii_uppercase();
            let (_, factor) = allowed.find(|(u, _)| *u == c)?;
            let n: u64 = num.parse().ok()?;
            secs = secs.checked_add(n.checked_mul(*factor)?)?;
            num.clear();
            any = true;
        }
        num.is_empty().then_some(())
    };
    take(days, &[('D', 86_400)])?;
    if let Some(t) = time {
        if t.is_empty() {
            return None;
        }
        take(t, &[('H', 3600), ('M', 60), ('S', 1)])?;
    }
    any.then_some(Duration::from_secs(secs))
}

/// The ISO-8601 form of a whole-second duration, in its largest exact unit (`PT1M`, `PT2H`).
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "PT0S".to_string(),
        s if s % 86_400 == 0 => format!("P{}D", s / 86_400),
        s if s % 3600 == 0 => format!("PT{}H", s / 3600),
        s if s % 60 == 0 => format!("PT{}M", s / 60),
        s => format!("PT{s}S"),
    }
}

fn parse_instant(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `timespan`: `start/end`, `start/duration`, `duration/end` or a bare duration ending `now`;
/// absent: the hour before `now`.
pub fn parse_timespan(
    raw: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), QueryError> {
    let Some(raw) = raw else {
        return Ok((now - chrono::Duration::hours(1), now));
    };
    let bad = |why: &str| invalid("timespan", raw, why);
    let span = |d: Duration| chrono::Duration::from_std(d).map_err(|_| bad("duration too long"));
    let (start, end) = match raw.split_once('/') {
        None => {
            let d = parse_duration(raw).ok_or_else(|| bad("expected start/end"))?;
            (now - span(d)?, now)
        }
        Some((a, b)) => match (parse_instant(a), parse_instant(b)) {
            (Some(s), Some(e)) => (s, e),
            (Some(s), None) => {
                let d = parse_duration(b).ok_or_else(|| bad("the end is not a datetime"))?;
                (s, s + span(d)?)
            }
            (None, Some(e)) => {
                let d = parse_duration(a).ok_or_else(|| bad("the start is not a datetime"))?;
                (e - span(d)?, e)
            }
            (None, None) => return Err(bad("expected two ISO-8601 datetimes joined by /")),
        },
    };
    if start >= end {
        return Err(bad("the start must be before the end"));
    }
    Ok((start, end))
}

/// An aggregation of `MetricValue` [MON R5].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Aggregation {
    Average,
    Count,
    Minimum,
    Maximum,
    Total,
}

impl Aggregation {
    pub const ALL: [Aggregation; 5] = [
        Aggregation::Average,
        Aggregation::Count,
        Aggregation::Minimum,
        Aggregation::Maximum,
        Aggregation::Total,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "average" | "avg" => Some(Aggregation::Average),
            "count" => Some(Aggregation::Count),
            "minimum" | "min" => Some(Aggregation::Minimum),
            "maximum" | "max" => Some(Aggregation::Maximum),
            "total" | "sum" => Some(Aggregation::Total),
            _ => None,
        }
    }

    /// The `MetricValue` field.
    pub fn field(self) -> &'static str {
        match self {
            Aggregation::Average => "average",
            Aggregation::Count => "count",
            Aggregation::Minimum => "minimum",
            Aggregation::Maximum => "maximum",
            Aggregation::Total => "total",
        }
    }

    /// The `supportedAggregationTypes` spelling.
    pub fn type_name(self) -> &'static str {
        match self {
            Aggregation::Average => "Average",
            Aggregation::Count => "Count",
            Aggregation::Minimum => "Minimum",
            Aggregation::Maximum => "Maximum",
            Aggregation::Total => "Total",
        }
    }
}

/// `aggregation`: a comma-separated list; absent: `None` (the metric's primary one).
pub fn parse_aggregations(raw: Option<&str>) -> Result<Option<Vec<Aggregation>>, QueryError> {
    let Some(raw) = raw else { return Ok(None) };
    let mut out = Vec::new();
    for part in raw.split(',').filter(|p| !p.trim().is_empty()) {
        let a = Aggregation::parse(part).ok_or_else(|| {
            invalid(
                "aggregation",
                part,
                "expected average, count, minimum, maximum or total",
            )
        })?;
        if !out.contains(&a) {
            out.push(a);
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

/// `orderby`: one aggregation and an optional `asc` / `desc` (default `desc`).
pub fn parse_order_by(raw: Option<&str>) -> Result<Option<(Aggregation, bool)>, QueryError> {
    let Some(raw) = raw else { return Ok(None) };
    let mut words = raw.split_whitespace();
    let agg = words
        .next()
        .and_then(Aggregation::parse)
        .ok_or_else(|| invalid("orderby", raw, "expected an aggregation, e.g. `total desc`"))?;
    let descending = match words.next().map(str::to_ascii_lowercase).as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(_) => return Err(invalid("orderby", raw, "the direction must be asc or desc")),
    };
    if words.next().is_some() {
        return Err(invalid(
            "orderby",
            raw,
            "expected `<aggregation> [asc|desc]`",
        ));
    }
    Ok(Some((agg, descending)))
}

/// One `and`-ed clause of a `$filter`: a dimension and its `or`-ed values; `None`: `'*'`.
#[derive(Clone, Debug, PartialEq)]
pub struct Clause {
    pub dimension: String,
    pub values: Option<Vec<String>>,
}

impl Clause {
    pub fn matches(&self, value: &str) -> bool {
        self.values
            .as_ref()
            .is_none_or(|vs| vs.iter().any(|v| v.eq_ignore_ascii_case(value)))
    }
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Open,
    Close,
}

fn tokenize(s: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' => {
                chars.next();
                out.push(if c == '(' { Token::Open } else { Token::Close });
            }
            '\'' => {
                chars.next();
                let mut v = String::new();
                loop {
                    match chars.next() {
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            v.push('\'');
                        }
                        Some('\'') => break,
                        Some(c) => v.push(c),
                        None => return Err("a quoted value is not closed".into()),
                    }
                }
                out.push(Token::Quoted(v));
            }
            _ => {
                let mut w = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '(' | ')' | '\'') {
                        break;
                    }
                    w.push(c);
                    chars.next();
                }
                out.push(Token::Word(w));
            }
        }
    }
    Ok(out)
}

/// `$filter` [MON R4]: `Dim eq 'v'` terms joined by `and` / `or`, where `or` only joins
/// values of the same dimension; parentheses group; `'*'` splits by every value.
pub fn parse_filter(raw: &str) -> Result<Vec<Clause>, QueryError> {
    let fail = |why: String| QueryError::Filter {
        filter: raw.to_string(),
        why,
    };
    let mut tokens = tokenize(raw).map_err(fail)?;
    let mut depth: i32 = 0;
    tokens.retain(|t| match t {
        Token::Open => {
            depth += 1;
            false
        }
        Token::Close => {
            depth -= 1;
            false
        }
        _ => true,
    });
    if depth != 0 {
        return Err(fail("unbalanced parentheses".into()));
    }
    let mut clauses: Vec<Clause> = Vec::new();
    let mut it = tokens.into_iter();
    let mut joiner: Option<String> = None;
    loop {
        let (Some(Token::Word(dim)), Some(Token::Word(op)), Some(Token::Quoted(value))) =
            (it.next(), it.next(), it.next())
        else {
            return Err(fail("expected `Dimension eq 'value'`".into()));
        };
        if !op.eq_ignore_ascii_case("eq") {
            return Err(fail(format!(
                "operator {op:?} is not supported by the sandbox (only eq)"
            )));
        }
        let value = (value != "*").then_some(value);
        match joiner.as_deref() {
            Some("or") => {
                let last = clauses.last_mut().expect("an or follows a term");
                if !last.dimension.eq_ignore_ascii_case(&dim) {
                    return Err(fail(format!(
                        "or may only join values of one dimension ({} or {dim})",
                        last.dimension
                    )));
                }
                match (&mut last.values, value) {
                    (Some(vs), Some(v)) => vs.push(v),
                    (vs, _) => *vs = None,
                }
            }
            _ => {
                if clauses
                    .iter()
                    .any(|c| c.dimension.eq_ignore_ascii_case(&dim))
                {
                    return Err(fail(format!("dimension {dim} appears in two and-ed terms")));
                }
                clauses.push(Clause {
                    dimension: dim,
                    values: value.map(|v| vec![v]),
                });
            }
        }
        match it.next() {
            None => return Ok(clauses),
            Some(Token::Word(w)) if ["and", "or"].contains(&w.to_ascii_lowercase().as_str()) => {
                joiner = Some(w.to_ascii_lowercase());
            }
            Some(other) => return Err(fail(format!("expected and / or, got {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_durations_parse_and_format() {
        assert_eq!(parse_duration("PT1M"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("PT1S"), Some(Duration::from_secs(1)));
        assert_eq!(parse_duration("P1DT2H"), Some(Duration::from_secs(93_600)));
        assert_eq!(parse_duration("pt5m"), Some(Duration::from_secs(300)));
        for bad in ["", "P", "PT", "1M", "PT1X", "PT1M2", "FULL", "PT1.5S"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(format_duration(Duration::from_secs(60)), "PT1M");
        assert_eq!(format_duration(Duration::from_secs(7200)), "PT2H");
        assert_eq!(format_duration(Duration::from_secs(90)), "PT90S");
        assert_eq!(format_duration(Duration::from_secs(86_400)), "P1D");
    }

    #[test]
    fn timespans_take_the_documented_forms() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T10:10:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let (s, e) =
            parse_timespan(Some("2026-01-01T10:00:00.000Z/2026-01-01T10:10:00Z"), now).unwrap();
        assert_eq!((e - s).num_minutes(), 10);
        let (s, e) = parse_timespan(Some("PT10M"), now).unwrap();
        assert_eq!((s, e), (now - chrono::Duration::minutes(10), now));
        let (_, e) = parse_timespan(Some("2026-01-01T10:00:00Z/PT5M"), now).unwrap();
        assert_eq!(e, now - chrono::Duration::minutes(5));
        assert!(parse_timespan(Some("2026-01-01T10:10:00Z/2026-01-01T10:00:00Z"), now).is_err());
        assert!(parse_timespan(Some("yesterday"), now).is_err());
    }

    #[test]
    fn filters_split_into_and_ed_clauses_of_or_ed_values() {
        let f = parse_filter("deployment eq 'green' and statusCodeClass eq '*'").unwrap();
        assert_eq!(
            f,
            vec![
                Clause {
                    dimension: "deployment".into(),
                    values: Some(vec!["green".into()])
                },
                Clause {
                    dimension: "statusCodeClass".into(),
                    values: None
                },
            ]
        );
        let f = parse_filter("(deployment eq 'a' or Deployment eq 'b') and statusCode eq '5''0'")
            .unwrap();
        assert_eq!(f[0].values, Some(vec!["a".into(), "b".into()]));
        assert_eq!(f[1].values, Some(vec!["5'0".into()]));
        assert!(f[0].matches("B") && !f[0].matches("c"));
    }

    #[test]
    fn filters_that_or_two_dimensions_or_use_other_operators_are_refused() {
        for bad in [
            "A eq 'a1' and B eq 'b1' and C eq '*' or B eq 'b2'",
            "deployment ne 'green'",
            "deployment eq green",
            "deployment eq 'green' and",
            "(deployment eq 'green'",
            "deployment eq 'a' and deployment eq 'b'",
            "deployment eq 'unclosed",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
        assert!(parse_filter("A eq 'a1' and B eq 'b1' or B eq 'b2' and C eq '*'").is_ok());
    }

    #[test]
    fn aggregations_and_orderings_parse_case_insensitively() {
        assert_eq!(
            parse_aggregations(Some("Total,count,AVERAGE")).unwrap(),
            Some(vec![
                Aggregation::Total,
                Aggregation::Count,
                Aggregation::Average
            ])
        );
        assert!(parse_aggregations(Some("median")).is_err());
        assert_eq!(
            parse_order_by(Some("average asc")).unwrap(),
            Some((Aggregation::Average, false))
        );
        assert!(parse_order_by(Some("average sideways")).is_err());
    }
}
