//! The headless contract, end to end through the real binary and the simulated card.

mod common;

use common::*;
use serde_json::Value;

#[test]
fn success_prints_verified_and_the_certificate_without_personal_data() {
    let run = headless(&["--sim"], "TEST1234\n");
    assert_eq!(run.status, 0, "{}", run.stderr);
    let json = run.json();
    assert_eq!(json["outcome"], "verified");
    assert_eq!(json["license_number"], LICENSE);
    assert_eq!(json["pin_tries_before"], 5);
    let cert = &json["certificate"];
    for key in [
        "serial_hex",
        "serial_decimal",
        "not_before",
        "not_after",
        "issuer",
        "authority_key_id",
        "sha256",
    ] {
        assert!(cert[key].is_string(), "certificate.{key} missing: {json}");
    }
    assert!(json["apdu_count"].as_u64().is_some_and(|n| n > 0));
    assert!(json["timings_ms"]["total"].is_u64());
    assert!(json.get("error").is_none());
    // The holder's name, address and birth date never appear.
    for personal in ["試験", "花子", "東京都", "19900102", "419900102"] {
        assert!(!run.stdout.contains(personal), "{personal} in output");
    }
    assert!(!run.stdout.contains("TEST1234") && !run.stderr.contains("TEST1234"));
}

#[test]
fn lower_case_password_is_upper_cased() {
    let run = headless(&["--sim"], "test1234\n");
    assert_eq!(run.json()["outcome"], "verified");
}

#[test]
fn wrong_password_costs_exactly_one_try_and_one_verify() {
    let dir = temp_dir();
    let trace = dir.path().join("wrong.json");
    let run = headless(&["--sim", "--record", &path_str(&trace)], "WRONG999\n");
    assert_eq!(run.status, 1);
    let json = run.json();
    assert_eq!(json["outcome"], "failed");
    assert_eq!(json["error"]["code"], "pin_wrong");
    assert_eq!(json["error"]["tries_left"], 4);
    assert!(json["error"]["message_ja"]
        .as_str()
        .is_some_and(|m| m.contains("残り4回")));
    assert!(json["error"]["message_en"].is_string());
    let trace: Value =
        serde_json::from_slice(&std::fs::read(&trace).expect("trace")).expect("json");
    assert_eq!(verify_attempts(&trace), 1);
}

#[test]
fn malformed_password_never_reaches_the_card() {
    let dir = temp_dir();
    let trace = dir.path().join("t.json");
    for bad in [
        "ABC12\n",
        "TEST-1234\n",
        "0123456789ABCDEFG\n",
        "パスワード12\n",
        "\n",
    ] {
        let run = headless(&["--sim", "--record", &path_str(&trace)], bad);
        assert_eq!(run.code().as_deref(), Some("pin_format_invalid"), "{bad:?}");
        let trace: Value =
            serde_json::from_slice(&std::fs::read(&trace).expect("trace")).expect("json");
        assert_eq!(verify_attempts(&trace), 0, "{bad:?}");
    }
}

#[test]
fn record_replay_and_a_flipped_signature_byte() {
    let dir = temp_dir();
    let trace_path = dir.path().join("run.json");
    let trace = path_str(&trace_path);
    let recorded = headless(&["--sim", "--record", &trace], "TEST1234\n");
    assert_eq!(recorded.json()["outcome"], "verified");

    // The password is masked, with its length kept.
    let text = std::fs::read_to_string(&trace_path).expect("trace");
    assert!(!text.contains(&hex_lower(b"TEST1234")));
    assert!(text.contains("0020008008XXXXXXXXXXXXXXXX"));

    let replayed = headless(&["--replay", &trace], "ANY12345\n");
    assert_eq!(replayed.status, 0, "{}", replayed.stdout);
    let (a, b) = (recorded.json(), replayed.json());
    assert_eq!(a["outcome"], b["outcome"]);
    assert_eq!(a["certificate"], b["certificate"]);
    assert_eq!(a["statement_sha256"], b["statement_sha256"]);
    assert_eq!(a["apdu_count"], b["apdu_count"]);

    // Flip one byte of the recorded signature.
    let mut value: Value = serde_json::from_str(&text).expect("json");
    let sign = signature_exchange(&mut value);
    let response = sign["response"].as_str().expect("response").to_string();
    let flipped = format!(
        "{}{}",
        if &response[..2] == "00" { "01" } else { "00" },
        &response[2..]
    );
    sign["response"] = Value::String(flipped);
    let tampered = dir.path().join("tampered.json");
    std::fs::write(&tampered, value.to_string()).expect("write");
    let run = headless(&["--replay", &path_str(&tampered)], "TEST1234\n");
    assert_eq!(run.code().as_deref(), Some("signature_invalid"));
    assert_eq!(run.status, 1);
}

#[test]
fn replay_with_other_inputs_is_a_trace_mismatch() {
    let dir = temp_dir();
    let trace = path_str(&dir.path().join("run.json"));
    headless(&["--sim", "--record", &trace], "TEST1234\n");
    // A password of another length changes the VERIFY command.
    let run = headless(&["--replay", &trace], "TEST12345\n");
    assert_eq!(run.code().as_deref(), Some("trace_mismatch"));
    let detail = run.json()["error"]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(detail.contains("exchange 5"), "{detail}");
    assert!(!detail.contains(&hex_lower(b"TEST12345")), "{detail}");
    // Another license number changes the signed statement.
    let mut args = vec![
        "headless",
        "--license",
        "729913281071",
        "--offline",
        "--pin-stdin",
        "--json",
    ];
    args.extend(["--replay", trace.as_str()]);
    let run = mynalink(&args, Some("TEST1234\n"));
    assert_eq!(run.code().as_deref(), Some("trace_mismatch"));
}

#[test]
fn error_codes_from_the_simulated_card() {
    let cases: &[(&[&str], &str, &str)] = &[
        (&["--sim-blocked"], "TEST1234\n", "pin_blocked"),
        (
            &["--sim-tries", "1"],
            "TEST1234\n",
            "last_try_requires_confirmation",
        ),
        (
            &["--sim-no-certificate"],
            "TEST1234\n",
            "no_signing_certificate",
        ),
        (&["--sim-expired"], "TEST1234\n", "certificate_expired"),
        (&["--sim-not-jpki"], "TEST1234\n", "not_jpki_card"),
        (
            &["--sim-token", "JPKIAPIOSTOKEN"],
            "TEST1234\n",
            "smartphone_not_accepted",
        ),
        (
            &["--sim-token", "JPKIAPGPSETOKEN"],
            "TEST1234\n",
            "smartphone_not_accepted",
        ),
        (
            &["--sim-token", "JPKIAPICCTOKEN"],
            "TEST1234\n",
            "not_jpki_card",
        ),
        (&["--sim-remove-after", "3"], "TEST1234\n", "card_removed"),
        (&["--sim-remove-after", "9"], "TEST1234\n", "card_removed"),
        (&[], "", "input_unavailable"),
    ];
    for (flags, stdin, code) in cases {
        let mut args = vec!["--sim"];
        args.extend_from_slice(flags);
        let run = headless(&args, stdin);
        assert_eq!(
            run.code().as_deref(),
            Some(*code),
            "{flags:?}: {}",
            run.stdout
        );
        assert_eq!(run.status, 1);
        let error = &run.json()["error"];
        assert!(error["message_ja"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(error["message_en"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

#[test]
fn last_try_with_confirmation_and_the_variants_that_succeed() {
    for flags in [
        &["--sim-tries", "1", "--confirm-last-try"][..],
        &["--sim-t0"][..],
        &["--sim-no-extended"][..],
    ] {
        let mut args = vec!["--sim"];
        args.extend_from_slice(flags);
        let run = headless(&args, "TEST1234\n");
        assert_eq!(
            run.json()["outcome"],
            "verified",
            "{flags:?}: {}",
            run.stdout
        );
    }
}

#[test]
fn success_path_apdu_counts() {
    let extended = headless(&["--sim"], "TEST1234\n").json()["apdu_count"].as_u64();
    let short =
        headless(&["--sim", "--sim-no-extended"], "TEST1234\n").json()["apdu_count"].as_u64();
    // Select AP, token info (2), password EF, query, VERIFY, cert EF, 2 reads, key EF, sign.
    assert_eq!(extended, Some(11));
    // With short reads only: one refused extended read, then 256-byte chunks (≤ 17 short
    // APDUs plus the refused probe for a certificate of this size).
    assert!(short.is_some_and(|n| n <= 18), "{short:?}");
}

#[test]
fn invalid_license_numbers_are_explained() {
    for (number, needle) in [
        ("72991328107", "11"),
        ("729913281060", "check"),
        ("012345678900", "01"),
        ("72991328A070", "9"),
    ] {
        let run = mynalink(
            &[
                "headless",
                "--sim",
                "--license",
                number,
                "--offline",
                "--pin-stdin",
                "--json",
            ],
            Some("TEST1234\n"),
        );
        assert_eq!(
            run.code().as_deref(),
            Some("license_number_invalid"),
            "{number}"
        );
        let error = &run.json()["error"];
        assert!(
            error["message_en"]
                .as_str()
                .is_some_and(|m| m.contains(needle)),
            "{number}: {error}"
        );
        assert_eq!(run.json()["apdu_count"], 0);
    }
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(
        mynalink(&["headless", "--license", LICENSE], None).status,
        2
    );
    assert_eq!(
        mynalink(
            &["headless", "--sim", "--replay", "x", "--license", LICENSE],
            None
        )
        .status,
        2
    );
    assert_eq!(
        mynalink(
            &["headless", "--sim", "--license", LICENSE, "--pin", "X"],
            None
        )
        .status,
        2
    );
    let run = headless(
        &["--sim", "--trust-anchor", "/nonexistent/root.pem"],
        "TEST1234\n",
    );
    assert_eq!(run.status, 2);
    assert_eq!(run.code().as_deref(), Some("configuration_invalid"));
}

#[test]
fn broken_trace_files_are_trace_invalid() {
    let dir = temp_dir();
    let cases = [
        ("missing.json", None),
        ("empty.json", Some("")),
        ("garbage.json", Some("{not json")),
        (
            "version.json",
            Some(
                r#"{"format":"mynalink-apdu-trace","version":99,"reader":"r","atr":"","events":[]}"#,
            ),
        ),
        (
            "no-inputs.json",
            Some(
                r#"{"format":"mynalink-apdu-trace","version":1,"reader":"r","atr":"3b00","events":[]}"#,
            ),
        ),
    ];
    for (name, content) in cases {
        let path = dir.path().join(name);
        if let Some(content) = content {
            std::fs::write(&path, content).expect("write");
        }
        let run = headless(&["--replay", &path_str(&path)], "TEST1234\n");
        assert_eq!(
            run.code().as_deref(),
            Some("trace_invalid"),
            "{name}: {}",
            run.stdout
        );
    }
}

#[test]
fn demo_runs_the_whole_flow() {
    let run = mynalink(&["demo", "--headless"], None);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert!(run
        .stdout
        .contains("署名を検証しました / signature verified"));
    assert!(run.stdout.contains("カードをお取りください"));
    // Against the embedded reference backend the binding is linked.
    assert!(
        run.stdout.contains("結果 / outcome: linked"),
        "{}",
        run.stdout
    );
}

/// The COMPUTE DIGITAL SIGNATURE exchange of a trace.
fn signature_exchange(trace: &mut Value) -> &mut Value {
    trace["events"]
        .as_array_mut()
        .expect("events")
        .iter_mut()
        .find(|e| {
            e["command"]
                .as_str()
                .is_some_and(|c| c.starts_with("802a0080"))
        })
        .expect("signature exchange")
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Edits a copy of a fixture trace and replays it.
fn replay_edited(edit: impl FnOnce(&mut Value)) -> Run {
    replay_edited_of("success", edit)
}

/// Edits a copy of the named fixture trace and replays it.
fn replay_edited_of(fixture: &str, edit: impl FnOnce(&mut Value)) -> Run {
    let text = std::fs::read_to_string(fixtures_dir().join(format!("{fixture}.trace.json")))
        .expect("fixture");
    let mut trace: Value = serde_json::from_str(&text).expect("json");
    edit(&mut trace);
    let dir = temp_dir();
    let path = dir.path().join("edited.json");
    std::fs::write(&path, trace.to_string()).expect("write");
    headless(&["--replay", &path_str(&path)], "TEST1234\n")
}

#[test]
fn certificate_not_yet_valid_at_the_flow_time() {
    let run = replay_edited(|t| t["inputs"]["time"] = Value::String("2021-01-01T00:00:00Z".into()));
    // The statement's time changes too, but the certificate check comes first.
    assert_eq!(run.code().as_deref(), Some("certificate_not_yet_valid"));
}

#[test]
fn a_short_signature_is_a_card_error() {
    let run = replay_edited(|t| {
        signature_exchange(t)["response"] = Value::String(format!("{}9000", "ab".repeat(128)));
    });
    assert_eq!(run.code().as_deref(), Some("card_error"));
}

#[test]
fn pcsc_service_missing_is_pcsc_unavailable() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mynalink"))
        .args([
            "headless",
            "--reader",
            "Virtual PCD 00 00",
            "--license",
            LICENSE,
            "--offline",
            "--pin-stdin",
            "--json",
        ])
        .env("PCSCLITE_CSOCK_NAME", "/nonexistent/pcscd.comm")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start");
    let out = std::mem::take(&mut child.stdout)
        .map(|mut s| {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut s, &mut text).expect("read");
            text
        })
        .unwrap_or_default();
    assert_eq!(child.wait().expect("wait").code(), Some(1));
    let json: Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(json["error"]["code"], "pcsc_unavailable", "{json}");

    let readers = std::process::Command::new(env!("CARGO_BIN_EXE_mynalink"))
        .args(["readers", "--json"])
        .env("PCSCLITE_CSOCK_NAME", "/nonexistent/pcscd.comm")
        .output()
        .expect("readers");
    let json: Value = serde_json::from_slice(&readers.stdout).expect("json");
    assert_eq!(json["error"]["code"], "pcsc_unavailable", "{json}");
}

#[test]
fn each_sim_key_reports_its_key_algorithm_and_profile() {
    // (--sim-key, public_key, signature_algorithm, profile, provisional, SIGN data length)
    let cases = [
        (
            "rsa2048",
            "rsa-2048",
            "rsa-pkcs1-sha256",
            "my-number-card",
            false,
            51,
        ),
        (
            "rsa3072",
            "rsa-3072",
            "rsa-pkcs1-sha256",
            "my-number-card",
            false,
            51,
        ),
        (
            "ec-p384",
            "ec-p384",
            "ecdsa-sha384",
            "next-generation-provisional",
            true,
            48,
        ),
    ];
    for (key, public_key, algorithm, profile, provisional, sign_len) in cases {
        let dir = temp_dir();
        let trace = dir.path().join("t.json");
        let run = headless(
            &["--sim", "--sim-key", key, "--record", &path_str(&trace)],
            "TEST1234\n",
        );
        assert_eq!(run.status, 0, "{key}: {} {}", run.stdout, run.stderr);
        let json = run.json();
        assert_eq!(json["certificate"]["public_key"], public_key, "{json}");
        assert_eq!(json["signature_algorithm"], algorithm, "{json}");
        assert_eq!(json["card_profile"]["id"], profile, "{json}");
        assert_eq!(json["card_profile"]["provisional"], provisional, "{json}");
        let note = json["reader_note"].as_str().unwrap_or_default();
        assert!(note.contains(key), "{json}");
        assert_eq!(note.contains("PROVISIONAL"), provisional, "{json}");
        // The SIGN input: a DigestInfo for RSA PKCS#1, the bare SHA-384 hash for ECDSA.
        let mut recorded: Value =
            serde_json::from_slice(&std::fs::read(&trace).expect("trace")).expect("json");
        let command = signature_exchange(&mut recorded)["command"]
            .as_str()
            .expect("command")
            .to_string();
        // Short Lc (one byte), or extended (00 and two bytes) when the answer needs a long Le.
        let (lc, data) = match &command[8..10] {
            "00" => (&command[10..14], &command[14..]),
            short => (short, &command[10..]),
        };
        assert_eq!(
            usize::from_str_radix(lc, 16),
            Ok(sign_len),
            "{key}: {command}"
        );
        if key.starts_with("rsa") {
            assert!(
                data.starts_with("3031300d060960864801650304020105000420"),
                "{command}"
            );
        }
    }
    // Readable output labels the provisional profile too.
    let human = mynalink(
        &[
            "headless",
            "--sim",
            "--sim-key",
            "ec-p384",
            "--license",
            LICENSE,
            "--offline",
            "--pin-stdin",
        ],
        Some("TEST1234\n"),
    );
    assert!(
        human.stdout.contains("ec-p384") && human.stdout.contains("PROVISIONAL"),
        "{}",
        human.stdout
    );
    assert!(human.stdout.contains("ecdsa-sha384"), "{}", human.stdout);
}

#[test]
fn smartphones_are_refused_before_any_password() {
    for label in ["JPKIAPGPSETOKEN", "JPKIAPIOSTOKEN"] {
        let dir = temp_dir();
        let trace = dir.path().join("t.json");
        let run = headless(
            &["--sim", "--sim-token", label, "--record", &path_str(&trace)],
            "TEST1234\n",
        );
        assert_eq!(
            run.code().as_deref(),
            Some("smartphone_not_accepted"),
            "{}",
            run.stdout
        );
        let error = &run.json()["error"];
        assert!(
            error["message_ja"]
                .as_str()
                .is_some_and(|m| m.contains("マイナンバーカード本体")),
            "{error}"
        );
        assert!(
            error["message_en"]
                .as_str()
                .is_some_and(|m| m.contains("card itself")),
            "{error}"
        );
        // Select AP, token info (2): no retry query, no VERIFY.
        let recorded: Value =
            serde_json::from_slice(&std::fs::read(&trace).expect("trace")).expect("json");
        let commands: Vec<&str> = recorded["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter_map(|e| e["command"].as_str())
            .collect();
        assert_eq!(commands.len(), 3, "{commands:?}");
        assert!(
            commands.iter().all(|c| !c.starts_with("0020")),
            "{commands:?}"
        );
    }
}

#[test]
fn a_p384_signature_of_the_wrong_length_or_flipped_is_refused() {
    // An RSA-2048-sized answer from a P-384 card: the length comes from the key.
    let run = replay_edited_of("success-ec-p384", |t| {
        signature_exchange(t)["response"] = Value::String(format!("{}9000", "ab".repeat(256)));
    });
    assert_eq!(run.code().as_deref(), Some("card_error"), "{}", run.stdout);
    let run = replay_edited_of("success-ec-p384", |t| {
        let exchange = signature_exchange(t);
        let response = exchange["response"].as_str().expect("response").to_string();
        let flipped = u8::from_str_radix(&response[2..4], 16).expect("hex") ^ 0x01;
        exchange["response"] =
            Value::String(format!("{}{flipped:02x}{}", &response[..2], &response[4..]));
    });
    assert_eq!(
        run.code().as_deref(),
        Some("signature_invalid"),
        "{}",
        run.stdout
    );
}
