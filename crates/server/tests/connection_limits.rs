//! Connection exhaustion (issue 9, item 3), against the real binary started with a lowered
//! descriptor limit: idle connections from one address (127.0.0.2) do not starve other
//! clients (127.0.0.1), many addresses together never run the server out of descriptors,
//! the caps of the command line hold exactly, idle connections are closed, a body sent one
//! byte a second is cut off with 408, and so is a client that stops reading its answers.

mod common;
mod http_support;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::license;
use http_support::*;
use mynalink_server::scratch::Backend;

mynalink_server::on_both_databases!(
    idle_connections_from_one_address_do_not_starve_others,
    many_addresses_never_exhaust_the_descriptors,
    caps_from_the_command_line_hold_and_idle_connections_close,
    a_body_sent_one_byte_a_second_is_cut_off,
    a_cap_beyond_the_descriptor_limit_is_refused,
    a_client_that_does_not_read_its_answers_is_cut_off,
    an_oversized_request_head_is_refused,
);

/// The server's descriptor limit (soft and hard) in these tests.
const NOFILE: u64 = 256;
/// How long `/healthz` may take while the server is under attack.
const PROMPT: Duration = Duration::from_secs(5);

/// `mynalink-server serve ARGS` with its descriptor limit lowered to [`NOFILE`].
fn limited_serve(args: &[String]) -> Command {
    let mut command = Command::new(BIN);
    command.arg("serve").args(args);
    // SAFETY: setrlimit is async-signal-safe, and nothing else runs in the child between
    // fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: NOFILE,
                rlim_max: NOFILE,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

fn plain_args(files: &Files) -> Vec<String> {
    vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--database".into(),
        files.database.clone(),
        "--terminal-tokens".into(),
        path_arg(&files.tokens),
        "--trust-anchor".into(),
        path_arg(&files.trust_anchor),
        "--allow-test-root".into(),
        "--insecure-loopback-http".into(),
        "--revocation".into(),
        "off".into(),
    ]
}

fn files(backend: Backend) -> Files {
    Files::new(
        backend,
        &format!("{},myna_only,\"試験　花子\",1990-01-02,valid\n", license(1)),
    )
}

fn server_addr(server: &Server) -> SocketAddr {
    let authority = server
        .url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("authority");
    authority.parse().expect("server address")
}

/// A TCP connection from `source` (any port) to `to`; it sends nothing.
fn connect_from(runtime: &tokio::runtime::Runtime, source: Ipv4Addr, to: SocketAddr) -> TcpStream {
    runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(IpAddr::V4(source), 0))
            .expect("bind the source address");
        let stream = socket.connect(to).await.expect("connect");
        stream.into_std().expect("std stream")
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Whether the server has closed this connection (which sent nothing): end of stream or a
/// reset, rather than nothing to read yet.
fn closed_by_server(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).expect("nonblocking");
    let mut byte = [0u8; 1];
    let mut reader = stream;
    let closed = match reader.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => panic!("the server sent data unasked"),
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    };
    stream.set_nonblocking(false).expect("blocking");
    closed
}

/// The number of descriptors the process has open.
fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the server's descriptors")
        .count()
}

/// `GET /healthz` with a client of its own (a fresh connection from 127.0.0.1); the time it
/// took, or why it failed.
fn healthz(files: &Files, server: &Server) -> Result<Duration, String> {
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(files.ca_pem.as_bytes()).expect("CA"))
        .timeout(PROMPT)
        .build()
        .expect("client");
    let started = Instant::now();
    let response = client
        .get(format!("{}healthz", server.url))
        .send()
        .map_err(|e| format!("{e:?}"))?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    Ok(started.elapsed())
}

fn idle_connections_from_one_address_do_not_starve_others(backend: Backend) {
    let files = files(backend);
    // Over TLS: a connection over the cap is closed before any handshake work.
    let server = Server::spawn(limited_serve(&files.tls_args()));
    let addr = server_addr(&server);
    let runtime = runtime();

    let before = healthz(&files, &server).expect("healthz before the flood");
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(connect_from(&runtime, Ipv4Addr::new(127, 0, 0, 2), addr));
    }
    // Let the server take in what it will.
    std::thread::sleep(Duration::from_millis(500));

    let during = healthz(&files, &server);
    eprintln!(
        "{backend}: /healthz took {before:?} before and {during:?} with 300 idle connections \
         from 127.0.0.2 open"
    );
    let during = during.expect("healthz from 127.0.0.1 while 127.0.0.2 holds 300 connections");
    assert!(during < PROMPT, "{during:?}");

    // A request that needs the database: its descriptors were kept free as well.
    let status = files
        .backend(&server.url, TOKEN)
        .license_status(&license(1))
        .expect("license status during the flood");
    assert_eq!(status.reason, "required");

    let kept = idle.iter().filter(|s| !closed_by_server(s)).count();
    assert!(kept < 300, "every connection from 127.0.0.2 was kept");
    drop(idle);
    healthz(&files, &server).expect("healthz after the flood");
    assert!(server.terminate().success());
}

fn many_addresses_never_exhaust_the_descriptors(backend: Backend) {
    let files = files(backend);
    let server = Server::spawn(limited_serve(&plain_args(&files)));
    let addr = server_addr(&server);
    let runtime = runtime();

    // 30 connections each from ten addresses: under any per-address cap, over the global one.
    let mut idle = Vec::new();
    for host in 3..13 {
        for _ in 0..30 {
            idle.push(connect_from(&runtime, Ipv4Addr::new(127, 0, 0, host), addr));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let open = open_descriptors(server.pid());
    eprintln!("{backend}: the server has {open} descriptors open with 300 connections tried");
    assert!(
        open < NOFILE as usize - 32,
        "{open} descriptors open of {NOFILE}"
    );
    let kept = idle.iter().filter(|s| !closed_by_server(s)).count();
    assert!(kept < 300, "every connection was kept");

    drop(idle);
    let after = healthz(&files, &server).expect("healthz once the connections are gone");
    assert!(after < Duration::from_secs(2), "{after:?}");
    let stderr = server.stderr_text();
    assert!(
        !stderr.contains("Too many open files"),
        "the server ran out of descriptors:\n{stderr}"
    );
    assert!(server.terminate().success());
}

fn caps_from_the_command_line_hold_and_idle_connections_close(backend: Backend) {
    let files = files(backend);
    let mut args = plain_args(&files);
    args.extend(["--max-connections=20", "--max-connections-per-ip", "5"].map(String::from));
    let server = Server::spawn(limited_serve(&args));
    let addr = server_addr(&server);
    let runtime = runtime();

    let mut first = Vec::new();
    for _ in 0..10 {
        first.push(connect_from(&runtime, Ipv4Addr::new(127, 0, 0, 2), addr));
    }
    let mut others = Vec::new();
    for host in 3..9 {
        for _ in 0..5 {
            others.push(connect_from(&runtime, Ipv4Addr::new(127, 0, 0, host), addr));
        }
    }
    let opened = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let kept_first: Vec<bool> = first.iter().map(|s| !closed_by_server(s)).collect();
    let kept_others: Vec<bool> = others.iter().map(|s| !closed_by_server(s)).collect();
    // In the order they came: the first five of 127.0.0.2, then others up to 20 in all.
    assert_eq!(
        kept_first,
        [[true; 5], [false; 5]].concat(),
        "per-address cap"
    );
    assert_eq!(
        kept_others,
        [[true; 15], [false; 15]].concat(),
        "global cap"
    );

    // Connections that never send a request are closed after the idle timeout, which frees
    // their places.
    let mut kept: Vec<TcpStream> = first.into_iter().take(5).collect();
    kept.extend(others.into_iter().take(15));
    let deadline = opened + Duration::from_secs(16);
    while Instant::now() < deadline && !kept.iter().all(closed_by_server) {
        std::thread::sleep(Duration::from_millis(250));
    }
    let waited = opened.elapsed();
    assert!(
        kept.iter().all(closed_by_server),
        "idle connections still open after {waited:?}"
    );
    eprintln!("{backend}: idle connections were closed within {waited:?}");
    let again: Vec<TcpStream> = (0..5)
        .map(|_| connect_from(&runtime, Ipv4Addr::new(127, 0, 0, 2), addr))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        again.iter().all(|s| !closed_by_server(s)),
        "the places of closed connections were not given back"
    );
    drop(again);

    // An idle keep-alive connection is closed too, after its request was answered.
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("request");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let answered = Instant::now();
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) => panic!("keep-alive connection not closed: {e}"),
        }
    }
    let idle = answered.elapsed();
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(idle < Duration::from_secs(15), "{idle:?}");
    eprintln!("{backend}: the idle keep-alive connection was closed after {idle:?}");
    assert!(server.terminate().success());
}

fn a_body_sent_one_byte_a_second_is_cut_off(backend: Backend) {
    let files = files(backend);
    let server = Server::spawn(limited_serve(&plain_args(&files)));
    let addr = server_addr(&server);

    const LENGTH: usize = 120;
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .write_all(
            format!(
                "POST /v1/bindings HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Content-Type: application/json\r\nContent-Length: {LENGTH}\r\n\r\n"
            )
            .as_bytes(),
        )
        .expect("head");
    let started = Instant::now();
    let mut writer = stream.try_clone().expect("clone");
    let trickle = std::thread::spawn(move || {
        for _ in 0..LENGTH {
            if writer.write_all(b" ").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        match stream.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) => break Err(e),
        }
    };
    let cut_after = started.elapsed();
    let text = String::from_utf8_lossy(&response).into_owned();
    eprintln!("{backend}: the slow body was cut after {cut_after:?}");
    assert!(
        end.is_ok(),
        "no end of the connection after {cut_after:?}: {end:?} {text}"
    );
    assert!(
        cut_after < Duration::from_secs(40),
        "cut only after {cut_after:?} (the body takes {LENGTH} s)"
    );
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"request_timeout\""), "{text}");
    drop(stream);
    let _ = trickle.join();

    healthz(&files, &server).expect("healthz after the slow body");
    let status = files
        .backend(&server.url, TOKEN)
        .license_status(&license(1))
        .expect("license status after the slow body");
    assert_eq!(status.reason, "required");
    assert!(server.terminate().success());
}

fn a_cap_beyond_the_descriptor_limit_is_refused(backend: Backend) {
    let files = files(backend);
    let mut args = plain_args(&files);
    args.extend(["--max-connections".to_string(), "1000".to_string()]);
    let out = limited_serve(&args)
        .stdin(Stdio::null())
        .output()
        .expect("run serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr.contains("--max-connections 1000"), "{stderr}");
    assert!(stderr.contains(&NOFILE.to_string()), "{stderr}");
}

fn a_client_that_does_not_read_its_answers_is_cut_off(backend: Backend) {
    let files = files(backend);
    let server = Server::spawn(limited_serve(&plain_args(&files)));
    let addr = server_addr(&server);
    let runtime = runtime();

    // Pipelined requests for /openapi.json (about 32 KiB each), more than the socket buffers
    // hold, from a client with a small receive buffer that then reads nothing.
    const REQUESTS: usize = 400;
    let mut stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("receive buffer");
        let stream = socket.connect(addr).await.expect("connect");
        stream.into_std().expect("std stream")
    });
    stream.set_nonblocking(false).expect("blocking");
    let one = b"GET /openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    stream.write_all(&one.repeat(REQUESTS)).expect("requests");
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(30));

    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut received = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let end = loop {
        match stream.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => received += n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    let full = REQUESTS * mynalink_server::http::OPENAPI_JSON.len();
    eprintln!(
        "{backend}: a client that did not read got {received} of {full} bytes before the \
         server closed the connection ({:?} after the requests)",
        started.elapsed()
    );
    assert!(end.is_ok(), "the connection did not end: {end:?}");
    assert!(received < full / 2, "{received} of {full} bytes");
    healthz(&files, &server).expect("healthz afterwards");
    assert!(server.terminate().success());
}

fn an_oversized_request_head_is_refused(backend: Backend) {
    let files = files(backend);
    let server = Server::spawn(limited_serve(&plain_args(&files)));
    let mut stream = TcpStream::connect(server_addr(&server)).expect("connect");
    // 12 KiB of headers: more than a head may have (8 KiB).
    let mut head = String::from("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for i in 0..96 {
        head.push_str(&format!("X-Filler-{i}: {}\r\n", "a".repeat(110)));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("head");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    healthz(&files, &server).expect("healthz afterwards");
    assert!(server.terminate().success());
}
