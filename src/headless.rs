//! `mynalink headless`: the first stage straight through, for integrators and CI.

use mynalink_card::transport::CertificateBytes;
use mynalink_card::{PasswordStatus, SigningPassword, Transport};
use mynalink_link::license::{LicenseNumber, LicenseWarning};
use mynalink_link::{ErrorCode, FirstStage, FlowError, FlowInputs, Warning};

use crate::cli::HeadlessArgs;
use crate::password_input;
use crate::report::{CardProfileReport, CertificateReport, Report, ReportError, WarningReport};
use crate::source;
use mynalink_link::upload::Delivery;

/// The simulated card's signing TEST root. It is generated deterministically by the
/// simulated card; this copy (checked equal by a test) spares replays the key generation.
pub const SIMULATED_CARD_TEST_ROOT: &[u8] = include_bytes!("../assets/sim-sign-test-root.der");
/// The same for the simulated card with a P-384 key (`--sim-key ec-p384`, provisional).
pub const SIMULATED_CARD_TEST_ROOT_EC_P384: &[u8] =
    include_bytes!("../assets/sim-sign-test-root-ec-p384.der");

pub fn run(args: &HeadlessArgs, config_path: Option<&std::path::Path>) -> i32 {
    let report = execute(args, config_path);
    tracing::info!(
        target: "mynalink::run",
        outcome = report.outcome,
        code = report.error.as_ref().map(|e| e.code.as_str()),
        apdus = report.apdu_count,
        "headless run ended"
    );
    report.print(args.json);
    report.exit_code()
}

fn execute(args: &HeadlessArgs, config_path: Option<&std::path::Path>) -> Report {
    let (license, license_warning) = match LicenseNumber::parse(&args.license) {
        Ok(parsed) => parsed,
        Err(e) => return Report::failed(Some(args.license.clone()), e.into()),
    };
    let license_number = Some(license.as_str().to_string());
    let config = match crate::config::load(config_path) {
        Ok(config) => config,
        Err(e) => return Report::failed(license_number, e),
    };
    let Some(choice) = source::Choice::resolve(&args.source, &config) else {
        return Report::failed(
            license_number,
            FlowError::new(ErrorCode::ConfigurationInvalid).with_detail(
                "no card source: give --reader [NAME], --sim or --replay FILE, or set `reader` in the config file",
            ),
        );
    };
    let replay = matches!(choice, source::Choice::Replay(_));
    if replay && args.delivery.backend.is_some() {
        return Report::failed(
            license_number,
            FlowError::new(ErrorCode::ConfigurationInvalid).with_detail(
                "--replay never uploads: a recorded signature is not a new binding; drop --backend",
            ),
        );
    }
    // The backend settings and the outbox, room for this run's entry included, are checked
    // before the card is touched: no signature is made that could not be kept. A replay is
    // checked offline (the config file's backend is not used).
    let mut uploader = if args.offline || replay {
        None
    } else {
        match crate::delivery::prepare(&args.delivery, &config) {
            Ok(uploader) => uploader,
            Err(e) => return Report::failed(license_number, e),
        }
    };
    if let Some(uploader) = &uploader {
        if let Err(e) = crate::delivery::ensure_room(uploader) {
            return Report::failed(license_number, e);
        }
    }
    let certificate = if args.record_certificate {
        CertificateBytes::Keep
    } else {
        CertificateBytes::Withhold
    };
    let opened = match source::open(
        &choice,
        &args.sim,
        args.record.as_ref().map(|_| certificate),
    ) {
        Ok(opened) => opened,
        Err(e) => return Report::failed(license_number, e),
    };
    let trust = match source::trust_store(
        args.jpki_ca.iter().chain(&config.jpki_ca),
        args.trust_anchors.iter().chain(&config.trust_anchors),
        opened.trust_simulated_root,
    ) {
        Ok(trust) => trust,
        Err(e) => return Report::failed(license_number, e),
    };
    let inputs = match opened.recorded_inputs.clone() {
        // A replay keeps the recorded time, nonce and terminal; the license number is the
        // one given now, so a different one shows up as a trace mismatch at the signature.
        Some(recorded) => FlowInputs {
            license_number: license.as_str().to_string(),
            ..recorded
        },
        None => FlowInputs::fresh(
            license.as_str(),
            args.terminal_id
                .as_deref()
                .or(config.terminal_id.as_deref())
                .unwrap_or("local-terminal"),
            args.operator_id
                .as_deref()
                .or(config.operator_id.as_deref()),
            None,
        ),
    };
    let mut flow = match FirstStage::new(opened.transport, inputs, trust) {
        Ok(flow) => flow,
        Err(e) => return Report::failed(license_number, e),
    };
    if license_warning == Some(LicenseWarning::CheckDigitRemainderZero) {
        flow.add_warning(Warning::LicenseCheckDigitDisputed);
    }
    let result = run_steps(&mut flow, args);
    flow.end();
    let delivery = match (&result, uploader.as_mut(), flow.signed()) {
        (Ok(()), Some(uploader), Some(signed)) => Some(crate::delivery::deliver(uploader, signed)),
        _ => None,
    };

    let (outcome, result, binding_id, linked_via, queued_reason) = match delivery {
        None => (
            if result.is_ok() { "verified" } else { "failed" },
            result.map_err(ReportError::from),
            None,
            None,
            None,
        ),
        Some(Err(e)) => ("failed", Err(e.into()), None, None, None),
        Some(Ok(d)) => {
            let outcome = d.outcome();
            match d {
                Delivery::Linked { binding_id, .. } => {
                    (outcome, Ok(()), Some(binding_id), None, None)
                }
                Delivery::AlreadyLinked { via } => (outcome, Ok(()), None, via, None),
                Delivery::Rejected(e) => (outcome, Err(e.into()), None, None, None),
                Delivery::Queued { reason, .. } => (outcome, Ok(()), None, None, Some(reason)),
                // The terminal's token was refused: a failed run, but the binding stays in
                // the outbox and goes out once the token is fixed.
                Delivery::CredentialsRefused { error, .. } => {
                    let kept = format!("{}: kept in the outbox", error.code);
                    (outcome, Err(error.into()), None, None, Some(kept))
                }
                // Not delivered and not to be retried on its own: a failed run, but the
                // binding is kept in the outbox for an operator.
                Delivery::Held { reason, error } => {
                    let kept = format!("{reason}: held in the outbox for an operator");
                    let error = match error {
                        Some(error) => error.into(),
                        None => {
                            let (ja, en) = reason.text();
                            ReportError {
                                code: reason.as_str().to_string(),
                                message_ja: ja.to_string(),
                                message_en: en.to_string(),
                                tries_left: None,
                                detail: None,
                                from_backend: false,
                            }
                        }
                    };
                    ("failed", Err(error), None, None, Some(kept))
                }
            }
        }
    };
    let mut report = Report {
        outcome,
        license_number,
        reader: Some(flow.transport().reader_name().to_string()),
        reader_note: opened.reader_note.clone(),
        certificate: flow.certificate().map(|c| {
            CertificateReport::new(c, flow.trusted_chain().map(|t| t.anchor_label.clone()))
        }),
        signature_algorithm: flow.signature_algorithm().map(|a| a.name()),
        card_profile: flow.card_profile().map(CardProfileReport::from),
        pin_tries_before: flow.tries_before(),
        apdu_count: flow.apdu_count(),
        timings_ms: flow.timings().clone(),
        statement_sha256: flow.signed().map(|s| hex::encode(s.statement.sha256())),
        warnings: flow.warnings().iter().map(WarningReport::from).collect(),
        trace: None,
        binding_id,
        linked_via,
        queued_reason,
        error: result.err(),
    };
    if let (Some(path), Some(handle)) = (&args.record, &opened.trace) {
        let mut trace = handle.snapshot();
        trace.inputs = flow.inputs().to_trace_inputs();
        // Owner-only whatever the umask: it holds the card's answers.
        match mynalink_link::private_file::write(path, trace.to_json().as_bytes()) {
            Ok(()) => report.trace = Some(path.display().to_string()),
            Err(e) => eprintln!("mynalink: cannot write the trace {}: {e}", path.display()),
        }
    }
    report
}

fn run_steps<T: Transport>(flow: &mut FirstStage<T>, args: &HeadlessArgs) -> Result<(), FlowError> {
    let status = flow.check_card()?;
    let password = read_password(args, status)?;
    let confirmed = args.confirm_last_try || confirm_interactively(args, status);
    flow.verify_password(&password, confirmed)?;
    drop(password);
    flow.read_certificate()?;
    flow.sign()?;
    Ok(())
}

fn read_password(
    args: &HeadlessArgs,
    status: PasswordStatus,
) -> Result<SigningPassword, FlowError> {
    let typed = if args.pin_stdin {
        password_input::read_stdin_line()
    } else {
        let tries = match status {
            PasswordStatus::Tries(n) => format!("残り{n}回 / {n} tries left"),
            _ => "残り回数不明 / tries left unknown".into(),
        };
        password_input::prompt(&format!("署名用パスワード / signing password ({tries}): "))
    }
    .map_err(|e| FlowError::new(ErrorCode::InputUnavailable).with_detail(e))?;
    Ok(SigningPassword::parse(&typed)?)
}

fn confirm_interactively(args: &HeadlessArgs, status: PasswordStatus) -> bool {
    let last = matches!(status, PasswordStatus::Tries(1) | PasswordStatus::Unknown);
    last && !args.pin_stdin
        && password_input::confirm(
            "残り1回です。間違えるとロックされます。送信しますか？ / One try left; a wrong password locks it. Send?",
        )
}
