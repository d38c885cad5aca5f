//! `mynalink readers`: what is attached, what is inserted, and how many tries are left —
//! without asking for any password.

use mynalink_card::transport::{list_readers, PcscTransport};
use mynalink_card::{CardError, JpkiCard, NotJpkiReason, PasswordStatus};
use mynalink_link::FlowError;
use serde::Serialize;

use crate::cli::ReadersArgs;

#[derive(Debug, Serialize)]
struct ReaderReport {
    name: String,
    card_present: bool,
    atr: Option<String>,
    /// `my_number_card`, `smartphone`, `juki_card`, `unknown:<label>`, `not_jpki`, or null.
    jpki_token: Option<String>,
    pin_tries_left: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pin_status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<FlowError>,
}

pub fn run(args: &ReadersArgs) -> i32 {
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
    let reports: Vec<ReaderReport> = readers
        .into_iter()
        .map(|r| {
            let mut report = ReaderReport {
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
        })
        .collect();
    if args.json {
        println!("{}", serde_json::json!({ "readers": reports }));
    } else if reports.is_empty() {
        println!("カードリーダーがありません / no card readers");
    } else {
        for r in &reports {
            println!(
                "{}\tcard: {}\ttoken: {}\ttries: {}",
                r.name,
                if r.card_present { "yes" } else { "no" },
                r.jpki_token.as_deref().unwrap_or("-"),
                r.pin_tries_left.map_or("-".into(), |n| n.to_string())
            );
        }
    }
    0
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
