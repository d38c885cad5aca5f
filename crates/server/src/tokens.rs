//! Terminal authentication: each terminal presents `Authorization: Bearer <token>`; the
//! server keeps only the SHA-256 of each token, one `TERMINAL_ID SHA256_HEX` per line.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::submission::MAX_TERMINAL_ID_LEN;

/// The configured terminals and the hashes of their tokens.
#[derive(Clone, Default)]
pub struct TerminalTokens {
    entries: Vec<(String, [u8; 32])>,
}

impl std::fmt::Debug for TerminalTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TerminalTokens")
            .field("terminals", &self.entries.len())
            .finish()
    }
}

impl TerminalTokens {
    /// Parses the tokens file: blank lines and `#` comments are ignored; every error names
    /// its line. A terminal id or a hash given twice is refused, since either would make
    /// the authenticated identity ambiguous.
    pub fn parse(text: &str) -> Result<TerminalTokens, String> {
        let mut entries: Vec<(String, [u8; 32])> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [id, hash_hex] = fields[..] else {
                return Err(format!(
                    "line {line_no}: expected TERMINAL_ID SHA256_HEX_OF_TOKEN"
                ));
            };
            if id.len() > MAX_TERMINAL_ID_LEN || id.chars().any(char::is_control) {
                return Err(format!(
                    "line {line_no}: the terminal id is longer than {MAX_TERMINAL_ID_LEN} bytes \
                     or has control characters"
                ));
            }
            let mut hash = [0u8; 32];
            if hash_hex.len() != 64 || hex::decode_to_slice(hash_hex, &mut hash).is_err() {
                return Err(format!(
                    "line {line_no}: the token hash must be 64 hex digits (SHA-256 of the token)"
                ));
            }
            if entries.iter().any(|(other, _)| other == id) {
                return Err(format!("line {line_no}: terminal {id:?} is listed twice"));
            }
            if entries.iter().any(|(_, other)| *other == hash) {
                return Err(format!(
                    "line {line_no}: this token hash is already given to another terminal"
                ));
            }
            entries.push((id.to_string(), hash));
        }
        Ok(TerminalTokens { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The ids, in the file's order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(id, _)| id.as_str())
    }

    /// Whether another set shares an id or a token hash with this one: the Mynaportal
    /// and terminal credentials must be told apart.
    pub fn overlaps(&self, other: &TerminalTokens) -> bool {
        self.entries
            .iter()
            .any(|(id, hash)| other.entries.iter().any(|(i, h)| i == id || h == hash))
    }

    /// The terminal whose token this is. Every entry is compared in constant time and none
    /// is skipped, so the time taken does not depend on how much of a hash matched.
    pub fn authenticate(&self, token: &[u8]) -> Option<&str> {
        let presented: [u8; 32] = Sha256::digest(token).into();
        let mut found = None;
        for (id, hash) in &self.entries {
            if bool::from(hash.ct_eq(&presented)) {
                found = Some(id.as_str());
            }
        }
        found
    }
}

/// The token of an `Authorization` header value: `Bearer` (any case), one or more spaces,
/// a non-empty token.
pub fn bearer_token(header: &[u8]) -> Option<&[u8]> {
    let scheme = header.get(..6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let rest = header.get(6..)?;
    if rest.first() != Some(&b' ') {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(token: &str) -> String {
        hex::encode(Sha256::digest(token.as_bytes()))
    }

    #[test]
    fn parses_and_authenticates() {
        let text = format!(
            "# terminals\n\nfuchu-03 {}  # counter 3\nkiosk-1\t{}\n",
            hash("secret-a"),
            hash("secret-b").to_uppercase()
        );
        let tokens = TerminalTokens::parse(&text).expect("parse");
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens.authenticate(b"secret-a"), Some("fuchu-03"));
        assert_eq!(tokens.authenticate(b"secret-b"), Some("kiosk-1"));
        assert_eq!(tokens.authenticate(b"secret-c"), None);
        assert_eq!(tokens.authenticate(b""), None);
        assert!(!format!("{tokens:?}").contains(&hash("secret-a")));
    }

    #[test]
    fn refuses_bad_lines() {
        let h = hash("x");
        for (text, needle) in [
            ("only-an-id\n".to_string(), "line 1"),
            (format!("a {h} extra\n"), "line 1"),
            ("a 1234\n".to_string(), "64 hex"),
            (format!("a {}\n", "zz".repeat(32)), "64 hex"),
            (format!("a {h}\na {}\n", hash("y")), "twice"),
            (format!("a {h}\nb {h}\n"), "another terminal"),
            (format!("{} {h}\n", "t".repeat(200)), "longer"),
        ] {
            let e = TerminalTokens::parse(&text).expect_err(&text);
            assert!(e.contains(needle), "{text:?}: {e}");
        }
        assert!(TerminalTokens::parse("# nothing\n")
            .expect("empty")
            .is_empty());
    }

    #[test]
    fn bearer_header() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer   abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bearerabc"), None);
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b""), None);
    }
}
