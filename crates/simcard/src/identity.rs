//! The simulated card's test identity: its keys and the certificates a JPKI card carries
//! (signing root + signing end-entity, authentication root + authentication end-entity),
//! built at run time.
//!
//! The signing key is one of [`SimKey`]: RSA-2048 as on today's card (the default), RSA-3072
//! (a larger modulus under the same root), or ECDSA P-384 under its own P-384 root — the
//! planned next-generation card, a PROVISIONAL profile (J-LIS has not published it).
//!
//! Keys come from fixed seeds, and the roots have fixed contents and validity, so the test
//! roots are byte-identical in every process: traces recorded against the simulated card
//! verify later against the same root. End-entity validity follows the clock (see
//! [`Validity`]), so end-entity certificates differ between processes.

use std::sync::{Arc, OnceLock};

use mynalink_card::SignatureAlgorithm;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rsa::RsaPrivateKey;
use sha2::{Digest, Sha256};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use crate::der::{self, DerError};
use crate::pki::{algorithm_identifier, TestKey};

/// The fictional person the simulated card belongs to, as written in the signing
/// certificate's subjectAltName (the basic-4 information).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestHolder {
    /// 氏名: family name, U+3000, given name.
    pub name: String,
    /// One `0`/`1` per name character (`1` = substitute character used).
    pub name_substitute_flags: String,
    /// `1` male, `2` female, `3` unknown.
    pub sex: String,
    /// Era digit followed by the Gregorian date, `EYYYYMMDD`.
    pub birth_date: String,
    /// 住所, from the prefecture on.
    pub address: String,
    /// One `0`/`1` per address character.
    pub address_substitute_flags: String,
}

impl TestHolder {
    /// The card's holder: clearly fictional (a "test" name, a made-up town).
    pub fn fictional() -> Self {
        let name = "試験\u{3000}花子".to_string();
        let address = "東京都千代田区試験町一丁目２番３号\u{3000}模擬ハイツ１０１".to_string();
        TestHolder {
            name_substitute_flags: "0".repeat(name.chars().count()),
            name,
            sex: "2".to_string(),
            birth_date: "419900102".to_string(),
            address_substitute_flags: "0".repeat(address.chars().count()),
            address,
        }
    }
}

/// Which validity the end-entity certificates get. Roots never depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Validity {
    /// Started 30 days ago, ends about four years from now.
    #[default]
    Current,
    /// Started about five years ago, ended a day ago.
    Expired,
}

/// The simulated card's signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SimKey {
    /// RSA-2048, as on today's My Number card.
    #[default]
    Rsa2048,
    /// RSA-3072 under the same root: a larger modulus than any card has today.
    Rsa3072,
    /// ECDSA P-384 (SHA-384) under a P-384 root: the planned next-generation card, a
    /// PROVISIONAL profile.
    EcP384,
}

impl SimKey {
    pub const ALL: [SimKey; 3] = [SimKey::Rsa2048, SimKey::Rsa3072, SimKey::EcP384];

    /// The command-line value: `rsa2048`, `rsa3072`, `ec-p384`.
    pub fn name(self) -> &'static str {
        match self {
            SimKey::Rsa2048 => "rsa2048",
            SimKey::Rsa3072 => "rsa3072",
            SimKey::EcP384 => "ec-p384",
        }
    }

    pub fn parse(text: &str) -> Option<SimKey> {
        SimKey::ALL.into_iter().find(|k| k.name() == text)
    }

    /// Whether the key models a card whose profile is not published yet.
    pub fn provisional(self) -> bool {
        self == SimKey::EcP384
    }

    /// For people: what the simulated card then stands for.
    pub fn description(self) -> &'static str {
        match self {
            SimKey::Rsa2048 => "RSA-2048 (today's My Number card)",
            SimKey::Rsa3072 => "RSA-3072 (a larger key than today's cards)",
            SimKey::EcP384 => {
                "ECDSA P-384 (next-generation card, PROVISIONAL profile: not published by J-LIS)"
            }
        }
    }
}

/// Everything the simulated card holds, plus the holder data for comparisons in tests.
pub struct TestIdentity {
    pub key: SimKey,
    pub sign_root_der: Vec<u8>,
    pub sign_cert_der: Vec<u8>,
    pub sign_key: TestKey,
    pub auth_root_der: Vec<u8>,
    pub auth_cert_der: Vec<u8>,
    pub auth_key: RsaPrivateKey,
    pub holder: TestHolder,
}

impl std::fmt::Debug for TestIdentity {
    // Keys stay out of debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestIdentity")
            .field("key", &self.key)
            .field("sign_root_der", &self.sign_root_der.len())
            .field("sign_cert_der", &self.sign_cert_der.len())
            .field("auth_root_der", &self.auth_root_der.len())
            .field("auth_cert_der", &self.auth_cert_der.len())
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

/// The RSA-2048 identity for `validity`, generated once per process and shared.
pub fn test_identity(validity: Validity) -> Arc<TestIdentity> {
    test_identity_with(SimKey::Rsa2048, validity)
}

/// The identity with signing key `key` for `validity`, generated once per process and shared.
pub fn test_identity_with(key: SimKey, validity: Validity) -> Arc<TestIdentity> {
    static CELLS: [OnceLock<Arc<TestIdentity>>; 6] = [
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
    ];
    let index = 2 * (key as usize) + usize::from(validity == Validity::Expired);
    Arc::clone(CELLS[index].get_or_init(|| {
        let now = OffsetDateTime::now_utc();
        Arc::new(
            build_identity(keys(), roots(), key, validity, now)
                .expect("the test identity's certificates encode"),
        )
    }))
}

/// The deterministic signing test root (EF 0002 of the simulated card with an RSA key).
pub fn sign_test_root_der() -> &'static [u8] {
    &roots().sign
}

/// The signing test root of the simulated card with signing key `key`.
pub fn sign_test_root_der_for(key: SimKey) -> &'static [u8] {
    match key {
        SimKey::Rsa2048 | SimKey::Rsa3072 => &roots().sign,
        SimKey::EcP384 => &roots().sign_ec_p384,
    }
}

/// SHA-256 of [`sign_test_root_der`], lower-case hex, for pinning the test root without
/// generating keys. A test keeps it equal to the generated root: if it ever changes
/// (seeds, root contents, or the key-generation algorithm of a dependency), traces
/// recorded before no longer verify.
pub const SIGN_TEST_ROOT_SHA256_HEX: &str =
    "d500662b3377b7012a32a73bdb6ce2fc4b67044fa88f189eebac6532363ac554";
/// SHA-256 of the P-384 signing test root (`sign_test_root_der_for(SimKey::EcP384)`).
pub const SIGN_TEST_ROOT_EC_P384_SHA256_HEX: &str =
    "11a12c9b3aaea72c538c1c5a6654be730a2d50906935b3dbf7b747bc1e8f2625";
/// SHA-256 of the authentication test root (EF 000B), lower-case hex.
pub const AUTH_TEST_ROOT_SHA256_HEX: &str =
    "1b444995e6c31ae9e82e22175e70f81d0c3ae8cd674d0a3741b777e156e1c1fa";

// ---------------------------------------------------------------------------------------
// Keys

// Seeds are part of the test root's identity: changing one changes the root.
const SEED_SIGN_ROOT: u64 = 0x4A50_4B49_5349_4D01;
const SEED_SIGN_EE: u64 = 0x4A50_4B49_5349_4D02;
const SEED_AUTH_ROOT: u64 = 0x4A50_4B49_5349_4D03;
const SEED_AUTH_EE: u64 = 0x4A50_4B49_5349_4D04;
const SEED_SIGN_EE_RSA3072: u64 = 0x4A50_4B49_5349_4D05;
/// EC keys are derived from labels at run time (cheap, unlike RSA key generation).
const LABEL_SIGN_ROOT_EC_P384: &str = "mynalink simulated card: P-384 signing root (TEST)";
const LABEL_SIGN_EE_EC_P384: &str = "mynalink simulated card: P-384 signing key (TEST)";

struct Keys {
    sign_root: TestKey,
    sign_ee: TestKey,
    auth_root: TestKey,
    auth_ee: RsaPrivateKey,
    sign_ee_rsa3072: TestKey,
    sign_root_ec_p384: TestKey,
    sign_ee_ec_p384: TestKey,
}

fn generate_key(seed: u64, bits: usize) -> RsaPrivateKey {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    RsaPrivateKey::new(&mut rng, bits).expect("RSA key generation from a seeded RNG")
}

/// The RSA keys as generated from the seeds, stored (PKCS#1 DER) so that start-up does not
/// spend a second on prime search: the window demo opens in tens of milliseconds instead.
/// A test regenerates them from the seeds and requires byte equality.
const SHIPPED_KEYS: [&[u8]; 5] = [
    include_bytes!("../keys/sign_root.der"),
    include_bytes!("../keys/sign_ee.der"),
    include_bytes!("../keys/auth_root.der"),
    include_bytes!("../keys/auth_ee.der"),
    include_bytes!("../keys/sign_ee_rsa3072.der"),
];
const SEEDS: [(u64, usize); 5] = [
    (SEED_SIGN_ROOT, 2048),
    (SEED_SIGN_EE, 2048),
    (SEED_AUTH_ROOT, 2048),
    (SEED_AUTH_EE, 2048),
    (SEED_SIGN_EE_RSA3072, 3072),
];

fn shipped_key(index: usize) -> Option<RsaPrivateKey> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    RsaPrivateKey::from_pkcs1_der(SHIPPED_KEYS[index]).ok()
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        // A damaged key file only costs time: the key is generated from its seed instead.
        let key = |i: usize| {
            shipped_key(i).unwrap_or_else(|| {
                let (seed, bits) = SEEDS[i];
                generate_key(seed, bits)
            })
        };
        Keys {
            sign_root: TestKey::Rsa(key(0)),
            sign_ee: TestKey::Rsa(key(1)),
            auth_root: TestKey::Rsa(key(2)),
            auth_ee: key(3),
            sign_ee_rsa3072: TestKey::Rsa(key(4)),
            sign_root_ec_p384: TestKey::ec_p384(LABEL_SIGN_ROOT_EC_P384),
            sign_ee_ec_p384: TestKey::ec_p384(LABEL_SIGN_EE_EC_P384),
        }
    })
}

struct Roots {
    sign: Vec<u8>,
    auth: Vec<u8>,
    sign_ec_p384: Vec<u8>,
}

fn roots() -> &'static Roots {
    static ROOTS: OnceLock<Roots> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let keys = keys();
        Roots {
            sign: build_root(&SIGN_ROOT, &keys.sign_root).expect("the signing test root encodes"),
            auth: build_root(&AUTH_ROOT, &keys.auth_root).expect("the auth test root encodes"),
            sign_ec_p384: build_root(&SIGN_ROOT_EC_P384, &keys.sign_root_ec_p384)
                .expect("the P-384 signing test root encodes"),
        }
    })
}

// ---------------------------------------------------------------------------------------
// Object identifiers

const OID_COUNTRY: &[u64] = &[2, 5, 4, 6];
const OID_LOCALITY: &[u64] = &[2, 5, 4, 7];
const OID_ORGANIZATION: &[u64] = &[2, 5, 4, 10];
const OID_ORG_UNIT: &[u64] = &[2, 5, 4, 11];
const OID_COMMON_NAME: &[u64] = &[2, 5, 4, 3];
const OID_SUBJECT_KEY_ID: &[u64] = &[2, 5, 29, 14];
const OID_KEY_USAGE: &[u64] = &[2, 5, 29, 15];
const OID_SUBJECT_ALT_NAME: &[u64] = &[2, 5, 29, 17];
const OID_ISSUER_ALT_NAME: &[u64] = &[2, 5, 29, 18];
const OID_BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];
const OID_CRL_DISTRIBUTION_POINTS: &[u64] = &[2, 5, 29, 31];
const OID_CERTIFICATE_POLICIES: &[u64] = &[2, 5, 29, 32];
const OID_AUTHORITY_KEY_ID: &[u64] = &[2, 5, 29, 35];
const OID_QT_CPS: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 2, 1];
const OID_QT_UNOTICE: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 2, 2];

/// JPKI test-environment signing policy (production is `…8.5.1.1.20`).
pub const OID_JPKI_TEST_SIGN_POLICY: &[u64] = &[1, 2, 392, 200149, 8, 5, 1, 0, 20];
/// Basic-4 otherName type ids, `1.2.392.200149.8.5.5.<n>`.
pub const OID_JPKI_NAME: &[u64] = &[1, 2, 392, 200149, 8, 5, 5, 1];
pub const OID_JPKI_NAME_FLAGS: &[u64] = &[1, 2, 392, 200149, 8, 5, 5, 2];
pub const OID_JPKI_SEX: &[u64] = &[1, 2, 392, 200149, 8, 5, 5, 3];
pub const OID_JPKI_BIRTH_DATE: &[u64] = &[1, 2, 392, 200149, 8, 5, 5, 4];
pub const OID_JPKI_ADDRESS: &[u64] = &[1, 2, 392, 200149, 8, 5, 5, 5];
pub const OID_JPKI_ADDRESS_FLAGS: &[u64] = &[1, 2, 392, 200149, 8, 5, 5, 6];

const CPS_URI: &str = "http://www.jpki.go.jp/cps.html";
const POLICY_NOTICE: &str = "TEST ONLY. Issued by the mynalink simulated card for demonstrations \
and automated tests; it identifies no real person and carries no legal effect. \
模擬カードの試験用証明書です。";

// ---------------------------------------------------------------------------------------
// Names

type Rdn<'a> = (&'static [u64], &'a str);

/// A distinguished name with one attribute per RDN, in the given order. Country codes are
/// PrintableString as X.520 requires; other values are PrintableString when they fit its
/// character set and UTF8String otherwise.
fn name(rdns: &[Rdn<'_>]) -> Result<Vec<u8>, DerError> {
    let mut encoded = Vec::with_capacity(rdns.len());
    for &(attribute, value) in rdns {
        let value = if attribute == OID_COUNTRY || value.chars().all(der::is_printable_char) {
            der::printable_string(value)?
        } else {
            der::utf8_string(value)
        };
        let atv = der::sequence(&[&der::oid(attribute)?, &value]);
        encoded.push(der::set_of(&[&atv]));
    }
    let parts: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
    Ok(der::sequence(&parts))
}

struct RootProfile<'a> {
    serial: &'a [u8],
    org_unit: &'a str,
    /// One more OU after the TEST label, e.g. the provisional profile's.
    extra_org_unit: Option<&'a str>,
}

const SIGN_ROOT: RootProfile<'static> = RootProfile {
    serial: &[0x4D, 0x59, 0x01],
    org_unit: "JPKI for digital signature",
    extra_org_unit: None,
};
const AUTH_ROOT: RootProfile<'static> = RootProfile {
    serial: &[0x4D, 0x5A, 0x02],
    org_unit: "JPKI for user authentication",
    extra_org_unit: None,
};
const SIGN_ROOT_EC_P384: RootProfile<'static> = RootProfile {
    serial: &[0x4D, 0x59, 0x03],
    org_unit: "JPKI for digital signature",
    extra_org_unit: Some("next-generation profile P-384 - PROVISIONAL"),
};

const TEST_ORG: &str = "JPKI-TEST";
const TEST_LABEL_OU: &str = "mynalink simulated card - TEST ONLY";
/// Stands where real certificates name 公的個人認証サービス.
const SERVICE_ORG: &str = "公的個人認証サービス（模擬・試験用）";

fn root_name(profile: &RootProfile<'_>) -> Result<Vec<u8>, DerError> {
    let mut rdns = vec![
        (OID_COUNTRY, "JP"),
        (OID_ORGANIZATION, TEST_ORG),
        (OID_ORG_UNIT, profile.org_unit),
        (OID_ORG_UNIT, TEST_LABEL_OU),
    ];
    if let Some(extra) = profile.extra_org_unit {
        rdns.push((OID_ORG_UNIT, extra));
    }
    name(&rdns)
}

fn service_dir_name() -> Result<Vec<u8>, DerError> {
    name(&[(OID_COUNTRY, "JP"), (OID_ORGANIZATION, SERVICE_ORG)])
}

fn crl_dir_name(profile: &RootProfile<'_>) -> Result<Vec<u8>, DerError> {
    name(&[
        (OID_COUNTRY, "JP"),
        (OID_ORGANIZATION, TEST_ORG),
        (OID_ORG_UNIT, profile.org_unit),
        (OID_ORG_UNIT, "CRL Distribution Points"),
        (OID_ORG_UNIT, "Tokyo-to"),
        (OID_COMMON_NAME, "Chiyoda-ku CRLDP (simulated)"),
    ])
}

/// A 20-character identifier in the style of the opaque subject CN of JPKI certificates.
fn opaque_id(label: &str) -> String {
    let digest = Sha256::digest(label.as_bytes());
    digest[..10].iter().map(|b| format!("{b:02X}")).collect()
}

// ---------------------------------------------------------------------------------------
// Certificate pieces

fn extension(id: &[u64], critical: bool, value: &[u8]) -> Result<Vec<u8>, DerError> {
    let id = der::oid(id)?;
    let value = der::octet_string(value);
    Ok(if critical {
        der::sequence(&[&id, &der::boolean(true), &value])
    } else {
        der::sequence(&[&id, &value])
    })
}

/// GeneralNames holding one directoryName (`[4]`, explicit because Name is a CHOICE).
fn dir_name_general_names(dir_name: &[u8]) -> Result<Vec<u8>, DerError> {
    Ok(der::sequence(&[&der::explicit(4, dir_name)?]))
}

fn crl_distribution_points(dir_name: &[u8]) -> Result<Vec<u8>, DerError> {
    // fullName [0] IMPLICIT GeneralNames inside distributionPoint [0] (a CHOICE, so explicit).
    let full_name = der::implicit_constructed(0, &[&der::explicit(4, dir_name)?])?;
    let point = der::sequence(&[&der::explicit(0, &full_name)?]);
    Ok(der::sequence(&[&point]))
}

fn authority_key_identifier(key_id: &[u8]) -> Result<Vec<u8>, DerError> {
    Ok(der::sequence(&[&der::implicit_primitive(0, key_id)?]))
}

fn signing_policies() -> Result<Vec<u8>, DerError> {
    let cps = der::sequence(&[&der::oid(OID_QT_CPS)?, &der::ia5_string(CPS_URI)?]);
    let notice = der::sequence(&[
        &der::oid(OID_QT_UNOTICE)?,
        &der::sequence(&[&der::utf8_string(POLICY_NOTICE)]),
    ]);
    let info = der::sequence(&[
        &der::oid(OID_JPKI_TEST_SIGN_POLICY)?,
        &der::sequence(&[&cps, &notice]),
    ]);
    Ok(der::sequence(&[&info]))
}

/// `otherName [0] { type-id OID, value [0] EXPLICIT UTF8String }`.
fn other_name(type_id: &[u64], value: &str) -> Result<Vec<u8>, DerError> {
    der::implicit_constructed(
        0,
        &[
            &der::oid(type_id)?,
            &der::explicit(0, &der::utf8_string(value))?,
        ],
    )
}

/// The basic-4 subjectAltName, in the order real signing certificates use.
fn basic4_alt_names(holder: &TestHolder) -> Result<Vec<u8>, DerError> {
    let names = [
        other_name(OID_JPKI_NAME, &holder.name)?,
        other_name(OID_JPKI_BIRTH_DATE, &holder.birth_date)?,
        other_name(OID_JPKI_SEX, &holder.sex)?,
        other_name(OID_JPKI_ADDRESS, &holder.address)?,
        other_name(OID_JPKI_NAME_FLAGS, &holder.name_substitute_flags)?,
        other_name(OID_JPKI_ADDRESS_FLAGS, &holder.address_substitute_flags)?,
    ];
    let parts: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
    Ok(der::sequence(&parts))
}

struct CertSpec<'a> {
    serial: &'a [u8],
    issuer: &'a [u8],
    subject: &'a [u8],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    subject_key: &'a TestKey,
    extensions: &'a [Vec<u8>],
    issuer_key: &'a TestKey,
    algorithm: SignatureAlgorithm,
}

fn build_certificate(spec: &CertSpec<'_>) -> Result<Vec<u8>, DerError> {
    let version = der::explicit(0, &der::integer_u64(2))?;
    let algorithm = algorithm_identifier(spec.algorithm)?;
    let validity = der::sequence(&[
        &der::x509_time(spec.not_before)?,
        &der::x509_time(spec.not_after)?,
    ]);
    let extension_parts: Vec<&[u8]> = spec.extensions.iter().map(Vec::as_slice).collect();
    let extensions = der::explicit(3, &der::sequence(&extension_parts))?;
    let tbs = der::sequence(&[
        &version,
        &der::integer_unsigned(spec.serial),
        &algorithm,
        spec.issuer,
        &validity,
        spec.subject,
        &spec.subject_key.subject_public_key_info()?,
        &extensions,
    ]);
    let signature = spec
        .issuer_key
        .sign_certificate(spec.algorithm, &tbs)
        .ok_or(DerError::Unsigned)?;
    Ok(der::sequence(&[
        &tbs,
        &algorithm,
        &der::bit_string(&signature, 0)?,
    ]))
}

// Fixed so the roots never depend on the clock. The start predates every end-entity
// certificate's (at most ~5 years back), so issued certificates nest inside the root.
const ROOT_NOT_BEFORE: OffsetDateTime = datetime!(2019-01-01 00:00:00 UTC);
const ROOT_NOT_AFTER: OffsetDateTime = datetime!(2044-12-31 23:59:59 UTC);

fn build_root(profile: &RootProfile<'_>, key: &TestKey) -> Result<Vec<u8>, DerError> {
    build_root_with(profile, key, key.default_algorithm())
}

fn build_root_with(
    profile: &RootProfile<'_>,
    key: &TestKey,
    algorithm: SignatureAlgorithm,
) -> Result<Vec<u8>, DerError> {
    let dn = root_name(profile)?;
    let ski = key.key_identifier();
    let extensions = [
        extension(
            OID_BASIC_CONSTRAINTS,
            true,
            &der::sequence(&[&der::boolean(true)]),
        )?,
        extension(OID_KEY_USAGE, true, &der::named_bits(&[5, 6]))?,
        extension(OID_SUBJECT_KEY_ID, false, &der::octet_string(&ski))?,
        extension(
            OID_SUBJECT_ALT_NAME,
            false,
            &dir_name_general_names(&service_dir_name()?)?,
        )?,
    ];
    build_certificate(&CertSpec {
        serial: profile.serial,
        issuer: &dn,
        subject: &dn,
        not_before: ROOT_NOT_BEFORE,
        not_after: ROOT_NOT_AFTER,
        subject_key: key,
        extensions: &extensions,
        issuer_key: key,
        algorithm,
    })
}

/// End-entity serials: distinct per certificate. The current signing certificate's first
/// byte has its high bit set, so its DER INTEGER needs the leading `00`.
fn ee_serial(signing: Option<SimKey>, validity: Validity) -> &'static [u8] {
    match (signing, validity) {
        (Some(SimKey::Rsa2048), Validity::Current) => &[0x9C, 0x4E, 0x21, 0x07, 0x5A],
        (Some(SimKey::Rsa2048), Validity::Expired) => &[0x3A, 0x17, 0xC2, 0x05],
        (Some(SimKey::Rsa3072), Validity::Current) => &[0x9C, 0x4E, 0x30, 0x72, 0x01],
        (Some(SimKey::Rsa3072), Validity::Expired) => &[0x3A, 0x17, 0x30, 0x72],
        (Some(SimKey::EcP384), Validity::Current) => &[0x9C, 0x4E, 0xEC, 0x38, 0x4A],
        (Some(SimKey::EcP384), Validity::Expired) => &[0x3A, 0x17, 0xEC, 0x38],
        (None, Validity::Current) => &[0x07, 0x6B, 0x3D, 0x14],
        (None, Validity::Expired) => &[0x05, 0xE2, 0x91, 0x0C],
    }
}

/// End-entity validity. The next-generation card's certificates run ten years instead of
/// today's five (to the holder's fifth birthday, modelled as about four years left).
fn ee_validity_for(
    key: SimKey,
    validity: Validity,
    now: OffsetDateTime,
) -> (OffsetDateTime, OffsetDateTime) {
    let (not_before, not_after) = ee_validity(validity, now);
    match (key, validity) {
        (SimKey::EcP384, Validity::Current) => {
            (not_before, not_before + Duration::days(30 + 10 * 365))
        }
        _ => (not_before, not_after),
    }
}

fn ee_validity(validity: Validity, now: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
    let now = now.replace_nanosecond(0).unwrap_or(now);
    match validity {
        Validity::Current => (now - Duration::days(30), now + Duration::days(4 * 365 + 1)),
        Validity::Expired => (now - Duration::days(5 * 365 + 1), now - Duration::days(1)),
    }
}

struct EeSpec<'a> {
    profile: &'a RootProfile<'a>,
    root_key: &'a TestKey,
    key: &'a TestKey,
    subject: Vec<u8>,
    serial: &'a [u8],
    validity: (OffsetDateTime, OffsetDateTime),
    leading_extensions: Vec<Vec<u8>>,
    algorithm: SignatureAlgorithm,
}

fn build_end_entity(spec: EeSpec<'_>) -> Result<Vec<u8>, DerError> {
    let issuer = root_name(spec.profile)?;
    let mut extensions = spec.leading_extensions;
    extensions.push(extension(
        OID_ISSUER_ALT_NAME,
        false,
        &dir_name_general_names(&service_dir_name()?)?,
    )?);
    extensions.push(extension(
        OID_CRL_DISTRIBUTION_POINTS,
        false,
        &crl_distribution_points(&crl_dir_name(spec.profile)?)?,
    )?);
    extensions.push(extension(
        OID_AUTHORITY_KEY_ID,
        false,
        &authority_key_identifier(&spec.root_key.key_identifier())?,
    )?);
    extensions.push(extension(
        OID_SUBJECT_KEY_ID,
        false,
        &der::octet_string(&spec.key.key_identifier()),
    )?);
    build_certificate(&CertSpec {
        serial: spec.serial,
        issuer: &issuer,
        subject: &spec.subject,
        not_before: spec.validity.0,
        not_after: spec.validity.1,
        subject_key: spec.key,
        extensions: &extensions,
        issuer_key: spec.root_key,
        algorithm: spec.algorithm,
    })
}

fn signing_subject() -> Result<Vec<u8>, DerError> {
    name(&[
        (OID_COUNTRY, "JP"),
        (OID_LOCALITY, "Chiyoda-ku"),
        (
            OID_COMMON_NAME,
            &opaque_id("mynalink simulated signing subject"),
        ),
    ])
}

/// The extensions before the common ones of a JPKI signing certificate.
fn signing_extensions(holder: &TestHolder) -> Result<Vec<Vec<u8>>, DerError> {
    Ok(vec![
        // digitalSignature + nonRepudiation: 03 02 06 C0
        extension(OID_KEY_USAGE, true, &der::named_bits(&[0, 1]))?,
        extension(OID_CERTIFICATE_POLICIES, true, &signing_policies()?)?,
        extension(OID_SUBJECT_ALT_NAME, false, &basic4_alt_names(holder)?)?,
    ])
}

/// A TEST root and a signing certificate in the JPKI profile (the fictional holder's
/// basic-4), with any accepted key pair and certificate signature algorithm: for tests of
/// keys and algorithms the simulated card does not carry.
pub struct ChainSpec<'a> {
    pub root_key: &'a TestKey,
    pub ee_key: &'a TestKey,
    /// The algorithm of the root's self-signature and of the end entity's signature.
    pub algorithm: SignatureAlgorithm,
    /// Added to the root's name (an OU), so that roots of different tests differ.
    pub label: &'a str,
    /// The end entity is valid from 30 days before to about four years after this.
    pub now: OffsetDateTime,
}

/// The DER of the root and of the end entity.
pub struct TestChain {
    pub root_der: Vec<u8>,
    pub cert_der: Vec<u8>,
}

pub fn test_chain(spec: &ChainSpec<'_>) -> Result<TestChain, DerError> {
    let profile = RootProfile {
        serial: &[0x4D, 0x59, 0x7F],
        org_unit: "JPKI for digital signature",
        extra_org_unit: Some(spec.label),
    };
    let root_der = build_root_with(&profile, spec.root_key, spec.algorithm)?;
    let cert_der = build_end_entity(EeSpec {
        profile: &profile,
        root_key: spec.root_key,
        key: spec.ee_key,
        subject: signing_subject()?,
        serial: &[0x7E, 0x57, 0x01],
        validity: ee_validity(Validity::Current, spec.now),
        leading_extensions: signing_extensions(&TestHolder::fictional())?,
        algorithm: spec.algorithm,
    })?;
    Ok(TestChain { root_der, cert_der })
}

fn build_identity(
    keys: &Keys,
    roots: &Roots,
    key: SimKey,
    validity: Validity,
    now: OffsetDateTime,
) -> Result<TestIdentity, DerError> {
    let holder = TestHolder::fictional();
    let (sign_profile, sign_root_key, sign_key, sign_root_der) = match key {
        SimKey::Rsa2048 => (&SIGN_ROOT, &keys.sign_root, &keys.sign_ee, &roots.sign),
        SimKey::Rsa3072 => (
            &SIGN_ROOT,
            &keys.sign_root,
            &keys.sign_ee_rsa3072,
            &roots.sign,
        ),
        SimKey::EcP384 => (
            &SIGN_ROOT_EC_P384,
            &keys.sign_root_ec_p384,
            &keys.sign_ee_ec_p384,
            &roots.sign_ec_p384,
        ),
    };

    let sign_cert_der = build_end_entity(EeSpec {
        profile: sign_profile,
        root_key: sign_root_key,
        key: sign_key,
        subject: signing_subject()?,
        serial: ee_serial(Some(key), validity),
        validity: ee_validity_for(key, validity, now),
        leading_extensions: signing_extensions(&holder)?,
        algorithm: sign_root_key.default_algorithm(),
    })?;

    let auth_subject = name(&[
        (OID_COUNTRY, "JP"),
        (
            OID_COMMON_NAME,
            &opaque_id("mynalink simulated auth subject"),
        ),
    ])?;
    let auth_cert_der = build_end_entity(EeSpec {
        profile: &AUTH_ROOT,
        root_key: &keys.auth_root,
        key: &TestKey::Rsa(keys.auth_ee.clone()),
        subject: auth_subject,
        serial: ee_serial(None, validity),
        validity: ee_validity(validity, now),
        leading_extensions: vec![
            // digitalSignature: 03 02 07 80
            extension(OID_KEY_USAGE, true, &der::named_bits(&[0]))?,
        ],
        algorithm: keys.auth_root.default_algorithm(),
    })?;

    Ok(TestIdentity {
        key,
        sign_root_der: sign_root_der.clone(),
        sign_cert_der,
        sign_key: sign_key.clone(),
        auth_root_der: roots.auth.clone(),
        auth_cert_der,
        auth_key: keys.auth_ee.clone(),
        holder,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha1::Sha1;
    use x509_parser::certificate::X509Certificate;
    use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
    use x509_parser::prelude::FromDer;
    use x509_parser::x509::X509Version;

    fn parse(der: &[u8]) -> X509Certificate<'_> {
        let (rest, cert) = X509Certificate::from_der(der).expect("parses");
        assert!(rest.is_empty(), "trailing bytes after the certificate");
        cert
    }

    #[test]
    fn roots_are_deterministic_across_generations() {
        let cached = test_identity(Validity::Current);
        assert_eq!(cached.sign_root_der, sign_test_root_der());
        let fresh_sign = build_root(
            &SIGN_ROOT,
            &TestKey::Rsa(generate_key(SEED_SIGN_ROOT, 2048)),
        )
        .unwrap();
        let fresh_auth = build_root(
            &AUTH_ROOT,
            &TestKey::Rsa(generate_key(SEED_AUTH_ROOT, 2048)),
        )
        .unwrap();
        assert_eq!(fresh_sign, cached.sign_root_der);
        assert_eq!(fresh_auth, cached.auth_root_der);
        // the expired identity shares keys and roots
        let expired = test_identity(Validity::Expired);
        assert_eq!(expired.sign_root_der, cached.sign_root_der);
        assert_eq!(expired.sign_key, cached.sign_key);
        assert_ne!(expired.sign_cert_der, cached.sign_cert_der);
    }

    #[test]
    fn root_fingerprints_are_pinned() {
        let hex = |der: &[u8]| -> String {
            Sha256::digest(der)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        assert_eq!(hex(sign_test_root_der()), SIGN_TEST_ROOT_SHA256_HEX);
        assert_eq!(
            hex(&test_identity(Validity::Current).auth_root_der),
            AUTH_TEST_ROOT_SHA256_HEX
        );
    }

    #[test]
    fn identity_is_cached() {
        let a = test_identity(Validity::Current);
        let b = test_identity(Validity::Current);
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn roots_are_labelled_self_signed_cas() {
        let id = test_identity(Validity::Current);
        for (der, ou) in [
            (&id.sign_root_der, "JPKI for digital signature"),
            (&id.auth_root_der, "JPKI for user authentication"),
        ] {
            let root = parse(der);
            assert_eq!(root.subject(), root.issuer());
            let subject = root.subject().to_string();
            assert!(subject.contains("O=JPKI-TEST"), "{subject}");
            assert!(subject.contains(ou), "{subject}");
            assert!(subject.contains("TEST ONLY"), "{subject}");
            root.verify_signature(None)
                .expect("self-signature verifies");
            let bc = root.basic_constraints().unwrap().unwrap();
            assert!(bc.critical && bc.value.ca);
            let ku = root.key_usage().unwrap().unwrap();
            assert!(ku.critical && ku.value.key_cert_sign() && ku.value.crl_sign());
            assert!(!ku.value.digital_signature());
            assert_eq!(root.validity().not_before.to_datetime(), ROOT_NOT_BEFORE);
            assert_eq!(root.validity().not_after.to_datetime(), ROOT_NOT_AFTER);
            let ski = root
                .extensions()
                .iter()
                .find_map(|e| match e.parsed_extension() {
                    ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                    _ => None,
                })
                .unwrap();
            let expected = Sha1::digest(&*root.public_key().subject_public_key.data).to_vec();
            assert_eq!(ski, expected);
        }
    }

    fn other_names(cert: &X509Certificate<'_>) -> Vec<(String, String)> {
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert!(!san.critical);
        san.value
            .general_names
            .iter()
            .map(|gn| match gn {
                GeneralName::OtherName(oid, value) => {
                    // value = [0] EXPLICIT UTF8String, with its tag
                    assert_eq!(value[0], 0xA0, "explicit [0]");
                    let inner = der::contents_of(value).unwrap();
                    assert_eq!(inner[0], 0x0C, "UTF8String");
                    let text = std::str::from_utf8(der::contents_of(inner).unwrap()).unwrap();
                    (oid.to_id_string(), text.to_string())
                }
                other => panic!("unexpected general name {other:?}"),
            })
            .collect()
    }

    #[test]
    fn signing_certificate_follows_the_jpki_profile() {
        let id = test_identity(Validity::Current);
        let root = parse(&id.sign_root_der);
        let cert = parse(&id.sign_cert_der);
        assert_eq!(cert.version(), X509Version::V3);
        assert_eq!(cert.issuer(), root.subject());
        cert.verify_signature(Some(root.public_key()))
            .expect("EE signature verifies under the root");
        assert_eq!(
            cert.signature_algorithm.algorithm.to_id_string(),
            "1.2.840.113549.1.1.11"
        );
        // the DER INTEGER carries a leading 00 because the high bit is set
        assert_eq!(cert.raw_serial(), [0x00, 0x9C, 0x4E, 0x21, 0x07, 0x5A]);
        assert_eq!(cert.serial.to_bytes_be(), [0x9C, 0x4E, 0x21, 0x07, 0x5A]);

        let subject = cert.subject().to_string();
        assert!(subject.starts_with("C=JP, L=Chiyoda-ku, CN="), "{subject}");
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap();
        assert_eq!(cn.len(), 20);

        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical);
        assert!(ku.value.digital_signature() && ku.value.non_repudiation());
        assert!(!ku.value.key_cert_sign());
        // the exact encoding 03 02 06 C0
        let raw_ku = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "2.5.29.15")
            .unwrap()
            .value;
        assert_eq!(raw_ku, [0x03, 0x02, 0x06, 0xC0]);

        let policies = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "2.5.29.32")
            .unwrap();
        assert!(policies.critical);
        match policies.parsed_extension() {
            ParsedExtension::CertificatePolicies(p) => {
                assert_eq!(p.len(), 1);
                assert_eq!(p[0].policy_id.to_id_string(), "1.2.392.200149.8.5.1.0.20");
                let qualifiers = p[0].policy_qualifiers.as_ref().unwrap();
                assert_eq!(
                    qualifiers[0].policy_qualifier_id.to_id_string(),
                    "1.3.6.1.5.5.7.2.1"
                );
            }
            other => panic!("policies did not parse: {other:?}"),
        }

        let names = other_names(&cert);
        let h = &id.holder;
        let expected = [
            ("1.2.392.200149.8.5.5.1", &h.name),
            ("1.2.392.200149.8.5.5.4", &h.birth_date),
            ("1.2.392.200149.8.5.5.3", &h.sex),
            ("1.2.392.200149.8.5.5.5", &h.address),
            ("1.2.392.200149.8.5.5.2", &h.name_substitute_flags),
            ("1.2.392.200149.8.5.5.6", &h.address_substitute_flags),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(o, v)| (o.to_string(), v.to_string()))
            .collect();
        assert_eq!(names, expected);

        // AKI = root SKI
        let aki = cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.clone(),
                _ => None,
            })
            .unwrap();
        let root_ski = Sha1::digest(&*root.public_key().subject_public_key.data).to_vec();
        assert_eq!(aki.0, root_ski.as_slice());

        let crl = cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::CRLDistributionPoints(p) => Some(p.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(crl.points.len(), 1);
        match &crl.points[0].distribution_point {
            Some(DistributionPointName::FullName(names)) => {
                assert!(matches!(names[0], GeneralName::DirectoryName(_)));
            }
            other => panic!("unexpected CRL DP {other:?}"),
        }
        match cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "2.5.29.18")
            .unwrap()
            .parsed_extension()
        {
            ParsedExtension::IssuerAlternativeName(ian) => {
                assert!(matches!(
                    ian.general_names[0],
                    GeneralName::DirectoryName(_)
                ));
            }
            other => panic!("unexpected IssuerAltName {other:?}"),
        }

        let size = id.sign_cert_der.len();
        assert!(
            (1500..=2000).contains(&size),
            "signing cert is {size} bytes"
        );
        assert_eq!(id.sign_cert_der[..2], [0x30, 0x82]);
    }

    #[test]
    fn holder_is_fictional_and_consistent() {
        let h = TestHolder::fictional();
        assert_eq!(h.name, "試験\u{3000}花子");
        assert_eq!(h.name_substitute_flags, "00000");
        assert_eq!(h.sex, "2");
        assert_eq!(h.birth_date, "419900102");
        assert!(h.address.starts_with("東京都"));
        assert_eq!(
            h.address_substitute_flags.chars().count(),
            h.address.chars().count()
        );
        assert!(h.address_substitute_flags.chars().all(|c| c == '0'));
    }

    #[test]
    fn auth_certificate() {
        let id = test_identity(Validity::Current);
        let root = parse(&id.auth_root_der);
        let cert = parse(&id.auth_cert_der);
        cert.verify_signature(Some(root.public_key()))
            .expect("auth EE verifies under the auth root");
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical && ku.value.digital_signature());
        assert!(!ku.value.non_repudiation());
        assert!(cert.subject_alternative_name().unwrap().is_none());
        assert!(cert.subject().to_string().starts_with("C=JP, CN="));
        // keys match the certificates
        assert_eq!(
            cert.public_key().raw,
            TestKey::Rsa(id.auth_key.clone())
                .subject_public_key_info()
                .unwrap()
        );
        let sign = parse(&id.sign_cert_der);
        assert_eq!(
            sign.public_key().raw,
            id.sign_key.subject_public_key_info().unwrap()
        );
    }

    #[test]
    fn validity_periods() {
        let now = OffsetDateTime::now_utc();
        let current = test_identity(Validity::Current);
        let expired = test_identity(Validity::Expired);
        for der in [&current.sign_cert_der, &current.auth_cert_der] {
            let cert = parse(der);
            let v = cert.validity();
            assert!(v.is_valid());
            let nb = v.not_before.to_datetime();
            let na = v.not_after.to_datetime();
            assert!(nb < now - Duration::days(29) && nb > now - Duration::days(31));
            assert!(na > now + Duration::days(4 * 365 - 1));
            assert!(na < now + Duration::days(4 * 365 + 2));
        }
        for der in [&expired.sign_cert_der, &expired.auth_cert_der] {
            let cert = parse(der);
            let v = cert.validity();
            assert!(!v.is_valid());
            assert!(v.not_after.to_datetime() < now);
            assert!(v.not_before.to_datetime() > ROOT_NOT_BEFORE);
            parse(&expired.sign_root_der);
            cert.verify_signature(Some(
                parse(if der == &expired.sign_cert_der {
                    &expired.sign_root_der
                } else {
                    &expired.auth_root_der
                })
                .public_key(),
            ))
            .unwrap();
        }
        assert_ne!(
            parse(&expired.sign_cert_der).raw_serial(),
            parse(&current.sign_cert_der).raw_serial()
        );
    }

    #[test]
    fn time_encoding_switches_to_generalized_in_2050() {
        let (nb, na) = ee_validity(Validity::Current, datetime!(2047-06-01 12:00:00.5 UTC));
        let keys = keys();
        let cert = build_end_entity(EeSpec {
            profile: &AUTH_ROOT,
            root_key: &keys.auth_root,
            key: &TestKey::Rsa(keys.auth_ee.clone()),
            subject: name(&[(OID_COUNTRY, "JP")]).unwrap(),
            serial: &[1],
            validity: (nb, na),
            leading_extensions: vec![],
            algorithm: keys.auth_root.default_algorithm(),
        })
        .unwrap();
        let parsed = parse(&cert);
        assert_eq!(parsed.validity().not_after.to_datetime().year(), 2051);
        assert_eq!(
            parsed.validity().not_before.to_datetime(),
            datetime!(2047-05-02 12:00:00 UTC)
        );
        let gt = der::generalized_time(na).unwrap();
        assert!(cert.windows(gt.len()).any(|w| w == gt.as_slice()));
    }

    /// The stored keys are exactly the seeded ones. To rewrite them after a deliberate
    /// change: `MYNALINK_WRITE_SIM_KEYS=1 cargo test -p mynalink-simcard shipped_keys`.
    #[test]
    fn shipped_keys_are_the_seeded_keys() {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let names = [
            "sign_root",
            "sign_ee",
            "auth_root",
            "auth_ee",
            "sign_ee_rsa3072",
        ];
        let generated: Vec<Vec<u8>> = std::thread::scope(|s| {
            let handles: Vec<_> = SEEDS
                .iter()
                .map(|&(seed, bits)| s.spawn(move || generate_key(seed, bits)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    let key = h.join().expect("key generation");
                    key.to_pkcs1_der().expect("PKCS#1").as_bytes().to_vec()
                })
                .collect()
        });
        if std::env::var_os("MYNALINK_WRITE_SIM_KEYS").is_some() {
            for (name, der) in names.iter().zip(&generated) {
                let path = format!("{}/keys/{name}.der", env!("CARGO_MANIFEST_DIR"));
                std::fs::write(&path, der).expect("write key");
            }
            return;
        }
        for (i, der) in generated.iter().enumerate() {
            assert_eq!(
                SHIPPED_KEYS[i],
                der.as_slice(),
                "{} differs from its seed",
                names[i]
            );
            assert!(shipped_key(i).is_some(), "{} decodes", names[i]);
        }
    }

    #[test]
    fn every_sim_key_gets_its_own_signing_certificate() {
        use x509_parser::public_key::PublicKey as Parsed;
        let rsa = test_identity_with(SimKey::Rsa2048, Validity::Current);
        for key in SimKey::ALL {
            let id = test_identity_with(key, Validity::Current);
            assert_eq!(id.key, key);
            assert_eq!(id.sign_root_der, sign_test_root_der_for(key));
            let root = parse(&id.sign_root_der);
            let cert = parse(&id.sign_cert_der);
            cert.verify_signature(Some(root.public_key()))
                .unwrap_or_else(|e| panic!("{key:?}: {e}"));
            assert_eq!(
                cert.public_key().raw,
                id.sign_key.subject_public_key_info().unwrap()
            );
            let bits = match cert.public_key().parsed().unwrap() {
                Parsed::RSA(k) => k.key_size(),
                Parsed::EC(p) => p.key_size(),
                other => panic!("{other:?}"),
            };
            match key {
                SimKey::Rsa2048 => assert_eq!(bits, 2048),
                SimKey::Rsa3072 => assert_eq!(bits, 3072),
                SimKey::EcP384 => assert_eq!(bits, 384),
            }
            // The authentication side is today's everywhere.
            assert_eq!(id.auth_root_der, rsa.auth_root_der);
            assert_eq!(key.provisional(), key == SimKey::EcP384);
            assert_eq!(SimKey::parse(key.name()), Some(key));
        }
        assert_eq!(SimKey::parse("ec-p256"), None);
        let rsa3072 = test_identity_with(SimKey::Rsa3072, Validity::Current);
        assert_eq!(rsa3072.sign_root_der, rsa.sign_root_der, "same root");
        assert_ne!(
            parse(&rsa3072.sign_cert_der).raw_serial(),
            parse(&rsa.sign_cert_der).raw_serial()
        );
    }

    #[test]
    fn the_next_generation_root_is_p384_and_labelled_provisional() {
        let id = test_identity_with(SimKey::EcP384, Validity::Current);
        let root = parse(&id.sign_root_der);
        assert_eq!(
            root.signature_algorithm.algorithm.to_id_string(),
            "1.2.840.10045.4.3.3",
            "ecdsa-with-SHA384"
        );
        assert!(root.signature_algorithm.parameters.is_none());
        let subject = root.subject().to_string();
        assert!(subject.contains("O=JPKI-TEST"), "{subject}");
        assert!(subject.contains("PROVISIONAL"), "{subject}");
        let cert = parse(&id.sign_cert_der);
        assert_eq!(
            cert.signature_algorithm.algorithm.to_id_string(),
            "1.2.840.10045.4.3.3"
        );
        // Ten years, as the next-generation card's certificates.
        let v = cert.validity();
        let days = (v.not_after.to_datetime() - v.not_before.to_datetime()).whole_days();
        assert_eq!(days, 30 + 10 * 365);
        // Deterministic: rebuilt from the labels, the root is the same bytes.
        let again = build_root(
            &SIGN_ROOT_EC_P384,
            &TestKey::ec_p384(LABEL_SIGN_ROOT_EC_P384),
        )
        .unwrap();
        assert_eq!(again, id.sign_root_der);
        let hex: String = Sha256::digest(&id.sign_root_der)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, SIGN_TEST_ROOT_EC_P384_SHA256_HEX);
    }

    #[test]
    fn test_chains_with_any_algorithm_verify() {
        use mynalink_card::HashAlgorithm;
        let rsa = TestKey::Rsa(keys().sign_root.rsa().unwrap().clone());
        for (root_key, algorithm) in [
            (&rsa, SignatureAlgorithm::RsaPkcs1(HashAlgorithm::Sha384)),
            (&rsa, SignatureAlgorithm::RsaPkcs1(HashAlgorithm::Sha512)),
            (&rsa, SignatureAlgorithm::RsaPss(HashAlgorithm::Sha256)),
            (
                &TestKey::ec_p256("chain root"),
                SignatureAlgorithm::Ecdsa(HashAlgorithm::Sha256),
            ),
        ] {
            let chain = test_chain(&ChainSpec {
                root_key,
                ee_key: &TestKey::ec_p256("chain ee"),
                algorithm,
                label: "chain test",
                now: OffsetDateTime::now_utc(),
            })
            .unwrap();
            let root = parse(&chain.root_der);
            let cert = parse(&chain.cert_der);
            // x509-parser's own check (ring) agrees for what it supports.
            if !matches!(algorithm, SignatureAlgorithm::RsaPss(_)) {
                cert.verify_signature(Some(root.public_key()))
                    .unwrap_or_else(|e| panic!("{algorithm}: {e}"));
            }
        }
        // An algorithm the issuer's key cannot make is an error, not a panic.
        assert!(matches!(
            test_chain(&ChainSpec {
                root_key: &rsa,
                ee_key: &rsa,
                algorithm: SignatureAlgorithm::Ecdsa(HashAlgorithm::Sha256),
                label: "x",
                now: OffsetDateTime::now_utc(),
            }),
            Err(DerError::Unsigned)
        ));
    }
}
