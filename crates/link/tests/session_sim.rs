//! The first-stage session against the simulated card, in process: invariants of the card
//! layer (allow-list, one VERIFY, no password anywhere) and the step order.

use mynalink_card::allowlist::{CARD_INFO_INPUT_AID, CARD_SURFACE_AID};
use mynalink_card::profile::JPKI_AID;
use mynalink_card::trace::TraceSource;
use mynalink_card::transport::{CertificateBytes, Recorder};
use mynalink_card::{SigningPassword, Transport, TransportError};
use mynalink_link::trust::TrustStore;
use mynalink_link::{ErrorCode, FirstStage, FlowInputs, Step};
use mynalink_simcard::{sign_test_root_der, SimHandle, SimOptions, SimTransport};
use rand::{Rng, SeedableRng};

fn trust() -> TrustStore {
    let mut trust = TrustStore::new();
    trust
        .add_trust_anchor(sign_test_root_der())
        .expect("test root");
    trust
}

fn inputs() -> FlowInputs {
    FlowInputs::fresh("729913281070", "test-terminal", None, None)
}

fn flow(options: SimOptions) -> (FirstStage<SimTransport>, SimHandle) {
    let transport = SimTransport::new(options);
    let handle = transport.handle();
    (
        FirstStage::new(transport, inputs(), trust()).expect("flow"),
        handle,
    )
}

fn password(p: &str) -> SigningPassword {
    SigningPassword::parse(p).expect("format")
}

#[test]
fn success_touches_only_the_jpki_application() {
    let (mut flow, sim) = flow(SimOptions::default());
    flow.check_card().expect("card");
    flow.verify_password(&password("TEST1234"), false)
        .expect("verify");
    flow.read_certificate().expect("certificate");
    let signed = flow.sign().expect("sign").clone();
    flow.end();
    assert_eq!(flow.step(), Step::Ended);
    assert_eq!(signed.signature.len(), 256);

    sim.with_card(|card| {
        assert!(!card.forbidden_selected());
        assert_eq!(card.verify_attempts(), 1);
        for command in card.commands() {
            if command.len() > 5 && command[1] == 0xA4 && command[2] == 0x04 {
                assert_eq!(&command[5..], &JPKI_AID, "SELECT of another application");
            }
            assert_ne!(&command[..], &[0x00, 0xA4, 0x04, 0x0C, 0x0A][..]);
        }
        let all: Vec<u8> = card.commands().concat();
        assert!(!contains(&all, &CARD_INFO_INPUT_AID));
        assert!(!contains(&all, &CARD_SURFACE_AID));
        assert!(!contains(&all, b"TEST1234"));
    });
}

#[test]
fn the_recorded_trace_never_holds_the_password() {
    let (recorder, handle) = Recorder::new(
        SimTransport::new(SimOptions::default()),
        TraceSource::Simulated,
        CertificateBytes::Withhold,
    );
    let mut flow = FirstStage::new(recorder, inputs(), trust()).expect("flow");
    flow.check_card().expect("card");
    flow.verify_password(&password("test1234"), false)
        .expect("verify");
    flow.end();
    let json = handle.snapshot().to_json();
    assert!(!json.contains("5445535431323334"));
    assert!(!json.to_ascii_uppercase().contains("TEST1234"));
    assert!(json.contains("0020008008XXXXXXXXXXXXXXXX"));
}

#[test]
fn wrong_password_then_right_password_in_one_session() {
    let (mut flow, sim) = flow(SimOptions::default());
    assert_eq!(
        flow.check_card().expect("card"),
        mynalink_card::PasswordStatus::Tries(5)
    );
    let e = flow
        .verify_password(&password("WRONG999"), false)
        .expect_err("wrong");
    assert_eq!(e.code, ErrorCode::PinWrong);
    assert_eq!(e.tries_left, Some(4));
    assert_eq!(sim.with_card(|c| c.signing_tries()), 4);
    // The next attempt reads the counter again before its single VERIFY.
    flow.verify_password(&password("TEST1234"), false)
        .expect("verify");
    assert_eq!(sim.with_card(|c| c.verify_attempts()), 2);
    assert_eq!(sim.with_card(|c| c.signing_tries()), 5);
    assert_eq!(flow.tries_before(), Some(5));
}

#[test]
fn no_verify_when_blocked_or_unconfirmed_last_try() {
    let (mut flow, sim) = flow(SimOptions {
        signing_tries: 0,
        ..SimOptions::default()
    });
    assert_eq!(
        flow.check_card().expect_err("blocked").code,
        ErrorCode::PinBlocked
    );
    assert_eq!(sim.with_card(|c| c.verify_attempts()), 0);

    let (mut flow, sim) = flow_with_tries(1);
    flow.check_card().expect("card");
    let e = flow
        .verify_password(&password("TEST1234"), false)
        .expect_err("needs confirmation");
    assert_eq!(e.code, ErrorCode::LastTryRequiresConfirmation);
    assert_eq!(sim.with_card(|c| c.verify_attempts()), 0);
    flow.verify_password(&password("TEST1234"), true)
        .expect("confirmed");
    assert_eq!(sim.with_card(|c| c.verify_attempts()), 1);
}

fn flow_with_tries(tries: u8) -> (FirstStage<SimTransport>, SimHandle) {
    flow(SimOptions {
        signing_tries: tries,
        ..SimOptions::default()
    })
}

#[test]
fn card_removed_at_the_verify_is_not_retried() {
    // Six APDUs reach the card before VERIFY would be the sixth; remove right then.
    let (mut flow, sim) = flow(SimOptions {
        remove_after_apdus: Some(5),
        ..SimOptions::default()
    });
    flow.check_card().expect("card");
    let e = flow
        .verify_password(&password("TEST1234"), false)
        .expect_err("removed");
    assert_eq!(e.code, ErrorCode::CardRemoved);
    assert_eq!(sim.with_card(|c| c.verify_attempts()), 0);
    assert_eq!(sim.with_card(|c| c.signing_tries()), 5);
}

#[test]
fn steps_run_only_in_order() {
    let (mut flow, _) = flow(SimOptions::default());
    assert!(flow.sign().is_err());
    assert!(flow.read_certificate().is_err());
    assert!(flow.verify_password(&password("TEST1234"), false).is_err());
    flow.check_card().expect("card");
    assert!(flow.sign().is_err());
}

#[test]
fn no_signing_certificate_is_not_reported_as_blocked() {
    let (mut flow, _) = flow(SimOptions {
        signing_certificate: false,
        ..SimOptions::default()
    });
    assert_eq!(
        flow.check_card().expect_err("no cert").code,
        ErrorCode::NoSigningCertificate
    );
}

#[test]
fn untrusted_without_the_test_root() {
    let mut flow = FirstStage::new(
        SimTransport::new(SimOptions::default()),
        inputs(),
        TrustStore::new(),
    )
    .expect("flow");
    flow.check_card().expect("card");
    flow.verify_password(&password("TEST1234"), false)
        .expect("verify");
    let e = flow.read_certificate().expect_err("untrusted");
    assert_eq!(e.code, ErrorCode::CertificateUntrusted);
}

/// A card that answers garbage: the session must fail cleanly, never panic.
struct Hostile {
    rng: rand::rngs::StdRng,
}

impl Transport for Hostile {
    fn transmit(&mut self, _command: &[u8]) -> Result<Vec<u8>, TransportError> {
        let len = match self.rng.gen_range(0..10) {
            0 => 0,
            1 => 1,
            2..=5 => 2,
            6 => self.rng.gen_range(2..300),
            _ => self.rng.gen_range(2..3000),
        };
        let mut response: Vec<u8> = (0..len).map(|_| self.rng.gen()).collect();
        // Mostly plausible status words, so the flow gets deep.
        if len >= 2 && self.rng.gen_bool(0.7) {
            let sw: [u8; 2] = match self.rng.gen_range(0..6) {
                0 => [0x61, self.rng.gen()],
                1 => [0x6C, self.rng.gen()],
                2 => [0x63, 0xC0 | self.rng.gen_range(0..16)],
                _ => [0x90, 0x00],
            };
            response[len - 2..].copy_from_slice(&sw);
        }
        if len >= 6 && self.rng.gen_bool(0.5) {
            response[..4].copy_from_slice(&[
                0x30,
                0x82,
                self.rng.gen_range(0..0x30),
                self.rng.gen(),
            ]);
        }
        Ok(response)
    }
    fn atr(&self) -> &[u8] {
        &[0x3B]
    }
    fn reader_name(&self) -> &str {
        "hostile"
    }
    fn card_present(&mut self) -> Result<bool, TransportError> {
        Ok(true)
    }
}

#[test]
fn hostile_card_answers_never_panic() {
    for seed in 0..3000u64 {
        let hostile = Hostile {
            rng: rand::rngs::StdRng::seed_from_u64(seed),
        };
        let mut flow = FirstStage::new(hostile, inputs(), trust()).expect("flow");
        let outcome = flow
            .check_card()
            .and_then(|_| flow.verify_password(&password("TEST1234"), true))
            .and_then(|_| flow.read_certificate().map(|_| ()))
            .and_then(|_| flow.sign().map(|_| ()));
        assert!(
            outcome.is_err(),
            "seed {seed}: garbage produced a signed statement"
        );
        flow.end();
    }
}

/// Trusts both TEST roots, as a run on the simulated card does.
fn trust_all_sim_roots() -> TrustStore {
    let mut trust = trust();
    trust
        .add_trust_anchor(mynalink_simcard::sign_test_root_der_for(
            mynalink_simcard::SimKey::EcP384,
        ))
        .expect("P-384 test root");
    trust
}

#[test]
fn every_simulated_key_signs_with_its_profiles_algorithm() {
    use mynalink_card::{HashAlgorithm, SignatureAlgorithm};
    use mynalink_simcard::SimKey;
    for (key, algorithm, length, profile, provisional) in [
        (
            SimKey::Rsa2048,
            SignatureAlgorithm::RsaPkcs1(HashAlgorithm::Sha256),
            256,
            "my-number-card",
            false,
        ),
        (
            SimKey::Rsa3072,
            SignatureAlgorithm::RsaPkcs1(HashAlgorithm::Sha256),
            384,
            "my-number-card",
            false,
        ),
        (
            SimKey::EcP384,
            SignatureAlgorithm::Ecdsa(HashAlgorithm::Sha384),
            96,
            "next-generation-provisional",
            true,
        ),
    ] {
        for extended_length in [true, false] {
            let options = SimOptions {
                key,
                extended_length,
                ..SimOptions::default()
            };
            let transport = SimTransport::new(options);
            let sim = transport.handle();
            let mut flow =
                FirstStage::new(transport, inputs(), trust_all_sim_roots()).expect("flow");
            flow.check_card().expect("card");
            flow.verify_password(&password("TEST1234"), false)
                .expect("verify");
            flow.read_certificate().expect("certificate");
            assert_eq!(flow.signature_algorithm(), Some(algorithm), "{key:?}");
            let card_profile = flow.card_profile().expect("profile");
            assert_eq!(card_profile.id, profile);
            assert_eq!(card_profile.provisional, provisional);
            let signed = flow.sign().expect("sign").clone();
            flow.end();
            assert_eq!(signed.signature.len(), length, "{key:?}");
            assert_eq!(signed.algorithm, algorithm);
            // What the backend checks: the algorithm follows from the certificate's key.
            let cert =
                mynalink_link::certificate::SigningCertificate::parse(&signed.certificate_der)
                    .expect("cert");
            assert_eq!(
                cert.verify_any_signature(&signed.bytes, &signed.signature),
                Ok(algorithm)
            );
            sim.with_card(|card| assert_eq!(card.verify_attempts(), 1));
        }
    }
}

#[test]
fn smartphones_are_refused_before_any_password() {
    for label in ["JPKIAPGPSETOKEN", "JPKIAPIOSTOKEN"] {
        let (mut flow, sim) = flow(SimOptions {
            token_label: label.into(),
            ..SimOptions::default()
        });
        let e = flow.check_card().expect_err("a smartphone");
        assert_eq!(e.code, ErrorCode::SmartphoneNotAccepted, "{label}");
        assert!(
            e.message_ja.contains("マイナンバーカード本体"),
            "{}",
            e.message_ja
        );
        assert!(
            e.message_en.contains("My Number card itself"),
            "{}",
            e.message_en
        );
        // Nothing can follow: the password step is not reached.
        assert!(flow.verify_password(&password("TEST1234"), true).is_err());
        flow.end();
        sim.with_card(|card| {
            assert_eq!(card.verify_attempts(), 0);
            // Not even the retry query: SELECT, SELECT token info, READ label.
            assert_eq!(card.commands().len(), 3, "{label}");
        });
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
