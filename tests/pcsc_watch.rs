//! `mynalink readers --watch --json` through the real pcscd: card insertion and removal in
//! the vpcd reader `Virtual PCD 00 01`, then pcscd stopped and started again under the
//! running watcher, which must notice both and recover by itself.
//!
//! Runs under `cargo xtask test`, which starts pcscd with the vpcd readers and puts its PID in
//! `MYNALINK_TEST_PCSCD`. Only port 35964 / `Virtual PCD 00 01` is used (other tests use
//! `00 00`). Everything here is one test: restarting pcscd would break a test running
//! alongside in this binary.
#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use mynalink_card::events::{CardEvent, Watcher};
use serde_json::Value;

const READER: &str = "Virtual PCD 00 01";
const PORT: &str = "35964";
const ATR: &str = "3be000ff8131fe4514";
const SOCKET: &str = "/run/pcscd/pcscd.comm";
const PCSCD_PID_FILE: &str = "/run/pcscd/pcscd.pid";

/// A child printing one line per event, read on a thread; killed on drop.
struct LineChild {
    name: &'static str,
    child: Child,
    lines: Receiver<(Instant, Value)>,
    seen: Vec<Value>,
}

impl LineChild {
    fn start(name: &'static str, args: &[&str]) -> LineChild {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mynalink"))
            .args(args)
            .env("XDG_CONFIG_HOME", "/nonexistent/mynalink-tests")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start mynalink {args:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send((Instant::now(), value)).is_err() {
                    break;
                }
            }
        });
        LineChild {
            name,
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line from now on that matches, with the moment it was read.
    fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> (Instant, Value) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((at, line)) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return (at, line);
                    }
                }
                Err(_) => panic!(
                    "{}: no {what} within {timeout:?}; lines so far:\n{}",
                    self.name,
                    self.seen
                        .iter()
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            }
        }
    }

    /// Lines arriving within `window`, without waiting for any in particular.
    fn drain(&mut self, window: Duration) -> Vec<Value> {
        let deadline = Instant::now() + window;
        let mut lines = Vec::new();
        while let Ok((_, line)) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line.clone());
            lines.push(line);
        }
        lines
    }

    fn stop(&mut self) -> Instant {
        let _ = self.child.kill();
        let _ = self.child.wait();
        Instant::now()
    }
}

impl Drop for LineChild {
    fn drop(&mut self) {
        self.stop();
    }
}

fn is_event(line: &Value, kind: &str) -> bool {
    line["event"] == kind
}

fn reader_event(line: &Value, kind: &str) -> bool {
    is_event(line, kind) && line["reader"] == READER
}

fn alive(pid: u32) -> bool {
    // A zombie (the harness has not collected it yet) is no longer running.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false)
}

/// pcscd as the harness started it, stopped and started again the same way. The new one is
/// left running for the following tests; its PID goes where the harness looks for it. If the
/// test fails after stopping pcscd, dropping this starts it again anyway.
struct PcscdRestart {
    old_pid: u32,
    program: PathBuf,
    args: Vec<String>,
    pid_file: PathBuf,
    stopped: bool,
    new_pid: Option<u32>,
}

impl PcscdRestart {
    fn from_running(pid: u32) -> PcscdRestart {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .unwrap_or_else(|e| panic!("pcscd (pid {pid} from MYNALINK_TEST_PCSCD): {e}"));
        let argv: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        assert!(
            argv.first().is_some_and(|a| a.ends_with("pcscd")),
            "pid {pid} is not pcscd: {argv:?}"
        );
        let config = argv
            .iter()
            .position(|a| a == "-c" || a == "--config")
            .and_then(|i| argv.get(i + 1))
            .unwrap_or_else(|| panic!("pcscd was started without -c DIR: {argv:?}"));
        let pid_file = Path::new(config)
            .parent()
            .unwrap_or_else(|| panic!("pcscd's config dir {config} has no parent"))
            .join("pcscd.pid");
        // The executable itself, in case PATH differs here from where pcscd was started.
        let program = std::fs::read_link(format!("/proc/{pid}/exe"))
            .unwrap_or_else(|_| PathBuf::from(&argv[0]));
        PcscdRestart {
            old_pid: pid,
            program,
            args: argv[1..].to_vec(),
            pid_file,
            stopped: false,
            new_pid: None,
        }
    }

    fn stop(&mut self) -> Instant {
        let status = Command::new("kill")
            .args(["-TERM", &self.old_pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.old_pid);
        self.stopped = true;
        Instant::now()
    }

    /// Waits until the old pcscd is gone and has removed its socket, then starts the new one.
    fn start(&mut self) -> Instant {
        self.try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_start(&mut self) -> Result<Instant, String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(self.old_pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if alive(self.old_pid) {
            return Err(format!(
                "pcscd {} still runs 10 s after SIGTERM",
                self.old_pid
            ));
        }
        // A clean exit removes them; after a crash they would make the new pcscd refuse.
        for stale in [SOCKET, PCSCD_PID_FILE] {
            let _ = std::fs::remove_file(stale);
        }
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: not hit by a Ctrl-C meant for the tests.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.program.display()))?;
        let started = Instant::now();
        let pid = child.id();
        // Not waited for: it outlives this test, the harness stops it by this PID.
        drop(child);
        self.new_pid = Some(pid);
        std::fs::write(&self.pid_file, pid.to_string())
            .map_err(|e| format!("{}: {e}", self.pid_file.display()))?;
        Ok(started)
    }
}

impl Drop for PcscdRestart {
    fn drop(&mut self) {
        if self.stopped && self.new_pid.is_none() {
            // Reached while a failed assertion unwinds: report, never panic again.
            if let Err(e) = self.try_start() {
                eprintln!("restarting pcscd after the failure: {e}");
            }
        }
    }
}

/// The next event from an in-process [`Watcher`] that matches.
fn wait_event(
    events: &Receiver<CardEvent>,
    what: &str,
    timeout: Duration,
    matches: impl Fn(&CardEvent) -> bool,
) -> CardEvent {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        match events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(event) if matches(&event) => return event,
            Ok(event) => seen.push(event),
            Err(e) => panic!("Watcher: no {what} within {timeout:?} ({e}); events: {seen:?}"),
        }
    }
}

fn is_reader_added(event: &CardEvent) -> bool {
    matches!(event, CardEvent::ReaderAdded { reader } if reader == READER)
}

/// Stops a watcher and checks that it ends promptly and closes its channel.
fn stop_promptly(watcher: Watcher, events: &Receiver<CardEvent>, when: &str) -> Duration {
    let started = Instant::now();
    watcher.stop();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "Watcher::stop {when} took {took:?}"
    );
    while events.try_recv().is_ok() {}
    assert!(
        events
            .try_recv()
            .is_err_and(|e| e == std::sync::mpsc::TryRecvError::Disconnected),
        "the channel stays open after Watcher::stop {when}"
    );
    took
}

/// CPU time (user + system) of a process, in clock ticks (1/100 s on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum()
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

#[test]
fn watch_reports_cards_and_survives_a_pcscd_restart() {
    let Ok(pid) = std::env::var("MYNALINK_TEST_PCSCD") else {
        panic!(
            "MYNALINK_TEST_PCSCD is not set: run through `cargo xtask test`, which starts pcscd \
             (with the vpcd readers) and sets it to pcscd's PID"
        );
    };
    let pid: u32 = pid
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("MYNALINK_TEST_PCSCD={pid:?} is not a PID"));
    // Read before anything is stopped: the command line goes with the process.
    let mut pcscd = PcscdRestart::from_running(pid);

    let test_started = Instant::now();
    let mut watch = LineChild::start("readers --watch", &["readers", "--watch", "--json"]);
    // The library's watcher in this process, alongside the command's.
    let (watcher, events) = Watcher::with_channel().expect("start Watcher");
    wait_event(&events, "PcscAvailable", Duration::from_secs(10), |e| {
        *e == CardEvent::PcscAvailable
    });
    wait_event(
        &events,
        "ReaderAdded",
        Duration::from_secs(10),
        is_reader_added,
    );
    watch.wait_for("pcsc_available", Duration::from_secs(10), |l| {
        is_event(l, "pcsc_available")
    });
    watch.wait_for("reader_added", Duration::from_secs(10), |l| {
        reader_event(l, "reader_added")
    });
    // The rest of the initial state: no card may be in this reader yet.
    let initial = watch.drain(Duration::from_millis(300));
    assert!(
        !initial.iter().any(|l| reader_event(l, "card_inserted")),
        "a card is already in {READER}: {initial:?}"
    );

    // Insertion and removal.
    let mut vcard = LineChild::start("vcard", &["vcard", "--port", PORT, "--json"]);
    let (inserted_at, _) = vcard.wait_for("inserted", Duration::from_secs(20), |l| {
        is_event(l, "inserted")
    });
    let (seen_at, line) = watch.wait_for("card_inserted", Duration::from_secs(5), |l| {
        reader_event(l, "card_inserted")
    });
    assert_eq!(line["atr"], ATR, "{line}");
    let insertion_latency = seen_at.saturating_duration_since(inserted_at);
    let event = wait_event(
        &events,
        "CardInserted",
        Duration::from_secs(5),
        |e| matches!(e, CardEvent::CardInserted { reader, .. } if reader == READER),
    );
    assert_eq!(
        event,
        CardEvent::CardInserted {
            reader: READER.into(),
            atr: hex::decode(ATR).expect("hex"),
        }
    );
    let removed_at = vcard.stop();
    let (seen_at, _) = watch.wait_for("card_removed", Duration::from_secs(5), |l| {
        reader_event(l, "card_removed")
    });
    let removal_latency = seen_at.saturating_duration_since(removed_at);

    // pcscd goes away...
    let stopped_at = pcscd.stop();
    let (seen_at, line) = watch.wait_for("pcsc_unavailable", Duration::from_secs(10), |l| {
        is_event(l, "pcsc_unavailable")
    });
    assert_eq!(line["code"], "pcsc_unavailable", "{line}");
    let loss_latency = seen_at.saturating_duration_since(stopped_at);
    watch.wait_for("reader_removed", Duration::from_secs(5), |l| {
        reader_event(l, "reader_removed")
    });
    wait_event(&events, "PcscUnavailable", Duration::from_secs(10), |e| {
        matches!(e, CardEvent::PcscUnavailable { .. })
    });
    // A watcher started without the service says so first, and stops while it waits to retry.
    let (waiting, waiting_events) = Watcher::with_channel().expect("start Watcher");
    wait_event(
        &waiting_events,
        "PcscUnavailable first",
        Duration::from_secs(5),
        |_| true,
    );
    let stop_in_retry = stop_promptly(waiting, &waiting_events, "while pcscd is down");

    // ...and comes back: the same watcher sees it and the readers again.
    let started_at = pcscd.start();
    let (available_at, _) = watch.wait_for("pcsc_available", Duration::from_secs(15), |l| {
        is_event(l, "pcsc_available")
    });
    let (reader_at, _) = watch.wait_for("reader_added", Duration::from_secs(10), |l| {
        reader_event(l, "reader_added")
    });
    wait_event(
        &events,
        "PcscAvailable again",
        Duration::from_secs(15),
        |e| *e == CardEvent::PcscAvailable,
    );
    wait_event(
        &events,
        "ReaderAdded again",
        Duration::from_secs(10),
        is_reader_added,
    );
    let mut vcard = LineChild::start("vcard", &["vcard", "--port", PORT, "--json"]);
    let (inserted_at, _) = vcard.wait_for("inserted", Duration::from_secs(20), |l| {
        is_event(l, "inserted")
    });
    let (seen_at, line) = watch.wait_for("card_inserted", Duration::from_secs(5), |l| {
        reader_event(l, "card_inserted")
    });
    assert_eq!(line["atr"], ATR, "{line}");
    let reinsertion_latency = seen_at.saturating_duration_since(inserted_at);
    vcard.stop();
    watch.wait_for("card_removed", Duration::from_secs(5), |l| {
        reader_event(l, "card_removed")
    });
    assert!(
        matches!(watch.child.try_wait(), Ok(None)),
        "the watcher must keep running"
    );
    // Blocking in SCardGetStatusChange, not polling: a fraction of one core at most, over
    // the whole test (a polling loop takes all of it).
    let ticks = cpu_ticks(watch.child.id());
    let elapsed_ticks = (test_started.elapsed().as_millis() / 10) as u64;
    assert!(
        ticks * 10 < elapsed_ticks,
        "readers --watch used {ticks} ticks of CPU in {elapsed_ticks}"
    );
    let stop_in_wait = stop_promptly(watcher, &events, "while waiting for a change");

    eprintln!(
        "readers --watch: card_inserted {} after vcard connected, card_removed {} after vcard \
         was killed; pcsc_unavailable {} after SIGTERM; after the restart pcsc_available {} and \
         {READER} {} after pcscd was started, card_inserted {} after vcard connected; CPU {ticks} \
         ticks in {elapsed_ticks}; Watcher::stop {} while waiting, {} while pcscd was down",
        ms(insertion_latency),
        ms(removal_latency),
        ms(loss_latency),
        ms(available_at.saturating_duration_since(started_at)),
        ms(reader_at.saturating_duration_since(started_at)),
        ms(reinsertion_latency),
        ms(stop_in_wait),
        ms(stop_in_retry),
    );
}
