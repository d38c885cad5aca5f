//! The background sender of the long-running modes (the staff window, the kiosk): one
//! thread that owns an outbox connection and the backend client, delivers entries when they
//! are due, and reports what happened over a channel. Independent of any GUI toolkit.
//!
//! ```text
//! let (handle, events) = Sender::start(outbox_path, backend)?;
//! handle.enqueue(&signed, &backend_key, &options)?;   // durable, then wakes the thread
//! handle.flush_now();                                  // "send now": ignore the backoff
//! for event in events.try_iter() { … }                 // Delivered, Failed, Queued, Pending …
//! handle.shutdown();                                   // also on drop
//! ```
//!
//! Guarantees: an entry leaves the outbox only after the backend decided about it
//! ([`upload::deliver`]); a shutdown lets the delivery in flight finish (at most
//! [`crate::backend::REQUEST_TIMEOUT`]) and starts no other, so every entry is either
//! delivered or still queued when [`SenderHandle::shutdown`] returns. A kill at any moment
//! leaves the entry queued, and the backend recognises the statement when it comes again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::seal::RecipientKey;
use time::OffsetDateTime;

use crate::api::{ApiError, LinkedVia};
use crate::backend::Backend;
use crate::error::FlowError;
use crate::outbox::{Counts, EntryId, EntryOptions, HoldReason, Outbox, OutboxError, PendingEntry};
use crate::session::SignedStatement;
use crate::upload::{self, Delivery};

/// How often the sender looks at the outbox without being woken: entries added by another
/// process (a second window, `mynalink outbox`) are picked up within this time.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(30);
/// The wait after the outbox itself failed (locked for too long, disk full) before the
/// next try.
pub const ERROR_RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderOptions {
    pub recheck_interval: Duration,
    pub error_retry: Duration,
}

impl Default for SenderOptions {
    fn default() -> Self {
        SenderOptions {
            recheck_interval: RECHECK_INTERVAL,
            error_retry: ERROR_RETRY,
        }
    }
}

/// What the sender reports. Entries are named by id and license number only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderEvent {
    /// The backend stored the binding (201), or had it already from this statement (200).
    Delivered {
        entry: EntryId,
        license_number: String,
        binding_id: String,
        repeated: bool,
    },
    /// The record was linked before (409); the entry is done.
    AlreadyLinked {
        entry: EntryId,
        license_number: String,
        via: Option<LinkedVia>,
    },
    /// A final refusal with the backend's own code (4xx); the entry was removed.
    Failed {
        entry: EntryId,
        license_number: String,
        error: ApiError,
    },
    /// Not delivered this time; the entry stays and is tried again at `next_attempt_at`.
    /// `error` is set when the backend refused this terminal's credentials.
    Queued {
        entry: EntryId,
        license_number: String,
        reason: String,
        next_attempt_at: OffsetDateTime,
        error: Option<ApiError>,
    },
    /// Kept in the outbox for an operator (e.g. `seal_key_mismatch`); not retried until an
    /// operator releases it.
    Held {
        entry: EntryId,
        license_number: String,
        reason: HoldReason,
        error: Option<ApiError>,
    },
    /// The outbox now: how many entries wait in the queue, how many are held for an
    /// operator, and when the next queued one is due. Sent when it changes.
    Pending {
        entries: usize,
        held: usize,
        next_due_at: Option<OffsetDateTime>,
    },
    /// The outbox could not be read or written (`outbox_unavailable`); the sender tries
    /// again after [`SenderOptions::error_retry`].
    OutboxFailed(FlowError),
    /// The thread has ended; no event follows.
    Stopped,
}

impl SenderEvent {
    fn from_delivery(entry: &PendingEntry, delivery: Delivery) -> SenderEvent {
        let (id, license_number) = (entry.id, entry.license_number.clone());
        match delivery {
            Delivery::Linked {
                binding_id,
                repeated,
            } => SenderEvent::Delivered {
                entry: id,
                license_number,
                binding_id,
                repeated,
            },
            Delivery::AlreadyLinked { via } => SenderEvent::AlreadyLinked {
                entry: id,
                license_number,
                via,
            },
            Delivery::Rejected(error) => SenderEvent::Failed {
                entry: id,
                license_number,
                error,
            },
            Delivery::Queued {
                reason,
                next_attempt_at,
            } => SenderEvent::Queued {
                entry: id,
                license_number,
                reason,
                next_attempt_at,
                error: None,
            },
            Delivery::CredentialsRefused {
                error,
                next_attempt_at,
            } => SenderEvent::Queued {
                entry: id,
                license_number,
                reason: error.code.clone(),
                next_attempt_at,
                error: Some(error),
            },
            Delivery::Held { reason, error } => SenderEvent::Held {
                entry: id,
                license_number,
                reason,
                error,
            },
        }
    }
}

fn outbox_failed(e: OutboxError) -> SenderEvent {
    SenderEvent::OutboxFailed(e.to_flow_error())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    /// Look at the due entries now (e.g. a new entry was added).
    Wake,
    /// Send every entry now, due or not.
    FlushNow,
    Shutdown,
}

/// Starts the background sender.
pub struct Sender;

impl Sender {
    /// Opens the outbox at `outbox_path` (an unusable outbox is reported here, before any
    /// thread starts) and starts the thread with the default options.
    pub fn start(
        outbox_path: impl AsRef<Path>,
        backend: Backend,
    ) -> Result<(SenderHandle, Receiver<SenderEvent>), OutboxError> {
        Sender::start_with(outbox_path, backend, SenderOptions::default())
    }

    pub fn start_with(
        outbox_path: impl AsRef<Path>,
        backend: Backend,
        options: SenderOptions,
    ) -> Result<(SenderHandle, Receiver<SenderEvent>), OutboxError> {
        let outbox_path = outbox_path.as_ref().to_path_buf();
        let outbox = Outbox::open(&outbox_path)?;
        let (commands, command_rx) = mpsc::channel();
        let (event_tx, events) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            outbox,
            backend,
            options,
            commands: command_rx,
            events: event_tx,
            stop: Arc::clone(&stop),
            last_pending: None,
        };
        let thread = std::thread::Builder::new()
            .name("mynalink-sender".into())
            .spawn(move || worker.run())
            .map_err(|source| OutboxError::File {
                path: outbox_path.clone(),
                source,
            })?;
        Ok((
            SenderHandle {
                commands,
                stop,
                thread: Some(thread),
                outbox_path,
                adder: Mutex::new(None),
            },
            events,
        ))
    }
}

/// The GUI's (or kiosk's) side of the sender. Dropping it shuts the sender down.
pub struct SenderHandle {
    commands: mpsc::Sender<Command>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    outbox_path: PathBuf,
    /// A connection of its own for [`SenderHandle::enqueue`], opened on first use.
    adder: Mutex<Option<Outbox>>,
}

impl std::fmt::Debug for SenderHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderHandle")
            .field("outbox_path", &self.outbox_path)
            .field("running", &self.is_running())
            .finish()
    }
}

impl SenderHandle {
    /// Look at the outbox now instead of at the next due time (a new entry was added).
    pub fn wake(&self) {
        let _ = self.commands.send(Command::Wake);
    }

    /// Send every queued entry now, also those still waiting out their backoff.
    pub fn flush_now(&self) {
        let _ = self.commands.send(Command::FlushNow);
    }

    /// Writes a signed binding to the outbox (on disk when this returns `Ok`) and wakes the
    /// sender to deliver it. Returns the entry and whether it is new.
    pub fn enqueue(
        &self,
        signed: &SignedStatement,
        recipient: &RecipientKey,
        options: &EntryOptions,
    ) -> Result<(EntryId, bool), OutboxError> {
        let added = {
            let mut guard = self.adder.lock().unwrap_or_else(|p| p.into_inner());
            let outbox = match guard.as_mut() {
                Some(outbox) => outbox,
                None => guard.insert(Outbox::open(&self.outbox_path)?),
            };
            outbox.add_with(signed, recipient, options, OffsetDateTime::now_utc())?
        };
        self.wake();
        Ok(added)
    }

    pub fn outbox_path(&self) -> &Path {
        &self.outbox_path
    }

    /// Whether the thread is still running.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the sender: the delivery in flight (if any) finishes and is settled in the
    /// outbox, no other starts, and this returns when the thread has ended.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.commands.send(Command::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for SenderHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

struct Worker {
    outbox: Outbox,
    backend: Backend,
    options: SenderOptions,
    commands: Receiver<Command>,
    events: mpsc::Sender<SenderEvent>,
    stop: Arc<AtomicBool>,
    last_pending: Option<(Counts, Option<OffsetDateTime>)>,
}

impl Worker {
    fn emit(&self, event: SenderEvent) {
        // A GUI that dropped its receiver no longer listens; delivering goes on.
        let _ = self.events.send(event);
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn run(mut self) {
        let mut everything = false;
        while !self.stopping() {
            let (ok, attempted) = self.pass(everything);
            if self.stopping() {
                break;
            }
            let wait = match (ok, self.report_pending(attempted)) {
                (true, Some(until_due)) => until_due.min(self.options.recheck_interval),
                _ => self.options.error_retry,
            };
            match self.wait(wait) {
                Some(flush) => everything = flush,
                None => break,
            }
        }
        self.emit(SenderEvent::Stopped);
    }

    /// Delivers the due entries (all of them with `everything`). Returns whether the outbox
    /// worked and whether any entry was tried.
    fn pass(&mut self, everything: bool) -> (bool, bool) {
        let entries = if everything {
            self.outbox.all_pending()
        } else {
            self.outbox.due(OffsetDateTime::now_utc())
        };
        let entries = match entries {
            Ok(entries) => entries,
            Err(e) => {
                self.emit(outbox_failed(e));
                return (false, false);
            }
        };
        let attempted = !entries.is_empty();
        for entry in entries {
            // Checked before each upload: a shutdown lets the one in flight finish, no more.
            if self.stopping() {
                break;
            }
            match upload::deliver(&mut self.outbox, &self.backend, &entry) {
                Ok(delivery) => self.emit(SenderEvent::from_delivery(&entry, delivery)),
                Err(e) => {
                    self.emit(outbox_failed(e));
                    return (false, true);
                }
            }
        }
        (true, attempted)
    }

    /// Sends [`SenderEvent::Pending`] after entries were tried or when it changed; returns
    /// how long until the next entry is due (`recheck_interval` when none waits), or `None`
    /// when the outbox failed.
    fn report_pending(&mut self, attempted: bool) -> Option<Duration> {
        let state = self
            .outbox
            .counts()
            .and_then(|n| self.outbox.next_due_at().map(|next| (n, next)));
        let (counts, next_due_at) = match state {
            Ok(state) => state,
            Err(e) => {
                self.emit(outbox_failed(e));
                return None;
            }
        };
        if attempted || self.last_pending != Some((counts, next_due_at)) {
            self.last_pending = Some((counts, next_due_at));
            self.emit(SenderEvent::Pending {
                entries: counts.queued,
                held: counts.held,
                next_due_at,
            });
        }
        Some(match next_due_at {
            Some(at) => {
                let until = at - OffsetDateTime::now_utc();
                // Whole milliseconds, rounded up, so that the entry is due on waking.
                Duration::try_from(until)
                    .map(|d| d + Duration::from_millis(1))
                    .unwrap_or(Duration::ZERO)
            }
            None => self.options.recheck_interval,
        })
    }

    /// Waits up to `timeout` for a command. `Some(true)`: send everything now;
    /// `Some(false)`: look at the due entries; `None`: stop.
    fn wait(&self, timeout: Duration) -> Option<bool> {
        let first = match self.commands.recv_timeout(timeout) {
            Ok(command) => command,
            Err(RecvTimeoutError::Timeout) => Command::Wake,
            // Every handle is gone: nobody can stop or wake us any more.
            Err(RecvTimeoutError::Disconnected) => Command::Shutdown,
        };
        // Several wakes in a row need one pass.
        let mut everything = false;
        for command in std::iter::once(first).chain(self.commands.try_iter()) {
            match command {
                Command::Shutdown => return None,
                Command::FlushNow => everything = true,
                Command::Wake => {}
            }
        }
        Some(everything)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::OnceLock;
    use std::time::Instant;

    use mynalink_card::SigningPassword;
    use mynalink_simcard::{sign_test_root_der, SimOptions, SimTransport};
    use zeroize::Zeroizing;

    use crate::api::BindingRequest;
    use crate::trust::TrustStore;
    use crate::{FirstStage, FlowInputs};

    const LICENSE: &str = "729913281070";
    const WAIT: Duration = Duration::from_secs(10);

    fn recipient() -> RecipientKey {
        static KEY: OnceLock<crate::seal::SealPrivateKey> = OnceLock::new();
        KEY.get_or_init(|| crate::seal::SealPrivateKey::generate().expect("keygen"))
            .public_key()
            .clone()
    }

    fn sign_fresh() -> SignedStatement {
        let mut trust = TrustStore::new();
        trust
            .add_trust_anchor(sign_test_root_der())
            .expect("test root");
        let inputs = FlowInputs::fresh(LICENSE, "test-terminal", None, None);
        let mut flow =
            FirstStage::new(SimTransport::new(SimOptions::default()), inputs, trust).expect("flow");
        flow.check_card().expect("card");
        flow.verify_password(&SigningPassword::parse("TEST1234").expect("format"), false)
            .expect("verify");
        flow.read_certificate().expect("certificate");
        let signed = flow.sign().expect("sign").clone();
        flow.end();
        signed
    }

    /// How the fake backend answers one request.
    enum Reply {
        Answer(u16, String),
        /// Answers once the test sends on the channel (a delivery held in flight).
        AnswerWhenReleased(Receiver<()>, u16, String),
        /// Reads the request and closes the connection without an answer.
        Hang,
    }

    fn created(binding_id: &str) -> Reply {
        Reply::Answer(
            201,
            serde_json::json!({
                "binding_id": binding_id,
                "license_number": LICENSE,
                "certificate_serial": "9c4e21075a",
                "linked_at": "2026-01-01T00:00:00Z",
            })
            .to_string(),
        )
    }

    fn api_error(status: u16, code: &str) -> Reply {
        let mut body = serde_json::json!({
            "code": code,
            "message_ja": "テスト",
            "message_en": "test",
        });
        if status == 409 {
            body["linked_via"] = "counter".into();
        }
        Reply::Answer(status, body.to_string())
    }

    /// A scripted HTTP backend on loopback: answers `POST /v1/bindings` from a queue (503
    /// when it runs out) and keeps every request body.
    struct FakeBackend {
        url: String,
        replies: Arc<Mutex<VecDeque<Reply>>>,
        requests: Arc<Mutex<Vec<BindingRequest>>>,
        arrivals: Receiver<()>,
    }

    impl FakeBackend {
        fn start(replies: Vec<Reply>) -> FakeBackend {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let port = listener.local_addr().expect("addr").port();
            let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
            let requests = Arc::new(Mutex::new(Vec::new()));
            let (arrived, arrivals) = mpsc::channel();
            let (r, q) = (Arc::clone(&replies), Arc::clone(&requests));
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let (r, q, arrived) = (Arc::clone(&r), Arc::clone(&q), arrived.clone());
                    std::thread::spawn(move || serve(stream, &r, &q, &arrived));
                }
            });
            FakeBackend {
                url: format!("http://127.0.0.1:{port}/"),
                replies,
                requests,
                arrivals,
            }
        }

        fn client(&self) -> Backend {
            Backend::new(&self.url, Zeroizing::new("token".into()), None).expect("client")
        }

        fn push(&self, reply: Reply) {
            self.replies.lock().expect("replies").push_back(reply);
        }

        fn requests(&self) -> Vec<BindingRequest> {
            self.requests.lock().expect("requests").clone()
        }

        fn await_request(&self) {
            self.arrivals
                .recv_timeout(WAIT)
                .expect("a request reaches the backend");
        }
    }

    fn serve(
        stream: TcpStream,
        replies: &Mutex<VecDeque<Reply>>,
        requests: &Mutex<Vec<BindingRequest>>,
        arrived: &mpsc::Sender<()>,
    ) {
        let mut writer = match stream.try_clone() {
            Ok(writer) => writer,
            Err(_) => return,
        };
        let mut reader = BufReader::new(stream);
        loop {
            let mut length = 0usize;
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            if let Ok(request) = serde_json::from_slice(&body) {
                requests.lock().expect("requests").push(request);
            }
            let reply = replies
                .lock()
                .expect("replies")
                .pop_front()
                .unwrap_or_else(|| Reply::Answer(503, String::new()));
            let _ = arrived.send(());
            let (status, body) = match reply {
                Reply::Answer(status, body) => (status, body),
                Reply::AnswerWhenReleased(release, status, body) => {
                    let _ = release.recv();
                    (status, body)
                }
                Reply::Hang => return,
            };
            let response = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if writer.write_all(response.as_bytes()).is_err() {
                return;
            }
        }
    }

    struct Bench {
        _dir: tempfile::TempDir,
        path: PathBuf,
    }

    impl Bench {
        fn new() -> Bench {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("outbox.db");
            Bench { _dir: dir, path }
        }

        fn add(&self, confirmed: bool) -> EntryId {
            let mut outbox = Outbox::open(&self.path).expect("open");
            let options = EntryOptions {
                staff_confirmed_identity: confirmed,
                ca_certificate: None,
            };
            outbox
                .add_with(
                    &sign_fresh(),
                    &recipient(),
                    &options,
                    OffsetDateTime::now_utc(),
                )
                .expect("add")
                .0
        }

        fn len(&self) -> usize {
            Outbox::open(&self.path).expect("open").len().expect("len")
        }
    }

    fn options() -> SenderOptions {
        // Long enough that only a wake or a due entry can explain a prompt delivery.
        SenderOptions {
            recheck_interval: Duration::from_secs(60),
            error_retry: Duration::from_secs(60),
        }
    }

    /// The next event that is not a `Pending` report.
    fn next(events: &Receiver<SenderEvent>) -> SenderEvent {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match events.recv_timeout(left).expect("an event in time") {
                SenderEvent::Pending { .. } => continue,
                event => return event,
            }
        }
    }

    #[test]
    fn a_due_entry_is_delivered_with_its_staff_confirmation() {
        let bench = Bench::new();
        let confirmed = bench.add(true);
        let backend = FakeBackend::start(vec![created("b-1")]);
        let (handle, events) =
            Sender::start_with(&bench.path, backend.client(), options()).expect("start");
        assert_eq!(
            next(&events),
            SenderEvent::Delivered {
                entry: confirmed,
                license_number: LICENSE.into(),
                binding_id: "b-1".into(),
                repeated: false,
            }
        );
        let sent = backend.requests();
        assert_eq!(sent.len(), 1);
        assert!(sent[0].staff_confirmed_identity);
        assert!(sent[0].certificate.is_none() && sent[0].sealed_certificate.is_some());
        handle.shutdown();
        assert_eq!(events.try_iter().last(), Some(SenderEvent::Stopped));
        assert_eq!(bench.len(), 0);
    }

    #[test]
    fn final_answers_remove_the_entry_and_name_the_backends_code() {
        let bench = Bench::new();
        let first = bench.add(false);
        let second = bench.add(false);
        let backend = FakeBackend::start(vec![
            api_error(422, "not_eligible"),
            api_error(409, "already_linked"),
        ]);
        let (handle, events) =
            Sender::start_with(&bench.path, backend.client(), options()).expect("start");
        match next(&events) {
            SenderEvent::Failed {
                entry,
                license_number,
                error,
            } => {
                assert_eq!(entry, first);
                assert_eq!(license_number, LICENSE);
                assert_eq!(error.code, "not_eligible");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            next(&events),
            SenderEvent::AlreadyLinked {
                entry: second,
                license_number: LICENSE.into(),
                via: Some(LinkedVia::Counter),
            }
        );
        assert!(!backend.requests()[0].staff_confirmed_identity);
        drop(handle);
        assert_eq!(bench.len(), 0);
    }

    #[test]
    fn an_unavailable_backend_keeps_the_entry_until_flush_now() {
        let bench = Bench::new();
        let id = bench.add(false);
        let backend = FakeBackend::start(vec![Reply::Answer(503, String::new())]);
        let started = OffsetDateTime::now_utc();
        let (handle, events) =
            Sender::start_with(&bench.path, backend.client(), options()).expect("start");
        match next(&events) {
            SenderEvent::Queued {
                entry,
                reason,
                next_attempt_at,
                error,
                ..
            } => {
                assert_eq!(entry, id);
                assert!(reason.contains("503"), "{reason}");
                assert!(next_attempt_at >= started);
                assert!(next_attempt_at <= OffsetDateTime::now_utc() + time::Duration::seconds(2));
                assert_eq!(error, None);
            }
            other => panic!("{other:?}"),
        }
        let listed = Outbox::open(&bench.path)
            .expect("open")
            .list()
            .expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].attempts, 1);

        // The backend is back; "send now" does not wait for the backoff.
        backend.push(created("b-2"));
        handle.flush_now();
        match next(&events) {
            SenderEvent::Delivered {
                entry, binding_id, ..
            } => {
                assert_eq!(entry, id);
                assert_eq!(binding_id, "b-2");
            }
            other => panic!("{other:?}"),
        }
        handle.shutdown();
        assert_eq!(bench.len(), 0);
        assert_eq!(backend.requests().len(), 2);
    }

    #[test]
    fn refused_credentials_keep_the_entry() {
        let bench = Bench::new();
        bench.add(false);
        let backend = FakeBackend::start(vec![api_error(401, "unauthenticated")]);
        let (handle, events) =
            Sender::start_with(&bench.path, backend.client(), options()).expect("start");
        match next(&events) {
            SenderEvent::Queued { error, reason, .. } => {
                assert_eq!(reason, "unauthenticated");
                assert_eq!(error.map(|e| e.code).as_deref(), Some("unauthenticated"));
            }
            other => panic!("{other:?}"),
        }
        handle.shutdown();
        assert_eq!(bench.len(), 1);
    }

    #[test]
    fn an_enqueued_entry_goes_out_at_once_and_sizes_are_reported() {
        let bench = Bench::new();
        let backend = FakeBackend::start(vec![created("b-3")]);
        let (handle, events) =
            Sender::start_with(&bench.path, backend.client(), options()).expect("start");
        assert_eq!(
            events.recv_timeout(WAIT).expect("first report"),
            SenderEvent::Pending {
                entries: 0,
                held: 0,
                next_due_at: None
            }
        );
        // The sender now sleeps for the recheck interval (60 s); the wake cuts it short.
        let started = Instant::now();
        let options = EntryOptions {
            staff_confirmed_identity: true,
            ca_certificate: Some(vec![0x30, 0x03, 0x02, 0x01, 0x01]),
        };
        let (id, new) = handle
            .enqueue(&sign_fresh(), &recipient(), &options)
            .expect("enqueue");
        assert!(new);
        assert!(matches!(next(&events), SenderEvent::Delivered { entry, .. } if entry == id));
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(
            events.recv_timeout(WAIT).expect("size after"),
            SenderEvent::Pending {
                entries: 0,
                held: 0,
                next_due_at: None
            }
        );
        let sent = backend.requests();
        assert!(sent[0].staff_confirmed_identity);
        assert_eq!(sent[0].ca_certificate.as_deref(), Some("MAMCAQE="));
        handle.shutdown();
    }

    #[test]
    fn shutdown_lets_the_delivery_in_flight_finish() {
        let bench = Bench::new();
        let first = bench.add(false);
        bench.add(false);
        let (release, held) = mpsc::channel();
        let backend = FakeBackend::start(vec![Reply::AnswerWhenReleased(
            held,
            201,
            serde_json::json!({
                "binding_id": "b-4",
                "license_number": LICENSE,
                "certificate_serial": "9c4e21075a",
                "linked_at": "2026-01-01T00:00:00Z",
            })
            .to_string(),
        )]);
        let (handle, events) =
            Sender::start_with(&bench.path, backend.client(), options()).expect("start");
        backend.await_request();
        let stopping = std::thread::spawn(move || handle.shutdown());
        // The shutdown waits for the answer of the request in flight.
        std::thread::sleep(Duration::from_millis(200));
        assert!(!stopping.is_finished());
        release.send(()).expect("release");
        stopping.join().expect("shutdown");
        let all: Vec<SenderEvent> = events
            .try_iter()
            .filter(|e| !matches!(e, SenderEvent::Pending { .. }))
            .collect();
        assert!(
            matches!(&all[..], [SenderEvent::Delivered { entry, .. }, SenderEvent::Stopped] if *entry == first),
            "{all:?}"
        );
        // The second entry was not started and is still queued.
        assert_eq!(backend.requests().len(), 1);
        assert_eq!(bench.len(), 1);
    }

    #[test]
    fn a_connection_lost_mid_request_keeps_the_entry() {
        let bench = Bench::new();
        let id = bench.add(false);
        let backend = FakeBackend::start(vec![Reply::Hang]);
        let (handle, events) =
            Sender::start_with(&bench.path, backend.client(), options()).expect("start");
        assert!(matches!(next(&events), SenderEvent::Queued { entry, .. } if entry == id));
        handle.shutdown();
        assert_eq!(bench.len(), 1);
    }

    #[test]
    fn a_seal_key_mismatch_is_held_for_an_operator_and_the_next_entry_goes_out() {
        let bench = Bench::new();
        let mismatched = bench.add(false);
        let sound = bench.add(false);
        let backend = FakeBackend::start(vec![api_error(422, "seal_key_mismatch"), created("b-5")]);
        let (handle, events) =
            Sender::start_with(&bench.path, backend.client(), options()).expect("start");
        match next(&events) {
            SenderEvent::Held {
                entry,
                license_number,
                reason,
                error,
            } => {
                assert_eq!(entry, mismatched);
                assert_eq!(license_number, LICENSE);
                assert_eq!(reason, HoldReason::SealKeyMismatch);
                assert_eq!(error.map(|e| e.code).as_deref(), Some("seal_key_mismatch"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(next(&events), SenderEvent::Delivered { entry, .. } if entry == sound));
        assert_eq!(
            pending_after(&events),
            SenderEvent::Pending {
                entries: 0,
                held: 1,
                next_due_at: None
            }
        );
        handle.shutdown();
        assert_eq!(backend.requests().len(), 2);
        let listed = Outbox::open(&bench.path)
            .expect("open")
            .list()
            .expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, mismatched);
        assert_eq!(
            listed[0].held.map(|h| h.reason),
            Some(HoldReason::SealKeyMismatch)
        );
    }

    #[test]
    fn an_unreadable_entry_does_not_stop_the_sender() {
        let bench = Bench::new();
        let damaged = bench.add(false);
        let sound = bench.add(false);
        rusqlite::Connection::open(&bench.path)
            .expect("sqlite")
            .execute(
                "UPDATE entries SET sealed_certificate = 'garbage' WHERE id = ?1",
                [damaged.0],
            )
            .expect("damage");
        let backend = FakeBackend::start(vec![created("b-6")]);
        let (handle, events) =
            Sender::start_with(&bench.path, backend.client(), options()).expect("start");
        assert!(matches!(next(&events), SenderEvent::Delivered { entry, .. } if entry == sound));
        assert_eq!(
            pending_after(&events),
            SenderEvent::Pending {
                entries: 0,
                held: 1,
                next_due_at: None
            }
        );
        handle.shutdown();
        assert_eq!(backend.requests().len(), 1);
        assert_eq!(bench.len(), 1);
    }

    /// The next `Pending` report (after the events before it).
    fn pending_after(events: &Receiver<SenderEvent>) -> SenderEvent {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match events.recv_timeout(left).expect("a report in time") {
                pending @ SenderEvent::Pending { .. } => return pending,
                SenderEvent::OutboxFailed(e) => panic!("{e}"),
                _ => continue,
            }
        }
    }

    #[test]
    fn an_unusable_outbox_is_reported_at_start() {
        let backend = FakeBackend::start(Vec::new());
        let e = Sender::start("/nonexistent/dir/outbox.db", backend.client())
            .expect_err("no such directory");
        assert!(matches!(e, OutboxError::File { .. }), "{e}");
    }
}
