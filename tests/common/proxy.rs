//! A TCP proxy between the client and the backend, on a port that stays the same while the
//! backend behind it stops, restarts on another port, or is killed. It counts connections,
//! can hold requests back (to release several at once), can swallow the backend's answers
//! once a request has gone through (the backend decides, the client never hears), or can
//! accept and never answer at all. It sees only TLS records, never their contents.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Client→backend TLS application data beyond this means the HTTP request itself is on its
/// way (a TLS 1.3 Finished message is far smaller; a binding request is several kB).
pub const REQUEST_BYTES: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Pass everything both ways.
    Forward,
    /// Pass the handshake and the request; drop every byte of the answer after that.
    SwallowAnswers,
    /// Accept the connection, read and drop what the client sends, never answer.
    Silent,
}

struct State {
    target: Mutex<Option<SocketAddr>>,
    mode: Mutex<Mode>,
    accepted: AtomicUsize,
    /// Connections whose request (application data beyond [`REQUEST_BYTES`]) was forwarded.
    requests_forwarded: AtomicUsize,
    gate_open: Mutex<bool>,
    gate: Condvar,
}

pub struct Proxy {
    pub port: u16,
    state: Arc<State>,
}

impl Proxy {
    /// A proxy with no backend behind it yet: connections are accepted and closed.
    pub fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let state = Arc::new(State {
            target: Mutex::new(None),
            mode: Mutex::new(Mode::Forward),
            accepted: AtomicUsize::new(0),
            requests_forwarded: AtomicUsize::new(0),
            gate_open: Mutex::new(true),
            gate: Condvar::new(),
        });
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || connection(client, &shared));
            }
        });
        Proxy { port, state }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/", self.port)
    }

    /// The backend behind the proxy from now on (`None`: nothing listening).
    pub fn set_target(&self, url: Option<&str>) {
        let addr = url.map(|u| {
            let host_port = u
                .trim_end_matches('/')
                .rsplit("://")
                .next()
                .expect("host:port");
            host_port.parse::<SocketAddr>().expect("socket address")
        });
        *self.state.target.lock().expect("target") = addr;
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().expect("mode") = mode;
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Connections whose request reached the backend.
    pub fn requests_forwarded(&self) -> usize {
        self.state.requests_forwarded.load(Ordering::SeqCst)
    }

    /// Holds every client byte back until [`Proxy::open_gate`].
    pub fn close_gate(&self) {
        *self.state.gate_open.lock().expect("gate") = false;
    }

    pub fn open_gate(&self) {
        *self.state.gate_open.lock().expect("gate") = true;
        self.state.gate.notify_all();
    }

    /// Polls `done` every 10 ms until it holds; panics after `timeout` naming `what`.
    pub fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn connection(client: TcpStream, state: &Arc<State>) {
    let _ = client.set_nodelay(true);
    let mode = *state.mode.lock().expect("mode");
    if mode == Mode::Silent {
        let mut sink = [0u8; 4096];
        let mut client = client;
        while matches!(client.read(&mut sink), Ok(n) if n > 0) {}
        return;
    }
    let Some(target) = *state.target.lock().expect("target") else {
        // Nothing behind the proxy: like a backend that is down.
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let Ok(backend) = TcpStream::connect(target) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = backend.set_nodelay(true);
    let request_sent = Arc::new(AtomicBool::new(false));
    let (client_read, backend_write) = match (client.try_clone(), backend.try_clone()) {
        (Ok(c), Ok(b)) => (c, b),
        _ => return,
    };
    let upstream = {
        let state = Arc::clone(state);
        let request_sent = Arc::clone(&request_sent);
        std::thread::spawn(move || upload(client_read, backend_write, &state, &request_sent))
    };
    download(backend, client, mode, &request_sent);
    let _ = upstream.join();
}

/// Client → backend, parsing TLS record headers to count application data.
fn upload(mut from: TcpStream, mut to: TcpStream, state: &State, request_sent: &AtomicBool) {
    let mut buf = [0u8; 16384];
    let mut header = Vec::with_capacity(5);
    let mut body_left = 0usize;
    let mut in_application_data = false;
    let mut application_bytes = 0usize;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        {
            let mut open = state.gate_open.lock().expect("gate");
            while !*open {
                open = state.gate.wait(open).expect("gate");
            }
        }
        for &byte in &buf[..n] {
            if body_left > 0 {
                body_left -= 1;
                if in_application_data {
                    application_bytes += 1;
                }
                continue;
            }
            header.push(byte);
            if header.len() == 5 {
                in_application_data = header[0] == 23;
                body_left = usize::from(u16::from_be_bytes([header[3], header[4]]));
                header.clear();
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        if application_bytes > REQUEST_BYTES && !request_sent.swap(true, Ordering::SeqCst) {
            state.requests_forwarded.fetch_add(1, Ordering::SeqCst);
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Backend → client; in [`Mode::SwallowAnswers`] nothing passes once the request went up.
fn download(mut from: TcpStream, mut to: TcpStream, mode: Mode, request_sent: &AtomicBool) {
    let mut buf = [0u8; 16384];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if mode == Mode::SwallowAnswers && request_sent.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    // The backend is gone (or done): so is the client's connection.
    let _ = to.shutdown(Shutdown::Both);
}
