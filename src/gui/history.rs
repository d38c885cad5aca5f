//! Today's operations on this terminal, kept in a small file beside the outbox so that a
//! restart does not lose them: time, license number, outcome and binding id — never a name,
//! birth date or address. One JSON object per line; the file is readable by its owner only.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRow {
    /// `YYYY-MM-DD`, Japan time.
    pub date: String,
    /// `HH:MM:SS`, Japan time.
    pub time: String,
    pub license_number: String,
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding_id: Option<String>,
}

/// Lines longer than this are not a history row (a damaged or foreign file).
const MAX_LINE: usize = 1024;

#[derive(Debug, Clone)]
pub struct HistoryFile {
    path: PathBuf,
    /// Appends run on blocking threads; one at a time, so a day's rewrite and an append
    /// never interleave.
    writing: Arc<Mutex<()>>,
}

impl HistoryFile {
    pub fn new(path: impl Into<PathBuf>) -> HistoryFile {
        HistoryFile {
            path: path.into(),
            writing: Arc::new(Mutex::new(())),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The rows of `date`; unreadable lines are skipped (the history is informational).
    pub fn rows_of(&self, date: &str) -> Vec<HistoryRow> {
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return Vec::new();
        };
        text.lines()
            .filter(|line| line.len() <= MAX_LINE)
            .filter_map(|line| serde_json::from_str::<HistoryRow>(line).ok())
            .filter(|row| row.date == date)
            .collect()
    }

    /// Appends one row. Earlier days are dropped when the file is rewritten at the first
    /// append of a new day, so it never grows beyond one day.
    pub fn append(&self, row: &HistoryRow) -> std::io::Result<()> {
        let _one_writer = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let mut keep = self.rows_of(&row.date);
        let rewrite = std::fs::read_to_string(&self.path)
            .map(|text| text.lines().count() != keep.len())
            .unwrap_or(true);
        keep.push(row.clone());
        let mut options = std::fs::OpenOptions::new();
        options.create(true).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        if rewrite {
            options.truncate(true);
            let mut file = options.open(&self.path)?;
            for r in &keep {
                writeln!(file, "{}", serde_json::to_string(r).unwrap_or_default())?;
            }
            file.sync_data()
        } else {
            options.append(true);
            let mut file = options.open(&self.path)?;
            writeln!(file, "{}", serde_json::to_string(row).unwrap_or_default())?;
            file.sync_data()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(date: &str, n: &str) -> HistoryRow {
        HistoryRow {
            date: date.into(),
            time: "10:00:00".into(),
            license_number: n.into(),
            outcome: "linked".into(),
            binding_id: Some("b-1".into()),
        }
    }

    #[test]
    fn keeps_today_only_and_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = HistoryFile::new(dir.path().join("history.jsonl"));
        file.append(&row("2026-11-25", "729913281070"))
            .expect("append");
        file.append(&row("2026-11-26", "729913281070"))
            .expect("append");
        file.append(&row("2026-11-26", "729913282000"))
            .expect("append");
        let again = HistoryFile::new(dir.path().join("history.jsonl"));
        let today = again.rows_of("2026-11-26");
        assert_eq!(today.len(), 2);
        assert!(
            again.rows_of("2026-11-25").is_empty(),
            "yesterday was dropped"
        );
        let text = std::fs::read_to_string(file.path()).expect("read");
        assert_eq!(text.lines().count(), 2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(file.path())
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn damaged_lines_are_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("history.jsonl");
        std::fs::write(&path, "not json\n{\"date\":\"2026-11-26\"}\n").expect("write");
        let file = HistoryFile::new(&path);
        assert!(file.rows_of("2026-11-26").is_empty());
        file.append(&row("2026-11-26", "729913281070"))
            .expect("append");
        assert_eq!(file.rows_of("2026-11-26").len(), 1);
    }
}
