//! Paths in the config file are relative to the file, never to the working directory: a
//! file planted where the client happens to be started is not picked up. Paths given on
//! the command line stay relative to the working directory.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("config");
    path_str(&path)
}

/// Config in A naming relative files; the same names planted in the working directory B.
#[test]
fn config_paths_are_taken_from_the_config_files_directory() {
    let a = temp_dir();
    let b = temp_dir();
    let config = write_config(
        a.path(),
        "backend_url = \"http://127.0.0.1:1/\"\n\
         token_file = \"terminal.token\"\n\
         backend_key = \"backend-seal.pem\"\n\
         outbox = \"outbox.db\"\n",
    );
    write_private(&b.path().join("terminal.token"), "planted-token\n");
    std::fs::write(b.path().join("backend-seal.pem"), "planted key\n").expect("plant");

    let run = mynalink_in(
        Some(b.path()),
        &[
            "--config",
            &config,
            "headless",
            "--sim",
            "--license",
            LICENSE,
            "--pin-stdin",
            "--json",
        ],
        Some("TEST1234\n"),
    );
    assert_eq!(run.status, 2, "{}", run.stdout);
    let json = run.json();
    assert_eq!(json["error"]["code"], "configuration_invalid", "{json}");
    let detail = json["error"]["detail"].as_str().unwrap_or_default();
    let expected = path_str(&a.path().join("terminal.token"));
    assert!(detail.contains(&expected), "names A's file: {detail}");
    assert_eq!(json["apdu_count"], 0, "nothing reached the card");

    // With A's token present, the next file looked for is A's key, not B's planted one.
    write_private(&a.path().join("terminal.token"), "a-token\n");
    let run = mynalink_in(
        Some(b.path()),
        &[
            "--config",
            &config,
            "headless",
            "--sim",
            "--license",
            LICENSE,
            "--pin-stdin",
            "--json",
        ],
        Some("TEST1234\n"),
    );
    let json = run.json();
    assert_eq!(json["error"]["code"], "configuration_invalid", "{json}");
    let detail = json["error"]["detail"].as_str().unwrap_or_default();
    let expected = path_str(&a.path().join("backend-seal.pem"));
    assert!(detail.contains(&expected), "names A's key: {detail}");
}

#[test]
fn the_outbox_and_the_ca_file_follow_the_config_file() {
    let a = temp_dir();
    let b = temp_dir();
    let config = write_config(a.path(), "outbox = \"outbox.db\"\n");
    let run = mynalink_in(
        Some(b.path()),
        &["--config", &config, "outbox", "list", "--json"],
        None,
    );
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert!(a.path().join("outbox.db").exists(), "the outbox is A's");
    assert!(!b.path().join("outbox.db").exists(), "nothing in B");

    let config = write_config(
        a.path(),
        "backend_url = \"https://127.0.0.1:1/\"\n\
         token_file = \"terminal.token\"\n\
         ca_file = \"backend-ca.pem\"\n\
         backend_key = \"backend-seal.pem\"\n",
    );
    write_private(&a.path().join("terminal.token"), "a-token\n");
    std::fs::write(b.path().join("backend-ca.pem"), "planted CA\n").expect("plant");
    let run = mynalink_in(
        Some(b.path()),
        &["--config", &config, "outbox", "flush", "--json"],
        None,
    );
    assert_eq!(run.status, 2, "{}{}", run.stdout, run.stderr);
    let expected = path_str(&a.path().join("backend-ca.pem"));
    assert!(
        run.stdout.contains(&expected),
        "names A's CA file: {}",
        run.stdout
    );
}

#[test]
fn command_line_paths_stay_relative_to_the_working_directory() {
    let a = temp_dir();
    let b = temp_dir();
    let config = write_config(a.path(), "outbox = \"outbox.db\"\n");
    let run = mynalink_in(
        Some(b.path()),
        &[
            "--config", &config, "outbox", "list", "--json", "--outbox", "here.db",
        ],
        None,
    );
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        b.path().join("here.db").exists(),
        "the flag's outbox is in B"
    );
    assert!(!a.path().join("outbox.db").exists());
    assert!(!a.path().join("here.db").exists());
}
