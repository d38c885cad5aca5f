//! Prometheus metrics, written in the text exposition format by hand (a few counters and
//! one histogram do not need a library), served at `/metrics` on a listener of its own
//! (`--metrics-listen`), apart from the API so that it never needs a token and can stay on
//! loopback.
//!
//! Every label value comes from a small set the server defines (route templates, status
//! codes, decision codes, revocation results), never from a request, so neither personal
//! data nor an unbounded number of series can enter.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::pool::{StorePool, MAX_CONNECTIONS};

/// Upper bounds of the request-duration buckets, in seconds (`+Inf` is added).
pub const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process's counters; [`global`] is the one the server records into and serves.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    /// (method, route template, status) → requests.
    requests: BTreeMap<(&'static str, String, u16), u64>,
    /// Route template → durations.
    durations: BTreeMap<String, Histogram>,
    /// First-stage submission outcome code → count.
    submissions: BTreeMap<String, u64>,
    /// Second-stage outcome code → count.
    second_stage: BTreeMap<String, u64>,
    /// Revocation check result → count.
    revocation_checks: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Per bucket of [`DURATION_BUCKETS`], not cumulative.
    buckets: [u64; DURATION_BUCKETS.len()],
    count: u64,
    sum: f64,
}

static GLOBAL: Metrics = Metrics::new();

/// The metrics of this process.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

/// Counts one revocation check of a certificate; `result` is one of a few fixed words the
/// checker defines (e.g. `good`, `revoked`, `unknown`, `error`), never a certificate value.
pub fn record_revocation_check(result: &'static str) {
    global().revocation_check(result);
}

/// An HTTP method as a label: the usual ones, else `other` (a client may send any token).
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

impl Metrics {
    pub const fn new() -> Metrics {
        Metrics {
            inner: Mutex::new(Counters {
                requests: BTreeMap::new(),
                durations: BTreeMap::new(),
                submissions: BTreeMap::new(),
                second_stage: BTreeMap::new(),
                revocation_checks: BTreeMap::new(),
            }),
        }
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        // Counters stay consistent enough after a panic elsewhere: keep counting.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One answered request: `route` is the route template (or `unmatched`).
    pub fn request(&self, method: &'static str, route: &str, status: u16, took: Duration) {
        let mut c = self.counters();
        *c.requests
            .entry((method, route.to_string(), status))
            .or_default() += 1;
        let histogram = c.durations.entry(route.to_string()).or_default();
        let seconds = took.as_secs_f64();
        if let Some(i) = DURATION_BUCKETS.iter().position(|le| seconds <= *le) {
            histogram.buckets[i] += 1;
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    /// A first-stage submission's outcome (its stable code).
    pub fn submission(&self, code: &str) {
        *self
            .counters()
            .submissions
            .entry(code.to_string())
            .or_default() += 1;
    }

    /// A second-stage call's outcome (its stable code).
    pub fn second_stage(&self, code: &str) {
        *self
            .counters()
            .second_stage
            .entry(code.to_string())
            .or_default() += 1;
    }

    pub fn revocation_check(&self, result: &'static str) {
        *self
            .counters()
            .revocation_checks
            .entry(result.to_string())
            .or_default() += 1;
    }

    /// The exposition text; `pool_in_use` is the database connections in use now.
    pub fn render(&self, pool_in_use: usize) -> String {
        let c = self.counters();
        let mut out = String::new();
        header(
            &mut out,
            "mynalink_requests_total",
            "counter",
            "HTTP requests answered, by method, route template and status.",
        );
        for ((method, route, status), n) in &c.requests {
            let _ = writeln!(
                out,
                "mynalink_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        header(
            &mut out,
            "mynalink_request_duration_seconds",
            "histogram",
            "Time from a request's arrival to its response, by route template.",
        );
        for (route, h) in &c.durations {
            let route = escape(route);
            let mut cumulative = 0;
            for (le, n) in DURATION_BUCKETS.iter().zip(h.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "mynalink_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} \
                     {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "mynalink_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}\n\
                 mynalink_request_duration_seconds_sum{{route=\"{route}\"}} {}\n\
                 mynalink_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count, h.sum, h.count
            );
        }
        for (name, help, values, label) in [
            (
                "mynalink_submissions_total",
                "First-stage submissions (POST /v1/bindings) decided, by outcome code.",
                &c.submissions,
                "outcome",
            ),
            (
                "mynalink_second_stage_total",
                "Second-stage calls from Mynaportal decided, by outcome code.",
                &c.second_stage,
                "outcome",
            ),
            (
                "mynalink_revocation_checks_total",
                "Certificate revocation checks, by result.",
                &c.revocation_checks,
                "result",
            ),
        ] {
            header(&mut out, name, "counter", help);
            for (value, n) in values {
                let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {n}", escape(value));
            }
        }
        header(
            &mut out,
            "mynalink_db_pool_connections_in_use",
            "gauge",
            "Database connections in use by requests now.",
        );
        let _ = writeln!(out, "mynalink_db_pool_connections_in_use {pool_in_use}");
        header(
            &mut out,
            "mynalink_db_pool_connections_max",
            "gauge",
            "Database connections the server uses at most at once.",
        );
        let _ = writeln!(out, "mynalink_db_pool_connections_max {MAX_CONNECTIONS}");
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value as the text format needs it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Why the metrics listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for metrics on {addr}: {error}")]
pub struct MetricsListenError {
    addr: SocketAddr,
    error: std::io::Error,
}

/// Binds `addr` and serves `GET /metrics` there (plain HTTP) until the task is aborted;
/// logs the address it listens on.
pub async fn serve(
    addr: SocketAddr,
    pool: StorePool,
) -> Result<tokio::task::JoinHandle<()>, MetricsListenError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| MetricsListenError { addr, error })?;
    let local = listener
        .local_addr()
        .map_err(|error| MetricsListenError { addr, error })?;
    tracing::info!(
        event = "metrics_listening",
        url = %format!("http://{local}/metrics"),
        "serving metrics"
    );
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let pool = pool.clone();
            async move { exposition(&pool) }
        }),
    );
    Ok(tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(event = "metrics_stopped", error = %error, "the metrics listener failed");
        }
    }))
}

fn exposition(pool: &StorePool) -> Response {
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        global().render(pool.connections_in_use()),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_text() {
        let m = Metrics::new();
        m.request("POST", "/v1/bindings", 201, Duration::from_millis(30));
        m.request("POST", "/v1/bindings", 201, Duration::from_millis(3));
        m.request("GET", "/healthz", 200, Duration::from_secs(20));
        m.submission("created");
        m.submission("created");
        m.submission("already_linked");
        m.revocation_check("revoked");
        let text = m.render(3);
        for line in [
            "# TYPE mynalink_requests_total counter",
            "mynalink_requests_total{method=\"POST\",route=\"/v1/bindings\",status=\"201\"} 2",
            "mynalink_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1",
            "# TYPE mynalink_request_duration_seconds histogram",
            "mynalink_request_duration_seconds_bucket{route=\"/v1/bindings\",le=\"0.005\"} 1",
            "mynalink_request_duration_seconds_bucket{route=\"/v1/bindings\",le=\"0.025\"} 1",
            "mynalink_request_duration_seconds_bucket{route=\"/v1/bindings\",le=\"0.05\"} 2",
            "mynalink_request_duration_seconds_bucket{route=\"/v1/bindings\",le=\"+Inf\"} 2",
            "mynalink_request_duration_seconds_count{route=\"/v1/bindings\"} 2",
            "mynalink_request_duration_seconds_bucket{route=\"/healthz\",le=\"10\"} 0",
            "mynalink_request_duration_seconds_bucket{route=\"/healthz\",le=\"+Inf\"} 1",
            "mynalink_request_duration_seconds_sum{route=\"/healthz\"} 20",
            "mynalink_submissions_total{outcome=\"created\"} 2",
            "mynalink_submissions_total{outcome=\"already_linked\"} 1",
            "# TYPE mynalink_second_stage_total counter",
            "mynalink_revocation_checks_total{result=\"revoked\"} 1",
            "mynalink_db_pool_connections_in_use 3",
            "mynalink_db_pool_connections_max 8",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        // Every sample line is NAME{labels} VALUE or NAME VALUE.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = l.rsplit_once(' ').expect("a value");
            assert!(value.parse::<f64>().is_ok(), "{l}");
        }
    }

    #[test]
    fn serve_options_for_logs_and_metrics() {
        use crate::logging::LogFormat;
        use crate::serve::ServeOptions;
        let parse = |extra: &str| {
            let args: Vec<String> = format!(
                "--listen 127.0.0.1:0 --database sqlite:x --insecure-loopback-http --revocation off {extra}"
            )
            .split_whitespace()
            .map(str::to_string)
            .collect();
            ServeOptions::parse(&args)
        };
        let o = parse("").expect("defaults");
        assert_eq!((o.log_format, o.metrics_listen), (LogFormat::Text, None));
        let o = parse("--log-format=json --metrics-listen 9464").expect("json, port");
        assert_eq!(o.log_format, LogFormat::Json);
        assert_eq!(
            o.metrics_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 9464)))
        );
        let o = parse("--metrics-listen [::1]:0").expect("IPv6 loopback");
        assert!(o.metrics_listen.is_some_and(|a| a.ip().is_loopback()));
        let o = parse("--metrics-listen 0.0.0.0:9464 --metrics-allow-remote").expect("remote");
        assert_eq!(o.metrics_listen.map(|a| a.port()), Some(9464));
        for (extra, needle) in [
            ("--log-format xml", "text or json"),
            ("--log-format text --log-format json", "twice"),
            ("--metrics-listen 10.0.0.1:9464", "--metrics-allow-remote"),
            ("--metrics-listen 0.0.0.0:9464", "loopback"),
            ("--metrics-allow-remote", "needs --metrics-listen"),
            (
                "--metrics-allow-remote=yes --metrics-listen 9",
                "takes no value",
            ),
            ("--metrics-listen localhost:9", "IP:PORT or PORT"),
        ] {
            let e = parse(extra).expect_err(extra);
            assert!(e.contains(needle), "{extra}: {e}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
