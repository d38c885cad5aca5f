//! Running the real `mynalink` binary the way an integrator would.
#![allow(dead_code)]

pub mod pcsc;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

pub const LICENSE: &str = "729913281070";
pub const PASSWORD: &str = "TEST1234";

pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The one JSON object `--json` prints.
    pub fn json(&self) -> Value {
        let lines: Vec<&str> = self
            .stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one JSON line, got: {}",
            self.stdout
        );
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }

    pub fn code(&self) -> Option<String> {
        self.json()
            .pointer("/error/code")
            .and_then(Value::as_str)
            .map(str::to_string)
    }
}

pub fn mynalink(args: &[&str], stdin: Option<&str>) -> Run {
    mynalink_in(None, args, stdin)
}

/// [`mynalink`] started in the working directory `cwd` (`None`: the test's own).
pub fn mynalink_in(cwd: Option<&Path>, args: &[&str], stdin: Option<&str>) -> Run {
    run_mynalink(cwd, &shared_state_dir(), args, stdin)
}

/// [`mynalink`] with its log file under `state` (`$XDG_STATE_HOME`).
pub fn mynalink_with_state(state: &Path, args: &[&str], stdin: Option<&str>) -> Run {
    run_mynalink(None, state, args, stdin)
}

/// Where the tests' client runs log unless a test looks at its own log: under the build's
/// temporary directory, never the developer's own state.
pub fn shared_state_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("client-state")
}

fn run_mynalink(cwd: Option<&Path>, state: &Path, args: &[&str], stdin: Option<&str>) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mynalink"));
    if let Some(dir) = cwd {
        command.current_dir(dir);
    }
    let mut child = command
        .args(args)
        // Never pick up the developer's own settings.
        .env("XDG_CONFIG_HOME", "/nonexistent/mynalink-tests")
        .env("XDG_STATE_HOME", state)
        .env_remove("MYNALINK_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mynalink");
    if let Some(mut pipe) = child.stdin.take() {
        if let Some(input) = stdin {
            let _ = pipe.write_all(input.as_bytes());
        }
    }
    let out = child.wait_with_output().expect("wait for mynalink");
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `mynalink headless --license … --offline --pin-stdin --json` plus `extra`.
pub fn headless(extra: &[&str], password_line: &str) -> Run {
    let mut args = vec![
        "headless",
        "--license",
        LICENSE,
        "--offline",
        "--pin-stdin",
        "--json",
    ];
    args.extend_from_slice(extra);
    mynalink(&args, Some(password_line))
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Commands of a trace file, as recorded.
pub fn trace_commands(trace: &Value) -> Vec<String> {
    trace["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter_map(|e| e["command"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// VERIFY commands carrying data (not the 4-byte retry query).
pub fn verify_attempts(trace: &Value) -> usize {
    trace_commands(trace)
        .iter()
        .filter(|c| c.starts_with("00200080") && c.len() > 8)
        .count()
}
