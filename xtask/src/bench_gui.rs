//! `cargo xtask bench-gui` (and a part of `cargo xtask bench`): how fast the staff window and
//! the kiosk show their first frame, and how much memory they hold, on a private Xvfb. The
//! release binary reports its own first presented frame (`MYNALINK_STARTUP_LOG=1`:
//! `mynalink-startup first_frame_ms=N mode=M` on stderr, counted from process start); the
//! memory is read from `/proc/PID/status` two seconds after the start (and at least one after
//! the first frame). The demo windows are measured (`--demo`: simulated card and embedded
//! backend set up before the window opens), and for reference the same windows with nothing
//! configured (no card reader, no backend): the window alone.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::system::{cargo, ensure_packages, step};
use crate::xvfb::{self, Xvfb};

pub const RUNS: usize = 7;
const FIRST_FRAME_TARGET_MS: u64 = 400;
/// 80 MB, in bytes.
const RSS_TARGET_BYTES: u64 = 80_000_000;
/// When the memory is read, counted from the spawn …
const SAMPLE_AFTER: Duration = Duration::from_secs(2);
/// … but never sooner than this after the first frame.
const SAMPLE_AFTER_FRAME: Duration = Duration::from_secs(1);
/// A first frame later than this is a failure to measure, not a slow start.
const FRAME_TIMEOUT: Duration = Duration::from_secs(20);
const STARTUP_PREFIX: &str = "mynalink-startup ";
/// Lines of the app's stderr kept to explain a failed run.
const STDERR_TAIL: usize = 20;

/// The last lines of the app's stderr.
type Tail = Arc<Mutex<VecDeque<String>>>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Staff,
    Kiosk,
    /// `mynalink` with no configuration: the window without the demo's setup.
    StaffBare,
    KioskBare,
}

impl Mode {
    const ALL: [Mode; 4] = [Mode::Staff, Mode::Kiosk, Mode::StaffBare, Mode::KioskBare];

    /// The `mode=` the app reports.
    fn name(self) -> &'static str {
        match self {
            Mode::Staff | Mode::StaffBare => "staff",
            Mode::Kiosk | Mode::KioskBare => "kiosk",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Mode::Staff => "staff `--demo`",
            Mode::Kiosk => "kiosk `kiosk --demo`",
            Mode::StaffBare => "staff, nothing configured",
            Mode::KioskBare => "kiosk, nothing configured",
        }
    }

    fn args(self) -> &'static [&'static str] {
        match self {
            Mode::Staff => &["--demo"],
            Mode::Kiosk => &["kiosk", "--demo"],
            Mode::StaffBare => &[],
            Mode::KioskBare => &["kiosk"],
        }
    }

    /// A reference row: when it cannot be measured (the app may refuse to start without a
    /// configuration) that is reported, not an error.
    fn reference(self) -> bool {
        matches!(self, Mode::StaffBare | Mode::KioskBare)
    }
}

/// One start of the window.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// As the app reports it: process start to first presented frame.
    first_frame_ms: u64,
    /// Spawn to the report line read here (includes the pipe and this process' scheduling).
    seen_ms: u64,
    rss_kb: u64,
    hwm_kb: u64,
}

/// `cargo xtask bench-gui [--runs N] [--drop-caches]`.
pub fn run(args: &[String]) -> Result<(), String> {
    let usage = || "usage: cargo xtask bench-gui [--runs N] [--drop-caches]".to_string();
    let mut runs = RUNS;
    let mut drop_caches = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => {
                let n = args.next().ok_or_else(usage)?;
                runs = n
                    .parse()
                    .ok()
                    .filter(|&n: &usize| n > 0)
                    .ok_or_else(|| format!("--runs needs a positive number, not {n:?}"))?;
            }
            "--drop-caches" => drop_caches = true,
            _ => return Err(usage()),
        }
    }
    ensure_packages(crate::BUILD_PACKAGES)?;
    ensure_packages(crate::GUI_TEST_PACKAGES)?;
    measure(runs, drop_caches)
}

/// Builds the release binary, starts Xvfb, starts each mode once (the first, cold-ish run:
/// with `drop_caches` after emptying the page cache), then `runs` more times, interleaved,
/// and prints the table. An error only when something could not be measured; the targets
/// are reported, not enforced.
pub fn measure(runs: usize, drop_caches: bool) -> Result<(), String> {
    step("building the release binary (cargo build --release --bin mynalink)");
    cargo(&["build", "--release", "--bin", "mynalink"])?;
    let binary = crate::target_dir().join("release/mynalink");
    let dir = crate::target_dir().join("bench-gui");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // Dropped last: stopped even when a run fails.
    let mut xvfb = Xvfb::start(&dir)
        .map_err(|e| format!("cannot start the Xvfb the window benchmark needs: {e}"))?;
    let display = xvfb.display();
    let load_before = load_average();

    let mut first: Vec<Option<Sample>> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    let mut first_label = "first run (cold-ish)";
    for mode in Mode::ALL {
        if drop_caches {
            match empty_page_cache() {
                Ok(()) => first_label = "first run (page cache dropped)",
                Err(e) => {
                    step(&format!(
                        "cannot drop the page cache ({e}); first run is warm"
                    ));
                    first_label = "first run (cache not dropped)";
                }
            }
        }
        step(&format!("{}: first run", mode.label()));
        match sample(&binary, &dir, &display, mode) {
            Ok(s) => first.push(Some(s)),
            Err(e) if mode.reference() && xvfb.running() => {
                step(&format!("{}: not measured: {e}", mode.label()));
                skipped.push(format!("{}: {e}", mode.label()));
                first.push(None);
            }
            Err(e) => return Err(explain(e, &mut xvfb)),
        }
    }
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); Mode::ALL.len()];
    for round in 1..=runs {
        step(&format!("round {round} of {runs}"));
        for ((mode, results), first) in Mode::ALL.iter().zip(samples.iter_mut()).zip(&first) {
            if first.is_none() {
                continue;
            }
            results
                .push(sample(&binary, &dir, &display, *mode).map_err(|e| explain(e, &mut xvfb))?);
        }
    }
    drop(xvfb);
    print_report(runs, first_label, &first, &samples);
    for note in skipped {
        println!("not measured: {note}");
    }
    println!(
        "load average (1, 5, 15 min) before: {load_before}; after: {} — other work on the \
         machine slows the start-up",
        load_average()
    );
    Ok(())
}

/// The first three fields of `/proc/loadavg`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// A failed run's error, saying so when the X server itself has gone.
fn explain(error: String, xvfb: &mut Xvfb) -> String {
    if xvfb.running() {
        error
    } else {
        format!("{error} (Xvfb on {} has exited)", xvfb.display())
    }
}

/// `sync; echo 3 > /proc/sys/vm/drop_caches` (root only).
fn empty_page_cache() -> Result<(), String> {
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3\n")
        .map_err(|e| format!("/proc/sys/vm/drop_caches: {e}"))
}

/// Collects the app's stderr: the start-up report goes to a channel, the last lines are kept
/// for error messages.
fn read_stderr(child: &mut Child) -> Result<(Receiver<String>, Tail), String> {
    let stderr = child
        .stderr
        .take()
        .ok_or("the app's stderr was not captured")?;
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let (tx, rx) = channel();
    let kept = Arc::clone(&tail);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.starts_with(STARTUP_PREFIX) {
                let _ = tx.send(line.clone());
            }
            if let Ok(mut tail) = kept.lock() {
                if tail.len() == STDERR_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        }
    });
    Ok((rx, tail))
}

fn tail_text(tail: &Mutex<VecDeque<String>>) -> String {
    let lines: Vec<String> = tail
        .lock()
        .map(|t| t.iter().cloned().collect())
        .unwrap_or_default();
    if lines.is_empty() {
        "(nothing on stderr)".into()
    } else {
        lines.join("\n    ")
    }
}

/// Starts one window, waits for its first frame, reads its memory, ends it with SIGTERM.
fn sample(binary: &Path, dir: &Path, display: &str, mode: Mode) -> Result<Sample, String> {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
    let start = Instant::now();
    let mut child = Command::new(binary)
        .args(mode.args())
        .env("DISPLAY", display)
        .env_remove("WAYLAND_DISPLAY")
        .env("MYNALINK_STARTUP_LOG", "1")
        // Never the developer's own settings or outbox.
        .env("XDG_CONFIG_HOME", "/nonexistent/mynalink-bench")
        .env("XDG_DATA_HOME", &data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let result = observe(&mut child, start, mode);
    let ended_by_sigterm = xvfb::terminate(&mut child);
    let sample = result?;
    if !ended_by_sigterm {
        step(&format!(
            "the {} window did not end on SIGTERM within 5 s (killed)",
            mode.name()
        ));
    }
    Ok(sample)
}

fn observe(child: &mut Child, start: Instant, mode: Mode) -> Result<Sample, String> {
    let (rx, tail) = read_stderr(child)?;
    let what = format!("mynalink {}", mode.args().join(" "));
    let line = loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => break line,
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "`{what}` exited ({status}) before its first frame; stderr:\n    {}",
                        tail_text(&tail)
                    ));
                }
                if start.elapsed() > FRAME_TIMEOUT {
                    return Err(format!(
                        "`{what}` reported no first frame within {} s (is \
                         MYNALINK_STARTUP_LOG supported?); stderr:\n    {}",
                        FRAME_TIMEOUT.as_secs(),
                        tail_text(&tail)
                    ));
                }
            }
        }
    };
    let seen_ms = start.elapsed().as_millis() as u64;
    let (first_frame_ms, reported_mode) = parse_startup_line(&line)?;
    if reported_mode != mode.name() {
        return Err(format!(
            "`{what}` reported mode={reported_mode}, expected {}",
            mode.name()
        ));
    }
    let sample_at = SAMPLE_AFTER.max(start.elapsed() + SAMPLE_AFTER_FRAME);
    if let Some(rest) = sample_at.checked_sub(start.elapsed()) {
        std::thread::sleep(rest);
    }
    if let Ok(Some(status)) = child.try_wait() {
        return Err(format!(
            "`{what}` exited ({status}) before its memory was read; stderr:\n    {}",
            tail_text(&tail)
        ));
    }
    let status_path = format!("/proc/{}/status", child.id());
    let status =
        std::fs::read_to_string(&status_path).map_err(|e| format!("{status_path}: {e}"))?;
    let (rss_kb, hwm_kb) =
        parse_memory(&status).ok_or_else(|| format!("no VmRSS/VmHWM in {status_path}"))?;
    Ok(Sample {
        first_frame_ms,
        seen_ms,
        rss_kb,
        hwm_kb,
    })
}

/// `mynalink-startup first_frame_ms=123 mode=staff` → (123, "staff"). Unknown fields are
/// allowed (later versions may add some).
fn parse_startup_line(line: &str) -> Result<(u64, String), String> {
    let fields = line
        .strip_prefix(STARTUP_PREFIX)
        .ok_or_else(|| format!("not a start-up report: {line:?}"))?;
    let mut ms = None;
    let mut mode = None;
    for field in fields.split_whitespace() {
        match field.split_once('=') {
            Some(("first_frame_ms", v)) => {
                ms = Some(
                    v.parse::<u64>()
                        .map_err(|_| format!("first_frame_ms is not a whole number in {line:?}"))?,
                )
            }
            Some(("mode", v)) => mode = Some(v.to_string()),
            _ => {}
        }
    }
    match (ms, mode) {
        (Some(ms), Some(mode)) => Ok((ms, mode)),
        _ => Err(format!(
            "start-up report without first_frame_ms and mode: {line:?}"
        )),
    }
}

/// VmRSS and VmHWM in kB from the text of `/proc/PID/status`.
fn parse_memory(status: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        status.lines().find_map(|l| {
            let value = l.strip_prefix(name)?.trim().strip_suffix("kB")?;
            value.trim().parse::<u64>().ok()
        })
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn median(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    match values.len() {
        0 => 0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2,
    }
}

fn mb(kb: u64) -> f64 {
    (kb * 1024) as f64 / 1e6
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

fn print_report(runs: usize, first_label: &str, first: &[Option<Sample>], samples: &[Vec<Sample>]) {
    println!();
    println!(
        "Window start-up on Xvfb {}x{}x24, release build, {runs} runs per mode after the first \
         (medians; min–max):",
        xvfb::WIDTH,
        xvfb::HEIGHT
    );
    println!();
    println!(
        "| mode | first frame ms | seen here ms | VmRSS MB | VmHWM MB | {first_label}: frame ms, VmHWM MB |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let mut verdicts = Vec::new();
    for ((mode, results), first) in Mode::ALL.iter().zip(samples).zip(first) {
        let Some(first) = first else { continue };
        let column = |f: fn(&Sample) -> u64| {
            let mut values: Vec<u64> = results.iter().map(f).collect();
            let m = median(&mut values);
            (
                m,
                values.first().copied().unwrap_or(0),
                values.last().copied().unwrap_or(0),
            )
        };
        let frame = column(|s| s.first_frame_ms);
        let seen = column(|s| s.seen_ms);
        let rss = column(|s| s.rss_kb);
        let hwm = column(|s| s.hwm_kb);
        println!(
            "| {} | {} ({}–{}) | {} ({}–{}) | {:.1} ({:.1}–{:.1}) | {:.1} ({:.1}–{:.1}) | {}, {:.1} |",
            mode.label(),
            frame.0,
            frame.1,
            frame.2,
            seen.0,
            seen.1,
            seen.2,
            mb(rss.0),
            mb(rss.1),
            mb(rss.2),
            mb(hwm.0),
            mb(hwm.1),
            mb(hwm.2),
            first.first_frame_ms,
            mb(first.hwm_kb),
        );
        let rss_max = results
            .iter()
            .chain(std::iter::once(first))
            .map(|s| s.hwm_kb)
            .max()
            .unwrap_or(0);
        verdicts.push(format!(
            "{}: first frame median {} ms ≤ {FIRST_FRAME_TARGET_MS} ms {} (first run {} ms {}); \
             peak RSS {:.1} MB ≤ {} MB {}",
            mode.label(),
            frame.0,
            verdict(frame.0 <= FIRST_FRAME_TARGET_MS),
            first.first_frame_ms,
            verdict(first.first_frame_ms <= FIRST_FRAME_TARGET_MS),
            mb(rss_max),
            RSS_TARGET_BYTES / 1_000_000,
            verdict(rss_max * 1024 <= RSS_TARGET_BYTES),
        ));
    }
    println!();
    println!("Targets (reported, not enforced):");
    for v in verdicts {
        println!("  {v}");
    }
    println!(
        "first frame: process start to the first presented frame, as the app reports it; \
         \"seen here\": spawn to that report read by xtask; memory {} s after the spawn \
         (at least {} s after the first frame); 1 MB = 10^6 bytes.",
        SAMPLE_AFTER.as_secs(),
        SAMPLE_AFTER_FRAME.as_secs()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_line() {
        assert_eq!(
            parse_startup_line("mynalink-startup first_frame_ms=57 mode=kiosk"),
            Ok((57, "kiosk".to_string()))
        );
        assert_eq!(
            parse_startup_line("mynalink-startup mode=staff renderer=tiny-skia first_frame_ms=3"),
            Ok((3, "staff".to_string()))
        );
        assert!(parse_startup_line("mynalink-startup first_frame_ms=5.5 mode=staff").is_err());
        assert!(parse_startup_line("mynalink-startup first_frame_ms=5").is_err());
        assert!(parse_startup_line("first_frame_ms=5 mode=staff").is_err());
    }

    #[test]
    fn memory_fields() {
        let status = "Name:\tmynalink\nVmPeak:\t  900000 kB\nVmHWM:\t   23456 kB\n\
                      VmRSS:\t   21000 kB\nThreads:\t7\n";
        assert_eq!(parse_memory(status), Some((21000, 23456)));
        assert_eq!(parse_memory("Name:\tzombie\n"), None);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut [5, 1, 3]), 3);
        assert_eq!(median(&mut [4, 1, 3, 2]), 2);
        assert_eq!(median(&mut []), 0);
        assert!((mb(78_125) - 80.0).abs() < 1e-9);
    }

    /// The whole plumbing — Xvfb, the stderr report, /proc, SIGTERM — with a stand-in for the
    /// app: a shell that prints the report line and sleeps.
    #[test]
    fn samples_a_stand_in_process() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-gui-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let script = dir.join("fake-mynalink");
        std::fs::write(
            &script,
            "#!/bin/sh\n[ -n \"$DISPLAY\" ] || exit 2\n\
             [ \"$MYNALINK_STARTUP_LOG\" = 1 ] || exit 3\n\
             mode=staff; [ \"$1\" = kiosk ] && mode=kiosk\n\
             echo \"other line\" >&2\n\
             echo \"mynalink-startup first_frame_ms=42 mode=$mode\" >&2\n\
             exec sleep 30\n",
        )
        .expect("write script");
        let status = Command::new("chmod")
            .arg("+x")
            .arg(&script)
            .status()
            .expect("chmod");
        assert!(status.success());
        let started = Instant::now();
        let s = sample(&script, &dir, ":12345", Mode::Kiosk).expect("sample");
        assert_eq!(s.first_frame_ms, 42);
        assert!(s.rss_kb > 0 && s.hwm_kb >= s.rss_kb, "{s:?}");
        assert!(started.elapsed() >= SAMPLE_AFTER);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "SIGTERM did not end the stand-in promptly"
        );
        // A process that never reports fails with its stderr in the message.
        std::fs::write(&script, "#!/bin/sh\necho broken >&2\nexit 7\n").expect("write");
        let err = sample(&script, &dir, ":12345", Mode::Staff).expect_err("must fail");
        assert!(err.contains("broken") && err.contains("exited"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
