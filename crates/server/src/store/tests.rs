use mynalink_link::api::{Holding, LicenseState, LinkedVia};

use super::bindings::BINDING_COLUMNS;
use super::sql::args;
use super::*;
use crate::code::Code;
use crate::scratch::{Backend, ScratchDatabase};

crate::on_both_databases!(
    opens_with_durable_commits_and_latest_schema,
    refuses_a_newer_schema,
    upsert_tracks_when_a_license_ended,
    insert_is_idempotent_and_one_active_per_license,
    the_database_enforces_one_active_binding,
    failures_are_counted_in_a_window_and_flagged,
    concurrent_connections_store_one_binding_per_statement,
    migration_4_deletes_the_pending_basic4_values,
    database_errors_never_show_the_values_they_hold,
    postgres_statements_have_time_limits,
);

fn temp_store(backend: Backend) -> (ScratchDatabase, Store) {
    let db = ScratchDatabase::create(backend).expect("scratch database");
    let store = Store::open_url(db.url()).expect("open");
    (db, store)
}

fn record(number: &str, holding: Holding, state: LicenseState) -> LicenseRecord {
    LicenseRecord {
        license_number: number.into(),
        holding,
        name: "名前".into(),
        birth_date: "1990-01-02".into(),
        state,
    }
}

fn new_binding(id: &str, number: &str, sha: Option<&str>) -> NewBinding {
    NewBinding {
        binding_id: id.into(),
        license_number: number.into(),
        issuer_key_id: Some("aa".into()),
        certificate_serial: "0102".into(),
        certificate_not_before: "2026-01-01T00:00:00Z".into(),
        certificate_not_after: "2030-01-01T00:00:00Z".into(),
        terminal_id: "t1".into(),
        operator_id: None,
        linked_via: LinkedVia::Counter,
        holding_at_link: Holding::MynaOnly,
        identity_check: IdentityCheck::Automatic,
        linked_at: "2026-11-26T09:00:00Z".into(),
        statement_time: Some("2026-11-26T09:00:00Z".into()),
        statement_sha256: sha.map(str::to_string),
        revocation: RevocationCheck::off(),
    }
}

fn audit(code: Code) -> AuditEntry {
    AuditEntry {
        at: "2026-11-26T09:00:00Z".into(),
        operation: Operation::Submit,
        code,
        terminal_id: Some("t1".into()),
        license_number: None,
        binding_id: None,
    }
}

fn opens_with_durable_commits_and_latest_schema(backend: Backend) {
    let (db, mut store) = temp_store(backend);
    match backend {
        Backend::Sqlite => {
            assert_eq!(store.setting("journal_mode").expect("pragma"), "wal");
            // FULL = 2.
            assert_eq!(store.setting("synchronous").expect("pragma"), "2");
            assert_eq!(store.setting("foreign_keys").expect("pragma"), "1");
            assert_eq!(store.setting("secure_delete").expect("pragma"), "1");
        }
        Backend::Postgres => {
            assert!(store.is_postgres());
            assert_eq!(store.setting("synchronous_commit").expect("setting"), "on");
            assert_eq!(store.setting("fsync").expect("setting"), "on");
            assert!(store.pragma("synchronous").is_err());
        }
    }
    assert_eq!(store.schema_version().expect("v"), latest_schema_version());
    let applied = store
        .conn
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .expect("versions")
        .into_iter()
        .map(|mut r| r.int(0).expect("version"))
        .collect::<Vec<_>>();
    assert_eq!(applied, [1, 2, 3, 4, 5, 6, 7, 8]);
    drop(store);
    // Reopening applies nothing twice.
    let mut again = Store::open_url(db.url()).expect("reopen");
    assert_eq!(again.schema_version().expect("v"), latest_schema_version());
}

fn refuses_a_newer_schema(backend: Backend) {
    let (db, mut store) = temp_store(backend);
    store
        .conn
        .execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (999, 'x')",
            &[],
        )
        .expect("insert");
    drop(store);
    let err = Store::open_url(db.url()).expect_err("too new");
    assert!(matches!(err, StoreError::SchemaTooNew { found: 999, .. }));
}

#[test]
fn database_urls() {
    assert_eq!(
        DatabaseUrl::parse("sqlite:/tmp/x.db").expect("url"),
        DatabaseUrl::Sqlite("/tmp/x.db".into())
    );
    assert_eq!(
        DatabaseUrl::parse("sqlite:///tmp/x.db").expect("url"),
        DatabaseUrl::Sqlite("/tmp/x.db".into())
    );
    assert!(matches!(
        DatabaseUrl::parse("postgres://h/db"),
        Ok(DatabaseUrl::Postgres(_))
    ));
    assert!(DatabaseUrl::parse("mysql://h").is_err());
    assert!(DatabaseUrl::parse("sqlite:").is_err());
    assert!(matches!(
        Store::open_url("postgres://nobody@/db?host=/nonexistent-mynalink&port=1"),
        Err(StoreError::Connect { ref url, .. }) if url == "postgres://nobody@/db?host=/nonexistent-mynalink&port=1"
    ));
    // A password on the command line is refused, and not repeated.
    for (url, shown) in [
        ("postgres://u:pw-123@h/db", "postgres://u:***@h/db"),
        (
            "postgresql://u@h/db?password=pw-123",
            "postgresql://u@h/db?password=***",
        ),
    ] {
        let refused = DatabaseUrl::parse(url).expect_err(url);
        assert!(
            matches!(&refused, StoreError::PasswordInUrl { url } if url == shown),
            "{refused:?}"
        );
        let message = refused.to_string();
        assert!(!message.contains("pw-123"), "{message}");
        assert!(message.contains("--database-password-file"), "{message}");
        assert!(message.contains("pgpass"), "{message}");
    }
    assert!(matches!(
        DatabaseUrl::resolve("sqlite:/tmp/x.db", Some(Path::new("/tmp/pw"))),
        Err(StoreError::PasswordForSqlite)
    ));
}

fn upsert_tracks_when_a_license_ended(backend: Backend) {
    let (_db, mut store) = temp_store(backend);
    let n = "301512345670";
    let c = store
        .upsert_licenses(&[record(n, Holding::MynaOnly, LicenseState::Valid)], "t0")
        .expect("upsert");
    assert_eq!(c.inserted, 1);
    let c = store
        .upsert_licenses(&[record(n, Holding::MynaOnly, LicenseState::Valid)], "t1")
        .expect("upsert");
    assert_eq!(c.unchanged, 1);
    store
        .upsert_licenses(&[record(n, Holding::MynaOnly, LicenseState::Lapsed)], "t2")
        .expect("upsert");
    store
        .upsert_licenses(&[record(n, Holding::MynaOnly, LicenseState::Revoked)], "t3")
        .expect("upsert");
    let l = store.license(n).expect("read").expect("exists");
    assert_eq!(l.lapsed_or_revoked_at.as_deref(), Some("t2"));
    let c = store
        .upsert_licenses(&[record(n, Holding::MynaOnly, LicenseState::Valid)], "t4")
        .expect("upsert");
    assert_eq!(c.updated, 1);
    let l = store.license(n).expect("read").expect("exists");
    assert_eq!(l.record.state, LicenseState::Valid);
    assert_eq!(l.lapsed_or_revoked_at.as_deref(), Some("t2"));
    assert_eq!(l.updated_at, "t4");
}

fn insert_is_idempotent_and_one_active_per_license(backend: Backend) {
    let (_db, mut store) = temp_store(backend);
    let n = "301512345670";
    store
        .upsert_licenses(&[record(n, Holding::MynaOnly, LicenseState::Valid)], "t0")
        .expect("upsert");
    let created = store
        .insert_binding(&new_binding("b1", n, Some("s1")), &audit(Code::Created))
        .expect("insert");
    assert!(matches!(created, InsertOutcome::Created(ref b) if b.binding_id == "b1"));
    let again = store
        .insert_binding(&new_binding("b2", n, Some("s1")), &audit(Code::Created))
        .expect("insert");
    assert!(matches!(again, InsertOutcome::Repeated(ref b) if b.binding_id == "b1"));
    let other = store
        .insert_binding(&new_binding("b3", n, Some("s2")), &audit(Code::Created))
        .expect("insert");
    assert!(matches!(other, InsertOutcome::AlreadyLinked(ref b) if b.binding_id == "b1"));
    assert!(matches!(
        store.cancel_binding("b1", "t5", None).expect("cancel"),
        CancelOutcome::Cancelled(ref b) if b.cancelled_at.as_deref() == Some("t5")
    ));
    assert!(matches!(
        store.cancel_binding("b1", "t6", None).expect("cancel"),
        CancelOutcome::AlreadyCancelled(_)
    ));
    assert_eq!(
        store.cancel_binding("nope", "t6", None).expect("cancel"),
        CancelOutcome::NotFound
    );
    let reused = store
        .insert_binding(&new_binding("b4", n, Some("s1")), &audit(Code::Created))
        .expect("insert");
    assert!(matches!(reused, InsertOutcome::StatementReused(_)));
    let relinked = store
        .insert_binding(&new_binding("b5", n, Some("s3")), &audit(Code::Created))
        .expect("insert");
    assert!(matches!(relinked, InsertOutcome::Created(_)));
    assert_eq!(
        store
            .last_cancelled_binding(n)
            .expect("read")
            .map(|b| b.binding_id),
        Some("b1".to_string())
    );
    // Created (2), cancelled, already cancelled, not found.
    assert_eq!(store.audit_rows().expect("audit").len(), 5);
}

fn the_database_enforces_one_active_binding(backend: Backend) {
    let (_db, mut store) = temp_store(backend);
    let n = "301512345670";
    store
        .upsert_licenses(&[record(n, Holding::MynaOnly, LicenseState::Valid)], "t0")
        .expect("upsert");
    store
        .insert_binding(&new_binding("b1", n, Some("s1")), &audit(Code::Created))
        .expect("insert");
    let b = new_binding("b2", n, Some("s2"));
    let direct = store.conn.execute(
        &format!(
            "INSERT INTO bindings ({BINDING_COLUMNS})
             VALUES (?1, ?2, NULL, 'x', 'x', 'x', 't', NULL, 'counter', 'myna_only',
                 'automatic', 'x', NULL, ?3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                 NULL, NULL, NULL, NULL)"
        ),
        args![&b.binding_id, &b.license_number, &b.statement_sha256],
    );
    let error = direct.expect_err("a second active binding").to_string();
    assert!(
        error.contains("bindings_one_current") || error.contains("UNIQUE constraint failed"),
        "{error}"
    );
    // A cancelled one beside the active one is history, which the index allows.
    let b3 = new_binding("b3", n, Some("s3"));
    store
        .conn
        .execute(
            &format!(
                "INSERT INTO bindings ({BINDING_COLUMNS})
                 VALUES (?1, ?2, NULL, 'x', 'x', 'x', 't', NULL, 'counter', 'myna_only',
                     'automatic', 'x', NULL, ?3, 'y', NULL, NULL, NULL, NULL, NULL, NULL,
                     NULL, NULL, NULL, NULL, NULL)"
            ),
            args![&b3.binding_id, &b3.license_number, &b3.statement_sha256],
        )
        .expect("a cancelled binding");
    // So is a superseded one (replaced by a new first stage).
    let b4 = new_binding("b4", n, Some("s4"));
    store
        .conn
        .execute(
            &format!(
                "INSERT INTO bindings ({BINDING_COLUMNS})
                 VALUES (?1, ?2, NULL, 'x', 'x', 'x', 't', NULL, 'counter', 'myna_only',
                     'automatic', 'x', NULL, ?3, NULL, NULL, NULL, NULL, NULL, NULL, 'y',
                     'certificate_expired', NULL, NULL, 'y', 'b1')"
            ),
            args![&b4.binding_id, &b4.license_number, &b4.statement_sha256],
        )
        .expect("a superseded binding");
}

/// Connections of their own, as in several server processes, race with the same statement
/// and with different statements of one license: one binding each time.
fn concurrent_connections_store_one_binding_per_statement(backend: Backend) {
    let (db, mut store) = temp_store(backend);
    const ROUNDS: usize = 5;
    const RIVALS: usize = 4;
    let numbers: Vec<String> = (0..ROUNDS * 2).map(|i| format!("30151234{i:04}")).collect();
    let records: Vec<LicenseRecord> = numbers
        .iter()
        .map(|n| record(n, Holding::MynaOnly, LicenseState::Valid))
        .collect();
    store.upsert_licenses(&records, "t0").expect("upsert");
    for round in 0..ROUNDS {
        let same = &numbers[round * 2];
        let different = &numbers[round * 2 + 1];
        let barrier = std::sync::Barrier::new(RIVALS);
        let outcomes: Vec<(InsertOutcome, InsertOutcome)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..RIVALS)
                .map(|rival| {
                    let (url, barrier) = (db.url(), &barrier);
                    s.spawn(move || {
                        let mut store = Store::open_url(url).expect("own connection");
                        barrier.wait();
                        let id = format!("r{round}-{rival}");
                        let repeat = store
                            .insert_binding(
                                &new_binding(&format!("{id}-a"), same, Some(&format!("s{round}"))),
                                &audit(Code::Created),
                            )
                            .expect("insert");
                        let other = store
                            .insert_binding(
                                &new_binding(&format!("{id}-b"), different, Some(&id)),
                                &audit(Code::Created),
                            )
                            .expect("insert");
                        (repeat, other)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        let created = |pick: fn(&(InsertOutcome, InsertOutcome)) -> &InsertOutcome| {
            outcomes
                .iter()
                .filter(|o| matches!(pick(o), InsertOutcome::Created(_)))
                .count()
        };
        assert_eq!(created(|o| &o.0), 1, "{outcomes:?}");
        assert_eq!(created(|o| &o.1), 1, "{outcomes:?}");
        assert!(outcomes.iter().all(|(a, b)| matches!(
            a,
            InsertOutcome::Created(_) | InsertOutcome::Repeated(_)
        ) && matches!(
            b,
            InsertOutcome::Created(_) | InsertOutcome::AlreadyLinked(_)
        )));
    }
    assert_eq!(
        store.active_binding_counts().expect("counts"),
        (ROUNDS as u64 * 2, ROUNDS as u64 * 2)
    );
    let created_audits = store
        .audit_rows()
        .expect("audit")
        .iter()
        .filter(|r| r.code == "created")
        .count();
    assert_eq!(created_audits, ROUNDS * 2);
}

fn failures_are_counted_in_a_window_and_flagged(backend: Backend) {
    let (_db, mut store) = temp_store(backend);
    let failure = [FailureCount {
        kind: SubjectKind::Terminal,
        subject: "t1",
        threshold: 2,
    }];
    let mut entry = audit(Code::SignatureInvalid);
    entry.at = "2026-11-26T09:00:00Z".into();
    let flagged = store
        .record_decision(&entry, &failure, "2026-11-26T08:00:00Z")
        .expect("record");
    assert!(flagged.is_empty());
    entry.at = "2026-11-26T09:10:00Z".into();
    let flagged = store
        .record_decision(&entry, &failure, "2026-11-26T08:10:00Z")
        .expect("record");
    assert_eq!(flagged, [SubjectKind::Terminal]);
    assert_eq!(
        store
            .failures_since(SubjectKind::Terminal, "t1", "2026-11-26T09:05:00Z")
            .expect("count"),
        1
    );
    let flags = store.abuse_flags().expect("flags");
    assert_eq!(flags.len(), 1);
    assert_eq!(flags[0].failures, 2);
    assert!(store
        .clear_flag(SubjectKind::Terminal, "t1")
        .expect("clear"));
    assert!(store.abuse_flags().expect("flags").is_empty());
}

/// A database at schema version 3, through a connection that stays open (a server of the
/// old version still running beside the one that migrates).
fn at_version_3(db: &ScratchDatabase) -> sql::Conn {
    let mut conn = match db.sqlite_path() {
        Some(path) => sql::Conn::Sqlite(super::sqlite::SqliteConn::open(path).expect("open")),
        None => sql::Conn::Postgres(Box::new(
            pg::PgConn::connect(&pg::PgTarget::parse(db.url()).expect("url")).expect("connect"),
        )),
    };
    conn.begin_write().expect("begin");
    conn.batch(
        "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)",
    )
    .expect("migrations table");
    for migration in &schema::MIGRATIONS[..3] {
        conn.batch(match conn.dialect() {
            Dialect::Sqlite => migration.sqlite,
            Dialect::Postgres => migration.postgres,
        })
        .expect("old migration");
        conn.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, 'x')",
            args![migration.version],
        )
        .expect("version");
    }
    conn.commit().expect("commit");
    conn
}

/// Pending rows of the old form held the values: migration 4 deletes them, and SQLite
/// (`secure_delete`, the WAL emptied) keeps no byte of them in its files.
fn migration_4_deletes_the_pending_basic4_values(backend: Backend) {
    let db = ScratchDatabase::create(backend).expect("scratch database");
    let mut old = at_version_3(&db);
    let marker = format!("旧住所{}", hex::encode(rand::random::<[u8; 8]>()));
    old.begin_write().expect("begin");
    old.batch(&format!(
        "INSERT INTO license_records (license_number, holding, name, birth_date, status,
             updated_at)
         VALUES ('301500000010', 'myna_only', '名前', '1990-01-02', 'valid', 'x');
         INSERT INTO bindings (binding_id, license_number, certificate_serial,
             certificate_not_before, certificate_not_after, terminal_id, linked_via,
             holding_at_link, identity_check, linked_at)
         VALUES ('b1', '301500000010', '01', 'x', 'x', 't', 'counter', 'myna_only',
             'automatic', 'x');
         INSERT INTO second_stage_pending (second_stage_id, license_number, binding_id,
             caller_id, name, address, birth_date, sex, created_at, expires_at)
         VALUES ('s1', '301500000010', 'b1', 'p', '{marker}', '{marker}', '19900102', '2',
             '2026-01-01T00:00:00Z', '2999-01-01T00:00:00Z');"
    ))
    .expect("old row");
    old.commit().expect("commit");
    let file_holds_marker = |db: &ScratchDatabase| {
        let path = db.sqlite_path().expect("SQLite");
        ["", "-wal"].iter().any(|suffix| {
            let mut name = path.as_os_str().to_os_string();
            name.push(suffix);
            let bytes = std::fs::read(&name).unwrap_or_default();
            bytes.windows(marker.len()).any(|w| w == marker.as_bytes())
        })
    };
    if backend == Backend::Sqlite {
        assert!(
            file_holds_marker(&db),
            "the old row is not where it is sought"
        );
    }

    let mut store = Store::open_url(db.url()).expect("migrate");
    assert_eq!(store.schema_version().expect("v"), latest_schema_version());
    let count = |store: &mut Store| {
        store
            .conn
            .query_one("SELECT COUNT(*) FROM second_stage_pending", &[])
            .expect("count")
            .int(0)
            .expect("int")
    };
    assert_eq!(count(&mut store), 0);
    // The new form holds hashes.
    store
        .conn
        .query(
            "SELECT basic4_key_id, name_hmac, address_hmac, birth_date_hmac, sex_hmac
             FROM second_stage_pending",
            &[],
        )
        .expect("hash columns");
    assert!(store
        .conn
        .query("SELECT name FROM second_stage_pending", &[])
        .is_err());
    if backend == Backend::Sqlite {
        assert!(
            !file_holds_marker(&db),
            "the old values survived the migration"
        );
    }
    drop(old);
}

/// A value that must never appear in an error's text.
const MARKER: &str = "301599999990-試験マーカー";

fn database_errors_never_show_the_values_they_hold(backend: Backend) {
    let (_db, mut store) = temp_store(backend);
    store
        .conn
        .batch(
            "CREATE TABLE probe (k TEXT CONSTRAINT probe_k_key UNIQUE, \
             n INTEGER CONSTRAINT probe_n_positive CHECK (n > 0))",
        )
        .expect("table");
    store
        .conn
        .execute("INSERT INTO probe (k, n) VALUES (?1, 1)", args![MARKER])
        .expect("first row");
    let mut failures = vec![
        (
            "unique",
            store
                .conn
                .execute("INSERT INTO probe (k, n) VALUES (?1, 2)", args![MARKER])
                .expect_err("duplicate key"),
        ),
        (
            "check",
            store
                .conn
                .execute(
                    "INSERT INTO probe (k, n) VALUES (?1, ?2)",
                    args![format!("{MARKER}-2").as_str(), -7i64],
                )
                .expect_err("check constraint"),
        ),
    ];
    if store.is_postgres() {
        failures.push((
            "cast",
            store
                .conn
                .query("SELECT CAST(CAST(?1 AS TEXT) AS INTEGER)", args![MARKER])
                .expect_err("not an integer"),
        ));
        failures.push((
            "raise",
            store
                .conn
                .batch(&format!(
                    "DO $$ BEGIN RAISE EXCEPTION 'bad value %', '{MARKER}' \
                     USING DETAIL = '{MARKER}', HINT = '{MARKER}'; END $$"
                ))
                .expect_err("raise"),
        ));
    }
    for (what, error) in &failures {
        let shown = error.to_string();
        assert!(!shown.contains(MARKER), "{what}: {shown}");
        assert!(!shown.contains("Key ("), "{what}: {shown}");
        if store.is_postgres() {
            let class = match *what {
                "unique" => "23505",
                "check" => "23514",
                // A data exception (the marker starts with digits: out of range).
                "cast" => "22",
                _ => "P0001",
            };
            assert!(
                shown.contains(&format!("SQLSTATE {class}")),
                "{what}: {shown}"
            );
        }
    }
    if store.is_postgres() {
        assert!(failures[0].1.to_string().contains("probe_k_key"));
        assert!(failures[0].1.to_string().contains("table probe"));
        assert!(failures[1].1.to_string().contains("probe_n_positive"));
    }
}

fn postgres_statements_have_time_limits(backend: Backend) {
    let (_db, mut store) = temp_store(backend);
    if !store.is_postgres() {
        return;
    }
    assert_eq!(store.setting("statement_timeout").expect("setting"), "5s");
    assert_eq!(store.setting("lock_timeout").expect("setting"), "2s");
    let started = std::time::Instant::now();
    let error = store
        .conn
        .query("SELECT pg_sleep(30)", args![])
        .expect_err("statement timeout");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(error.is_busy(), "{error}");
    assert!(error.to_string().contains("57014"), "{error}");
}
