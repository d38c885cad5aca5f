//! `POST /v1/bindings` end to end on a real database, with submissions signed by the
//! simulated card.

mod common;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use common::*;
use mynalink_link::api::{Holding, LicenseState, LinkedVia};
use mynalink_link::trust::TrustStore;
use mynalink_server::store::{
    AuditEntry, IdentityCheck, InsertOutcome, NewBinding, Operation, RevocationCheck, SubjectKind,
};
use mynalink_server::{Code, Outcome};
use mynalink_simcard::Validity;
use time::Duration;

use mynalink_server::scratch::Backend;

mynalink_server::on_both_databases!(
    a_good_submission_is_stored_once_and_repeats_are_idempotent,
    one_active_binding_per_license,
    a_record_linked_by_the_one_stop_procedure_is_already_linked,
    malformed_and_invalid_inputs,
    signatures_must_verify,
    trust_and_validity,
    freshness_window,
    the_statement_is_for_the_authenticated_terminal,
    record_eligibility_and_identity,
    substitute_characters_need_staff_confirmation,
    a_cancelled_bindings_statement_cannot_be_reused,
    every_code_is_reachable_and_audited,
    no_personal_data_and_nothing_of_a_rejected_submission_is_kept,
    repeated_failures_are_rate_limited_and_flagged,
    a_license_attacked_from_many_terminals_is_rate_limited,
    garbage_naming_a_license_does_not_lock_it,
    end_entity_faults_are_certificate_invalid,
    arbitrary_inputs_never_panic,
    extreme_statement_times_are_refused_without_panicking,
    concurrent_identical_submissions_store_one_binding,
);

fn code(outcome: &Outcome) -> &'static str {
    outcome.code().as_str()
}

fn rejection(outcome: &Outcome) -> &mynalink_server::Rejection {
    match outcome {
        Outcome::Rejected(r) => r,
        Outcome::Accepted(a) => panic!("accepted: {a:?}"),
    }
}

fn a_good_submission_is_stored_once_and_repeats_are_idempotent(backend: Backend) {
    let mut bench = Bench::new(backend);
    let n = license(1);
    bench.record(&n, Holding::MynaOnly, LicenseState::Valid);
    let request = good_request(&bench, &n);

    let first = bench.submit(&request);
    assert_eq!(code(&first), "created");
    assert_eq!(first.http_status(), 201);
    let Outcome::Accepted(first) = first else {
        unreachable!()
    };
    assert_eq!(first.body.license_number, n);
    assert_eq!(first.body.certificate_serial, "9c4e21075a");

    let again = bench.submit(&request);
    assert_eq!(code(&again), "repeated");
    assert_eq!(again.http_status(), 200);
    let Outcome::Accepted(again) = again else {
        unreachable!()
    };
    assert_eq!(again.body.binding_id, first.body.binding_id);
    assert_eq!(bench.count("SELECT COUNT(*) FROM bindings"), 1);

    // An outbox retry long after the freshness window still gets the same answer.
    bench.now += Duration::hours(100);
    let late = bench.submit(&request);
    assert_eq!(code(&late), "repeated");

    let binding = bench
        .store
        .binding(&first.body.binding_id)
        .expect("read")
        .expect("stored");
    assert_eq!(binding.terminal_id, TERMINAL);
    assert_eq!(binding.operator_id.as_deref(), Some("staff-0042"));
    assert_eq!(binding.linked_via, LinkedVia::Counter);
    assert_eq!(binding.identity_check, IdentityCheck::Automatic);
    assert_eq!(binding.holding_at_link, Holding::MynaOnly);
    assert!(binding.issuer_key_id.is_some());
    assert_eq!(binding.statement_sha256.as_deref().map(str::len), Some(64));

    let audit = bench.store.audit_rows().expect("audit");
    let codes: Vec<&str> = audit.iter().map(|a| a.code.as_str()).collect();
    assert_eq!(codes, ["created", "repeated", "repeated"]);
    assert!(audit.iter().all(|a| a.decision == "accepted"
        && a.terminal_id.as_deref() == Some(TERMINAL)
        && a.license_number.as_deref() == Some(n.as_str())));
}

fn one_active_binding_per_license(backend: Backend) {
    let mut bench = Bench::new(backend);
    let n = license(2);
    bench.record(&n, Holding::MynaAndCard, LicenseState::Valid);
    assert_eq!(code(&bench.submit(&good_request(&bench, &n))), "created");
    // A new statement (new nonce) for the same license.
    let second = bench.submit(&good_request(&bench, &n));
    assert_eq!(code(&second), "already_linked");
    assert_eq!(second.http_status(), 409);
    assert_eq!(rejection(&second).linked_via, Some(LinkedVia::Counter));
    assert_eq!(
        rejection(&second).to_api_error().linked_via,
        Some(LinkedVia::Counter)
    );
    assert_eq!(bench.count("SELECT COUNT(*) FROM bindings"), 1);
}

fn a_record_linked_by_the_one_stop_procedure_is_already_linked(backend: Backend) {
    let mut bench = Bench::new(backend);
    let n = license(3);
    bench.record(&n, Holding::MynaOnly, LicenseState::Valid);
    let at = mynalink_link::statement::format_time(bench.now - Duration::days(10));
    let outcome = bench
        .store
        .insert_binding(
            &NewBinding {
                binding_id: "one-stop-1".into(),
                license_number: n.clone(),
                issuer_key_id: Some("ab".into()),
                certificate_serial: "0badcafe".into(),
                certificate_not_before: at.clone(),
                // Still valid: an expired certificate's binding is superseded instead.
                certificate_not_after: mynalink_link::statement::format_time(
                    bench.now + Duration::days(1000),
                ),
                terminal_id: "address-center".into(),
                operator_id: None,
                linked_via: LinkedVia::OneStop,
                holding_at_link: Holding::MynaOnly,
                identity_check: IdentityCheck::External,
                linked_at: at.clone(),
                statement_time: None,
                statement_sha256: None,
                revocation: RevocationCheck::off(),
            },
            &AuditEntry {
                at: at.clone(),
                operation: Operation::OneStop,
                code: Code::Created,
                terminal_id: Some("address-center".into()),
                license_number: Some(n.clone()),
                binding_id: Some("one-stop-1".into()),
            },
        )
        .expect("insert");
    assert!(matches!(outcome, InsertOutcome::Created(_)));
    let outcome = bench.submit(&good_request(&bench, &n));
    assert_eq!(code(&outcome), "already_linked");
    assert_eq!(rejection(&outcome).linked_via, Some(LinkedVia::OneStop));
}

fn malformed_and_invalid_inputs(backend: Backend) {
    let mut bench = Bench::new(backend);
    let n = license(4);
    bench.record(&n, Holding::MynaOnly, LicenseState::Valid);
    let good = good_request(&bench, &n);

    let mut r = good.clone();
    r.statement = "not base64!".into();
    assert_eq!(code(&bench.submit(&r)), "malformed_request");
    let mut r = good.clone();
    r.signature = String::new();
    assert_eq!(code(&bench.submit(&r)), "malformed_request");
    let mut r = good.clone();
    r.certificate = Some(BASE64.encode(vec![0x30; 20_000]));
    assert_eq!(code(&bench.submit(&r)), "malformed_request");
    let mut r = good.clone();
    r.ca_certificate = Some("%%%".into());
    assert_eq!(code(&bench.submit(&r)), "malformed_request");
    assert_eq!(
        code(&bench.submit_from(&good, "")),
        "malformed_request",
        "an empty terminal id"
    );

    // Not canonical JSON (pretty-printed), though signed.
    let signer = sim_signer(Validity::Current);
    let statement = statement_for(&signer, &n, TERMINAL, bench.now);
    let pretty = serde_json::to_vec_pretty(&statement).expect("json");
    let outcome = bench.submit(&request_for_bytes(&signer, &pretty));
    assert_eq!(code(&outcome), "statement_invalid");
    assert_eq!(outcome.http_status(), 422);

    // The statement names another certificate.
    let mut other = statement.clone();
    other.certificate_sha256 = "00".repeat(32);
    let outcome = bench.submit(&request_for(&signer, &other));
    assert_eq!(code(&outcome), "statement_invalid");
    assert!(rejection(&outcome)
        .detail
        .as_deref()
        .is_some_and(|d| d.contains("certificate_sha256")));
    let mut other = statement.clone();
    other.certificate_serial = "01".into();
    assert_eq!(
        code(&bench.submit(&request_for(&signer, &other))),
        "statement_invalid"
    );
    let mut other = statement.clone();
    other.time = "yesterday".into();
    assert_eq!(
        code(&bench.submit(&request_for(&signer, &other))),
        "statement_invalid"
    );

    // Not a certificate.
    let mut r = request_for(&signer, &statement);
    r.certificate = Some(BASE64.encode(b"hello, not DER"));
    assert_eq!(code(&bench.submit(&r)), "certificate_invalid");

    // License numbers: bad check digit, not canonical.
    let mut bad = statement.clone();
    let mut digits: Vec<u8> = n.bytes().collect();
    digits[10] = if digits[10] == b'9' {
        b'0'
    } else {
        digits[10] + 1
    };
    bad.license_number = String::from_utf8(digits).expect("ascii");
    assert_eq!(
        code(&bench.submit(&request_for(&signer, &bad))),
        "license_number_invalid"
    );
    let mut spaced = statement.clone();
    spaced.license_number = format!("{} {}", &n[..4], &n[4..]);
    assert_eq!(
        code(&bench.submit(&request_for(&signer, &spaced))),
        "license_number_invalid"
    );

    assert_eq!(bench.count("SELECT COUNT(*) FROM bindings"), 0);
}

fn signatures_must_verify(backend: Backend) {
    let mut bench = Bench::new(backend);
    let n = license(5);
    bench.record(&n, Holding::MynaOnly, LicenseState::Valid);
    let mut r = good_request(&bench, &n);
    let mut sig = BASE64.decode(&r.signature).expect("b64");
    sig[100] ^= 0x01;
    r.signature = BASE64.encode(&sig);
    let outcome = bench.submit(&r);
    assert_eq!(code(&outcome), "signature_invalid");
    // Signed with another key (the card's authentication key).
    let id = mynalink_simcard::test_identity(Validity::Current);
    let forger = Signer {
        cert_der: id.sign_cert_der.clone(),
        key: id.auth_key.clone(),
    };
    let statement = statement_for(&forger, &n, TERMINAL, bench.now);
    assert_eq!(
        code(&bench.submit(&request_for(&forger, &statement))),
        "signature_invalid"
    );
    // A short signature.
    let mut r = good_request(&bench, &n);
    r.signature = BASE64.encode([1u8; 10]);
    assert_eq!(code(&bench.submit(&r)), "signature_invalid");
}

fn trust_and_validity(backend: Backend) {
    let mut bench = Bench::new(backend);
    let n = license(6);
    bench.record(&n, Holding::MynaOnly, LicenseState::Valid);
    let good = good_request(&bench, &n);

    // Without the test root configured, the simulated card is not trusted…
    let configured = bench.config.trust.clone();
    bench.config.trust = TrustStore::new();
    let outcome = bench.submit(&good);
    assert_eq!(code(&outcome), "certificate_untrusted");
    // …not even when the request brings the root along (it is not a pinned J-LIS root).
    let mut with_ca = good.clone();
    with_ca.ca_certificate = Some(BASE64.encode(mynalink_simcard::sign_test_root_der()));
    assert_eq!(code(&bench.submit(&with_ca)), "certificate_untrusted");
    let mut junk_ca = good.clone();
    junk_ca.ca_certificate = Some(BASE64.encode(b"junk"));
    assert_eq!(code(&bench.submit(&junk_ca)), "certificate_untrusted");
    bench.config.trust = configured;
    // With the root configured, bringing it along too is fine.
    assert_eq!(code(&bench.submit(&with_ca)), "created");

    // Expired card.
    let n2 = license(7);
    bench.record(&n2, Holding::MynaOnly, LicenseState::Valid);
    let expired = sim_signer(Validity::Expired);
    let statement = statement_for(&expired, &n2, TERMINAL, bench.now);
    let outcome = bench.submit(&request_for(&expired, &statement));
    assert_eq!(code(&outcome), "certificate_expired");

    // A statement dated before the certificate existed.
    let signer = sim_signer(Validity::Current);
    let statement = statement_for(&signer, &n2, TERMINAL, bench.now - Duration::days(40));
    assert_eq!(
        code(&bench.submit(&request_for(&signer, &statement))),
        "certificate_not_yet_valid"
    );
}

fn freshness_window(backend: Backend) {
    let mut bench = Bench::new(backend);
    let n = license(8);
    bench.record(&n, Holding::MynaOnly, LicenseState::Valid);
    let signer = sim_signer(Validity::Current);

    let stale = statement_for(&signer, &n, TERMINAL, bench.now - Duration::hours(73));
    let outcome = bench.submit(&request_for(&signer, &stale));
    assert_eq!(code(&outcome), "statement_stale");
    let future = statement_for(&signer, &n, TERMINAL, bench.now + Duration::minutes(10));
    assert_eq!(
        code(&bench.submit(&request_for(&signer, &future))),
        "statement_stale"
    );
    let slight_future = statement_for(&signer, &n, TERMINAL, bench.now + Duration::minutes(4));
    let ok = request_for(&signer, &slight_future);
    // Configurable window: 24 h refuses a 71 h old statement that 72 h accepts.
    let old = statement_for(&signer, &n, TERMINAL, bench.now - Duration::hours(71));
    bench.config.freshness_window = Duration::hours(24);
    assert_eq!(
        code(&bench.submit(&request_for(&signer, &old))),
        "statement_stale"
    );
    bench.config.freshness_window = Duration::hours(72);
    assert_eq!(code(&bench.submit(&request_for(&signer, &old))), "created");
    assert_eq!(code(&bench.submit(&ok)), "already_linked");
}

fn the_statement_is_for_the_authenticated_terminal(backend: Backend) {
    let mut bench = Bench::new(backend);
    let n = license(9);
    bench.record(&n, Holding::MynaOnly, LicenseState::Valid);
    let request = good_request(&bench, &n);
    let outcome = bench.submit_from(&request, "another-terminal");
    assert_eq!(code(&outcome), "terminal_mismatch");
    let audit = bench.store.audit_rows().expect("audit");
    assert_eq!(audit[0].terminal_id.as_deref(), Some("another-terminal"));
}

fn record_eligibility_and_identity(backend: Backend) {
    let mut bench = Bench::new(backend);
    let missing = license(10);
    assert_eq!(
        code(&bench.submit(&good_request(&bench, &missing))),
        "license_not_found"
    );

    for (i, holding) in Holding::ALL.into_iter().enumerate() {
        let n = license(100 + i as u32);
        bench.record(&n, holding, LicenseState::Valid);
        let outcome = bench.submit(&good_request(&bench, &n));
        let expected = if holding.can_link() {
            "created"
        } else {
            "not_eligible"
        };
        assert_eq!(code(&outcome), expected, "{holding:?}");
    }

    let n = license(11);
    bench.record_named(
        &n,
        Holding::MynaOnly,
        LicenseState::Valid,
        "試験 花代",
        "1990-01-02",
    );
    let outcome = bench.submit(&good_request(&bench, &n));
    assert_eq!(code(&outcome), "identity_mismatch");
    assert_eq!(rejection(&outcome).detail.as_deref(), Some("name differs"));
    let n = license(12);
    bench.record_named(
        &n,
        Holding::MynaOnly,
        LicenseState::Valid,
        "試験 花子",
        "1990-01-03",
    );
    let outcome = bench.submit(&good_request(&bench, &n));
    assert_eq!(code(&outcome), "identity_mismatch");
    assert_eq!(
        rejection(&outcome).detail.as_deref(),
        Some("birth_date differs")
    );
    // Folding: full-width spaces, none, YYYYMMDD.
    let n = license(13);
    bench.record_named(
        &n,
        Holding::HistoryMynaOnly,
        LicenseState::Valid,
        "試験花子",
        "19900102",
    );
    assert_eq!(code(&bench.submit(&good_request(&bench, &n))), "created");
    // Staff confirmation does not override a mismatch.
    let n = license(14);
    bench.record_named(
        &n,
        Holding::MynaOnly,
        LicenseState::Valid,
        "別人 太郎",
        "1990-01-02",
    );
    let mut r = good_request(&bench, &n);
    r.staff_confirmed_identity = true;
    assert_eq!(code(&bench.submit(&r)), "identity_mismatch");
}

fn substitute_characters_need_staff_confirmation(backend: Backend) {
    let mut bench = Bench::new(backend);
    let (root, signer) = custom_signer("試験　〓子", "00010", "419900102");
    bench.config.trust.add_trust_anchor(&root).expect("anchor");
    let n = license(20);
    bench.record(&n, Holding::MynaOnly, LicenseState::Valid);
    let statement = statement_for(&signer, &n, TERMINAL, bench.now);
    let request = request_for(&signer, &statement);
    let outcome = bench.submit(&request);
    assert_eq!(code(&outcome), "identity_needs_confirmation");
    assert_eq!(outcome.http_status(), 422);

    let mut confirmed = request.clone();
    confirmed.staff_confirmed_identity = true;
    let outcome = bench.submit(&confirmed);
    assert_eq!(code(&outcome), "created");
    let Outcome::Accepted(a) = outcome else {
        unreachable!()
    };
    let binding = bench
        .store
        .binding(&a.body.binding_id)
        .expect("read")
        .expect("b");
    assert_eq!(binding.identity_check, IdentityCheck::StaffConfirmed);

    // The birth date is still compared.
    let (root, signer) = custom_signer("試験　〓子", "00010", "419900109");
    bench.config.trust.add_trust_anchor(&root).expect("anchor");
    let n = license(21);
    bench.record(&n, Holding::MynaOnly, LicenseState::Valid);
    let mut r = request_for(&signer, &statement_for(&signer, &n, TERMINAL, bench.now));
    r.staff_confirmed_identity = true;
    assert_eq!(code(&bench.submit(&r)), "identity_mismatch");
}

fn a_cancelled_bindings_statement_cannot_be_reused(backend: Backend) {
    let mut bench = Bench::new(backend);
    let n = license(30);
    bench.record(&n, Holding::MynaOnly, LicenseState::Valid);
    let request = good_request(&bench, &n);
    let Outcome::Accepted(a) = bench.submit(&request) else {
        panic!("not accepted")
    };
    let c = mynalink_server::status::cancel_binding(
        &mut bench.store,
        &a.body.binding_id,
        None,
        bench.now,
    )
    .expect("cancel");
    assert_eq!(c.code, Code::Cancelled);
    assert_eq!(code(&bench.submit(&request)), "statement_reused");
    // A new statement links again.
    assert_eq!(code(&bench.submit(&good_request(&bench, &n))), "created");
    assert_eq!(bench.count("SELECT COUNT(*) FROM bindings"), 2);
    assert_eq!(
        bench.count("SELECT COUNT(*) FROM bindings WHERE cancelled_at IS NULL"),
        1
    );
}

fn every_code_is_reachable_and_audited(backend: Backend) {
    // The codes the submission tests above produce, each with an audit row.
    let mut bench = Bench::new(backend);
    let n = license(40);
    bench.record(&n, Holding::MynaOnly, LicenseState::Valid);
    let mut r = good_request(&bench, &n);
    r.statement = "!".into();
    bench.submit(&r);
    bench.submit_from(&good_request(&bench, &n), "elsewhere");
    bench.submit(&good_request(&bench, &n));
    bench.submit(&good_request(&bench, &n));
    let audit = bench.store.audit_rows().expect("audit");
    let codes: Vec<(&str, u16, &str)> = audit
        .iter()
        .map(|a| (a.code.as_str(), a.http_status, a.decision.as_str()))
        .collect();
    assert_eq!(
        codes,
        [
            ("malformed_request", 422, "rejected"),
            ("terminal_mismatch", 422, "rejected"),
            ("created", 201, "accepted"),
            ("already_linked", 409, "rejected"),
        ]
    );
    // The malformed request's license is unknown; later ones name it.
    assert_eq!(audit[0].license_number, None);
    assert_eq!(audit[1].license_number.as_deref(), Some(n.as_str()));
}

fn no_personal_data_and_nothing_of_a_rejected_submission_is_kept(backend: Backend) {
    let mut bench = Bench::new(backend);
    let n = license(50);
    bench.record(&n, Holding::MynaOnly, LicenseState::Valid);
    let rejected_license = license(51);
    bench.record_named(
        &rejected_license,
        Holding::MynaOnly,
        LicenseState::Valid,
        "別人 次郎",
        "1980-05-05",
    );

    let good = good_request(&bench, &n);
    let rejected = good_request(&bench, &rejected_license);
    let mut forged = good_request(&bench, &n);
    forged.signature = BASE64.encode([7u8; 256]);
    assert_eq!(code(&bench.submit(&rejected)), "identity_mismatch");
    assert_eq!(code(&bench.submit(&forged)), "signature_invalid");
    assert_eq!(code(&bench.submit(&good)), "created");
    assert_eq!(code(&bench.submit(&good)), "repeated");

    let holder = &mynalink_simcard::test_identity(Validity::Current).holder;
    let cert_der = &mynalink_simcard::test_identity(Validity::Current).sign_cert_der;
    let everything = bench.dump_tables(true);
    let outside_records = bench.dump_tables(false);
    assert!(outside_records.contains("created"), "{outside_records}");
    for personal in [
        holder.name.as_str(),
        "試験",
        "花子",
        holder.birth_date.as_str(),
        "1990-01-02",
        "19900102",
        "別人",
        "1980-05-05",
    ] {
        assert!(
            !outside_records.contains(personal),
            "{personal:?} found outside license_records:\n{outside_records}"
        );
    }
    // The address, sex and the certificate itself are nowhere, records included.
    let cert_hex = hex::encode(cert_der);
    let cert_b64 = good.certificate.clone().expect("plain certificate");
    for leaked in [
        holder.address.as_str(),
        "東京都",
        "千代田",
        &cert_hex[cert_hex.len() - 64..],
        &cert_b64[cert_b64.len() - 64..],
        &good.signature[..40],
        &good.statement[..40],
    ] {
        assert!(
            !everything.contains(leaked),
            "{leaked:?} stored:\n{everything}"
        );
    }

    // The rejected submissions left nothing but audit rows and failure counts.
    let rejected_statement = BASE64.decode(&rejected.statement).expect("b64");
    let rejected_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&rejected_statement));
    let forged_statement = BASE64.decode(&forged.statement).expect("b64");
    let forged_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&forged_statement));
    assert!(!everything.contains(&rejected_sha));
    assert!(!everything.contains(&forged_sha));
    assert_eq!(
        bench.count(&format!(
            "SELECT COUNT(*) FROM bindings WHERE license_number = '{rejected_license}'"
        )),
        0
    );
    let nonce_of = |b64: &str| {
        let bytes = BASE64.decode(b64).expect("b64");
        let s: mynalink_link::statement::Statement =
            serde_json::from_slice(&bytes).expect("statement");
        s.nonce
    };
    assert!(!everything.contains(&nonce_of(&rejected.statement)));
    assert!(!everything.contains(&nonce_of(&forged.statement)));
}

fn repeated_failures_are_rate_limited_and_flagged(backend: Backend) {
    let mut bench = Bench::new(backend);
    bench.config.abuse.max_failures_per_terminal = 3;
    bench.config.abuse.max_failures_per_license = 100;
    bench.config.abuse.window = Duration::minutes(10);
    let n = license(60);
    bench.record(&n, Holding::MynaOnly, LicenseState::Valid);
    let mut forged = good_request(&bench, &n);
    forged.signature = BASE64.encode([9u8; 256]);
    for _ in 0..3 {
        assert_eq!(code(&bench.submit(&forged)), "signature_invalid");
    }
    // Now even a good submission from this terminal is refused…
    let good = good_request(&bench, &n);
    let outcome = bench.submit(&good);
    assert_eq!(code(&outcome), "rate_limited");
    assert_eq!(outcome.http_status(), 429);
    let flags = bench.store.abuse_flags().expect("flags");
    assert_eq!(flags.len(), 1);
    assert_eq!(flags[0].subject_kind, "terminal");
    assert_eq!(flags[0].subject, TERMINAL);
    assert_eq!(flags[0].failures, 3);
    assert_eq!(flags[0].last_code, "signature_invalid");
    // …while honest outcomes elsewhere do not count.
    let other = "other-terminal";
    let signer = sim_signer(Validity::Current);
    let stale = statement_for(&signer, &n, other, bench.now - Duration::hours(80));
    for _ in 0..5 {
        assert_eq!(
            code(&bench.submit_from(&request_for(&signer, &stale), other)),
            "statement_stale"
        );
    }
    assert_eq!(
        bench
            .store
            .failures_since(SubjectKind::Terminal, other, "0000")
            .expect("count"),
        0
    );
    // The window slides: later the terminal is heard again.
    bench.now += Duration::minutes(11);
    let fresh = good_request(&bench, &n);
    assert_eq!(code(&bench.submit(&fresh)), "created");
    assert_eq!(bench.count("SELECT COUNT(*) FROM bindings"), 1);
}

/// §8 per license: refusals of statements the holder's card really signed count against
/// the license, from whichever terminal they come.
fn a_license_attacked_from_many_terminals_is_rate_limited(backend: Backend) {
    let mut bench = Bench::new(backend);
    bench.config.abuse.max_failures_per_license = 2;
    let n = license(61);
    bench.record(&n, Holding::MynaOnly, LicenseState::Valid);
    let signer = sim_signer(Validity::Current);
    // Statements the card signed for one terminal, relayed by others.
    for terminal in ["t-a", "t-b"] {
        let statement = statement_for(&signer, &n, "elsewhere", bench.now);
        assert_eq!(
            code(&bench.submit_from(&request_for(&signer, &statement), terminal)),
            "terminal_mismatch"
        );
    }
    let statement = statement_for(&signer, &n, "t-c", bench.now);
    let outcome = bench.submit_from(&request_for(&signer, &statement), "t-c");
    assert_eq!(code(&outcome), "rate_limited");
    let flags = bench.store.abuse_flags().expect("flags");
    assert!(flags
        .iter()
        .any(|f| f.subject_kind == "license" && f.subject == n));
    // Another license is unaffected.
    let other = license(62);
    bench.record(&other, Holding::MynaOnly, LicenseState::Valid);
    let statement = statement_for(&signer, &other, "t-c", bench.now);
    assert_eq!(
        code(&bench.submit_from(&request_for(&signer, &statement), "t-c")),
        "created"
    );
}

/// Garbage naming a license — unsigned, badly signed, with a made-up certificate — never
/// counts against that license, however much of it comes and from however many terminals:
/// nothing shows the holder had anything to do with it. It counts against the terminals.
fn garbage_naming_a_license_does_not_lock_it(backend: Backend) {
    let mut bench = Bench::new(backend);
    let limit = bench.config.abuse.max_failures_per_license;
    let n = license(63);
    bench.record(&n, Holding::MynaOnly, LicenseState::Valid);
    let signer = sim_signer(Validity::Current);
    for i in 0..=limit {
        let terminal = ["t-a", "t-b", TERMINAL][i as usize % 3];
        let statement = statement_for(&signer, &n, terminal, bench.now);
        let mut forged = request_for(&signer, &statement);
        forged.signature = BASE64.encode([i as u8; 256]);
        assert_eq!(
            code(&bench.submit_from(&forged, terminal)),
            "signature_invalid"
        );
        let mut no_certificate = request_for(&signer, &statement);
        no_certificate.certificate = Some(BASE64.encode(b"not a certificate"));
        assert_eq!(
            code(&bench.submit_from(&no_certificate, terminal)),
            "certificate_invalid"
        );
    }
    assert_eq!(
        bench
            .store
            .failures_since(SubjectKind::License, &n, "0000")
            .expect("count"),
        0
    );
    assert!(bench.count(&format!(
        "SELECT COUNT(*) FROM abuse_events WHERE subject_kind = 'terminal' AND subject = '{TERMINAL}'"
    )) > 0);
    // The audit still names the license the garbage named.
    assert!(
        bench.count(&format!(
            "SELECT COUNT(*) FROM audit WHERE license_number = '{n}' AND code = 'signature_invalid'"
        )) > i64::from(limit)
    );
    // The holder comes to the counter: the genuine submission links.
    assert_eq!(code(&bench.submit(&good_request(&bench, &n))), "created");
}

fn arbitrary_inputs_never_panic(backend: Backend) {
    let mut bench = Bench::new(backend);
    let n = license(70);
    bench.record(&n, Holding::MynaOnly, LicenseState::Valid);
    bench.config.abuse.max_failures_per_terminal = u32::MAX;
    let good = good_request(&bench, &n);
    let statement = BASE64.decode(&good.statement).expect("b64");
    let cert = BASE64
        .decode(good.certificate.as_deref().expect("plain certificate"))
        .expect("b64");
    let mut seed = 0x1234_5678_u32;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    for i in 0..200 {
        let mut r = good.clone();
        let mut s = statement.clone();
        let mut c = cert.clone();
        let at = next() as usize;
        match i % 4 {
            0 => s[at % statement.len()] ^= (next() & 0xFF) as u8 | 1,
            1 => c[at % cert.len()] ^= (next() & 0xFF) as u8 | 1,
            2 => s.truncate(at % statement.len()),
            _ => c.truncate(at % cert.len()),
        }
        r.statement = BASE64.encode(&s);
        r.certificate = Some(BASE64.encode(&c));
        let outcome = bench.submit(&r);
        assert!(
            matches!(outcome, Outcome::Rejected(_)),
            "mutation {i} was accepted"
        );
    }
    assert_eq!(bench.count("SELECT COUNT(*) FROM bindings"), 0);
}

fn extreme_statement_times_are_refused_without_panicking(backend: Backend) {
    let mut bench = Bench::new(backend);
    let n = license(80);
    bench.record(&n, Holding::MynaOnly, LicenseState::Valid);
    let signer = sim_signer(Validity::Current);
    for time in [
        "9999-12-31T23:59:59-23:59",
        "0000-01-01T00:00:00+23:59",
        "2026-02-30T00:00:00Z",
        "2026-11-26T09:00:00.123456789Z",
    ] {
        let mut statement = statement_for(&signer, &n, TERMINAL, bench.now);
        statement.time = time.into();
        let outcome = bench.submit(&request_for(&signer, &statement));
        assert!(matches!(outcome, Outcome::Rejected(_)), "{time}");
    }
    // Windows too large for the calendar only remove the bound.
    bench.config.freshness_window = Duration::MAX;
    bench.config.future_tolerance = Duration::MAX;
    bench.config.abuse.window = Duration::MAX;
    assert_eq!(code(&bench.submit(&good_request(&bench, &n))), "created");
}

fn concurrent_identical_submissions_store_one_binding(backend: Backend) {
    let mut bench = Bench::new(backend);
    let n = license(81);
    bench.record(&n, Holding::MynaOnly, LicenseState::Valid);
    let request = good_request(&bench, &n);
    let config = bench.config.clone();
    let now = bench.now;
    let barrier = std::sync::Barrier::new(4);
    let outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let mut store = bench.open_again();
                let config = &config;
                let request = &request;
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    mynalink_server::submit(&mut store, config, request, TERMINAL, now)
                        .expect("store works")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let created = outcomes
        .iter()
        .filter(|o| o.code() == Code::Created)
        .count();
    let repeated = outcomes
        .iter()
        .filter(|o| o.code() == Code::Repeated)
        .count();
    assert_eq!((created, repeated), (1, 3), "{outcomes:?}");
    let ids: std::collections::HashSet<String> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Accepted(a) => Some(a.body.binding_id.clone()),
            Outcome::Rejected(_) => None,
        })
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(bench.count("SELECT COUNT(*) FROM bindings"), 1);
    let _ = &mut bench;
}

/// A CA certificate, one whose keyUsage does not allow signatures, one with an unknown
/// critical extension, or one naming another issuer than the root that signed it: refused
/// as `certificate_invalid`, each signed correctly and chaining to a configured root.
fn end_entity_faults_are_certificate_invalid(backend: Backend) {
    // The same holder without a fault links: the checks refuse the faults, not the holder.
    for (i, (fault, expected)) in [
        (Some(EndEntityFault::Ca), "certificate_invalid"),
        (Some(EndEntityFault::NoSigningUsage), "certificate_invalid"),
        (
            Some(EndEntityFault::UnknownCriticalExtension),
            "certificate_invalid",
        ),
        (Some(EndEntityFault::OtherIssuerName), "certificate_invalid"),
        (None, "created"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut bench = Bench::new(backend);
        let n = license(130 + i as u32);
        bench.record_named(
            &n,
            Holding::MynaOnly,
            LicenseState::Valid,
            "試験　花子",
            "1990-01-02",
        );
        let (root, signer) = faulty_signer("試験　花子", "419900102", fault);
        let mut trust = TrustStore::new();
        trust.add_trust_anchor(&root).expect("root");
        bench.config.trust = trust;
        let statement = statement_for(&signer, &n, TERMINAL, bench.now);
        let outcome = bench.submit(&request_for(&signer, &statement));
        assert_eq!(code(&outcome), expected, "{fault:?}");
        let stored = i64::from(fault.is_none());
        assert_eq!(
            bench.count("SELECT COUNT(*) FROM bindings"),
            stored,
            "{fault:?}"
        );
    }
}
