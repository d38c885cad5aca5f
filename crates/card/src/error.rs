//! What can go wrong at the card layer, in terms the session can act on.

use crate::apdu::StatusWord;
use crate::password::PasswordFormatError;
use crate::transport::TransportError;
use thiserror::Error;

/// What kind of token answered as the JPKI application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind {
    /// A label of a card profile (`JPKIAPICCTOKEN2`): a physical My Number card — the only
    /// kind the flow accepts.
    MyNumberCard,
    /// `JPKIAPICCTOKEN`: an old Basic Resident Register (住基) card.
    JukiCard,
    /// `JPKIAPGPSETOKEN`: the smartphone certificate on Android.
    AndroidPhone,
    /// `JPKIAPIOSTOKEN`: the smartphone certificate on iPhone.
    IPhone,
    /// Anything else; the label is kept printable and short.
    Unknown(String),
}

impl TokenKind {
    /// Classifies the first 32 bytes of EF 0006 (trailing spaces and NULs ignored), by the
    /// labels of the card-profile table.
    pub fn from_label(raw: &[u8]) -> TokenKind {
        let label = crate::profile::trim_label(raw);
        if crate::profile::PROFILES
            .iter()
            .any(|p| p.token_labels.iter().any(|l| l.as_bytes() == label))
        {
            return TokenKind::MyNumberCard;
        }
        if let Some((_, kind)) = crate::profile::OTHER_TOKENS
            .into_iter()
            .find(|(l, _)| l.as_bytes() == label)
        {
            return kind;
        }
        TokenKind::Unknown(
            label
                .iter()
                .take(32)
                .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
                .collect(),
        )
    }

    /// A smartphone's signing certificate (Android or iPhone), which the first stage does
    /// not take.
    pub fn is_smartphone(&self) -> bool {
        matches!(self, TokenKind::AndroidPhone | TokenKind::IPhone)
    }
}

/// Why the card is not usable for the first stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotJpkiReason {
    /// The JPKI application is not on the card (not a My Number card).
    ApplicationNotFound,
    /// The JPKI application is there but the token is not a physical My Number card.
    Token(TokenKind),
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CardError {
    #[error(transparent)]
    Transport(#[from] TransportError),

    #[error("not a My Number card: {0:?}")]
    NotJpkiCard(NotJpkiReason),

    #[error(transparent)]
    PasswordFormat(#[from] PasswordFormatError),

    #[error("wrong signing password, {tries_left} tries left")]
    WrongPassword { tries_left: u8 },

    #[error("the signing password is blocked")]
    PasswordBlocked,

    #[error("only one try is left; the attempt needs explicit confirmation")]
    LastTryRequiresConfirmation,

    #[error("the card holds no signing certificate")]
    NoSigningCertificate,

    /// The connection failed while VERIFY was under way; the retry counter was read again
    /// (when possible) instead of repeating the VERIFY.
    #[error("{source} during password verification")]
    VerifyInterrupted {
        source: TransportError,
        tries_left: Option<u8>,
    },

    #[error("security status not satisfied ({command})")]
    SecurityStatusNotSatisfied { command: &'static str },

    #[error("file {fid:04X} not found")]
    FileNotFound { fid: u16 },

    /// Refused by the allow-list before anything reached the card.
    #[error("refused before reaching the card: {0}")]
    Refused(String),

    /// The signing certificate's key is of a kind no profile matching this card signs with
    /// (for example an EC key behind a token label that only RSA cards carry).
    #[error("the signing certificate has a {key} key, which no profile of this card uses")]
    KeyNotInProfile { key: String },

    /// A certificate file whose DER header or length does not hold up.
    #[error("certificate file {fid:04X}: {detail}")]
    CertificateFile { fid: u16, detail: String },

    /// The card answered something that does not fit the protocol.
    #[error("unexpected card response to {command}: {detail}")]
    BadResponse {
        command: &'static str,
        detail: String,
    },

    /// Any other status word, kept as it came.
    #[error("{command} failed with status {sw}")]
    Status {
        command: &'static str,
        sw: StatusWord,
    },
}

impl CardError {
    /// The status word behind this error, when there is one.
    pub fn status_word(&self) -> Option<StatusWord> {
        match self {
            CardError::Status { sw, .. } => Some(*sw),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_labels() {
        let mut label = b"JPKIAPICCTOKEN2".to_vec();
        label.resize(32, b' ');
        assert_eq!(TokenKind::from_label(&label), TokenKind::MyNumberCard);
        let mut label = b"JPKIAPICCTOKEN".to_vec();
        label.resize(32, 0);
        assert_eq!(TokenKind::from_label(&label), TokenKind::JukiCard);
        assert_eq!(
            TokenKind::from_label(b"JPKIAPGPSETOKEN \0"),
            TokenKind::AndroidPhone
        );
        assert_eq!(TokenKind::from_label(b"JPKIAPIOSTOKEN"), TokenKind::IPhone);
        assert_eq!(
            TokenKind::from_label(b"OTHER\x01"),
            TokenKind::Unknown("OTHER?".into())
        );
        assert_eq!(
            TokenKind::from_label(b""),
            TokenKind::Unknown(String::new())
        );
    }
}
