//! A TCP listener whose connections can be cut from inside a request handler, so a fault rule
//! can "drop the connection": the response is never written and the socket is closed. With TLS
//! (`--tls-cert`), handshakes run in their own tasks so one slow client never blocks accepts.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handle to one accepted connection, available to handlers as `ConnectInfo<ConnHandle>`.
#[derive(Clone, Debug)]
pub struct ConnHandle {
    pub remote: SocketAddr,
    killed: Arc<AtomicBool>,
}

impl ConnHandle {
    /// Marks the connection dead: nothing more is read or written and hyper closes it.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
    }
}

enum Incoming {
    Plain(TcpListener),
    /// Handshaken TLS connections from the accept task.
    Tls {
        ready: mpsc::Receiver<(Conn, SocketAddr)>,
        accept_task: JoinHandle<()>,
    },
}

pub struct KillableListener {
    incoming: Incoming,
    local: SocketAddr,
}

impl KillableListener {
    pub fn new(inner: TcpListener) -> io::Result<Self> {
        Ok(KillableListener {
            local: inner.local_addr()?,
            incoming: Incoming::Plain(inner),
        })
    }

    /// Serves TLS: an accept task hands each connection to its own handshake task.
    pub fn tls(inner: TcpListener, acceptor: TlsAcceptor) -> io::Result<Self> {
        let local = inner.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let accept_task = tokio::spawn(async move {
            loop {
                let (stream, remote) = accept_tcp(&inner).await;
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((Conn::Tls(Box::new(tls)), remote)).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%error, %remote, "sandbox TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%remote, "sandbox TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(KillableListener {
            incoming: Incoming::Tls { ready, accept_task },
            local,
        })
    }
}

impl Drop for KillableListener {
    fn drop(&mut self) {
        if let Incoming::Tls { accept_task, .. } = &self.incoming {
            accept_task.abort();
        }
    }
}

async fn accept_tcp(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                let _ = stream.set_nodelay(true);
                return (stream, remote);
            }
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "sandbox accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

impl Listener for KillableListener {
    type Io = KillableStream;
    type Addr = ConnHandle;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (conn, remote) = match &mut self.incoming {
            Incoming::Plain(listener) => {
                let (stream, remote) = accept_tcp(listener).await;
                (Conn::Plain(stream), remote)
            }
            Incoming::Tls { ready, .. } => match ready.recv().await {
                Some(next) => next,
                // The accept task is gone (it never ends on its own): accept nothing more.
                None => std::future::pending().await,
            },
        };
        let killed = Arc::new(AtomicBool::new(false));
        let io = KillableStream {
            inner: conn,
            killed: killed.clone(),
        };
        (io, ConnHandle { remote, killed })
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(ConnHandle {
            remote: self.local,
            killed: Arc::new(AtomicBool::new(false)),
        })
    }
}

/// A plain or TLS connection.
enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connected<IncomingStream<'_, KillableListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, KillableListener>) -> Self {
        stream.remote_addr().clone()
    }
}

pub struct KillableStream {
    inner: Conn,
    killed: Arc<AtomicBool>,
}

impl KillableStream {
    fn dead(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }
}

fn aborted() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection dropped by a sandbox fault",
    )
}

impl AsyncRead for KillableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.dead() {
            return Poll::Ready(Err(aborted()));
        }
        match &mut self.get_mut().inner {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.dead() {
            return Poll::Ready(Err(aborted()));
        }
        match &mut self.get_mut().inner {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.dead() {
            return Poll::Ready(Err(aborted()));
        }
        match &mut self.get_mut().inner {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
