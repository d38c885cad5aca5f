//! Revocation: whether a holder's signing certificate has lost its effect. The law that
//! governs JPKI signatures requires a verifier to confirm this before relying on one; J-LIS
//! gives revocation data to registered verifiers as CRLs and through OCSP.
//!
//! Sources, any combination: OCSP responders (`--ocsp URL`, asked in the order given, see
//! [`ocsp`]) and CRLs (`--crl FILE_OR_URL`, see [`crl`]). The first definitive answer
//! (good or revoked) decides; an OCSP failure moves on to the next responder and then to the
//! CRLs of the certificate's CA. What happens when no source answers is the [`Mode`]:
//! `require` refuses for now (503 `revocation_unavailable`, the terminal delivers later),
//! `prefer` accepts and records the binding as unchecked, `off` never asks.
//!
//! The checks are network I/O: they run outside any database transaction, only for a
//! statement whose signature and chain verified ([`crate::submission`]).

pub mod crl;
pub mod fetch;
pub mod issuer;
pub mod ocsp;
pub mod options;
pub mod testing;

use std::sync::Arc;

use mynalink_link::trust::TrustStore;
use time::OffsetDateTime;
use x509_cert::ext::pkix::CrlReason;

pub use issuer::Issuer;
pub use options::RevocationOptions;

/// RFC 3339 UTC with whole seconds, as every stored time.
pub(crate) fn text(t: OffsetDateTime) -> String {
    mynalink_link::statement::format_time(t.replace_nanosecond(0).unwrap_or(t))
}

/// The body of a PEM block labelled `label`, or the bytes as they are (DER).
pub(crate) fn pem_or_der(bytes: &[u8], label: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let begin = format!("-----BEGIN {label}-----");
    let Some(start) = bytes
        .windows(begin.len())
        .position(|w| w == begin.as_bytes())
    else {
        if bytes.starts_with(b"-----BEGIN") {
            return Err(format!("PEM, but not {begin}"));
        }
        return Ok(bytes.to_vec());
    };
    let text = std::str::from_utf8(&bytes[start + begin.len()..])
        .map_err(|_| "PEM that is not text".to_string())?;
    let end = format!("-----END {label}-----");
    let body = text
        .split(&end)
        .next()
        .filter(|_| text.contains(&end))
        .ok_or_else(|| format!("no {end}"))?;
    let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| "PEM whose body is not base64".to_string())
}

/// `--revocation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A status that cannot be obtained refuses the submission for now (503).
    Require,
    /// A status that cannot be obtained is recorded as unchecked; the binding is stored.
    Prefer,
    /// Never checked (demos, tests that are not about revocation).
    Off,
}

impl Mode {
    pub fn parse(text: &str) -> Option<Mode> {
        match text {
            "require" => Some(Mode::Require),
            "prefer" => Some(Mode::Prefer),
            "off" => Some(Mode::Off),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Require => "require",
            Mode::Prefer => "prefer",
            Mode::Off => "off",
        }
    }
}

/// RFC 5280 §5.3.1 CRLReason, named as the RFC names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    CertificateHold,
    RemoveFromCrl,
    PrivilegeWithdrawn,
    AaCompromise,
}

impl Reason {
    pub const ALL: [Reason; 10] = [
        Reason::Unspecified,
        Reason::KeyCompromise,
        Reason::CaCompromise,
        Reason::AffiliationChanged,
        Reason::Superseded,
        Reason::CessationOfOperation,
        Reason::CertificateHold,
        Reason::RemoveFromCrl,
        Reason::PrivilegeWithdrawn,
        Reason::AaCompromise,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unspecified => "unspecified",
            Reason::KeyCompromise => "keyCompromise",
            Reason::CaCompromise => "cACompromise",
            Reason::AffiliationChanged => "affiliationChanged",
            Reason::Superseded => "superseded",
            Reason::CessationOfOperation => "cessationOfOperation",
            Reason::CertificateHold => "certificateHold",
            Reason::RemoveFromCrl => "removeFromCRL",
            Reason::PrivilegeWithdrawn => "privilegeWithdrawn",
            Reason::AaCompromise => "aACompromise",
        }
    }

    pub fn parse(text: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl From<CrlReason> for Reason {
    fn from(reason: CrlReason) -> Reason {
        match reason {
            CrlReason::Unspecified => Reason::Unspecified,
            CrlReason::KeyCompromise => Reason::KeyCompromise,
            CrlReason::CaCompromise => Reason::CaCompromise,
            CrlReason::AffiliationChanged => Reason::AffiliationChanged,
            CrlReason::Superseded => Reason::Superseded,
            CrlReason::CessationOfOperation => Reason::CessationOfOperation,
            CrlReason::CertificateHold => Reason::CertificateHold,
            CrlReason::RemoveFromCRL => Reason::RemoveFromCrl,
            CrlReason::PrivilegeWithdrawn => Reason::PrivilegeWithdrawn,
            CrlReason::AaCompromise => Reason::AaCompromise,
        }
    }
}

/// Why a source gave no usable answer; the snake_case name is the stable
/// `revocation_problem` of a 503 `revocation_unavailable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// No connection, or no answer in time.
    ResponderUnreachable,
    /// The responder answered with an error (HTTP, or an OCSP status such as tryLater).
    ResponderError,
    /// Not a well-formed OCSP response.
    ResponseInvalid,
    /// About another certificate than the one asked for.
    ResponseForAnotherCertificate,
    /// Out of date (nextUpdate passed) or dated ahead of the clock.
    ResponseStale,
    /// Not signed by the certificate's CA or a responder it certified.
    ResponseSignerUntrusted,
    /// Another request's nonce: a replay.
    NonceMismatch,
    /// The responder does not know the certificate (`unknown`).
    CertificateUnknown,
    /// A configured CRL could not be loaded or did not verify.
    CrlInvalid,
    /// The CA's CRL is past its nextUpdate.
    CrlStale,
    /// No source covers the certificate's CA.
    NoSource,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::ResponderUnreachable => "responder_unreachable",
            ProblemKind::ResponderError => "responder_error",
            ProblemKind::ResponseInvalid => "response_invalid",
            ProblemKind::ResponseForAnotherCertificate => "response_for_another_certificate",
            ProblemKind::ResponseStale => "response_stale",
            ProblemKind::ResponseSignerUntrusted => "response_signer_untrusted",
            ProblemKind::NonceMismatch => "nonce_mismatch",
            ProblemKind::CertificateUnknown => "certificate_unknown",
            ProblemKind::CrlInvalid => "crl_invalid",
            ProblemKind::CrlStale => "crl_stale",
            ProblemKind::NoSource => "no_source",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    /// `ocsp URL` or `crl FILE_OR_URL`.
    pub source: String,
    pub detail: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.source,
            self.kind.as_str(),
            self.detail
        )
    }
}

/// A revocation as a source reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    pub at: OffsetDateTime,
    pub reason: Option<Reason>,
    pub source: String,
}

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    Good {
        source: String,
    },
    Revoked(Revoked),
    Unavailable(Vec<Problem>),
    /// `--revocation off`: not asked.
    Off,
}

impl Finding {
    /// The `result` label of `mynalink_revocation_checks_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Finding::Good { .. } => "good",
            Finding::Revoked(_) => "revoked",
            Finding::Unavailable(_) => "unavailable",
            Finding::Off => "off",
        }
    }
}

struct Inner {
    mode: Mode,
    responders: Vec<ocsp::Responder>,
    signers: Vec<Vec<u8>>,
    crls: crl::CrlSet,
    issuers: Vec<Arc<Issuer>>,
}

/// The configured sources and mode; cheap to clone.
#[derive(Clone)]
pub struct Revocation {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Revocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Default for Revocation {
    fn default() -> Self {
        Revocation::off()
    }
}

impl Revocation {
    /// Never checks (what tests that are not about revocation and the demo use).
    pub fn off() -> Revocation {
        Revocation {
            inner: Arc::new(Inner {
                mode: Mode::Off,
                responders: Vec::new(),
                signers: Vec::new(),
                crls: crl::CrlSet::default(),
                issuers: Vec::new(),
            }),
        }
    }

    /// Builds the sources from the options and loads the CRLs once. A CRL file that cannot
    /// be read or does not verify is a configuration error; a CRL URL that cannot be
    /// fetched is reported (`warnings`) and tried again at each refresh.
    pub async fn configure(
        options: &RevocationOptions,
        trust: &TrustStore,
        warnings: &mut Vec<String>,
    ) -> Result<Revocation, String> {
        let mode = options.resolved_mode()?;
        let mut issuers = Vec::new();
        for anchor in trust.anchors() {
            issuers.push(Arc::new(Issuer::from_der(anchor.der())?));
        }
        let mut signers = Vec::new();
        for path in &options.ocsp_signers {
            let bytes = std::fs::read(path)
                .map_err(|e| format!("--ocsp-signer {}: {e}", path.display()))?;
            signers.push(
                ocsp::read_signer(&bytes)
                    .map_err(|e| format!("--ocsp-signer {}: {e}", path.display()))?,
            );
        }
        let responders = options
            .ocsp
            .iter()
            .map(|url| {
                fetch::HttpUrl::parse(url)
                    .map(|url| ocsp::Responder { url })
                    .map_err(|e| format!("--ocsp {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let locations = options
            .crls
            .iter()
            .map(|text| crl::Location::parse(text).map_err(|e| format!("--crl {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let crls = crl::CrlSet::new(locations.clone());
        for (result, location) in crls.refresh(&issuers).await.into_iter().zip(&locations) {
            match (result, location) {
                (Ok(_), _) => {}
                (Err(e), crl::Location::File(_)) => return Err(e),
                (Err(e), crl::Location::Url(_)) => warnings.push(e),
            }
        }
        Ok(Revocation {
            inner: Arc::new(Inner {
                mode,
                responders,
                signers,
                crls,
                issuers,
            }),
        })
    }

    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    pub fn is_off(&self) -> bool {
        self.inner.mode == Mode::Off
    }

    /// Whether certificates are checked for revocation at all (`require` or `prefer` with
    /// at least one source); false only under `--revocation off`. For `/readyz`.
    pub fn is_configured(&self) -> bool {
        !self.is_off()
    }

    /// One line for the start-up log and `/readyz`.
    pub fn describe(&self) -> String {
        if self.is_off() {
            return "revocation checking is OFF (--revocation off): certificates are not \
                    checked for revocation"
                .into();
        }
        let mut sources: Vec<String> = self
            .inner
            .responders
            .iter()
            .map(|r| format!("ocsp {}", r.url))
            .collect();
        sources.extend(self.inner.crls.locations().iter().map(ToString::to_string));
        format!(
            "revocation checking: {} ({})",
            self.inner.mode.as_str(),
            sources.join(", ")
        )
    }

    /// The configured CA with this certificate fingerprint, else the CA certificate given
    /// (one read from the card).
    pub fn issuer(&self, sha256: &[u8; 32], der: Option<&[u8]>) -> Result<Arc<Issuer>, String> {
        if let Some(issuer) = self.inner.issuers.iter().find(|i| i.sha256 == *sha256) {
            return Ok(Arc::clone(issuer));
        }
        der.ok_or_else(|| "the issuing CA certificate is not known".to_string())
            .and_then(Issuer::from_der)
            .map(Arc::new)
    }

    /// The configured CA whose subjectKeyIdentifier is `key_id` (a stored binding names its
    /// issuer so).
    pub fn issuer_by_key_id(&self, key_id: &[u8]) -> Option<Arc<Issuer>> {
        self.inner
            .issuers
            .iter()
            .find(|i| i.subject_key_id.as_deref() == Some(key_id))
            .cloned()
    }

    /// The status of certificate `serial` (its magnitude) of `issuer`.
    pub async fn check(&self, issuer: &Issuer, serial: &[u8], now: OffsetDateTime) -> Finding {
        if self.is_off() {
            return Finding::Off;
        }
        let finding = self.ask_sources(issuer, serial, now).await;
        crate::metrics::record_revocation_check(finding.label());
        finding
    }

    async fn ask_sources(&self, issuer: &Issuer, serial: &[u8], now: OffsetDateTime) -> Finding {
        let mut problems = Vec::new();
        for responder in &self.inner.responders {
            match responder
                .ask(issuer, serial, &self.inner.signers, now)
                .await
            {
                Ok(ocsp::Answer::Good) => {
                    return Finding::Good {
                        source: format!("ocsp {}", responder.url),
                    }
                }
                Ok(ocsp::Answer::Revoked { at, reason }) => {
                    return Finding::Revoked(Revoked {
                        at,
                        reason,
                        source: format!("ocsp {}", responder.url),
                    })
                }
                Err(problem) => problems.push(problem),
            }
        }
        match self
            .inner
            .crls
            .check(&issuer.sha256, serial, now, &mut problems)
        {
            Some((source, None)) => return Finding::Good { source },
            Some((source, Some(entry))) => {
                return Finding::Revoked(Revoked {
                    at: entry.at,
                    reason: entry.reason,
                    source,
                })
            }
            None => {}
        }
        if problems.is_empty() {
            problems.push(Problem {
                kind: ProblemKind::NoSource,
                source: "revocation".into(),
                detail: "no OCSP responder is configured and no CRL covers the certificate's CA"
                    .into(),
            });
        }
        Finding::Unavailable(problems)
    }

    /// [`Revocation::check`] from blocking code (a thread that is not one of tokio's
    /// workers): on the caller's runtime if it has one, else on one made for the call.
    pub fn check_blocking(&self, issuer: &Issuer, serial: &[u8], now: OffsetDateTime) -> Finding {
        if self.is_off() {
            return Finding::Off;
        }
        let future = self.check(issuer, serial, now);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle.block_on(future),
            Err(_) => match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(future),
                Err(e) => Finding::Unavailable(vec![Problem {
                    kind: ProblemKind::ResponderUnreachable,
                    source: "revocation".into(),
                    detail: format!("cannot start a runtime for the check: {e}"),
                }]),
            },
        }
    }

    /// Loads the CRLs again (timer, SIGHUP); one line per CRL.
    pub async fn refresh_crls(&self) -> Vec<Result<String, String>> {
        self.inner.crls.refresh(&self.inner.issuers).await
    }

    pub fn has_crls(&self) -> bool {
        !self.inner.crls.is_empty()
    }

    /// For `/readyz`: whether every CRL is usable, and one line per source.
    pub fn readiness(&self, now: OffsetDateTime) -> (bool, Vec<String>) {
        let mut ready = true;
        let mut lines = vec![self.describe()];
        for (source, usable, state) in self.inner.crls.states(now) {
            ready &= usable;
            lines.push(format!("{source}: {state}"));
        }
        (ready, lines)
    }
}
