//! Recorded APDU traces: the file format shared by `--record` and `--replay`.
//!
//! A trace is one JSON object:
//! ```json
//! { "format": "mynalink-apdu-trace", "version": 2, "source": "reader",
//!   "reader": "…", "atr": "3be000ff8131fe4514",
//!   "inputs": { …the flow's inputs, opaque to this layer… },
//!   "events": [ { "kind": "exchange", "command": "00a4040c0a…", "response": "9000", "micros": 812 },
//!               { "kind": "withheld", "command": "00b0000000", "response_sha256": "…", "micros": 9 },
//!               { "kind": "card_removed", "command": "00b00000", "micros": 3 } ] }
//! ```
//! Commands and responses are lower-case hex. The data of VERIFY (and CHANGE REFERENCE
//! DATA) is written as `XX` per byte, length kept: the password never reaches a trace.
//! `XX` in a command matches any byte on replay.
//!
//! The signing certificate holds the holder's name, address, birth date and sex. A trace
//! from a real card keeps only the SHA-256 of each response carrying its bytes (`withheld`),
//! unless the recording asked for them explicitly; a replay stops there. `source` says
//! whether the trace was made on the simulated card (`simulated`) or a reader (`reader`).
//! Version 1 (no `source`, no `withheld`) is still read.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::allowlist::{INS_GET_RESPONSE, INS_READ_BINARY, INS_SELECT};

pub const FORMAT: &str = "mynalink-apdu-trace";
/// The version written. Version 2 added `source` and `withheld` events.
pub const VERSION: u32 = 2;
/// Versions read.
pub const VERSIONS_READ: [u32; 2] = [1, 2];
/// Traces are small (a flow is ~20 APDUs); this bounds what a hostile file can make us hold.
pub const MAX_TRACE_BYTES: usize = 4 * 1024 * 1024;
pub const MAX_EVENTS: usize = 10_000;

/// Where a trace's responses came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceSource {
    /// The built-in simulated card (a TEST identity, no personal data).
    Simulated,
    /// A card in a reader: a real holder's card as far as the client can tell.
    Reader,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    pub format: String,
    pub version: u32,
    /// `None` only in version 1 traces, which did not record it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<TraceSource>,
    pub reader: String,
    pub atr: String,
    #[serde(default)]
    pub inputs: serde_json::Map<String, serde_json::Value>,
    pub events: Vec<TraceEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TraceEvent {
    /// A command and the card's complete response.
    Exchange {
        command: String,
        response: String,
        #[serde(default)]
        micros: u64,
    },
    /// The card left while this command was under way.
    CardRemoved {
        command: String,
        #[serde(default)]
        micros: u64,
    },
    /// The reader failed in another way; kept with its description.
    ReaderError {
        command: String,
        error: String,
        #[serde(default)]
        micros: u64,
    },
    /// A response carrying bytes of the signing certificate, left out of the trace: only its
    /// SHA-256 (of the complete response, status word included) is kept.
    Withheld {
        command: String,
        response_sha256: String,
        #[serde(default)]
        micros: u64,
    },
}

impl TraceEvent {
    pub fn command(&self) -> &str {
        match self {
            TraceEvent::Exchange { command, .. }
            | TraceEvent::CardRemoved { command, .. }
            | TraceEvent::ReaderError { command, .. }
            | TraceEvent::Withheld { command, .. } => command,
        }
    }
}

impl Trace {
    pub fn new(reader: &str, atr: &[u8], source: TraceSource) -> Trace {
        Trace {
            format: FORMAT.into(),
            version: VERSION,
            source: Some(source),
            reader: reader.into(),
            atr: hex::encode(atr),
            inputs: serde_json::Map::new(),
            events: Vec::new(),
        }
    }

    /// Parses and checks a trace file: format, version, sizes and every hex field.
    pub fn parse(bytes: &[u8]) -> Result<Trace, String> {
        if bytes.len() > MAX_TRACE_BYTES {
            return Err(format!("file larger than {MAX_TRACE_BYTES} bytes"));
        }
        let trace: Trace = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if trace.format != FORMAT {
            return Err(format!(
                "format is \"{}\", expected \"{FORMAT}\"",
                trace.format
            ));
        }
        if !VERSIONS_READ.contains(&trace.version) {
            return Err(format!(
                "version {} is not supported (expected one of {VERSIONS_READ:?})",
                trace.version
            ));
        }
        let withheld = trace
            .events
            .iter()
            .any(|e| matches!(e, TraceEvent::Withheld { .. }));
        match (trace.version, trace.source) {
            (1, Some(_)) => return Err("version 1 has no \"source\"".into()),
            (1, None) if withheld => return Err("version 1 has no withheld responses".into()),
            (2, None) => return Err("no \"source\" (simulated or reader)".into()),
            _ => {}
        }
        if trace.events.len() > MAX_EVENTS {
            return Err(format!("more than {MAX_EVENTS} events"));
        }
        hex::decode(&trace.atr).map_err(|e| format!("atr: {e}"))?;
        for (i, event) in trace.events.iter().enumerate() {
            parse_pattern(event.command()).map_err(|e| format!("event {i} command: {e}"))?;
            match event {
                TraceEvent::Exchange { response, .. } => {
                    let r =
                        hex::decode(response).map_err(|e| format!("event {i} response: {e}"))?;
                    if r.len() < 2 {
                        return Err(format!("event {i} response has no status word"));
                    }
                }
                TraceEvent::Withheld {
                    response_sha256, ..
                } => {
                    let hash = hex::decode(response_sha256)
                        .map_err(|e| format!("event {i} response_sha256: {e}"))?;
                    if hash.len() != 32 {
                        return Err(format!("event {i} response_sha256 is not 32 bytes"));
                    }
                }
                TraceEvent::CardRemoved { .. } | TraceEvent::ReaderError { .. } => {}
            }
        }
        Ok(trace)
    }

    pub fn to_json(&self) -> String {
        // A Trace holds only strings, numbers and maps: serialisation cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Hex of a command as a trace stores it: password-bearing data replaced by `XX`.
pub fn mask_command(command: &[u8]) -> String {
    let mut out = String::with_capacity(command.len() * 2);
    let (header, body_start, body_len) = password_data_span(command);
    for (i, b) in command.iter().enumerate() {
        if header && i >= body_start && i < body_start + body_len {
            out.push_str("XX");
        } else {
            out.push_str(&format!("{b:02x}"));
        }
    }
    out
}

/// The SHA-256 of a response, as a `withheld` event keeps it.
pub fn response_sha256(response: &[u8]) -> String {
    hex::encode(Sha256::digest(response))
}

/// Follows the selection through the commands sent, to tell which responses carry bytes of
/// the signing certificate file: READ BINARY and GET RESPONSE after a SELECT of EF 0001,
/// until the next SELECT. Any SELECT of file id 0001 counts (whatever the card answers), so
/// an unusual card errs on the side of withholding.
#[derive(Debug, Default, Clone)]
pub struct CertificateTracker {
    in_certificate: bool,
}

impl CertificateTracker {
    /// Whether the response to `command` may carry certificate bytes; updates the selection.
    pub fn carries_certificate(&mut self, command: &[u8]) -> bool {
        let Some(&ins) = command.get(1) else {
            return false;
        };
        match ins {
            INS_SELECT => {
                self.in_certificate = selects_signing_certificate(command);
                false
            }
            INS_READ_BINARY | INS_GET_RESPONSE => self.in_certificate,
            _ => false,
        }
    }
}

/// A SELECT by file id (not by DF name) whose data is a card profile's signing-certificate id.
fn selects_signing_certificate(command: &[u8]) -> bool {
    let data = match command {
        [_, _, p1, _, 2, rest @ ..] if *p1 != 0x04 => rest.get(..2),
        [_, _, p1, _, 0, 0, 2, rest @ ..] if *p1 != 0x04 => rest.get(..2),
        _ => None,
    };
    crate::profile::PROFILES
        .iter()
        .any(|p| data == Some(&p.files.signing_certificate.to_be_bytes()[..]))
}

/// For VERIFY (20) and CHANGE REFERENCE DATA (24): where the data field lies.
fn password_data_span(command: &[u8]) -> (bool, usize, usize) {
    let is_password = command.len() > 4 && matches!(command[1], 0x20 | 0x24);
    if !is_password {
        return (false, 0, 0);
    }
    if command[4] == 0 && command.len() > 7 {
        let lc = usize::from(u16::from_be_bytes([command[5], command[6]]));
        (true, 7, lc.min(command.len() - 7))
    } else {
        let lc = usize::from(command[4]);
        (true, 5, lc.min(command.len() - 5))
    }
}

/// A command pattern: `Some(byte)` must match, `None` (`XX`) matches anything.
pub fn parse_pattern(text: &str) -> Result<Vec<Option<u8>>, String> {
    if !text.len().is_multiple_of(2) {
        return Err("odd number of hex digits".into());
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            b"XX" | b"xx" => Ok(None),
            _ => {
                let s = std::str::from_utf8(pair).map_err(|_| "not ASCII".to_string())?;
                u8::from_str_radix(s, 16)
                    .map(Some)
                    .map_err(|_| format!("\"{s}\" is not hex"))
            }
        })
        .collect()
}

pub fn pattern_matches(pattern: &[Option<u8>], command: &[u8]) -> bool {
    pattern.len() == command.len()
        && pattern
            .iter()
            .zip(command)
            .all(|(p, c)| p.is_none_or(|p| p == *c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_data_is_masked_with_length_kept() {
        let cmd = [&[0x00, 0x20, 0x00, 0x80, 0x08][..], b"TEST1234"].concat();
        assert_eq!(mask_command(&cmd), "0020008008XXXXXXXXXXXXXXXX");
        assert_eq!(mask_command(&[0x00, 0x20, 0x00, 0x80]), "00200080");
        let change = [&[0x00, 0x24, 0x01, 0x80, 0x04][..], b"ABCD"].concat();
        assert_eq!(mask_command(&change), "0024018004XXXXXXXX");
        // Extended Lc.
        let ext = [&[0x00, 0x20, 0x00, 0x80, 0x00, 0x00, 0x03][..], b"ABC"].concat();
        assert_eq!(mask_command(&ext), "00200080000003XXXXXX");
        // Lying Lc never exposes the tail.
        let lying = [&[0x00, 0x20, 0x00, 0x80, 0x02][..], b"ABCDEF"].concat();
        assert!(mask_command(&lying).starts_with("0020008002XXXX"));
        assert_eq!(mask_command(&[0x00, 0xB0, 0x00, 0x00, 0x20]), "00b0000020");
    }

    #[test]
    fn patterns_match_masked_bytes() {
        let p = parse_pattern("0020008002XXXX").expect("pattern");
        assert!(pattern_matches(&p, &[0, 0x20, 0, 0x80, 2, b'A', b'B']));
        assert!(!pattern_matches(&p, &[0, 0x20, 0, 0x80, 2, b'A']));
        assert!(!pattern_matches(&p, &[0, 0x20, 0, 0x81, 2, b'A', b'B']));
        assert!(parse_pattern("0").is_err());
        assert!(parse_pattern("zz").is_err());
        assert!(parse_pattern("é0").is_err());
    }

    #[test]
    fn the_certificate_file_is_tracked_through_selects() {
        let mut t = CertificateTracker::default();
        let select = |fid: [u8; 2]| [0x00, 0xA4, 0x02, 0x0C, 0x02, fid[0], fid[1]];
        let read = [0x00, 0xB0, 0x00, 0x00, 0x00, 0x00, 0x00];
        let get_response = [0x00, 0xC0, 0x00, 0x00, 0x20];
        assert!(!t.carries_certificate(&read), "nothing selected yet");
        assert!(!t.carries_certificate(&select([0x00, 0x06])));
        assert!(!t.carries_certificate(&read), "token info");
        assert!(!t.carries_certificate(&select([0x00, 0x01])));
        assert!(t.carries_certificate(&read));
        assert!(t.carries_certificate(&[0x00, 0xB0, 0x01, 0x00, 0xFF]));
        assert!(t.carries_certificate(&get_response), "T=0 chaining");
        assert!(!t.carries_certificate(&[0x80, 0x2A, 0x00, 0x80, 0x01, 0x00]));
        assert!(!t.carries_certificate(&select([0x00, 0x02])));
        assert!(
            !t.carries_certificate(&read),
            "the CA certificate is public"
        );
        // Extended Lc, and a select of a DF named 00 01 is not the file.
        assert!(!t.carries_certificate(&[0x00, 0xA4, 0x02, 0x0C, 0x00, 0x00, 0x02, 0x00, 0x01]));
        assert!(t.carries_certificate(&read));
        assert!(!t.carries_certificate(&[0x00, 0xA4, 0x04, 0x0C, 0x02, 0x00, 0x01]));
        assert!(!t.carries_certificate(&read));
        assert!(!t.carries_certificate(&[]));
        assert!(!t.carries_certificate(&[0x00]));
    }

    #[test]
    fn version_1_is_still_read() {
        let v1 = r#"{"format":"mynalink-apdu-trace","version":1,"reader":"r","atr":"3b00",
            "events":[{"kind":"exchange","command":"00a4040c","response":"9000","micros":1}]}"#;
        let t = Trace::parse(v1.as_bytes()).expect("version 1");
        assert_eq!(t.source, None);
        assert_eq!(t.events.len(), 1);
        let with_source = v1.replace(r#""version":1,"#, r#""version":1,"source":"reader","#);
        assert!(Trace::parse(with_source.as_bytes()).is_err());
        let v2_without_source = v1.replace(r#""version":1"#, r#""version":2"#);
        assert!(Trace::parse(v2_without_source.as_bytes()).is_err());
    }

    #[test]
    fn withheld_events_round_trip_and_are_checked() {
        let mut t = Trace::new("r", &[0x3B, 0x00], TraceSource::Reader);
        t.events.push(TraceEvent::Withheld {
            command: "00b0000000".into(),
            response_sha256: response_sha256(b"\x30\x82\x90\x00"),
            micros: 2,
        });
        let json = t.to_json();
        assert!(json.contains("\"kind\": \"withheld\""), "{json}");
        assert!(json.contains("\"source\": \"reader\""), "{json}");
        assert_eq!(Trace::parse(json.as_bytes()), Ok(t.clone()));
        let short = json.replace(&response_sha256(b"\x30\x82\x90\x00"), "00ff");
        assert!(Trace::parse(short.as_bytes()).is_err());
        let v1 = json
            .replace("\"version\": 2", "\"version\": 1")
            .replace("\"source\": \"reader\",", "");
        assert!(
            Trace::parse(v1.as_bytes()).is_err(),
            "withheld is version 2"
        );
    }

    #[test]
    fn parse_checks_the_file() {
        let mut t = Trace::new("r", &[0x3B, 0x00], TraceSource::Simulated);
        t.events.push(TraceEvent::Exchange {
            command: "00a4040c".into(),
            response: "9000".into(),
            micros: 1,
        });
        let json = t.to_json();
        assert_eq!(Trace::parse(json.as_bytes()), Ok(t.clone()));
        assert!(Trace::parse(b"{}").is_err());
        assert!(Trace::parse(json.replace("\"version\": 2", "\"version\": 3").as_bytes()).is_err());
        assert!(Trace::parse(json.replace("9000", "90").as_bytes()).is_err());
        assert!(Trace::parse(json.replace("9000", "9g00").as_bytes()).is_err());
        assert!(Trace::parse(&vec![b' '; MAX_TRACE_BYTES + 1]).is_err());
    }
}
