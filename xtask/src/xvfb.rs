//! A private X server for the window tests and `cargo xtask bench-gui`: Xvfb picks a free
//! display number itself (`-displayfd`) and is stopped by PID when the guard drops, also when
//! the tests fail.

use std::io::{BufRead, BufReader, PipeReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::system::step;

pub const WIDTH: u32 = 1280;
pub const HEIGHT: u32 = 800;
/// Xvfb usually answers within 100 ms; a loaded CI machine gets more.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Xvfb {
    child: Child,
    display: u32,
    log: PathBuf,
    /// Xvfb's standard output, where it wrote the display number. Kept open so that a later
    /// write by Xvfb cannot end it with SIGPIPE.
    _stdout: PipeReader,
}

impl Xvfb {
    /// Starts `Xvfb -displayfd 1 -screen 0 1280x800x24 -nolisten tcp -noreset` with its log
    /// in `dir/xvfb.log` and waits until it accepts connections.
    pub fn start(dir: &Path) -> Result<Xvfb, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let log = dir.join("xvfb.log");
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let (reader, writer) =
            std::io::pipe().map_err(|e| format!("cannot create a pipe for Xvfb: {e}"))?;
        let screen = format!("{WIDTH}x{HEIGHT}x24");
        // The write end goes to Xvfb as its standard output (fd 1) and is closed here when the
        // command is dropped, so that the read below sees end-of-file if Xvfb dies.
        let child = {
            let mut command = Command::new("Xvfb");
            command
                .args(["-displayfd", "1", "-screen", "0", &screen])
                // No TCP listener; no server reset when the last client disconnects (the
                // tests connect and disconnect many times).
                .args(["-nolisten", "tcp", "-noreset"])
                .stdin(Stdio::null())
                .stdout(writer)
                .stderr(log_file);
            command
                .spawn()
                .map_err(|e| format!("cannot start Xvfb (package xvfb): {e}"))?
        };
        let mut stdout = BufReader::new(reader);
        let (tx, rx) = channel();
        let reading = std::thread::spawn(move || {
            let mut line = String::new();
            let result = stdout.read_line(&mut line).map(|_| line);
            let _ = tx.send(result);
            stdout.into_inner()
        });
        let mut xvfb = Partial(Some(child));
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => return Err(format!("reading Xvfb's display number: {e}")),
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "Xvfb did not report a display within {} s; see {}",
                    START_TIMEOUT.as_secs(),
                    log.display()
                ))
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err("the thread reading Xvfb's display number ended".into())
            }
        };
        let display: u32 = line.trim().parse().map_err(|_| {
            let status = xvfb.try_status();
            format!(
                "Xvfb did not report a display number ({status}, wrote {line:?}); see {}",
                log.display()
            )
        })?;
        let stdout = reading
            .join()
            .map_err(|_| "the thread reading Xvfb's display number panicked".to_string())?;
        let child = xvfb.take()?;
        let xvfb = Xvfb {
            child,
            display,
            log,
            _stdout: stdout,
        };
        step(&format!(
            "started Xvfb on :{display} ({WIDTH}x{HEIGHT}x24, pid {}, log {})",
            xvfb.pid(),
            xvfb.log.display()
        ));
        Ok(xvfb)
    }

    /// `:N`, for `DISPLAY`.
    pub fn display(&self) -> String {
        format!(":{}", self.display)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the server is still running (it exits on a fatal error).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn stop(&mut self) {
        let what = format!("Xvfb on {}", self.display());
        stop_child(&mut self.child, &what);
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A started Xvfb not yet known to work: stopped on every early return of `start`.
struct Partial(Option<Child>);

impl Partial {
    fn take(&mut self) -> Result<Child, String> {
        self.0
            .take()
            .ok_or_else(|| "the Xvfb process was already handed over".to_string())
    }

    fn try_status(&mut self) -> String {
        match self.0.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => format!("exited: {status}"),
            Some(Ok(None)) => "still running".into(),
            Some(Err(e)) => format!("status unknown: {e}"),
            None => "stopped".into(),
        }
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            stop_child(child, "Xvfb");
        }
    }
}

/// Says what is stopped, then [`terminate`]s it.
pub fn stop_child(child: &mut Child, what: &str) {
    if let Ok(None) = child.try_wait() {
        step(&format!("stopping {what} (pid {})", child.id()));
    }
    terminate(child);
}

/// SIGTERM, then SIGKILL after `STOP_TIMEOUT`; reaps the process either way. True when
/// SIGTERM alone ended it (or it had ended already).
pub fn terminate(child: &mut Child) -> bool {
    if let Ok(None) = child.try_wait() {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        return false;
    }
    let _ = child.wait();
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xvfb_installed() -> bool {
        Command::new("Xvfb")
            .arg("-help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    }

    fn root_size(display: &str) -> Result<(u32, u32), String> {
        let out = Command::new("xwininfo")
            .args(["-root", "-display", display])
            .output()
            .map_err(|e| format!("xwininfo: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .and_then(|v| v.trim().parse::<u32>().ok())
        };
        match (field("Width:"), field("Height:")) {
            (Some(w), Some(h)) => Ok((w, h)),
            _ => Err(format!("no geometry in xwininfo's output: {text}")),
        }
    }

    /// Two servers side by side get different displays, answer with the configured screen,
    /// and are gone after the guards drop.
    #[test]
    fn starts_on_a_free_display_and_stops_on_drop() {
        assert!(
            xvfb_installed(),
            "Xvfb is missing: `cargo xtask test` installs the package xvfb"
        );
        let dir = std::env::temp_dir().join(format!("xtask-xvfb-test-{}", std::process::id()));
        let mut first = Xvfb::start(&dir.join("a")).expect("first Xvfb");
        let mut second = Xvfb::start(&dir.join("b")).expect("second Xvfb");
        assert_ne!(first.display(), second.display());
        assert!(first.running() && second.running());
        assert_eq!(root_size(&first.display()), Ok((WIDTH, HEIGHT)));
        assert_eq!(root_size(&second.display()), Ok((WIDTH, HEIGHT)));
        let (pid, display) = (first.pid(), first.display());
        drop(first);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z "),
            "Xvfb {pid} still running after the guard dropped: {stat}"
        );
        assert!(
            root_size(&display).is_err(),
            "{display} still answers after its Xvfb was stopped"
        );
        assert!(
            second.running(),
            "stopping one Xvfb must not stop the other"
        );
        drop(second);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
