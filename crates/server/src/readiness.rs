//! `GET /readyz`: whether this server can serve requests now, for a load balancer or a
//! supervisor. 200 only when the database answers within [`READY_TIMEOUT`] and its schema is
//! the version this build knows; else 503 with a stable code. `/healthz` stays the liveness
//! check (the process answers), which must not fail because the database is away: a
//! restart would not bring it back.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::http::AppState;
use crate::store::latest_schema_version;

/// How long the database has to answer.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The body of `/readyz`, both 200 and 503.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// `ready`, `database_unavailable` or `schema_not_current`.
    pub code: String,
    pub message_ja: String,
    pub message_en: String,
    /// The database's schema version, when it answered.
    pub schema_version: Option<i64>,
    /// The version this server needs.
    pub expected_schema_version: i64,
    /// Whether holders' certificates are checked for revocation (false only under
    /// `--revocation off`, which a production server never runs with).
    pub revocation_checking: bool,
    /// How revocation is checked: the mode and sources, then each CRL's state. Said, not
    /// judged: an OCSP responder's state is known only when it is asked.
    pub revocation: Vec<String>,
}

/// Why a server is not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    DatabaseUnavailable,
    SchemaNotCurrent,
}

/// What `/readyz` answers for a database that gave `version` (or did not answer).
pub fn assess(version: Option<i64>) -> (StatusCode, Readiness) {
    let expected = latest_schema_version();
    let not_ready = match version {
        None => Some(NotReady::DatabaseUnavailable),
        Some(v) if v != expected => Some(NotReady::SchemaNotCurrent),
        Some(_) => None,
    };
    let (status, code, ja, en) = match not_ready {
        None => (
            StatusCode::OK,
            "ready",
            "データベースが応答し、スキーマは最新です。".to_string(),
            "The database answers and its schema is current.".to_string(),
        ),
        Some(NotReady::DatabaseUnavailable) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            format!(
                "データベースが{}秒以内に応答しません。データベースが動いていて、このサーバーから\
                 接続できることを確認してください(原因はサーバーのログにあります)。",
                READY_TIMEOUT.as_secs()
            ),
            format!(
                "The database did not answer within {} s. Check that it runs and that this \
                 server can reach it (the cause is in the server's log).",
                READY_TIMEOUT.as_secs()
            ),
        ),
        Some(NotReady::SchemaNotCurrent) => {
            let found = version.unwrap_or_default();
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "schema_not_current",
                format!(
                    "データベースのスキーマはバージョン{found}ですが、このサーバーには\
                     バージョン{expected}が必要です。古ければサーバーを再起動すると移行され\
                     ます。新しければこのバージョンに合うサーバーを使ってください。"
                ),
                format!(
                    "The database schema is at version {found}; this server needs version \
                     {expected}. If it is older, restarting the server migrates it; if newer, \
                     run the server release that matches it."
                ),
            )
        }
    };
    (
        status,
        Readiness {
            code: code.to_string(),
            message_ja: ja,
            message_en: en,
            schema_version: version,
            expected_schema_version: expected,
            revocation_checking: false,
            revocation: Vec::new(),
        },
    )
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    let asked = state.pool.run(|store| store.schema_version());
    let version = match tokio::time::timeout(READY_TIMEOUT, asked).await {
        Ok(Ok(version)) => Some(version),
        Ok(Err(error)) => {
            tracing::warn!(event = "not_ready", error = %error, "readiness: the database failed");
            None
        }
        Err(_) => {
            tracing::warn!(
                event = "not_ready",
                "readiness: the database did not answer in time"
            );
            None
        }
    };
    let (status, mut body) = assess(version);
    let revocation = &state.config.revocation;
    body.revocation_checking = revocation.is_configured();
    body.revocation = revocation.readiness(time::OffsetDateTime::now_utc()).1;
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_current_schema_is_ready() {
        let latest = latest_schema_version();
        let (status, body) = assess(Some(latest));
        assert_eq!((status, body.code.as_str()), (StatusCode::OK, "ready"));
        for version in [latest - 1, 0, latest + 1] {
            let (status, body) = assess(Some(version));
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(body.code, "schema_not_current");
            assert_eq!(body.schema_version, Some(version));
            assert_eq!(body.expected_schema_version, latest);
            assert!(body.message_en.contains(&format!("version {version}")));
        }
        let (status, body) = assess(None);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body.code, "database_unavailable");
        assert!(!body.message_ja.is_empty());
    }
}
