//! The self-service kiosk: full screen, large type and touch targets, on-screen keypads,
//! an idle timeout with a warning, and a "take your card" step that holds the next person
//! back until the card is out. Leaving it needs the staff key chord and the operator password.

mod view;

use std::time::{Duration, Instant};

use iced::keyboard::{self, key::Named, Key};
use iced::widget::operation;
use iced::{Color, Subscription, Task, Theme};
use mynalink_card::events::CardEvent;
use mynalink_card::PasswordStatus;
use mynalink_link::api::LicenseStatus;
use mynalink_link::outbox::EntryOptions;
use mynalink_link::upload::Delivery;
use mynalink_link::{ErrorCode, FlowError, FlowInputs, SignedStatement};
use zeroize::Zeroizing;

use super::card::CertificateView;
use super::i18n::Lang;
use super::look::{self, DANGER, SUCCESS};
use super::remote::LookupFailed;
use super::setup::Environment;
use super::shared::{self, Presence};
use super::turn::{CardPhase, Lookup, SendPhase, Turn};
use crate::operator_password::{PasswordCheck, Refusal};

/// The warning appears this long before the reset (JIS X 8341-3: at least 20 s to extend).
pub const IDLE_WARNING: Duration = Duration::from_secs(30);
/// Touch targets: at least 15 mm — 80 px is 21 mm on a 96 dpi panel and 15.5 mm at 131 dpi
/// (a 15.6" full-HD kiosk screen).
const KEY: f32 = 80.0;
/// The letter keypad has five rows: slightly shorter keys keep the password screen within
/// 768 px (still 17 mm on a 96 dpi panel).
const LETTER_KEY_HEIGHT: f32 = 66.0;
const BIG_BUTTON_HEIGHT: f32 = 88.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Welcome,
    Terms,
    License,
    Card,
    Password,
    LastTry,
    Working,
    Done,
}

#[derive(Debug, Clone)]
pub enum Message {
    Start,
    ToggleLanguage,
    Agree,
    Quit,
    Digit(char),
    DeleteDigit,
    LicenseEntered,
    StatusLoaded(String, Result<LicenseStatus, LookupFailed>),
    Checked(Result<PasswordStatus, FlowError>),
    Letter(char),
    DeleteLetter,
    PasswordEntered,
    LastTryAccepted,
    Verified(Result<(), FlowError>),
    CertificateRead(Result<CertificateView, FlowError>),
    Signed(Result<SignedStatement, FlowError>),
    Uploaded(Result<Delivery, FlowError>),
    CardEnded,
    Reader(CardEvent),
    DemoInsert,
    DemoRemove,
    DemoPresence(bool),
    /// The background sender reported; the kiosk shows nothing of it.
    SenderReported,
    Activity,
    Tick(Instant),
    StayHere,
    Frame,
    ExitChord,
    ExitPassword(String),
    ExitConfirm,
    ExitChecked(PasswordCheck),
    ExitCancel,
}

pub struct Kiosk {
    pub env: Environment,
    pub lang: Lang,
    pub screen: Screen,
    pub turn: Turn,
    pub presence: Presence,
    pub last_activity: Instant,
    pub now: Instant,
    /// Shown on the welcome screen after a reset (no personal data).
    pub notice: Option<FlowError>,
    pub exit_prompt: Option<Zeroizing<String>>,
    /// Why the last exit attempt was refused, and how long to wait.
    pub exit_refused: Option<Refusal>,
    pub first_frame_seen: bool,
    /// A card was still in the reader when the last turn was wiped (timeout): nobody may
    /// start on it until it has been taken out.
    pub leftover_card: bool,
}

const EXIT_ID: &str = "kiosk-exit-password";

impl Kiosk {
    pub fn new(env: Environment) -> (Kiosk, Task<Message>) {
        let presence = shared::initial_presence(&env);
        let fit = env.fit_to_monitor;
        let now = Instant::now();
        let kiosk = Kiosk {
            lang: env.language,
            env,
            screen: Screen::Welcome,
            turn: Turn::default(),
            presence,
            last_activity: now,
            now,
            notice: None,
            exit_prompt: None,
            exit_refused: None,
            first_frame_seen: false,
            leftover_card: false,
        };
        let task = if fit { fit_to_monitor() } else { Task::none() };
        (kiosk, task)
    }

    pub fn title(&self) -> String {
        "mynalink kiosk".into()
    }

    pub fn theme(&self) -> Theme {
        // High contrast: near-black on white, a dark blue for actions.
        Theme::custom(
            "mynalink kiosk".to_string(),
            iced::theme::Palette {
                background: Color::WHITE,
                text: Color::from_rgb(0.05, 0.05, 0.08),
                primary: Color::from_rgb(0.0, 0.25, 0.60),
                success: SUCCESS,
                warning: look::WARNING,
                danger: DANGER,
            },
        )
    }

    pub fn subscription(&self) -> Subscription<Message> {
        let mut subscriptions = vec![
            keyboard::listen().filter_map(key_message),
            iced::event::listen_with(activity),
            shared::sender_events(&self.env).map(|_| Message::SenderReported),
        ];
        if self.screen != Screen::Welcome {
            // Only while a person is at the kiosk: no wake-ups when idle.
            subscriptions.push(iced::time::every(Duration::from_secs(1)).map(Message::Tick));
        }
        if let Some(readers) = shared::reader_events(&self.env) {
            subscriptions.push(readers.map(Message::Reader));
        }
        if !self.first_frame_seen {
            subscriptions.push(iced::window::frames().map(|_| Message::Frame));
        }
        Subscription::batch(subscriptions)
    }

    /// Seconds until the turn is reset, when the warning is showing.
    pub fn idle_warning(&self) -> Option<u64> {
        if self.screen == Screen::Welcome {
            return None;
        }
        let idle = self.now.saturating_duration_since(self.last_activity);
        let limit = self.env.kiosk_idle;
        (idle + IDLE_WARNING >= limit).then(|| limit.saturating_sub(idle).as_secs())
    }

    pub fn update(&mut self, message: Message) -> Task<Message> {
        match message {
            // A card answer for a turn that was wiped meanwhile (card removed, timeout).
            Message::Verified(_)
            | Message::CertificateRead(_)
            | Message::Signed(_)
            | Message::Uploaded(_)
                if self.screen != Screen::Working =>
            {
                Task::none()
            }
            Message::Activity | Message::StayHere => {
                self.last_activity = Instant::now();
                self.now = self.last_activity;
                Task::none()
            }
            Message::Tick(now) => {
                self.now = now;
                let idle = now.saturating_duration_since(self.last_activity);
                if idle >= self.env.kiosk_idle && self.screen != Screen::Welcome {
                    return self.wipe(Some(
                        FlowError::new(ErrorCode::InputUnavailable).with_detail("idle timeout"),
                    ));
                }
                Task::none()
            }
            Message::Frame => {
                self.first_frame_seen = true;
                shared::log_first_frame("kiosk");
                Task::none()
            }
            Message::ToggleLanguage => {
                self.lang = self.lang.toggled();
                Task::none()
            }
            Message::Start => {
                if self.leftover_card && self.presence.card_present == Some(true) {
                    return Task::none();
                }
                self.leftover_card = false;
                self.notice = None;
                self.touch();
                self.screen = Screen::Terms;
                Task::none()
            }
            Message::Quit => self.wipe(None),
            Message::Agree => {
                if let Ok(terms) = &self.env.terms {
                    self.turn.consent = Some(terms.reference());
                    self.screen = Screen::License;
                }
                Task::none()
            }
            Message::Digit(d) => {
                let digits: String = self
                    .turn
                    .license_input
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect();
                if digits.len() < 12 {
                    self.turn.set_license_input(format!("{digits}{d}"));
                }
                Task::none()
            }
            Message::DeleteDigit => {
                let mut digits: String = self
                    .turn
                    .license_input
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect();
                digits.pop();
                self.turn.set_license_input(digits);
                Task::none()
            }
            Message::LicenseEntered => {
                let Some(license) = &self.turn.license else {
                    return Task::none();
                };
                let number = license.as_str().to_string();
                match &self.env.remote {
                    Some(remote) => {
                        self.turn.lookup = Lookup::Loading;
                        Task::perform(remote.clone().status(number.clone()), move |r| {
                            Message::StatusLoaded(number.clone(), r)
                        })
                    }
                    None => {
                        self.turn.lookup = Lookup::Failed("no backend".into());
                        self.go_to_card()
                    }
                }
            }
            Message::StatusLoaded(number, result) => {
                if self.turn.license.as_ref().map(|l| l.as_str()) != Some(number.as_str()) {
                    return Task::none();
                }
                self.turn.lookup = match result {
                    Ok(status) => Lookup::Found(status),
                    Err(LookupFailed(reason)) => Lookup::Failed(reason),
                };
                if self.turn.reception_done() {
                    self.go_to_card()
                } else {
                    Task::none()
                }
            }
            Message::Checked(result) => {
                if self.screen != Screen::Card {
                    return Task::none();
                }
                match result {
                    Ok(status) => {
                        self.turn.note_card_status(status);
                        self.screen = match status {
                            PasswordStatus::Tries(_) | PasswordStatus::Unknown => Screen::Password,
                            // Blocked or no certificate: explained with "take your card".
                            _ => Screen::Done,
                        };
                        Task::none()
                    }
                    Err(e) if e.code == ErrorCode::NoCard => {
                        self.turn.card = CardPhase::Waiting;
                        Task::none()
                    }
                    Err(e) => {
                        self.turn.card = CardPhase::Failed(e);
                        self.screen = Screen::Done;
                        Task::none()
                    }
                }
            }
            Message::Letter(c) => {
                self.turn.push_password_char(c);
                Task::none()
            }
            Message::DeleteLetter => {
                self.turn.pop_password_char();
                Task::none()
            }
            Message::PasswordEntered => {
                if self.turn.needs_last_try_confirmation() && !self.turn.last_try_confirmed {
                    self.screen = Screen::LastTry;
                    return Task::none();
                }
                self.verify()
            }
            Message::LastTryAccepted => {
                self.turn.last_try_confirmed = true;
                self.screen = Screen::Password;
                self.verify()
            }
            Message::Verified(result) => match result {
                Ok(()) => {
                    self.turn.card = CardPhase::Reading;
                    Task::perform(
                        self.env.card.clone().read_certificate(),
                        Message::CertificateRead,
                    )
                }
                Err(e) => {
                    self.turn.note_verify_failure(e);
                    self.screen = if self.turn.card_refused().is_some()
                        || matches!(self.turn.card, CardPhase::Failed(_))
                    {
                        Screen::Done
                    } else {
                        Screen::Password
                    };
                    Task::none()
                }
            },
            Message::CertificateRead(result) => match result {
                Ok(view) => {
                    self.turn.card = CardPhase::Read;
                    // Kept only until the turn ends; the kiosk shows the serial, not the name.
                    self.turn.certificate = Some(view);
                    self.turn.send = SendPhase::Signing;
                    Task::perform(shared::sign_when_it_can_be_kept(&self.env), Message::Signed)
                }
                Err(e) => {
                    self.turn.card = CardPhase::Failed(e);
                    self.screen = Screen::Done;
                    Task::none()
                }
            },
            Message::Signed(result) => match result {
                Ok(signed) => {
                    self.turn.send = SendPhase::Uploading;
                    let end = Task::perform(self.env.card.clone().end(), |()| Message::CardEnded);
                    // Nobody compares the holder by eye at a kiosk.
                    let options = EntryOptions::default();
                    let upload = match &self.env.remote {
                        Some(remote) => {
                            Task::perform(remote.clone().upload(signed, options), Message::Uploaded)
                        }
                        None => Task::done(Message::Uploaded(Err(FlowError::new(
                            ErrorCode::ConfigurationInvalid,
                        )))),
                    };
                    Task::batch([end, upload])
                }
                Err(e) => {
                    self.turn.send = SendPhase::Failed(e);
                    self.screen = Screen::Done;
                    Task::none()
                }
            },
            Message::Uploaded(result) => {
                self.turn.send = match result {
                    Ok(delivery) => {
                        if delivery.still_queued() {
                            shared::wake_sender(&self.env);
                        }
                        SendPhase::Finished(delivery)
                    }
                    Err(e) => SendPhase::Failed(e),
                };
                // The certificate's fields are not needed any more.
                self.turn.certificate = None;
                self.screen = Screen::Done;
                Task::none()
            }
            Message::CardEnded | Message::SenderReported => Task::none(),
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
            Message::ExitChord => {
                self.exit_prompt = Some(Zeroizing::new(String::new()));
                self.exit_refused = None;
                operation::focus(EXIT_ID)
            }
            Message::ExitPassword(p) => {
                if self.exit_prompt.is_some() {
                    self.exit_prompt = Some(Zeroizing::new(p));
                }
                Task::none()
            }
            Message::ExitConfirm => {
                let Some(typed) = self.exit_prompt.take() else {
                    return Task::none();
                };
                shared::check_operator_password(&self.env, typed, Message::ExitChecked)
            }
            Message::ExitChecked(check) => match check {
                PasswordCheck::Accepted => iced::exit(),
                PasswordCheck::Refused(refusal) => {
                    self.exit_refused = Some(refusal);
                    self.exit_prompt = Some(Zeroizing::new(String::new()));
                    Task::none()
                }
            },
            Message::ExitCancel => {
                self.exit_prompt = None;
                Task::none()
            }
        }
    }

    fn card_left_behind(&self) -> bool {
        self.leftover_card && self.presence.card_present == Some(true)
    }

    fn touch(&mut self) {
        self.last_activity = Instant::now();
        self.now = self.last_activity;
    }

    fn go_to_card(&mut self) -> Task<Message> {
        self.screen = Screen::Card;
        if self.presence.card_present == Some(true) {
            self.begin_card()
        } else {
            Task::none()
        }
    }

    fn begin_card(&mut self) -> Task<Message> {
        let (Some(license), Some(consent)) = (&self.turn.license, &self.turn.consent) else {
            return Task::none();
        };
        if matches!(self.turn.card, CardPhase::Checking) {
            return Task::none();
        }
        self.turn.card = CardPhase::Checking;
        let inputs = FlowInputs::fresh(
            license.as_str(),
            &self.env.terminal_id,
            None,
            Some(consent.clone()),
        );
        Task::perform(self.env.card.clone().begin(inputs), Message::Checked)
    }

    fn verify(&mut self) -> Task<Message> {
        if !matches!(self.turn.card, CardPhase::Ready(_)) {
            return Task::none();
        }
        let confirm = self.turn.last_try_confirmed;
        match self.turn.take_password() {
            Ok(password) => {
                self.turn.card = CardPhase::Verifying;
                self.screen = Screen::Working;
                Task::perform(
                    self.env.card.clone().verify(password, confirm),
                    Message::Verified,
                )
            }
            Err(_) => Task::none(),
        }
    }

    /// Everything of this person goes: the password, the certificate's fields, the license
    /// number. The card session ends.
    fn wipe(&mut self, notice: Option<FlowError>) -> Task<Message> {
        self.turn = Turn::default();
        self.leftover_card = self.presence.card_present == Some(true);
        self.screen = Screen::Welcome;
        self.notice = notice;
        self.exit_prompt = None;
        Task::perform(self.env.card.clone().end(), |()| Message::CardEnded)
    }

    fn presence_changed(&mut self, before: Option<bool>) -> Task<Message> {
        let now = self.presence.card_present;
        if now == before {
            return Task::none();
        }
        if now != Some(true) {
            self.leftover_card = false;
        }
        match (now, self.screen) {
            (Some(true), Screen::Card) => self.begin_card(),
            // The card is out after the result: the next person may start.
            (Some(false), Screen::Done) => self.wipe(None),
            (Some(false), Screen::Password | Screen::LastTry | Screen::Working) => {
                self.wipe(Some(FlowError::new(ErrorCode::CardRemoved)))
            }
            (Some(false), Screen::Card) if !matches!(self.turn.card, CardPhase::Waiting) => {
                self.wipe(Some(FlowError::new(ErrorCode::CardRemoved)))
            }
            _ => Task::none(),
        }
    }
}

fn key_message(event: keyboard::Event) -> Option<Message> {
    let keyboard::Event::KeyPressed { key, modifiers, .. } = event else {
        return None;
    };
    // The staff chord: Ctrl+Alt+Shift+F12.
    if modifiers.control() && modifiers.alt() && modifiers.shift() && key == Key::Named(Named::F12)
    {
        return Some(Message::ExitChord);
    }
    None
}

fn activity(
    event: iced::Event,
    _status: iced::event::Status,
    _window: iced::window::Id,
) -> Option<Message> {
    match event {
        iced::Event::Mouse(iced::mouse::Event::ButtonPressed(_))
        | iced::Event::Touch(iced::touch::Event::FingerPressed { .. })
        | iced::Event::Keyboard(keyboard::Event::KeyPressed { .. }) => Some(Message::Activity),
        _ => None,
    }
}

/// Without a window manager nobody honours the full-screen request: size the window to the
/// monitor ourselves.
fn fit_to_monitor() -> Task<Message> {
    iced::window::latest().and_then(|id| {
        iced::window::monitor_size(id).and_then(move |size| {
            Task::batch([
                iced::window::move_to(id, iced::Point::ORIGIN),
                iced::window::resize(id, size),
            ])
        })
    })
}
