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
    /// `relink_from_mynaportal`, `required`, `service_suspended`.
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
