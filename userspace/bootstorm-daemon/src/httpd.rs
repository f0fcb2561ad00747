//! Boot files over HTTP, from the same root and [`FileCache`] as TFTP: GET and HEAD with
//! Content-Length, single byte ranges (RFC 9110 14), for iPXE and UEFI HTTP boot, which fetch
//! kernels and initrds far faster over TCP than over TFTP. Bodies are slices of the cached
//! `Arc<[u8]>`: no copy of the file per client.
//!
//! Built on axum (hyper, tokio) on its own threads, so the DHCP and TFTP workers never share a
//! runtime with it. The accept loop is ours, not `axum::serve`'s, because a boot server must not
//! let HTTP clients take what DHCP and TFTP need: every connection has a header timeout (a
//! request head, or the next one on a kept-alive connection, must arrive within it), a send
//! timeout (a client that stops reading is dropped), and counts against a cap per client address
//! and a cap in total, sized at start-up so the descriptors TFTP, DHCP and the control socket
//! need stay free. A connection over a cap is closed at once and counted.

use crate::files::{FileCache, FileError};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, Version, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddrV4};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

/// HTTP settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpSettings {
    /// Listen address.
    pub listen: SocketAddrV4,
    /// Root directory.
    pub root: PathBuf,
    /// Runtime threads.
    pub workers: usize,
    /// Largest file served.
    pub max_file_size: u64,
    /// A request head (or, on a kept-alive connection, the next one) must arrive within this.
    pub header_timeout: Duration,
    /// A connection whose client takes nothing of the response for this long is closed.
    pub send_timeout: Duration,
    /// Connections open at once, in total.
    pub max_connections: usize,
    /// Connections open at once from one client address.
    pub max_per_client: usize,
}

/// Default `[http] header_timeout`. iPXE and UEFI send their request at once after connecting
/// and reuse a connection right after a response, so 10 s is far beyond any real client, while
/// a client that connects and says nothing (or half a request) lets its descriptor go soon.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `[http] send_timeout`.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `[http] max_connections_per_client`: a firmware fetches a few files one after
/// another, so a real machine holds one or two; 256 leaves room for a hypervisor booting many
/// VMs behind one address (and for the load generator's tests of 100 machines at once), while
/// one address still cannot hold more than 256 of the 16,384.
pub const DEFAULT_MAX_PER_CLIENT: usize = 256;
/// Default `[http] max_connections`, before the open-file budget caps it.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;

impl HttpSettings {
    /// The settings with every limit at its default.
    pub fn new(listen: SocketAddrV4, root: PathBuf) -> HttpSettings {
        HttpSettings {
            listen,
            root,
            workers: 2,
            max_file_size: 4 << 30,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_per_client: DEFAULT_MAX_PER_CLIENT,
        }
    }
}

/// Counters of the HTTP server.
#[derive(Debug, Default)]
pub struct HttpStats {
    /// Connections accepted and served.
    pub connections: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections closed at once: the client address already had `max_per_client`.
    pub refused_per_client: AtomicU64,
    /// Connections closed at once: `max_connections` were open.
    pub refused_total: AtomicU64,
    /// Connections closed by the header or send timeout, or another connection error.
    pub timed_out: AtomicU64,
    /// Requests answered (any status).
    pub requests: AtomicU64,
}

/// Counters as JSON, for the control socket.
pub fn stats_json(s: &HttpStats) -> serde_json::Value {
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    serde_json::json!({
        "connections": g(&s.connections), "open": g(&s.open), "requests": g(&s.requests),
        "refused_per_client": g(&s.refused_per_client), "refused_total": g(&s.refused_total),
        "timed_out": g(&s.timed_out),
    })
}

/// A running HTTP server.
pub struct HttpRunning {
    thread: Option<JoinHandle<()>>,
    shutdown: Arc<AtomicBool>,
    local: SocketAddrV4,
    stats: Arc<HttpStats>,
}

impl HttpRunning {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<HttpStats> {
        &self.stats
    }

    /// Stops the server (in-flight responses finish) and joins its thread.
    pub fn stop(mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A part of a cached file, handed to the response body without copying.
struct Slice {
    data: Arc<[u8]>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for Slice {
    fn as_ref(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }
}

/// What a Range header asks for, against a file of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeAsk {
    /// No (usable) range: the whole file. Several ranges are answered whole too (RFC 9110 14.2
    /// lets a server ignore Range), which every boot client copes with.
    Whole,
    /// Bytes `start..end` (end exclusive).
    Part(usize, usize),
    /// Nothing of the file matches: 416.
    Unsatisfiable,
}

/// Interprets a Range header value (`bytes=a-b`, `bytes=a-`, `bytes=-n`).
pub fn parse_range(value: &str, len: usize) -> RangeAsk {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| s.parse::<usize>().ok();
    let (start, end) = match (a.is_empty(), b.is_empty()) {
        (false, false) => match (num(a), num(b)) {
            (Some(s), Some(e)) if s <= e => (s, e.saturating_add(1).min(len)),
            _ => return RangeAsk::Whole,
        },
        (false, true) => match num(a) {
            Some(s) => (s, len),
            None => return RangeAsk::Whole,
        },
        (true, false) => match num(b) {
            Some(0) => return RangeAsk::Unsatisfiable,
            Some(n) => (len.saturating_sub(n), len),
            None => return RangeAsk::Whole,
        },
        (true, true) => return RangeAsk::Whole,
    };
    if start >= len {
        return RangeAsk::Unsatisfiable;
    }
    RangeAsk::Part(start, end)
}

/// What the handler serves from: the (maybe shared) cache and HTTP's own size limit.
#[derive(Clone)]
struct Files {
    cache: Arc<FileCache>,
    limit: u64,
    note: Option<crate::tftpd::BootNote>,
}

/// The client of a request (put in its extensions by [`CountRequests`]).
#[derive(Clone, Copy)]
struct Client(std::net::SocketAddr);

impl Files {
    /// Tells the boot-session registry what `client` got: `Ok(bytes)` served, or the refusal.
    fn note(&self, client: Option<&Client>, path: &[u8], got: Result<u64, String>) {
        let (Some(note), Some(Client(std::net::SocketAddr::V4(peer)))) = (&self.note, client)
        else {
            return;
        };
        let (proto, name) = ("http", String::from_utf8_lossy(path).into());
        note(
            *peer.ip(),
            match got {
                // Handed to the connection; the body's end is not watched.
                Ok(bytes) => crate::boots::Step::FileDone {
                    proto,
                    name,
                    bytes,
                    millis: 0,
                    resent: 0,
                },
                Err(reason) => crate::boots::Step::FileFailed {
                    proto,
                    name,
                    reason: reason.into(),
                },
            },
        );
    }
}

async fn serve_file(
    State(files): State<Files>,
    method: Method,
    version: Version,
    uri: Uri,
    headers: HeaderMap,
    client: Option<axum::Extension<Client>>,
) -> Response {
    let client = client.map(|c| c.0);
    // RFC 9112 3.2: "A server MUST respond with a 400 (Bad Request) status code to any
    // HTTP/1.1 request message that lacks a Host header field".
    if version == Version::HTTP_11 && !headers.contains_key(header::HOST) {
        tracing::info!(target: "bootstorm::http", event = "refused", path = %uri.path(), status = 400, reason = "HTTP/1.1 request without Host");
        return (StatusCode::BAD_REQUEST, "HTTP/1.1 request without Host\n").into_response();
    }
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
        )
            .into_response();
    }
    let path = percent_encoding::percent_decode_str(uri.path()).collect::<Vec<u8>>();
    let data = match files.cache.get_within(&path, false, files.limit) {
        Ok(d) => d,
        Err(e) => {
            let status = match e {
                FileError::NotFound | FileError::NotAFile => StatusCode::NOT_FOUND,
                FileError::BadName(_) | FileError::OutsideRoot => StatusCode::FORBIDDEN,
                FileError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            };
            tracing::info!(target: "bootstorm::http", event = "refused", path = %String::from_utf8_lossy(&path), status = status.as_u16(), reason = %e);
            files.note(
                client.as_ref(),
                &path,
                Err(format!("{} {e}", status.as_u16())),
            );
            return (status, format!("{e}\n")).into_response();
        }
    };
    let len = data.len();
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map_or(RangeAsk::Whole, |v| parse_range(v, len));
    let (status, start, end) = match range {
        RangeAsk::Whole => (StatusCode::OK, 0, len),
        RangeAsk::Part(s, e) => (StatusCode::PARTIAL_CONTENT, s, e),
        RangeAsk::Unsatisfiable => {
            let cr = HeaderValue::from_str(&format!("bytes */{len}"))
                .unwrap_or(HeaderValue::from_static("bytes */0"));
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, cr)],
            )
                .into_response();
        }
    };
    tracing::info!(target: "bootstorm::http", event = "serve", path = %String::from_utf8_lossy(&path), status = status.as_u16(), bytes = end - start);
    if method == Method::GET {
        files.note(client.as_ref(), &path, Ok((end - start) as u64));
    }
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(Bytes::from_owner(Slice { data, start, end }))
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{len}", start, end - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    r
}

/// Connections a storm may have waiting to be accepted: std's `TcpListener::bind` asks for 128,
/// and 3,000 UEFI HTTP clients at once then overflowed the accept queue 2,234 times (each a SYN
/// retried a second later). The kernel caps it at `net.core.somaxconn` (4096 by default).
const LISTEN_BACKLOG: i32 = 16_384;

/// A non-blocking listening socket on `addr` with [`LISTEN_BACKLOG`].
fn listen(addr: std::net::SocketAddrV4) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    sock.set_reuse_address(true)?;
    sock.bind(&std::net::SocketAddr::V4(addr).into())?;
    sock.listen(LISTEN_BACKLOG)?;
    sock.set_nonblocking(true)?;
    Ok(sock.into())
}

/// Open connections per client address, and in total.
#[derive(Default)]
struct Conns {
    per_client: HashMap<IpAddr, usize>,
    total: usize,
}

/// A connection's place in [`Conns`], given back when the connection ends.
struct ConnGuard {
    conns: Arc<Mutex<Conns>>,
    ip: IpAddr,
    stats: Arc<HttpStats>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Ok(mut c) = self.conns.lock() {
            c.total = c.total.saturating_sub(1);
            if let Some(n) = c.per_client.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    c.per_client.remove(&self.ip);
                }
            }
        }
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Admits a connection from `ip` under the caps, or says which cap it is over.
fn admit(
    conns: &Arc<Mutex<Conns>>,
    s: &HttpSettings,
    ip: IpAddr,
    stats: &Arc<HttpStats>,
) -> Result<ConnGuard, &'static str> {
    let mut c = conns.lock().map_err(|_| "poisoned")?;
    if c.total >= s.max_connections {
        stats.refused_total.fetch_add(1, Ordering::Relaxed);
        return Err("max_connections");
    }
    let n = c.per_client.entry(ip).or_insert(0);
    if *n >= s.max_per_client {
        stats.refused_per_client.fetch_add(1, Ordering::Relaxed);
        return Err("max_connections_per_client");
    }
    *n += 1;
    c.total += 1;
    stats.open.fetch_add(1, Ordering::Relaxed);
    Ok(ConnGuard {
        conns: conns.clone(),
        ip,
        stats: stats.clone(),
    })
}

/// A TCP stream whose writes fail with `TimedOut` once the peer has taken nothing for
/// `timeout` (a client that stops reading its response holds a descriptor and memory otherwise).
struct SendTimeout {
    inner: tokio::net::TcpStream,
    timeout: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl SendTimeout {
    /// Passes a write's result on: progress clears the stall timer; no progress (Pending) starts
    /// it, or ends the connection with `TimedOut` once it has run out.
    fn after<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if r.is_ready() {
            self.stalled = None;
            return r;
        }
        let timeout = self.timeout;
        let t = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match t.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "client takes nothing of the response",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl tokio::io::AsyncRead for SendTimeout {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SendTimeout {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.after(cx, r)
    }

    // Vectored writes pass through: without them hyper flattens every response into its own
    // buffer (a copy of each 1 MiB body; 3,000 UEFI HTTP boots took 60% longer).
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.after(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.after(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Binds and starts the HTTP server on its own runtime thread. `shutdown` stops it too.
pub fn start(s: &HttpSettings, shutdown: Arc<AtomicBool>) -> anyhow::Result<HttpRunning> {
    use anyhow::Context;
    let cache = Arc::new(
        FileCache::new(&s.root, s.max_file_size)
            .with_context(|| format!("HTTP root {}", s.root.display()))?,
    );
    start_shared(s, cache, shutdown, None)
}

/// [`start`] with a file cache shared with another service (TFTP from the same root); files
/// over `s.max_file_size` are refused here whatever the cache allows; `note` hears of each file
/// served or refused (the boot-session registry).
pub fn start_shared(
    s: &HttpSettings,
    cache: Arc<FileCache>,
    shutdown: Arc<AtomicBool>,
    note: Option<crate::tftpd::BootNote>,
) -> anyhow::Result<HttpRunning> {
    use anyhow::Context;
    let std_listener = listen(s.listen).with_context(|| format!("binding HTTP {}", s.listen))?;
    let local = match std_listener.local_addr()? {
        std::net::SocketAddr::V4(a) => a,
        std::net::SocketAddr::V6(_) => anyhow::bail!("HTTP listens on IPv4"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(s.workers.max(1))
        .thread_name("http")
        .enable_all()
        .build()?;
    let app = Router::new().fallback(serve_file).with_state(Files {
        cache,
        limit: s.max_file_size,
        note,
    });
    let stats = Arc::new(HttpStats::default());
    let (flag, settings, stats2) = (shutdown.clone(), s.clone(), stats.clone());
    let thread = std::thread::Builder::new()
        .name("http-main".into())
        .spawn(move || {
            rt.block_on(accept_loop(std_listener, app, settings, flag, stats2));
        })?;
    tracing::info!(listen = %local, root = %s.root.display(), max_connections = s.max_connections,
        max_per_client = s.max_per_client, "serving HTTP");
    Ok(HttpRunning {
        thread: Some(thread),
        shutdown,
        local,
        stats,
    })
}

/// Accepts connections until `stop`, each served on its own task under the caps and timeouts;
/// then lets the open ones finish their responses.
async fn accept_loop(
    std_listener: std::net::TcpListener,
    app: Router,
    s: HttpSettings,
    stop: Arc<AtomicBool>,
    stats: Arc<HttpStats>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
        return;
    };
    let conns = Arc::new(Mutex::new(Conns::default()));
    let (quit_tx, quit_rx) = tokio::sync::watch::channel(false);
    let mut last_error_log: Option<std::time::Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        let accepted =
            match tokio::time::timeout(Duration::from_millis(100), listener.accept()).await {
                Err(_) => continue, // look at the stop flag
                Ok(a) => a,
            };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors or memory: the caps should prevent it; say so at most
                // once a minute and give the system a moment.
                if last_error_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    tracing::warn!(error = %e, "HTTP accept failed");
                    last_error_log = Some(std::time::Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let guard = match admit(&conns, &s, peer.ip(), &stats) {
            Ok(g) => g,
            Err(cap) => {
                tracing::debug!(target: "bootstorm::http", event = "refused", client = %peer, cap, "connection over its cap");
                drop(stream);
                continue;
            }
        };
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let io = hyper_util::rt::TokioIo::new(SendTimeout {
            inner: stream,
            timeout: s.send_timeout,
            stalled: None,
        });
        let counted = CountRequests {
            inner: app.clone(),
            stats: stats.clone(),
            peer,
        };
        let svc = hyper_util::service::TowerToHyperService::new(counted);
        let header_timeout = s.header_timeout;
        let (stats3, mut quit) = (stats.clone(), quit_rx.clone());
        tokio::spawn(async move {
            let _guard = guard;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true)
                .serve_connection(io, svc);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = quit.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                stats3.timed_out.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(target: "bootstorm::http", event = "closed", client = %peer, error = %e);
            }
        });
    }
    let _ = quit_tx.send(true);
    // Let open responses finish, within a bound.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while stats.open.load(Ordering::Relaxed) > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The router, counting requests.
#[derive(Clone)]
struct CountRequests {
    inner: Router,
    stats: Arc<HttpStats>,
    peer: std::net::SocketAddr,
}

impl tower_service::Service<axum::http::Request<hyper::body::Incoming>> for CountRequests {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future =
        <Router as tower_service::Service<axum::http::Request<hyper::body::Incoming>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower_service::Service::<axum::http::Request<hyper::body::Incoming>>::poll_ready(
            &mut self.inner,
            cx,
        )
    }

    fn call(&mut self, mut req: axum::http::Request<hyper::body::Incoming>) -> Self::Future {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        req.extensions_mut().insert(Client(self.peer));
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), RangeAsk::Part(0, 100));
        assert_eq!(parse_range("bytes=900-", 1000), RangeAsk::Part(900, 1000));
        assert_eq!(parse_range("bytes=-100", 1000), RangeAsk::Part(900, 1000));
        assert_eq!(parse_range("bytes=-5000", 1000), RangeAsk::Part(0, 1000));
        assert_eq!(
            parse_range("bytes=500-99999", 1000),
            RangeAsk::Part(500, 1000)
        );
        assert_eq!(parse_range("bytes=1000-", 1000), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), RangeAsk::Whole);
        assert_eq!(parse_range("bytes=9-3", 1000), RangeAsk::Whole);
        assert_eq!(parse_range("lines=1-2", 1000), RangeAsk::Whole);
        assert_eq!(parse_range("bytes=x-", 1000), RangeAsk::Whole);
        assert_eq!(parse_range("bytes=0-0", 0), RangeAsk::Unsatisfiable);
    }
}
