//! The database side of `serve` (issue 9, item 15), against the real binary: a held lock is
//! answered 503 `server_busy` in seconds rather than hanging, a request that finds no free
//! database connection within 3 s is answered the same, the password of a PostgreSQL user
//! with password authentication comes from a private file (`--database-password-file`,
//! `PGPASSFILE`) and never from the URL, and the log names SQLSTATEs, not values.

mod common;
mod http_support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{license, request_for, sim_signer, statement_for, TERMINAL};
use http_support::*;
use mynalink_link::api::{ApiError, BindingRequest};
use mynalink_link::backend::Submitted;
use mynalink_server::scratch::{self, Backend, ScratchDatabase};
use mynalink_server::store::postgres_client;
use mynalink_simcard::Validity;
use time::OffsetDateTime;

mynalink_server::on_both_databases!(
    a_held_lock_is_answered_503_not_a_hang,
    an_exhausted_pool_is_answered_503_server_busy,
);

fn signed(number: &str) -> BindingRequest {
    let signer = sim_signer(Validity::Current);
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("whole seconds");
    let statement = statement_for(&signer, number, TERMINAL, now - time::Duration::minutes(1));
    request_for(&signer, &statement)
}

fn files(backend: Backend) -> Files {
    Files::new(
        backend,
        &format!("{},myna_only,\"試験　花子\",1990-01-02,valid\n", license(1)),
    )
}

fn spawn_serve(args: &[String]) -> Server {
    let mut command = Command::new(BIN);
    command.arg("serve").args(args);
    Server::spawn(command)
}

/// A write lock on the license records held by another connection until dropped: on
/// PostgreSQL a transaction holding `ACCESS EXCLUSIVE` on `license_records`, on SQLite an
/// `IMMEDIATE` transaction (the database's one writer).
enum HeldLock {
    Postgres(::postgres::Client),
    Sqlite(rusqlite::Connection),
}

fn hold_lock(files: &Files) -> HeldLock {
    match files.db.sqlite_path() {
        Some(path) => {
            let conn = rusqlite::Connection::open(path).expect("open");
            conn.execute_batch("BEGIN IMMEDIATE").expect("write lock");
            HeldLock::Sqlite(conn)
        }
        None => {
            let mut client = postgres_client(&files.database).expect("connect");
            client
                .batch_execute("BEGIN; LOCK TABLE license_records IN ACCESS EXCLUSIVE MODE")
                .expect("lock");
            HeldLock::Postgres(client)
        }
    }
}

impl HeldLock {
    fn release(self) {
        match self {
            HeldLock::Postgres(mut client) => client.batch_execute("ROLLBACK").expect("rollback"),
            HeldLock::Sqlite(conn) => conn.execute_batch("ROLLBACK").expect("rollback"),
        }
    }
}

/// How long a write may wait for a held lock: PostgreSQL's `lock_timeout` (2 s), SQLite's
/// busy timeout (10 s); plus slack for a loaded machine.
fn lock_wait_bound(backend: Backend) -> Duration {
    match backend {
        Backend::Postgres => Duration::from_secs(5),
        Backend::Sqlite => Duration::from_secs(14),
    }
}

/// Status, `Retry-After`, error body and time taken of one submission.
fn post(
    client: &reqwest::blocking::Client,
    url: &str,
    body: &BindingRequest,
) -> (u16, Option<String>, Option<ApiError>, Duration) {
    let started = Instant::now();
    let response = client
        .post(format!("{url}v1/bindings"))
        .bearer_auth(TOKEN)
        .json(body)
        .send()
        .expect("an answer");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let error = response
        .json::<ApiError>()
        .ok()
        .filter(|e| !e.code.is_empty());
    (status, retry_after, error, started.elapsed())
}

fn a_held_lock_is_answered_503_not_a_hang(backend: Backend) {
    let files = files(backend);
    let server = spawn_serve(&files.tls_args());
    let request = signed(&license(1));

    let lock = hold_lock(&files);
    let (status, retry_after, error, took) = post(&files.http(), &server.url, &request);
    eprintln!("{backend}: a submission under a held lock was answered {status} after {took:?}");
    assert_eq!(status, 503, "{error:?}");
    assert!(took < lock_wait_bound(backend), "{took:?}");
    assert_eq!(retry_after.as_deref(), Some("5"));
    let error = error.expect("an ApiError body");
    assert_eq!(error.code, "server_busy");
    assert!(
        error.detail.as_deref().unwrap_or("").contains("lock"),
        "{error:?}"
    );
    // The terminal's client keeps it queued and names the code.
    match files.backend(&server.url, TOKEN).submit(&request) {
        Err(unavailable) => assert!(unavailable.0.contains("server_busy"), "{unavailable}"),
        Ok(other) => panic!("{other:?}"),
    }
    lock.release();

    match files.backend(&server.url, TOKEN).submit(&request) {
        Ok(Submitted::Linked { repeated, .. }) => assert!(!repeated),
        other => panic!("after the lock: {other:?}"),
    }
    let log = server.stderr_text();
    if backend == Backend::Postgres {
        assert!(log.contains("SQLSTATE 55P03"), "{log}");
    }
    assert!(
        !log.contains(&license(1)),
        "the log names the license: {log}"
    );
    assert!(server.terminate().success());
}

fn an_exhausted_pool_is_answered_503_server_busy(backend: Backend) {
    let files = files(backend);
    let server = spawn_serve(&files.tls_args());
    let request = signed(&license(1));
    let client = files.http();

    // Every database connection waits on the lock; the requests after them wait for a
    // connection, at most 3 s.
    let lock = hold_lock(&files);
    let sent = Instant::now();
    let answers: Vec<_> = std::thread::scope(|scope| {
        let tasks: Vec<_> = (0..24)
            .map(|_| scope.spawn(|| post(&client, &server.url, &request)))
            .collect();
        std::thread::sleep(Duration::from_millis(4500));
        let held_for = sent.elapsed();
        lock.release();
        eprintln!("{backend}: the lock was held for {held_for:?}");
        tasks
            .into_iter()
            .map(|t| t.join().expect("request thread"))
            .collect()
    });

    let mut pool_busy = 0;
    for (status, retry_after, error, took) in &answers {
        let code = error.as_ref().map(|e| e.code.as_str()).unwrap_or("");
        let detail = error
            .as_ref()
            .and_then(|e| e.detail.as_deref())
            .unwrap_or("");
        assert!(
            matches!(status, 200 | 201 | 503),
            "{status} {code} {detail} after {took:?}"
        );
        assert!(*took < Duration::from_secs(20), "{took:?}");
        if *status == 503 {
            assert_eq!(code, "server_busy");
            assert_eq!(retry_after.as_deref(), Some("5"));
            if detail.contains("no database connection") {
                pool_busy += 1;
                assert!(
                    *took >= Duration::from_millis(2900) && *took < Duration::from_millis(4500),
                    "answered {took:?} after it was sent"
                );
            }
        }
    }
    eprintln!(
        "{backend}: {pool_busy} of {} requests found no free connection within 3 s",
        answers.len()
    );
    assert!(pool_busy >= 1, "{answers:?}");

    // The server goes on serving, and the statement is stored once.
    match files.backend(&server.url, TOKEN).submit(&request) {
        Ok(Submitted::Linked { .. }) => {}
        other => panic!("afterwards: {other:?}"),
    }
    assert!(server.terminate().success());
}

// ---------------------------------------------------------------------------------------
// Password authentication (PostgreSQL only: SQLite has no password)

/// A login role with a password on the test cluster, dropped with the value.
struct Role {
    admin_url: String,
    name: String,
}

impl Drop for Role {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres_client(&self.admin_url) {
            let _ = admin.batch_execute(&format!("DROP ROLE IF EXISTS {}", self.name));
        }
    }
}

fn write_private(path: &Path, text: &str, mode: u32) {
    let mut file = std::fs::File::create(path).expect("create");
    file.write_all(text.as_bytes()).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The server binary with an environment free of the user's own pgpass.
fn server_command(home: &Path, pgpassfile: Option<&Path>) -> Command {
    let mut command = Command::new(BIN);
    command.env("HOME", home).env_remove("PGPASSFILE");
    if let Some(path) = pgpassfile {
        command.env("PGPASSFILE", path);
    }
    command
}

/// `import-licenses` with the given extra arguments: (exit code, stderr).
fn import(command: &mut Command, url: &str, extra: &[&str], csv: &Path) -> (Option<i32>, String) {
    let out = command
        .args(["import-licenses", "--database", url])
        .args(extra)
        .arg(csv)
        .stdin(Stdio::null())
        .output()
        .expect("run import-licenses");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_postgres_password_comes_from_a_private_file_never_the_url() {
    let admin_url = scratch::postgres_admin_url().expect("the test PostgreSQL");
    let mut admin = postgres_client(&admin_url).expect("admin connection");
    let row = admin
        .query_one(
            "SELECT current_setting('listen_addresses'), current_setting('port')",
            &[],
        )
        .expect("settings");
    let (listen, port): (String, String) = (row.get(0), row.get(1));
    assert!(
        listen
            .split(',')
            .any(|a| a.trim() == "127.0.0.1" || a.trim() == "*"),
        "the test PostgreSQL must listen on 127.0.0.1 with scram-sha-256 for host connections \
         (cargo xtask postgres and cargo xtask test set it up); it listens on {listen:?}"
    );

    let suffix = hex::encode(rand::random::<[u8; 6]>());
    let role = Role {
        admin_url: admin_url.clone(),
        name: format!("mynalink_pw_{suffix}"),
    };
    // A colon and a backslash, which pgpass escapes.
    let secret = hex::encode(rand::random::<[u8; 8]>());
    let password = format!("pw:{secret}\\x");
    admin
        .batch_execute(&format!(
            "CREATE ROLE {} LOGIN PASSWORD '{password}'",
            role.name
        ))
        .expect("create role");
    // Dropped before the role: it owns the database.
    let db = ScratchDatabase::create(Backend::Postgres).expect("scratch database");
    let db_name = db
        .url()
        .parse::<::postgres::Config>()
        .expect("url")
        .get_dbname()
        .expect("database name")
        .to_string();
    admin
        .batch_execute(&format!("ALTER DATABASE {db_name} OWNER TO {}", role.name))
        .expect("owner");
    let url = format!("postgres://{}@127.0.0.1:{port}/{db_name}", role.name);

    let files = Files::new(Backend::Sqlite, "");
    let home = files.path("home");
    std::fs::create_dir_all(&home).expect("home");
    let csv = files.path("licenses.csv");
    std::fs::write(
        &csv,
        format!(
            "license_number,holding,name,birth_date,status\n\
             {},myna_only,\"試験　花子\",1990-01-02,valid\n",
            license(1)
        ),
    )
    .expect("csv");

    // In the URL: refused at once, named without the password, with the fix.
    let with_password = format!(
        "postgres://{}:{}@127.0.0.1:{port}/{db_name}",
        role.name,
        password.replace(':', "%3A").replace('\\', "%5C")
    );
    let (code, stderr) = import(&mut server_command(&home, None), &with_password, &[], &csv);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "postgres://{}:***@127.0.0.1:{port}/{db_name}",
            role.name
        )),
        "{stderr}"
    );
    assert!(stderr.contains("--database-password-file"), "{stderr}");
    assert!(!stderr.contains(&secret), "{stderr}");
    let (code, stderr) = serve_refused(&[
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--insecure-loopback-http".into(),
        "--database".into(),
        format!("{url}?password={secret}"),
        "--revocation".into(),
        "off".into(),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("password=***"), "{stderr}");
    assert!(!stderr.contains(&secret), "{stderr}");

    // No password at all: the server asks for one, the start fails cleanly.
    let (code, stderr) = import(&mut server_command(&home, None), &url, &[], &csv);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&url), "{stderr}");

    // A password file the group may read: refused, named, with the fix.
    let password_file = files.path("db-password");
    write_private(&password_file, &format!("{password}\n"), 0o640);
    let file_arg = path_arg(&password_file);
    let (code, stderr) = import(
        &mut server_command(&home, None),
        &url,
        &["--database-password-file", &file_arg],
        &csv,
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&file_arg), "{stderr}");
    assert!(
        stderr.contains(&format!("chmod 600 {file_arg}")),
        "{stderr}"
    );

    // A wrong password: refused by the database, the password not repeated.
    write_private(&password_file, "not-the-password\n", 0o600);
    let (code, stderr) = import(
        &mut server_command(&home, None),
        &url,
        &["--database-password-file", &file_arg],
        &csv,
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("28P01"), "{stderr}");
    assert!(!stderr.contains("not-the-password"), "{stderr}");

    // The right one, mode 0600: the import and the server work.
    write_private(&password_file, &format!("{password}\n"), 0o600);
    let (code, stderr) = import(
        &mut server_command(&home, None),
        &url,
        &["--database-password-file", &file_arg],
        &csv,
    );
    assert_eq!(code, Some(0), "{stderr}");
    let mut args = files.tls_args();
    let database = args
        .iter()
        .position(|a| a == "--database")
        .expect("--database")
        + 1;
    args[database] = url.clone();
    let mut serve = server_command(&home, None);
    serve
        .arg("serve")
        .args(&args)
        .args(["--database-password-file", &file_arg]);
    let server = Server::spawn(serve);
    let status = files
        .backend(&server.url, TOKEN)
        .license_status(&license(1))
        .expect("status over the password-authenticated connection");
    assert_eq!(status.reason, "required");
    assert!(server.terminate().success());

    // PGPASSFILE in libpq's format, with escapes; refused while others may read it.
    let pgpass = files.path("pgpass");
    let escaped = password.replace('\\', "\\\\").replace(':', "\\:");
    write_private(
        &pgpass,
        &format!(
            "# test entries\nelsewhere:5432:*:*:wrong\n127.0.0.1:{port}:{db_name}:{}:{escaped}\n",
            role.name
        ),
        0o644,
    );
    let (code, stderr) = import(&mut server_command(&home, Some(&pgpass)), &url, &[], &csv);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("chmod 600 {}", pgpass.display())),
        "{stderr}"
    );
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let mut serve = server_command(&home, Some(&pgpass));
    serve.arg("serve").args(&args);
    let server = Server::spawn(serve);
    let status = files
        .backend(&server.url, TOKEN)
        .license_status(&license(1))
        .expect("status with the password from PGPASSFILE");
    assert_eq!(status.reason, "required");
    let log = server.stderr_text();
    assert!(!log.contains(&secret), "{log}");
    assert!(server.terminate().success());

    drop(db);
    drop(role);
}
