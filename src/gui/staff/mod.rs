//! The staff window: the first stage as seven numbered steps, a live status bar, and the
//! operator's history, outbox and settings behind a password.

mod view;

use iced::keyboard::{self, key::Named, Key};
use iced::widget::operation;
use iced::{Subscription, Task};
use mynalink_card::events::CardEvent;
use mynalink_card::PasswordStatus;
use mynalink_link::api::LicenseStatus;
use mynalink_link::outbox::{EntryOptions, EntrySummary};
use mynalink_link::sender::SenderEvent;
use mynalink_link::upload::Delivery;
use mynalink_link::{ErrorCode, FlowError, FlowInputs, SignedStatement};
use zeroize::Zeroizing;

use super::card::CertificateView;
use super::i18n::Lang;
use super::remote::LookupFailed;
use super::setup::Environment;
use super::shared::{self, Presence};
use super::turn::{CardPhase, Lookup, SendPhase, Turn};
use crate::operator_password::{PasswordCheck, Refusal};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Reception = 1,
    Terms,
    Card,
    Password,
    Confirm,
    Send,
    Done,
}

impl Step {
    const ALL: [Step; 7] = [
        Step::Reception,
        Step::Terms,
        Step::Card,
        Step::Password,
        Step::Confirm,
        Step::Send,
        Step::Done,
    ];

    fn label(self, lang: Lang) -> &'static str {
        match self {
            Step::Reception => lang.pick("受付", "Reception"),
            Step::Terms => lang.pick("規約", "Terms"),
            Step::Card => lang.pick("カード", "Card"),
            Step::Password => lang.pick("暗証番号", "Password"),
            Step::Confirm => lang.pick("確認", "Check"),
            Step::Send => lang.pick("送信", "Send"),
            Step::Done => lang.pick("完了", "Done"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Panel {
    Flow,
    History,
    Outbox,
    Settings,
}

pub use super::history::HistoryRow;

#[derive(Debug, Clone)]
pub enum Message {
    ToggleLanguage,
    Primary,
    Back,
    FocusNext,
    /// F4: the staff confirmation of the current step (last try, identity), from the keyboard.
    StaffConfirm,
    Frame,
    Health(bool),
    HealthTick,
    Sender(SenderEvent),
    Reader(CardEvent),
    DemoInsert,
    DemoRemove,
    DemoPresence(bool),
    Show(Panel),
    OperatorPassword(String),
    OperatorLogin,
    OperatorChecked(PasswordCheck),
    OutboxLoaded(Result<Vec<EntrySummary>, String>),
    FlushNow,
    LicenseInput(String),
    StatusLoaded(String, Result<LicenseStatus, LookupFailed>),
    Agree,
    ReadCard,
    Checked(Result<PasswordStatus, FlowError>),
    PasswordInput(String),
    ConfirmLastTry(bool),
    Verified(Result<(), FlowError>),
    CertificateRead(Result<CertificateView, FlowError>),
    IdentityConfirmed(bool),
    Signed(Result<SignedStatement, FlowError>),
    Uploaded(Result<Delivery, FlowError>),
    CardEnded,
    HistoryWritten,
    NextPerson,
}

pub struct Staff {
    pub env: Environment,
    pub lang: Lang,
    pub step: Step,
    pub turn: Turn,
    pub panel: Panel,
    pub presence: Presence,
    pub backend_up: Option<bool>,
    pub outbox_size: Option<usize>,
    /// Entries held for an operator, shown apart from the queue.
    pub outbox_held: Option<usize>,
    pub history: Vec<HistoryRow>,
    pub operator_unlocked: bool,
    pub operator_password: Zeroizing<String>,
    /// Why the last login was refused, and how long to wait.
    pub operator_refused: Option<Refusal>,
    pub pending_panel: Option<Panel>,
    pub outbox_rows: Option<Result<Vec<EntrySummary>, String>>,
    pub first_frame_seen: bool,
    /// An error that ended the last turn early (card removed mid-flow), shown at step 3.
    pub interrupted: Option<FlowError>,
}

const LICENSE_ID: &str = "license";
const PASSWORD_ID: &str = "password";
const OPERATOR_ID: &str = "operator-password";

impl Staff {
    pub fn new(env: Environment) -> (Staff, Task<Message>) {
        let presence = shared::initial_presence(&env);
        let history = env
            .history
            .as_ref()
            .map(|file| file.rows_of(&shared::local_date()))
            .unwrap_or_default();
        let staff = Staff {
            lang: env.language,
            env,
            step: Step::Reception,
            turn: Turn::default(),
            panel: Panel::Flow,
            presence,
            backend_up: None,
            outbox_size: None,
            outbox_held: None,
            history,
            operator_unlocked: false,
            operator_password: Zeroizing::new(String::new()),
            operator_refused: None,
            pending_panel: None,
            outbox_rows: None,
            first_frame_seen: false,
            interrupted: None,
        };
        let health = staff.health_task();
        (staff, Task::batch([operation::focus(LICENSE_ID), health]))
    }

    fn health_task(&self) -> Task<Message> {
        match &self.env.remote {
            Some(remote) => Task::perform(remote.clone().healthy(), Message::Health),
            None => Task::done(Message::Health(false)),
        }
    }

    pub fn title(&self) -> String {
        format!(
            "mynalink — {}",
            self.lang.pick(
                "マイナ免許証 マイナポータル連携（第1段階）",
                "Mynaportal linking, first stage"
            )
        )
    }

    pub fn subscription(&self) -> Subscription<Message> {
        let mut subscriptions = vec![
            keyboard::listen().filter_map(key_message),
            iced::time::every(std::time::Duration::from_secs(15)).map(|_| Message::HealthTick),
            shared::sender_events(&self.env).map(Message::Sender),
        ];
        if let Some(readers) = shared::reader_events(&self.env) {
            subscriptions.push(readers.map(Message::Reader));
        }
        if !self.first_frame_seen {
            subscriptions.push(iced::window::frames().map(|_| Message::Frame));
        }
        Subscription::batch(subscriptions)
    }

    pub fn update(&mut self, message: Message) -> Task<Message> {
        match message {
            Message::ToggleLanguage => {
                self.lang = self.lang.toggled();
                Task::none()
            }
            Message::FocusNext => operation::focus_next(),
            Message::StaffConfirm => {
                match self.step {
                    Step::Password if self.turn.needs_last_try_confirmation() => {
                        self.turn.last_try_confirmed = !self.turn.last_try_confirmed;
                    }
                    Step::Confirm if self.turn.certificate.is_some() => {
                        self.turn.identity_confirmed = !self.turn.identity_confirmed;
                    }
                    _ => {}
                }
                Task::none()
            }
            Message::Frame => {
                self.first_frame_seen = true;
                shared::log_first_frame("staff");
                Task::none()
            }
            Message::HealthTick => self.health_task(),
            Message::Health(up) => {
                self.backend_up = Some(up);
                Task::none()
            }
            Message::Sender(event) => {
                if let SenderEvent::Pending { entries, held, .. } = &event {
                    self.outbox_size = Some(*entries);
                    self.outbox_held = Some(*held);
                }
                match shared::sender_history_row(&event) {
                    Some(row) => self.remember(row),
                    None => Task::none(),
                }
            }
            Message::Reader(event) => {
                let before = self.presence.card_present;
                self.presence.apply(&event);
                self.presence_changed(before)
            }
            Message::DemoInsert => shared::demo_set_card(&self.env, true, Message::DemoPresence),
            Message::DemoRemove => shared::demo_set_card(&self.env, false, Message::DemoPresence),
            Message::DemoPresence(present) => {
                let before = self.presence.card_present;
                self.presence.card_present = Some(present);
                self.presence_changed(before)
            }
            Message::Show(panel) => {
                if panel == Panel::Flow || self.operator_unlocked {
                    self.panel = panel;
                    self.pending_panel = None;
                    if panel == Panel::Outbox {
                        return self.load_outbox();
                    }
                    Task::none()
                } else {
                    self.pending_panel = Some(panel);
                    self.operator_refused = None;
                    operation::focus(OPERATOR_ID)
                }
            }
            Message::OperatorPassword(p) => {
                self.operator_password = Zeroizing::new(p);
                Task::none()
            }
            Message::OperatorLogin => {
                let typed =
                    std::mem::replace(&mut self.operator_password, Zeroizing::new(String::new()));
                shared::check_operator_password(&self.env, typed, Message::OperatorChecked)
            }
            Message::OperatorChecked(check) => {
                let ok = check == PasswordCheck::Accepted;
                self.operator_refused = match check {
                    PasswordCheck::Accepted => None,
                    PasswordCheck::Refused(refusal) => Some(refusal),
                };
                if ok {
                    self.operator_unlocked = true;
                    if let Some(panel) = self.pending_panel.take() {
                        return self.update(Message::Show(panel));
                    }
                }
                Task::none()
            }
            Message::OutboxLoaded(rows) => {
                if let Ok(rows) = &rows {
                    let held = rows.iter().filter(|r| r.held.is_some()).count();
                    self.outbox_size = Some(rows.len() - held);
                    self.outbox_held = Some(held);
                }
                self.outbox_rows = Some(rows);
                Task::none()
            }
            Message::FlushNow => {
                shared::flush_now(&self.env);
                self.load_outbox()
            }
            Message::LicenseInput(input) => {
                self.turn.set_license_input(input);
                self.lookup()
            }
            Message::StatusLoaded(number, result) => {
                // An answer for a number that is no longer in the field is stale.
                if self.turn.license.as_ref().map(|l| l.as_str()) == Some(number.as_str()) {
                    self.turn.lookup = match result {
                        Ok(status) => Lookup::Found(status),
                        Err(LookupFailed(reason)) => Lookup::Failed(reason),
                    };
                }
                Task::none()
            }
            Message::Primary => self.primary(),
            Message::Back => self.back(),
            Message::Agree => {
                if let Ok(terms) = &self.env.terms {
                    self.turn.consent = Some(terms.reference());
                    self.step = Step::Card;
                    if self.presence.card_present == Some(true) {
                        return self.begin_card();
                    }
                }
                Task::none()
            }
            Message::ReadCard => self.begin_card(),
            Message::Checked(result) => {
                // A late answer for a session that ended meanwhile (card removed).
                if self.step != Step::Card || !matches!(self.turn.card, CardPhase::Checking) {
                    return Task::none();
                }
                match result {
                    Ok(status) => {
                        self.turn.note_card_status(status);
                        if matches!(status, PasswordStatus::Tries(_) | PasswordStatus::Unknown) {
                            self.step = Step::Password;
                            return operation::focus(PASSWORD_ID);
                        }
                        Task::none()
                    }
                    Err(e) => {
                        self.turn.card = CardPhase::Failed(e);
                        Task::none()
                    }
                }
            }
            Message::PasswordInput(input) => {
                self.turn.set_password(&input);
                Task::none()
            }
            Message::ConfirmLastTry(confirmed) => {
                self.turn.last_try_confirmed = confirmed;
                Task::none()
            }
            Message::Verified(result) => match result {
                Ok(()) => {
                    self.turn.card = CardPhase::Reading;
                    self.step = Step::Confirm;
                    Task::perform(
                        self.env.card.clone().read_certificate(),
                        Message::CertificateRead,
                    )
                }
                Err(e) => {
                    self.turn.note_verify_failure(e);
                    operation::focus(PASSWORD_ID)
                }
            },
            Message::CertificateRead(result) => {
                match result {
                    Ok(view) => {
                        self.turn.card = CardPhase::Read;
                        self.turn.certificate = Some(view);
                    }
                    Err(e) => self.turn.card = CardPhase::Failed(e),
                }
                Task::none()
            }
            Message::IdentityConfirmed(confirmed) => {
                self.turn.identity_confirmed = confirmed;
                Task::none()
            }
            Message::Signed(result) => match result {
                Ok(signed) => {
                    self.turn.send = SendPhase::Uploading;
                    let end = Task::perform(self.env.card.clone().end(), |()| Message::CardEnded);
                    let options = EntryOptions {
                        staff_confirmed_identity: self.turn.identity_confirmed,
                        ca_certificate: None,
                    };
                    let upload = match &self.env.remote {
                        Some(remote) => {
                            Task::perform(remote.clone().upload(signed, options), Message::Uploaded)
                        }
                        None => Task::done(Message::Uploaded(Err(FlowError::new(
                            ErrorCode::ConfigurationInvalid,
                        )
                        .with_detail(self.env.remote_problem.clone().unwrap_or_default())))),
                    };
                    Task::batch([end, upload])
                }
                Err(e) => {
                    self.turn.send = SendPhase::Failed(e);
                    Task::none()
                }
            },
            Message::Uploaded(result) => {
                // The holder's name, birth date and address are not needed any more.
                self.turn.certificate = None;
                match result {
                    Ok(delivery) => {
                        if delivery.still_queued() {
                            shared::wake_sender(&self.env);
                        }
                        let write = self.record(&delivery);
                        self.turn.send = SendPhase::Finished(delivery);
                        self.step = Step::Done;
                        write
                    }
                    Err(e) => {
                        self.turn.send = SendPhase::Failed(e);
                        Task::none()
                    }
                }
            }
            Message::CardEnded | Message::HistoryWritten => Task::none(),
            Message::NextPerson => {
                if self.presence.card_present == Some(true) && self.step == Step::Done {
                    // The card must leave the reader before the next person.
                    return Task::none();
                }
                self.reset()
            }
        }
    }

    /// Shown in today's history and kept in the history file (no basic-4 in either); the
    /// file is written off the UI thread.
    fn remember(&mut self, row: HistoryRow) -> Task<Message> {
        let write = match self.env.history.clone() {
            Some(file) => {
                let row = row.clone();
                Task::perform(
                    async move {
                        // The history is informational; a failed write must not stop the
                        // counter.
                        let _ = tokio::task::spawn_blocking(move || file.append(&row)).await;
                    },
                    |()| Message::HistoryWritten,
                )
            }
            None => Task::none(),
        };
        self.history.push(row);
        write
    }

    fn record(&mut self, delivery: &Delivery) -> Task<Message> {
        let license_number = self
            .turn
            .license
            .as_ref()
            .map(|l| l.as_str().to_string())
            .unwrap_or_default();
        self.remember(HistoryRow {
            date: shared::local_date(),
            time: shared::local_clock(),
            license_number,
            outcome: delivery.outcome().to_string(),
            binding_id: match delivery {
                Delivery::Linked { binding_id, .. } => Some(binding_id.clone()),
                _ => None,
            },
        })
    }

    fn lookup(&mut self) -> Task<Message> {
        let (Some(license), Some(remote)) = (&self.turn.license, &self.env.remote) else {
            if self.turn.license.is_some() {
                self.turn.lookup = Lookup::Failed(
                    self.env
                        .remote_problem
                        .clone()
                        .unwrap_or_else(|| "no backend".into()),
                );
            }
            return Task::none();
        };
        self.turn.lookup = Lookup::Loading;
        let number = license.as_str().to_string();
        Task::perform(remote.clone().status(number.clone()), move |r| {
            Message::StatusLoaded(number.clone(), r)
        })
    }

    fn load_outbox(&self) -> Task<Message> {
        match &self.env.remote {
            Some(remote) => Task::perform(remote.clone().outbox(), Message::OutboxLoaded),
            None => Task::none(),
        }
    }

    fn begin_card(&mut self) -> Task<Message> {
        if self.step != Step::Card || matches!(self.turn.card, CardPhase::Checking) {
            return Task::none();
        }
        let (Some(license), Some(consent)) = (&self.turn.license, &self.turn.consent) else {
            return Task::none();
        };
        self.interrupted = None;
        self.turn.card = CardPhase::Checking;
        let inputs = FlowInputs::fresh(
            license.as_str(),
            &self.env.terminal_id,
            self.env.operator_id.as_deref(),
            Some(consent.clone()),
        );
        Task::perform(self.env.card.clone().begin(inputs), Message::Checked)
    }

    fn submit_password(&mut self) -> Task<Message> {
        if !matches!(self.turn.card, CardPhase::Ready(_)) {
            return Task::none();
        }
        let confirm = self.turn.needs_last_try_confirmation();
        if confirm && !self.turn.last_try_confirmed {
            self.turn.password_problem =
                Some(FlowError::new(ErrorCode::LastTryRequiresConfirmation));
            return Task::none();
        }
        match self.turn.take_password() {
            Ok(password) => {
                self.turn.password_problem = None;
                self.turn.card = CardPhase::Verifying;
                Task::perform(
                    self.env.card.clone().verify(password, confirm),
                    Message::Verified,
                )
            }
            Err(_) => Task::none(),
        }
    }

    fn send(&mut self) -> Task<Message> {
        if self.turn.certificate.is_none() || !self.turn.identity_confirmed {
            return Task::none();
        }
        self.step = Step::Send;
        self.turn.send = SendPhase::Signing;
        Task::perform(shared::sign_when_it_can_be_kept(&self.env), Message::Signed)
    }

    fn primary(&mut self) -> Task<Message> {
        if self.pending_panel.is_some() {
            return self.update(Message::OperatorLogin);
        }
        match self.step {
            Step::Reception => {
                if self.turn.reception_done() {
                    self.step = Step::Terms;
                    Task::none()
                } else if self.turn.license.is_some()
                    && matches!(self.turn.lookup, Lookup::NotAsked)
                {
                    self.lookup()
                } else {
                    Task::none()
                }
            }
            Step::Terms => self.update(Message::Agree),
            Step::Card => self.begin_card(),
            Step::Password => self.submit_password(),
            Step::Confirm => self.send(),
            Step::Send => match &self.turn.send {
                // Retry the upload of a signature that failed to be kept.
                SendPhase::Failed(_) => self.cancel(),
                _ => Task::none(),
            },
            Step::Done => self.update(Message::NextPerson),
        }
    }

    fn back(&mut self) -> Task<Message> {
        if self.pending_panel.take().is_some() || self.panel != Panel::Flow {
            self.panel = Panel::Flow;
            return Task::none();
        }
        match self.step {
            Step::Reception => Task::none(),
            Step::Terms => {
                self.step = Step::Reception;
                operation::focus(LICENSE_ID)
            }
            Step::Card | Step::Password | Step::Confirm => self.cancel(),
            Step::Send => Task::none(),
            Step::Done => self.update(Message::NextPerson),
        }
    }

    /// Ends the card session and starts the turn over from reception.
    fn cancel(&mut self) -> Task<Message> {
        self.reset()
    }

    fn reset(&mut self) -> Task<Message> {
        self.turn = Turn::default();
        self.step = Step::Reception;
        Task::batch([
            Task::perform(self.env.card.clone().end(), |()| Message::CardEnded),
            operation::focus(LICENSE_ID),
        ])
    }

    /// A card arriving at step 3 starts the check; a card leaving mid-flow ends the session
    /// (nothing is signed); leaving at step 7 frees the counter for the next person.
    fn presence_changed(&mut self, before: Option<bool>) -> Task<Message> {
        let now = self.presence.card_present;
        if now == before {
            return Task::none();
        }
        match (now, self.step) {
            (Some(true), Step::Card) => self.begin_card(),
            (Some(false), Step::Card | Step::Password | Step::Confirm)
                if !matches!(self.turn.card, CardPhase::Waiting) =>
            {
                self.interrupted = Some(FlowError::new(ErrorCode::CardRemoved));
                self.step = Step::Card;
                self.turn.card = CardPhase::Waiting;
                self.turn.certificate = None;
                self.turn.identity_confirmed = false;
                self.turn.password = Zeroizing::new(String::new());
                Task::perform(self.env.card.clone().end(), |()| Message::CardEnded)
            }
            (Some(false), Step::Send) if matches!(self.turn.send, SendPhase::Signing) => {
                // The signature fails on the card; Signed(Err) reports it.
                Task::none()
            }
            _ => Task::none(),
        }
    }
}

fn key_message(event: keyboard::Event) -> Option<Message> {
    let keyboard::Event::KeyPressed { key, modifiers, .. } = event else {
        return None;
    };
    match key {
        Key::Named(Named::Enter) => Some(Message::Primary),
        Key::Named(Named::Escape) => Some(Message::Back),
        Key::Named(Named::Tab) if !modifiers.shift() => Some(Message::FocusNext),
        Key::Named(Named::F2) => Some(Message::ToggleLanguage),
        Key::Named(Named::F4) => Some(Message::StaffConfirm),
        _ => None,
    }
}
