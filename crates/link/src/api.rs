//! The backend API's request and response bodies, shared by the client and the reference
//! server, and the domain rules both need: who can link (§2(1) of the terms of use) and which
//! services a holder can then use (§2(2)).
//!
//! Endpoints (the OpenAPI document is `docs/openapi.json`):
//! - `POST /v1/bindings` — [`BindingRequest`] → 201/200 [`BindingAccepted`], 409/422 [`ApiError`]
//! - `GET /v1/licenses/{number}/status` — [`LicenseStatus`]
//! - `DELETE /v1/bindings/{id}` — cancellation (§6)
//! - `GET /healthz`, `GET /openapi.json`

use serde::{Deserialize, Serialize};

/// Everything the backend needs to check a first-stage submission. Binary fields are
/// standard base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingRequest {
    /// The canonical statement bytes the card signed.
    pub statement: String,
    /// RSASSA-PKCS1-v1_5 / SHA-256 signature over `statement`.
    pub signature: String,
    /// The signing certificate, DER. Exactly one of `certificate` and `sealed_certificate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// The signing certificate sealed to the backend's key ([`crate::seal::SealedBox`] JSON,
    /// associated data = SHA-256 of the statement bytes): how the terminal's outbox keeps
    /// it, since the certificate holds basic-4 information the terminal must not store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_certificate: Option<String>,
    /// The issuing CA certificate, DER, when the terminal read it from the card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<String>,
    /// Staff confirmed the holder's identity where the certificate uses substitute
    /// characters and an automatic name match is not possible.
    #[serde(default)]
    pub staff_confirmed_identity: bool,
}

/// 201 (created) or 200 (the same statement again: idempotent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingAccepted {
    pub binding_id: String,
    pub license_number: String,
    pub certificate_serial: String,
    pub linked_at: String,
}

/// How a license record got linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkedVia {
    /// First stage at the license center (this API).
    Counter,
    /// The address-change one-stop start procedure, which links as a side effect (§4).
    OneStop,
}

/// Every non-2xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable snake_case code, e.g. `already_linked`, `not_eligible`, `identity_mismatch`.
    pub code: String,
    pub message_ja: String,
    pub message_en: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// With `already_linked`: how the record was linked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linked_via: Option<LinkedVia>,
    /// With `certificate_revoked`: the RFC 5280 reason as the RFC names it (e.g.
    /// `affiliationChanged`), when the revocation data gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_reason: Option<String>,
    /// With `certificate_revoked`: when the certificate was revoked (RFC 3339 UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// With `revocation_unavailable`: why no revocation source answered, e.g.
    /// `responder_unreachable`, `response_stale`, `crl_invalid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_problem: Option<String>,
}

/// What the person holds (保有状況).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Holding {
    /// マイナ免許証のみ
    MynaOnly,
    /// マイナ免許証と免許証（2枚持ち）
    MynaAndCard,
    /// 免許証のみ
    CardOnly,
    /// マイナ経歴証明書のみ
    HistoryMynaOnly,
    /// マイナ経歴証明書と運転経歴証明書
    HistoryMynaAndCard,
    /// 運転経歴証明書のみ
    HistoryCardOnly,
}

impl ApiError {
    /// What to tell the person at the counter, in Japanese and English: the backend's
    /// message, except for a revoked certificate, which the client explains itself with the
    /// reason and date the backend gave (the holder must renew it at the municipal office
    /// before anything else can be done, and no retry can help).
    pub fn explanation(&self) -> (String, String) {
        if self.code != CERTIFICATE_REVOKED {
            return (self.message_ja.clone(), self.message_en.clone());
        }
        let date = self
            .revoked_at
            .as_deref()
            .and_then(|t| t.get(..10))
            .filter(|d| d.bytes().all(|b| b.is_ascii_digit() || b == b'-'));
        let (reason_ja, reason_en) = revocation_reason_text(self.revocation_reason.as_deref());
        let when_ja = date.map(|d| format!("{d}に")).unwrap_or_default();
        let when_en = date.map(|d| format!(" on {d}")).unwrap_or_default();
        (
            format!(
                "署名用電子証明書は{when_ja}失効しています（理由：{reason_ja}）。住所や氏名が変わると、                 署名用電子証明書は自動的に失効します。住民票のある市区町村の窓口で署名用電子証明書を                 更新（再発行）してから、もう一度お越しください。"
            ),
            format!(
                "The signing certificate was revoked{when_en} (reason: {reason_en}). It is \
                 revoked automatically when the holder moves or changes name. The holder renews \
                 it at the municipal office and then comes back."
            ),
        )
    }
}

/// The code of a refusal because the holder's signing certificate was revoked.
pub const CERTIFICATE_REVOKED: &str = "certificate_revoked";

/// An RFC 5280 CRLReason (as the RFC names it) in words.
fn revocation_reason_text(reason: Option<&str>) -> (&'static str, &'static str) {
    match reason {
        Some("affiliationChanged") => (
            "登録内容の変更（転居・氏名の変更など）",
            "registered details changed, e.g. a move or a new name",
        ),
        Some("superseded") => ("新しい証明書への更新", "replaced by a new certificate"),
        Some("cessationOfOperation") => ("利用の終了", "no longer in use"),
        Some("keyCompromise") => ("鍵の漏えいのおそれ", "the key may have been compromised"),
        Some("certificateHold") => ("一時停止", "suspended"),
        Some("privilegeWithdrawn") => ("資格の取消し", "privilege withdrawn"),
        Some("cACompromise") | Some("aACompromise") => (
            "認証局の鍵の漏えいのおそれ",
            "the authority's key may have been compromised",
        ),
        _ => ("記載なし", "not given"),
    }
}

impl Holding {
    pub const ALL: [Holding; 6] = [
        Holding::MynaOnly,
        Holding::MynaAndCard,
        Holding::CardOnly,
        Holding::HistoryMynaOnly,
        Holding::HistoryMynaAndCard,
        Holding::HistoryCardOnly,
    ];

    /// Holds a マイナ免許証.
    pub fn has_myna_license(self) -> bool {
        matches!(self, Holding::MynaOnly | Holding::MynaAndCard)
    }

    /// Holds a マイナ経歴証明書.
    pub fn has_myna_history(self) -> bool {
        matches!(self, Holding::HistoryMynaOnly | Holding::HistoryMynaAndCard)
    }

    /// §2(1): only holders of a マイナ免許証 or マイナ経歴証明書 can link.
    pub fn can_link(self) -> bool {
        self.has_myna_license() || self.has_myna_history()
    }
}

/// The license's standing in the driver-management system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LicenseState {
    Valid,
    /// 効力停止中
    Suspended,
    /// 効力仮停止中
    ProvisionallySuspended,
    /// 失効
    Lapsed,
    /// 取消し
    Revoked,
}

impl LicenseState {
    pub fn is_suspended(self) -> bool {
        matches!(
            self,
            LicenseState::Suspended | LicenseState::ProvisionallySuspended
        )
    }
}

/// The services ①–⑤ of §1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    /// ① 免許情報等の確認
    LicenseInfo,
    /// ② オンライン更新時講習
    OnlineRenewalLecture,
    /// ③ 本籍のオンライン変更
    DomicileChange,
    /// ④ 住所変更ワンストップサービス等
    AddressOneStop,
    /// ⑤ お知らせ情報の受信
    Notices,
}

impl Service {
    pub const ALL: [Service; 5] = [
        Service::LicenseInfo,
        Service::OnlineRenewalLecture,
        Service::DomicileChange,
        Service::AddressOneStop,
        Service::Notices,
    ];

    pub fn number(self) -> u8 {
        match self {
            Service::LicenseInfo => 1,
            Service::OnlineRenewalLecture => 2,
            Service::DomicileChange => 3,
            Service::AddressOneStop => 4,
            Service::Notices => 5,
        }
    }

    pub fn name_ja(self) -> &'static str {
        match self {
            Service::LicenseInfo => "免許情報等の確認",
            Service::OnlineRenewalLecture => "オンライン更新時講習の受講",
            Service::DomicileChange => "本籍のオンライン変更",
            Service::AddressOneStop => "住所変更ワンストップサービス等",
            Service::Notices => "お知らせ情報の受信",
        }
    }

    pub fn name_en(self) -> &'static str {
        match self {
            Service::LicenseInfo => "View license information",
            Service::OnlineRenewalLecture => "Online renewal lecture",
            Service::DomicileChange => "Online change of registered domicile",
            Service::AddressOneStop => "Address-change one-stop service",
            Service::Notices => "Notices",
        }
    }

    /// §2(2): whether a holder can use this service once linked.
    pub fn available(self, holding: Holding, state: LicenseState) -> bool {
        let license = holding.has_myna_license() && !state.is_suspended();
        match self {
            Service::LicenseInfo => license || holding.has_myna_history(),
            Service::OnlineRenewalLecture => license,
            Service::DomicileChange => holding == Holding::MynaOnly,
            Service::AddressOneStop => {
                matches!(holding, Holding::MynaOnly | Holding::HistoryMynaOnly)
            }
            Service::Notices => holding.has_myna_license() || holding.has_myna_history(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub service: Service,
    pub number: u8,
    pub name_ja: String,
    pub name_en: String,
    pub available: bool,
}

impl ServiceStatus {
    pub fn for_holder(holding: Holding, state: LicenseState) -> Vec<ServiceStatus> {
        Service::ALL
            .iter()
            .map(|&s| ServiceStatus {
                service: s,
                number: s.number(),
                name_ja: s.name_ja().into(),
                name_en: s.name_en().into(),
                available: s.available(holding, state),
            })
            .collect()
    }
}

/// Where the license's binding stands (`binding_state` of the status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingState {
    /// Linked, with a certificate that was good when last checked.
    Active,
    /// Its certificate was revoked or expired: the first stage is needed again, and a new
    /// one supersedes it.
    Stale,
    /// The latest binding was cancelled (§6).
    Cancelled,
}

/// A suspension of linking for a license (§8), as administrators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuspensionInfo {
    pub suspended_at: String,
    pub reason: String,
    pub suspended_by: String,
}

/// `GET /v1/licenses/{number}/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseStatus {
    pub license_number: String,
    /// Given to terminals and administrators (the counter explains the holding pattern).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holding: Option<Holding>,
    /// Given to administrators only: whether a license is suspended or revoked is not a
    /// terminal's or Mynaportal's business (the services below say what the holder can use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<LicenseState>,
    /// §2(1): can link at all.
    pub eligible: bool,
    pub linked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linked_via: Option<LinkedVia>,
    /// Whether the first stage at the counter is needed now (§4, §5 carry-over, §6 relink).
    pub first_stage_needed: bool,
    /// Why (not) — a stable code: `not_eligible`, `already_linked`, `carried_over`,
    /// `relink_from_mynaportal`, `binding_stale`, `required`, `service_suspended`.
    pub reason: String,
    pub services: Vec<ServiceStatus>,
    /// Whether the active binding completed the second stage from Mynaportal (§4); given
    /// to Mynaportal and administrators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_stage_done: Option<bool>,
    /// §8: linking is suspended for this license by the police (then `reason` is
    /// `service_suspended` and no stage can be done).
    #[serde(default)]
    pub service_suspended: bool,
    /// The suspension in force; given to administrators only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspension: Option<SuspensionInfo>,
    /// The license's binding: `active`, `stale`, `cancelled`; absent when it never had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding_state: Option<BindingState>,
    /// With `stale`: `certificate_revoked` or `certificate_expired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoked_certificate_is_explained_with_its_reason_and_date() {
        let mut error = ApiError {
            code: "certificate_revoked".into(),
            message_ja: "サーバの文".into(),
            message_en: "Server text.".into(),
            detail: None,
            linked_via: None,
            revocation_reason: Some("affiliationChanged".into()),
            revoked_at: Some("2026-11-20T03:00:00Z".into()),
            revocation_problem: None,
        };
        let (ja, en) = error.explanation();
        assert!(ja.contains("2026-11-20に失効"), "{ja}");
        assert!(ja.contains("転居") && ja.contains("市区町村の窓口"), "{ja}");
        assert!(en.contains("revoked on 2026-11-20"), "{en}");
        assert!(
            en.contains("a move") && en.contains("municipal office"),
            "{en}"
        );
        // Without reason or time it still says what to do.
        error.revocation_reason = None;
        error.revoked_at = Some("<script>".into());
        let (ja, en) = error.explanation();
        assert!(ja.contains("記載なし") && !ja.contains("script"), "{ja}");
        assert!(
            en.contains("not given") && en.contains("municipal office"),
            "{en}"
        );
        // Other codes keep the backend's words.
        error.code = "signature_invalid".into();
        assert_eq!(
            error.explanation(),
            ("サーバの文".to_string(), "Server text.".to_string())
        );
    }

    fn available(holding: Holding, state: LicenseState) -> Vec<u8> {
        Service::ALL
            .iter()
            .filter(|s| s.available(holding, state))
            .map(|s| s.number())
            .collect()
    }

    #[test]
    fn services_by_holding_pattern() {
        use Holding::*;
        use LicenseState::*;
        assert_eq!(available(MynaOnly, Valid), [1, 2, 3, 4, 5]);
        assert_eq!(available(MynaAndCard, Valid), [1, 2, 5]);
        assert_eq!(available(CardOnly, Valid), Vec::<u8>::new());
        assert_eq!(available(HistoryMynaOnly, Valid), [1, 4, 5]);
        assert_eq!(available(HistoryMynaAndCard, Valid), [1, 5]);
        assert_eq!(available(HistoryCardOnly, Valid), Vec::<u8>::new());
        // Suspended licenses lose ① and ② (§2(2)); the others follow the holding.
        assert_eq!(available(MynaOnly, Suspended), [3, 4, 5]);
        assert_eq!(available(MynaAndCard, ProvisionallySuspended), [5]);
    }

    #[test]
    fn who_can_link() {
        let can: Vec<Holding> = Holding::ALL
            .iter()
            .copied()
            .filter(|h| h.can_link())
            .collect();
        assert_eq!(
            can,
            [
                Holding::MynaOnly,
                Holding::MynaAndCard,
                Holding::HistoryMynaOnly,
                Holding::HistoryMynaAndCard
            ]
        );
    }

    #[test]
    fn wire_names() {
        assert_eq!(
            serde_json::to_string(&Holding::HistoryMynaAndCard).expect("json"),
            "\"history_myna_and_card\""
        );
        assert_eq!(
            serde_json::to_string(&LicenseState::ProvisionallySuspended).expect("json"),
            "\"provisionally_suspended\""
        );
        assert_eq!(
            serde_json::to_string(&LinkedVia::OneStop).expect("json"),
            "\"one_stop\""
        );
    }
}
