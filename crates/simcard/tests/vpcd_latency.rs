//! Round-trip time against a fake vpcd that writes like Debian's vpcd build: the length
//! prefix and the payload in two `send()` calls, Nagle left on. Without TCP_QUICKACK on the
//! card side every command then waits for a delayed ACK (~40 ms on Linux).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mynalink_simcard::vpcd::{serve, VcardOptions};
use mynalink_simcard::{SimOptions, SimulatedCard};

const SELECT_JPKI: &[u8] = &[
    0x00, 0xA4, 0x04, 0x0C, 0x0A, 0xD3, 0x92, 0xF0, 0x00, 0x26, 0x01, 0x00, 0x00, 0x00, 0x01,
];

#[test]
fn round_trip_with_a_split_writing_vpcd() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let card = Arc::new(Mutex::new(SimulatedCard::new(SimOptions::default())));
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let options = VcardOptions {
                port,
                ..VcardOptions::default()
            };
            serve(card, &options, &stop, &mut |_| {})
        })
    };
    let (mut vpcd, _) = listener.accept().unwrap();
    vpcd.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut times = Vec::new();
    for _ in 0..60 {
        let started = Instant::now();
        vpcd.write_all(&(SELECT_JPKI.len() as u16).to_be_bytes())
            .unwrap();
        vpcd.write_all(SELECT_JPKI).unwrap();
        let mut answer = [0u8; 4];
        vpcd.read_exact(&mut answer).unwrap();
        times.push(started.elapsed());
        assert_eq!(answer, [0x00, 0x02, 0x90, 0x00]);
    }
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap().unwrap();
    // the first exchanges run in the kernel's initial quick-ACK mode either way
    let mut steady = times[10..].to_vec();
    steady.sort();
    let median = steady[steady.len() / 2];
    let total: Duration = steady.iter().sum();
    println!(
        "per-APDU round trip: median {median:?}, mean {:?}, max {:?}",
        total / steady.len() as u32,
        steady[steady.len() - 1]
    );
    if cfg!(target_os = "linux") {
        // ~0.1 ms with QUICKACK, ~40 ms without; leave room for a loaded machine
        assert!(median < Duration::from_millis(10), "median {median:?}");
    }
}
