//! End-to-end tests through the real pcscd: `cargo xtask test` starts it with the vpcd
//! virtual readers `Virtual PCD 00 00` (port 35963) and `Virtual PCD 00 01` (35964), and
//! the simulated card is put in a reader by `mynalink vcard`.
#![allow(dead_code)]

use std::ffi::CString;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The two virtual readers of one vpcd configuration.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub index: usize,
    pub port: u16,
    pub reader: &'static str,
}

pub const SLOTS: [Slot; 2] = [
    Slot {
        index: 0,
        port: 35963,
        reader: "Virtual PCD 00 00",
    },
    Slot {
        index: 1,
        port: 35964,
        reader: "Virtual PCD 00 01",
    },
];

static SLOT_LOCKS: [Mutex<()>; 2] = [Mutex::new(()), Mutex::new(())];

/// Fails (never skips) when pcscd was not started for the tests.
pub fn require_pcscd() {
    assert!(
        std::env::var_os("MYNALINK_TEST_PCSCD").is_some(),
        "these tests run through the real pcscd: run them with `cargo xtask test`, which \
         installs pcscd and vsmartcard-vpcd and starts the daemon"
    );
    assert!(
        std::path::Path::new("/run/pcscd/pcscd.comm").exists(),
        "pcscd's socket /run/pcscd/pcscd.comm is missing: is pcscd running?"
    );
}

/// Exclusive use of a reader for one test.
pub fn lock(slot: Slot) -> MutexGuard<'static, ()> {
    require_pcscd();
    SLOT_LOCKS[slot.index]
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Exclusive use of both readers.
pub fn lock_all() -> (MutexGuard<'static, ()>, MutexGuard<'static, ()>) {
    (lock(SLOTS[0]), lock(SLOTS[1]))
}

/// `mynalink vcard` serving the simulated card to one reader; killed on drop (removal).
pub struct VirtualCard {
    child: Child,
    events: Receiver<Value>,
    pub slot: Slot,
}

impl VirtualCard {
    pub fn start(slot: Slot, extra: &[&str]) -> VirtualCard {
        let port = slot.port.to_string();
        let mut args = vec!["vcard", "--json", "--port", port.as_str()];
        args.extend_from_slice(extra);
        let mut child = Command::new(env!("CARGO_BIN_EXE_mynalink"))
            .args(&args)
            .env("XDG_CONFIG_HOME", "/nonexistent/mynalink-tests")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start mynalink vcard");
        let stdout = child.stdout.take().expect("vcard stdout");
        let (tx, events) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    if tx.send(value).is_err() {
                        break;
                    }
                }
            }
        });
        let card = VirtualCard {
            child,
            events,
            slot,
        };
        card.wait_settled(Duration::from_secs(20));
        card
    }

    /// Waits for an insertion to settle: pcscd powers a new card up, reads its ATR and powers
    /// it down again when idle, so every test starts from the same card state.
    pub fn wait_settled(&self, timeout: Duration) {
        self.wait_event("inserted", timeout);
        self.wait_event("power_off", timeout);
        wait_card(self.slot.reader, true, Duration::from_secs(10));
    }

    /// Waits for the next event of this kind, skipping others.
    pub fn wait_event(&self, kind: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) if event["event"] == kind => return event,
                Ok(_) => continue,
                Err(_) => panic!(
                    "no {kind} event from vcard on {} within {timeout:?}",
                    self.slot.reader
                ),
            }
        }
    }

    /// Events received so far that nobody waited for.
    pub fn drain(&self) -> Vec<Value> {
        self.events.try_iter().collect()
    }
}

impl Drop for VirtualCard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Leave the reader empty for the next test.
        wait_card(self.slot.reader, false, Duration::from_secs(10));
    }
}

/// Waits until pcscd reports the reader with (or without) a card. Polls the current state
/// (a test helper; the product waits on events).
pub fn wait_card(reader: &str, present: bool, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let name = CString::new(reader).expect("reader name");
    loop {
        let seen = pcsc::Context::establish(pcsc::Scope::User)
            .ok()
            .and_then(|ctx| {
                let mut states = [pcsc::ReaderState::new(name.clone(), pcsc::State::UNAWARE)];
                ctx.get_status_change(Duration::ZERO, &mut states).ok()?;
                Some(states[0].event_state().contains(pcsc::State::PRESENT))
            });
        if seen == Some(present) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{reader}: card present = {present} not seen within {timeout:?} (last: {seen:?})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the headless flow against a reader, with the simulated card's TEST root configured
/// as an extra trust anchor through a config file (as an operator would for a test bench).
pub fn headless_reader(reader: &str, extra: &[&str], password_line: &str) -> super::Run {
    let config = test_config();
    let mut args = vec![
        "--config",
        config.as_str(),
        "headless",
        "--license",
        super::LICENSE,
        "--offline",
        "--pin-stdin",
        "--json",
        "--reader",
        reader,
    ];
    args.extend_from_slice(extra);
    super::mynalink(&args, Some(password_line))
}

/// A config file trusting the simulated card's TEST root.
pub fn test_config() -> String {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(write_test_config).clone()
}

fn write_test_config() -> String {
    let dir = std::env::temp_dir().join(format!("mynalink-pcsc-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("config dir");
    let root =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/sim-sign-test-root.der");
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!("trust_anchors = [{:?}]\n", root.display().to_string()),
    )
    .expect("config file");
    path.display().to_string()
}
