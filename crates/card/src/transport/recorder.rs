//! A transport wrapper that writes every exchange into a trace, passwords masked.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::{Transport, TransportError};
use crate::trace::{mask_command, Trace, TraceEvent};

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
}

impl<T: Transport> Recorder<T> {
    pub fn new(inner: T) -> (Recorder<T>, TraceHandle) {
        let trace = TraceHandle(Arc::new(Mutex::new(Trace::new(
            inner.reader_name(),
            inner.atr(),
        ))));
        (
            Recorder {
                inner,
                trace: trace.clone(),
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
        let command = mask_command(command);
        let event = match &result {
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
