//! `mynalink-server token add|revoke|list --file F`: the token files' administration, so
//! that nobody hashes tokens by hand.
//!
//! A token is 256 random bits from the operating system, base64url without padding; it is
//! shown once and only its SHA-256 is written, as the `ID SHA256_HEX` line the server reads
//! ([`crate::tokens`]). A running server takes the change on SIGHUP
//! ([`crate::credentials`]).
//!
//! `add` appends to the file in place (a new one is created 0600), so the owner and mode an
//! operator gave it stay; `revoke` writes the file anew beside it with the same owner and
//! mode and renames it over the old one, so a crash leaves either file whole. Both hold an
//! exclusive lock on the file, so two administrators at once cannot lose or double a line.
//! The file must already be one the server accepts (mode 0600 or stricter, every line
//! valid): a change is never made to a file the server would refuse anyway.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::secret_file::{SecretFileError, MAX_SECRET_FILE_LEN};
use crate::submission::MAX_TERMINAL_ID_LEN;
use crate::tokens::TerminalTokens;

/// Random bytes in a token.
pub const TOKEN_BYTES: usize = 32;
const WHAT: &str = "token file";

/// A `token` command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCommand {
    Add { file: PathBuf, id: String },
    Revoke { file: PathBuf, id: String },
    List { file: PathBuf },
}

impl TokenCommand {
    /// Parses the arguments after `token`; both `--opt VALUE` and `--opt=VALUE`.
    pub fn parse(args: &[String]) -> Result<TokenCommand, String> {
        let command = match args.first().map(String::as_str) {
            Some(c @ ("add" | "revoke" | "list")) => c,
            Some(other) => return Err(format!("unknown token command {other:?}")),
            None => return Err("token needs a command: add, revoke or list".into()),
        };
        let mut file = None;
        let mut id = None;
        let mut iter = args[1..].iter();
        while let Some(arg) = iter.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) if name.starts_with("--") => (name, Some(value.to_string())),
                _ => (arg.as_str(), None),
            };
            let slot = match name {
                "--file" => &mut file,
                "--id" if command != "list" => &mut id,
                _ => return Err(format!("unknown option {arg:?} for token {command}")),
            };
            let value = match inline {
                Some(value) => value,
                None => iter
                    .next()
                    .cloned()
                    .ok_or(format!("{name} needs a value"))?,
            };
            if slot.replace(value).is_some() {
                return Err(format!("{name} given twice"));
            }
        }
        let file = PathBuf::from(file.ok_or(format!("token {command} needs --file FILE"))?);
        if command == "list" {
            return Ok(TokenCommand::List { file });
        }
        let id = id.ok_or(format!("token {command} needs --id ID"))?;
        check_id(&id)?;
        Ok(match command {
            "add" => TokenCommand::Add { file, id },
            _ => TokenCommand::Revoke { file, id },
        })
    }
}

/// An id the tokens file can hold: one field, no comment sign, within the terminal id
/// limit.
fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || id.len() > MAX_TERMINAL_ID_LEN
        || id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '#')
    {
        return Err(format!(
            "--id {id:?}: give 1 to {MAX_TERMINAL_ID_LEN} bytes without spaces, control \
             characters or #"
        ));
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum TokenAdminError {
    #[error(transparent)]
    Secret(#[from] SecretFileError),
    #[error("{} {}: {message}; fix it before changing it (the server refuses it as it is)", WHAT, path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("{} {}: {id:?} already has a token; revoke it first to give it a new one", WHAT, path.display())]
    DuplicateId { path: PathBuf, id: String },
    #[error("{} {}: no token has the id {id:?}; `token list --file FILE` shows the ids", WHAT, path.display())]
    UnknownId { path: PathBuf, id: String },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> SecretFileError + '_ {
    move |error| SecretFileError::Io {
        what: WHAT,
        path: path.to_path_buf(),
        error,
    }
}

/// A token `add` made.
pub struct NewToken {
    /// Shown once to the operator, never stored.
    pub token: Zeroizing<String>,
}

/// Adds a token for `id`: creates the file (0600) or appends to it. Returns the token.
pub fn add(path: &Path, id: &str) -> Result<NewToken, TokenAdminError> {
    let mut bytes = Zeroizing::new([0u8; TOKEN_BYTES]);
    rand::rngs::OsRng.fill_bytes(&mut bytes[..]);
    let token = Zeroizing::new(URL_SAFE_NO_PAD.encode(&bytes[..]));
    let line = format!("{id} {}\n", hex::encode(Sha256::digest(token.as_bytes())));

    let mut options = std::fs::OpenOptions::new();
    options.read(true).append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let (mut file, text) = open_locked(path, &options)?;
    let tokens = parse(path, &text)?;
    if tokens.ids().any(|known| known == id) {
        return Err(TokenAdminError::DuplicateId {
            path: path.to_path_buf(),
            id: id.to_string(),
        });
    }
    let mut record = String::new();
    if !text.is_empty() && !text.ends_with('\n') {
        record.push('\n');
    }
    record.push_str(&line);
    // One write: a server reloading meanwhile sees the line whole or not at all.
    file.write_all(record.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io(path))?;
    Ok(NewToken { token })
}

/// Removes the token of `id`, keeping every other line (comments too).
pub fn revoke(path: &Path, id: &str) -> Result<(), TokenAdminError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true);
    let (file, text) = open_locked(path, &options)?;
    parse(path, &text)?;
    let mut kept = String::with_capacity(text.len());
    let mut removed = false;
    for line in text.split_inclusive('\n') {
        let content = line.split('#').next().unwrap_or("");
        if content.split_whitespace().next() == Some(id) {
            removed = true;
        } else {
            kept.push_str(line);
        }
    }
    if !removed {
        return Err(TokenAdminError::UnknownId {
            path: path.to_path_buf(),
            id: id.to_string(),
        });
    }
    replace(path, &file, kept.as_bytes())?;
    Ok(())
}

/// The ids in the file, in its order.
pub fn list(path: &Path) -> Result<Vec<String>, TokenAdminError> {
    let bytes = crate::secret_file::read_secret(path, WHAT)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| TokenAdminError::Invalid {
        path: path.to_path_buf(),
        message: "not UTF-8".into(),
    })?;
    Ok(parse(path, text)?.ids().map(str::to_string).collect())
}

fn parse(path: &Path, text: &str) -> Result<TerminalTokens, TokenAdminError> {
    TerminalTokens::parse(text).map_err(|message| TokenAdminError::Invalid {
        path: path.to_path_buf(),
        message,
    })
}

/// Opens the file, locks it, and reads it whole, checking what the server checks: a
/// regular file, mode 0600 or stricter, not too large, UTF-8. A file renamed over while this
/// waited for the lock is opened again.
fn open_locked(
    path: &Path,
    options: &std::fs::OpenOptions,
) -> Result<(File, Zeroizing<String>), TokenAdminError> {
    // Checked before opening: opening a FIFO would wait for a writer.
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => {
            return Err(SecretFileError::NotAFile {
                what: WHAT,
                path: path.to_path_buf(),
            }
            .into())
        }
        _ => {}
    }
    loop {
        let mut file = options.open(path).map_err(io(path))?;
        lock(&file).map_err(io(path))?;
        if !same_file(&file, path).map_err(io(path))? {
            continue;
        }
        check_private(&file, path)?;
        let mut bytes = Zeroizing::new(Vec::new());
        (&mut file)
            .take(MAX_SECRET_FILE_LEN + 1)
            .read_to_end(&mut bytes)
            .map_err(io(path))?;
        if bytes.len() as u64 > MAX_SECRET_FILE_LEN {
            return Err(SecretFileError::TooLarge {
                what: WHAT,
                path: path.to_path_buf(),
            }
            .into());
        }
        let text = String::from_utf8(std::mem::take(&mut *bytes)).map_err(|_| {
            TokenAdminError::Invalid {
                path: path.to_path_buf(),
                message: "not UTF-8".into(),
            }
        })?;
        return Ok((file, Zeroizing::new(text)));
    }
}

#[cfg(unix)]
fn lock(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this function's caller owns; it touches no memory.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(unix))]
fn lock(_: &File) -> std::io::Result<()> {
    Ok(())
}

/// Whether the open file is still the one at `path` (not renamed over meanwhile).
#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let open = file.metadata()?;
    Ok(match std::fs::metadata(path) {
        Ok(now) => now.dev() == open.dev() && now.ino() == open.ino(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    })
}

#[cfg(not(unix))]
fn same_file(_: &File, _: &Path) -> std::io::Result<bool> {
    Ok(true)
}

#[cfg(unix)]
fn check_private(file: &File, path: &Path) -> Result<(), SecretFileError> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = file.metadata().map_err(io(path))?;
    if !metadata.is_file() {
        return Err(SecretFileError::NotAFile {
            what: WHAT,
            path: path.to_path_buf(),
        });
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SecretFileError::TooOpen {
            what: WHAT,
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &File, _: &Path) -> Result<(), SecretFileError> {
    Ok(())
}

/// Writes `bytes` to a new file beside `path` with the old file's owner and mode, then
/// renames it over `path` (the lock on the old file is held until the caller drops it).
fn replace(path: &Path, old: &File, bytes: &[u8]) -> Result<(), SecretFileError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.{:016x}.new", rand::random::<u64>()));
    let written = write_like(&temp, old, bytes).and_then(|()| std::fs::rename(&temp, path));
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(io(path)(error));
    }
    // The rename is durable once the directory is synced.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn write_like(temp: &Path, old: &File, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(temp)?;
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let was = old.metadata()?;
        // Owner first (only root may give a file away; for anyone else it is already the
        // same), then the mode, which chown may have cleared bits of.
        if was.uid() != file.metadata()?.uid() || was.gid() != file.metadata()?.gid() {
            // SAFETY: fchown on a descriptor owned here; it touches no memory.
            if unsafe { libc::fchown(file.as_raw_fd(), was.uid(), was.gid()) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        file.set_permissions(std::fs::Permissions::from_mode(was.mode() & 0o7777))?;
    }
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
    }

    #[test]
    fn command_lines() {
        assert_eq!(
            TokenCommand::parse(&args("add --file f --id=kiosk-1")),
            Ok(TokenCommand::Add {
                file: "f".into(),
                id: "kiosk-1".into()
            })
        );
        assert_eq!(
            TokenCommand::parse(&args("revoke --id a --file=f")),
            Ok(TokenCommand::Revoke {
                file: "f".into(),
                id: "a".into()
            })
        );
        assert_eq!(
            TokenCommand::parse(&args("list --file f")),
            Ok(TokenCommand::List { file: "f".into() })
        );
        for (line, needle) in [
            ("", "add, revoke or list"),
            ("rotate --file f", "unknown token command"),
            ("add --id a", "--file"),
            ("add --file f", "--id"),
            ("add --file f --file g --id a", "twice"),
            ("list --file f --id a", "unknown option"),
            ("add --file f --id a#b", "#"),
            ("add --file f --id", "needs a value"),
            ("add --file f --bogus x", "unknown option"),
        ] {
            let e = TokenCommand::parse(&args(line)).expect_err(line);
            assert!(e.contains(needle), "{line}: {e}");
        }
        let long = "x".repeat(MAX_TERMINAL_ID_LEN + 1);
        assert!(TokenCommand::parse(&args(&format!("add --file f --id {long}"))).is_err());
    }

    #[test]
    fn add_revoke_list() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("terminal-tokens");
        let first = add(&path, "kiosk-1").expect("add to a new file");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(first.token.len(), 43);
        assert!(first
            .token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        let second = add(&path, "kiosk-2").expect("append");
        assert_ne!(*first.token, *second.token);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains(first.token.as_str()), "{text}");
        let tokens = TerminalTokens::parse(&text).expect("the server reads it");
        assert_eq!(tokens.authenticate(first.token.as_bytes()), Some("kiosk-1"));
        assert_eq!(
            tokens.authenticate(second.token.as_bytes()),
            Some("kiosk-2")
        );
        assert_eq!(list(&path).expect("list"), ["kiosk-1", "kiosk-2"]);

        let e = add(&path, "kiosk-1").err().expect("twice");
        assert!(matches!(e, TokenAdminError::DuplicateId { .. }), "{e}");

        // Comments and other lines survive a revocation; the owner-only mode too.
        let mut with_comment = std::fs::read_to_string(&path).expect("read");
        with_comment.insert_str(0, "# counter terminals\n");
        std::fs::write(&path, &with_comment).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).expect("chmod");
        revoke(&path, "kiosk-1").expect("revoke");
        assert_eq!(mode(&path), 0o400);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.starts_with("# counter terminals\n"), "{text}");
        let tokens = TerminalTokens::parse(&text).expect("parse");
        assert_eq!(tokens.authenticate(first.token.as_bytes()), None);
        assert_eq!(
            tokens.authenticate(second.token.as_bytes()),
            Some("kiosk-2")
        );
        let e = revoke(&path, "kiosk-1").expect_err("gone");
        assert!(matches!(e, TokenAdminError::UnknownId { .. }), "{e}");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }

    #[test]
    fn a_file_the_server_would_refuse_is_not_changed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokens");
        std::fs::write(&path, "kiosk-1 not-a-hash\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let e = add(&path, "kiosk-2").err().expect("invalid");
        assert!(e.to_string().contains("line 1"), "{e}");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "kiosk-1 not-a-hash\n"
        );

        let open = dir.path().join("open");
        add(&open, "a").expect("add");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let before = std::fs::read(&open).expect("read");
        let e = add(&open, "b").err().expect("too open");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        assert!(revoke(&open, "a").is_err());
        assert!(list(&open).is_err());
        assert_eq!(std::fs::read(&open).expect("read"), before);

        let e = list(&dir.path().join("missing")).expect_err("missing");
        assert!(e.to_string().contains("missing"), "{e}");
    }

    #[test]
    fn a_line_without_a_final_newline_is_completed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokens");
        let hash = hex::encode(Sha256::digest(b"old"));
        std::fs::write(&path, format!("old {hash}")).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        add(&path, "new").expect("add");
        assert_eq!(list(&path).expect("list"), ["old", "new"]);
    }
}
