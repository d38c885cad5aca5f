//! `cargo xtask fixtures`: records the APDU fixtures in `fixtures/` with the real binary
//! against the simulated card, derives the damaged ones (tampered signature, truncated
//! certificate, oversized DER length) by editing a recording, and writes next to each
//! trace what a replay must produce. The test suite replays every one.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::system::step;

const LICENSE: &str = "729913281070";
const PASSWORD: &str = "TEST1234";
const WRONG_PASSWORD: &str = "WRONG999";

struct Recorded {
    name: &'static str,
    description: &'static str,
    sim: &'static [&'static str],
    password: &'static str,
    args: &'static [&'static str],
    code: Option<&'static str>,
    tries_left: Option<u64>,
}

const RECORDED: &[Recorded] = &[
    Recorded {
        name: "success",
        description: "the whole first stage; the certificate in one extended READ BINARY",
        sim: &[],
        password: PASSWORD,
        args: &[],
        code: None,
        tries_left: None,
    },
    Recorded {
        name: "success-short-reads",
        description: "a card without extended length: 67 00, then 256-byte reads",
        sim: &["--sim-no-extended"],
        password: PASSWORD,
        args: &[],
        code: None,
        tries_left: None,
    },
    Recorded {
        name: "t0-get-response",
        description: "a card answering like T=0: 61xx and GET RESPONSE, 6Cxx",
        sim: &["--sim-t0"],
        password: PASSWORD,
        args: &[],
        code: None,
        tries_left: None,
    },
    Recorded {
        name: "wrong-password",
        description: "one wrong signing password: exactly one VERIFY, 4 tries left",
        sim: &[],
        password: WRONG_PASSWORD,
        args: &[],
        code: Some("pin_wrong"),
        tries_left: Some(4),
    },
    Recorded {
        name: "last-try-unconfirmed",
        description: "one try left and no confirmation: no VERIFY is sent",
        sim: &["--sim-tries", "1"],
        password: PASSWORD,
        args: &[],
        code: Some("last_try_requires_confirmation"),
        tries_left: Some(1),
    },
    Recorded {
        name: "last-try-confirmed",
        description: "one try left, confirmed, right password",
        sim: &["--sim-tries", "1"],
        password: PASSWORD,
        args: &["--confirm-last-try"],
        code: None,
        tries_left: None,
    },
    Recorded {
        name: "blocked",
        description: "signing password blocked: no VERIFY is sent",
        sim: &["--sim-blocked"],
        password: PASSWORD,
        args: &[],
        code: Some("pin_blocked"),
        tries_left: Some(0),
    },
    Recorded {
        name: "no-signing-certificate",
        description: "a card without a signing certificate (holder under 15), not a blocked one",
        sim: &["--sim-no-certificate"],
        password: PASSWORD,
        args: &[],
        code: Some("no_signing_certificate"),
        tries_left: None,
    },
    Recorded {
        name: "not-my-number-card",
        description: "no JPKI application on the card",
        sim: &["--sim-not-jpki"],
        password: PASSWORD,
        args: &[],
        code: Some("not_jpki_card"),
        tries_left: None,
    },
    Recorded {
        name: "success-rsa3072",
        description: "the whole first stage with an RSA-3072 signing key (384-byte signature)",
        sim: &["--sim-key", "rsa3072"],
        password: PASSWORD,
        args: &[],
        code: None,
        tries_left: None,
    },
    Recorded {
        name: "success-ec-p384",
        description: "the whole first stage on the PROVISIONAL next-generation profile: \
                      ECDSA P-384 with SHA-384, the bare hash as SIGN input",
        sim: &["--sim-key", "ec-p384"],
        password: PASSWORD,
        args: &[],
        code: None,
        tries_left: None,
    },
    Recorded {
        name: "phone-token",
        description:
            "a smartphone JPKI token on Android (JPKIAPGPSETOKEN): refused before any password",
        sim: &["--sim-token", "JPKIAPGPSETOKEN"],
        password: PASSWORD,
        args: &[],
        code: Some("smartphone_not_accepted"),
        tries_left: None,
    },
    Recorded {
        name: "iphone-token",
        description:
            "a smartphone JPKI token on iPhone (JPKIAPIOSTOKEN): refused before any password",
        sim: &["--sim-token", "JPKIAPIOSTOKEN"],
        password: PASSWORD,
        args: &[],
        code: Some("smartphone_not_accepted"),
        tries_left: None,
    },
    Recorded {
        name: "card-removed-mid-read",
        description: "the card leaves during the certificate read",
        sim: &["--sim-remove-after", "8"],
        password: PASSWORD,
        args: &[],
        code: Some("card_removed"),
        tries_left: None,
    },
    Recorded {
        name: "expired-certificate",
        description: "the signing certificate has expired",
        sim: &["--sim-expired"],
        password: PASSWORD,
        args: &[],
        code: Some("certificate_expired"),
        tries_left: None,
    },
];

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn run_headless(extra: &[&str], password: &str) -> Result<Value, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut args = vec![
        "run",
        "--quiet",
        "--bin",
        "mynalink",
        "--",
        "headless",
        "--license",
        LICENSE,
        "--offline",
        "--pin-stdin",
        "--json",
    ];
    args.extend_from_slice(extra);
    let mut child = Command::new(cargo)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start mynalink: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        writeln!(stdin, "{password}").map_err(|e| e.to_string())?;
    }
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    serde_json::from_slice(&output.stdout).map_err(|e| {
        format!(
            "mynalink printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn expectation(
    description: &str,
    args: &[&str],
    password_length: usize,
    code: Option<&str>,
    tries_left: Option<u64>,
    apdu_count: Option<u64>,
) -> Value {
    json!({
        "description": description,
        "license": LICENSE,
        "password_length": password_length,
        "args": args,
        "outcome": if code.is_some() { "failed" } else { "verified" },
        "code": code,
        "tries_left": tries_left,
        "apdu_count": apdu_count,
    })
}

fn write_json(path: &Path, value: &Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

fn read_json(path: &Path) -> Result<Value, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// The key and algorithms a replay must report, as the recording did (absent on failures
/// before the certificate).
fn keys_and_algorithms(report: &Value, expected: &mut Value) {
    for (field, pointer) in [
        ("public_key", "/certificate/public_key"),
        ("signature_algorithm", "/signature_algorithm"),
        ("card_profile", "/card_profile/id"),
    ] {
        if let Some(value) = report.pointer(pointer) {
            expected[field] = value.clone();
        }
    }
}

/// Records every fixture, or only those named (the damaged ones are derived again when
/// `success` is among them).
pub fn regenerate(names: &[String]) -> Result<(), String> {
    let dir = fixtures_dir();
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    for name in names {
        if !RECORDED.iter().any(|f| f.name == name) {
            return Err(format!("no recorded fixture is called {name}"));
        }
    }
    let chosen = |name: &str| names.is_empty() || names.iter().any(|n| n == name);
    for f in RECORDED.iter().filter(|f| chosen(f.name)) {
        step(&format!("recording {}", f.name));
        let trace = dir.join(format!("{}.trace.json", f.name));
        let trace_arg = trace.display().to_string();
        let mut args = vec!["--sim", "--record", trace_arg.as_str()];
        args.extend_from_slice(f.sim);
        args.extend_from_slice(f.args);
        let report = run_headless(&args, f.password)?;
        let code = report.pointer("/error/code").and_then(Value::as_str);
        if code != f.code {
            return Err(format!(
                "{}: recorded {code:?}, expected {:?}",
                f.name, f.code
            ));
        }
        let apdus = report.get("apdu_count").and_then(Value::as_u64);
        let mut expected = expectation(
            f.description,
            f.args,
            f.password.len(),
            f.code,
            f.tries_left,
            apdus,
        );
        keys_and_algorithms(&report, &mut expected);
        write_json(&dir.join(format!("{}.expected.json", f.name)), &expected)?;
    }
    if chosen("success") {
        derive_damaged(&dir)?;
    }
    Ok(())
}

/// Index of the first event whose command starts with `prefix`.
fn find_event(events: &[Value], prefix: &str) -> Result<usize, String> {
    events
        .iter()
        .position(|e| e["command"].as_str().is_some_and(|c| c.starts_with(prefix)))
        .ok_or_else(|| format!("no command {prefix} in the success trace"))
}

fn derive_damaged(dir: &Path) -> Result<(), String> {
    let success = read_json(&dir.join("success.trace.json"))?;
    let events = success["events"].as_array().cloned().unwrap_or_default();
    let read_cert = find_event(&events, "00a4020c020001")? + 1;

    // Tampered signature: one bit of the card's signature flipped.
    let sign = find_event(&events, "802a0080")?;
    let mut tampered = success.clone();
    let response = events[sign]["response"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let flipped = format!(
        "{:02x}{}",
        u8::from_str_radix(&response[..2], 16).unwrap_or(0) ^ 0x01,
        &response[2..]
    );
    tampered["events"][sign]["response"] = Value::String(flipped);
    write_damaged(
        dir,
        "tampered-signature",
        "one bit of the card's signature flipped",
        &tampered,
        "signature_invalid",
    )?;

    // Truncated certificate: the second read returns half and reports end of file.
    let mut truncated = success.clone();
    let second = read_cert + 1;
    let response = events[second]["response"].as_str().unwrap_or_default();
    let data = &response[..response.len() - 4];
    truncated["events"][second]["response"] =
        Value::String(format!("{}6282", &data[..data.len() / 2]));
    truncate_events(&mut truncated, second + 1);
    write_damaged(
        dir,
        "truncated-certificate",
        "the card's certificate file ends early (62 82)",
        &truncated,
        "certificate_invalid",
    )?;

    // Oversized DER length: the certificate header claims 32 KiB.
    let mut oversized = success.clone();
    let response = events[read_cert]["response"].as_str().unwrap_or_default();
    oversized["events"][read_cert]["response"] =
        Value::String(format!("30827fff{}", &response[8..]));
    truncate_events(&mut oversized, read_cert + 1);
    write_damaged(
        dir,
        "oversized-der-length",
        "the certificate's DER header claims 32 KiB",
        &oversized,
        "certificate_invalid",
    )
}

fn truncate_events(trace: &mut Value, len: usize) {
    if let Some(events) = trace["events"].as_array_mut() {
        events.truncate(len);
    }
}

fn write_damaged(
    dir: &Path,
    name: &str,
    description: &str,
    trace: &Value,
    code: &str,
) -> Result<(), String> {
    step(&format!("deriving {name}"));
    write_json(&dir.join(format!("{name}.trace.json")), trace)?;
    let expected = expectation(description, &[], PASSWORD.len(), Some(code), None, None);
    write_json(&dir.join(format!("{name}.expected.json")), &expected)
}
