//! Serving the application over TCP with limits a hostile client cannot wear down: every
//! connection must send its request head within a timeout (which also closes idle
//! keep-alive connections), at most so many connections are open at once, from the server's
//! whole public and from any one peer address, and a connection over a limit is answered
//! with ECS's throttling error and closed, never left hanging (nor refused by a server out
//! of file descriptors).

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ServerError;
use crate::wire::{render_error, request_id, Format};

/// The HTTP limits, with their defaults (`stockade serve` flags override them).
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// How long a connection may take to send a request head, counted from when the server
    /// starts waiting for one: a half-sent request, and an idle keep-alive connection, are
    /// closed after it.
    pub header_read_timeout: Duration,
    /// Connections open at once, from everyone.
    pub max_connections: usize,
    /// Connections open at once from one peer address.
    pub max_connections_per_peer: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            // Idle connections cost a task and a descriptor each: many thousands can be held
            // without slowing anyone; the cap exists to keep descriptors for the store.
            max_connections: 16_384,
            max_connections_per_peer: 256,
        }
    }
}

impl HttpLimits {
    /// These limits with `max_connections` lowered, if need be, to leave room in the
    /// process's file-descriptor limit for the store, refusals and the listener.
    pub fn within_descriptors(mut self, descriptors: Option<u64>) -> HttpLimits {
        if let Some(limit) = descriptors {
            // Admitted connections, plus the refusals answered meanwhile (a quarter as many,
            // see `serve`), plus 80 for the store, the listener and the rest of the process.
            let room = (limit.saturating_sub(80) * 4 / 5).max(16) as usize;
            self.max_connections = self.max_connections.min(room);
        }
        self
    }
}

/// The soft limit on open files of this process (Linux; `None` elsewhere).
pub fn descriptor_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Open connections per peer address.
#[derive(Default)]
struct Peers(Mutex<HashMap<IpAddr, usize>>);

/// A peer's place, given back when its connection ends.
struct PeerSlot {
    peers: Arc<Peers>,
    ip: IpAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut map = self.peers.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

impl Peers {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<PeerSlot> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            peers: self.clone(),
            ip,
        })
    }
}

/// A connection admitted under the limits: its places are given back when it is dropped.
struct Admitted {
    _total: OwnedSemaphorePermit,
    _peer: PeerSlot,
}

/// The TLS side of a listener: a certificate chain and its key, read from PEM files.
#[derive(Clone)]
pub struct Tls(tokio_rustls::TlsAcceptor);

impl Tls {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key (PKCS #8, PKCS #1 or
    /// SEC 1). TLS 1.2 and 1.3 with rustls's default suites; HTTP/1.1 is offered by ALPN.
    pub fn from_pem_files(cert: &std::path::Path, key: &std::path::Path) -> Result<Tls, String> {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect())
            .map_err(|e| format!("{}: {e}", cert.display()))?;
        if chain.is_empty() {
            return Err(format!("{}: no certificate", cert.display()));
        }
        let key =
            PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| format!("certificate and key: {e}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }
}

/// Serves `app` on `listener` under `limits` until `shutdown` resolves, then lets the open
/// connections finish their requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_with(listener, app, limits, None, shutdown).await
}

/// [`serve`], over TLS when `tls` is given. The handshake must finish within the
/// header-read timeout, and counts against the connection caps like a request head.
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let total = Arc::new(Semaphore::new(limits.max_connections));
    // Refusals are answered by tasks of their own, themselves bounded: past this many at
    // once, a connection over the limit is closed without an answer.
    let refusing = Arc::new(Semaphore::new(limits.max_connections / 4 + 16));
    let peers = Arc::new(Peers::default());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was accepted: the
                    // backlog waits; try again shortly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let admitted = match (
            total.clone().try_acquire_owned(),
            peers.take(peer.ip(), limits.max_connections_per_peer),
        ) {
            (Ok(total), Some(peer)) => Admitted {
                _total: total,
                _peer: peer,
            },
            (total, _) => {
                let why = if total.is_err() {
                    ServerError::Throttling
                } else {
                    ServerError::ThrottlingUser
                };
                // Over TLS the refusal would need a handshake first, the very work the cap
                // saves: such a connection is closed unanswered.
                if tls.is_none() {
                    if let Ok(permit) = refusing.clone().try_acquire_owned() {
                        tokio::spawn(refuse(stream, why, permit));
                    }
                }
                continue;
            }
        };
        let service = TowerToHyperService::new(app.clone());
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        match &tls {
            None => {
                let io = TokioIo::new(EcsParseErrors::new(stream));
                let connection = watcher.watch(builder.serve_connection(io, service));
                tokio::spawn(async move {
                    let _ = connection.await;
                    drop(admitted);
                });
            }
            Some(Tls(acceptor)) => {
                let (acceptor, timeout) = (acceptor.clone(), limits.header_read_timeout);
                tokio::spawn(async move {
                    // A client that never finishes its handshake is closed like one that
                    // never finishes its request head.
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(timeout, acceptor.accept(stream)).await
                    else {
                        return;
                    };
                    let io = TokioIo::new(EcsParseErrors::new(stream));
                    let _ = watcher.watch(builder.serve_connection(io, service)).await;
                    drop(admitted);
                });
            }
        }
    }
    graceful.shutdown().await;
    Ok(())
}

/// Answers one request on a connection over a limit with the throttling error, then closes
/// it; a client that sends nothing within a second is closed unanswered.
async fn refuse(stream: tokio::net::TcpStream, why: ServerError, _permit: OwnedSemaphorePermit) {
    let why = Arc::new(why);
    let service = hyper::service::service_fn(move |_request| {
        let why = why.clone();
        async move {
            Ok::<_, std::convert::Infallible>(render_error(
                Format::Json,
                "stockade",
                &request_id(),
                &why,
            ))
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(1))
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(Duration::from_secs(2), connection).await;
}

/// The connection as hyper sees it, with one change: the bare answers hyper's parser gives a
/// request it cannot read (a request line over 64 KiB, headers over its buffer, a malformed
/// head: status, `content-length: 0`, no body) are replaced by ECS error bodies, so every
/// answer a client gets has the ECS shape. Writes are not vectored, so each head arrives in
/// one buffer. Every answer the application makes has a body, so none is mistaken for one.
struct EcsParseErrors<S> {
    inner: S,
    /// A replacement being written, and how much of it is written.
    pending: Option<(Vec<u8>, usize)>,
}

impl<S> EcsParseErrors<S> {
    fn new(inner: S) -> Self {
        EcsParseErrors {
            inner,
            pending: None,
        }
    }

    /// The ECS answer replacing one of hyper's automatic ones.
    fn replacement(head: &[u8]) -> Option<Vec<u8>> {
        let why = if head.starts_with(b"HTTP/1.1 414 ") {
            ServerError::UriTooLong
        } else if head.starts_with(b"HTTP/1.1 431 ") {
            ServerError::HeadersTooLarge
        } else if head.starts_with(b"HTTP/1.1 400 ") {
            ServerError::MalformedRequest
        } else {
            return None;
        };
        let text = std::str::from_utf8(head).ok()?;
        let (status_line, rest) = text.split_once("\r\n")?;
        let headers = rest.strip_suffix("\r\n\r\n")?;
        if !headers
            .lines()
            .any(|l| l.eq_ignore_ascii_case("content-length: 0"))
        {
            return None;
        }
        let body = crate::wire::error_json(&why, "stockade", &request_id());
        Some(
            format!(
                "{status_line}\r\ncontent-type: application/json;charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for EcsParseErrors<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for EcsParseErrors<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        let this = &mut *self;
        if this.pending.is_none() {
            match EcsParseErrors::<S>::replacement(buf) {
                Some(bytes) => this.pending = Some((bytes, 0)),
                None => return std::pin::Pin::new(&mut this.inner).poll_write(cx, buf),
            }
        }
        // Write the whole replacement, then tell hyper its own buffer was written.
        while let Some((bytes, written)) = &mut this.pending {
            if *written == bytes.len() {
                this.pending = None;
                return Poll::Ready(Ok(buf.len()));
            }
            match std::pin::Pin::new(&mut this.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bare_parse_error_answers_are_replaced() {
        let bare = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let replaced = String::from_utf8(EcsParseErrors::<()>::replacement(bare).unwrap()).unwrap();
        assert!(replaced.starts_with("HTTP/1.1 414 URI Too Long\r\n"));
        assert!(
            replaced.contains("\"Code\":\"InvalidParameter\""),
            "{replaced}"
        );
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 120\r\n\r\n";
        assert!(
            EcsParseErrors::<()>::replacement(ours).is_none(),
            "an answer with a body is ours"
        );
        assert!(
            EcsParseErrors::<()>::replacement(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .is_none()
        );
    }
}
