//! The staff window, screen by screen, on the demo environment.

use std::time::{Duration, Instant};

use mynalink_card::PasswordStatus;
use mynalink_link::upload::Delivery;
use mynalink_link::{ErrorCode, FlowError};
use mynalink_simcard::SimOptions;
use sha2::{Digest, Sha256};

use super::super::i18n::{error_text, Lang};
use super::super::setup::{demo_ineligible_license, Environment};
use super::super::staff::{Message, Panel, Staff, Step};
use super::super::turn::{CardPhase, Lookup, SendPhase};
use super::*;
use crate::demo::DEMO_LICENSE;
use crate::operator_password::{self, Refusal};

const LICENSE_FIELD: &str = "免許証番号（12桁）";
const PASSWORD_FIELD: &str = "ご本人が入力します";
const NEXT: &str = "次へ（規約）";
const AGREE: &str = "ご本人が同意しました";
const VERIFY: &str = "照合する";
const IDENTITY_CHECKED: &str = "職員が免許記録の氏名・生年月日と照合しました［F4］";
const LAST_TRY_CHECKED: &str = "職員が確認しました（最後の1回を使います）";
const SIGN_AND_SEND: &str = "署名して送信";
const NEXT_PERSON: &str = "次の方";
const REMOVE_CARD: &str = "カードを取る";
const INSERT_CARD: &str = "カードを置く";

fn staff((env, dir): (Environment, DemoDir)) -> Harness<Staff> {
    Harness::boot(Staff::new(env), dir)
}

fn error_shown(h: &Harness<Staff>, code: ErrorCode) -> bool {
    h.shows(&error_text(Lang::Ja, &FlowError::new(code)))
}

/// Step 1 with the number typed in; the lookup has answered.
fn reception(h: &mut Harness<Staff>, number: &str) {
    h.type_into(LICENSE_FIELD, number);
    assert_eq!(h.app.turn.license_input, number);
}

/// Up to the password step (the demo card is on the reader, so the check starts at once).
fn to_password(h: &mut Harness<Staff>) {
    reception(h, DEMO_LICENSE);
    h.click(NEXT);
    assert_eq!(h.app.step, Step::Terms);
    h.click(AGREE);
    assert_eq!(h.app.step, Step::Password, "card: {:?}", h.app.turn.card);
}

fn enter_password(h: &mut Harness<Staff>, password: &str) {
    h.type_into(PASSWORD_FIELD, password);
    h.click(VERIFY);
}

/// Up to step 5 with the certificate read.
fn to_confirm(h: &mut Harness<Staff>) {
    to_password(h);
    enter_password(h, "TEST1234");
    assert_eq!(h.app.step, Step::Confirm, "card: {:?}", h.app.turn.card);
    assert!(h.app.turn.certificate.is_some());
}

fn linked_binding(h: &Harness<Staff>) -> String {
    assert!(
        h.app.turn.certificate.is_none(),
        "the certificate's personal fields are dropped once the binding is sent"
    );
    match &h.app.turn.send {
        SendPhase::Finished(Delivery::Linked { binding_id, .. }) => binding_id.clone(),
        other => panic!("not linked: {other:?}"),
    }
}

#[test]
fn reception_checks_the_number_as_it_is_typed() {
    let mut h = staff(demo(SimOptions::default()));
    h.assert_shows("1 受付：免許証番号");
    // Eleven digits: no error yet, nothing looked up, no way on.
    reception(&mut h, "72991328107");
    assert!(h.app.turn.license_problem.is_none());
    assert!(matches!(h.app.turn.lookup, Lookup::NotAsked));
    assert!(h.click_messages(NEXT).is_empty(), "next is disabled");

    // Twelve digits with a wrong check digit: explained at once, nothing looked up.
    h.send(Message::LicenseInput("729913281060".into()));
    let problem = h
        .app
        .turn
        .license_problem
        .clone()
        .expect("check digit error");
    assert_eq!(problem.code, ErrorCode::LicenseNumberInvalid);
    h.assert_shows(&error_text(Lang::Ja, &problem));
    assert!(matches!(h.app.turn.lookup, Lookup::NotAsked));
    assert!(h.click_messages(NEXT).is_empty());

    // The right number: commission, check digit, and the backend's answer.
    h.send(Message::LicenseInput(DEMO_LICENSE.into()));
    assert!(h.app.turn.license_problem.is_none());
    let license = h.app.turn.license.clone().expect("valid number");
    h.assert_shows(&format!(
        "公安委員会: {} {} — チェックディジット OK",
        license.commission_code(),
        license.commission_name_ja()
    ));
    let Lookup::Found(status) = &h.app.turn.lookup else {
        panic!("no lookup answer: {:?}", h.app.turn.lookup);
    };
    assert!(status.eligible && status.first_stage_needed && !status.linked);
    h.assert_shows("保有状況: マイナ免許証のみ");
    h.assert_shows("連携後に利用できるサービス：");
    h.click(NEXT);
    assert_eq!(h.app.step, Step::Terms);
}

#[test]
fn reception_refuses_a_holder_who_cannot_link() {
    let mut h = staff(demo(SimOptions::default()));
    reception(&mut h, &demo_ineligible_license());
    let Lookup::Found(status) = &h.app.turn.lookup else {
        panic!("no lookup answer: {:?}", h.app.turn.lookup);
    };
    assert!(!status.eligible);
    // §2(1): only holders of a My Number license or history certificate can link.
    h.assert_shows(&format!(
        "この方は連携できません（{}）：マイナ免許証またはマイナ経歴証明書をお持ちの方が対象です。",
        status.reason
    ));
    h.assert_shows("保有状況: 免許証のみ");
    assert!(h.click_messages(NEXT).is_empty(), "the turn cannot go on");
    h.send(Message::Primary);
    assert_eq!(h.app.step, Step::Reception);
}

#[test]
fn terms_show_the_version_and_the_consent_is_recorded() {
    let (env, dir) = demo(SimOptions::default());
    let terms = env.terms.clone().expect("demo terms");
    let file_sha256 = hex::encode(Sha256::digest(std::fs::read(&terms.path).expect("terms")));
    let mut h = staff((env, dir));
    reception(&mut h, DEMO_LICENSE);
    h.click(NEXT);
    h.assert_shows("2 規約：利用規約の確認と同意");
    h.assert_shows(&format!("版 demo-1 — SHA-256 {}", &file_sha256[..16]));
    // The staff window shows the text without ruby marks.
    h.assert_shows(&super::super::look::plain(&terms.text));
    assert!(h.app.turn.consent.is_none());
    h.click(AGREE);
    let consent = h.app.turn.consent.clone().expect("consent recorded");
    assert_eq!(consent.version, "demo-1");
    assert_eq!(consent.sha256, file_sha256);
}

#[test]
fn card_step_waits_for_the_card_then_shows_the_tries_left() {
    let (env, dir) = demo(card_with_tries(3));
    let card = sim(&env);
    let mut h = staff((env, dir));
    h.click(REMOVE_CARD);
    assert_eq!(h.app.presence.card_present, Some(false));
    reception(&mut h, DEMO_LICENSE);
    h.click(NEXT);
    h.click(AGREE);
    assert_eq!(h.app.step, Step::Card);
    h.assert_shows("3 カード：マイナンバーカードをカードリーダーに差し込むか、上に置いてください");
    h.assert_shows("カードを待っています…");
    h.assert_shows("Simulated（模擬）: カードなし");

    // The card arrives: the check starts; while it runs, the step says so.
    card.insert();
    let check = h.update(Message::DemoPresence(true));
    h.assert_shows("カードを確認しています…");
    h.run(check);
    assert!(matches!(
        h.app.turn.card,
        CardPhase::Ready(PasswordStatus::Tries(3))
    ));
    assert_eq!(h.app.step, Step::Password);
    h.assert_shows("残り 3 回");
    assert_eq!(verify_attempts(&card), 0, "checking costs no try");
}

#[test]
fn password_is_masked_upper_cased_and_checked_before_the_card() {
    let (env, dir) = demo(SimOptions::default());
    let card = sim(&env);
    let mut h = staff((env, dir));
    to_password(&mut h);
    h.assert_shows("4 暗証番号：署名用パスワード（英数字6〜16文字）");

    h.type_into(PASSWORD_FIELD, "test12");
    assert_eq!(
        h.app.turn.password.as_str(),
        "TEST12",
        "upper-cased as typed"
    );
    h.assert_shows("6 文字（大文字で送ります）");
    let texts = h.texts();
    assert!(
        !texts
            .iter()
            .any(|t| t.contains("TEST12") || t.contains("test12")),
        "the password is never shown: {texts:?}"
    );

    // A character the card cannot take is explained; nothing reaches the card.
    h.send(Message::PasswordInput("test1-".into()));
    let problem = h.app.turn.password_problem.clone().expect("format error");
    assert_eq!(problem.code, ErrorCode::PinFormatInvalid);
    h.assert_shows(&error_text(Lang::Ja, &problem));
    h.click(VERIFY);
    // Too short, likewise.
    h.type_into(PASSWORD_FIELD, "abc");
    h.click(VERIFY);
    assert_eq!(
        h.app.turn.password_problem.as_ref().map(|e| e.code),
        Some(ErrorCode::PinFormatInvalid)
    );
    assert_eq!(verify_attempts(&card), 0, "nothing was sent to the card");
    assert_eq!(card.with_card(|c| c.signing_tries()), 5);
    assert_eq!(h.app.step, Step::Password);
}

#[test]
fn a_wrong_password_costs_one_try_and_the_last_try_needs_confirmation() {
    let (env, dir) = demo(card_with_tries(3));
    let card = sim(&env);
    let mut h = staff((env, dir));
    to_password(&mut h);
    h.assert_shows("残り 3 回");

    enter_password(&mut h, "WRONG1");
    assert_eq!(verify_attempts(&card), 1);
    assert_eq!(card.with_card(|c| c.signing_tries()), 2);
    assert_eq!(h.app.turn.tries_left, Some(2));
    assert_eq!(h.app.step, Step::Password);
    h.assert_shows("残り 2 回");
    assert!(h.shows_part(&FlowError::new(ErrorCode::PinWrong).message_ja));
    h.assert_hides(LAST_TRY_CHECKED);

    enter_password(&mut h, "WRONG2");
    assert_eq!(card.with_card(|c| c.signing_tries()), 1);
    h.assert_shows("残り 1 回");
    h.assert_shows("残り1回です。間違えるとロックされ、市区町村の窓口での再設定が必要になります。");
    // Without the staff's confirmation the last try is not used.
    enter_password(&mut h, "TEST1234");
    assert_eq!(verify_attempts(&card), 2, "the last try was not sent");
    assert!(error_shown(&h, ErrorCode::LastTryRequiresConfirmation));
    assert_eq!(h.app.step, Step::Password);

    // The typed password stays; staff tick the box and verify.
    h.click(LAST_TRY_CHECKED);
    assert!(h.app.turn.last_try_confirmed);
    h.click(VERIFY);
    assert_eq!(verify_attempts(&card), 3);
    assert_eq!(h.app.step, Step::Confirm);
    assert_eq!(card.with_card(|c| c.signing_tries()), 5, "reset by success");
}

#[test]
fn a_blocked_card_is_sent_to_the_municipal_office() {
    // Blocked before the turn: the check says so and the turn stops at step 3.
    let (env, dir) = demo(card_with_tries(0));
    let card = sim(&env);
    let mut h = staff((env, dir));
    reception(&mut h, DEMO_LICENSE);
    h.click(NEXT);
    h.click(AGREE);
    assert_eq!(h.app.step, Step::Card);
    assert_eq!(h.app.turn.card_refused(), Some(ErrorCode::PinBlocked));
    assert!(error_shown(&h, ErrorCode::PinBlocked));
    assert!(FlowError::new(ErrorCode::PinBlocked)
        .message_ja
        .contains("市区町村の窓口"));
    assert_eq!(verify_attempts(&card), 0);

    // Blocked by the last try: the same explanation.
    let (env, dir) = demo(card_with_tries(1));
    let mut h = staff((env, dir));
    to_password(&mut h);
    h.click(LAST_TRY_CHECKED);
    enter_password(&mut h, "WRONG1");
    assert_eq!(h.app.turn.card_refused(), Some(ErrorCode::PinBlocked));
    assert!(error_shown(&h, ErrorCode::PinBlocked));
    assert_eq!(h.app.step, Step::Password);
}

#[test]
fn a_card_without_a_signing_certificate_is_explained() {
    let options = SimOptions {
        signing_certificate: false,
        ..SimOptions::default()
    };
    let mut h = staff(demo(options));
    reception(&mut h, DEMO_LICENSE);
    h.click(NEXT);
    h.click(AGREE);
    assert_eq!(h.app.step, Step::Card);
    assert_eq!(
        h.app.turn.card_refused(),
        Some(ErrorCode::NoSigningCertificate)
    );
    assert!(error_shown(&h, ErrorCode::NoSigningCertificate));
}

#[test]
fn confirm_step_shows_the_certificate_and_needs_the_staff_check() {
    let (env, dir) = demo(SimOptions::default());
    let card = sim(&env);
    let holder_name = card.with_card(|c| c.identity().holder.name.clone());
    let mut h = staff((env, dir));
    to_confirm(&mut h);
    h.assert_shows("5 確認：署名用電子証明書と本人確認");
    let cert = h.app.turn.certificate.clone().expect("certificate");
    assert!(!cert.serial_hex.is_empty());
    h.assert_shows(&format!(
        "発行番号（シリアル）: {} (10進 {})",
        cert.serial_hex, cert.serial_decimal
    ));
    h.assert_shows(&format!(
        "有効期間: {} – {} （日本時間）",
        cert.not_before, cert.not_after
    ));
    // Japan time, to the minute: YYYY-MM-DD HH:MM.
    assert_eq!(cert.not_after.len(), 16, "{}", cert.not_after);
    assert_eq!(cert.name.as_str(), holder_name);
    h.assert_shows(&format!("氏名（照合用・保存しません）: {holder_name}"));
    assert!(!cert.birth_date.is_empty());
    h.assert_shows(&format!(
        "生年月日（照合用・保存しません）: {}",
        cert.birth_date.as_str()
    ));

    // Nothing is signed until staff tick the box.
    assert!(h.click_messages(SIGN_AND_SEND).is_empty(), "disabled");
    h.send(Message::Primary);
    assert_eq!(h.app.step, Step::Confirm);
    assert_eq!(signatures(&card), 0);

    h.click(IDENTITY_CHECKED);
    assert!(h.app.turn.identity_confirmed);
    h.click(SIGN_AND_SEND);
    assert_eq!(signatures(&card), 1);
    assert_eq!(h.app.step, Step::Done);
    let binding = linked_binding(&h);
    h.assert_shows("7 完了");
    h.assert_shows(&format!("連携しました。連携ID：{binding}"));
    assert_eq!(h.app.history.len(), 1);
    assert_eq!(h.app.history[0].license_number, DEMO_LICENSE);
    assert_eq!(
        h.app.history[0].binding_id.as_deref(),
        Some(binding.as_str())
    );
    // The personal fields are shown for comparison only: not in the history.
    assert!(!h.app.history[0].outcome.contains(&holder_name));
}

#[test]
fn next_person_waits_until_the_card_is_removed_then_a_relink_is_refused() {
    let (env, dir) = demo(SimOptions::default());
    let mut h = staff((env, dir));
    to_confirm(&mut h);
    h.click(IDENTITY_CHECKED);
    h.click(SIGN_AND_SEND);
    linked_binding(&h);

    // The card is still on the reader.
    h.assert_shows("カードを取り外してください（次の方の受付はカードを取り外してからです）。");
    assert!(h.click_messages(NEXT_PERSON).is_empty(), "disabled");
    h.send(Message::NextPerson);
    h.send(Message::Primary);
    assert_eq!(h.app.step, Step::Done, "Enter does not skip the removal");

    h.click(REMOVE_CARD);
    h.assert_shows("カードは取り外されました。");
    h.click(NEXT_PERSON);
    assert_eq!(h.app.step, Step::Reception);
    assert!(h.app.turn.license_input.is_empty());
    assert!(h.app.turn.consent.is_none());
    assert!(h.app.turn.certificate.is_none());

    // The same holder again: the backend says it is already linked.
    reception(&mut h, DEMO_LICENSE);
    let Lookup::Found(status) = &h.app.turn.lookup else {
        panic!("no lookup answer: {:?}", h.app.turn.lookup);
    };
    assert!(status.linked && !status.first_stage_needed);
    h.assert_shows("連携済みです（窓口）。この窓口での手続は不要です。");
    assert!(h.click_messages(NEXT).is_empty(), "nothing to do");
}

#[test]
fn backend_down_warns_and_the_binding_waits_in_the_outbox() {
    let (env, dir) = demo_backend_down(SimOptions::default());
    let remote = env.remote.clone().expect("remote");
    let mut h = staff((env, dir));
    assert_eq!(h.app.backend_up, Some(false));
    h.assert_shows("バックエンド 接続できません");

    reception(&mut h, DEMO_LICENSE);
    let Lookup::Failed(reason) = h.app.turn.lookup.clone() else {
        panic!("the lookup should fail: {:?}", h.app.turn.lookup);
    };
    h.assert_shows(&format!(
        "バックエンドに照会できません（{reason}）。手続は続けられ、送信は送信箱で待ちます。"
    ));
    // The turn goes on.
    h.click(NEXT);
    h.click(AGREE);
    enter_password(&mut h, "TEST1234");
    h.click(IDENTITY_CHECKED);
    h.click(SIGN_AND_SEND);
    assert_eq!(h.app.step, Step::Done);
    let SendPhase::Finished(Delivery::Queued { reason, .. }) = &h.app.turn.send else {
        panic!("not queued: {:?}", h.app.turn.send);
    };
    h.assert_shows(&format!(
        "送信箱に保存しました。接続が戻りしだい自動で送信します（{reason}）。"
    ));
    assert_eq!(
        h.app.history.last().map(|r| r.outcome.as_str()),
        Some("queued")
    );
    let waiting = h.block_on(remote.outbox()).expect("outbox");
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].license_number, DEMO_LICENSE);
}

/// The demo's outbox file.
fn outbox_of(env: &Environment) -> std::path::PathBuf {
    env.embedded
        .as_ref()
        .expect("the demo's backend")
        .dir
        .join("outbox.db")
}

#[test]
fn a_full_disk_stops_the_turn_before_the_card_signs() {
    let (env, dir) = demo(SimOptions::default());
    let card = sim(&env);
    let outbox = outbox_of(&env);
    let mut h = staff((env, dir));
    to_confirm(&mut h);
    h.click(IDENTITY_CHECKED);
    // The outbox's reserve cannot be made, as on a full disk.
    let mut reserve = outbox.into_os_string();
    reserve.push(".reserve");
    std::fs::create_dir(&reserve).expect("something in the reserve's place");
    h.click(SIGN_AND_SEND);
    let SendPhase::Failed(e) = &h.app.turn.send else {
        panic!("the turn should stop: {:?}", h.app.turn.send);
    };
    assert_eq!(e.code, ErrorCode::OutboxUnavailable);
    assert!(e.message_ja.contains("ディスクに空きがありません"), "{e}");
    h.assert_shows(&error_text(Lang::Ja, e));
    assert_eq!(signatures(&card), 0, "the card was never asked to sign");
    assert!(h.app.history.is_empty());
}

#[test]
fn held_entries_are_counted_and_listed_apart_from_the_queue() {
    let (env, dir) = demo_backend_down(SimOptions::default());
    let remote = env.remote.clone().expect("remote");
    let mut h = staff((env, dir));
    reception(&mut h, DEMO_LICENSE);
    h.click(NEXT);
    h.click(AGREE);
    enter_password(&mut h, "TEST1234");
    h.click(IDENTITY_CHECKED);
    h.click(SIGN_AND_SEND);
    assert!(matches!(
        h.app.turn.send,
        SendPhase::Finished(Delivery::Queued { .. })
    ));
    let waiting = h.block_on(remote.clone().outbox()).expect("outbox");
    assert_eq!(waiting.len(), 1);
    let path = h
        .app
        .env
        .embedded
        .as_ref()
        .expect("the demo's backend")
        .dir
        .join("outbox-unreachable.db");
    mynalink_link::outbox::Outbox::open(&path)
        .expect("open")
        .hold(
            waiting[0].id,
            mynalink_link::outbox::HoldReason::SealKeyMismatch,
            "seal_key_mismatch",
            time::OffsetDateTime::now_utc(),
        )
        .expect("hold");

    h.click("送信箱");
    h.type_into("職員パスワード", "demo");
    h.click("ログイン");
    assert_eq!(h.app.panel, Panel::Outbox);
    assert_eq!(h.app.outbox_size, Some(0));
    assert_eq!(h.app.outbox_held, Some(1));
    h.assert_shows("送信待ちはありません。");
    h.assert_shows("要対応（自動では再送しません。削除もしません） 1");
    h.assert_shows("要対応 1");
    let (ja, en) = mynalink_link::outbox::HoldReason::SealKeyMismatch.text();
    h.assert_shows(ja);
    h.click("English");
    h.assert_shows("Needs an operator (not retried automatically, never deleted) 1");
    h.assert_shows("Needs operator 1");
    h.assert_shows(en);
}

#[test]
fn a_card_removed_mid_flow_returns_to_step_3_and_nothing_is_signed() {
    let (env, dir) = demo(SimOptions::default());
    let card = sim(&env);
    let remote = env.remote.clone().expect("remote");
    let mut h = staff((env, dir));
    to_confirm(&mut h);
    h.click(IDENTITY_CHECKED);

    h.click(REMOVE_CARD);
    assert_eq!(h.app.step, Step::Card);
    assert_eq!(
        h.app.interrupted.as_ref().map(|e| e.code),
        Some(ErrorCode::CardRemoved)
    );
    assert!(error_shown(&h, ErrorCode::CardRemoved));
    assert!(h.app.turn.certificate.is_none());
    assert!(!h.app.turn.identity_confirmed);
    assert!(h.app.turn.password.is_empty());
    assert_eq!(signatures(&card), 0);
    assert!(h.app.history.is_empty());
    assert!(h.block_on(remote.outbox()).expect("outbox").is_empty());

    // Put back, the card is checked again and the password is asked again.
    h.click(INSERT_CARD);
    assert_eq!(h.app.step, Step::Password);
    assert!(h.app.interrupted.is_none());
}

#[test]
fn a_card_removed_while_signing_fails_the_signature() {
    let (env, dir) = demo(slow_card(Duration::ZERO, Duration::from_millis(1500)));
    let card = sim(&env);
    let remote = env.remote.clone().expect("remote");
    let mut h = staff((env, dir));
    to_confirm(&mut h);
    h.click(IDENTITY_CHECKED);
    let signing = h.update(Message::Primary);
    assert!(matches!(h.app.turn.send, SendPhase::Signing));
    let results = h.spawn(signing);
    // The reader reports the removal while the card is busy.
    card.remove();
    let removal = h.update(Message::DemoPresence(false));
    h.run(removal);
    for message in h.wait(results) {
        h.send(message);
    }
    let SendPhase::Failed(e) = &h.app.turn.send else {
        panic!("the signature should fail: {:?}", h.app.turn.send);
    };
    assert_eq!(e.code, ErrorCode::CardRemoved);
    assert!(error_shown(&h, ErrorCode::CardRemoved));
    assert_eq!(signatures(&card), 0, "the card never signed");
    assert!(h.block_on(remote.outbox()).expect("outbox").is_empty());
    assert!(h.app.history.is_empty());
    h.click("最初からやり直す");
    assert_eq!(h.app.step, Step::Reception);
}

#[test]
fn the_language_toggle_keeps_the_turn() {
    let mut h = staff(demo(card_with_tries(4)));
    to_password(&mut h);
    h.type_into(PASSWORD_FIELD, "abc");
    let consent = h.app.turn.consent.clone();
    h.click("English");
    assert_eq!(h.app.lang, Lang::En);
    assert_eq!(h.app.step, Step::Password);
    assert_eq!(h.app.turn.license_input, DEMO_LICENSE);
    assert_eq!(h.app.turn.password.as_str(), "ABC");
    assert_eq!(h.app.turn.consent, consent);
    h.assert_shows("4 Password: the signing password (6–16 letters and digits)");
    h.assert_shows("4 tries left");
    h.assert_shows("3 characters (sent in upper case)");
    h.click("日本語");
    assert_eq!(h.app.lang, Lang::Ja);
    assert_eq!(h.app.turn.password.as_str(), "ABC");
    h.assert_shows("残り 4 回");
}

#[test]
fn operator_login_guards_history_outbox_and_settings() {
    let mut h = staff(demo(SimOptions::default()));
    for (nav, heading) in [
        ("本日の履歴", "職員ログイン（本日の履歴）"),
        ("送信箱", "職員ログイン（送信箱）"),
        ("設定", "職員ログイン（設定）"),
    ] {
        h.click(nav);
        h.assert_shows(heading);
        assert_eq!(h.app.panel, Panel::Flow, "{nav} stays closed");
        h.send(Message::Back);
    }
    h.assert_shows("1 受付：免許証番号");

    h.click("本日の履歴");
    h.type_into("職員パスワード", "wrong");
    assert!(!h.shows("wrong"), "the operator password is masked");
    h.click("ログイン");
    assert!(!h.app.operator_unlocked);
    h.assert_shows("パスワードが違います。");
    h.assert_hides("本日の履歴（この端末）");
    assert!(
        h.app.operator_password.is_empty(),
        "a refused password is wiped"
    );

    // The wait after a failure runs out before the right password is taken.
    std::thread::sleep(operator_password::FIRST_DELAY);
    h.type_into("職員パスワード", "demo");
    h.click("ログイン");
    assert!(h.app.operator_unlocked);
    assert_eq!(h.app.panel, Panel::History);
    h.assert_shows("本日の履歴（この端末）");
    h.assert_shows("まだありません。");

    h.click("送信箱");
    assert_eq!(h.app.panel, Panel::Outbox);
    h.assert_shows("送信待ちはありません。");
    h.click("設定");
    h.assert_shows("端末ID: demo-terminal");
    h.assert_shows("バックエンド: 組み込みの参照バックエンド（デモ）");
    h.click("手続");
    h.assert_shows("1 受付：免許証番号");
}

/// Guessing the operator password is slow: each failure doubles the wait before the next
/// attempt is checked (the right password included), the window says how long, and it keeps
/// answering meanwhile; a success resets the count, for the kiosk exit too (one password).
#[test]
fn operator_password_failures_slow_down_the_next_attempt() {
    let mut h = staff(demo(SimOptions::default()));
    h.click("設定");
    for (attempt, wait) in [(1, "1秒"), (2, "2秒")] {
        if attempt > 1 {
            std::thread::sleep(operator_password::delay_after(attempt - 1));
        }
        h.type_into("職員パスワード", "wrong");
        h.click("ログイン");
        assert!(!h.app.operator_unlocked);
        h.assert_shows("パスワードが違います。");
        h.assert_shows(&format!("{wait}待ってから、もう一度入力してください。"));
    }
    // During the wait: answered at once, without checking the password.
    h.type_into("職員パスワード", "demo");
    h.click("ログイン");
    assert!(!h.app.operator_unlocked, "the right password waits too");
    assert!(
        matches!(h.app.operator_refused, Some(Refusal::TooSoon { .. })),
        "{:?}",
        h.app.operator_refused
    );
    assert!(
        h.shows_part("間違いが続いたため、あと2秒"),
        "{:#?}",
        h.texts()
    );
    h.click("English");
    assert!(
        h.shows_part("nothing is checked for another 2 s"),
        "{:#?}",
        h.texts()
    );
    h.click("日本語");

    std::thread::sleep(operator_password::delay_after(2));
    h.type_into("職員パスワード", "demo");
    h.click("ログイン");
    assert!(h.app.operator_unlocked);
    h.assert_hides("パスワードが違います。");
    // Reset: the next failure waits one second again.
    let mut throttle = h.app.env.operator_throttle.lock().expect("throttle");
    assert_eq!(throttle.wait(Instant::now()), None);
    let now = Instant::now();
    throttle.begin(now).expect("no wait after a success");
    throttle.finish(false, now);
    assert_eq!(throttle.wait(now), Some(operator_password::FIRST_DELAY));
}

/// Nothing blocks the window: while the slow card signs, other messages are handled and
/// the view is built at once, and the signature arrives afterwards.
#[test]
fn the_window_stays_responsive_while_the_card_signs() {
    let (env, dir) = demo(slow_card(Duration::ZERO, Duration::from_millis(2000)));
    let card = sim(&env);
    let mut h = staff((env, dir));
    to_confirm(&mut h);
    h.click(IDENTITY_CHECKED);

    let started = Instant::now();
    let signing = h.update(Message::Primary);
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "starting the signature returned after {:?}",
        started.elapsed()
    );
    assert_eq!(h.app.step, Step::Send);
    let results = h.spawn(signing);

    let started = Instant::now();
    let none = h.update(Message::ToggleLanguage);
    let _ = h.app.view();
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(100),
        "update + view took {took:?} while the card signs"
    );
    assert!(h.collect(none).is_empty());
    assert_eq!(signatures(&card), 0, "the card is still signing");
    h.assert_shows("The card is signing… (do not move the card)");

    for message in h.wait(results) {
        h.send(message);
    }
    assert_eq!(signatures(&card), 1);
    assert_eq!(h.app.step, Step::Done);
    let binding = linked_binding(&h);
    h.assert_shows(&format!("Linked. Binding id: {binding}"));
}

#[test]
fn keyboard_shortcuts_reach_the_window() {
    use iced::keyboard::{key::Named, Modifiers};
    let mut h = staff(demo(SimOptions::default()));
    let messages = h.subscription_messages(
        h.app.subscription(),
        &[
            key_press(Named::F2, Modifiers::empty()),
            key_press(Named::Enter, Modifiers::empty()),
            key_press(Named::Escape, Modifiers::empty()),
            key_press(Named::F4, Modifiers::empty()),
        ],
    );
    let names: Vec<String> = messages
        .iter()
        .filter(|m| !matches!(m, Message::Sender(_)))
        .map(|m| format!("{m:?}"))
        .collect();
    assert_eq!(
        names,
        ["ToggleLanguage", "Primary", "Back", "StaffConfirm"],
        "{messages:?}"
    );

    // F4 ticks the identity check at step 5.
    to_confirm(&mut h);
    h.send(Message::StaffConfirm);
    assert!(h.app.turn.identity_confirmed);
    h.send(Message::Primary);
    assert_eq!(h.app.step, Step::Done);
}
