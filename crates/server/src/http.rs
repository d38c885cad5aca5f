//! The HTTP API (`docs/openapi.json`): routes, terminal authentication, and the mapping of
//! the library's decisions to status codes and JSON bodies. Every error body is an
//! `ApiError`, including those for unreadable or oversized requests.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use mynalink_link::api::BindingRequest;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::code::{Code, Rejection};
use crate::credentials::Credentials;
use crate::measures::{self, SuspensionRequest};
use crate::pool::{PoolError, StorePool};
use crate::second_stage::{receive_basic4, submit_signature, Basic4Request, SignatureRequest};
use crate::status::{answer_status, cancel_binding, CallerKind};
use crate::submission::{reject_unreadable, submit_async, Outcome, SubmissionConfig};
use crate::tokens::bearer_token;

/// The largest request body read. A real submission is about 4 KiB of base64.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The API description served at `GET /openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../../../docs/openapi.json");

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub pool: StorePool,
    pub config: Arc<SubmissionConfig>,
    /// The terminal, Mynaportal and admin tokens; SIGHUP reloads them.
    pub credentials: Arc<Credentials>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/bindings", post(post_binding))
        .route("/v1/bindings/{id}", delete(delete_binding))
        .route("/v1/licenses/{number}/status", get(get_status))
        .route(
            "/v1/licenses/{number}/suspension",
            post(post_suspension).delete(delete_suspension),
        )
        .route("/v1/licenses/{number}/collected", delete(delete_collected))
        .route(
            "/v1/second-stage/{license_number}/basic4",
            post(post_basic4),
        )
        .route("/v1/second-stage/{id}/signature", post(post_signature))
        .route("/v1/whoami", get(whoami))
        .route("/healthz", get(healthz))
        .route("/readyz", get(crate::readiness::readyz))
        .route("/openapi.json", get(openapi))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// A response carrying an [`ApiError`] body.
fn error_response(status: StatusCode, rejection: &Rejection) -> Response {
    (status, Json(rejection.to_api_error())).into_response()
}

fn rejection_response(rejection: &Rejection) -> Response {
    let status =
        StatusCode::from_u16(rejection.http_status()).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
    let mut response = error_response(status, rejection);
    if rejection.code == Code::RevocationUnavailable {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(REVOCATION_RETRY_AFTER_SECS));
    }
    response
}

/// `Retry-After` of a 503 `revocation_unavailable`, in seconds: a responder that is down
/// seldom comes back within seconds.
pub const REVOCATION_RETRY_AFTER_SECS: u32 = 60;

/// `Retry-After` of a 503 `server_busy`, in seconds: a little longer than a request waits
/// for a database connection.
pub const RETRY_AFTER_SECS: u32 = 5;

/// The database failed: logged for the operator (the error's text never holds a value, see
/// `store::pg`). Answered 503 `server_busy` with `Retry-After` when it only had to wait too
/// long (no connection free, a lock or statement timeout), else 500; never with the cause.
fn server_error(error: PoolError) -> Response {
    tracing::error!(event = "database_error", error = %error, "the database failed");
    if !error.is_busy() {
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &Rejection::new(Code::ServerError),
        );
    }
    let detail = match error {
        PoolError::Busy => "no database connection was free in time",
        _ => "the database waited too long for a lock or a statement",
    };
    let mut response = error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &Rejection::with_detail(Code::ServerBusy, detail),
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    response
}

/// The authenticated terminal's id.
pub struct Terminal(pub String);

/// 401 with `WWW-Authenticate: Bearer`.
pub struct Unauthenticated;

impl IntoResponse for Unauthenticated {
    fn into_response(self) -> Response {
        let mut response = error_response(
            StatusCode::UNAUTHORIZED,
            &Rejection::new(Code::Unauthenticated),
        );
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        response
    }
}

/// The authenticated Mynaportal caller's id.
pub struct Mynaportal(pub String);

/// An authenticated administrator's id (§8 measures).
pub struct Admin(pub String);

/// Any kind of caller (read-only endpoints).
pub enum Caller {
    Terminal(String),
    Mynaportal(String),
    Admin(String),
}

/// Who may cancel a binding (§6: the holder through Mynaportal; the operator's
/// administrators): not a terminal.
pub struct Canceller(pub String);

/// Why a caller was refused: no valid credential (401) or one of the other kind (403).
pub enum AuthRefused {
    Unauthenticated,
    WrongKind,
}

impl IntoResponse for AuthRefused {
    fn into_response(self) -> Response {
        match self {
            AuthRefused::Unauthenticated => Unauthenticated.into_response(),
            AuthRefused::WrongKind => error_response(
                StatusCode::FORBIDDEN,
                &Rejection::new(Code::CredentialNotAllowed),
            ),
        }
    }
}

fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, AuthRefused> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or(AuthRefused::Unauthenticated)?;
    let token = bearer_token(header.as_bytes()).ok_or(AuthRefused::Unauthenticated)?;
    let credentials = state.credentials.current();
    if let Some(id) = credentials.terminals.authenticate(token) {
        return Ok(Caller::Terminal(id.to_string()));
    }
    if let Some(id) = credentials.mynaportal.authenticate(token) {
        return Ok(Caller::Mynaportal(id.to_string()));
    }
    if let Some(id) = credentials.admins.authenticate(token) {
        return Ok(Caller::Admin(id.to_string()));
    }
    Err(AuthRefused::Unauthenticated)
}

impl FromRequestParts<AppState> for Terminal {
    type Rejection = AuthRefused;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match authenticate(parts, state)? {
            Caller::Terminal(id) => Ok(Terminal(id)),
            Caller::Mynaportal(_) | Caller::Admin(_) => Err(AuthRefused::WrongKind),
        }
    }
}

impl FromRequestParts<AppState> for Mynaportal {
    type Rejection = AuthRefused;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match authenticate(parts, state)? {
            Caller::Mynaportal(id) => Ok(Mynaportal(id)),
            Caller::Terminal(_) | Caller::Admin(_) => Err(AuthRefused::WrongKind),
        }
    }
}

impl FromRequestParts<AppState> for Canceller {
    type Rejection = AuthRefused;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match authenticate(parts, state)? {
            Caller::Mynaportal(id) | Caller::Admin(id) => Ok(Canceller(id)),
            Caller::Terminal(_) => Err(AuthRefused::WrongKind),
        }
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = AuthRefused;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match authenticate(parts, state)? {
            Caller::Admin(id) => Ok(Admin(id)),
            Caller::Terminal(_) | Caller::Mynaportal(_) => Err(AuthRefused::WrongKind),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AuthRefused;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        authenticate(parts, state)
    }
}

fn now() -> OffsetDateTime {
    // Stored times have whole seconds.
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

async fn post_binding(
    State(state): State<AppState>,
    Terminal(terminal): Terminal,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            // Too large (413) or cut off: the body never arrived whole.
            let detail = rejection.body_text();
            return error_response(
                rejection.status(),
                &Rejection::with_detail(Code::MalformedRequest, detail),
            );
        }
    };
    let config = Arc::clone(&state.config);
    let result = match serde_json::from_slice::<BindingRequest>(&body) {
        Ok(request) => submit_async(&state.pool, config, request, terminal, now()).await,
        Err(e) => {
            // serde's message may quote the input; only its position is kept.
            let detail = format!(
                "the body is not a binding request (line {}, column {})",
                e.line(),
                e.column()
            );
            state
                .pool
                .run(move |store| reject_unreadable(store, &config, &terminal, detail, now()))
                .await
        }
    };
    match result {
        Ok(Outcome::Accepted(accepted)) => {
            let status = if accepted.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, Json(accepted.body)).into_response()
        }
        Ok(Outcome::Rejected(rejection)) => rejection_response(&rejection),
        Err(e) => server_error(e),
    }
}

async fn get_status(
    State(state): State<AppState>,
    caller: Caller,
    Path(number): Path<String>,
) -> Response {
    let (kind, caller) = match caller {
        Caller::Terminal(id) => (CallerKind::Terminal, id),
        Caller::Mynaportal(id) => (CallerKind::Mynaportal, id),
        Caller::Admin(id) => (CallerKind::Admin, id),
    };
    let config = Arc::clone(&state.config);
    let result = state
        .pool
        .run(move |store| answer_status(store, &config.status_reads, kind, &caller, &number, now()))
        .await;
    match result {
        Ok(Ok(status)) => Json(status).into_response(),
        // A record that does not exist is a missing resource here, not a refused request.
        Ok(Err(rejection)) if rejection.code == Code::LicenseNotFound => {
            error_response(StatusCode::NOT_FOUND, &rejection)
        }
        Ok(Err(rejection)) => rejection_response(&rejection),
        Err(e) => server_error(e),
    }
}

/// The 200 body of `DELETE /v1/bindings/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancellationBody {
    /// `cancelled`, or `already_cancelled` when nothing changed.
    pub code: String,
    pub binding_id: String,
    pub license_number: String,
    pub cancelled_at: Option<String>,
}

async fn delete_binding(
    State(state): State<AppState>,
    Canceller(caller): Canceller,
    Path(binding_id): Path<String>,
) -> Response {
    let result = state
        .pool
        .run(move |store| cancel_binding(store, &binding_id, Some(&caller), now()))
        .await;
    match result {
        Ok(cancellation) => match cancellation.binding {
            Some(binding) if cancellation.code.is_success() => Json(CancellationBody {
                code: cancellation.code.as_str().to_string(),
                binding_id: binding.binding_id,
                license_number: binding.license_number,
                cancelled_at: binding.cancelled_at,
            })
            .into_response(),
            _ => rejection_response(&Rejection::new(cancellation.code)),
        },
        Err(e) => server_error(e),
    }
}

/// A JSON body of type `T`, or the response refusing it (never audited content).
fn json_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, Box<Response>> {
    let body = body.map_err(|rejection| {
        let detail = rejection.body_text();
        Box::new(error_response(
            rejection.status(),
            &Rejection::with_detail(Code::MalformedRequest, detail),
        ))
    })?;
    serde_json::from_slice(&body).map_err(|e| {
        // serde's message may quote the input; only its position is kept.
        let detail = format!(
            "the body is not the expected JSON (line {}, column {})",
            e.line(),
            e.column()
        );
        Box::new(rejection_response(&Rejection::with_detail(
            Code::MalformedRequest,
            detail,
        )))
    })
}

fn second_stage_response<T: Serialize>(
    result: Result<Result<T, Rejection>, PoolError>,
    success: StatusCode,
) -> Response {
    match result {
        Ok(Ok(body)) => (success, Json(body)).into_response(),
        Ok(Err(rejection)) => rejection_response(&rejection),
        Err(e) => server_error(e),
    }
}

async fn post_basic4(
    State(state): State<AppState>,
    Mynaportal(caller): Mynaportal,
    Path(license_number): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request = match json_body::<Basic4Request>(body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let config = Arc::clone(&state.config);
    let result = state
        .pool
        .run(move |store| receive_basic4(store, &config, &license_number, &request, &caller, now()))
        .await;
    second_stage_response(result, StatusCode::ACCEPTED)
}

async fn post_signature(
    State(state): State<AppState>,
    Mynaportal(caller): Mynaportal,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request = match json_body::<SignatureRequest>(body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let config = Arc::clone(&state.config);
    let result = state
        .pool
        .run(move |store| submit_signature(store, &config, &id, &request, &caller, now()))
        .await;
    second_stage_response(result, StatusCode::OK)
}

/// A §8 measure's answer: `success` with the body, or the refusal (404 for a license that
/// is not on record).
fn measure_response<T: Serialize>(
    result: Result<Result<T, Rejection>, PoolError>,
    success: StatusCode,
) -> Response {
    match result {
        Ok(Ok(body)) => (success, Json(body)).into_response(),
        Ok(Err(rejection)) if rejection.code == Code::LicenseNotFound => {
            error_response(StatusCode::NOT_FOUND, &rejection)
        }
        Ok(Err(rejection)) => rejection_response(&rejection),
        Err(e) => server_error(e),
    }
}

async fn post_suspension(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(number): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request = match json_body::<SuspensionRequest>(body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let result = state
        .pool
        .run(move |store| measures::suspend(store, &number, &request, &admin, now()))
        .await;
    match result {
        Ok(Ok(suspended)) => {
            let status = if suspended.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, Json(suspended.body)).into_response()
        }
        other => measure_response(other.map(|r| r.map(|s| s.body)), StatusCode::OK),
    }
}

async fn delete_suspension(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(number): Path<String>,
) -> Response {
    let result = state
        .pool
        .run(move |store| measures::lift(store, &number, &admin, now()))
        .await;
    measure_response(result, StatusCode::OK)
}

async fn delete_collected(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(number): Path<String>,
) -> Response {
    let result = state
        .pool
        .run(move |store| measures::erase(store, &number, &admin, now()))
        .await;
    measure_response(result, StatusCode::OK)
}

/// `GET /v1/whoami`: which id and kind the caller's token maps to (for a terminal's
/// `mynalink doctor`). Nothing else is said; an unknown token is 401 as everywhere.
async fn whoami(caller: Caller) -> Response {
    let (id, kind) = match caller {
        Caller::Terminal(id) => (id, "terminal"),
        Caller::Mynaportal(id) => (id, "mynaportal"),
        Caller::Admin(id) => (id, "admin"),
    };
    Json(mynalink_link::backend::Identity {
        id,
        kind: kind.to_string(),
    })
    .into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

async fn openapi() -> Response {
    (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        OPENAPI_JSON,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_document_lists_every_route_and_code() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).expect("valid JSON");
        assert!(doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")));
        let paths = doc["paths"].as_object().expect("paths");
        for path in [
            "/v1/bindings",
            "/v1/bindings/{id}",
            "/v1/licenses/{number}/status",
            "/v1/licenses/{number}/suspension",
            "/v1/licenses/{number}/collected",
            "/v1/whoami",
            "/v1/second-stage/{license_number}/basic4",
            "/v1/second-stage/{id}/signature",
            "/healthz",
            "/readyz",
            "/openapi.json",
        ] {
            assert!(paths.contains_key(path), "{path}");
        }
        let codes: Vec<&str> = doc["components"]["schemas"]["ApiError"]["properties"]["code"]
            ["enum"]
            .as_array()
            .expect("code enum")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        for code in Code::ALL.iter().filter(|c| !c.is_success()) {
            assert!(codes.contains(&code.as_str()), "{code} missing");
        }
        assert_eq!(
            codes.len(),
            Code::ALL.iter().filter(|c| !c.is_success()).count()
        );
    }
}
