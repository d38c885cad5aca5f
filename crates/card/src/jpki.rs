//! The JPKI application (公的個人認証AP) commands the first stage needs, with the fewest
//! APDUs the card allows: no SELECT of what is already selected, and one extended READ
//! BINARY for the certificate when the card and reader take it. Application, files and the
//! SIGN command come from the card profile (`profile.rs`) that matches the card.

use crate::algorithm::{KeyKind, SignatureAlgorithm};
use crate::allowlist::{INS_READ_BINARY, INS_SELECT, INS_SIGN, INS_VERIFY};
use crate::apdu::{Command, Response, StatusWord, SHORT_LE_MAX};
use crate::channel::{CardChannel, ChannelStats};
use crate::error::{CardError, NotJpkiReason, TokenKind};
use crate::password::SigningPassword;
use crate::profile::{self, CardProfile, ProfileFiles};
use crate::transport::{Transport, TransportError};

/// Certificates on the card are DER `30 82 LL LL …`; anything outside these bounds is
/// not a JPKI certificate and is not read further.
pub const CERTIFICATE_MIN_LEN: usize = 260;
pub const CERTIFICATE_MAX_LEN: usize = 8192;

const TOKEN_LABEL_LEN: usize = 32;

/// How a signature is made on this card: the profile says what the SIGN command carries,
/// the key (from the signing certificate) how long the answer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignScheme {
    pub profile: &'static CardProfile,
    pub key: KeyKind,
}

impl SignScheme {
    /// What the card computes.
    pub fn algorithm(&self) -> SignatureAlgorithm {
        self.profile.algorithm
    }

    /// Bytes of the card's answer.
    pub fn signature_len(&self) -> usize {
        self.key.signature_len()
    }
}

/// What the retry query says about the signing password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordStatus {
    /// Tries left before the password blocks (1–5).
    Tries(u8),
    Blocked,
    /// The card has no signing certificate (holders under 15), which some cards report like
    /// a blocked password.
    NoSigningCertificate,
    /// The card answered `90 00`, which says nothing about the counter.
    Unknown,
}

/// Whether to try extended-length READ BINARY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtendedLength {
    /// Try once; on `67 00`, `6D 00` or `6E 00` fall back to short reads for the session.
    Try,
    Never,
}

/// The JPKI application on one card. Every command goes through its [`CardChannel`] and the
/// allow-list there: nothing outside this crate gets the transport mutably, so nothing can
/// send an APDU around it.
///
/// ```compile_fail
/// fn around_the_allow_list<T: mynalink_card::Transport>(card: &mut mynalink_card::JpkiCard<T>) {
///     // The My Number card's 券面事項入力補助AP: never to be selected.
///     let _ = card.transport_mut().transmit(&[0x00, 0xA4, 0x04, 0x0C, 0x0A]);
/// }
/// ```
pub struct JpkiCard<T: Transport> {
    channel: CardChannel<T>,
    extended: ExtendedLength,
    /// The last retry-query answer and the APDU count right after it: still current only if
    /// nothing was sent since.
    last_status: Option<(PasswordStatus, usize)>,
    /// The application opened (the first profile's until the card is opened).
    application: &'static [u8],
    /// The profiles that matched the card's application and token label; empty until opened.
    profiles: Vec<&'static CardProfile>,
}

impl<T: Transport> JpkiCard<T> {
    pub fn new(transport: T) -> Self {
        JpkiCard {
            channel: CardChannel::new(transport),
            extended: ExtendedLength::Try,
            last_status: None,
            application: profile::PROFILES[0].aid,
            profiles: Vec::new(),
        }
    }

    pub fn with_extended_length(mut self, extended: ExtendedLength) -> Self {
        self.extended = extended;
        self
    }

    pub fn extended_length(&self) -> ExtendedLength {
        self.extended
    }

    pub fn stats(&self) -> &ChannelStats {
        self.channel.stats()
    }

    pub fn transport(&self) -> &T {
        self.channel.transport()
    }

    pub fn into_transport(self) -> T {
        self.channel.into_transport()
    }

    /// Powers the card down so the verified state does not outlive the session.
    pub fn end_session(&mut self) -> Result<(), TransportError> {
        self.last_status = None;
        self.channel.transport_mut().end_session()
    }

    /// Selects the application of a card profile and checks the token label: the card
    /// must match at least one profile (a physical card; a smartphone's or a Juki card's
    /// token is refused here, before any password).
    pub fn open_application(&mut self) -> Result<(), CardError> {
        self.profiles.clear();
        let mut opened = None;
        for aid in profile::application_ids() {
            match self.select_application(aid) {
                Ok(()) => {
                    opened = Some(aid);
                    break;
                }
                Err(CardError::NotJpkiCard(NotJpkiReason::ApplicationNotFound)) => continue,
                Err(e) => return Err(e),
            }
        }
        let aid = opened.ok_or(CardError::NotJpkiCard(NotJpkiReason::ApplicationNotFound))?;
        self.application = aid;
        let raw = self.read_token_label()?;
        let label = profile::trim_label(&raw);
        self.profiles = profile::profiles_of(aid)
            .filter(|p| p.token_labels.iter().any(|l| l.as_bytes() == label))
            .collect();
        if self.profiles.is_empty() {
            let kind = match TokenKind::from_label(&raw) {
                // A label of another application's profile: not this application's token.
                TokenKind::MyNumberCard => {
                    TokenKind::Unknown(String::from_utf8_lossy(label).into_owned())
                }
                other => other,
            };
            return Err(CardError::NotJpkiCard(NotJpkiReason::Token(kind)));
        }
        Ok(())
    }

    /// The profiles the opened card matched (empty before [`open_application`](Self::open_application)).
    pub fn profiles(&self) -> &[&'static CardProfile] {
        &self.profiles
    }

    /// How this card signs with the key of its signing certificate: the profile among those
    /// matched that uses a key of this kind.
    pub fn sign_scheme(&self, key: KeyKind) -> Result<SignScheme, CardError> {
        profile::for_key(&self.profiles, key)
            .map(|profile| SignScheme { profile, key })
            .ok_or(CardError::KeyNotInProfile { key: key.name() })
    }

    /// The files of the matched profiles (they agree; see `profile.rs`), or the first
    /// profile's before the card is opened.
    fn files(&self) -> ProfileFiles {
        self.profiles
            .first()
            .copied()
            .or_else(|| profile::profiles_of(self.application).next())
            .unwrap_or(&profile::PROFILES[0])
            .files
    }

    fn select_application(&mut self, aid: &'static [u8]) -> Result<(), CardError> {
        let select = Command::new(0x00, INS_SELECT, 0x04, 0x0C).with_data(aid);
        let r = self.channel.send(&select)?;
        match r.sw.0 {
            0x9000 => Ok(()),
            0x6A82 | 0x6A86 | 0x6A87 | 0x6999 => {
                Err(CardError::NotJpkiCard(NotJpkiReason::ApplicationNotFound))
            }
            _ => Err(sw_error("SELECT (JPKI application)", r.sw)),
        }
    }

    fn read_token_label(&mut self) -> Result<Vec<u8>, CardError> {
        self.select_ef(self.files().token_info, "SELECT (token info)")?;
        let r = self.read_binary(0, TOKEN_LABEL_LEN)?;
        if !(r.sw.is_ok() || r.sw == StatusWord(0x6282)) {
            return Err(sw_error("READ BINARY (token info)", r.sw));
        }
        let mut data = r.data;
        data.truncate(TOKEN_LABEL_LEN);
        Ok(data)
    }

    /// Asks the card how many signing-password tries are left (`00 20 00 80`, exactly four
    /// bytes: this never consumes a try).
    pub fn password_status(&mut self) -> Result<PasswordStatus, CardError> {
        self.last_status = None;
        match self.select_ef(self.files().signing_password, "SELECT (signing password)") {
            Err(CardError::FileNotFound { .. }) => return Ok(PasswordStatus::NoSigningCertificate),
            other => other?,
        }
        let r = self
            .channel
            .send(&Command::new(0x00, INS_VERIFY, 0x00, 0x80))?;
        let status = match r.sw.0 {
            0x63C0 | 0x6983 | 0x6984 => self.blocked_or_absent()?,
            sw if sw & 0xFFF0 == 0x63C0 => PasswordStatus::Tries((sw & 0x0F) as u8),
            0x9000 => PasswordStatus::Unknown,
            _ => return Err(sw_error("VERIFY (retry query)", r.sw)),
        };
        self.last_status = Some((status, self.channel.stats().apdus));
        Ok(status)
    }

    /// A card without a signing certificate may answer the retry query like a blocked one;
    /// the certificate-presence file tells them apart. Only read on this path, so the
    /// success path pays nothing for it.
    fn blocked_or_absent(&mut self) -> Result<PasswordStatus, CardError> {
        match self.select_ef(
            self.files().certificate_presence,
            "SELECT (certificate presence)",
        ) {
            Ok(()) => {}
            Err(CardError::FileNotFound { .. }) => return Ok(PasswordStatus::Blocked),
            Err(e) => return Err(e),
        }
        let r = self.read_binary(0, 3)?;
        Ok(match r.data.first() {
            Some(&flag) if r.sw.is_ok() && flag != 0x8F => PasswordStatus::NoSigningCertificate,
            _ => PasswordStatus::Blocked,
        })
    }

    /// Sends the signing password exactly once.
    ///
    /// The retry counter is read first (or taken from a query answered just before, with
    /// nothing sent since): at 0 nothing is sent, at 1 only with `confirm_last_try`. If the
    /// connection fails during VERIFY the counter is read again; VERIFY is never repeated.
    pub fn verify_signing_password(
        &mut self,
        password: &SigningPassword,
        confirm_last_try: bool,
    ) -> Result<(), CardError> {
        let status = match self.last_status.take() {
            Some((status, at)) if at == self.channel.stats().apdus => status,
            _ => self.password_status()?,
        };
        self.last_status = None;
        match status {
            PasswordStatus::Blocked => return Err(CardError::PasswordBlocked),
            PasswordStatus::NoSigningCertificate => return Err(CardError::NoSigningCertificate),
            PasswordStatus::Tries(0) => return Err(CardError::PasswordBlocked),
            PasswordStatus::Tries(1) | PasswordStatus::Unknown if !confirm_last_try => {
                return Err(CardError::LastTryRequiresConfirmation)
            }
            _ => {}
        }
        self.select_ef(self.files().signing_password, "SELECT (signing password)")?;
        let verify = Command::new(0x00, INS_VERIFY, 0x00, 0x80).with_data(password.as_bytes());
        let r = match self.channel.send(&verify) {
            Ok(r) => r,
            Err(CardError::Transport(source)) => {
                let tries_left = match self.password_status() {
                    Ok(PasswordStatus::Tries(n)) => Some(n),
                    Ok(PasswordStatus::Blocked) => Some(0),
                    _ => None,
                };
                self.last_status = None;
                return Err(CardError::VerifyInterrupted { source, tries_left });
            }
            Err(e) => return Err(e),
        };
        match r.sw.0 {
            0x9000 => Ok(()),
            0x63C0 | 0x6983 | 0x6984 => Err(CardError::PasswordBlocked),
            sw if sw & 0xFFF0 == 0x63C0 => Err(CardError::WrongPassword {
                tries_left: (sw & 0x0F) as u8,
            }),
            _ => Err(sw_error("VERIFY (signing password)", r.sw)),
        }
    }

    /// Reads the signing certificate (EF 0001 today; needs the verified signing password).
    pub fn read_signing_certificate(&mut self) -> Result<Vec<u8>, CardError> {
        let fid = self.files().signing_certificate;
        match self.select_ef(fid, "SELECT (signing certificate)") {
            Err(CardError::FileNotFound { .. }) => return Err(CardError::NoSigningCertificate),
            other => other?,
        }
        self.read_certificate_file(fid)
    }

    /// Reads the CA certificate of the signing certificate's generation (EF 0002 today, free).
    pub fn read_signing_ca_certificate(&mut self) -> Result<Vec<u8>, CardError> {
        let fid = self.files().signing_ca_certificate;
        self.select_ef(fid, "SELECT (signing CA certificate)")?;
        self.read_certificate_file(fid)
    }

    /// Has the card sign `message` with the signing key: the profile's hash of it, sent as
    /// the profile's SIGN input (a DigestInfo the card pads for RSA PKCS#1 v1.5; the bare
    /// hash for ECDSA, provisional), and an answer of exactly the key's signature length.
    pub fn sign(&mut self, scheme: &SignScheme, message: &[u8]) -> Result<Vec<u8>, CardError> {
        let digest = scheme.algorithm().hash().digest(message);
        let data = scheme.profile.sign_data(&digest);
        match self.select_ef(scheme.profile.files.signing_key, "SELECT (signing key)") {
            Err(CardError::FileNotFound { .. }) => return Err(CardError::NoSigningCertificate),
            other => other?,
        }
        let expected = scheme.signature_len();
        // Longer than a short Le can ask for (RSA above 2048 bits): extended Le when the card
        // takes it, otherwise Le 00 and the card's 61xx chaining.
        let extended = expected > SHORT_LE_MAX && self.extended == ExtendedLength::Try;
        let le = if extended { expected } else { SHORT_LE_MAX };
        let sign = Command::new(0x80, INS_SIGN, 0x00, 0x80)
            .with_data(&data)
            .with_le(le);
        let mut r = self.channel.send(&sign)?;
        if extended && matches!(r.sw.0, 0x6700 | 0x6D00 | 0x6E00) {
            // Refused before signing: ask again the short way.
            self.extended = ExtendedLength::Never;
            r = self.channel.send(&sign.with_le(SHORT_LE_MAX))?;
        }
        match r.sw.0 {
            0x9000 if r.data.len() == expected => Ok(r.data),
            0x9000 => Err(CardError::BadResponse {
                command: "COMPUTE DIGITAL SIGNATURE",
                detail: format!(
                    "signature of {} bytes, expected {expected} for a {} key",
                    r.data.len(),
                    scheme.key
                ),
            }),
            0x6982 => Err(CardError::SecurityStatusNotSatisfied {
                command: "COMPUTE DIGITAL SIGNATURE",
            }),
            _ => Err(sw_error("COMPUTE DIGITAL SIGNATURE", r.sw)),
        }
    }

    fn select_ef(&mut self, fid: u16, what: &'static str) -> Result<(), CardError> {
        let selection = self.channel.selection();
        let in_application = selection.application == Some(self.application);
        if in_application && selection.ef == Some(fid) {
            return Ok(());
        }
        if !in_application {
            // Lost after a failed exchange (or never opened): select the application again.
            self.select_application(self.application)?;
        }
        let select = Command::new(0x00, INS_SELECT, 0x02, 0x0C).with_data(&fid.to_be_bytes());
        let r = self.channel.send(&select)?;
        match r.sw.0 {
            0x9000 => Ok(()),
            0x6A82 => Err(CardError::FileNotFound { fid }),
            _ => Err(sw_error(what, r.sw)),
        }
    }

    fn read_binary(&mut self, offset: usize, le: usize) -> Result<Response, CardError> {
        let [p1, p2] = (offset as u16).to_be_bytes();
        let read = Command::new(0x00, INS_READ_BINARY, p1 & 0x7F, p2).with_le(le);
        self.channel.send(&read)
    }

    /// Reads a DER certificate: 256 bytes first (the DER header tells the total), then the
    /// rest in one extended read or in 256-byte chunks, until exactly the total.
    fn read_certificate_file(&mut self, fid: u16) -> Result<Vec<u8>, CardError> {
        let bad = |detail: String| CardError::CertificateFile { fid, detail };
        let first = self.read_binary(0, 256)?;
        check_read(&first, fid)?;
        let total = der_certificate_length(&first.data).map_err(bad)?;
        let mut data = first.data;
        if data.len() < total.min(256) {
            return Err(bad(format!(
                "file ends after {} of {total} bytes",
                data.len()
            )));
        }
        data.truncate(total);
        while data.len() < total {
            let remaining = total - data.len();
            if remaining > 256 && self.extended == ExtendedLength::Try {
                let r = self.read_binary(data.len(), remaining)?;
                if matches!(r.sw.0, 0x6700 | 0x6D00 | 0x6E00) {
                    self.extended = ExtendedLength::Never;
                    continue;
                }
                check_read(&r, fid)?;
                append_chunk(&mut data, r.data, remaining, total).map_err(bad)?;
                continue;
            }
            let le = remaining.min(256);
            let r = self.read_binary(data.len(), le)?;
            check_read(&r, fid)?;
            append_chunk(&mut data, r.data, le, total).map_err(bad)?;
        }
        Ok(data)
    }
}

fn append_chunk(
    data: &mut Vec<u8>,
    mut chunk: Vec<u8>,
    asked: usize,
    total: usize,
) -> Result<(), String> {
    if chunk.len() < asked {
        return Err(format!(
            "file ends after {} of {total} bytes",
            data.len() + chunk.len()
        ));
    }
    chunk.truncate(asked);
    data.extend_from_slice(&chunk);
    Ok(())
}

fn check_read(r: &Response, fid: u16) -> Result<(), CardError> {
    match r.sw.0 {
        0x9000 | 0x6282 => Ok(()),
        0x6982 => Err(CardError::SecurityStatusNotSatisfied {
            command: "READ BINARY",
        }),
        0x6B00 => Err(CardError::CertificateFile {
            fid,
            detail: "read past the end of the file".into(),
        }),
        _ => Err(sw_error("READ BINARY", r.sw)),
    }
}

/// Total length of a DER certificate from its first bytes: `30 82 hi lo` → 4 + hi·256 + lo.
pub fn der_certificate_length(head: &[u8]) -> Result<usize, String> {
    match head {
        [0x30, 0x82, hi, lo, ..] => {
            let total = 4 + usize::from(u16::from_be_bytes([*hi, *lo]));
            if (CERTIFICATE_MIN_LEN..=CERTIFICATE_MAX_LEN).contains(&total) {
                Ok(total)
            } else {
                Err(format!(
                    "DER length {total} outside {CERTIFICATE_MIN_LEN}..={CERTIFICATE_MAX_LEN} bytes"
                ))
            }
        }
        [0x30, len, ..] if *len >= 0x83 => Err("DER length field longer than two bytes".into()),
        [0x30, ..] => Err("DER length below the size of a certificate".into()),
        [] => Err("empty file".into()),
        [tag, ..] => Err(format!("not a DER SEQUENCE (tag {tag:02X})")),
    }
}

fn sw_error(command: &'static str, sw: StatusWord) -> CardError {
    match sw.0 {
        0x6982 => CardError::SecurityStatusNotSatisfied { command },
        _ => CardError::Status { command, sw },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::tests::Script;

    fn ok() -> Result<Vec<u8>, TransportError> {
        Ok(vec![0x90, 0x00])
    }
    fn sw(sw: u16) -> Result<Vec<u8>, TransportError> {
        Ok(sw.to_be_bytes().to_vec())
    }
    fn data(d: &[u8]) -> Result<Vec<u8>, TransportError> {
        Ok([d, &[0x90, 0x00]].concat())
    }
    fn label_of(l: &str) -> Result<Vec<u8>, TransportError> {
        label(l)
    }
    fn label(l: &str) -> Result<Vec<u8>, TransportError> {
        let mut v = l.as_bytes().to_vec();
        v.resize(32, b' ');
        data(&v)
    }
    fn opened(rest: Vec<Result<Vec<u8>, TransportError>>) -> JpkiCard<Script> {
        let mut answers = vec![ok(), ok(), label("JPKIAPICCTOKEN2")];
        answers.extend(rest);
        let mut card = JpkiCard::new(Script::new(answers));
        card.open_application().expect("open");
        card
    }
    fn password() -> SigningPassword {
        SigningPassword::parse("TEST1234").expect("valid")
    }

    #[test]
    fn open_checks_the_token() {
        let mut card = JpkiCard::new(Script::new(vec![sw(0x6A82)]));
        assert_eq!(
            card.open_application(),
            Err(CardError::NotJpkiCard(NotJpkiReason::ApplicationNotFound))
        );
        let mut card = JpkiCard::new(Script::new(vec![ok(), ok(), label("JPKIAPGPSETOKEN")]));
        assert_eq!(
            card.open_application(),
            Err(CardError::NotJpkiCard(NotJpkiReason::Token(
                TokenKind::AndroidPhone
            )))
        );
        let card = opened(vec![]);
        let sent = &card.transport().sent;
        assert_eq!(
            sent[0],
            [
                0x00, 0xA4, 0x04, 0x0C, 0x0A, 0xD3, 0x92, 0xF0, 0x00, 0x26, 0x01, 0x00, 0x00, 0x00,
                0x01
            ]
        );
        assert_eq!(sent[1], [0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x06]);
        assert_eq!(sent[2], [0x00, 0xB0, 0x00, 0x00, 0x20]);
    }

    #[test]
    fn retry_query_is_four_bytes_and_verify_reuses_a_fresh_answer() {
        let mut card = opened(vec![ok(), sw(0x63C5), ok()]);
        assert_eq!(card.password_status(), Ok(PasswordStatus::Tries(5)));
        card.verify_signing_password(&password(), false)
            .expect("verified");
        let sent = &card.transport().sent;
        assert_eq!(sent[3], [0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x1B]);
        assert_eq!(sent[4], [0x00, 0x20, 0x00, 0x80]);
        assert_eq!(&sent[5][..5], &[0x00, 0x20, 0x00, 0x80, 0x08]);
        assert_eq!(sent.len(), 6);
    }

    #[test]
    fn verify_queries_first_when_no_fresh_answer() {
        let mut card = opened(vec![ok(), sw(0x63C3), sw(0x63C2)]);
        assert_eq!(
            card.verify_signing_password(&password(), false),
            Err(CardError::WrongPassword { tries_left: 2 })
        );
        assert_eq!(card.transport().sent.len(), 6);
    }

    #[test]
    fn no_verify_at_zero_and_only_confirmed_at_one() {
        let mut card = opened(vec![ok(), sw(0x63C0), ok(), data(&[0x8F, 0x8F, 0x00])]);
        assert_eq!(
            card.verify_signing_password(&password(), true),
            Err(CardError::PasswordBlocked)
        );
        assert!(card
            .transport()
            .sent
            .iter()
            .all(|c| c.len() <= 7 || c[1] != 0x20));

        let mut card = opened(vec![ok(), sw(0x63C1)]);
        assert_eq!(
            card.verify_signing_password(&password(), false),
            Err(CardError::LastTryRequiresConfirmation)
        );
        assert_eq!(card.transport().sent.len(), 5);

        let mut card = opened(vec![ok(), sw(0x63C1), sw(0x63C0)]);
        assert_eq!(
            card.verify_signing_password(&password(), true),
            Err(CardError::PasswordBlocked)
        );
    }

    #[test]
    fn blocked_versus_no_certificate() {
        let mut card = opened(vec![ok(), sw(0x6984), ok(), data(&[0x00, 0x8F, 0x00])]);
        assert_eq!(
            card.password_status(),
            Ok(PasswordStatus::NoSigningCertificate)
        );
        let mut card = opened(vec![ok(), sw(0x6984), ok(), data(&[0x8F, 0x8F, 0x00])]);
        assert_eq!(card.password_status(), Ok(PasswordStatus::Blocked));
        let mut card = opened(vec![sw(0x6A82)]);
        assert_eq!(
            card.password_status(),
            Ok(PasswordStatus::NoSigningCertificate)
        );
    }

    #[test]
    fn transport_error_during_verify_rereads_instead_of_resending() {
        let mut card = opened(vec![
            ok(),
            sw(0x63C4),
            Err(TransportError::Reader("link lost".into())),
            ok(),
            ok(),
            sw(0x63C3),
        ]);
        card.password_status().expect("status");
        assert_eq!(
            card.verify_signing_password(&password(), false),
            Err(CardError::VerifyInterrupted {
                source: TransportError::Reader("link lost".into()),
                tries_left: Some(3)
            })
        );
        let verifies = card
            .transport()
            .sent
            .iter()
            .filter(|c| c[1] == 0x20 && c.len() > 4)
            .count();
        assert_eq!(verifies, 1);
    }

    fn certificate(len: usize) -> Vec<u8> {
        let body = len - 4;
        let mut v = vec![0x30, 0x82, (body >> 8) as u8, body as u8];
        v.extend((0..body).map(|i| i as u8));
        v
    }

    #[test]
    fn certificate_read_with_extended_length() {
        let cert = certificate(1837);
        let mut card = opened(vec![ok(), data(&cert[..256]), data(&cert[256..])]);
        assert_eq!(card.read_signing_certificate(), Ok(cert.clone()));
        let sent = &card.transport().sent;
        assert_eq!(sent[4], [0x00, 0xB0, 0x00, 0x00, 0x00]);
        assert_eq!(sent[5], [0x00, 0xB0, 0x01, 0x00, 0x00, 0x06, 0x2D]);
    }

    #[test]
    fn certificate_read_falls_back_to_short_reads() {
        let cert = certificate(1837);
        let mut answers = vec![ok(), data(&cert[..256]), sw(0x6700)];
        for chunk in cert[256..].chunks(256) {
            answers.push(data(chunk));
        }
        let mut card = opened(answers);
        assert_eq!(card.read_signing_certificate(), Ok(cert));
        assert_eq!(card.extended_length(), ExtendedLength::Never);
        // 3 to open, select, first read, refused extended read, 7 short reads.
        assert_eq!(card.stats().apdus, 3 + 1 + 1 + 1 + 7);
        let last = card.transport().sent.last().cloned().unwrap_or_default();
        assert_eq!(last, [0x00, 0xB0, 0x07, 0x00, 0x2D]);
    }

    #[test]
    fn truncated_and_oversized_certificates_are_errors() {
        let cert = certificate(1000);
        let mut card = opened(vec![
            ok(),
            data(&cert[..256]),
            Ok([&cert[256..900], &[0x62, 0x82][..]].concat()),
        ]);
        assert!(matches!(
            card.read_signing_certificate(),
            Err(CardError::CertificateFile { fid: 1, .. })
        ));
        let mut huge = certificate(300);
        huge[2] = 0x7F;
        let mut card = opened(vec![ok(), data(&huge)]);
        assert!(matches!(
            card.read_signing_certificate(),
            Err(CardError::CertificateFile { fid: 1, .. })
        ));
        let mut card = opened(vec![ok(), sw(0x6982)]);
        assert!(matches!(
            card.read_signing_certificate(),
            Err(CardError::SecurityStatusNotSatisfied { .. })
        ));
        let mut card = opened(vec![sw(0x6A82)]);
        assert_eq!(
            card.read_signing_certificate(),
            Err(CardError::NoSigningCertificate)
        );
    }

    #[test]
    fn der_length_bounds() {
        assert_eq!(der_certificate_length(&[0x30, 0x82, 0x07, 0x29]), Ok(1837));
        assert!(der_certificate_length(&[0x30, 0x82, 0x00, 0x10]).is_err());
        assert!(der_certificate_length(&[0x30, 0x82, 0x20, 0x00]).is_err());
        assert!(der_certificate_length(&[0x30, 0x84, 0, 0, 1, 0]).is_err());
        assert!(der_certificate_length(&[0x31, 0x82, 1, 0]).is_err());
        assert!(der_certificate_length(&[0x30]).is_err());
        assert!(der_certificate_length(&[]).is_err());
    }

    #[test]
    fn sign_sends_digest_info_and_checks_the_length() {
        use crate::algorithm::HashAlgorithm;
        let rsa2048 = KeyKind::Rsa { bits: 2048 };
        let mut card = opened(vec![ok(), data(&[0xAB; 256])]);
        let scheme = card.sign_scheme(rsa2048).expect("scheme");
        assert_eq!(scheme.profile.id, "my-number-card");
        let sig = card.sign(&scheme, b"statement").expect("signed");
        assert_eq!(sig.len(), 256);
        let sent = &card.transport().sent;
        assert_eq!(sent[3], [0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x1A]);
        assert_eq!(&sent[4][..5], &[0x80, 0x2A, 0x00, 0x80, 0x33]);
        assert_eq!(&sent[4][5..24], HashAlgorithm::Sha256.digest_info_prefix());
        assert_eq!(&sent[4][24..56], HashAlgorithm::Sha256.digest(b"statement"));
        assert_eq!(sent[4].len(), 5 + 51 + 1);
        assert_eq!(sent[4][56], 0x00);

        let mut card = opened(vec![ok(), data(&[0; 255])]);
        let scheme = card.sign_scheme(rsa2048).expect("scheme");
        assert!(matches!(
            card.sign(&scheme, b"m"),
            Err(CardError::BadResponse { .. })
        ));
        let mut card = opened(vec![ok(), sw(0x6982)]);
        let scheme = card.sign_scheme(rsa2048).expect("scheme");
        assert!(matches!(
            card.sign(&scheme, b"m"),
            Err(CardError::SecurityStatusNotSatisfied { .. })
        ));
    }

    #[test]
    fn the_signature_length_and_input_come_from_the_key() {
        use crate::algorithm::HashAlgorithm;
        // RSA-3072: 384 bytes, asked for with an extended Le.
        let mut card = opened(vec![ok(), data(&[0x5A; 384])]);
        let scheme = card
            .sign_scheme(KeyKind::Rsa { bits: 3072 })
            .expect("scheme");
        assert_eq!(card.sign(&scheme, b"m").expect("signed").len(), 384);
        let sent = card.transport().sent.last().cloned().unwrap_or_default();
        assert_eq!(&sent[..4], &[0x80, 0x2A, 0x00, 0x80]);
        assert_eq!(&sent[4..7], &[0x00, 0x00, 0x33], "extended Lc");
        assert_eq!(&sent[sent.len() - 2..], &[0x01, 0x80], "extended Le 384");
        // A 256-byte answer is wrong for that key.
        let mut card = opened(vec![ok(), data(&[0x5A; 256])]);
        let scheme = card
            .sign_scheme(KeyKind::Rsa { bits: 3072 })
            .expect("scheme");
        assert!(matches!(
            card.sign(&scheme, b"m"),
            Err(CardError::BadResponse { .. })
        ));
        // Without extended length: Le 00 and 61xx chaining.
        let mut card = opened(vec![
            ok(),
            sw(0x6700),
            Ok([&[0x5A; 256][..], &[0x61, 0x80]].concat()),
            data(&[0x5A; 128]),
        ]);
        let scheme = card
            .sign_scheme(KeyKind::Rsa { bits: 3072 })
            .expect("scheme");
        assert_eq!(card.sign(&scheme, b"m").expect("signed").len(), 384);
        assert_eq!(card.extended_length(), ExtendedLength::Never);

        // EC P-384 (provisional profile): the bare SHA-384 hash in, 96 bytes out.
        let mut card = opened(vec![ok(), data(&[0x33; 96])]);
        let scheme = card.sign_scheme(KeyKind::EcP384).expect("scheme");
        assert!(scheme.profile.provisional);
        assert_eq!(card.sign(&scheme, b"m").expect("signed").len(), 96);
        let sent = card.transport().sent.last().cloned().unwrap_or_default();
        assert_eq!(&sent[..5], &[0x80, 0x2A, 0x00, 0x80, 48]);
        assert_eq!(&sent[5..53], HashAlgorithm::Sha384.digest(b"m"));
        assert_eq!(sent.len(), 5 + 48 + 1);
        let mut card = opened(vec![ok(), data(&[0x33; 256])]);
        let scheme = card.sign_scheme(KeyKind::EcP384).expect("scheme");
        assert!(matches!(
            card.sign(&scheme, b"m"),
            Err(CardError::BadResponse { .. })
        ));

        // A key no matching profile uses.
        let card = opened(vec![]);
        assert_eq!(
            card.sign_scheme(KeyKind::EcP256),
            Err(CardError::KeyNotInProfile {
                key: "ec-p256".into()
            })
        );
        assert!(card.sign_scheme(KeyKind::Rsa { bits: 1024 }).is_err());
    }

    #[test]
    fn smartphones_are_refused_before_any_password() {
        for (label, kind) in [
            ("JPKIAPGPSETOKEN", TokenKind::AndroidPhone),
            ("JPKIAPIOSTOKEN", TokenKind::IPhone),
        ] {
            let mut card = JpkiCard::new(Script::new(vec![ok(), ok(), label_of(label)]));
            let e = card.open_application().expect_err("refused");
            assert_eq!(
                e,
                CardError::NotJpkiCard(NotJpkiReason::Token(kind.clone()))
            );
            assert!(kind.is_smartphone());
            assert!(card.profiles().is_empty());
            assert_eq!(card.transport().sent.len(), 3, "nothing after the label");
        }
    }
}
