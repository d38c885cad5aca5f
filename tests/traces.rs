//! Traces hold a card's answers: they are written owner-only; from a reader the signing
//! certificate (the holder's basic-4 information) is kept only as SHA-256 unless
//! `--record-certificate` is given, and a replay of such a trace stops there with its own
//! code; a replay never uploads; the simulated card's TEST root is trusted only for traces
//! made on the simulated card.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use serde_json::Value;

const SIM_ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/sim-sign-test-root.der");

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("trace").permissions().mode() & 0o777
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("trace")).expect("json")
}

fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, value.to_string()).expect("write");
}

/// A fresh recording on the simulated card.
fn record_sim(path: &Path) -> Value {
    let run = headless(&["--sim", "--record", &path_str(path)], "TEST1234\n");
    assert_eq!(run.json()["outcome"], "verified", "{}", run.stdout);
    read_json(path)
}

/// The certificate's bytes as the first READ BINARY after SELECT EF 0001 returned them.
fn certificate_response(trace: &Value) -> String {
    let events = trace["events"].as_array().expect("events");
    let select = events
        .iter()
        .position(|e| e["command"] == "00a4020c020001")
        .expect("SELECT EF 0001");
    events[select + 1]["response"]
        .as_str()
        .expect("a recorded response")
        .to_string()
}

#[test]
fn trace_files_are_owner_only_whatever_the_umask() {
    let dir = temp_dir();
    let fresh = dir.path().join("fresh.json");
    record_sim(&fresh);
    assert_eq!(mode(&fresh), 0o600);
    // A file already there with a wider mode is narrowed.
    let existing = dir.path().join("existing.json");
    std::fs::write(&existing, "{}").expect("write");
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    record_sim(&existing);
    assert_eq!(mode(&existing), 0o600);
}

#[test]
fn a_readers_certificate_is_withheld_and_its_replay_stops_there() {
    let dir = temp_dir();
    // A trace as a reader gives it when recorded with --record-certificate: the simulated
    // card's answers, marked as coming from a reader.
    let mut from_reader = record_sim(&dir.path().join("sim.json"));
    assert_eq!(from_reader["version"], 2);
    assert_eq!(from_reader["source"], "simulated");
    from_reader["source"] = Value::String("reader".into());
    let certificate = certificate_response(&from_reader);
    let reader_trace = dir.path().join("reader.json");
    write_json(&reader_trace, &from_reader);

    // Replaying it (the TEST root configured like any test root) and recording that replay,
    // as a reader's recording is made: the certificate is withheld.
    let withheld = dir.path().join("withheld.json");
    let run = headless(
        &[
            "--replay",
            &path_str(&reader_trace),
            "--trust-anchor",
            SIM_ROOT,
            "--record",
            &path_str(&withheld),
        ],
        "TEST1234\n",
    );
    assert_eq!(run.json()["outcome"], "verified", "{}", run.stdout);
    assert_eq!(mode(&withheld), 0o600);
    let text = std::fs::read_to_string(&withheld).expect("trace");
    let middle = &certificate[200..400];
    assert!(
        !text.contains(middle),
        "the certificate's bytes are not in the trace"
    );
    let trace = read_json(&withheld);
    assert_eq!(trace["source"], "reader");
    let withheld_events: Vec<&Value> = trace["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "withheld")
        .collect();
    assert!(!withheld_events.is_empty(), "{text}");
    for event in &withheld_events {
        let hash = event["response_sha256"].as_str().unwrap_or_default();
        assert_eq!(hash.len(), 64, "{event}");
        assert!(event.get("response").is_none(), "{event}");
    }

    // Its replay stops at the certificate with its own code and says what to do.
    let run = headless(
        &["--replay", &path_str(&withheld), "--trust-anchor", SIM_ROOT],
        "TEST1234\n",
    );
    assert_eq!(run.status, 1, "{}", run.stdout);
    let json = run.json();
    assert_eq!(
        json["error"]["code"], "trace_certificate_withheld",
        "{json}"
    );
    let en = json["error"]["message_en"].as_str().unwrap_or_default();
    let ja = json["error"]["message_ja"].as_str().unwrap_or_default();
    assert!(en.contains("--record-certificate"), "{en}");
    assert!(ja.contains("--record-certificate"), "{ja}");
    assert!(json["certificate"].is_null());
    assert!(json.get("statement_sha256").is_none(), "nothing signed");

    // With --record-certificate the bytes are kept and the replay goes through.
    let kept = dir.path().join("kept.json");
    let run = headless(
        &[
            "--replay",
            &path_str(&reader_trace),
            "--trust-anchor",
            SIM_ROOT,
            "--record",
            &path_str(&kept),
            "--record-certificate",
        ],
        "TEST1234\n",
    );
    assert_eq!(run.json()["outcome"], "verified", "{}", run.stdout);
    assert!(std::fs::read_to_string(&kept)
        .expect("trace")
        .contains(middle));
    let run = headless(
        &["--replay", &path_str(&kept), "--trust-anchor", SIM_ROOT],
        "TEST1234\n",
    );
    assert_eq!(run.json()["outcome"], "verified", "{}", run.stdout);
}

/// Not verified: without a trusted root for the certificate's issuer the client goes on to
/// read the CA certificate from the card (EF 0002), which the recording never did.
fn assert_root_not_trusted(run: &Run) {
    let json = run.json();
    assert_eq!(json["outcome"], "failed", "{json}");
    assert_eq!(json["error"]["code"], "trace_mismatch", "{json}");
    let detail = json["error"]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("got 00a4020c020002"), "{detail}");
}

#[test]
fn the_test_root_is_trusted_only_for_traces_made_on_the_simulated_card() {
    let dir = temp_dir();
    let mut trace = record_sim(&dir.path().join("sim.json"));
    let sim = dir.path().join("sim.json");
    let run = headless(&["--replay", &path_str(&sim)], "TEST1234\n");
    assert_eq!(run.json()["outcome"], "verified", "{}", run.stdout);

    trace["source"] = Value::String("reader".into());
    let reader = dir.path().join("reader.json");
    write_json(&reader, &trace);
    assert_root_not_trusted(&headless(&["--replay", &path_str(&reader)], "TEST1234\n"));
    // Configured like any test root, it verifies.
    let run = headless(
        &["--replay", &path_str(&reader), "--trust-anchor", SIM_ROOT],
        "TEST1234\n",
    );
    assert_eq!(run.json()["outcome"], "verified", "{}", run.stdout);

    // Version 1 recorded no source: only the simulated card's own reader name stands for it.
    let mut v1 = read_json(&sim);
    v1["version"] = Value::from(1);
    if let Some(object) = v1.as_object_mut() {
        object.remove("source");
    }
    let v1_sim = dir.path().join("v1-sim.json");
    write_json(&v1_sim, &v1);
    let run = headless(&["--replay", &path_str(&v1_sim)], "TEST1234\n");
    assert_eq!(run.json()["outcome"], "verified", "{}", run.stdout);
    v1["reader"] = Value::String("Virtual PCD 00 00".into());
    let v1_reader = dir.path().join("v1-reader.json");
    write_json(&v1_reader, &v1);
    assert_root_not_trusted(&headless(
        &["--replay", &path_str(&v1_reader)],
        "TEST1234\n",
    ));
}

#[test]
fn a_replay_never_uploads() {
    let trace = path_str(&fixtures_dir().join("success.trace.json"));
    let dir = temp_dir();
    let outbox = dir.path().join("outbox.db");
    let run = mynalink(
        &[
            "headless",
            "--replay",
            &trace,
            "--license",
            LICENSE,
            "--pin-stdin",
            "--json",
            "--backend",
            "http://127.0.0.1:1/",
            "--outbox",
            &path_str(&outbox),
        ],
        Some("TEST1234\n"),
    );
    assert_eq!(run.status, 2, "{}", run.stdout);
    let json = run.json();
    assert_eq!(json["error"]["code"], "configuration_invalid", "{json}");
    assert!(
        json["error"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("--replay never uploads")),
        "{json}"
    );
    assert_eq!(json["apdu_count"], 0);
    assert!(!outbox.exists());

    // A backend in the config file is not used by a replay: checked offline, no outbox.
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "backend_url = \"http://127.0.0.1:1/\"\ntoken_file = \"missing.token\"\n\
         backend_key = \"missing.pem\"\noutbox = \"outbox.db\"\n",
    )
    .expect("config");
    let run = mynalink(
        &[
            "--config",
            &path_str(&config),
            "headless",
            "--replay",
            &trace,
            "--license",
            LICENSE,
            "--pin-stdin",
            "--json",
        ],
        Some("TEST1234\n"),
    );
    assert_eq!(run.status, 0, "{}", run.stdout);
    assert_eq!(run.json()["outcome"], "verified");
    assert!(!outbox.exists(), "no outbox entry from a replay");
}
