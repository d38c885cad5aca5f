//! Transports carry command APDUs to a card and bring the response back, nothing more.
//! Everything that interprets status words lives above, in [`crate::channel`].

mod pcsc;
mod recorder;
mod replay;

pub use self::pcsc::{list_readers, resolve_reader, PcscTransport, ReaderInfo};
pub use recorder::{CertificateBytes, Recorder, TraceHandle};
pub use replay::Replay;

use thiserror::Error;

/// Errors below the APDU level: the card, the reader, the PC/SC service or a trace file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransportError {
    /// The card left the reader (or the field) during the exchange.
    #[error("the card was removed")]
    CardRemoved,
    /// The reader is there but holds no card.
    #[error("no card in the reader")]
    NoCard,
    /// No reader is attached, or the one named does not exist.
    #[error("no card reader{}", .0.as_deref().map(|n| format!(" named \"{n}\"")).unwrap_or_default())]
    NoReader(Option<String>),
    /// The PC/SC service (pcscd / WinSCard) is not running or went away.
    #[error("the PC/SC service is not available: {0}")]
    PcscUnavailable(String),
    /// Another program holds the card exclusively.
    #[error("the card is in use by another program")]
    CardBusy,
    /// A replayed trace expected a different command at this point.
    #[error("trace mismatch at exchange {index}: expected {expected}, got {actual}")]
    TraceMismatch {
        index: usize,
        expected: String,
        actual: String,
    },
    /// A trace file could not be read or is not a valid trace.
    #[error("invalid trace: {0}")]
    TraceInvalid(String),
    /// A replayed trace reached the signing certificate, whose bytes were not recorded.
    #[error("the trace holds only the SHA-256 of the signing certificate (exchange {index}); it was recorded without --record-certificate")]
    TraceCertificateWithheld { index: usize },
    /// Any other reader or driver failure, kept with its description.
    #[error("reader error: {0}")]
    Reader(String),
}

/// A way to exchange APDUs with one card in one session.
///
/// `transmit` gets the complete command APDU and returns the complete response APDU
/// (data followed by SW1 SW2) exactly as the card gave it. A response shorter than
/// two bytes must be reported as [`TransportError::CardRemoved`].
pub trait Transport: Send {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError>;

    /// The card's answer to reset.
    fn atr(&self) -> &[u8];

    /// The reader's name as the user would pick it.
    fn reader_name(&self) -> &str;

    /// Whether a card is present right now.
    fn card_present(&mut self) -> Result<bool, TransportError>;

    /// Ends the card session so that a verified password does not outlive it
    /// (PC/SC: disconnect with `SCARD_UNPOWER_CARD`). Further transmits fail.
    fn end_session(&mut self) -> Result<(), TransportError> {
        Ok(())
    }
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        (**self).transmit(command)
    }
    fn atr(&self) -> &[u8] {
        (**self).atr()
    }
    fn reader_name(&self) -> &str {
        (**self).reader_name()
    }
    fn card_present(&mut self) -> Result<bool, TransportError> {
        (**self).card_present()
    }
    fn end_session(&mut self) -> Result<(), TransportError> {
        (**self).end_session()
    }
}

/// Turns a raw response into `Err(CardRemoved)` when it cannot even hold a status word.
pub(crate) fn require_status_word(response: Vec<u8>) -> Result<Vec<u8>, TransportError> {
    if response.len() < 2 {
        Err(TransportError::CardRemoved)
    } else {
        Ok(response)
    }
}
