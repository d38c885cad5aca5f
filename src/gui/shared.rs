//! What the staff window and the kiosk share: card presence from the reader events or the
//! demo controls, the background sender's events, and the views of one turn's results.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use iced::futures::Stream;
use iced::widget::{button, column, row, text};
use iced::{Element, Subscription, Task};
use mynalink_card::events::{CardEvent, Watcher};
use mynalink_card::{PasswordStatus, ReaderKind};
use mynalink_link::api::LinkedVia;
use mynalink_link::sender::SenderEvent;
use mynalink_link::upload::Delivery;
use mynalink_link::{ErrorCode, FlowError, SignedStatement};

use super::card::{CardSource, CertificateView};
use super::i18n::Lang;
use super::look::{self, MUTED, SUCCESS};
use super::setup::{Environment, SenderLink};
use super::staff::HistoryRow;
use super::turn::{CardPhase, Lookup, SendPhase, Turn};
use crate::operator_password::{PasswordCheck, Refusal};

static PROCESS_START: OnceLock<Instant> = OnceLock::new();

/// Called first thing in `main`, so that startup time counts from the process start.
pub fn mark_process_start() {
    let _ = PROCESS_START.set(Instant::now());
}

/// With `MYNALINK_STARTUP_LOG` set, one line on stderr when the first frame is presented.
pub fn log_first_frame(mode: &str) {
    static LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if LOGGED.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    if std::env::var_os("MYNALINK_STARTUP_LOG").is_some() {
        let ms = PROCESS_START
            .get()
            .map(|start| start.elapsed().as_millis())
            .unwrap_or(0);
        // Best effort: a closed stderr only loses the measurement.
        let _ = write_startup_line(&mut std::io::stderr(), ms, mode);
    }
}

/// The first-frame line in one `write`: stderr is unbuffered, and `eprintln!` writes each piece
/// of its format separately, so a compositor writing to the same stderr (cage under the kiosk
/// service) could land in the middle of the line that scripts look for.
fn write_startup_line(out: &mut impl std::io::Write, ms: u128, mode: &str) -> std::io::Result<()> {
    out.write_all(format!("mynalink-startup first_frame_ms={ms} mode={mode}\n").as_bytes())
}

/// What the window knows about the reader and the card.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Presence {
    pub reader: Option<String>,
    /// `None`: not known (no event yet, or PC/SC is down).
    pub card_present: Option<bool>,
    pub pcsc_down: bool,
    /// The ATR of the last card seen in `reader`: tells a contactless reader the name does not.
    pub last_atr: Option<Vec<u8>>,
}

impl Presence {
    /// Whether the holder inserts the card or places it on the reader.
    pub fn reader_kind(&self) -> ReaderKind {
        match &self.reader {
            Some(name) => ReaderKind::of(name, self.last_atr.as_deref()),
            None => ReaderKind::Unknown,
        }
    }

    pub fn apply(&mut self, event: &CardEvent) {
        match event {
            CardEvent::PcscAvailable => self.pcsc_down = false,
            CardEvent::PcscUnavailable { .. } => {
                self.pcsc_down = true;
                self.card_present = None;
            }
            CardEvent::ReaderAdded { reader } => {
                if self.reader.is_none() {
                    self.reader = Some(reader.clone());
                    self.card_present.get_or_insert(false);
                    self.last_atr = None;
                }
            }
            CardEvent::ReaderRemoved { reader } => {
                if self.reader.as_ref() == Some(reader) {
                    self.reader = None;
                    self.card_present = None;
                    self.last_atr = None;
                }
            }
            CardEvent::CardInserted { reader, atr } => {
                self.reader = Some(reader.clone());
                self.card_present = Some(true);
                self.last_atr = Some(atr.clone());
            }
            CardEvent::CardRemoved { reader } => {
                if self.reader.as_ref() == Some(reader) {
                    self.card_present = Some(false);
                }
            }
        }
    }
}

pub fn initial_presence(env: &Environment) -> Presence {
    match &env.card.source {
        CardSource::Simulated(handle) => Presence {
            reader: Some("Simulated".into()),
            card_present: Some(handle.is_present()),
            pcsc_down: false,
            last_atr: None,
        },
        CardSource::Reader(name) => Presence {
            reader: name.clone(),
            card_present: None,
            pcsc_down: false,
            last_atr: None,
        },
    }
}

/// The card step's instruction for the reader's kind: a contact reader takes the card
/// inserted, a contactless one has it placed on top; when the kind is not known, both.
/// `ruby`: with the kiosk's reading aids (｜漢字《かな》).
pub fn card_instruction(lang: Lang, kind: ReaderKind, ruby: bool) -> &'static str {
    match (kind, ruby) {
        (ReaderKind::Contact, false) => lang.pick(
            "マイナンバーカードをカードリーダーに差し込んでください",
            "Insert the My Number card into the card reader",
        ),
        (ReaderKind::Contact, true) => lang.pick(
            "マイナンバーカードをカードリーダーに｜差《さ》し｜込《こ》んでください",
            "Insert your My Number card into the card reader",
        ),
        (ReaderKind::Contactless, false) => lang.pick(
            "マイナンバーカードをカードリーダーの上に置いてください",
            "Place the My Number card on the card reader",
        ),
        (ReaderKind::Contactless, true) => lang.pick(
            "マイナンバーカードをカードリーダーの｜上《うえ》に｜置《お》いてください",
            "Place your My Number card on the card reader",
        ),
        (ReaderKind::Unknown, false) => lang.pick(
            "マイナンバーカードをカードリーダーに差し込むか、上に置いてください",
            "Insert the My Number card into the card reader, or place it on the reader",
        ),
        (ReaderKind::Unknown, true) => lang.pick(
            "マイナンバーカードをカードリーダーに｜差《さ》し｜込《こ》むか、｜上《うえ》に｜置《お》いてください",
            "Insert your My Number card into the card reader, or place it on the reader",
        ),
    }
}

pub fn presence_text(lang: Lang, presence: &Presence, env: &Environment) -> String {
    let reader = presence
        .reader
        .clone()
        .unwrap_or_else(|| lang.pick("リーダーなし", "no reader").to_string());
    let card = if presence.pcsc_down {
        lang.pick("PC/SC停止中", "PC/SC down")
    } else {
        match presence.card_present {
            Some(true) => lang.pick("カードあり", "card present"),
            Some(false) => lang.pick("カードなし", "no card"),
            None => "…",
        }
    };
    let demo = if env.simulated_card().is_some() {
        lang.pick("（模擬）", " (simulated)")
    } else {
        ""
    };
    format!("{reader}{demo}: {card}")
}

/// Turns a std channel into a stream for a subscription; the forwarding thread ends when
/// the subscription is dropped.
fn forward<T: Send + 'static>(
    source: std::sync::mpsc::Receiver<T>,
    keep: impl Send + 'static,
) -> impl Stream<Item = T> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let _ = std::thread::Builder::new()
        .name("mynalink-events".into())
        .spawn(move || {
            let _keep = keep;
            while let Ok(item) = source.recv() {
                if tx.send(item).is_err() {
                    break;
                }
            }
        });
    iced::futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

struct SenderKey(Arc<SenderLink>);

impl Hash for SenderKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.0) as usize).hash(state);
    }
}

fn sender_stream(key: &SenderKey) -> impl Stream<Item = SenderEvent> {
    let events = key
        .0
        .events
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let (_never, idle) = std::sync::mpsc::channel();
    // Taken once: a second subscription (after a restart of the stream) stays silent.
    forward(events.unwrap_or(idle), ())
}

pub fn sender_events(env: &Environment) -> Subscription<SenderEvent> {
    Subscription::run_with(SenderKey(env.sender.clone()), sender_stream)
}

#[derive(Hash)]
struct ReaderKey;

fn reader_stream(_: &ReaderKey) -> impl Stream<Item = CardEvent> {
    match Watcher::with_channel() {
        Ok((watcher, events)) => iced::futures::future::Either::Left(forward(events, watcher)),
        Err(e) => iced::futures::future::Either::Right(iced::futures::stream::once(async move {
            CardEvent::PcscUnavailable {
                detail: e.to_string(),
            }
        })),
    }
}

/// Reader and card events from PC/SC; none for the simulated card.
pub fn reader_events(env: &Environment) -> Option<Subscription<CardEvent>> {
    match env.card.source {
        CardSource::Reader(_) => Some(Subscription::run_with(ReaderKey, reader_stream)),
        CardSource::Simulated(_) => None,
    }
}

/// The demo controls put the simulated card in or take it out (off the UI thread: the card
/// may be in the middle of a slow command).
pub fn demo_set_card<M: Send + 'static>(
    env: &Environment,
    present: bool,
    done: fn(bool) -> M,
) -> Task<M> {
    let Some(handle) = env.simulated_card().cloned() else {
        return Task::none();
    };
    Task::perform(
        async move {
            tokio::task::spawn_blocking(move || {
                if present {
                    handle.insert();
                } else {
                    handle.remove();
                }
                handle.is_present()
            })
            .await
            .unwrap_or(!present)
        },
        done,
    )
}

pub fn demo_controls<'a, M: Clone + 'a>(
    lang: Lang,
    present: Option<bool>,
    insert: M,
    remove: M,
) -> Element<'a, M> {
    let present = present == Some(true);
    row![
        text(lang.pick("デモ：", "Demo:")).color(MUTED),
        button(text(lang.pick("カードを置く", "Insert card")))
            .on_press_maybe((!present).then_some(insert))
            .style(button::secondary),
        button(text(lang.pick("カードを取る", "Remove card")))
            .on_press_maybe(present.then_some(remove))
            .style(button::secondary),
    ]
    .spacing(6)
    .align_y(iced::Alignment::Center)
    .into()
}

/// Bindings the background sender settled later also appear in today's history.
pub fn sender_history_row(event: &SenderEvent) -> Option<HistoryRow> {
    let (license_number, outcome, binding_id) = match event {
        SenderEvent::Delivered {
            license_number,
            binding_id,
            ..
        } => (license_number, "linked (outbox)", Some(binding_id.clone())),
        SenderEvent::AlreadyLinked { license_number, .. } => {
            (license_number, "already_linked (outbox)", None)
        }
        SenderEvent::Failed { license_number, .. } => (license_number, "failed (outbox)", None),
        SenderEvent::Held { license_number, .. } => (license_number, "held (outbox)", None),
        _ => return None,
    };
    Some(HistoryRow {
        date: local_date(),
        time: local_clock(),
        license_number: license_number.clone(),
        outcome: outcome.into(),
        binding_id,
    })
}

/// Checks the operator password on a blocking thread (PBKDF2 takes a noticeable moment);
/// the window goes on meanwhile, and a wait after failures is answered at once.
pub fn check_operator_password<M: Send + 'static>(
    env: &Environment,
    typed: zeroize::Zeroizing<String>,
    done: fn(PasswordCheck) -> M,
) -> Task<M> {
    let env = env.clone();
    Task::perform(
        async move {
            tokio::task::spawn_blocking(move || env.check_operator_password(&typed))
                .await
                .unwrap_or(PasswordCheck::Refused(Refusal::Wrong {
                    wait: Duration::ZERO,
                }))
        },
        done,
    )
}

/// What a refused operator password shows: why, and how long to wait before the next try.
pub fn refusal_lines(lang: Lang, refusal: Refusal) -> Vec<String> {
    let seconds = |wait: Duration| wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    match refusal {
        Refusal::Wrong { wait } if wait.is_zero() => {
            vec![lang.pick("パスワードが違います。", "Wrong password.").to_string()]
        }
        Refusal::Wrong { wait } => vec![
            lang.pick("パスワードが違います。", "Wrong password.").to_string(),
            lang.choose(
                format!("{}秒待ってから、もう一度入力してください。", seconds(wait)),
                format!("Wait {} s before trying again.", seconds(wait)),
            ),
        ],
        Refusal::TooSoon { wait } => vec![lang.choose(
            format!(
                "間違いが続いたため、あと{}秒は確認しません。待ってから入力してください。",
                seconds(wait)
            ),
            format!(
                "After wrong passwords, nothing is checked for another {} s. Please wait, then try again.",
                seconds(wait)
            ),
        )],
    }
}

fn with_sender(env: &Environment, f: impl FnOnce(&mynalink_link::sender::SenderHandle)) {
    if let Some(handle) = env
        .sender
        .handle
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
    {
        f(handle);
    }
}

/// Asks the card to sign only once the outbox is sure to take the binding (see
/// [`mynalink_link::outbox::Outbox::ensure_room`]): a full disk, or no backend at all, stops
/// the turn before the card signs, so no signature is made that could not be kept.
pub fn sign_when_it_can_be_kept(
    env: &Environment,
) -> impl std::future::Future<Output = Result<SignedStatement, FlowError>> + 'static {
    let card = env.card.clone();
    let remote = env.remote.clone();
    let problem = env.remote_problem.clone();
    async move {
        match remote {
            Some(remote) => remote.ensure_room().await?,
            None => {
                return Err(FlowError::new(ErrorCode::ConfigurationInvalid)
                    .with_detail(problem.unwrap_or_default()))
            }
        }
        card.sign().await
    }
}

/// A binding stayed queued: let the sender count it and schedule its retry now rather than
/// at its next periodic look.
pub fn wake_sender(env: &Environment) {
    with_sender(env, |handle| handle.wake());
}

/// The operator's "send now": every queued binding, backoff or not.
pub fn flush_now(env: &Environment) {
    with_sender(env, |handle| handle.flush_now());
}

/// Japan Standard Time (no daylight saving): license centers are in Japan, and the local
/// offset cannot be read reliably from a multi-threaded process.
fn local_offset() -> time::UtcOffset {
    time::macros::offset!(+9)
}

pub fn format_local(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(local_offset());
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

pub fn local_date() -> String {
    let t = time::OffsetDateTime::now_utc().to_offset(local_offset());
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

pub fn local_clock() -> String {
    let t = time::OffsetDateTime::now_utc().to_offset(local_offset());
    format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
}

/// What the counter is told about the record, most pressing first: a suspension (§8), an
/// existing link (§4), a holder who cannot link (§2(1)), no first stage needed (§5, §6).
fn lookup_notice(
    lang: Lang,
    status: &mynalink_link::api::LicenseStatus,
) -> Option<(String, iced::Color)> {
    if status.service_suspended {
        return Some((
            lang.choose(
                "この免許証番号のマイナポータル連携は、警察により停止されています（規約第8条）。手続はできません。責任者に確認してください。".to_string(),
                "Linking for this license number has been suspended by the police (terms §8). The procedure cannot be done; ask the supervisor.".to_string(),
            ),
            look::DANGER,
        ));
    }
    if status.linked {
        let via = match status.linked_via {
            Some(LinkedVia::OneStop) => {
                lang.pick("引越しワンストップ", "the moving one-stop service")
            }
            _ => lang.pick("窓口", "a counter"),
        };
        return Some((
            lang.choose(
                format!("連携済みです（{via}）。この窓口での手続は不要です。"),
                format!("Already linked (via {via}). No procedure is needed here."),
            ),
            SUCCESS,
        ));
    }
    if !status.eligible {
        return Some((
            lang.choose(
                format!("この方は連携できません（{}）：マイナ免許証またはマイナ経歴証明書をお持ちの方が対象です。", status.reason),
                format!("This holder cannot link ({}): only holders of a My Number license or My Number driving-history certificate can.", status.reason),
            ),
            look::DANGER,
        ));
    }
    if status.binding_state == Some(mynalink_link::api::BindingState::Stale) {
        let (ja, en) = match status.stale_reason.as_deref() {
            Some("certificate_expired") => ("有効期限が切れた", "expired"),
            _ => (
                "失効した（転居や氏名の変更などで）",
                "was revoked (after a move or a change of name, for example)",
            ),
        };
        return Some((
            lang.choose(
                format!("以前の連携は、署名用電子証明書が{ja}ため無効になっています。新しい証明書で、もう一度第1段階の手続をしてください。"),
                format!("The earlier link no longer holds: the signing certificate {en}. Do the first stage again with the new certificate."),
            ),
            look::WARNING,
        ));
    }
    if !status.first_stage_needed {
        return Some((
            lang.choose(
                format!("第1段階は不要です（{}）。", status.reason),
                format!("The first stage is not needed ({}).", status.reason),
            ),
            SUCCESS,
        ));
    }
    None
}

/// What the backend said about the license record (§2, §4, §5, §6, §8).
pub fn lookup_view<'a, M: 'a>(lang: Lang, lookup: &Lookup) -> Element<'a, M> {
    match lookup {
        Lookup::NotAsked => text("").into(),
        Lookup::Loading => text(lang.pick("免許記録を照会しています…", "Looking up the license record…")).into(),
        Lookup::Failed(reason) => look::warning(lang.choose(
            format!("バックエンドに照会できません（{reason}）。手続は続けられ、送信は送信箱で待ちます。"),
            format!("The backend cannot be asked ({reason}). The procedure can go on; the upload will wait in the outbox."),
        )),
        Lookup::Found(status) => {
            let holding = status
                .holding
                .map_or(lang.pick("（回答なし）", "(not given)"), |h| holding_text(lang, h));
            let mut col = column![text(format!("{}: {holding}", lang.pick("保有状況", "Holding")))].spacing(6);
            if let Some((message, tone)) = lookup_notice(lang, status) {
                col = col.push(look::notice(message, tone));
            }
            let services: Vec<String> = status
                .services
                .iter()
                .map(|s| {
                    let mark = if s.available { "○" } else { "×" };
                    format!("{mark} {} {}", circled(s.number), lang.pick(&s.name_ja, &s.name_en))
                })
                .collect();
            col = col.push(text(lang.pick("連携後に利用できるサービス：", "Services after linking:")));
            for line in services {
                col = col.push(text(line).size(16));
            }
            col.into()
        }
    }
}

fn circled(n: u8) -> char {
    char::from_u32(0x2460 + u32::from(n.saturating_sub(1))).unwrap_or('?')
}

fn holding_text(lang: Lang, holding: mynalink_link::api::Holding) -> &'static str {
    use mynalink_link::api::Holding::*;
    match holding {
        MynaOnly => lang.pick("マイナ免許証のみ", "My Number license only"),
        MynaAndCard => lang.pick("マイナ免許証と免許証", "My Number license and license card"),
        CardOnly => lang.pick("免許証のみ", "license card only"),
        HistoryMynaOnly => lang.pick("マイナ経歴証明書のみ", "My Number history certificate only"),
        HistoryMynaAndCard => lang.pick(
            "マイナ経歴証明書と経歴証明書",
            "My Number history certificate and certificate card",
        ),
        HistoryCardOnly => lang.pick(
            "運転経歴証明書のみ",
            "driving-history certificate card only",
        ),
    }
}

pub fn card_phase_view<'a, M: 'a>(lang: Lang, turn: &Turn) -> Element<'a, M> {
    if let Some(code) = turn.card_refused() {
        return look::error(lang, &FlowError::new(code));
    }
    match &turn.card {
        CardPhase::Waiting => {
            text(lang.pick("カードを待っています…", "Waiting for the card…")).into()
        }
        CardPhase::Checking => {
            text(lang.pick("カードを確認しています…", "Checking the card…")).into()
        }
        CardPhase::Ready(PasswordStatus::Tries(n)) => text(lang.choose(
            format!("署名用パスワードの残り回数：{n} 回"),
            format!("Signing-password tries left: {n}"),
        ))
        .into(),
        CardPhase::Ready(_) => {
            text(lang.pick("残り回数は不明です", "Tries left are unknown")).into()
        }
        CardPhase::Failed(e) => look::error(lang, e),
        _ => text("").into(),
    }
}

pub fn certificate_view<'a, M: 'a>(
    lang: Lang,
    cert: &CertificateView,
    prefecture: &str,
) -> Element<'a, M> {
    let mut col = column![
        text(format!(
            "{}: {} ({} {})",
            lang.pick("発行番号（シリアル）", "Serial number"),
            cert.serial_hex,
            lang.pick("10進", "decimal"),
            cert.serial_decimal
        )),
        text(format!(
            "{}: {} – {} {}",
            lang.pick("有効期間", "Valid"),
            cert.not_before,
            cert.not_after,
            lang.pick("（日本時間）", "(Japan time)")
        )),
        text(format!(
            "{}: {}",
            lang.pick(
                "氏名（照合用・保存しません）",
                "Name (for comparison, not stored)"
            ),
            cert.name.as_str()
        ))
        .size(24),
        text(format!(
            "{}: {}",
            lang.pick(
                "生年月日（照合用・保存しません）",
                "Birth date (for comparison, not stored)"
            ),
            cert.birth_date.as_str()
        ))
        .size(24),
    ]
    .spacing(6);
    if cert.days_left <= mynalink_link::session::EXPIRY_WARNING_DAYS {
        col = col.push(look::warning(lang.choose(
            format!(
                "証明書の有効期限まであと{}日です。市区町村の窓口で更新をご案内ください。",
                cert.days_left
            ),
            format!(
                "The certificate expires in {} days; suggest renewal at the municipal office.",
                cert.days_left
            ),
        )));
    }
    if cert.name_has_substitutes {
        col = col.push(look::warning(lang.pick(
            "氏名に代替文字が使われています。免許記録の氏名と目で照合してください。",
            "The name uses substitute characters; compare it with the license record by eye.",
        )));
    }
    if cert.outside_prefecture(prefecture) {
        col = col.push(look::warning(lang.choose(
            format!("証明書の住所が{prefecture}の外です。住所地の免許センターでの手続か確認してください。"),
            format!("The certificate's address is outside {prefecture}; check that this is the holder's license center."),
        )));
    }
    col.into()
}

pub fn send_phase_view<'a, M: 'a>(lang: Lang, send: &SendPhase) -> Element<'a, M> {
    match send {
        SendPhase::Idle => text("").into(),
        SendPhase::Signing => text(lang.pick(
            "カードで署名しています…（カードを動かさないでください）",
            "The card is signing… (do not move the card)",
        ))
        .into(),
        SendPhase::Uploading => text(lang.pick(
            "署名を検証し、送信しています…",
            "Signature verified; sending…",
        ))
        .into(),
        SendPhase::Failed(e) => look::error(lang, e),
        SendPhase::Finished(delivery) => delivery_view(lang, delivery),
    }
}

fn delivery_view<'a, M: 'a>(lang: Lang, delivery: &Delivery) -> Element<'a, M> {
    match delivery {
        Delivery::Linked { binding_id, .. } => look::notice(
            lang.choose(
                format!("連携しました。連携ID：{binding_id}"),
                format!("Linked. Binding id: {binding_id}"),
            ),
            SUCCESS,
        ),
        Delivery::AlreadyLinked { .. } => look::notice(
            lang.pick("すでに連携済みでした。手続は不要です。", "It was already linked; nothing more is needed."),
            SUCCESS,
        ),
        Delivery::Queued { reason, .. } => look::warning(lang.choose(
            format!("送信箱に保存しました。接続が戻りしだい自動で送信します（{reason}）。"),
            format!("Kept in the outbox; it is sent automatically when the backend is back ({reason})."),
        )),
        Delivery::CredentialsRefused { error, .. } => look::warning(lang.choose(
            format!("端末の認証が拒否されました（{}）。送信箱に保存しました。システム担当者に連絡してください。", error.code),
            format!("The terminal's credentials were refused ({}). Kept in the outbox; contact the administrator.", error.code),
        )),
        Delivery::Rejected(error) => {
            let (ja, en) = error.explanation();
            look::notice(format!("[{}] {}", error.code, lang.pick(&ja, &en)), look::DANGER)
        }
        Delivery::Held { reason, .. } => {
            let (ja, en) = reason.text();
            look::warning(lang.choose(
                format!("送信箱に保管しました。要対応（{reason}）：自動では再送しません。{ja}"),
                format!("Kept in the outbox; it needs an operator ({reason}) and is not retried automatically. {en}"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mynalink_link::api::{Holding, LicenseState, LicenseStatus, ServiceStatus};

    /// Counts the `write` calls it gets.
    struct Writes(Vec<Vec<u8>>);

    impl std::io::Write for Writes {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_first_frame_line_is_one_write() {
        let mut out = Writes(Vec::new());
        write_startup_line(&mut out, 14, "kiosk").expect("written");
        assert_eq!(
            out.0,
            [b"mynalink-startup first_frame_ms=14 mode=kiosk\n".to_vec()]
        );
    }

    fn instruction_after(events: &[CardEvent]) -> &'static str {
        let mut presence = Presence::default();
        for event in events {
            presence.apply(event);
        }
        card_instruction(Lang::Ja, presence.reader_kind(), false)
    }

    #[test]
    fn the_card_instruction_follows_the_readers_kind() {
        let added = |name: &str| CardEvent::ReaderAdded {
            reader: name.into(),
        };
        assert_eq!(
            instruction_after(&[added(
                "SCM Microsystems Inc. SCR 3310 [CCID Interface] 00 00"
            )]),
            "マイナンバーカードをカードリーダーに差し込んでください"
        );
        assert_eq!(
            instruction_after(&[added("SONY FeliCa RC-S300/P 00 00")]),
            "マイナンバーカードをカードリーダーの上に置いてください"
        );
        // A reader the name says nothing about asks for both, until a card's ATR shows a
        // contactless reader synthesised it; a new reader forgets that ATR.
        let generic = "Generic USB Reader 00 00";
        assert_eq!(
            instruction_after(&[added(generic)]),
            "マイナンバーカードをカードリーダーに差し込むか、上に置いてください"
        );
        let synthesised = CardEvent::CardInserted {
            reader: generic.into(),
            atr: vec![0x3B, 0x88, 0x80, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0x09],
        };
        let removed = CardEvent::CardRemoved {
            reader: generic.into(),
        };
        assert_eq!(
            instruction_after(&[added(generic), synthesised.clone(), removed]),
            "マイナンバーカードをカードリーダーの上に置いてください"
        );
        let gone = CardEvent::ReaderRemoved {
            reader: generic.into(),
        };
        assert_eq!(
            instruction_after(&[added(generic), synthesised, gone, added(generic)]),
            "マイナンバーカードをカードリーダーに差し込むか、上に置いてください"
        );
        assert_eq!(
            card_instruction(Lang::En, ReaderKind::Contact, true),
            "Insert your My Number card into the card reader"
        );
    }

    fn status(linked: bool, eligible: bool, needed: bool, suspended: bool) -> LicenseStatus {
        LicenseStatus {
            license_number: "729913281070".into(),
            holding: Some(Holding::MynaOnly),
            state: None,
            eligible,
            linked,
            linked_via: None,
            first_stage_needed: needed,
            reason: if suspended {
                "service_suspended".into()
            } else {
                "required".into()
            },
            services: ServiceStatus::for_holder(Holding::MynaOnly, LicenseState::Valid),
            second_stage_done: None,
            service_suspended: suspended,
            suspension: None,
            binding_state: None,
            stale_reason: None,
        }
    }

    #[test]
    fn a_suspension_is_told_before_anything_else_and_never_as_good_news() {
        for linked in [false, true] {
            let (message, tone) =
                lookup_notice(Lang::Ja, &status(linked, true, false, true)).expect("notice");
            assert!(message.contains("停止"), "{message}");
            assert_eq!(tone, look::DANGER);
            let (message, _) =
                lookup_notice(Lang::En, &status(linked, true, false, true)).expect("notice");
            assert!(message.contains("suspended"), "{message}");
        }
        let (message, tone) =
            lookup_notice(Lang::Ja, &status(true, true, false, false)).expect("notice");
        assert!(message.contains("連携済み"), "{message}");
        assert_eq!(tone, SUCCESS);
        assert!(lookup_notice(Lang::Ja, &status(false, true, true, false)).is_none());
    }

    #[test]
    fn a_stale_binding_asks_for_a_new_first_stage_and_says_why() {
        let mut stale = status(false, true, true, false);
        stale.binding_state = Some(mynalink_link::api::BindingState::Stale);
        stale.stale_reason = Some("certificate_revoked".into());
        let (message, tone) = lookup_notice(Lang::Ja, &stale).expect("notice");
        assert!(
            message.contains("失効") && message.contains("第1段階"),
            "{message}"
        );
        assert_eq!(tone, look::WARNING);
        stale.stale_reason = Some("certificate_expired".into());
        let (message, _) = lookup_notice(Lang::En, &stale).expect("notice");
        assert!(message.contains("expired"), "{message}");
    }
}
