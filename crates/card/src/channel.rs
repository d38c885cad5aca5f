//! One place where every command passes: the allow-list, GET RESPONSE (`61xx`),
//! wrong-Le resends (`6Cxx`), and the counters that benchmarks and reports use.

use std::time::{Duration, Instant};

use crate::allowlist::{self, Effect, Selection, INS_GET_RESPONSE, INS_VERIFY};
use crate::apdu::{Command, Response, StatusWord};
use crate::error::CardError;
use crate::transport::{Transport, TransportError};

/// Upper bound on chained GET RESPONSE data, far above any JPKI object.
const MAX_CHAINED_RESPONSE: usize = 65536 + 256;

/// What went over the wire in this session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelStats {
    pub apdus: usize,
    pub bytes_sent: usize,
    pub bytes_received: usize,
    pub card_time: Duration,
}

pub struct CardChannel<T: Transport> {
    transport: T,
    selection: Selection,
    stats: ChannelStats,
}

impl<T: Transport> CardChannel<T> {
    pub fn new(transport: T) -> Self {
        CardChannel {
            transport,
            selection: Selection::default(),
            stats: ChannelStats::default(),
        }
    }

    pub fn selection(&self) -> Selection {
        self.selection
    }

    pub fn stats(&self) -> &ChannelStats {
        &self.stats
    }

    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Only for this crate: outside it, commands go through [`CardChannel::transmit`] and
    /// its allow-list.
    pub(crate) fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    pub fn into_transport(self) -> T {
        self.transport
    }

    /// Sends a command the allow-list permits and returns the card's final answer.
    ///
    /// `61xx` is followed by GET RESPONSE and `6Cxx` by one resend with the right Le —
    /// except for VERIFY, which is sent exactly once and answered as it came.
    pub fn send(&mut self, command: &Command) -> Result<Response, CardError> {
        let effect = allowlist::check(command, self.selection).map_err(CardError::Refused)?;
        let result = self.exchange_with_recovery(command);
        self.track_selection(effect, &result);
        result
    }

    fn exchange_with_recovery(&mut self, command: &Command) -> Result<Response, CardError> {
        let mut response = self.exchange(&command.encode())?;
        if command.ins == INS_VERIFY {
            return Ok(response);
        }
        if response.sw.sw1() == 0x6C {
            let le = match response.sw.sw2() {
                0 => 256,
                n => usize::from(n),
            };
            let retry = command.clone().with_le(le);
            response = self.exchange(&retry.encode())?;
        }
        if response.sw.sw1() == 0x61 {
            response = self.collect_response(response)?;
        }
        Ok(response)
    }

    fn collect_response(&mut self, first: Response) -> Result<Response, CardError> {
        let mut data = first.data;
        let mut sw = first.sw;
        while sw.sw1() == 0x61 {
            let le = match sw.sw2() {
                0 => 256,
                n => usize::from(n),
            };
            let get = Command::new(0x00, INS_GET_RESPONSE, 0, 0).with_le(le);
            let part = self.exchange(&get.encode())?;
            data.extend_from_slice(&part.data);
            sw = part.sw;
            if data.len() > MAX_CHAINED_RESPONSE {
                return Err(CardError::BadResponse {
                    command: "GET RESPONSE",
                    detail: format!("more than {MAX_CHAINED_RESPONSE} bytes chained"),
                });
            }
        }
        Ok(Response { data, sw })
    }

    fn exchange(&mut self, bytes: &[u8]) -> Result<Response, TransportError> {
        let started = Instant::now();
        let outcome = self.transport.transmit(bytes);
        self.stats.card_time += started.elapsed();
        self.stats.apdus += 1;
        self.stats.bytes_sent += bytes.len();
        let raw = outcome?;
        self.stats.bytes_received += raw.len();
        Response::from_bytes(raw).ok_or(TransportError::CardRemoved)
    }

    fn track_selection(&mut self, effect: Effect, result: &Result<Response, CardError>) {
        let ok = matches!(result, Ok(r) if r.sw == StatusWord::OK);
        match effect {
            Effect::SelectsApplication(aid) => {
                self.selection = Selection {
                    application: ok.then_some(aid),
                    ef: None,
                };
            }
            Effect::SelectsEf(fid) => self.selection.ef = ok.then_some(fid),
            Effect::None => {}
        }
        if matches!(result, Err(CardError::Transport(_))) {
            // After a lost exchange nothing is known about the card's state.
            self.selection = Selection::default();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::profile::{JPKI_AID, MY_NUMBER_CARD};

    mod ef {
        use crate::profile::MY_NUMBER_CARD;
        pub const SIGNING_CERTIFICATE: u16 = MY_NUMBER_CARD.files.signing_certificate;
        pub const SIGNING_PASSWORD: u16 = MY_NUMBER_CARD.files.signing_password;
        pub const TOKEN_INFO: u16 = MY_NUMBER_CARD.files.token_info;
    }
    use std::collections::VecDeque;

    /// A scripted transport: answers in order and remembers what it was sent.
    pub(crate) struct Script {
        pub answers: VecDeque<Result<Vec<u8>, TransportError>>,
        pub sent: Vec<Vec<u8>>,
    }

    impl Script {
        pub(crate) fn new(answers: Vec<Result<Vec<u8>, TransportError>>) -> Self {
            Script {
                answers: answers.into(),
                sent: Vec::new(),
            }
        }
    }

    impl Transport for Script {
        fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
            self.sent.push(command.to_vec());
            self.answers
                .pop_front()
                .unwrap_or(Err(TransportError::CardRemoved))
        }
        fn atr(&self) -> &[u8] {
            &[0x3B, 0x00]
        }
        fn reader_name(&self) -> &str {
            "script"
        }
        fn card_present(&mut self) -> Result<bool, TransportError> {
            Ok(true)
        }
    }

    fn select_jpki() -> Command {
        Command::new(0, 0xA4, 4, 0x0C).with_data(&JPKI_AID)
    }

    #[test]
    fn refused_commands_never_reach_the_card() {
        let mut ch = CardChannel::new(Script::new(vec![]));
        let kenhojo = Command::new(0, 0xA4, 4, 0x0C)
            .with_data(&[0xD3, 0x92, 0x10, 0x00, 0x31, 0x00, 0x01, 0x01, 0x04, 0x08]);
        assert!(matches!(ch.send(&kenhojo), Err(CardError::Refused(_))));
        let read = Command::new(0, 0xB0, 0, 0).with_le(256);
        assert!(matches!(ch.send(&read), Err(CardError::Refused(_))));
        assert!(ch.transport().sent.is_empty());
        assert_eq!(ch.stats().apdus, 0);
    }

    #[test]
    fn get_response_loop_collects_everything() {
        let mut ch = CardChannel::new(Script::new(vec![
            Ok(vec![0x90, 0x00]),
            Ok(vec![0x90, 0x00]),
            Ok(vec![0x61, 0x00]),
            Ok([vec![1; 256], vec![0x61, 0x02]].concat()),
            Ok(vec![2, 3, 0x90, 0x00]),
        ]));
        ch.send(&select_jpki()).expect("select");
        let sel = Command::new(0, 0xA4, 2, 0x0C).with_data(&ef::SIGNING_CERTIFICATE.to_be_bytes());
        ch.send(&sel).expect("select ef");
        let r = ch
            .send(&Command::new(0, 0xB0, 0, 0).with_le(256))
            .expect("read");
        assert_eq!(r.data.len(), 258);
        assert!(r.sw.is_ok());
        let sent = &ch.transport().sent;
        assert_eq!(sent[3], [0x00, 0xC0, 0x00, 0x00, 0x00]);
        assert_eq!(sent[4], [0x00, 0xC0, 0x00, 0x00, 0x02]);
        assert_eq!(ch.stats().apdus, 5);
    }

    #[test]
    fn wrong_le_is_resent_once_with_the_right_le() {
        let mut ch = CardChannel::new(Script::new(vec![
            Ok(vec![0x90, 0x00]),
            Ok(vec![0x90, 0x00]),
            Ok(vec![0x6C, 0x10]),
            Ok([vec![7; 16], vec![0x90, 0x00]].concat()),
        ]));
        ch.send(&select_jpki()).expect("select");
        let sel = Command::new(0, 0xA4, 2, 0x0C).with_data(&ef::TOKEN_INFO.to_be_bytes());
        ch.send(&sel).expect("select ef");
        let r = ch
            .send(&Command::new(0, 0xB0, 0, 0).with_le(32))
            .expect("read");
        assert_eq!(r.data, vec![7; 16]);
        assert_eq!(ch.transport().sent[3], [0, 0xB0, 0, 0, 0x10]);
    }

    #[test]
    fn verify_is_never_resent_or_continued() {
        let mut ch = CardChannel::new(Script::new(vec![
            Ok(vec![0x90, 0x00]),
            Ok(vec![0x90, 0x00]),
            Ok(vec![0x61, 0x00]),
        ]));
        ch.send(&select_jpki()).expect("select");
        let sel = Command::new(0, 0xA4, 2, 0x0C).with_data(&ef::SIGNING_PASSWORD.to_be_bytes());
        ch.send(&sel).expect("select ef");
        let verify = Command::new(0, 0x20, 0, 0x80).with_data(b"TEST1234");
        let r = ch.send(&verify).expect("verify");
        assert_eq!(r.sw, StatusWord(0x6100));
        assert_eq!(ch.transport().sent.len(), 3);
    }

    #[test]
    fn short_response_is_card_removed_and_forgets_selection() {
        let mut ch = CardChannel::new(Script::new(vec![Ok(vec![0x90, 0x00]), Ok(vec![0x90])]));
        ch.send(&select_jpki()).expect("select");
        let sel = Command::new(0, 0xA4, 2, 0x0C).with_data(&ef::TOKEN_INFO.to_be_bytes());
        assert_eq!(
            ch.send(&sel),
            Err(CardError::Transport(TransportError::CardRemoved))
        );
        assert_eq!(ch.selection(), Selection::default());
    }

    #[test]
    fn failed_select_clears_the_current_file() {
        let mut ch = CardChannel::new(Script::new(vec![
            Ok(vec![0x90, 0x00]),
            Ok(vec![0x90, 0x00]),
            Ok(vec![0x6A, 0x82]),
        ]));
        ch.send(&select_jpki()).expect("select");
        let sel = |fid: u16| Command::new(0, 0xA4, 2, 0x0C).with_data(&fid.to_be_bytes());
        ch.send(&sel(ef::TOKEN_INFO)).expect("select ef");
        assert_eq!(ch.selection().ef, Some(ef::TOKEN_INFO));
        let r = ch.send(&sel(ef::SIGNING_CERTIFICATE)).expect("answered");
        assert_eq!(r.sw, StatusWord(0x6A82));
        assert_eq!(ch.selection().ef, None);
        assert_eq!(ch.selection().application, Some(MY_NUMBER_CARD.aid));
    }
}
