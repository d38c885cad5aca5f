//! The linking domain of mynalink: license numbers, the signing certificate and its trust,
//! the signed statement, errors as the user meets them, and the first-stage session.

pub mod api;
pub mod backend;
pub mod certificate;
pub mod error;
pub mod license;
pub mod outbox;
pub mod private_file;
pub mod public_key;
pub mod seal;
pub mod sender;
pub mod session;
pub mod statement;
pub mod trust;
pub mod upload;

pub use error::{ErrorCode, FlowError};
pub use session::{FirstStage, FlowInputs, SignedStatement, Step, Timings, Warning};
