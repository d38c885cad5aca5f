//! The card-layer allow-list: which commands the client may send at all.
//!
//! The client only ever needs the applications of the card profiles (`profile.rs`) and, in
//! each, the profile's signing files: token info, certificate presence, signing password,
//! signing certificate, signing CA certificate and signing key. Everything else — in
//! particular the 券面事項入力補助AP and the 券面AP, which hold or derive from the individual
//! number, and the authentication side of the JPKI application — is refused here, before it
//! reaches the card.

use crate::apdu::Command;
use crate::profile::{self, CardProfile};

/// 券面事項入力補助AP — holds the individual number. Never selected.
pub const CARD_INFO_INPUT_AID: [u8; 10] =
    [0xD3, 0x92, 0x10, 0x00, 0x31, 0x00, 0x01, 0x01, 0x04, 0x08];
/// 券面AP — holds the card surface incl. the individual number image. Never selected.
pub const CARD_SURFACE_AID: [u8; 10] = [0xD3, 0x92, 0x10, 0x00, 0x31, 0x00, 0x01, 0x01, 0x04, 0x02];

pub const INS_SELECT: u8 = 0xA4;
pub const INS_READ_BINARY: u8 = 0xB0;
pub const INS_VERIFY: u8 = 0x20;
pub const INS_SIGN: u8 = 0x2A;
pub const INS_GET_RESPONSE: u8 = 0xC0;

/// What the card has selected, as far as the client knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Selection {
    /// A profile's application (its DF name, from the profile table).
    pub application: Option<&'static [u8]>,
    pub ef: Option<u16>,
}

impl Selection {
    /// The profiles of the selected application.
    fn profiles(self) -> impl Iterator<Item = &'static CardProfile> {
        profile::PROFILES
            .iter()
            .filter(move |p| self.application == Some(p.aid))
    }

    /// Whether the current EF is one of `files` of a profile of the selected application.
    fn ef_is(&self, files: impl Fn(&CardProfile) -> Vec<u16>) -> bool {
        match self.ef {
            Some(fid) => self.profiles().any(|p| files(p).contains(&fid)),
            None => false,
        }
    }
}

/// The effect a permitted command has on the selection when the card answers 90 00.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    SelectsApplication(&'static [u8]),
    SelectsEf(u16),
    None,
}

/// Checks one command against the allow-list and the current selection.
pub fn check(command: &Command, selection: Selection) -> Result<Effect, String> {
    let header = format!(
        "{:02X} {:02X} {:02X} {:02X}",
        command.cla, command.ins, command.p1, command.p2
    );
    match (command.cla, command.ins) {
        (0x00, INS_SELECT) => check_select(command, selection),
        (0x00, INS_READ_BINARY) => {
            if command.p1 & 0x80 != 0 {
                return Err(format!("{header}: READ BINARY by short file identifier"));
            }
            if selection.ef_is(|p| p.files.readable().to_vec()) {
                Ok(Effect::None)
            } else {
                Err(format!(
                    "{header}: READ BINARY of a file not on the allow-list"
                ))
            }
        }
        (0x00, INS_VERIFY) => {
            if command.p1 == 0x00
                && command.p2 == 0x80
                && selection.ef_is(|p| vec![p.files.signing_password])
            {
                Ok(Effect::None)
            } else {
                Err(format!(
                    "{header}: VERIFY of a key other than the signing password"
                ))
            }
        }
        (0x80, INS_SIGN) => {
            if command.p1 == 0x00
                && command.p2 == 0x80
                && selection.ef_is(|p| vec![p.files.signing_key])
            {
                Ok(Effect::None)
            } else {
                Err(format!(
                    "{header}: signature with a key other than the signing key"
                ))
            }
        }
        _ => Err(format!("{header}: instruction not on the allow-list")),
    }
}

fn check_select(command: &Command, selection: Selection) -> Result<Effect, String> {
    if command.p2 != 0x0C {
        return Err("SELECT asking for control information".into());
    }
    match command.p1 {
        0x04 => {
            if let Some(aid) = profile::application_id(&command.data) {
                Ok(Effect::SelectsApplication(aid))
            } else if command.data.as_slice() == CARD_INFO_INPUT_AID {
                Err("SELECT of the 券面事項入力補助AP (card-info input support application)".into())
            } else if command.data.as_slice() == CARD_SURFACE_AID {
                Err("SELECT of the 券面AP (card surface application)".into())
            } else {
                Err(format!(
                    "SELECT of application {}",
                    hex::encode_upper(&command.data[..])
                ))
            }
        }
        0x02 => {
            let fid = match command.data.as_slice() {
                [hi, lo] => u16::from_be_bytes([*hi, *lo]),
                _ => return Err("SELECT of a file by a malformed identifier".into()),
            };
            if selection.application.is_none() {
                Err(format!(
                    "SELECT of file {fid:04X} outside the JPKI application"
                ))
            } else if selection
                .profiles()
                .any(|p| p.files.selectable().contains(&fid))
            {
                Ok(Effect::SelectsEf(fid))
            } else {
                Err(format!("SELECT of file {fid:04X}, not on the allow-list"))
            }
        }
        p1 => Err(format!("SELECT with P1 {p1:02X}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{JPKI_AID, MY_NUMBER_CARD, NEXT_GENERATION_PROVISIONAL, PROFILES};

    /// Today's files; the next-generation row shares them (checked below).
    mod ef {
        use crate::profile::MY_NUMBER_CARD;
        pub const SIGNING_CERTIFICATE: u16 = MY_NUMBER_CARD.files.signing_certificate;
        pub const SIGNING_KEY: u16 = MY_NUMBER_CARD.files.signing_key;
        pub const SIGNING_PASSWORD: u16 = MY_NUMBER_CARD.files.signing_password;
        pub const TOKEN_INFO: u16 = MY_NUMBER_CARD.files.token_info;
    }

    fn select_df(aid: &[u8]) -> Command {
        Command::new(0, INS_SELECT, 4, 0x0C).with_data(aid)
    }
    fn select_ef(fid: u16) -> Command {
        Command::new(0, INS_SELECT, 2, 0x0C).with_data(&fid.to_be_bytes())
    }
    const IN_JPKI: Selection = Selection {
        application: Some(&JPKI_AID),
        ef: None,
    };

    #[test]
    fn the_my_number_applications_are_refused() {
        let e = check(&select_df(&CARD_INFO_INPUT_AID), Selection::default()).unwrap_err();
        assert!(e.contains("券面事項入力補助AP"));
        let e = check(&select_df(&CARD_SURFACE_AID), IN_JPKI).unwrap_err();
        assert!(e.contains("券面AP"));
        // A prefix of another AID (DF-name prefix selection) is refused too.
        assert!(check(&select_df(&CARD_INFO_INPUT_AID[..7]), Selection::default()).is_err());
        assert!(check(&select_df(&JPKI_AID[..9]), Selection::default()).is_err());
    }

    #[test]
    fn only_listed_files_in_the_jpki_application() {
        assert_eq!(
            check(&select_df(&JPKI_AID), Selection::default()),
            Ok(Effect::SelectsApplication(&JPKI_AID))
        );
        assert_eq!(
            NEXT_GENERATION_PROVISIONAL.files, MY_NUMBER_CARD.files,
            "the provisional row assumes today's files"
        );
        for fid in MY_NUMBER_CARD.files.selectable() {
            assert_eq!(check(&select_ef(fid), IN_JPKI), Ok(Effect::SelectsEf(fid)));
            assert!(check(&select_ef(fid), Selection::default()).is_err());
        }
        // Authentication side, unknown files, the MF.
        for fid in [0x000A, 0x000B, 0x0017, 0x0018, 0x0009, 0x3F00, 0x0014] {
            assert!(check(&select_ef(fid), IN_JPKI).is_err(), "{fid:04X}");
        }
        let fci = Command::new(0, INS_SELECT, 4, 0x00).with_data(&JPKI_AID);
        assert!(check(&fci, Selection::default()).is_err());
        let mf = Command::new(0, INS_SELECT, 0, 0x0C);
        assert!(check(&mf, IN_JPKI).is_err());
    }

    #[test]
    fn reads_verifies_and_signs_need_the_right_file() {
        let read = Command::new(0, INS_READ_BINARY, 0, 0).with_le(256);
        let at = |fid| Selection {
            application: Some(&JPKI_AID),
            ef: Some(fid),
        };
        assert!(check(&read, at(ef::SIGNING_CERTIFICATE)).is_ok());
        assert!(check(&read, at(ef::SIGNING_KEY)).is_err());
        assert!(check(&read, IN_JPKI).is_err());
        let by_sfi = Command::new(0, INS_READ_BINARY, 0x81, 0).with_le(256);
        assert!(check(&by_sfi, at(ef::SIGNING_CERTIFICATE)).is_err());

        let query = Command::new(0, INS_VERIFY, 0, 0x80);
        assert!(check(&query, at(ef::SIGNING_PASSWORD)).is_ok());
        assert!(check(&query, at(ef::TOKEN_INFO)).is_err());
        let by_ref = Command::new(0, INS_VERIFY, 0, 0x9B);
        assert!(check(&by_ref, at(ef::SIGNING_PASSWORD)).is_err());

        let sign = Command::new(0x80, INS_SIGN, 0, 0x80).with_data(&[0; 51]);
        assert!(check(&sign, at(ef::SIGNING_KEY)).is_ok());
        assert!(check(&sign, at(ef::SIGNING_PASSWORD)).is_err());

        for (cla, ins) in [
            (0, 0x24),
            (0, 0x84),
            (0, 0xCA),
            (0, INS_GET_RESPONSE),
            (0x80, 0xA2),
        ] {
            assert!(check(&Command::new(cla, ins, 0, 0), at(ef::SIGNING_KEY)).is_err());
        }
    }

    #[test]
    fn every_profile_allows_exactly_its_signing_files() {
        // Everything a JPKI application has besides the signing side, and the other
        // applications' individual-number files.
        let never = [
            0x000A, 0x000B, 0x0017, 0x0018, 0x0009, 0x0016, 0x0011, 0x0014, 0x0015,
        ];
        for profile in &PROFILES {
            let inside = Selection {
                application: Some(profile.aid),
                ef: None,
            };
            for fid in profile.files.selectable() {
                assert!(check(&select_ef(fid), inside).is_ok(), "{}", profile.id);
            }
            for fid in never {
                assert!(
                    !profile.files.selectable().contains(&fid),
                    "{} lists {fid:04X}",
                    profile.id
                );
                assert!(check(&select_ef(fid), inside).is_err(), "{fid:04X}");
            }
            // Keys and passwords are never read; only the password is verified, only the
            // key signs.
            let read = Command::new(0, INS_READ_BINARY, 0, 0).with_le(256);
            let at = |fid| Selection {
                application: Some(profile.aid),
                ef: Some(fid),
            };
            assert!(check(&read, at(profile.files.signing_key)).is_err());
            assert!(check(&read, at(profile.files.signing_password)).is_err());
            let sign = Command::new(0x80, INS_SIGN, 0, 0x80).with_data(&[0; 48]);
            assert!(check(&sign, at(profile.files.signing_key)).is_ok());
            assert!(check(&sign, at(profile.files.signing_certificate)).is_err());
            let verify = Command::new(0, INS_VERIFY, 0, 0x80);
            assert!(check(&verify, at(profile.files.signing_password)).is_ok());
            assert!(check(&verify, at(profile.files.signing_key)).is_err());
            // The individual-number applications are never among the profiles'.
            assert_ne!(profile.aid, CARD_INFO_INPUT_AID);
            assert_ne!(profile.aid, CARD_SURFACE_AID);
        }
    }
}
