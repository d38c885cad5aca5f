//! One person's turn at the counter or the kiosk: what they entered, what the backend and
//! the card answered, and how far they got. Both window modes drive the same state; dropping
//! it (a new turn) wipes the password and the certificate's personal fields.

use mynalink_card::{PasswordStatus, SigningPassword};
use mynalink_link::api::LicenseStatus;
use mynalink_link::license::LicenseNumber;
use mynalink_link::statement::TermsRef;
use mynalink_link::upload::Delivery;
use mynalink_link::{ErrorCode, FlowError};
use zeroize::Zeroizing;

use super::card::CertificateView;

/// The backend's answer about the license record.
#[derive(Debug, Clone, Default)]
pub enum Lookup {
    #[default]
    NotAsked,
    Loading,
    Found(LicenseStatus),
    /// Unreachable or refused; the turn may go on and the binding will wait in the outbox.
    Failed(String),
}

#[derive(Debug, Clone, Default)]
pub enum CardPhase {
    /// Waiting for a card to be inserted or placed.
    #[default]
    Waiting,
    Checking,
    Ready(PasswordStatus),
    Verifying,
    Reading,
    Read,
    Failed(FlowError),
}

#[derive(Debug, Clone, Default)]
pub enum SendPhase {
    #[default]
    Idle,
    Signing,
    Uploading,
    Finished(Delivery),
    Failed(FlowError),
}

#[derive(Default)]
pub struct Turn {
    pub license_input: String,
    pub license: Option<LicenseNumber>,
    pub license_problem: Option<FlowError>,
    pub lookup: Lookup,
    pub consent: Option<TermsRef>,
    pub card: CardPhase,
    /// Tries left as last seen: from the card before the first entry, then from each wrong
    /// answer.
    pub tries_left: Option<u8>,
    pub password: Zeroizing<String>,
    pub password_problem: Option<FlowError>,
    pub last_try_confirmed: bool,
    pub certificate: Option<CertificateView>,
    pub identity_confirmed: bool,
    pub send: SendPhase,
}

/// Longest password the card accepts; longer input is not kept.
const PASSWORD_MAX: usize = 16;

impl Turn {
    /// Live validation as the number is typed: full-width digits, spaces and one hyphen
    /// between groups are accepted; the error appears only once 12 digits could be there.
    pub fn set_license_input(&mut self, input: String) {
        self.license_input = input;
        self.lookup = Lookup::NotAsked;
        match LicenseNumber::parse(&self.license_input) {
            Ok((license, _)) => {
                self.license = Some(license);
                self.license_problem = None;
            }
            Err(e) => {
                self.license = None;
                let digits = self
                    .license_input
                    .chars()
                    .filter(|c| c.is_ascii_digit() || ('０'..='９').contains(c))
                    .count();
                let foreign = self.license_input.chars().any(|c| {
                    !(c.is_ascii_digit()
                        || ('０'..='９').contains(&c)
                        || c == ' '
                        || c == '-'
                        || c == '　'
                        || c == '－')
                });
                self.license_problem = (digits >= 12 || foreign).then(|| FlowError::from(e));
            }
        }
    }

    /// The holder may go on to the card: the number is valid and the backend did not say
    /// that nothing is needed or that the holder cannot link. When the backend could not be
    /// asked, the turn goes on and the binding waits in the outbox.
    pub fn reception_done(&self) -> bool {
        self.license.is_some()
            && match &self.lookup {
                Lookup::Found(status) => status.eligible && status.first_stage_needed,
                Lookup::Failed(_) => true,
                Lookup::NotAsked | Lookup::Loading => false,
            }
    }

    /// Typed characters are upper-cased at once (the card compares bytes; lower case would
    /// cost a try); anything but A–Z and 0–9 is explained, not sent.
    pub fn set_password(&mut self, input: &str) {
        let upper: String = input
            .chars()
            .map(|c| c.to_ascii_uppercase())
            .take(PASSWORD_MAX)
            .collect();
        self.password = Zeroizing::new(upper);
        self.password_problem = match SigningPassword::parse(&self.password) {
            Err(e @ mynalink_card::PasswordFormatError::InvalidCharacter { .. }) => {
                Some(FlowError::from(e))
            }
            _ => None,
        };
    }

    pub fn push_password_char(&mut self, c: char) {
        let mut next = self.password.to_string();
        next.push(c);
        self.set_password(&next);
        next.clear();
    }

    pub fn pop_password_char(&mut self) {
        let mut next = self.password.to_string();
        next.pop();
        self.set_password(&next);
        next.clear();
    }

    /// The password ready for the card, or the format problem (nothing is sent).
    pub fn take_password(&mut self) -> Result<SigningPassword, FlowError> {
        let parsed = SigningPassword::parse(&self.password).map_err(FlowError::from);
        self.password = Zeroizing::new(String::new());
        if let Err(e) = &parsed {
            self.password_problem = Some(e.clone());
        }
        parsed
    }

    /// One try left: staff (or, at the kiosk, the holder on a second screen) must confirm.
    pub fn needs_last_try_confirmation(&self) -> bool {
        // An unknown counter (the card answered 90 00) is treated like the last try.
        self.tries_left == Some(1) || matches!(self.card, CardPhase::Ready(PasswordStatus::Unknown))
    }

    /// After a card answer, the tries left as the holder should see them.
    pub fn note_card_status(&mut self, status: PasswordStatus) {
        if let PasswordStatus::Tries(n) = status {
            self.tries_left = Some(n);
        }
        self.card = CardPhase::Ready(status);
    }

    pub fn note_verify_failure(&mut self, error: FlowError) {
        if let Some(n) = error.tries_left {
            self.tries_left = Some(n);
        }
        self.last_try_confirmed = false;
        match error.code {
            // The turn stays at the password step: the holder may try again.
            ErrorCode::PinWrong
            | ErrorCode::LastTryRequiresConfirmation
            | ErrorCode::PinFormatInvalid => {
                let status = match self.tries_left {
                    Some(n) => PasswordStatus::Tries(n),
                    None => PasswordStatus::Unknown,
                };
                self.card = CardPhase::Ready(status);
                self.password_problem = Some(error);
            }
            _ => self.card = CardPhase::Failed(error),
        }
    }

    /// Whether the card refuses the procedure for good today (blocked, no certificate):
    /// the holder must go to the municipal office.
    pub fn card_refused(&self) -> Option<ErrorCode> {
        match &self.card {
            CardPhase::Ready(PasswordStatus::Blocked) => Some(ErrorCode::PinBlocked),
            CardPhase::Ready(PasswordStatus::NoSigningCertificate) => {
                Some(ErrorCode::NoSigningCertificate)
            }
            CardPhase::Failed(e)
                if matches!(
                    e.code,
                    ErrorCode::PinBlocked | ErrorCode::NoSigningCertificate
                ) =>
            {
                Some(e.code)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn license_errors_wait_for_twelve_digits_unless_the_input_is_wrong() {
        let mut turn = Turn::default();
        turn.set_license_input("72991".into());
        assert!(turn.license.is_none());
        assert!(turn.license_problem.is_none(), "no error while typing");
        turn.set_license_input("72991a".into());
        assert!(
            turn.license_problem.is_some(),
            "a letter is explained at once"
        );
        turn.set_license_input("729913281060".into());
        assert_eq!(
            turn.license_problem.as_ref().map(|e| e.code),
            Some(ErrorCode::LicenseNumberInvalid)
        );
        turn.set_license_input("７２９９１３２８１０７０".into());
        assert_eq!(
            turn.license.as_ref().map(|l| l.as_str()),
            Some("729913281070")
        );
        assert!(turn.license_problem.is_none());
    }

    #[test]
    fn reception_needs_a_valid_number_and_an_answer() {
        let mut turn = Turn::default();
        turn.set_license_input("729913281070".into());
        assert!(!turn.reception_done(), "not yet looked up");
        turn.lookup = Lookup::Failed("down".into());
        assert!(
            turn.reception_done(),
            "backend down: the binding will be queued"
        );
    }

    #[test]
    fn password_is_upper_cased_bounded_and_wiped_when_taken() {
        let mut turn = Turn::default();
        turn.set_password("test1234");
        assert_eq!(turn.password.as_str(), "TEST1234");
        turn.set_password("abc-");
        assert_eq!(
            turn.password_problem.as_ref().map(|e| e.code),
            Some(ErrorCode::PinFormatInvalid)
        );
        turn.set_password(&"A".repeat(40));
        assert_eq!(turn.password.len(), 16);
        turn.set_password("TEST1234");
        let taken = turn.take_password().expect("valid");
        assert_eq!(taken.len(), 8);
        assert!(turn.password.is_empty());
        turn.set_password("ab");
        assert!(
            turn.take_password().is_err(),
            "too short is refused before the card"
        );
    }

    #[test]
    fn wrong_password_keeps_the_turn_at_the_password_step() {
        let mut turn = Turn::default();
        turn.note_card_status(PasswordStatus::Tries(3));
        turn.note_verify_failure(FlowError::new(ErrorCode::PinWrong).with_tries_left(2));
        assert_eq!(turn.tries_left, Some(2));
        assert!(matches!(
            turn.card,
            CardPhase::Ready(PasswordStatus::Tries(2))
        ));
        turn.note_verify_failure(FlowError::new(ErrorCode::PinWrong).with_tries_left(1));
        assert!(turn.needs_last_try_confirmation());
        turn.note_verify_failure(FlowError::new(ErrorCode::PinBlocked));
        assert_eq!(turn.card_refused(), Some(ErrorCode::PinBlocked));
    }
}
