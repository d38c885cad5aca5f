//! [`SimTransport`]: the simulated card behind the card crate's `Transport` trait, with
//! presence, removal and per-APDU latency.

use std::sync::{Arc, Mutex, MutexGuard};

use mynalink_card::transport::{Transport, TransportError};

use crate::card::{SimOptions, SimulatedCard, ATR};

const READER_NAME: &str = "mynalink simulated card";
const INS_SIGN: u8 = 0x2A;

/// The card plus what the reader knows about it.
struct Slot {
    card: SimulatedCard,
    present: bool,
    /// APDUs transmitted to the card since it was made.
    transmitted: usize,
    /// One-shot removal trigger: the card leaves after this many APDUs in total.
    remove_after: Option<usize>,
}

impl Slot {
    fn remove(&mut self) {
        if self.present {
            self.present = false;
            // Leaving the field ends the power session.
            self.card.power_down();
        }
    }
}

/// A shared view of the simulated card and its reader slot, for tests and the GUI demo.
#[derive(Clone)]
pub struct SimHandle {
    slot: Arc<Mutex<Slot>>,
}

impl SimHandle {
    /// A poisoned lock only means another thread panicked mid-call; the card state is
    /// still consistent enough for a simulation, so keep going.
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` with the card, e.g. to inspect counters or the command log.
    pub fn with_card<R>(&self, f: impl FnOnce(&mut SimulatedCard) -> R) -> R {
        f(&mut self.lock().card)
    }

    /// Takes the card out of the reader: transmits fail with `CardRemoved` and the card
    /// powers down (verified states are lost, retry counters stay).
    pub fn remove(&self) {
        self.lock().remove();
    }

    /// Puts the card back; the next APDU starts a fresh power session.
    pub fn insert(&self) {
        self.lock().present = true;
    }

    pub fn is_present(&self) -> bool {
        self.lock().present
    }

    /// Another transport to the same card, like a new connection to the same reader.
    pub fn transport(&self) -> SimTransport {
        SimTransport {
            handle: self.clone(),
        }
    }
}

/// A [`Transport`] to a [`SimulatedCard`].
pub struct SimTransport {
    handle: SimHandle,
}

impl SimTransport {
    pub fn new(options: SimOptions) -> Self {
        let remove_after = options.remove_after_apdus;
        let slot = Slot {
            card: SimulatedCard::new(options),
            present: true,
            transmitted: 0,
            remove_after,
        };
        SimTransport {
            handle: SimHandle {
                slot: Arc::new(Mutex::new(slot)),
            },
        }
    }

    pub fn handle(&self) -> SimHandle {
        self.handle.clone()
    }
}

impl std::fmt::Debug for SimTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimTransport")
            .field("present", &self.handle.is_present())
            .finish_non_exhaustive()
    }
}

impl Transport for SimTransport {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        let latency = {
            let mut slot = self.handle.lock();
            if !slot.present {
                return Err(TransportError::CardRemoved);
            }
            if slot.remove_after.is_some_and(|n| slot.transmitted >= n) {
                slot.remove_after = None;
                slot.remove();
                return Err(TransportError::CardRemoved);
            }
            slot.transmitted += 1;
            let options = slot.card.options();
            let mut latency = options.apdu_latency;
            if command.get(1) == Some(&INS_SIGN) {
                latency += options.sign_latency;
            }
            latency
        };
        // Sleep without the lock so the handle stays usable (e.g. removal mid-command).
        if !latency.is_zero() {
            std::thread::sleep(latency);
        }
        let mut slot = self.handle.lock();
        if !slot.present {
            return Err(TransportError::CardRemoved);
        }
        Ok(slot.card.process(command))
    }

    fn atr(&self) -> &[u8] {
        &ATR
    }

    fn reader_name(&self) -> &str {
        READER_NAME
    }

    fn card_present(&mut self) -> Result<bool, TransportError> {
        Ok(self.handle.is_present())
    }

    /// Powers the card down. The transport stays usable: a later transmit starts a fresh
    /// power session, as reconnecting to a reader would.
    fn end_session(&mut self) -> Result<(), TransportError> {
        self.handle.with_card(SimulatedCard::power_down);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    const SELECT_JPKI: &[u8] = &[
        0x00, 0xA4, 0x04, 0x0C, 0x0A, 0xD3, 0x92, 0xF0, 0x00, 0x26, 0x01, 0x00, 0x00, 0x00, 0x01,
    ];
    const SELECT_SIGN_PIN: &[u8] = &[0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x1B];
    const SELECT_SIGN_CERT: &[u8] = &[0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x01];

    fn verify(password: &str) -> Vec<u8> {
        let mut apdu = vec![0x00, 0x20, 0x00, 0x80, password.len() as u8];
        apdu.extend_from_slice(password.as_bytes());
        apdu
    }

    fn sw(response: &[u8]) -> u16 {
        let n = response.len();
        u16::from_be_bytes([response[n - 2], response[n - 1]])
    }

    #[test]
    fn basics() {
        let mut t = SimTransport::new(SimOptions::default());
        assert_eq!(t.atr(), ATR);
        assert_eq!(t.reader_name(), "mynalink simulated card");
        assert_eq!(t.card_present(), Ok(true));
        assert_eq!(sw(&t.transmit(SELECT_JPKI).unwrap()), 0x9000);
        let handle = t.handle();
        assert_eq!(handle.with_card(|c| c.commands().len()), 1);
    }

    #[test]
    fn end_session_powers_down() {
        let mut t = SimTransport::new(SimOptions::default());
        t.transmit(SELECT_JPKI).unwrap();
        t.transmit(SELECT_SIGN_PIN).unwrap();
        assert_eq!(sw(&t.transmit(&verify("TEST1234")).unwrap()), 0x9000);
        t.end_session().unwrap();
        assert!(!t.handle().with_card(|c| c.signing_verified()));
        // a new power session: nothing selected, password no longer verified
        assert_eq!(sw(&t.transmit(SELECT_SIGN_CERT).unwrap()), 0x6A82);
        t.transmit(SELECT_JPKI).unwrap();
        t.transmit(SELECT_SIGN_CERT).unwrap();
        assert_eq!(
            sw(&t.transmit(&[0x00, 0xB0, 0x00, 0x00, 0x04]).unwrap()),
            0x6982
        );
    }

    #[test]
    fn removal_and_reinsertion() {
        let mut t = SimTransport::new(SimOptions::default());
        let handle = t.handle();
        t.transmit(SELECT_JPKI).unwrap();
        t.transmit(SELECT_SIGN_PIN).unwrap();
        assert_eq!(sw(&t.transmit(&verify("WRONG1")).unwrap()), 0x63C4);
        t.transmit(&verify("TEST1234")).unwrap();
        handle.remove();
        assert!(!handle.is_present());
        assert_eq!(t.card_present(), Ok(false));
        assert_eq!(t.transmit(SELECT_JPKI), Err(TransportError::CardRemoved));
        handle.insert();
        assert!(handle.is_present());
        assert!(!handle.with_card(|c| c.signing_verified()));
        t.transmit(SELECT_JPKI).unwrap();
        t.transmit(SELECT_SIGN_PIN).unwrap();
        // counters survive removal
        assert_eq!(sw(&t.transmit(&[0x00, 0x20, 0x00, 0x80]).unwrap()), 0x63C5);
        t.transmit(&verify("WRONG1")).unwrap();
        handle.remove();
        handle.insert();
        let mut other = handle.transport();
        other.transmit(SELECT_JPKI).unwrap();
        other.transmit(SELECT_SIGN_PIN).unwrap();
        assert_eq!(
            sw(&other.transmit(&[0x00, 0x20, 0x00, 0x80]).unwrap()),
            0x63C4
        );
    }

    #[test]
    fn remove_after_apdus() {
        let mut t = SimTransport::new(SimOptions {
            remove_after_apdus: Some(2),
            ..SimOptions::default()
        });
        let handle = t.handle();
        t.transmit(SELECT_JPKI).unwrap();
        t.transmit(SELECT_SIGN_PIN).unwrap();
        assert_eq!(
            t.transmit(&verify("TEST1234")),
            Err(TransportError::CardRemoved)
        );
        assert_eq!(t.transmit(SELECT_JPKI), Err(TransportError::CardRemoved));
        assert!(!handle.is_present());
        // the command that found the card gone never reached it
        assert_eq!(handle.with_card(|c| c.verify_attempts()), 0);
        assert_eq!(handle.with_card(|c| c.commands().len()), 2);
        // the trigger fires once; a re-inserted card works
        handle.insert();
        assert_eq!(sw(&t.transmit(SELECT_JPKI).unwrap()), 0x9000);
    }

    #[test]
    fn latency_is_applied() {
        let mut t = SimTransport::new(SimOptions {
            apdu_latency: Duration::from_millis(20),
            sign_latency: Duration::from_millis(60),
            ..SimOptions::default()
        });
        let start = Instant::now();
        t.transmit(SELECT_JPKI).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(20));
        let start = Instant::now();
        // not verified, but the card still takes its time
        t.transmit(&[0x80, 0x2A, 0x00, 0x80, 0x01, 0x00, 0x00])
            .unwrap();
        assert!(start.elapsed() >= Duration::from_millis(80));
    }

    #[test]
    fn removal_during_latency() {
        let mut t = SimTransport::new(SimOptions {
            apdu_latency: Duration::from_millis(200),
            ..SimOptions::default()
        });
        let handle = t.handle();
        let remover = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            handle.remove();
        });
        assert_eq!(t.transmit(SELECT_JPKI), Err(TransportError::CardRemoved));
        remover.join().unwrap();
    }

    #[test]
    fn poisoned_lock_is_recovered() {
        let t = SimTransport::new(SimOptions::default());
        let handle = t.handle();
        let h2 = handle.clone();
        let _ = std::thread::spawn(move || {
            h2.with_card(|_| panic!("poison the lock"));
        })
        .join();
        assert!(handle.is_present());
        assert_eq!(handle.with_card(|c| c.signing_tries()), 5);
    }

    #[test]
    fn handles_cross_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        fn assert_send<T: Send>() {}
        assert_send_sync::<SimHandle>();
        assert_send::<SimTransport>();
    }

    #[test]
    fn usable_as_boxed_transport() {
        let mut boxed: Box<dyn Transport> = Box::new(SimTransport::new(SimOptions::default()));
        assert_eq!(sw(&boxed.transmit(SELECT_JPKI).unwrap()), 0x9000);
    }
}
