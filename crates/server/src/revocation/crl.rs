//! CRLs (RFC 5280 §5) from files or `http://` URLs: each is verified against the configured
//! CA that issued it (its name and its signature: the J-LIS generations share one name, so
//! the key decides), kept as an index of revoked serials, and refreshed on a timer and on
//! SIGHUP. A refresh that fails keeps the CRL loaded before, which still answers until its
//! `nextUpdate`; after that the issuer's status cannot be obtained from it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};
use time::OffsetDateTime;
use x509_cert::crl::CertificateList;
use x509_cert::ext::pkix::CrlReason;

use super::fetch::{fetch, HttpUrl};
use super::issuer::{unix, Issuer, Signed};
use super::ocsp::CLOCK_SKEW;
use super::{Problem, ProblemKind, Reason};

/// How long fetching a CRL may take.
const CRL_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest CRL read (the JPKI signing CA's full CRL is tens of megabytes).
const MAX_CRL: usize = 512 * 1024 * 1024;
/// A CRL without `nextUpdate` is used this long after its `thisUpdate`.
pub const MAX_AGE_WITHOUT_NEXT_UPDATE: time::Duration = time::Duration::hours(24);
const CRL_REASON: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.21");
const INVALIDITY_DATE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.24");
/// CRL extensions that may be critical without changing what a full CRL means.
const CRL_NUMBER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.20");
const AUTHORITY_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.35");

/// Where a CRL comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    File(PathBuf),
    Url(HttpUrl),
}

impl Location {
    pub fn parse(text: &str) -> Result<Location, String> {
        if text.contains("://") {
            HttpUrl::parse(text).map(Location::Url)
        } else {
            Ok(Location::File(PathBuf::from(text)))
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(path) => write!(f, "crl {}", path.display()),
            Location::Url(url) => write!(f, "crl {url}"),
        }
    }
}

/// A revoked certificate as the CRL lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub at: OffsetDateTime,
    pub reason: Option<Reason>,
}

/// A verified CRL.
#[derive(Debug)]
pub struct Loaded {
    /// The issuing CA (SHA-256 of its certificate).
    pub issuer_sha256: [u8; 32],
    pub this_update: OffsetDateTime,
    pub next_update: Option<OffsetDateTime>,
    /// Serial magnitude (no leading zero bytes) → entry.
    revoked: HashMap<Vec<u8>, Entry>,
}

impl Loaded {
    pub fn len(&self) -> usize {
        self.revoked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty()
    }

    /// Until when it may be used.
    pub fn usable_until(&self) -> OffsetDateTime {
        self.next_update
            .unwrap_or(self.this_update + MAX_AGE_WITHOUT_NEXT_UPDATE)
    }

    pub fn lookup(&self, serial: &[u8]) -> Option<Entry> {
        self.revoked.get(magnitude(serial)).copied()
    }
}

fn magnitude(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// Parses and verifies a CRL (PEM or DER) against the issuers.
pub fn parse(bytes: &[u8], issuers: &[Arc<Issuer>]) -> Result<Loaded, String> {
    let der = super::pem_or_der(bytes, "X509 CRL")?;
    let signed = Signed::from_der(&der).map_err(|e| format!("not a CRL: {e}"))?;
    let crl = CertificateList::from_der(&der).map_err(|e| format!("not a CRL: {e}"))?;
    let tbs = &crl.tbs_cert_list;
    let name = tbs.issuer.to_der().map_err(|e| e.to_string())?;
    let named: Vec<&Arc<Issuer>> = issuers.iter().filter(|i| i.subject_der == name).collect();
    if named.is_empty() {
        return Err(
            "does not verify: no configured CA (--trust-anchor) has the CRL's issuer name".into(),
        );
    }
    let issuer = named
        .into_iter()
        .find(|i| signed.verified_by(i.key()))
        .ok_or("does not verify: its signature is not by the CA that has its issuer name")?;
    if let Some(unknown) = tbs
        .crl_extensions
        .iter()
        .flatten()
        .find(|e| e.critical && e.extn_id != CRL_NUMBER && e.extn_id != AUTHORITY_KEY_ID)
    {
        return Err(format!(
            "has the critical extension {} (a delta or partial CRL?), which this server does \
             not handle; give a full CRL",
            unknown.extn_id
        ));
    }
    let mut revoked = HashMap::new();
    for entry in tbs.revoked_certificates.iter().flatten() {
        let mut reason = None;
        for extension in entry.crl_entry_extensions.iter().flatten() {
            if extension.extn_id == CRL_REASON {
                reason = CrlReason::from_der(extension.extn_value.as_bytes())
                    .ok()
                    .map(Reason::from);
            } else if extension.critical && extension.extn_id != INVALIDITY_DATE {
                return Err(format!(
                    "an entry has the critical extension {} (an indirect CRL?), which this \
                     server does not handle",
                    extension.extn_id
                ));
            }
        }
        // removeFromCRL belongs to delta CRLs: the certificate is not revoked.
        if reason == Some(Reason::RemoveFromCrl) {
            continue;
        }
        revoked.insert(
            magnitude(entry.serial_number.as_bytes()).to_vec(),
            Entry {
                at: unix(entry.revocation_date.to_unix_duration()),
                reason,
            },
        );
    }
    Ok(Loaded {
        issuer_sha256: issuer.sha256,
        this_update: unix(tbs.this_update.to_unix_duration()),
        next_update: tbs.next_update.map(|t| unix(t.to_unix_duration())),
        revoked,
    })
}

/// One `--crl` source: the CRL loaded last, and why the last load failed (if it did).
#[derive(Debug)]
struct Slot {
    location: Location,
    loaded: Option<Arc<Loaded>>,
    error: Option<String>,
}

/// Every configured CRL.
#[derive(Debug, Default)]
pub struct CrlSet {
    slots: RwLock<Vec<Slot>>,
}

/// Reads or fetches a CRL's bytes.
async fn read(location: &Location) -> Result<Vec<u8>, String> {
    match location {
        Location::File(path) => tokio::fs::read(path)
            .await
            .map_err(|e| format!("cannot read: {e}")),
        Location::Url(url) => fetch(url, None, "application/pkix-crl", MAX_CRL, CRL_TIMEOUT)
            .await
            .map_err(|e| format!("cannot fetch: {e}")),
    }
}

impl CrlSet {
    pub fn new(locations: Vec<Location>) -> CrlSet {
        CrlSet {
            slots: RwLock::new(
                locations
                    .into_iter()
                    .map(|location| Slot {
                        location,
                        loaded: None,
                        error: Some("not loaded yet".into()),
                    })
                    .collect(),
            ),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.read_slots().is_empty()
    }

    fn read_slots(&self) -> std::sync::RwLockReadGuard<'_, Vec<Slot>> {
        self.slots
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn locations(&self) -> Vec<Location> {
        self.read_slots()
            .iter()
            .map(|s| s.location.clone())
            .collect()
    }

    /// Loads every CRL again; returns one line per CRL saying what happened. A CRL that
    /// fails keeps the one loaded before.
    pub async fn refresh(&self, issuers: &[Arc<Issuer>]) -> Vec<Result<String, String>> {
        let mut report = Vec::new();
        for (index, location) in self.locations().into_iter().enumerate() {
            let result = read(&location)
                .await
                .and_then(|bytes| parse(&bytes, issuers));
            let mut slots = self
                .slots
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let Some(slot) = slots.get_mut(index) else {
                continue;
            };
            match result {
                Ok(loaded) => {
                    report.push(Ok(format!(
                        "{location}: {} revoked, next update {}",
                        loaded.len(),
                        loaded
                            .next_update
                            .map_or_else(|| "not given".into(), super::text)
                    )));
                    slot.loaded = Some(Arc::new(loaded));
                    slot.error = None;
                }
                Err(e) => {
                    let kept = if slot.loaded.is_some() {
                        "; the CRL loaded before is kept"
                    } else {
                        ""
                    };
                    report.push(Err(format!("{location}: {e}{kept}")));
                    slot.error = Some(e);
                }
            }
        }
        report
    }

    /// The status of certificate `serial` of the CA `issuer_sha256` from the CRLs: `None`
    /// when no CRL covers that CA (problems of CRLs that failed are added to `problems`).
    pub fn check(
        &self,
        issuer_sha256: &[u8; 32],
        serial: &[u8],
        now: OffsetDateTime,
        problems: &mut Vec<Problem>,
    ) -> Option<(String, Option<Entry>)> {
        let slots = self.read_slots();
        for slot in slots.iter() {
            let source = slot.location.to_string();
            match &slot.loaded {
                Some(loaded) if loaded.issuer_sha256 == *issuer_sha256 => {
                    if now > loaded.usable_until() + CLOCK_SKEW {
                        problems.push(Problem {
                            kind: ProblemKind::CrlStale,
                            source,
                            detail: format!(
                                "its nextUpdate {} has passed{}",
                                super::text(loaded.usable_until()),
                                slot.error
                                    .as_deref()
                                    .map(|e| format!(" and the refresh failed: {e}"))
                                    .unwrap_or_default()
                            ),
                        });
                        continue;
                    }
                    return Some((source, loaded.lookup(serial)));
                }
                Some(_) => {}
                None => problems.push(Problem {
                    kind: ProblemKind::CrlInvalid,
                    source,
                    detail: slot.error.clone().unwrap_or_default(),
                }),
            }
        }
        None
    }

    /// Whether a CRL covers the CA (loaded, whatever its freshness).
    pub fn covers(&self, issuer_sha256: &[u8; 32]) -> bool {
        self.read_slots().iter().any(|s| {
            s.loaded
                .as_ref()
                .is_some_and(|l| l.issuer_sha256 == *issuer_sha256)
        })
    }

    /// One line per CRL for `/readyz`: its source and state.
    pub fn states(&self, now: OffsetDateTime) -> Vec<(String, bool, String)> {
        self.read_slots()
            .iter()
            .map(|slot| {
                let source = slot.location.to_string();
                match (&slot.loaded, &slot.error) {
                    (Some(l), _) if now <= l.usable_until() + CLOCK_SKEW => (
                        source,
                        true,
                        format!("usable until {}", super::text(l.usable_until())),
                    ),
                    (Some(l), _) => (
                        source,
                        false,
                        format!("stale since {}", super::text(l.usable_until())),
                    ),
                    (None, e) => (source, false, e.clone().unwrap_or_default()),
                }
            })
            .collect()
    }
}
