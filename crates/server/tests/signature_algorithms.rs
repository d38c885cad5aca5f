//! Both stages with every accepted key and signature algorithm (RSA PKCS#1 v1.5 and PSS with
//! SHA-256/384/512 on 2048- and 3072-bit keys, ECDSA P-256/P-384 with SHA-256/384), for the
//! issuer's signature on the certificate and the card's on the statement; the simulated
//! next-generation (P-384, provisional) card end to end; and weak or malformed signatures
//! refused with their codes.

mod common;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use common::{license, Bench, TERMINAL};
use mynalink_card::{HashAlgorithm, SignatureAlgorithm};
use mynalink_link::api::{BindingRequest, Holding, LicenseState};
use mynalink_link::certificate::{Sex, SigningCertificate};
use mynalink_link::statement::{format_time, Statement, TermsRef, PURPOSE, VERSION};
use mynalink_link::trust::TrustStore;
use mynalink_server::scratch::Backend;
use mynalink_server::second_stage::{
    receive_basic4, submit_signature, Basic4Request, SignatureRequest,
    PURPOSE as SECOND_STAGE_PURPOSE,
};
use mynalink_server::{Code, Outcome};
use mynalink_simcard::{der, test_chain, test_identity_with, ChainSpec, SimKey, TestKey, Validity};
use time::{Duration, OffsetDateTime};

mynalink_server::on_both_databases!(
    every_accepted_algorithm_links,
    the_simulated_next_generation_card_completes_both_stages,
    weak_or_malformed_signatures_are_refused,
);

const SHA256: HashAlgorithm = HashAlgorithm::Sha256;
const SHA384: HashAlgorithm = HashAlgorithm::Sha384;
const SHA512: HashAlgorithm = HashAlgorithm::Sha512;
const PORTAL: &str = "mynaportal";

/// A holder's certificate, its key, and how the card signs.
struct Holder {
    cert_der: Vec<u8>,
    key: TestKey,
    algorithm: SignatureAlgorithm,
}

fn rsa(key: SimKey) -> TestKey {
    test_identity_with(key, Validity::Current).sign_key.clone()
}

fn statement(
    holder: &Holder,
    purpose: &str,
    number: &str,
    caller: &str,
    nonce: &str,
    at: OffsetDateTime,
) -> Vec<u8> {
    let cert = SigningCertificate::parse(&holder.cert_der).expect("cert");
    Statement {
        purpose: purpose.into(),
        version: VERSION,
        license_number: number.into(),
        certificate_sha256: hex::encode(cert.sha256()),
        certificate_serial: cert.serial_hex(),
        issuer_key_id: cert.authority_key_id().map(hex::encode),
        terminal_id: caller.into(),
        operator_id: None,
        nonce: nonce.into(),
        time: format_time(at),
        terms: Some(TermsRef {
            version: "2025-03".into(),
            sha256: "cd".repeat(32),
        }),
    }
    .canonical_bytes()
}

fn first_stage(
    holder: &Holder,
    number: &str,
    at: OffsetDateTime,
    signature: Option<Vec<u8>>,
) -> BindingRequest {
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let bytes = statement(holder, PURPOSE, number, TERMINAL, &nonce, at);
    let signature = signature.unwrap_or_else(|| {
        holder
            .key
            .sign_raw(holder.algorithm, &bytes)
            .expect("the key makes this algorithm")
    });
    BindingRequest {
        statement: BASE64.encode(&bytes),
        signature: BASE64.encode(signature),
        certificate: Some(BASE64.encode(&holder.cert_der)),
        sealed_certificate: None,
        ca_certificate: None,
        staff_confirmed_identity: false,
    }
}

fn code(outcome: &Outcome) -> &'static str {
    outcome.code().as_str()
}

fn every_accepted_algorithm_links(backend: Backend) {
    let mut bench = Bench::new(backend);
    let p256 = TestKey::ec_p256("server root p256");
    let p384 = TestKey::ec_p384("server root p384");
    // (issuer key, certificate algorithm, holder key, statement algorithm)
    let cases = [
        (
            rsa(SimKey::Rsa2048),
            SignatureAlgorithm::RsaPkcs1(SHA384),
            rsa(SimKey::Rsa2048),
            SignatureAlgorithm::RsaPkcs1(SHA256),
        ),
        (
            rsa(SimKey::Rsa2048),
            SignatureAlgorithm::RsaPkcs1(SHA512),
            rsa(SimKey::Rsa3072),
            SignatureAlgorithm::RsaPkcs1(SHA384),
        ),
        (
            rsa(SimKey::Rsa3072),
            SignatureAlgorithm::RsaPss(SHA256),
            rsa(SimKey::Rsa2048),
            SignatureAlgorithm::RsaPkcs1(SHA512),
        ),
        (
            rsa(SimKey::Rsa2048),
            SignatureAlgorithm::RsaPss(SHA384),
            rsa(SimKey::Rsa3072),
            SignatureAlgorithm::RsaPss(SHA256),
        ),
        (
            rsa(SimKey::Rsa2048),
            SignatureAlgorithm::RsaPss(SHA512),
            rsa(SimKey::Rsa2048),
            SignatureAlgorithm::RsaPss(SHA384),
        ),
        (
            p256.clone(),
            SignatureAlgorithm::Ecdsa(SHA256),
            rsa(SimKey::Rsa2048),
            SignatureAlgorithm::RsaPss(SHA512),
        ),
        (
            p256,
            SignatureAlgorithm::Ecdsa(SHA384),
            TestKey::ec_p256("holder p256"),
            SignatureAlgorithm::Ecdsa(SHA256),
        ),
        (
            p384.clone(),
            SignatureAlgorithm::Ecdsa(SHA256),
            TestKey::ec_p256("holder p256 b"),
            SignatureAlgorithm::Ecdsa(SHA384),
        ),
        (
            p384.clone(),
            SignatureAlgorithm::Ecdsa(SHA384),
            TestKey::ec_p384("holder p384"),
            SignatureAlgorithm::Ecdsa(SHA384),
        ),
        (
            p384,
            SignatureAlgorithm::Ecdsa(SHA384),
            TestKey::ec_p384("holder p384 b"),
            SignatureAlgorithm::Ecdsa(SHA256),
        ),
    ];
    for (i, (root_key, chain_algorithm, holder_key, algorithm)) in cases.into_iter().enumerate() {
        let what = format!(
            "{chain_algorithm} by {} / {algorithm} by {}",
            root_key.kind(),
            holder_key.kind()
        );
        let chain = test_chain(&ChainSpec {
            root_key: &root_key,
            ee_key: &holder_key,
            algorithm: chain_algorithm,
            label: &format!("server algorithm test {i}"),
            now: bench.now,
        })
        .expect("chain");
        let holder = Holder {
            cert_der: chain.cert_der,
            key: holder_key,
            algorithm,
        };
        // Only this case's root: two roots of one key under different names (earlier
        // cases) would make the chain a certificate fault, not an untrusted one.
        bench.config.trust = TrustStore::new();
        let number = license(200 + i as u32);
        bench.record(&number, Holding::MynaOnly, LicenseState::Valid);
        let request = first_stage(&holder, &number, bench.now - Duration::minutes(1), None);
        // Not trusted yet: the root is a JPKI-TEST root nobody configured.
        assert_eq!(
            code(&bench.submit(&request)),
            "certificate_untrusted",
            "{what}"
        );
        bench
            .config
            .trust
            .add_trust_anchor(&chain.root_der)
            .expect("anchor");
        let outcome = bench.submit(&request);
        assert!(
            matches!(outcome, Outcome::Accepted(_)),
            "{what}: {outcome:?}"
        );
        // A bit flipped in the statement's signature: refused.
        let mut tampered = request.clone();
        let mut signature = BASE64.decode(&request.signature).expect("base64");
        signature[3] ^= 0x01;
        tampered.signature = BASE64.encode(&signature);
        assert_eq!(
            code(&bench.submit(&tampered)),
            "signature_invalid",
            "{what}"
        );
    }
}

fn the_simulated_next_generation_card_completes_both_stages(backend: Backend) {
    let mut bench = Bench::new(backend);
    let id = test_identity_with(SimKey::EcP384, Validity::Current);
    let holder = Holder {
        cert_der: id.sign_cert_der.clone(),
        key: id.sign_key.clone(),
        algorithm: SignatureAlgorithm::Ecdsa(SHA384),
    };
    let number = license(300);
    bench.record(&number, Holding::MynaOnly, LicenseState::Valid);
    let request = first_stage(&holder, &number, bench.now - Duration::minutes(1), None);
    // The bench trusts only the RSA test root.
    assert_eq!(code(&bench.submit(&request)), "certificate_untrusted");
    // The CA certificate sent along (read from the card) is a TEST root: not trusted either.
    let mut with_ca = request.clone();
    with_ca.ca_certificate = Some(BASE64.encode(&id.sign_root_der));
    assert_eq!(code(&bench.submit(&with_ca)), "certificate_untrusted");
    bench
        .config
        .trust
        .add_trust_anchor(&id.sign_root_der)
        .expect("anchor");
    assert!(matches!(bench.submit(&request), Outcome::Accepted(_)));
    // The same statement again: idempotent.
    assert_eq!(code(&bench.submit(&request)), "repeated");

    // The second stage with the same card.
    let cert = SigningCertificate::parse(&holder.cert_der).expect("cert");
    let b4 = cert.basic4().expect("basic4");
    let body = Basic4Request {
        name: b4.name.clone(),
        address: b4.address.clone().expect("address"),
        birth_date: "19900102".into(),
        sex: match b4.sex {
            Some(Sex::Male) => "1",
            Some(Sex::Female) => "2",
            _ => "9",
        }
        .into(),
    };
    // One attempt per second stage: a refused signature ends it.
    let attempt = |bench: &mut Bench, der: bool| {
        let second = receive_basic4(
            &mut bench.store,
            &bench.config,
            &number,
            &body,
            PORTAL,
            bench.now,
        )
        .expect("store works")
        .expect("received")
        .second_stage_id;
        let bytes = statement(
            &holder,
            SECOND_STAGE_PURPOSE,
            &number,
            PORTAL,
            &second,
            bench.now,
        );
        let signature = if der {
            holder.key.sign_certificate(holder.algorithm, &bytes)
        } else {
            holder.key.sign_raw(holder.algorithm, &bytes)
        }
        .expect("signs");
        let request = SignatureRequest {
            statement: BASE64.encode(&bytes),
            signature: BASE64.encode(signature),
            certificate: BASE64.encode(&holder.cert_der),
            ca_certificate: None,
        };
        submit_signature(
            &mut bench.store,
            &bench.config,
            &second,
            &request,
            PORTAL,
            bench.now,
        )
        .expect("store works")
        .map(|l| l.code)
        .map_err(|r| r.code)
    };
    // DER instead of r ‖ s: not what the card gives.
    assert_eq!(attempt(&mut bench, true), Err(Code::SignatureInvalid));
    assert_eq!(
        attempt(&mut bench, false).as_deref(),
        Ok("mynaportal_linked")
    );
}

fn weak_or_malformed_signatures_are_refused(backend: Backend) {
    let mut bench = Bench::new(backend);
    let id = test_identity_with(SimKey::Rsa2048, Validity::Current);
    let key = id.sign_key.clone();
    let holder = Holder {
        cert_der: id.sign_cert_der.clone(),
        key: key.clone(),
        algorithm: SignatureAlgorithm::RsaPkcs1(SHA256),
    };
    let number = license(400);
    bench.record(&number, Holding::MynaOnly, LicenseState::Valid);
    let at = bench.now - Duration::minutes(1);
    let rsa = key.rsa().expect("RSA identity");
    let unsigned = first_stage(&holder, &number, at, Some(vec![0; 256]));
    let bytes = BASE64.decode(&unsigned.statement).expect("base64");

    // PKCS#1 v1.5 padding without a DigestInfo, and PSS with a salt of 20 bytes: refused.
    use sha2::Digest;
    let raw = rsa
        .sign(
            rsa::Pkcs1v15Sign::new_unprefixed(),
            &sha2::Sha256::digest(&bytes),
        )
        .expect("signs");
    let mut request = unsigned.clone();
    request.signature = BASE64.encode(&raw);
    assert_eq!(code(&bench.submit(&request)), "signature_invalid");
    let mut rng = rand::thread_rng();
    let short_salt = rsa
        .sign_with_rng(
            &mut rng,
            rsa::Pss::new_with_salt::<sha2::Sha256>(20),
            &sha2::Sha256::digest(&bytes),
        )
        .expect("signs");
    request.signature = BASE64.encode(&short_salt);
    assert_eq!(code(&bench.submit(&request)), "signature_invalid");
    // An ECDSA-sized answer for an RSA key.
    request.signature = BASE64.encode([7u8; 96]);
    assert_eq!(code(&bench.submit(&request)), "signature_invalid");

    // A certificate whose issuer signed with sha1WithRSAEncryption: certificate_invalid.
    let sha1_rsa = der::sequence(&[
        &der::oid(&[1, 2, 840, 113549, 1, 1, 5]).expect("oid"),
        &der::null(),
    ]);
    let relabelled = relabel(&id.sign_cert_der, &sha1_rsa);
    let weak = Holder {
        cert_der: relabelled,
        key: key.clone(),
        algorithm: SignatureAlgorithm::RsaPkcs1(SHA256),
    };
    let request = first_stage(&weak, &number, at, None);
    assert_eq!(code(&bench.submit(&request)), "certificate_invalid");

    // The good signature still links.
    let request = first_stage(&holder, &number, at, None);
    assert!(matches!(bench.submit(&request), Outcome::Accepted(_)));
}

/// The certificate with both signature algorithm identifiers replaced (whole DER).
fn relabel(cert: &[u8], identifier: &[u8]) -> Vec<u8> {
    fn elements(mut input: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while !input.is_empty() {
            let first = input[1];
            let (len, header) = if first < 0x80 {
                (usize::from(first), 2)
            } else {
                let n = usize::from(first & 0x7F);
                let len = input[2..2 + n]
                    .iter()
                    .fold(0usize, |a, &b| (a << 8) | usize::from(b));
                (len, 2 + n)
            };
            out.push(input[..header + len].to_vec());
            input = &input[header + len..];
        }
        out
    }
    fn contents(element: &[u8]) -> &[u8] {
        let first = element[1];
        let header = if first < 0x80 {
            2
        } else {
            2 + usize::from(first & 0x7F)
        };
        &element[header..]
    }
    let outer = elements(contents(cert));
    let mut tbs_fields = elements(contents(&outer[0]));
    tbs_fields[2] = identifier.to_vec();
    let tbs = der::tlv(0x30, &tbs_fields.concat());
    der::tlv(0x30, &[tbs, identifier.to_vec(), outer[2].clone()].concat())
}
