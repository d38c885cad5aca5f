//! The window modes: the staff window (`mynalink`) and the self-service kiosk
//! (`mynalink kiosk`). No card or network logic lives here: the first-stage session runs on
//! a card worker thread and uploads on a backend worker thread; the window only awaits them.

mod card;
mod history;
mod i18n;
mod kiosk;
mod look;
mod remote;
mod setup;
mod shared;
mod staff;
mod turn;
mod worker;

#[cfg(test)]
mod tests;

use iced::window;

pub use shared::mark_process_start;

/// Which window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Staff,
    Kiosk,
}

/// Opens the window; returns the process exit code.
pub fn run(mode: Mode, demo: bool, config_path: Option<&std::path::Path>) -> i32 {
    if !has_display() {
        eprintln!(
            "mynalink: 画面がありません（DISPLAY / WAYLAND_DISPLAY 未設定）。端末では `mynalink headless` または `mynalink demo --headless` を使ってください。\n\
             mynalink: no display (DISPLAY / WAYLAND_DISPLAY not set). Use `mynalink headless` or `mynalink demo --headless` in a terminal."
        );
        return 2;
    }
    let env = match environment(demo, config_path) {
        Ok(env) => env,
        Err(e) => {
            eprintln!(
                "エラー / error [{}]: {} / {}",
                e.code, e.message_ja, e.message_en
            );
            if let Some(detail) = &e.detail {
                eprintln!("  ({detail})");
            }
            return if e.code == mynalink_link::ErrorCode::ConfigurationInvalid {
                2
            } else {
                1
            };
        }
    };
    let embedded = env.embedded.clone();
    let sender = env.sender.clone();
    let result = match mode {
        Mode::Staff => staff_application(env).run(),
        Mode::Kiosk => kiosk_application(env).run(),
    };
    // Let the background sender settle its delivery in flight before the process ends.
    if let Some(handle) = sender
        .handle
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        handle.shutdown();
    }
    if let Some(backend) = embedded.and_then(|b| std::sync::Arc::try_unwrap(b).ok()) {
        backend.remove();
    }
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("mynalink: ウィンドウを開けません / cannot open the window: {e}");
            1
        }
    }
}

pub fn has_display() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY", "WAYLAND_SOCKET"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

fn environment(
    demo: bool,
    config_path: Option<&std::path::Path>,
) -> Result<setup::Environment, mynalink_link::FlowError> {
    let config = crate::config::load(config_path)?;
    let language = config.language.map(i18n::Lang::from).unwrap_or_default();
    if demo {
        setup::demo(language)
    } else {
        setup::from_config(&config)
    }
}

/// The staff window as an iced application (shared with the tests).
pub fn staff_application(
    env: setup::Environment,
) -> iced::Application<impl iced::Program<State = staff::Staff, Message = staff::Message>> {
    iced::application(
        move || staff::Staff::new(env.clone()),
        staff::Staff::update,
        staff::Staff::view,
    )
    .title(staff::Staff::title)
    .subscription(staff::Staff::subscription)
    .settings(look::settings(look::STAFF_TEXT))
    .window(window::Settings {
        size: iced::Size::new(1200.0, 760.0),
        min_size: Some(iced::Size::new(1024.0, 700.0)),
        platform_specific: platform(),
        ..window::Settings::default()
    })
}

/// The kiosk as an iced application: full screen, no decorations, close requests ignored.
pub fn kiosk_application(
    env: setup::Environment,
) -> iced::Application<impl iced::Program<State = kiosk::Kiosk, Message = kiosk::Message>> {
    iced::application(
        move || kiosk::Kiosk::new(env.clone()),
        kiosk::Kiosk::update,
        kiosk::Kiosk::view,
    )
    .title(kiosk::Kiosk::title)
    .subscription(kiosk::Kiosk::subscription)
    .theme(kiosk::Kiosk::theme)
    .settings(look::settings(look::KIOSK_TEXT))
    .exit_on_close_request(false)
    .window(window::Settings {
        fullscreen: true,
        decorations: false,
        // Kept resizable: with a fixed size winit pins min = max and the window manager
        // cannot make it full screen.
        resizable: true,
        closeable: false,
        minimizable: false,
        exit_on_close_request: false,
        platform_specific: platform(),
        ..window::Settings::default()
    })
}

fn platform() -> window::settings::PlatformSpecific {
    window::settings::PlatformSpecific {
        // Without it X11's WM_CLASS is empty and kiosk session rules cannot match.
        application_id: "mynalink".into(),
        ..Default::default()
    }
}
