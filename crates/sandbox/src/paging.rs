//! List paging ([AML §1] Paging [emu]): `nextLink` is absolute, carries the api-version
//! and the other query parameters, plus an opaque `$skipToken`; `count` / `$top` set the page size.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::error::ArmError;

/// The decoded query string of a request, in order.
#[derive(Clone, Debug, Default)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        Query(
            raw.map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn positive(&self, key: &str) -> Result<Option<usize>, ArmError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .map(Some)
                .ok_or_else(|| {
                    ArmError::bad_argument(format!("{key} must be a positive integer, got {v:?}"))
                        .with_target(key)
                }),
        }
    }
}

fn encode_token(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("offset:{offset}"))
}

fn decode_token(token: &str) -> Option<usize> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    String::from_utf8(bytes)
        .ok()?
        .strip_prefix("offset:")?
        .parse()
        .ok()
}

/// Page geometry for one request.
pub struct Paging<'a> {
    pub query: &'a Query,
    /// The query parameters that set the page size (`count` for endpoints and skus, `$top`
    /// for deployments).
    pub size_keys: &'a [&'a str],
    pub default_size: usize,
    pub base_url: &'a str,
    pub path: &'a str,
}

/// One page of `items`, as `{value, nextLink?}`; only the page's items are rendered.
pub fn page<T>(
    items: &[T],
    paging: &Paging,
    render: impl Fn(&T) -> Value,
) -> Result<Value, ArmError> {
    let Paging {
        query,
        size_keys,
        default_size,
        base_url,
        path,
    } = *paging;
    let mut size = default_size;
    for key in size_keys {
        if let Some(n) = query.positive(key)? {
            size = n;
        }
    }
    let offset = match query.get("$skipToken") {
        None => 0,
        Some(t) => decode_token(t).ok_or_else(|| {
            ArmError::bad_argument("$skipToken is not a token issued by this service")
                .with_target("$skipToken")
        })?,
    };
    let total = items.len();
    let value: Vec<Value> = items.iter().skip(offset).take(size).map(render).collect();
    let mut out = json!({ "value": value });
    if offset + size < total {
        out["nextLink"] = json!(next_link(query, base_url, path, offset + size));
    }
    Ok(out)
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace("%24", "$")
}

fn next_link(query: &Query, base_url: &str, path: &str, offset: usize) -> String {
    let mut parts: Vec<String> = query
        .0
        .iter()
        .filter(|(k, _)| k != "$skipToken")
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    parts.push(format!("$skipToken={}", encode_token(offset)));
    format!("{base_url}{path}?{}", parts.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> Vec<Value> {
        (0..n).map(|i| json!(i)).collect()
    }

    fn page_of(
        n: usize,
        query: &Query,
        default_size: usize,
        base: &str,
        path: &str,
    ) -> Result<Value, ArmError> {
        let paging = Paging {
            query,
            size_keys: &["count"],
            default_size,
            base_url: base,
            path,
        };
        page(&items(n), &paging, Value::clone)
    }

    #[test]
    fn pages_chain_through_next_links_until_the_end() {
        let mut query = Query::parse(Some("api-version=2025-12-01"));
        let mut seen = Vec::new();
        loop {
            let p = page_of(7, &query, 3, "http://h", "/p").unwrap();
            seen.extend(p["value"].as_array().unwrap().iter().cloned());
            let Some(next) = p.get("nextLink").and_then(Value::as_str) else {
                break;
            };
            assert!(next.starts_with("http://h/p?api-version=2025-12-01&$skipToken="));
            query = Query::parse(next.split_once('?').map(|(_, q)| q));
        }
        assert_eq!(seen, items(7));
    }

    #[test]
    fn count_sets_the_page_size_and_is_carried_along() {
        let query = Query::parse(Some("api-version=2025-12-01&count=2"));
        let p = page_of(5, &query, 50, "http://h", "/p").unwrap();
        assert_eq!(p["value"].as_array().unwrap().len(), 2);
        assert!(p["nextLink"].as_str().unwrap().contains("count=2"));
    }

    #[test]
    fn bad_tokens_and_sizes_are_rejected() {
        let q = Query::parse(Some("$skipToken=garbage"));
        assert!(page_of(5, &q, 2, "h", "/p").is_err());
        let q = Query::parse(Some("count=0"));
        assert!(page_of(5, &q, 2, "h", "/p").is_err());
    }
}
