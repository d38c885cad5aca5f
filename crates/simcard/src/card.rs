//! The simulated My Number card: an APDU state machine for the JPKI AP.
//!
//! It answers every byte string with a status word and never panics on input. Behaviour
//! follows the real card as documented for the JPKI AP: SELECT by DF name and by FID,
//! READ BINARY with 15-bit offsets or SFI, the VERIFY retry query and counters, the
//! signing certificate hidden until the signing password is verified, and COMPUTE DIGITAL
//! SIGNATURE that pads the supplied DigestInfo with PKCS#1 v1.5 itself (RSA keys) or, with
//! the PROVISIONAL next-generation P-384 key, computes ECDSA over the supplied bare hash
//! and answers `r ‖ s` (the real card's format is not published).

use std::sync::Arc;
use std::time::Duration;

use mynalink_card::KeyKind;
use rsa::Pkcs1v15Sign;
use zeroize::Zeroizing;

use crate::identity::{test_identity_with, SimKey, TestIdentity, Validity};
use crate::pki::TestKey;

/// How the simulated card is set up.
#[derive(Clone)]
pub struct SimOptions {
    /// The registered signing password (compared byte for byte, no case folding).
    pub signing_password: String,
    /// Signing-password tries left, 0..=5; 0 means blocked.
    pub signing_tries: u8,
    /// The registered authentication PIN.
    pub auth_pin: String,
    /// Authentication-PIN tries left, 0..=3.
    pub auth_tries: u8,
    /// `false` models a card issued to someone under 15: no signing certificate or key.
    pub signing_certificate: bool,
    /// Validity of the end-entity certificates on the card.
    pub validity: Validity,
    /// The signing key (and with it the signing certificate and its root).
    pub key: SimKey,
    /// Delay per transmitted APDU (applied by the transport).
    pub apdu_latency: Duration,
    /// Extra delay for COMPUTE DIGITAL SIGNATURE (applied by the transport).
    pub sign_latency: Duration,
    /// Deliver response data the T=0 way: `61 xx` + GET RESPONSE, `6C xx` for a wrong Le.
    pub t0_style: bool,
    /// Accept extended-length APDUs; without it they get `67 00`.
    pub extended_length: bool,
    /// The token label in EF 0006.
    pub token_label: String,
    /// `false` models a card without the JPKI AP (SELECT of its AID answers `6A 82`).
    pub jpki_ap: bool,
    /// Used by the transport: the first `n` APDUs are answered, then the card counts as
    /// removed; APDU `n + 1` and later get `CardRemoved` without reaching the card.
    /// Fires once: after `SimHandle::insert` the card works again.
    pub remove_after_apdus: Option<usize>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            signing_password: "TEST1234".to_string(),
            signing_tries: SIGN_MAX_TRIES,
            auth_pin: "1234".to_string(),
            auth_tries: AUTH_MAX_TRIES,
            signing_certificate: true,
            validity: Validity::Current,
            key: SimKey::Rsa2048,
            apdu_latency: Duration::ZERO,
            sign_latency: Duration::ZERO,
            t0_style: false,
            extended_length: true,
            token_label: "JPKIAPICCTOKEN2".to_string(),
            jpki_ap: true,
            remove_after_apdus: None,
        }
    }
}

impl std::fmt::Debug for SimOptions {
    // The password and PIN never appear in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimOptions")
            .field("signing_password", &"<hidden>")
            .field("signing_tries", &self.signing_tries)
            .field("auth_pin", &"<hidden>")
            .field("auth_tries", &self.auth_tries)
            .field("signing_certificate", &self.signing_certificate)
            .field("validity", &self.validity)
            .field("key", &self.key)
            .field("apdu_latency", &self.apdu_latency)
            .field("sign_latency", &self.sign_latency)
            .field("t0_style", &self.t0_style)
            .field("extended_length", &self.extended_length)
            .field("token_label", &self.token_label)
            .field("jpki_ap", &self.jpki_ap)
            .field("remove_after_apdus", &self.remove_after_apdus)
            .finish()
    }
}

/// The JPKI AP's DF name.
pub const JPKI_AID: [u8; 10] = [0xD3, 0x92, 0xF0, 0x00, 0x26, 0x01, 0x00, 0x00, 0x00, 0x01];
/// 券面事項入力補助AP: holds the My Number; a client must never select it.
pub const TEXT_AP_AID: [u8; 10] = [0xD3, 0x92, 0x10, 0x00, 0x31, 0x00, 0x01, 0x01, 0x04, 0x08];
/// 券面AP (card surface): holds the My Number image; a client must never select it.
pub const SURFACE_AP_AID: [u8; 10] = [0xD3, 0x92, 0x10, 0x00, 0x31, 0x00, 0x01, 0x01, 0x04, 0x02];
/// The ATR OpenSC's `jpki` driver has in its table.
pub const ATR: [u8; 9] = [0x3B, 0xE0, 0x00, 0xFF, 0x81, 0x31, 0xFE, 0x45, 0x14];

const SIGN_MAX_TRIES: u8 = 5;
const AUTH_MAX_TRIES: u8 = 3;

const TOKEN_INFO_LEN: usize = 160;

mod sw {
    pub const OK: u16 = 0x9000;
    pub const END_OF_FILE: u16 = 0x6282;
    pub const WRONG_LENGTH: u16 = 0x6700;
    pub const CHANNEL_NOT_SUPPORTED: u16 = 0x6881;
    pub const SM_NOT_SUPPORTED: u16 = 0x6882;
    pub const INCOMPATIBLE_FILE: u16 = 0x6981;
    pub const SECURITY_NOT_SATISFIED: u16 = 0x6982;
    pub const BLOCKED: u16 = 0x6984;
    pub const CONDITIONS_NOT_SATISFIED: u16 = 0x6985;
    pub const NO_CURRENT_EF: u16 = 0x6986;
    pub const SM_DATA_MISSING: u16 = 0x69FC;
    pub const FILE_NOT_FOUND: u16 = 0x6A82;
    pub const WRONG_P1P2: u16 = 0x6A86;
    pub const REFERENCE_NOT_FOUND: u16 = 0x6A88;
    pub const WRONG_OFFSET: u16 = 0x6B00;
    pub const INS_NOT_SUPPORTED: u16 = 0x6D00;
    pub const CLA_NOT_SUPPORTED: u16 = 0x6E00;
    pub const NO_DIAGNOSIS: u16 = 0x6F00;

    pub fn tries_left(n: u8) -> u16 {
        0x63C0 | u16::from(n & 0x0F)
    }
    pub fn bytes_available(n: usize) -> u16 {
        0x6100 | (n.min(256) & 0xFF) as u16
    }
    pub fn exact_length(n: usize) -> u16 {
        0x6C00 | (n.min(256) & 0xFF) as u16
    }
}

const INS_SELECT: u8 = 0xA4;
const INS_READ_BINARY: u8 = 0xB0;
const INS_VERIFY: u8 = 0x20;
const INS_GET_RESPONSE: u8 = 0xC0;
const INS_SIGN: u8 = 0x2A;
const INS_CHANGE_REFERENCE_DATA: u8 = 0x24;
const INS_RESET_RETRY_COUNTER: u8 = 0x2C;

/// Which application is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Df {
    Jpki,
    /// One of the APs that hold the My Number; selectable, but its files are not modelled.
    Forbidden,
}

/// The JPKI AP's elementary files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ef {
    SignCert,
    SignCa,
    TokenInfo,
    Presence,
    AuthCert,
    AuthCa,
    AuthKey,
    AuthPin,
    SignKey,
    SignPin,
}

impl Ef {
    fn from_fid(fid: u16) -> Option<Ef> {
        Some(match fid {
            0x0001 => Ef::SignCert,
            0x0002 => Ef::SignCa,
            0x0006 => Ef::TokenInfo,
            0x0008 => Ef::Presence,
            0x000A => Ef::AuthCert,
            0x000B => Ef::AuthCa,
            0x0017 => Ef::AuthKey,
            0x0018 => Ef::AuthPin,
            0x001A => Ef::SignKey,
            0x001B => Ef::SignPin,
            _ => return None,
        })
    }

    /// All JPKI FIDs are below 0x20, so the SFI equals the FID.
    fn from_sfi(sfi: u8) -> Option<Ef> {
        Ef::from_fid(u16::from(sfi))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PinRef {
    Sign,
    Auth,
}

struct PinState {
    value: Zeroizing<Vec<u8>>,
    tries: u8,
    max: u8,
    verified: bool,
}

impl PinState {
    fn new(value: &str, tries: u8, max: u8) -> Self {
        PinState {
            value: Zeroizing::new(value.as_bytes().to_vec()),
            tries: tries.min(max),
            max,
            verified: false,
        }
    }
}

/// Response data waiting for GET RESPONSE (T=0 style), with the status word that follows
/// the last piece.
struct Pending {
    data: Vec<u8>,
    position: usize,
    final_sw: u16,
}

/// A response before T=0 packaging.
struct Response {
    data: Vec<u8>,
    sw: u16,
}

impl Response {
    fn status(sw: u16) -> Self {
        Response {
            data: Vec::new(),
            sw,
        }
    }
    fn data(data: Vec<u8>, sw: u16) -> Self {
        Response { data, sw }
    }
}

/// A command APDU split into its parts (ISO 7816-4 §5.1 cases 1–4, short and extended).
struct Command<'a> {
    ins: u8,
    p1: u8,
    p2: u8,
    data: &'a [u8],
    /// Ne, the maximum response length; `None` when the command has no Le field.
    ne: Option<usize>,
    extended: bool,
}

fn parse_command(apdu: &[u8]) -> Option<Command<'_>> {
    let (&[_cla, ins, p1, p2], body) = apdu.split_first_chunk::<4>()?;
    let command = |data, ne, extended| Command {
        ins,
        p1,
        p2,
        data,
        ne,
        extended,
    };
    let short_ne = |b: u8| if b == 0 { 256 } else { usize::from(b) };
    let extended_ne = |hi: u8, lo: u8| match u16::from_be_bytes([hi, lo]) {
        0 => 65536,
        n => usize::from(n),
    };
    match body {
        [] => Some(command(&[], None, false)),
        [le] => Some(command(&[], Some(short_ne(*le)), false)),
        [0, hi, lo] => Some(command(&[], Some(extended_ne(*hi, *lo)), true)),
        [0, hi, lo, rest @ ..] => {
            let lc = usize::from(u16::from_be_bytes([*hi, *lo]));
            if lc == 0 {
                return None;
            }
            match rest.len().checked_sub(lc)? {
                0 => Some(command(rest, None, true)),
                2 => {
                    let (data, le) = rest.split_at(lc);
                    Some(command(data, Some(extended_ne(le[0], le[1])), true))
                }
                _ => None,
            }
        }
        // A short Lc of 0 does not exist: `00` there starts an extended length.
        [0, _] => None,
        [lc, rest @ ..] => {
            let lc = usize::from(*lc);
            match rest.len().checked_sub(lc)? {
                0 => Some(command(rest, None, false)),
                1 => {
                    let (data, le) = rest.split_at(lc);
                    Some(command(data, Some(short_ne(le[0])), false))
                }
                _ => None,
            }
        }
    }
}

/// The copy of a command kept in the log: data of commands that carry a PIN (VERIFY,
/// CHANGE REFERENCE DATA, RESET RETRY COUNTER) replaced by zero bytes.
fn masked_copy(apdu: &[u8]) -> Vec<u8> {
    let mut copy = apdu.to_vec();
    let carries_pin = matches!(
        apdu.get(1),
        Some(&(INS_VERIFY | INS_CHANGE_REFERENCE_DATA | INS_RESET_RETRY_COUNTER))
    );
    if !carries_pin {
        return copy;
    }
    match parse_command(apdu) {
        Some(command) if !command.data.is_empty() => {
            // The data field sits right before the Le field (if any).
            let le_len = match (command.ne, command.extended) {
                (None, _) => 0,
                (Some(_), false) => 1,
                (Some(_), true) => 2,
            };
            let end = copy.len().saturating_sub(le_len);
            let start = end.saturating_sub(command.data.len());
            copy[start..end].fill(0);
        }
        Some(_) => {}
        // Malformed: keep only the header intact.
        None => copy.iter_mut().skip(4).for_each(|b| *b = 0),
    }
    copy
}

fn build_token_info(label: &str) -> Vec<u8> {
    // A CK_TOKEN_INFO serialised with 32-bit big-endian CK_ULONGs (160 bytes).
    fn padded(text: &str, len: usize) -> Vec<u8> {
        let mut field: Vec<u8> = text.bytes().take(len).collect();
        field.resize(len, b' ');
        field
    }
    const UNAVAILABLE: u32 = 0xFFFF_FFFF;
    // CKF_RNG | CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED | CKF_TOKEN_INITIALIZED
    const FLAGS: u32 = 0x0000_0001 | 0x0000_0004 | 0x0000_0008 | 0x0000_0400;
    let mut info = Vec::with_capacity(TOKEN_INFO_LEN);
    info.extend(padded(label, 32));
    info.extend(padded("JPKI-TEST SIMULATED", 32));
    info.extend(padded("MYNALINK SIM", 16));
    info.extend(padded("SIM0000000000001", 16));
    for value in [
        FLAGS,
        UNAVAILABLE, // ulMaxSessionCount
        UNAVAILABLE, // ulSessionCount
        UNAVAILABLE, // ulMaxRwSessionCount
        UNAVAILABLE, // ulRwSessionCount
        16,          // ulMaxPinLen
        4,           // ulMinPinLen
        UNAVAILABLE, // ulTotalPublicMemory
        UNAVAILABLE, // ulFreePublicMemory
        UNAVAILABLE, // ulTotalPrivateMemory
        UNAVAILABLE, // ulFreePrivateMemory
    ] {
        info.extend(value.to_be_bytes());
    }
    info.extend([1, 0, 1, 0]); // hardwareVersion, firmwareVersion
    info.extend(padded("", 16)); // utcTime: the token has no clock
    info
}

/// A software JPKI card. See the module documentation.
pub struct SimulatedCard {
    options: SimOptions,
    identity: Arc<TestIdentity>,
    token_info: Vec<u8>,
    sign_pin: PinState,
    auth_pin: PinState,
    df: Option<Df>,
    ef: Option<Ef>,
    pending: Option<Pending>,
    commands: Vec<Vec<u8>>,
    verify_attempts: usize,
    forbidden_selected: bool,
}

impl SimulatedCard {
    pub fn new(options: SimOptions) -> Self {
        let identity = test_identity_with(options.key, options.validity);
        let token_info = build_token_info(&options.token_label);
        let sign_pin = PinState::new(
            &options.signing_password,
            options.signing_tries,
            SIGN_MAX_TRIES,
        );
        let auth_pin = PinState::new(&options.auth_pin, options.auth_tries, AUTH_MAX_TRIES);
        SimulatedCard {
            options,
            identity,
            token_info,
            sign_pin,
            auth_pin,
            df: None,
            ef: None,
            pending: None,
            commands: Vec::new(),
            verify_attempts: 0,
            forbidden_selected: false,
        }
    }

    /// The answer to reset.
    pub fn atr(&self) -> &'static [u8] {
        &ATR
    }

    /// The options the card was made with (tries as configured, not as they are now).
    pub fn options(&self) -> &SimOptions {
        &self.options
    }

    /// Ends the power session: verified states, the selected DF/EF and any pending
    /// response data are gone. Retry counters persist, as on the real card.
    pub fn power_down(&mut self) {
        self.sign_pin.verified = false;
        self.auth_pin.verified = false;
        self.df = None;
        self.ef = None;
        self.pending = None;
    }

    pub fn identity(&self) -> &Arc<TestIdentity> {
        &self.identity
    }

    /// Signing-password tries left.
    pub fn signing_tries(&self) -> u8 {
        self.sign_pin.tries
    }

    /// Authentication-PIN tries left.
    pub fn auth_tries(&self) -> u8 {
        self.auth_pin.tries
    }

    /// Whether the signing password has been verified in this power session.
    pub fn signing_verified(&self) -> bool {
        self.sign_pin.verified
    }

    /// VERIFY commands carrying data (i.e. real attempts, not retry queries), any key.
    pub fn verify_attempts(&self) -> usize {
        self.verify_attempts
    }

    /// Every command received, in order, with PIN data replaced by zero bytes.
    pub fn commands(&self) -> &[Vec<u8>] {
        &self.commands
    }

    /// Whether either AP that holds the My Number was ever selected.
    pub fn forbidden_selected(&self) -> bool {
        self.forbidden_selected
    }

    /// Processes one command APDU and returns the full response (data + SW1 SW2).
    pub fn process(&mut self, apdu: &[u8]) -> Vec<u8> {
        self.commands.push(masked_copy(apdu));
        if apdu.get(1) == Some(&INS_VERIFY) {
            if let Some(command) = parse_command(apdu) {
                if !command.data.is_empty() {
                    self.verify_attempts += 1;
                }
            }
        }
        let is_get_response = apdu.len() >= 4 && apdu[1] == INS_GET_RESPONSE;
        if !is_get_response {
            // Any other command discards data still waiting for GET RESPONSE.
            self.pending = None;
        }
        let response = self.dispatch(apdu);
        if self.options.t0_style && !is_get_response && !response.data.is_empty() {
            let available = response.data.len();
            self.pending = Some(Pending {
                data: response.data,
                position: 0,
                final_sw: response.sw,
            });
            return sw::bytes_available(available).to_be_bytes().to_vec();
        }
        let mut out = response.data;
        out.extend_from_slice(&response.sw.to_be_bytes());
        out
    }

    fn dispatch(&mut self, apdu: &[u8]) -> Response {
        let Some(&[cla, ins, ..]) = apdu.first_chunk::<4>() else {
            return Response::status(sw::WRONG_LENGTH);
        };
        match cla {
            0x00 | 0x80 => {}
            0x01..=0x03 => return Response::status(sw::CHANNEL_NOT_SUPPORTED),
            0x04..=0x0F if cla & 0x03 != 0 => return Response::status(sw::CHANNEL_NOT_SUPPORTED),
            0x04..=0x0F => {
                // Secure messaging: the real card rejects it with these per-command codes.
                let sw = match ins {
                    INS_READ_BINARY | INS_VERIFY => sw::SM_DATA_MISSING,
                    _ => sw::SM_NOT_SUPPORTED,
                };
                return Response::status(sw);
            }
            _ => return Response::status(sw::CLA_NOT_SUPPORTED),
        }
        let expected_cla = match ins {
            INS_SELECT | INS_READ_BINARY | INS_VERIFY | INS_GET_RESPONSE => 0x00,
            INS_SIGN => 0x80,
            _ => return Response::status(sw::INS_NOT_SUPPORTED),
        };
        if cla != expected_cla {
            return Response::status(sw::CLA_NOT_SUPPORTED);
        }
        let Some(command) = parse_command(apdu) else {
            return Response::status(sw::WRONG_LENGTH);
        };
        if command.extended && !self.options.extended_length {
            return Response::status(sw::WRONG_LENGTH);
        }
        match command.ins {
            INS_SELECT => self.select(&command),
            INS_READ_BINARY => self.read_binary(&command),
            INS_VERIFY => self.verify(&command),
            INS_GET_RESPONSE => self.get_response(&command),
            _ => self.sign(&command),
        }
    }

    fn ef_exists(&self, ef: Ef) -> bool {
        self.options.signing_certificate || !matches!(ef, Ef::SignCert | Ef::SignKey)
    }

    /// The EF named by an SFI inside the JPKI AP, if it exists on this card.
    fn ef_by_sfi(&self, sfi: u8) -> Option<Ef> {
        if self.df != Some(Df::Jpki) {
            return None;
        }
        Ef::from_sfi(sfi).filter(|&ef| self.ef_exists(ef))
    }

    fn select(&mut self, command: &Command<'_>) -> Response {
        if !matches!(command.p2, 0x0C | 0x00) {
            return Response::status(sw::WRONG_P1P2);
        }
        match command.p1 {
            0x04 => {
                if command.data.is_empty() {
                    return Response::status(sw::WRONG_LENGTH);
                }
                let df = if command.data == JPKI_AID {
                    if !self.options.jpki_ap {
                        return Response::status(sw::FILE_NOT_FOUND);
                    }
                    Df::Jpki
                } else if command.data == TEXT_AP_AID || command.data == SURFACE_AP_AID {
                    self.forbidden_selected = true;
                    Df::Forbidden
                } else {
                    return Response::status(sw::FILE_NOT_FOUND);
                };
                self.df = Some(df);
                self.ef = None;
                Response::status(sw::OK)
            }
            0x02 => {
                let Ok(fid) = <[u8; 2]>::try_from(command.data) else {
                    return Response::status(sw::WRONG_LENGTH);
                };
                if self.df != Some(Df::Jpki) {
                    return Response::status(sw::FILE_NOT_FOUND);
                }
                match Ef::from_fid(u16::from_be_bytes(fid)).filter(|&ef| self.ef_exists(ef)) {
                    Some(ef) => {
                        self.ef = Some(ef);
                        Response::status(sw::OK)
                    }
                    None => Response::status(sw::FILE_NOT_FOUND),
                }
            }
            _ => Response::status(sw::WRONG_P1P2),
        }
    }

    fn ef_contents(&self, ef: Ef) -> Result<&[u8], u16> {
        match ef {
            Ef::SignCert if !self.sign_pin.verified => Err(sw::SECURITY_NOT_SATISFIED),
            Ef::SignCert => Ok(&self.identity.sign_cert_der),
            Ef::SignCa => Ok(&self.identity.sign_root_der),
            Ef::AuthCert => Ok(&self.identity.auth_cert_der),
            Ef::AuthCa => Ok(&self.identity.auth_root_der),
            Ef::TokenInfo => Ok(&self.token_info),
            Ef::Presence if self.options.signing_certificate => Ok(&[0x8F, 0x8F, 0x00]),
            Ef::Presence => Ok(&[0x00, 0x8F, 0x00]),
            // Keys and PINs are not transparent files.
            Ef::AuthKey | Ef::AuthPin | Ef::SignKey | Ef::SignPin => Err(sw::INCOMPATIBLE_FILE),
        }
    }

    fn read_binary(&mut self, command: &Command<'_>) -> Response {
        let Some(ne) = command.ne else {
            return Response::status(sw::WRONG_LENGTH);
        };
        if !command.data.is_empty() {
            return Response::status(sw::WRONG_LENGTH);
        }
        let (ef, offset) = if command.p1 & 0x80 != 0 {
            let sfi = command.p1 & 0x1F;
            if command.p1 & 0x60 != 0 || sfi == 0 {
                return Response::status(sw::WRONG_P1P2);
            }
            let Some(ef) = self.ef_by_sfi(sfi) else {
                return Response::status(sw::FILE_NOT_FOUND);
            };
            // Reading by SFI makes the file current, as ISO 7816-4 specifies.
            self.ef = Some(ef);
            (ef, usize::from(command.p2))
        } else {
            let Some(ef) = self.ef.filter(|_| self.df == Some(Df::Jpki)) else {
                return Response::status(sw::NO_CURRENT_EF);
            };
            (
                ef,
                usize::from(u16::from_be_bytes([command.p1, command.p2])),
            )
        };
        let contents = match self.ef_contents(ef) {
            Ok(contents) => contents,
            Err(status) => return Response::status(status),
        };
        let Some(rest) = contents.get(offset..).filter(|rest| !rest.is_empty()) else {
            return Response::status(sw::WRONG_OFFSET);
        };
        if rest.len() >= ne {
            return Response::data(rest[..ne].to_vec(), sw::OK);
        }
        // Fewer bytes left than asked for. A T=0 card asks for the exact length instead,
        // unless Le was 00 ("up to 256").
        if self.options.t0_style && !command.extended && ne != 256 {
            return Response::status(sw::exact_length(rest.len()));
        }
        Response::data(rest.to_vec(), sw::END_OF_FILE)
    }

    /// The PIN a VERIFY addresses: P2 = 80 means the current EF, 80|SFI names it.
    fn pin_for(&self, p2: u8) -> Result<PinRef, u16> {
        if p2 & 0x80 == 0 || p2 & 0x60 != 0 {
            return Err(sw::WRONG_P1P2);
        }
        let ef = match p2 & 0x1F {
            0 => self.ef.filter(|_| self.df == Some(Df::Jpki)),
            sfi => self.ef_by_sfi(sfi),
        };
        match ef {
            Some(Ef::SignPin) => Ok(PinRef::Sign),
            Some(Ef::AuthPin) => Ok(PinRef::Auth),
            _ => Err(sw::REFERENCE_NOT_FOUND),
        }
    }

    fn verify(&mut self, command: &Command<'_>) -> Response {
        // The retry query is exactly the 4-byte header; any Le makes it a wrong length.
        if command.ne.is_some() {
            return Response::status(sw::WRONG_LENGTH);
        }
        if command.p1 != 0x00 {
            return Response::status(sw::WRONG_P1P2);
        }
        let pin_ref = match self.pin_for(command.p2) {
            Ok(pin_ref) => pin_ref,
            Err(status) => return Response::status(status),
        };
        // A card without a signing certificate answers as if the password were blocked.
        let no_key = pin_ref == PinRef::Sign && !self.options.signing_certificate;
        let pin = match pin_ref {
            PinRef::Sign => &mut self.sign_pin,
            PinRef::Auth => &mut self.auth_pin,
        };
        if no_key || pin.tries == 0 {
            return Response::status(sw::BLOCKED);
        }
        if command.data.is_empty() {
            return Response::status(sw::tries_left(pin.tries));
        }
        if constant_time_eq(command.data, &pin.value) {
            pin.tries = pin.max;
            pin.verified = true;
            Response::status(sw::OK)
        } else {
            pin.tries -= 1;
            pin.verified = false;
            Response::status(sw::tries_left(pin.tries))
        }
    }

    fn get_response(&mut self, command: &Command<'_>) -> Response {
        if command.p1 != 0 || command.p2 != 0 {
            return Response::status(sw::WRONG_P1P2);
        }
        let Some(ne) = command.ne.filter(|_| command.data.is_empty()) else {
            return Response::status(sw::WRONG_LENGTH);
        };
        let Some(mut pending) = self.pending.take() else {
            return Response::status(sw::CONDITIONS_NOT_SATISFIED);
        };
        let rest = pending.data.get(pending.position..).unwrap_or_default();
        let take = rest.len().min(ne);
        let chunk = rest[..take].to_vec();
        let left = rest.len() - take;
        if left == 0 {
            return Response::data(chunk, pending.final_sw);
        }
        pending.position += take;
        self.pending = Some(pending);
        Response::data(chunk, sw::bytes_available(left))
    }

    fn sign(&mut self, command: &Command<'_>) -> Response {
        if command.p1 != 0x00 {
            return Response::status(sw::WRONG_P1P2);
        }
        if command.p2 & 0x80 == 0 || command.p2 & 0x60 != 0 {
            return Response::status(sw::WRONG_P1P2);
        }
        let key_ef = match command.p2 & 0x1F {
            0 => self.ef.filter(|_| self.df == Some(Df::Jpki)),
            sfi => self.ef_by_sfi(sfi),
        };
        let auth_key;
        let (key, verified) = match key_ef {
            Some(Ef::SignKey) => (&self.identity.sign_key, self.sign_pin.verified),
            Some(Ef::AuthKey) => {
                auth_key = TestKey::Rsa(self.identity.auth_key.clone());
                (&auth_key, self.auth_pin.verified)
            }
            _ => return Response::status(sw::REFERENCE_NOT_FOUND),
        };
        let signature_len = key.kind().signature_len();
        let input_fits = match key.kind() {
            // k − 11: the most PKCS#1 v1.5 type 1 padding can carry.
            KeyKind::Rsa { .. } => (1..=signature_len - 11).contains(&command.data.len()),
            // A bare SHA-256/384/512 hash (a DigestInfo is refused).
            KeyKind::EcP256 | KeyKind::EcP384 => matches!(command.data.len(), 32 | 48 | 64),
        };
        if !input_fits {
            return Response::status(sw::WRONG_LENGTH);
        }
        // A smaller Le than the signature: refused, except the short maximum (00), which a
        // longer signature follows with 61xx.
        let short_max = command.ne == Some(256) && !command.extended;
        if command.ne.is_some_and(|ne| ne < signature_len) && !short_max {
            return Response::status(sw::WRONG_LENGTH);
        }
        if !verified {
            return Response::status(sw::SECURITY_NOT_SATISFIED);
        }
        let signature = match key {
            TestKey::Rsa(rsa) => rsa.sign(Pkcs1v15Sign::new_unprefixed(), command.data).ok(),
            ec => ec.sign_ecdsa_prehash(command.data),
        };
        let Some(signature) = signature else {
            return Response::status(sw::NO_DIAGNOSIS);
        };
        match command.ne {
            Some(ne) if ne < signature.len() && !self.options.t0_style => {
                let first = signature[..ne].to_vec();
                let left = signature.len() - ne;
                self.pending = Some(Pending {
                    data: signature,
                    position: ne,
                    final_sw: sw::OK,
                });
                Response::data(first, sw::bytes_available(left))
            }
            _ => Response::data(signature, sw::OK),
        }
    }
}

impl std::fmt::Debug for SimulatedCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedCard")
            .field("options", &self.options)
            .field("signing_tries", &self.sign_pin.tries)
            .field("auth_tries", &self.auth_pin.tries)
            .field("df", &self.df)
            .field("ef", &self.ef)
            .field("commands", &self.commands.len())
            .finish_non_exhaustive()
    }
}

/// Byte comparison whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha20Rng;
    use rsa::traits::PublicKeyParts;
    use sha2::{Digest, Sha256};

    const SELECT_JPKI: &[u8] = &[
        0x00, 0xA4, 0x04, 0x0C, 0x0A, 0xD3, 0x92, 0xF0, 0x00, 0x26, 0x01, 0x00, 0x00, 0x00, 0x01,
    ];
    const QUERY: &[u8] = &[0x00, 0x20, 0x00, 0x80];
    const SHA256_PREFIX: [u8; 19] = [
        0x30, 0x31, 0x30, 0x0D, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];

    fn card() -> SimulatedCard {
        SimulatedCard::new(SimOptions::default())
    }

    fn card_with(f: impl FnOnce(&mut SimOptions)) -> SimulatedCard {
        let mut options = SimOptions::default();
        f(&mut options);
        SimulatedCard::new(options)
    }

    fn select_ef(fid: u16) -> Vec<u8> {
        let [hi, lo] = fid.to_be_bytes();
        vec![0x00, 0xA4, 0x02, 0x0C, 0x02, hi, lo]
    }

    fn read(offset: u16, le: u8) -> Vec<u8> {
        let [hi, lo] = offset.to_be_bytes();
        vec![0x00, 0xB0, hi, lo, le]
    }

    fn verify(secret: &[u8]) -> Vec<u8> {
        let mut apdu = vec![0x00, 0x20, 0x00, 0x80, secret.len() as u8];
        apdu.extend_from_slice(secret);
        apdu
    }

    fn sign_apdu(data: &[u8]) -> Vec<u8> {
        let mut apdu = vec![0x80, 0x2A, 0x00, 0x80, data.len() as u8];
        apdu.extend_from_slice(data);
        apdu.push(0x00);
        apdu
    }

    fn digest_info(message: &[u8]) -> Vec<u8> {
        let mut info = SHA256_PREFIX.to_vec();
        info.extend_from_slice(&Sha256::digest(message));
        info
    }

    fn sw(response: &[u8]) -> u16 {
        assert!(response.len() >= 2, "response without a status word");
        let n = response.len();
        u16::from_be_bytes([response[n - 2], response[n - 1]])
    }

    fn data(response: &[u8]) -> &[u8] {
        &response[..response.len() - 2]
    }

    /// Sends and returns only the status word.
    fn status(card: &mut SimulatedCard, apdu: &[u8]) -> u16 {
        sw(&card.process(apdu))
    }

    fn open_sign_pin(card: &mut SimulatedCard) {
        assert_eq!(status(card, SELECT_JPKI), 0x9000);
        assert_eq!(status(card, &select_ef(0x001B)), 0x9000);
    }

    fn unlock_signing(card: &mut SimulatedCard) {
        open_sign_pin(card);
        assert_eq!(status(card, &verify(b"TEST1234")), 0x9000);
    }

    /// Reads a whole EF in 256-byte chunks the way OpenSC does.
    fn read_all(card: &mut SimulatedCard, fid: u16) -> Vec<u8> {
        assert_eq!(status(card, &select_ef(fid)), 0x9000);
        let header = card.process(&read(0, 4));
        assert_eq!(sw(&header), 0x9000);
        let total = usize::from(u16::from_be_bytes([header[2], header[3]])) + 4;
        let mut out = Vec::new();
        while out.len() < total {
            let want = (total - out.len()).min(256);
            let response = card.process(&read(out.len() as u16, (want & 0xFF) as u8));
            assert_eq!(sw(&response), 0x9000);
            out.extend_from_slice(data(&response));
        }
        out
    }

    #[test]
    fn atr_matches_opensc_table() {
        assert_eq!(
            card().atr(),
            [0x3B, 0xE0, 0x00, 0xFF, 0x81, 0x31, 0xFE, 0x45, 0x14]
        );
    }

    #[test]
    fn nothing_selected_after_power_up() {
        let mut c = card();
        assert_eq!(status(&mut c, &select_ef(0x0006)), 0x6A82);
        assert_eq!(status(&mut c, &read(0, 4)), 0x6986);
        assert_eq!(status(&mut c, QUERY), 0x6A88);
        assert_eq!(status(&mut c, &sign_apdu(&[1; 51])), 0x6A88);
    }

    #[test]
    fn select_application() {
        let mut c = card();
        assert_eq!(c.process(SELECT_JPKI), [0x90, 0x00]);
        let mut p2_00 = SELECT_JPKI.to_vec();
        p2_00[3] = 0x00;
        assert_eq!(status(&mut c, &p2_00), 0x9000);
        let mut with_le = p2_00.clone();
        with_le.push(0x00);
        assert_eq!(status(&mut c, &with_le), 0x9000);
        let mut bad_p1 = SELECT_JPKI.to_vec();
        bad_p1[2] = 0x00;
        assert_eq!(status(&mut c, &bad_p1), 0x6A86);
        let mut bad_p2 = SELECT_JPKI.to_vec();
        bad_p2[3] = 0x04;
        assert_eq!(status(&mut c, &bad_p2), 0x6A86);
        let mut unknown = SELECT_JPKI.to_vec();
        unknown[14] = 0x02;
        assert_eq!(status(&mut c, &unknown), 0x6A82);
        // a failed SELECT leaves the JPKI AP current
        assert_eq!(status(&mut c, &select_ef(0x0006)), 0x9000);
        assert_eq!(status(&mut c, &select_ef(0x0003)), 0x6A82);
        assert_eq!(
            status(&mut c, &[0x00, 0xA4, 0x02, 0x0C, 0x01, 0x06]),
            0x6700
        );
        assert_eq!(status(&mut c, &[0x00, 0xA4, 0x04, 0x0C]), 0x6700);
        assert!(!c.forbidden_selected());
    }

    #[test]
    fn not_a_my_number_card() {
        let mut c = card_with(|o| o.jpki_ap = false);
        assert_eq!(status(&mut c, SELECT_JPKI), 0x6A82);
        assert_eq!(status(&mut c, &select_ef(0x0006)), 0x6A82);
    }

    #[test]
    fn forbidden_applications_are_recorded() {
        for aid in [TEXT_AP_AID, SURFACE_AP_AID] {
            let mut c = card();
            assert!(!c.forbidden_selected());
            let mut apdu = vec![0x00, 0xA4, 0x04, 0x0C, 0x0A];
            apdu.extend_from_slice(&aid);
            assert_eq!(status(&mut c, &apdu), 0x9000);
            assert!(c.forbidden_selected());
            // its files are not modelled, and the JPKI files are not there
            assert_eq!(status(&mut c, &select_ef(0x0001)), 0x6A82);
            assert_eq!(status(&mut c, &select_ef(0x0006)), 0x6A82);
            c.power_down();
            assert!(c.forbidden_selected(), "the flag outlives the session");
        }
    }

    #[test]
    fn token_info_and_presence() {
        let mut c = card();
        c.process(SELECT_JPKI);
        assert_eq!(status(&mut c, &select_ef(0x0006)), 0x9000);
        let label = c.process(&read(0, 0x20));
        assert_eq!(sw(&label), 0x9000);
        assert_eq!(data(&label), b"JPKIAPICCTOKEN2                 ");
        let whole = c.process(&read(0, 0x00));
        assert_eq!(sw(&whole), 0x6282);
        assert_eq!(data(&whole).len(), 160);
        assert_eq!(status(&mut c, &read(160, 1)), 0x6B00);
        assert_eq!(status(&mut c, &read(0x7FFF, 1)), 0x6B00);

        assert_eq!(status(&mut c, &select_ef(0x0008)), 0x9000);
        assert_eq!(c.process(&read(0, 3)), [0x8F, 0x8F, 0x00, 0x90, 0x00]);

        let mut other = card_with(|o| o.token_label = "JPKIAPGPSETOKEN".into());
        other.process(SELECT_JPKI);
        other.process(&select_ef(0x0006));
        assert_eq!(
            &data(&other.process(&read(0, 0x20)))[..15],
            b"JPKIAPGPSETOKEN"
        );
    }

    #[test]
    fn free_certificates() {
        let mut c = card();
        let id = Arc::clone(c.identity());
        c.process(SELECT_JPKI);
        assert_eq!(read_all(&mut c, 0x0002), id.sign_root_der);
        assert_eq!(read_all(&mut c, 0x000A), id.auth_cert_der);
        assert_eq!(read_all(&mut c, 0x000B), id.auth_root_der);
        assert_eq!(id.sign_root_der, crate::identity::sign_test_root_der());
    }

    #[test]
    fn signing_certificate_needs_the_password() {
        let mut c = card();
        let id = Arc::clone(c.identity());
        c.process(SELECT_JPKI);
        assert_eq!(status(&mut c, &select_ef(0x0001)), 0x9000);
        assert_eq!(status(&mut c, &read(0, 4)), 0x6982);
        assert_eq!(status(&mut c, &[0x00, 0xB0, 0x81, 0x00, 0x00]), 0x6982);
        unlock_signing(&mut c);
        assert_eq!(read_all(&mut c, 0x0001), id.sign_cert_der);

        // reading past the end
        let len = id.sign_cert_der.len();
        let tail = c.process(&read((len - 10) as u16, 0x00));
        assert_eq!(sw(&tail), 0x6282);
        assert_eq!(data(&tail), &id.sign_cert_der[len - 10..]);
        assert_eq!(status(&mut c, &read(len as u16, 0x01)), 0x6B00);
        // bad forms
        assert_eq!(status(&mut c, &[0x00, 0xB0, 0x00, 0x00]), 0x6700);
        assert_eq!(
            status(&mut c, &[0x00, 0xB0, 0x00, 0x00, 0x01, 0xAA]),
            0x6700
        );
        // key and PIN files are not readable
        c.process(&select_ef(0x001A));
        assert_eq!(status(&mut c, &read(0, 1)), 0x6981);
    }

    #[test]
    fn extended_read() {
        let mut c = card();
        let id = Arc::clone(c.identity());
        unlock_signing(&mut c);
        c.process(&select_ef(0x0001));
        let all = c.process(&[0x00, 0xB0, 0x00, 0x00, 0x00, 0x00, 0x00]);
        assert_eq!(sw(&all), 0x6282);
        assert_eq!(data(&all), id.sign_cert_der);
        let [hi, lo] = (id.sign_cert_der.len() as u16).to_be_bytes();
        let exact = c.process(&[0x00, 0xB0, 0x00, 0x00, 0x00, hi, lo]);
        assert_eq!(sw(&exact), 0x9000);
        assert_eq!(data(&exact), id.sign_cert_der);

        let mut short_only = card_with(|o| o.extended_length = false);
        unlock_signing(&mut short_only);
        short_only.process(&select_ef(0x0001));
        assert_eq!(
            status(&mut short_only, &[0x00, 0xB0, 0x00, 0x00, 0x00, 0x00, 0x00]),
            0x6700
        );
        assert_eq!(status(&mut short_only, &read(0, 0)), 0x9000);
        let mut ext_select = vec![0x00, 0xA4, 0x04, 0x0C, 0x00, 0x00, 0x0A];
        ext_select.extend_from_slice(&JPKI_AID);
        assert_eq!(status(&mut short_only, &ext_select), 0x6700);
        assert_eq!(status(&mut c, &ext_select), 0x9000);
    }

    #[test]
    fn read_by_sfi() {
        let mut c = card();
        let id = Arc::clone(c.identity());
        assert_eq!(status(&mut c, &[0x00, 0xB0, 0x8A, 0x00, 0x04]), 0x6A82);
        c.process(SELECT_JPKI);
        let head = c.process(&[0x00, 0xB0, 0x8A, 0x00, 0x00]);
        assert_eq!(sw(&head), 0x9000);
        assert_eq!(data(&head), &id.auth_cert_der[..256]);
        // the SFI read made EF 000A current
        let next = c.process(&read(256, 0x10));
        assert_eq!(data(&next), &id.auth_cert_der[256..272]);
        assert_eq!(status(&mut c, &[0x00, 0xB0, 0x9F, 0x00, 0x01]), 0x6A82);
        assert_eq!(status(&mut c, &[0x00, 0xB0, 0xA1, 0x00, 0x01]), 0x6A86);
    }

    #[test]
    fn retry_query_and_counters() {
        let mut c = card();
        open_sign_pin(&mut c);
        assert_eq!(c.process(QUERY), [0x63, 0xC5]);
        // appending Le makes it a wrong-length command
        assert_eq!(status(&mut c, &[0x00, 0x20, 0x00, 0x80, 0x00]), 0x6700);
        assert_eq!(status(&mut c, &verify(b"WRONG1")), 0x63C4);
        assert_eq!(c.signing_tries(), 4);
        assert_eq!(status(&mut c, QUERY), 0x63C4);
        // the card does not fold case
        assert_eq!(status(&mut c, &verify(b"test1234")), 0x63C3);
        assert_eq!(status(&mut c, &verify(b"TEST1234")), 0x9000);
        assert_eq!(c.signing_tries(), 5);
        // the query still answers 63 Cx after a successful VERIFY
        assert_eq!(status(&mut c, QUERY), 0x63C5);
        assert_eq!(c.verify_attempts(), 3);
        // P1 must be 00
        assert_eq!(status(&mut c, &[0x00, 0x20, 0x01, 0x80]), 0x6A86);
    }

    #[test]
    fn blocking_the_signing_password() {
        let mut c = card();
        open_sign_pin(&mut c);
        for left in (1..=4).rev() {
            assert_eq!(status(&mut c, &verify(b"WRONG1")), 0x63C0 | left);
        }
        assert_eq!(status(&mut c, &verify(b"WRONG1")), 0x63C0);
        assert_eq!(c.signing_tries(), 0);
        assert_eq!(status(&mut c, QUERY), 0x6984);
        assert_eq!(status(&mut c, &verify(b"TEST1234")), 0x6984);
        assert_eq!(c.verify_attempts(), 6);
        c.process(&select_ef(0x0001));
        assert_eq!(status(&mut c, &read(0, 4)), 0x6982);

        let mut blocked = card_with(|o| o.signing_tries = 0);
        open_sign_pin(&mut blocked);
        assert_eq!(status(&mut blocked, QUERY), 0x6984);
        let mut two = card_with(|o| o.signing_tries = 2);
        open_sign_pin(&mut two);
        assert_eq!(status(&mut two, QUERY), 0x63C2);
        assert_eq!(status(&mut two, &verify(b"TEST1234")), 0x9000);
        assert_eq!(two.signing_tries(), 5);
        let mut clamped = card_with(|o| o.signing_tries = 9);
        assert_eq!(clamped.signing_tries(), 5);
        open_sign_pin(&mut clamped);
        assert_eq!(status(&mut clamped, QUERY), 0x63C5);
    }

    #[test]
    fn auth_pin() {
        let mut c = card();
        c.process(SELECT_JPKI);
        c.process(&select_ef(0x0018));
        assert_eq!(status(&mut c, QUERY), 0x63C3);
        assert_eq!(status(&mut c, &verify(b"0000")), 0x63C2);
        assert_eq!(status(&mut c, &verify(b"1234")), 0x9000);
        assert_eq!(c.auth_tries(), 3);
        // the auth PIN does not unlock the signing certificate
        c.process(&select_ef(0x0001));
        assert_eq!(status(&mut c, &read(0, 4)), 0x6982);
        for expected in [0x63C2, 0x63C1, 0x63C0, 0x6984] {
            c.process(&select_ef(0x0018));
            assert_eq!(status(&mut c, &verify(b"9999")), expected);
        }
        assert_eq!(c.signing_tries(), 5, "counters are independent");
    }

    #[test]
    fn verify_by_sfi() {
        let mut c = card();
        c.process(SELECT_JPKI);
        assert_eq!(status(&mut c, &[0x00, 0x20, 0x00, 0x9B]), 0x63C5);
        assert_eq!(status(&mut c, &[0x00, 0x20, 0x00, 0x98]), 0x63C3);
        let mut apdu = verify(b"TEST1234");
        apdu[3] = 0x9B;
        assert_eq!(status(&mut c, &apdu), 0x9000);
        assert!(c.signing_verified());
        // 80|SFI of a non-PIN file, and a P2 without the 80 bit
        assert_eq!(status(&mut c, &[0x00, 0x20, 0x00, 0x81]), 0x6A88);
        assert_eq!(status(&mut c, &[0x00, 0x20, 0x00, 0x1B]), 0x6A86);
        // VERIFY on a non-PIN current EF
        c.process(&select_ef(0x0006));
        assert_eq!(status(&mut c, QUERY), 0x6A88);
    }

    #[test]
    fn command_log_never_keeps_the_password() {
        let mut c = card();
        open_sign_pin(&mut c);
        c.process(&verify(b"TEST1234"));
        c.process(&verify(b"SECRET99"));
        let mut extended = vec![0x00, 0x20, 0x00, 0x80, 0x00, 0x00, 0x08];
        extended.extend_from_slice(b"EXTENDED");
        c.process(&extended);
        c.process(&[
            0x00, 0x20, 0x00, 0x80, 0x09, b'B', b'R', b'O', b'K', b'E', b'N',
        ]);
        c.process(&[0x00, 0x24, 0x01, 0x80, 0x04, b'1', b'2', b'3', b'4']);
        let log = c.commands();
        assert_eq!(log.len(), 7);
        assert_eq!(log[0], SELECT_JPKI);
        assert_eq!(
            log[2],
            [0x00, 0x20, 0x00, 0x80, 0x08, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            log[3],
            [0x00, 0x20, 0x00, 0x80, 0x08, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(log[4][..7], [0x00, 0x20, 0x00, 0x80, 0x00, 0x00, 0x08]);
        assert!(log[4][7..].iter().all(|&b| b == 0));
        assert_eq!(log[4].len(), extended.len());
        assert!(log[5][4..].iter().all(|&b| b == 0));
        assert_eq!(log[6], [0x00, 0x24, 0x01, 0x80, 0x04, 0, 0, 0, 0]);
        for entry in log {
            for secret in [&b"TEST1234"[..], b"SECRET99", b"EXTENDED", b"BROKEN"] {
                assert!(!entry.windows(secret.len()).any(|w| w == secret));
            }
        }
        assert_eq!(c.verify_attempts(), 3, "the malformed VERIFY never parsed");
    }

    #[test]
    fn power_down_clears_the_session() {
        let mut c = card();
        unlock_signing(&mut c);
        c.process(&select_ef(0x0018));
        c.process(&verify(b"0000"));
        c.power_down();
        assert!(!c.signing_verified());
        // nothing selected any more
        assert_eq!(status(&mut c, &read(0, 1)), 0x6986);
        assert_eq!(status(&mut c, &select_ef(0x0001)), 0x6A82);
        c.process(SELECT_JPKI);
        c.process(&select_ef(0x0001));
        assert_eq!(status(&mut c, &read(0, 4)), 0x6982);
        assert_eq!(c.auth_tries(), 2, "counters persist");
        c.process(&select_ef(0x001A));
        assert_eq!(status(&mut c, &sign_apdu(&digest_info(b"x"))), 0x6982);
    }

    #[test]
    fn reselecting_the_ap_keeps_the_verified_state() {
        let mut c = card();
        unlock_signing(&mut c);
        c.process(SELECT_JPKI);
        c.process(&select_ef(0x0001));
        assert_eq!(status(&mut c, &read(0, 4)), 0x9000);
    }

    #[test]
    fn signing() {
        let mut c = card();
        let id = Arc::clone(c.identity());
        c.process(SELECT_JPKI);
        c.process(&select_ef(0x001A));
        let info = digest_info(b"statement to sign");
        assert_eq!(status(&mut c, &sign_apdu(&info)), 0x6982);
        unlock_signing(&mut c);
        assert_eq!(status(&mut c, &select_ef(0x001A)), 0x9000);
        let response = c.process(&sign_apdu(&info));
        assert_eq!(sw(&response), 0x9000);
        let signature = data(&response);
        assert_eq!(signature.len(), 256);
        let public = id.sign_key.rsa().expect("RSA identity").to_public_key();
        assert_eq!(public.size(), 256);
        public
            .verify(
                Pkcs1v15Sign::new::<Sha256>(),
                &Sha256::digest(b"statement to sign"),
                signature,
            )
            .expect("signature verifies with the EE public key");
        // the signature is bound to the certificate's key
        let cert_key = id
            .sign_cert_der
            .windows(256)
            .any(|w| w == public.n().to_bytes_be());
        assert!(cert_key);

        // several signatures per VERIFY; case 3 (no Le) accepted too
        let mut no_le = sign_apdu(&info);
        no_le.pop();
        assert_eq!(c.process(&no_le), response);
        // P2 = 80|SFI signs without SELECT
        c.process(&select_ef(0x0006));
        let mut by_sfi = sign_apdu(&info);
        by_sfi[3] = 0x9A;
        assert_eq!(c.process(&by_sfi), response);
    }

    #[test]
    fn signing_errors() {
        let mut c = card();
        unlock_signing(&mut c);
        c.process(&select_ef(0x001A));
        let info = digest_info(b"m");
        let mut p1 = sign_apdu(&info);
        p1[2] = 0x01;
        assert_eq!(status(&mut c, &p1), 0x6A86);
        let mut p2 = sign_apdu(&info);
        p2[3] = 0x00;
        assert_eq!(status(&mut c, &p2), 0x6A86);
        assert_eq!(status(&mut c, &sign_apdu(&[0xAB; 245])), 0x9000);
        let mut too_long = vec![0x80, 0x2A, 0x00, 0x80, 246];
        too_long.extend_from_slice(&[0xAB; 246]);
        too_long.push(0);
        assert_eq!(status(&mut c, &too_long), 0x6700);
        assert_eq!(status(&mut c, &[0x80, 0x2A, 0x00, 0x80]), 0x6700);
        assert_eq!(status(&mut c, &[0x80, 0x2A, 0x00, 0x80, 0x00]), 0x6700);
        let mut small_le = sign_apdu(&info);
        *small_le.last_mut().unwrap() = 0x80;
        assert_eq!(status(&mut c, &small_le), 0x6700);
        // standard CLA is not this card's COMPUTE DIGITAL SIGNATURE
        let mut cla00 = sign_apdu(&info);
        cla00[0] = 0x00;
        assert_eq!(status(&mut c, &cla00), 0x6E00);
        // the current EF must be a key
        c.process(&select_ef(0x0001));
        assert_eq!(status(&mut c, &sign_apdu(&info)), 0x6A88);
    }

    #[test]
    fn auth_key_signs_after_auth_pin() {
        let mut c = card();
        let id = Arc::clone(c.identity());
        unlock_signing(&mut c);
        c.process(&select_ef(0x0017));
        let info = digest_info(b"challenge");
        assert_eq!(status(&mut c, &sign_apdu(&info)), 0x6982);
        c.process(&select_ef(0x0018));
        assert_eq!(status(&mut c, &verify(b"1234")), 0x9000);
        c.process(&select_ef(0x0017));
        let response = c.process(&sign_apdu(&info));
        assert_eq!(sw(&response), 0x9000);
        id.auth_key
            .to_public_key()
            .verify(
                Pkcs1v15Sign::new::<Sha256>(),
                &Sha256::digest(b"challenge"),
                data(&response),
            )
            .unwrap();
    }

    #[test]
    fn class_and_instruction_errors() {
        let mut c = card();
        assert_eq!(c.process(&[]), [0x67, 0x00]);
        assert_eq!(c.process(&[0x00, 0xA4, 0x04]), [0x67, 0x00]);
        for cla in [0x01, 0x02, 0x03] {
            let mut apdu = SELECT_JPKI.to_vec();
            apdu[0] = cla;
            assert_eq!(status(&mut c, &apdu), 0x6881);
        }
        let mut sm = SELECT_JPKI.to_vec();
        sm[0] = 0x0C;
        assert_eq!(status(&mut c, &sm), 0x6882);
        assert_eq!(status(&mut c, &[0x0C, 0xB0, 0x00, 0x00, 0x01]), 0x69FC);
        assert_eq!(status(&mut c, &[0xA0, 0xA4, 0x00, 0x00]), 0x6E00);
        assert_eq!(status(&mut c, &[0xFF, 0xCA, 0x00, 0x00, 0x00]), 0x6E00);
        assert_eq!(status(&mut c, &[0x80, 0xB0, 0x00, 0x00, 0x01]), 0x6E00);
        assert_eq!(status(&mut c, &[0x00, 0x84, 0x00, 0x00, 0x08]), 0x6D00);
        assert_eq!(status(&mut c, &[0x80, 0xA2, 0x00, 0xC1]), 0x6D00);
        assert_eq!(status(&mut c, &[0x10, 0xA4, 0x04, 0x0C]), 0x6E00);
        assert_eq!(status(&mut c, &[0x81, 0x2A, 0x00, 0x80]), 0x6E00);
        // inconsistent Lc
        assert_eq!(
            status(&mut c, &[0x00, 0xA4, 0x04, 0x0C, 0x0A, 0xD3, 0x92]),
            0x6700
        );
        assert_eq!(
            status(&mut c, &[0x00, 0xA4, 0x04, 0x0C, 0x01, 0xD3, 0x00, 0x00]),
            0x6700
        );
        assert_eq!(
            status(&mut c, &[0x00, 0xA4, 0x04, 0x0C, 0x00, 0x00]),
            0x6700
        );
        // GET RESPONSE with nothing pending (the card is T=1 style by default)
        assert_eq!(status(&mut c, &[0x00, 0xC0, 0x00, 0x00, 0x10]), 0x6985);
    }

    #[test]
    fn t0_style_delivery() {
        let mut c = card_with(|o| o.t0_style = true);
        let id = Arc::clone(c.identity());
        assert_eq!(c.process(SELECT_JPKI), [0x90, 0x00]);
        c.process(&select_ef(0x0006));
        assert_eq!(c.process(&read(0, 0x20)), [0x61, 0x20]);
        let label = c.process(&[0x00, 0xC0, 0x00, 0x00, 0x20]);
        assert_eq!(sw(&label), 0x9000);
        assert_eq!(&data(&label)[..15], b"JPKIAPICCTOKEN2");
        assert_eq!(status(&mut c, &[0x00, 0xC0, 0x00, 0x00, 0x20]), 0x6985);

        // partial delivery
        assert_eq!(c.process(&read(0, 0x20)), [0x61, 0x20]);
        let first = c.process(&[0x00, 0xC0, 0x00, 0x00, 0x10]);
        assert_eq!(sw(&first), 0x6110);
        assert_eq!(data(&first).len(), 0x10);
        let second = c.process(&[0x00, 0xC0, 0x00, 0x00, 0x10]);
        assert_eq!(sw(&second), 0x9000);
        assert_eq!(data(&second).len(), 0x10);

        // wrong Le → 6C with the exact length
        assert_eq!(c.process(&read(150, 0x20)), [0x6C, 0x0A]);
        assert_eq!(c.process(&read(150, 0x0A)), [0x61, 0x0A]);
        assert_eq!(data(&c.process(&[0x00, 0xC0, 0x00, 0x00, 0x0A])).len(), 10);
        // Le 00 with fewer bytes left: data, then the end-of-file warning
        assert_eq!(c.process(&read(0, 0x00)), [0x61, 0xA0]);
        let rest = c.process(&[0x00, 0xC0, 0x00, 0x00, 0x00]);
        assert_eq!(sw(&rest), 0x6282);
        assert_eq!(data(&rest).len(), 160);

        // another command discards pending data
        assert_eq!(c.process(&read(0, 0x20)), [0x61, 0x20]);
        c.process(&select_ef(0x0006));
        assert_eq!(status(&mut c, &[0x00, 0xC0, 0x00, 0x00, 0x20]), 0x6985);

        // a signature comes as 61 00 + GET RESPONSE of 256 bytes
        c.process(&select_ef(0x001B));
        c.process(&verify(b"TEST1234"));
        c.process(&select_ef(0x001A));
        let info = digest_info(b"t0");
        assert_eq!(c.process(&sign_apdu(&info)), [0x61, 0x00]);
        let signature = c.process(&[0x00, 0xC0, 0x00, 0x00, 0x00]);
        assert_eq!(sw(&signature), 0x9000);
        id.sign_key
            .rsa()
            .expect("RSA identity")
            .to_public_key()
            .verify(
                Pkcs1v15Sign::new::<Sha256>(),
                &Sha256::digest(b"t0"),
                data(&signature),
            )
            .unwrap();
        // status-only answers are unchanged
        c.process(&select_ef(0x001B));
        assert_eq!(c.process(QUERY), [0x63, 0xC5]);
        assert_eq!(status(&mut c, &[0x00, 0xC0, 0x01, 0x00, 0x10]), 0x6A86);
    }

    #[test]
    fn under_15_card_has_no_signing_certificate() {
        let mut c = card_with(|o| o.signing_certificate = false);
        c.process(SELECT_JPKI);
        assert_eq!(status(&mut c, &select_ef(0x0001)), 0x6A82);
        assert_eq!(status(&mut c, &select_ef(0x001A)), 0x6A82);
        assert_eq!(status(&mut c, &select_ef(0x001B)), 0x9000);
        assert_eq!(status(&mut c, QUERY), 0x6984);
        assert_eq!(status(&mut c, &verify(b"TEST1234")), 0x6984);
        assert_eq!(status(&mut c, &[0x00, 0xB0, 0x81, 0x00, 0x04]), 0x6A82);
        c.process(&select_ef(0x0008));
        assert_eq!(c.process(&read(0, 3)), [0x00, 0x8F, 0x00, 0x90, 0x00]);
        // the authentication side still works
        c.process(&select_ef(0x0018));
        assert_eq!(status(&mut c, QUERY), 0x63C3);
        c.process(&select_ef(0x000A));
        assert_eq!(status(&mut c, &read(0, 4)), 0x9000);
        assert_eq!(status(&mut c, &select_ef(0x0002)), 0x9000);
    }

    #[test]
    fn expired_card_carries_expired_certificates() {
        let mut c = card_with(|o| o.validity = Validity::Expired);
        let expired = crate::identity::test_identity(Validity::Expired);
        assert!(Arc::ptr_eq(c.identity(), &expired));
        unlock_signing(&mut c);
        assert_eq!(read_all(&mut c, 0x0001), expired.sign_cert_der);
    }

    #[test]
    fn debug_output_hides_secrets() {
        let c = card_with(|o| o.signing_password = "HIDDENPW1".into());
        let text = format!("{c:?} {:?}", c.options());
        assert!(!text.contains("HIDDENPW1"));
        assert!(!text.contains("1234"));
    }

    fn assert_answers(card: &mut SimulatedCard, apdu: &[u8]) {
        let response = card.process(apdu);
        assert!(response.len() >= 2, "no status word for {apdu:02X?}");
        let sw1 = response[response.len() - 2];
        assert!(
            matches!(sw1, 0x61..=0x6F | 0x90),
            "odd status {response:02X?} for {apdu:02X?}"
        );
    }

    #[test]
    fn never_panics_on_arbitrary_input() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let valid: Vec<Vec<u8>> = vec![
            SELECT_JPKI.to_vec(),
            select_ef(0x0001),
            select_ef(0x001B),
            verify(b"TEST1234"),
            QUERY.to_vec(),
            read(0, 0),
            vec![0x00, 0xB0, 0x00, 0x00, 0x00, 0x00, 0x00],
            vec![0x00, 0xB0, 0x81, 0x00, 0x00],
            select_ef(0x001A),
            sign_apdu(&digest_info(b"fuzz")),
            vec![0x00, 0xC0, 0x00, 0x00, 0x00],
        ];
        for setup in 0..4 {
            let mut c = card_with(|o| {
                o.t0_style = setup & 1 == 1;
                o.extended_length = setup & 2 == 0;
            });
            // truncations and extensions of well-formed commands, in sequence
            for apdu in &valid {
                for cut in 0..=apdu.len() {
                    assert_answers(&mut c, &apdu[..cut]);
                }
                let mut longer = apdu.clone();
                longer.extend_from_slice(&[0x00, 0xFF]);
                assert_answers(&mut c, &longer);
                assert_answers(&mut c, apdu);
            }
            // random byte strings, biased towards this card's CLA/INS values
            for _ in 0..4000 {
                let len = match rng.gen_range(0..4) {
                    0 => rng.gen_range(0..8),
                    1 => rng.gen_range(0..300),
                    _ => rng.gen_range(4..20),
                };
                let mut apdu: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                if apdu.len() >= 2 && rng.gen_bool(0.7) {
                    apdu[0] = [0x00, 0x80, 0x0C, 0x01][rng.gen_range(0..4)];
                    apdu[1] = [0xA4, 0xB0, 0x20, 0xC0, 0x2A][rng.gen_range(0..5)];
                }
                if apdu.len() >= 5 && rng.gen_bool(0.5) {
                    apdu[4] = (apdu.len() - 5) as u8;
                }
                assert_answers(&mut c, &apdu);
                if rng.gen_bool(0.01) {
                    c.power_down();
                }
                if rng.gen_bool(0.05) {
                    for apdu in &valid[..4] {
                        c.process(apdu);
                    }
                }
            }
        }
    }

    #[test]
    fn the_next_generation_key_signs_a_bare_hash() {
        use p384::ecdsa::signature::hazmat::PrehashVerifier;
        use sha2::Sha384;
        let mut c = card_with(|o| o.key = SimKey::EcP384);
        let id = Arc::clone(c.identity());
        unlock_signing(&mut c);
        assert_eq!(read_all(&mut c, 0x0001), id.sign_cert_der);
        assert_eq!(read_all(&mut c, 0x0002), id.sign_root_der);
        c.process(&select_ef(0x001A));
        // A DigestInfo is refused: the provisional profile takes the bare hash.
        assert_eq!(status(&mut c, &sign_apdu(&digest_info(b"m"))), 0x6700);
        let hash = Sha384::digest(b"m");
        let response = c.process(&sign_apdu(&hash));
        assert_eq!(sw(&response), 0x9000);
        let signature = p384::ecdsa::Signature::from_slice(data(&response)).expect("r || s");
        let TestKey::EcP384(key) = &id.sign_key else {
            panic!("not a P-384 identity");
        };
        key.verifying_key()
            .verify_prehash(&hash, &signature)
            .expect("verifies");
        let point = id.sign_key.subject_public_key();
        assert!(id.sign_cert_der.windows(point.len()).any(|w| w == point));
        // An Le below 96 cannot hold it.
        let mut small = sign_apdu(&hash);
        *small.last_mut().unwrap() = 0x40;
        assert_eq!(status(&mut c, &small), 0x6700);
    }

    #[test]
    fn a_3072_bit_key_answers_384_bytes_extended_or_chained() {
        let mut c = card_with(|o| o.key = SimKey::Rsa3072);
        let id = Arc::clone(c.identity());
        let public = id.sign_key.rsa().expect("RSA identity").to_public_key();
        unlock_signing(&mut c);
        c.process(&select_ef(0x001A));
        let info = digest_info(b"m");
        // Le 00 (256): the first 256 bytes, then 61 80 and GET RESPONSE.
        let first = c.process(&sign_apdu(&info));
        assert_eq!(sw(&first), 0x6180);
        assert_eq!(data(&first).len(), 256);
        let rest = c.process(&[0x00, 0xC0, 0x00, 0x00, 0x80]);
        assert_eq!(sw(&rest), 0x9000);
        let chained = [data(&first), data(&rest)].concat();
        public
            .verify(
                Pkcs1v15Sign::new::<Sha256>(),
                &Sha256::digest(b"m"),
                &chained,
            )
            .expect("verifies");
        // Extended Le 384: all at once.
        let mut extended = vec![0x80, 0x2A, 0x00, 0x80, 0x00, 0x00, info.len() as u8];
        extended.extend_from_slice(&info);
        extended.extend_from_slice(&[0x01, 0x80]);
        let whole = c.process(&extended);
        assert_eq!(sw(&whole), 0x9000);
        assert_eq!(data(&whole), chained.as_slice());
        // A short Le below 256 is refused as before.
        let mut small = sign_apdu(&info);
        *small.last_mut().unwrap() = 0x80;
        assert_eq!(status(&mut c, &small), 0x6700);
    }
}
