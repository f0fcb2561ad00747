//! One machine's HTTP boot file download, sans-IO: a `GET` over a connection of its own
//! (HTTP/1.1, `Connection: close`, as UEFI HTTP boot and iPXE fetch), the response head parsed
//! with `httparse`, the body counted and checked like a TFTP download. Status 200 with a
//! `Content-Length` is required (every boot file server sends one for a static file; a chunked
//! reply is reported, not decoded). The caller owns the TCP connection: it writes
//! [`Get::request`], feeds what it reads to [`Get::on_data`] and the end of the stream to
//! [`Get::on_eof`]. Time is microseconds from the start of the run.

use crate::body::{Body, Expect, Mismatch};
use std::net::{Ipv4Addr, SocketAddrV4};

/// Why an HTTP download failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The URL is not `http://IPv4[:port]/path` (no DNS here; https is not spoken).
    BadUrl,
    /// The connection could not be made or broke.
    Connect,
    /// The response head is not HTTP, or too long.
    BadResponse,
    /// A status other than 200.
    Status,
    /// No Content-Length (or a chunked body).
    NoLength,
    /// The connection closed before the whole body came.
    Truncated,
    /// Nothing came for too long.
    Timeout,
    /// The file is not the size expected.
    WrongSize,
    /// Its sha256 is not the one expected.
    WrongHash,
}

impl Failure {
    /// Name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Failure::BadUrl => "http: bad url",
            Failure::Connect => "http: cannot connect",
            Failure::BadResponse => "http: bad response",
            Failure::Status => "http: status not 200",
            Failure::NoLength => "http: no content-length",
            Failure::Truncated => "http: connection closed early",
            Failure::Timeout => "http: timeout",
            Failure::WrongSize => "http: wrong size",
            Failure::WrongHash => "http: wrong sha256",
        }
    }
}

/// Where a URL points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Server address and port.
    pub addr: SocketAddrV4,
    /// Path (with query), starting with `/`.
    pub path: String,
}

/// True if a boot file name is an HTTP URL (fetched over HTTP whatever the profile says, as
/// iPXE and UEFI HTTP boot do).
pub fn is_url(file: &str) -> bool {
    // Bytes, not a str slice: a name from a server may put a multi-byte character there.
    file.as_bytes()
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"http://"))
}

/// The target of `file`: a URL as given, or a plain name on `server` at `port` (a profile that
/// fetches over HTTP from the next server).
pub fn target(file: &str, server: Ipv4Addr, port: u16) -> Result<Target, Failure> {
    if !is_url(file) {
        let path = format!("/{}", file.trim_start_matches('/'));
        return Ok(Target {
            addr: SocketAddrV4::new(server, port),
            path,
        });
    }
    let rest = &file[7..];
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| Failure::BadUrl)?),
        None => (hostport, 80),
    };
    let ip: Ipv4Addr = host.parse().map_err(|_| Failure::BadUrl)?;
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(Failure::BadUrl);
    }
    Ok(Target {
        addr: SocketAddrV4::new(ip, port),
        path: path.to_string(),
    })
}

/// Longest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

enum State {
    /// Reading the head (bytes so far).
    Head(Vec<u8>),
    /// Reading the body: bytes still to come.
    Body(u64),
    Done,
}

/// The download.
pub struct Get {
    target: Target,
    /// The request, built once.
    request: Vec<u8>,
    state: State,
    body: Body,
    timeout: u64,
    deadline: u64,
    result: Option<Result<u64, Failure>>,
}

impl Get {
    /// A download of `target`, started at `now`, given up after `timeout` us without data.
    pub fn new(target: Target, expect: Expect, now: u64, timeout: u64) -> Get {
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: bootstorm-loadgen\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            target.path, target.addr
        )
        .into_bytes();
        Get {
            target,
            request,
            state: State::Head(Vec::new()),
            body: Body::new(expect),
            timeout,
            deadline: now + timeout,
            result: None,
        }
    }

    /// Where it connects.
    pub fn addr(&self) -> SocketAddrV4 {
        self.target.addr
    }

    /// The request to write once connected.
    pub fn request(&self) -> &[u8] {
        &self.request
    }

    /// Done: the bytes received, or why it failed.
    pub fn result(&self) -> Option<Result<u64, Failure>> {
        self.result
    }

    /// When it next needs [`Get::on_timer`].
    pub fn deadline(&self) -> Option<u64> {
        self.result.is_none().then_some(self.deadline)
    }

    /// The connection failed.
    pub fn on_error(&mut self) {
        self.fail(Failure::Connect);
    }

    fn fail(&mut self, f: Failure) {
        if self.result.is_none() {
            self.result = Some(Err(f));
            self.state = State::Done;
        }
    }

    /// A timer fired: gives up if nothing came for the whole timeout.
    pub fn on_timer(&mut self, now: u64) {
        if self.deadline().is_some_and(|d| now >= d) {
            self.fail(Failure::Timeout);
        }
    }

    /// Bytes read from the connection.
    pub fn on_data(&mut self, now: u64, mut data: &[u8]) {
        if self.result.is_some() || data.is_empty() {
            return;
        }
        self.deadline = now + self.timeout;
        if let State::Head(head) = &mut self.state {
            let before = head.len();
            head.extend_from_slice(data);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(head) {
                Ok(httparse::Status::Complete(n)) => {
                    if resp.code != Some(200) {
                        return self.fail(Failure::Status);
                    }
                    let header = |name: &str| {
                        resp.headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case(name))
                            .map(|h| h.value)
                    };
                    let chunked = header("transfer-encoding")
                        .is_some_and(|v| !v.eq_ignore_ascii_case(b"identity"));
                    let len = header("content-length")
                        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok());
                    let Some(len) = len.filter(|_| !chunked) else {
                        return self.fail(Failure::NoLength);
                    };
                    data = &data[n - before..];
                    self.state = State::Body(len);
                }
                Ok(httparse::Status::Partial) if head.len() <= MAX_HEAD => return,
                _ => return self.fail(Failure::BadResponse),
            }
        }
        if let State::Body(left) = &mut self.state {
            let take = data.len().min(*left as usize);
            self.body.update(&data[..take]);
            *left -= take as u64;
            if *left == 0 {
                self.state = State::Done;
                self.result = Some(self.body.finish().map_err(|m| match m {
                    Mismatch::Size => Failure::WrongSize,
                    Mismatch::Hash => Failure::WrongHash,
                }));
            }
        }
    }

    /// The server closed the connection.
    pub fn on_eof(&mut self) {
        match self.state {
            State::Done => {}
            State::Head(_) => self.fail(Failure::BadResponse),
            State::Body(_) => self.fail(Failure::Truncated),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sha2::Digest;

    fn get(expect: Expect) -> Get {
        let t = target(
            "http://198.18.0.1:8080/boot/ipxe.efi",
            Ipv4Addr::UNSPECIFIED,
            80,
        )
        .unwrap();
        Get::new(t, expect, 0, 1_000_000)
    }

    fn response(body: &[u8]) -> Vec<u8> {
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    }

    #[test]
    fn urls_and_names() {
        let t = target("http://198.18.0.1:8080/a/b?c=d", Ipv4Addr::UNSPECIFIED, 80).unwrap();
        assert_eq!(t.addr, "198.18.0.1:8080".parse().unwrap());
        assert_eq!(t.path, "/a/b?c=d");
        let t = target("HTTP://198.18.0.9", Ipv4Addr::UNSPECIFIED, 80).unwrap();
        assert_eq!((t.addr.port(), t.path.as_str()), (80, "/"));
        let t = target("boot/x.efi", Ipv4Addr::new(198, 18, 0, 1), 81).unwrap();
        assert_eq!(t.addr, "198.18.0.1:81".parse().unwrap());
        assert_eq!(t.path, "/boot/x.efi");
        for bad in [
            "http://boot.example/x",
            "http://198.18.0.1:99999/x",
            "http://198.18.0.1/a b",
        ] {
            assert_eq!(
                target(bad, Ipv4Addr::UNSPECIFIED, 80),
                Err(Failure::BadUrl),
                "{bad}"
            );
        }
        assert!(!is_url("https://x/") && is_url("http://1.2.3.4/"));
        // Found by the fuzzer: a multi-byte character across byte 7 panicked the slice.
        assert!(!is_url("abcdefé/x") && !is_url("httpéé"));
        assert_eq!(
            target("ééé/x", Ipv4Addr::LOCALHOST, 80).unwrap().path,
            "/ééé/x"
        );
    }

    #[test]
    fn request_names_path_and_host() {
        let r = String::from_utf8(get(Expect::default()).request().to_vec()).unwrap();
        assert!(r.starts_with("GET /boot/ipxe.efi HTTP/1.1\r\nHost: 198.18.0.1:8080\r\n"));
        assert!(r.ends_with("\r\n\r\n") && r.contains("Connection: close"));
    }

    #[test]
    fn a_checked_body_in_any_pieces() {
        let body: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let sha: [u8; 32] = sha2::Sha256::digest(&body).into();
        let resp = response(&body);
        for piece in [1usize, 7, 100, 1460, resp.len()] {
            let mut g = get(Expect {
                size: Some(body.len() as u64),
                sha256: Some(sha),
            });
            for c in resp.chunks(piece) {
                assert_eq!(g.result(), None);
                g.on_data(1, c);
            }
            assert_eq!(g.result(), Some(Ok(body.len() as u64)), "pieces of {piece}");
            g.on_eof();
            assert_eq!(g.result(), Some(Ok(body.len() as u64)));
        }
    }

    #[test]
    fn failures_by_reason() {
        let body = vec![1u8; 1000];
        let cases: Vec<(Vec<u8>, Expect, Failure)> = vec![
            (
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
                Expect::default(),
                Failure::Status,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
                Expect::default(),
                Failure::NoLength,
            ),
            (
                b"SSH-2.0-OpenSSH\r\n\r\n".to_vec(),
                Expect::default(),
                Failure::BadResponse,
            ),
            (
                response(&body),
                Expect {
                    size: Some(999),
                    sha256: None,
                },
                Failure::WrongSize,
            ),
            (
                response(&body),
                Expect {
                    size: None,
                    sha256: Some([0; 32]),
                },
                Failure::WrongHash,
            ),
        ];
        for (resp, expect, want) in cases {
            let mut g = get(expect);
            g.on_data(1, &resp);
            assert_eq!(
                g.result(),
                Some(Err(want)),
                "{}",
                String::from_utf8_lossy(&resp)
            );
        }
        // Closed early.
        let mut g = get(Expect::default());
        g.on_data(1, &response(&body)[..500]);
        g.on_eof();
        assert_eq!(g.result(), Some(Err(Failure::Truncated)));
        // A head that never ends.
        let mut g = get(Expect::default());
        g.on_data(1, b"HTTP/1.1 200 OK\r\n");
        for _ in 0..2000 {
            g.on_data(1, b"X-Filler: 0123456789\r\n");
        }
        assert_eq!(g.result(), Some(Err(Failure::BadResponse)));
    }

    #[test]
    fn silence_times_out_and_data_rearms_the_timer() {
        let mut g = get(Expect::default());
        g.on_timer(999_999);
        assert_eq!(g.result(), None);
        g.on_data(900_000, b"HTTP/1.1 200 OK\r\n");
        assert_eq!(g.deadline(), Some(1_900_000));
        g.on_timer(1_500_000);
        assert_eq!(g.result(), None);
        g.on_timer(1_900_000);
        assert_eq!(g.result(), Some(Err(Failure::Timeout)));
        assert_eq!(g.deadline(), None);
    }

    proptest! {
        #[test]
        fn never_panics_on_any_reply(chunks in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..300), 0..20)) {
            let mut g = get(Expect { size: Some(10), sha256: None });
            for c in &chunks {
                g.on_data(1, c);
            }
            g.on_eof();
            prop_assert!(g.result().is_some());
        }
    }
}
