//! The operator password that guards the staff window's settings and the kiosk's exit. The
//! config file keeps only a salted PBKDF2-HMAC-SHA256 hash, so a copied config file does not
//! give the password away cheaply: `pbkdf2-sha256$ITERATIONS$SALT_HEX$HASH_HEX`.
//! `mynalink operator-password` makes one. At the window, failed attempts slow guessing
//! down: each failure doubles the wait before the next attempt is taken (1 s, 2 s, 4 s … up to
//! 60 s); a success resets it.

use std::time::{Duration, Instant};

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

/// The wait after the first failure; each further failure doubles it.
pub const FIRST_DELAY: Duration = Duration::from_secs(1);
/// The longest wait: guessing stays slow without locking staff out for long.
pub const MAX_DELAY: Duration = Duration::from_secs(60);

/// The wait after `failures` consecutive failures.
pub fn delay_after(failures: u32) -> Duration {
    match failures {
        0 => Duration::ZERO,
        n => FIRST_DELAY
            .checked_mul(1u32.checked_shl(n - 1).unwrap_or(u32::MAX))
            .map_or(MAX_DELAY, |d| d.min(MAX_DELAY)),
    }
}

/// Why an operator password was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Checked and wrong; the next attempt is taken after `wait`.
    Wrong { wait: Duration },
    /// Not checked: a wait after earlier failures still runs for `wait`.
    TooSoon { wait: Duration },
}

/// The outcome of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    Accepted,
    Refused(Refusal),
}

/// Consecutive failures and when the next attempt may be checked. One per process: the
/// staff settings and the kiosk exit share the password, and so its failures.
#[derive(Debug, Default)]
pub struct Throttle {
    failures: u32,
    next_allowed: Option<Instant>,
}

impl Throttle {
    /// Starts an attempt at `now`, or says how long to wait. A started attempt counts as a
    /// failure (and holds off others) until [`Throttle::finish`]: attempts made at the same
    /// moment cannot slip past the wait.
    pub fn begin(&mut self, now: Instant) -> Result<(), Duration> {
        if let Some(wait) = self.wait(now) {
            return Err(wait);
        }
        self.failures = self.failures.saturating_add(1);
        self.next_allowed = Some(now + delay_after(self.failures));
        Ok(())
    }

    /// Ends an attempt at `now`: a success clears the failures, a failure's wait runs from now.
    pub fn finish(&mut self, accepted: bool, now: Instant) {
        if accepted {
            *self = Throttle::default();
        } else {
            self.next_allowed = Some(now + delay_after(self.failures));
        }
    }

    /// What is left of the current wait, if any.
    pub fn wait(&self, now: Instant) -> Option<Duration> {
        self.next_allowed
            .map(|at| at.saturating_duration_since(now))
            .filter(|left| !left.is_zero())
    }

    /// One attempt: `verify` (the slow hash check) runs only when no wait is running.
    pub fn check(
        throttle: &std::sync::Mutex<Throttle>,
        verify: impl FnOnce() -> bool,
    ) -> PasswordCheck {
        let lock = || throttle.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(wait) = lock().begin(Instant::now()) {
            return PasswordCheck::Refused(Refusal::TooSoon { wait });
        }
        let accepted = verify();
        let mut throttle = lock();
        let now = Instant::now();
        throttle.finish(accepted, now);
        if accepted {
            PasswordCheck::Accepted
        } else {
            PasswordCheck::Refused(Refusal::Wrong {
                wait: throttle.wait(now).unwrap_or_default(),
            })
        }
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
    fn the_wait_doubles_from_one_second_up_to_a_minute() {
        let secs: Vec<u64> = (0..=9).map(|n| delay_after(n).as_secs()).collect();
        assert_eq!(secs, [0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(delay_after(40), MAX_DELAY);
        assert_eq!(delay_after(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn failures_hold_off_the_next_attempt_and_a_success_resets() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut t = Throttle::default();
        assert_eq!(t.wait(t0), None);
        t.begin(t0).expect("first attempt");
        // In flight: another attempt at the same moment waits.
        assert!(t.begin(t0).is_err());
        t.finish(false, t0 + s(1));
        assert_eq!(t.begin(t0 + s(1)), Err(s(1)));
        assert_eq!(
            t.wait(t0 + Duration::from_millis(1500)),
            Some(Duration::from_millis(500))
        );
        t.begin(t0 + s(2)).expect("after the wait");
        t.finish(false, t0 + s(2));
        assert_eq!(t.begin(t0 + s(3)), Err(s(1)), "two failures: 2 s");
        t.begin(t0 + s(4)).expect("after the wait");
        t.finish(false, t0 + s(4));
        assert_eq!(t.wait(t0 + s(4)), Some(s(4)), "three failures: 4 s");
        // Many failures: capped.
        let mut now = t0 + s(8);
        for _ in 0..10 {
            t.begin(now).expect("after the wait");
            t.finish(false, now);
            now += MAX_DELAY;
        }
        assert_eq!(t.wait(now - MAX_DELAY), Some(MAX_DELAY));
        t.begin(now).expect("after the wait");
        t.finish(true, now);
        assert_eq!(t.wait(now), None, "a success resets");
        t.begin(now).expect("at once");
        t.finish(false, now);
        assert_eq!(t.wait(now), Some(FIRST_DELAY), "counting starts again");
    }

    #[test]
    fn check_skips_the_hash_while_a_wait_runs() {
        let throttle = std::sync::Mutex::new(Throttle::default());
        let mut verified = 0;
        let wrong = Throttle::check(&throttle, || {
            verified += 1;
            false
        });
        assert!(matches!(
            wrong,
            PasswordCheck::Refused(Refusal::Wrong { wait }) if wait > Duration::from_millis(900)
        ));
        // The right password during the wait is not even checked.
        let early = Throttle::check(&throttle, || {
            verified += 1;
            true
        });
        assert!(matches!(
            early,
            PasswordCheck::Refused(Refusal::TooSoon { .. })
        ));
        assert_eq!(verified, 1);
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
