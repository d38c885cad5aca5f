//! One log line per request and one per decision, and the request metrics, from a layer
//! around every route: the handlers stay as they are.
//!
//! A request line has a request id (also sent back as `X-Request-Id`), the method, the
//! route template (`/v1/licenses/{number}/status`, never the path, which would hold a
//! license number), the status, the error code and the latency. A decision line follows for
//! the routes that decide something (a first-stage submission, the second stage, a
//! cancellation, a §8 measure) once the caller was authenticated and the server did not
//! fail: its kind and its stable code. The code is read from the JSON answer the handler
//! wrote (small bodies only); nothing else of a request or an answer is logged.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use http_body::Body as _;

use crate::metrics::{self, method_label};

/// The response header that carries the request id of the log line.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// Answers larger than this are not read for their code (only `/openapi.json` is).
const MAX_CODE_BODY: u64 = 64 * 1024;
/// The route label of a request no route matched (its path is never a label).
pub const UNMATCHED: &str = "unmatched";

/// Adds the request log, the decision log and the request metrics to every route.
pub fn instrument(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(observe))
}

/// What a route decides, when it decides something.
fn decision_kind(method: &Method, route: &str) -> Option<&'static str> {
    match (method.as_str(), route) {
        ("POST", "/v1/bindings") => Some("submission"),
        ("POST", "/v1/second-stage/{license_number}/basic4") => Some("second_stage_basic4"),
        ("POST", "/v1/second-stage/{id}/signature") => Some("second_stage_signature"),
        ("DELETE", "/v1/bindings/{id}") => Some("cancellation"),
        ("POST", "/v1/licenses/{number}/suspension") => Some("suspension"),
        ("DELETE", "/v1/licenses/{number}/suspension") => Some("suspension_lift"),
        ("DELETE", "/v1/licenses/{number}/collected") => Some("erasure"),
        _ => None,
    }
}

/// A new request id: 64 random bits in hex.
fn request_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, |p| p.as_str())
        .to_string();
    let response = next.run(request).await;
    let (mut response, code) = with_code(response).await;
    let status = response.status();
    let took = started.elapsed();
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }

    let method_label = method_label(&method);
    metrics::global().request(method_label, &route, status.as_u16(), took);
    tracing::info!(
        event = "request",
        request_id = %id,
        method = method_label,
        route = %route,
        status = status.as_u16(),
        code = code.as_deref().unwrap_or(""),
        // Microsecond precision is enough and keeps the lines short.
        latency_ms = took.as_micros() as f64 / 1000.0,
        "request"
    );

    let Some(kind) = decision_kind(&method, &route) else {
        return response;
    };
    let decided = !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
        && !status.is_server_error();
    // A submission's 2xx body is the binding, without a code: its status tells which.
    let code = code.or_else(|| match (kind, status) {
        ("submission", StatusCode::CREATED) => Some("created".into()),
        ("submission", StatusCode::OK) => Some("repeated".into()),
        _ => None,
    });
    if let (true, Some(code)) = (decided, code) {
        match kind {
            "submission" => metrics::global().submission(&code),
            "second_stage_basic4" | "second_stage_signature" => {
                metrics::global().second_stage(&code)
            }
            _ => {}
        }
        tracing::info!(
            event = "decision",
            request_id = %id,
            kind,
            route = %route,
            status = status.as_u16(),
            code = %code,
            "decision"
        );
    }
    response
}

/// The `code` of a small JSON answer, and the answer rebuilt around the same bytes.
async fn with_code(response: Response) -> (Response, Option<String>) {
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let small = response
        .body()
        .size_hint()
        .upper()
        .is_some_and(|n| n <= MAX_CODE_BODY);
    if !is_json || !small {
        return (response, None);
    }
    let (parts, body) = response.into_parts();
    // The body is already whole in memory (a JSON answer); failing to read it cannot happen
    // short of a bug, and then the answer goes out empty rather than not at all.
    let bytes = axum::body::to_bytes(body, MAX_CODE_BODY as usize)
        .await
        .unwrap_or_default();
    let code = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("code")?.as_str().map(str::to_string))
        // Codes are short snake_case words; anything else is not logged.
        .filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
    (Response::from_parts(parts, Body::from(bytes)), code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_routes() {
        assert_eq!(
            decision_kind(&Method::POST, "/v1/bindings"),
            Some("submission")
        );
        assert_eq!(
            decision_kind(&Method::GET, "/v1/licenses/{number}/status"),
            None
        );
        assert_eq!(decision_kind(&Method::GET, UNMATCHED), None);
        let id = request_id();
        assert_eq!(id.len(), 16);
        assert_ne!(id, request_id());
    }
}
