//! Fidelity of the simulated card against OpenSC, an independent implementation of the JPKI
//! card: through the real pcscd and the vpcd reader, OpenSC must recognise the card, read the
//! very certificate our client reads and get a signature that verifies with its key. When
//! OpenSC and the simulated card disagree, the simulated card is wrong.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::pcsc::{lock, test_config, Slot, VirtualCard, SLOTS};
use common::*;
use serde_json::Value;

/// The second reader, named explicitly everywhere: OpenSC would otherwise take the first
/// reader holding a card, which would hide an addressing mistake.
const SLOT: Slot = SLOTS[1];
const PKCS11_MODULE: &str = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so";
/// Generous for a local virtual card; a hang must still end the test.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);
/// SELECT EF 0001 (the signing certificate) by file id, no response data.
const SELECT_SIGN_CERT: &str = "00a4020c020001";

struct ToolRun {
    success: bool,
    stdout: Vec<u8>,
    stderr: String,
}

impl ToolRun {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs an external program with a timeout. A missing program fails the test: these checks
/// are never skipped.
fn tool(program: &str, args: &[&str], stdin: Option<&str>) -> ToolRun {
    let mut child = Command::new(program)
        .args(args)
        // Never pick up the developer's own mynalink settings.
        .env("XDG_CONFIG_HOME", "/nonexistent/mynalink-tests")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run `{program}` ({e}): `cargo xtask test` installs opensc and openssl")
        });
    if let Some(mut pipe) = child.stdin.take() {
        if let Some(input) = stdin {
            let _ = pipe.write_all(input.as_bytes());
        }
    }
    // Read both pipes on threads so a chatty tool cannot block on a full pipe.
    let mut out = child.stdout.take().expect("stdout pipe");
    let mut err = child.stderr.take().expect("stderr pipe");
    let out_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + TOOL_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for tool") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = out_thread.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&err_thread.join().unwrap_or_default()).into_owned();
    let Some(status) = status else {
        panic!(
            "`{program} {}` timed out after {TOOL_TIMEOUT:?}: {stderr}",
            args.join(" ")
        );
    };
    ToolRun {
        success: status.success(),
        stdout,
        stderr,
    }
}

fn tool_ok(program: &str, args: &[&str]) -> ToolRun {
    let run = tool(program, args, None);
    assert!(
        run.success,
        "`{program} {}` failed:\n{}\n{}",
        args.join(" "),
        run.text(),
        run.stderr
    );
    run
}

/// Our own client on the reader, recording its APDU trace.
fn our_flow(trace: &Path) -> Value {
    let config = test_config();
    let trace = path_str(trace);
    let run = tool(
        env!("CARGO_BIN_EXE_mynalink"),
        &[
            "--config",
            &config,
            "headless",
            "--reader",
            SLOT.reader,
            "--license",
            LICENSE,
            "--offline",
            "--pin-stdin",
            "--json",
            "--record",
            &trace,
            // The comparison needs the certificate's bytes, which a reader's trace withholds
            // by default.
            "--record-certificate",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    let json: Value = serde_json::from_str(run.text().trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", run.text(), run.stderr));
    assert_eq!(json["outcome"], "verified", "{json}");
    json
}

/// The signing certificate as the card sent it to our client: the READ BINARY responses
/// that follow SELECT EF 0001 in the recorded trace, status words removed.
fn certificate_from_trace(trace: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(trace).expect("read trace");
    let trace: Value = serde_json::from_str(&text).expect("trace JSON");
    let exchanges: Vec<(String, String)> = trace["events"]
        .as_array()
        .expect("trace events")
        .iter()
        .filter(|e| e["kind"] == "exchange")
        .map(|e| {
            (
                e["command"].as_str().unwrap_or_default().to_string(),
                e["response"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let start = exchanges
        .iter()
        .position(|(command, _)| command == SELECT_SIGN_CERT)
        .expect("the trace selects EF 0001");
    let mut der = Vec::new();
    for (command, response) in exchanges[start + 1..]
        .iter()
        .take_while(|(command, _)| command.get(2..4) == Some("b0"))
    {
        assert!(
            response.ends_with("9000"),
            "READ BINARY {command}: {response}"
        );
        der.extend(hex::decode(&response[..response.len() - 4]).expect("response hex"));
    }
    // Nothing missing or extra: the DER header's length covers exactly what was read.
    assert!(
        der.len() > 4 && der[0] == 0x30 && der[1] == 0x82,
        "not a DER SEQUENCE"
    );
    let body = usize::from(u16::from_be_bytes([der[2], der[3]]));
    assert_eq!(4 + body, der.len(), "certificate length in the trace");
    der
}

/// The DER inside a PEM certificate, decoded here so nothing re-encodes it on the way.
fn pem_to_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    assert!(!body.is_empty(), "no PEM certificate in: {pem}");
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {:?}", c as char),
        }
    };
    let mut der = Vec::new();
    for chunk in body.trim_end_matches('=').as_bytes().chunks(4) {
        let bits = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &c)| acc | value(c) << (18 - 6 * i));
        let bytes = bits.to_be_bytes();
        der.extend_from_slice(&bytes[1..chunk.len()]);
    }
    der
}

/// OpenSC's PKCS#11 slot for the signing key of the card in our reader: it makes one slot
/// per PIN, and its slot ids depend on the reader's position.
fn pkcs11_signing_slot() -> String {
    let list = tool_ok("pkcs11-tool", &["--module", PKCS11_MODULE, "-L"]).text();
    let mut current: Option<(String, String)> = None;
    for line in list.lines() {
        if let Some(rest) = line.strip_prefix("Slot ") {
            // "Slot 2 (0x5): Virtual PCD 00 01"
            current = rest.split_once(" (").and_then(|(_, rest)| {
                let (id, reader) = rest.split_once("): ")?;
                Some((id.to_string(), reader.trim().to_string()))
            });
        } else if let Some((_, label)) = line.trim().split_once("token label") {
            if let Some((id, reader)) = &current {
                if reader == SLOT.reader && label.contains("Digital Signature") {
                    return id.clone();
                }
            }
        }
    }
    panic!("no OpenSC signing slot on {}:\n{list}", SLOT.reader);
}

#[test]
fn opensc_recognises_the_card_as_jpki() {
    let _reader = lock(SLOT);
    let _card = VirtualCard::start(SLOT, &[]);
    let run = tool_ok("opensc-tool", &["--reader", SLOT.reader, "-n"]);
    assert_eq!(run.text().trim(), "jpki", "{}", run.stderr);
}

#[test]
fn opensc_reads_the_same_signing_certificate_as_our_client() {
    let _reader = lock(SLOT);
    let _card = VirtualCard::start(SLOT, &[]);
    let dir = temp_dir();

    let pem = tool_ok(
        "pkcs15-tool",
        &[
            "--reader",
            SLOT.reader,
            "--read-certificate",
            "02",
            "--verify-pin",
            "--auth-id",
            "02",
            "--pin",
            PASSWORD,
        ],
    )
    .text();
    let opensc_der = pem_to_der(&pem);

    // Same card process, so the same certificate (its validity dates are set at start).
    let trace = dir.path().join("trace.json");
    let json = our_flow(&trace);
    let ours = certificate_from_trace(&trace);
    if let Some(at) = ours.iter().zip(&opensc_der).position(|(a, b)| a != b) {
        panic!("certificates differ at byte {at}");
    }
    assert_eq!(opensc_der.len(), ours.len(), "certificate length");

    // openssl parses what OpenSC read as the certificate our client reported.
    let pem_file = dir.path().join("opensc.pem");
    std::fs::write(&pem_file, &pem).expect("write PEM");
    let facts = tool_ok(
        "openssl",
        &[
            "x509",
            "-inform",
            "PEM",
            "-in",
            &path_str(&pem_file),
            "-noout",
            "-serial",
            "-fingerprint",
            "-sha256",
        ],
    )
    .text();
    let serial = json["certificate"]["serial_hex"]
        .as_str()
        .expect("serial")
        .to_ascii_uppercase();
    let fingerprint = json["certificate"]["sha256"]
        .as_str()
        .expect("sha256")
        .to_ascii_uppercase();
    assert!(
        facts.lines().any(|l| l == format!("serial={serial}")),
        "{facts}"
    );
    let theirs = facts
        .lines()
        .find_map(|l| l.split_once("Fingerprint="))
        .map(|(_, f)| f.replace(':', ""))
        .unwrap_or_default();
    assert_eq!(theirs, fingerprint, "{facts}");
}

#[test]
fn opensc_signature_verifies_with_the_certificate_key() {
    let _reader = lock(SLOT);
    let _card = VirtualCard::start(SLOT, &[]);
    let dir = temp_dir();
    let file = |name: &str| path_str(&dir.path().join(name));

    let trace = dir.path().join("trace.json");
    our_flow(&trace);
    std::fs::write(file("cert.der"), certificate_from_trace(&trace)).expect("write cert");
    tool_ok(
        "openssl",
        &[
            "x509",
            "-inform",
            "DER",
            "-in",
            &file("cert.der"),
            "-noout",
            "-pubkey",
            "-out",
            &file("pub.pem"),
        ],
    );

    let message = "mynalink: a statement signed by OpenSC\n";
    std::fs::write(file("msg"), message).expect("write message");
    let slot = pkcs11_signing_slot();
    tool_ok(
        "pkcs11-tool",
        &[
            "--module",
            PKCS11_MODULE,
            "--slot",
            &slot,
            "--login",
            "--pin",
            PASSWORD,
            "--sign",
            "--id",
            "02",
            "-m",
            "SHA256-RSA-PKCS",
            "--input-file",
            &file("msg"),
            "--output-file",
            &file("sig"),
        ],
    );
    let signature = std::fs::read(file("sig")).expect("signature file");
    assert_eq!(signature.len(), 256, "RSA-2048 signature length");
    // OpenSC returns zeros with exit 0 when a 61xx answer goes wrong: only verification counts.
    let verified = tool_ok(
        "openssl",
        &[
            "dgst",
            "-sha256",
            "-verify",
            &file("pub.pem"),
            "-signature",
            &file("sig"),
            &file("msg"),
        ],
    );
    assert_eq!(verified.text().trim(), "Verified OK");

    // OpenSC verified the right password (twice): no try may have been spent.
    let after = our_flow(&dir.path().join("after.json"));
    assert_eq!(after["pin_tries_before"], 5, "{after}");
}
