//! Where the card comes from: a PC/SC reader, the simulated card, or a recorded trace —
//! optionally wrapped by the recorder.

use std::time::Duration;

use mynalink_card::trace::MAX_TRACE_BYTES;
use mynalink_card::transport::{PcscTransport, Recorder, Replay, TraceHandle};
use mynalink_card::{Transport, TransportError};
use mynalink_link::{ErrorCode, FlowError, FlowInputs};
use mynalink_simcard::{SimOptions, SimTransport, Validity};

use crate::cli::{CardSource, SimArgs};

pub struct Opened {
    pub transport: Box<dyn Transport>,
    pub trace: Option<TraceHandle>,
    /// Inputs recorded in a replayed trace: the replay must rebuild the same statement.
    pub recorded_inputs: Option<FlowInputs>,
    /// The simulated card's TEST root is trusted only for runs on the simulated card or its
    /// recordings.
    pub trust_simulated_root: bool,
}

pub fn sim_options(args: &SimArgs) -> SimOptions {
    let mut options = SimOptions::default();
    if let Some(tries) = args.sim_tries {
        options.signing_tries = tries;
    }
    if args.sim_blocked {
        options.signing_tries = 0;
    }
    options.signing_certificate = !args.sim_no_certificate;
    if args.sim_expired {
        options.validity = Validity::Expired;
    }
    options.apdu_latency = Duration::from_millis(args.sim_apdu_latency_ms);
    options.sign_latency = Duration::from_millis(args.sim_sign_latency_ms);
    options.t0_style = args.sim_t0;
    options.extended_length = !args.sim_no_extended;
    if let Some(label) = &args.sim_token {
        options.token_label = label.clone();
    }
    options.jpki_ap = !args.sim_not_jpki;
    options.remove_after_apdus = args.sim_remove_after;
    options
}

pub fn open(source: &CardSource, sim: &SimArgs, record: bool) -> Result<Opened, FlowError> {
    let (transport, recorded_inputs, trust_simulated_root): (Box<dyn Transport>, _, _) =
        if source.sim {
            (Box::new(SimTransport::new(sim_options(sim))), None, true)
        } else if let Some(path) = &source.replay {
            let bytes = read_bounded(path)?;
            let replay = Replay::from_bytes(&bytes).map_err(FlowError::from)?;
            let inputs = FlowInputs::from_trace_inputs(&replay.trace().inputs)?;
            (Box::new(replay), Some(inputs), true)
        } else if let Some(reader) = &source.reader {
            (
                Box::new(PcscTransport::connect(reader).map_err(FlowError::from)?),
                None,
                false,
            )
        } else {
            return Err(FlowError::new(ErrorCode::NoReader).with_detail("no card source given"));
        };
    if record {
        let (recorder, handle) = Recorder::new(transport);
        Ok(Opened {
            transport: Box::new(recorder),
            trace: Some(handle),
            recorded_inputs,
            trust_simulated_root,
        })
    } else {
        Ok(Opened {
            transport,
            trace: None,
            recorded_inputs,
            trust_simulated_root,
        })
    }
}

fn read_bounded(path: &std::path::Path) -> Result<Vec<u8>, FlowError> {
    let invalid = |detail: String| FlowError::from(TransportError::TraceInvalid(detail));
    let meta = std::fs::metadata(path).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    if meta.len() > MAX_TRACE_BYTES as u64 {
        return Err(invalid(format!(
            "{}: larger than {MAX_TRACE_BYTES} bytes",
            path.display()
        )));
    }
    std::fs::read(path).map_err(|e| invalid(format!("{}: {e}", path.display())))
}
