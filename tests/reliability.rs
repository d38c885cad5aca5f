//! Reliability end to end: the real `mynalink` client on the simulated card against the real
//! `mynalink-server` over HTTPS, with a TCP proxy in between (`common/proxy.rs`) to take the
//! backend away, kill it after it decided but before its answer arrived, or never answer.
//!
//! How "mid-request" is reached without timing luck: the proxy forwards the handshake and
//! the request, then drops every byte of the answer. The test waits until the backend has
//! stored the binding (its status API says linked), then SIGKILLs the server (or the client).
//! The client never hears the answer, so the binding stays in its outbox; the next delivery
//! is recognised by the backend as the same statement (200, same binding), and the audit
//! shows exactly one creation.

mod common;
#[path = "common/proxy.rs"]
mod proxy;
#[path = "common/server.rs"]
mod server;
#[path = "common/x509.rs"]
mod x509;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{mynalink, Run, LICENSE, PASSWORD};
use mynalink_link::api::BindingRequest;
use mynalink_link::backend::Submitted;
use mynalink_link::certificate::SigningCertificate;
use mynalink_link::outbox::{EntryOptions, Outbox};
use mynalink_link::statement::{format_time, Statement, PURPOSE, VERSION};
use mynalink_link::SignedStatement;
use proxy::{Mode, Proxy};
use serde_json::Value;
use server::{ServerProcess, Setup, TERMINAL};
use time::OffsetDateTime;

const WAIT: Duration = Duration::from_secs(10);

/// The simulated card's holder (試験　花子, 1990-01-02) on every record unless noted.
const CARD_ONLY: &str = "729913281071";
const OTHER_NAME: &str = "729913281072";
const OTHER_BIRTH: &str = "729913281073";
const SECOND: &str = "729913281074";
const CRAFTED: &str = "729913281075";
const UNKNOWN_TERMINAL: &str = "729913281076";
const SUBSTITUTE_CONFIRMED: &str = "729913281078";
const SUBSTITUTE_UNCONFIRMED: &str = "729913281079";

fn records() -> String {
    let mut rows = String::new();
    for (number, holding, name, birth) in [
        (LICENSE, "myna_only", "試験　花子", "1990-01-02"),
        (CARD_ONLY, "card_only", "試験　花子", "1990-01-02"),
        (OTHER_NAME, "myna_only", "見本　花子", "1990-01-02"),
        (OTHER_BIRTH, "myna_only", "試験　花子", "1985-04-01"),
        (SECOND, "myna_and_card", "試験　花子", "1990-01-02"),
        (CRAFTED, "myna_only", "試験　花子", "1990-01-02"),
        (UNKNOWN_TERMINAL, "myna_only", "試験　花子", "1990-01-02"),
        (
            SUBSTITUTE_CONFIRMED,
            "myna_only",
            "試験　花子",
            "1990-01-02",
        ),
        (
            SUBSTITUTE_UNCONFIRMED,
            "myna_only",
            "試験　花子",
            "1990-01-02",
        ),
    ] {
        rows.push_str(&format!("{number},{holding},{name},{birth},valid\n"));
    }
    rows
}

/// A holder the simulated card does not have: a name with a substitute character (〓).
fn substitute_holder() -> (Vec<u8>, Vec<u8>) {
    x509::jpki_holder("試験　〓子", "00010", "419900102")
}

struct Bench {
    _dir: tempfile::TempDir,
    setup: Setup,
    proxy: Proxy,
    outbox: PathBuf,
}

impl Bench {
    fn new() -> Bench {
        let dir = common::temp_dir();
        let (root, _) = substitute_holder();
        let setup = Setup::new(&dir.path().join("backend"), &records(), &[&root]);
        let outbox = dir.path().join("outbox.db");
        Bench {
            _dir: dir,
            setup,
            proxy: Proxy::start(),
            outbox,
        }
    }

    /// Starts the server and puts it behind the proxy.
    fn serve(&self) -> ServerProcess {
        let server = self.setup.start();
        self.proxy.set_target(Some(&server.url));
        server
    }

    fn backend_args(&self, outbox: &Path, token_file: &Path) -> Vec<String> {
        vec![
            "--backend".into(),
            self.proxy.url(),
            "--token-file".into(),
            token_file.display().to_string(),
            "--ca-file".into(),
            self.setup.ca_pem.display().to_string(),
            "--backend-key".into(),
            self.setup.seal_public.display().to_string(),
            "--outbox".into(),
            outbox.display().to_string(),
        ]
    }

    fn headless_args(&self, license: &str, terminal: &str, token_file: &Path) -> Vec<String> {
        let mut args: Vec<String> = [
            "headless",
            "--sim",
            "--license",
            license,
            "--pin-stdin",
            "--json",
            "--terminal-id",
            terminal,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(self.backend_args(&self.outbox, token_file));
        args
    }

    fn headless(&self, license: &str) -> Run {
        self.headless_as(license, TERMINAL, &self.setup.token_file)
    }

    fn headless_as(&self, license: &str, terminal: &str, token_file: &Path) -> Run {
        let args = self.headless_args(license, terminal, token_file);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        mynalink(&args, Some(&format!("{PASSWORD}\n")))
    }

    /// A headless run left running (to be killed).
    fn spawn_headless(&self, license: &str) -> Child {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mynalink"))
            .args(self.headless_args(license, TERMINAL, &self.setup.token_file))
            .env("XDG_CONFIG_HOME", "/nonexistent/mynalink-tests")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mynalink");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(format!("{PASSWORD}\n").as_bytes())
            .expect("password line");
        child
    }

    fn outbox_command(&self, action: &str, outbox: &Path) -> Value {
        let mut args: Vec<String> = vec!["outbox".into(), action.into(), "--json".into()];
        args.extend(self.backend_args(outbox, &self.setup.token_file));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = mynalink(&args, None);
        serde_json::from_str(run.stdout.trim())
            .unwrap_or_else(|e| panic!("{e}: {}{}", run.stdout, run.stderr))
    }

    fn flush(&self) -> Value {
        self.outbox_command("flush", &self.outbox)
    }

    fn entries(&self) -> usize {
        entries(&self.outbox)
    }

    /// Waits until every entry of `outbox` is due (the backoff after a failed attempt is at
    /// most 2 s): a computed wait, not a guess.
    fn wait_until_due(&self, outbox: &Path) {
        let latest = Outbox::open(outbox)
            .expect("open the outbox")
            .list()
            .expect("list")
            .iter()
            .map(|e| e.next_attempt_at)
            .max();
        if let Some(at) = latest {
            let until = at - OffsetDateTime::now_utc();
            if let Ok(wait) = Duration::try_from(until) {
                assert!(wait <= Duration::from_secs(3), "due in {wait:?}");
                std::thread::sleep(wait + Duration::from_millis(5));
            }
        }
    }

    /// Whether the backend has linked `license`, asked directly (not through the proxy).
    fn linked(&self, server: &ServerProcess, license: &str) -> bool {
        self.setup
            .client(&server.url)
            .license_status(license)
            .expect("status")
            .linked
    }
}

fn entries(outbox: &Path) -> usize {
    Outbox::open(outbox)
        .expect("open the outbox")
        .len()
        .expect("count")
}

fn delivered(flush: &Value) -> &Vec<Value> {
    flush["delivered"]
        .as_array()
        .unwrap_or_else(|| panic!("no deliveries in {flush}"))
}

fn kill(mut child: Child) {
    child.kill().expect("SIGKILL the client");
    child.wait().expect("reap the client");
}

fn wait_for(what: &str, done: impl FnMut() -> bool) {
    Proxy::wait_for(what, WAIT, done);
}

#[test]
fn a_backend_down_at_upload_gets_the_binding_exactly_once_later() {
    let bench = Bench::new();
    // Nothing behind the proxy: the backend is down.
    let run = bench.headless(LICENSE);
    let json = run.json();
    assert_eq!(json["outcome"], "queued", "{json}");
    assert_eq!(run.status, 0);
    assert_eq!(bench.entries(), 1);

    let server = bench.serve();
    bench.wait_until_due(&bench.outbox);
    let flushed = bench.flush();
    let rows = delivered(&flushed);
    assert_eq!(rows.len(), 1, "{flushed}");
    assert_eq!(rows[0]["outcome"], "linked", "{flushed}");
    assert_eq!(rows[0]["repeated"], false, "{flushed}");
    assert_eq!(flushed["remaining"], 0);
    // Nothing is left to send twice.
    assert_eq!(delivered(&bench.flush()).len(), 0);
    assert!(bench.linked(&server, LICENSE));
    assert_eq!(bench.setup.decisions("created", LICENSE), 1);
    assert_eq!(bench.setup.decisions("repeated", LICENSE), 0);
    server.kill();
}

#[test]
fn a_server_killed_after_deciding_but_before_answering_links_once() {
    let bench = Bench::new();
    let server = bench.serve();
    bench.proxy.set_mode(Mode::SwallowAnswers);
    let client = bench.spawn_headless(LICENSE);
    // The backend stored the binding; its answer is held by the proxy.
    wait_for("the backend to link the record", || {
        bench.linked(&server, LICENSE)
    });
    server.kill();
    // The client sees the connection die without an answer: the binding stays queued.
    let output = client.wait_with_output().expect("client exit");
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(bench.entries(), 1);

    let server = bench.serve();
    bench.proxy.set_mode(Mode::Forward);
    bench.wait_until_due(&bench.outbox);
    let flushed = bench.flush();
    let rows = delivered(&flushed);
    assert_eq!(rows.len(), 1, "{flushed}");
    assert_eq!(rows[0]["outcome"], "linked", "{flushed}");
    // The backend recognised the statement: the same binding, not a second one.
    assert_eq!(rows[0]["repeated"], true, "{flushed}");
    assert_eq!(bench.entries(), 0);
    assert_eq!(bench.setup.decisions("created", LICENSE), 1);
    assert_eq!(bench.setup.decisions("repeated", LICENSE), 1);
    server.kill();
}

#[test]
fn a_client_killed_during_the_upload_delivers_on_the_next_start() {
    let bench = Bench::new();
    let server = bench.serve();

    // Killed while the backend never answers (before the request reached it).
    bench.proxy.set_mode(Mode::Silent);
    let client = bench.spawn_headless(LICENSE);
    wait_for("the signed binding in the outbox", || bench.entries() == 1);
    wait_for("the upload to start", || bench.proxy.accepted() >= 1);
    kill(client);
    assert!(!bench.linked(&server, LICENSE));
    assert_eq!(bench.entries(), 1);

    bench.proxy.set_mode(Mode::Forward);
    // Never tried to the end, so due at once.
    let flushed = bench.flush();
    let rows = delivered(&flushed);
    assert_eq!(rows.len(), 1, "{flushed}");
    assert_eq!(rows[0]["outcome"], "linked", "{flushed}");
    assert_eq!(rows[0]["repeated"], false, "{flushed}");
    assert_eq!(bench.entries(), 0);

    // Killed after the backend decided, before its answer arrived.
    bench.proxy.set_mode(Mode::SwallowAnswers);
    let client = bench.spawn_headless(SECOND);
    wait_for("the backend to link the second record", || {
        bench.linked(&server, SECOND)
    });
    kill(client);
    assert_eq!(bench.entries(), 1);
    bench.proxy.set_mode(Mode::Forward);
    let flushed = bench.flush();
    let rows = delivered(&flushed);
    assert_eq!(rows.len(), 1, "{flushed}");
    assert_eq!(rows[0]["outcome"], "linked", "{flushed}");
    assert_eq!(rows[0]["repeated"], true, "{flushed}");
    assert_eq!(bench.entries(), 0);

    for license in [LICENSE, SECOND] {
        assert_eq!(bench.setup.decisions("created", license), 1, "{license}");
    }
    server.kill();
}

#[test]
fn the_same_statement_from_two_clients_at_once_is_one_binding() {
    let bench = Bench::new();
    assert_eq!(bench.headless(LICENSE).json()["outcome"], "queued");
    // A second terminal process with the same entry (as after restoring a backup).
    let copy = bench.outbox.with_file_name("outbox-copy.db");
    std::fs::copy(&bench.outbox, &copy).expect("copy the outbox");
    assert_eq!(entries(&copy), 1);

    let server = bench.serve();
    bench.wait_until_due(&bench.outbox);
    bench.wait_until_due(&copy);
    // Both uploads are held at the proxy and released together.
    bench.proxy.close_gate();
    let before = bench.proxy.accepted();
    let flushes: Vec<_> = [bench.outbox.clone(), copy.clone()]
        .into_iter()
        .map(|outbox| {
            let mut args: Vec<String> = vec!["outbox".into(), "flush".into(), "--json".into()];
            args.extend(bench.backend_args(&outbox, &bench.setup.token_file));
            Command::new(env!("CARGO_BIN_EXE_mynalink"))
                .args(args)
                .env("XDG_CONFIG_HOME", "/nonexistent/mynalink-tests")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start mynalink outbox flush")
        })
        .collect();
    wait_for("both uploads at the proxy", || {
        bench.proxy.accepted() >= before + 2
    });
    bench.proxy.open_gate();
    let mut rows = Vec::new();
    for flush in flushes {
        let output = flush.wait_with_output().expect("flush exit");
        let json: Value =
            serde_json::from_slice(&output.stdout).expect("flush prints one JSON object");
        assert_eq!(output.status.code(), Some(0), "{json}");
        rows.extend(delivered(&json).iter().cloned());
    }
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r["outcome"] == "linked"), "{rows:?}");
    assert_eq!(rows[0]["binding_id"], rows[1]["binding_id"]);
    let created = rows.iter().filter(|r| r["repeated"] == false).count();
    assert_eq!(created, 1, "{rows:?}");
    assert_eq!(bench.setup.decisions("created", LICENSE), 1);
    assert_eq!(entries(&bench.outbox) + entries(&copy), 0);
    server.kill();
}

/// A statement for `license` from this terminal at `time`, signed with the test key.
fn crafted(license: &str, certificate: &[u8], time: OffsetDateTime) -> SignedStatement {
    let cert = SigningCertificate::parse(certificate).expect("holder certificate");
    let statement = Statement {
        purpose: PURPOSE.into(),
        version: VERSION,
        license_number: license.into(),
        certificate_sha256: hex::encode(cert.sha256()),
        certificate_serial: cert.serial_hex(),
        issuer_key_id: cert.authority_key_id().map(hex::encode),
        terminal_id: TERMINAL.into(),
        operator_id: Some("staff-0042".into()),
        nonce: hex::encode(rand::random::<[u8; 16]>()),
        time: format_time(time.replace_nanosecond(0).expect("whole seconds")),
        terms: None,
    };
    let bytes = statement.canonical_bytes();
    SignedStatement {
        signature: x509::sign(&bytes),
        statement,
        bytes,
        algorithm: mynalink_card::SignatureAlgorithm::RsaPkcs1(
            mynalink_card::HashAlgorithm::Sha256,
        ),
        certificate_der: certificate.to_vec(),
    }
}

fn request(signed: &SignedStatement) -> BindingRequest {
    BindingRequest {
        statement: x509::base64(&signed.bytes),
        signature: x509::base64(&signed.signature),
        certificate: Some(x509::base64(&signed.certificate_der)),
        sealed_certificate: None,
        ca_certificate: None,
        staff_confirmed_identity: false,
    }
}

#[test]
fn a_staff_confirmation_queued_with_the_binding_is_sent_by_flush() {
    let bench = Bench::new();
    let (_, holder) = substitute_holder();
    let key = x509::seal_key().public_key().clone();
    {
        let mut outbox = Outbox::open(&bench.outbox).expect("outbox");
        let now = OffsetDateTime::now_utc();
        for (license, confirmed) in [
            (SUBSTITUTE_CONFIRMED, true),
            (SUBSTITUTE_UNCONFIRMED, false),
        ] {
            let options = EntryOptions {
                staff_confirmed_identity: confirmed,
                ca_certificate: None,
            };
            let signed = crafted(license, &holder, now - time::Duration::minutes(1));
            outbox
                .add_with(&signed, &key, &options, now)
                .expect("queue");
        }
    }
    let listed = bench.outbox_command("list", &bench.outbox);
    let flags: Vec<_> = listed["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["staff_confirmed_identity"].clone())
        .collect();
    assert_eq!(flags, [true, false], "{listed}");

    let server = bench.serve();
    let flushed = bench.flush();
    let rows = delivered(&flushed);
    assert_eq!(rows.len(), 2, "{flushed}");
    assert_eq!(rows[0]["outcome"], "linked", "{flushed}");
    assert_eq!(rows[1]["outcome"], "failed", "{flushed}");
    assert_eq!(
        rows[1]["error"]["code"], "identity_needs_confirmation",
        "{flushed}"
    );
    assert_eq!(bench.setup.decisions("created", SUBSTITUTE_CONFIRMED), 1);
    assert_eq!(bench.setup.decisions("created", SUBSTITUTE_UNCONFIRMED), 0);
    assert_eq!(bench.entries(), 0);
    server.kill();
}

#[test]
fn each_refusal_has_its_own_code_and_nothing_is_stored() {
    let bench = Bench::new();
    let server = bench.serve();

    // Through the client, as a counter would meet them.
    let wrong_token = bench.setup.dir.join("wrong-token");
    std::fs::write(&wrong_token, "not-this-terminals-token\n").expect("token");
    std::fs::set_permissions(
        &wrong_token,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod the token file");
    for (license, terminal, token, code, detail) in [
        (
            CARD_ONLY,
            TERMINAL,
            &bench.setup.token_file,
            "not_eligible",
            None,
        ),
        (
            OTHER_NAME,
            TERMINAL,
            &bench.setup.token_file,
            "identity_mismatch",
            Some("name differs"),
        ),
        (
            OTHER_BIRTH,
            TERMINAL,
            &bench.setup.token_file,
            "identity_mismatch",
            Some("birth_date differs"),
        ),
        (
            UNKNOWN_TERMINAL,
            "no-such-terminal",
            &bench.setup.token_file,
            "terminal_mismatch",
            None,
        ),
        (LICENSE, TERMINAL, &wrong_token, "unauthenticated", None),
    ] {
        let run = bench.headless_as(license, terminal, token);
        let json = run.json();
        assert_eq!(json["outcome"], "failed", "{license}: {json}");
        assert_eq!(json["error"]["code"], code, "{license}: {json}");
        assert_eq!(json["error"]["from_backend"], true, "{json}");
        assert!(json["error"]["message_ja"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert!(json["error"]["message_en"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        if let Some(detail) = detail {
            assert_eq!(json["error"]["detail"], detail, "{json}");
        }
        assert_eq!(run.status, 1);
    }
    // The refused token refused the terminal, not the binding: it waits in the outbox.
    assert_eq!(bench.entries(), 1);

    // Crafted submissions, sent by the terminal's own client over TLS.
    let client = bench.setup.client(&server.url);
    let (_, holder) = substitute_holder();
    let (_, another) = x509::jpki_holder("見本　太郎", "00000", "419850401");
    let now = OffsetDateTime::now_utc();
    let minute_ago = now - time::Duration::minutes(1);

    let mut forged = request(&crafted(CRAFTED, &holder, minute_ago));
    let mut signature = forged.signature.into_bytes();
    signature[10] = if signature[10] == b'A' { b'B' } else { b'A' };
    forged.signature = String::from_utf8(signature).expect("base64");

    // Signed by one holder's key, sent with another person's certificate.
    let mut swapped = request(&crafted(CRAFTED, &holder, minute_ago));
    swapped.certificate = request(&crafted(CRAFTED, &another, minute_ago)).certificate;

    let stale = request(&crafted(CRAFTED, &holder, now - time::Duration::hours(73)));

    for (request, code) in [
        (forged, "signature_invalid"),
        (swapped, "statement_invalid"),
        (stale, "statement_stale"),
    ] {
        match client.submit(&request).expect("the backend answers") {
            Submitted::Rejected(error) => assert_eq!(error.code, code, "{error:?}"),
            other => panic!("{code}: {other:?}"),
        }
    }

    // Nothing was linked; every refusal was audited with its code.
    for license in [
        CARD_ONLY,
        OTHER_NAME,
        OTHER_BIRTH,
        UNKNOWN_TERMINAL,
        LICENSE,
        CRAFTED,
    ] {
        assert!(!bench.linked(&server, license), "{license}");
        assert_eq!(bench.setup.decisions("created", license), 0, "{license}");
    }
    let audit = bench.setup.audit();
    for code in [
        "not_eligible",
        "identity_mismatch",
        "terminal_mismatch",
        "signature_invalid",
        "statement_invalid",
        "statement_stale",
    ] {
        assert!(audit.iter().any(|(c, _)| c == code), "{code}: {audit:?}");
    }

    // With the right token the queued binding goes out.
    bench.wait_until_due(&bench.outbox);
    let flushed = bench.flush();
    assert_eq!(delivered(&flushed)[0]["outcome"], "linked", "{flushed}");
    assert_eq!(bench.setup.decisions("created", LICENSE), 1);
    server.kill();
}

#[test]
fn one_run_uses_one_connection_for_everything_it_sends() {
    let bench = Bench::new();
    // One binding left waiting by an earlier run …
    assert_eq!(bench.headless(LICENSE).json()["outcome"], "queued");
    let server = bench.serve();
    bench.wait_until_due(&bench.outbox);
    // … goes out with the next run's own binding: two requests.
    let before = bench.proxy.accepted();
    let run = bench.headless(SECOND);
    let json = run.json();
    assert_eq!(json["outcome"], "linked", "{json}");
    assert_eq!(
        bench.proxy.accepted() - before,
        1,
        "TCP connections in one run"
    );
    assert_eq!(bench.proxy.requests_forwarded(), 1);
    assert!(bench.linked(&server, LICENSE) && bench.linked(&server, SECOND));
    assert_eq!(bench.entries(), 0);
    server.kill();
}

#[test]
fn the_background_sender_delivers_once_the_backend_is_back() {
    use mynalink_link::sender::{Sender, SenderEvent, SenderOptions};

    let bench = Bench::new();
    let ca = std::fs::read(&bench.setup.ca_pem).expect("CA");
    let client = mynalink_link::backend::Backend::new(
        &bench.proxy.url(),
        zeroize::Zeroizing::new(server::TOKEN.to_string()),
        Some(&ca),
    )
    .expect("backend client");
    let options = SenderOptions {
        recheck_interval: Duration::from_secs(60),
        error_retry: Duration::from_secs(60),
    };
    let (handle, events) = Sender::start_with(&bench.outbox, client, options).expect("sender");
    let next = || loop {
        match events.recv_timeout(WAIT).expect("a sender event in time") {
            SenderEvent::Pending { .. } => continue,
            event => return event,
        }
    };

    // Signed while the backend is down: queued, with the staff confirmation kept.
    let (_, holder) = substitute_holder();
    let key = x509::seal_key().public_key().clone();
    let signed = crafted(
        SUBSTITUTE_CONFIRMED,
        &holder,
        OffsetDateTime::now_utc() - time::Duration::minutes(1),
    );
    let confirmed = EntryOptions {
        staff_confirmed_identity: true,
        ca_certificate: None,
    };
    let (id, new) = handle.enqueue(&signed, &key, &confirmed).expect("enqueue");
    assert!(new);
    match next() {
        SenderEvent::Queued { entry, error, .. } => {
            assert_eq!(entry, id);
            assert_eq!(error, None);
        }
        other => panic!("{other:?}"),
    }

    let server = bench.serve();
    handle.flush_now();
    match next() {
        SenderEvent::Delivered {
            entry,
            license_number,
            repeated,
            ..
        } => {
            assert_eq!(entry, id);
            assert_eq!(license_number, SUBSTITUTE_CONFIRMED);
            assert!(!repeated);
        }
        other => panic!("{other:?}"),
    }
    handle.shutdown();
    assert_eq!(events.try_iter().last(), Some(SenderEvent::Stopped));
    assert_eq!(bench.entries(), 0);
    assert_eq!(bench.setup.decisions("created", SUBSTITUTE_CONFIRMED), 1);
    server.kill();
}
