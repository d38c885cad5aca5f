//! The operator password that guards the staff window's settings and the kiosk's exit. The
//! config file keeps only a salted PBKDF2-HMAC-SHA256 hash, so a copied config file does not
//! give the password away cheaply: `pbkdf2-sha256$ITERATIONS$SALT_HEX$HASH_HEX`.
//! `mynalink operator-password` makes one.

use pbkdf2::pbkdf2_hmac;
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

/// OWASP's 2023 figure for PBKDF2-HMAC-SHA256.
pub const ITERATIONS: u32 = 600_000;
/// Fewer would make a brute force of a leaked file cheap; more than this is a typo.
const MIN_ITERATIONS: u32 = 100_000;
const MAX_ITERATIONS: u32 = 10_000_000;
const PREFIX: &str = "pbkdf2-sha256";

#[derive(Clone, PartialEq, Eq)]
pub struct OperatorPasswordHash {
    iterations: u32,
    salt: Vec<u8>,
    hash: [u8; 32],
}

impl std::fmt::Debug for OperatorPasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OperatorPasswordHash({} iterations)", self.iterations)
    }
}

impl std::fmt::Display for OperatorPasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{PREFIX}${}${}${}",
            self.iterations,
            hex::encode(&self.salt),
            hex::encode(self.hash)
        )
    }
}

fn derive(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
    out
}

impl OperatorPasswordHash {
    /// A new hash with a fresh random salt.
    pub fn create(password: &str) -> OperatorPasswordHash {
        Self::create_with(password, ITERATIONS)
    }

    fn create_with(password: &str, iterations: u32) -> OperatorPasswordHash {
        let mut salt = vec![0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        let hash = derive(password, &salt, iterations);
        OperatorPasswordHash {
            iterations,
            salt,
            hash,
        }
    }

    /// Parses the config file's value; the error says what is wrong without echoing it.
    pub fn parse(text: &str) -> Result<OperatorPasswordHash, String> {
        let parts: Vec<&str> = text.trim().split('$').collect();
        let [prefix, iterations, salt, hash] = parts.as_slice() else {
            return Err(format!(
                "expected {PREFIX}$ITERATIONS$SALT$HASH (make one with `mynalink operator-password`)"
            ));
        };
        if *prefix != PREFIX {
            return Err(format!("unknown scheme; expected {PREFIX}"));
        }
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| "the iteration count is not a number".to_string())?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(format!(
                "{iterations} iterations is outside {MIN_ITERATIONS}..={MAX_ITERATIONS}"
            ));
        }
        let salt = hex::decode(salt).map_err(|_| "the salt is not hex".to_string())?;
        if salt.len() < 8 {
            return Err("the salt is shorter than 8 bytes".into());
        }
        let hash: [u8; 32] = hex::decode(hash)
            .ok()
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| "the hash is not 32 bytes of hex".to_string())?;
        Ok(OperatorPasswordHash {
            iterations,
            salt,
            hash,
        })
    }

    /// Takes a noticeable fraction of a second by design: call it off the UI thread.
    pub fn verify(&self, password: &str) -> bool {
        let actual = Zeroizing::new(derive(password, &self.salt, self.iterations));
        actual
            .iter()
            .zip(self.hash.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// `mynalink operator-password`: asks twice (or reads one line from stdin) and prints the
/// config line.
pub fn run(from_stdin: bool) -> i32 {
    let read = |prompt: &str| -> Option<Zeroizing<String>> {
        if from_stdin {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).ok()?;
            Some(Zeroizing::new(
                line.trim_end_matches(['\r', '\n']).to_string(),
            ))
        } else {
            rpassword::prompt_password(prompt).ok().map(Zeroizing::new)
        }
    };
    let Some(first) = read("職員パスワード / operator password: ") else {
        eprintln!("パスワードを読み取れません / cannot read the password");
        return 1;
    };
    if first.chars().count() < 8 {
        eprintln!("8文字以上にしてください / use at least 8 characters");
        return 1;
    }
    if !from_stdin {
        let Some(second) = read("もう一度 / again: ") else {
            eprintln!("パスワードを読み取れません / cannot read the password");
            return 1;
        };
        if *second != *first {
            eprintln!("一致しません / the two entries differ");
            return 1;
        }
    }
    println!(
        "operator_password_hash = \"{}\"",
        OperatorPasswordHash::create(&first)
    );
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_hash_round_trips_and_verifies_only_its_password() {
        // The fewest iterations accepted keeps unoptimised test builds quick.
        let hash = OperatorPasswordHash::create_with("correct horse", MIN_ITERATIONS);
        let parsed = OperatorPasswordHash::parse(&hash.to_string()).expect("parses");
        assert_eq!(parsed, hash);
        assert!(parsed.verify("correct horse"));
        assert!(!parsed.verify("correct hors"));
        assert!(!parsed.verify(""));
        assert_ne!(
            OperatorPasswordHash::create_with("correct horse", MIN_ITERATIONS).to_string(),
            hash.to_string(),
            "salted"
        );
    }

    #[test]
    fn malformed_values_are_refused_with_a_reason() {
        for bad in [
            "",
            "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8",
            "md5$1$00$00",
            "pbkdf2-sha256$1000$00112233445566778899aabbccddeeff$00",
            "pbkdf2-sha256$600000$zz$00",
            "pbkdf2-sha256$600000$0011$0011",
            "pbkdf2-sha256$600000$00112233445566778899aabbccddeeff$0011",
        ] {
            assert!(OperatorPasswordHash::parse(bad).is_err(), "{bad:?}");
        }
    }
}
