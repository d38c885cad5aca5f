//! `GET /v1/licenses/{number}/status` and cancellation.

mod common;

use common::*;
use mynalink_link::api::{Holding, LicenseState, LicenseStatus, LinkedVia, Service};
use mynalink_server::status::{
    answer_status, cancel_binding, license_status, CallerKind, StatusReadPolicy,
};
use mynalink_server::store::LICENSE_STATES;
use mynalink_server::{Code, Outcome};
use time::Duration;

use mynalink_server::scratch::Backend;

mynalink_server::on_both_databases!(
    unlinked_records_for_every_holding_and_state,
    linked_records_for_every_linkable_holding_and_state,
    the_link_carries_over_when_the_holding_changes,
    cancellation_and_relink,
    a_lapse_before_the_cancellation_does_not_require_the_counter,
    a_cancelled_record_that_is_no_longer_eligible,
    status_errors,
    status_reads_are_audited_shaped_per_caller_and_limited,
);

fn status(bench: &mut Bench, number: &str) -> LicenseStatus {
    license_status(&mut bench.store, number, bench.now)
        .expect("store")
        .expect("status")
}

fn services(s: &LicenseStatus) -> Vec<u8> {
    s.services
        .iter()
        .filter(|x| x.available)
        .map(|x| x.number)
        .collect()
}

fn link(bench: &mut Bench, number: &str) -> String {
    match bench.submit(&good_request(bench, number)) {
        Outcome::Accepted(a) => a.body.binding_id,
        Outcome::Rejected(r) => panic!("not linked: {r:?}"),
    }
}

fn unlinked_records_for_every_holding_and_state(backend: Backend) {
    let mut bench = Bench::new(backend);
    let mut serial = 1000;
    for holding in Holding::ALL {
        for state in LICENSE_STATES {
            serial += 1;
            let n = license(serial);
            bench.record(&n, holding, state);
            let s = status(&mut bench, &n);
            let case = format!("{holding:?}/{state:?}");
            assert_eq!(s.license_number, n, "{case}");
            assert_eq!(s.holding, Some(holding), "{case}");
            assert_eq!(s.state, Some(state), "{case}");
            assert_eq!(s.eligible, holding.can_link(), "{case}");
            assert!(!s.linked, "{case}");
            assert_eq!(s.linked_via, None, "{case}");
            assert_eq!(s.first_stage_needed, holding.can_link(), "{case}");
            let expected_reason = if holding.can_link() {
                "required"
            } else {
                "not_eligible"
            };
            assert_eq!(s.reason, expected_reason, "{case}");
            let expected: Vec<u8> = Service::ALL
                .iter()
                .filter(|x| x.available(holding, state))
                .map(|x| x.number())
                .collect();
            assert_eq!(services(&s), expected, "{case}");
            assert_eq!(s.services.len(), 5, "{case}");
        }
    }
    // Spot checks of §2(2) through the status.
    let n = license(2001);
    bench.record(&n, Holding::MynaOnly, LicenseState::Valid);
    assert_eq!(services(&status(&mut bench, &n)), [1, 2, 3, 4, 5]);
    bench.record(&n, Holding::MynaOnly, LicenseState::Suspended);
    assert_eq!(services(&status(&mut bench, &n)), [3, 4, 5]);
    bench.record(&n, Holding::HistoryMynaAndCard, LicenseState::Valid);
    assert_eq!(services(&status(&mut bench, &n)), [1, 5]);
}

fn linked_records_for_every_linkable_holding_and_state(backend: Backend) {
    let mut bench = Bench::new(backend);
    let mut serial = 3000;
    for holding in Holding::ALL.into_iter().filter(|h| h.can_link()) {
        for state in LICENSE_STATES {
            serial += 1;
            let n = license(serial);
            bench.record(&n, holding, state);
            link(&mut bench, &n);
            let s = status(&mut bench, &n);
            let case = format!("{holding:?}/{state:?}");
            assert!(s.linked, "{case}");
            assert_eq!(s.linked_via, Some(LinkedVia::Counter), "{case}");
            assert!(!s.first_stage_needed, "{case}");
            assert_eq!(s.reason, "already_linked", "{case}");
        }
    }
}

fn the_link_carries_over_when_the_holding_changes(backend: Backend) {
    let mut bench = Bench::new(backend);
    let n = license(4001);
    bench.record(&n, Holding::MynaOnly, LicenseState::Valid);
    link(&mut bench, &n);
    // Back to the plastic license only: kept with the record.
    bench.record(&n, Holding::CardOnly, LicenseState::Valid);
    let s = status(&mut bench, &n);
    assert!(s.linked && !s.eligible && !s.first_stage_needed);
    assert_eq!(s.reason, "carried_over");
    assert_eq!(services(&s), Vec::<u8>::new());
    // A マイナ免許証 again: linked as before.
    bench.record(&n, Holding::MynaAndCard, LicenseState::Valid);
    let s = status(&mut bench, &n);
    assert!(s.linked && !s.first_stage_needed);
    assert_eq!(s.reason, "already_linked");
    // Returned the license, now a マイナ経歴証明書: carried over (§5).
    bench.record(&n, Holding::HistoryMynaOnly, LicenseState::Valid);
    let s = status(&mut bench, &n);
    assert!(s.linked && s.eligible && !s.first_stage_needed);
    assert_eq!(s.reason, "carried_over");
    assert_eq!(services(&s), [1, 4, 5]);
    // A counter submission for it is refused as already linked.
    assert_eq!(
        bench.submit(&good_request(&bench, &n)).code(),
        Code::AlreadyLinked
    );

    // Linked while holding driving history, then a license again.
    let m = license(4002);
    bench.record(&m, Holding::HistoryMynaAndCard, LicenseState::Valid);
    link(&mut bench, &m);
    bench.record(&m, Holding::HistoryCardOnly, LicenseState::Valid);
    assert_eq!(status(&mut bench, &m).reason, "carried_over");
    bench.record(&m, Holding::MynaOnly, LicenseState::Valid);
    let s = status(&mut bench, &m);
    assert!(s.linked && !s.first_stage_needed);
    assert_eq!(s.reason, "carried_over");
}

fn cancellation_and_relink(backend: Backend) {
    let mut bench = Bench::new(backend);
    let n = license(5001);
    bench.record(&n, Holding::MynaOnly, LicenseState::Valid);
    let id = link(&mut bench, &n);

    let c = cancel_binding(&mut bench.store, &id, Some("mynaportal"), bench.now).expect("cancel");
    assert_eq!(c.code, Code::Cancelled);
    assert_eq!(c.code.http_status(), 200);
    let cancelled = c.binding.expect("binding");
    assert!(cancelled.cancelled_at.is_some());
    let again = cancel_binding(&mut bench.store, &id, None, bench.now).expect("cancel");
    assert_eq!(again.code, Code::AlreadyCancelled);
    let missing = cancel_binding(&mut bench.store, "nope", None, bench.now).expect("cancel");
    assert_eq!(missing.code, Code::BindingNotFound);
    assert_eq!(missing.code.http_status(), 404);

    // §6: relink from Mynaportal, no counter visit.
    let s = status(&mut bench, &n);
    assert!(!s.linked && s.eligible && !s.first_stage_needed);
    assert_eq!(s.reason, "relink_from_mynaportal");
    // Suspension does not change that.
    bench.record(&n, Holding::MynaOnly, LicenseState::Suspended);
    assert_eq!(status(&mut bench, &n).reason, "relink_from_mynaportal");
    // The license lapses: the counter is needed again…
    bench.now += Duration::days(1);
    bench.record(&n, Holding::MynaOnly, LicenseState::Lapsed);
    let s = status(&mut bench, &n);
    assert!(s.first_stage_needed);
    assert_eq!(s.reason, "required");
    // …also once a new license is held.
    bench.now += Duration::days(1);
    bench.record(&n, Holding::MynaOnly, LicenseState::Valid);
    let s = status(&mut bench, &n);
    assert!(s.first_stage_needed);
    assert_eq!(s.reason, "required");
    // And the counter links it.
    link(&mut bench, &n);
    assert_eq!(status(&mut bench, &n).reason, "already_linked");

    let audit = bench.store.audit_rows().expect("audit");
    let cancels: Vec<&str> = audit
        .iter()
        .filter(|a| a.operation == "cancel")
        .map(|a| a.code.as_str())
        .collect();
    assert_eq!(
        cancels,
        ["cancelled", "already_cancelled", "binding_not_found"]
    );
}

fn a_lapse_before_the_cancellation_does_not_require_the_counter(backend: Backend) {
    let mut bench = Bench::new(backend);
    let n = license(5002);
    bench.record(&n, Holding::MynaOnly, LicenseState::Revoked);
    bench.now += Duration::days(1);
    bench.record(&n, Holding::MynaOnly, LicenseState::Valid);
    let id = link(&mut bench, &n);
    bench.now += Duration::days(1);
    cancel_binding(&mut bench.store, &id, None, bench.now).expect("cancel");
    assert_eq!(status(&mut bench, &n).reason, "relink_from_mynaportal");
    // Revoked now: required.
    bench.record(&n, Holding::MynaOnly, LicenseState::Revoked);
    assert_eq!(status(&mut bench, &n).reason, "required");
}

fn a_cancelled_record_that_is_no_longer_eligible(backend: Backend) {
    let mut bench = Bench::new(backend);
    let n = license(5003);
    bench.record(&n, Holding::MynaOnly, LicenseState::Valid);
    let id = link(&mut bench, &n);
    cancel_binding(&mut bench.store, &id, None, bench.now).expect("cancel");
    bench.record(&n, Holding::CardOnly, LicenseState::Valid);
    let s = status(&mut bench, &n);
    assert!(!s.linked && !s.eligible && !s.first_stage_needed);
    assert_eq!(s.reason, "not_eligible");
}

fn status_errors(backend: Backend) {
    let mut bench = Bench::new(backend);
    let r = license_status(&mut bench.store, "12345", bench.now)
        .expect("store")
        .expect_err("invalid");
    assert_eq!(r.code, Code::LicenseNumberInvalid);
    let r = license_status(&mut bench.store, &license(9999), bench.now)
        .expect("store")
        .expect_err("missing");
    assert_eq!(r.code, Code::LicenseNotFound);
    // Typed forms are accepted for look-ups.
    let mut bench = bench;
    let n = license(9998);
    bench.record(&n, Holding::MynaOnly, LicenseState::Valid);
    let typed = format!("{}-{}", &n[..4], &n[4..]);
    assert_eq!(status(&mut bench, &typed).license_number, n);
}

/// Every read is audited (caller, license, time, answer); each kind of caller is told what
/// it needs; past its limit within the window a caller is refused and the refusal audited.
fn status_reads_are_audited_shaped_per_caller_and_limited(backend: Backend) {
    let mut bench = Bench::new(backend);
    let number = license(120);
    bench.record(&number, Holding::MynaOnly, LicenseState::Suspended);
    link(&mut bench, &number);
    let policy = StatusReadPolicy {
        window: Duration::minutes(10),
        per_terminal: 3,
        per_mynaportal: 4,
        per_admin: 5,
    };
    let now = bench.now;
    let read = |bench: &mut Bench, kind: CallerKind, caller: &str, number: &str| {
        answer_status(&mut bench.store, &policy, kind, caller, number, now).expect("store")
    };

    let terminal = read(&mut bench, CallerKind::Terminal, TERMINAL, &number).expect("answer");
    assert_eq!(terminal.holding, Some(Holding::MynaOnly));
    assert_eq!(
        terminal.state, None,
        "a terminal is not told the license's state"
    );
    assert_eq!(terminal.second_stage_done, None);
    assert!(terminal.linked && !terminal.first_stage_needed);
    // The suspension shows only as the services the counter explains (§2(2)).
    assert_eq!(services(&terminal), [3, 4, 5]);
    let portal = read(&mut bench, CallerKind::Mynaportal, "portal", &number).expect("answer");
    assert_eq!((portal.holding, portal.state), (None, None));
    assert_eq!(portal.second_stage_done, Some(false));
    let admin = read(&mut bench, CallerKind::Admin, "ops-01", &number).expect("answer");
    assert_eq!(admin.state, Some(LicenseState::Suspended));
    assert_eq!(admin.holding, Some(Holding::MynaOnly));
    assert_eq!(admin.second_stage_done, Some(false));

    // Audited: who, which license, when, and the answer; a malformed number is recorded
    // without its text.
    let missing = license(121);
    assert_eq!(
        read(&mut bench, CallerKind::Terminal, TERMINAL, &missing).map_err(|r| r.code),
        Err(Code::LicenseNotFound)
    );
    assert_eq!(
        read(&mut bench, CallerKind::Terminal, TERMINAL, "12-AB;DROP").map_err(|r| r.code),
        Err(Code::LicenseNumberInvalid)
    );
    let rows: Vec<_> = bench
        .store
        .audit_rows()
        .expect("audit")
        .into_iter()
        .filter(|r| r.operation == "status")
        .collect();
    let summary: Vec<(String, Option<String>, String)> = rows
        .iter()
        .map(|r| {
            (
                r.code.clone(),
                r.license_number.clone(),
                r.terminal_id.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "status_answered".into(),
                Some(number.clone()),
                TERMINAL.into()
            ),
            (
                "status_answered".into(),
                Some(number.clone()),
                "portal".into()
            ),
            (
                "status_answered".into(),
                Some(number.clone()),
                "ops-01".into()
            ),
            (
                "license_not_found".into(),
                Some(missing.clone()),
                TERMINAL.into()
            ),
            ("license_number_invalid".into(), None, TERMINAL.into()),
        ]
    );
    assert!(rows
        .iter()
        .all(|r| r.at == mynalink_link::statement::format_time(now)));

    // The terminal has had 3 reads answered: the 4th is refused, and audited as such.
    assert_eq!(
        read(&mut bench, CallerKind::Terminal, TERMINAL, &number).map_err(|r| r.code),
        Err(Code::RateLimited)
    );
    assert_eq!(
        bench.count(
            "SELECT COUNT(*) FROM audit WHERE operation = 'status' AND code = 'rate_limited'"
        ),
        1
    );
    // Other callers have their own limits.
    for _ in 0..3 {
        assert!(read(&mut bench, CallerKind::Mynaportal, "portal", &number).is_ok());
    }
    assert_eq!(
        read(&mut bench, CallerKind::Mynaportal, "portal", &number).map_err(|r| r.code),
        Err(Code::RateLimited)
    );
    assert!(read(&mut bench, CallerKind::Admin, "ops-01", &number).is_ok());
    // Refusals do not count: the window moves on and the terminal is answered again.
    let later = now + Duration::minutes(11);
    assert!(answer_status(
        &mut bench.store,
        &policy,
        CallerKind::Terminal,
        TERMINAL,
        &number,
        later
    )
    .expect("store")
    .is_ok());
}
