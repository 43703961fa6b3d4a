//! The dashboard's routes, all `GET`: the page at `/`, the fragment the page's script swaps in,
//! the server-sent events that tell it when, and the two embedded assets. With a token, every
//! route asks for it (`Authorization: Bearer TOKEN`, or Basic with the token as the password,
//! which browsers prompt for and then send with every request, the event stream included),
//! compared in constant time.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use futures::StreamExt;
use subtle::ConstantTimeEq;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::board::Hub;
use super::render;
use crate::source::Secret;

/// Event streams open at once; more are answered 503 (each holds a connection slot).
pub const MAX_STREAMS: usize = 32;

/// The scripts may only come from this server: a value that slipped through escaping could
/// still not run. Inline `style` attributes carry the bar widths.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

#[derive(Clone)]
pub struct DashboardContext {
    pub hub: Arc<Hub>,
    /// `None`: no authentication (the listener's exposure rules apply, docs/security.md).
    pub token: Option<Secret>,
    streams: Arc<AtomicUsize>,
}

impl DashboardContext {
    pub fn new(hub: Arc<Hub>, token: Option<Secret>) -> Self {
        DashboardContext {
            hub,
            token,
            streams: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// The dashboard's routes, to merge into a server's router.
pub fn routes<S: Clone + Send + Sync + 'static>(ctx: DashboardContext) -> Router<S> {
    Router::new()
        .route("/", get(page))
        .route("/dashboard/fragment", get(fragment))
        .route("/dashboard/events", get(events))
        .route("/dashboard/app.js", get(js))
        .route("/dashboard/app.css", get(css))
        .route_layer(middleware::from_fn_with_state(ctx.clone(), authorize))
        .with_state(ctx)
}

async fn authorize(State(ctx): State<DashboardContext>, request: Request, next: Next) -> Response {
    let Some(token) = &ctx.token else {
        return next.run(request).await;
    };
    if presented(request.headers())
        .is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.expose().as_bytes())))
    {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            "Basic realm=\"flightdeck dashboard\", charset=\"UTF-8\"",
        )],
        "the dashboard needs its token: Authorization: Bearer TOKEN (or Basic, any user, the token as password)\n",
    )
        .into_response()
}

/// The token a request presents, if any.
fn presented(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        return text
            .split_once(':')
            .map(|(_, password)| password.to_string());
    }
    None
}

fn html(body: String) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        body,
    )
        .into_response()
}

async fn page(State(ctx): State<DashboardContext>) -> Response {
    let now = crate::clock::now_utc();
    html(ctx.hub.read(|b| render::page(b, now)))
}

async fn fragment(State(ctx): State<DashboardContext>) -> Response {
    let now = crate::clock::now_utc();
    html(ctx.hub.read(|b| render::fragment(b, now)))
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", render::JS)
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", render::CSS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// Counts an open stream; dropped with the stream.
struct StreamSlot(Arc<AtomicUsize>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The board's announcements as SSE events, until the client lags (then it ends: the client
/// is dropped, nothing is buffered for it) or the board goes away. `guard` lives as long.
fn updates<G: Send + 'static>(
    receiver: broadcast::Receiver<String>,
    guard: G,
) -> impl futures::Stream<Item = Result<Event, Infallible>> + Send {
    futures::stream::unfold((receiver, guard), |(mut rx, guard)| async move {
        match rx.recv().await {
            Ok(data) => Some((Ok(Event::default().event("update").data(data)), (rx, guard))),
            Err(RecvError::Lagged(missed)) => {
                tracing::debug!(missed, "dashboard client too slow, dropped");
                None
            }
            Err(RecvError::Closed) => None,
        }
    })
}

/// One `update` event per board change (`{"kind":"rollout","version":7}`): the page fetches
/// the fragment again. A client more than `CHANNEL_CAPACITY` updates behind is dropped, not
/// buffered for; its browser reconnects and catches up with one fetch. The stream ends when
/// the server stops.
async fn events(State(ctx): State<DashboardContext>) -> Response {
    if ctx.streams.fetch_add(1, Ordering::AcqRel) >= MAX_STREAMS {
        ctx.streams.fetch_sub(1, Ordering::AcqRel);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("at most {MAX_STREAMS} dashboard event streams at once\n"),
        )
            .into_response();
    }
    let slot = StreamSlot(ctx.streams.clone());
    let receiver = ctx.hub.subscribe();
    let hello = ctx.hub.read(|b| b.version);
    let first = futures::stream::once(async move {
        Ok::<_, Infallible>(
            Event::default()
                .event("update")
                .data(format!(r#"{{"kind":"hello","version":{hello}}}"#)),
        )
    });
    let updates = updates(receiver, slot);
    let closed = ctx.hub.closed();
    let stream = first
        .chain(updates)
        .take_until(async move { closed.cancelled_owned().await });
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::board::CHANNEL_CAPACITY;

    #[tokio::test]
    async fn a_client_that_falls_behind_is_dropped_instead_of_buffered_for() {
        let hub = Hub::default();
        let keeping_up = hub.subscribe();
        let lagging = hub.subscribe();
        hub.fetched("a", true);
        hub.fetched("b", true);
        let mut stream = Box::pin(updates(keeping_up, ()));
        assert!(stream.next().await.is_some());
        assert!(stream.next().await.is_some());
        for i in 0..CHANNEL_CAPACITY {
            hub.fetched(&format!("r{i}"), true);
        }
        let mut slow = Box::pin(updates(lagging, ()));
        assert!(
            slow.next().await.is_none(),
            "a lagging client's stream ends"
        );
        // The one that kept up still gets every update the channel holds.
        let mut got = 0;
        while got < CHANNEL_CAPACITY {
            assert!(stream.next().await.is_some());
            got += 1;
        }
    }

    #[tokio::test]
    async fn at_most_max_streams_are_open_at_once() {
        let ctx = DashboardContext::new(std::sync::Arc::new(Hub::default()), None);
        let mut open = Vec::new();
        for _ in 0..MAX_STREAMS {
            let response = events(State(ctx.clone())).await;
            assert_eq!(response.status(), StatusCode::OK);
            open.push(response);
        }
        let refused = events(State(ctx.clone())).await;
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        open.pop();
        assert_eq!(
            events(State(ctx)).await.status(),
            StatusCode::OK,
            "a slot freed"
        );
    }
}
