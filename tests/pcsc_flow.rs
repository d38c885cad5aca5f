//! The first stage through the real pcscd and the vpcd virtual reader, with the simulated
//! card served by `mynalink vcard` in another process: the path counter terminals use.

mod common;

use std::time::Duration;

use common::pcsc::{headless_reader, lock, lock_all, VirtualCard, SLOTS};
use common::*;

const SUCCESS_PATH_APDUS: usize = 11;

#[test]
fn named_reader_success() {
    let slot = SLOTS[0];
    let _reader = lock(slot);
    let _card = VirtualCard::start(slot, &[]);
    let run = headless_reader("Virtual PCD 00 00", &[], "TEST1234\n");
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let json = run.json();
    assert_eq!(json["outcome"], "verified");
    assert_eq!(json["reader"], "Virtual PCD 00 00");
    assert_eq!(json["apdu_count"], SUCCESS_PATH_APDUS);
    assert!(json["certificate"]["serial_hex"].is_string());
}

#[test]
fn the_simulated_root_is_not_trusted_on_a_reader_unless_configured() {
    let slot = SLOTS[1];
    let _reader = lock(slot);
    let _card = VirtualCard::start(slot, &[]);
    let run = mynalink(
        &[
            "headless",
            "--reader",
            slot.reader,
            "--license",
            LICENSE,
            "--offline",
            "--pin-stdin",
            "--json",
        ],
        Some("TEST1234\n"),
    );
    assert_eq!(run.code().as_deref(), Some("certificate_untrusted"));
}

/// A trace made on a reader keeps the signing certificate only as SHA-256 (the card could be
/// anyone's), is owner-only, and its replay stops at the certificate.
#[test]
fn a_readers_trace_withholds_the_certificate() {
    use std::os::unix::fs::PermissionsExt;
    let slot = SLOTS[0];
    let _reader = lock(slot);
    let _card = VirtualCard::start(slot, &[]);
    let dir = temp_dir();
    let trace = dir.path().join("reader.json");
    let trace_arg = path_str(&trace);
    let run = headless_reader(slot.reader, &["--record", &trace_arg], "TEST1234\n");
    assert_eq!(run.json()["outcome"], "verified", "{}", run.stdout);
    let mode = std::fs::metadata(&trace)
        .expect("trace")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&trace).expect("trace")).expect("json");
    assert_eq!(value["source"], "reader");
    let events = value["events"].as_array().expect("events");
    let select = events
        .iter()
        .position(|e| e["command"] == "00a4020c020001")
        .expect("SELECT EF 0001");
    let reads: Vec<&serde_json::Value> = events[select + 1..]
        .iter()
        .take_while(|e| e["command"].as_str().is_some_and(|c| c.starts_with("00b0")))
        .collect();
    assert!(!reads.is_empty());
    for read in reads {
        // Withheld, or a bare status word.
        let bare = read["response"].as_str().is_some_and(|r| r.len() == 4);
        assert!(read["kind"] == "withheld" || bare, "{read}");
    }

    let config = common::pcsc::test_config();
    let run = mynalink(
        &[
            "--config",
            &config,
            "headless",
            "--replay",
            &trace_arg,
            "--license",
            LICENSE,
            "--offline",
            "--pin-stdin",
            "--json",
        ],
        Some("TEST1234\n"),
    );
    assert_eq!(
        run.code().as_deref(),
        Some("trace_certificate_withheld"),
        "{}",
        run.stdout
    );
}

/// Removal at each APDU of the success path: a clean `card_removed`, and the card works
/// again once it is back, with nothing restarted.
fn removal_at(positions: impl Iterator<Item = usize>, slot: common::pcsc::Slot) {
    let _reader = lock(slot);
    for n in positions {
        let remove = n.to_string();
        let card = VirtualCard::start(
            slot,
            &["--remove-after", &remove, "--reinsert-after", "300"],
        );
        let run = headless_reader(slot.reader, &[], "TEST1234\n");
        assert_eq!(
            run.code().as_deref(),
            Some("card_removed"),
            "removal at APDU {}: {}",
            n + 1,
            run.stdout
        );
        assert_eq!(run.status, 1);
        assert!(
            run.json()["certificate"].is_null() || n >= 8,
            "{}",
            run.stdout
        );
        assert!(
            run.json().get("statement_sha256").is_none(),
            "removal at {}: signed anyway",
            n + 1
        );
        card.wait_settled(Duration::from_secs(10));
        let again = headless_reader(slot.reader, &[], "TEST1234\n");
        assert_eq!(
            again.json()["outcome"],
            "verified",
            "after reinsertion ({}): {}",
            n + 1,
            again.stdout
        );
        // The removal never cost a try: VERIFY is never resent, and an interrupted one is
        // re-queried rather than repeated.
        assert_eq!(again.json()["pin_tries_before"], 5, "removal at {}", n + 1);
    }
}

#[test]
fn card_removed_at_each_apdu_first_half() {
    removal_at(0..6, SLOTS[0]);
}

#[test]
fn card_removed_at_each_apdu_second_half() {
    removal_at(6..SUCCESS_PATH_APDUS, SLOTS[1]);
}

#[test]
fn card_outcomes_through_pcscd() {
    let slot = SLOTS[1];
    let _reader = lock(slot);
    // (simulated card options, headless flags, password line, expected error code)
    type Case<'a> = (&'a [&'a str], &'a [&'a str], &'a str, Option<&'a str>);
    let cases: &[Case] = &[
        (&["--sim-blocked"], &[], "TEST1234\n", Some("pin_blocked")),
        (
            &["--sim-tries", "1"],
            &[],
            "TEST1234\n",
            Some("last_try_requires_confirmation"),
        ),
        (
            &["--sim-tries", "1"],
            &["--confirm-last-try"],
            "TEST1234\n",
            None,
        ),
        (
            &["--sim-no-certificate"],
            &[],
            "TEST1234\n",
            Some("no_signing_certificate"),
        ),
        (
            &["--sim-expired"],
            &[],
            "TEST1234\n",
            Some("certificate_expired"),
        ),
        (&["--sim-t0"], &[], "TEST1234\n", None),
        (&["--sim-no-extended"], &[], "TEST1234\n", None),
        (
            &["--sim-not-jpki"],
            &[],
            "TEST1234\n",
            Some("not_jpki_card"),
        ),
        (
            &[
                "--sim-apdu-latency-ms",
                "20",
                "--sim-sign-latency-ms",
                "1000",
            ],
            &[],
            "TEST1234\n",
            None,
        ),
    ];
    for (sim, flags, password, code) in cases {
        let _card = VirtualCard::start(slot, sim);
        let run = headless_reader(slot.reader, flags, password);
        let json = run.json();
        match code {
            Some(code) => assert_eq!(json["error"]["code"], *code, "{sim:?}: {json}"),
            None => assert_eq!(json["outcome"], "verified", "{sim:?}: {json}"),
        }
    }
}

#[test]
fn a_wrong_password_costs_exactly_one_try() {
    let slot = SLOTS[0];
    let _reader = lock(slot);
    let _card = VirtualCard::start(slot, &[]);
    let wrong = headless_reader(slot.reader, &[], "WRONG999\n").json();
    assert_eq!(wrong["error"]["code"], "pin_wrong");
    assert_eq!(wrong["error"]["tries_left"], 4);
    let next = headless_reader(slot.reader, &[], "TEST1234\n").json();
    assert_eq!(next["pin_tries_before"], 4, "{next}");
    assert_eq!(next["outcome"], "verified");
    // A right password resets the counter.
    let after = headless_reader(slot.reader, &[], "TEST1234\n").json();
    assert_eq!(after["pin_tries_before"], 5);
}

#[test]
fn a_card_swapped_before_signing_stops_the_flow() {
    let slot = SLOTS[0];
    let _reader = lock(slot);
    // The card leaves after the certificate is read (10th APDU: SELECT of the signing key)
    // and another insertion follows at once; nothing may be signed with it.
    let _card = VirtualCard::start(slot, &["--remove-after", "9", "--reinsert-after", "50"]);
    let run = headless_reader(slot.reader, &[], "TEST1234\n");
    let json = run.json();
    assert_eq!(json["error"]["code"], "card_removed", "{json}");
    assert!(json.get("statement_sha256").is_none());
}

#[test]
fn two_readers_named_or_the_only_my_number_card() {
    let _both = lock_all();
    let my_number = VirtualCard::start(SLOTS[0], &[]);
    let other = VirtualCard::start(SLOTS[1], &["--sim-not-jpki"]);
    let auto = headless_reader("", &[], "TEST1234\n");
    // `--reader ""` is the same as `--reader` without a name: pick automatically.
    let json = auto.json();
    assert_eq!(json["outcome"], "verified", "{json}");
    assert_eq!(json["reader"], SLOTS[0].reader);
    assert!(
        json["reader_note"]
            .as_str()
            .is_some_and(|n| n.contains("only reader")),
        "{json}"
    );
    drop(other);

    let second = VirtualCard::start(SLOTS[1], &[]);
    let ambiguous = headless_reader("auto", &[], "TEST1234\n");
    assert_eq!(ambiguous.code().as_deref(), Some("reader_ambiguous"));
    let named = headless_reader(SLOTS[1].reader, &[], "TEST1234\n").json();
    assert_eq!(named["outcome"], "verified");
    assert_eq!(named["reader"], SLOTS[1].reader);
    drop(second);
    drop(my_number);
}

#[test]
fn readers_lists_tokens_and_tries() {
    let _both = lock_all();
    let _card = VirtualCard::start(SLOTS[0], &["--sim-tries", "3"]);
    let run = mynalink(&["readers", "--json"], None);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let json: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("json");
    let readers = json["readers"].as_array().expect("readers");
    let first = readers
        .iter()
        .find(|r| r["name"] == SLOTS[0].reader)
        .expect("reader listed");
    assert_eq!(first["card_present"], true);
    assert_eq!(first["atr"], "3be000ff8131fe4514");
    assert_eq!(first["jpki_token"], "my_number_card");
    assert_eq!(first["pin_tries_left"], 3);
    let second = readers
        .iter()
        .find(|r| r["name"] == SLOTS[1].reader)
        .expect("reader listed");
    assert_eq!(second["card_present"], false);
}

#[test]
fn missing_reader_and_empty_reader() {
    let _both = lock_all();
    let run = headless_reader("No Such Reader", &[], "TEST1234\n");
    assert_eq!(run.code().as_deref(), Some("no_reader"));
    let run = headless_reader(SLOTS[0].reader, &[], "TEST1234\n");
    assert_eq!(run.code().as_deref(), Some("no_card"));
    let run = headless_reader("auto", &[], "TEST1234\n");
    assert_eq!(run.code().as_deref(), Some("no_card"));
}
