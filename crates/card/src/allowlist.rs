//! The card-layer allow-list: which commands the client may send at all.
//!
//! The client only ever needs the JPKI application and, in it, the token info, the
//! signing password, the signing certificate, the signing CA certificate and the signing
//! key. Everything else — in particular the 券面事項入力補助AP and the 券面AP, which hold
//! or derive from the individual number — is refused here, before it reaches the card.

use crate::apdu::Command;

/// The JPKI application (公的個人認証AP).
pub const JPKI_AID: [u8; 10] = [0xD3, 0x92, 0xF0, 0x00, 0x26, 0x01, 0x00, 0x00, 0x00, 0x01];
/// 券面事項入力補助AP — holds the individual number. Never selected.
pub const CARD_INFO_INPUT_AID: [u8; 10] =
    [0xD3, 0x92, 0x10, 0x00, 0x31, 0x00, 0x01, 0x01, 0x04, 0x08];
/// 券面AP — holds the card surface incl. the individual number image. Never selected.
pub const CARD_SURFACE_AID: [u8; 10] = [0xD3, 0x92, 0x10, 0x00, 0x31, 0x00, 0x01, 0x01, 0x04, 0x02];

/// Files of the JPKI application the flow uses.
pub mod ef {
    pub const SIGNING_CERTIFICATE: u16 = 0x0001;
    pub const SIGNING_CA_CERTIFICATE: u16 = 0x0002;
    pub const TOKEN_INFO: u16 = 0x0006;
    pub const CERTIFICATE_PRESENCE: u16 = 0x0008;
    pub const SIGNING_KEY: u16 = 0x001A;
    pub const SIGNING_PASSWORD: u16 = 0x001B;
}

const READABLE: [u16; 4] = [
    ef::SIGNING_CERTIFICATE,
    ef::SIGNING_CA_CERTIFICATE,
    ef::TOKEN_INFO,
    ef::CERTIFICATE_PRESENCE,
];
const SELECTABLE: [u16; 6] = [
    ef::SIGNING_CERTIFICATE,
    ef::SIGNING_CA_CERTIFICATE,
    ef::TOKEN_INFO,
    ef::CERTIFICATE_PRESENCE,
    ef::SIGNING_KEY,
    ef::SIGNING_PASSWORD,
];

pub const INS_SELECT: u8 = 0xA4;
pub const INS_READ_BINARY: u8 = 0xB0;
pub const INS_VERIFY: u8 = 0x20;
pub const INS_SIGN: u8 = 0x2A;
pub const INS_GET_RESPONSE: u8 = 0xC0;

/// What the card has selected, as far as the client knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Selection {
    pub jpki_ap: bool,
    pub ef: Option<u16>,
}

/// The effect a permitted command has on the selection when the card answers 90 00.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    SelectsJpki,
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
            match selection.ef {
                Some(fid) if selection.jpki_ap && READABLE.contains(&fid) => Ok(Effect::None),
                _ => Err(format!(
                    "{header}: READ BINARY of a file not on the allow-list"
                )),
            }
        }
        (0x00, INS_VERIFY) => {
            if command.p1 == 0x00
                && command.p2 == 0x80
                && selection.jpki_ap
                && selection.ef == Some(ef::SIGNING_PASSWORD)
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
                && selection.jpki_ap
                && selection.ef == Some(ef::SIGNING_KEY)
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
            if command.data.as_slice() == JPKI_AID {
                Ok(Effect::SelectsJpki)
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
            if !selection.jpki_ap {
                Err(format!(
                    "SELECT of file {fid:04X} outside the JPKI application"
                ))
            } else if SELECTABLE.contains(&fid) {
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

    fn select_df(aid: &[u8]) -> Command {
        Command::new(0, INS_SELECT, 4, 0x0C).with_data(aid)
    }
    fn select_ef(fid: u16) -> Command {
        Command::new(0, INS_SELECT, 2, 0x0C).with_data(&fid.to_be_bytes())
    }
    const IN_JPKI: Selection = Selection {
        jpki_ap: true,
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
            Ok(Effect::SelectsJpki)
        );
        for fid in SELECTABLE {
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
            jpki_ap: true,
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
}
