//! The kiosk, screen by screen, on the demo environment.

use std::time::Duration;

use iced::keyboard::{key::Named, Modifiers};
use iced::Program;
use mynalink_link::upload::Delivery;
use mynalink_link::{ErrorCode, FlowError};
use mynalink_simcard::SimOptions;

use super::super::i18n::{error_text, Lang};
use super::super::kiosk::{Kiosk, Message, Screen, IDLE_WARNING};
use super::super::look;
use super::super::setup::{demo_ineligible_license, Environment};
use super::super::turn::{CardPhase, SendPhase};
use super::*;
use crate::demo::DEMO_LICENSE;
use crate::operator_password;

const START: &str = "はじめる";
const AGREE: &str = "同意して次へ";
const OK: &str = "決定";
const DONE: &str = "第1段階が完了しました";
const TAKE_CARD: &str = "カードをお取りください";
const REMOVED_NOTICE: &str =
    "カードが取り外されたため、最初に戻りました。入力した内容は消去しました。";
const IDLE_NOTICE: &str =
    "しばらく操作がなかったため、最初に戻りました。入力した内容は消去しました。";

fn kiosk((env, dir): (Environment, DemoDir)) -> Harness<Kiosk> {
    Harness::boot(Kiosk::new(env), dir)
}

fn keys(text: &str) -> Vec<String> {
    text.chars().map(String::from).collect()
}

fn press(h: &mut Harness<Kiosk>, text: &str) {
    let keys = keys(text);
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    h.click_all(&keys);
}

/// Welcome → terms → the license number on the keypad.
fn to_license(h: &mut Harness<Kiosk>, number: &str) {
    h.click(START);
    assert_eq!(h.app.screen, Screen::Terms);
    h.click(AGREE);
    assert_eq!(h.app.screen, Screen::License);
    press(h, number);
    assert_eq!(h.app.turn.license_input, number);
}

/// Up to the password keypad (the demo card is on the reader).
fn to_password(h: &mut Harness<Kiosk>) {
    to_license(h, DEMO_LICENSE);
    h.click(OK);
    assert_eq!(
        h.app.screen,
        Screen::Password,
        "card: {:?}",
        h.app.turn.card
    );
}

#[test]
fn welcome_leads_to_the_terms_with_their_readings() {
    let (env, dir) = demo(SimOptions::default());
    let terms = env.terms.clone().expect("demo terms");
    let mut h = kiosk((env, dir));
    assert_eq!(h.app.screen, Screen::Welcome);
    h.assert_shows("マイナ免許証をマイナポータルと連携します");
    h.assert_hides(AGREE);
    h.click(START);
    assert_eq!(h.app.screen, Screen::Terms);
    h.assert_shows(AGREE);
    h.assert_shows("やめる");
    // The kiosk shows each reading after its word, in parentheses. The paragraph is rich
    // text, which the simulator's selectors cannot see; what it is built from is checked.
    let readings: Vec<String> = look::ruby_segments(&terms.text)
        .into_iter()
        .filter_map(|(_, reading)| reading)
        .collect();
    assert_eq!(readings, ["しょめいようでんししょうめいしょ"]);
    // The terms explain the marks themselves: an empty reading is no mark.
    assert!(look::plain(&terms.text).contains("語の前に「｜」、読みを《》で囲んで書くと"));
    h.click("やめる");
    assert_eq!(h.app.screen, Screen::Welcome);
    assert!(h.app.turn.consent.is_none());
}

#[test]
fn the_numeric_keypad_builds_the_license_number() {
    let mut h = kiosk(demo(SimOptions::default()));
    h.click(START);
    h.click(AGREE);
    let consent = h.app.turn.consent.clone().expect("consent");
    assert_eq!(consent.version, "demo-1");
    h.assert_shows("____________");
    press(&mut h, "7299");
    h.assert_shows("7299________");
    assert!(h.click_messages(OK).is_empty(), "not yet complete");
    press(&mut h, "13281079");
    h.click("1字消す");
    press(&mut h, "0");
    assert_eq!(h.app.turn.license_input, DEMO_LICENSE);
    h.assert_shows(DEMO_LICENSE);
    // A thirteenth digit is not taken.
    press(&mut h, "5");
    assert_eq!(h.app.turn.license_input, DEMO_LICENSE);

    h.click(OK);
    assert_eq!(h.app.screen, Screen::Password);
    h.assert_shows("のこり 5 回");
}

#[test]
fn a_wrong_check_digit_is_explained_on_the_keypad() {
    let mut h = kiosk(demo(SimOptions::default()));
    to_license(&mut h, "729913281060");
    let problem = h.app.turn.license_problem.clone().expect("check digit");
    assert_eq!(problem.code, ErrorCode::LicenseNumberInvalid);
    h.assert_shows(&error_text(Lang::Ja, &problem));
    assert!(h.click_messages(OK).is_empty());
}

#[test]
fn a_holder_who_cannot_link_is_sent_to_the_staff() {
    let mut h = kiosk(demo(SimOptions::default()));
    to_license(&mut h, &demo_ineligible_license());
    h.click(OK);
    assert_eq!(h.app.screen, Screen::License);
    h.assert_shows("この免許証では連携できません（マイナ免許証・マイナ経歴証明書の方が対象です）。係員にお声がけください。");
    assert!(h.click_messages(OK).is_empty(), "no way on");
}

#[test]
fn the_letter_keypad_shows_dots_only_and_the_flow_completes() {
    let (env, dir) = demo(SimOptions::default());
    let card = sim(&env);
    let mut h = kiosk((env, dir));
    to_password(&mut h);
    assert!(h.click_messages(OK).is_empty(), "nothing typed yet");
    press(&mut h, "TEST1234");
    assert_eq!(h.app.turn.password.as_str(), "TEST1234");
    h.assert_shows("●●●●●●●●");
    let texts = h.texts();
    assert!(
        !texts.iter().any(|t| t.contains("TEST1")),
        "the password is never shown: {texts:?}"
    );
    h.click("1字消す");
    h.assert_shows("●●●●●●●");
    press(&mut h, "4");

    h.click(OK);
    assert_eq!(h.app.screen, Screen::Done);
    assert!(matches!(
        h.app.turn.send,
        SendPhase::Finished(Delivery::Linked { .. })
    ));
    assert_eq!(signatures(&card), 1);
    h.assert_shows(DONE);
    assert!(h.app.turn.certificate.is_none(), "dropped after the upload");
    assert!(h.app.turn.password.is_empty());
}

#[test]
fn a_full_disk_stops_the_kiosk_before_the_card_signs() {
    let (env, dir) = demo(SimOptions::default());
    let card = sim(&env);
    let mut reserve = env
        .embedded
        .as_ref()
        .expect("the demo's backend")
        .dir
        .join("outbox.db")
        .into_os_string();
    reserve.push(".reserve");
    // The outbox's reserve cannot be made, as on a full disk.
    std::fs::create_dir(&reserve).expect("something in the reserve's place");
    let mut h = kiosk((env, dir));
    to_password(&mut h);
    press(&mut h, "TEST1234");
    h.click(OK);
    assert_eq!(h.app.screen, Screen::Done);
    let SendPhase::Failed(e) = &h.app.turn.send else {
        panic!("the turn should stop: {:?}", h.app.turn.send);
    };
    assert_eq!(e.code, ErrorCode::OutboxUnavailable);
    h.assert_shows(&error_text(Lang::Ja, e));
    assert_eq!(signatures(&card), 0, "the card was never asked to sign");
    h.assert_hides(DONE);
}

#[test]
fn a_wrong_password_then_the_last_try_screen() {
    let (env, dir) = demo(card_with_tries(2));
    let card = sim(&env);
    let mut h = kiosk((env, dir));
    to_password(&mut h);
    h.assert_shows("のこり 2 回");
    press(&mut h, "WRONG1");
    h.click(OK);
    assert_eq!(h.app.screen, Screen::Password);
    assert_eq!(card.with_card(|c| c.signing_tries()), 1);
    h.assert_shows("のこり 1 回");
    // The kiosk's short wording, so that the whole keypad still fits 1024x768.
    h.assert_shows("パスワードがちがいます。もう一度入力してください。");

    // One try left: a second screen asks before the card is used.
    press(&mut h, "TEST1234");
    h.click(OK);
    assert_eq!(h.app.screen, Screen::LastTry);
    assert_eq!(verify_attempts(&card), 1, "not sent yet");
    h.assert_shows("のこり1回です。まちがえるとロックされ、市区町村の窓口での再設定が必要になります。自信がなければ、やめて係員にお声がけください。");
    h.click("この内容で送る");
    assert_eq!(verify_attempts(&card), 2);
    assert_eq!(h.app.screen, Screen::Done);
    h.assert_shows(DONE);
}

#[test]
fn a_blocked_card_is_sent_to_the_municipal_office() {
    let mut h = kiosk(demo(card_with_tries(0)));
    to_license(&mut h, DEMO_LICENSE);
    h.click(OK);
    // Straight to the result: the explanation, and the card must be taken.
    assert_eq!(h.app.screen, Screen::Done);
    h.assert_shows(&error_text(
        Lang::Ja,
        &FlowError::new(ErrorCode::PinBlocked),
    ));
    h.assert_shows(TAKE_CARD);
    h.assert_hides(DONE);
    assert!(FlowError::new(ErrorCode::PinBlocked)
        .message_ja
        .contains("市区町村の窓口"));
}

#[test]
fn the_idle_warning_comes_early_and_continue_extends_the_turn() {
    let mut h = kiosk(demo(SimOptions::default()));
    let limit = h.app.env.kiosk_idle;
    assert!(IDLE_WARNING >= Duration::from_secs(20));
    to_password(&mut h);
    press(&mut h, "TES");

    let start = h.app.last_activity;
    h.send(Message::Tick(
        start + limit - IDLE_WARNING - Duration::from_secs(1),
    ));
    assert_eq!(h.app.idle_warning(), None);
    h.assert_hides("続ける");
    h.send(Message::Tick(start + limit - IDLE_WARNING));
    let left = h.app.idle_warning().expect("warning");
    assert!(left >= 20, "only {left} s to react");
    h.assert_shows(&format!(
        "操作がないため、あと{left}秒で最初の画面に戻ります。"
    ));
    h.click("続ける");
    assert!(h.app.last_activity > start);
    assert_eq!(h.app.idle_warning(), None);
    h.assert_hides("続ける");
    // The old deadline passes without a reset.
    h.send(Message::Tick(start + limit));
    assert_eq!(h.app.screen, Screen::Password);
    assert_eq!(h.app.turn.password.as_str(), "TES");
}

#[test]
fn the_idle_timeout_wipes_the_turn() {
    let (env, dir) = demo(SimOptions::default());
    let card = sim(&env);
    let mut h = kiosk((env, dir));
    to_password(&mut h);
    press(&mut h, "TEST1234");
    // Stop half way: the certificate is read, the signature not yet started.
    let verify = h.update(Message::PasswordEntered);
    for message in h.collect(verify) {
        let read = h.update(message);
        for message in h.collect(read) {
            let _sign_not_run = h.update(message);
        }
    }
    assert!(h.app.turn.certificate.is_some());
    assert!(card.with_card(|c| c.signing_verified()));

    let deadline = h.app.last_activity + h.app.env.kiosk_idle;
    h.send(Message::Tick(deadline));
    assert_eq!(h.app.screen, Screen::Welcome);
    assert!(h.app.turn.license_input.is_empty());
    assert!(h.app.turn.license.is_none());
    assert!(h.app.turn.password.is_empty());
    assert!(h.app.turn.certificate.is_none());
    assert!(h.app.turn.consent.is_none());
    assert!(!card.with_card(|c| c.signing_verified()), "session ended");
    h.assert_shows(IDLE_NOTICE);
    assert_eq!(signatures(&card), 0);
}

#[test]
fn removing_the_card_mid_flow_wipes_the_turn() {
    let mut h = kiosk(demo(SimOptions::default()));
    to_password(&mut h);
    press(&mut h, "TEST");
    h.click("カードを取る");
    assert_eq!(h.app.screen, Screen::Welcome);
    assert!(h.app.turn.password.is_empty());
    assert!(h.app.turn.license_input.is_empty());
    h.assert_shows(REMOVED_NOTICE);
    h.click(START);
    h.assert_hides(REMOVED_NOTICE);
}

/// The card leaves while it signs: the turn is wiped, and the late answer from the card
/// does not bring the screen back.
#[test]
fn a_late_card_answer_after_removal_keeps_the_welcome_screen() {
    let (env, dir) = demo(slow_card(Duration::ZERO, Duration::from_millis(1500)));
    let card = sim(&env);
    let mut h = kiosk((env, dir));
    to_password(&mut h);
    press(&mut h, "TEST1234");
    let verify = h.update(Message::PasswordEntered);
    let mut signing = None;
    for message in h.collect(verify) {
        let read = h.update(message);
        for message in h.collect(read) {
            signing = Some(h.update(message));
        }
    }
    assert_eq!(h.app.screen, Screen::Working);
    let results = h.spawn(signing.expect("signature started"));
    h.click("カードを取る");
    assert_eq!(h.app.screen, Screen::Welcome);
    for message in h.wait(results) {
        h.send(message);
    }
    assert_eq!(signatures(&card), 0);
    assert_eq!(h.app.screen, Screen::Welcome);
    h.assert_shows(REMOVED_NOTICE);
    h.assert_shows(START);
}

#[test]
fn take_your_card_holds_the_next_person_back() {
    let mut h = kiosk(demo(SimOptions::default()));
    to_password(&mut h);
    press(&mut h, "TEST1234");
    h.click(OK);
    h.assert_shows(DONE);
    h.assert_shows(TAKE_CARD);
    h.assert_hides("おわる");
    h.assert_hides(START);
    assert_eq!(h.app.screen, Screen::Done);
    h.click("カードを取る");
    assert_eq!(h.app.screen, Screen::Welcome);
    h.assert_shows(START);
    assert!(h.app.turn.license_input.is_empty());
}

#[test]
fn a_card_forgotten_until_the_timeout_blocks_the_next_start() {
    let mut h = kiosk(demo(SimOptions::default()));
    to_password(&mut h);
    press(&mut h, "TEST1234");
    h.click(OK);
    assert_eq!(h.app.screen, Screen::Done);
    // The holder walks away with the card still in the reader.
    let deadline = h.app.last_activity + h.app.env.kiosk_idle;
    h.send(Message::Tick(deadline));
    assert_eq!(h.app.screen, Screen::Welcome);
    h.assert_shows("前の方のカードが残っています。カードをお取りください。");
    h.send(Message::Start);
    assert_eq!(
        h.app.screen,
        Screen::Welcome,
        "no turn on someone else's card"
    );
    h.click("カードを取る");
    h.assert_hides("前の方のカードが残っています。カードをお取りください。");
    h.click("カードを置く");
    h.click(START);
    assert_eq!(
        h.app.screen,
        Screen::Terms,
        "a card put in after that is the new person's"
    );
}

#[test]
fn the_close_request_is_ignored() {
    let (env, dir) = demo(SimOptions::default());
    let window =
        Program::window(&super::super::kiosk_application(env.clone())).expect("window settings");
    assert!(!window.exit_on_close_request);
    assert!(!window.closeable);
    assert!(window.fullscreen);
    assert!(!window.decorations);
    let staff_window =
        Program::window(&super::super::staff_application(env.clone())).expect("window settings");
    assert!(
        staff_window.exit_on_close_request,
        "the staff window closes"
    );
    assert_eq!(
        Program::settings(&super::super::kiosk_application(env.clone())).default_font,
        look::JAPANESE_FONT
    );

    // A close request reaches the kiosk as a window event; nothing in it answers.
    let mut h = kiosk((env, dir));
    h.click(START);
    let close = iced::Event::Window(iced::window::Event::CloseRequested);
    let messages = h.subscription_messages(h.app.subscription(), &[close]);
    // (The background sender reports its queue on its own; that is not an answer.)
    assert!(
        messages
            .iter()
            .all(|m| matches!(m, Message::SenderReported)),
        "{messages:?}"
    );
    assert_eq!(h.app.screen, Screen::Terms);
}

#[test]
fn the_exit_chord_needs_the_operator_password() {
    let mut h = kiosk(demo(SimOptions::default()));
    let chord = Modifiers::CTRL | Modifiers::ALT | Modifiers::SHIFT;
    let messages = h.subscription_messages(
        h.app.subscription(),
        &[
            key_press(Named::F12, Modifiers::CTRL | Modifiers::ALT),
            key_press(Named::F12, chord),
        ],
    );
    let exits = messages
        .iter()
        .filter(|m| matches!(m, Message::ExitChord))
        .count();
    assert_eq!(exits, 1, "only the full chord: {messages:?}");
    // Every key press also counts as activity for the idle timer.
    assert!(messages.iter().any(|m| matches!(m, Message::Activity)));

    h.send(Message::ExitChord);
    h.assert_shows("職員用：キオスクを終了します");
    h.type_into("職員パスワード", "wrong");
    assert!(!h.shows("wrong"), "masked");
    h.click("終了");
    assert!(!h.exit_requested);
    h.assert_shows("パスワードが違います。");
    h.assert_shows("1秒待ってから、もう一度入力してください。");
    // Even the right password waits out the delay after a failure.
    h.type_into("職員パスワード", "demo");
    h.click("終了");
    assert!(!h.exit_requested, "not during the wait");
    assert!(h.shows_part("間違いが続いたため"), "{:#?}", h.texts());
    std::thread::sleep(operator_password::FIRST_DELAY);
    h.type_into("職員パスワード", "demo");
    h.click("終了");
    assert!(h.exit_requested, "the right password exits");

    // Cancel closes the prompt without leaving.
    let mut h = kiosk(demo(SimOptions::default()));
    h.send(Message::ExitChord);
    h.click("キャンセル");
    assert!(h.app.exit_prompt.is_none());
    assert!(!h.exit_requested);
}

#[test]
fn a_touch_counts_as_activity() {
    let mut h = kiosk(demo(SimOptions::default()));
    h.click(START);
    let touch = iced::Event::Mouse(iced::mouse::Event::ButtonPressed(iced::mouse::Button::Left));
    let messages = h.subscription_messages(h.app.subscription(), &[touch]);
    assert!(
        messages.iter().any(|m| matches!(m, Message::Activity)),
        "{messages:?}"
    );
    assert!(matches!(h.app.turn.card, CardPhase::Waiting));
}
