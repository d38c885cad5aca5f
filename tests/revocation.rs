//! Revocation end to end: the real `mynalink` client on the simulated card against the real
//! `mynalink-server` over HTTPS, which asks OpenSSL's OCSP responder (`openssl ocsp` on
//! loopback) about the card's certificate; the simulated card's TEST root is run as a CA
//! by `openssl ca`, which revokes the certificate.
//!
//! - A revoked certificate is refused and explained (move or name change: renew it at the
//!   municipal office); nothing is kept in the outbox.
//! - With the responder down the binding is kept in the outbox (503
//!   `revocation_unavailable`); once it is back, `mynalink outbox flush` links it.
//! - `mynalink-server recheck` makes the binding of a certificate revoked since stale (the
//!   status says a first stage is needed); a new first stage supersedes it.

mod common;
#[path = "common/proxy.rs"]
mod proxy;
#[path = "common/server.rs"]
mod server;
#[path = "common/x509.rs"]
mod x509;

use std::path::PathBuf;

use common::{mynalink, Run, LICENSE, PASSWORD};
use mynalink_link::api::BindingState;
use mynalink_server::revocation::testing::{OcspResponder, ResponderSigner, TestCa};
use proxy::Proxy;
use serde_json::Value;
use server::{ServerProcess, Setup, TERMINAL};

struct Bench {
    _dir: tempfile::TempDir,
    setup: Setup,
    ca: TestCa,
    outbox: PathBuf,
}

impl Bench {
    /// A backend that asks the responder at `ocsp_url` (require: the default with a
    /// source).
    fn new(ocsp_url: impl FnOnce(&TestCa) -> String) -> Bench {
        let dir = common::temp_dir();
        let key = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/crates/simcard/keys/sign_root.der"
        ))
        .expect("the simulated card's root key");
        let ca = TestCa::adopt(
            &dir.path().join("ca"),
            mynalink_simcard::sign_test_root_der(),
            &key,
        )
        .expect("the simulated card's root as a CA");
        let url = ocsp_url(&ca);
        let setup = Setup::new(
            &dir.path().join("backend"),
            &format!("{LICENSE},myna_only,試験　花子,1990-01-02,valid\n"),
            &[],
        )
        .with_revocation(&["--ocsp".into(), url]);
        let outbox = dir.path().join("outbox.db");
        Bench {
            _dir: dir,
            setup,
            ca,
            outbox,
        }
    }

    fn responder(&self) -> OcspResponder {
        self.ca
            .responder(&self.ca, ResponderSigner::Ca, 60, None)
            .expect("openssl ocsp")
    }

    fn backend_args(&self, server: &ServerProcess) -> Vec<String> {
        vec![
            "--backend".into(),
            server.url.clone(),
            "--token-file".into(),
            self.setup.token_file.display().to_string(),
            "--ca-file".into(),
            self.setup.ca_pem.display().to_string(),
            "--backend-key".into(),
            self.setup.seal_public.display().to_string(),
            "--outbox".into(),
            self.outbox.display().to_string(),
        ]
    }

    fn headless(&self, server: &ServerProcess) -> Run {
        let mut args: Vec<String> = [
            "headless",
            "--sim",
            "--license",
            LICENSE,
            "--pin-stdin",
            "--json",
            "--terminal-id",
            TERMINAL,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(self.backend_args(server));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        mynalink(&args, Some(&format!("{PASSWORD}\n")))
    }

    fn outbox(&self, server: &ServerProcess, action: &str) -> (i32, Value) {
        let mut args: Vec<String> = vec!["outbox".into(), action.into(), "--json".into()];
        args.extend(self.backend_args(server));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = mynalink(&args, None);
        let json = serde_json::from_str(run.stdout.trim())
            .unwrap_or_else(|e| panic!("{e}: {}{}", run.stdout, run.stderr));
        (run.status, json)
    }

    fn status(&self, server: &ServerProcess) -> mynalink_link::api::LicenseStatus {
        self.setup
            .client(&server.url)
            .license_status(LICENSE)
            .expect("status")
    }
}

fn card_certificate() -> Vec<u8> {
    mynalink_simcard::test_identity(mynalink_simcard::Validity::Current)
        .sign_cert_der
        .clone()
}

#[test]
fn a_revoked_certificate_is_refused_explained_and_not_queued() {
    let mut responder = None;
    let bench = Bench::new(|ca| {
        ca.revoke(&card_certificate(), "affiliationChanged")
            .expect("revoke");
        let r = ca
            .responder(ca, ResponderSigner::Ca, 60, None)
            .expect("openssl ocsp");
        let url = r.url.clone();
        responder = Some(r);
        url
    });
    let server = bench.setup.start();
    let run = bench.headless(&server);
    let json = run.json();
    assert_eq!(json["outcome"], "failed", "{}", run.stdout);
    let error = &json["error"];
    assert_eq!(error["code"], "certificate_revoked", "{json}");
    let ja = error["message_ja"].as_str().expect("ja");
    let en = error["message_en"].as_str().expect("en");
    assert!(ja.contains("転居") && ja.contains("市区町村の窓口"), "{ja}");
    assert!(
        en.contains("a move") && en.contains("municipal office"),
        "{en}"
    );
    assert_ne!(run.status, 0);
    // A final answer: nothing waits in the outbox.
    let (_, list) = bench.outbox(&server, "list");
    assert_eq!(list["entries"].as_array().map(Vec::len), Some(0), "{list}");
    assert_eq!(bench.setup.decisions("certificate_revoked", LICENSE), 1);
    assert_eq!(bench.setup.decisions("created", LICENSE), 0);
    drop(responder);
}

#[test]
fn with_the_responder_down_the_binding_waits_in_the_outbox_until_it_is_back() {
    // The responder sits behind a proxy that can take it away.
    let ocsp_proxy = Proxy::start();
    let bench = Bench::new(|_| format!("http://127.0.0.1:{}/", ocsp_proxy.port));
    bench
        .ca
        .register_valid(&card_certificate())
        .expect("register");
    let responder = bench.responder();
    let server = bench.setup.start();

    let run = bench.headless(&server);
    let json = run.json();
    assert_eq!(json["outcome"], "queued", "{}", run.stdout);
    let reason = json["queued_reason"].as_str().expect("queued_reason");
    assert!(reason.contains("revocation_unavailable"), "{reason}");
    assert_eq!(bench.setup.decisions("revocation_unavailable", LICENSE), 1);
    assert_eq!(bench.setup.decisions("created", LICENSE), 0);
    let (_, list) = bench.outbox(&server, "list");
    assert_eq!(list["entries"].as_array().map(Vec::len), Some(1), "{list}");

    // Still down: flushing keeps it.
    let (status, flushed) = bench.outbox(&server, "flush");
    assert_ne!(status, 0, "{flushed}");
    assert_eq!(flushed["remaining"], 1, "{flushed}");

    // Back: linked.
    ocsp_proxy.set_target(Some(&responder.url));
    let (status, flushed) = bench.outbox(&server, "flush");
    assert_eq!(status, 0, "{flushed}");
    let delivered = flushed["delivered"].as_array().expect("delivered");
    assert_eq!(delivered.len(), 1, "{flushed}");
    assert_eq!(delivered[0]["outcome"], "linked", "{flushed}");
    assert_eq!(flushed["remaining"], 0, "{flushed}");
    assert_eq!(bench.setup.decisions("created", LICENSE), 1);
    assert_eq!(
        bench.status(&server).binding_state,
        Some(BindingState::Active)
    );
}

#[test]
fn a_recheck_makes_the_binding_stale_and_a_new_first_stage_supersedes_it() {
    let mut responder = None;
    let bench = Bench::new(|ca| {
        ca.register_valid(&card_certificate()).expect("register");
        let r = ca
            .responder(ca, ResponderSigner::Ca, 60, None)
            .expect("openssl ocsp");
        let url = r.url.clone();
        responder = Some(r);
        url
    });
    let responder = responder.expect("responder");
    let ocsp = ["--ocsp".to_string(), responder.url.clone()];
    let server = bench.setup.start();
    let run = bench.headless(&server);
    assert_eq!(run.json()["outcome"], "linked", "{}", run.stdout);

    // Nothing changed yet.
    let (code, out, err) = bench.setup.recheck(&ocsp);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("1 good"), "{out}");

    // The certificate is put on hold (J-LIS suspends it, e.g. while a move is processed).
    bench
        .ca
        .revoke(&card_certificate(), "certificateHold")
        .expect("hold");
    responder.reload_index().expect("reload");
    let (code, out, err) = bench.setup.recheck(&ocsp);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("1 revoked"), "{out}");
    let status = bench.status(&server);
    assert_eq!(
        status.binding_state,
        Some(BindingState::Stale),
        "{status:?}"
    );
    assert_eq!(status.stale_reason.as_deref(), Some("certificate_revoked"));
    assert!(status.first_stage_needed && !status.linked, "{status:?}");
    assert_eq!(bench.setup.decisions("binding_stale", LICENSE), 1);

    // While it is on hold, a new first stage is refused.
    let run = bench.headless(&server);
    assert_eq!(
        run.json()["error"]["code"],
        "certificate_revoked",
        "{}",
        run.stdout
    );

    // Released: a new first stage supersedes the stale binding.
    bench.ca.release_hold(&card_certificate()).expect("release");
    responder.reload_index().expect("reload");
    let run = bench.headless(&server);
    assert_eq!(run.json()["outcome"], "linked", "{}", run.stdout);
    assert_eq!(bench.setup.decisions("binding_superseded", LICENSE), 1);
    assert_eq!(bench.setup.decisions("created", LICENSE), 2);
    let status = bench.status(&server);
    assert_eq!(status.binding_state, Some(BindingState::Active));
    assert!(status.linked && !status.first_stage_needed);
}
