//! The vpcd card side against a fake vpcd (no pcscd needed).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mynalink_simcard::card::ATR;
use mynalink_simcard::vpcd::{serve, VcardError, VcardEvent, VcardOptions};
use mynalink_simcard::{SimOptions, SimulatedCard};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

const SELECT_JPKI: &[u8] = &[
    0x00, 0xA4, 0x04, 0x0C, 0x0A, 0xD3, 0x92, 0xF0, 0x00, 0x26, 0x01, 0x00, 0x00, 0x00, 0x01,
];
const SELECT_SIGN_PIN: &[u8] = &[0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x1B];
const SELECT_SIGN_CERT: &[u8] = &[0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x01];
const VERIFY_QUERY: &[u8] = &[0x00, 0x20, 0x00, 0x80];
const READ_4: &[u8] = &[0x00, 0xB0, 0x00, 0x00, 0x04];

fn verify(password: &str) -> Vec<u8> {
    let mut apdu = vec![0x00, 0x20, 0x00, 0x80, password.len() as u8];
    apdu.extend_from_slice(password.as_bytes());
    apdu
}

fn sw(response: &[u8]) -> u16 {
    assert!(response.len() >= 2, "no status word in {response:02X?}");
    let n = response.len();
    u16::from_be_bytes([response[n - 2], response[n - 1]])
}

/// The vpcd end of one connection.
struct Vpcd {
    stream: TcpStream,
}

impl Vpcd {
    fn send(&mut self, payload: &[u8]) {
        let mut message = (payload.len() as u16).to_be_bytes().to_vec();
        message.extend_from_slice(payload);
        self.stream.write_all(&message).unwrap();
    }

    fn recv(&mut self) -> Vec<u8> {
        let mut header = [0u8; 2];
        self.stream.read_exact(&mut header).unwrap();
        let mut payload = vec![0u8; usize::from(u16::from_be_bytes(header))];
        self.stream.read_exact(&mut payload).unwrap();
        payload
    }

    fn transmit(&mut self, apdu: &[u8]) -> Vec<u8> {
        self.send(apdu);
        let response = self.recv();
        assert!(!response.is_empty(), "an empty answer means removal");
        response
    }

    fn atr(&mut self) -> Vec<u8> {
        self.send(&[0x04]);
        self.recv()
    }

    /// Sends a control message and waits until the card has handled it: the card answers
    /// messages in order, so an ATR request behind it is a barrier.
    fn control(&mut self, code: u8) {
        self.send(&[code]);
        assert_eq!(self.atr(), ATR);
    }

    /// Sends an APDU and expects the card to go away instead of answering.
    fn expect_removal_on(&mut self, apdu: &[u8]) {
        self.send(apdu);
        let mut byte = [0u8; 1];
        assert_eq!(self.stream.read(&mut byte).unwrap(), 0, "connection closed");
    }
}

/// A fake vpcd listening on 127.0.0.1 with a free port.
struct FakeVpcd {
    listener: TcpListener,
}

impl FakeVpcd {
    fn new() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        FakeVpcd { listener }
    }

    fn port(&self) -> u16 {
        self.listener.local_addr().unwrap().port()
    }

    /// Waits for the card to connect (insertion).
    fn accept(&self) -> Vpcd {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    return Vpcd { stream };
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "the card never connected");
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }
}

type Served = (Result<(), VcardError>, Vec<VcardEvent>);

/// Runs `serve` in a thread; returns the card, the stop flag and the thread.
fn start(
    sim: SimOptions,
    options: VcardOptions,
) -> (
    Arc<Mutex<SimulatedCard>>,
    Arc<AtomicBool>,
    JoinHandle<Served>,
) {
    let card = Arc::new(Mutex::new(SimulatedCard::new(sim)));
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let card = Arc::clone(&card);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut events = Vec::new();
            let result = serve(card, &options, &stop, &mut |event| events.push(event));
            (result, events)
        })
    };
    (card, stop, thread)
}

fn options(port: u16) -> VcardOptions {
    VcardOptions {
        port,
        ..VcardOptions::default()
    }
}

/// Joins the serve thread, failing the test instead of hanging when it does not end.
fn finish(thread: JoinHandle<Served>, within: Duration) -> Served {
    let deadline = Instant::now() + within;
    while !thread.is_finished() {
        assert!(
            Instant::now() < deadline,
            "serve did not return in {within:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    thread.join().expect("serve panicked")
}

fn apdu_events(events: &[VcardEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, VcardEvent::Apdu { .. }))
        .count()
}

#[test]
fn defaults() {
    let options = VcardOptions::default();
    assert_eq!(options.host, "127.0.0.1");
    assert_eq!(options.port, 35963);
    assert_eq!(options.remove_after_apdus, None);
    assert_eq!(options.reinsert_after, None);
    assert_eq!(options.max_insertions, None);
}

#[test]
fn atr_power_on_and_select() {
    let vpcd = FakeVpcd::new();
    let (card, stop, thread) = start(SimOptions::default(), options(vpcd.port()));
    let mut link = vpcd.accept();
    assert_eq!(
        link.atr(),
        [0x3B, 0xE0, 0x00, 0xFF, 0x81, 0x31, 0xFE, 0x45, 0x14]
    );
    link.send(&[0x01]);
    assert_eq!(link.transmit(SELECT_JPKI), [0x90, 0x00]);
    // ATR polls between commands change nothing
    assert_eq!(link.atr(), ATR);
    link.transmit(SELECT_SIGN_PIN);
    assert_eq!(link.transmit(VERIFY_QUERY), [0x63, 0xC5]);
    assert_eq!(card.lock().unwrap().commands().len(), 3);

    stop.store(true, Ordering::Relaxed);
    let (result, events) = finish(thread, Duration::from_secs(2));
    result.unwrap();
    assert_eq!(
        events,
        [
            VcardEvent::Connected,
            VcardEvent::PowerOn,
            VcardEvent::Apdu {
                command_len: 15,
                response_len: 2
            },
            VcardEvent::Apdu {
                command_len: 7,
                response_len: 2
            },
            VcardEvent::Apdu {
                command_len: 4,
                response_len: 2
            },
            VcardEvent::Removed,
        ]
    );
}

#[test]
fn long_responses_are_framed_whole() {
    let vpcd = FakeVpcd::new();
    let (card, stop, thread) = start(SimOptions::default(), options(vpcd.port()));
    let mut link = vpcd.accept();
    link.send(&[0x01]);
    link.transmit(SELECT_JPKI);
    link.transmit(SELECT_SIGN_PIN);
    assert_eq!(link.transmit(&verify("TEST1234")), [0x90, 0x00]);
    link.transmit(SELECT_SIGN_CERT);
    // one extended READ BINARY for the whole certificate
    let response = link.transmit(&[0x00, 0xB0, 0x00, 0x00, 0x00, 0x00, 0x00]);
    let cert = card.lock().unwrap().identity().sign_cert_der.clone();
    assert!(cert.len() > 1000);
    // Ne 65536 is more than the file holds: all of it, then the end-of-file warning
    assert_eq!(sw(&response), 0x6282);
    assert_eq!(&response[..response.len() - 2], &cert[..]);
    stop.store(true, Ordering::Relaxed);
    finish(thread, Duration::from_secs(2)).0.unwrap();
}

#[test]
fn removal_after_n_apdus_closes_the_connection() {
    let vpcd = FakeVpcd::new();
    let (card, _stop, thread) = start(
        SimOptions::default(),
        VcardOptions {
            remove_after_apdus: Some(2),
            ..options(vpcd.port())
        },
    );
    let mut link = vpcd.accept();
    link.send(&[0x01]);
    link.transmit(SELECT_JPKI);
    // control messages do not count
    assert_eq!(link.atr(), ATR);
    link.transmit(SELECT_SIGN_PIN);
    link.expect_removal_on(&verify("TEST1234"));
    let (result, events) = finish(thread, Duration::from_secs(2));
    result.unwrap();
    assert_eq!(apdu_events(&events), 2);
    assert_eq!(events.last(), Some(&VcardEvent::Removed));
    // the command that found the card gone never reached it
    let card = card.lock().unwrap();
    assert_eq!(card.commands().len(), 2);
    assert_eq!(card.verify_attempts(), 0);
}

#[test]
fn reinsertion_keeps_retry_counters_and_drops_the_session() {
    const SELECT_AUTH_PIN: &[u8] = &[0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x18];
    let vpcd = FakeVpcd::new();
    let delay = Duration::from_millis(150);
    let (card, stop, thread) = start(
        SimOptions::default(),
        VcardOptions {
            remove_after_apdus: Some(5),
            reinsert_after: Some(delay),
            max_insertions: Some(2),
            ..options(vpcd.port())
        },
    );
    let mut link = vpcd.accept();
    link.send(&[0x01]);
    link.transmit(SELECT_JPKI);
    link.transmit(SELECT_SIGN_PIN);
    assert_eq!(link.transmit(&verify("TEST1234")), [0x90, 0x00]);
    link.transmit(SELECT_AUTH_PIN);
    assert_eq!(link.transmit(&verify("0000")), [0x63, 0xC2]);
    link.expect_removal_on(SELECT_SIGN_CERT);
    let removed_at = Instant::now();

    let mut link = vpcd.accept();
    assert!(
        removed_at.elapsed() >= delay - Duration::from_millis(20),
        "reinserted after {:?}",
        removed_at.elapsed()
    );
    assert!(!card.lock().unwrap().signing_verified());
    assert_eq!(link.atr(), ATR);
    link.send(&[0x01]);
    link.transmit(SELECT_JPKI);
    link.transmit(SELECT_AUTH_PIN);
    assert_eq!(link.transmit(VERIFY_QUERY), [0x63, 0xC2]);
    link.transmit(SELECT_SIGN_CERT);
    assert_eq!(link.transmit(READ_4), [0x69, 0x82]);
    // The removal happened once: the reinserted card keeps answering.
    assert_eq!(link.transmit(VERIFY_QUERY), [0x6A, 0x88]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let (result, events) = finish(thread, Duration::from_secs(2));
    result.unwrap();
    use VcardEvent::*;
    let coarse: Vec<VcardEvent> = events
        .into_iter()
        .filter(|e| !matches!(e, Apdu { .. }))
        .collect();
    assert_eq!(
        coarse,
        [
            Connected,
            PowerOn,
            Removed,
            Reinserting,
            Connected,
            PowerOn,
            Removed
        ]
    );
}

#[test]
fn a_wrong_password_before_removal_leaves_four_tries() {
    let vpcd = FakeVpcd::new();
    let (_card, stop, thread) = start(
        SimOptions::default(),
        VcardOptions {
            remove_after_apdus: Some(3),
            reinsert_after: Some(Duration::from_millis(10)),
            max_insertions: Some(2),
            ..options(vpcd.port())
        },
    );
    let mut link = vpcd.accept();
    link.transmit(SELECT_JPKI);
    link.transmit(SELECT_SIGN_PIN);
    assert_eq!(link.transmit(&verify("WRONG99")), [0x63, 0xC4]);
    link.expect_removal_on(VERIFY_QUERY);
    let mut link = vpcd.accept();
    link.transmit(SELECT_JPKI);
    link.transmit(SELECT_SIGN_PIN);
    assert_eq!(link.transmit(VERIFY_QUERY), [0x63, 0xC4]);
    // Only the first insertion is cut short.
    assert_eq!(link.transmit(VERIFY_QUERY), [0x63, 0xC4]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    finish(thread, Duration::from_secs(2)).0.unwrap();
}

#[test]
fn power_off_and_reset_clear_the_verified_state() {
    let vpcd = FakeVpcd::new();
    let (card, stop, thread) = start(SimOptions::default(), options(vpcd.port()));
    let mut link = vpcd.accept();
    let unlock = |link: &mut Vpcd| {
        link.transmit(SELECT_JPKI);
        link.transmit(SELECT_SIGN_PIN);
        assert_eq!(link.transmit(&verify("TEST1234")), [0x90, 0x00]);
        link.transmit(SELECT_SIGN_CERT);
        assert_eq!(sw(&link.transmit(READ_4)), 0x9000);
    };
    for control in [0x00, 0x02] {
        link.control(0x01);
        unlock(&mut link);
        assert!(card.lock().unwrap().signing_verified());
        link.control(control);
        assert!(!card.lock().unwrap().signing_verified());
        link.control(0x01);
        // a fresh session: nothing selected, the certificate hidden again
        assert_eq!(link.transmit(READ_4), [0x69, 0x86]);
        link.transmit(SELECT_JPKI);
        link.transmit(SELECT_SIGN_CERT);
        assert_eq!(link.transmit(READ_4), [0x69, 0x82]);
    }
    assert_eq!(card.lock().unwrap().signing_tries(), 5);
    stop.store(true, Ordering::Relaxed);
    let (result, events) = finish(thread, Duration::from_secs(2));
    result.unwrap();
    assert!(events.contains(&VcardEvent::PowerOff));
    assert!(events.contains(&VcardEvent::Reset));
}

#[test]
fn stop_ends_serve_promptly() {
    let vpcd = FakeVpcd::new();
    let (_card, stop, thread) = start(SimOptions::default(), options(vpcd.port()));
    let mut link = vpcd.accept();
    link.transmit(SELECT_JPKI);
    // vpcd stays quiet; serve is blocked reading
    std::thread::sleep(Duration::from_millis(200));
    let stopped_at = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let (result, events) = finish(thread, Duration::from_secs(2));
    result.unwrap();
    assert!(
        stopped_at.elapsed() < Duration::from_millis(500),
        "{:?}",
        stopped_at.elapsed()
    );
    assert_eq!(events.last(), Some(&VcardEvent::Removed));
    // the card left: vpcd sees the connection close
    let mut byte = [0u8; 1];
    assert_eq!(link.stream.read(&mut byte).unwrap(), 0);
}

#[test]
fn stop_interrupts_the_card_latency_and_the_reinsertion_delay() {
    let vpcd = FakeVpcd::new();
    let (_card, stop, thread) = start(
        SimOptions {
            apdu_latency: Duration::from_secs(30),
            ..SimOptions::default()
        },
        options(vpcd.port()),
    );
    let mut link = vpcd.accept();
    link.send(SELECT_JPKI);
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    finish(thread, Duration::from_secs(1)).0.unwrap();
    drop(link);

    let vpcd = FakeVpcd::new();
    let (_card, stop, thread) = start(
        SimOptions::default(),
        VcardOptions {
            remove_after_apdus: Some(0),
            reinsert_after: Some(Duration::from_secs(30)),
            ..options(vpcd.port())
        },
    );
    let mut link = vpcd.accept();
    link.expect_removal_on(SELECT_JPKI);
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let (result, events) = finish(thread, Duration::from_secs(1));
    result.unwrap();
    assert_eq!(events.last(), Some(&VcardEvent::Reinserting));
}

#[test]
fn stop_interrupts_connect_retries() {
    // a port nobody listens on
    let port = FakeVpcd::new().port();
    let (_card, stop, thread) = start(SimOptions::default(), options(port));
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let (result, events) = finish(thread, Duration::from_secs(1));
    result.unwrap();
    assert!(events.is_empty());
}

#[test]
fn connect_retries_until_vpcd_listens() {
    let port = FakeVpcd::new().port();
    let (_card, stop, thread) = start(SimOptions::default(), options(port));
    // pcscd comes up a little later
    std::thread::sleep(Duration::from_millis(300));
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let mut link = FakeVpcd { listener }.accept();
    assert_eq!(link.transmit(SELECT_JPKI), [0x90, 0x00]);
    stop.store(true, Ordering::Relaxed);
    finish(thread, Duration::from_secs(2)).0.unwrap();
}

#[test]
fn connect_gives_up_with_a_clear_error() {
    let port = FakeVpcd::new().port();
    let started = Instant::now();
    let (_card, _stop, thread) = start(SimOptions::default(), options(port));
    let (result, events) = finish(thread, Duration::from_secs(15));
    let elapsed = started.elapsed();
    assert!(events.is_empty());
    assert!(
        elapsed >= Duration::from_secs(4),
        "gave up after {elapsed:?}"
    );
    let error = result.unwrap_err();
    assert!(
        matches!(&error, VcardError::Connect { addr, .. } if *addr == format!("127.0.0.1:{port}"))
    );
    let message = error.to_string();
    assert!(
        message.contains("is pcscd with vsmartcard-vpcd running?"),
        "{message}"
    );
}

#[test]
fn vpcd_closing_is_an_error() {
    let vpcd = FakeVpcd::new();
    let (card, _stop, thread) = start(SimOptions::default(), options(vpcd.port()));
    let mut link = vpcd.accept();
    link.transmit(SELECT_JPKI);
    link.transmit(SELECT_SIGN_PIN);
    link.transmit(&verify("TEST1234"));
    drop(link);
    let (result, _) = finish(thread, Duration::from_secs(2));
    let error = result.unwrap_err();
    assert!(matches!(error, VcardError::Io(_)), "{error:?}");
    assert!(error.to_string().contains("vpcd closed the connection"));
    assert!(!card.lock().unwrap().signing_verified());
}

#[test]
fn truncated_message_ends_with_a_protocol_error() {
    for garbage in [
        &[0x00, 0x10, 0x00, 0xA4, 0x04][..],
        &[0xFF, 0xFF, 0x01],
        &[0x00],
    ] {
        let vpcd = FakeVpcd::new();
        let (_card, _stop, thread) = start(SimOptions::default(), options(vpcd.port()));
        let mut link = vpcd.accept();
        link.stream.write_all(garbage).unwrap();
        drop(link);
        let (result, _) = finish(thread, Duration::from_secs(2));
        let error = result.unwrap_err();
        assert!(matches!(error, VcardError::Protocol(_)), "{error:?}");
        assert!(
            error.to_string().contains("closed the connection"),
            "{error}"
        );
    }
}

#[test]
fn odd_messages_are_survived() {
    let vpcd = FakeVpcd::new();
    let (_card, stop, thread) = start(SimOptions::default(), options(vpcd.port()));
    let mut link = vpcd.accept();
    // empty message, unknown control codes: no answer
    link.send(&[]);
    link.send(&[0x03]);
    link.send(&[0xFF]);
    // the biggest message the framing allows, and too-short APDUs
    assert_eq!(link.transmit(&vec![0xAB; 65535]), [0x6E, 0x00]);
    assert_eq!(link.transmit(&[0x00, 0xA4]), [0x67, 0x00]);
    assert_eq!(link.transmit(&[0x00, 0xA4, 0x04]), [0x67, 0x00]);
    // bytes dribbled in one at a time, with pauses longer than the card's poll interval
    let mut message = vec![0x00, SELECT_JPKI.len() as u8];
    message.extend_from_slice(SELECT_JPKI);
    for byte in message {
        link.stream.write_all(&[byte]).unwrap();
        std::thread::sleep(Duration::from_millis(if byte == 0x04 { 120 } else { 1 }));
    }
    assert_eq!(link.recv(), [0x90, 0x00]);
    assert_eq!(link.atr(), ATR);
    stop.store(true, Ordering::Relaxed);
    finish(thread, Duration::from_secs(2)).0.unwrap();
}

#[test]
fn random_input_never_panics() {
    let mut rng = ChaCha20Rng::seed_from_u64(0x5650_4344);
    for _ in 0..40 {
        let vpcd = FakeVpcd::new();
        let (_card, stop, thread) = start(SimOptions::default(), options(vpcd.port()));
        let link = vpcd.accept();
        let mut writer = link.stream.try_clone().unwrap();
        // drain whatever the card answers so it never blocks writing
        let mut reader = link.stream;
        let drain = std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink);
        });
        let len = rng.gen_range(0..2000);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        // mostly small length prefixes, so that many messages get parsed
        for chunk in bytes.chunks_mut(37) {
            chunk[0] = 0;
        }
        let _ = writer.write_all(&bytes);
        std::thread::sleep(Duration::from_millis(20));
        if rng.gen_bool(0.5) {
            stop.store(true, Ordering::Relaxed);
        }
        let _ = writer.shutdown(std::net::Shutdown::Both);
        drop(writer);
        let (_result, _) = finish(thread, Duration::from_secs(5));
        drain.join().unwrap();
    }
}

#[test]
fn latency_is_applied_before_answering() {
    let vpcd = FakeVpcd::new();
    let (_card, stop, thread) = start(
        SimOptions {
            apdu_latency: Duration::from_millis(30),
            sign_latency: Duration::from_millis(100),
            ..SimOptions::default()
        },
        options(vpcd.port()),
    );
    let mut link = vpcd.accept();
    // control messages are not delayed
    let started = Instant::now();
    link.atr();
    assert!(started.elapsed() < Duration::from_millis(30));
    let started = Instant::now();
    link.transmit(SELECT_JPKI);
    assert!(started.elapsed() >= Duration::from_millis(30));
    let started = Instant::now();
    // not verified, but the card still takes its time to refuse
    assert_eq!(
        sw(&link.transmit(&[0x80, 0x2A, 0x00, 0x80, 0x01, 0x00, 0x00])),
        0x6A88
    );
    assert!(started.elapsed() >= Duration::from_millis(130));
    stop.store(true, Ordering::Relaxed);
    finish(thread, Duration::from_secs(2)).0.unwrap();
}
