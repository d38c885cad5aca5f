//! The card profiles: which application, files, token labels and signing key make a JPKI
//! signing token that the first stage accepts. Everything the card layer knows about a card
//! generation is in this one table, so supporting a new generation is a new row.
//!
//! Two rows today:
//! - the My Number card as issued since 2016 (RSA-2048, PKCS#1 v1.5 over a DigestInfo the
//!   card pads itself);
//! - the planned next-generation card, **provisional**: J-LIS has announced ECDSA P-384 with
//!   SHA-384 and two merged applications, but has not published identifiers, file layout or
//!   the SIGN command's format. The row assumes today's application and files and a bare hash
//!   as SIGN input; replace it when the specification is out.
//!
//! Profiles that share an application and a token label are told apart by the key in the
//! signing certificate, which is read before anything is signed.

use crate::algorithm::{HashAlgorithm, KeyKind, SignatureAlgorithm};
use crate::error::TokenKind;

/// The JPKI application (公的個人認証AP) of today's card.
pub const JPKI_AID: [u8; 10] = [0xD3, 0x92, 0xF0, 0x00, 0x26, 0x01, 0x00, 0x00, 0x00, 0x01];

/// Token label (EF 0006) of a physical My Number card.
pub const TOKEN_LABEL_MY_NUMBER_CARD: &str = "JPKIAPICCTOKEN2";
/// Token label of the old Basic Resident Register (住基) card.
pub const TOKEN_LABEL_JUKI_CARD: &str = "JPKIAPICCTOKEN";
/// Token label of the smartphone signing certificate on Android (GP SE).
pub const TOKEN_LABEL_ANDROID: &str = "JPKIAPGPSETOKEN";
/// Token label of the smartphone signing certificate on iPhone.
pub const TOKEN_LABEL_IPHONE: &str = "JPKIAPIOSTOKEN";

/// Labels of JPKI tokens that are not an accepted card, and what they are. A smartphone
/// holds a smartphone signing certificate, which the first stage does not take.
pub const OTHER_TOKENS: [(&str, TokenKind); 3] = [
    (TOKEN_LABEL_JUKI_CARD, TokenKind::JukiCard),
    (TOKEN_LABEL_ANDROID, TokenKind::AndroidPhone),
    (TOKEN_LABEL_IPHONE, TokenKind::IPhone),
];

/// The elementary files of a profile's signing side. Nothing else on the card is ever
/// selected (see the allow-list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileFiles {
    /// Token information; its first 32 bytes are the token label.
    pub token_info: u16,
    /// Which certificates are present (tells "no signing certificate" from "blocked").
    pub certificate_presence: u16,
    pub signing_password: u16,
    /// The holder's signing certificate (readable after the password).
    pub signing_certificate: u16,
    /// The CA certificate of the signing certificate's generation.
    pub signing_ca_certificate: u16,
    pub signing_key: u16,
}

impl ProfileFiles {
    /// Files that may be read (keys and passwords never are).
    pub fn readable(&self) -> [u16; 4] {
        [
            self.token_info,
            self.certificate_presence,
            self.signing_certificate,
            self.signing_ca_certificate,
        ]
    }

    /// Files that may be selected.
    pub fn selectable(&self) -> [u16; 6] {
        [
            self.token_info,
            self.certificate_presence,
            self.signing_password,
            self.signing_certificate,
            self.signing_ca_certificate,
            self.signing_key,
        ]
    }
}

/// Which signing keys a profile's certificates carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpec {
    /// RSA with a modulus between the bounds (inclusive).
    Rsa { min_bits: usize, max_bits: usize },
    /// One elliptic-curve key kind.
    Ec(KeyKind),
}

impl KeySpec {
    pub fn admits(self, key: KeyKind) -> bool {
        match (self, key) {
            (KeySpec::Rsa { min_bits, max_bits }, KeyKind::Rsa { bits }) => {
                (min_bits..=max_bits).contains(&bits)
            }
            (KeySpec::Ec(kind), key) => kind == key,
            _ => false,
        }
    }
}

/// What the SIGN command carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInput {
    /// A DER DigestInfo; the card pads it (PKCS#1 v1.5 type 1) and signs.
    DigestInfo,
    /// The bare hash; the card computes ECDSA over it and answers `r ‖ s`. PROVISIONAL: the
    /// next-generation card's SIGN format is not published; this is what PKCS#11's CKM_ECDSA
    /// and most EC smart cards take.
    BareHash,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardProfile {
    /// Stable identifier (headless JSON `card_profile`).
    pub id: &'static str,
    pub name_ja: &'static str,
    pub name_en: &'static str,
    /// Built on assumptions, not on a published specification.
    pub provisional: bool,
    /// The application's DF name.
    pub aid: &'static [u8],
    pub token_labels: &'static [&'static str],
    pub files: ProfileFiles,
    pub key: KeySpec,
    /// What the card computes when asked to sign.
    pub algorithm: SignatureAlgorithm,
    pub sign_input: SignInput,
}

const JPKI_FILES: ProfileFiles = ProfileFiles {
    token_info: 0x0006,
    certificate_presence: 0x0008,
    signing_password: 0x001B,
    signing_certificate: 0x0001,
    signing_ca_certificate: 0x0002,
    signing_key: 0x001A,
};

/// Today's My Number card. J-LIS issues RSA-2048 keys; moduli up to 4096 bits (what the
/// verifiers accept) are admitted so that a larger key at a renewal needs no change here.
pub const MY_NUMBER_CARD: CardProfile = CardProfile {
    id: "my-number-card",
    name_ja: "マイナンバーカード",
    name_en: "My Number card",
    provisional: false,
    aid: &JPKI_AID,
    token_labels: &[TOKEN_LABEL_MY_NUMBER_CARD],
    files: JPKI_FILES,
    key: KeySpec::Rsa {
        min_bits: 2048,
        max_bits: 4096,
    },
    algorithm: SignatureAlgorithm::RsaPkcs1(HashAlgorithm::Sha256),
    sign_input: SignInput::DigestInfo,
};

/// The planned next-generation card: ECDSA P-384 with SHA-384. PROVISIONAL: application,
/// files and token label are today's until J-LIS publishes the new ones, and the SIGN input
/// is assumed to be the bare hash.
pub const NEXT_GENERATION_PROVISIONAL: CardProfile = CardProfile {
    id: "next-generation-provisional",
    name_ja: "次期マイナンバーカード（暫定プロファイル）",
    name_en: "next-generation My Number card (PROVISIONAL profile)",
    provisional: true,
    aid: &JPKI_AID,
    token_labels: &[TOKEN_LABEL_MY_NUMBER_CARD],
    files: JPKI_FILES,
    key: KeySpec::Ec(KeyKind::EcP384),
    algorithm: SignatureAlgorithm::Ecdsa(HashAlgorithm::Sha384),
    sign_input: SignInput::BareHash,
};

/// Every profile, in the order their applications are tried.
pub const PROFILES: [CardProfile; 2] = [MY_NUMBER_CARD, NEXT_GENERATION_PROVISIONAL];

impl CardProfile {
    pub fn admits(&self, key: KeyKind) -> bool {
        self.key.admits(key)
    }

    /// The SIGN command's data for a hash of `self.algorithm`'s hash function.
    pub fn sign_data(&self, digest: &[u8]) -> Vec<u8> {
        match self.sign_input {
            SignInput::DigestInfo => self.algorithm.hash().digest_info(digest),
            SignInput::BareHash => digest.to_vec(),
        }
    }

    pub fn has_label(&self, label: &str) -> bool {
        self.token_labels.contains(&label)
    }
}

/// A token label as read (32 bytes of EF 0006) without its trailing spaces and NULs.
pub fn trim_label(raw: &[u8]) -> &[u8] {
    let end = raw
        .iter()
        .rposition(|&b| b != b' ' && b != 0)
        .map_or(0, |i| i + 1);
    &raw[..end]
}

/// The distinct application identifiers of [`PROFILES`], in table order.
pub fn application_ids() -> Vec<&'static [u8]> {
    let mut ids: Vec<&'static [u8]> = Vec::new();
    for profile in &PROFILES {
        if !ids.contains(&profile.aid) {
            ids.push(profile.aid);
        }
    }
    ids
}

/// The profiles of an application.
pub fn profiles_of(aid: &[u8]) -> impl Iterator<Item = &'static CardProfile> + '_ {
    PROFILES.iter().filter(move |p| p.aid == aid)
}

/// The table entry for an application identifier, as a `'static` slice.
pub fn application_id(aid: &[u8]) -> Option<&'static [u8]> {
    PROFILES.iter().map(|p| p.aid).find(|&known| known == aid)
}

/// The profile for a signing key among `candidates` (the profiles that matched the card's
/// application and token label).
pub fn for_key(candidates: &[&'static CardProfile], key: KeyKind) -> Option<&'static CardProfile> {
    candidates.iter().copied().find(|p| p.admits(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_sharing_an_application_and_a_label_differ_only_in_the_key() {
        // The files are used before the certificate tells the key; so they must agree.
        for a in &PROFILES {
            for b in &PROFILES {
                let shared_label = a.token_labels.iter().any(|l| b.has_label(l));
                if a.aid == b.aid {
                    assert_eq!(a.files.token_info, b.files.token_info, "{} {}", a.id, b.id);
                }
                if a.aid == b.aid && shared_label {
                    assert_eq!(a.files, b.files, "{} {}", a.id, b.id);
                }
                if a.id != b.id && a.aid == b.aid && shared_label {
                    for bits in [2048, 3072, 4096] {
                        let key = KeyKind::Rsa { bits };
                        assert!(!(a.admits(key) && b.admits(key)), "{} {}", a.id, b.id);
                    }
                    for key in [KeyKind::EcP256, KeyKind::EcP384] {
                        assert!(!(a.admits(key) && b.admits(key)), "{} {}", a.id, b.id);
                    }
                }
            }
        }
    }

    #[test]
    fn the_keys_decide_between_todays_card_and_the_next_generation() {
        let both: Vec<&CardProfile> = PROFILES.iter().collect();
        let rsa = for_key(&both, KeyKind::Rsa { bits: 2048 }).expect("rsa");
        assert_eq!(rsa.id, "my-number-card");
        assert!(!rsa.provisional);
        assert_eq!(
            for_key(&both, KeyKind::Rsa { bits: 3072 }).map(|p| p.id),
            Some("my-number-card")
        );
        assert_eq!(for_key(&both, KeyKind::Rsa { bits: 1024 }), None);
        assert_eq!(for_key(&both, KeyKind::Rsa { bits: 8192 }), None);
        let ec = for_key(&both, KeyKind::EcP384).expect("ec");
        assert!(ec.provisional);
        assert!(ec.name_en.contains("PROVISIONAL"));
        assert_eq!(for_key(&both, KeyKind::EcP256), None);
        // Every profile's algorithm fits the keys it admits.
        for profile in &PROFILES {
            let sample = match profile.key {
                KeySpec::Rsa { min_bits, .. } => KeyKind::Rsa { bits: min_bits },
                KeySpec::Ec(kind) => kind,
            };
            assert!(profile.algorithm.fits(sample), "{}", profile.id);
        }
    }

    #[test]
    fn sign_data_is_a_digest_info_for_rsa_and_the_bare_hash_for_ecdsa() {
        let h256 = HashAlgorithm::Sha256.digest(b"m");
        let data = MY_NUMBER_CARD.sign_data(&h256);
        assert_eq!(data.len(), 51);
        assert_eq!(&data[..19], HashAlgorithm::Sha256.digest_info_prefix());
        let h384 = HashAlgorithm::Sha384.digest(b"m");
        assert_eq!(NEXT_GENERATION_PROVISIONAL.sign_data(&h384), h384);
    }

    #[test]
    fn one_application_today() {
        assert_eq!(application_ids(), vec![&JPKI_AID[..]]);
        assert_eq!(application_id(&JPKI_AID), Some(&JPKI_AID[..]));
        assert_eq!(application_id(&JPKI_AID[..9]), None);
        assert_eq!(profiles_of(&JPKI_AID).count(), 2);
    }
}
