//! Command and response APDUs (ISO/IEC 7816-4), short and extended forms.

use zeroize::Zeroizing;

/// Largest response data a short APDU can ask for.
pub const SHORT_LE_MAX: usize = 256;
/// Largest response data an extended APDU can ask for.
pub const EXTENDED_LE_MAX: usize = 65536;

/// A command APDU. The data field is zeroized on drop because VERIFY carries the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Command {
    pub cla: u8,
    pub ins: u8,
    pub p1: u8,
    pub p2: u8,
    pub data: Zeroizing<Vec<u8>>,
    /// Expected response length; `None` means no Le field at all (cases 1 and 3).
    pub le: Option<usize>,
}

impl std::fmt::Debug for Command {
    // Never prints the data field: it may be a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Command({:02X} {:02X} {:02X} {:02X}, {} data bytes, le {:?})",
            self.cla,
            self.ins,
            self.p1,
            self.p2,
            self.data.len(),
            self.le
        )
    }
}

impl Command {
    pub fn new(cla: u8, ins: u8, p1: u8, p2: u8) -> Self {
        Command {
            cla,
            ins,
            p1,
            p2,
            data: Zeroizing::new(Vec::new()),
            le: None,
        }
    }

    pub fn with_data(mut self, data: &[u8]) -> Self {
        self.data = Zeroizing::new(data.to_vec());
        self
    }

    pub fn with_le(mut self, le: usize) -> Self {
        self.le = Some(le);
        self
    }

    /// Whether this command needs the extended encoding.
    pub fn is_extended(&self) -> bool {
        self.data.len() > 255 || self.le.is_some_and(|le| le > SHORT_LE_MAX)
    }

    /// Serialises the command. Short form unless the lengths need the extended one.
    /// Case 1 is exactly four bytes: the JPKI retry query depends on it.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(9 + self.data.len()));
        out.extend_from_slice(&[self.cla, self.ins, self.p1, self.p2]);
        let extended = self.is_extended();
        if !self.data.is_empty() {
            if extended {
                let lc = self.data.len() as u16;
                out.push(0);
                out.extend_from_slice(&lc.to_be_bytes());
            } else {
                out.push(self.data.len() as u8);
            }
            out.extend_from_slice(&self.data);
        }
        if let Some(le) = self.le {
            if extended {
                if self.data.is_empty() {
                    out.push(0);
                }
                // 65536 is encoded as 00 00.
                out.extend_from_slice(&((le % EXTENDED_LE_MAX) as u16).to_be_bytes());
            } else {
                // 256 is encoded as 00.
                out.push((le % SHORT_LE_MAX) as u8);
            }
        }
        out
    }
}

/// Status word SW1 SW2.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusWord(pub u16);

impl StatusWord {
    pub const OK: StatusWord = StatusWord(0x9000);

    pub fn sw1(self) -> u8 {
        (self.0 >> 8) as u8
    }
    pub fn sw2(self) -> u8 {
        self.0 as u8
    }
    pub fn is_ok(self) -> bool {
        self == Self::OK
    }
}

impl std::fmt::Debug for StatusWord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02X} {:02X}", self.sw1(), self.sw2())
    }
}

impl std::fmt::Display for StatusWord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// A response APDU split into data and status word.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    pub data: Vec<u8>,
    pub sw: StatusWord,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Response({} data bytes, SW {})",
            self.data.len(),
            self.sw
        )
    }
}

impl Response {
    /// Splits a raw response; `None` when it is too short to hold a status word.
    pub fn from_bytes(mut raw: Vec<u8>) -> Option<Response> {
        if raw.len() < 2 {
            return None;
        }
        let sw2 = raw.pop()?;
        let sw1 = raw.pop()?;
        Some(Response {
            data: raw,
            sw: StatusWord(u16::from_be_bytes([sw1, sw2])),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(c: &Command) -> Vec<u8> {
        c.encode().to_vec()
    }

    #[test]
    fn case1_is_exactly_four_bytes() {
        assert_eq!(
            enc(&Command::new(0x00, 0x20, 0x00, 0x80)),
            [0x00, 0x20, 0x00, 0x80]
        );
    }

    #[test]
    fn case2_short_256_is_00() {
        let c = Command::new(0, 0xB0, 0, 0).with_le(256);
        assert_eq!(enc(&c), [0, 0xB0, 0, 0, 0]);
        let c = Command::new(0, 0xB0, 1, 0).with_le(32);
        assert_eq!(enc(&c), [0, 0xB0, 1, 0, 0x20]);
    }

    #[test]
    fn case3_and_case4_short() {
        let c = Command::new(0, 0xA4, 2, 0x0C).with_data(&[0x00, 0x1B]);
        assert_eq!(enc(&c), [0, 0xA4, 2, 0x0C, 2, 0x00, 0x1B]);
        let c = Command::new(0x80, 0x2A, 0, 0x80)
            .with_data(&[1, 2, 3])
            .with_le(256);
        assert_eq!(enc(&c), [0x80, 0x2A, 0, 0x80, 3, 1, 2, 3, 0]);
    }

    #[test]
    fn case2_extended() {
        let c = Command::new(0, 0xB0, 1, 0).with_le(1581);
        assert!(c.is_extended());
        assert_eq!(enc(&c), [0, 0xB0, 1, 0, 0, 0x06, 0x2D]);
        let c = Command::new(0, 0xB0, 0, 0).with_le(65536);
        assert_eq!(enc(&c), [0, 0xB0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn case4_extended() {
        let data = vec![0xAA; 300];
        let c = Command::new(0, 0x2A, 0, 0).with_data(&data).with_le(512);
        let e = enc(&c);
        assert_eq!(&e[..7], &[0, 0x2A, 0, 0, 0, 0x01, 0x2C]);
        assert_eq!(&e[e.len() - 2..], &[0x02, 0x00]);
        assert_eq!(e.len(), 7 + 300 + 2);
    }

    #[test]
    fn response_split() {
        let r = Response::from_bytes(vec![1, 2, 0x90, 0x00]).expect("valid response");
        assert_eq!(r.data, [1, 2]);
        assert!(r.sw.is_ok());
        assert!(Response::from_bytes(vec![0x90]).is_none());
        assert!(Response::from_bytes(vec![]).is_none());
    }

    #[test]
    fn debug_never_shows_data() {
        let c = Command::new(0, 0x20, 0, 0x80).with_data(b"TEST1234");
        assert!(!format!("{c:?}").contains("TEST"));
        assert!(!format!("{c:?}").contains("54"));
    }
}
