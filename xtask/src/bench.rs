//! `cargo xtask bench-pcsc` (and the first part of `cargo xtask bench`): the first-stage flow
//! against OpenSC doing the same card work (read the signing certificate, sign), both through
//! a private pcscd on the same simulated card with a real card's delays: 20 ms per APDU and
//! 300 ms per signature. The card's own event lines count the APDUs and bytes of every run.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::pcscd::{Pcscd, PORT, SOCKET};
use crate::system::{cargo, ensure_packages, step};

pub const RUNS: usize = 7;
const APDU_LATENCY_MS: u64 = 20;
const SIGN_LATENCY_MS: u64 = 300;
/// The vpcd reader on `PORT`.
const READER: &str = "Virtual PCD 00 00";
const LICENSE: &str = "729913281070";
const PASSWORD: &str = "TEST1234";
const PKCS11_MODULE: &str = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so";
/// No command may hang the task; the slowest expected run takes about 3 s.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// pcscd powers an idle card down within about a second of the last disconnect.
const POWER_OFF_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_RATIO_TO_OPENSC: f64 = 0.4;
const MAX_OVERHEAD: f64 = 0.05;

/// `cargo xtask bench-pcsc [--runs N]`.
pub fn run(args: &[String]) -> Result<(), String> {
    let runs = match args {
        [] => RUNS,
        [flag, n] if flag == "--runs" => n
            .parse()
            .ok()
            .filter(|&n: &usize| n > 0)
            .ok_or_else(|| format!("--runs needs a positive number, not {n:?}"))?,
        _ => return Err("usage: cargo xtask bench-pcsc [--runs N]".into()),
    };
    ensure_packages(crate::BUILD_PACKAGES)?;
    ensure_packages(crate::TEST_PACKAGES)?;
    compare(runs)
}

/// Builds the release binary, starts pcscd and the card, runs every flow `runs` times
/// (interleaved, so drift affects all flows alike) and prints the table.
pub fn compare(runs: usize) -> Result<(), String> {
    refuse_other_pcscd()?;
    step("building the release binary (cargo build --release --bin mynalink)");
    cargo(&["build", "--release", "--bin", "mynalink"])?;
    let binary = crate::target_dir().join("release/mynalink");
    let dir = crate::target_dir().join("bench-pcsc");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;

    // Dropped last: stopped even when a run fails.
    let _pcscd = Pcscd::start(&dir)
        .map_err(|e| format!("cannot start the private pcscd the PC/SC comparison needs: {e}"))?;
    let card = Vcard::start(&binary)?;

    let message = dir.join("msg");
    std::fs::write(&message, "mynalink benchmark: a statement to sign\n")
        .map_err(|e| format!("{}: {e}", message.display()))?;
    step("finding OpenSC's PKCS#11 slot for the signing key");
    let slot = pkcs11_signing_slot(&card)?;

    let flows = [
        Flow::Mynalink,
        Flow::OpenSc { jpki_only: false },
        Flow::OpenSc { jpki_only: true },
    ];
    let mut results: Vec<Vec<Run>> = vec![Vec::new(); flows.len()];
    let ctx = Context {
        binary: &binary,
        dir: &dir,
        slot: &slot,
        card: &card,
    };
    for round in 1..=runs {
        step(&format!("round {round} of {runs}"));
        for (flow, result) in flows.iter().zip(results.iter_mut()) {
            result.push(flow.run(&ctx)?);
        }
    }
    drop(card);
    print_report(&flows, &results);
    Ok(())
}

/// Only one pcscd can own its socket, and vpcd's ports take one owner too. Checked here by
/// connecting and binding rather than by pcscd's PID file: pcscd 1.9.9 ends that file with a
/// NUL byte, so a PID-file check takes a live daemon for a stale one.
fn refuse_other_pcscd() -> Result<(), String> {
    let blocked = |what: String| {
        Err(format!(
            "{what}: another pcscd is running (a host daemon or another `cargo xtask test`). \
             The comparison needs its own pcscd with vpcd readers on ports {PORT} and {}; \
             stop the other one first, or run this task in a private mount and network \
             namespace.",
            PORT + 1
        ))
    };
    if std::os::unix::net::UnixStream::connect(SOCKET).is_ok() {
        let pid = std::fs::read_to_string("/run/pcscd/pcscd.pid")
            .map(|p| {
                p.trim_matches(|c: char| c.is_whitespace() || c == '\0')
                    .to_string()
            })
            .unwrap_or_default();
        let pid = if pid.is_empty() {
            "unknown".into()
        } else {
            pid
        };
        return blocked(format!("{SOCKET} answers (pid {pid})"));
    }
    for port in [PORT, PORT + 1] {
        if let Err(e) = std::net::TcpListener::bind(("0.0.0.0", port)) {
            return blocked(format!("vpcd port {port} is taken ({e})"));
        }
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What the card saw during one program run.
#[derive(Clone, Default)]
struct Counts {
    apdus: usize,
    sent: usize,
    received: usize,
}

/// One program of a flow: what the card saw, and its wall time from start to exit.
#[derive(Clone)]
struct Step {
    name: &'static str,
    counts: Counts,
    wall: Duration,
}

#[derive(Clone)]
struct Run {
    steps: Vec<Step>,
}

impl Run {
    fn total(&self) -> (Counts, Duration) {
        let mut counts = Counts::default();
        let mut wall = Duration::ZERO;
        for step in &self.steps {
            counts.apdus += step.counts.apdus;
            counts.sent += step.counts.sent;
            counts.received += step.counts.received;
            wall += step.wall;
        }
        (counts, wall)
    }
}

struct Context<'a> {
    binary: &'a Path,
    dir: &'a Path,
    slot: &'a str,
    card: &'a Vcard,
}

#[derive(Clone, Copy)]
enum Flow {
    Mynalink,
    /// `jpki_only`: `OPENSC_DRIVER=jpki`, which skips the other drivers' probing.
    OpenSc {
        jpki_only: bool,
    },
}

impl Flow {
    fn label(self) -> &'static str {
        match self {
            Flow::Mynalink => "mynalink headless (first stage)",
            Flow::OpenSc { jpki_only: false } => "OpenSC, default settings",
            Flow::OpenSc { jpki_only: true } => "OpenSC, `OPENSC_DRIVER=jpki`",
        }
    }

    /// Signatures the card computes per run: each flow signs exactly once.
    fn signatures(self) -> u64 {
        1
    }

    fn run(self, ctx: &Context) -> Result<Run, String> {
        match self {
            Flow::Mynalink => Ok(Run {
                steps: vec![mynalink_step(ctx)?],
            }),
            Flow::OpenSc { jpki_only } => opensc_run(ctx, jpki_only),
        }
    }
}

fn mynalink_step(ctx: &Context) -> Result<Step, String> {
    let anchor = workspace_root().join("assets/sim-sign-test-root.der");
    let mut command = Command::new(ctx.binary);
    command
        .args(["headless", "--reader", READER, "--license", LICENSE])
        .args(["--offline", "--pin-stdin", "--json", "--trust-anchor"])
        .arg(&anchor)
        // An operator's own settings must not change what is measured.
        .env("XDG_CONFIG_HOME", "/nonexistent/mynalink-bench");
    let (output, counts, wall) = measured(ctx.card, &mut command, Some(&format!("{PASSWORD}\n")))?;
    let json: Value = serde_json::from_str(output.stdout.trim())
        .map_err(|e| format!("mynalink headless printed no JSON ({e}): {}", output.stdout))?;
    if json["outcome"] != "verified" {
        return Err(format!("mynalink headless did not verify: {json}"));
    }
    // The client's own count and the card's must agree, or one of them is wrong.
    if json["apdu_count"].as_u64() != Some(counts.apdus as u64) {
        return Err(format!(
            "mynalink reports {} APDUs, the card saw {}",
            json["apdu_count"], counts.apdus
        ));
    }
    Ok(Step {
        name: "mynalink headless",
        counts,
        wall,
    })
}

fn opensc_command(program: &str, jpki_only: bool) -> Command {
    let mut command = Command::new(program);
    if jpki_only {
        command.env("OPENSC_DRIVER", "jpki");
    } else {
        command.env_remove("OPENSC_DRIVER");
    }
    command
}

fn opensc_run(ctx: &Context, jpki_only: bool) -> Result<Run, String> {
    let file = |name: &str| ctx.dir.join(name);
    let mut read = opensc_command("pkcs15-tool", jpki_only);
    read.args(["--reader", READER, "--read-certificate", "02"])
        .args(["--verify-pin", "--auth-id", "02", "--pin", PASSWORD]);
    let (output, counts, wall) = measured(ctx.card, &mut read, None)?;
    if !output.stdout.contains("-----BEGIN CERTIFICATE-----") {
        return Err(format!(
            "pkcs15-tool printed no certificate: {}",
            output.stdout
        ));
    }
    let cert = file("opensc-cert.pem");
    std::fs::write(&cert, &output.stdout).map_err(|e| format!("{}: {e}", cert.display()))?;
    let read = Step {
        name: "pkcs15-tool --read-certificate",
        counts,
        wall,
    };

    let signature = file("opensc.sig");
    let _ = std::fs::remove_file(&signature);
    let mut sign = opensc_command("pkcs11-tool", jpki_only);
    sign.args(["--module", PKCS11_MODULE, "--slot", ctx.slot])
        .args(["--login", "--pin", PASSWORD, "--sign", "--id", "02"])
        .args(["-m", "SHA256-RSA-PKCS", "--input-file"])
        .arg(file("msg"))
        .arg("--output-file")
        .arg(&signature);
    let (_, counts, wall) = measured(ctx.card, &mut sign, None)?;
    let sign = Step {
        name: "pkcs11-tool --sign",
        counts,
        wall,
    };

    // OpenSC can exit 0 with a signature of zeros: only a verified one counts as card work.
    let key = file("opensc-pub.pem");
    let mut pubkey = Command::new("openssl");
    pubkey
        .args(["x509", "-noout", "-pubkey", "-in"])
        .arg(&cert)
        .arg("-out")
        .arg(&key);
    timed(&mut pubkey, None)?;
    let mut verify = Command::new("openssl");
    verify
        .args(["dgst", "-sha256", "-verify"])
        .arg(&key)
        .arg("-signature")
        .arg(&signature)
        .arg(file("msg"));
    timed(&mut verify, None)?;
    Ok(Run {
        steps: vec![read, sign],
    })
}

/// OpenSC makes one PKCS#11 slot per PIN; the signing key is behind the one whose token is
/// labelled "Digital Signature PIN", and its slot id depends on the reader's position.
fn pkcs11_signing_slot(card: &Vcard) -> Result<String, String> {
    let mut list = Command::new("pkcs11-tool");
    list.args(["--module", PKCS11_MODULE, "-L"]);
    let (output, _, _) = measured(card, &mut list, None)?;
    let mut current: Option<(String, String)> = None;
    for line in output.stdout.lines() {
        if let Some(rest) = line.strip_prefix("Slot ") {
            // "Slot 1 (0x1): Virtual PCD 00 00"
            current = rest.split_once(" (").and_then(|(_, rest)| {
                let (id, reader) = rest.split_once("): ")?;
                Some((id.to_string(), reader.trim().to_string()))
            });
        } else if let Some((_, label)) = line.trim().split_once("token label") {
            if let Some((id, reader)) = &current {
                if reader == READER && label.contains("Digital Signature") {
                    return Ok(id.clone());
                }
            }
        }
    }
    Err(format!(
        "pkcs11-tool lists no signing slot on {READER}:\n{}",
        output.stdout
    ))
}

struct Output {
    stdout: String,
}

/// Runs a command to completion with a timeout; fails on a non-zero exit.
fn timed(command: &mut Command, stdin: Option<&str>) -> Result<(Output, Duration), String> {
    let what = format!("{command:?}");
    let start = Instant::now();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    if let Some(mut pipe) = child.stdin.take() {
        if let Some(input) = stdin {
            pipe.write_all(input.as_bytes())
                .map_err(|e| format!("{what}: writing standard input: {e}"))?;
        }
    }
    // Both pipes are drained on threads so that a full pipe cannot stall the child.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = start + COMMAND_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what} timed out after {COMMAND_TIMEOUT:?}"));
            }
            Err(e) => return Err(format!("{what}: {e}")),
        }
    };
    let wall = start.elapsed();
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        return Err(format!("{what} failed ({status}): {stdout}{stderr}"));
    }
    Ok((Output { stdout }, wall))
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs one program against the card from power-off to power-off and counts its APDUs.
fn measured(
    card: &Vcard,
    command: &mut Command,
    stdin: Option<&str>,
) -> Result<(Output, Counts, Duration), String> {
    // Leftovers (pcscd's own power cycling) belong to no run.
    card.drain()?;
    let (output, wall) = timed(command, stdin)?;
    let counts = card.counts_until_powered_off()?;
    Ok((output, counts, wall))
}

enum Event {
    Apdu {
        command_len: usize,
        response_len: usize,
    },
    PowerOff,
    Inserted,
    Other,
}

/// `mynalink vcard` in the reader on `PORT`; killed (the card removed) on drop.
struct Vcard {
    child: Child,
    events: Receiver<Result<Event, String>>,
}

impl Vcard {
    fn start(binary: &Path) -> Result<Vcard, String> {
        step(&format!(
            "inserting the simulated card into {READER} ({APDU_LATENCY_MS} ms per APDU, \
             {SIGN_LATENCY_MS} ms per signature)"
        ));
        let mut child = Command::new(binary)
            .args(["vcard", "--json", "--port", &PORT.to_string()])
            .args(["--sim-apdu-latency-ms", &APDU_LATENCY_MS.to_string()])
            .args(["--sim-sign-latency-ms", &SIGN_LATENCY_MS.to_string()])
            .env("XDG_CONFIG_HOME", "/nonexistent/mynalink-bench")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {} vcard: {e}", binary.display()))?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("mynalink vcard: no standard output".into());
        };
        let (tx, events) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(parse_event(&line)).is_err() {
                    break;
                }
            }
        });
        let card = Vcard { child, events };
        // pcscd reads the ATR of a new card, then powers it down: from then on, every run
        // starts from the same state.
        card.wait_for("inserted", Duration::from_secs(20))?;
        card.wait_for("power_off", Duration::from_secs(20))?;
        Ok(card)
    }

    fn wait_for(&self, kind: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self
                .events
                .recv_timeout(left)
                .map_err(|_| format!("no {kind} event from mynalink vcard within {timeout:?}"))?;
            let matched = matches!(
                (event?, kind),
                (Event::PowerOff, "power_off") | (Event::Inserted, "inserted")
            );
            if matched {
                return Ok(());
            }
        }
    }

    fn drain(&self) -> Result<(), String> {
        for event in self.events.try_iter() {
            event?;
        }
        Ok(())
    }

    /// Sums the APDUs until the card is powered down after a run. The card reports each
    /// APDU after answering it, in order, so everything of the run precedes that power-off;
    /// a power-off with more events queued behind it was a power cycle within the run.
    fn counts_until_powered_off(&self) -> Result<Counts, String> {
        let deadline = Instant::now() + POWER_OFF_TIMEOUT;
        let mut counts = Counts::default();
        let mut powered_off = false;
        loop {
            let event = if powered_off {
                match self.events.try_recv() {
                    Ok(event) => event,
                    Err(_) => return Ok(counts),
                }
            } else {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.events.recv_timeout(left) {
                    Ok(event) => event,
                    Err(RecvTimeoutError::Timeout) => {
                        return Err(format!(
                            "the card was not powered down within {POWER_OFF_TIMEOUT:?} of a run"
                        ))
                    }
                    Err(RecvTimeoutError::Disconnected) => {
                        return Err("mynalink vcard exited during the benchmark".into())
                    }
                }
            };
            powered_off = false;
            match event? {
                Event::Apdu {
                    command_len,
                    response_len,
                } => {
                    counts.apdus += 1;
                    counts.sent += command_len;
                    counts.received += response_len;
                }
                Event::PowerOff => powered_off = true,
                Event::Inserted | Event::Other => {}
            }
        }
    }
}

impl Drop for Vcard {
    fn drop(&mut self) {
        step("removing the simulated card");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_event(line: &str) -> Result<Event, String> {
    let value: Value = serde_json::from_str(line)
        .map_err(|e| format!("mynalink vcard printed a line that is not JSON ({e}): {line}"))?;
    let size = |field: &str| {
        value[field]
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| format!("mynalink vcard: APDU event without {field}: {line}"))
    };
    match value["event"].as_str() {
        Some("apdu") => Ok(Event::Apdu {
            command_len: size("command_len")?,
            response_len: size("response_len")?,
        }),
        Some("power_off") => Ok(Event::PowerOff),
        Some("inserted") => Ok(Event::Inserted),
        Some(_) => Ok(Event::Other),
        None => Err(format!("mynalink vcard: event without a name: {line}")),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

fn median_usize(mut values: Vec<usize>) -> usize {
    values.sort_unstable();
    values[values.len() / 2]
}

/// One table row: medians over the runs.
struct Row {
    apdus: usize,
    apdus_vary: bool,
    sent: usize,
    received: usize,
    ms: f64,
    expected_ms: f64,
}

fn row(flow: Flow, runs: &[Run]) -> Row {
    let totals: Vec<(Counts, Duration)> = runs.iter().map(Run::total).collect();
    let apdu_counts: Vec<usize> = totals.iter().map(|(c, _)| c.apdus).collect();
    let apdus_vary = apdu_counts.iter().any(|&n| n != apdu_counts[0]);
    let apdus = median_usize(apdu_counts);
    Row {
        apdus,
        apdus_vary,
        sent: median_usize(totals.iter().map(|(c, _)| c.sent).collect()),
        received: median_usize(totals.iter().map(|(c, _)| c.received).collect()),
        ms: median(
            totals
                .iter()
                .map(|(_, wall)| wall.as_secs_f64() * 1000.0)
                .collect(),
        ),
        expected_ms: (apdus as u64 * APDU_LATENCY_MS + flow.signatures() * SIGN_LATENCY_MS) as f64,
    }
}

fn print_report(flows: &[Flow], results: &[Vec<Run>]) {
    let runs = results.first().map_or(0, Vec::len);
    if runs == 0 {
        return;
    }
    let rows: Vec<Row> = flows
        .iter()
        .zip(results)
        .map(|(&flow, runs)| row(flow, runs))
        .collect();
    let opensc_default = rows[1].ms;
    println!();
    println!(
        "First stage through pcscd and vpcd, simulated card at {APDU_LATENCY_MS} ms per APDU \
         and {SIGN_LATENCY_MS} ms per signature; medians of {runs} runs. Bytes are whole \
         APDUs (header, data, status word) to and from the card."
    );
    println!();
    println!(
        "| flow | APDUs | bytes sent | bytes received | median ms | expected ms \
         (APDUs×{APDU_LATENCY_MS} + signatures×{SIGN_LATENCY_MS}) | overhead % | ratio to OpenSC |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (flow, row) in flows.iter().zip(&rows) {
        println!(
            "| {} | {}{} | {} | {} | {:.0} | {:.0} | {:+.1} | {:.2} |",
            flow.label(),
            row.apdus,
            if row.apdus_vary { " (varied)" } else { "" },
            row.sent,
            row.received,
            row.ms,
            row.expected_ms,
            (row.ms - row.expected_ms) / row.expected_ms * 100.0,
            row.ms / opensc_default,
        );
    }
    println!();
    println!("Per program (medians):");
    println!();
    println!("| flow | program | APDUs | bytes sent | bytes received | median ms |");
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    for (flow, runs) in flows.iter().zip(results) {
        let steps = runs.first().map_or(0, |r| r.steps.len());
        for i in 0..steps {
            let of_step = |f: &dyn Fn(&Step) -> usize| -> usize {
                median_usize(runs.iter().map(|r| f(&r.steps[i])).collect())
            };
            println!(
                "| {} | {} | {} | {} | {} | {:.0} |",
                flow.label(),
                runs[0].steps[i].name,
                of_step(&|s| s.counts.apdus),
                of_step(&|s| s.counts.sent),
                of_step(&|s| s.counts.received),
                median(
                    runs.iter()
                        .map(|r| r.steps[i].wall.as_secs_f64() * 1000.0)
                        .collect()
                ),
            );
        }
    }
    println!();
    let ours = &rows[0];
    let verdict = |ok: bool| if ok { "holds" } else { "NOT MET" };
    let ratio = ours.ms / opensc_default;
    println!(
        "Target: mynalink in at most {MAX_RATIO_TO_OPENSC} of OpenSC's time: {ratio:.2} of \
         OpenSC with default settings — {}; {:.2} of `OPENSC_DRIVER=jpki` — {}.",
        verdict(ratio <= MAX_RATIO_TO_OPENSC),
        ours.ms / rows[2].ms,
        verdict(ours.ms / rows[2].ms <= MAX_RATIO_TO_OPENSC),
    );
    let overhead = (ours.ms - ours.expected_ms) / ours.expected_ms;
    println!(
        "Target: mynalink within {:.0}% of {} APDUs × {APDU_LATENCY_MS} ms + {} signature × \
         {SIGN_LATENCY_MS} ms = {:.0} ms: {:.0} ms, {:+.1}% — {}.",
        MAX_OVERHEAD * 100.0,
        ours.apdus,
        Flow::Mynalink.signatures(),
        ours.expected_ms,
        ours.ms,
        overhead * 100.0,
        verdict(overhead <= MAX_OVERHEAD),
    );
}
