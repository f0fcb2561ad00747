//! The API's listeners, bounded: at most `max` connections open at once (the next one waits in
//! the kernel's backlog until one closes), and a connection on which nothing is read or written
//! for `idle` is closed. Without both, clients that open connections and send nothing (or send
//! a header a byte a minute) would hold the daemon's descriptors and, with the cap alone, lock
//! everyone else out of the API; hyper, as axum serves it, has no header timeout of its own.

use axum::serve::Listener;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Connections at once on each API listener.
pub const MAX_CONNECTIONS: usize = 256;
/// A connection idle this long is closed (a browser polling once a second is never idle so long).
pub const IDLE: Duration = Duration::from_secs(60);

/// A listener that holds a permit per open connection.
pub struct Capped<L> {
    inner: L,
    permits: Arc<Semaphore>,
    idle: Duration,
}

impl<L: Listener> Capped<L> {
    pub fn new(inner: L, max: usize, idle: Duration) -> Self {
        Capped {
            inner,
            permits: Arc::new(Semaphore::new(max.max(1))),
            idle,
        }
    }
}

impl<L: Listener> Listener for Capped<L> {
    type Io = Held<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // The semaphore is never closed, so acquiring only waits.
        let permit = loop {
            if let Ok(p) = self.permits.clone().acquire_owned().await {
                break p;
            }
        };
        let (io, addr) = self.inner.accept().await;
        let held = Held {
            io,
            _permit: permit,
            idle: self.idle,
            deadline: Box::pin(tokio::time::sleep(self.idle)),
        };
        (held, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection with its permit (given back when it is dropped) and its idle deadline.
pub struct Held<T> {
    io: T,
    _permit: OwnedSemaphorePermit,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<T> Held<T> {
    /// After progress: the deadline moves on. While waiting: an error once it has passed.
    fn watch<R>(&mut self, cx: &mut Context<'_>, p: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match p {
            Poll::Ready(r) => {
                let idle = self.idle;
                self.deadline.as_mut().reset(Instant::now() + idle);
                Poll::Ready(r)
            }
            Poll::Pending => {
                ready!(self.deadline.as_mut().poll(cx));
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "API connection idle",
                )))
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Held<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let p = Pin::new(&mut this.io).poll_read(cx, buf);
        this.watch(cx, p)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Held<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let p = Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch(cx, p)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let p = Pin::new(&mut this.io).poll_flush(cx);
        this.watch(cx, p)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let p = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch(cx, p)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    async fn get_ok(addr: std::net::SocketAddr) -> String {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test(flavor = "current_thread")]
    async fn idle_connections_are_closed_and_give_their_place_back() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let idle = Duration::from_millis(300);
        let app = Router::new().route("/", get(|| async { "hello" }));
        tokio::spawn(async move { axum::serve(Capped::new(l, 2, idle), app).await });

        // Two connections that say nothing take both places (their idle time counts from when
        // the server accepted them, after `began`).
        let began = Instant::now();
        let mut quiet = [
            TcpStream::connect(addr).await.unwrap(),
            TcpStream::connect(addr).await.unwrap(),
        ];
        // The third is answered, but only once an idle one has been closed.
        let page = tokio::time::timeout(Duration::from_secs(20), get_ok(addr))
            .await
            .expect("answered once an idle connection was closed");
        assert!(
            page.starts_with("HTTP/1.1 200") && page.ends_with("hello"),
            "{page}"
        );
        assert!(began.elapsed() >= idle, "{:?}", began.elapsed());
        // The quiet ones were closed by the server (end of file, or a reset).
        for q in &mut quiet {
            let mut b = [0u8; 16];
            let n = tokio::time::timeout(Duration::from_secs(20), q.read(&mut b))
                .await
                .expect("closed by the server");
            assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
        }
        // A connection in use is not idle: ten requests 100 ms apart on one connection, each
        // under the idle time but together longer than it.
        let mut c = TcpStream::connect(addr).await.unwrap();
        for _ in 0..10 {
            c.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
            let mut b = [0u8; 512];
            let n = tokio::time::timeout(Duration::from_secs(20), c.read(&mut b))
                .await
                .unwrap()
                .unwrap();
            assert!(b[..n].starts_with(b"HTTP/1.1 200"));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
