//! The agent's HTTP server against slow and idle clients: a connection that drips its request
//! head or sends nothing is closed after the header timeout, a dripped webhook body gets 408
//! after the body timeout, and `/healthz` keeps answering on fresh connections meanwhile.
//! Connections beyond the cap wait in the backlog until a slot frees.

use std::sync::Arc;
use std::time::Duration;

use flightdeck::agent::config::HttpLimits;
use flightdeck::agent::webhook::sign_github;
use flightdeck::agent::{Agent, AgentOptions};
use flightdeck_testkit::GitRepo;
use flightdeck_testkit::recorder::{Recorder, git_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Generous bound for "eventually closed"; the configured timeouts are far shorter.
const BOUND: Duration = Duration::from_secs(10);

async fn agent(limits: HttpLimits) -> (Agent, CancellationToken, GitRepo, tempfile::TempDir) {
    let repo = GitRepo::new();
    repo.write("environments/prod/environment.yaml", "name: prod\n");
    repo.commit("init");
    let cache = tempfile::tempdir().unwrap();
    let mut config = git_config(
        repo.dir.path(),
        cache.path(),
        &["environments/prod"],
        Duration::from_secs(600),
        Some("hook-secret"),
    );
    config.http = limits;
    let cancel = CancellationToken::new();
    let agent = Agent::start(
        config,
        Arc::new(Recorder::default()),
        AgentOptions::default(),
        cancel.clone(),
    )
    .await
    .unwrap();
    (agent, cancel, repo, cache)
}

/// Reads until the server closes the connection (EOF or reset); returns what it sent.
async fn read_until_closed(stream: &mut (impl tokio::io::AsyncRead + Unpin), what: &str) -> String {
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(BOUND, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "{what}: still open after {BOUND:?}");
    String::from_utf8_lossy(&received).into_owned()
}

async fn healthz(base: &str) -> u16 {
    // A fresh client each time: a fresh connection.
    reqwest::Client::new()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Sends `bytes` one at a time, every 50 ms, until the server closes the connection.
fn drip(
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    bytes: Vec<u8>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for byte in bytes.into_iter().cycle() {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

#[tokio::test]
async fn slow_drip_and_half_open_connections_are_closed_while_healthz_answers() {
    let limits = HttpLimits {
        header_timeout: Duration::from_millis(400),
        body_timeout: Duration::from_millis(400),
        max_connections: 16,
    };
    let (agent, cancel, _repo, _cache) = agent(limits).await;
    let addr = agent.local_addr();
    let base = format!("http://{addr}");

    // Connects and never sends a byte.
    let mut half_open = TcpStream::connect(addr).await.unwrap();
    // Sends a request head one byte at a time, never finishing it.
    let (mut head_reader, head_writer) = TcpStream::connect(addr).await.unwrap().into_split();
    let mut head = b"GET /healthz HTTP/1.1\r\nhost: agent\r\n".to_vec();
    head.extend(b"x-slow: ".iter().chain(&[b'a'; 64]));
    let head_drip = drip(head_writer, head);
    // A complete webhook head, then the body one byte at a time.
    let body = format!(r#"{{"ref":"refs/heads/main","pad":"{}"}}"#, "x".repeat(200));
    let (mut body_reader, mut body_writer) = TcpStream::connect(addr).await.unwrap().into_split();
    let request = format!(
        "POST /webhook HTTP/1.1\r\nhost: agent\r\nx-github-event: push\r\nx-hub-signature-256: {}\r\ncontent-length: {}\r\n\r\n",
        sign_github(b"hook-secret", body.as_bytes()),
        body.len()
    );
    body_writer.write_all(request.as_bytes()).await.unwrap();
    let body_drip = drip(body_writer, body.into_bytes());

    for _ in 0..3 {
        assert_eq!(healthz(&base).await, 200, "healthz answers meanwhile");
    }

    let sent = read_until_closed(&mut half_open, "the half-open connection").await;
    assert_eq!(sent, "", "closed without a response");
    read_until_closed(&mut head_reader, "the connection dripping its head").await;
    let answer = read_until_closed(&mut body_reader, "the connection dripping its body").await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("request body not received within 400ms"),
        "{answer}"
    );
    head_drip.await.unwrap();
    body_drip.await.unwrap();
    assert_eq!(healthz(&base).await, 200);
    assert!(
        !agent
            .state()
            .metrics
            .render()
            .contains("flightdeck_webhooks_total{result=\"sync\"}"),
        "the dripped push never triggered a sync"
    );
    assert_eq!(agent.state().snapshot().sync_requests, 0);
    cancel.cancel();
    agent.wait().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_a_slot_frees() {
    let limits = HttpLimits {
        header_timeout: Duration::from_millis(500),
        body_timeout: Duration::from_secs(5),
        max_connections: 2,
    };
    let (agent, cancel, _repo, _cache) = agent(limits).await;
    let addr = agent.local_addr();
    // Two idle connections take both slots.
    let first = TcpStream::connect(addr).await.unwrap();
    let second = TcpStream::connect(addr).await.unwrap();
    let mut third = TcpStream::connect(addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: agent\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut third, "the third connection").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The third request was served only once an idle connection had been closed for it.
    let closed = |stream: &TcpStream| {
        let mut buf = [0u8; 1];
        match stream.try_read(&mut buf) {
            Ok(n) => n == 0,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        }
    };
    assert!(
        closed(&first) || closed(&second),
        "served while both slots were held by idle connections"
    );
    cancel.cancel();
    agent.wait().await;
}
