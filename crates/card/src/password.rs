//! The signing password (署名用パスワード): format rules and a buffer that never leaks.

use thiserror::Error;
use zeroize::Zeroizing;

pub const MIN_LEN: usize = 6;
pub const MAX_LEN: usize = 16;

/// A signing password that passed the format rules: 6–16 of A–Z and 0–9, upper-cased.
///
/// Not `Clone`, not `Display`, and `Debug` hides it; the bytes are zeroized on drop.
pub struct SigningPassword(Zeroizing<Vec<u8>>);

/// Why a typed password cannot be a signing password. Never holds the password itself.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PasswordFormatError {
    #[error("the password is empty")]
    Empty,
    #[error("the password has {length} characters; it needs 6 to 16")]
    TooShort { length: usize },
    #[error("the password has {length} characters; it needs 6 to 16")]
    TooLong { length: usize },
    /// 1-based position of the first character that is not a letter or a digit.
    #[error("character {position} is not a letter A-Z or a digit 0-9")]
    InvalidCharacter { position: usize },
}

impl SigningPassword {
    /// Checks the format and upper-cases ASCII letters, as the card stores the password in
    /// upper case and compares bytes (lower case would cost a try).
    pub fn parse(input: &str) -> Result<Self, PasswordFormatError> {
        if input.is_empty() {
            return Err(PasswordFormatError::Empty);
        }
        let length = input.chars().count();
        let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_LEN));
        for (i, c) in input.chars().enumerate() {
            if !c.is_ascii_alphanumeric() {
                return Err(PasswordFormatError::InvalidCharacter { position: i + 1 });
            }
            if bytes.len() < MAX_LEN {
                bytes.push(c.to_ascii_uppercase() as u8);
            }
        }
        if length < MIN_LEN {
            return Err(PasswordFormatError::TooShort { length });
        }
        if length > MAX_LEN {
            return Err(PasswordFormatError::TooLong { length });
        }
        Ok(SigningPassword(bytes))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SigningPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningPassword(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_upper_cases() {
        let p = SigningPassword::parse("test1234").expect("valid");
        assert_eq!(p.as_bytes(), b"TEST1234");
        assert_eq!(p.len(), 8);
        assert!(SigningPassword::parse("ABCDEF").is_ok());
        assert!(SigningPassword::parse("0123456789ABCDEF").is_ok());
        // All digits: not rejected, as it is unclear that every registered password mixes both.
        assert!(SigningPassword::parse("123456").is_ok());
    }

    #[test]
    fn rejects_bad_lengths() {
        assert_eq!(
            SigningPassword::parse("").unwrap_err(),
            PasswordFormatError::Empty
        );
        assert_eq!(
            SigningPassword::parse("ABC12").unwrap_err(),
            PasswordFormatError::TooShort { length: 5 }
        );
        assert_eq!(
            SigningPassword::parse("0123456789ABCDEFG").unwrap_err(),
            PasswordFormatError::TooLong { length: 17 }
        );
    }

    #[test]
    fn rejects_other_characters_by_position() {
        for (input, position) in [
            ("ABC 123", 4),
            ("ABC-123", 4),
            ("ＡＢＣ123", 1),
            ("ABCDEF\n", 7),
            ("ÄBCDEF", 1),
            ("abcde!", 6),
        ] {
            assert_eq!(
                SigningPassword::parse(input).unwrap_err(),
                PasswordFormatError::InvalidCharacter { position },
                "{input:?}"
            );
        }
    }

    #[test]
    fn debug_hides_password_and_errors_never_hold_it() {
        let p = SigningPassword::parse("SECRET99").expect("valid");
        assert_eq!(format!("{p:?}"), "SigningPassword(***)");
        let e = SigningPassword::parse("SECRE!99").unwrap_err();
        assert!(!e.to_string().contains("SECRE"));
    }
}
