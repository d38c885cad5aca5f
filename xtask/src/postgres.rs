//! A private PostgreSQL server for the tests and the server benchmark: a fresh cluster in a
//! directory of the target dir, the postmaster in the foreground, stopped by its PID when the
//! guard drops, even when tests fail. It listens on a Unix socket in that directory (trust
//! authentication for one user: the tests' URL) and on 127.0.0.1 at a free port with
//! `scram-sha-256` for every user, so that a test can check password authentication with a
//! role it creates; the superuser has no password and so cannot log in over TCP. Needs Debian's
//! `postgresql` package (the server binaries in /usr/lib/postgresql/VERSION/bin).
//!
//! PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` system
//! user that the package creates, and its programs run as that user through `setpriv`
//! (util-linux), which execs them, so the child's PID is the postmaster's.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::system::step;

/// The package that brings the server binaries.
pub const PACKAGE: &str = "postgresql";
/// The cluster's superuser, which the tests connect as.
const USER: &str = "mynalink";
/// The system user that runs the server when xtask runs as root.
const SYSTEM_USER: &str = "postgres";
/// Unix socket paths are limited to 107 bytes.
const MAX_SOCKET_PATH: usize = 100;

pub struct Postgres {
    child: Child,
    /// A socket directory outside `dir` (when that path is too long), removed at the end.
    temp_socket: Option<PathBuf>,
    url: String,
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The newest installed server's bin directory.
fn bin_dir() -> Result<PathBuf, String> {
    let root = Path::new("/usr/lib/postgresql");
    let entries = std::fs::read_dir(root).map_err(|e| {
        format!(
            "{}: {e}; install the {PACKAGE} package (cargo xtask test does)",
            root.display()
        )
    })?;
    entries
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file())
                .then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
        .ok_or_else(|| format!("no PostgreSQL server binaries under {}", root.display()))
}

/// A TCP port on 127.0.0.1 that nothing listens on now: several clusters (other checkouts,
/// the benchmark) may run at once.
fn free_loopback_port() -> Result<u16, String> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free TCP port on 127.0.0.1: {e}"))
}

/// A command for a server program, as the cluster's owner.
fn command(owner: Option<&str>, program: &Path) -> Command {
    match owner {
        Some(user) => {
            let mut c = Command::new("setpriv");
            c.args(["--reuid", user, "--regid", user, "--init-groups", "--"])
                .arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// The owner must be able to reach the directory: every ancestor searchable by others.
fn check_reachable(dir: &Path) -> Result<(), String> {
    for ancestor in dir.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(ancestor) else {
            continue;
        };
        if meta.permissions().mode() & 0o001 == 0 {
            return Err(format!(
                "{} is not searchable by other users, so the {SYSTEM_USER} user cannot reach \
                 {}",
                ancestor.display(),
                dir.display()
            ));
        }
    }
    Ok(())
}

/// The postmaster of a cluster in `data` that an earlier run left running: stopped, since
/// nothing else uses this private directory.
fn stop_stale(data: &Path) {
    let Ok(text) = std::fs::read_to_string(data.join("postmaster.pid")) else {
        return;
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<u32>().ok())
    else {
        return;
    };
    let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains(&*data.to_string_lossy()))
        .unwrap_or(false);
    if ours && alive(pid) {
        step(&format!("stopping a PostgreSQL left running (pid {pid})"));
        signal_and_wait(pid);
    }
}

/// SIGINT (PostgreSQL's fast shutdown), then SIGKILL after 20 s.
fn signal_and_wait(pid: u32) {
    let _ = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive(pid) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}

/// Runs a command with its output in a log file; an error names the log.
fn run_logged(mut command: Command, log: &Path, what: &str) -> Result<(), String> {
    let file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let status = command
        .stdin(Stdio::null())
        .stdout(file.try_clone().map_err(|e| e.to_string())?)
        .stderr(file)
        .status()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status}); see {}", log.display()))
    }
}

impl Postgres {
    /// A fresh cluster in `dir` (anything there before is removed), started and ready.
    pub fn start(dir: &Path) -> Result<Postgres, String> {
        let bin = bin_dir()?;
        let owner = is_root().then_some(SYSTEM_USER);
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut dir = dir
            .canonicalize()
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        // The system user must reach the cluster: a checkout under a private home directory
        // gets it under the temporary directory instead.
        if owner.is_some() {
            if let Err(why) = check_reachable(&dir) {
                let name = dir
                    .file_name()
                    .map_or("pg".into(), |n| n.to_string_lossy().into_owned());
                let elsewhere = std::env::temp_dir().join(format!("mynalink-{name}"));
                step(&format!("{why}; using {} instead", elsewhere.display()));
                std::fs::create_dir_all(&elsewhere)
                    .map_err(|e| format!("{}: {e}", elsewhere.display()))?;
                dir = elsewhere;
            }
        }
        let dir = &dir;
        let data = dir.join("data");
        stop_stale(&data);
        std::fs::remove_dir_all(dir)
            .and_then(|()| std::fs::create_dir_all(dir))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let port = free_loopback_port()?;
        let mut socket = dir.join("socket");
        let mut temp_socket = None;
        if socket.join(format!(".s.PGSQL.{port}")).as_os_str().len() > MAX_SOCKET_PATH {
            socket = std::env::temp_dir().join(format!("mynalink-pg-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&socket);
            temp_socket = Some(socket.clone());
        }
        std::fs::create_dir_all(&socket).map_err(|e| format!("{}: {e}", socket.display()))?;
        if let Some(user) = owner {
            check_reachable(dir)?;
            check_reachable(&socket)?;
            for d in [dir, &socket] {
                crate::system::run(
                    "chown",
                    &["-R", &format!("{user}:{user}"), &d.to_string_lossy()],
                )?;
            }
        }

        step(&format!(
            "creating a private PostgreSQL cluster in {} ({}{})",
            data.display(),
            bin.display(),
            owner.map_or(String::new(), |u| format!(", run as the {u} user"))
        ));
        let mut initdb = command(owner, &bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .args(["-U", USER, "-E", "UTF8", "--locale=C"]);
        run_logged(initdb, &dir.join("initdb.log"), "initdb")?;

        let log_path = dir.join("postgres.log");
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        step(&format!(
            "starting PostgreSQL on the socket in {} and 127.0.0.1:{port} (log {})",
            socket.display(),
            log_path.display()
        ));
        let child = command(owner, &bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&socket)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start postgres: {e}"))?;
        let mut server = Postgres {
            child,
            temp_socket,
            url: format!(
                "postgres://{USER}@/postgres?host={}&port={port}",
                socket.display()
            ),
        };
        // The postmaster writes `ready` on the eighth line of its PID file once it accepts
        // connections.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = std::fs::read_to_string(data.join("postmaster.pid"))
                .map(|t| t.lines().nth(7).is_some_and(|l| l.trim() == "ready"))
                .unwrap_or(false);
            if ready && socket.join(format!(".s.PGSQL.{port}")).exists() {
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "postgres exited at start ({status}); see {}",
                    log_path.display()
                ));
            }
            if Instant::now() > deadline {
                server.stop();
                return Err(format!(
                    "PostgreSQL was not ready within 30 s; see {}",
                    log_path.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// An administrative URL: the `postgres` database as the cluster's superuser.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = self.child.id();
            step(&format!("stopping PostgreSQL (pid {pid})"));
            signal_and_wait(pid);
            let _ = self.child.wait();
        }
        if let Some(socket) = self.temp_socket.take() {
            let _ = std::fs::remove_dir_all(socket);
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `cargo xtask postgres`: the same private server for running the server tests by hand;
/// prints the variable to set and runs until Enter (or end of input).
pub fn run_by_hand(dir: &Path) -> Result<(), String> {
    crate::system::ensure_packages(&[PACKAGE])?;
    let server = Postgres::start(dir)?;
    println!("export MYNALINK_TEST_POSTGRES='{}'", server.url());
    eprintln!("PostgreSQL is running; press Enter to stop it.");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(server);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_parent_makes_a_directory_unreachable() {
        let base = std::env::temp_dir().join(format!("mynalink-reach-{}", std::process::id()));
        let inner = base.join("private").join("cluster");
        std::fs::create_dir_all(&inner).expect("dirs");
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let private = base.join("private");
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let refused = check_reachable(&inner).expect_err("private parent");
        assert!(refused.contains("private"), "{refused}");
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert!(check_reachable(&inner).is_ok());
        let _ = std::fs::remove_dir_all(&base);
    }
}
