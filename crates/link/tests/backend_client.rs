//! The backend client against real local servers: a redirect is never followed (the body and
//! the token never reach the other host), and with a `ca_file` a server whose chain ends in
//! another CA is refused.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mynalink_link::api::BindingRequest;
use mynalink_link::backend::Backend;
use zeroize::Zeroizing;

const TOKEN: &str = "terminal-token-for-the-test";

/// Reads one HTTP/1.1 request (headers and a Content-Length body); returns its head.
fn read_request(stream: &mut impl Read) -> String {
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        head.push_str(&line);
    }
    let mut body = vec![0u8; length];
    let _ = reader.read_exact(&mut body);
    head
}

/// A server that counts its connections and answers every request with `answer`.
fn serve(answer: impl Fn(u16) -> String + Send + 'static) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let contacted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&contacted);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = read_request(&mut stream);
            let _ = stream.write_all(answer(port).as_bytes());
        }
    });
    (port, contacted)
}

fn request() -> BindingRequest {
    BindingRequest {
        statement: "statement".into(),
        signature: "signature".into(),
        certificate: None,
        sealed_certificate: Some("sealed".into()),
        ca_certificate: None,
        staff_confirmed_identity: false,
    }
}

#[test]
fn redirects_are_not_followed() {
    // The other host would take anything (and answers as a backend would).
    let (other, other_contacted) = serve(|_| {
        let body = r#"{"binding_id":"b-1","license_number":"729913281070"}"#;
        format!(
            "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    });
    for status in [
        "301 Moved Permanently",
        "302 Found",
        "307 Temporary Redirect",
        "308 Permanent Redirect",
    ] {
        let (port, contacted) = serve(move |_| {
            format!(
                "HTTP/1.1 {status}\r\nLocation: http://127.0.0.1:{other}/v1/bindings\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
        });
        let backend = Backend::new(
            &format!("http://127.0.0.1:{port}/"),
            Zeroizing::new(TOKEN.into()),
            None,
        )
        .expect("client");
        let e = backend
            .submit(&request())
            .expect_err("a redirect is no decision");
        assert!(e.0.contains("redirect"), "{status}: {e}");
        assert!(
            e.0.contains(&format!("127.0.0.1:{other}")),
            "names the target: {e}"
        );
        assert!(!e.0.contains(TOKEN), "{e}");
        let e = backend
            .license_status("729913281070")
            .expect_err("a redirect is no answer");
        assert!(e.0.contains("redirect"), "{status}: {e}");
        assert!(!backend.healthy());
        assert!(
            contacted.load(Ordering::SeqCst) > 0,
            "the backend was asked"
        );
    }
    // Give a follower time to have connected.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        other_contacted.load(Ordering::SeqCst),
        0,
        "the redirect target was never contacted"
    );
}

struct Ca {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().expect("key");
        Ca {
            issuer: rcgen::CertifiedIssuer::self_signed(params, key).expect("CA"),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }
}

/// An HTTPS server on 127.0.0.1 whose certificate `ca` issued; answers 200 to anything.
fn serve_tls(ca: &Ca) -> (u16, Arc<AtomicUsize>) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "backend");
    let leaf = params.signed_by(&key, &ca.issuer).expect("leaf");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server config");
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let served = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&served);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let config = Arc::clone(&config);
            let count = Arc::clone(&count);
            std::thread::spawn(move || handle_tls(stream, config, &count));
        }
    });
    (port, served)
}

fn handle_tls(stream: TcpStream, config: Arc<rustls::ServerConfig>, served: &AtomicUsize) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(connection) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(connection, stream);
    let head = read_request(&mut tls);
    if head.is_empty() {
        return; // the handshake failed
    }
    served.fetch_add(1, Ordering::SeqCst);
    let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

#[test]
fn with_a_ca_file_only_that_root_is_trusted() {
    let ca1 = Ca::new("mynalink test TLS CA 1");
    let ca2 = Ca::new("mynalink test TLS CA 2");
    let (port, served) = serve_tls(&ca1);
    let url = format!("https://127.0.0.1:{port}/");

    let trusting_ca1 = Backend::new(
        &url,
        Zeroizing::new(TOKEN.into()),
        Some(ca1.pem().as_bytes()),
    )
    .expect("client");
    assert!(trusting_ca1.healthy(), "the configured root is trusted");
    assert_eq!(served.load(Ordering::SeqCst), 1);

    let trusting_ca2 = Backend::new(
        &url,
        Zeroizing::new(TOKEN.into()),
        Some(ca2.pem().as_bytes()),
    )
    .expect("client");
    assert!(!trusting_ca2.healthy(), "a chain to another CA is refused");
    let e = trusting_ca2.submit(&request()).expect_err("refused");
    assert!(!e.0.contains(TOKEN), "{e}");
    assert_eq!(served.load(Ordering::SeqCst), 1, "no request got through");
}
