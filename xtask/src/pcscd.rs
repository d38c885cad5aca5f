//! A private pcscd for the end-to-end tests: the real pcsc-lite daemon with vpcd virtual
//! readers on known ports, started in the foreground, stopped by PID even when tests fail.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::system::step;

pub const SOCKET: &str = "/run/pcscd/pcscd.comm";
const PID_FILE: &str = "/run/pcscd/pcscd.pid";
const VPCD_DRIVER: &str = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so";
/// vpcd's port: `Virtual PCD 00 00` listens on it, `Virtual PCD 00 01` on the next one.
/// (One vpcd configuration per pcscd: the driver keeps one state per slot number, so a
/// second configuration takes over the first one's slots.)
pub const PORT: u16 = 35963;

pub struct Pcscd {
    child: Child,
    dir: PathBuf,
}

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry but is no longer running.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false)
}

/// Live pcscd processes whose command line names this configuration directory.
fn processes_using(conf: &Path) -> Vec<u32> {
    let conf = conf.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    let line = String::from_utf8_lossy(&c).replace('\0', " ");
                    line.contains("pcscd") && line.contains(&conf)
                })
                .unwrap_or(false)
                && alive(pid)
        })
        .collect()
}

/// The PID in pcscd's own PID file, when that process is alive.
fn running_pid() -> Option<u32> {
    // pcscd writes "PID\n\0": trim the NUL too, or a live daemon would look stale.
    let pid = std::fs::read_to_string(PID_FILE)
        .ok()?
        .trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .parse()
        .ok()?;
    alive(pid).then_some(pid)
}

/// Removes the socket and PID file a killed pcscd leaves behind, which would make the next
/// one refuse to start. Refuses when a live pcscd holds them: that one is not ours to stop.
fn clean_stale() -> Result<(), String> {
    if let Some(pid) = running_pid() {
        return Err(format!(
            "another pcscd (pid {pid}) is running; stop it first (the tests need their own, \
             with vpcd readers on ports {PORT} and {})",
            PORT + 1
        ));
    }
    for file in [SOCKET, PID_FILE] {
        if Path::new(file).exists() {
            step(&format!("removing stale {file}"));
            std::fs::remove_file(file).map_err(|e| format!("{file}: {e}"))?;
        }
    }
    Ok(())
}

fn write_config(dir: &Path) -> Result<PathBuf, String> {
    let conf = dir.join("reader.conf.d");
    let _ = std::fs::remove_dir_all(&conf);
    std::fs::create_dir_all(&conf).map_err(|e| format!("{}: {e}", conf.display()))?;
    let text = format!(
        "FRIENDLYNAME \"Virtual PCD\"\nDEVICENAME /dev/null:0x{PORT:04X}\nLIBPATH {VPCD_DRIVER}\nCHANNELID 0x{PORT:04X}\n"
    );
    let file = conf.join("vpcd");
    std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(conf)
}

impl Pcscd {
    pub fn start(dir: &Path) -> Result<Pcscd, String> {
        clean_stale()?;
        let conf = write_config(dir)?;
        let log_path = dir.join("pcscd.log");
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        step(&format!(
            "starting pcscd with the vpcd readers on ports {PORT} and {} (log {})",
            PORT + 1,
            log_path.display()
        ));
        let child = Command::new("pcscd")
            .arg("--foreground")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start pcscd: {e}"))?;
        let pid_file = dir.join("pcscd.pid");
        std::fs::write(&pid_file, child.id().to_string()).map_err(|e| e.to_string())?;
        let mut pcscd = Pcscd {
            child,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Path::new(SOCKET).exists() {
            if let Ok(Some(status)) = pcscd.child.try_wait() {
                return Err(format!(
                    "pcscd exited at start ({status}); see {}",
                    log_path.display()
                ));
            }
            if Instant::now() > deadline {
                pcscd.stop();
                return Err("pcscd did not create its socket within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(pcscd)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(&mut self) {
        let pid = self.child.id();
        if let Ok(None) = self.child.try_wait() {
            step(&format!("stopping pcscd (pid {pid})"));
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        // A test may have restarted pcscd with the same private configuration; stop every
        // such process (found by that configuration path, never by name alone).
        let conf = self.dir.join("reader.conf.d");
        for pid in processes_using(&conf) {
            step(&format!("stopping the restarted pcscd (pid {pid})"));
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = std::fs::remove_file(self.dir.join("pcscd.pid"));
        let _ = clean_stale();
    }
}

impl Drop for Pcscd {
    fn drop(&mut self) {
        self.stop();
    }
}
