//! The first stage as explicit steps. The GUI drives it one step at a time; the headless
//! mode runs it straight through. Each step checks that the previous one succeeded.
//!
//! check_card → verify_password → read_certificate → sign → end

use std::time::Instant;

use mynalink_card::{
    CardError, CardProfile, JpkiCard, PasswordStatus, SignScheme, SignatureAlgorithm,
    SigningPassword, Transport,
};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::certificate::{Basic4, CertificateError, SigningCertificate, Validity};
use crate::error::{ErrorCode, FlowError};
use crate::statement::{format_time, Statement, TermsRef, PURPOSE, VERSION};
use crate::trust::{TrustStore, TrustedChain};

/// Certificates ending within this many days get a warning.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// Everything a run depends on besides the card and the password. A recorded trace keeps
/// these so that a replay rebuilds the same statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowInputs {
    pub license_number: String,
    pub time: String,
    pub nonce: String,
    pub terminal_id: String,
    #[serde(default)]
    pub operator_id: Option<String>,
    #[serde(default)]
    pub terms: Option<TermsRef>,
}

impl FlowInputs {
    /// Inputs for a live run: the current time and a fresh random nonce.
    pub fn fresh(
        license_number: &str,
        terminal_id: &str,
        operator_id: Option<&str>,
        terms: Option<TermsRef>,
    ) -> FlowInputs {
        let mut nonce = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut nonce);
        FlowInputs {
            license_number: license_number.into(),
            time: format_time(OffsetDateTime::now_utc()),
            nonce: hex::encode(nonce),
            terminal_id: terminal_id.into(),
            operator_id: operator_id.map(str::to_string),
            terms,
        }
    }

    pub fn to_trace_inputs(&self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        }
    }

    pub fn from_trace_inputs(
        map: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<FlowInputs, FlowError> {
        serde_json::from_value(serde_json::Value::Object(map.clone())).map_err(|e| {
            FlowError::new(ErrorCode::TraceInvalid).with_detail(format!("inputs: {e}"))
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Start,
    CardChecked,
    PasswordVerified,
    CertificateChecked,
    Signed,
    Ended,
}

/// Non-blocking findings the operator should see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Warning {
    CertificateExpiresSoon { days_left: i64 },
    LicenseCheckDigitDisputed,
}

impl Warning {
    pub fn message_ja(&self) -> String {
        match self {
            Warning::CertificateExpiresSoon { days_left } => format!(
                "署名用電子証明書の有効期限まであと{days_left}日です。市区町村の窓口で更新をご案内ください。"
            ),
            Warning::LicenseCheckDigitDisputed => {
                "免許証番号のチェックディジットは解釈が分かれる例外ケースです。免許記録と照合してください。".into()
            }
        }
    }

    pub fn message_en(&self) -> String {
        match self {
            Warning::CertificateExpiresSoon { days_left } => format!(
                "The signing certificate expires in {days_left} days; suggest renewal at the municipal office."
            ),
            Warning::LicenseCheckDigitDisputed => {
                "The license number's check digit is the disputed remainder-0 case; compare it with the license record.".into()
            }
        }
    }
}

/// Milliseconds spent in each card step (time waiting for a person is not counted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Timings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check_card: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_certificate: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sign: Option<u64>,
    pub total: u64,
}

/// The signed statement, ready for upload.
#[derive(Debug, Clone)]
pub struct SignedStatement {
    pub statement: Statement,
    pub bytes: Vec<u8>,
    pub signature: Vec<u8>,
    /// How the card signed (e.g. `rsa-pkcs1-sha256`, `ecdsa-sha384`).
    pub algorithm: SignatureAlgorithm,
    pub certificate_der: Vec<u8>,
}

pub struct FirstStage<T: Transport> {
    card: JpkiCard<T>,
    trust: TrustStore,
    inputs: FlowInputs,
    at: OffsetDateTime,
    step: Step,
    tries_before: Option<u8>,
    certificate: Option<SigningCertificate>,
    chain: Option<TrustedChain>,
    /// How the card will sign, from its profile and the certificate's key.
    scheme: Option<SignScheme>,
    signed: Option<SignedStatement>,
    timings: Timings,
    warnings: Vec<Warning>,
}

impl<T: Transport> FirstStage<T> {
    pub fn new(
        transport: T,
        inputs: FlowInputs,
        trust: TrustStore,
    ) -> Result<FirstStage<T>, FlowError> {
        let at =
            OffsetDateTime::parse(&inputs.time, &time::format_description::well_known::Rfc3339)
                .map_err(|e| {
                    FlowError::new(ErrorCode::InputUnavailable).with_detail(format!("time: {e}"))
                })?;
        Ok(FirstStage {
            card: JpkiCard::new(transport),
            trust,
            inputs,
            at,
            step: Step::Start,
            tries_before: None,
            certificate: None,
            chain: None,
            scheme: None,
            signed: None,
            timings: Timings::default(),
            warnings: Vec::new(),
        })
    }

    pub fn step(&self) -> Step {
        self.step
    }

    pub fn inputs(&self) -> &FlowInputs {
        &self.inputs
    }

    pub fn card(&self) -> &JpkiCard<T> {
        &self.card
    }

    pub fn transport(&self) -> &T {
        self.card.transport()
    }

    pub fn apdu_count(&self) -> usize {
        self.card.stats().apdus
    }

    pub fn tries_before(&self) -> Option<u8> {
        self.tries_before
    }

    pub fn timings(&self) -> &Timings {
        &self.timings
    }

    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    pub fn add_warning(&mut self, warning: Warning) {
        self.warnings.push(warning);
    }

    pub fn certificate(&self) -> Option<&SigningCertificate> {
        self.certificate.as_ref()
    }

    pub fn trusted_chain(&self) -> Option<&TrustedChain> {
        self.chain.as_ref()
    }

    pub fn signed(&self) -> Option<&SignedStatement> {
        self.signed.as_ref()
    }

    /// The card profile the card matched, once its certificate's key told which (for
    /// today's card `my-number-card`; the next-generation row is provisional).
    pub fn card_profile(&self) -> Option<&'static CardProfile> {
        self.scheme.map(|s| s.profile)
    }

    /// The algorithm the card signs (or signed) with, once the certificate is read.
    pub fn signature_algorithm(&self) -> Option<SignatureAlgorithm> {
        self.scheme.map(|s| s.algorithm())
    }

    /// The holder's basic-4 from the certificate, for staff to compare. Parsed on demand and
    /// never kept by the session.
    pub fn basic4(&self) -> Option<Result<Basic4, CertificateError>> {
        self.certificate.as_ref().map(SigningCertificate::basic4)
    }

    fn expect_step(&self, allowed: &[Step], action: &str) -> Result<(), FlowError> {
        if allowed.contains(&self.step) {
            Ok(())
        } else {
            Err(FlowError::new(ErrorCode::CardError)
                .with_detail(format!("{action} is not possible at step {:?}", self.step)))
        }
    }

    /// Runs one card step, adds its time to `slot` and logs it: the step's name, time, APDU
    /// count and result code. Nothing the card answered goes into the log.
    fn timed<R, E: Into<FlowError>>(
        &mut self,
        step: &'static str,
        slot: fn(&mut Timings) -> &mut Option<u64>,
        f: impl FnOnce(&mut Self) -> Result<R, E>,
    ) -> Result<R, FlowError> {
        let started = Instant::now();
        let apdus_before = self.apdu_count();
        let result = f(self).map_err(Into::into);
        let ms = started.elapsed().as_millis() as u64;
        *slot(&mut self.timings) = Some(slot(&mut self.timings).unwrap_or(0) + ms);
        self.timings.total += ms;
        let apdus = self.apdu_count().saturating_sub(apdus_before);
        match &result {
            Ok(_) => tracing::info!(target: "mynalink::card", step, ms, apdus, "card step done"),
            Err(e) => tracing::warn!(
                target: "mynalink::card",
                step,
                ms,
                apdus,
                code = e.code.as_str(),
                tries_left = e.tries_left,
                "card step failed"
            ),
        }
        result
    }

    /// Selects the JPKI application, checks the token and reads the signing-password tries.
    /// May be repeated (e.g. to show the count again after a wrong password).
    pub fn check_card(&mut self) -> Result<PasswordStatus, FlowError> {
        self.expect_step(&[Step::Start, Step::CardChecked], "checking the card")?;
        let first = self.step == Step::Start;
        let status = self.timed(
            "check_card",
            |t| &mut t.check_card,
            |s| -> Result<PasswordStatus, CardError> {
                if first {
                    s.card.open_application()?;
                }
                s.card.password_status()
            },
        )?;
        if self.tries_before.is_none() {
            self.tries_before = Some(match status {
                PasswordStatus::Tries(n) => n,
                _ => 0,
            });
        }
        match status {
            PasswordStatus::Blocked => return Err(CardError::PasswordBlocked.into()),
            PasswordStatus::NoSigningCertificate => {
                return Err(CardError::NoSigningCertificate.into())
            }
            PasswordStatus::Tries(_) | PasswordStatus::Unknown => {}
        }
        self.step = Step::CardChecked;
        Ok(status)
    }

    /// One VERIFY of the signing password (see `JpkiCard::verify_signing_password`).
    pub fn verify_password(
        &mut self,
        password: &SigningPassword,
        confirm_last_try: bool,
    ) -> Result<(), FlowError> {
        self.expect_step(&[Step::CardChecked], "verifying the password")?;
        self.timed(
            "verify_password",
            |t| &mut t.verify,
            |s| s.card.verify_signing_password(password, confirm_last_try),
        )?;
        self.step = Step::PasswordVerified;
        Ok(())
    }

    /// Reads the signing certificate, checks its validity at the flow's time and its chain
    /// to a trusted J-LIS root (reading the CA from the card only when none is configured).
    pub fn read_certificate(&mut self) -> Result<&SigningCertificate, FlowError> {
        self.expect_step(&[Step::PasswordVerified], "reading the certificate")?;
        let (certificate, chain, scheme) = self.timed(
            "read_certificate",
            |t| &mut t.read_certificate,
            |s| s.read_and_check_certificate(),
        )?;
        let days_left = certificate.days_left(self.at);
        if days_left <= EXPIRY_WARNING_DAYS {
            self.warnings
                .push(Warning::CertificateExpiresSoon { days_left });
        }
        self.chain = Some(chain);
        self.scheme = Some(scheme);
        self.step = Step::CertificateChecked;
        Ok(self.certificate.insert(certificate))
    }

    fn read_and_check_certificate(
        &mut self,
    ) -> Result<(SigningCertificate, TrustedChain, SignScheme), FlowError> {
        let der = self.card.read_signing_certificate()?;
        let certificate = SigningCertificate::parse(&der)?;
        // The key decides which of the card's profiles signs, and how.
        let scheme = self.card.sign_scheme(certificate.key_kind())?;
        match certificate.is_valid_at(self.at) {
            Validity::Valid => {}
            Validity::Expired => {
                return Err(
                    FlowError::new(ErrorCode::CertificateExpired).with_detail(format!(
                        "not after {}",
                        format_time(certificate.not_after())
                    )),
                )
            }
            Validity::NotYetValid => {
                return Err(
                    FlowError::new(ErrorCode::CertificateNotYetValid).with_detail(format!(
                        "not before {}",
                        format_time(certificate.not_before())
                    )),
                )
            }
        }
        let card_ca = if self.trust.has_issuer_for(&certificate) {
            None
        } else {
            Some(self.card.read_signing_ca_certificate()?)
        };
        let chain = self
            .trust
            .evaluate(&certificate, card_ca.as_deref(), self.at)?;
        Ok((certificate, chain, scheme))
    }

    /// Builds the statement, has the card sign it (SHA-256 and PKCS#1 v1.5 on today's card,
    /// as the card's profile says), and verifies the signature locally against the
    /// certificate with that algorithm before anything leaves the terminal.
    pub fn sign(&mut self) -> Result<&SignedStatement, FlowError> {
        self.expect_step(&[Step::CertificateChecked], "signing")?;
        let scheme = self
            .scheme
            .ok_or_else(|| FlowError::new(ErrorCode::CardError).with_detail("no signing scheme"))?;
        let certificate = self
            .certificate
            .take()
            .ok_or_else(|| FlowError::new(ErrorCode::CardError).with_detail("no certificate"))?;
        let statement = Statement {
            purpose: PURPOSE.into(),
            version: VERSION,
            license_number: self.inputs.license_number.clone(),
            certificate_sha256: hex::encode(certificate.sha256()),
            certificate_serial: certificate.serial_hex(),
            issuer_key_id: certificate.authority_key_id().map(hex::encode),
            terminal_id: self.inputs.terminal_id.clone(),
            operator_id: self.inputs.operator_id.clone(),
            nonce: self.inputs.nonce.clone(),
            time: self.inputs.time.clone(),
            terms: self.inputs.terms.clone(),
        };
        let bytes = statement.canonical_bytes();
        let algorithm = scheme.algorithm();
        let signed = self
            .timed("sign", |t| &mut t.sign, |s| s.card.sign(&scheme, &bytes))
            .and_then(|signature| {
                certificate
                    .verify_signature(algorithm, &bytes, &signature)
                    .map_err(|e| {
                        FlowError::new(ErrorCode::SignatureInvalid).with_detail(e.to_string())
                    })?;
                Ok(SignedStatement {
                    statement,
                    bytes,
                    signature,
                    algorithm,
                    certificate_der: certificate.der().to_vec(),
                })
            });
        self.certificate = Some(certificate);
        let signed = signed?;
        self.step = Step::Signed;
        Ok(self.signed.insert(signed))
    }

    /// Ends the card session (power-down), whatever step the flow reached.
    pub fn end(&mut self) {
        // A failure to power down cannot be acted on by the person at the counter; the
        // card is left anyway and the verified state ends with it.
        let _ = self.card.end_session();
        self.step = Step::Ended;
    }
}
