//! `cargo xtask bench-backlog` (and part of `cargo xtask bench`): a backlog of queued
//! bindings — 2,000 by default, each failed once during an outage — sent by the release
//! `mynalink outbox flush` to the embedded reference backend on SQLite (the `backlog` example
//! of `mynalink-server`). Target: the 2,000 in under 30 s.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::system::{cargo, step};

pub const ENTRIES: u64 = 2000;
const TARGET_SECONDS: f64 = 30.0;

/// `cargo xtask bench-backlog [--entries N]`.
pub fn run(args: &[String]) -> Result<(), String> {
    let usage = "usage: cargo xtask bench-backlog [--entries N]";
    let entries = match args {
        [] => ENTRIES,
        [flag, value] if flag == "--entries" => value
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("--entries needs a positive number, not {value:?}"))?,
        _ => return Err(usage.into()),
    };
    measure(entries)
}

pub fn measure(entries: u64) -> Result<(), String> {
    step("building the client and the backlog generator (release)");
    cargo(&["build", "--release", "--quiet", "--bin", "mynalink"])?;
    cargo(&[
        "build",
        "--release",
        "--quiet",
        "-p",
        "mynalink-server",
        "--example",
        "backlog",
    ])?;
    let target = crate::target_dir().join("release");
    step(&format!(
        "flushing a backlog of {entries} bindings with mynalink outbox flush (SQLite)"
    ));
    let output = Command::new(target.join("examples/backlog"))
        .args(["--entries", &entries.to_string(), "--client"])
        .arg(target.join("mynalink"))
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start the backlog generator: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .ok_or_else(|| {
            format!(
                "the backlog generator printed no report ({})",
                output.status
            )
        })?;
    let seconds = report["seconds"].as_f64().unwrap_or(f64::NAN);
    println!();
    println!("| entries | linked | left in outbox | stored | seconds | entries/s |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {} | {} | {} | {} | {seconds:.2} | {} |",
        report["entries"],
        report["linked"],
        report["left_in_outbox"],
        report["stored"],
        report["per_second"]
    );
    let verdict = if seconds < TARGET_SECONDS * entries as f64 / ENTRIES as f64 {
        "holds"
    } else {
        "NOT MET"
    };
    println!(
        "\ntarget: {ENTRIES} entries in under {TARGET_SECONDS:.0} s (scaled to {entries}) — {verdict}."
    );
    if output.status.success() {
        Ok(())
    } else {
        Err("the flush did not link every entry exactly once".into())
    }
}
