//! Recorded APDU traces: the file format shared by `--record` and `--replay`.
//!
//! A trace is one JSON object:
//! ```json
//! { "format": "mynalink-apdu-trace", "version": 1,
//!   "reader": "…", "atr": "3be000ff8131fe4514",
//!   "inputs": { …the flow's inputs, opaque to this layer… },
//!   "events": [ { "kind": "exchange", "command": "00a4040c0a…", "response": "9000", "micros": 812 },
//!               { "kind": "card_removed", "command": "00b00000", "micros": 3 } ] }
//! ```
//! Commands and responses are lower-case hex. The data of VERIFY (and CHANGE REFERENCE
//! DATA) is written as `XX` per byte, length kept: the password never reaches a trace.
//! `XX` in a command matches any byte on replay.

use serde::{Deserialize, Serialize};

pub const FORMAT: &str = "mynalink-apdu-trace";
pub const VERSION: u32 = 1;
/// Traces are small (a flow is ~20 APDUs); this bounds what a hostile file can make us hold.
pub const MAX_TRACE_BYTES: usize = 4 * 1024 * 1024;
pub const MAX_EVENTS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    pub format: String,
    pub version: u32,
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
}

impl TraceEvent {
    pub fn command(&self) -> &str {
        match self {
            TraceEvent::Exchange { command, .. }
            | TraceEvent::CardRemoved { command, .. }
            | TraceEvent::ReaderError { command, .. } => command,
        }
    }
}

impl Trace {
    pub fn new(reader: &str, atr: &[u8]) -> Trace {
        Trace {
            format: FORMAT.into(),
            version: VERSION,
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
        if trace.version != VERSION {
            return Err(format!(
                "version {} is not supported (expected {VERSION})",
                trace.version
            ));
        }
        if trace.events.len() > MAX_EVENTS {
            return Err(format!("more than {MAX_EVENTS} events"));
        }
        hex::decode(&trace.atr).map_err(|e| format!("atr: {e}"))?;
        for (i, event) in trace.events.iter().enumerate() {
            parse_pattern(event.command()).map_err(|e| format!("event {i} command: {e}"))?;
            if let TraceEvent::Exchange { response, .. } = event {
                let r = hex::decode(response).map_err(|e| format!("event {i} response: {e}"))?;
                if r.len() < 2 {
                    return Err(format!("event {i} response has no status word"));
                }
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
    fn parse_checks_the_file() {
        let mut t = Trace::new("r", &[0x3B, 0x00]);
        t.events.push(TraceEvent::Exchange {
            command: "00a4040c".into(),
            response: "9000".into(),
            micros: 1,
        });
        let json = t.to_json();
        assert_eq!(Trace::parse(json.as_bytes()), Ok(t.clone()));
        assert!(Trace::parse(b"{}").is_err());
        assert!(Trace::parse(json.replace("\"version\": 1", "\"version\": 2").as_bytes()).is_err());
        assert!(Trace::parse(json.replace("9000", "90").as_bytes()).is_err());
        assert!(Trace::parse(json.replace("9000", "9g00").as_bytes()).is_err());
        assert!(Trace::parse(&vec![b' '; MAX_TRACE_BYTES + 1]).is_err());
    }
}
