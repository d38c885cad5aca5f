//! The card layer of mynalink: transports (PC/SC, replay, recorder), APDUs and status
//! words, the JPKI application's commands, the card profiles (application, files, token labels
//! and key kind of each card generation), the signing-password rules, and the allow-list
//! that keeps the client away from anything holding the individual number.

pub mod algorithm;
pub mod allowlist;
pub mod apdu;
pub mod channel;
pub mod error;
pub mod events;
pub mod jpki;
pub mod password;
pub mod profile;
pub mod reader_kind;
pub mod trace;
pub mod transport;

pub use algorithm::{HashAlgorithm, KeyKind, SignatureAlgorithm};
pub use error::{CardError, NotJpkiReason, TokenKind};
pub use jpki::{ExtendedLength, JpkiCard, PasswordStatus, SignScheme};
pub use password::{PasswordFormatError, SigningPassword};
pub use profile::CardProfile;
pub use reader_kind::ReaderKind;
pub use transport::{Transport, TransportError};
