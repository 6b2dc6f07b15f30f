//! Accepting connections: binding, the per-address connection limit, and TLS.
//!
//! Every listener (HTTP and both TCP servers) goes through [`spawn_acceptor`]: it accepts,
//! refuses an address that already holds too many connections, runs the TLS handshake in a
//! task of its own (so a slow handshake never holds up the next accept), and hands ready
//! [`Conn`]s to the server that owns the listener. A [`Conn`] carries a guard that gives its
//! address's slot back when the connection is dropped.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Counts open connections per client address, across all listeners.
pub struct ConnLimiter {
    per_ip: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl ConnLimiter {
    pub fn new(per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            per_ip: per_ip.max(1),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection from `ip`, or `None` if it holds too many.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ConnGuard> {
        let mut open = self.open.lock();
        let count = open.entry(ip).or_insert(0);
        if *count >= self.per_ip {
            return None;
        }
        *count += 1;
        Some(ConnGuard {
            limiter: self.clone(),
            ip,
        })
    }
}

/// Gives its address's slot back on drop.
pub struct ConnGuard {
    limiter: Arc<ConnLimiter>,
    ip: IpAddr,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut open = self.limiter.open.lock();
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// A plain or TLS byte stream.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// An accepted connection, ready for its protocol.
pub struct Conn {
    pub stream: Stream,
    pub peer: SocketAddr,
    /// What the connection may still read; unlimited unless its handler says otherwise.
    pub budget: ReadBudget,
    _guard: ConnGuard,
}

/// Bytes a connection may still read. A WebSocket that has not authenticated gets a small
/// budget, so that a client that never shows a token cannot make the server buffer a large
/// message for it; authenticating lifts it. When it runs out, reading fails and the
/// connection ends.
#[derive(Debug, Clone)]
pub struct ReadBudget(Arc<std::sync::atomic::AtomicI64>);

impl Default for ReadBudget {
    fn default() -> Self {
        Self(Arc::new(std::sync::atomic::AtomicI64::new(i64::MAX)))
    }
}

impl ReadBudget {
    /// From now on, at most `bytes` more may be read.
    pub fn limit(&self, bytes: usize) {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.0.store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// No limit any more.
    pub fn lift(&self) {
        self.0.store(i64::MAX, std::sync::atomic::Ordering::Relaxed);
    }

    /// Counts `n` bytes read; false once the budget is overdrawn.
    fn spend(&self, n: usize) -> bool {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let left = self.0.fetch_sub(n, std::sync::atomic::Ordering::Relaxed);
        // The unlimited budget is never worth counting down to zero.
        if left > i64::MAX / 2 {
            self.0.store(i64::MAX, std::sync::atomic::Ordering::Relaxed);
            return true;
        }
        left >= n
    }
}

/// How a listener tells an over-limit client no, in its own protocol, before closing.
#[derive(Clone, Copy)]
pub enum RefuseWith {
    /// A plain HTTP 429 response.
    Http,
    /// One line of the listener's protocol (store-lobby-tcp.md's error line).
    Line(&'static [u8]),
}

impl RefuseWith {
    fn bytes(self) -> &'static [u8] {
        match self {
            RefuseWith::Http => b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: text/plain\r\ncontent-length: 40\r\nconnection: close\r\n\r\ntoo many connections from your address\r\n",
            RefuseWith::Line(line) => line,
        }
    }
}

/// Tells an over-limit client no and closes. An HTTP client is let finish sending its
/// request head first (briefly, and only a little of it), since clients do not expect an
/// answer before they have asked.
async fn refuse(mut tcp: TcpStream, refusal: RefuseWith) {
    use tokio::io::AsyncReadExt;
    if let RefuseWith::Http = refusal {
        let mut head = [0u8; 8192];
        let mut read = 0;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while read < head.len() {
                match tcp.read(&mut head[read..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => read += n,
                }
                if head[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        })
        .await;
    }
    let _ = tcp.write_all(refusal.bytes()).await;
    let _ = tcp.shutdown().await;
}

/// Settings shared by the acceptors of one server.
#[derive(Clone)]
pub struct AcceptConfig {
    pub tls: Option<TlsAcceptor>,
    pub limiter: Arc<ConnLimiter>,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
}

/// Accepts on `listener` until shutdown, sending ready connections to the returned queue.
pub fn spawn_acceptor(
    listener: TcpListener,
    protocol: &'static str,
    refusal: RefuseWith,
    config: AcceptConfig,
) -> mpsc::Receiver<Conn> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = config.shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("{protocol}: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let Some(guard) = config.limiter.acquire(peer.ip()) else {
                tracing::info!(
                    protocol,
                    ip = %peer.ip(),
                    limit = "connections_per_ip",
                    "connection refused: too many from this address"
                );
                config
                    .metrics
                    .connections_refused
                    .with_label_values(&[protocol])
                    .inc();
                if config.tls.is_none() {
                    tokio::spawn(refuse(tcp, refusal));
                }
                continue;
            };
            let tx = tx.clone();
            match config.tls.clone() {
                None => {
                    let conn = Conn {
                        stream: Stream::Plain(tcp),
                        peer,
                        budget: ReadBudget::default(),
                        _guard: guard,
                    };
                    if tx.send(conn).await.is_err() {
                        break;
                    }
                }
                Some(acceptor) => {
                    tokio::spawn(async move {
                        let handshake =
                            tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
                        match handshake {
                            Ok(Ok(tls)) => {
                                let conn = Conn {
                                    stream: Stream::Tls(Box::new(tls)),
                                    peer,
                                    budget: ReadBudget::default(),
                                    _guard: guard,
                                };
                                let _ = tx.send(conn).await;
                            }
                            Ok(Err(e)) => tracing::debug!("{protocol}: TLS handshake: {e}"),
                            Err(_) => tracing::debug!("{protocol}: TLS handshake timed out"),
                        }
                    });
                }
            }
        }
    });
    rx
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        if let Poll::Ready(Ok(())) = read
            && !this.budget.spend(buf.filled().len() - before)
        {
            return Poll::Ready(Err(io::Error::other(
                "read budget spent before authenticating",
            )));
        }
        read
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// The client's address, for handlers (`ConnectInfo<PeerAddr>`).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// Builds the TLS acceptor from PEM files.
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<TlsAcceptor> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| anyhow::anyhow!("tls cert {}: {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("tls cert {}: {e}", cert.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "tls cert {}: no certificate found",
        cert.display()
    );
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("tls key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
