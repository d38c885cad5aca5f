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
    the_public_test_root_needs_allow_test_root,
);

fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The arguments, with `--revocation off` (these tests are not about revocation).
fn args(list: &[&str]) -> Vec<String> {
    list.iter()
        .copied()
        .chain(["--revocation", "off"])
        .map(str::to_string)
        .collect()
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

/// The simulated card's TEST root (its private key is public) is no trust anchor for a
/// server unless `--allow-test-root` says this is a demo or a test.
fn the_public_test_root_needs_allow_test_root(backend: Backend) {
    let files = Files::new(backend, "");
    let without: Vec<String> = files
        .tls_args()
        .into_iter()
        .filter(|a| a != "--allow-test-root")
        .collect();
    let (code, stderr) = serve_refused(&without);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("TEST root"), "{stderr}");
    assert!(stderr.contains("--allow-test-root"), "{stderr}");
    assert!(stderr.contains(&path_arg(&files.trust_anchor)), "{stderr}");
    // With it, the server starts.
    let server = Server::start(&files.tls_args());
    assert!(server.terminate().success());
}

fn bad_tls_material_and_tokens_are_configuration_errors(backend: Backend) {
    let files = Files::new(backend, "");
    let missing = path_arg(&files.path("missing.pem"));
    let garbage = files.path("garbage.pem");
    write_secret(&garbage, "not a PEM file\n");
    let garbage = path_arg(&garbage);
    let cert = path_arg(&files.cert);
    let key = path_arg(&files.key);
    let db = files.database.as_str();
    let base = ["--listen", "127.0.0.1:0", "--database", db];

    let bad_tokens = files.path("bad-tokens");
    write_secret(&bad_tokens, "terminal-without-hash\n");
    let bad_tokens = path_arg(&bad_tokens);
    // The certificate, private to the server's user: files that are keys in name only.
    let cert_copy = files.path("server-copy.pem");
    write_secret(&cert_copy, std::fs::read(&files.cert).expect("read cert"));
    let cert_copy = path_arg(&cert_copy);
    let seal = cert_copy.clone();
    // A seal key of the retired RSA sealing.
    let rsa_seal = files.path("rsa-seal.pem");
    {
        use rand::SeedableRng;
        use rsa::pkcs8::EncodePrivateKey;
        let rsa = rsa::RsaPrivateKey::new(&mut rand::rngs::StdRng::seed_from_u64(5), 1024)
            .expect("keygen");
        let pem = rsa.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).expect("pem");
        write_secret(&rsa_seal, pem.as_bytes());
    }
    let rsa_seal = path_arg(&rsa_seal);
    // Secret files other users can read.
    let open_key = files.path("open.key");
    std::fs::copy(&files.key, &open_key).expect("copy key");
    chmod(&open_key, 0o644);
    let open_key = path_arg(&open_key);
    let open_tokens = files.path("open-tokens");
    std::fs::copy(&files.tokens, &open_tokens).expect("copy tokens");
    chmod(&open_tokens, 0o640);
    let open_tokens = path_arg(&open_tokens);

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
        (
            vec!["--tls-cert", &cert, "--tls-key", &cert_copy],
            "TLS key",
        ),
        (
            vec!["--tls-cert", &cert, "--tls-key", &open_key],
            "mode 0644 lets other users read or change it; run `chmod 600",
        ),
        (
            vec![
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
                "--terminal-tokens",
                &open_tokens,
            ],
            "mode 0640",
        ),
        (
            vec![
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
                "--seal-key",
                &rsa_seal,
            ],
            "an RSA key, which is no longer used for sealing",
        ),
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
