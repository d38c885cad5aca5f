//! Where the card comes from: a PC/SC reader, the simulated card, or a recorded trace —
//! optionally wrapped by the recorder. A trace records which of the first two it came from;
//! that decides whether the simulated card's TEST root is trusted on its replay and whether
//! the recorder keeps the signing certificate's bytes.

use std::time::Duration;

use std::path::PathBuf;

use mynalink_card::trace::{Trace, TraceSource, MAX_TRACE_BYTES};
use mynalink_card::transport::{
    list_readers, CertificateBytes, PcscTransport, Recorder, Replay, TraceHandle,
};
use mynalink_card::{JpkiCard, Transport, TransportError};
use mynalink_link::trust::TrustStore;
use mynalink_link::{ErrorCode, FlowError, FlowInputs};
use mynalink_simcard::{SimOptions, SimTransport, Validity};

use crate::cli::{CardSource, SimArgs};
use crate::config::Config;

/// Where the card comes from, after the command line and the config file are combined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// A named reader, or `None` for the only reader holding a My Number card.
    Reader(Option<String>),
    Sim,
    Replay(PathBuf),
}

impl Choice {
    pub fn resolve(cli: &CardSource, config: &Config) -> Option<Choice> {
        let reader = |name: &str| Choice::Reader(named_reader(name));
        if cli.sim {
            Some(Choice::Sim)
        } else if let Some(path) = &cli.replay {
            Some(Choice::Replay(path.clone()))
        } else if let Some(name) = &cli.reader {
            Some(reader(name))
        } else {
            config.reader.as_deref().map(reader)
        }
    }
}

/// A reader setting: `None` for "" or "auto" (the only reader holding a My Number card).
pub fn named_reader(name: &str) -> Option<String> {
    match name.trim() {
        "" | "auto" => None,
        named => Some(named.to_string()),
    }
}

pub struct Opened {
    pub transport: Box<dyn Transport>,
    pub trace: Option<TraceHandle>,
    /// Inputs recorded in a replayed trace: the replay must rebuild the same statement.
    pub recorded_inputs: Option<FlowInputs>,
    /// The simulated card's TEST root is trusted only for runs on the simulated card or its
    /// recordings.
    pub trust_simulated_root: bool,
    /// How the reader was chosen, when it was not named.
    pub reader_note: Option<String>,
}

/// What the card's certificate must chain to: the J-LIS CA certificates (pinned
/// fingerprints), extra roots (test benches only), and the simulated card's TEST root for runs
/// on that card or its recordings. The flags and the config file's keys of the same names
/// feed the first two.
pub fn trust_store<'a>(
    jpki_ca: impl IntoIterator<Item = &'a PathBuf>,
    trust_anchors: impl IntoIterator<Item = &'a PathBuf>,
    trust_simulated_root: bool,
) -> Result<TrustStore, FlowError> {
    let invalid = |what: &str, path: &std::path::Path, e: String| {
        FlowError::new(ErrorCode::ConfigurationInvalid)
            .with_detail(format!("{what} {}: {e}", path.display()))
    };
    let mut trust = TrustStore::new();
    for path in jpki_ca {
        let bytes = std::fs::read(path).map_err(|e| invalid("jpki_ca", path, e.to_string()))?;
        trust
            .add_ca_certificate(&bytes)
            .map_err(|e| invalid("jpki_ca", path, e.to_string()))?;
    }
    for path in trust_anchors {
        let bytes =
            std::fs::read(path).map_err(|e| invalid("trust_anchors", path, e.to_string()))?;
        trust
            .add_trust_anchor(&bytes)
            .map_err(|e| invalid("trust_anchors", path, e.to_string()))?;
    }
    if trust_simulated_root {
        // Both of the simulated card's roots: its RSA keys' and its P-384 key's.
        for root in [
            crate::headless::SIMULATED_CARD_TEST_ROOT,
            crate::headless::SIMULATED_CARD_TEST_ROOT_EC_P384,
        ] {
            trust.add_trust_anchor(root).map_err(|e| {
                FlowError::new(ErrorCode::ConfigurationInvalid).with_detail(e.to_string())
            })?;
        }
    }
    Ok(trust)
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
    if let Some(key) = args.sim_key {
        options.key = key;
    }
    options
}

/// For people: which key the simulated card was given, the provisional one labelled so.
pub fn sim_key_note(args: &SimArgs) -> Option<String> {
    args.sim_key.map(|key| {
        format!(
            "simulated card with --sim-key {}: {}",
            key.name(),
            key.description()
        )
    })
}

/// The simulated card's reader name: all a version 1 trace says about where it came from.
const SIMULATED_READER: &str = "mynalink simulated card";

/// Where a replayed trace's responses came from. Version 1 traces did not record it; the
/// simulated card always named itself [`SIMULATED_READER`], so that name stands for it.
fn recorded_source(trace: &Trace) -> TraceSource {
    match trace.source {
        Some(source) => source,
        None if trace.reader == SIMULATED_READER => TraceSource::Simulated,
        None => TraceSource::Reader,
    }
}

/// `record`: wrap the card in the recorder, keeping or withholding the certificate's bytes.
pub fn open(
    choice: &Choice,
    sim: &SimArgs,
    record: Option<CertificateBytes>,
) -> Result<Opened, FlowError> {
    let mut reader_note = None;
    let (transport, recorded_inputs, source): (Box<dyn Transport>, _, _) = match choice {
        Choice::Sim => {
            reader_note = sim_key_note(sim);
            (
                Box::new(SimTransport::new(sim_options(sim))),
                None,
                TraceSource::Simulated,
            )
        }
        Choice::Replay(path) => {
            let bytes = read_bounded(path)?;
            let replay = Replay::from_bytes(&bytes).map_err(FlowError::from)?;
            let inputs = FlowInputs::from_trace_inputs(&replay.trace().inputs)?;
            let source = recorded_source(replay.trace());
            (Box::new(replay), Some(inputs), source)
        }
        Choice::Reader(Some(name)) => (
            Box::new(PcscTransport::connect(name).map_err(FlowError::from)?),
            None,
            TraceSource::Reader,
        ),
        Choice::Reader(None) => {
            let name = only_reader_with_my_number_card()?;
            reader_note = Some(format!("{name}: the only reader holding a My Number card"));
            (
                Box::new(PcscTransport::connect(&name).map_err(FlowError::from)?),
                None,
                TraceSource::Reader,
            )
        }
    };
    let (transport, trace): (Box<dyn Transport>, _) = match record {
        Some(certificate) => {
            let (recorder, handle) = Recorder::new(transport, source, certificate);
            (Box::new(recorder), Some(handle))
        }
        None => (transport, None),
    };
    Ok(Opened {
        transport,
        trace,
        recorded_inputs,
        trust_simulated_root: source == TraceSource::Simulated,
        reader_note,
    })
}

/// Looks at every reader holding a card and keeps those whose card is a My Number card.
/// Each probe ends with the card powered down; the flow then connects afresh.
fn only_reader_with_my_number_card() -> Result<String, FlowError> {
    let readers = list_readers().map_err(FlowError::from)?;
    if readers.is_empty() {
        return Err(TransportError::NoReader(None).into());
    }
    let mut found = Vec::new();
    for reader in readers.iter().filter(|r| r.card_present) {
        let Ok(transport) = PcscTransport::connect(&reader.name) else {
            continue;
        };
        let mut card = JpkiCard::new(transport);
        if card.open_application().is_ok() {
            found.push(reader.name.clone());
        }
        let _ = card.end_session();
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(FlowError::new(ErrorCode::NoCard).with_detail(format!(
            "no reader holds a My Number card (readers: {})",
            readers
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        _ => Err(FlowError::new(ErrorCode::ReaderAmbiguous)
            .with_detail(format!("My Number cards in: {}", found.join(", ")))),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simulated_reader_name_is_the_simulated_cards() {
        let sim = SimTransport::new(SimOptions::default());
        assert_eq!(sim.reader_name(), SIMULATED_READER);
    }

    #[test]
    fn a_trace_is_simulated_only_when_it_says_so() {
        let v2 = |source, reader: &str| Trace::new(reader, &[0x3B], source);
        let simulated = TraceSource::Simulated;
        let reader = TraceSource::Reader;
        assert_eq!(recorded_source(&v2(simulated, "x")), simulated);
        // A version 2 trace's source wins over its reader name.
        assert_eq!(recorded_source(&v2(reader, SIMULATED_READER)), reader);
        let v1 = |reader: &str| Trace {
            version: 1,
            source: None,
            ..Trace::new(reader, &[0x3B], simulated)
        };
        assert_eq!(recorded_source(&v1(SIMULATED_READER)), simulated);
        assert_eq!(recorded_source(&v1("Virtual PCD 00 00")), reader);
    }
}
