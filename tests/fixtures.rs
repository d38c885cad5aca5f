//! Every recorded fixture in `fixtures/` is replayed and must give its expected outcome.

mod common;

use common::*;
use serde_json::Value;

fn password_of_length(n: usize) -> String {
    // Any password of the recorded length matches the masked VERIFY bytes.
    "REPLAY0123456789".chars().take(n).collect()
}

#[test]
fn every_fixture_replays_to_its_expected_outcome() {
    let dir = fixtures_dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixtures dir")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter_map(|n| n.strip_suffix(".trace.json").map(str::to_string))
        .collect();
    names.sort();
    let required = [
        "success",
        "wrong-password",
        "last-try-unconfirmed",
        "blocked",
        "no-signing-certificate",
        "not-my-number-card",
        "phone-token",
        "iphone-token",
        "success-rsa3072",
        "success-ec-p384",
        "card-removed-mid-read",
        "t0-get-response",
        "expired-certificate",
        "tampered-signature",
        "truncated-certificate",
        "oversized-der-length",
    ];
    for name in required {
        assert!(names.iter().any(|n| n == name), "fixture {name} is missing");
    }
    for name in &names {
        let expected: Value = serde_json::from_slice(
            &std::fs::read(dir.join(format!("{name}.expected.json"))).expect("expected file"),
        )
        .expect("expected json");
        let trace = path_str(&dir.join(format!("{name}.trace.json")));
        let mut args = vec![
            "headless",
            "--replay",
            trace.as_str(),
            "--offline",
            "--pin-stdin",
            "--json",
        ];
        let license = expected["license"].as_str().expect("license").to_string();
        args.extend(["--license", license.as_str()]);
        let extra: Vec<String> = expected["args"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        args.extend(extra.iter().map(String::as_str));
        let length = expected["password_length"].as_u64().unwrap_or(8) as usize;
        let run = mynalink(&args, Some(&format!("{}\n", password_of_length(length))));
        let json = run.json();
        assert_eq!(json["outcome"], expected["outcome"], "{name}: {json}");
        assert_eq!(
            json.pointer("/error/code").cloned().unwrap_or(Value::Null),
            expected["code"],
            "{name}: {json}"
        );
        if expected["tries_left"].is_u64() {
            assert_eq!(
                json["error"]["tries_left"], expected["tries_left"],
                "{name}"
            );
        }
        // Key, algorithm and profile, where the recording reached the certificate.
        for (field, pointer) in [
            ("public_key", "/certificate/public_key"),
            ("signature_algorithm", "/signature_algorithm"),
            ("card_profile", "/card_profile/id"),
        ] {
            if let Some(value) = expected.get(field) {
                assert_eq!(
                    json.pointer(pointer),
                    Some(value),
                    "{name}: {field}: {json}"
                );
            }
        }
        if expected["apdu_count"].is_u64() {
            assert_eq!(json["apdu_count"], expected["apdu_count"], "{name}");
        }
        assert_eq!(
            run.status,
            if expected["code"].is_null() { 0 } else { 1 },
            "{name}"
        );
    }
}

#[test]
fn no_fixture_holds_a_password() {
    for entry in std::fs::read_dir(fixtures_dir())
        .expect("fixtures dir")
        .flatten()
    {
        if entry.path().extension().is_none_or(|e| e != "json") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).expect("fixture text");
        let value: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(_) => continue,
        };
        for command in trace_commands(&value) {
            if command.starts_with("00200080") && command.len() > 8 {
                assert!(
                    command[10..].chars().all(|c| c == 'X'),
                    "{:?}: {command}",
                    entry.path()
                );
            }
        }
        assert!(!text.contains("5445535431323334"), "{:?}", entry.path());
        assert!(!text.contains("TEST1234"), "{:?}", entry.path());
    }
}
