//! `mynalink readers`: what is attached, what is inserted, and how many tries are left —
//! without asking for any password. With `--watch`, the readers and cards as they change.

use std::io::Write;

use mynalink_card::events::{CardEvent, Watcher};
use mynalink_card::transport::{list_readers, PcscTransport, ReaderInfo};
use mynalink_card::{
    CardError, JpkiCard, NotJpkiReason, PasswordStatus, ReaderKind, TransportError,
};
use mynalink_link::FlowError;
use serde::Serialize;
use serde_json::json;

use crate::cli::ReadersArgs;

#[derive(Debug, Serialize)]
pub struct ReaderReport {
    pub name: String,
    /// `contact`, `contactless` or `unknown` (from the name, or from the ATR of the card in it).
    pub kind: ReaderKind,
    pub card_present: bool,
    pub atr: Option<String>,
    /// `my_number_card`, `smartphone`, `juki_card`, `unknown:<label>`, `not_jpki`, or null.
    pub jpki_token: Option<String>,
    pub pin_tries_left: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin_status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<FlowError>,
}

pub fn run(args: &ReadersArgs) -> i32 {
    if args.watch {
        return watch(args.json);
    }
    let readers = match list_readers() {
        Ok(readers) => readers,
        Err(e) => {
            let error = FlowError::from(e);
            if args.json {
                println!("{}", serde_json::json!({ "readers": [], "error": error }));
            } else {
                eprintln!(
                    "エラー / error [{}]: {} / {}",
                    error.code, error.message_ja, error.message_en
                );
            }
            return 1;
        }
    };
    let reports: Vec<ReaderReport> = readers.into_iter().map(report).collect();
    if args.json {
        println!("{}", serde_json::json!({ "readers": reports }));
    } else if reports.is_empty() {
        println!("カードリーダーがありません / no card readers");
    } else {
        for r in &reports {
            println!(
                "{}\t{}\tcard: {}\ttoken: {}\ttries: {}",
                r.name,
                r.kind.as_str(),
                if r.card_present { "yes" } else { "no" },
                r.jpki_token.as_deref().unwrap_or("-"),
                r.pin_tries_left.map_or("-".into(), |n| n.to_string())
            );
        }
    }
    0
}

/// What is known of one reader, asking its card (if any) what it is — never for a password.
pub fn report(r: ReaderInfo) -> ReaderReport {
    let mut report = ReaderReport {
        kind: ReaderKind::of(&r.name, r.atr.as_deref()),
        name: r.name.clone(),
        card_present: r.card_present,
        atr: r.atr.as_ref().map(hex::encode),
        jpki_token: None,
        pin_tries_left: None,
        pin_status: None,
        error: None,
    };
    if r.card_present {
        probe(&r.name, &mut report);
    }
    report
}

fn probe(reader: &str, report: &mut ReaderReport) {
    let transport = match PcscTransport::connect(reader) {
        Ok(t) => t,
        Err(e) => {
            report.error = Some(e.into());
            return;
        }
    };
    let mut card = JpkiCard::new(transport);
    match card.open_application() {
        Ok(()) => report.jpki_token = Some("my_number_card".into()),
        Err(CardError::NotJpkiCard(NotJpkiReason::ApplicationNotFound)) => {
            report.jpki_token = Some("not_jpki".into());
        }
        Err(CardError::NotJpkiCard(NotJpkiReason::Token(kind))) => {
            report.jpki_token = Some(match kind {
                mynalink_card::TokenKind::AndroidPhone | mynalink_card::TokenKind::IPhone => {
                    "smartphone".into()
                }
                mynalink_card::TokenKind::JukiCard => "juki_card".into(),
                mynalink_card::TokenKind::Unknown(label) => format!("unknown:{label}"),
                mynalink_card::TokenKind::MyNumberCard => "my_number_card".into(),
            });
        }
        Err(e) => report.error = Some(e.into()),
    }
    if report.jpki_token.as_deref() == Some("my_number_card") {
        match card.password_status() {
            Ok(PasswordStatus::Tries(n)) => report.pin_tries_left = Some(n),
            Ok(PasswordStatus::Blocked) => {
                report.pin_tries_left = Some(0);
                report.pin_status = Some("blocked");
            }
            Ok(PasswordStatus::NoSigningCertificate) => {
                report.pin_status = Some("no_signing_certificate");
            }
            Ok(PasswordStatus::Unknown) => report.pin_status = Some("unknown"),
            Err(e) => report.error = Some(e.into()),
        }
    }
    let _ = card.end_session();
}

/// Prints the watcher's events until the process is interrupted. The watcher starts with the
/// current state (service, readers, cards), so nothing is listed separately: a change between
/// a listing and the start of the watch could otherwise be lost.
fn watch(json: bool) -> i32 {
    let (watcher, events) = match Watcher::with_channel() {
        Ok(started) => started,
        Err(e) => {
            eprintln!("mynalink readers --watch: {e}");
            return 1;
        }
    };
    let mut out = std::io::stdout().lock();
    for event in events {
        let line = if json {
            event_json(&event)
        } else {
            event_text(&event)
        };
        // Whoever reads the lines reacts to each one: flush every line. A closed pipe means
        // nobody reads any more.
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            break;
        }
    }
    watcher.stop();
    0
}

fn unavailable(detail: &str) -> FlowError {
    FlowError::from(TransportError::PcscUnavailable(detail.to_string()))
}

/// One `--watch --json` line; `event` first so that the lines read well.
#[derive(Debug, Serialize)]
struct EventLine<'a> {
    event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reader: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    atr: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    error: Option<FlowError>,
}

impl<'a> EventLine<'a> {
    fn reader(event: &'static str, reader: &'a str) -> EventLine<'a> {
        EventLine {
            event,
            reader: Some(reader),
            atr: None,
            error: None,
        }
    }
}

fn event_json(event: &CardEvent) -> String {
    let line = match event {
        CardEvent::PcscAvailable => EventLine {
            event: "pcsc_available",
            reader: None,
            atr: None,
            error: None,
        },
        CardEvent::PcscUnavailable { detail } => EventLine {
            event: "pcsc_unavailable",
            reader: None,
            atr: None,
            error: Some(unavailable(detail)),
        },
        CardEvent::ReaderAdded { reader } => EventLine::reader("reader_added", reader),
        CardEvent::ReaderRemoved { reader } => EventLine::reader("reader_removed", reader),
        CardEvent::CardInserted { reader, atr } => EventLine {
            atr: Some(hex::encode(atr)),
            ..EventLine::reader("card_inserted", reader)
        },
        CardEvent::CardRemoved { reader } => EventLine::reader("card_removed", reader),
    };
    serde_json::to_string(&line).unwrap_or_else(|e| {
        // Not expected (plain strings only); still one parseable line.
        json!({ "event": line.event, "error": e.to_string() }).to_string()
    })
}

fn event_text(event: &CardEvent) -> String {
    match event {
        CardEvent::PcscAvailable => "PC/SC サービス利用可能 / PC/SC service available".into(),
        CardEvent::PcscUnavailable { detail } => {
            let error = unavailable(detail);
            format!(
                "エラー / error [{}]: {} / {} ({detail})",
                error.code, error.message_ja, error.message_en
            )
        }
        CardEvent::ReaderAdded { reader } => format!("リーダー接続 / reader added\t{reader}"),
        CardEvent::ReaderRemoved { reader } => {
            format!("リーダー取り外し / reader removed\t{reader}")
        }
        CardEvent::CardInserted { reader, atr } => format!(
            "カード挿入 / card inserted\t{reader}\tATR {}",
            if atr.is_empty() {
                "-".to_string()
            } else {
                hex::encode(atr)
            }
        ),
        CardEvent::CardRemoved { reader } => {
            format!("カード取り出し / card removed\t{reader}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_lines() {
        let inserted = CardEvent::CardInserted {
            reader: "Virtual PCD 00 01".into(),
            atr: vec![0x3b, 0xe0, 0x00, 0xff, 0x81, 0x31, 0xfe, 0x45, 0x14],
        };
        assert_eq!(
            event_json(&inserted),
            r#"{"event":"card_inserted","reader":"Virtual PCD 00 01","atr":"3be000ff8131fe4514"}"#
        );
        let gone: serde_json::Value =
            serde_json::from_str(&event_json(&CardEvent::PcscUnavailable {
                detail: "The Smart card resource manager is not running.".into(),
            }))
            .unwrap();
        assert_eq!(gone["event"], "pcsc_unavailable");
        assert_eq!(gone["code"], "pcsc_unavailable");
        assert!(gone["message_ja"].is_string());
        assert!(gone["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not running")));
        assert_eq!(
            event_text(&inserted),
            "カード挿入 / card inserted\tVirtual PCD 00 01\tATR 3be000ff8131fe4514"
        );
    }
}
