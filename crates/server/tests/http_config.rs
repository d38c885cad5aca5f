//! `serve` refuses what it must not run with: plain HTTP off loopback or without the flag,
//! missing or bad TLS material and tokens. Plain HTTP on loopback works when asked for.

mod common;
mod http_support;

use common::license;
use http_support::*;

use mynalink_server::scratch::Backend;

mynalink_server::on_both_databases!(
    plain_http_only_when_asked_for_and_only_on_loopback,
    bad_tls_material_and_tokens_are_configuration_errors,
);

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn plain_http_only_when_asked_for_and_only_on_loopback(backend: Backend) {
    let files = Files::new(
        backend,
        &format!("{},myna_only,\"試験　花子\",1990-01-02,valid\n", license(1)),
    );
    let db = files.database.as_str();

    for listen in ["0.0.0.0:0", "192.0.2.10:8080", "[::]:0"] {
        let (code, stderr) = serve_refused(&args(&[
            "--listen",
            listen,
            "--database",
            db,
            "--insecure-loopback-http",
        ]));
        assert_eq!(code, Some(2), "{listen}: {stderr}");
        assert!(stderr.contains("loopback"), "{stderr}");
    }

    let (code, stderr) = serve_refused(&args(&["--listen", "127.0.0.1:0", "--database", db]));
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--tls-cert"), "{stderr}");

    // The terminal's client refuses http:// to anything but loopback as well.
    let refused = mynalink_link::backend::Backend::new(
        "http://192.0.2.10:8080/",
        zeroize::Zeroizing::new(TOKEN.into()),
        None,
    );
    assert!(refused.is_err());

    let tokens = path_arg(&files.tokens);
    let server = Server::start(&args(&[
        "--listen",
        "127.0.0.1:0",
        "--database",
        db,
        "--terminal-tokens",
        &tokens,
        "--insecure-loopback-http",
    ]));
    assert!(
        server.url.starts_with("http://127.0.0.1:"),
        "{}",
        server.url
    );
    let backend = files.backend(&server.url, TOKEN);
    assert!(backend.healthy());
    let status = backend.license_status(&license(1)).expect("status");
    assert_eq!(status.reason, "required");
    assert!(server.terminate().success());
}

fn bad_tls_material_and_tokens_are_configuration_errors(backend: Backend) {
    let files = Files::new(backend, "");
    let missing = path_arg(&files.path("missing.pem"));
    let garbage = files.path("garbage.pem");
    std::fs::write(&garbage, "not a PEM file\n").expect("write");
    let garbage = path_arg(&garbage);
    let cert = path_arg(&files.cert);
    let key = path_arg(&files.key);
    let db = files.database.as_str();
    let base = ["--listen", "127.0.0.1:0", "--database", db];

    let bad_tokens = files.path("bad-tokens");
    std::fs::write(&bad_tokens, "terminal-without-hash\n").expect("write");
    let bad_tokens = path_arg(&bad_tokens);
    let seal = path_arg(&files.cert);

    for (extra, needle) in [
        (
            vec!["--tls-cert", &missing, "--tls-key", &key],
            "TLS certificate",
        ),
        (
            vec!["--tls-cert", &garbage, "--tls-key", &key],
            "TLS certificate",
        ),
        (vec!["--tls-cert", &cert, "--tls-key", &garbage], "TLS key"),
        // The certificate's own file holds no private key.
        (vec!["--tls-cert", &cert, "--tls-key", &cert], "TLS key"),
        (
            vec![
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
                "--terminal-tokens",
                &bad_tokens,
            ],
            "line 1",
        ),
        (
            vec![
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
                "--trust-anchor",
                &garbage,
            ],
            "trust anchor",
        ),
        (
            vec!["--tls-cert", &cert, "--tls-key", &key, "--seal-key", &seal],
            "seal key",
        ),
    ] {
        let mut list: Vec<&str> = base.to_vec();
        list.extend(extra.iter().copied());
        let (code, stderr) = serve_refused(&args(&list));
        assert_eq!(code, Some(2), "{list:?}: {stderr}");
        assert!(stderr.contains(needle), "{list:?}: {stderr}");
    }

    let (code, stderr) = serve_refused(&args(&[
        "--listen",
        "127.0.0.1:0",
        "--database",
        "mysql://x",
        "--insecure-loopback-http",
    ]));
    assert_eq!(code, Some(2));
    assert!(stderr.contains("sqlite:PATH"), "{stderr}");
}
