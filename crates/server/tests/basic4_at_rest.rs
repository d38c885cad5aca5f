//! The second stage's card-info basic-4 at rest: the database keeps keyed hashes of it, never
//! the values. A marker name and address sent to `POST /v1/second-stage/{license}/basic4`
//! through the real server must appear in no byte of the database's files — SQLite's main
//! file, `-wal` and `-shm` after a checkpoint; PostgreSQL's files of the database (heap,
//! indexes, TOAST) and the cluster's `pg_wal` after `CHECKPOINT` — while the second stage is
//! pending and after it was decided: matched, mismatched, expired and purged. The SQLite
//! files are 0600 even when the server runs with umask 000.
//!
//! PostgreSQL's files belong to the cluster's owner: the test reads them as root, as
//! `cargo xtask test` runs it.
//!
//! Also: `basic4-key generate` and the refusals at start (no key for Mynaportal, a key file
//! others may read, a key file in another format).

mod common;
mod http_support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use common::{custom_signer_at, license, sim_signer, Signer, TERMINAL};
use http_support::{path_arg, serve_refused, Files, BIN, PORTAL_TOKEN, TOKEN};
use mynalink_link::api::ApiError;
use mynalink_link::certificate::SigningCertificate;
use mynalink_link::statement::{format_time, Statement, VERSION};
use mynalink_server::identity::normalize_name;
use mynalink_server::scratch::{Backend, ScratchDatabase};
use mynalink_server::store::postgres_client;
use mynalink_server::Store;
use mynalink_simcard::Validity;
use reqwest::StatusCode;
use time::OffsetDateTime;

mynalink_server::on_both_databases!(marker_basic4_never_reaches_the_database_files);

const BASIC4_KEY_FILE: &str = "basic4.key";

/// The name on the license records and in the certificates the test signs with.
const HOLDER_NAME: &str = "試験　花子";

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("whole seconds")
}

fn random_hex(bytes: usize) -> String {
    let mut out = vec![0u8; bytes];
    for b in &mut out {
        *b = rand::random();
    }
    hex::encode(out)
}

/// ASCII digits and letters in their full-width forms, as a register writes them.
fn full_width(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '!'..='~' => char::from_u32(u32::from(c) + 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .collect()
}

/// A marker value: a random core in full-width characters between fixed words, with an
/// ideographic space, so that its normalised form differs from what was sent.
struct Marker {
    label: String,
    value: String,
    core: String,
}

impl Marker {
    fn new(label: &str, prefix: &str, suffix: &str) -> Marker {
        let core = random_hex(8);
        Marker {
            label: label.to_string(),
            value: format!("{prefix}{}　{suffix}", full_width(&core)),
            core,
        }
    }

    /// Every byte string the value could leave behind: as sent and normalised, each in
    /// UTF-8, UTF-16 (both byte orders) and JSON `\u` escapes (both cases); and the random
    /// core alone, in ASCII (normalised) and full width.
    fn needles(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let normalised = normalize_name(&self.value).to_string();
        for (form, text) in [("sent", self.value.clone()), ("normalised", normalised)] {
            let label = |encoding: &str| format!("{} ({form}, {encoding})", self.label);
            out.push((label("UTF-8"), text.as_bytes().to_vec()));
            let units: Vec<u16> = text.encode_utf16().collect();
            out.push((
                label("UTF-16LE"),
                units.iter().flat_map(|u| u.to_le_bytes()).collect(),
            ));
            out.push((
                label("UTF-16BE"),
                units.iter().flat_map(|u| u.to_be_bytes()).collect(),
            ));
            for upper in [false, true] {
                let escaped: String = units
                    .iter()
                    .map(|&u| {
                        if u < 0x80 {
                            char::from(u as u8).to_string()
                        } else if upper {
                            format!("\\u{u:04X}")
                        } else {
                            format!("\\u{u:04x}")
                        }
                    })
                    .collect();
                out.push((label("JSON-escaped"), escaped.into_bytes()));
            }
        }
        out.push((
            format!("{} (core, ASCII)", self.label),
            self.core.as_bytes().to_vec(),
        ));
        out.push((
            format!("{} (core, full width)", self.label),
            full_width(&self.core).into_bytes(),
        ));
        out
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && memchr::memmem::find(haystack, needle).is_some()
}

/// Where any of the markers is found in the files: "LABEL in FILE".
fn hits(files: &[PathBuf], markers: &[&Marker]) -> Vec<String> {
    let needles: Vec<(String, Vec<u8>)> = markers.iter().flat_map(|m| m.needles()).collect();
    let mut found = Vec::new();
    for file in files {
        let bytes = std::fs::read(file).unwrap_or_else(|e| {
            panic!(
                "cannot read {} ({e}); the PostgreSQL cluster's files are read as root",
                file.display()
            )
        });
        for (label, needle) in &needles {
            if contains(&bytes, needle) {
                found.push(format!("{label} in {}", file.display()));
            }
        }
    }
    found
}

/// The regular files directly in a directory.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    out.sort();
    out
}

/// The database's files after a checkpoint: SQLite's main file, `-wal` and `-shm`;
/// PostgreSQL's files of this database and the cluster's WAL segments.
fn checkpointed_files(db: &ScratchDatabase) -> Vec<PathBuf> {
    match db.sqlite_path() {
        Some(path) => {
            let conn = rusqlite::Connection::open(path).expect("open SQLite");
            let (busy, _, _): (i64, i64, i64) = conn
                .query_row("PRAGMA wal_checkpoint(FULL)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .expect("checkpoint");
            assert_eq!(busy, 0, "the checkpoint was blocked");
            drop(conn);
            let files = sqlite_files(path);
            for suffix in ["", "-wal", "-shm"] {
                let file = companion(path, suffix);
                assert!(files.contains(&file), "{} is missing", file.display());
            }
            files
        }
        None => {
            let mut client = postgres_client(db.url()).expect("connect");
            client.batch_execute("CHECKPOINT").expect("CHECKPOINT");
            let data: String = client
                .query_one("SELECT current_setting('data_directory')", &[])
                .expect("data directory")
                .get(0);
            let table: String = client
                .query_one("SELECT pg_relation_filepath('second_stage_pending')", &[])
                .expect("relation file")
                .get(0);
            let data = PathBuf::from(data);
            let table = data.join(table);
            let database_dir = table.parent().expect("base/OID").to_path_buf();
            let mut files = files_in(&database_dir);
            assert!(files.contains(&table), "{} is missing", table.display());
            let wal = files_in(&data.join("pg_wal"));
            assert!(!wal.is_empty(), "no WAL segments in {}", data.display());
            files.extend(wal);
            files
        }
    }
}

fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// The SQLite database file and those of its companions that exist.
fn sqlite_files(path: &Path) -> Vec<PathBuf> {
    ["", "-wal", "-shm", "-journal"]
        .iter()
        .map(|suffix| companion(path, suffix))
        .filter(|file| file.exists())
        .collect()
}

/// `mynalink-server ARGS` with umask 000.
fn command_with_open_umask() -> Command {
    let mut command = Command::new("sh");
    command.args(["-c", "umask 000 && exec \"$0\" \"$@\"", BIN]);
    command
}

/// The server, started with umask 000; killed when dropped.
struct OpenUmaskServer {
    child: Child,
    url: String,
}

impl OpenUmaskServer {
    fn start(args: &[String]) -> OpenUmaskServer {
        let mut child = command_with_open_umask()
            .arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start server");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read");
        let url = line
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the server did not start: {line:?}"))
            .to_string();
        OpenUmaskServer {
            child,
            url: format!("{url}/"),
        }
    }
}

impl Drop for OpenUmaskServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn basic4_body(name: &str, address: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "address": address,
        "birth_date": "19900102",
        "sex": "2",
    })
}

fn signature_body(signer: &Signer, number: &str, id: &str) -> serde_json::Value {
    let cert = SigningCertificate::parse(&signer.cert_der).expect("cert");
    let statement = Statement {
        purpose: mynalink_server::second_stage::PURPOSE.into(),
        version: VERSION,
        license_number: number.into(),
        certificate_sha256: hex::encode(cert.sha256()),
        certificate_serial: cert.serial_hex(),
        issuer_key_id: cert.authority_key_id().map(hex::encode),
        terminal_id: http_support::PORTAL.into(),
        operator_id: None,
        nonce: id.into(),
        time: format_time(now()),
        terms: None,
    };
    let bytes = statement.canonical_bytes();
    serde_json::json!({
        "statement": BASE64.encode(&bytes),
        "signature": BASE64.encode(common::sign(&signer.key, &bytes)),
        "certificate": BASE64.encode(&signer.cert_der),
    })
}

fn first_stage(
    http: &reqwest::blocking::Client,
    server: &OpenUmaskServer,
    signer: &Signer,
    number: &str,
) {
    let statement = common::statement_for(signer, number, TERMINAL, now());
    let r = http
        .post(format!("{}v1/bindings", server.url))
        .bearer_auth(TOKEN)
        .json(&common::request_for(signer, &statement))
        .send()
        .expect("first stage");
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text());
}

fn post_basic4(
    http: &reqwest::blocking::Client,
    server: &OpenUmaskServer,
    number: &str,
    body: &serde_json::Value,
) -> String {
    let r = http
        .post(format!("{}v1/second-stage/{number}/basic4", server.url))
        .bearer_auth(PORTAL_TOKEN)
        .json(body)
        .send()
        .expect("basic4");
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{:?}", r.text());
    let accepted: serde_json::Value = r.json().expect("body");
    accepted["second_stage_id"]
        .as_str()
        .expect("id")
        .to_string()
}

fn post_signature(
    http: &reqwest::blocking::Client,
    server: &OpenUmaskServer,
    id: &str,
    body: &serde_json::Value,
) -> reqwest::blocking::Response {
    http.post(format!("{}v1/second-stage/{id}/signature", server.url))
        .bearer_auth(PORTAL_TOKEN)
        .json(body)
        .send()
        .expect("signature")
}

fn execute(db: &ScratchDatabase, sql: &str) {
    match db.sqlite_path() {
        Some(path) => {
            let conn = rusqlite::Connection::open(path).expect("open");
            conn.execute_batch(sql).expect("execute");
        }
        None => {
            let mut client = postgres_client(db.url()).expect("connect");
            client.batch_execute(sql).expect("execute");
        }
    }
}

fn assert_private(files: &[PathBuf]) {
    for file in files {
        let mode = std::fs::metadata(file)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:04o}", file.display());
    }
}

fn marker_basic4_never_reaches_the_database_files(backend: Backend) {
    let matched = license(60);
    let mismatched = license(61);
    let expired = license(62);
    let control = license(63);
    // The positive control: a license record's name, which the database holds by design.
    let control_name = Marker::new("control record name", "対照", "記録");
    let rows = [&matched, &mismatched, &expired]
        .iter()
        .map(|n| format!("{n},myna_only,\"{HOLDER_NAME}\",1990-01-02,valid\n"))
        .chain([format!(
            "{control},myna_only,\"{}\",1990-01-02,valid\n",
            control_name.value
        )])
        .collect::<String>();
    let files = Files::new(backend, &rows);
    if let Some(path) = files.db.sqlite_path() {
        // Created again under umask 000, which SQLite alone would turn into mode 0666.
        for file in sqlite_files(path) {
            std::fs::remove_file(&file).expect("remove");
        }
        let csv = files.path("licenses.csv");
        let out = command_with_open_umask()
            .args(["import-licenses", "--database", &files.database])
            .arg(&csv)
            .output()
            .expect("import");
        assert!(out.status.success(), "{out:?}");
    }

    let matched_address = Marker::new("matched address", "試験県見本市", "一丁目");
    let (root, matched_signer) =
        custom_signer_at(HOLDER_NAME, "00000", "419900102", &matched_address.value);
    let root_path = files.path("custom-root.der");
    std::fs::write(&root_path, root).expect("root");
    let mut args = files.tls_args();
    args.extend(files.portal_and_admin_args());
    args.extend(["--trust-anchor".into(), path_arg(&root_path)]);
    let server = OpenUmaskServer::start(&args);
    let http = files.http();

    let sim = sim_signer(Validity::Current);
    first_stage(&http, &server, &matched_signer, &matched);
    first_stage(&http, &server, &sim, &mismatched);
    first_stage(&http, &server, &sim, &expired);

    let mismatched_name = Marker::new("mismatched name", "見本", "次郎");
    let mismatched_address = Marker::new("mismatched address", "見本県試験市", "二丁目");
    let expired_name = Marker::new("expired name", "期限", "三郎");
    let expired_address = Marker::new("expired address", "期限県試験市", "三丁目");
    let markers = [
        &matched_address,
        &mismatched_name,
        &mismatched_address,
        &expired_name,
        &expired_address,
    ];
    let matched_id = post_basic4(
        &http,
        &server,
        &matched,
        &basic4_body(HOLDER_NAME, &matched_address.value),
    );
    let mismatched_id = post_basic4(
        &http,
        &server,
        &mismatched,
        &basic4_body(&mismatched_name.value, &mismatched_address.value),
    );
    post_basic4(
        &http,
        &server,
        &expired,
        &basic4_body(&expired_name.value, &expired_address.value),
    );
    assert_eq!(
        common::count(&files.db, "SELECT COUNT(*) FROM second_stage_pending"),
        3
    );

    // Pending.
    let on_disk = checkpointed_files(&files.db);
    let found = hits(&on_disk, &[&control_name]);
    assert!(
        !found.is_empty(),
        "the control name was not found: the search reads the wrong files"
    );
    let found = hits(&on_disk, &markers);
    assert!(found.is_empty(), "while pending:\n{}", found.join("\n"));

    // Matched.
    let r = post_signature(
        &http,
        &server,
        &matched_id,
        &signature_body(&matched_signer, &matched, &matched_id),
    );
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text());
    let linked: serde_json::Value = r.json().expect("body");
    assert_eq!(linked["code"], "mynaportal_linked");
    // Mismatched: the field that differs is still named.
    let r = post_signature(
        &http,
        &server,
        &mismatched_id,
        &signature_body(&sim, &mismatched, &mismatched_id),
    );
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error: ApiError = r.json().expect("error");
    assert_eq!(error.code, "basic4_mismatch");
    assert_eq!(error.detail.as_deref(), Some("name differs"));
    // Expired, then purged as the server's purger does.
    execute(
        &files.db,
        &format!(
            "UPDATE second_stage_pending SET expires_at = '2000-01-01T00:00:00Z' \
             WHERE license_number = '{expired}'"
        ),
    );
    let mut store = Store::open_url(&files.database).expect("open");
    assert_eq!(
        store
            .purge_expired_second_stage(&format_time(now()))
            .expect("purge"),
        1
    );
    drop(store);
    assert_eq!(
        common::count(&files.db, "SELECT COUNT(*) FROM second_stage_pending"),
        0
    );

    let on_disk = checkpointed_files(&files.db);
    assert!(!hits(&on_disk, &[&control_name]).is_empty());
    let found = hits(&on_disk, &markers);
    assert!(
        found.is_empty(),
        "after the decisions:\n{}",
        found.join("\n")
    );

    if let Some(path) = files.db.sqlite_path() {
        assert_private(&sqlite_files(path));
    }
}

#[test]
fn basic4_key_generate_writes_an_owner_only_key_and_never_overwrites() {
    let dir = tempfile::tempdir().expect("dir");
    let key = dir.path().join(BASIC4_KEY_FILE);
    let generate = || {
        command_with_open_umask()
            .args(["basic4-key", "generate", "--out"])
            .arg(&key)
            .output()
            .expect("run")
    };
    let out = generate();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("key id"), "{stdout}");
    let mode = std::fs::metadata(&key).expect("key").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&key).expect("read");
    assert_eq!(text.trim_end().len(), 64);
    assert!(text.trim_end().bytes().all(|b| b.is_ascii_hexdigit()));
    // The key itself is printed nowhere.
    assert!(!stdout.contains(text.trim_end()));

    let out = generate();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("never overwritten"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&key).expect("read"), text);

    let out = Command::new(BIN)
        .args(["basic4-key", "generate"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--out FILE"));
}

#[test]
fn serve_refuses_mynaportal_without_a_private_basic4_key() {
    let files = Files::new(Backend::Sqlite, "");
    let mut portal = files.portal_and_admin_args();
    let key_at = portal
        .iter()
        .position(|a| a == "--basic4-key")
        .expect("--basic4-key");
    let key = PathBuf::from(portal.remove(key_at + 1));
    portal.remove(key_at);

    // Mynaportal's credentials without the key: the second stage could not work.
    let mut args = files.tls_args();
    args.extend(portal.clone());
    let (code, stderr) = serve_refused(&args);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--basic4-key FILE"), "{stderr}");
    assert!(stderr.contains("basic4-key generate"), "{stderr}");

    // A key others may read: refused, naming the file and the fix.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    args.extend(["--basic4-key".into(), path_arg(&key)]);
    let (code, stderr) = serve_refused(&args);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&path_arg(&key)), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");

    // Another format: refused without echoing the content.
    let text = "not a key at all\n";
    std::fs::remove_file(&key).expect("remove");
    std::fs::write(&key, text).expect("write");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (code, stderr) = serve_refused(&args);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("64 hexadecimal characters"), "{stderr}");
    assert!(!stderr.contains("not a key"), "{stderr}");
}
