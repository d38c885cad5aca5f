//! The card side of the vsmartcard `vpcd` protocol: serves a [`SimulatedCard`] to a real
//! pcscd, where it appears as a card in the reader `Virtual PCD 00 00`.
//!
//! vpcd (the pcscd driver) is the TCP server; the card connects to it. Connecting is card
//! insertion, closing the connection is card removal. Every message in both directions is a
//! 2-byte big-endian length followed by the payload. A 1-byte payload from vpcd is a control
//! message (`00` power off, `01` power on, `02` reset: no answer; `04` get ATR: answer the
//! ATR); a longer one is a command APDU, answered with the full response APDU. An answer of
//! length 0 means removal to vpcd, so one is never sent.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::card::SimulatedCard;

/// The port of vpcd's first reader (`Virtual PCD 00 00`) in the stock configuration.
pub const DEFAULT_PORT: u16 = 35963;

const CTRL_OFF: u8 = 0x00;
const CTRL_ON: u8 = 0x01;
const CTRL_RESET: u8 = 0x02;
const CTRL_ATR: u8 = 0x04;

const INS_SIGN: u8 = 0x2A;

/// pcscd may still be starting when the card process comes up.
const CONNECT_RETRY_FOR: Duration = Duration::from_secs(5);
const CONNECT_RETRY_STEP: Duration = Duration::from_millis(50);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a blocked read or sleep looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(50);
/// A peer that stops reading must not wedge the card forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Answered instead of a response that cannot be framed (longer than 65535 bytes, or
/// empty): "no precise diagnosis". The card never produces either.
const SW_NO_DIAGNOSIS: [u8; 2] = [0x6F, 0x00];

/// Where and how to present the card to vpcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcardOptions {
    /// vpcd's host.
    pub host: String,
    /// vpcd's port: 35963 is `Virtual PCD 00 00`, 35964 is `Virtual PCD 00 01`.
    pub port: u16,
    /// Remove the card (close the connection) when command APDU `n + 1` of a connection
    /// arrives; that APDU never reaches the card, so the client sees a failed transmit, as
    /// when a card leaves mid-exchange. Applies to the first insertion only.
    pub remove_after_apdus: Option<usize>,
    /// After a removal, insert the card again (reconnect) after this delay; `None` stays
    /// removed and returns.
    pub reinsert_after: Option<Duration>,
    /// Return after this many insertions (connections); `None` for no limit.
    pub max_insertions: Option<usize>,
}

impl Default for VcardOptions {
    fn default() -> Self {
        VcardOptions {
            host: "127.0.0.1".to_string(),
            port: DEFAULT_PORT,
            remove_after_apdus: None,
            reinsert_after: None,
            max_insertions: None,
        }
    }
}

/// What happened, for progress output. ATR requests are not reported: pcscd asks for the
/// ATR on every presence poll (about every 400 ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VcardEvent {
    /// Connected to vpcd: the card is in the reader.
    Connected,
    PowerOn,
    PowerOff,
    Reset,
    /// A command APDU was answered.
    Apdu {
        command_len: usize,
        response_len: usize,
    },
    /// The connection was closed: the card left the reader.
    Removed,
    /// Waiting `reinsert_after` before connecting again.
    Reinserting,
}

#[derive(Debug, thiserror::Error)]
pub enum VcardError {
    #[error("cannot connect to vpcd at {addr}: {source}; is pcscd with vsmartcard-vpcd running?")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("vpcd connection: {0}")]
    Io(#[from] io::Error),
    #[error("vpcd protocol: {0}")]
    Protocol(String),
}

/// Serves one simulated card to vpcd until removal (and reinsertion cycles) end, or `stop`
/// is set.
///
/// The same card is used across reinsertions, so retry counters persist; each removal
/// powers it down, as do power off, power on and reset from vpcd. The card's
/// `apdu_latency` and `sign_latency` are applied before answering; its own
/// `remove_after_apdus` is not used here (see [`VcardOptions::remove_after_apdus`]).
///
/// Returns `Ok` when `stop` is set, after a removal without `reinsert_after`, or after
/// `max_insertions` connections. vpcd closing the connection (pcscd stopped) is an error.
///
/// The card is shared as `Arc<Mutex<_>>` so that the caller can inspect counters and the
/// command log while it is served; a `SimHandle` would bring the in-process transport's own
/// presence flag and removal trigger, which vpcd replaces.
pub fn serve(
    card: Arc<Mutex<SimulatedCard>>,
    options: &VcardOptions,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(VcardEvent),
) -> Result<(), VcardError> {
    let mut insertions = 0usize;
    loop {
        let Some(stream) = connect(&options.host, options.port, stop)? else {
            return Ok(());
        };
        insertions += 1;
        on_event(VcardEvent::Connected);
        // The stream is closed when `run_connection` returns: that is the removal.
        // The removal happens once: a card put back on the reader then works normally.
        let this_insertion = VcardOptions {
            remove_after_apdus: options.remove_after_apdus.filter(|_| insertions == 1),
            ..options.clone()
        };
        let end = run_connection(stream, &card, &this_insertion, stop, on_event);
        // Leaving the reader ends the power session, whatever ended the connection.
        lock(&card).power_down();
        let end = end?;
        on_event(VcardEvent::Removed);
        if end == ConnectionEnd::Stopped
            || options.max_insertions.is_some_and(|max| insertions >= max)
        {
            return Ok(());
        }
        let Some(delay) = options.reinsert_after else {
            return Ok(());
        };
        on_event(VcardEvent::Reinserting);
        if !sleep_unless_stopped(delay, stop) {
            return Ok(());
        }
    }
}

/// A poisoned lock only means another thread panicked while holding the card; the card
/// is still usable for a simulation.
fn lock(card: &Mutex<SimulatedCard>) -> MutexGuard<'_, SimulatedCard> {
    card.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sleeps for `duration`; `false` if `stop` was set meanwhile.
fn sleep_unless_stopped(duration: Duration, stop: &AtomicBool) -> bool {
    let deadline = Instant::now() + duration;
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(STOP_POLL));
    }
}

fn display_addr(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Connects to vpcd, retrying for a bounded time; `None` if `stop` was set first.
fn connect(host: &str, port: u16, stop: &AtomicBool) -> Result<Option<TcpStream>, VcardError> {
    let addr = display_addr(host, port);
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|source| VcardError::Connect {
            addr: addr.clone(),
            source,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(VcardError::Connect {
            addr,
            source: io::Error::new(io::ErrorKind::NotFound, "the host has no address"),
        });
    }
    let deadline = Instant::now() + CONNECT_RETRY_FOR;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let mut last_error = None;
        for socket_addr in &addrs {
            match TcpStream::connect_timeout(socket_addr, CONNECT_TIMEOUT) {
                Ok(stream) => return Ok(Some(stream)),
                Err(error) => last_error = Some(error),
            }
        }
        if let Some(source) = last_error.filter(|_| Instant::now() >= deadline) {
            return Err(VcardError::Connect { addr, source });
        }
        if !sleep_unless_stopped(CONNECT_RETRY_STEP, stop) {
            return Ok(None);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnectionEnd {
    /// `remove_after_apdus` was reached.
    Removed,
    Stopped,
}

enum ReadEnd {
    Full,
    /// End of stream after this many bytes of the buffer.
    Eof(usize),
    Stopped,
}

/// Re-arms TCP_QUICKACK. Debian's vpcd sends the length prefix and the payload in two
/// `send()` calls without TCP_NODELAY: with Nagle on its side and a delayed ACK on ours,
/// every command then stalls ~40 ms. Linux drops quick-ACK mode by itself, so it is set
/// again before every read.
#[cfg(target_os = "linux")]
fn arm_quickack(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: the descriptor is an open TCP socket owned by `stream`, and the option value
    // points to a c_int whose size is passed along. Failure only costs latency.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            std::ptr::addr_of!(one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn arm_quickack(_stream: &TcpStream) {}

/// Fills `buf` from the stream. The stream has a short read timeout so that `stop` is
/// seen while vpcd is quiet; partial reads survive the timeouts.
fn read_full(stream: &mut TcpStream, buf: &mut [u8], stop: &AtomicBool) -> io::Result<ReadEnd> {
    let mut filled = 0;
    while filled < buf.len() {
        arm_quickack(stream);
        match stream.read(&mut buf[filled..]) {
            Ok(0) => return Ok(ReadEnd::Eof(filled)),
            Ok(n) => filled += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::Relaxed) {
                    return Ok(ReadEnd::Stopped);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // vpcd closing with data still unread by it shows up as a reset.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Ok(ReadEnd::Eof(filled))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(ReadEnd::Full)
}

fn send(stream: &mut TcpStream, payload: &[u8]) -> io::Result<()> {
    let payload = match u16::try_from(payload.len()) {
        Ok(0) | Err(_) => &SW_NO_DIAGNOSIS[..],
        Ok(_) => payload,
    };
    // One write: with TCP_NODELAY, length and payload leave in one segment.
    let mut message = Vec::with_capacity(payload.len() + 2);
    message.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    message.extend_from_slice(payload);
    stream.write_all(&message)
}

fn closed_by_vpcd() -> VcardError {
    VcardError::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "vpcd closed the connection (did pcscd stop?)",
    ))
}

fn run_connection(
    mut stream: TcpStream,
    card: &Mutex<SimulatedCard>,
    options: &VcardOptions,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(VcardEvent),
) -> Result<ConnectionEnd, VcardError> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(STOP_POLL))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut apdus = 0usize;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(ConnectionEnd::Stopped);
        }
        let mut header = [0u8; 2];
        match read_full(&mut stream, &mut header, stop)? {
            ReadEnd::Full => {}
            ReadEnd::Stopped => return Ok(ConnectionEnd::Stopped),
            ReadEnd::Eof(0) => return Err(closed_by_vpcd()),
            ReadEnd::Eof(_) => {
                return Err(VcardError::Protocol(
                    "vpcd closed the connection in the middle of a length prefix".to_string(),
                ))
            }
        }
        // The u16 prefix bounds every message to 65535 bytes.
        let len = usize::from(u16::from_be_bytes(header));
        let mut payload = vec![0u8; len];
        match read_full(&mut stream, &mut payload, stop)? {
            ReadEnd::Full => {}
            ReadEnd::Stopped => return Ok(ConnectionEnd::Stopped),
            ReadEnd::Eof(got) => {
                return Err(VcardError::Protocol(format!(
                "vpcd announced a {len}-byte message but closed the connection after {got} bytes"
            )))
            }
        }
        match payload.as_slice() {
            // Nothing to answer, and an empty answer would read as removal.
            [] => {}
            [CTRL_OFF] => {
                lock(card).power_down();
                on_event(VcardEvent::PowerOff);
            }
            // A cold start is a fresh power session too.
            [CTRL_ON] => {
                lock(card).power_down();
                on_event(VcardEvent::PowerOn);
            }
            [CTRL_RESET] => {
                lock(card).power_down();
                on_event(VcardEvent::Reset);
            }
            [CTRL_ATR] => {
                let atr = lock(card).atr();
                send(&mut stream, atr)?;
            }
            // Unknown control codes get no answer, like the three above.
            [_] => {}
            command => {
                if options.remove_after_apdus.is_some_and(|n| apdus >= n) {
                    return Ok(ConnectionEnd::Removed);
                }
                apdus += 1;
                let latency = {
                    let card = lock(card);
                    let card_options = card.options();
                    let mut latency = card_options.apdu_latency;
                    if command.get(1) == Some(&INS_SIGN) {
                        latency += card_options.sign_latency;
                    }
                    latency
                };
                // Sleep without the lock so others can inspect the card meanwhile.
                if !sleep_unless_stopped(latency, stop) {
                    return Ok(ConnectionEnd::Stopped);
                }
                let response = lock(card).process(command);
                send(&mut stream, &response)?;
                on_event(VcardEvent::Apdu {
                    command_len: command.len(),
                    response_len: response.len(),
                });
            }
        }
    }
}
