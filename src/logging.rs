//! The client's log file: `$XDG_STATE_HOME/mynalink/mynalink.log` (or
//! `~/.local/state/mynalink/`), plain text lines through `tracing`, for whoever has to find out
//! later why a counter could not link. It holds card steps (name, time, APDU count, result
//! code), uploads (outbox entry, outcome, the backend's code, time) and errors by their codes;
//! the events that write it never carry the password, the basic-4, the certificate or a full
//! license number.
//!
//! The file is capped: past [`MAX_BYTES`] it is renamed to `mynalink.log.1` (older ones move
//! up, [`KEEP`] are kept) and a new one is started, so a kiosk that runs for years never fills
//! its disk. Files are owner-only. `MYNALINK_LOG` sets the level (`error`, `warn`, `info`, the
//! default, `debug`, `trace`, or `off`). A log that cannot be opened never stops the client: it
//! says so once on stderr and runs on without it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The size at which the log file is rotated.
pub const MAX_BYTES: u64 = 1024 * 1024;
/// How many rotated files are kept besides the current one.
pub const KEEP: usize = 4;
/// The log file's name in its directory.
pub const FILE_NAME: &str = "mynalink.log";

/// The log directory: `$XDG_STATE_HOME/mynalink`, else `~/.local/state/mynalink`.
pub fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(base.join("mynalink"))
}

/// The level `MYNALINK_LOG` asks for (`info` when unset; an unknown value is `info` too, so a
/// typo never silences the log).
fn level_from_env() -> LevelFilter {
    match std::env::var("MYNALINK_LOG").as_deref().map(str::trim) {
        Ok("off") => LevelFilter::OFF,
        Ok("error") => LevelFilter::ERROR,
        Ok("warn") => LevelFilter::WARN,
        Ok("debug") => LevelFilter::DEBUG,
        Ok("trace") => LevelFilter::TRACE,
        _ => LevelFilter::INFO,
    }
}

/// Starts logging to the file for the rest of the process; `command` names what runs.
pub fn init(command: &str) {
    let level = level_from_env();
    if level == LevelFilter::OFF {
        return;
    }
    let Some(dir) = default_dir() else {
        eprintln!("mynalink: no log file: neither XDG_STATE_HOME nor HOME is set");
        return;
    };
    let file = match RotatingFile::open(&dir, MAX_BYTES, KEEP) {
        Ok(file) => file,
        Err(e) => {
            eprintln!(
                "mynalink: no log file: cannot open {}: {e}",
                dir.join(FILE_NAME).display()
            );
            return;
        }
    };
    let subscriber = tracing_subscriber::fmt()
        .with_writer(file)
        .with_ansi(false)
        .with_max_level(level)
        .finish();
    if tracing::subscriber::set_global_default(subscriber).is_ok() {
        tracing::info!(
            target: "mynalink",
            version = env!("CARGO_PKG_VERSION"),
            command,
            pid = std::process::id(),
            "started"
        );
    }
}

/// A log file that starts over when it reaches its cap, keeping the last few.
#[derive(Debug)]
pub struct RotatingFile {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    path: PathBuf,
    file: Option<File>,
    written: u64,
    max_bytes: u64,
    keep: usize,
}

impl RotatingFile {
    /// Opens (creating, owner-only) `dir/mynalink.log` for appending.
    pub fn open(dir: &Path, max_bytes: u64, keep: usize) -> io::Result<RotatingFile> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let path = dir.join(FILE_NAME);
        let file = open_append(&path)?;
        let written = file.metadata()?.len();
        Ok(RotatingFile {
            state: Mutex::new(State {
                path,
                file: Some(file),
                written,
                max_bytes,
                keep,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while a line was written leaves nothing half-done worth refusing the log for.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

impl State {
    /// `mynalink.log.(keep-1)` → `.keep` (the oldest is dropped), …, `mynalink.log` → `.1`,
    /// and a new, empty `mynalink.log`.
    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        if self.keep == 0 {
            std::fs::remove_file(&self.path).or_else(ignore_missing)?;
        } else {
            for n in (1..self.keep).rev() {
                std::fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1))
                    .or_else(ignore_missing)?;
            }
            std::fs::rename(&self.path, rotated(&self.path, 1)).or_else(ignore_missing)?;
        }
        self.file = Some(open_append(&self.path)?);
        self.written = 0;
        Ok(())
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<usize> {
        if self.written > 0 && self.written + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        if self.file.is_none() {
            // The last rotation failed half-way: try again to have a file at all.
            self.file = Some(open_append(&self.path)?);
        }
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("no log file"));
        };
        file.write_all(line)?;
        self.written += line.len() as u64;
        Ok(line.len())
    }
}

fn ignore_missing(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

/// One event's writer: the formatter writes each event in a single `write`, so a line is
/// never split across two files.
pub struct LineWriter<'a>(MutexGuard<'a, State>);

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_line(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.0.file.as_mut() {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}

impl<'a> MakeWriter<'a> for RotatingFile {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(self.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn line(n: usize) -> Vec<u8> {
        format!("{n:09}{}\n", "x".repeat(90)).into_bytes()
    }

    #[test]
    fn the_file_rotates_at_its_cap_and_keeps_the_newest_few() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = RotatingFile::open(dir.path(), 1000, 2).expect("open");
        for n in 0..55 {
            log.make_writer().write_all(&line(n)).expect("write");
        }
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).expect(name);
        let current = read("mynalink.log");
        let first = read("mynalink.log.1");
        let second = read("mynalink.log.2");
        assert!(!dir.path().join("mynalink.log.3").exists());
        for text in [&current, &first, &second] {
            assert!(text.len() <= 1000, "{} bytes", text.len());
        }
        // The newest lines are in the current file, the ones before in .1 and .2, in order.
        assert!(current.ends_with(&String::from_utf8(line(54)).expect("utf8")));
        let all = format!("{second}{first}{current}");
        let numbers: Vec<usize> = all
            .lines()
            .map(|l| l[..9].parse().expect("number"))
            .collect();
        assert_eq!(numbers, (30..55).collect::<Vec<_>>());
    }

    #[test]
    fn an_existing_file_counts_towards_the_cap() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(FILE_NAME), vec![b'a'; 950]).expect("seed");
        let log = RotatingFile::open(dir.path(), 1000, 1).expect("open");
        log.make_writer().write_all(&line(1)).expect("write");
        assert_eq!(
            std::fs::read(dir.path().join("mynalink.log.1"))
                .expect("rotated")
                .len(),
            950
        );
        assert_eq!(
            std::fs::read(dir.path().join(FILE_NAME))
                .expect("new")
                .len(),
            100
        );
    }

    #[test]
    fn files_and_directory_are_owner_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let logs = dir.path().join("state/mynalink");
        let log = RotatingFile::open(&logs, 150, 1).expect("open");
        for n in 0..3 {
            log.make_writer().write_all(&line(n)).expect("write");
        }
        let mode = |p: PathBuf| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(logs.clone()), 0o700);
        assert_eq!(mode(logs.join(FILE_NAME)), 0o600);
        assert_eq!(mode(logs.join("mynalink.log.1")), 0o600);
    }

    #[test]
    fn a_line_longer_than_the_cap_is_still_written_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = RotatingFile::open(dir.path(), 50, 1).expect("open");
        log.make_writer().write_all(&line(7)).expect("write");
        assert_eq!(
            std::fs::read(dir.path().join(FILE_NAME)).expect("log"),
            line(7)
        );
    }
}
