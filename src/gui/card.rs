//! The card side of the window: a worker thread that owns the reader connection and the
//! first-stage session, and what the window is allowed to see of the certificate.

use mynalink_card::{PasswordStatus, SigningPassword, Transport};
use mynalink_link::certificate::Basic4;
use mynalink_link::trust::TrustStore;
use mynalink_link::{ErrorCode, FirstStage, FlowError, FlowInputs, SignedStatement};
use mynalink_simcard::SimHandle;
use zeroize::Zeroizing;

use super::worker::{Worker, WorkerGone};
use crate::source::{self, Choice};

/// Where the card is read.
#[derive(Clone)]
pub enum CardSource {
    /// The built-in simulated card, inserted and removed from the demo controls.
    Simulated(SimHandle),
    /// A PC/SC reader (named, or the only one holding a My Number card).
    Reader(Option<String>),
}

impl std::fmt::Debug for CardSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CardSource::Simulated(_) => f.write_str("Simulated"),
            CardSource::Reader(name) => write!(f, "Reader({name:?})"),
        }
    }
}

/// What staff see of the signing certificate. The holder's name, birth date and address are
/// shown for comparison with the license record and never stored; they are wiped from
/// memory when the view is dropped.
#[derive(Debug, Clone)]
pub struct CertificateView {
    pub serial_hex: String,
    pub serial_decimal: String,
    /// Japan time, `YYYY-MM-DD HH:MM`.
    pub not_before: String,
    pub not_after: String,
    pub days_left: i64,
    pub name: Zeroizing<String>,
    pub birth_date: Zeroizing<String>,
    pub address: Zeroizing<String>,
    /// The certificate marks substitute characters in the name (外字): staff must compare
    /// the name with the license record by eye.
    pub name_has_substitutes: bool,
}

impl CertificateView {
    fn new(
        flow_cert: &mynalink_link::certificate::SigningCertificate,
        at: time::OffsetDateTime,
    ) -> Self {
        let basic4: Option<Basic4> = flow_cert.basic4().ok();
        let (name, birth_date, address, substitutes) = match &basic4 {
            Some(b) => (
                b.name.clone(),
                b.birth_date
                    .as_ref()
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
                b.address.clone().unwrap_or_default(),
                b.uses_substitute_characters(),
            ),
            None => Default::default(),
        };
        CertificateView {
            serial_hex: flow_cert.serial_hex(),
            serial_decimal: flow_cert.serial_decimal(),
            not_before: super::shared::format_local(flow_cert.not_before()),
            not_after: super::shared::format_local(flow_cert.not_after()),
            days_left: flow_cert.days_left(at),
            name: Zeroizing::new(name),
            birth_date: Zeroizing::new(birth_date),
            address: Zeroizing::new(address),
            name_has_substitutes: substitutes,
        }
    }

    /// Whether the certificate's address lies outside `prefecture` (§4: the license center
    /// of the holder's address). Unknown addresses are not flagged.
    pub fn outside_prefecture(&self, prefecture: &str) -> bool {
        !prefecture.is_empty() && !self.address.is_empty() && !self.address.starts_with(prefecture)
    }
}

/// The worker's state: the source and, during one person's turn, the session.
pub struct CardStation {
    source: CardSource,
    trust: TrustStore,
    flow: Option<FirstStage<Box<dyn Transport>>>,
}

fn gone(_: WorkerGone) -> FlowError {
    FlowError::new(ErrorCode::CardError).with_detail("the card worker stopped")
}

#[derive(Debug, Clone)]
pub struct Card {
    worker: Worker<CardStation>,
    pub source: CardSource,
}

impl Card {
    pub fn start(source: CardSource, trust: TrustStore) -> std::io::Result<Card> {
        let station_source = source.clone();
        let worker = Worker::spawn("mynalink-card", move || CardStation {
            source: station_source,
            trust,
            flow: None,
        })?;
        Ok(Card { worker, source })
    }

    /// Opens the card and starts a session: JPKI application, token, tries left.
    pub async fn begin(self, inputs: FlowInputs) -> Result<PasswordStatus, FlowError> {
        self.worker
            .run(move |station| station.begin(inputs))
            .await
            .map_err(gone)?
    }

    pub async fn verify(
        self,
        password: SigningPassword,
        confirm_last_try: bool,
    ) -> Result<(), FlowError> {
        self.worker
            .run(move |station| {
                let flow = station.flow()?;
                flow.verify_password(&password, confirm_last_try)
            })
            .await
            .map_err(gone)?
    }

    pub async fn read_certificate(self) -> Result<CertificateView, FlowError> {
        self.worker
            .run(move |station| {
                let flow = station.flow()?;
                let at = time::OffsetDateTime::now_utc();
                let certificate = flow.read_certificate()?;
                Ok(CertificateView::new(certificate, at))
            })
            .await
            .map_err(gone)?
    }

    pub async fn sign(self) -> Result<SignedStatement, FlowError> {
        self.worker
            .run(move |station| {
                let flow = station.flow()?;
                flow.sign().cloned()
            })
            .await
            .map_err(gone)?
    }

    /// Powers the card down and forgets the session (no verified state remains).
    pub async fn end(self) {
        let _ = self.worker.run(|station| station.end()).await;
    }
}

impl CardStation {
    fn flow(&mut self) -> Result<&mut FirstStage<Box<dyn Transport>>, FlowError> {
        self.flow
            .as_mut()
            .ok_or_else(|| FlowError::new(ErrorCode::NoCard).with_detail("no card session"))
    }

    fn begin(&mut self, inputs: FlowInputs) -> Result<PasswordStatus, FlowError> {
        self.end();
        let transport: Box<dyn Transport> = match &self.source {
            CardSource::Simulated(handle) => {
                if !handle.is_present() {
                    return Err(FlowError::new(ErrorCode::NoCard));
                }
                Box::new(handle.transport())
            }
            CardSource::Reader(name) => {
                let choice = Choice::Reader(name.clone());
                source::open(&choice, &Default::default(), None)?.transport
            }
        };
        let mut flow = FirstStage::new(transport, inputs, self.trust.clone())?;
        let status = flow.check_card();
        self.flow = Some(flow);
        status
    }

    fn end(&mut self) {
        if let Some(mut flow) = self.flow.take() {
            flow.end();
        }
    }
}

/// The simulated card served through vpcd to the real pcscd that `cargo xtask test` starts,
/// for the window's tests on a real reader. The end-to-end tests under `tests/` run in other
/// processes, one test binary at a time, so the second reader is free here.
#[cfg(test)]
pub(crate) mod served_card {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;

    use mynalink_simcard::vpcd::{serve, VcardError, VcardOptions};
    use mynalink_simcard::{SimOptions, SimulatedCard};

    use super::*;

    pub const READER: &str = "Virtual PCD 00 01";
    const PORT: u16 = 35964;

    pub struct ServedCard {
        pub card: Arc<Mutex<SimulatedCard>>,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<Result<(), VcardError>>>,
    }

    impl ServedCard {
        /// Puts a default simulated card in [`READER`]; fails without pcscd.
        pub fn insert() -> ServedCard {
            assert!(
                std::env::var_os("MYNALINK_TEST_PCSCD").is_some(),
                "runs through the real pcscd: use `cargo xtask test`, which starts it"
            );
            let card = Arc::new(Mutex::new(SimulatedCard::new(SimOptions::default())));
            let stop = Arc::new(AtomicBool::new(false));
            let thread = {
                let (card, stop) = (card.clone(), stop.clone());
                std::thread::spawn(move || {
                    let options = VcardOptions {
                        port: PORT,
                        ..VcardOptions::default()
                    };
                    serve(card, &options, &stop, &mut |_| {})
                })
            };
            ServedCard {
                card,
                stop,
                thread: Some(thread),
            }
        }

        /// Takes the card out of the reader.
        pub fn remove(mut self) {
            self.stop.store(true, Ordering::SeqCst);
            if let Some(thread) = self.thread.take() {
                thread.join().expect("vcard thread").expect("vcard served");
            }
        }
    }

    /// The card worker on [`READER`], trusting the simulated card's TEST root.
    pub fn reader_worker() -> Card {
        let trust = crate::source::trust_store([], [], true).expect("test root");
        Card::start(CardSource::Reader(Some(READER.into())), trust).expect("card worker")
    }
}

/// The window's card side through the real pcscd and the vpcd virtual reader: the reader
/// events the status bar shows, and the first stage run by the card worker exactly as the
/// window drives it.
#[cfg(test)]
mod pcsc_tests {
    use std::time::{Duration, Instant};

    use mynalink_card::events::{CardEvent, Watcher};

    use super::served_card::{reader_worker, ServedCard, READER};
    use super::*;
    use crate::gui::shared::Presence;

    fn wait_for(
        events: &std::sync::mpsc::Receiver<CardEvent>,
        presence: &mut Presence,
        want: Option<bool>,
    ) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while presence.card_present != want {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = events
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no event bringing card_present to {want:?}"));
            if matches!(&event, CardEvent::CardInserted { reader, .. } | CardEvent::CardRemoved { reader } if reader != READER)
            {
                continue;
            }
            presence.apply(&event);
        }
    }

    #[test]
    fn the_window_card_worker_runs_the_first_stage_through_pcscd() {
        let (watcher, events) = Watcher::with_channel().expect("watcher");
        let mut presence = Presence::default();
        let served = ServedCard::insert();
        wait_for(&events, &mut presence, Some(true));
        assert_eq!(presence.reader.as_deref(), Some(READER));

        let worker = reader_worker();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let inputs = FlowInputs::fresh(crate::demo::DEMO_LICENSE, "pcsc-test", None, None);
        let status = rt
            .block_on(worker.clone().begin(inputs))
            .expect("card check");
        assert_eq!(status, PasswordStatus::Tries(5));
        let password = SigningPassword::parse("TEST1234").expect("format");
        rt.block_on(worker.clone().verify(password, false))
            .expect("verify");
        let view = rt
            .block_on(worker.clone().read_certificate())
            .expect("certificate");
        assert_eq!(view.name.as_str(), "試験　花子");
        assert_eq!(view.birth_date.as_str(), "1990-01-02");
        let signed = rt.block_on(worker.clone().sign()).expect("signature");
        assert_eq!(signed.statement.license_number, crate::demo::DEMO_LICENSE);
        rt.block_on(worker.clone().end());
        // pcscd passes the power-down to the virtual card after the disconnect returns.
        let deadline = Instant::now() + Duration::from_secs(5);
        while served
            .card
            .lock()
            .map(|c| c.signing_verified())
            .unwrap_or(true)
        {
            assert!(
                Instant::now() < deadline,
                "the session ended: no verified state may be left on the card"
            );
            std::thread::sleep(Duration::from_millis(10));
        }

        // Taking the card out is seen by the status bar's event stream.
        served.remove();
        wait_for(&events, &mut presence, Some(false));
        watcher.stop();
    }
}
