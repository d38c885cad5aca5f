//! Getting signed bindings to the backend from the command line: settings, the outbox, and
//! `mynalink outbox list|flush|retry`.

use std::path::PathBuf;

use mynalink_link::backend::Backend;
use mynalink_link::outbox::{EntryId, EntryOptions, EntrySummary, Outbox, OutboxError};
use mynalink_link::seal::RecipientKey;
use mynalink_link::statement::format_time;
use mynalink_link::upload::{self, Delivery};
use mynalink_link::{ErrorCode, FlowError, SignedStatement};
use serde_json::json;

use crate::cli::{BackendArgs, OutboxAction, OutboxArgs};
use crate::config::{default_outbox, Config};
use crate::report::ReportError;

/// Everything needed to deliver a binding, checked before any card work so that no
/// signature is made that could not be kept.
pub struct Uploader {
    pub backend: Backend,
    pub outbox: Outbox,
    pub recipient: RecipientKey,
}

fn invalid(detail: impl Into<String>) -> FlowError {
    FlowError::new(ErrorCode::ConfigurationInvalid).with_detail(detail)
}

fn outbox_path(args: &BackendArgs, config: &Config) -> Result<PathBuf, FlowError> {
    args.outbox
        .clone()
        .or_else(|| config.outbox.clone())
        .or_else(default_outbox)
        .ok_or_else(|| invalid("no outbox location: set `outbox` in the config file"))
}

pub fn open_outbox(args: &BackendArgs, config: &Config) -> Result<Outbox, FlowError> {
    let path = outbox_path(args, config)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            FlowError::new(ErrorCode::OutboxUnavailable)
                .with_detail(format!("{}: {e}", dir.display()))
        })?;
    }
    Outbox::open(&path).map_err(outbox_error)
}

/// `None` when no backend is configured (offline).
pub fn prepare(args: &BackendArgs, config: &Config) -> Result<Option<Uploader>, FlowError> {
    let Some(url) = args.backend.clone().or_else(|| config.backend_url.clone()) else {
        return Ok(None);
    };
    let token_file = args
        .token_file
        .clone()
        .or_else(|| config.token_file.clone())
        .ok_or_else(|| invalid("token_file: a backend needs this terminal's token file"))?;
    let token = Backend::read_token(&token_file).map_err(|e| invalid(e.0))?;
    let ca = match args.ca_file.clone().or_else(|| config.ca_file.clone()) {
        Some(path) => Some(
            std::fs::read(&path)
                .map_err(|e| invalid(format!("ca_file {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let backend = Backend::new(&url, token, ca.as_deref()).map_err(|e| invalid(e.0))?;
    let key_path = args
        .backend_key
        .clone()
        .or_else(|| config.backend_key.clone())
        .ok_or_else(|| {
            invalid("backend_key: the outbox keeps certificates sealed to the backend's public key")
        })?;
    let key_bytes = std::fs::read(&key_path)
        .map_err(|e| invalid(format!("backend_key {}: {e}", key_path.display())))?;
    let recipient = mynalink_link::seal::parse_public_key(&key_bytes)
        .map_err(|e| invalid(format!("backend_key {}: {e}", key_path.display())))?;
    let outbox = open_outbox(args, config)?;
    Ok(Some(Uploader {
        backend,
        outbox,
        recipient,
    }))
}

/// Stores this run's binding in the outbox and delivers it, then delivers what earlier runs
/// left waiting (e.g. after a crash).
pub fn deliver(uploader: &mut Uploader, signed: &SignedStatement) -> Result<Delivery, FlowError> {
    deliver_with(uploader, signed, &EntryOptions::default())
}

/// [`deliver`] with what the upload needs besides the statement (staff confirmation of the
/// holder, the CA certificate), kept with the outbox entry for every later attempt.
///
/// This run's binding is written first: nothing about older entries (damaged, held, or a
/// backend that refuses them) can stand between a signature and its entry. The older ones
/// go out afterwards, only when the backend answered this run, and their problems do not
/// change this run's outcome.
pub fn deliver_with(
    uploader: &mut Uploader,
    signed: &SignedStatement,
    options: &EntryOptions,
) -> Result<Delivery, FlowError> {
    let (_, delivery) = upload::submit(
        &mut uploader.outbox,
        &uploader.backend,
        signed,
        &uploader.recipient,
        options,
    )
    .map_err(outbox_error)?;
    let answered = !matches!(
        delivery,
        Delivery::Queued { .. } | Delivery::CredentialsRefused { .. }
    );
    if answered {
        let now = time::OffsetDateTime::now_utc();
        if let Err(e) = upload::flush(&mut uploader.outbox, &uploader.backend, now) {
            eprintln!("mynalink: earlier outbox entries stay queued: {e}");
        }
    }
    Ok(delivery)
}

fn outbox_error(e: OutboxError) -> FlowError {
    e.to_flow_error()
}

/// Makes sure the outbox can take the binding the card is about to sign (see
/// [`Outbox::ensure_room`]); a full disk stops the run before the card signs.
pub fn ensure_room(uploader: &Uploader) -> Result<(), FlowError> {
    uploader.outbox.ensure_room().map_err(outbox_error)
}

/// One delivery as `outbox flush --json` prints it.
fn delivery_row(id: EntryId, delivery: &Delivery) -> serde_json::Value {
    let mut row = json!({ "id": id.0, "outcome": delivery.outcome() });
    match delivery {
        Delivery::Linked {
            binding_id,
            repeated,
        } => {
            row["binding_id"] = json!(binding_id);
            row["repeated"] = json!(repeated);
        }
        Delivery::AlreadyLinked { via } => row["linked_via"] = json!(via),
        Delivery::Rejected(e) => {
            // The client's own words where it has them (a revoked certificate).
            let mut e = e.clone();
            (e.message_ja, e.message_en) = e.explanation();
            row["error"] = json!(e);
        }
        Delivery::Queued {
            reason,
            next_attempt_at,
        } => {
            row["queued_reason"] = json!(reason);
            row["next_attempt_at"] = json!(format_time(*next_attempt_at));
        }
        Delivery::CredentialsRefused {
            error,
            next_attempt_at,
        } => {
            row["error"] = json!(error);
            row["queued_reason"] = json!(error.code);
            row["next_attempt_at"] = json!(format_time(*next_attempt_at));
        }
        Delivery::Held { reason, error } => {
            row["needs_operator"] = json!(true);
            row["held_reason"] = json!(reason.as_str());
            if let Some(error) = error {
                row["error"] = json!(error);
            }
        }
    }
    row
}

/// One entry as `outbox list --json` prints it: no statement, signature or certificate.
fn entry_row(e: &EntrySummary) -> serde_json::Value {
    json!({
        "id": e.id.0,
        "license_number": e.license_number,
        "statement_sha256": e.statement_sha256,
        "created_at": format_time(e.created_at),
        "attempts": e.attempts,
        "next_attempt_at": format_time(e.next_attempt_at),
        "last_error": e.last_error,
        "staff_confirmed_identity": e.staff_confirmed_identity,
        "needs_operator": e.held.is_some(),
        "held_reason": e.held.map(|h| h.reason.as_str()),
        "held_at": e.held.map(|h| format_time(h.since)),
    })
}

/// One entry as `outbox list` prints it for people.
fn entry_line(e: &EntrySummary) -> String {
    let state = match &e.held {
        Some(held) => {
            let (ja, en) = held.reason.text();
            format!("要対応 / needs operator [{}] {ja} / {en}", held.reason)
        }
        None => format!("送信待ち / queued, attempts {}", e.attempts),
    };
    format!(
        "#{}\t{}\t{state}\t{}",
        e.id,
        e.license_number,
        e.last_error.as_deref().unwrap_or("")
    )
}

/// `mynalink outbox list|flush`.
pub fn run(args: &OutboxArgs, config_path: Option<&std::path::Path>) -> i32 {
    match execute(args, config_path) {
        Ok(code) => code,
        Err(e) => {
            let code = if e.code == ErrorCode::ConfigurationInvalid {
                2
            } else {
                1
            };
            let error = ReportError::from(e);
            if args.json {
                println!("{}", json!({ "error": error }));
            } else {
                eprintln!(
                    "エラー / error [{}]: {} / {}",
                    error.code, error.message_ja, error.message_en
                );
                if let Some(detail) = &error.detail {
                    eprintln!("  ({detail})");
                }
            }
            code
        }
    }
}

fn execute(args: &OutboxArgs, config_path: Option<&std::path::Path>) -> Result<i32, FlowError> {
    let config = crate::config::load(config_path)?;
    match args.action {
        OutboxAction::List => {
            let outbox = open_outbox(&args.backend, &config)?;
            let entries = outbox.list().map_err(outbox_error)?;
            let held = entries.iter().filter(|e| e.held.is_some()).count();
            let queued = entries.len() - held;
            if args.json {
                let rows: Vec<_> = entries.iter().map(entry_row).collect();
                println!(
                    "{}",
                    json!({ "entries": rows, "queued": queued, "held": held })
                );
            } else if entries.is_empty() {
                println!("送信待ちはありません / the outbox is empty");
            } else {
                for e in &entries {
                    println!("{}", entry_line(e));
                }
                println!("送信待ち / queued: {queued}, 要対応 / needs operator: {held}");
            }
            Ok(0)
        }
        OutboxAction::Flush { due_only } => {
            let mut uploader = prepare(&args.backend, &config)?
                .ok_or_else(|| invalid("no backend: give --backend URL or set backend_url"))?;
            let now = time::OffsetDateTime::now_utc();
            let results = if due_only {
                upload::flush(&mut uploader.outbox, &uploader.backend, now)
            } else {
                upload::flush_all(&mut uploader.outbox, &uploader.backend)
            }
            .map_err(outbox_error)?;
            let counts = uploader.outbox.counts().map_err(outbox_error)?;
            let remaining = counts.queued + counts.held;
            let rows: Vec<_> = results.iter().map(|(id, d)| delivery_row(*id, d)).collect();
            // Every entry with its result: those sent, and those left alone (held for an
            // operator, or not due with --due-only).
            let mut entries = rows.clone();
            for e in uploader.outbox.list().map_err(outbox_error)? {
                if results.iter().any(|(id, _)| *id == e.id) {
                    continue;
                }
                entries.push(match &e.held {
                    Some(held) => json!({
                        "id": e.id.0,
                        "outcome": "held",
                        "needs_operator": true,
                        "held_reason": held.reason.as_str(),
                    }),
                    None => json!({
                        "id": e.id.0,
                        "outcome": "not_due",
                        "next_attempt_at": format_time(e.next_attempt_at),
                    }),
                });
            }
            if args.json {
                println!(
                    "{}",
                    json!({
                        "delivered": rows,
                        "entries": entries,
                        "remaining": remaining,
                        "queued": counts.queued,
                        "held": counts.held,
                    })
                );
            } else {
                for row in &rows {
                    println!("{row}");
                }
                println!(
                    "残り / remaining: {remaining} (送信待ち / queued {}, 要対応 / needs operator {})",
                    counts.queued, counts.held
                );
            }
            // 0 only when nothing is left undelivered, held entries included.
            Ok(if remaining == 0 { 0 } else { 1 })
        }
        OutboxAction::Retry { id } => {
            let mut outbox = open_outbox(&args.backend, &config)?;
            let id = EntryId(id);
            let refused = |ja: String, en: String, reason: Option<&str>| {
                if args.json {
                    println!(
                        "{}",
                        json!({
                            "id": id.0,
                            "released": false,
                            "held_reason": reason,
                            "message_ja": ja,
                            "message_en": en,
                        })
                    );
                } else {
                    eprintln!("{ja} / {en}");
                }
                Ok(1)
            };
            match outbox.release(id, time::OffsetDateTime::now_utc()) {
                Ok(reason) => {
                    if args.json {
                        println!(
                            "{}",
                            json!({ "id": id.0, "released": true, "held_reason": reason.as_str() })
                        );
                    } else {
                        println!(
                            "#{id} を送信待ちに戻しました（{reason}）。mynalink outbox flush で送信します。 / #{id} is queued again ({reason}); `mynalink outbox flush` sends it."
                        );
                    }
                    Ok(0)
                }
                Err(OutboxError::NotFound(_)) => refused(
                    format!("#{id} という記録はありません。"),
                    format!("There is no entry #{id}."),
                    None,
                ),
                Err(OutboxError::NotHeld(_)) => refused(
                    format!("#{id} は要対応ではありません（送信待ちです）。"),
                    format!("#{id} is not held; it is queued already."),
                    None,
                ),
                Err(OutboxError::StillHeld { reason, .. }) => {
                    let (ja, en) = reason.text();
                    refused(
                        format!("#{id} は戻せません。{ja}"),
                        format!("#{id} cannot be put back. {en}"),
                        Some(reason.as_str()),
                    )
                }
                Err(e) => Err(outbox_error(e)),
            }
        }
    }
}
