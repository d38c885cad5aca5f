//! Shared test bench: a fresh database (SQLite or PostgreSQL), the simulated card's
//! identity as the signer, and helpers that build real signed submissions.
#![allow(dead_code)]

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use mynalink_link::api::{BindingRequest, Holding, LicenseState};
use mynalink_link::certificate::SigningCertificate;
use mynalink_link::statement::{format_time, Statement, TermsRef, PURPOSE, VERSION};
use mynalink_link::trust::TrustStore;
use mynalink_server::scratch::{Backend, ScratchDatabase};
use mynalink_server::store::{holding_str, postgres_client, state_str, LicenseRecord, Store};
use mynalink_server::{submit, Outcome, SubmissionConfig};
use mynalink_simcard::der;
use mynalink_simcard::{test_identity, Validity};
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

pub const TERMINAL: &str = "tokyo-fuchu-counter-03";
pub const HOLDER_NAME_RECORD: &str = "試験 花子";
pub const HOLDER_BIRTH_RECORD: &str = "1990-01-02";

/// A valid license number (Tokyo, 2015) with the given six-digit serial.
pub fn license(serial: u32) -> String {
    let first_ten = format!("3015{serial:06}");
    let mut digits = [0u8; 10];
    for (d, b) in digits.iter_mut().zip(first_ten.bytes()) {
        *d = b - b'0';
    }
    let check = mynalink_link::license::expected_check_digit(&digits);
    format!("{first_ten}{check}0")
}

pub struct Bench {
    pub store: Store,
    pub config: SubmissionConfig,
    pub now: OffsetDateTime,
    /// Dropped last: the database goes away after the connection.
    pub database: ScratchDatabase,
}

impl Bench {
    pub fn new(backend: Backend) -> Bench {
        let database = ScratchDatabase::create(backend).expect("scratch database");
        let store = Store::open_url(database.url()).expect("open store");
        let mut trust = TrustStore::new();
        trust
            .add_trust_anchor(mynalink_simcard::sign_test_root_der())
            .expect("test root");
        let now = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .expect("whole seconds");
        let mut config = SubmissionConfig::new(trust);
        config.basic4_key = Some(mynalink_server::basic4_key::Basic4Key::generate());
        Bench {
            store,
            config,
            now,
            database,
        }
    }

    /// A connection of its own to the same database.
    pub fn open_again(&self) -> Store {
        Store::open_url(self.database.url()).expect("another connection")
    }

    /// Adds (or replaces) a license record of the simulated holder.
    pub fn record(&mut self, number: &str, holding: Holding, state: LicenseState) {
        self.record_named(
            number,
            holding,
            state,
            HOLDER_NAME_RECORD,
            HOLDER_BIRTH_RECORD,
        );
    }

    pub fn record_named(
        &mut self,
        number: &str,
        holding: Holding,
        state: LicenseState,
        name: &str,
        birth_date: &str,
    ) {
        let now = format_time(self.now);
        self.store
            .upsert_licenses(
                &[LicenseRecord {
                    license_number: number.to_string(),
                    holding,
                    name: name.to_string(),
                    birth_date: birth_date.to_string(),
                    state,
                }],
                &now,
            )
            .expect("upsert");
    }

    pub fn submit(&mut self, request: &BindingRequest) -> Outcome {
        self.submit_from(request, TERMINAL)
    }

    pub fn submit_from(&mut self, request: &BindingRequest, terminal: &str) -> Outcome {
        submit(&mut self.store, &self.config, request, terminal, self.now).expect("store works")
    }

    /// Every row of every table (`license_records` only when asked), as text.
    pub fn dump_tables(&self, include_license_records: bool) -> String {
        dump_tables(&self.database, include_license_records)
    }

    /// The single integer a query returns (`SELECT COUNT(*) …`).
    pub fn count(&self, sql: &str) -> i64 {
        count(&self.database, sql)
    }
}

/// Every row of every table of a database (`license_records` only when asked), as text, read
/// with a connection of its own.
pub fn dump_tables(database: &ScratchDatabase, include_license_records: bool) -> String {
    let mut out = String::new();
    match database.sqlite_path() {
        Some(path) => {
            let conn = rusqlite::Connection::open(path).expect("open dump");
            let mut tables: Vec<String> = conn
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
                .expect("tables")
                .query_map([], |r| r.get(0))
                .expect("query")
                .collect::<Result<_, _>>()
                .expect("names");
            tables.sort();
            for table in tables {
                if table == "license_records" && !include_license_records {
                    continue;
                }
                let mut stmt = conn
                    .prepare(&format!("SELECT * FROM \"{table}\""))
                    .expect("select");
                let columns = stmt.column_count();
                let mut rows = stmt.query([]).expect("rows");
                while let Some(row) = rows.next().expect("row") {
                    out.push_str(&table);
                    for i in 0..columns {
                        let value: rusqlite::types::Value = row.get(i).expect("value");
                        out.push_str(&format!(" | {value:?}"));
                    }
                    out.push('\n');
                }
            }
        }
        None => {
            let mut client = postgres_client(database.url()).expect("connect for the dump");
            let mut tables: Vec<String> = client
                .query(
                    "SELECT table_name::text FROM information_schema.tables
                     WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
                    &[],
                )
                .expect("tables")
                .iter()
                .map(|r| r.get(0))
                .collect();
            assert!(tables.contains(&"bindings".to_string()), "{tables:?}");
            tables.sort();
            for table in tables {
                if table == "license_records" && !include_license_records {
                    continue;
                }
                // Each row as PostgreSQL writes a row value: every column as text.
                for row in client
                    .query(&format!("SELECT t::text FROM \"{table}\" t"), &[])
                    .expect("select")
                {
                    let text: String = row.get(0);
                    out.push_str(&format!("{table} | {text}\n"));
                }
            }
        }
    }
    out
}

/// The single integer a query returns, read with a connection of its own.
pub fn count(database: &ScratchDatabase, sql: &str) -> i64 {
    match database.sqlite_path() {
        Some(path) => {
            let conn = rusqlite::Connection::open(path).expect("open");
            conn.query_row(sql, [], |r| r.get(0)).expect("count")
        }
        None => {
            let mut client = postgres_client(database.url()).expect("connect");
            client.query_one(sql, &[]).expect("count").get(0)
        }
    }
}

/// A signer: certificate and key.
pub struct Signer {
    pub cert_der: Vec<u8>,
    pub key: RsaPrivateKey,
}

pub fn sim_signer(validity: Validity) -> Signer {
    let id = test_identity(validity);
    Signer {
        cert_der: id.sign_cert_der.clone(),
        key: id.sign_key.rsa().expect("RSA identity").clone(),
    }
}

pub fn statement_for(
    signer: &Signer,
    license: &str,
    terminal: &str,
    time: OffsetDateTime,
) -> Statement {
    let cert = SigningCertificate::parse_any(&signer.cert_der).expect("cert");
    let nonce: [u8; 16] = rand::random();
    Statement {
        purpose: PURPOSE.into(),
        version: VERSION,
        license_number: license.into(),
        certificate_sha256: hex::encode(cert.sha256()),
        certificate_serial: cert.serial_hex(),
        issuer_key_id: cert.authority_key_id().map(hex::encode),
        terminal_id: terminal.into(),
        operator_id: Some("staff-0042".into()),
        nonce: hex::encode(nonce),
        time: format_time(time),
        terms: Some(TermsRef {
            version: "2025-03".into(),
            sha256: "cd".repeat(32),
        }),
    }
}

pub fn sign(key: &RsaPrivateKey, bytes: &[u8]) -> Vec<u8> {
    let digest = Sha256::digest(bytes);
    key.sign(Pkcs1v15Sign::new::<Sha256>(), &digest)
        .expect("sign")
}

pub fn request_for_bytes(signer: &Signer, bytes: &[u8]) -> BindingRequest {
    BindingRequest {
        statement: BASE64.encode(bytes),
        signature: BASE64.encode(sign(&signer.key, bytes)),
        certificate: Some(BASE64.encode(&signer.cert_der)),
        sealed_certificate: None,
        ca_certificate: None,
        staff_confirmed_identity: false,
    }
}

pub fn request_for(signer: &Signer, statement: &Statement) -> BindingRequest {
    request_for_bytes(signer, &statement.canonical_bytes())
}

/// A fresh, correctly signed request from the simulated card.
pub fn good_request(bench: &Bench, license: &str) -> BindingRequest {
    let signer = sim_signer(Validity::Current);
    let statement = statement_for(&signer, license, TERMINAL, bench.now - Duration::minutes(1));
    request_for(&signer, &statement)
}

pub fn holding_name(h: Holding) -> &'static str {
    holding_str(h)
}

pub fn state_name(s: LicenseState) -> &'static str {
    state_str(s)
}

// ---------------------------------------------------------------------------------------
// A second test CA for certificates the simulated card does not have (substitute
// characters in the name). Root and end entity share the simulated card's signing key,
// which keeps the test free of key generation.

fn key_id(key: &rsa::RsaPublicKey) -> Vec<u8> {
    use rsa::traits::PublicKeyParts;
    Sha256::digest(key.n().to_bytes_be())[..20].to_vec()
}

fn oid(arcs: &[u64]) -> Vec<u8> {
    der::oid(arcs).expect("oid")
}

fn extension(id: &[u64], critical: bool, value: &[u8]) -> Vec<u8> {
    let value = der::octet_string(value);
    if critical {
        der::sequence(&[&oid(id), &der::boolean(true), &value])
    } else {
        der::sequence(&[&oid(id), &value])
    }
}

fn dn(cn: &str) -> Vec<u8> {
    let country = der::sequence(&[
        &oid(&[2, 5, 4, 6]),
        &der::printable_string("JP").expect("ps"),
    ]);
    let common = der::sequence(&[&oid(&[2, 5, 4, 3]), &der::utf8_string(cn)]);
    der::sequence(&[&der::set_of(&[&country]), &der::set_of(&[&common])])
}

fn certificate(
    serial: &[u8],
    issuer: &[u8],
    subject: &[u8],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    key: &RsaPrivateKey,
    extensions: &[Vec<u8>],
) -> Vec<u8> {
    use rsa::traits::PublicKeyParts;
    let algorithm = der::sequence(&[&oid(&[1, 2, 840, 113549, 1, 1, 11]), &der::null()]);
    let public = key.to_public_key();
    let rsa_key = der::sequence(&[
        &der::integer_unsigned(&public.n().to_bytes_be()),
        &der::integer_unsigned(&public.e().to_bytes_be()),
    ]);
    let spki = der::sequence(&[
        &der::sequence(&[&oid(&[1, 2, 840, 113549, 1, 1, 1]), &der::null()]),
        &der::bit_string(&rsa_key, 0).expect("bits"),
    ]);
    let validity = der::sequence(&[
        &der::x509_time(not_before).expect("time"),
        &der::x509_time(not_after).expect("time"),
    ]);
    let ext_parts: Vec<&[u8]> = extensions.iter().map(Vec::as_slice).collect();
    let tbs = der::sequence(&[
        &der::explicit(0, &der::integer_u64(2)).expect("v3"),
        &der::integer_unsigned(serial),
        &algorithm,
        issuer,
        &validity,
        subject,
        &spki,
        &der::explicit(3, &der::sequence(&ext_parts)).expect("ext"),
    ]);
    let signature = sign(key, &tbs);
    der::sequence(&[
        &tbs,
        &algorithm,
        &der::bit_string(&signature, 0).expect("sig"),
    ])
}

/// A CA (root DER) and a signing certificate for a holder with the given basic-4 strings.
pub fn custom_signer(name: &str, name_flags: &str, birth: &str) -> (Vec<u8>, Signer) {
    custom_signer_at(
        name,
        name_flags,
        birth,
        "東京都千代田区試験町一丁目２番３号",
    )
}

/// [`custom_signer`] for a holder at the given address.
pub fn custom_signer_at(
    name: &str,
    name_flags: &str,
    birth: &str,
    address: &str,
) -> (Vec<u8>, Signer) {
    signer_with(name, name_flags, birth, address, None)
}

/// What is wrong with a crafted holder's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndEntityFault {
    /// basicConstraints cA = TRUE.
    Ca,
    /// keyUsage keyEncipherment only.
    NoSigningUsage,
    /// A critical extension nobody defined.
    UnknownCriticalExtension,
    /// Issued (signed) by the root, but naming another issuer.
    OtherIssuerName,
}

/// A root and a holder's certificate with `fault` (or none), for a holder who otherwise
/// matches [`custom_signer`]'s defaults.
pub fn faulty_signer(name: &str, birth: &str, fault: Option<EndEntityFault>) -> (Vec<u8>, Signer) {
    signer_with(
        name,
        "00000",
        birth,
        "東京都千代田区試験町一丁目２番３号",
        fault,
    )
}

fn signer_with(
    name: &str,
    name_flags: &str,
    birth: &str,
    address: &str,
    fault: Option<EndEntityFault>,
) -> (Vec<u8>, Signer) {
    let key = test_identity(Validity::Current)
        .sign_key
        .rsa()
        .expect("RSA identity")
        .clone();
    let public = key.to_public_key();
    let ski = key_id(&public);
    let root_dn = dn("mynalink second test CA");
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("now");
    let root = certificate(
        &[0x11],
        &root_dn,
        &root_dn,
        now - Duration::days(365),
        now + Duration::days(3650),
        &key,
        &[
            extension(
                &[2, 5, 29, 19],
                true,
                &der::sequence(&[&der::boolean(true)]),
            ),
            extension(&[2, 5, 29, 15], true, &der::named_bits(&[5, 6])),
            extension(&[2, 5, 29, 14], false, &der::octet_string(&ski)),
        ],
    );
    let other_name = |arc: u64, value: &str| {
        der::implicit_constructed(
            0,
            &[
                &oid(&[1, 2, 392, 200149, 8, 5, 5, arc]),
                &der::explicit(0, &der::utf8_string(value)).expect("explicit"),
            ],
        )
        .expect("other name")
    };
    let names = [
        other_name(1, name),
        other_name(4, birth),
        other_name(3, "2"),
        other_name(5, address),
        other_name(2, name_flags),
        other_name(6, &"0".repeat(17)),
    ];
    let parts: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
    let san = der::sequence(&parts);
    let aki = der::sequence(&[&der::implicit_primitive(0, &ski).expect("aki")]);
    let key_usage = match fault {
        Some(EndEntityFault::NoSigningUsage) => der::named_bits(&[2]),
        _ => der::named_bits(&[0, 1]),
    };
    let mut extensions = vec![
        extension(&[2, 5, 29, 15], true, &key_usage),
        extension(&[2, 5, 29, 17], false, &san),
        extension(&[2, 5, 29, 35], false, &aki),
    ];
    match fault {
        Some(EndEntityFault::Ca) => extensions.push(extension(
            &[2, 5, 29, 19],
            true,
            &der::sequence(&[&der::boolean(true)]),
        )),
        Some(EndEntityFault::UnknownCriticalExtension) => extensions.push(extension(
            &[1, 3, 6, 1, 4, 1, 55555, 1],
            true,
            &der::utf8_string("x"),
        )),
        _ => {}
    }
    let issuer_dn = match fault {
        Some(EndEntityFault::OtherIssuerName) => dn("mynalink some other CA"),
        _ => root_dn.clone(),
    };
    let ee = certificate(
        &[0x5E, 0x01, 0x02],
        &issuer_dn,
        &dn("mynalink custom holder"),
        now - Duration::days(30),
        now + Duration::days(1000),
        &key,
        &extensions,
    );
    (root, Signer { cert_der: ee, key })
}
