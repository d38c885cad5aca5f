//! The stable decision codes the server answers with and writes to the audit table.

use std::fmt;

use mynalink_link::api::{ApiError, LinkedVia};

/// Every outcome of a request that the server can name. The snake_case string is the wire
/// form and never changes for an existing code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// 201: a new binding was stored.
    Created,
    /// 200: the same statement again; the existing binding is returned.
    Repeated,
    /// A binding was cancelled (§6).
    Cancelled,
    /// The binding had been cancelled before: nothing changed.
    AlreadyCancelled,
    MalformedRequest,
    StatementInvalid,
    SignatureInvalid,
    CertificateInvalid,
    CertificateUntrusted,
    CertificateExpired,
    CertificateNotYetValid,
    StatementStale,
    StatementReused,
    TerminalMismatch,
    LicenseNumberInvalid,
    LicenseNotFound,
    NotEligible,
    IdentityMismatch,
    IdentityNeedsConfirmation,
    AlreadyLinked,
    RateLimited,
    BindingNotFound,
    /// 401: no bearer token, or one that no configured terminal has.
    Unauthenticated,
    /// 500: the server could not complete the request (e.g. the database failed).
    ServerError,
    /// 403: a valid credential of the wrong kind (a terminal on a Mynaportal endpoint or
    /// the reverse).
    CredentialNotAllowed,
    /// 202: second stage, Mynaportal's card-info basic-4 is held until the signature.
    Basic4Received,
    /// 200: second stage complete; the binding is linked with Mynaportal.
    MynaportalLinked,
    /// 200: the same second-stage statement again.
    SecondStageRepeated,
    /// 409: the license has no active first-stage binding.
    FirstStageMissing,
    /// 409: the binding already completed the second stage.
    SecondStageDone,
    /// 404: no pending second stage has this id (unknown, expired or already decided).
    SecondStageNotFound,
    /// 422: the certificate's basic-4 differs from the card-info basic-4.
    Basic4Mismatch,
    /// 200: §6, a cancelled binding restored from Mynaportal by the second stage alone.
    MynaportalRelinked,
    /// 422: the certificate was sealed to a key this server does not hold (or it has none).
    /// Not a decision about the binding: the terminal keeps it for an operator.
    SealKeyMismatch,
    /// 200: a license's status was answered (audited like every decision).
    StatusAnswered,
    /// 503: no database connection was free in time, or the database waited too long for a
    /// lock or a statement; nothing was changed. Answered with `Retry-After`.
    ServerBusy,
    /// 408: the request body did not arrive in time; the connection is closed.
    RequestTimeout,
    /// 422: §8, linking is suspended for this license by the police.
    ServiceSuspended,
    /// 201: §8, an administrator suspended linking for a license.
    Suspended,
    /// 200: §8, an administrator lifted a suspension.
    SuspensionLifted,
    /// 404: there is no suspension to lift.
    NotSuspended,
    /// 200: §8, what was collected for a license was erased.
    CollectedErased,
    /// 422: the signing certificate was revoked (RFC 5280 reason and time in the body); the
    /// holder renews it at the municipal office.
    CertificateRevoked,
    /// 503: the certificate's revocation status could not be obtained (`--revocation
    /// require`); nothing was decided. Answered with `Retry-After`.
    RevocationUnavailable,
    /// A stale binding was replaced by a new first stage (audit only).
    BindingSuperseded,
    /// A re-check found a binding's certificate revoked or expired (audit only).
    BindingStale,
}

impl Code {
    pub const ALL: [Code; 46] = [
        Code::Created,
        Code::Repeated,
        Code::Cancelled,
        Code::AlreadyCancelled,
        Code::MalformedRequest,
        Code::StatementInvalid,
        Code::SignatureInvalid,
        Code::CertificateInvalid,
        Code::CertificateUntrusted,
        Code::CertificateExpired,
        Code::CertificateNotYetValid,
        Code::StatementStale,
        Code::StatementReused,
        Code::TerminalMismatch,
        Code::LicenseNumberInvalid,
        Code::LicenseNotFound,
        Code::NotEligible,
        Code::IdentityMismatch,
        Code::IdentityNeedsConfirmation,
        Code::AlreadyLinked,
        Code::RateLimited,
        Code::BindingNotFound,
        Code::Unauthenticated,
        Code::ServerError,
        Code::CredentialNotAllowed,
        Code::Basic4Received,
        Code::MynaportalLinked,
        Code::SecondStageRepeated,
        Code::FirstStageMissing,
        Code::SecondStageDone,
        Code::SecondStageNotFound,
        Code::Basic4Mismatch,
        Code::MynaportalRelinked,
        Code::SealKeyMismatch,
        Code::StatusAnswered,
        Code::ServerBusy,
        Code::RequestTimeout,
        Code::ServiceSuspended,
        Code::Suspended,
        Code::SuspensionLifted,
        Code::NotSuspended,
        Code::CollectedErased,
        Code::CertificateRevoked,
        Code::RevocationUnavailable,
        Code::BindingSuperseded,
        Code::BindingStale,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::Created => "created",
            Code::Repeated => "repeated",
            Code::Cancelled => "cancelled",
            Code::AlreadyCancelled => "already_cancelled",
            Code::MalformedRequest => "malformed_request",
            Code::StatementInvalid => "statement_invalid",
            Code::SignatureInvalid => "signature_invalid",
            Code::CertificateInvalid => "certificate_invalid",
            Code::CertificateUntrusted => "certificate_untrusted",
            Code::CertificateExpired => "certificate_expired",
            Code::CertificateNotYetValid => "certificate_not_yet_valid",
            Code::StatementStale => "statement_stale",
            Code::StatementReused => "statement_reused",
            Code::TerminalMismatch => "terminal_mismatch",
            Code::LicenseNumberInvalid => "license_number_invalid",
            Code::LicenseNotFound => "license_not_found",
            Code::NotEligible => "not_eligible",
            Code::IdentityMismatch => "identity_mismatch",
            Code::IdentityNeedsConfirmation => "identity_needs_confirmation",
            Code::AlreadyLinked => "already_linked",
            Code::RateLimited => "rate_limited",
            Code::BindingNotFound => "binding_not_found",
            Code::Unauthenticated => "unauthenticated",
            Code::ServerError => "server_error",
            Code::CredentialNotAllowed => "credential_not_allowed",
            Code::Basic4Received => "basic4_received",
            Code::MynaportalLinked => "mynaportal_linked",
            Code::SecondStageRepeated => "second_stage_repeated",
            Code::FirstStageMissing => "first_stage_missing",
            Code::SecondStageDone => "second_stage_done",
            Code::SecondStageNotFound => "second_stage_not_found",
            Code::Basic4Mismatch => "basic4_mismatch",
            Code::MynaportalRelinked => "mynaportal_relinked",
            Code::SealKeyMismatch => "seal_key_mismatch",
            Code::StatusAnswered => "status_answered",
            Code::ServerBusy => "server_busy",
            Code::RequestTimeout => "request_timeout",
            Code::ServiceSuspended => "service_suspended",
            Code::Suspended => "suspended",
            Code::SuspensionLifted => "suspension_lifted",
            Code::NotSuspended => "not_suspended",
            Code::CollectedErased => "collected_erased",
            Code::CertificateRevoked => "certificate_revoked",
            Code::RevocationUnavailable => "revocation_unavailable",
            Code::BindingSuperseded => "binding_superseded",
            Code::BindingStale => "binding_stale",
        }
    }

    pub fn parse(text: &str) -> Option<Code> {
        Code::ALL.iter().copied().find(|c| c.as_str() == text)
    }

    /// The HTTP status the code is answered with on `POST /v1/bindings` and
    /// `DELETE /v1/bindings/{id}`: every failed check of a submission is 422 (the body was
    /// understood, its content refused). `GET /v1/licenses/{number}/status` answers
    /// `license_not_found` with 404 instead. The second-stage endpoints use the same table.
    pub fn http_status(self) -> u16 {
        match self {
            Code::Created => 201,
            Code::Repeated
            | Code::Cancelled
            | Code::AlreadyCancelled
            | Code::MynaportalLinked
            | Code::MynaportalRelinked
            | Code::SecondStageRepeated
            | Code::StatusAnswered
            | Code::BindingSuperseded
            | Code::BindingStale => 200,
            Code::Basic4Received => 202,
            Code::AlreadyLinked | Code::FirstStageMissing | Code::SecondStageDone => 409,
            Code::CredentialNotAllowed => 403,
            Code::SecondStageNotFound => 404,
            Code::RateLimited => 429,
            Code::BindingNotFound => 404,
            Code::Unauthenticated => 401,
            Code::ServerError => 500,
            Code::ServerBusy | Code::RevocationUnavailable => 503,
            Code::RequestTimeout => 408,
            Code::Suspended => 201,
            Code::SuspensionLifted | Code::CollectedErased => 200,
            Code::NotSuspended => 404,
            _ => 422,
        }
    }

    /// Whether the code is a success.
    pub fn is_success(self) -> bool {
        matches!(
            self,
            Code::Created
                | Code::Repeated
                | Code::Cancelled
                | Code::AlreadyCancelled
                | Code::Basic4Received
                | Code::MynaportalLinked
                | Code::MynaportalRelinked
                | Code::SecondStageRepeated
                | Code::StatusAnswered
                | Code::Suspended
                | Code::SuspensionLifted
                | Code::CollectedErased
                | Code::BindingSuperseded
                | Code::BindingStale
        )
    }

    /// Failures that point at forged or malformed submissions or at probing (§7, §8) and so
    /// count towards the rate limit. Outcomes an honest counter meets in normal work (an
    /// expired card, a stale retry, a holder not eligible, a name needing staff
    /// confirmation, an existing binding) do not.
    pub fn counts_as_abuse(self) -> bool {
        matches!(
            self,
            Code::MalformedRequest
                | Code::StatementInvalid
                | Code::SignatureInvalid
                | Code::CertificateInvalid
                | Code::CertificateUntrusted
                | Code::TerminalMismatch
                | Code::LicenseNumberInvalid
                | Code::LicenseNotFound
                | Code::IdentityMismatch
                | Code::StatementReused
                | Code::Basic4Mismatch
        )
    }

    pub fn message_ja(self) -> &'static str {
        match self {
            Code::Created => "連携情報を登録しました。",
            Code::Repeated => "この申請は登録済みです（同じ内容の再送信）。",
            Code::Cancelled => "連携を解除しました。",
            Code::AlreadyCancelled => "この連携は既に解除されています。",
            Code::MalformedRequest => "送信内容の形式が正しくありません。",
            Code::StatementInvalid => "署名対象の申請データが正しくありません。",
            Code::SignatureInvalid => "電子署名を検証できませんでした。",
            Code::CertificateInvalid => "署名用電子証明書を読み取れませんでした。",
            Code::CertificateUntrusted => {
                "署名用電子証明書の発行元を信頼できる認証局として確認できませんでした。"
            }
            Code::CertificateExpired => "署名用電子証明書の有効期限が切れています。",
            Code::CertificateNotYetValid => "署名用電子証明書の有効期間がまだ始まっていません。",
            Code::StatementStale => {
                "申請データの作成日時が受付期間外です。もう一度署名してください。"
            }
            Code::StatementReused => {
                "この申請データは解除済みの連携に使われたものです。新たに署名してください。"
            }
            Code::TerminalMismatch => "申請データの端末が送信元の端末と一致しません。",
            Code::LicenseNumberInvalid => "免許証番号が正しくありません。",
            Code::LicenseNotFound => "該当する免許情報がありません。",
            Code::NotEligible => {
                "マイナ免許証又はマイナ経歴証明書をお持ちでないため、連携の手続はできません。"
            }
            Code::IdentityMismatch => "電子証明書の氏名・生年月日が免許情報と一致しません。",
            Code::IdentityNeedsConfirmation => {
                "氏名に代替文字が使われているため、職員による本人確認が必要です。"
            }
            Code::AlreadyLinked => "この免許情報は既にマイナポータルと連携されています。",
            Code::RateLimited => {
                "不正な送信が続いたため、一時的に受付を停止しています。しばらくしてからお試しください。"
            }
            Code::BindingNotFound => "該当する連携情報がありません。",
            Code::Unauthenticated => "端末の認証に失敗しました。",
            Code::ServerError => {
                "サーバーで処理を完了できませんでした。しばらくしてからお試しください。"
            }
            Code::CredentialNotAllowed => "この認証情報ではこの手続を利用できません。",
            Code::Basic4Received => {
                "基本4情報を受け付けました。署名用電子証明書を提出してください。"
            }
            Code::MynaportalLinked => "マイナポータルとの連携が完了しました。",
            Code::SecondStageRepeated => "この提出は処理済みです（同じ内容の再送信）。",
            Code::FirstStageMissing => {
                "免許センター等での1回目の署名用電子証明書の提出が完了していません。"
            }
            Code::SecondStageDone => "この免許情報は既にマイナポータルとの連携が完了しています。",
            Code::SecondStageNotFound => {
                "受付情報が見つかりません（期限切れ又は処理済み）。最初からやり直してください。"
            }
            Code::Basic4Mismatch => {
                "電子証明書の基本4情報がカードから読み取った基本4情報と一致しません。"
            }
            Code::MynaportalRelinked => {
                "解除されていたマイナポータル連携を、マイナポータルからの手続で再び連携しました。"
            }
            Code::SealKeyMismatch => {
                "電子証明書が、このサーバーの持たない鍵で封をされています。端末の送信箱に保管したまま、サーバーの鍵を確認してください。"
            }
            Code::StatusAnswered => "免許情報の連携状況を回答しました。",
            Code::ServerBusy => {
                "サーバーが混み合っているため処理できませんでした。内容は変更されていません。しばらくしてからお試しください。"
            }
            Code::RequestTimeout => {
                "送信内容が時間内に届きませんでした。通信状態を確認して、もう一度お試しください。"
            }
            Code::ServiceSuspended => {
                "この免許証番号のマイナポータル連携は、警察により停止されています。運転免許センターにお問い合わせください。"
            }
            Code::Suspended => "この免許証番号の連携を停止しました。",
            Code::SuspensionLifted => "この免許証番号の連携の停止を解除しました。",
            Code::NotSuspended => "この免許証番号の連携は停止されていません。",
            Code::CollectedErased => "この免許証番号について収集した情報を消去しました。",
            Code::CertificateRevoked => {
                "署名用電子証明書が失効しています（住所や氏名が変わると自動的に失効します）。住民票のある市区町村の窓口で署名用電子証明書を更新（再発行）してから、もう一度お越しください。"
            }
            Code::RevocationUnavailable => {
                "署名用電子証明書の失効確認が今はできません。内容は変更されていません。申請は端末に保管され、後で自動的に送信されます。"
            }
            Code::BindingSuperseded => "失効した証明書の連携を、新しい1回目の提出で置き換えました。",
            Code::BindingStale => {
                "連携した署名用電子証明書が失効又は期限切れとなったため、1回目の提出が再び必要です。"
            }
        }
    }

    pub fn message_en(self) -> &'static str {
        match self {
            Code::Created => "The binding was stored.",
            Code::Repeated => "This submission was already stored (same statement sent again).",
            Code::Cancelled => "The binding was cancelled.",
            Code::AlreadyCancelled => "The binding had already been cancelled.",
            Code::MalformedRequest => "The request is not well formed.",
            Code::StatementInvalid => "The signed statement is not valid.",
            Code::SignatureInvalid => "The signature does not verify.",
            Code::CertificateInvalid => "The signing certificate could not be read.",
            Code::CertificateUntrusted => {
                "The signing certificate does not chain to a trusted signing root."
            }
            Code::CertificateExpired => "The signing certificate had expired.",
            Code::CertificateNotYetValid => "The signing certificate was not yet valid.",
            Code::StatementStale => {
                "The statement's time is outside the accepted window; sign a new one."
            }
            Code::StatementReused => {
                "This statement belongs to a binding that was cancelled; sign a new one."
            }
            Code::TerminalMismatch => {
                "The statement names a different terminal than the one that sent it."
            }
            Code::LicenseNumberInvalid => "The license number is not valid.",
            Code::LicenseNotFound => "No license record has this number.",
            Code::NotEligible => {
                "Only holders of a My Number card with license or driving-history \
                 information can link."
            }
            Code::IdentityMismatch => {
                "The certificate's name or birth date does not match the license record."
            }
            Code::IdentityNeedsConfirmation => {
                "The certificate's name uses substitute characters; staff must confirm \
                 the holder's identity."
            }
            Code::AlreadyLinked => "This license record is already linked.",
            Code::RateLimited => "Too many invalid submissions; requests are refused for a while.",
            Code::BindingNotFound => "No binding has this id.",
            Code::Unauthenticated => "The terminal could not be authenticated.",
            Code::ServerError => "The server could not complete the request; try again later.",
            Code::CredentialNotAllowed => "This credential may not use this endpoint.",
            Code::Basic4Received => {
                "The basic-4 information was received; submit the signing certificate next."
            }
            Code::MynaportalLinked => "The license record is now linked with Mynaportal.",
            Code::SecondStageRepeated => {
                "This submission was already decided (same statement sent again)."
            }
            Code::FirstStageMissing => {
                "The first stage (signing certificate submitted at a license center) is missing."
            }
            Code::SecondStageDone => "This license record already completed the second stage.",
            Code::SecondStageNotFound => {
                "No pending second stage has this id (expired or already decided); start again."
            }
            Code::Basic4Mismatch => {
                "The certificate's basic-4 information differs from the card's."
            }
            Code::MynaportalRelinked => {
                "The cancelled link was restored through Mynaportal, without the counter."
            }
            Code::SealKeyMismatch => {
                "The certificate was sealed to a key this server does not hold; the terminal \
                 keeps it in its outbox. Check the server's seal key."
            }
            Code::StatusAnswered => "The license's linking status was answered.",
            Code::ServerBusy => {
                "The server is busy; nothing was changed. Try again later (see Retry-After)."
            }
            Code::RequestTimeout => {
                "The request body did not arrive in time; check the connection and send it again."
            }
            Code::ServiceSuspended => {
                "Linking for this license number has been suspended by the police. Please ask at the driver's license center."
            }
            Code::Suspended => "Linking for this license number was suspended.",
            Code::SuspensionLifted => "The suspension for this license number was lifted.",
            Code::NotSuspended => "Linking for this license number is not suspended.",
            Code::CollectedErased => "What was collected for this license number was erased.",
            Code::CertificateRevoked => {
                "The signing certificate has been revoked (this happens automatically after a \
                 move or a change of name). The holder renews it at the municipal office and \
                 then comes back."
            }
            Code::RevocationUnavailable => {
                "The certificate's revocation status cannot be obtained now; nothing was \
                 decided. The terminal keeps the submission and sends it again later (see \
                 Retry-After)."
            }
            Code::BindingSuperseded => {
                "The binding to a dead certificate was replaced by a new first stage."
            }
            Code::BindingStale => {
                "The binding's certificate was revoked or expired; the first stage is needed \
                 again."
            }
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused request: what the HTTP layer answers and the audit table records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: Code,
    /// Technical detail for the operator. Never holds personal data.
    pub detail: Option<String>,
    /// With `already_linked`: how the record was linked.
    pub linked_via: Option<LinkedVia>,
    /// With `certificate_revoked`: reason and time; with `revocation_unavailable`: why.
    pub revocation: Option<RevocationDetail>,
}

/// What a refusal about revocation tells the caller.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RevocationDetail {
    /// RFC 5280 reason name.
    pub reason: Option<String>,
    pub revoked_at: Option<String>,
    /// The stable problem code of `revocation_unavailable`.
    pub problem: Option<String>,
}

impl Rejection {
    pub fn new(code: Code) -> Self {
        Rejection {
            code,
            detail: None,
            linked_via: None,
            revocation: None,
        }
    }

    pub fn with_detail(code: Code, detail: impl Into<String>) -> Self {
        Rejection {
            code,
            detail: Some(detail.into()),
            linked_via: None,
            revocation: None,
        }
    }

    pub fn http_status(&self) -> u16 {
        self.code.http_status()
    }

    pub fn to_api_error(&self) -> ApiError {
        ApiError {
            code: self.code.as_str().to_string(),
            message_ja: self.code.message_ja().to_string(),
            message_en: self.code.message_en().to_string(),
            detail: self.detail.clone(),
            linked_via: self.linked_via,
            revocation_reason: self.revocation.as_ref().and_then(|r| r.reason.clone()),
            revoked_at: self.revocation.as_ref().and_then(|r| r.revoked_at.clone()),
            revocation_problem: self.revocation.as_ref().and_then(|r| r.problem.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        for code in Code::ALL {
            assert_eq!(Code::parse(code.as_str()), Some(code));
            assert!(!code.message_ja().is_empty() && !code.message_en().is_empty());
            let same: Vec<_> = Code::ALL
                .iter()
                .filter(|c| c.as_str() == code.as_str())
                .collect();
            assert_eq!(same.len(), 1, "{code}");
        }
        assert_eq!(Code::parse("nope"), None);
    }

    #[test]
    fn statuses() {
        assert_eq!(Code::Created.http_status(), 201);
        assert_eq!(Code::Repeated.http_status(), 200);
        assert_eq!(Code::AlreadyLinked.http_status(), 409);
        assert_eq!(Code::RateLimited.http_status(), 429);
        assert_eq!(Code::IdentityMismatch.http_status(), 422);
        assert_eq!(Code::MalformedRequest.http_status(), 422);
        assert_eq!(Code::BindingNotFound.http_status(), 404);
        assert_eq!(Code::Unauthenticated.http_status(), 401);
        assert_eq!(Code::ServerError.http_status(), 500);
        assert_eq!(Code::ServerBusy.http_status(), 503);
        assert_eq!(Code::RequestTimeout.http_status(), 408);
        assert_eq!(Code::CertificateRevoked.http_status(), 422);
        assert_eq!(Code::RevocationUnavailable.http_status(), 503);
        // A revoked certificate is normal life (a move), and an unanswered check is ours.
        assert!(!Code::CertificateRevoked.counts_as_abuse());
        assert!(!Code::RevocationUnavailable.counts_as_abuse());
        assert!(!Code::ServerBusy.counts_as_abuse() && !Code::RequestTimeout.counts_as_abuse());
        assert!(!Code::StatementStale.counts_as_abuse());
        assert!(Code::SignatureInvalid.counts_as_abuse());
    }

    #[test]
    fn api_error_carries_linked_via() {
        let mut r = Rejection::new(Code::AlreadyLinked);
        r.linked_via = Some(LinkedVia::OneStop);
        let e = r.to_api_error();
        assert_eq!(e.code, "already_linked");
        assert_eq!(e.linked_via, Some(LinkedVia::OneStop));
    }
}
