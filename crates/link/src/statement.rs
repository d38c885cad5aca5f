//! The statement the card signs: a canonical byte string that the backend rebuilds to
//! verify the signature.
//!
//! Canonical form: UTF-8 JSON as RFC 8785 (JCS) gives it for this shape — object keys in
//! ascending order, no insignificant whitespace, integers only, strings with the minimal
//! JSON escapes, `null` for an absent optional field. Field by field:
//!
//! | key | value |
//! | --- | --- |
//! | `purpose` | `"mynalink/first-stage-binding"` |
//! | `version` | `1` |
//! | `license_number` | the 12 digits |
//! | `certificate_sha256` | lower-case hex SHA-256 of the signing certificate's DER |
//! | `certificate_serial` | lower-case hex of the serial number (unsigned, no leading zeros) |
//! | `issuer_key_id` | lower-case hex of the certificate's authority key identifier, or null |
//! | `terminal_id` | the terminal's id |
//! | `operator_id` | the operator's id, or null |
//! | `nonce` | 32 lower-case hex digits (16 random bytes) |
//! | `time` | RFC 3339 UTC with seconds, e.g. `2026-11-26T09:00:00Z` |
//! | `terms` | `{"sha256": …, "version": …}` of the terms the holder agreed to, or null |

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub const PURPOSE: &str = "mynalink/first-stage-binding";
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermsRef {
    pub version: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    pub purpose: String,
    pub version: u32,
    pub license_number: String,
    pub certificate_sha256: String,
    pub certificate_serial: String,
    pub issuer_key_id: Option<String>,
    pub terminal_id: String,
    pub operator_id: Option<String>,
    pub nonce: String,
    pub time: String,
    pub terms: Option<TermsRef>,
}

impl Statement {
    /// The exact bytes that are hashed and signed.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // serde_json's Value keeps object keys sorted (BTreeMap), writes no whitespace in
        // compact mode and escapes strings minimally: for strings, integers, null and nested
        // objects that is RFC 8785's output.
        let value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        serde_json::to_vec(&value).unwrap_or_default()
    }

    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(self.canonical_bytes()).into()
    }

    /// Parses canonical bytes back, refusing anything that is not byte-for-byte canonical.
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<Statement, String> {
        let statement: Statement = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if statement.canonical_bytes() != bytes {
            return Err("statement bytes are not in canonical form".into());
        }
        if statement.purpose != PURPOSE || statement.version != VERSION {
            return Err(format!(
                "unsupported statement purpose/version {}/{}",
                statement.purpose, statement.version
            ));
        }
        Ok(statement)
    }

    pub fn time(&self) -> Result<OffsetDateTime, String> {
        OffsetDateTime::parse(&self.time, &Rfc3339).map_err(|e| e.to_string())
    }
}

/// RFC 3339 in UTC with whole seconds, the form statements and traces use.
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Statement {
        Statement {
            purpose: PURPOSE.into(),
            version: VERSION,
            license_number: "729913281070".into(),
            certificate_sha256: "ab".repeat(32),
            certificate_serial: "1a2b".into(),
            issuer_key_id: None,
            terminal_id: "tokyo-fuchu-03".into(),
            operator_id: Some("職員\"1\"".into()),
            nonce: "00".repeat(16),
            time: "2026-11-26T09:00:00Z".into(),
            terms: Some(TermsRef {
                version: "2025-03".into(),
                sha256: "cd".repeat(32),
            }),
        }
    }

    #[test]
    fn canonical_form_is_sorted_and_compact() {
        let bytes = sample().canonical_bytes();
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        let expected = r#"{"certificate_serial":"1a2b","certificate_sha256":""#;
        assert!(text.starts_with(expected), "{text}");
        assert!(text.contains(r#""issuer_key_id":null"#));
        assert!(text.contains(r#""operator_id":"職員\"1\"""#));
        assert!(text.contains(r#""terms":{"sha256":""#));
        assert!(text.ends_with(r#""version":1}"#));
        assert!(!text.contains(' '));
        assert_eq!(Statement::from_canonical_bytes(&bytes), Ok(sample()));
    }

    #[test]
    fn non_canonical_bytes_are_refused() {
        let pretty = serde_json::to_vec_pretty(&sample()).expect("json");
        assert!(Statement::from_canonical_bytes(&pretty).is_err());
        let mut other = sample();
        other.purpose = "something else".into();
        assert!(Statement::from_canonical_bytes(&other.canonical_bytes()).is_err());
    }

    #[test]
    fn hash_changes_with_any_field() {
        let a = sample();
        let mut b = sample();
        b.license_number = "729913281071".into();
        assert_ne!(a.sha256(), b.sha256());
    }

    #[test]
    fn time_format() {
        let t = OffsetDateTime::from_unix_timestamp(1_795_000_000).expect("time")
            + time::Duration::milliseconds(250);
        assert_eq!(format_time(t), "2026-11-18T11:06:40Z");
    }
}
