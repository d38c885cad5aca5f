#![no_main]
//! Trace files as a user might hand them over.

use libfuzzer_sys::fuzz_target;
use mynalink_card::transport::Replay;
use mynalink_card::Transport;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut replay) = Replay::from_bytes(data) {
        for _ in 0..4 {
            let _ = replay.transmit(&[0x00, 0xA4, 0x04, 0x0C]);
        }
    }
    let _ = mynalink_link::license::LicenseNumber::parse(&String::from_utf8_lossy(data));
});
