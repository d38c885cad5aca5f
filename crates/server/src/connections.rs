//! What keeps `serve` answering when clients hold connections open: a cap on open
//! connections (global, and per source address), timeouts for every phase of a request, and
//! bounded buffers.
//!
//! Without them, idle connections from one address could take every file descriptor, so that
//! `/healthz` and the database starve, and a client could hold a connection forever by sending
//! its body a byte at a time or by never reading the answer.
//!
//! - A connection over a cap is closed as soon as it is accepted, before any TLS work. The
//!   accept loop never waits for a free place: waiting would leave other clients' connections
//!   unaccepted in the kernel's queue.
//! - The global cap is derived from the descriptor limit (`RLIMIT_NOFILE`), leaving room for
//!   the database, the listener and the runtime; the per-address cap (IPv6 by /64, one host's
//!   usual share) keeps one address from taking them all.
//! - If descriptors still run out, the pending connection is accepted on a descriptor kept in
//!   reserve and closed, so that the loop neither spins nor leaves clients hanging.
//! - Timeouts: the request head within [`HEADER_READ_TIMEOUT`] of the connection opening or of
//!   the previous answer (this is also the idle keep-alive timeout); the body within
//!   [`BODY_TIMEOUT`] of the head (else 408 `request_timeout`); a write that makes no progress
//!   for [`WRITE_STALL_TIMEOUT`] ends the connection.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::header::CONNECTION;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

use crate::code::{Code, Rejection};

/// A TLS handshake must finish within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A request head must arrive whole within this of the connection opening or of the previous
/// answer; a connection that stays idle longer is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The body must arrive whole within this of the head: with the head, a request takes at most
/// 30 s to arrive. A real submission is about 4 KiB.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(20);
/// A connection whose writes make no progress for this long (a client that does not read its
/// answer) is closed.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(20);
/// The most a connection buffers (hyper's read and write buffers); a request head must fit in
/// [`MAX_HEADER_BYTES`].
pub const MAX_BUFFER_BYTES: usize = 16 * 1024;
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// Connections one source address may hold at once by default: a license center's counters
/// behind one NAT address each use one or two.
pub const DEFAULT_PER_SOURCE: usize = 32;
/// Descriptors kept for everything but client connections, at the least: the database pool
/// (8 connections; SQLite opens 3 files for each), the listener, the runtime, the standard
/// streams and the files read at start.
pub const MIN_RESERVED_DESCRIPTORS: u64 = 64;
/// The default global cap is at most this, whatever the descriptor limit: every connection
/// costs memory too.
pub const MAX_DEFAULT_GLOBAL: usize = 4096;

/// How often refusals and accept errors are reported at most (a flood must not flood the log).
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// The caps in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub global: usize,
    pub per_source: usize,
}

impl Limits {
    /// The caps given on the command line, or the defaults; refused when the descriptor limit
    /// leaves no room for them.
    pub fn resolve(global: Option<usize>, per_source: Option<usize>) -> Result<Limits, String> {
        Limits::for_descriptor_limit(descriptor_limit(), global, per_source)
    }

    /// The same for a given descriptor limit (`None`: unknown, taken as unlimited).
    pub fn for_descriptor_limit(
        nofile: Option<u64>,
        global: Option<usize>,
        per_source: Option<usize>,
    ) -> Result<Limits, String> {
        let nofile = nofile.unwrap_or(u64::MAX);
        // At most this many connections leave the minimum reserve free.
        let fits =
            usize::try_from(nofile.saturating_sub(MIN_RESERVED_DESCRIPTORS)).unwrap_or(usize::MAX);
        let global = match global {
            Some(n) if n > fits => {
                return Err(format!(
                    "--max-connections {n}: the descriptor limit (ulimit -n) is {nofile}; \
                     with {MIN_RESERVED_DESCRIPTORS} kept for the database and files, at most \
                     {fits} connections fit: raise the limit or give a smaller number"
                ))
            }
            Some(n) => n,
            None => {
                // A quarter of the limit (at least the minimum) stays in reserve.
                let reserve = (nofile / 4).max(MIN_RESERVED_DESCRIPTORS);
                let default = usize::try_from(nofile.saturating_sub(reserve))
                    .unwrap_or(usize::MAX)
                    .min(MAX_DEFAULT_GLOBAL);
                if default == 0 {
                    return Err(format!(
                        "the descriptor limit (ulimit -n) is {nofile}: too low to serve; raise \
                         it to at least {}",
                        MIN_RESERVED_DESCRIPTORS * 2
                    ));
                }
                default
            }
        };
        Ok(Limits {
            global,
            per_source: per_source.unwrap_or(DEFAULT_PER_SOURCE).min(global),
        })
    }
}

/// The process's soft limit on open descriptors, if it has one.
pub fn descriptor_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given, which lives on this
    // frame; it has no other effect.
    let status = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (status == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// The address a per-source cap counts against: IPv4 as it is, IPv6 by its /64 (one host or
/// one site's network usually has a whole /64), IPv4-mapped IPv6 as the IPv4 address.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// Counts open connections against the caps; clones share the counts.
#[derive(Debug, Clone)]
pub struct ConnectionLimiter {
    limits: Limits,
    state: Arc<Mutex<Counts>>,
}

#[derive(Debug, Default)]
struct Counts {
    open: usize,
    by_source: HashMap<IpAddr, usize>,
    refused: Report,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Global,
    PerSource,
}

/// An admitted connection's place, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    state: Arc<Mutex<Counts>>,
    key: IpAddr,
}

impl ConnectionLimiter {
    pub fn new(limits: Limits) -> ConnectionLimiter {
        ConnectionLimiter {
            limits,
            state: Arc::default(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A place for a connection from `peer`, or why there is none. Never waits.
    pub fn admit(&self, peer: IpAddr) -> Result<Slot, Refused> {
        let key = source_key(peer);
        let mut counts = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let from_source = counts.by_source.get(&key).copied().unwrap_or(0);
        let refused = if counts.open >= self.limits.global {
            Some(Refused::Global)
        } else if from_source >= self.limits.per_source {
            Some(Refused::PerSource)
        } else {
            None
        };
        if let Some(why) = refused {
            if let Some(count) = counts.refused.add() {
                tracing::warn!(
                    event = "connections_refused",
                    "refused {count} connection(s) over the caps (last: {}; \
                     {} open, at most {} in all and {} per address)",
                    match why {
                        Refused::Global => "all places taken",
                        Refused::PerSource => "one address at its cap",
                    },
                    counts.open,
                    self.limits.global,
                    self.limits.per_source
                );
            }
            return Err(why);
        }
        counts.open += 1;
        *counts.by_source.entry(key).or_insert(0) += 1;
        Ok(Slot {
            state: Arc::clone(&self.state),
            key,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .open
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        counts.open = counts.open.saturating_sub(1);
        if let Some(n) = counts.by_source.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.by_source.remove(&self.key);
            }
        }
    }
}

/// Events counted between reports: the first at once, then at most one report a minute.
#[derive(Debug, Default)]
struct Report {
    pending: u64,
    last: Option<Instant>,
}

impl Report {
    /// Counts one event; the number to report now, if a report is due.
    fn add(&mut self) -> Option<u64> {
        self.pending += 1;
        let due = self.last.is_none_or(|last| last.elapsed() >= REPORT_EVERY);
        if !due {
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.pending))
    }
}

/// Accepts connections, and copes with accept errors without spinning or stalling.
pub struct Acceptor {
    listener: TcpListener,
    /// A descriptor held in reserve: when the process runs out, it is let go to accept the
    /// pending connection and close it at once.
    reserve: Option<std::fs::File>,
    errors: Report,
}

fn open_reserve() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

impl Acceptor {
    pub fn new(listener: TcpListener) -> Acceptor {
        Acceptor {
            listener,
            reserve: open_reserve(),
            errors: Report::default(),
        }
    }

    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// The next connection. Errors are handled here: out of descriptors, the pending
    /// connection is shed on the reserve descriptor; a connection reset before it was
    /// accepted is skipped; anything else waits a moment.
    pub async fn accept(&mut self) -> (TcpStream, std::net::SocketAddr) {
        loop {
            let error = match self.listener.accept().await {
                Ok(pair) => return pair,
                Err(e) => e,
            };
            if let Some(count) = self.errors.add() {
                tracing::warn!(
                    event = "accept_error",
                    "accept: {error} ({count} error(s) since the last report)"
                );
            }
            match error.raw_os_error() {
                Some(libc::EMFILE | libc::ENFILE) => self.shed().await,
                Some(libc::ECONNABORTED | libc::ECONNRESET | libc::EPROTO) => {}
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Out of descriptors: frees the reserve, accepts the waiting connection and closes it.
    async fn shed(&mut self) {
        if self.reserve.take().is_some() {
            if let Ok(Ok((stream, _))) =
                tokio::time::timeout(Duration::from_millis(10), self.listener.accept()).await
            {
                drop(stream);
            }
            self.reserve = open_reserve();
        }
        if self.reserve.is_none() {
            // Not even one descriptor came back: wait for connections to close.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// hyper's HTTP/1 settings: the head timeout (also the idle keep-alive timeout) and bounded
/// buffers.
pub fn http1_builder() -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_BUFFER_BYTES)
        .max_header_size(MAX_HEADER_BYTES);
    builder
}

/// The router with the body deadline: a body that has not arrived whole within
/// [`BODY_TIMEOUT`] of the head is answered 408 `request_timeout` and the connection closed.
pub fn with_body_deadline(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(body_deadline))
}

async fn body_deadline(request: Request, next: Next) -> Response {
    let expired = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&expired);
    let request = request.map(|inner| {
        Body::new(DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(BODY_TIMEOUT)),
            expired: flag,
        })
    });
    let response = next.run(request).await;
    if !expired.load(Ordering::Acquire) {
        return response;
    }
    // The handler answered the unreadable body; the real reason is the time.
    let mut response = (
        StatusCode::REQUEST_TIMEOUT,
        Json(
            Rejection::with_detail(
                Code::RequestTimeout,
                format!(
                    "the request body did not arrive within {} s",
                    BODY_TIMEOUT.as_secs()
                ),
            )
            .to_api_error(),
        ),
    )
        .into_response();
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request body that fails once its deadline has passed.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
    expired: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimedOut;

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A stream whose writes fail once they have made no progress for [`WRITE_STALL_TIMEOUT`]:
/// a client that stops reading cannot keep its connection by that.
pub struct WriteStallGuard<S> {
    inner: S,
    stalled_since: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteStallGuard<S> {
    pub fn new(inner: S) -> WriteStallGuard<S> {
        WriteStallGuard {
            inner,
            stalled_since: None,
        }
    }

    /// After a write that could not proceed: an error once the stall has lasted too long.
    fn check_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let deadline = self
            .stalled_since
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_STALL_TIMEOUT)));
        ready!(deadline.as_mut().poll(cx));
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client did not read its answer",
        ))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteStallGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteStallGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending => this.check_stall(cx).map(Err),
            done => {
                this.stalled_since = None;
                done
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.check_stall(cx).map(Err),
            done => {
                this.stalled_since = None;
                done
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.check_stall(cx).map(Err),
            done => {
                this.stalled_since = None;
                done
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Pending => this.check_stall(cx).map(Err),
            done => done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_leave_room_below_the_descriptor_limit() {
        let limits = Limits::for_descriptor_limit(Some(256), None, None).expect("256");
        assert_eq!(
            limits,
            Limits {
                global: 192,
                per_source: 32
            }
        );
        let limits = Limits::for_descriptor_limit(Some(1024), None, None).expect("1024");
        assert_eq!(limits.global, 768);
        let limits = Limits::for_descriptor_limit(Some(1 << 20), None, None).expect("big");
        assert_eq!(limits.global, MAX_DEFAULT_GLOBAL);
        let limits = Limits::for_descriptor_limit(None, None, Some(5)).expect("unlimited");
        assert_eq!(
            limits,
            Limits {
                global: MAX_DEFAULT_GLOBAL,
                per_source: 5
            }
        );
        assert!(Limits::for_descriptor_limit(Some(64), None, None).is_err());
    }

    #[test]
    fn given_caps_must_fit_the_descriptor_limit() {
        let limits = Limits::for_descriptor_limit(Some(256), Some(192), Some(500)).expect("fits");
        // A per-address cap above the global one is the global one.
        assert_eq!(
            limits,
            Limits {
                global: 192,
                per_source: 192
            }
        );
        assert!(Limits::for_descriptor_limit(Some(256), Some(192), None).is_ok());
        let refused =
            Limits::for_descriptor_limit(Some(256), Some(193), None).expect_err("over the limit");
        assert!(refused.contains("--max-connections 193"), "{refused}");
        assert!(
            refused.contains("256") && refused.contains("192"),
            "{refused}"
        );
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("v6");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("v6");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("v6");
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("mapped");
        assert_eq!(
            source_key(mapped),
            "192.0.2.7".parse::<IpAddr>().expect("v4")
        );
    }

    #[test]
    fn places_are_counted_and_given_back() {
        let limiter = ConnectionLimiter::new(Limits {
            global: 3,
            per_source: 2,
        });
        let one: IpAddr = "192.0.2.1".parse().expect("ip");
        let two: IpAddr = "192.0.2.2".parse().expect("ip");
        let a = limiter.admit(one).expect("first");
        let b = limiter.admit(one).expect("second");
        assert_eq!(limiter.admit(one).expect_err("third"), Refused::PerSource);
        let c = limiter.admit(two).expect("other address");
        assert_eq!(limiter.admit(two).expect_err("full"), Refused::Global);
        assert_eq!(limiter.open(), 3);
        drop(a);
        let d = limiter.admit(one).expect("a place was given back");
        drop((b, c, d));
        assert_eq!(limiter.open(), 0);
        assert!(limiter.state.lock().expect("counts").by_source.is_empty());
    }
}
