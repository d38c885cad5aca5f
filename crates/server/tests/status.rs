//! `GET /v1/licenses/{number}/status` and cancellation.

mod common;

use common::*;
use mynalink_link::api::{Holding, LicenseState, LicenseStatus, LinkedVia, Service};
use mynalink_server::status::{cancel_binding, license_status};
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
);

fn status(bench: &mut Bench, number: &str) -> LicenseStatus {
    license_status(&mut bench.store, number)
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
            assert_eq!(s.holding, holding, "{case}");
            assert_eq!(s.state, state, "{case}");
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
    let r = license_status(&mut bench.store, "12345")
        .expect("store")
        .expect_err("invalid");
    assert_eq!(r.code, Code::LicenseNumberInvalid);
    let r = license_status(&mut bench.store, &license(9999))
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
