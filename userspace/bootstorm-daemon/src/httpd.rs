//! Boot files over HTTP, from the same root and [`FileCache`] as TFTP: GET and HEAD with
//! Content-Length, single byte ranges (RFC 9110 14), for iPXE and UEFI HTTP boot, which fetch
//! kernels and initrds far faster over TCP than over TFTP. Bodies are slices of the cached
//! `Arc<[u8]>`: no copy of the file per client.
//!
//! Built on axum (hyper, tokio) on its own threads, so the DHCP and TFTP workers never share a
//! runtime with it.

use crate::files::{FileCache, FileError};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// HTTP settings.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// Listen address.
    pub listen: SocketAddrV4,
    /// Root directory.
    pub root: PathBuf,
    /// Runtime threads.
    pub workers: usize,
    /// Largest file served.
    pub max_file_size: u64,
}

/// A running HTTP server.
pub struct HttpRunning {
    thread: Option<JoinHandle<()>>,
    shutdown: Arc<AtomicBool>,
    local: SocketAddrV4,
}

impl HttpRunning {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
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

async fn serve_file(
    State(cache): State<Arc<FileCache>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
        )
            .into_response();
    }
    let path = percent_encoding::percent_decode_str(uri.path()).collect::<Vec<u8>>();
    let data = match cache.get(&path, false) {
        Ok(d) => d,
        Err(e) => {
            let status = match e {
                FileError::NotFound | FileError::NotAFile => StatusCode::NOT_FOUND,
                FileError::BadName(_) | FileError::OutsideRoot => StatusCode::FORBIDDEN,
                FileError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            };
            tracing::info!(target: "bootstorm::http", event = "refused", path = %String::from_utf8_lossy(&path), status = status.as_u16(), reason = %e);
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

/// Binds and starts the HTTP server on its own runtime thread. `shutdown` stops it too.
pub fn start(s: &HttpSettings, shutdown: Arc<AtomicBool>) -> anyhow::Result<HttpRunning> {
    use anyhow::Context;
    let cache = Arc::new(
        FileCache::new(&s.root, s.max_file_size)
            .with_context(|| format!("HTTP root {}", s.root.display()))?,
    );
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
    let app = Router::new().fallback(serve_file).with_state(cache);
    let flag = shutdown.clone();
    let thread = std::thread::Builder::new()
        .name("http-main".into())
        .spawn(move || {
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
                    return;
                };
                let stop = async move {
                    while !flag.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                };
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
                {
                    tracing::error!(error = %e, "HTTP server failed");
                }
            });
        })?;
    tracing::info!(listen = %local, root = %s.root.display(), "serving HTTP");
    Ok(HttpRunning {
        thread: Some(thread),
        shutdown,
        local,
    })
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
