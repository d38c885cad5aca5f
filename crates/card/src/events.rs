//! Reader and card events as a stream, from PC/SC: readers plugged in and out, cards
//! inserted and removed, and the PC/SC service itself going away and coming back.
//!
//! A [`Watcher`] runs one thread that blocks in `SCardGetStatusChange` (with the special
//! reader `\\?PnP?\Notification` for reader changes) and is woken by `SCardCancel` to stop.
//! The events are the difference between two views of the readers ([`diff`]), so the
//! stream is always consistent: every `ReaderAdded` is eventually matched by a
//! `ReaderRemoved`, every `CardInserted` by a `CardRemoved` (before its reader's removal).
//!
//! When the service goes away, `PcscUnavailable` comes first, then the removal of every
//! card and reader known until then; the watcher then tries to reach the service again
//! (250 ms, doubling up to 2 s) and, once it answers, reports `PcscAvailable` followed by
//! the readers and cards that are there. The first events after [`Watcher::start`] are
//! therefore the current state: `PcscAvailable` (or `PcscUnavailable`), then one
//! `ReaderAdded` per reader and one `CardInserted` per card.

use std::ffi::{CStr, CString};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use pcsc::{Context, ReaderState, Scope, State};

/// Something that changed in what PC/SC reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardEvent {
    /// The PC/SC service answers (at start, or again after `PcscUnavailable`).
    PcscAvailable,
    /// The PC/SC service is not running or went away; no reader is known until
    /// `PcscAvailable`. Reported once per outage, not once per retry.
    PcscUnavailable {
        detail: String,
    },
    ReaderAdded {
        reader: String,
    },
    ReaderRemoved {
        reader: String,
    },
    /// A card is in the reader. `atr` is empty when the card does not answer (mute).
    CardInserted {
        reader: String,
        atr: Vec<u8>,
    },
    CardRemoved {
        reader: String,
    },
}

/// One reader as seen at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderView {
    pub name: String,
    pub card: Option<CardView>,
}

/// The card in a reader as seen at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardView {
    pub atr: Vec<u8>,
    /// The reader's insertion/removal counter (PC/SC reports it in the upper 16 bits of
    /// the event state). A different value with a card present both times means the card
    /// was swapped between two looks.
    pub event_count: u32,
}

/// The events that turn `previous` into `current`: first what left (a reader's card before
/// the reader), then what arrived or changed, in `current`'s order.
pub fn diff(previous: &[ReaderView], current: &[ReaderView]) -> Vec<CardEvent> {
    let mut events = Vec::new();
    for old in previous {
        if !current.iter().any(|r| r.name == old.name) {
            if old.card.is_some() {
                events.push(CardEvent::CardRemoved {
                    reader: old.name.clone(),
                });
            }
            events.push(CardEvent::ReaderRemoved {
                reader: old.name.clone(),
            });
        }
    }
    for new in current {
        let old = previous.iter().find(|r| r.name == new.name);
        let old_card = match old {
            Some(old) => old.card.as_ref(),
            None => {
                events.push(CardEvent::ReaderAdded {
                    reader: new.name.clone(),
                });
                None
            }
        };
        let inserted = |card: &CardView| CardEvent::CardInserted {
            reader: new.name.clone(),
            atr: card.atr.clone(),
        };
        match (old_card, new.card.as_ref()) {
            (None, Some(card)) => events.push(inserted(card)),
            (Some(_), None) => events.push(CardEvent::CardRemoved {
                reader: new.name.clone(),
            }),
            (Some(before), Some(now)) if before != now => {
                events.push(CardEvent::CardRemoved {
                    reader: new.name.clone(),
                });
                events.push(inserted(now));
            }
            _ => {}
        }
    }
    events
}

/// A reader as `SCardGetStatusChange` left it; `None` while PC/SC has not reported it yet
/// or no longer knows it.
fn view_of(name: &CStr, state: State, event_count: u32, atr: &[u8]) -> Option<ReaderView> {
    if state.is_empty() || state.contains(State::UNKNOWN) {
        return None;
    }
    let card = state.contains(State::PRESENT).then(|| CardView {
        atr: atr.to_vec(),
        event_count,
    });
    Some(ReaderView {
        name: name.to_string_lossy().into_owned(),
        card,
    })
}

/// First wait after the service went away; doubled after each failed attempt.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// pcsc-lite refuses more than 16 reader states in one `SCardGetStatusChange`
/// (`PCSCLITE_MAX_READERS_CONTEXTS`), and never has more than 16 readers.
const MAX_READER_STATES: usize = 16;
/// `SCardCancel` only interrupts a wait already in progress: while stopping, it is repeated
/// this often until the thread has ended.
const CANCEL_REPEAT: Duration = Duration::from_millis(20);
/// `SCardGetStatusChange` failing with an unknown reader right after a fresh listing this
/// many times in a row is treated as a broken service rather than a race.
const UNKNOWN_READER_LIMIT: u32 = 3;

struct Control {
    stopping: bool,
    /// The context the thread is waiting in, so that `stop` can cancel the wait.
    context: Option<Context>,
}

struct Shared {
    control: Mutex<Control>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Control> {
        // A panic elsewhere must not stop the watcher from stopping.
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stopping(&self) -> bool {
        self.lock().stopping
    }

    /// Makes `context` the one `stop` cancels; false when stopping already.
    fn publish(&self, context: Option<&Context>) -> bool {
        let mut control = self.lock();
        control.context = context.cloned();
        !control.stopping
    }

    /// Waits before the next attempt to reach the service; true when told to stop.
    fn pause(&self, delay: Duration) -> bool {
        let control = self.lock();
        let (control, _) = self
            .wake
            .wait_timeout_while(control, delay, |c| !c.stopping)
            .unwrap_or_else(PoisonError::into_inner);
        control.stopping
    }
}

/// Watches PC/SC on a thread of its own and hands every [`CardEvent`] to a callback.
/// Stopped by [`Watcher::stop`] or by dropping it.
pub struct Watcher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    done: Receiver<()>,
}

impl Watcher {
    /// Starts watching. `on_event` runs on the watcher's thread, in order; it should return
    /// quickly (events wait behind it).
    pub fn start(on_event: impl FnMut(CardEvent) + Send + 'static) -> std::io::Result<Watcher> {
        let shared = Arc::new(Shared {
            control: Mutex::new(Control {
                stopping: false,
                context: None,
            }),
            wake: Condvar::new(),
        });
        let (done_tx, done) = mpsc::channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("pcsc-events".into())
            .spawn(move || {
                // Dropped when the thread ends, even by a panic in the callback.
                let _done = done_tx;
                let mut on_event = on_event;
                run(&thread_shared, &mut on_event);
            })?;
        Ok(Watcher {
            shared,
            thread: Some(thread),
            done,
        })
    }

    /// Starts watching with the events delivered to a channel. The channel closes when the
    /// watcher stops.
    pub fn with_channel() -> std::io::Result<(Watcher, Receiver<CardEvent>)> {
        let (tx, rx) = mpsc::channel();
        let watcher = Watcher::start(move |event| {
            // Nobody listening any more is not an error for the watcher.
            let _ = tx.send(event);
        })?;
        Ok((watcher, rx))
    }

    /// Stops watching and waits for the thread to end. No event is delivered afterwards.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        {
            let mut control = self.shared.lock();
            control.stopping = true;
        }
        self.shared.wake.notify_all();
        if thread.thread().id() == std::thread::current().id() {
            // Stopped from its own callback: the thread ends when the callback returns, and
            // waiting for it here would wait forever.
            return;
        }
        loop {
            // Take the context anew each time: the thread may have just established one.
            let context = self.shared.lock().context.clone();
            if let Some(context) = context {
                // Fails harmlessly when the service is gone or no wait is in progress.
                let _ = context.cancel();
            }
            match self.done.recv_timeout(CANCEL_REPEAT) {
                Err(RecvTimeoutError::Timeout) => continue,
                Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let _ = thread.join();
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// How one connection to the service ended.
enum End {
    Stopped,
    /// `watched`: at least one wait succeeded, so the service worked for a while; otherwise
    /// the back-off keeps growing, so that a service that accepts connections but fails
    /// every call is not hammered.
    Lost {
        detail: String,
        watched: bool,
    },
}

fn run(shared: &Shared, emit: &mut dyn FnMut(CardEvent)) {
    let mut known: Vec<ReaderView> = Vec::new();
    // Whether `PcscUnavailable` is the last thing said about the service.
    let mut said_unavailable = false;
    let mut delay = RETRY_FIRST;
    loop {
        if shared.stopping() {
            return;
        }
        let detail = match Context::establish(Scope::User) {
            Ok(context) => {
                if !shared.publish(Some(&context)) {
                    return;
                }
                said_unavailable = false;
                emit(CardEvent::PcscAvailable);
                let end = watch(&context, shared, &mut known, emit);
                shared.publish(None);
                match end {
                    End::Stopped => return,
                    End::Lost { detail, watched } => {
                        if watched {
                            delay = RETRY_FIRST;
                        }
                        detail
                    }
                }
            }
            Err(e) => e.to_string(),
        };
        if !said_unavailable {
            said_unavailable = true;
            emit(CardEvent::PcscUnavailable { detail });
            for event in diff(&known, &[]) {
                emit(event);
            }
            known.clear();
        }
        if shared.pause(delay) {
            return;
        }
        delay = (delay * 2).min(RETRY_MAX);
    }
}

/// Follows the readers of one context until it fails or the watcher stops.
fn watch(
    context: &Context,
    shared: &Shared,
    known: &mut Vec<ReaderView>,
    emit: &mut dyn FnMut(CardEvent),
) -> End {
    // Index 0 is the PnP pseudo-reader, then one entry per reader.
    let mut states = vec![ReaderState::new(pcsc::PNP_NOTIFICATION(), State::UNAWARE)];
    // The reader-list counter PC/SC reported last (upper word of the PnP event state).
    let mut reader_list_seen: Option<u32> = None;
    let mut relist = true;
    let mut unknown_reader_streak = 0;
    let mut watched = false;
    let lost = |e: pcsc::Error, watched| End::Lost {
        detail: e.to_string(),
        watched,
    };
    loop {
        if relist {
            match list_readers(context) {
                Ok(names) => update_readers(&mut states, names),
                Err(e) => return lost(e, watched),
            }
            relist = false;
        }
        if shared.stopping() {
            return End::Stopped;
        }
        // With 16 readers no more can come: PnP is dropped to stay within pcsc-lite's limit.
        let watch_pnp = states.len() <= MAX_READER_STATES;
        let first = if watch_pnp { 0 } else { 1 };
        let last = states.len().min(first + MAX_READER_STATES);
        match context.get_status_change(None, &mut states[first..last]) {
            Ok(()) => {
                unknown_reader_streak = 0;
                watched = true;
            }
            Err(pcsc::Error::Cancelled) => {
                if shared.stopping() {
                    return End::Stopped;
                }
                continue;
            }
            Err(pcsc::Error::Timeout) => continue,
            // A reader left between the listing and the wait.
            Err(pcsc::Error::UnknownReader) if unknown_reader_streak < UNKNOWN_READER_LIMIT => {
                unknown_reader_streak += 1;
                relist = true;
                continue;
            }
            Err(e) => return lost(e, watched),
        }
        if watch_pnp {
            let pnp = &states[0];
            let counter = pnp.event_count();
            // The first answer also counts: a reader may have come between listing and waiting.
            if pnp.event_state().contains(State::CHANGED) || reader_list_seen != Some(counter) {
                relist = true;
            }
            reader_list_seen = Some(counter);
        }
        if states[1..]
            .iter()
            .any(|s| s.event_state().contains(State::UNKNOWN))
        {
            relist = true;
        }
        for state in &mut states {
            state.sync_current_state();
        }
        let current: Vec<ReaderView> = states[1..]
            .iter()
            .filter_map(|s| view_of(s.name(), s.event_state(), s.event_count(), s.atr()))
            .collect();
        for event in diff(known, &current) {
            emit(event);
        }
        *known = current;
    }
}

fn list_readers(context: &Context) -> Result<Vec<CString>, pcsc::Error> {
    match context.list_readers_owned() {
        Ok(names) => Ok(names),
        Err(pcsc::Error::NoReadersAvailable) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Keeps the entries of readers still listed (with what is known of them), drops the others
/// and adds new ones as `UNAWARE`, which makes the next wait return their state at once.
fn update_readers(states: &mut Vec<ReaderState>, names: Vec<CString>) {
    let mut index = 1;
    while index < states.len() {
        if names.iter().any(|n| n.as_c_str() == states[index].name()) {
            index += 1;
        } else {
            states.remove(index);
        }
    }
    for name in names {
        if !states[1..].iter().any(|s| s.name() == name.as_c_str()) {
            states.push(ReaderState::new(name, State::UNAWARE));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ATR: [u8; 9] = [0x3b, 0xe0, 0x00, 0xff, 0x81, 0x31, 0xfe, 0x45, 0x14];

    fn reader(name: &str) -> ReaderView {
        ReaderView {
            name: name.into(),
            card: None,
        }
    }

    fn with_card(name: &str, atr: &[u8], event_count: u32) -> ReaderView {
        ReaderView {
            name: name.into(),
            card: Some(CardView {
                atr: atr.to_vec(),
                event_count,
            }),
        }
    }

    fn added(name: &str) -> CardEvent {
        CardEvent::ReaderAdded {
            reader: name.into(),
        }
    }

    fn removed(name: &str) -> CardEvent {
        CardEvent::ReaderRemoved {
            reader: name.into(),
        }
    }

    fn inserted(name: &str, atr: &[u8]) -> CardEvent {
        CardEvent::CardInserted {
            reader: name.into(),
            atr: atr.to_vec(),
        }
    }

    fn card_removed(name: &str) -> CardEvent {
        CardEvent::CardRemoved {
            reader: name.into(),
        }
    }

    #[test]
    fn nothing_changed_nothing_reported() {
        let view = vec![reader("A"), with_card("B", &ATR, 1)];
        assert_eq!(diff(&view, &view), vec![]);
        assert_eq!(diff(&[], &[]), vec![]);
    }

    #[test]
    fn the_first_view_is_reported_as_arrivals_in_order() {
        let view = vec![reader("A"), with_card("B", &ATR, 1)];
        assert_eq!(
            diff(&[], &view),
            vec![added("A"), added("B"), inserted("B", &ATR)]
        );
    }

    #[test]
    fn everything_gone_is_reported_cards_first() {
        let view = vec![with_card("A", &ATR, 1), reader("B")];
        assert_eq!(
            diff(&view, &[]),
            vec![card_removed("A"), removed("A"), removed("B")]
        );
    }

    #[test]
    fn insertion_and_removal() {
        let empty = vec![reader("A")];
        let full = vec![with_card("A", &ATR, 1)];
        assert_eq!(diff(&empty, &full), vec![inserted("A", &ATR)]);
        assert_eq!(diff(&full, &empty), vec![card_removed("A")]);
    }

    #[test]
    fn a_card_swapped_between_two_looks_is_a_removal_and_an_insertion() {
        let before = vec![with_card("A", &ATR, 1)];
        // Same ATR, but the reader counted a removal and an insertion since.
        let same_atr = vec![with_card("A", &ATR, 3)];
        assert_eq!(
            diff(&before, &same_atr),
            vec![card_removed("A"), inserted("A", &ATR)]
        );
        let other_atr = vec![with_card("A", &[0x3b, 0x00], 1)];
        assert_eq!(
            diff(&before, &other_atr),
            vec![card_removed("A"), inserted("A", &[0x3b, 0x00])]
        );
    }

    #[test]
    fn reader_plugged_and_unplugged_among_others() {
        let before = vec![reader("A"), with_card("B", &ATR, 1)];
        let after = vec![with_card("B", &ATR, 1), reader("C")];
        assert_eq!(diff(&before, &after), vec![removed("A"), added("C")]);
        let after = vec![reader("A")];
        assert_eq!(diff(&before, &after), vec![card_removed("B"), removed("B")]);
    }

    #[test]
    fn reader_states_become_views() {
        let name = CString::new("Virtual PCD 00 01").unwrap();
        // Not reported yet (fresh entry) or no longer known: no view.
        assert_eq!(view_of(&name, State::empty(), 0, &[]), None);
        assert_eq!(
            view_of(
                &name,
                State::UNKNOWN | State::UNAVAILABLE | State::CHANGED,
                0,
                &[]
            ),
            None
        );
        assert_eq!(
            view_of(&name, State::EMPTY | State::CHANGED, 2, &[]),
            Some(reader("Virtual PCD 00 01"))
        );
        assert_eq!(
            view_of(&name, State::UNAVAILABLE, 0, &[]),
            Some(reader("Virtual PCD 00 01"))
        );
        assert_eq!(
            view_of(&name, State::PRESENT | State::INUSE, 3, &ATR),
            Some(with_card("Virtual PCD 00 01", &ATR, 3))
        );
        // A mute card is still a card in the reader.
        assert_eq!(
            view_of(&name, State::PRESENT | State::MUTE, 5, &[]),
            Some(with_card("Virtual PCD 00 01", &[], 5))
        );
    }

    #[test]
    fn reader_entries_follow_the_listing() {
        let pnp = || ReaderState::new(pcsc::PNP_NOTIFICATION(), State::UNAWARE);
        let name = |s: &str| CString::new(s).unwrap();
        let mut states = vec![pnp(), ReaderState::new(name("A"), State::EMPTY)];
        update_readers(&mut states, vec![name("B"), name("A")]);
        let names: Vec<_> = states.iter().map(|s| s.name().to_owned()).collect();
        assert_eq!(names[0].as_c_str(), pcsc::PNP_NOTIFICATION());
        assert_eq!(&names[1..], &[name("A"), name("B")]);
        // What was known of A is kept; B starts unaware.
        assert_eq!(states[1].current_state(), State::EMPTY);
        assert_eq!(states[2].current_state(), State::UNAWARE);
        update_readers(&mut states, vec![name("B")]);
        assert_eq!(states.len(), 2);
        assert_eq!(states[1].name(), name("B").as_c_str());
        update_readers(&mut states, vec![]);
        assert_eq!(states.len(), 1);
    }
}
