//! A software JPKI card (the My Number card's 公的個人認証 application) with a generated
//! test identity, for demos, CI and tests.
//!
//! - [`der`]: a small DER writer used to build the certificates.
//! - [`identity`]: deterministic test roots, end-entity certificates in the JPKI profile and
//!   a fictional holder, for each signing key the card can carry ([`SimKey`]).
//! - [`pki`]: test keys (RSA, ECDSA P-256/P-384) and the signatures they make.
//! - [`card`]: [`SimulatedCard`], the APDU state machine.
//! - [`SimTransport`]: the card behind the card crate's `Transport` trait.

pub mod card;
pub mod der;
pub mod identity;
pub mod pki;
mod transport;
pub mod vpcd;

pub use card::{SimOptions, SimulatedCard};
pub use identity::{
    sign_test_root_der, sign_test_root_der_for, test_chain, test_identity, test_identity_with,
    ChainSpec, SimKey, TestChain, TestHolder, TestIdentity, Validity, AUTH_TEST_ROOT_SHA256_HEX,
    SIGN_TEST_ROOT_EC_P384_SHA256_HEX, SIGN_TEST_ROOT_SHA256_HEX,
};
pub use pki::TestKey;
pub use transport::{SimHandle, SimTransport};
