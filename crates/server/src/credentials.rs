//! The three token files a running server authenticates with (terminal, Mynaportal, admin),
//! kept so that SIGHUP can read them again: an operator adds or revokes a token
//! (`mynalink-server token …`) and reloads without a restart, so no connection is dropped.
//!
//! A reload is all or nothing: the three files are read and checked together (each parses,
//! none is readable by others, no id or token in two of them) and only then replace the
//! tokens in use; when anything is wrong the old tokens stay and the error is logged.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::secret_file::read_secret;
use crate::tokens::TerminalTokens;

/// Where the token files are (`--terminal-tokens`, `--mynaportal-tokens`, `--admin-tokens`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenFiles {
    pub terminal: Option<PathBuf>,
    pub mynaportal: Option<PathBuf>,
    pub admin: Option<PathBuf>,
}

/// The tokens of the three kinds of caller, read together.
#[derive(Debug, Clone, Default)]
pub struct CredentialSet {
    pub terminals: TerminalTokens,
    /// Mynaportal's credentials, kept apart from the terminals': only they reach the
    /// second stage, and they cannot submit a first stage.
    pub mynaportal: TerminalTokens,
    /// Administrators' credentials: §8 measures, cancellations and status.
    pub admins: TerminalTokens,
}

impl CredentialSet {
    /// Reads the configured files; every error names the file.
    pub fn load(files: &TokenFiles) -> Result<CredentialSet, String> {
        let set = CredentialSet {
            terminals: read_tokens(files.terminal.as_deref(), "terminal tokens")?,
            mynaportal: read_tokens(files.mynaportal.as_deref(), "mynaportal tokens")?,
            admins: read_tokens(files.admin.as_deref(), "admin tokens")?,
        };
        for (a, b, what) in [
            (
                &set.terminals,
                &set.mynaportal,
                "the terminal and Mynaportal",
            ),
            (&set.terminals, &set.admins, "the terminal and admin"),
            (&set.mynaportal, &set.admins, "the Mynaportal and admin"),
        ] {
            if a.overlaps(b) {
                return Err(format!("{what} token files share an id or a token"));
            }
        }
        Ok(set)
    }
}

fn read_tokens(path: Option<&Path>, what: &'static str) -> Result<TerminalTokens, String> {
    let Some(path) = path else {
        return Ok(TerminalTokens::default());
    };
    let bytes = read_secret(path, what).map_err(|e| e.to_string())?;
    let text =
        std::str::from_utf8(&bytes).map_err(|_| format!("{what} {}: not UTF-8", path.display()))?;
    TerminalTokens::parse(text).map_err(|e| format!("{what} {}: {e}", path.display()))
}

/// The tokens in use and the files they came from.
#[derive(Debug)]
pub struct Credentials {
    files: TokenFiles,
    current: RwLock<Arc<CredentialSet>>,
}

/// How many tokens of each kind a reload put in use (for the log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    pub terminals: usize,
    pub mynaportal: usize,
    pub admins: usize,
}

impl Credentials {
    /// Reads the files once, at start: an error there stops the server.
    pub fn load(files: TokenFiles) -> Result<Credentials, String> {
        let set = CredentialSet::load(&files)?;
        Ok(Credentials {
            files,
            current: RwLock::new(Arc::new(set)),
        })
    }

    /// The tokens in use now. A request keeps the set it started with even if a reload
    /// happens meanwhile.
    pub fn current(&self) -> Arc<CredentialSet> {
        // A poisoned lock only means a writer panicked; the set it guards is whole (it is
        // replaced in one assignment).
        Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// Reads the files again and puts the new tokens in use; on any error the old ones stay.
    pub fn reload(&self) -> Result<Loaded, String> {
        let set = CredentialSet::load(&self.files)?;
        let loaded = Loaded {
            terminals: set.terminals.len(),
            mynaportal: set.mynaportal.len(),
            admins: set.admins.len(),
        };
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(set);
        Ok(loaded)
    }
}

/// SIGHUP, caught from the moment this returns (its default action would end the server):
/// each one reloads the token files, off the async threads, and logs the result.
#[cfg(unix)]
pub fn reload_on_hangup(
    credentials: Arc<Credentials>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let credentials = Arc::clone(&credentials);
            match tokio::task::spawn_blocking(move || credentials.reload()).await {
                Ok(Ok(loaded)) => tracing::info!(
                    event = "tokens_reloaded",
                    terminals = loaded.terminals,
                    mynaportal = loaded.mynaportal,
                    admins = loaded.admins,
                    "reloaded the token files on SIGHUP"
                ),
                Ok(Err(error)) => tracing::error!(
                    event = "tokens_reload_failed",
                    error = %error,
                    "the token files were not reloaded; the previous tokens stay in use"
                ),
                Err(error) => tracing::error!(
                    event = "tokens_reload_failed",
                    error = %error,
                    "the token reload failed; the previous tokens stay in use"
                ),
            }
        }
    }))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn write(path: &Path, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, text).expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }

    fn line(id: &str, token: &str) -> String {
        format!("{id} {}\n", hex::encode(Sha256::digest(token)))
    }

    #[test]
    fn a_reload_replaces_the_tokens_or_keeps_the_old_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let terminal = dir.path().join("terminal");
        let admin = dir.path().join("admin");
        write(&terminal, &line("t1", "tok-1"));
        write(&admin, &line("a1", "adm-1"));
        let credentials = Credentials::load(TokenFiles {
            terminal: Some(terminal.clone()),
            mynaportal: None,
            admin: Some(admin.clone()),
        })
        .expect("load");
        let before = credentials.current();
        assert_eq!(before.terminals.authenticate(b"tok-1"), Some("t1"));

        write(&terminal, &line("t2", "tok-2"));
        let loaded = credentials.reload().expect("reload");
        assert_eq!((loaded.terminals, loaded.admins), (1, 1));
        let now = credentials.current();
        assert_eq!(now.terminals.authenticate(b"tok-1"), None);
        assert_eq!(now.terminals.authenticate(b"tok-2"), Some("t2"));
        // A request that began before keeps its set.
        assert_eq!(before.terminals.authenticate(b"tok-1"), Some("t1"));

        // Broken, or sharing a token with the admins: the old tokens stay.
        write(&terminal, "t3 not-a-hash\n");
        let e = credentials.reload().expect_err("bad line");
        assert!(e.contains("terminal tokens") && e.contains("line 1"), "{e}");
        write(&terminal, &line("t3", "adm-1"));
        let e = credentials.reload().expect_err("overlap");
        assert!(e.contains("share"), "{e}");
        std::fs::remove_file(&terminal).expect("remove");
        assert!(credentials.reload().is_err());
        assert_eq!(
            credentials.current().terminals.authenticate(b"tok-2"),
            Some("t2")
        );
    }
}
