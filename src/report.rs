//! What a headless run prints: one JSON object with `--json`, readable lines otherwise.
//! Never the holder's name, address, birth date or sex.

use mynalink_card::CardProfile;
use mynalink_link::api::{ApiError, LinkedVia};
use mynalink_link::certificate::SigningCertificate;
use mynalink_link::statement::format_time;
use mynalink_link::{ErrorCode, FlowError, Timings, Warning};
use serde::Serialize;

/// A failure as printed: from this client (a [`FlowError`]) or the backend's decision
/// (an [`ApiError`] with the server's code).
#[derive(Debug, Serialize)]
pub struct ReportError {
    pub code: String,
    pub message_ja: String,
    pub message_en: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tries_left: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Set when the backend made the decision.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub from_backend: bool,
}

impl From<FlowError> for ReportError {
    fn from(e: FlowError) -> Self {
        ReportError {
            code: e.code.as_str().to_string(),
            message_ja: e.message_ja,
            message_en: e.message_en,
            tries_left: e.tries_left,
            detail: e.detail,
            from_backend: false,
        }
    }
}

impl From<ApiError> for ReportError {
    fn from(e: ApiError) -> Self {
        let (message_ja, message_en) = e.explanation();
        ReportError {
            code: e.code,
            message_ja,
            message_en,
            tries_left: None,
            detail: e.detail,
            from_backend: true,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct CertificateReport {
    pub serial_hex: String,
    pub serial_decimal: String,
    pub not_before: String,
    pub not_after: String,
    pub issuer: String,
    pub authority_key_id: Option<String>,
    pub sha256: String,
    /// The holder's key: `rsa-2048`, `rsa-3072`, `ec-p384`, …
    pub public_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust_anchor: Option<String>,
}

/// The card profile the card matched (`crates/card/src/profile.rs`).
#[derive(Debug, Serialize)]
pub struct CardProfileReport {
    pub id: &'static str,
    pub name_en: &'static str,
    /// Built on assumptions, not on a published specification (the next-generation card).
    pub provisional: bool,
}

impl From<&CardProfile> for CardProfileReport {
    fn from(profile: &CardProfile) -> Self {
        CardProfileReport {
            id: profile.id,
            name_en: profile.name_en,
            provisional: profile.provisional,
        }
    }
}

impl CertificateReport {
    pub fn new(certificate: &SigningCertificate, trust_anchor: Option<String>) -> Self {
        CertificateReport {
            serial_hex: certificate.serial_hex(),
            serial_decimal: certificate.serial_decimal(),
            not_before: format_time(certificate.not_before()),
            not_after: format_time(certificate.not_after()),
            issuer: certificate.issuer(),
            authority_key_id: certificate.authority_key_id().map(hex::encode),
            sha256: hex::encode(certificate.sha256()),
            public_key: certificate.key_kind().name(),
            trust_anchor,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct WarningReport {
    pub code: String,
    pub message_ja: String,
    pub message_en: String,
}

impl From<&Warning> for WarningReport {
    fn from(w: &Warning) -> Self {
        let code = serde_json::to_value(w)
            .ok()
            .and_then(|v| v.get("code").and_then(|c| c.as_str()).map(str::to_string))
            .unwrap_or_default();
        WarningReport {
            code,
            message_ja: w.message_ja(),
            message_en: w.message_en(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub outcome: &'static str,
    pub license_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reader: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reader_note: Option<String>,
    pub certificate: Option<CertificateReport>,
    /// How the card signs the statement (`rsa-pkcs1-sha256`, `ecdsa-sha384`), once the
    /// certificate's key told which profile the card follows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_algorithm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card_profile: Option<CardProfileReport>,
    pub pin_tries_before: Option<u8>,
    pub apdu_count: usize,
    pub timings_ms: Timings,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement_sha256: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<WarningReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binding_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub linked_via: Option<LinkedVia>,
    /// Why a binding waits in the outbox.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ReportError>,
}

impl Report {
    pub fn failed(license_number: Option<String>, error: FlowError) -> Report {
        Report {
            outcome: "failed",
            license_number,
            reader: None,
            reader_note: None,
            certificate: None,
            signature_algorithm: None,
            card_profile: None,
            pin_tries_before: None,
            apdu_count: 0,
            timings_ms: Timings::default(),
            statement_sha256: None,
            warnings: Vec::new(),
            trace: None,
            binding_id: None,
            linked_via: None,
            queued_reason: None,
            error: Some(error.into()),
        }
    }

    pub fn exit_code(&self) -> i32 {
        match &self.error {
            None => 0,
            Some(e) if e.code == ErrorCode::ConfigurationInvalid.as_str() => 2,
            Some(_) => 1,
        }
    }

    pub fn print(&self, json: bool) {
        if json {
            match serde_json::to_string(self) {
                Ok(text) => println!("{text}"),
                Err(e) => eprintln!("mynalink: cannot write the report: {e}"),
            }
            return;
        }
        self.print_human();
    }

    fn print_human(&self) {
        match &self.error {
            None => println!("結果 / outcome: {}", self.outcome),
            Some(e) => {
                eprintln!("エラー / error [{}]", e.code);
                eprintln!("  {}", e.message_ja);
                eprintln!("  {}", e.message_en);
                if let Some(detail) = &e.detail {
                    eprintln!("  ({detail})");
                }
            }
        }
        if let Some(id) = &self.binding_id {
            println!("連携ID / binding id: {id}");
        }
        if let Some(reason) = &self.queued_reason {
            println!("送信待ち / queued: {reason}");
        }
        if let Some(n) = &self.license_number {
            println!("免許証番号 / license number: {n}");
        }
        if let Some(note) = &self.reader_note {
            println!("リーダー / reader: {note}");
        }
        if let Some(tries) = self.pin_tries_before {
            println!("残り回数（開始時） / tries left before: {tries}");
        }
        if let Some(c) = &self.certificate {
            println!(
                "発行番号 / serial: {} (hex) / {} (decimal)",
                c.serial_hex, c.serial_decimal
            );
            println!("有効期間 / valid: {} – {}", c.not_before, c.not_after);
            println!("発行者 / issuer: {}", c.issuer);
            if let Some(anchor) = &c.trust_anchor {
                println!("信頼の起点 / trust anchor: {anchor}");
            }
            println!("SHA-256: {}", c.sha256);
            println!("鍵 / key: {}", c.public_key);
        }
        if let Some(algorithm) = &self.signature_algorithm {
            println!("署名方式 / signature algorithm: {algorithm}");
        }
        if let Some(profile) = &self.card_profile {
            let provisional = if profile.provisional {
                " — 暫定 / PROVISIONAL"
            } else {
                ""
            };
            println!(
                "カード / card profile: {} ({}){provisional}",
                profile.id, profile.name_en
            );
        }
        for w in &self.warnings {
            println!(
                "注意 / warning [{}]: {} / {}",
                w.code, w.message_ja, w.message_en
            );
        }
        println!("APDU: {}", self.apdu_count);
        if let Some(path) = &self.trace {
            println!("記録 / trace: {path}");
        }
    }
}
