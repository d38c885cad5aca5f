//! Files that hold a card's responses (traces): created readable by their owner only,
//! whatever the umask, because the default (often 0644) would hand them to every local user.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` with mode 0600; a file that was there is truncated and its mode
/// narrowed before anything is written.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn owner_only_whatever_was_there() {
        let tmp = tempfile::tempdir().expect("dir");
        let dir = tmp.path();
        let file = dir.join("f");
        std::fs::write(&file, "old contents, longer").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        write(&file, b"new").expect("write");
        assert_eq!(mode(&file), 0o600);
        assert_eq!(std::fs::read(&file).expect("read"), b"new");
        let fresh = dir.join("g");
        write(&fresh, b"x").expect("write");
        assert_eq!(mode(&fresh), 0o600);
    }
}
