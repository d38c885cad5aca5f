//! The second stage (§4) in process: Mynaportal's card-info basic-4, then the holder's
//! signed statement, against a store with a first-stage binding.

mod common;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use common::{good_request, license, sim_signer, Bench, Signer};
use mynalink_link::api::{Holding, LicenseState};
use mynalink_link::certificate::{Sex, SigningCertificate};
use mynalink_link::statement::{format_time, Statement, TermsRef, VERSION};
use mynalink_server::basic4_key::Basic4Key;
use mynalink_server::measures::{self, SuspensionRequest};
use mynalink_server::second_stage::{
    receive_basic4, submit_signature, Basic4Request, SignatureRequest, PURPOSE,
};
use mynalink_server::status::license_status;
use mynalink_server::{Code, Outcome};
use mynalink_simcard::Validity;
use time::{Duration, OffsetDateTime};

use mynalink_server::scratch::Backend;

mynalink_server::on_both_databases!(
    happy_path_links_and_deletes_both_sets,
    mismatch_is_refused_and_deleted,
    folding_accepts_width_and_spacing_differences,
    expired_rows_are_refused_and_purged,
    the_statement_is_bound_to_the_session_and_caller,
    cancellation_before_the_signature_ends_the_session,
    without_a_first_stage_nothing_is_kept,
    after_a_cancellation_the_second_stage_alone_relinks,
    no_relink_after_the_license_lapsed_since_the_cancellation,
    repeated_second_stage_failures_are_rate_limited,
    a_changed_or_missing_basic4_key_ends_the_session,
    a_suspension_stops_both_stages_until_lifted,
    erasure_leaves_nothing_collected_for_the_license,
);

const PORTAL: &str = "mynaportal";

/// The simulated holder's basic-4 as the card-info AP would give it.
fn card_basic4() -> Basic4Request {
    let cert = SigningCertificate::parse(&sim_signer(Validity::Current).cert_der).expect("cert");
    let b4 = cert.basic4().expect("basic4");
    Basic4Request {
        name: b4.name.clone(),
        address: b4.address.clone().expect("address"),
        birth_date: "19900102".into(),
        sex: match b4.sex {
            Some(Sex::Male) => "1",
            Some(Sex::Female) => "2",
            _ => "9",
        }
        .into(),
    }
}

fn signature_request(
    signer: &Signer,
    number: &str,
    id: &str,
    caller: &str,
    time: OffsetDateTime,
) -> SignatureRequest {
    let cert = SigningCertificate::parse(&signer.cert_der).expect("cert");
    let statement = Statement {
        purpose: PURPOSE.into(),
        version: VERSION,
        license_number: number.into(),
        certificate_sha256: hex::encode(cert.sha256()),
        certificate_serial: cert.serial_hex(),
        issuer_key_id: cert.authority_key_id().map(hex::encode),
        terminal_id: caller.into(),
        operator_id: None,
        nonce: id.into(),
        time: format_time(time),
        terms: Some(TermsRef {
            version: "2025-03".into(),
            sha256: "cd".repeat(32),
        }),
    };
    let bytes = statement.canonical_bytes();
    SignatureRequest {
        statement: BASE64.encode(&bytes),
        signature: BASE64.encode(common::sign(&signer.key, &bytes)),
        certificate: BASE64.encode(&signer.cert_der),
        ca_certificate: None,
    }
}

/// A bench with a license linked by the first stage.
fn linked_bench(backend: Backend, serial: u32) -> (Bench, String) {
    let mut bench = Bench::new(backend);
    let number = license(serial);
    bench.record(&number, Holding::MynaOnly, LicenseState::Valid);
    let request = good_request(&bench, &number);
    assert!(matches!(bench.submit(&request), Outcome::Accepted(_)));
    (bench, number)
}

fn basic4(bench: &mut Bench, number: &str, body: &Basic4Request) -> Result<String, Code> {
    receive_basic4(
        &mut bench.store,
        &bench.config,
        number,
        body,
        PORTAL,
        bench.now,
    )
    .expect("store works")
    .map(|a| a.second_stage_id)
    .map_err(|r| r.code)
}

fn signature(bench: &mut Bench, id: &str, request: &SignatureRequest) -> Result<String, Code> {
    submit_signature(
        &mut bench.store,
        &bench.config,
        id,
        request,
        PORTAL,
        bench.now,
    )
    .expect("store works")
    .map(|l| l.code)
    .map_err(|r| r.code)
}

fn pending_rows(bench: &Bench) -> i64 {
    bench.count("SELECT COUNT(*) FROM second_stage_pending")
}

/// Parts of the basic-4 as they appear in a dump (whose text escapes U+3000).
fn basic4_needles() -> Vec<String> {
    let b4 = card_basic4();
    vec![
        "花子".to_string(),
        b4.address.chars().take(3).collect(),
        b4.birth_date.clone(),
    ]
}

/// No table but license_records holds the name or the address.
fn assert_no_basic4_left(bench: &Bench) {
    let dump = bench.dump_tables(false);
    for needle in basic4_needles() {
        assert!(
            !dump.contains(needle.as_str()),
            "{needle:?} left in:\n{dump}"
        );
    }
}

fn happy_path_links_and_deletes_both_sets(backend: Backend) {
    let (mut bench, number) = linked_bench(backend, 10);
    let id = basic4(&mut bench, &number, &card_basic4()).expect("received");
    assert_eq!(pending_rows(&bench), 1);
    // Pending, the card-info basic-4 is kept as hashes only.
    assert_no_basic4_left(&bench);

    let signer = sim_signer(Validity::Current);
    let request = signature_request(&signer, &number, &id, PORTAL, bench.now);
    assert_eq!(
        signature(&mut bench, &id, &request).as_deref(),
        Ok("mynaportal_linked")
    );
    assert_eq!(pending_rows(&bench), 0);
    assert_no_basic4_left(&bench);
    assert_eq!(
        license_status(&mut bench.store, &number, bench.now)
            .expect("store")
            .expect("status")
            .second_stage_done,
        Some(true)
    );

    // The same statement again: idempotent.
    assert_eq!(
        signature(&mut bench, &id, &request).as_deref(),
        Ok("second_stage_repeated")
    );
    // Starting again after completion is refused.
    assert_eq!(
        basic4(&mut bench, &number, &card_basic4()),
        Err(Code::SecondStageDone)
    );
    assert_eq!(pending_rows(&bench), 0);

    // Audit rows hold codes and identifiers only.
    let audit = bench.store.audit_rows().expect("audit");
    let ops: Vec<(&str, &str)> = audit
        .iter()
        .map(|r| (r.operation.as_str(), r.code.as_str()))
        .collect();
    assert!(ops.contains(&("second_stage_basic4", "basic4_received")));
    assert!(ops.contains(&("second_stage_signature", "mynaportal_linked")));
    assert!(ops.contains(&("second_stage_signature", "second_stage_repeated")));
    assert!(ops.contains(&("second_stage_basic4", "second_stage_done")));
}

fn mismatch_is_refused_and_deleted(backend: Backend) {
    for field in ["name", "address", "birth_date", "sex"] {
        let (mut bench, number) = linked_bench(backend, 11);
        let mut body = card_basic4();
        match field {
            "name" => body.name = "試験　花代".into(),
            "address" => body.address = "大阪府大阪市北区試験町１".into(),
            "birth_date" => body.birth_date = "19900103".into(),
            _ => {
                body.sex = if body.sex == "1" {
                    "2".into()
                } else {
                    "1".into()
                }
            }
        }
        let id = basic4(&mut bench, &number, &body).expect("received");
        let signer = sim_signer(Validity::Current);
        let request = signature_request(&signer, &number, &id, PORTAL, bench.now);
        assert_eq!(
            signature(&mut bench, &id, &request),
            Err(Code::Basic4Mismatch),
            "{field}"
        );
        assert_eq!(pending_rows(&bench), 0, "{field}");
        assert_no_basic4_left(&bench);
        assert!(!bench.dump_tables(false).contains("花代"));
        assert_eq!(
            license_status(&mut bench.store, &number, bench.now)
                .expect("store")
                .expect("status")
                .second_stage_done,
            Some(false)
        );
        // The session is over.
        assert_eq!(
            signature(&mut bench, &id, &request),
            Err(Code::SecondStageNotFound)
        );
    }
}

fn folding_accepts_width_and_spacing_differences(backend: Backend) {
    let (mut bench, number) = linked_bench(backend, 12);
    let mut body = card_basic4();
    body.name = body.name.replace('\u{3000}', "");
    body.address = body
        .address
        .chars()
        .map(|c| match c {
            '0'..='9' => char::from_u32(u32::from(c) + 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .collect();
    let id = basic4(&mut bench, &number, &body).expect("received");
    let request = signature_request(
        &sim_signer(Validity::Current),
        &number,
        &id,
        PORTAL,
        bench.now,
    );
    assert_eq!(
        signature(&mut bench, &id, &request).as_deref(),
        Ok("mynaportal_linked")
    );
}

fn expired_rows_are_refused_and_purged(backend: Backend) {
    let (mut bench, number) = linked_bench(backend, 13);
    let id = basic4(&mut bench, &number, &card_basic4()).expect("received");
    let signed_at = bench.now;
    bench.now += Duration::minutes(31);
    let request = signature_request(
        &sim_signer(Validity::Current),
        &number,
        &id,
        PORTAL,
        signed_at,
    );
    assert_eq!(
        signature(&mut bench, &id, &request),
        Err(Code::SecondStageNotFound)
    );
    // The refusal removed the row; a purge finds nothing more.
    assert_eq!(pending_rows(&bench), 0);
    assert_no_basic4_left(&bench);

    // An expired row of another license goes with the next purge.
    let (mut other, number2) = linked_bench(backend, 14);
    basic4(&mut other, &number2, &card_basic4()).expect("received");
    let later = format_time(other.now + Duration::minutes(30));
    assert_eq!(
        other
            .store
            .purge_expired_second_stage(&later)
            .expect("purge"),
        1
    );
    assert_eq!(pending_rows(&other), 0);
}

fn without_a_first_stage_nothing_is_kept(backend: Backend) {
    let mut bench = Bench::new(backend);
    let number = license(15);
    bench.record(&number, Holding::MynaOnly, LicenseState::Valid);
    assert_eq!(
        basic4(&mut bench, &number, &card_basic4()),
        Err(Code::FirstStageMissing)
    );
    assert_eq!(
        basic4(&mut bench, &license(16), &card_basic4()),
        Err(Code::LicenseNotFound)
    );
    assert_eq!(
        basic4(&mut bench, "123", &card_basic4()),
        Err(Code::LicenseNumberInvalid)
    );
    let mut bad = card_basic4();
    bad.sex = "3".into();
    assert_eq!(
        basic4(&mut bench, &number, &bad),
        Err(Code::MalformedRequest)
    );
    assert_eq!(pending_rows(&bench), 0);
    assert_no_basic4_left(&bench);
}

fn the_statement_is_bound_to_the_session_and_caller(backend: Backend) {
    let (mut bench, number) = linked_bench(backend, 17);
    let signer = sim_signer(Validity::Current);
    // A first-stage statement is not a second-stage one.
    let id = basic4(&mut bench, &number, &card_basic4()).expect("received");
    let first = good_request(&bench, &number);
    let wrong_purpose = SignatureRequest {
        statement: first.statement.clone(),
        signature: first.signature.clone(),
        certificate: first.certificate.clone().expect("cert"),
        ca_certificate: None,
    };
    assert_eq!(
        signature(&mut bench, &id, &wrong_purpose),
        Err(Code::StatementInvalid)
    );
    // Any decision ends the session.
    assert_eq!(pending_rows(&bench), 0);

    // Another session's id in the nonce.
    let id = basic4(&mut bench, &number, &card_basic4()).expect("received");
    let other = signature_request(&signer, &number, &"ab".repeat(16), PORTAL, bench.now);
    assert_eq!(
        signature(&mut bench, &id, &other),
        Err(Code::StatementInvalid)
    );

    // Signed for another caller.
    let id = basic4(&mut bench, &number, &card_basic4()).expect("received");
    let other = signature_request(&signer, &number, &id, "someone-else", bench.now);
    assert_eq!(
        signature(&mut bench, &id, &other),
        Err(Code::TerminalMismatch)
    );

    // A replaced session is gone: one pending row per license.
    let old = basic4(&mut bench, &number, &card_basic4()).expect("received");
    let new = basic4(&mut bench, &number, &card_basic4()).expect("received");
    assert_eq!(pending_rows(&bench), 1);
    let request = signature_request(&signer, &number, &old, PORTAL, bench.now);
    assert_eq!(
        signature(&mut bench, &old, &request),
        Err(Code::SecondStageNotFound)
    );
    let request = signature_request(&signer, &number, &new, PORTAL, bench.now);
    assert_eq!(
        signature(&mut bench, &new, &request).as_deref(),
        Ok("mynaportal_linked")
    );
    assert_eq!(pending_rows(&bench), 0);
}

fn cancellation_before_the_signature_ends_the_session(backend: Backend) {
    let (mut bench, number) = linked_bench(backend, 18);
    let id = basic4(&mut bench, &number, &card_basic4()).expect("received");
    let binding = bench
        .store
        .active_binding(&number)
        .expect("read")
        .expect("binding");
    bench
        .store
        .cancel_binding(&binding.binding_id, &format_time(bench.now), None)
        .expect("cancel");
    let request = signature_request(
        &sim_signer(Validity::Current),
        &number,
        &id,
        PORTAL,
        bench.now,
    );
    assert_eq!(
        signature(&mut bench, &id, &request),
        Err(Code::FirstStageMissing)
    );
    assert_eq!(pending_rows(&bench), 0);
}

/// Cancels the license's active binding at the bench's time and moves the clock on.
fn cancel_active(bench: &mut Bench, number: &str) -> String {
    let binding = bench
        .store
        .active_binding(number)
        .expect("read")
        .expect("an active binding");
    bench
        .store
        .cancel_binding(&binding.binding_id, &format_time(bench.now), Some(PORTAL))
        .expect("cancel");
    bench.now += Duration::minutes(1);
    binding.binding_id
}

/// One full second stage; the answer.
fn full_second_stage(
    bench: &mut Bench,
    number: &str,
) -> mynalink_server::second_stage::SecondStageLinked {
    let id = basic4(bench, number, &card_basic4()).expect("basic-4 received");
    let request = signature_request(
        &sim_signer(Validity::Current),
        number,
        &id,
        PORTAL,
        bench.now,
    );
    submit_signature(
        &mut bench.store,
        &bench.config,
        &id,
        &request,
        PORTAL,
        bench.now,
    )
    .expect("store works")
    .expect("linked")
}

/// §6: after a cancellation the holder relinks from Mynaportal without the counter: the
/// second stage alone stores a new binding that carries the cancelled one's first stage.
fn after_a_cancellation_the_second_stage_alone_relinks(backend: Backend) {
    let (mut bench, number) = linked_bench(backend, 19);
    let first = full_second_stage(&mut bench, &number);
    assert_eq!(first.code, "mynaportal_linked");
    let original = bench
        .store
        .binding(&first.binding_id)
        .expect("read")
        .expect("binding");

    for round in 0..2 {
        let cancelled = cancel_active(&mut bench, &number);
        let status = license_status(&mut bench.store, &number, bench.now)
            .expect("store works")
            .expect("status");
        assert!(!status.linked && !status.first_stage_needed, "{status:?}");
        assert_eq!(status.reason, "relink_from_mynaportal");

        let id = basic4(&mut bench, &number, &card_basic4()).expect("received");
        let request = signature_request(
            &sim_signer(Validity::Current),
            &number,
            &id,
            PORTAL,
            bench.now,
        );
        let relinked = submit_signature(
            &mut bench.store,
            &bench.config,
            &id,
            &request,
            PORTAL,
            bench.now,
        )
        .expect("store works")
        .expect("relinked");
        assert_eq!(relinked.code, "mynaportal_relinked", "round {round}");
        assert_eq!(relinked.relinked_from.as_deref(), Some(cancelled.as_str()));
        assert_ne!(relinked.binding_id, cancelled);
        assert!(relinked.same_certificate_as_first_stage);

        let new = bench
            .store
            .active_binding(&number)
            .expect("read")
            .expect("active again");
        assert_eq!(new.binding_id, relinked.binding_id);
        assert_eq!(new.relinked_from.as_deref(), Some(cancelled.as_str()));
        // The first stage's identifiers carry over; its statement stays spent.
        assert_eq!(new.certificate_serial, original.certificate_serial);
        assert_eq!(new.issuer_key_id, original.issuer_key_id);
        assert_eq!(new.terminal_id, original.terminal_id);
        assert_eq!(new.identity_check, original.identity_check);
        assert_eq!(new.statement_sha256, None);
        assert!(new.is_active());
        let link = bench
            .store
            .mynaportal_link(&new.binding_id)
            .expect("read")
            .expect("second stage recorded");
        assert_eq!(link.linked_at, format_time(bench.now));
        let old = bench
            .store
            .binding(&cancelled)
            .expect("read")
            .expect("kept");
        assert!(!old.is_active());

        let status = license_status(&mut bench.store, &number, bench.now)
            .expect("store works")
            .expect("status");
        assert!(status.linked && status.second_stage_done == Some(true));
        assert!(!status.first_stage_needed);
        assert_eq!(status.reason, "already_linked");

        // The same statement again: the same answer, nothing new.
        let again = submit_signature(
            &mut bench.store,
            &bench.config,
            &id,
            &request,
            PORTAL,
            bench.now,
        )
        .expect("store works")
        .expect("repeated");
        assert_eq!(again.code, "second_stage_repeated");
        assert_eq!(again.binding_id, relinked.binding_id);
        assert_eq!(pending_rows(&bench), 0);
        assert_no_basic4_left(&bench);
        bench.now += Duration::minutes(1);
    }
    assert_eq!(bench.count("SELECT COUNT(*) FROM bindings"), 3);
    assert_eq!(
        bench.count("SELECT COUNT(*) FROM audit WHERE code = 'mynaportal_relinked'"),
        2
    );
    // A counter submission now meets the restored binding.
    let counter = good_request(&bench, &number);
    assert_eq!(bench.submit(&counter).code(), Code::AlreadyLinked);
}

/// §6: a license that lapsed after the cancellation needs the counter again; so does a
/// relink session when the license lapses before the signature.
fn no_relink_after_the_license_lapsed_since_the_cancellation(backend: Backend) {
    let (mut bench, number) = linked_bench(backend, 20);
    cancel_active(&mut bench, &number);
    let id = basic4(&mut bench, &number, &card_basic4()).expect("relink session");
    bench.now += Duration::minutes(1);
    bench.record(&number, Holding::MynaOnly, LicenseState::Lapsed);
    bench.now += Duration::minutes(1);
    bench.record(&number, Holding::MynaOnly, LicenseState::Valid);
    let request = signature_request(
        &sim_signer(Validity::Current),
        &number,
        &id,
        PORTAL,
        bench.now,
    );
    assert_eq!(
        signature(&mut bench, &id, &request),
        Err(Code::FirstStageMissing)
    );
    assert_eq!(pending_rows(&bench), 0);
    assert_eq!(
        basic4(&mut bench, &number, &card_basic4()),
        Err(Code::FirstStageMissing)
    );
    assert_eq!(pending_rows(&bench), 0);
    let status = license_status(&mut bench.store, &number, bench.now)
        .expect("store works")
        .expect("status");
    assert!(status.first_stage_needed);
    assert_eq!(status.reason, "required");
    assert!(bench.store.active_binding(&number).expect("read").is_none());
}

/// §8 on the second stage: failures that point at forgery count against the license
/// (with the first stage's in the same window); at the limit both steps answer
/// `rate_limited` until the window moves on.
fn repeated_second_stage_failures_are_rate_limited(backend: Backend) {
    let (mut bench, number) = linked_bench(backend, 21);
    let limit = bench.config.abuse.max_failures_per_license;
    assert!(limit >= 2);
    let mut wrong = card_basic4();
    wrong.name = "見本　次郎".into();
    let signer = sim_signer(Validity::Current);
    for attempt in 0..limit - 1 {
        let id = basic4(&mut bench, &number, &wrong).expect("received");
        let request = signature_request(&signer, &number, &id, PORTAL, bench.now);
        assert_eq!(
            signature(&mut bench, &id, &request),
            Err(Code::Basic4Mismatch),
            "attempt {attempt}"
        );
    }
    // A session opened now, with the right basic-4 ...
    let open = basic4(&mut bench, &number, &card_basic4()).expect("received");
    // ... then the last allowed failure, from the first stage: the holder's card signed
    // it, for another terminal than the one sending it. (An unsigned forgery would count
    // against the terminal only.)
    let relayed = common::statement_for(&signer, &number, "elsewhere", bench.now);
    assert_eq!(
        bench.submit(&common::request_for(&signer, &relayed)).code(),
        Code::TerminalMismatch
    );
    assert_eq!(
        bench.count(&format!(
            "SELECT COUNT(*) FROM abuse_events WHERE subject_kind = 'license' \
             AND subject = '{number}'"
        )),
        i64::from(limit)
    );
    let flags = bench.store.abuse_flags().expect("flags");
    assert!(
        flags
            .iter()
            .any(|f| f.subject_kind == "license" && f.subject == number),
        "{flags:?}"
    );

    // Now the open session's right signature is refused and the session ends; a new
    // basic-4 is refused too.
    let request = signature_request(&signer, &number, &open, PORTAL, bench.now);
    assert_eq!(
        signature(&mut bench, &open, &request),
        Err(Code::RateLimited)
    );
    assert_eq!(pending_rows(&bench), 0);
    assert_eq!(
        basic4(&mut bench, &number, &card_basic4()),
        Err(Code::RateLimited)
    );
    assert_eq!(pending_rows(&bench), 0);
    let rate_limited = bench.count(
        "SELECT COUNT(*) FROM audit WHERE code = 'rate_limited' \
         AND operation = 'second_stage_basic4'",
    );
    assert_eq!(rate_limited, 1);

    // After the window the holder completes the second stage.
    bench.now += bench.config.abuse.window + Duration::minutes(1);
    let done = full_second_stage(&mut bench, &number);
    assert_eq!(done.code, "mynaportal_linked");
}

/// The hashes compare only under the key they were made with: after the key changed, the
/// session ends as not found (the holder's basic-4 was not shown to differ, so nothing
/// counts against the license) and a new one works. Without a key the second stage is
/// refused as not configured and nothing is kept.
fn a_changed_or_missing_basic4_key_ends_the_session(backend: Backend) {
    let (mut bench, number) = linked_bench(backend, 22);
    let id = basic4(&mut bench, &number, &card_basic4()).expect("received");
    bench.config.basic4_key = Some(Basic4Key::generate());
    let signer = sim_signer(Validity::Current);
    let request = signature_request(&signer, &number, &id, PORTAL, bench.now);
    let refused = submit_signature(
        &mut bench.store,
        &bench.config,
        &id,
        &request,
        PORTAL,
        bench.now,
    )
    .expect("store works")
    .expect_err("refused");
    assert_eq!(refused.code, Code::SecondStageNotFound);
    assert!(
        refused
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("key changed")),
        "{refused:?}"
    );
    assert_eq!(pending_rows(&bench), 0);
    assert_eq!(bench.count("SELECT COUNT(*) FROM abuse_events"), 0);
    let id = basic4(&mut bench, &number, &card_basic4()).expect("received");
    let request = signature_request(&signer, &number, &id, PORTAL, bench.now);
    assert_eq!(
        signature(&mut bench, &id, &request).as_deref(),
        Ok("mynaportal_linked")
    );

    let (mut bench, number) = linked_bench(backend, 23);
    bench.config.basic4_key = None;
    assert_eq!(
        basic4(&mut bench, &number, &card_basic4()),
        Err(Code::ServerError)
    );
    assert_eq!(pending_rows(&bench), 0);
}

const ADMIN: &str = "ops-01";

fn suspension(reason: &str) -> SuspensionRequest {
    SuspensionRequest {
        reason: reason.into(),
    }
}

/// §8: while an administrator has linking suspended for a license, neither stage can be done
/// for it (one begun before ends), its status says so, and every action is audited with the
/// administrator's id; lifted, linking works again.
fn a_suspension_stops_both_stages_until_lifted(backend: Backend) {
    let (mut bench, number) = linked_bench(backend, 60);
    let open = basic4(&mut bench, &number, &card_basic4()).expect("received");

    let suspended = measures::suspend(
        &mut bench.store,
        &number,
        &suspension("case 2026-0412"),
        ADMIN,
        bench.now,
    )
    .expect("store")
    .expect("suspended");
    assert!(suspended.created);
    assert_eq!(suspended.body.code, "suspended");
    assert_eq!(suspended.body.suspended_by, ADMIN);
    // Again: the first suspension stands.
    let again = measures::suspend(
        &mut bench.store,
        &number,
        &suspension("another reason"),
        ADMIN,
        bench.now + Duration::minutes(1),
    )
    .expect("store")
    .expect("suspended");
    assert!(!again.created);
    assert_eq!(again.body.reason, "case 2026-0412");
    assert_eq!(again.body.suspended_at, suspended.body.suspended_at);

    // The second stage begun before ends; a new one is refused.
    let signer = sim_signer(Validity::Current);
    let request = signature_request(&signer, &number, &open, PORTAL, bench.now);
    assert_eq!(
        signature(&mut bench, &open, &request),
        Err(Code::ServiceSuspended)
    );
    assert_eq!(pending_rows(&bench), 0);
    assert_eq!(
        basic4(&mut bench, &number, &card_basic4()),
        Err(Code::ServiceSuspended)
    );
    // A first stage for another license of the same bench is untouched; for this one, a
    // new first stage (after a cancellation) is refused.
    let other = license(61);
    bench.record(&other, Holding::MynaOnly, LicenseState::Valid);
    assert!(matches!(
        bench.submit(&good_request(&bench, &other)),
        Outcome::Accepted(_)
    ));
    let binding = bench
        .store
        .active_binding(&number)
        .expect("read")
        .expect("binding");
    mynalink_server::status::cancel_binding(
        &mut bench.store,
        &binding.binding_id,
        Some(ADMIN),
        bench.now,
    )
    .expect("cancel");
    assert_eq!(
        bench.submit(&good_request(&bench, &number)).code(),
        Code::ServiceSuspended
    );
    let status = license_status(&mut bench.store, &number, bench.now)
        .expect("store")
        .expect("status");
    assert!(status.service_suspended && !status.first_stage_needed);
    assert_eq!(status.reason, "service_suspended");
    assert_eq!(
        status.suspension.map(|s| (s.reason, s.suspended_by)),
        Some(("case 2026-0412".to_string(), ADMIN.to_string()))
    );

    // Lifted: the first stage links again.
    let lifted = measures::lift(&mut bench.store, &number, ADMIN, bench.now)
        .expect("store")
        .expect("lifted");
    assert_eq!(lifted.code, "suspension_lifted");
    assert_eq!(
        measures::lift(&mut bench.store, &number, ADMIN, bench.now)
            .expect("store")
            .map_err(|r| r.code),
        Err(Code::NotSuspended)
    );
    assert_eq!(
        bench.submit(&good_request(&bench, &number)).code(),
        Code::Created
    );
    assert!(
        !license_status(&mut bench.store, &number, bench.now)
            .expect("store")
            .expect("status")
            .service_suspended
    );

    // Refusals of the measures themselves.
    for (bad, code) in [
        ("1234", Code::LicenseNumberInvalid),
        (license(69).as_str(), Code::LicenseNotFound),
    ] {
        assert_eq!(
            measures::suspend(&mut bench.store, bad, &suspension("x"), ADMIN, bench.now)
                .expect("store")
                .map(|_| ())
                .map_err(|r| r.code),
            Err(code)
        );
    }
    for reason in ["", "   ", "two\nlines", &"x".repeat(501)] {
        assert_eq!(
            measures::suspend(
                &mut bench.store,
                &number,
                &suspension(reason),
                ADMIN,
                bench.now
            )
            .expect("store")
            .map(|_| ())
            .map_err(|r| r.code),
            Err(Code::MalformedRequest),
            "{reason:?}"
        );
    }

    // Every action is audited with the administrator's id, and the suspensions' refusals
    // too; a suspension refusal does not count against the license or the terminal.
    let audit = bench.store.audit_rows().expect("audit");
    let by_admin: Vec<(&str, &str)> = audit
        .iter()
        .filter(|r| r.terminal_id.as_deref() == Some(ADMIN))
        .map(|r| (r.operation.as_str(), r.code.as_str()))
        .collect();
    for expected in [
        ("suspend", "suspended"),
        ("lift_suspension", "suspension_lifted"),
        ("lift_suspension", "not_suspended"),
        ("suspend", "license_not_found"),
        ("suspend", "malformed_request"),
    ] {
        assert!(by_admin.contains(&expected), "{expected:?} in {by_admin:?}");
    }
    assert!(audit
        .iter()
        .any(|r| r.operation == "submit" && r.code == "service_suspended"));
    assert_eq!(
        bench.count("SELECT COUNT(*) FROM abuse_events WHERE code = 'service_suspended'"),
        0
    );
}

/// §8: erasure takes the certificate identifiers of the license's bindings and its pending
/// second stages; the audit says it happened, without the values.
fn erasure_leaves_nothing_collected_for_the_license(backend: Backend) {
    let (mut bench, number) = linked_bench(backend, 62);
    let binding = bench
        .store
        .active_binding(&number)
        .expect("read")
        .expect("binding");
    let serial = binding.certificate_serial.clone();
    let statement_sha256 = binding.statement_sha256.clone().expect("statement hash");
    basic4(&mut bench, &number, &card_basic4()).expect("received");
    // Another license keeps what it has.
    let (other_binding, other) = {
        let other = license(63);
        bench.record(&other, Holding::MynaOnly, LicenseState::Valid);
        assert!(matches!(
            bench.submit(&good_request(&bench, &other)),
            Outcome::Accepted(_)
        ));
        (
            bench
                .store
                .active_binding(&other)
                .expect("read")
                .expect("b"),
            other,
        )
    };

    let erased = measures::erase(&mut bench.store, &number, ADMIN, bench.now)
        .expect("store")
        .expect("erased");
    assert_eq!(erased.code, "collected_erased");
    assert_eq!(
        (erased.bindings_erased, erased.second_stages_erased),
        (1, 1)
    );
    assert_eq!(pending_rows(&bench), 0);
    let status = license_status(&mut bench.store, &number, bench.now)
        .expect("store")
        .expect("status");
    assert!(!status.linked && status.first_stage_needed);

    // Nothing of this license's certificate is left; the other license's is.
    let dump = bench.dump_tables(false);
    assert!(!dump.contains(&statement_sha256), "statement hash left");
    let erased_row = bench
        .store
        .binding(&binding.binding_id)
        .expect("read")
        .expect("row kept");
    assert_eq!(erased_row.certificate_serial, "");
    assert_eq!(erased_row.issuer_key_id, None);
    assert_eq!(erased_row.statement_sha256, None);
    assert!(erased_row.cancelled_at.is_some());
    let kept = bench
        .store
        .active_binding(&other)
        .expect("read")
        .expect("other binding");
    assert_eq!(kept, other_binding);
    assert_eq!(kept.certificate_serial, serial, "same card, other license");

    // The audit keeps that it happened, by whom, and how much — not the values.
    let audit = bench.store.audit_rows().expect("audit");
    let erasure = audit
        .iter()
        .find(|r| r.operation == "erase")
        .expect("erasure audited");
    assert_eq!(erasure.code, "collected_erased");
    assert_eq!(erasure.terminal_id.as_deref(), Some(ADMIN));
    assert_eq!(erasure.license_number.as_deref(), Some(number.as_str()));
    // Erasing again finds nothing more.
    let again = measures::erase(&mut bench.store, &number, ADMIN, bench.now)
        .expect("store")
        .expect("erased");
    assert_eq!((again.bindings_erased, again.second_stages_erased), (0, 0));
    // A new first stage for the license links again.
    assert_eq!(
        bench.submit(&good_request(&bench, &number)).code(),
        Code::Created
    );
}
