//! A transport that answers from a recorded trace and insists on the same commands.

use super::{Transport, TransportError};
use crate::trace::{mask_command, parse_pattern, pattern_matches, Trace, TraceEvent};

pub struct Replay {
    trace: Trace,
    atr: Vec<u8>,
    next: usize,
}

impl Replay {
    /// Loads a trace file's bytes; anything malformed is `TraceInvalid`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Replay, TransportError> {
        let trace = Trace::parse(bytes).map_err(TransportError::TraceInvalid)?;
        Replay::new(trace)
    }

    pub fn new(trace: Trace) -> Result<Replay, TransportError> {
        let atr =
            hex::decode(&trace.atr).map_err(|e| TransportError::TraceInvalid(e.to_string()))?;
        Ok(Replay {
            trace,
            atr,
            next: 0,
        })
    }

    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// Events not yet replayed.
    pub fn remaining(&self) -> usize {
        self.trace.events.len() - self.next
    }
}

impl Transport for Replay {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        let index = self.next;
        // The actual command is reported masked: a mismatch must not print a password.
        let actual = mask_command(command);
        let Some(event) = self.trace.events.get(index) else {
            return Err(TransportError::TraceMismatch {
                index,
                expected: "end of trace".into(),
                actual,
            });
        };
        let pattern = parse_pattern(event.command()).map_err(TransportError::TraceInvalid)?;
        if !pattern_matches(&pattern, command) {
            return Err(TransportError::TraceMismatch {
                index,
                expected: event.command().to_string(),
                actual,
            });
        }
        self.next += 1;
        match event {
            TraceEvent::Exchange { response, .. } => {
                hex::decode(response).map_err(|e| TransportError::TraceInvalid(e.to_string()))
            }
            TraceEvent::CardRemoved { .. } => Err(TransportError::CardRemoved),
            TraceEvent::ReaderError { error, .. } => Err(TransportError::Reader(error.clone())),
            TraceEvent::Withheld { .. } => Err(TransportError::TraceCertificateWithheld { index }),
        }
    }

    fn atr(&self) -> &[u8] {
        &self.atr
    }

    fn reader_name(&self) -> &str {
        &self.trace.reader
    }

    fn card_present(&mut self) -> Result<bool, TransportError> {
        Ok(!matches!(
            self.trace.events.get(self.next.saturating_sub(1)),
            Some(TraceEvent::CardRemoved { .. })
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{response_sha256, TraceSource};
    use crate::transport::{CertificateBytes, Recorder};

    struct Echo;
    impl Transport for Echo {
        fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
            if command.first() == Some(&0xFF) {
                return Err(TransportError::CardRemoved);
            }
            Ok(vec![command.len() as u8, 0x90, 0x00])
        }
        fn atr(&self) -> &[u8] {
            &[0x3B, 0x01]
        }
        fn reader_name(&self) -> &str {
            "echo"
        }
        fn card_present(&mut self) -> Result<bool, TransportError> {
            Ok(true)
        }
    }

    #[test]
    fn record_then_replay_round_trip() {
        let (mut rec, handle) =
            Recorder::new(Echo, TraceSource::Simulated, CertificateBytes::Withhold);
        let verify = [&[0x00, 0x20, 0x00, 0x80, 0x08][..], b"TEST1234"].concat();
        assert_eq!(rec.transmit(&[0, 0xA4, 4, 0x0C]), Ok(vec![4, 0x90, 0]));
        assert_eq!(rec.transmit(&verify), Ok(vec![13, 0x90, 0]));
        assert_eq!(
            rec.transmit(&[0xFF, 0, 0, 0]),
            Err(TransportError::CardRemoved)
        );
        let trace = handle.snapshot();
        let json = trace.to_json();
        assert!(!json.contains(&hex::encode(b"TEST1234")));
        assert!(json.contains("XXXXXXXXXXXXXXXX"));

        let mut replay = Replay::from_bytes(json.as_bytes()).expect("trace");
        assert_eq!(replay.atr(), &[0x3B, 0x01]);
        assert_eq!(replay.reader_name(), "echo");
        assert_eq!(replay.transmit(&[0, 0xA4, 4, 0x0C]), Ok(vec![4, 0x90, 0]));
        // Any password of the same length matches the masked bytes.
        let other = [&[0x00, 0x20, 0x00, 0x80, 0x08][..], b"OTHER123"].concat();
        assert_eq!(replay.transmit(&other), Ok(vec![13, 0x90, 0]));
        assert_eq!(
            replay.transmit(&[0xFF, 0, 0, 0]),
            Err(TransportError::CardRemoved)
        );
        assert!(matches!(
            replay.transmit(&[0, 0, 0, 0]),
            Err(TransportError::TraceMismatch { index: 3, .. })
        ));
    }

    /// A card whose EF 0001 is a (fake) holder certificate and EF 0002 a (fake) CA one.
    #[derive(Default)]
    struct CertCard {
        selected: u8,
    }
    const CERT: &[u8] = b"\x30\x82\x01\x04 NAME ADDRESS BIRTH SEX";
    const CA_CERT: &[u8] = b"\x30\x82\x01\x04 J-LIS CA";
    impl Transport for CertCard {
        fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
            let file = if self.selected == 1 { CERT } else { CA_CERT };
            Ok(match command.get(1) {
                Some(0xA4) => {
                    self.selected = command.get(6).copied().unwrap_or(0);
                    vec![0x90, 0x00]
                }
                Some(0xB0) if command.get(2) == Some(&0x7F) => vec![0x6B, 0x00],
                Some(0xB0) | Some(0xC0) => [file, &[0x90, 0x00]].concat(),
                _ => vec![0x90, 0x00],
            })
        }
        fn atr(&self) -> &[u8] {
            &[0x3B, 0x02]
        }
        fn reader_name(&self) -> &str {
            "Some Reader 00 00"
        }
        fn card_present(&mut self) -> Result<bool, TransportError> {
            Ok(true)
        }
    }

    const SELECT_TOKEN_INFO: [u8; 7] = [0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x06];
    const SELECT_CERT: [u8; 7] = [0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x01];
    const SELECT_CA: [u8; 7] = [0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x02];
    const READ: [u8; 7] = [0x00, 0xB0, 0x00, 0x00, 0x00, 0x00, 0x00];
    const READ_PAST_END: [u8; 5] = [0x00, 0xB0, 0x7F, 0x00, 0x10];

    fn record(source: TraceSource, certificate: CertificateBytes) -> Trace {
        let (mut rec, handle) = Recorder::new(CertCard::default(), source, certificate);
        for command in [
            &SELECT_TOKEN_INFO[..],
            &READ,
            &SELECT_CERT,
            &READ_PAST_END,
            &READ,
            &[0x00, 0xC0, 0x00, 0x00, 0x10],
            &SELECT_CA,
            &READ,
        ] {
            rec.transmit(command).expect("answer");
        }
        handle.snapshot()
    }

    #[test]
    fn a_real_cards_certificate_is_withheld_and_only_its_hash_kept() {
        let trace = record(TraceSource::Reader, CertificateBytes::Withhold);
        assert_eq!(trace.source, Some(TraceSource::Reader));
        let json = trace.to_json();
        assert!(!json.contains(&hex::encode(b"NAME ADDRESS")), "{json}");
        assert!(json.contains(&hex::encode(b"J-LIS CA")), "{json}");
        let kinds: Vec<&str> = trace
            .events
            .iter()
            .map(|e| match e {
                TraceEvent::Exchange { .. } => "exchange",
                TraceEvent::Withheld { .. } => "withheld",
                _ => "other",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "exchange", "exchange", // token info: not personal
                "exchange", "exchange", // select, and a bare status word
                "withheld", "withheld", // the certificate's bytes, GET RESPONSE too
                "exchange", "exchange", // the CA certificate is public
            ]
        );
        let full = [CERT, &[0x90, 0x00]].concat();
        assert!(matches!(
            &trace.events[4],
            TraceEvent::Withheld { response_sha256: h, .. } if *h == response_sha256(&full)
        ));

        // The replay answers up to the certificate, then stops with its own error.
        let mut replay = Replay::from_bytes(json.as_bytes()).expect("trace");
        for command in [&SELECT_TOKEN_INFO[..], &READ, &SELECT_CERT, &READ_PAST_END] {
            replay.transmit(command).expect("recorded");
        }
        assert_eq!(
            replay.transmit(&READ),
            Err(TransportError::TraceCertificateWithheld { index: 4 })
        );
        // Another command at that point is still a mismatch, not a withheld certificate.
        let mut replay = Replay::from_bytes(json.as_bytes()).expect("trace");
        for command in [&SELECT_TOKEN_INFO[..], &READ, &SELECT_CERT, &READ_PAST_END] {
            replay.transmit(command).expect("recorded");
        }
        assert!(matches!(
            replay.transmit(&SELECT_CA),
            Err(TransportError::TraceMismatch { index: 4, .. })
        ));
    }

    #[test]
    fn the_certificate_is_kept_when_asked_or_simulated() {
        for (source, certificate) in [
            (TraceSource::Reader, CertificateBytes::Keep),
            (TraceSource::Simulated, CertificateBytes::Withhold),
        ] {
            let trace = record(source, certificate);
            assert_eq!(trace.source, Some(source));
            assert!(
                trace
                    .events
                    .iter()
                    .all(|e| matches!(e, TraceEvent::Exchange { .. })),
                "{source:?} {certificate:?}"
            );
            assert!(trace.to_json().contains(&hex::encode(b"NAME ADDRESS")));
        }
    }

    #[test]
    fn mismatch_reports_index_and_masks_the_actual_command() {
        let (mut rec, handle) =
            Recorder::new(Echo, TraceSource::Simulated, CertificateBytes::Withhold);
        rec.transmit(&[0, 0xA4, 4, 0x0C]).expect("echo");
        let mut replay = Replay::new(handle.snapshot()).expect("trace");
        let verify = [&[0x00, 0x20, 0x00, 0x80, 0x06][..], b"SECRET"].concat();
        match replay.transmit(&verify) {
            Err(TransportError::TraceMismatch {
                index,
                expected,
                actual,
            }) => {
                assert_eq!(index, 0);
                assert_eq!(expected, "00a4040c");
                assert_eq!(actual, "0020008006XXXXXXXXXXXX");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
