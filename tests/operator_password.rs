//! `mynalink operator-password`: the config line for the operator password.

use std::io::Write;
use std::process::{Command, Stdio};

fn run(input: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mynalink"))
        .args(["operator-password", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mynalink");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn prints_a_salted_pbkdf2_line_and_never_the_password() {
    let (code, stdout, _) = run("counter-staff-7\n");
    assert_eq!(code, 0);
    let line = stdout.trim();
    let value = line
        .strip_prefix("operator_password_hash = \"")
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or_else(|| panic!("unexpected line: {line}"));
    let parts: Vec<&str> = value.split('$').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert_eq!(parts[0], "pbkdf2-sha256");
    assert_eq!(parts[1], "600000");
    assert_eq!(parts[2].len(), 32, "16-byte salt");
    assert_eq!(parts[3].len(), 64, "32-byte hash");
    assert!(!stdout.contains("counter-staff-7"));
    let (_, again, _) = run("counter-staff-7\n");
    assert_ne!(again.trim(), line, "a fresh salt each time");
}

#[test]
fn a_short_password_is_refused() {
    let (code, stdout, stderr) = run("short\n");
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert!(stderr.contains("8"), "{stderr}");
}
