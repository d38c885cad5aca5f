//! `import-licenses`: the CSV import, through the library and through the binary.

mod common;

use std::process::Command;

use common::*;
use mynalink_link::api::{Holding, LicenseState};
use mynalink_server::import::{import_file, import_text, parse_records, ImportError};

use mynalink_server::scratch::Backend;

mynalink_server::on_both_databases!(
    the_binary_imports_and_reports,
    imports_and_upserts,
    errors_are_reported_by_line_and_nothing_is_imported,
    files_that_are_not_utf8_or_missing,
);

const HEADER: &str = "license_number,holding,name,birth_date,status\n";

fn errors_of(text: &str) -> Vec<(usize, String)> {
    parse_records(text)
        .expect_err("errors expected")
        .into_iter()
        .map(|e| (e.line, e.message))
        .collect()
}

fn imports_and_upserts(backend: Backend) {
    let mut bench = Bench::new(backend);
    let a = license(1);
    let b = license(2);
    let text = format!(
        "{HEADER}{a},myna_only,\"試験　花子\",1990-01-02,valid\r\n\
         {b},history_card_only,\"Smith, John \"\"Jack\"\"\",19800505,revoked\n\n"
    );
    let counts = import_text(&mut bench.store, &text, "2026-11-26T09:00:00Z").expect("import");
    assert_eq!(
        (counts.inserted, counts.updated, counts.unchanged),
        (2, 0, 0)
    );
    let rec = bench.store.license(&b).expect("read").expect("b");
    assert_eq!(rec.record.holding, Holding::HistoryCardOnly);
    assert_eq!(rec.record.state, LicenseState::Revoked);
    assert_eq!(rec.record.name, "Smith, John \"Jack\"");
    assert_eq!(rec.record.birth_date, "1980-05-05");
    assert_eq!(
        rec.lapsed_or_revoked_at.as_deref(),
        Some("2026-11-26T09:00:00Z")
    );

    // Columns in another order; one record changed, one the same.
    let text = format!(
        "status,name,birth_date,holding,license_number\n\
         suspended,試験　花子,1990-01-02,myna_and_card,{a}\n\
         revoked,\"Smith, John \"\"Jack\"\"\",1980-05-05,history_card_only,{b}\n"
    );
    let counts = import_text(&mut bench.store, &text, "2026-11-27T09:00:00Z").expect("import");
    assert_eq!(
        (counts.inserted, counts.updated, counts.unchanged),
        (0, 1, 1)
    );
    let rec = bench.store.license(&a).expect("read").expect("a");
    assert_eq!(rec.record.holding, Holding::MynaAndCard);
    assert_eq!(rec.record.state, LicenseState::Suspended);
}

#[test]
fn every_holding_and_status_name_is_accepted() {
    let holdings = [
        "myna_only",
        "myna_and_card",
        "card_only",
        "history_myna_only",
        "history_myna_and_card",
        "history_card_only",
    ];
    let states = [
        "valid",
        "suspended",
        "provisionally_suspended",
        "lapsed",
        "revoked",
    ];
    let mut text = HEADER.to_string();
    let mut serial = 10;
    for h in holdings {
        for s in states {
            serial += 1;
            text.push_str(&format!("{},{h},名前,2000-02-29,{s}\n", license(serial)));
        }
    }
    let records = parse_records(&text).expect("records");
    assert_eq!(records.len(), 30);
    for h in Holding::ALL {
        assert!(records.iter().any(|r| r.holding == h));
        assert_eq!(
            holding_name(h),
            holdings[Holding::ALL.iter().position(|x| *x == h).unwrap_or(0)]
        );
    }
    for s in mynalink_server::store::LICENSE_STATES {
        assert!(records.iter().any(|r| r.state == s), "{}", state_name(s));
    }
}

fn errors_are_reported_by_line_and_nothing_is_imported(backend: Backend) {
    let a = license(1);
    let b = license(2);
    let errors = errors_of(&format!(
        "{HEADER}{a},myna_only,名前,1990-01-02,valid\n\
         12345,myna_only,名前,1990-01-02,valid\n\
         {b},plastic,名前,1990-02-30,expired\n\
         {a},myna_only,名前,1990-01-02,valid\n\
         {b},myna_only,,1990-01-02\n\
         {b},myna_only,\"\",1990-01-02,valid\n"
    ));
    let lines: Vec<usize> = errors.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, [3, 4, 4, 4, 5, 6, 7], "{errors:?}");
    assert!(errors[0].1.contains("license_number"));
    assert!(errors[1].1.contains("plastic"));
    assert!(errors[2].1.contains("birth_date"));
    assert!(errors[3].1.contains("expired"));
    assert!(errors[4].1.contains("also on line 2"));
    assert!(errors[5].1.contains("4 fields"));
    assert!(errors[6].1.contains("name is empty"));
    // Messages never repeat a name or birth date.
    assert!(errors
        .iter()
        .all(|(_, m)| !m.contains("名前") && !m.contains("1990")));

    let mut bench = Bench::new(backend);
    let text =
        format!("{HEADER}{a},myna_only,名前,1990-01-02,valid\n{b},nope,名前,1990-01-02,valid\n");
    match import_text(&mut bench.store, &text, "now") {
        Err(ImportError::Invalid(errors)) => assert_eq!(errors[0].line, 3),
        other => panic!("{other:?}"),
    }
    assert!(bench.store.license(&a).expect("read").is_none());
}

#[test]
fn header_and_csv_syntax_errors() {
    let errors = errors_of("license_number,holding,name,birth_date\n");
    assert_eq!(errors[0].0, 1);
    assert!(errors[0].1.contains("status"));
    let errors = errors_of("license_number,holding,name,birth_date,status,address\n");
    assert!(errors[0].1.contains("address"));
    let errors = errors_of("license_number,holding,name,name,birth_date,status\n");
    assert!(errors[0].1.contains("twice"));
    let errors = errors_of("");
    assert!(errors[0].1.contains("header"));
    let errors = errors_of(&format!(
        "{HEADER}{},myna_only,\"open,1990-01-02,valid\n",
        license(1)
    ));
    assert_eq!(errors[0].0, 2);
    assert!(errors[0].1.contains("not closed"));
    let errors = errors_of(&format!(
        "{HEADER}{},myna_only,a\"b,1990-01-02,valid\n",
        license(1)
    ));
    assert_eq!(errors[0].0, 2);
    // A header without rows imports nothing, successfully.
    assert_eq!(parse_records(HEADER).expect("empty").len(), 0);
}

fn files_that_are_not_utf8_or_missing(backend: Backend) {
    let mut bench = Bench::new(backend);
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("latin1.csv");
    let mut bytes = HEADER.as_bytes().to_vec();
    bytes.extend_from_slice(b"301500000000,myna_only,\xe9,1990-01-02,valid\n");
    std::fs::write(&path, bytes).expect("write");
    match import_file(&mut bench.store, &path, "now") {
        Err(ImportError::Invalid(errors)) => {
            assert_eq!(errors[0].line, 2);
            assert!(errors[0].message.contains("UTF-8"));
        }
        other => panic!("{other:?}"),
    }
    let missing = dir.path().join("missing.csv");
    assert!(matches!(
        import_file(&mut bench.store, &missing, "now"),
        Err(ImportError::Io(_))
    ));
}

fn the_binary_imports_and_reports(backend: Backend) {
    let database = mynalink_server::scratch::ScratchDatabase::create(backend).expect("database");
    let dir = tempfile::tempdir().expect("dir");
    let csv = dir.path().join("licenses.csv");
    std::fs::write(
        &csv,
        format!(
            "{HEADER}{},myna_only,試験　花子,1990-01-02,valid\n",
            license(1)
        ),
    )
    .expect("write");
    let bin = env!("CARGO_BIN_EXE_mynalink-server");
    let url = database.url().to_string();

    let out = Command::new(bin)
        .args(["import-licenses", "--database", &url])
        .arg(&csv)
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 new"), "{stdout}");

    std::fs::write(
        &csv,
        format!("{HEADER}{},nope,x,1990-01-02,valid\n", license(2)),
    )
    .expect("write");
    let out = Command::new(bin)
        .args(["import-licenses", "--database", &url])
        .arg(&csv)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("licenses.csv:2:"), "{stderr}");
    assert!(stderr.contains("nothing was imported"), "{stderr}");

    let out = Command::new(bin).arg("serve").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen ADDR is required"));

    let out = Command::new(bin)
        .args(["import-licenses", "--database", "mysql://x"])
        .arg(&csv)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(bin)
        .arg("import-licenses")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(bin).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn an_unreachable_postgresql_is_named_without_its_password() {
    let dir = tempfile::tempdir().expect("dir");
    let csv = dir.path().join("licenses.csv");
    std::fs::write(&csv, HEADER).expect("write");
    let bin = env!("CARGO_BIN_EXE_mynalink-server");
    let with_password = format!(
        "postgres://linker:hunter2@/links?host={}&port=1",
        dir.path().display()
    );
    let without = format!(
        "postgres://linker@/links?host={}&port=1",
        dir.path().display()
    );
    for (url, expected) in [
        // A password on the command line is refused before anything is tried.
        (
            &with_password,
            "the database URL postgres://linker:***@/links?host=",
        ),
        (
            &without,
            "cannot connect to the database postgres://linker@/links?host=",
        ),
    ] {
        for args in [
            vec![
                "import-licenses",
                "--database",
                url,
                csv.to_str().expect("path"),
            ],
            vec![
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--insecure-loopback-http",
                "--revocation",
                "off",
                "--database",
                url,
            ],
        ] {
            let out = Command::new(bin).args(&args).output().expect("run");
            assert_eq!(out.status.code(), Some(2), "{args:?}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains(expected), "{stderr}");
            assert!(!stderr.contains("hunter2"), "{stderr}");
            assert!(out.stdout.is_empty());
        }
    }
}
