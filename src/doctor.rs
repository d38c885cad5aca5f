//! `mynalink doctor`: why a counter cannot link, found in one run. Each check has a stable
//! code and a Japanese and English message saying what is wrong and what to do; the exit
//! status is 1 when any check failed. Nothing is sent to a card but a SELECT and a read of
//! the token label (as `mynalink readers` does), and nothing is ever asked of the holder.

use std::path::{Path, PathBuf};

use mynalink_card::transport::list_readers;
use mynalink_card::{ReaderKind, TransportError};
use mynalink_link::backend::{Backend, WhoAmIAnswer};
use mynalink_link::outbox::Outbox;
use mynalink_link::trust::TrustAnchor;
use serde::Serialize;
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::cli::DoctorArgs;
use crate::config::{self, Config};

/// The font the windows ask for: without it kanji fall back to Chinese glyph forms.
const JAPANESE_FONT_FAMILY: &str = "Noto Sans CJK JP";
/// How far ahead of the backend a terminal's clock may be: the backend refuses statements
/// signed more than this ahead of its own clock.
const CLOCK_AHEAD_LIMIT: Duration = Duration::minutes(5);
/// How far behind: the backend's freshness window for statements.
const CLOCK_BEHIND_LIMIT: Duration = Duration::hours(72);

/// Every result a check can have. The snake_case name is the stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DoctorCode {
    ConfigOk,
    ConfigMissing,
    ConfigInvalid,
    PcscOk,
    PcscUnavailable,
    NoReader,
    ReaderOk,
    FontOk,
    FontMissing,
    CaOk,
    CaExpired,
    CaInvalid,
    CaNotConfigured,
    BackendNotConfigured,
    BackendOk,
    BackendUnreachable,
    TokenRefused,
    TokenForAnotherTerminal,
    ClockOk,
    ClockAhead,
    ClockBehind,
    ClockUnknown,
    OutboxOk,
    OutboxUnavailable,
}

impl DoctorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            DoctorCode::ConfigOk => "config_ok",
            DoctorCode::ConfigMissing => "config_missing",
            DoctorCode::ConfigInvalid => "config_invalid",
            DoctorCode::PcscOk => "pcsc_ok",
            DoctorCode::PcscUnavailable => "pcsc_unavailable",
            DoctorCode::NoReader => "no_reader",
            DoctorCode::ReaderOk => "reader_ok",
            DoctorCode::FontOk => "font_ok",
            DoctorCode::FontMissing => "font_missing",
            DoctorCode::CaOk => "ca_ok",
            DoctorCode::CaExpired => "ca_expired",
            DoctorCode::CaInvalid => "ca_invalid",
            DoctorCode::CaNotConfigured => "ca_not_configured",
            DoctorCode::BackendNotConfigured => "backend_not_configured",
            DoctorCode::BackendOk => "backend_ok",
            DoctorCode::BackendUnreachable => "backend_unreachable",
            DoctorCode::TokenRefused => "token_refused",
            DoctorCode::TokenForAnotherTerminal => "token_for_another_terminal",
            DoctorCode::ClockOk => "clock_ok",
            DoctorCode::ClockAhead => "clock_ahead",
            DoctorCode::ClockBehind => "clock_behind",
            DoctorCode::ClockUnknown => "clock_unknown",
            DoctorCode::OutboxOk => "outbox_ok",
            DoctorCode::OutboxUnavailable => "outbox_unavailable",
        }
    }

    /// Whether the counter can work with this result (an expired J-LIS generation or a
    /// CA that comes from the card are reported, not failures).
    pub fn passes(self) -> bool {
        matches!(
            self,
            DoctorCode::ConfigOk
                | DoctorCode::PcscOk
                | DoctorCode::ReaderOk
                | DoctorCode::FontOk
                | DoctorCode::CaOk
                | DoctorCode::CaExpired
                | DoctorCode::CaNotConfigured
                | DoctorCode::BackendOk
                | DoctorCode::ClockOk
                | DoctorCode::OutboxOk
        )
    }

    pub fn message_ja(self) -> &'static str {
        match self {
            DoctorCode::ConfigOk => "設定ファイルを読み込めました。",
            DoctorCode::ConfigMissing => "設定ファイルがありません。backend_url、token_file、terminal_id などを設定してください。",
            DoctorCode::ConfigInvalid => "設定ファイルに誤りがあります。詳細の行とキーを直してください。",
            DoctorCode::PcscOk => "PC/SC サービス（pcscd）が応答しました。",
            DoctorCode::PcscUnavailable => "PC/SC サービス（pcscd）が応答しません。pcscd を起動してください（systemctl start pcscd）。",
            DoctorCode::NoReader => "カードリーダーが見つかりません。リーダーの接続とドライバ（libccid など）を確認してください。",
            DoctorCode::ReaderOk => "カードリーダーを認識しました。",
            DoctorCode::FontOk => "日本語フォント（Noto Sans CJK JP）があります。",
            DoctorCode::FontMissing => "日本語フォント（Noto Sans CJK JP）がありません。漢字が中国語の字形で表示されます。fonts-noto-cjk をインストールしてください。",
            DoctorCode::CaOk => "署名用認証局の証明書を読み込めました。",
            DoctorCode::CaExpired => "期限切れの世代の署名用認証局証明書があります（その世代の証明書は使えませんが、手続は続けられます）。",
            DoctorCode::CaInvalid => "設定された認証局証明書を読み込めません。ファイルを確認してください。",
            DoctorCode::CaNotConfigured => "署名用認証局の証明書が設定されていません。カードから読み取り、指紋を照合して使います。",
            DoctorCode::BackendNotConfigured => "バックエンドが設定されていません（backend_url）。連携情報は送信できません。",
            DoctorCode::BackendOk => "バックエンドに TLS で接続でき、この端末として認証されました。",
            DoctorCode::BackendUnreachable => "バックエンドに接続できません。ネットワーク、URL、CA 証明書（ca_file）を確認してください。",
            DoctorCode::TokenRefused => "バックエンドが端末トークンを受け付けません。token_file を確認し、管理者に登録を依頼してください。",
            DoctorCode::TokenForAnotherTerminal => "端末トークンが別の端末 ID に登録されています。terminal_id かトークンを直してください。",
            DoctorCode::ClockOk => "端末の時計はバックエンドと合っています。",
            DoctorCode::ClockAhead => "端末の時計がバックエンドより進みすぎています。署名した申請が受け付けられません。時刻を合わせてください（NTP）。",
            DoctorCode::ClockBehind => "端末の時計がバックエンドより遅れすぎています。署名した申請が期限切れになります。時刻を合わせてください（NTP）。",
            DoctorCode::ClockUnknown => "バックエンドの時刻が分からないため、時計を確認できませんでした。",
            DoctorCode::OutboxOk => "送信箱に書き込めます。",
            DoctorCode::OutboxUnavailable => "送信箱に書き込めません。送信箱のディレクトリの権限と空き容量を確認してください。",
        }
    }

    pub fn message_en(self) -> &'static str {
        match self {
            DoctorCode::ConfigOk => "The configuration file was read.",
            DoctorCode::ConfigMissing => "There is no configuration file: set backend_url, token_file, terminal_id and the rest.",
            DoctorCode::ConfigInvalid => "The configuration file has an error: fix the key and line the detail names.",
            DoctorCode::PcscOk => "The PC/SC service (pcscd) answered.",
            DoctorCode::PcscUnavailable => "The PC/SC service (pcscd) does not answer: start it (systemctl start pcscd).",
            DoctorCode::NoReader => "No card reader was found: check that it is plugged in and its driver (e.g. libccid) is installed.",
            DoctorCode::ReaderOk => "The card reader is known.",
            DoctorCode::FontOk => "The Japanese font (Noto Sans CJK JP) is installed.",
            DoctorCode::FontMissing => "The Japanese font (Noto Sans CJK JP) is missing, so kanji are drawn in Chinese glyph forms: install fonts-noto-cjk.",
            DoctorCode::CaOk => "The signing CA certificates were loaded.",
            DoctorCode::CaExpired => "A configured signing CA generation has expired (its certificates cannot be used; the procedure still works).",
            DoctorCode::CaInvalid => "A configured CA certificate cannot be loaded: check the file.",
            DoctorCode::CaNotConfigured => "No signing CA certificate is configured: it is read from the card and checked against the pinned fingerprints.",
            DoctorCode::BackendNotConfigured => "No backend is configured (backend_url): bindings cannot be sent.",
            DoctorCode::BackendOk => "The backend answers over TLS and accepts this terminal.",
            DoctorCode::BackendUnreachable => "The backend cannot be reached: check the network, the URL and the CA certificate (ca_file).",
            DoctorCode::TokenRefused => "The backend refuses this terminal's token: check token_file and ask an administrator to register it.",
            DoctorCode::TokenForAnotherTerminal => "The token belongs to another terminal id: fix terminal_id or the token.",
            DoctorCode::ClockOk => "This terminal's clock agrees with the backend's.",
            DoctorCode::ClockAhead => "This terminal's clock is too far ahead of the backend's, which refuses what is signed now: set the time (NTP).",
            DoctorCode::ClockBehind => "This terminal's clock is too far behind the backend's, so signed statements arrive stale: set the time (NTP).",
            DoctorCode::ClockUnknown => "The backend did not tell its time, so the clock could not be checked.",
            DoctorCode::OutboxOk => "The outbox is writable.",
            DoctorCode::OutboxUnavailable => "The outbox cannot be written: check its directory's permissions and free space.",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: &'static str,
    pub ok: bool,
    pub code: DoctorCode,
    pub message_ja: &'static str,
    pub message_en: &'static str,
    /// What was seen (a path, a count, the skew): never a token, a name or a password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Structured facts, e.g. a reader's kind or a CA's expiry.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub facts: Value,
}

fn check(name: &'static str, code: DoctorCode, detail: Option<String>, facts: Value) -> Check {
    Check {
        check: name,
        ok: code.passes(),
        code,
        message_ja: code.message_ja(),
        message_en: code.message_en(),
        detail,
        facts,
    }
}

pub fn run(args: &DoctorArgs, explicit_config: Option<&Path>) -> i32 {
    let checks = examine(explicit_config, OffsetDateTime::now_utc());
    let ok = checks.iter().all(|c| c.ok);
    if args.json {
        println!("{}", json!({ "ok": ok, "checks": checks }));
    } else {
        for c in &checks {
            let mark = if c.ok { "OK " } else { "NG " };
            let detail = c
                .detail
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            println!(
                "{mark} {:<8} [{}] {} / {}{detail}",
                c.check,
                c.code.as_str(),
                c.message_ja,
                c.message_en
            );
        }
        println!(
            "{}",
            if ok {
                "すべて問題ありません / all checks passed"
            } else {
                "問題があります（NG の行） / some checks failed (NG)"
            }
        );
    }
    if ok {
        0
    } else {
        1
    }
}

/// Every check, in the order a technician would look.
pub fn examine(explicit_config: Option<&Path>, now: OffsetDateTime) -> Vec<Check> {
    let mut checks = Vec::new();
    let config = config_check(explicit_config, &mut checks);
    readers_check(&mut checks);
    checks.push(font_check());
    ca_check(&config, now, &mut checks);
    backend_check(&config, now, &mut checks);
    checks.push(outbox_check(&config));
    checks
}

fn config_check(explicit: Option<&Path>, checks: &mut Vec<Check>) -> Config {
    let path = explicit
        .map(Path::to_path_buf)
        .or_else(config::default_path);
    let missing = path.as_ref().is_none_or(|p| !p.exists());
    if missing {
        let detail = path.map(|p| p.display().to_string());
        checks.push(check(
            "config",
            DoctorCode::ConfigMissing,
            detail,
            Value::Null,
        ));
        return Config::default();
    }
    match config::load(explicit) {
        Ok(config) => {
            let detail = path.map(|p| p.display().to_string());
            checks.push(check("config", DoctorCode::ConfigOk, detail, Value::Null));
            config
        }
        Err(e) => {
            checks.push(check(
                "config",
                DoctorCode::ConfigInvalid,
                e.detail,
                Value::Null,
            ));
            Config::default()
        }
    }
}

fn readers_check(checks: &mut Vec<Check>) {
    let readers = match list_readers() {
        Ok(readers) => readers,
        Err(e @ TransportError::PcscUnavailable(_)) => {
            checks.push(check(
                "pcscd",
                DoctorCode::PcscUnavailable,
                Some(e.to_string()),
                Value::Null,
            ));
            return;
        }
        Err(e) => {
            checks.push(check(
                "pcscd",
                DoctorCode::PcscUnavailable,
                Some(e.to_string()),
                Value::Null,
            ));
            return;
        }
    };
    checks.push(check(
        "pcscd",
        DoctorCode::PcscOk,
        Some(format!("{} reader(s)", readers.len())),
        Value::Null,
    ));
    if readers.is_empty() {
        checks.push(check("reader", DoctorCode::NoReader, None, Value::Null));
        return;
    }
    for info in readers {
        let report = crate::readers::report(info);
        let my_number_card = report.jpki_token.as_deref() == Some("my_number_card");
        let card = match (report.card_present, report.jpki_token.as_deref()) {
            (false, _) => "no card".to_string(),
            (true, Some("my_number_card")) => "a My Number card".to_string(),
            (true, Some(other)) => format!("a card that is not a My Number card ({other})"),
            (true, None) => format!(
                "a card that could not be read ({})",
                report
                    .error
                    .as_ref()
                    .map_or("no answer", |e| e.code.as_str())
            ),
        };
        checks.push(check(
            "reader",
            DoctorCode::ReaderOk,
            Some(format!(
                "{}: {}, {card}",
                report.name,
                kind_text(report.kind)
            )),
            json!({
                "name": report.name,
                "kind": report.kind,
                "card_present": report.card_present,
                "my_number_card": my_number_card,
                "error": report.error.as_ref().map(|e| e.code.as_str()),
            }),
        ));
    }
}

fn kind_text(kind: ReaderKind) -> &'static str {
    match kind {
        ReaderKind::Contact => "contact (insert the card)",
        ReaderKind::Contactless => "contactless (place the card on it)",
        ReaderKind::Unknown => "kind not known",
    }
}

fn font_check() -> Check {
    // The same lookup the windows' text renderer makes.
    let mut fonts = fontdb::Database::new();
    fonts.load_system_fonts();
    let found = fonts.faces().find(|face| {
        face.families
            .iter()
            .any(|(family, _)| family == JAPANESE_FONT_FAMILY)
    });
    match found {
        Some(face) => {
            let source = match &face.source {
                fontdb::Source::File(path) => Some(path.display().to_string()),
                _ => None,
            };
            check("font", DoctorCode::FontOk, source, Value::Null)
        }
        None => check(
            "font",
            DoctorCode::FontMissing,
            Some(format!("{} fonts seen", fonts.len())),
            Value::Null,
        ),
    }
}

fn ca_check(config: &Config, now: OffsetDateTime, checks: &mut Vec<Check>) {
    let files: Vec<(&'static str, &PathBuf)> = config
        .jpki_ca
        .iter()
        .map(|p| ("jpki_ca", p))
        .chain(config.trust_anchors.iter().map(|p| ("trust_anchors", p)))
        .collect();
    if files.is_empty() {
        checks.push(check("ca", DoctorCode::CaNotConfigured, None, Value::Null));
        return;
    }
    for (key, path) in files {
        let loaded = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| TrustAnchor::from_pem_or_der(&bytes).map_err(|e| e.to_string()));
        let anchor = match loaded {
            Ok(anchor) => anchor,
            Err(e) => {
                checks.push(check(
                    "ca",
                    DoctorCode::CaInvalid,
                    Some(format!("{key} {}: {e}", path.display())),
                    Value::Null,
                ));
                continue;
            }
        };
        let generation = anchor.jlis_generation();
        // A jpki_ca file must be one of the pinned J-LIS roots.
        if key == "jpki_ca" && generation.is_none() {
            checks.push(check(
                "ca",
                DoctorCode::CaInvalid,
                Some(format!(
                    "jpki_ca {}: not one of the pinned J-LIS signing roots",
                    path.display()
                )),
                Value::Null,
            ));
            continue;
        }
        let not_after = mynalink_link::statement::format_time(anchor.not_after());
        let code = if anchor.not_after() < now {
            DoctorCode::CaExpired
        } else {
            DoctorCode::CaOk
        };
        checks.push(check(
            "ca",
            code,
            Some(format!(
                "{key} {}: {}, valid until {not_after}",
                path.display(),
                generation.unwrap_or("configured test root")
            )),
            json!({ "file": path, "generation": generation, "not_after": not_after }),
        ));
    }
}

fn backend_check(config: &Config, now: OffsetDateTime, checks: &mut Vec<Check>) {
    let Some(url) = config.backend_url.as_deref() else {
        checks.push(check(
            "backend",
            DoctorCode::BackendNotConfigured,
            None,
            Value::Null,
        ));
        return;
    };
    let backend = config
        .token_file
        .as_deref()
        .ok_or_else(|| "token_file is not set".to_string())
        .and_then(|path| Backend::read_token(path).map_err(|e| e.0))
        .and_then(|token: Zeroizing<String>| {
            let ca = match &config.ca_file {
                Some(path) => Some(
                    std::fs::read(path).map_err(|e| format!("ca_file {}: {e}", path.display()))?,
                ),
                None => None,
            };
            Backend::new(url, token, ca.as_deref()).map_err(|e| e.0)
        });
    let backend = match backend {
        Ok(backend) => backend,
        Err(e) => {
            checks.push(check(
                "backend",
                DoctorCode::TokenRefused,
                Some(e),
                Value::Null,
            ));
            return;
        }
    };
    let whoami = match backend.whoami() {
        Ok(whoami) => whoami,
        Err(e) => {
            checks.push(check(
                "backend",
                DoctorCode::BackendUnreachable,
                Some(e.0),
                Value::Null,
            ));
            return;
        }
    };
    match &whoami.answer {
        WhoAmIAnswer::Refused(error) => checks.push(check(
            "backend",
            DoctorCode::TokenRefused,
            Some(format!("{url}: {}", error.code)),
            Value::Null,
        )),
        WhoAmIAnswer::Known(identity) => {
            let expected = config.terminal_id.as_deref();
            let code =
                if identity.kind != "terminal" || expected.is_some_and(|id| id != identity.id) {
                    DoctorCode::TokenForAnotherTerminal
                } else {
                    DoctorCode::BackendOk
                };
            checks.push(check(
                "backend",
                code,
                Some(format!(
                    "{url}: the token is {} {:?}; terminal_id is {:?}",
                    identity.kind, identity.id, expected
                )),
                json!({ "id": identity.id, "kind": identity.kind }),
            ));
        }
    }
    checks.push(clock_check(whoami.backend_time, now));
}

/// The terminal's clock against the backend's, within what the backend accepts.
fn clock_check(backend_time: Option<OffsetDateTime>, now: OffsetDateTime) -> Check {
    let Some(backend_time) = backend_time else {
        return check("clock", DoctorCode::ClockUnknown, None, Value::Null);
    };
    let ahead = now - backend_time;
    let code = if ahead > CLOCK_AHEAD_LIMIT {
        DoctorCode::ClockAhead
    } else if -ahead > CLOCK_BEHIND_LIMIT {
        DoctorCode::ClockBehind
    } else {
        DoctorCode::ClockOk
    };
    check(
        "clock",
        code,
        Some(format!(
            "this terminal is {} s {} the backend",
            ahead.whole_seconds().abs(),
            if ahead.is_negative() {
                "behind"
            } else {
                "ahead of"
            }
        )),
        json!({ "ahead_seconds": ahead.whole_seconds() }),
    )
}

fn outbox_check(config: &Config) -> Check {
    let Some(path) = config.outbox.clone().or_else(config::default_outbox) else {
        return check(
            "outbox",
            DoctorCode::OutboxUnavailable,
            Some("no outbox path".into()),
            Value::Null,
        );
    };
    let unavailable = |e: String| {
        check(
            "outbox",
            DoctorCode::OutboxUnavailable,
            Some(e),
            Value::Null,
        )
    };
    if !path.exists() {
        // Not made yet: the directory must take it (checked with a file made and removed).
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        let probe = dir.join(".mynalink-doctor-probe");
        return match std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&probe, b""))
            .and_then(|()| std::fs::remove_file(&probe))
        {
            Ok(()) => check(
                "outbox",
                DoctorCode::OutboxOk,
                Some(format!(
                    "{}: not made yet; its directory is writable",
                    path.display()
                )),
                json!({ "path": path, "entries": 0 }),
            ),
            Err(e) => unavailable(format!("{}: {e}", dir.display())),
        };
    }
    let opened = Outbox::open(&path).and_then(|outbox| Ok((outbox.list()?, outbox.counts()?)));
    match opened {
        Ok((entries, counts)) => {
            let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let oldest = entries
                .iter()
                .map(|e| e.created_at)
                .min()
                .map(mynalink_link::statement::format_time);
            check(
                "outbox",
                DoctorCode::OutboxOk,
                Some(format!(
                    "{}: {} bytes, {} queued, {} held for an operator, oldest {}",
                    path.display(),
                    bytes,
                    counts.queued,
                    counts.held,
                    oldest.as_deref().unwrap_or("-")
                )),
                json!({
                    "path": path,
                    "bytes": bytes,
                    "queued": counts.queued,
                    "held": counts.held,
                    "oldest": oldest,
                }),
            )
        }
        Err(e) => unavailable(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_stable_name_and_both_messages() {
        let all = [
            DoctorCode::ConfigOk,
            DoctorCode::ConfigMissing,
            DoctorCode::ConfigInvalid,
            DoctorCode::PcscOk,
            DoctorCode::PcscUnavailable,
            DoctorCode::NoReader,
            DoctorCode::ReaderOk,
            DoctorCode::FontOk,
            DoctorCode::FontMissing,
            DoctorCode::CaOk,
            DoctorCode::CaExpired,
            DoctorCode::CaInvalid,
            DoctorCode::CaNotConfigured,
            DoctorCode::BackendNotConfigured,
            DoctorCode::BackendOk,
            DoctorCode::BackendUnreachable,
            DoctorCode::TokenRefused,
            DoctorCode::TokenForAnotherTerminal,
            DoctorCode::ClockOk,
            DoctorCode::ClockAhead,
            DoctorCode::ClockBehind,
            DoctorCode::ClockUnknown,
            DoctorCode::OutboxOk,
            DoctorCode::OutboxUnavailable,
        ];
        let mut names: Vec<&str> = all.iter().map(|c| c.as_str()).collect();
        for code in all {
            assert_eq!(
                serde_json::to_value(code).expect("serialises"),
                Value::String(code.as_str().into())
            );
            assert!(!code.message_ja().is_empty() && !code.message_en().is_empty());
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
    }

    #[test]
    fn the_clock_is_judged_by_what_the_backend_accepts() {
        let backend = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
        for (offset, code) in [
            (Duration::ZERO, DoctorCode::ClockOk),
            (Duration::minutes(4), DoctorCode::ClockOk),
            (Duration::minutes(6), DoctorCode::ClockAhead),
            (-Duration::hours(71), DoctorCode::ClockOk),
            (-Duration::hours(73), DoctorCode::ClockBehind),
        ] {
            let c = clock_check(Some(backend), backend + offset);
            assert_eq!(c.code, code, "{offset}");
            assert_eq!(c.facts["ahead_seconds"], offset.whole_seconds());
        }
        assert_eq!(clock_check(None, backend).code, DoctorCode::ClockUnknown);
    }
}
