//! Whether a PC/SC reader takes the card by contact (inserted) or contactless (placed on it):
//! what the window tells the holder, and what `mynalink doctor` reports. Known from the reader's
//! name for the models license centers use, and otherwise, once a card is in it, from the ATR:
//! contactless readers synthesise one (PC/SC part 3: `3B 8n 80 01 …`; some readers their own
//! `3B F5 91 00 FF 91 81 71 FE 40 …`). The card itself is never identified by its ATR.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReaderKind {
    Contact,
    Contactless,
    Unknown,
}

impl ReaderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReaderKind::Contact => "contact",
            ReaderKind::Contactless => "contactless",
            ReaderKind::Unknown => "unknown",
        }
    }

    /// The kind a reader name says, `Unknown` when it says nothing.
    pub fn from_name(name: &str) -> ReaderKind {
        let upper = name.to_ascii_uppercase();
        // A dual reader lists its interfaces as separate readers: the contactless one is
        // named PICC, the contact slot (or a SAM slot) otherwise.
        if upper.contains("PICC") || upper.contains(" CL ") || upper.ends_with(" CL") {
            return ReaderKind::Contactless;
        }
        if upper.contains(" SAM") {
            return ReaderKind::Contact;
        }
        NAMED
            .iter()
            .find(|(part, _)| upper.contains(part))
            .map_or(ReaderKind::Unknown, |(_, kind)| *kind)
    }

    /// The kind a card's ATR shows: contactless when a contactless reader synthesised it.
    pub fn from_atr(atr: &[u8]) -> Option<ReaderKind> {
        let synthesised_by_part_3 = atr.len() >= 4
            && atr[0] == 0x3B
            && atr[1] & 0xF0 == 0x80
            && atr[2] == 0x80
            && atr[3] == 0x01;
        let synthesised_by_reader =
            atr.starts_with(&[0x3B, 0xF5, 0x91, 0x00, 0xFF, 0x91, 0x81, 0x71]);
        (synthesised_by_part_3 || synthesised_by_reader).then_some(ReaderKind::Contactless)
    }

    /// The name's kind, else what the ATR of the card in it shows.
    pub fn of(name: &str, atr: Option<&[u8]>) -> ReaderKind {
        match ReaderKind::from_name(name) {
            ReaderKind::Unknown => atr
                .and_then(ReaderKind::from_atr)
                .unwrap_or(ReaderKind::Unknown),
            known => known,
        }
    }
}

/// Reader models by a distinctive part of their PC/SC name (upper case): the ones the README's
/// reader table lists.
const NAMED: [(&str, ReaderKind); 8] = [
    ("SCR3310", ReaderKind::Contact),
    ("SCR 3310", ReaderKind::Contact),
    ("ACR39", ReaderKind::Contact),
    ("RC-S300", ReaderKind::Contactless),
    ("FELICA", ReaderKind::Contactless),
    ("PASORI", ReaderKind::Contactless),
    ("ACR1252", ReaderKind::Contactless),
    ("CIR315", ReaderKind::Contactless),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_reader_names() {
        for (name, kind) in [
            (
                "SCM Microsystems Inc. SCR 3310 [CCID Interface] 00 00",
                ReaderKind::Contact,
            ),
            (
                "NTT Communications Corp. SCR3310-NTTCom USB SmartCard Reader 00 00",
                ReaderKind::Contact,
            ),
            (
                "SCM Microsystems Inc. SCR3310 v2.0 USB SC Reader 00 00",
                ReaderKind::Contact,
            ),
            (
                "Identiv SCR3310 v2.0 USB SC Reader [CCID Interface] 00 00",
                ReaderKind::Contact,
            ),
            ("ACS ACR39U ICC Reader 00 00", ReaderKind::Contact),
            ("SONY FeliCa RC-S300/P 00 00", ReaderKind::Contactless),
            (
                "Sony FeliCa Port/PaSoRi 4.0 [FeliCa Port/PaSoRi 4.0] 00 00",
                ReaderKind::Contactless,
            ),
            (
                "ACS ACR1252 Dual Reader [ACR1252 Dual Reader PICC] 00 00",
                ReaderKind::Contactless,
            ),
            (
                "ACS ACR1252 Dual Reader [ACR1252 Dual Reader SAM] 00 01",
                ReaderKind::Contact,
            ),
            (
                "Circle CIR315 [CIR315 PICC] (8C0A2F3E) 00 00",
                ReaderKind::Contactless,
            ),
            ("Virtual PCD 00 00", ReaderKind::Unknown),
        ] {
            assert_eq!(ReaderKind::from_name(name), kind, "{name}");
        }
    }

    #[test]
    fn contactless_atrs_are_recognised_and_contact_ones_are_not() {
        let contactless: [&[u8]; 3] = [
            &[
                0x3B, 0x88, 0x80, 0x01, 0x00, 0x00, 0x05, 0xE0, 0xB3, 0x81, 0xA1, 0x00, 0x7F,
            ],
            &[
                0x3B, 0x88, 0x80, 0x01, 0x00, 0x4B, 0x51, 0xFF, 0xB3, 0x81, 0xD1, 0x00, 0x0F,
            ],
            &[
                0x3B, 0xF5, 0x91, 0x00, 0xFF, 0x91, 0x81, 0x71, 0xFE, 0x40, 0x00, 0x42, 0x00,
            ],
        ];
        for atr in contactless {
            assert_eq!(ReaderKind::from_atr(atr), Some(ReaderKind::Contactless));
        }
        let contact: [&[u8]; 2] = [
            &[
                0x3B, 0xC5, 0xFF, 0x81, 0x31, 0xFB, 0x45, 0x80, 0x73, 0xC6, 0x01, 0x00, 0x00,
            ],
            &[
                0x3B, 0xDA, 0x13, 0xFF, 0x81, 0x31, 0xFB, 0x46, 0x80, 0x12, 0x39, 0x2F,
            ],
        ];
        for atr in contact {
            assert_eq!(ReaderKind::from_atr(atr), None);
        }
        assert_eq!(ReaderKind::from_atr(&[]), None);
        assert_eq!(
            ReaderKind::of("Virtual PCD 00 00", Some(contactless[0])),
            ReaderKind::Contactless
        );
        assert_eq!(
            ReaderKind::of("ACS ACR39U ICC Reader 00 00", Some(contactless[0])),
            ReaderKind::Contact
        );
    }
}
