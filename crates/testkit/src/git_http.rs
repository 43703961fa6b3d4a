//! A smart-HTTP Git server for tests: git's own `git http-backend` (CGI) behind axum on
//! 127.0.0.1. It demands HTTP basic auth with one password (the token) and records every
//! request: path, user, status and how many bytes it served.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use tokio::io::AsyncWriteExt;

#[derive(Clone, Debug)]
pub struct Served {
    pub path: String,
    pub query: String,
    pub user: Option<String>,
    pub status: u16,
    pub bytes: usize,
}

#[derive(Clone)]
struct Backend {
    root: PathBuf,
    token: String,
    log: Arc<Mutex<Vec<Served>>>,
}

pub struct GitHttp {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    log: Arc<Mutex<Vec<Served>>>,
}

impl GitHttp {
    /// Serves every repository under `root`; requests must carry the password `token`.
    pub async fn start(root: &Path, token: &str) -> GitHttp {
        let log = Arc::new(Mutex::new(Vec::new()));
        let backend = Backend {
            root: root.to_path_buf(),
            token: token.to_string(),
            log: log.clone(),
        };
        let app = axum::Router::new().fallback(handle).with_state(backend);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        GitHttp { base, log }
    }

    pub fn served(&self) -> Vec<Served> {
        self.log.lock().unwrap().clone()
    }
}

fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

async fn handle(State(backend): State<Backend>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 64 << 20).await.unwrap();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let auth = basic_auth(&parts.headers);
    let record = |status: u16, bytes: usize| {
        backend.log.lock().unwrap().push(Served {
            path: path.clone(),
            query: query.clone(),
            user: auth.as_ref().map(|(u, _)| u.clone()),
            status,
            bytes,
        });
    };
    if auth
        .as_ref()
        .is_none_or(|(_, password)| *password != backend.token)
    {
        record(401, 0);
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header(header::WWW_AUTHENTICATE, "Basic realm=\"git\"")
            .body(Body::empty())
            .unwrap();
    }

    let header_text =
        |name: header::HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let mut command = tokio::process::Command::new("git");
    command
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", &backend.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", &path)
        .env("QUERY_STRING", &query)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", auth.as_ref().map_or("", |(u, _)| u.as_str()))
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(v) = header_text(header::CONTENT_TYPE) {
        command.env("CONTENT_TYPE", v);
    }
    if let Some(v) = header_text(header::CONTENT_ENCODING) {
        command.env("HTTP_CONTENT_ENCODING", v);
    }
    if let Some(v) = parts
        .headers
        .get("git-protocol")
        .and_then(|v| v.to_str().ok())
    {
        command.env("GIT_PROTOCOL", v);
    }
    let mut child = command.spawn().expect("git http-backend");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&body).await.unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();

    // CGI output: headers, a blank line, the body.
    let out = output.stdout;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| {
            out.windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, i + 2))
        })
        .unwrap_or((out.len(), out.len()));
    let head = String::from_utf8_lossy(&out[..split.0]).to_string();
    let payload = out[split.1..].to_vec();
    let mut response = Response::builder();
    let mut status = 200u16;
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            status = value
                .split_whitespace()
                .next()
                .and_then(|code| code.parse().ok())
                .unwrap_or(500);
        } else if let Ok(value) = HeaderValue::from_str(value) {
            response = response.header(name.trim(), value);
        }
    }
    record(status, payload.len());
    response.status(status).body(Body::from(payload)).unwrap()
}
