//! What the kiosk draws for each step and panel.

use super::super::i18n::Lang;
use super::super::look::{self, DANGER, MUTED, SUCCESS};
use super::super::shared;
use super::super::turn::{CardPhase, Lookup, SendPhase};
use super::{Kiosk, Message, Screen, BIG_BUTTON_HEIGHT, EXIT_ID, KEY, LETTER_KEY_HEIGHT};
use iced::widget::{
    button, column, container, progress_bar, rich_text, row, scrollable, space, span, text,
    text_input,
};
use iced::{Alignment, Element, Length};
use mynalink_link::upload::Delivery;
use mynalink_link::{ErrorCode, FlowError};

impl Kiosk {
    pub fn view(&self) -> Element<'_, Message> {
        let lang = self.lang;
        let body = match self.screen {
            Screen::Welcome => self.welcome_view(),
            Screen::Terms => self.terms_view(),
            Screen::License => self.license_view(),
            Screen::Card => self.card_view(),
            Screen::Password => self.password_view(),
            Screen::LastTry => self.last_try_view(),
            Screen::Working => self.working_view(),
            Screen::Done => self.done_view(),
        };
        // The demo's card controls take the title's place, so that the bar fits 1024 px.
        let lead: Element<'_, Message> = if self.env.simulated_card().is_some() {
            shared::demo_controls(
                lang,
                self.presence.card_present,
                Message::DemoInsert,
                Message::DemoRemove,
            )
        } else {
            text(lang.pick(
                "マイナポータル連携（第1段階）",
                "Mynaportal linking (first stage)",
            ))
            .size(24)
            .color(MUTED)
            .into()
        };
        let mut top = row![lead, space::horizontal()]
            .align_y(Alignment::Center)
            .spacing(12);
        if !matches!(self.screen, Screen::Welcome | Screen::Terms | Screen::Done) {
            top = top.push(
                button(text(lang.pick("やめる", "Stop")).size(24))
                    .on_press(Message::Quit)
                    .padding([16, 28])
                    .style(button::danger),
            );
        }
        top = top.push(
            button(text(lang.switch_label()).size(24))
                .on_press(Message::ToggleLanguage)
                .padding([16, 28])
                .style(button::secondary),
        );
        let mut page = column![
            top,
            container(body).height(Length::Fill).width(Length::Fill)
        ]
        .spacing(16)
        .padding(20);
        if let Some(seconds) = self.idle_warning() {
            page = page.push(
                container(
                    row![
                        text(lang.choose(
                            format!("操作がないため、あと{seconds}秒で最初の画面に戻ります。"),
                            format!("No activity: returning to the start in {seconds} s."),
                        ))
                        .size(28),
                        space::horizontal(),
                        big_button(lang.pick("続ける", "Continue"), Some(Message::StayHere)),
                    ]
                    .align_y(Alignment::Center),
                )
                .padding(16)
                .style(container::bordered_box),
            );
        }
        if let Some(typed) = &self.exit_prompt {
            page = page.push(self.exit_view(typed));
        }
        page.into()
    }

    fn welcome_view(&self) -> Element<'_, Message> {
        let lang = self.lang;
        let mut col = column![
            text(lang.pick("マイナ免許証をマイナポータルと連携します", "Link your My Number license with Mynaportal")).size(44),
            ruby_text(lang.pick(
                "お待ちの間に、ここで｜手続《てつづき》の｜第1段階《だいいちだんかい》ができます。マイナンバーカードと｜署名用《しょめいよう》パスワード（英数字6〜16文字）をご用意ください。",
                "While you wait, you can do the first stage here. Have your My Number card and its signing password (6–16 letters and digits) ready.",
            ), 30.0),
            big_button(
                lang.pick("はじめる", "Start"),
                (!self.card_left_behind()).then_some(Message::Start)
            ),
        ]
        .spacing(28)
        .align_x(Alignment::Center);
        if self.card_left_behind() {
            col = col.push(look::notice(
                lang.pick(
                    "前の方のカードが残っています。カードをお取りください。",
                    "A card from the previous person is still in the reader. Please take it out.",
                ),
                look::WARNING,
            ));
        }
        if let Some(notice) = &self.notice {
            let text_for = match notice.code {
                ErrorCode::CardRemoved => lang.pick(
                    "カードが取り外されたため、最初に戻りました。入力した内容は消去しました。",
                    "The card was removed, so we started over. What you entered has been erased.",
                ),
                _ => lang.pick(
                    "しばらく操作がなかったため、最初に戻りました。入力した内容は消去しました。",
                    "There was no activity for a while, so we started over. What you entered has been erased.",
                ),
            };
            col = col.push(look::notice(text_for, MUTED));
        }
        container(col)
            .center_x(Length::Fill)
            .center_y(Length::Fill)
            .into()
    }

    fn terms_view(&self) -> Element<'_, Message> {
        let lang = self.lang;
        let mut col = column![ruby_text(
            lang.pick(
                "｜利用規約《りようきやく》をお読みください",
                "Please read the terms of use"
            ),
            36.0
        )]
        .spacing(20);
        match &self.env.terms {
            Ok(terms) => {
                col = col
                    .push(
                        container(scrollable(ruby_text(&terms.text, 28.0)).height(Length::Fill))
                            .padding(16)
                            .height(Length::Fill)
                            .style(container::bordered_box),
                    )
                    .push(
                        row![
                            big_button(lang.pick("やめる", "Stop"), Some(Message::Quit)),
                            space::horizontal(),
                            big_button(
                                lang.pick("同意して次へ", "I agree — next"),
                                Some(Message::Agree)
                            ),
                        ]
                        .spacing(20),
                    );
            }
            Err(_) => {
                col = col.push(look::notice(
                    lang.pick(
                        "ただいまご利用になれません。係員にお声がけください。",
                        "Not available right now. Please ask the staff.",
                    ),
                    DANGER,
                ));
                col = col.push(big_button(lang.pick("もどる", "Back"), Some(Message::Quit)));
            }
        }
        col.into()
    }

    fn license_view(&self) -> Element<'_, Message> {
        let lang = self.lang;
        let digits: String = self
            .turn
            .license_input
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        let shown = format!("{digits:_<12}");
        let mut col = column![
            ruby_text(
                lang.pick(
                    "｜免許証番号《めんきょしょうばんごう》（12けた）を入力してください",
                    "Enter your license number (12 digits)"
                ),
                34.0
            ),
            container(text(shown).size(56).font(iced::Font::MONOSPACE))
                .padding(12)
                .style(container::bordered_box),
        ]
        .spacing(16)
        .align_x(Alignment::Center);
        if let Some(e) = &self.turn.license_problem {
            col = col.push(look::error(lang, e));
        }
        match &self.turn.lookup {
            Lookup::Loading => col = col.push(text(lang.pick("確認しています…", "Checking…"))),
            Lookup::Found(status)
                if status.eligible && (status.linked || !status.first_stage_needed) =>
            {
                col = col.push(look::notice(
                    lang.pick(
                        "この免許証はすでに連携済みか、手続が不要です。",
                        "This license is already linked or needs no procedure.",
                    ),
                    SUCCESS,
                ));
            }
            Lookup::Found(status) if !status.eligible => {
                col = col.push(look::notice(
                    lang.pick(
                        "この免許証では連携できません（マイナ免許証・マイナ経歴証明書の方が対象です）。係員にお声がけください。",
                        "This license cannot be linked (for My Number license or history-certificate holders). Please ask the staff.",
                    ),
                    DANGER,
                ));
            }
            _ => {}
        }
        let valid = self.turn.license.is_some()
            && !matches!(self.turn.lookup, Lookup::Loading | Lookup::Found(_));
        // Side by side, so that a notice never squeezes the keypad at 1024×768.
        row![col.width(Length::Fill), numeric_keypad(lang, valid)]
            .spacing(32)
            .align_y(Alignment::Center)
            .into()
    }

    fn card_view(&self) -> Element<'_, Message> {
        let lang = self.lang;
        let mut col = column![ruby_text(
            shared::card_instruction(lang, self.presence.reader_kind(), true),
            40.0
        )]
        .spacing(24)
        .align_x(Alignment::Center);
        col = col.push(shared::card_phase_view(lang, &self.turn));
        container(col)
            .center_x(Length::Fill)
            .center_y(Length::Fill)
            .into()
    }

    fn password_view(&self) -> Element<'_, Message> {
        let lang = self.lang;
        let tries = match self.turn.tries_left {
            Some(n) => lang.choose(format!("のこり {n} 回"), format!("{n} tries left")),
            None => String::new(),
        };
        let dots: String = "●".repeat(self.turn.password.chars().count());
        let mut col = column![
            ruby_text(
                lang.pick(
                    "｜署名用《しょめいよう》パスワード（英数字6〜16文字）",
                    "The signing password (6–16 letters and digits)"
                ),
                30.0
            ),
            row![
                container(
                    text(if dots.is_empty() {
                        " ".to_string()
                    } else {
                        dots
                    })
                    .size(36)
                )
                .padding(10)
                .width(Length::Fixed(640.0))
                .style(container::bordered_box),
                text(tries).size(30),
            ]
            .spacing(20)
            .align_y(Alignment::Center),
        ]
        .spacing(14)
        .align_x(Alignment::Center);
        match &self.turn.password_problem {
            // Short enough for one line above the keypad at 1024×768.
            Some(e) if e.code == ErrorCode::PinWrong => {
                col = col.push(look::notice(
                    lang.pick(
                        "パスワードがちがいます。もう一度入力してください。",
                        "Wrong password. Please enter it again.",
                    ),
                    DANGER,
                ));
            }
            Some(e) => col = col.push(look::error(lang, e)),
            None => {}
        }
        let ready = (6..=16).contains(&self.turn.password.chars().count())
            && self
                .turn
                .password_problem
                .as_ref()
                .is_none_or(|e| e.code == ErrorCode::PinWrong);
        col = col.push(letter_keypad(lang, ready));
        container(col).center_x(Length::Fill).into()
    }

    fn last_try_view(&self) -> Element<'_, Message> {
        let lang = self.lang;
        column![
            look::notice(
                lang.pick(
                    "のこり1回です。まちがえるとロックされ、市区町村の窓口での再設定が必要になります。自信がなければ、やめて係員にお声がけください。",
                    "One try left. A wrong entry locks the password and it must be reset at the municipal office. If unsure, stop and ask the staff.",
                ),
                look::WARNING,
            ),
            row![
                big_button(lang.pick("やめる", "Stop"), Some(Message::Quit)),
                space::horizontal(),
                big_button(lang.pick("この内容で送る", "Send it"), Some(Message::LastTryAccepted)),
            ],
        ]
        .spacing(30)
        .into()
    }

    fn working_view(&self) -> Element<'_, Message> {
        let lang = self.lang;
        let (stage, label) = match (&self.turn.card, &self.turn.send) {
            (CardPhase::Verifying, _) => (
                1.0,
                lang.pick("パスワードを確かめています…", "Checking the password…"),
            ),
            (CardPhase::Reading, _) => (
                2.0,
                lang.pick("証明書を読み取っています…", "Reading the certificate…"),
            ),
            (_, SendPhase::Signing) => (
                3.0,
                lang.pick("カードで署名しています…", "The card is signing…"),
            ),
            (_, SendPhase::Uploading) => (4.0, lang.pick("送信しています…", "Sending…")),
            _ => (0.5, lang.pick("処理しています…", "Working…")),
        };
        column![
            ruby_text(
                lang.pick(
                    "カードを動かさずにお待ちください",
                    "Please wait and do not move the card"
                ),
                40.0
            ),
            text(label).size(32),
            progress_bar(0.0..=4.0, stage).girth(24),
        ]
        .spacing(30)
        .into()
    }

    fn done_view(&self) -> Element<'_, Message> {
        let lang = self.lang;
        let mut col = column![].spacing(28).align_x(Alignment::Center);
        if let Some(code) = self.turn.card_refused() {
            col = col.push(look::error(lang, &FlowError::new(code)));
        } else if let CardPhase::Failed(e) = &self.turn.card {
            col = col.push(look::error(lang, e));
            col = col.push(
                text(lang.pick("係員にお声がけください。", "Please ask the staff.")).size(30),
            );
        } else {
            match &self.turn.send {
                SendPhase::Finished(Delivery::Linked { .. })
                | SendPhase::Finished(Delivery::AlreadyLinked { .. }) => {
                    col = col.push(
                        text(lang.pick("第1段階が完了しました", "The first stage is complete"))
                            .size(48)
                            .color(SUCCESS),
                    );
                    col = col.push(ruby_text(lang.pick(
                        "このあと、マイナポータルで｜第2段階《だいにだんかい》の手続をしてください。",
                        "Next, complete the second stage on Mynaportal.",
                    ), 30.0));
                }
                SendPhase::Finished(Delivery::Queued { .. })
                | SendPhase::Finished(Delivery::CredentialsRefused { .. }) => {
                    col = col.push(
                        text(lang.pick("受け付けました", "Accepted"))
                            .size(48)
                            .color(SUCCESS),
                    );
                    col = col.push(text(lang.pick(
                        "送信は自動で行われます。このあと、マイナポータルで第2段階の手続をしてください。",
                        "It will be sent automatically. Next, complete the second stage on Mynaportal.",
                    )).size(30));
                }
                // Kept in the outbox, but only staff can get it sent.
                SendPhase::Finished(Delivery::Held { .. }) => {
                    col = col.push(
                        text(lang.pick("受け付けました", "Accepted"))
                            .size(48)
                            .color(SUCCESS),
                    );
                    col = col.push(
                        text(lang.pick(
                            "送信にはまだ係員の対応が必要です。係員にお声がけください。",
                            "Sending still needs the staff. Please ask the staff.",
                        ))
                        .size(30),
                    );
                }
                SendPhase::Finished(Delivery::Rejected(error)) => {
                    let (ja, en) = error.explanation();
                    col = col.push(look::notice(
                        format!("[{}] {}", error.code, lang.pick(&ja, &en)),
                        DANGER,
                    ));
                    col = col.push(
                        text(lang.pick("係員にお声がけください。", "Please ask the staff."))
                            .size(30),
                    );
                }
                SendPhase::Failed(e) => {
                    col = col.push(look::error(lang, e));
                    col = col.push(
                        text(lang.pick("係員にお声がけください。", "Please ask the staff."))
                            .size(30),
                    );
                }
                _ => {}
            }
        }
        if self.presence.card_present == Some(true) {
            col = col.push(
                container(
                    text(lang.pick("カードをお取りください", "Please take your card")).size(52),
                )
                .padding(24)
                .style(container::bordered_box),
            );
        } else {
            col = col.push(big_button(
                lang.pick("おわる", "Finish"),
                Some(Message::Quit),
            ));
        }
        container(col)
            .center_x(Length::Fill)
            .center_y(Length::Fill)
            .into()
    }

    fn exit_view<'a>(&'a self, typed: &'a str) -> Element<'a, Message> {
        let lang = self.lang;
        let mut col = column![
            text(lang.pick("職員用：キオスクを終了します", "Staff: leave the kiosk")).size(26),
            text_input(lang.pick("職員パスワード", "Operator password"), typed)
                .id(EXIT_ID)
                .secure(true)
                .on_input(Message::ExitPassword)
                .on_submit(Message::ExitConfirm)
                .size(26)
                .padding(10)
                .width(Length::Fixed(420.0)),
            row![
                button(text(lang.pick("キャンセル", "Cancel")))
                    .on_press(Message::ExitCancel)
                    .padding(12),
                button(text(lang.pick("終了", "Leave")))
                    .on_press(Message::ExitConfirm)
                    .padding(12),
            ]
            .spacing(12),
        ]
        .spacing(12);
        if let Some(refusal) = self.exit_refused {
            for line in shared::refusal_lines(lang, refusal) {
                col = col.push(text(line).color(DANGER));
            }
        }
        container(col)
            .padding(16)
            .style(container::bordered_box)
            .into()
    }
}

/// Text with `｜base《reading》` marks: the reading follows the word in small type.
fn ruby_text<'a>(source: &str, size: f32) -> Element<'a, Message> {
    let spans: Vec<iced::widget::text::Span<'a, ()>> = look::ruby_segments(source)
        .into_iter()
        .flat_map(|(base, reading)| {
            let mut parts: Vec<iced::widget::text::Span<'a, ()>> = vec![span(base).size(size)];
            if let Some(reading) = reading {
                parts.push(span(format!("（{reading}）")).size(size * 0.6).color(MUTED));
            }
            parts
        })
        .collect();
    rich_text(spans).width(Length::Fill).into()
}

fn big_button<'a>(label: &'a str, message: Option<Message>) -> Element<'a, Message> {
    button(
        container(text(label).size(34))
            .center_x(Length::Shrink)
            .center_y(Length::Fill),
    )
    .on_press_maybe(message)
    .padding([0, 48])
    .height(Length::Fixed(BIG_BUTTON_HEIGHT))
    .into()
}

fn key(label: String, message: Option<Message>, width: f32) -> Element<'static, Message> {
    sized_key(label, message, width, KEY)
}

fn sized_key(
    label: String,
    message: Option<Message>,
    width: f32,
    height: f32,
) -> Element<'static, Message> {
    // Word keys ("1字消す", "決定") in smaller type, so that they fit on one line.
    let size = if label.chars().count() > 1 { 26 } else { 36 };
    button(container(text(label).size(size)).center(Length::Fill))
        .on_press_maybe(message)
        .width(Length::Fixed(width))
        .height(Length::Fixed(height))
        .style(button::secondary)
        .into()
}

fn numeric_keypad(lang: Lang, can_submit: bool) -> Element<'static, Message> {
    let rows = [["1", "2", "3"], ["4", "5", "6"], ["7", "8", "9"]];
    let mut pad = column![].spacing(10).align_x(Alignment::Center);
    for r in rows {
        let mut line = row![].spacing(10);
        for d in r {
            let c = d.chars().next().unwrap_or('0');
            line = line.push(key(d.to_string(), Some(Message::Digit(c)), KEY * 1.3));
        }
        pad = pad.push(line);
    }
    pad = pad.push(
        row![
            key(
                lang.pick("1字消す", "Delete").to_string(),
                Some(Message::DeleteDigit),
                KEY * 1.3
            ),
            key("0".into(), Some(Message::Digit('0')), KEY * 1.3),
            key(
                lang.pick("決定", "OK").to_string(),
                can_submit.then_some(Message::LicenseEntered),
                KEY * 1.3
            ),
        ]
        .spacing(10),
    );
    pad.into()
}

/// A–Z in alphabetical order and 0–9, always in the same places (no shuffling): people who
/// use the kiosk once must find each key where they expect it.
fn letter_keypad(lang: Lang, can_submit: bool) -> Element<'static, Message> {
    let rows = ["ABCDEFGHI", "JKLMNOPQR", "STUVWXYZ", "1234567890"];
    let width = KEY * 0.95;
    let mut pad = column![].spacing(8).align_x(Alignment::Center);
    for r in rows {
        let mut line = row![].spacing(8);
        for c in r.chars() {
            line = line.push(sized_key(
                c.to_string(),
                Some(Message::Letter(c)),
                width,
                LETTER_KEY_HEIGHT,
            ));
        }
        pad = pad.push(line);
    }
    pad = pad.push(
        row![
            sized_key(
                lang.pick("1字消す", "Delete").to_string(),
                Some(Message::DeleteLetter),
                width * 2.5,
                LETTER_KEY_HEIGHT
            ),
            sized_key(
                lang.pick("決定", "OK").to_string(),
                can_submit.then_some(Message::PasswordEntered),
                width * 2.5,
                LETTER_KEY_HEIGHT
            ),
        ]
        .spacing(8),
    );
    pad.into()
}
