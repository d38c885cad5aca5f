//! A transport wrapper that writes every exchange into a trace, passwords masked and, from a
//! real card, the signing certificate (the holder's basic-4 information) withheld.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::{Transport, TransportError};
use crate::trace::{
    mask_command, response_sha256, CertificateTracker, Trace, TraceEvent, TraceSource,
};

/// Whether a trace keeps the signing certificate's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateBytes {
    /// Only their SHA-256, unless the source is the simulated card (which holds no one's
    /// data). The default for every recording.
    Withhold,
    /// Kept as they came (`--record-certificate`: an explicit choice to write a holder's
    /// name, address, birth date and sex into the file).
    Keep,
}

/// Shared access to the trace being recorded; outlives the transport so a trace can be
/// saved even when the flow failed halfway.
#[derive(Clone)]
pub struct TraceHandle(Arc<Mutex<Trace>>);

impl TraceHandle {
    pub fn snapshot(&self) -> Trace {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

pub struct Recorder<T: Transport> {
    inner: T,
    trace: TraceHandle,
    withhold: bool,
    tracker: CertificateTracker,
}

impl<T: Transport> Recorder<T> {
    /// Records what `inner` (a card from `source`) answers.
    pub fn new(
        inner: T,
        source: TraceSource,
        certificate: CertificateBytes,
    ) -> (Recorder<T>, TraceHandle) {
        let trace = TraceHandle(Arc::new(Mutex::new(Trace::new(
            inner.reader_name(),
            inner.atr(),
            source,
        ))));
        let withhold =
            certificate == CertificateBytes::Withhold && source != TraceSource::Simulated;
        (
            Recorder {
                inner,
                trace: trace.clone(),
                withhold,
                tracker: CertificateTracker::default(),
            },
            trace,
        )
    }

    pub fn inner(&self) -> &T {
        &self.inner
    }
}

impl<T: Transport> Transport for Recorder<T> {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        let started = Instant::now();
        let result = self.inner.transmit(command);
        let micros = started.elapsed().as_micros() as u64;
        // A bare status word carries nothing of the certificate and stays readable.
        let certificate = self.tracker.carries_certificate(command);
        let command = mask_command(command);
        let event = match &result {
            Ok(response) if self.withhold && certificate && response.len() > 2 => {
                TraceEvent::Withheld {
                    command,
                    response_sha256: response_sha256(response),
                    micros,
                }
            }
            Ok(response) if response.len() >= 2 => TraceEvent::Exchange {
                command,
                response: hex::encode(response),
                micros,
            },
            Ok(_) | Err(TransportError::CardRemoved) => TraceEvent::CardRemoved { command, micros },
            Err(e) => TraceEvent::ReaderError {
                command,
                error: e.to_string(),
                micros,
            },
        };
        self.trace
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .events
            .push(event);
        result
    }

    fn atr(&self) -> &[u8] {
        self.inner.atr()
    }

    fn reader_name(&self) -> &str {
        self.inner.reader_name()
    }

    fn card_present(&mut self) -> Result<bool, TransportError> {
        self.inner.card_present()
    }

    fn end_session(&mut self) -> Result<(), TransportError> {
        self.inner.end_session()
    }
}
