//! Simulator tests of both windows, and one `.ice` end-to-end flow per mode.
//!
//! The simulator tests drive the real `update` and `view` on a demo environment (simulated
//! card, embedded backend). The tasks `update` returns are run here as the iced runtime
//! would run them — card and backend work on their worker threads — and their messages are
//! fed back in order, so no test waits on a clock. Views are inspected with
//! `iced_test::Simulator` under the window's own settings (the Japanese font).

mod ice;
mod kiosk;
mod pcsc;
mod staff;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use iced::{Element, Task};
use iced_test::futures::futures::StreamExt;
use iced_test::runtime::{task, Action};
use iced_test::selector::Candidate;
use iced_test::Simulator;
use mynalink_simcard::{SimHandle, SimOptions};

use super::i18n::Lang;
use super::look;
use super::setup::{self, Environment};

/// A task that has not finished by then is a hang, not a slow machine.
const TASK_LIMIT: Duration = Duration::from_secs(30);

/// The demo's temporary directory (backend database, outbox, terms), removed after the test.
pub(super) struct DemoDir(Option<PathBuf>);

impl Drop for DemoDir {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn dir_of(env: &Environment) -> DemoDir {
    DemoDir(env.embedded.as_ref().map(|backend| backend.dir.clone()))
}

/// A demo environment in Japanese with the given simulated card.
pub(super) fn demo(options: SimOptions) -> (Environment, DemoDir) {
    let env = setup::demo_with(Lang::Ja, options).expect("demo environment");
    let dir = dir_of(&env);
    (env, dir)
}

/// The same with the backend out of reach.
pub(super) fn demo_backend_down(options: SimOptions) -> (Environment, DemoDir) {
    let env = setup::demo_backend_down(Lang::Ja, options).expect("demo environment");
    let dir = dir_of(&env);
    (env, dir)
}

pub(super) fn card_with_tries(tries: u8) -> SimOptions {
    SimOptions {
        signing_tries: tries,
        ..SimOptions::default()
    }
}

/// A card that takes its time, like a real one on a slow reader.
pub(super) fn slow_card(apdu: Duration, sign: Duration) -> SimOptions {
    SimOptions {
        apdu_latency: apdu,
        sign_latency: sign,
        ..SimOptions::default()
    }
}

pub(super) fn sim(env: &Environment) -> SimHandle {
    env.simulated_card()
        .cloned()
        .expect("the demo uses the simulated card")
}

/// The number of COMPUTE DIGITAL SIGNATURE commands the card has received.
pub(super) fn signatures(card: &SimHandle) -> usize {
    card.with_card(|c| {
        c.commands()
            .iter()
            .filter(|apdu| apdu.get(1) == Some(&0x2A))
            .count()
    })
}

/// Password attempts that reached the card (VERIFY with data).
pub(super) fn verify_attempts(card: &SimHandle) -> usize {
    card.with_card(|c| c.verify_attempts())
}

/// One of the two windows, as the tests drive it.
pub(super) trait Window {
    type Message: std::fmt::Debug + Send + 'static;
    /// The window size the views are laid out in.
    const SIZE: (f32, f32);
    const TEXT_SIZE: f32;
    fn apply(&mut self, message: Self::Message) -> Task<Self::Message>;
    fn render(&self) -> Element<'_, Self::Message>;
}

impl Window for super::staff::Staff {
    type Message = super::staff::Message;
    // The staff window's default size.
    const SIZE: (f32, f32) = (1200.0, 760.0);
    const TEXT_SIZE: f32 = look::STAFF_TEXT;

    fn apply(&mut self, message: Self::Message) -> Task<Self::Message> {
        self.update(message)
    }

    fn render(&self) -> Element<'_, Self::Message> {
        self.view()
    }
}

impl Window for super::kiosk::Kiosk {
    type Message = super::kiosk::Message;
    // The smallest kiosk panel the layout supports; every screen, with its notices, must fit.
    const SIZE: (f32, f32) = (1024.0, 768.0);
    const TEXT_SIZE: f32 = look::KIOSK_TEXT;

    fn apply(&mut self, message: Self::Message) -> Task<Self::Message> {
        self.update(message)
    }

    fn render(&self) -> Element<'_, Self::Message> {
        self.view()
    }
}

/// A window's state with a runtime for its tasks.
pub(super) struct Harness<W: Window> {
    pub app: W,
    rt: tokio::runtime::Runtime,
    /// A task asked the runtime to exit (`iced::exit`).
    pub exit_requested: bool,
    // Dropped last: the state holds the backend that uses the directory.
    _dir: DemoDir,
}

impl<W: Window> Harness<W> {
    /// Boots the window: the boot task runs to completion.
    pub fn boot((app, boot): (W, Task<W::Message>), dir: DemoDir) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let mut harness = Harness {
            app,
            rt,
            exit_requested: false,
            _dir: dir,
        };
        harness.run(boot);
        harness
    }

    /// `update`, then everything the returned task leads to.
    pub fn send(&mut self, message: W::Message) {
        let task = self.app.apply(message);
        self.run(task);
    }

    /// `update` only: the caller decides when (and whether) the task runs.
    pub fn update(&mut self, message: W::Message) -> Task<W::Message> {
        self.app.apply(message)
    }

    /// Runs a task and, in order, every task that its messages lead to.
    pub fn run(&mut self, task: Task<W::Message>) {
        let mut queue = VecDeque::from([task]);
        while let Some(task) = queue.pop_front() {
            for message in self.collect(task) {
                queue.push_back(self.app.apply(message));
            }
        }
    }

    /// Runs a task to its end and returns its messages without applying them.
    pub fn collect(&mut self, task: Task<W::Message>) -> Vec<W::Message> {
        let Some(mut stream) = task::into_stream(task) else {
            return Vec::new();
        };
        let mut messages = Vec::new();
        loop {
            let next = self
                .rt
                .block_on(async { tokio::time::timeout(TASK_LIMIT, stream.next()).await })
                .expect("a task did not finish");
            match next {
                None => break,
                Some(Action::Output(message)) => messages.push(message),
                Some(Action::Exit) => self.exit_requested = true,
                // Focus changes and window requests have no effect on the state.
                Some(_) => {}
            }
        }
        messages
    }

    /// Starts a task in the background, as the runtime does; its messages arrive on the
    /// receiver while the test goes on with the window.
    pub fn spawn(
        &self,
        task: Task<W::Message>,
    ) -> tokio::sync::mpsc::UnboundedReceiver<W::Message> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        if let Some(mut stream) = task::into_stream(task) {
            self.rt.spawn(async move {
                while let Some(action) = stream.next().await {
                    if let Action::Output(message) = action {
                        let _ = tx.send(message);
                    }
                }
            });
        }
        rx
    }

    /// Waits for a background task's messages (until it ends).
    pub fn wait(
        &self,
        mut rx: tokio::sync::mpsc::UnboundedReceiver<W::Message>,
    ) -> Vec<W::Message> {
        self.rt.block_on(async {
            let mut messages = Vec::new();
            loop {
                match tokio::time::timeout(TASK_LIMIT, rx.recv()).await {
                    Ok(Some(message)) => messages.push(message),
                    Ok(None) => break messages,
                    Err(_) => panic!("a background task did not finish"),
                }
            }
        })
    }

    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.rt.block_on(future)
    }

    /// What a subscription makes of the given window events, as the runtime would deliver
    /// them to it (timers and background streams have nothing to say at once).
    pub fn subscription_messages<M: 'static>(
        &self,
        subscription: iced::Subscription<M>,
        events: &[iced::Event],
    ) -> Vec<M> {
        use iced_test::futures::futures::{stream, FutureExt};
        use iced_test::futures::subscription;

        // Timer subscriptions need the runtime's clock when their streams are made.
        let _runtime = self.rt.enter();
        let window = iced::window::Id::unique();
        let mut messages = Vec::new();
        for recipe in subscription::into_recipes(subscription) {
            let owned: Vec<iced::Event> = events.to_vec();
            let input = stream::iter(owned.into_iter().map(move |event| {
                subscription::Event::Interaction {
                    window,
                    event,
                    status: iced::event::Status::Ignored,
                }
            }))
            .boxed();
            let mut output = recipe.stream(input);
            while let Some(Some(message)) = output.next().now_or_never() {
                messages.push(message);
            }
        }
        messages
    }

    /// The current view, laid out at the window's size with its font.
    pub fn ui(&self) -> Simulator<'_, W::Message> {
        Simulator::with_size(look::settings(W::TEXT_SIZE), W::SIZE, self.app.render())
    }

    /// Every text on screen: text widgets, labels, and what text fields show.
    pub fn texts(&self) -> Vec<String> {
        let mut found = Vec::new();
        let mut ui = self.ui();
        let _ = ui.find(|candidate: Candidate<'_>| -> Option<()> {
            match candidate {
                Candidate::Text { content, .. } => found.push(content.to_string()),
                Candidate::TextInput { state, .. } => found.push(state.text().to_string()),
                _ => {}
            }
            None
        });
        drop(ui);
        found
    }

    pub fn shows(&self, text: &str) -> bool {
        self.ui().find(text).is_ok()
    }

    #[track_caller]
    pub fn assert_shows(&self, text: &str) {
        assert!(
            self.shows(text),
            "{text:?} is not on screen; the screen shows {:#?}",
            self.texts()
        );
    }

    #[track_caller]
    pub fn assert_hides(&self, text: &str) {
        assert!(
            !self.shows(text),
            "{text:?} should not be on screen; the screen shows {:#?}",
            self.texts()
        );
    }

    /// Whether some text on screen contains `part`.
    pub fn shows_part(&self, part: &str) -> bool {
        self.texts().iter().any(|t| t.contains(part))
    }

    /// The messages a click on the text produces (none for a disabled button).
    #[track_caller]
    pub fn click_messages(&self, text: &str) -> Vec<W::Message> {
        let mut ui = self.ui();
        if let Err(e) = ui.click(text) {
            panic!(
                "cannot click {text:?}: {e}; the screen shows {:#?}",
                self.texts()
            );
        }
        ui.into_messages().collect()
    }

    /// Clicks the text (a button label, a checkbox label) and applies what follows.
    #[track_caller]
    pub fn click(&mut self, text: &str) {
        let messages = self.click_messages(text);
        assert!(
            !messages.is_empty(),
            "clicking {text:?} did nothing (disabled?)"
        );
        for message in messages {
            self.send(message);
        }
    }

    /// Several clicks on one frame, e.g. keypad keys, whose messages do not depend on what
    /// the screen shows between them.
    #[track_caller]
    pub fn click_all(&mut self, texts: &[&str]) {
        let messages: Vec<W::Message> = {
            let mut ui = self.ui();
            for text in texts {
                if let Err(e) = ui.click(*text) {
                    panic!("cannot click {text:?}: {e}");
                }
            }
            ui.into_messages().collect()
        };
        assert!(!messages.is_empty(), "the clicks did nothing");
        for message in messages {
            self.send(message);
        }
    }

    /// Clicks a text field found by its placeholder and types into it.
    #[track_caller]
    pub fn type_into(&mut self, placeholder: &str, typed: &str) {
        let messages: Vec<W::Message> = {
            let mut ui = self.ui();
            if let Err(e) = ui.click(placeholder) {
                panic!("no field {placeholder:?}: {e}");
            }
            let _ = ui.typewrite(typed);
            ui.into_messages().collect()
        };
        for message in messages {
            self.send(message);
        }
    }
}

/// A key press as the window delivers it.
pub(super) fn key_press(
    key: iced::keyboard::key::Named,
    modifiers: iced::keyboard::Modifiers,
) -> iced::Event {
    let key = iced::keyboard::Key::Named(key);
    iced::Event::Keyboard(iced::keyboard::Event::KeyPressed {
        key: key.clone(),
        modified_key: key,
        physical_key: iced::keyboard::key::Physical::Unidentified(
            iced::keyboard::key::NativeCode::Unidentified,
        ),
        location: iced::keyboard::Location::Standard,
        modifiers,
        text: None,
        repeat: false,
    })
}
