//! Project tasks: `cargo xtask demo`, `cargo xtask test`, `cargo xtask bench`,
//! `cargo xtask fixtures`, `cargo xtask package`. Each installs the Debian packages it needs when they are missing.

mod audit;
mod bench;
mod bench_backlog;
mod bench_gui;
mod bench_server;
mod fixtures;
mod install_test;
mod package;
mod pcscd;
mod postgres;
mod system;
mod xvfb;

use std::process::ExitCode;

use system::{cargo, ensure_packages, step};

/// Needed to build at all: the `pcsc` crate links libpcsclite and finds it with pkg-config.
const BUILD_PACKAGES: &[&str] = &["pkgconf", "libpcsclite-dev"];
/// Needed by the end-to-end tests: the real PC/SC daemon, the vpcd virtual reader, and
/// OpenSC / pcsc-tools / openssl as independent reference clients; PostgreSQL for the
/// server tests; faketime for an OCSP responder with a shifted clock (revocation tests).
const TEST_PACKAGES: &[&str] = &[
    "pcscd",
    "vsmartcard-vpcd",
    "opensc",
    "pcsc-tools",
    "openssl",
    "faketime",
    postgres::PACKAGE,
];

/// Needed by the window tests and `cargo xtask bench-gui`: the X server, `xwd` and
/// `xwininfo`/`xprop`, a Japanese font, and the X11 libraries winit and softbuffer load at run
/// time with dlopen (nothing links them, so nothing else pulls them in).
const GUI_TEST_PACKAGES: &[&str] = &[
    "xvfb",
    "x11-apps",
    "x11-utils",
    "fonts-noto-cjk",
    "libx11-6",
    "libx11-xcb1",
    "libxcb1",
    "libxcursor1",
    "libxi6",
    "libxrandr2",
    "libxkbcommon0",
    "libxkbcommon-x11-0",
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
        "bench-backlog" => bench_backlog::run(rest),
        "bench-gui" => bench_gui::run(rest),
        "fixtures" => fixtures::regenerate(rest),
        "package" => package::run(rest),
        "install-test" => canonical_target_dir().and_then(|t| install_test::build_and_run(&t)),
        "audit" => ensure_packages(BUILD_PACKAGES).and_then(|()| audit::run_audit(&target_dir())),
        "postgres" => postgres::run_by_hand(&target_dir().join("pg-dev")),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\n\
                 demo       run the first stage on the built-in simulated card\n\
                 test       format check, clippy -D warnings, every test\n\
                 bench      the PC/SC comparison, the server load test, the window start-up, then criterion\n\
                 bench-pcsc only the PC/SC comparison: mynalink vs OpenSC through pcscd\n\
                 bench-server only the backend load test: bindings/s and latency, SQLite and PostgreSQL\n\
                 bench-backlog only the outbox backlog: 2,000 queued bindings flushed, SQLite\n\
                 bench-gui  only the window start-up: first frame and memory under Xvfb\n\
                 fixtures [NAME...] re-record the APDU fixtures in fixtures/ (all, or those named) from the simulated card\n\
                 install-test  only the install test: the packages in a clean Debian 12 root\n\
                 package    the Debian packages into target/debian/, checked with systemd-analyze and lintian\n\
                 audit      check Cargo.lock against the offline RustSec snapshot (cargo audit)\n\
                 postgres   a private PostgreSQL for running the server tests by hand (until Enter)"
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
    if ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
    {
        // The window's Japanese font and the X11 libraries winit loads at run time.
        ensure_packages(GUI_TEST_PACKAGES)?;
    }
    step("running the demo on the simulated card");
    let mut args = vec!["run", "--quiet", "--bin", "mynalink", "--", "demo"];
    // `mynalink demo` opens the staff window when there is a display, and runs in the
    // terminal otherwise.
    args.extend(rest.iter().map(String::as_str));
    cargo(&args)
}

fn test(rest: &[String]) -> Result<(), String> {
    ensure_packages(BUILD_PACKAGES)?;
    ensure_packages(TEST_PACKAGES)?;
    ensure_packages(GUI_TEST_PACKAGES)?;
    step("checking formatting (cargo fmt --check)");
    cargo(&["fmt", "--all", "--", "--check"])?;
    audit::run_audit(&target_dir())?;
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
    // The server tests run on SQLite and on this PostgreSQL; stopped when the guard drops.
    let postgres = postgres::Postgres::start(&target_dir().join("pg-test"))?;
    std::env::set_var("MYNALINK_TEST_POSTGRES", postgres.url());
    // The window tests (tests/gui_window.rs) open real windows on this X server; stopped
    // when the guard drops. The iced_test simulator tests are pinned to tiny-skia.
    let xvfb = xvfb::Xvfb::start(&target_dir().join("xvfb-test"))?;
    std::env::set_var("MYNALINK_TEST_DISPLAY", xvfb.display());
    std::env::set_var("ICED_TEST_BACKEND", "tiny-skia");
    step("running every test (the end-to-end ones through pcscd)");
    let mut args = vec!["test", "--workspace", "--all-targets", "--no-fail-fast"];
    args.extend(rest.iter().map(String::as_str));
    let tests = cargo(&args);
    drop(xvfb);
    drop(postgres);
    drop(pcscd);
    tests?;
    step("running documentation tests");
    cargo(&["test", "--workspace", "--doc"])?;
    step("the Debian packages: built, checked, installed in a clean Debian 12 root and purged");
    install_test::build_and_run(&canonical_target_dir()?)
}

/// The target directory as an absolute path without `..` (it is shown, and mounted).
fn canonical_target_dir() -> Result<std::path::PathBuf, String> {
    let target = target_dir();
    std::fs::canonicalize(&target).map_err(|e| format!("{}: {e}", target.display()))
}

fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn bench(rest: &[String]) -> Result<(), String> {
    ensure_packages(BUILD_PACKAGES)?;
    ensure_packages(TEST_PACKAGES)?;
    ensure_packages(GUI_TEST_PACKAGES)?;
    step("comparing the first stage with OpenSC through pcscd");
    // A comparison that cannot run (e.g. a host pcscd in the way) must not hide criterion's.
    let comparison = bench::compare(bench::RUNS);
    step("load-testing the reference backend");
    let server = bench_server::measure(
        bench_server::REQUESTS,
        bench_server::RATE,
        bench_server::THREADS,
    );
    step("flushing an outbox backlog");
    let backlog = bench_backlog::measure(bench_backlog::ENTRIES);
    step("measuring the windows' start-up under Xvfb");
    let gui = bench_gui::measure(bench_gui::RUNS, false);
    step("running benchmarks (cargo bench)");
    let mut args = vec!["bench", "--workspace"];
    args.extend(rest.iter().map(String::as_str));
    let criterion = cargo(&args);
    let errors: Vec<String> = [
        comparison.err().map(|e| format!("PC/SC comparison: {e}")),
        server.err().map(|e| format!("server benchmark: {e}")),
        backlog.err().map(|e| format!("backlog benchmark: {e}")),
        gui.err().map(|e| format!("window benchmark: {e}")),
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
