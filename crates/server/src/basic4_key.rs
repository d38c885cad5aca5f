//! The key that hashes the second stage's card-info basic-4 (§4), and the hashing.
//!
//! Mynaportal's basic-4 waits in the database for the holder's signature and is only ever
//! compared for equality after normalisation, so the database keeps keyed hashes instead of
//! the values: HMAC-SHA-256 of each normalised field under a 32-byte key that lives in a file
//! of its own (`serve --basic4-key FILE`), never in the database. A copy of the database, its
//! free pages, its WAL or a backup then hold nothing that turns back into a name or an address
//! without the key. One hash per field keeps the mismatch detail ("address differs"). The
//! hashed input names the field and the second stage's id besides the value, so equal values
//! in two pending rows do not give equal hashes: a field of a few values (the sex) would
//! otherwise sort the rows into groups.
//!
//! The key file holds the 32 bytes as 64 hexadecimal characters on one line;
//! `mynalink-server basic4-key generate --out FILE` writes one, mode 0600. A key file that
//! its group or others may read is refused.

use std::path::{Path, PathBuf};

use hmac::digest::generic_array::GenericArray;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::secret_file::{read_secret, write_new_secret, SecretFileError};

/// The key's length in bytes.
pub const KEY_LEN: usize = 32;
/// What a hashed input starts with: this purpose and version only.
const DOMAIN: &[u8] = b"mynalink/second-stage/basic4/v1";

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Error)]
pub enum Basic4KeyError {
    /// Unreadable, shared with group or others, or (when writing) already there.
    #[error(transparent)]
    File(#[from] SecretFileError),
    #[error(
        "basic-4 key {}: expected 64 hexadecimal characters (32 bytes) on one line, as \
         `mynalink-server basic4-key generate --out FILE` writes",
        .path.display()
    )]
    Format { path: PathBuf },
}

/// The secret key; `Debug` shows its id only, dropping it wipes it.
#[derive(Clone)]
pub struct Basic4Key {
    /// The key, zero-padded to SHA-256's block: HMAC pads a shorter key so, which makes
    /// the keyed state infallible to build.
    block: Zeroizing<[u8; 64]>,
    id: String,
}

impl std::fmt::Debug for Basic4Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Basic4Key").field("id", &self.id).finish()
    }
}

impl Basic4Key {
    pub fn from_bytes(key: &[u8; KEY_LEN]) -> Basic4Key {
        let mut block = Zeroizing::new([0u8; 64]);
        block[..KEY_LEN].copy_from_slice(key);
        let mut key = Basic4Key {
            block,
            id: String::new(),
        };
        let mut mac = key.mac();
        mac.update(DOMAIN);
        mac.update(b"\0key-id");
        key.id = hex::encode(&mac.finalize().into_bytes()[..8]);
        key
    }

    /// A new random key from the operating system's generator.
    pub fn generate() -> Basic4Key {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        Basic4Key::from_bytes(&bytes)
    }

    /// Reads a key file: owner-only, 64 hexadecimal characters on one line.
    pub fn load(path: &Path) -> Result<Basic4Key, Basic4KeyError> {
        let text = read_secret(path, "basic-4 key")?;
        let format = || Basic4KeyError::Format {
            path: path.to_path_buf(),
        };
        let line = text
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(&text);
        if line.len() != 2 * KEY_LEN {
            return Err(format());
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        hex::decode_to_slice(line, key.as_mut()).map_err(|_| format())?;
        Ok(Basic4Key::from_bytes(&key))
    }

    /// Writes the key to a new file, mode 0600, as [`Basic4Key::load`] reads it; an
    /// existing file is never replaced (pending second stages need the key they were hashed
    /// with).
    pub fn write_new(&self, path: &Path) -> Result<(), Basic4KeyError> {
        let mut line = Zeroizing::new(hex::encode(&self.block[..KEY_LEN]));
        line.push('\n');
        write_new_secret(path, "basic-4 key", line.as_bytes())?;
        Ok(())
    }

    /// Identifies the key without revealing it (16 hexadecimal digits): a pending row
    /// hashed under another key cannot be compared any more.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn mac(&self) -> HmacSha256 {
        let block = GenericArray::from_slice(self.block.as_ref());
        <HmacSha256 as hmac::digest::KeyInit>::new(block)
    }

    /// The hash of one normalised field of one second stage, hexadecimal.
    pub fn digest(&self, field: &str, second_stage_id: &str, normalised: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(DOMAIN);
        for part in [field.as_bytes(), second_stage_id.as_bytes(), normalised] {
            mac.update(b"\0");
            mac.update(part);
        }
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `stored` is the hash of this normalised field; in constant time.
    pub fn matches(
        &self,
        field: &str,
        second_stage_id: &str,
        normalised: &[u8],
        stored: &str,
    ) -> bool {
        let digest = self.digest(field, second_stage_id, normalised);
        digest.len() == stored.len() && bool::from(digest.as_bytes().ct_eq(stored.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_padded_key_is_standard_hmac() {
        // RFC 4231, test case 1: a 20-byte key of 0x0b, "Hi There".
        let mut block = Zeroizing::new([0u8; 64]);
        block[..20].fill(0x0b);
        let key = Basic4Key {
            block,
            id: String::new(),
        };
        let mut mac = key.mac();
        mac.update(b"Hi There");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }

    #[test]
    fn digests_separate_fields_sessions_and_keys() {
        let key = Basic4Key::from_bytes(&[7; KEY_LEN]);
        let id = "ab".repeat(16);
        let d = key.digest("name", &id, "試験花子".as_bytes());
        assert_eq!(d.len(), 64);
        assert!(key.matches("name", &id, "試験花子".as_bytes(), &d));
        assert!(!key.matches("name", &id, "試験花代".as_bytes(), &d));
        assert!(!key.matches("address", &id, "試験花子".as_bytes(), &d));
        assert!(!key.matches("name", &"cd".repeat(16), "試験花子".as_bytes(), &d));
        assert!(!key.matches("name", &id, "試験花子".as_bytes(), &d[..63]));
        let other = Basic4Key::from_bytes(&[8; KEY_LEN]);
        assert!(!other.matches("name", &id, "試験花子".as_bytes(), &d));
        assert_ne!(key.id(), other.id());
        assert_eq!(key.id().len(), 16);
        assert!(!format!("{key:?}").contains("0707"));
    }

    #[test]
    fn key_files() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("basic4.key");
        let key = Basic4Key::generate();
        key.write_new(&path).expect("write");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.len(), 65);
        assert!(text.ends_with('\n'));
        assert_eq!(Basic4Key::load(&path).expect("load").id(), key.id());
        // Never replaced.
        let err = Basic4Key::generate().write_new(&path).expect_err("exists");
        assert!(
            matches!(err, Basic4KeyError::File(SecretFileError::Exists { .. })),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).expect("read"), text);

        // Readable by others: refused, naming the file and the fix.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let err = Basic4Key::load(&path).expect_err("shared");
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("chmod 600"), "{message}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).expect("chmod");
        assert!(Basic4Key::load(&path).is_ok());

        for bad in [
            "",
            "00",
            &"0".repeat(63),
            &"g".repeat(64),
            &format!("{}\n\n", "0".repeat(64)),
            &format!(" {}", "0".repeat(64)),
            &"0".repeat(1000),
        ] {
            let path = dir.path().join("bad.key");
            let _ = std::fs::remove_file(&path);
            std::fs::write(&path, bad).expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            let err = Basic4Key::load(&path).expect_err("bad format");
            assert!(
                matches!(err, Basic4KeyError::Format { .. }),
                "{bad:?}: {err}"
            );
            assert!(!err.to_string().contains("000000"), "{err}");
        }
        let path = dir.path().join("crlf.key");
        std::fs::write(&path, format!("{}\r\n", "AB".repeat(32))).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(
            Basic4Key::load(&path).expect("upper case, CRLF").id(),
            Basic4Key::from_bytes(&[0xAB; KEY_LEN]).id()
        );
    }
}
