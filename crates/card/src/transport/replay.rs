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
    use crate::transport::Recorder;

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
        let (mut rec, handle) = Recorder::new(Echo);
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

    #[test]
    fn mismatch_reports_index_and_masks_the_actual_command() {
        let (mut rec, handle) = Recorder::new(Echo);
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
