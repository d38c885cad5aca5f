//! The headless client against a reference backend: upload through the outbox, the
//! backend's decisions, and a backend that is down at upload time.

mod common;

use common::*;
use mynalink_server::embedded::{EmbeddedBackend, Setup};
use serde_json::Value;

const TERMINAL: &str = "test-terminal";
const RECORDS: &str = "license_number,holding,name,birth_date,status\n\
729913281070,myna_only,試験　花子,1990-01-02,valid\n\
729913281071,card_only,試験　花子,1990-01-02,valid\n";

fn root() -> &'static [u8] {
    include_bytes!("../assets/sim-sign-test-root.der")
}

fn start(dir: &std::path::Path, port: u16) -> EmbeddedBackend {
    EmbeddedBackend::start(&Setup {
        dir: dir.to_path_buf(),
        trust_anchors: &[root()],
        records_csv: RECORDS,
        terminal_id: TERMINAL,
        port,
    })
    .expect("embedded backend")
}

struct Client {
    args: Vec<String>,
}

impl Client {
    fn new(backend: &EmbeddedBackend, outbox: &std::path::Path) -> Client {
        let dir = backend.dir.clone();
        Client {
            args: vec![
                "--backend".into(),
                backend.url.clone(),
                "--token-file".into(),
                path_str(&dir.join("token")),
                "--backend-key".into(),
                path_str(&dir.join("seal-public.pem")),
                "--outbox".into(),
                path_str(outbox),
            ],
        }
    }

    fn headless(&self, license: &str, password: &str) -> Run {
        let mut args: Vec<&str> = vec![
            "headless",
            "--sim",
            "--license",
            license,
            "--pin-stdin",
            "--json",
            "--terminal-id",
            TERMINAL,
        ];
        args.extend(self.args.iter().map(String::as_str));
        mynalink(&args, Some(password))
    }

    fn headless_logged(&self, state: &std::path::Path, license: &str, password: &str) -> Run {
        let mut args: Vec<&str> = vec![
            "headless",
            "--sim",
            "--license",
            license,
            "--pin-stdin",
            "--json",
            "--terminal-id",
            TERMINAL,
        ];
        args.extend(self.args.iter().map(String::as_str));
        mynalink_with_state(state, &args, Some(password))
    }

    fn outbox(&self, action: &str) -> Value {
        let mut args: Vec<&str> = vec!["outbox", action, "--json"];
        args.extend(self.args.iter().map(String::as_str));
        let run = mynalink(&args, None);
        serde_json::from_str(run.stdout.trim())
            .unwrap_or_else(|e| panic!("{e}: {}{}", run.stdout, run.stderr))
    }
}

#[test]
fn linked_then_already_linked_then_a_final_rejection() {
    let dir = temp_dir();
    let backend = start(&dir.path().join("backend"), 0);
    let client = Client::new(&backend, &dir.path().join("outbox.db"));

    let first = client.headless(LICENSE, "TEST1234\n");
    let json = first.json();
    assert_eq!(json["outcome"], "linked", "{json} {}", first.stderr);
    assert!(json["binding_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(first.status, 0);

    let again = client.headless(LICENSE, "TEST1234\n").json();
    assert_eq!(again["outcome"], "already_linked", "{again}");
    assert_eq!(again["linked_via"], "counter");

    // A holder with only the plastic license cannot link (§2(1)): the backend's own code.
    let card_only = client.headless("729913281071", "TEST1234\n");
    let json = card_only.json();
    assert_eq!(json["outcome"], "failed");
    assert_eq!(json["error"]["code"], "not_eligible", "{json}");
    assert_eq!(json["error"]["from_backend"], true);
    assert_eq!(card_only.status, 1);

    // Every decided binding left the outbox.
    assert_eq!(
        client.outbox("list")["entries"].as_array().map(Vec::len),
        Some(0)
    );
    backend.remove();
}

/// A backend that was set up and then went down; it comes back with `start(dir, port)`.
struct Down {
    dir: tempfile::TempDir,
    backend_dir: std::path::PathBuf,
    port: u16,
    client: Client,
}

fn backend_down() -> Down {
    let dir = temp_dir();
    let backend_dir = dir.path().join("backend");
    let backend = start(&backend_dir, 0);
    let port = backend.port();
    let client = Client::new(&backend, &dir.path().join("outbox.db"));
    backend.stop();
    Down {
        dir,
        backend_dir,
        port,
        client,
    }
}

#[test]
fn backend_down_at_upload_is_queued_then_delivered_once() {
    let Down {
        dir,
        backend_dir,
        port,
        client,
    } = backend_down();

    let run = client.headless(LICENSE, "TEST1234\n");
    let json = run.json();
    assert_eq!(json["outcome"], "queued", "{json}");
    assert!(json["queued_reason"].is_string());
    assert_eq!(run.status, 0);
    let listed = client.outbox("list");
    let entries = listed["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{listed}");
    assert_eq!(entries[0]["license_number"], LICENSE);
    assert_eq!(entries[0]["attempts"], 1);
    // The outbox holds no personal data in the clear.
    let bytes = std::fs::read(dir.path().join("outbox.db")).expect("outbox file");
    assert!(!contains(&bytes, "試験　花子".as_bytes()));

    // The same backend comes back on the same port; the entry is due within the first
    // backoff window (at most 2 s).
    let backend = start(&backend_dir, port);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let flushed = client.outbox("flush");
    let delivered = flushed["delivered"].as_array().expect("delivered");
    assert_eq!(delivered.len(), 1, "{flushed}");
    assert_eq!(delivered[0]["outcome"], "linked", "{flushed}");
    assert_eq!(flushed["remaining"], 0);
    // Nothing left to send twice.
    let again = client.outbox("flush");
    assert_eq!(
        again["delivered"].as_array().map(Vec::len),
        Some(0),
        "{again}"
    );
    let status = mynalink_link::backend::Backend::new(
        &backend.url,
        zeroize::Zeroizing::new(
            std::fs::read_to_string(backend_dir.join("token"))
                .expect("token")
                .trim()
                .to_string(),
        ),
        None,
    )
    .expect("client")
    .license_status(LICENSE)
    .expect("status");
    assert!(status.linked);
    backend.remove();
}

#[test]
fn broken_backend_settings_stop_before_the_card() {
    let dir = temp_dir();
    let run = mynalink(
        &[
            "headless",
            "--sim",
            "--license",
            LICENSE,
            "--pin-stdin",
            "--json",
            "--backend",
            "http://10.1.2.3:8080/",
            "--token-file",
            "/nonexistent/token",
        ],
        Some("TEST1234\n"),
    );
    assert_eq!(run.status, 2);
    assert_eq!(run.code().as_deref(), Some("configuration_invalid"));
    assert_eq!(run.json()["apdu_count"], 0);
    drop(dir);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_queued_binding_goes_out_with_the_next_run() {
    let Down {
        dir: _dir,
        backend_dir,
        port,
        client,
    } = backend_down();
    assert_eq!(
        client.headless(LICENSE, "TEST1234\n").json()["outcome"],
        "queued"
    );

    // The next person's run (here one the backend rejects) first delivers what was waiting.
    let backend = start(&backend_dir, port);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let next = client.headless("729913281071", "TEST1234\n").json();
    assert_eq!(next["error"]["code"], "not_eligible", "{next}");
    assert_eq!(
        client.outbox("list")["entries"].as_array().map(Vec::len),
        Some(0)
    );
    let again = client.headless(LICENSE, "TEST1234\n").json();
    assert_eq!(again["outcome"], "already_linked", "{again}");
    backend.remove();
}

/// The log file tells what the card and the backend did, step by step with APDU counts,
/// and never the password, the license number, the certificate or the holder's basic-4.
#[test]
fn the_log_file_tells_steps_and_uploads_but_no_personal_data() {
    let dir = temp_dir();
    let state = dir.path().join("state");
    let backend = start(&dir.path().join("backend"), 0);
    let client = Client::new(&backend, &dir.path().join("outbox.db"));

    let linked = client.headless_logged(&state, LICENSE, "TEST1234\n");
    let report = linked.json();
    assert_eq!(report["outcome"], "linked", "{report} {}", linked.stderr);
    let wrong = client
        .headless_logged(&state, "729913281071", "WRONG999\n")
        .json();
    assert_eq!(wrong["error"]["code"], "pin_wrong", "{wrong}");
    backend.remove();

    let log = std::fs::read_to_string(state.join("mynalink/mynalink.log")).expect("log file");
    let lines: Vec<&str> = log.lines().collect();
    let step = |name: &str| {
        lines
            .iter()
            .find(|l| l.contains("card step done") && l.contains(&format!("step=\"{name}\"")))
            .unwrap_or_else(|| panic!("no {name} step in\n{log}"))
    };
    for name in ["check_card", "verify_password", "read_certificate", "sign"] {
        let line = step(name);
        assert!(line.contains(" ms=") && line.contains(" apdus="), "{line}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("upload") && l.contains("outcome=\"linked\"")),
        "{log}"
    );
    assert!(
        lines.iter().any(|l| l.contains("card step failed")
            && l.contains("step=\"verify_password\"")
            && l.contains("code=\"pin_wrong\"")),
        "{log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("headless run ended") && l.contains("code=\"pin_wrong\"")),
        "{log}"
    );

    let certificate = &report["certificate"];
    let forbidden = [
        "TEST1234",
        "WRONG999",
        LICENSE,
        "729913281071",
        "試験",
        certificate["serial_hex"].as_str().expect("serial"),
        certificate["serial_decimal"].as_str().expect("serial"),
        certificate["sha256"].as_str().expect("hash"),
    ];
    for secret in forbidden {
        assert!(!log.contains(secret), "the log holds {secret}:\n{log}");
    }
}
