//! The reference backend of mynalink: it checks first-stage submissions against the
//! linking rules and keeps the binding of a license record to the holder's signing
//! certificate (issuer key id and serial number).
//!
//! - [`submission`]: the checks of `POST /v1/bindings` and what they store;
//! - [`second_stage`]: the second stage from Mynaportal (§4); [`basic4_key`]: the key that
//!   hashes its card-info basic-4, which is kept only as hashes;
//! - [`status`]: `GET /v1/licenses/{number}/status` and cancellation (§6);
//! - [`measures`]: §8 suspension of linking for a license and erasure of what was collected;
//! - [`import`]: license records from CSV;
//! - [`store`]: the schema, its migrations and every database operation;
//! - [`code`]: the stable decision codes with their messages;
//! - [`identity`]: comparing the certificate's holder with the license record;
//! - [`http`]: the routes, which authenticate the terminal ([`tokens`]), decode JSON and
//!   map these results to responses; [`pool`] runs the blocking database calls;
//! - [`revocation`]: OCSP and CRL checks of the holder's certificate; [`recheck`]: the
//!   later re-checks that mark bindings stale;
//! - [`serve`]: the `serve` command's options, TLS and accept loop; [`connections`] caps
//!   connections and times requests out;
//! - [`credentials`]: the token files, reloaded on SIGHUP; [`token_admin`]: the `token`
//!   command that adds, revokes and lists tokens in them;
//! - [`logging`], [`observe`], [`metrics`], [`readiness`]: the service's log, its request
//!   and decision lines, Prometheus metrics and `/readyz`;
//! - [`scratch`]: throw-away databases for tests and load tests.

pub mod basic4_key;
pub mod code;
pub mod connections;
pub mod credentials;
pub mod embedded;
pub mod http;
pub mod identity;
pub mod import;
pub mod logging;
pub mod measures;
pub mod metrics;
pub mod observe;
pub mod pool;
pub mod readiness;
pub mod recheck;
pub mod revocation;
pub mod scratch;
pub mod second_stage;
pub mod secret_file;
pub mod serve;
pub mod status;
pub mod store;
pub mod submission;
pub mod token_admin;
pub mod tokens;

pub use code::{Code, Rejection};
pub use store::{DatabaseUrl, Store, StoreError};
pub use submission::{submit, AbusePolicy, Accepted, Outcome, SubmissionConfig};

/// The current time as stored: RFC 3339 UTC, whole seconds.
pub fn now_text() -> String {
    mynalink_link::statement::format_time(time::OffsetDateTime::now_utc())
}
