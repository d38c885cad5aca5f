//! Every failure the user can meet, as a stable code with a message in Japanese and
//! English and what to do next. The codes are a contract: headless JSON, the GUI and the
//! backend logs all use them.

use mynalink_card::{CardError, NotJpkiReason, PasswordFormatError, TokenKind, TransportError};
use serde::Serialize;

use crate::certificate::CertificateError;
use crate::license::LicenseNumberError;
use crate::trust::TrustError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    LicenseNumberInvalid,
    PinFormatInvalid,
    PinWrong,
    PinBlocked,
    LastTryRequiresConfirmation,
    NoSigningCertificate,
    NotJpkiCard,
    SmartphoneNotAccepted,
    PcscUnavailable,
    NoReader,
    ReaderAmbiguous,
    NoCard,
    CardRemoved,
    CardBusy,
    CardError,
    AccessRefused,
    CertificateInvalid,
    CertificateExpired,
    CertificateNotYetValid,
    CertificateUntrusted,
    SignatureInvalid,
    TraceMismatch,
    TraceInvalid,
    InputUnavailable,
    ConfigurationInvalid,
    OutboxUnavailable,
    TraceCertificateWithheld,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 27] = [
        ErrorCode::LicenseNumberInvalid,
        ErrorCode::PinFormatInvalid,
        ErrorCode::PinWrong,
        ErrorCode::PinBlocked,
        ErrorCode::LastTryRequiresConfirmation,
        ErrorCode::NoSigningCertificate,
        ErrorCode::NotJpkiCard,
        ErrorCode::SmartphoneNotAccepted,
        ErrorCode::PcscUnavailable,
        ErrorCode::NoReader,
        ErrorCode::ReaderAmbiguous,
        ErrorCode::NoCard,
        ErrorCode::CardRemoved,
        ErrorCode::CardBusy,
        ErrorCode::CardError,
        ErrorCode::AccessRefused,
        ErrorCode::CertificateInvalid,
        ErrorCode::CertificateExpired,
        ErrorCode::CertificateNotYetValid,
        ErrorCode::CertificateUntrusted,
        ErrorCode::SignatureInvalid,
        ErrorCode::TraceMismatch,
        ErrorCode::TraceInvalid,
        ErrorCode::InputUnavailable,
        ErrorCode::ConfigurationInvalid,
        ErrorCode::OutboxUnavailable,
        ErrorCode::TraceCertificateWithheld,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::LicenseNumberInvalid => "license_number_invalid",
            ErrorCode::PinFormatInvalid => "pin_format_invalid",
            ErrorCode::PinWrong => "pin_wrong",
            ErrorCode::PinBlocked => "pin_blocked",
            ErrorCode::LastTryRequiresConfirmation => "last_try_requires_confirmation",
            ErrorCode::NoSigningCertificate => "no_signing_certificate",
            ErrorCode::NotJpkiCard => "not_jpki_card",
            ErrorCode::SmartphoneNotAccepted => "smartphone_not_accepted",
            ErrorCode::PcscUnavailable => "pcsc_unavailable",
            ErrorCode::NoReader => "no_reader",
            ErrorCode::ReaderAmbiguous => "reader_ambiguous",
            ErrorCode::NoCard => "no_card",
            ErrorCode::CardRemoved => "card_removed",
            ErrorCode::CardBusy => "card_busy",
            ErrorCode::CardError => "card_error",
            ErrorCode::AccessRefused => "access_refused",
            ErrorCode::CertificateInvalid => "certificate_invalid",
            ErrorCode::CertificateExpired => "certificate_expired",
            ErrorCode::CertificateNotYetValid => "certificate_not_yet_valid",
            ErrorCode::CertificateUntrusted => "certificate_untrusted",
            ErrorCode::SignatureInvalid => "signature_invalid",
            ErrorCode::TraceMismatch => "trace_mismatch",
            ErrorCode::TraceInvalid => "trace_invalid",
            ErrorCode::InputUnavailable => "input_unavailable",
            ErrorCode::ConfigurationInvalid => "configuration_invalid",
            ErrorCode::OutboxUnavailable => "outbox_unavailable",
            ErrorCode::TraceCertificateWithheld => "trace_certificate_withheld",
        }
    }

    /// What the person at the counter reads, and what to do about it: (ja, en).
    fn text(self) -> (&'static str, &'static str) {
        match self {
            ErrorCode::LicenseNumberInvalid => (
                "免許証番号が正しくありません。免許証（またはマイナ免許証の記録）を見て12桁を入力し直してください。",
                "The license number is not valid. Check the 12 digits on the license record and enter them again.",
            ),
            ErrorCode::PinFormatInvalid => (
                "署名用パスワードの形式が違います（英大文字と数字で6〜16文字）。カードには送っていないので、回数は減っていません。もう一度入力してください。",
                "The signing password must be 6 to 16 letters A-Z and digits 0-9. Nothing was sent to the card and no try was used; please enter it again.",
            ),
            ErrorCode::PinWrong => (
                "署名用パスワードが違います。残りの回数に注意して、もう一度入力してください。分からない場合は市区町村の窓口で再設定できます。",
                "The signing password is wrong. Mind the tries left and enter it again; if it is forgotten, it can be reset at the municipal office.",
            ),
            ErrorCode::PinBlocked => (
                "署名用パスワードがロックされています。この窓口では手続できません。住民票のある市区町村の窓口でロックの解除（パスワードの再設定）をしてから、もう一度お越しください。",
                "The signing password is locked. This procedure cannot continue today: the holder must have it reset at their municipal office, then come back.",
            ),
            ErrorCode::LastTryRequiresConfirmation => (
                "残り1回です。間違えるとロックされます。職員が確認してから入力してください。",
                "Only one try is left; a wrong entry locks the password. Staff must confirm before it is sent.",
            ),
            ErrorCode::NoSigningCertificate => (
                "このカードには署名用電子証明書がありません（15歳未満の方など）。パスワードのロックではありません。市区町村の窓口で証明書の発行を受けてください。",
                "This card holds no signing certificate (e.g. holders under 15). The password is not locked; a certificate can be issued at the municipal office.",
            ),
            ErrorCode::NotJpkiCard => (
                "マイナンバーカードとして読み取れません。カードの種類と向きを確かめて、置き直してください。スマートフォンの電子証明書は使えません。",
                "This is not readable as a My Number card. Check the card and how it is placed; smartphone certificates cannot be used here.",
            ),
            ErrorCode::SmartphoneNotAccepted => (
                "スマートフォンの電子証明書（スマホ用電子証明書）は、この手続には使えません。マイナンバーカード本体をカードリーダーに置いてください。パスワードはまだ送っていないので、回数は減っていません。",
                "A smartphone's signing certificate cannot be used for this procedure. Please place the My Number card itself on the reader. No password was sent, so no try was used.",
            ),
            ErrorCode::PcscUnavailable => (
                "カードリーダーのサービス（PC/SC）が動いていません。システム担当者に連絡してください。",
                "The smart-card service (PC/SC) is not running. Please contact the system administrator.",
            ),
            ErrorCode::NoReader => (
                "カードリーダーが見つかりません。接続を確かめてください。",
                "No card reader was found. Check that it is connected.",
            ),
            ErrorCode::ReaderAmbiguous => (
                "マイナンバーカードが置かれたリーダーが複数あります。使うリーダーを指定するか、不要なカードを取り除いてください。",
                "More than one reader holds a My Number card. Name the reader to use, or remove the other cards.",
            ),
            ErrorCode::NoCard => (
                "カードが置かれていません。カードをリーダーに置いてください。",
                "No card is in the reader. Please place the card on the reader.",
            ),
            ErrorCode::CardRemoved => (
                "読み取り中にカードが離れました。カードを置き直して、最初からやり直してください。",
                "The card was removed during reading. Place it again and start over.",
            ),
            ErrorCode::CardBusy => (
                "カードが他のプログラムで使用中です。少し待ってからやり直してください。",
                "The card is in use by another program. Wait a moment and try again.",
            ),
            ErrorCode::CardError => (
                "カードとの通信でエラーが起きました。カードを置き直してやり直してください。続く場合はシステム担当者に連絡してください。",
                "The card answered with an error. Place it again and retry; if it persists, contact the system administrator.",
            ),
            ErrorCode::AccessRefused => (
                "許可されていないカード操作を止めました（個人番号には触れません）。システム担当者に連絡してください。",
                "A card operation outside what this client may do was stopped (the individual number is never touched). Please contact the system administrator.",
            ),
            ErrorCode::CertificateInvalid => (
                "署名用電子証明書を正しく読み取れませんでした。カードを置き直してやり直してください。続く場合は市区町村の窓口で証明書を確認してください。",
                "The signing certificate could not be read correctly. Place the card again and retry; if it persists, have the certificate checked at the municipal office.",
            ),
            ErrorCode::CertificateExpired => (
                "署名用電子証明書の有効期限が切れています。市区町村の窓口で更新してから、もう一度お越しください。",
                "The signing certificate has expired. It must be renewed at the municipal office first.",
            ),
            ErrorCode::CertificateNotYetValid => (
                "署名用電子証明書がまだ有効になっていません。発行直後は使えないことがあります。時間をおいてやり直すか、市区町村の窓口で確認してください。",
                "The signing certificate is not valid yet; a newly issued one may not be usable at once. Retry later or ask the municipal office.",
            ),
            ErrorCode::CertificateUntrusted => (
                "署名用電子証明書の発行元を確認できません。正規の証明書でない可能性があります。システム担当者に連絡してください。",
                "The issuer of the signing certificate cannot be confirmed; it may not be a genuine certificate. Please contact the system administrator.",
            ),
            ErrorCode::SignatureInvalid => (
                "カードの電子署名を検証できませんでした。送信はしていません。カードを置き直して最初からやり直してください。",
                "The card's signature did not verify. Nothing was sent. Place the card again and start over.",
            ),
            ErrorCode::TraceMismatch => (
                "記録ファイルと異なる操作になりました。記録と同じ入力で実行してください。",
                "The client sent something other than what the recorded trace holds. Replay with the same inputs as the recording.",
            ),
            ErrorCode::TraceInvalid => (
                "記録ファイルを読み込めません。ファイルを確かめてください。",
                "The trace file cannot be read. Check the file.",
            ),
            ErrorCode::InputUnavailable => (
                "入力を受け取れませんでした。もう一度やり直してください。",
                "The input could not be read. Please try again.",
            ),
            ErrorCode::OutboxUnavailable => (
                "送信箱（送信待ちの連携を保存する場所）を開けないか、書き込めません。システム担当者に連絡してください。",
                "The outbox, where signed bindings wait for the backend, cannot be opened or written. Please contact the system administrator.",
            ),
            ErrorCode::ConfigurationInvalid => (
                "設定に誤りがあります。詳細の項目を直してから起動し直してください。",
                "The configuration is not valid. Correct the item named in the detail and start again.",
            ),
            ErrorCode::TraceCertificateWithheld => (
                "この記録ファイルには署名用電子証明書の中身がなく（個人情報のためハッシュ値のみ）、再生はここで止まります。証明書まで再生するには、--record-certificate を付けて記録し直してください。",
                "The trace holds only a hash of the signing certificate (it carries personal data), so the replay stops here. To replay past it, record again with --record-certificate.",
            ),
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure as the user meets it. `detail` is technical (status words, indices) and never
/// holds personal data or the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowError {
    pub code: ErrorCode,
    pub message_ja: String,
    pub message_en: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tries_left: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl std::fmt::Display for FlowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message_en)?;
        if let Some(detail) = &self.detail {
            write!(f, " ({detail})")?;
        }
        Ok(())
    }
}

impl std::error::Error for FlowError {}

impl FlowError {
    pub fn new(code: ErrorCode) -> FlowError {
        let (ja, en) = code.text();
        FlowError {
            code,
            message_ja: ja.to_string(),
            message_en: en.to_string(),
            tries_left: None,
            detail: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> FlowError {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_tries_left(mut self, tries_left: u8) -> FlowError {
        self.tries_left = Some(tries_left);
        self.message_ja = format!("{}（残り{}回）", self.message_ja, tries_left);
        self.message_en = format!("{} ({} tries left)", self.message_en, tries_left);
        self
    }

    /// Prefixes a specific reason in both languages.
    fn with_reason(mut self, ja: &str, en: &str) -> FlowError {
        self.message_ja = format!("{ja}{}", self.message_ja);
        self.message_en = format!("{en} {}", self.message_en);
        self
    }
}

impl From<TransportError> for FlowError {
    fn from(e: TransportError) -> FlowError {
        let code = match &e {
            TransportError::CardRemoved => ErrorCode::CardRemoved,
            TransportError::NoCard => ErrorCode::NoCard,
            TransportError::NoReader(_) => ErrorCode::NoReader,
            TransportError::PcscUnavailable(_) => ErrorCode::PcscUnavailable,
            TransportError::CardBusy => ErrorCode::CardBusy,
            TransportError::TraceMismatch { .. } => ErrorCode::TraceMismatch,
            TransportError::TraceInvalid(_) => ErrorCode::TraceInvalid,
            TransportError::TraceCertificateWithheld { .. } => ErrorCode::TraceCertificateWithheld,
            TransportError::Reader(_) => ErrorCode::CardError,
        };
        FlowError::new(code).with_detail(e.to_string())
    }
}

impl From<CardError> for FlowError {
    fn from(e: CardError) -> FlowError {
        match e {
            CardError::Transport(t) => t.into(),
            CardError::NotJpkiCard(reason) => {
                let error = FlowError::new(ErrorCode::NotJpkiCard);
                match reason {
                    NotJpkiReason::ApplicationNotFound => error
                        .with_reason(
                            "公的個人認証のアプリケーションがありません。",
                            "The card has no JPKI application.",
                        )
                        .with_detail("JPKI application not found"),
                    NotJpkiReason::Token(kind) if kind.is_smartphone() => {
                        let (ja, en) = match kind {
                            TokenKind::IPhone => ("iPhoneです。", "This is an iPhone."),
                            _ => (
                                "Androidスマートフォンです。",
                                "This is an Android smartphone.",
                            ),
                        };
                        FlowError::new(ErrorCode::SmartphoneNotAccepted)
                            .with_reason(ja, en)
                            .with_detail(format!("token {kind:?}"))
                    }
                    NotJpkiReason::Token(kind) => {
                        let (ja, en) = match &kind {
                            TokenKind::JukiCard => (
                                "住民基本台帳カードです。マイナンバーカードを置いてください。",
                                "This is a Basic Resident Register (Juki) card; place the My Number card.",
                            ),
                            _ => (
                                "種類の分からない証明書トークンです。",
                                "The certificate token is of an unknown kind.",
                            ),
                        };
                        error
                            .with_reason(ja, en)
                            .with_detail(format!("token {kind:?}"))
                    }
                }
            }
            CardError::PasswordFormat(f) => password_format(&f),
            CardError::WrongPassword { tries_left } => {
                FlowError::new(ErrorCode::PinWrong).with_tries_left(tries_left)
            }
            CardError::PasswordBlocked => {
                let mut e = FlowError::new(ErrorCode::PinBlocked);
                e.tries_left = Some(0);
                e
            }
            CardError::LastTryRequiresConfirmation => {
                let mut e = FlowError::new(ErrorCode::LastTryRequiresConfirmation);
                e.tries_left = Some(1);
                e
            }
            CardError::NoSigningCertificate => FlowError::new(ErrorCode::NoSigningCertificate),
            CardError::VerifyInterrupted { source, tries_left } => {
                let mut e = FlowError::from(source);
                e.tries_left = tries_left;
                e.detail = Some(format!(
                    "{} during VERIFY (not resent; tries left now {})",
                    e.detail.unwrap_or_default(),
                    tries_left.map_or("unknown".into(), |n| n.to_string())
                ));
                e
            }
            CardError::Refused(what) => FlowError::new(ErrorCode::AccessRefused).with_detail(what),
            CardError::KeyNotInProfile { .. } => {
                FlowError::new(ErrorCode::CertificateInvalid).with_detail(e.to_string())
            }
            CardError::CertificateFile { fid, detail } => {
                FlowError::new(ErrorCode::CertificateInvalid)
                    .with_detail(format!("EF {fid:04X}: {detail}"))
            }
            other @ (CardError::SecurityStatusNotSatisfied { .. }
            | CardError::FileNotFound { .. }
            | CardError::BadResponse { .. }
            | CardError::Status { .. }) => {
                FlowError::new(ErrorCode::CardError).with_detail(other.to_string())
            }
        }
    }
}

fn password_format(f: &PasswordFormatError) -> FlowError {
    let (ja, en) = match f {
        PasswordFormatError::Empty => (
            "入力がありません。".to_string(),
            "Nothing was entered.".to_string(),
        ),
        PasswordFormatError::TooShort { length } | PasswordFormatError::TooLong { length } => (
            format!("{length}文字です。"),
            format!("It has {length} characters."),
        ),
        PasswordFormatError::InvalidCharacter { position } => (
            format!("{position}文字目が英字・数字ではありません。"),
            format!("Character {position} is not a letter or a digit."),
        ),
    };
    FlowError::new(ErrorCode::PinFormatInvalid)
        .with_reason(&ja, &en)
        .with_detail(f.to_string())
}

impl From<PasswordFormatError> for FlowError {
    fn from(f: PasswordFormatError) -> FlowError {
        password_format(&f)
    }
}

impl From<LicenseNumberError> for FlowError {
    fn from(e: LicenseNumberError) -> FlowError {
        let (ja, en) = match &e {
            LicenseNumberError::Empty => (
                "入力がありません。".to_string(),
                "Nothing was entered.".to_string(),
            ),
            LicenseNumberError::WrongLength { length } => (
                format!("{length}桁です（12桁が必要です）。"),
                format!("It has {length} digits; 12 are needed."),
            ),
            LicenseNumberError::NotADigit { position } => (
                format!("{position}桁目が数字ではありません。"),
                format!("Position {position} is not a digit."),
            ),
            LicenseNumberError::UnknownCommissionCode { code } => (
                format!("先頭2桁「{code}」は公安委員会コードにありません。"),
                format!("The first two digits \"{code}\" are not a commission code."),
            ),
            LicenseNumberError::CheckDigitMismatch { expected, found } => (
                format!("11桁目（チェックディジット）が{found}ですが、{expected}のはずです。"),
                format!("Digit 11 (check digit) is {found} but should be {expected}."),
            ),
        };
        FlowError::new(ErrorCode::LicenseNumberInvalid)
            .with_reason(&ja, &en)
            .with_detail(e.to_string())
    }
}

impl From<CertificateError> for FlowError {
    fn from(e: CertificateError) -> FlowError {
        FlowError::new(ErrorCode::CertificateInvalid).with_detail(e.to_string())
    }
}

impl From<TrustError> for FlowError {
    fn from(e: TrustError) -> FlowError {
        let code = if e.is_certificate_fault() {
            ErrorCode::CertificateInvalid
        } else {
            ErrorCode::CertificateUntrusted
        };
        FlowError::new(code).with_detail(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_snake_case_and_serialise_as_such() {
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{s}");
            assert_eq!(
                serde_json::to_value(code).expect("serialises"),
                serde_json::Value::String(s.into())
            );
            let (ja, en) = code.text();
            assert!(!ja.is_empty() && !en.is_empty());
        }
    }

    #[test]
    fn card_errors_map_to_codes() {
        let cases = [
            (
                CardError::WrongPassword { tries_left: 4 },
                ErrorCode::PinWrong,
            ),
            (CardError::PasswordBlocked, ErrorCode::PinBlocked),
            (
                CardError::NoSigningCertificate,
                ErrorCode::NoSigningCertificate,
            ),
            (
                CardError::LastTryRequiresConfirmation,
                ErrorCode::LastTryRequiresConfirmation,
            ),
            (CardError::Refused("x".into()), ErrorCode::AccessRefused),
            (
                CardError::NotJpkiCard(NotJpkiReason::Token(TokenKind::IPhone)),
                ErrorCode::SmartphoneNotAccepted,
            ),
            (
                CardError::NotJpkiCard(NotJpkiReason::Token(TokenKind::AndroidPhone)),
                ErrorCode::SmartphoneNotAccepted,
            ),
            (
                CardError::NotJpkiCard(NotJpkiReason::Token(TokenKind::JukiCard)),
                ErrorCode::NotJpkiCard,
            ),
            (
                CardError::KeyNotInProfile {
                    key: "ec-p256".into(),
                },
                ErrorCode::CertificateInvalid,
            ),
            (
                CardError::Transport(TransportError::CardRemoved),
                ErrorCode::CardRemoved,
            ),
            (
                CardError::Transport(TransportError::TraceCertificateWithheld { index: 9 }),
                ErrorCode::TraceCertificateWithheld,
            ),
            (
                CardError::VerifyInterrupted {
                    source: TransportError::CardRemoved,
                    tries_left: Some(3),
                },
                ErrorCode::CardRemoved,
            ),
            (
                CardError::CertificateFile {
                    fid: 1,
                    detail: "x".into(),
                },
                ErrorCode::CertificateInvalid,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(FlowError::from(error).code, code);
        }
        let wrong = FlowError::from(CardError::WrongPassword { tries_left: 4 });
        assert_eq!(wrong.tries_left, Some(4));
        assert!(wrong.message_ja.contains("残り4回"));
        assert!(wrong.message_en.contains("4 tries left"));
    }
}
