//! The ARM HTTP client: bearer auth, api-version, retries under the crate's one policy
//! ([AML §4.1]: 429 and 5xx; [AML §3] Concurrency: 409 "in progress"), and request logging
//! without headers or bodies.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

use super::arm_read::list_page;
use super::auth::{Secret, TokenSource};
use super::error::{AzureMlError, parse_arm_error};
use super::pacer::{self, Kind, Pacer};
use super::retry::retry_after;
use super::shape::{Shape, checked};
use flightdeck_core::retry::{RetryPolicy, Verdict, retry};

/// One ARM answer, any status.
#[derive(Debug)]
pub(crate) struct ArmResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl ArmResponse {
    pub fn json(&self, what: &str) -> Result<Value, AzureMlError> {
        serde_json::from_slice(&self.body).map_err(|e| AzureMlError::Unexpected {
            what: what.to_string(),
            message: format!("body is not JSON: {e}"),
        })
    }

    /// A header as a string, if present and ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }
}

pub(crate) struct ArmClient {
    http: reqwest::Client,
    base: Url,
    api_version: String,
    credential: Arc<dyn TokenSource>,
    scope: String,
    pub retry: RetryPolicy,
    /// Floor of any server-requested wait (`Retry-After` while polling or throttled).
    pub min_poll_interval: Duration,
    /// Cap of any server-requested wait, and of the no-`Retry-After` poll backoff.
    pub max_poll_interval: Duration,
    /// Spacing under a low remaining budget, and the pressure signal (see `pacer`).
    pacer: std::sync::Mutex<Pacer>,
}

impl ArmClient {
    pub fn new(
        base: Url,
        api_version: String,
        credential: Arc<dyn TokenSource>,
        scope: String,
        retry: RetryPolicy,
        min_poll_interval: Duration,
        max_poll_interval: Duration,
    ) -> Result<ArmClient, AzureMlError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .timeout(Duration::from_secs(120))
            // Never follow a redirect with the bearer token; ARM does not redirect.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AzureMlError::Config(format!("http client: {e}")))?;
        // A server-requested wait stays within [min_poll_interval, max_poll_interval]
        // (the rule itself is `RetryPolicy::wait`).
        let retry = RetryPolicy {
            min_retry_after: min_poll_interval,
            max_retry_after: retry.max_retry_after.min(max_poll_interval),
            ..retry
        };
        Ok(ArmClient {
            http,
            base,
            api_version,
            credential,
            scope,
            retry,
            min_poll_interval,
            max_poll_interval,
            pacer: Default::default(),
        })
    }

    /// The plain HTTP client, for the data-plane test request.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn credential(&self) -> &dyn TokenSource {
        self.credential.as_ref()
    }

    /// `{base}/seg/seg/...?api-version=…`, each segment percent-encoded.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .expect("the ARM endpoint is an http(s) URL");
            path.pop_if_empty();
            path.extend(segments);
        }
        url.query_pairs_mut()
            .clear()
            .append_pair("api-version", &self.api_version);
        url
    }

    /// Resolves a URL ARM handed back (nextLink, Azure-AsyncOperation, Location) and checks it
    /// points at the same origin, so the bearer token is never sent elsewhere. Used verbatim
    /// otherwise ([AML §1] Paging: follow nextLink as given).
    pub fn resolve(&self, link: &str) -> Result<Url, AzureMlError> {
        let url = self.base.join(link).map_err(|e| AzureMlError::Unexpected {
            what: "link".into(),
            message: format!("{link:?} is not a URL: {e}"),
        })?;
        if url.origin() != self.base.origin() {
            return Err(AzureMlError::Unexpected {
                what: "link".into(),
                message: format!(
                    "{} points away from the ARM endpoint {}; not following it",
                    url.origin().ascii_serialization(),
                    self.base.origin().ascii_serialization()
                ),
            });
        }
        Ok(url)
    }

    fn pacer(&self) -> std::sync::MutexGuard<'_, Pacer> {
        self.pacer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the answers since the last call said about the throttle (see `pacer`).
    pub fn take_pressure(&self) -> flightdeck_core::backend::Pressure {
        self.pacer().take_pressure()
    }

    async fn bearer(&self) -> Result<Secret, AzureMlError> {
        self.credential.token(&self.scope).await
    }

    /// One try. Ok for any HTTP status; Err for transport and token problems.
    async fn attempt(
        &self,
        method: &Method,
        url: &Url,
        body: Option<&Value>,
        attempt: u32,
    ) -> Result<ArmResponse, AzureMlError> {
        let token = self.bearer().await?;
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                AzureMlError::Auth {
                    credential: "token".into(),
                    message: "token contains characters not allowed in a header".into(),
                }
            })?;
        auth.set_sensitive(true);
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .header(AUTHORIZATION, auth);
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let transport = |e: reqwest::Error| {
            let e = e.without_url();
            AzureMlError::Transport {
                method: method.to_string(),
                path: url.path().to_string(),
                message: e.to_string(),
                source: e,
            }
        };
        let kind = Kind::of(method);
        loop {
            let verdict = self.pacer().try_send(kind, tokio::time::Instant::now());
            match verdict {
                Ok(()) => break,
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
        // Until its answer is observed the request is in flight for the pacer; a transport error
        // or a caller that gives up on the future (a step timeout) drops the guard and ends it.
        let in_flight = InFlight { client: self, kind };
        let response = request.send().await.map_err(transport)?;
        std::mem::forget(in_flight);
        let status = response.status();
        let headers = response.headers().clone();
        self.pacer().observe(
            kind,
            pacer::remaining(&headers, kind),
            status == StatusCode::TOO_MANY_REQUESTS,
            tokio::time::Instant::now(),
        );
        let body = response.bytes().await.map_err(transport)?;
        tracing::debug!(
            method = %method,
            path = url.path(),
            status = status.as_u16(),
            attempt,
            "arm request"
        );
        Ok(ArmResponse {
            status,
            headers,
            body,
        })
    }

    /// One try with at most one token refresh; Ok only for 2xx, any other status as
    /// `AzureMlError::Http` (with its `Retry-After`).
    ///
    /// A 401 means the cached token was revoked or rotated before its expiry: drop it and send
    /// once more with a fresh one ([AML §4.1] lists 401 as "auth"). A second 401 is final. The
    /// refresh does not count as a retry; `refreshed` remembers it across retries.
    async fn answered(
        &self,
        method: &Method,
        url: &Url,
        body: Option<&Value>,
        attempt: u32,
        refreshed: &AtomicBool,
    ) -> Result<ArmResponse, AzureMlError> {
        let mut resp = self.attempt(method, url, body, attempt).await?;
        if resp.status == StatusCode::UNAUTHORIZED && !refreshed.swap(true, Ordering::Relaxed) {
            tracing::debug!(
                method = %method,
                path = url.path(),
                "arm refused the token; fetching a new one"
            );
            self.credential.invalidate(&self.scope).await;
            resp = self.attempt(method, url, body, attempt).await?;
        }
        if resp.status.is_success() {
            return Ok(resp);
        }
        let (code, mut message) = parse_arm_error(&resp.body);
        if resp.status == StatusCode::UNAUTHORIZED {
            message.push_str(" (a freshly fetched token was refused too)");
        }
        Err(AzureMlError::Http {
            method: method.to_string(),
            path: url.path().to_string(),
            status: resp.status.as_u16(),
            code,
            message,
            retry_after: retry_after(&resp.headers),
        })
    }

    /// Sends under the retry policy ([`flightdeck_core::retry`]): 429, 5xx and 409 "in progress" are sent
    /// again, after the answer's `Retry-After` when it has one (capped by `max_poll_interval`).
    /// Ok only for 2xx. `retry_transport: false` returns the first transport error to the caller
    /// (a PUT must check what landed before sending again).
    pub async fn call_with(
        &self,
        method: Method,
        url: &Url,
        body: Option<&Value>,
        retry_transport: bool,
    ) -> Result<ArmResponse, AzureMlError> {
        let refreshed = AtomicBool::new(false);
        let verdict = |err: &AzureMlError| match err {
            AzureMlError::Transport { .. } if !retry_transport => Verdict::GiveUp,
            err => err.verdict(),
        };
        retry(&self.retry, verdict, |attempt| {
            self.answered(&method, url, body, attempt, &refreshed)
        })
        .await
    }

    pub async fn call(
        &self,
        method: Method,
        url: &Url,
        body: Option<&Value>,
    ) -> Result<ArmResponse, AzureMlError> {
        self.call_with(method, url, body, true).await
    }

    /// GET an endpoint or deployment, checked to be one (see `shape`).
    pub async fn get_resource(&self, url: &Url) -> Result<Value, AzureMlError> {
        checked(
            &self.call(Method::GET, url, None).await?,
            Shape::of_resource(url),
        )
    }

    /// GET a resource, `None` on 404.
    pub async fn get_opt(&self, url: &Url) -> Result<Option<Value>, AzureMlError> {
        match self.call(Method::GET, url, None).await {
            Ok(resp) => checked(&resp, Shape::of_resource(url)).map(Some),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Lists a collection of `item`s, following `nextLink` verbatim until it is absent
    /// [AML §1]. Each page is parsed straight into typed items and its body dropped before the
    /// next one is fetched (see `arm_read`).
    pub async fn list<T: DeserializeOwned>(
        &self,
        url: &Url,
        what: &str,
        item: Shape,
    ) -> Result<Vec<T>, AzureMlError> {
        let mut items = Vec::new();
        let mut pages = std::pin::pin!(self.pages::<T>(url, what, item));
        while let Some(page) = pages.next().await {
            items.extend(page?);
        }
        Ok(items)
    }

    /// The pages of a collection as they arrive, each page's items as one `Vec`: what
    /// [`list`](Self::list) collects, for a caller that starts on the first page's items
    /// while the next page is fetched. The stream ends after the first error.
    pub fn pages<'a, T: DeserializeOwned + 'a>(
        &'a self,
        url: &Url,
        what: &'a str,
        item: Shape,
    ) -> impl futures::Stream<Item = Result<Vec<T>, AzureMlError>> + 'a {
        futures::stream::try_unfold((Some(url.clone()), 0u32), move |(next, pages)| async move {
            let Some(page_url) = next else {
                return Ok(None);
            };
            if pages >= 10_000 {
                return Err(AzureMlError::Unexpected {
                    what: what.into(),
                    message: "more than 10000 pages: nextLink loops".into(),
                });
            }
            let resp = self.call(Method::GET, &page_url, None).await?;
            let page = list_page::<T>(&resp, item)?;
            drop(resp);
            let next = match page.next_link {
                Some(link) => Some(self.resolve(&link)?),
                None => None,
            };
            Ok(Some((page.items, (next, pages + 1))))
        })
    }
}

/// A request the pacer let go and has not seen answered: dropping it tells the pacer the request
/// will get no answer (`Pacer::abandon`); an answered request is forgotten, then observed.
struct InFlight<'a> {
    client: &'a ArmClient,
    kind: Kind,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.client.pacer().abandon(self.kind);
    }
}
