//! What the staff window draws for each step and panel.

use super::super::look::{self, MUTED, SUCCESS};
use super::super::shared;
use super::super::turn::{CardPhase, SendPhase};
use super::{Message, Panel, Staff, Step, LICENSE_ID, OPERATOR_ID, PASSWORD_ID};
use iced::widget::{
    button, checkbox, column, container, progress_bar, row, scrollable, space, text, text_input,
};
use iced::{Element, Length};
use mynalink_link::{ErrorCode, FlowError};

impl Staff {
    pub fn view(&self) -> Element<'_, Message> {
        let lang = self.lang;
        let body: Element<'_, Message> = if let Some(panel) = self.pending_panel {
            self.login_view(panel)
        } else {
            match self.panel {
                Panel::Flow => self.flow_view(),
                Panel::History => self.history_view(),
                Panel::Outbox => self.outbox_view(),
                Panel::Settings => self.settings_view(),
            }
        };
        let mut nav = row![
            nav_button(lang.pick("手続", "Procedure"), Panel::Flow, self.panel),
            nav_button(lang.pick("本日の履歴", "Today"), Panel::History, self.panel),
            nav_button(lang.pick("送信箱", "Outbox"), Panel::Outbox, self.panel),
            nav_button(lang.pick("設定", "Settings"), Panel::Settings, self.panel),
            space::horizontal(),
        ]
        .spacing(8)
        .align_y(iced::Alignment::Center);
        if self.env.simulated_card().is_some() {
            nav = nav.push(shared::demo_controls(
                lang,
                self.presence.card_present,
                Message::DemoInsert,
                Message::DemoRemove,
            ));
        }
        nav = nav.push(
            button(text(lang.switch_label()))
                .on_press(Message::ToggleLanguage)
                .style(button::secondary),
        );
        column![
            self.status_bar(),
            nav,
            container(body).height(Length::Fill).width(Length::Fill),
        ]
        .spacing(10)
        .padding(14)
        .into()
    }

    fn status_bar(&self) -> Element<'_, Message> {
        let lang = self.lang;
        let reader = shared::presence_text(lang, &self.presence, &self.env);
        let backend = match self.backend_up {
            Some(true) => lang.pick("接続中", "reachable"),
            Some(false) => lang.pick("接続できません", "unreachable"),
            None => "…",
        };
        let outbox = match self.outbox_size {
            Some(n) => n.to_string(),
            None => "—".into(),
        };
        let bar = row![
            text(format!(
                "{} {}",
                lang.pick("端末", "Terminal"),
                self.env.terminal_id
            )),
            text(format!(
                "{} {}",
                lang.pick("職員", "Operator"),
                self.env.operator_id.as_deref().unwrap_or("—")
            )),
            text(reader),
            text(format!(
                "{} {backend}",
                lang.pick("バックエンド", "Backend")
            )),
            text(format!("{} {outbox}", lang.pick("送信待ち", "Outbox"))),
        ]
        .push(match self.outbox_held {
            // Apart from the queue: these wait for a person, not for the backend.
            Some(held) if held > 0 => Element::from(
                text(format!("{} {held}", lang.pick("要対応", "Needs operator")))
                    .color(look::WARNING),
            ),
            _ => Element::from(space::horizontal().width(0)),
        })
        .spacing(24)
        .align_y(iced::Alignment::Center)
        // Wraps onto a second line in a narrow window instead of squeezing the items.
        .wrap()
        .vertical_spacing(4);
        container(bar)
            .padding(8)
            .width(Length::Fill)
            .style(container::rounded_box)
            .into()
    }

    fn steps_bar(&self) -> Element<'_, Message> {
        let lang = self.lang;
        let mut steps = row![].spacing(6);
        for step in Step::ALL {
            let label = format!("{} {}", step as u8, step.label(lang));
            let current = step == self.step;
            let done = step < self.step;
            let color = if current {
                None
            } else if done {
                Some(SUCCESS)
            } else {
                Some(MUTED)
            };
            let mut t = text(if current {
                format!("▶ {label}")
            } else {
                label
            });
            if let Some(c) = color {
                t = t.color(c);
            }
            steps = steps.push(t);
        }
        column![
            steps,
            progress_bar(0.0..=7.0, self.step as u8 as f32).girth(8),
        ]
        .spacing(6)
        .into()
    }

    fn flow_view(&self) -> Element<'_, Message> {
        let lang = self.lang;
        let content = match self.step {
            Step::Reception => self.reception_view(),
            Step::Terms => self.terms_view(),
            Step::Card => self.card_view(),
            Step::Password => self.password_view(),
            Step::Confirm => self.confirm_view(),
            Step::Send => self.send_view(),
            Step::Done => self.done_view(),
        };
        let keys = text(lang.pick(
            "Enter: 次へ　Esc: 戻る・中止　Tab: 次の項目　F4: 職員確認　F2: English",
            "Enter: next   Esc: back/cancel   Tab: next field   F4: staff confirmation   F2: 日本語",
        ))
        .color(MUTED)
        .size(14);
        column![
            self.steps_bar(),
            scrollable(content).height(Length::Fill),
            keys
        ]
        .spacing(12)
        .into()
    }

    fn reception_view(&self) -> Element<'_, Message> {
        let lang = self.lang;
        let mut col = column![
            look::heading(
                lang.pick("1 受付：免許証番号", "1 Reception: license number"),
                26.0
            ),
            text_input(
                lang.pick("免許証番号（12桁）", "License number (12 digits)"),
                &self.turn.license_input
            )
            .id(LICENSE_ID)
            .on_input(Message::LicenseInput)
            .on_submit(Message::Primary)
            .size(24)
            .padding(10)
            .width(Length::Fixed(420.0)),
        ]
        .spacing(12);
        if let Some(e) = &self.turn.license_problem {
            col = col.push(look::error(lang, e));
        }
        if let Some(license) = &self.turn.license {
            col = col.push(
                text(format!(
                    "{}: {} {} — {}",
                    lang.pick("公安委員会", "Commission"),
                    license.commission_code(),
                    lang.pick(license.commission_name_ja(), license.commission_name_en()),
                    lang.pick("チェックディジット OK", "check digit OK"),
                ))
                .color(SUCCESS),
            );
        }
        col = col.push(shared::lookup_view(lang, &self.turn.lookup));
        let next = button(text(lang.pick("次へ（規約）", "Next (terms)")))
            .on_press_maybe(self.turn.reception_done().then_some(Message::Primary))
            .padding(10);
        col.push(next).into()
    }

    fn terms_view(&self) -> Element<'_, Message> {
        let lang = self.lang;
        let mut col = column![look::heading(
            lang.pick(
                "2 規約：利用規約の確認と同意",
                "2 Terms: the holder reads and agrees"
            ),
            26.0
        )]
        .spacing(12);
        match &self.env.terms {
            Ok(terms) => {
                col = col
                    .push(
                        text(format!(
                            "{} {} — SHA-256 {}",
                            lang.pick("版", "Version"),
                            terms.version,
                            &terms.sha256[..16]
                        ))
                        .color(MUTED)
                        .size(14),
                    )
                    .push(
                        container(
                            scrollable(text(look::plain(&terms.text))).height(Length::Fixed(320.0)),
                        )
                        .padding(10)
                        .style(container::bordered_box),
                    )
                    .push(
                        row![
                            button(text(lang.pick("戻る", "Back")))
                                .on_press(Message::Back)
                                .style(button::secondary)
                                .padding(10),
                            button(text(lang.pick("ご本人が同意しました", "The holder agrees")))
                                .on_press(Message::Agree)
                                .padding(10),
                        ]
                        .spacing(10),
                    );
            }
            Err(problem) => {
                col = col.push(look::error(
                    lang,
                    &FlowError::new(ErrorCode::ConfigurationInvalid).with_detail(problem.clone()),
                ));
                col = col.push(text(problem.clone()).color(MUTED));
            }
        }
        col.into()
    }

    fn card_view(&self) -> Element<'_, Message> {
        let lang = self.lang;
        let instruction = shared::card_instruction(lang, self.presence.reader_kind(), false);
        let mut col = column![look::heading(
            format!("{}{instruction}", lang.pick("3 カード：", "3 Card: ")),
            26.0
        )]
        .spacing(12);
        if let Some(e) = &self.interrupted {
            col = col.push(look::error(lang, e));
        }
        col = col.push(shared::card_phase_view(lang, &self.turn));
        col = col.push(
            row![
                button(text(lang.pick("中止", "Cancel")))
                    .on_press(Message::Back)
                    .style(button::secondary)
                    .padding(10),
                button(text(lang.pick("カードを読み取る", "Read the card")))
                    .on_press_maybe(
                        (!matches!(self.turn.card, CardPhase::Checking))
                            .then_some(Message::ReadCard)
                    )
                    .padding(10),
            ]
            .spacing(10),
        );
        col.into()
    }

    fn password_view(&self) -> Element<'_, Message> {
        let lang = self.lang;
        let tries = match self.turn.tries_left {
            Some(n) => lang.choose(format!("残り {n} 回"), format!("{n} tries left")),
            None => lang.pick("残り回数不明", "tries left unknown").to_string(),
        };
        let mut col = column![
            look::heading(
                lang.pick(
                    "4 暗証番号：署名用パスワード（英数字6〜16文字）",
                    "4 Password: the signing password (6–16 letters and digits)"
                ),
                26.0
            ),
            text(tries).size(22),
            text_input(
                lang.pick("ご本人が入力します", "The holder types it"),
                &self.turn.password
            )
            .id(PASSWORD_ID)
            .secure(true)
            .on_input(Message::PasswordInput)
            .on_submit(Message::Primary)
            .size(24)
            .padding(10)
            .width(Length::Fixed(420.0)),
            text(format!(
                "{} {}",
                self.turn.password.chars().count(),
                lang.pick(
                    "文字（大文字で送ります）",
                    "characters (sent in upper case)"
                )
            ))
            .color(MUTED),
        ]
        .spacing(12);
        if let Some(e) = &self.turn.password_problem {
            col = col.push(look::error(lang, e));
        }
        if self.turn.needs_last_try_confirmation() {
            col = col.push(look::warning(lang.pick(
                "残り1回です。間違えるとロックされ、市区町村の窓口での再設定が必要になります。",
                "One try left. A wrong entry locks the password; it must then be reset at the municipal office.",
            )));
            col = col.push(
                checkbox(self.turn.last_try_confirmed)
                    .label(lang.pick(
                        "職員が確認しました（最後の1回を使います）",
                        "Staff confirm: use the last try",
                    ))
                    .on_toggle(Message::ConfirmLastTry),
            );
        }
        if let CardPhase::Failed(e) = &self.turn.card {
            col = col.push(look::error(lang, e));
        }
        let busy = matches!(self.turn.card, CardPhase::Verifying);
        col = col.push(
            row![
                button(text(lang.pick("中止", "Cancel")))
                    .on_press(Message::Back)
                    .style(button::secondary)
                    .padding(10),
                button(text(if busy {
                    lang.pick("照合中…", "Checking…")
                } else {
                    lang.pick("照合する", "Verify")
                }))
                .on_press_maybe((!busy).then_some(Message::Primary))
                .padding(10),
            ]
            .spacing(10),
        );
        col.into()
    }

    fn confirm_view(&self) -> Element<'_, Message> {
        let lang = self.lang;
        let mut col = column![look::heading(
            lang.pick(
                "5 確認：署名用電子証明書と本人確認",
                "5 Check: the signing certificate and the holder"
            ),
            26.0
        )]
        .spacing(10);
        match (&self.turn.card, &self.turn.certificate) {
            (CardPhase::Failed(e), _) => col = col.push(look::error(lang, e)),
            (_, None) => {
                col = col.push(text(
                    lang.pick("証明書を読み取っています…", "Reading the certificate…"),
                ))
            }
            (_, Some(cert)) => {
                col = col.push(shared::certificate_view(lang, cert, &self.env.prefecture));
                col = col.push(
                    checkbox(self.turn.identity_confirmed)
                        .label(lang.pick(
                            "職員が免許記録の氏名・生年月日と照合しました［F4］",
                            "Staff compared the name and birth date with the license record [F4]",
                        ))
                        .on_toggle(Message::IdentityConfirmed),
                );
            }
        }
        col = col.push(
            row![
                button(text(lang.pick("中止", "Cancel")))
                    .on_press(Message::Back)
                    .style(button::secondary)
                    .padding(10),
                button(text(lang.pick("署名して送信", "Sign and send")))
                    .on_press_maybe(
                        (self.turn.certificate.is_some() && self.turn.identity_confirmed)
                            .then_some(Message::Primary)
                    )
                    .padding(10),
            ]
            .spacing(10),
        );
        col.into()
    }

    fn send_view(&self) -> Element<'_, Message> {
        let lang = self.lang;
        let mut col = column![look::heading(lang.pick("6 送信", "6 Send"), 26.0)].spacing(10);
        let stage = match &self.turn.send {
            SendPhase::Signing => 1.0,
            SendPhase::Uploading => 2.0,
            SendPhase::Finished(_) => 3.0,
            SendPhase::Idle | SendPhase::Failed(_) => 0.0,
        };
        col = col.push(progress_bar(0.0..=3.0, stage).girth(14));
        col = col.push(shared::send_phase_view(lang, &self.turn.send));
        if let SendPhase::Failed(_) = &self.turn.send {
            col = col.push(
                button(text(lang.pick("最初からやり直す", "Start over")))
                    .on_press(Message::Primary)
                    .padding(10),
            );
        }
        col.into()
    }

    fn done_view(&self) -> Element<'_, Message> {
        let lang = self.lang;
        let mut col = column![look::heading(lang.pick("7 完了", "7 Done"), 26.0)].spacing(12);
        col = col.push(shared::send_phase_view(lang, &self.turn.send));
        let card_out = self.presence.card_present != Some(true);
        if card_out {
            col = col.push(
                text(lang.pick("カードは取り外されました。", "The card has been removed."))
                    .color(SUCCESS),
            );
        } else {
            col = col.push(look::warning(lang.pick(
                "カードを取り外してください（次の方の受付はカードを取り外してからです）。",
                "Please remove the card (the next person can start once it is out).",
            )));
        }
        col.push(
            button(text(lang.pick("次の方", "Next person")))
                .on_press_maybe(card_out.then_some(Message::NextPerson))
                .padding(10),
        )
        .into()
    }

    fn login_view(&self, panel: Panel) -> Element<'_, Message> {
        let lang = self.lang;
        let what = match panel {
            Panel::History => lang.pick("本日の履歴", "today's history"),
            Panel::Outbox => lang.pick("送信箱", "the outbox"),
            _ => lang.pick("設定", "settings"),
        };
        let mut col = column![
            look::heading(
                lang.choose(
                    format!("職員ログイン（{what}）"),
                    format!("Operator login ({what})")
                ),
                24.0
            ),
            text_input(
                lang.pick("職員パスワード", "Operator password"),
                &self.operator_password
            )
            .id(OPERATOR_ID)
            .secure(true)
            .on_input(Message::OperatorPassword)
            .on_submit(Message::OperatorLogin)
            .padding(10)
            .width(Length::Fixed(360.0)),
            row![
                button(text(lang.pick("戻る", "Back")))
                    .on_press(Message::Back)
                    .style(button::secondary),
                button(text(lang.pick("ログイン", "Log in"))).on_press(Message::OperatorLogin),
            ]
            .spacing(10),
        ]
        .spacing(12);
        if let Some(refusal) = self.operator_refused {
            for line in shared::refusal_lines(lang, refusal) {
                col = col.push(look::warning(line));
            }
        }
        if self.env.demo {
            col = col.push(
                text(lang.choose(
                    format!(
                        "デモの職員パスワード：{}",
                        super::super::setup::DEMO_OPERATOR_PASSWORD
                    ),
                    format!(
                        "Demo operator password: {}",
                        super::super::setup::DEMO_OPERATOR_PASSWORD
                    ),
                ))
                .color(MUTED),
            );
        }
        if self.env.operator_password.is_none() {
            col = col.push(
                text(lang.pick(
                    "職員パスワードが設定されていません（operator_password_hash）。",
                    "No operator password is configured (operator_password_hash).",
                ))
                .color(MUTED),
            );
        }
        col.into()
    }

    fn history_view(&self) -> Element<'_, Message> {
        let lang = self.lang;
        let mut col = column![look::heading(
            lang.pick("本日の履歴（この端末）", "Today on this terminal"),
            24.0
        )]
        .spacing(6);
        if self.history.is_empty() {
            col = col.push(text(lang.pick("まだありません。", "Nothing yet.")).color(MUTED));
        }
        for row_data in self.history.iter().rev() {
            col = col.push(text(format!(
                "{}  {}  {}  {}",
                row_data.time,
                row_data.license_number,
                row_data.outcome,
                row_data.binding_id.as_deref().unwrap_or("")
            )));
        }
        scrollable(col).into()
    }

    fn outbox_view(&self) -> Element<'_, Message> {
        let lang = self.lang;
        let mut col = column![row![
            look::heading(lang.pick("送信箱（送信待ち）", "Outbox (waiting)"), 24.0),
            space::horizontal(),
            button(text(lang.pick("今すぐ送信", "Send now"))).on_press(Message::FlushNow),
        ]]
        .spacing(6);
        match &self.outbox_rows {
            None => col = col.push(text("…")),
            Some(Err(e)) => col = col.push(look::warning(e.clone())),
            Some(Ok(rows)) => {
                let (held, queued): (Vec<_>, Vec<_>) = rows.iter().partition(|e| e.held.is_some());
                if queued.is_empty() {
                    col = col.push(
                        text(lang.pick("送信待ちはありません。", "Nothing is waiting."))
                            .color(SUCCESS),
                    );
                }
                for entry in queued {
                    col = col.push(text(format!(
                        "#{}  {}  {}  {} {}  {}",
                        entry.id.0,
                        entry.license_number,
                        shared::format_local(entry.created_at),
                        lang.pick("試行", "attempts"),
                        entry.attempts,
                        entry.last_error.as_deref().unwrap_or("")
                    )));
                }
                if !held.is_empty() {
                    col = col.push(look::heading(
                        format!(
                            "{} {}",
                            lang.pick(
                                "要対応（自動では再送しません。削除もしません）",
                                "Needs an operator (not retried automatically, never deleted)"
                            ),
                            held.len()
                        ),
                        20.0,
                    ));
                }
                for entry in held {
                    let Some(hold) = entry.held else { continue };
                    let (ja, en) = hold.reason.text();
                    col = col.push(text(format!(
                        "#{}  {}  {}  [{}]",
                        entry.id.0,
                        entry.license_number,
                        shared::format_local(hold.since),
                        hold.reason
                    )));
                    col = col.push(look::warning(lang.pick(ja, en)));
                }
            }
        }
        scrollable(col).into()
    }

    fn settings_view(&self) -> Element<'_, Message> {
        let lang = self.lang;
        let env = &self.env;
        let terms = match &env.terms {
            Ok(t) => format!(
                "{} ({} {}, SHA-256 {})",
                t.path.display(),
                lang.pick("版", "version"),
                t.version,
                t.sha256
            ),
            Err(e) => e.clone(),
        };
        let backend = match (&env.remote, &env.remote_problem) {
            (Some(_), _) if env.demo => lang
                .pick(
                    "組み込みの参照バックエンド（デモ）",
                    "embedded reference backend (demo)",
                )
                .to_string(),
            (Some(_), _) => lang.pick("設定済み", "configured").to_string(),
            (None, Some(p)) => p.clone(),
            (None, None) => "—".into(),
        };
        let reader = match &env.card.source {
            super::super::card::CardSource::Simulated(_) => lang
                .pick("模擬カード（デモ）", "simulated card (demo)")
                .to_string(),
            super::super::card::CardSource::Reader(Some(name)) => name.clone(),
            super::super::card::CardSource::Reader(None) => lang
                .pick(
                    "自動（マイナンバーカードのあるリーダー）",
                    "auto (the reader holding a My Number card)",
                )
                .to_string(),
        };
        column![
            look::heading(lang.pick("設定", "Settings"), 24.0),
            text(format!(
                "{}: {}",
                lang.pick("端末ID", "Terminal id"),
                env.terminal_id
            )),
            text(format!(
                "{}: {}",
                lang.pick("都道府県", "Prefecture"),
                env.prefecture
            )),
            text(format!(
                "{}: {backend}",
                lang.pick("バックエンド", "Backend")
            )),
            text(format!(
                "{}: {reader}",
                lang.pick("カードリーダー", "Card reader")
            )),
            text(format!(
                "{}: {terms}",
                lang.pick("規約ファイル", "Terms file")
            )),
            text(format!(
                "{}: {}",
                lang.pick("本日の履歴", "Today's history"),
                env.history
                    .as_ref()
                    .map(|h| h.path().display().to_string())
                    .unwrap_or_else(|| lang.pick("メモリのみ", "in memory only").to_string())
            )),
            row![
                text(format!(
                    "{}: {}",
                    lang.pick("表示言語", "Language"),
                    lang.pick("日本語", "English")
                )),
                button(text(lang.switch_label())).on_press(Message::ToggleLanguage),
            ]
            .spacing(10)
            .align_y(iced::Alignment::Center),
            text(lang.pick(
                "変更は設定ファイル（config.toml）で行い、再起動してください。",
                "Change these in the config file (config.toml) and restart.",
            ))
            .color(MUTED),
        ]
        .spacing(10)
        .into()
    }
}

fn nav_button(label: &str, panel: Panel, current: Panel) -> Element<'_, Message> {
    let style = if panel == current {
        button::primary
    } else {
        button::secondary
    };
    button(text(label))
        .on_press(Message::Show(panel))
        .style(style)
        .into()
}
