//! `cargo xtask bench-server` (and part of `cargo xtask bench`): open-loop load on the
//! reference backend with durable commits — SQLite (WAL, `synchronous=FULL`), then
//! PostgreSQL (a private server as for the tests, `synchronous_commit=on`, Unix socket) —
//! plain HTTP on loopback, from the `load` example of `mynalink-server`, which runs backend
//! and load generator in one process on the same cores. Each database twice: with
//! revocation checking off, and with an OCSP check in the path of every binding against a
//! local `openssl ocsp` responder (`--ocsp`).

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::postgres::{self, Postgres};
use crate::system::{cargo, ensure_packages, step};

pub const REQUESTS: u64 = 3000;
pub const RATE: f64 = 1000.0;
pub const THREADS: u64 = 8;
const TARGET_RATE: f64 = 1000.0;
const TARGET_P99_MS: f64 = 50.0;
/// The wall time runs from the first scheduled start to the last answer, so even a backend
/// that keeps pace achieves slightly less than the offered rate.
const KEEP_PACE: f64 = 0.98;

/// One run's report and whether the store held every binding.
type LoadResult = Result<(Value, bool), String>;

/// `cargo xtask bench-server [--requests N] [--rate R] [--threads T]`.
pub fn run(args: &[String]) -> Result<(), String> {
    let (mut requests, mut rate, mut threads) = (REQUESTS, RATE, THREADS);
    let usage = "usage: cargo xtask bench-server [--requests N] [--rate R] [--threads T]";
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(usage)?;
        let bad = || format!("{flag} needs a positive number, not {value:?}");
        match flag.as_str() {
            "--requests" => requests = value.parse().ok().filter(|&n| n > 0).ok_or_else(bad)?,
            "--rate" => rate = value.parse().ok().filter(|&r| r > 0.0).ok_or_else(bad)?,
            "--threads" => threads = value.parse().ok().filter(|&n| n > 0).ok_or_else(bad)?,
            _ => return Err(usage.into()),
        }
    }
    measure(requests, rate, threads)
}

/// Builds and runs the load generator on SQLite and on PostgreSQL, then prints the table and
/// the verdicts.
pub fn measure(requests: u64, rate: f64, threads: u64) -> Result<(), String> {
    ensure_packages(&[postgres::PACKAGE])?;
    step("building the load generator (cargo build --release -p mynalink-server --example load)");
    cargo(&[
        "build",
        "--release",
        "--quiet",
        "-p",
        "mynalink-server",
        "--example",
        "load",
    ])?;
    let binary = crate::target_dir().join("release/examples/load");
    let load = |postgres_url: Option<&str>, ocsp: bool| -> LoadResult {
        let mut command = Command::new(&binary);
        command.args([
            "--requests",
            &requests.to_string(),
            "--rate",
            &rate.to_string(),
            "--threads",
            &threads.to_string(),
        ]);
        if let Some(url) = postgres_url {
            command.args(["--postgres", url]);
        }
        if ocsp {
            command.arg("--ocsp");
        }
        let output = command
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let report: Value = stdout
            .lines()
            .rev()
            .find_map(|line| serde_json::from_str(line).ok())
            .ok_or_else(|| format!("the load generator printed no report ({})", output.status))?;
        Ok((report, output.status.success()))
    };

    let mut runs: Vec<(&str, LoadResult)> = Vec::new();
    for (label, ocsp) in [("SQLite", false), ("SQLite + OCSP", true)] {
        step(&format!(
            "{label}: sending {requests} binding requests at {rate}/s from {threads} threads"
        ));
        runs.push((label, load(None, ocsp)));
    }
    match Postgres::start(&crate::target_dir().join("pg-bench")) {
        Ok(server) => {
            for (label, ocsp) in [("PostgreSQL", false), ("PostgreSQL + OCSP", true)] {
                step(&format!(
                    "{label}: sending {requests} binding requests at {rate}/s from {threads} \
                     threads"
                ));
                runs.push((label, load(Some(server.url()), ocsp)));
            }
        }
        Err(e) => runs.push(("PostgreSQL", Err(e))),
    }

    let mut errors = Vec::new();
    let mut reports = Vec::new();
    for (name, result) in runs {
        match result {
            Ok((report, success)) => {
                if !success {
                    errors.push(format!(
                        "{name}: the store does not hold exactly {requests} bindings"
                    ));
                }
                reports.push((name, report));
            }
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    print_reports(&reports);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

fn print_reports(reports: &[(&str, Value)]) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!(
        "Reference backend, embedded, durable commits: SQLite (WAL, synchronous=FULL) and \
         PostgreSQL (synchronous_commit=on, local Unix socket); plain HTTP on loopback; \
         open-loop load, latency from each request's scheduled start (service: from the \
         actual send). \"+ OCSP\": every binding checked first with OpenSSL's OCSP responder \
         on loopback (one process, RSA-2048 signatures). {cores} cores, shared by the backend, \
         the load generator, the responder and PostgreSQL."
    );
    println!();
    println!(
        "| database | requests | threads | offered /s | achieved bindings/s | statuses | p50 ms \
         | p90 ms | p99 ms | max ms | service p50 / p99 ms | stored bindings |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, report) in reports {
        print_row(name, report);
    }
    println!();
    for (name, report) in reports {
        print_verdict(name, report);
    }
}

fn number(report: &Value, path: &[&str]) -> f64 {
    path.iter()
        .fold(report, |v, key| &v[*key])
        .as_f64()
        .unwrap_or(f64::NAN)
}

fn print_row(name: &str, report: &Value) {
    let num = |path: &[&str]| number(report, path);
    let statuses = report["status_counts"]
        .as_object()
        .map(|counts| {
            counts
                .iter()
                .map(|(status, n)| format!("{status}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    println!(
        "| {name} | {} | {} | {} | {:.1} | {statuses} | {:.1} | {:.1} | {:.1} | {:.1} \
         | {:.1} / {:.1} | {} |",
        num(&["requests"]),
        num(&["threads"]),
        num(&["offered_rate_per_s"]),
        num(&["achieved_bindings_per_s"]),
        num(&["latency_ms", "p50"]),
        num(&["latency_ms", "p90"]),
        num(&["latency_ms", "p99"]),
        num(&["latency_ms", "max"]),
        num(&["service_ms", "p50"]),
        num(&["service_ms", "p99"]),
        num(&["stored_bindings"]),
    );
}

fn print_verdict(name: &str, report: &Value) {
    let num = |path: &[&str]| number(report, path);
    let requests = num(&["requests"]);
    let offered = num(&["offered_rate_per_s"]);
    let achieved = num(&["achieved_bindings_per_s"]);
    let p99 = num(&["latency_ms", "p99"]);
    let all_created = report["status_counts"]["201"].as_f64() == Some(requests)
        && report["verified"].as_bool() == Some(true);
    let rate_ok = offered >= TARGET_RATE && achieved >= KEEP_PACE * offered && all_created;
    let verdict = |ok: bool| if ok { "holds" } else { "NOT MET" };
    println!(
        "{name}: target ≥ {TARGET_RATE:.0} bindings/s (offered ≥ {TARGET_RATE:.0}/s, every \
         request 201 and stored, achieved ≥ {:.0}% of offered) — {}; p99 < \
         {TARGET_P99_MS:.0} ms: {p99:.1} ms — {}.",
        KEEP_PACE * 100.0,
        verdict(rate_ok),
        verdict(p99 < TARGET_P99_MS),
    );
}
