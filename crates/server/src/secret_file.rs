//! Reading and writing the server's secret files: the TLS private key, the seal key, the token
//! files and the basic-4 hash key.
//!
//! A secret that other users on the host can read is no longer a secret, so such a file is
//! refused at start with the fix named, as ssh does for its keys. The mode is read from the
//! opened file, not the path, so a swap between the check and the read changes nothing.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Group and other permission bits: none may be set on a secret file.
const FOREIGN_ACCESS: u32 = 0o077;
/// Keys and token files are small; anything larger is not one of them.
pub const MAX_SECRET_FILE_LEN: u64 = 1 << 20;

#[derive(Debug)]
pub enum SecretFileError {
    Io {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    TooOpen {
        what: &'static str,
        path: PathBuf,
        mode: u32,
    },
    Exists {
        what: &'static str,
        path: PathBuf,
    },
    TooLarge {
        what: &'static str,
        path: PathBuf,
    },
    /// A directory, a FIFO (which would block the start) or a device.
    NotAFile {
        what: &'static str,
        path: PathBuf,
    },
}

impl SecretFileError {
    /// What is wrong, without the file's description and path (which the message of
    /// [`fmt::Display`] starts with).
    pub fn reason(&self) -> String {
        match self {
            SecretFileError::Io { error, .. } => error.to_string(),
            SecretFileError::NotAFile { .. } => "not a regular file".into(),
            SecretFileError::TooOpen { mode, path, .. } => format!(
                "mode {mode:04o} lets other users read or change it; run `chmod 600 {}` \
                 (owned by the user the server runs as)",
                path.display()
            ),
            SecretFileError::TooLarge { .. } => {
                format!("larger than {MAX_SECRET_FILE_LEN} bytes; not a key or token file")
            }
            SecretFileError::Exists { .. } => {
                "the file exists and is never overwritten (move it away first)".into()
            }
        }
    }
}

impl fmt::Display for SecretFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (SecretFileError::Io { what, path, .. }
        | SecretFileError::NotAFile { what, path }
        | SecretFileError::TooOpen { what, path, .. }
        | SecretFileError::TooLarge { what, path }
        | SecretFileError::Exists { what, path }) = self;
        write!(f, "{what} {}: {}", path.display(), self.reason())
    }
}

impl std::error::Error for SecretFileError {}

/// Reads a secret file whole, refusing one that group or others may access.
pub fn read_secret(path: &Path, what: &'static str) -> Result<Zeroizing<Vec<u8>>, SecretFileError> {
    let io = |error| SecretFileError::Io {
        what,
        path: path.to_path_buf(),
        error,
    };
    // Checked before opening too: opening a FIFO would wait for a writer.
    if !std::fs::metadata(path).map_err(io)?.is_file() {
        return Err(SecretFileError::NotAFile {
            what,
            path: path.to_path_buf(),
        });
    }
    let file = std::fs::File::open(path).map_err(io)?;
    check_private(&file, path, what)?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_SECRET_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_SECRET_FILE_LEN {
        return Err(SecretFileError::TooLarge {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

#[cfg(unix)]
fn check_private(
    file: &std::fs::File,
    path: &Path,
    what: &'static str,
) -> Result<(), SecretFileError> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = file.metadata().map_err(|error| SecretFileError::Io {
        what,
        path: path.to_path_buf(),
        error,
    })?;
    if !metadata.is_file() {
        return Err(SecretFileError::NotAFile {
            what,
            path: path.to_path_buf(),
        });
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & FOREIGN_ACCESS != 0 {
        return Err(SecretFileError::TooOpen {
            what,
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &std::fs::File, _: &Path, _: &'static str) -> Result<(), SecretFileError> {
    Ok(())
}

/// Writes a new secret file with mode 0600 (whatever the umask), synced to disk; an existing
/// file is never overwritten.
pub fn write_new_secret(
    path: &Path,
    what: &'static str,
    bytes: &[u8],
) -> Result<(), SecretFileError> {
    let io = |error| SecretFileError::Io {
        what,
        path: path.to_path_buf(),
        error,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::AlreadyExists {
            SecretFileError::Exists {
                what,
                path: path.to_path_buf(),
            }
        } else {
            io(error)
        }
    })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn only_owner_only_files_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key.pem");
        write_new_secret(&path, "seal key", b"secret").expect("write");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            &read_secret(&path, "seal key").expect("read")[..],
            b"secret"
        );
        chmod(&path, 0o400);
        assert!(read_secret(&path, "seal key").is_ok());
        for open in [0o640, 0o604, 0o644, 0o620, 0o602, 0o660] {
            chmod(&path, open);
            let e = read_secret(&path, "seal key").expect_err("too open");
            let text = e.to_string();
            assert!(
                text.contains(&format!("{open:04o}")) && text.contains("chmod 600"),
                "{text}"
            );
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(!text.contains("secret"), "{text}");
        }
    }

    #[test]
    fn an_existing_file_is_not_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key.pem");
        std::fs::write(&path, b"old").expect("write");
        let e = write_new_secret(&path, "seal key", b"new").expect_err("exists");
        assert!(matches!(e, SecretFileError::Exists { .. }), "{e}");
        assert_eq!(std::fs::read(&path).expect("read"), b"old");
    }

    #[test]
    fn a_directory_or_a_fifo_is_no_secret_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = read_secret(dir.path(), "seal key").expect_err("directory");
        assert!(matches!(e, SecretFileError::NotAFile { .. }), "{e}");
        let fifo = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(status.success());
        chmod(&fifo, 0o600);
        // Returns at once instead of waiting for a writer.
        let e = read_secret(&fifo, "seal key").expect_err("fifo");
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let e = read_secret(Path::new("/nonexistent/seal.pem"), "seal key").expect_err("missing");
        assert!(
            e.to_string().contains("seal key /nonexistent/seal.pem"),
            "{e}"
        );
    }
}
