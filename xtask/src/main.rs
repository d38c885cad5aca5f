//! Project tasks: `cargo xtask demo`, `cargo xtask test`, `cargo xtask bench`,
//! `cargo xtask fixtures`. Each installs the Debian packages it needs when they are missing.

mod bench;
mod bench_server;
mod fixtures;
mod pcscd;
mod system;

use std::process::ExitCode;

use system::{cargo, ensure_packages, step};

/// Needed to build at all: the `pcsc` crate links libpcsclite and finds it with pkg-config.
const BUILD_PACKAGES: &[&str] = &["pkgconf", "libpcsclite-dev"];
/// Needed by the end-to-end tests: the real PC/SC daemon, the vpcd virtual reader, and
/// OpenSC / pcsc-tools / openssl as independent reference clients.
const TEST_PACKAGES: &[&str] = &[
    "pcscd",
    "vsmartcard-vpcd",
    "opensc",
    "pcsc-tools",
    "openssl",
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let rest = &args[args.len().min(1)..];
    let result = match task {
        "demo" => demo(rest),
        "test" => test(rest),
        "bench" => bench(rest),
        "bench-pcsc" => bench::run(rest),
        "bench-server" => bench_server::run(rest),
        "fixtures" => fixtures::regenerate(),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\n\
                 demo       run the first stage on the built-in simulated card\n\
                 test       format check, clippy -D warnings, every test\n\
                 bench      the PC/SC comparison, the server load test, then criterion\n\
                 bench-pcsc only the PC/SC comparison: mynalink vs OpenSC through pcscd\n\
                 bench-server only the backend load test: bindings/s and latency on SQLite\n\
                 fixtures   re-record the APDU fixtures in fixtures/ from the simulated card"
            );
            return if task == "help" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {task}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo(rest: &[String]) -> Result<(), String> {
    ensure_packages(BUILD_PACKAGES)?;
    step("running the demo on the simulated card");
    let mut args = vec![
        "run",
        "--quiet",
        "--bin",
        "mynalink",
        "--",
        "demo",
        "--headless",
    ];
    args.extend(rest.iter().map(String::as_str));
    cargo(&args)
}

fn test(rest: &[String]) -> Result<(), String> {
    ensure_packages(BUILD_PACKAGES)?;
    ensure_packages(TEST_PACKAGES)?;
    step("checking formatting (cargo fmt --check)");
    cargo(&["fmt", "--all", "--", "--check"])?;
    step("linting (cargo clippy -D warnings)");
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    step("building the tests");
    cargo(&["test", "--workspace", "--all-targets", "--no-run"])?;
    let dir = target_dir().join("pcscd-test");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    // Stopped when this guard drops, whether the tests pass or not.
    let pcscd = pcscd::Pcscd::start(&dir)?;
    std::env::set_var("MYNALINK_TEST_PCSCD", pcscd.pid().to_string());
    step("running every test (the end-to-end ones through pcscd)");
    let mut args = vec!["test", "--workspace", "--all-targets", "--no-fail-fast"];
    args.extend(rest.iter().map(String::as_str));
    let tests = cargo(&args);
    drop(pcscd);
    tests?;
    step("running documentation tests");
    cargo(&["test", "--workspace", "--doc"])
}

fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn bench(rest: &[String]) -> Result<(), String> {
    ensure_packages(BUILD_PACKAGES)?;
    ensure_packages(TEST_PACKAGES)?;
    step("comparing the first stage with OpenSC through pcscd");
    // A comparison that cannot run (e.g. a host pcscd in the way) must not hide criterion's.
    let comparison = bench::compare(bench::RUNS);
    step("load-testing the reference backend");
    let server = bench_server::measure(
        bench_server::REQUESTS,
        bench_server::RATE,
        bench_server::THREADS,
    );
    step("running benchmarks (cargo bench)");
    let mut args = vec!["bench", "--workspace"];
    args.extend(rest.iter().map(String::as_str));
    let criterion = cargo(&args);
    let errors: Vec<String> = [
        comparison.err().map(|e| format!("PC/SC comparison: {e}")),
        server.err().map(|e| format!("server benchmark: {e}")),
        criterion.err(),
    ]
    .into_iter()
    .flatten()
    .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}
