//! `mynalink vcard`: the simulated card in the vpcd virtual reader of the real pcscd, so
//! that the PC/SC path is exercised for real. Closing the connection is card removal;
//! reconnecting is insertion. When pcscd goes away the card waits for it to come back.

use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mynalink_simcard::vpcd::{serve, VcardError, VcardEvent, VcardOptions};
use mynalink_simcard::SimulatedCard;
use serde_json::json;

use crate::cli::VcardArgs;
use crate::source::sim_options;

/// Pause before looking for pcscd again after it went away.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

pub fn run(args: &VcardArgs) -> i32 {
    let card = Arc::new(Mutex::new(SimulatedCard::new(sim_options(&args.sim))));
    let options = VcardOptions {
        host: args.host.clone(),
        port: args.port,
        remove_after_apdus: args.remove_after.or(args.sim.sim_remove_after),
        reinsert_after: args.reinsert_after.map(Duration::from_millis),
        max_insertions: args.max_insertions,
    };
    let stop = AtomicBool::new(false);
    let json = args.json;
    let mut report = |event: VcardEvent| print_event(json, event);
    loop {
        match serve(card.clone(), &options, &stop, &mut report) {
            Ok(()) => return 0,
            // pcscd stopped or restarts: the card waits for the reader to come back.
            Err(VcardError::Io(e)) => {
                emit(
                    json,
                    json!({ "event": "vpcd_lost", "detail": e.to_string() }),
                    &format!("vpcd lost: {e}"),
                );
                std::thread::sleep(RECONNECT_PAUSE);
            }
            Err(e) => {
                eprintln!("mynalink vcard: {e}");
                return 1;
            }
        }
    }
}

fn print_event(json: bool, event: VcardEvent) {
    let (value, text) = match event {
        VcardEvent::Connected => (json!({ "event": "inserted" }), "card inserted".to_string()),
        VcardEvent::PowerOn => (json!({ "event": "power_on" }), "power on".into()),
        VcardEvent::PowerOff => (json!({ "event": "power_off" }), "power off".into()),
        VcardEvent::Reset => (json!({ "event": "reset" }), "reset".into()),
        VcardEvent::Apdu {
            command_len,
            response_len,
        } => (
            json!({ "event": "apdu", "command_len": command_len, "response_len": response_len }),
            format!("APDU {command_len} → {response_len} bytes"),
        ),
        VcardEvent::Removed => (json!({ "event": "removed" }), "card removed".into()),
        VcardEvent::Reinserting => (json!({ "event": "reinserting" }), "reinserting".into()),
    };
    emit(json, value, &text);
}

fn emit(json: bool, value: serde_json::Value, text: &str) {
    let mut out = std::io::stdout().lock();
    // Output goes to a pipe a test or operator reads line by line: flush every event.
    let _ = if json {
        writeln!(out, "{value}")
    } else {
        writeln!(out, "{text}")
    };
    let _ = out.flush();
}
