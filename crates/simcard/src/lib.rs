//! A software JPKI card (the My Number card's 公的個人認証 application) with a generated
//! test identity, for demos, CI and tests.
//!
//! - [`der`]: a small DER writer used to build the certificates.
//! - [`identity`]: deterministic test roots, end-entity certificates in the JPKI profile and
//!   a fictional holder.
//! - [`card`]: [`SimulatedCard`], the APDU state machine.
//! - [`SimTransport`]: the card behind the card crate's `Transport` trait.

pub mod card;
pub mod der;
pub mod identity;
mod transport;
pub mod vpcd;

pub use card::{SimOptions, SimulatedCard};
pub use identity::{
    sign_test_root_der, test_identity, TestHolder, TestIdentity, Validity,
    AUTH_TEST_ROOT_SHA256_HEX, SIGN_TEST_ROOT_SHA256_HEX,
};
pub use transport::{SimHandle, SimTransport};
