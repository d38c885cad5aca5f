//! The server as a service, over the real binary: token administration and SIGHUP reloads
//! on a kept-open connection, the JSON log (one line per request and per decision, nothing
//! personal), the Prometheus metrics, and `/readyz` against a database whose schema falls
//! behind or that stops answering.

mod common;
mod http_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{license, request_for, sim_signer, statement_for, TERMINAL};
use http_support::*;
use mynalink_server::scratch::Backend;
use mynalink_server::store::latest_schema_version;
use mynalink_simcard::Validity;
use reqwest::StatusCode;
use serde_json::Value;

mynalink_server::on_both_databases!(
    tokens_added_and_revoked_take_effect_on_sighup,
    json_logs_have_a_line_per_request_and_decision_and_nothing_personal,
    metrics_count_requests_and_decisions,
    readyz_follows_the_database_and_its_schema,
);

fn now() -> time::OffsetDateTime {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

/// Runs the binary; (exit code, stdout, stderr).
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `token add`: the new token.
fn token_add(file: &Path, id: &str) -> String {
    let (code, out, err) = run(&["token", "add", "--file", &path_arg(file), "--id", id]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("shown only this once"), "{err}");
    let token = out.trim_end().to_string();
    assert_eq!(
        out,
        format!("{token}\n"),
        "only the token on standard output"
    );
    token
}

fn serve(args: &[String]) -> Server {
    let mut command = Command::new(BIN);
    command.arg("serve").args(args);
    Server::spawn(command)
}

fn sighup(server: &Server) {
    let pid = libc::pid_t::try_from(server.pid()).expect("pid");
    // SAFETY: kill(2) on the child this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
}

/// Waits until the server's standard error holds `needle` at least `count` times.
fn wait_for_log(server: &Server, needle: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.stderr_text().matches(needle).count() < count {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} (#{count}) in the log:\n{}",
            server.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One HTTP/1.1 connection kept open across requests: a reload must not drop it.
struct KeptConnection {
    reader: BufReader<TcpStream>,
}

impl KeptConnection {
    fn open(server: &Server) -> KeptConnection {
        let addr = server
            .url
            .strip_prefix("http://")
            .and_then(|rest| rest.strip_suffix('/'))
            .expect("plain HTTP URL");
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        KeptConnection {
            reader: BufReader::new(stream),
        }
    }

    /// `GET /v1/whoami` with the token: (status, body).
    fn whoami(&mut self, token: &str) -> (u16, Value) {
        write!(
            self.reader.get_mut(),
            "GET /v1/whoami HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .expect("send on the kept connection");
        let mut status_line = String::new();
        self.reader
            .read_line(&mut status_line)
            .expect("status line");
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("status line {status_line:?} (connection dropped?)"));
        let mut length = 0;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("header");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().expect("length");
                }
                assert!(
                    !(name.eq_ignore_ascii_case("connection") && value.contains("close")),
                    "the server closes the connection"
                );
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).expect("body");
        (status, serde_json::from_slice(&body).expect("JSON body"))
    }
}

fn tokens_added_and_revoked_take_effect_on_sighup(backend: Backend) {
    let files = Files::new(backend, "");
    let terminals = files.path("terminal-tokens");
    let admins = files.path("admin-tokens");
    let first = token_add(&terminals, "kiosk-1");
    let admin = token_add(&admins, "ops-1");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&terminals)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let server = serve(&[
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--database".into(),
        files.database.clone(),
        "--insecure-loopback-http".into(),
        "--revocation".into(),
        "off".into(),
        "--terminal-tokens".into(),
        path_arg(&terminals),
        "--admin-tokens".into(),
        path_arg(&admins),
    ]);
    let mut kept = KeptConnection::open(&server);
    let (status, body) = kept.whoami(&first);
    assert_eq!((status, body["id"].as_str()), (200, Some("kiosk-1")));
    assert_eq!(kept.whoami(&admin).1["kind"], "admin");

    // Added: refused until the reload, accepted after it, on the same connection.
    let second = token_add(&terminals, "kiosk-2");
    assert_eq!(kept.whoami(&second).0, 401);
    sighup(&server);
    wait_for_log(&server, "tokens_reloaded", 1);
    let (status, body) = kept.whoami(&second);
    assert_eq!((status, body["id"].as_str()), (200, Some("kiosk-2")));
    assert_eq!(body["kind"], "terminal");

    // Revoked: 401 after the reload; the others still work.
    let (code, _, err) = run(&[
        "token",
        "revoke",
        "--file",
        &path_arg(&terminals),
        "--id",
        "kiosk-1",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(kept.whoami(&first).0, 200, "in use until the reload");
    sighup(&server);
    wait_for_log(&server, "tokens_reloaded", 2);
    let (status, body) = kept.whoami(&first);
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    assert_eq!(kept.whoami(&second).0, 200);
    assert_eq!(kept.whoami(&admin).0, 200);

    let (code, out, _) = run(&["token", "list", "--file", &path_arg(&terminals)]);
    assert_eq!((code, out.as_str()), (Some(0), "kiosk-2\n"));

    // A bad file, or one others may read, keeps the tokens in use.
    let good = std::fs::read(&terminals).expect("read");
    write_secret(&terminals, "kiosk-3 not-a-hash\n");
    sighup(&server);
    wait_for_log(&server, "tokens_reload_failed", 1);
    assert_eq!(kept.whoami(&second).0, 200);
    write_secret(&terminals, &good);
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&terminals, std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
    }
    sighup(&server);
    wait_for_log(&server, "tokens_reload_failed", 2);
    assert_eq!(kept.whoami(&second).0, 200);
    assert_eq!(kept.whoami(&first).0, 401);

    let log = server.stderr_text();
    assert!(log.contains("line 1"), "{log}");
    assert!(log.contains("chmod 600"), "{log}");
    for secret in [&first, &second, &admin] {
        assert!(!log.contains(secret.as_str()), "a token in the log:\n{log}");
    }
    assert!(server.terminate().success());
}

fn json_logs_have_a_line_per_request_and_decision_and_nothing_personal(backend: Backend) {
    let number = license(150);
    let files = Files::new(
        backend,
        &format!("{number},myna_only,\"試験　花子\",1990-01-02,valid\n"),
    );
    let mut args = files.tls_args();
    args.extend(files.portal_and_admin_args());
    args.extend(["--log-format".into(), "json".into()]);
    let server = serve(&args);
    let http = files.http();
    let url = |path: &str| format!("{}{path}", server.url);

    let basic4 = serde_json::json!({
        "name": "試験　花子",
        "address": "東京都府中市多磨町三丁目1番1号",
        "birth_date": "19900102",
        "sex": "2",
    });
    let second = http
        .post(url(&format!("v1/second-stage/{number}/basic4")))
        .bearer_auth(PORTAL_TOKEN)
        .json(&basic4)
        .send()
        .expect("basic4");
    // Before any first stage: refused, after the basic-4 was read.
    assert_eq!(second.status(), StatusCode::CONFLICT);
    let signer = sim_signer(Validity::Current);
    let request = request_for(&signer, &statement_for(&signer, &number, TERMINAL, now()));
    let certificate = request.certificate.clone().expect("certificate");
    let created = http
        .post(url("v1/bindings"))
        .bearer_auth(TOKEN)
        .json(&request)
        .send()
        .expect("submit");
    assert_eq!(created.status(), StatusCode::CREATED);
    let created_id = created
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("X-Request-Id")
        .to_string();
    let refused = http
        .post(url("v1/bindings"))
        .bearer_auth(TOKEN)
        .body("{\"statement\": \"not base64\"}")
        .header("content-type", "application/json")
        .send()
        .expect("submit");
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let status = http
        .get(url(&format!("v1/licenses/{number}/status")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .expect("status");
    assert_eq!(status.status(), StatusCode::OK);
    let unauthenticated = http
        .get(url(&format!("v1/licenses/{number}/status")))
        .bearer_auth("not-a-configured-token-0123456789")
        .send()
        .expect("status");
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    let missing = http
        .get(url(&format!("v1/nowhere/{number}")))
        .send()
        .expect("404");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    wait_for_log(&server, "\"event\":\"request\"", 6);
    let log = server.stderr_text();
    assert!(server.terminate().success());

    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let requests: Vec<&Value> = lines.iter().filter(|l| l["event"] == "request").collect();
    assert_eq!(requests.len(), 6, "{log}");
    for line in &requests {
        let id = line["request_id"].as_str().expect("request_id");
        assert!(
            id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{line}"
        );
        for field in [
            "method",
            "route",
            "status",
            "code",
            "latency_ms",
            "level",
            "timestamp",
        ] {
            assert!(!line[field].is_null(), "{field} missing: {line}");
        }
        assert!(
            line["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
            "{line}"
        );
    }
    let find = |method: &str, route: &str, status: u64| {
        requests
            .iter()
            .find(|l| l["method"] == method && l["route"] == route && l["status"] == status)
            .unwrap_or_else(|| panic!("no {method} {route} {status}:\n{log}"))
    };
    let post = find("POST", "/v1/bindings", 201);
    assert_eq!(post["request_id"], created_id.as_str());
    assert_eq!(post["code"], "");
    assert_eq!(
        find("POST", "/v1/bindings", 422)["code"],
        "malformed_request"
    );
    find("GET", "/v1/licenses/{number}/status", 200);
    assert_eq!(
        find("GET", "/v1/licenses/{number}/status", 401)["code"],
        "unauthenticated"
    );
    find("POST", "/v1/second-stage/{license_number}/basic4", 409);
    find("GET", "unmatched", 404);

    let decisions: Vec<&Value> = lines.iter().filter(|l| l["event"] == "decision").collect();
    let decided: Vec<(&str, &str)> = decisions
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().expect("kind"),
                d["code"].as_str().expect("code"),
            )
        })
        .collect();
    assert_eq!(
        decided,
        [
            ("second_stage_basic4", "first_stage_missing"),
            ("submission", "created"),
            ("submission", "malformed_request"),
        ],
        "{log}"
    );
    assert_eq!(decisions[1]["request_id"], created_id.as_str());

    // Nothing personal or secret: not the license number (nor its first ten digits), the
    // basic-4, the certificate, or any token.
    for forbidden in [
        number.as_str(),
        &number[..10],
        "試験",
        "花子",
        "東京都",
        "1990-01-02",
        "19900102",
        &certificate[..40],
        TOKEN,
        ADMIN_TOKEN,
        PORTAL_TOKEN,
        "not-a-configured-token",
    ] {
        assert!(!log.contains(forbidden), "{forbidden:?} in the log:\n{log}");
    }
}

/// A metric's value in the exposition text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn metrics_count_requests_and_decisions(backend: Backend) {
    let number = license(160);
    let files = Files::new(
        backend,
        &format!("{number},myna_only,\"試験　花子\",1990-01-02,valid\n"),
    );
    // Only loopback without the explicit flag.
    let mut args = files.tls_args();
    args.extend(["--metrics-listen".into(), "0.0.0.0:0".into()]);
    let (code, err) = serve_refused(&args);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--metrics-allow-remote"), "{err}");

    let mut args = files.tls_args();
    args.extend(["--metrics-listen".into(), "127.0.0.1:0".into()]);
    let server = serve(&args);
    wait_for_log(&server, "/metrics", 1);
    let log = server.stderr_text();
    let metrics_url = log
        .split_whitespace()
        .find_map(|w| {
            let w = w.trim_start_matches("url=").trim_matches('"');
            (w.starts_with("http://") && w.ends_with("/metrics")).then(|| w.to_string())
        })
        .unwrap_or_else(|| panic!("no metrics URL in {log}"));
    let http = files.http();
    let url = |path: &str| format!("{}{path}", server.url);

    for _ in 0..2 {
        assert!(http
            .get(url("healthz"))
            .send()
            .expect("healthz")
            .status()
            .is_success());
    }
    let signer = sim_signer(Validity::Current);
    let request = request_for(&signer, &statement_for(&signer, &number, TERMINAL, now()));
    let post = |token: &str| {
        http.post(url("v1/bindings"))
            .bearer_auth(token)
            .json(&request)
            .send()
            .expect("submit")
            .status()
    };
    assert_eq!(post(TOKEN), StatusCode::CREATED);
    assert_eq!(post(TOKEN), StatusCode::OK);
    assert_eq!(post("wrong-token-000000000000"), StatusCode::UNAUTHORIZED);
    // The API port does not serve the metrics.
    assert_eq!(
        http.get(url("metrics")).send().expect("get").status(),
        StatusCode::NOT_FOUND
    );

    let scrape = reqwest::blocking::get(&metrics_url).expect("scrape");
    assert_eq!(scrape.status(), StatusCode::OK);
    assert!(scrape
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain; version=0.0.4")));
    let text = scrape.text().expect("text");
    for (series, value) in [
        (
            "mynalink_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"}",
            2.0,
        ),
        (
            "mynalink_requests_total{method=\"POST\",route=\"/v1/bindings\",status=\"201\"}",
            1.0,
        ),
        (
            "mynalink_requests_total{method=\"POST\",route=\"/v1/bindings\",status=\"200\"}",
            1.0,
        ),
        (
            "mynalink_requests_total{method=\"POST\",route=\"/v1/bindings\",status=\"401\"}",
            1.0,
        ),
        (
            "mynalink_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}",
            1.0,
        ),
        (
            "mynalink_request_duration_seconds_count{route=\"/v1/bindings\"}",
            3.0,
        ),
        (
            "mynalink_request_duration_seconds_bucket{route=\"/v1/bindings\",le=\"+Inf\"}",
            3.0,
        ),
        ("mynalink_submissions_total{outcome=\"created\"}", 1.0),
        ("mynalink_submissions_total{outcome=\"repeated\"}", 1.0),
        ("mynalink_db_pool_connections_in_use", 0.0),
        ("mynalink_db_pool_connections_max", 8.0),
    ] {
        assert_eq!(sample(&text, series), Some(value), "{series}:\n{text}");
    }
    assert!(!text.contains("outcome=\"unauthenticated\""), "{text}");
    assert!(text.contains("# TYPE mynalink_revocation_checks_total counter"));
    assert!(!text.contains(&number), "{text}");
    assert!(server.terminate().success());
}

/// Runs SQL on the server's database from outside.
fn execute(files: &Files, sql: &str) {
    match files.db.sqlite_path() {
        Some(path) => {
            let db = rusqlite::Connection::open(path).expect("open SQLite");
            db.execute_batch(sql).expect(sql);
        }
        None => {
            let mut db = mynalink_server::store::postgres_client(&files.database).expect("connect");
            db.batch_execute(sql).expect(sql);
        }
    }
}

fn readyz(http: &reqwest::blocking::Client, server: &Server) -> (StatusCode, Value) {
    let response = http
        .get(format!("{}readyz", server.url))
        .send()
        .expect("readyz");
    let status = response.status();
    (status, response.json().expect("JSON body"))
}

fn readyz_follows_the_database_and_its_schema(backend: Backend) {
    let files = Files::new(backend, "");
    let server = serve(&files.tls_args());
    let http = files.http();
    let latest = latest_schema_version();
    let healthz = || {
        http.get(format!("{}healthz", server.url))
            .send()
            .expect("healthz")
            .status()
    };

    let (status, body) = readyz(&http, &server);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["code"], "ready");
    assert_eq!(body["schema_version"], latest);
    // Started with --revocation off: ready, and it says revocation is not checked.
    assert_eq!(body["revocation_checking"], false, "{body}");
    assert!(
        body["revocation"][0]
            .as_str()
            .is_some_and(|line| line.contains("OFF")),
        "{body}"
    );

    // The schema falls behind (restored from an older release's backup, say).
    execute(
        &files,
        &format!("DELETE FROM schema_migrations WHERE version = {latest}"),
    );
    let (status, body) = readyz(&http, &server);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "schema_not_current");
    assert_eq!(body["schema_version"], latest - 1);
    assert_eq!(body["expected_schema_version"], latest);
    assert!(body["message_en"]
        .as_str()
        .is_some_and(|m| m.contains("restart")));
    assert!(!body["message_ja"].as_str().unwrap_or("").is_empty());
    assert_eq!(
        healthz(),
        StatusCode::OK,
        "liveness does not follow the database"
    );

    execute(
        &files,
        &format!(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ({latest}, \
             '2026-01-01T00:00:00Z')"
        ),
    );
    assert_eq!(readyz(&http, &server).0, StatusCode::OK);

    if backend == Backend::Postgres {
        // The database stops answering: its connections are ended and new ones refused.
        let name = files
            .database
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('/'))
            .and_then(|(_, rest)| rest.split('?').next())
            .expect("database name")
            .to_string();
        let admin = mynalink_server::scratch::postgres_admin_url().expect("admin URL");
        let mut admin = mynalink_server::store::postgres_client(&admin).expect("admin");
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            ))
            .expect("cut the database off");
        for _ in 0..2 {
            let (status, body) = readyz(&http, &server);
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
            assert_eq!(body["code"], "database_unavailable");
            assert!(body["schema_version"].is_null());
        }
        assert_eq!(healthz(), StatusCode::OK);
        admin
            .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
            .expect("reconnect");
        let (status, body) = readyz(&http, &server);
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert!(server.terminate().success());
}
