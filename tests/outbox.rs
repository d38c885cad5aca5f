//! The outbox end to end, where a person is needed: the real `mynalink` client on the
//! simulated card against the real `mynalink-server` over HTTPS (behind a proxy that can
//! take it away).
//!
//! - A damaged entry is held (listed, untouched) and never stands in the way of a new run.
//! - A certificate sealed to a key the backend does not hold is held, not deleted; `outbox
//!   flush` exits 1 while anything is left, and `outbox retry ID` puts it back once fixed.
//! - `outbox flush` sends every queued entry at once, whatever its backoff says; `--due-only`
//!   leaves those not due (and says so).
//! - A disk that fills up while the holder types the password does not lose the binding, and
//!   a disk that is full stops the next run before the card is touched. This one runs in a
//!   private mount namespace (`unshare`, root or unprivileged user namespaces) on a small
//!   tmpfs.

mod common;
#[path = "common/proxy.rs"]
mod proxy;
#[path = "common/server.rs"]
mod server;
#[path = "common/x509.rs"]
mod x509;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{mynalink, Run, LICENSE, PASSWORD};
use mynalink_link::outbox::{Outbox, RESERVE_BYTES};
use proxy::Proxy;
use serde_json::Value;
use server::{ServerProcess, Setup, TERMINAL};
use time::OffsetDateTime;

/// The simulated card's holder (試験　花子, 1990-01-02) on every record.
const SECOND: &str = "729913281074";
const THIRD: &str = "729913281075";

fn records() -> String {
    [LICENSE, SECOND, THIRD]
        .iter()
        .map(|number| format!("{number},myna_only,試験　花子,1990-01-02,valid\n"))
        .collect()
}

struct Bench {
    _dir: tempfile::TempDir,
    setup: Setup,
    proxy: Proxy,
    outbox: PathBuf,
}

impl Bench {
    fn new() -> Bench {
        let dir = common::temp_dir();
        let outbox = dir.path().join("outbox.db");
        Bench::with_outbox(dir, outbox)
    }

    fn with_outbox(dir: tempfile::TempDir, outbox: PathBuf) -> Bench {
        let setup = Setup::new(&dir.path().join("backend"), &records(), &[]);
        Bench {
            _dir: dir,
            setup,
            proxy: Proxy::start(),
            outbox,
        }
    }

    /// Starts the server and puts it behind the proxy.
    fn serve(&self) -> ServerProcess {
        let server = self.setup.start();
        self.proxy.set_target(Some(&server.url));
        server
    }

    fn backend_args(&self) -> Vec<String> {
        vec![
            "--backend".into(),
            self.proxy.url(),
            "--token-file".into(),
            self.setup.token_file.display().to_string(),
            "--ca-file".into(),
            self.setup.ca_pem.display().to_string(),
            "--backend-key".into(),
            self.setup.seal_public.display().to_string(),
            "--outbox".into(),
            self.outbox.display().to_string(),
        ]
    }

    fn headless_args(&self, license: &str) -> Vec<String> {
        let mut args: Vec<String> = [
            "headless",
            "--sim",
            "--license",
            license,
            "--pin-stdin",
            "--json",
            "--terminal-id",
            TERMINAL,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(self.backend_args());
        args
    }

    fn headless(&self, license: &str) -> Run {
        let args = self.headless_args(license);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        mynalink(&args, Some(&format!("{PASSWORD}\n")))
    }

    /// `mynalink outbox ACTION… --json`: its exit status and its JSON.
    fn outbox_command(&self, action: &[&str]) -> (i32, Value) {
        let mut args: Vec<String> = vec!["outbox".into()];
        args.extend(action.iter().map(|s| s.to_string()));
        args.push("--json".into());
        args.extend(self.backend_args());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = mynalink(&args, None);
        let json = serde_json::from_str(run.stdout.trim())
            .unwrap_or_else(|e| panic!("{e}: {}{}", run.stdout, run.stderr));
        (run.status, json)
    }

    fn list(&self) -> Vec<Value> {
        let (status, json) = self.outbox_command(&["list"]);
        assert_eq!(status, 0, "{json}");
        json["entries"].as_array().expect("entries").clone()
    }

    /// Waits until every queued entry is due (the first backoff is at most 2 s).
    fn wait_until_due(&self) {
        let latest = Outbox::open(&self.outbox)
            .expect("open the outbox")
            .list()
            .expect("list")
            .iter()
            .filter(|e| e.held.is_none())
            .map(|e| e.next_attempt_at)
            .max();
        if let Some(at) = latest {
            if let Ok(wait) = Duration::try_from(at - OffsetDateTime::now_utc()) {
                assert!(wait <= Duration::from_secs(3), "due in {wait:?}");
                std::thread::sleep(wait + Duration::from_millis(5));
            }
        }
    }
}

/// Every column of an outbox row but the hold, as stored.
fn stored_row(outbox: &Path, id: i64) -> Vec<rusqlite::types::Value> {
    rusqlite::Connection::open(outbox)
        .expect("sqlite")
        .query_row(
            "SELECT statement_sha256, statement, signature, sealed_certificate, license_number,
                    created_at, attempts, next_attempt_at, last_error,
                    staff_confirmed_identity, ca_certificate
             FROM entries WHERE id = ?1",
            [id],
            |row| (0..11).map(|i| row.get(i)).collect(),
        )
        .expect("the row is there")
}

/// Waits until entry `id` is due, reading the file directly: the outbox itself would already
/// set a damaged entry aside.
fn wait_until_due_unread(outbox: &Path, id: i64) {
    let due_ms: i64 = rusqlite::Connection::open(outbox)
        .expect("sqlite")
        .query_row(
            "SELECT next_attempt_at FROM entries WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .expect("next attempt");
    let now_ms =
        i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).expect("now");
    if let Ok(wait) = u64::try_from(due_ms - now_ms) {
        assert!(wait <= 3000, "due in {wait} ms");
        std::thread::sleep(Duration::from_millis(wait + 5));
    }
}

fn entry<'a>(entries: &'a [Value], license: &str) -> &'a Value {
    entries
        .iter()
        .find(|e| e["license_number"] == license)
        .unwrap_or_else(|| panic!("no entry for {license} in {entries:?}"))
}

#[test]
fn a_damaged_entry_is_held_untouched_and_later_runs_still_link_or_queue() {
    let bench = Bench::new();
    // The backend is down: the first run's binding waits in the outbox.
    let first = bench.headless(LICENSE);
    assert_eq!(first.json()["outcome"], "queued", "{}", first.stdout);
    let id = bench.list()[0]["id"].as_i64().expect("id");

    // Its sealed certificate is damaged on disk.
    rusqlite::Connection::open(&bench.outbox)
        .expect("sqlite")
        .execute(
            "UPDATE entries SET sealed_certificate = 'not a sealed box {' WHERE id = ?1",
            [id],
        )
        .expect("damage the entry");
    let damaged = stored_row(&bench.outbox, id);
    wait_until_due_unread(&bench.outbox, id);

    // The next run, backend still down, queues its own binding.
    let queued = bench.headless(SECOND);
    let json = queued.json();
    assert_eq!(json["outcome"], "queued", "{json} {}", queued.stderr);
    assert_eq!(queued.status, 0);

    // With the backend back, the next run links its own.
    let server = bench.serve();
    let linked = bench.headless(THIRD);
    let json = linked.json();
    assert_eq!(json["outcome"], "linked", "{json} {}", linked.stderr);
    assert_eq!(linked.status, 0);
    assert_eq!(bench.setup.decisions("created", THIRD), 1);

    // The damaged entry is listed as needing an operator, and nothing of it changed.
    let entries = bench.list();
    let held = entry(&entries, LICENSE);
    assert_eq!(held["id"], id);
    assert_eq!(held["needs_operator"], true, "{held}");
    assert_eq!(held["held_reason"], "unreadable", "{held}");
    assert!(held["held_at"].is_string(), "{held}");
    assert_eq!(stored_row(&bench.outbox, id), damaged);

    // `flush` delivers the queued one, not the held one, and exits 1: one is left.
    bench.wait_until_due();
    let (status, flushed) = bench.outbox_command(&["flush"]);
    let rows = flushed["delivered"].as_array().expect("delivered");
    assert_eq!(rows.len(), 1, "{flushed}");
    assert_eq!(rows[0]["outcome"], "linked", "{flushed}");
    assert_eq!(flushed["remaining"], 1, "{flushed}");
    assert_eq!(flushed["held"], 1, "{flushed}");
    assert_eq!(flushed["queued"], 0, "{flushed}");
    assert_eq!(status, 1);
    assert_eq!(bench.setup.decisions("created", SECOND), 1);
    assert_eq!(bench.setup.decisions("created", LICENSE), 0);

    // An unreadable entry cannot be put back, and is still not deleted.
    let (status, retried) = bench.outbox_command(&["retry", &id.to_string()]);
    assert_eq!(status, 1, "{retried}");
    assert_eq!(retried["released"], false);
    assert_eq!(retried["held_reason"], "unreadable");
    assert_eq!(bench.list().len(), 1);
    assert_eq!(stored_row(&bench.outbox, id), damaged);
    server.kill();
}

#[test]
fn an_entry_sealed_with_the_retired_rsa_format_is_kept_and_never_sent() {
    let bench = Bench::new();
    let run = bench.headless(LICENSE);
    assert_eq!(run.json()["outcome"], "queued", "{}", run.stdout);
    let id = bench.list()[0]["id"].as_i64().expect("id");
    // As the previous release sealed it (RSA-OAEP + AES-GCM).
    let rsa_sealed = serde_json::json!({
        "alg": "RSA-OAEP-256+A256GCM",
        "key_id": "ab".repeat(32),
        "wrapped_key": "AAAA".repeat(64),
        "nonce": "AAAAAAAAAAAAAAAA",
        "ciphertext": "AAAAAAAAAAAAAAAAAAAAAA==",
    })
    .to_string();
    rusqlite::Connection::open(&bench.outbox)
        .expect("sqlite")
        .execute(
            "UPDATE entries SET sealed_certificate = ?2 WHERE id = ?1",
            rusqlite::params![id, rsa_sealed],
        )
        .expect("an RSA-sealed entry");
    let before = stored_row(&bench.outbox, id);

    let server = bench.serve();
    wait_until_due_unread(&bench.outbox, id);
    let (status, flushed) = bench.outbox_command(&["flush"]);
    assert_eq!(
        flushed["delivered"].as_array().map(Vec::len),
        Some(0),
        "{flushed}"
    );
    assert_eq!(flushed["held"], 1, "{flushed}");
    assert_eq!(status, 1);
    assert!(
        bench.setup.audit().is_empty(),
        "nothing reached the backend"
    );
    let entries = bench.list();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["needs_operator"], true);
    assert_eq!(entries[0]["held_reason"], "retired_seal_format");
    let (status, _) = bench.outbox_command(&["retry", &id.to_string()]);
    assert_eq!(status, 1, "it cannot be sent as it is");
    assert_eq!(stored_row(&bench.outbox, id), before, "untouched");
    server.kill();
}

/// How many submissions the backend answered `seal_key_mismatch` (checked before the
/// statement is read, so without a license number).
fn mismatches(setup: &Setup) -> usize {
    setup
        .audit()
        .iter()
        .filter(|(code, _)| code == "seal_key_mismatch")
        .count()
}

/// A seal key other than the one the terminal seals to (PKCS#8 PEM).
fn another_seal_key_pem() -> String {
    mynalink_link::seal::SealPrivateKey::generate()
        .expect("X25519 key")
        .to_pkcs8_pem()
        .expect("PEM")
        .to_string()
}

#[test]
fn a_seal_key_mismatch_is_held_for_an_operator_and_flush_exits_1() {
    let bench = Bench::new();
    // Queued while the backend is down, sealed to the backend's key K1.
    let run = bench.headless(LICENSE);
    assert_eq!(run.json()["outcome"], "queued", "{}", run.stdout);
    let id = bench.list()[0]["id"].as_i64().expect("id");

    // The backend comes back with another key, K2.
    let seal_key = bench.setup.dir.join("seal-key.pem");
    let k1 = std::fs::read(&seal_key).expect("K1");
    std::fs::write(&seal_key, another_seal_key_pem()).expect("K2");
    let server = bench.serve();
    bench.wait_until_due();
    let (status, flushed) = bench.outbox_command(&["flush"]);
    let rows = flushed["delivered"].as_array().expect("delivered");
    assert_eq!(rows.len(), 1, "{flushed}");
    assert_eq!(rows[0]["outcome"], "held", "{flushed}");
    assert_eq!(rows[0]["needs_operator"], true, "{flushed}");
    assert_eq!(rows[0]["held_reason"], "seal_key_mismatch", "{flushed}");
    assert_eq!(rows[0]["error"]["code"], "seal_key_mismatch", "{flushed}");
    assert_eq!(flushed["remaining"], 1);
    assert_eq!(status, 1, "something is left undelivered");
    assert_eq!(mismatches(&bench.setup), 1);

    // Kept, listed as needing an operator, and not tried again on its own.
    let entries = bench.list();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["id"], id);
    assert_eq!(entries[0]["needs_operator"], true);
    assert_eq!(entries[0]["held_reason"], "seal_key_mismatch");
    assert!(entries[0]["last_error"]
        .as_str()
        .is_some_and(|e| e.starts_with("seal_key_mismatch")));
    let (status, again) = bench.outbox_command(&["flush"]);
    assert_eq!(
        again["delivered"].as_array().map(Vec::len),
        Some(0),
        "{again}"
    );
    assert_eq!(status, 1);
    assert_eq!(mismatches(&bench.setup), 1);

    // The operator gives the backend its key back and releases the entry.
    server.kill();
    std::fs::write(&seal_key, k1).expect("K1 again");
    let server = bench.serve();
    let (status, released) = bench.outbox_command(&["retry", &id.to_string()]);
    assert_eq!(status, 0, "{released}");
    assert_eq!(released["released"], true);
    assert_eq!(released["held_reason"], "seal_key_mismatch");
    let (status, again) = bench.outbox_command(&["retry", &id.to_string()]);
    assert_eq!(status, 1, "not held any more: {again}");
    let (status, flushed) = bench.outbox_command(&["flush"]);
    let rows = flushed["delivered"].as_array().expect("delivered");
    assert_eq!(rows.len(), 1, "{flushed}");
    assert_eq!(rows[0]["outcome"], "linked", "{flushed}");
    assert_eq!(flushed["remaining"], 0);
    assert_eq!(status, 0, "the outbox is empty");
    assert_eq!(bench.setup.decisions("created", LICENSE), 1);
    server.kill();
}

/// Set in the copy of a test that runs inside its own mount namespace.
const IN_NAMESPACE: &str = "MYNALINK_TEST_IN_MOUNT_NAMESPACE";

/// Runs the test `name` again in a private mount namespace, where it may mount a tmpfs that
/// disappears with it. Returns `true` here (the copy passed), `false` in the copy.
fn rerun_in_private_mount_namespace(name: &str) -> bool {
    if std::env::var_os(IN_NAMESPACE).is_some() {
        return false;
    }
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let mut unshare = Command::new("unshare");
    unshare.arg("--mount");
    if !root {
        // Unprivileged: a user namespace of its own, where mounting a tmpfs is allowed.
        unshare.arg("--map-root-user");
    }
    let status = unshare
        .arg(std::env::current_exe().expect("the test binary"))
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(IN_NAMESPACE, "1")
        .status()
        .expect("run unshare (util-linux)");
    assert!(
        status.success(),
        "{name} in a private mount namespace: {status} (needs `unshare --mount`: root, or \
         unprivileged user namespaces)"
    );
    true
}

/// Fills the file system holding `dir` to the last byte.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0x5au8; 4096];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    let _ = file.sync_all();
    path
}

#[test]
fn a_disk_that_fills_while_the_password_is_typed_keeps_the_binding() {
    if rerun_in_private_mount_namespace(
        "a_disk_that_fills_while_the_password_is_typed_keeps_the_binding",
    ) {
        return;
    }
    let dir = common::temp_dir();
    let disk = dir.path().join("small-disk");
    std::fs::create_dir(&disk).expect("mount point");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs"])
        .arg(&disk)
        .status()
        .expect("run mount");
    assert!(mounted.success(), "mount a tmpfs: {mounted}");
    let bench = Bench::with_outbox(dir, disk.join("outbox.db"));

    // The run checks the outbox (and keeps its reserve), then waits for the password.
    let mut child = Command::new(env!("CARGO_BIN_EXE_mynalink"))
        .args(bench.headless_args(LICENSE))
        .env("XDG_CONFIG_HOME", "/nonexistent/mynalink-tests")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mynalink");
    let reserve = disk.join("outbox.db.reserve");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(&reserve).map(|m| m.len()).ok() != Some(RESERVE_BYTES) {
        assert!(Instant::now() < deadline, "the run made no reserve");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Meanwhile the disk fills up; then the holder types the password and the card signs.
    let filler = fill(&disk);
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .expect("password line");
    let out = child.wait_with_output().expect("wait for mynalink");
    let run = Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    let json = run.json();
    assert_eq!(json["outcome"], "queued", "{json} {}", run.stderr);
    assert_eq!(run.status, 0);
    let entries = bench.list();
    assert_eq!(entries.len(), 1, "the binding is kept");
    assert_eq!(entries[0]["license_number"], LICENSE);

    // The disk stays full (whatever filled it goes on writing): the next run stops before
    // the card is touched.
    // A little space is left, enough to open the outbox but far less than its reserve.
    let more = disk.join("more");
    std::fs::create_dir(&more).expect("dir");
    let spacer = more.join("spacer");
    std::fs::write(&spacer, vec![0x5au8; 256 * 1024]).expect("spacer");
    fill(&more);
    std::fs::remove_file(&spacer).expect("leave a little space");
    let stopped = bench.headless(SECOND);
    let json = stopped.json();
    assert_eq!(json["outcome"], "failed", "{json}");
    assert_eq!(json["error"]["code"], "outbox_unavailable", "{json}");
    assert!(
        json["error"]["message_en"]
            .as_str()
            .is_some_and(|m| m.contains("disk holding the outbox is full")
                && m.contains("before the card signed")),
        "{json}"
    );
    assert!(json["error"]["message_ja"]
        .as_str()
        .is_some_and(|m| m.contains("ディスクに空きがありません")));
    assert_eq!(json["apdu_count"], 0, "the card was not touched: {json}");
    assert_eq!(stopped.status, 1);
    assert!(!reserve.exists(), "no partial reserve is left taking space");
    assert_eq!(bench.list().len(), 1);

    // Space is freed and the backend is up: the kept binding goes out.
    std::fs::remove_file(filler).expect("free the disk");
    std::fs::remove_dir_all(more).expect("free the disk");
    let server = bench.serve();
    bench.wait_until_due();
    let (status, flushed) = bench.outbox_command(&["flush"]);
    assert_eq!(flushed["delivered"][0]["outcome"], "linked", "{flushed}");
    assert_eq!(status, 0, "{flushed}");
    assert_eq!(bench.setup.decisions("created", LICENSE), 1);
    server.kill();
}

/// The backend comes back while an entry waits out a long backoff: `outbox flush` sends it at
/// once; `--due-only` leaves it, listing it as not due.
#[test]
fn flush_sends_every_entry_at_once_and_due_only_waits_for_the_backoff() {
    let bench = Bench::new();
    // No backend behind the proxy: the run queues its binding.
    let run = bench.headless(LICENSE);
    let report: Value = serde_json::from_str(run.stdout.trim()).expect("JSON");
    assert_eq!(report["outcome"], "queued", "{report}");
    // As after many failed attempts: the next one an hour away.
    let later = OffsetDateTime::now_utc() + time::Duration::hours(1);
    let conn = rusqlite::Connection::open(&bench.outbox).expect("outbox");
    conn.execute(
        "UPDATE entries SET next_attempt_at = ?1",
        [i64::try_from(later.unix_timestamp_nanos() / 1_000_000).expect("ms")],
    )
    .expect("postpone");
    drop(conn);

    let _server = bench.serve();
    let (status, flushed) = bench.outbox_command(&["flush", "--due-only"]);
    assert_eq!(status, 1, "{flushed}");
    assert_eq!(
        flushed["delivered"].as_array().map(Vec::len),
        Some(0),
        "{flushed}"
    );
    let entries = flushed["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{flushed}");
    assert_eq!(entries[0]["outcome"], "not_due", "{flushed}");
    assert_eq!(flushed["queued"], 1, "{flushed}");

    let (status, flushed) = bench.outbox_command(&["flush"]);
    assert_eq!(status, 0, "{flushed}");
    let delivered = flushed["delivered"].as_array().expect("delivered");
    assert_eq!(delivered.len(), 1, "{flushed}");
    assert_eq!(delivered[0]["outcome"], "linked", "{flushed}");
    assert_eq!(flushed["entries"], flushed["delivered"], "{flushed}");
    assert_eq!(flushed["remaining"], 0, "{flushed}");
}
