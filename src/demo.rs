//! `mynalink demo --headless`: the whole first stage on the built-in simulated card and an
//! embedded reference backend, told step by step.

use mynalink_card::{PasswordStatus, SigningPassword, Transport};
use mynalink_link::backend::Backend;
use mynalink_link::license::LicenseNumber;
use mynalink_link::outbox::Outbox;
use mynalink_link::statement::format_time;
use mynalink_link::trust::TrustStore;
use mynalink_link::upload::Delivery;
use mynalink_link::{ErrorCode, FirstStage, FlowError, FlowInputs};
use mynalink_simcard::{SimOptions, SimTransport};

use crate::cli::DemoArgs;
use crate::delivery::Uploader;
use crate::headless::SIMULATED_CARD_TEST_ROOT;
use mynalink_server::embedded::{EmbeddedBackend, Setup};

const DEMO_TERMINAL: &str = "demo-terminal";

/// The demo record: the simulated card's fictional holder, holding only a マイナ免許証.
const DEMO_RECORDS: &str = "license_number,holding,name,birth_date,status\n\
729913281070,myna_only,試験　花子,1990-01-02,valid\n";

/// The demo license record (the sample number published with the check-digit rule).
pub const DEMO_LICENSE: &str = "729913281070";
/// The simulated card's signing password.
pub const DEMO_PASSWORD: &str = "TEST1234";

pub fn run(args: &DemoArgs, config_path: Option<&std::path::Path>) -> i32 {
    if !args.headless {
        if crate::gui::has_display() {
            return crate::gui::run(crate::gui::Mode::Staff, true, config_path);
        }
        println!("(画面がないため端末で実行します / no display: running in the terminal)");
    }
    match demo() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!(
                "エラー / error [{}]: {} / {}",
                e.code, e.message_ja, e.message_en
            );
            if let Some(detail) = &e.detail {
                eprintln!("  ({detail})");
            }
            1
        }
    }
}

fn step(n: u8, ja: &str, en: &str) {
    println!("\n[{n}] {ja} / {en}");
}

fn demo() -> Result<(), FlowError> {
    println!("mynalink デモ：模擬カード（テスト用、本物ではありません）で第1段階を実行します。");
    println!(
        "mynalink demo: the first stage on the simulated card (TEST identity, not a real card)."
    );

    let backend = EmbeddedBackend::start(&Setup {
        dir: EmbeddedBackend::temp_dir("mynalink-demo"),
        trust_anchors: &[SIMULATED_CARD_TEST_ROOT],
        records_csv: DEMO_RECORDS,
        terminal_id: DEMO_TERMINAL,
        port: 0,
    })
    .map_err(|e| {
        FlowError::new(ErrorCode::ConfigurationInvalid)
            .with_detail(format!("embedded backend: {e}"))
    })?;
    println!(
        "組み込みの参照バックエンド / embedded reference backend: {}",
        backend.url
    );
    let mut uploader = demo_uploader(&backend)?;
    crate::delivery::ensure_room(&uploader)?;

    step(1, "受付：免許証番号の確認", "Reception: license number");
    let (license, _) = LicenseNumber::parse(DEMO_LICENSE)?;
    println!(
        "    {} — 公安委員会 {} / commission {} ({}); チェックディジット OK / check digit OK",
        license,
        license.commission_name_ja(),
        license.commission_code(),
        license.commission_name_en()
    );
    match uploader.backend.license_status(license.as_str()) {
        Ok(status) => {
            let services: Vec<String> = status
                .services
                .iter()
                .filter(|s| s.available)
                .map(|s| s.number.to_string())
                .collect();
            println!(
                "    保有状況 / holding: {}; 連携済み / linked: {}; 第1段階が必要 / first stage needed: {}; 利用できるサービス / services: {}",
                status.holding.map_or_else(|| "-".to_string(), |h| format!("{h:?}")),
                status.linked,
                status.first_stage_needed,
                services.join(", ")
            );
        }
        Err(e) => println!("    バックエンドに問い合わせできません / backend not reachable: {e}"),
    }

    step(
        2,
        "カード：模擬カードを置きました",
        "Card: the simulated card is placed",
    );
    let transport = SimTransport::new(SimOptions::default());
    println!("    リーダー / reader: {}", transport.reader_name());
    let mut trust = TrustStore::new();
    trust.add_trust_anchor(SIMULATED_CARD_TEST_ROOT)?;
    println!("    模擬カードのTEST用ルートを今回だけ信頼します / trusting the simulated card's TEST root for this run");
    let inputs = FlowInputs::fresh(license.as_str(), DEMO_TERMINAL, Some("demo-operator"), None);
    let mut flow = FirstStage::new(transport, inputs, trust)?;
    let result = run_flow(&mut flow);
    flow.end();
    result?;

    step(
        6,
        "送信：送信箱に保存してから送信",
        "Upload: kept in the outbox, then sent",
    );
    let signed = flow
        .signed()
        .ok_or_else(|| FlowError::new(ErrorCode::CardError).with_detail("not signed"))?;
    let delivery = crate::delivery::deliver(&mut uploader, signed)?;
    match &delivery {
        Delivery::Linked { binding_id, .. } => println!("    連携しました / linked: {binding_id}"),
        Delivery::Rejected(e) => {
            let (ja, en) = e.explanation();
            println!("    [{}] {ja} / {en}", e.code)
        }
        other => println!("    結果 / outcome: {}", other.outcome()),
    }

    step(
        7,
        "完了：カードをお取りください",
        "Done: please take the card",
    );
    println!("    カードの電源を切りました（照合状態は残りません） / card powered down; no verified state remains");
    println!(
        "    APDU: {} / card time {} ms",
        flow.apdu_count(),
        flow.timings().total
    );
    println!("結果 / outcome: {}", delivery.outcome());
    drop(uploader);
    backend.remove();
    if matches!(delivery, Delivery::Linked { .. }) {
        Ok(())
    } else {
        Err(FlowError::new(ErrorCode::CardError)
            .with_detail(format!("outcome {}", delivery.outcome())))
    }
}

/// The uploader for an embedded backend: its URL and token, an outbox in its directory.
pub fn demo_uploader(backend: &EmbeddedBackend) -> Result<Uploader, FlowError> {
    let client = Backend::new(&backend.url, backend.token.clone(), None)
        .map_err(|e| FlowError::new(ErrorCode::ConfigurationInvalid).with_detail(e.0))?;
    let outbox = Outbox::open(backend.dir.join("outbox.db")).map_err(|e| e.to_flow_error())?;
    Ok(Uploader {
        backend: client,
        outbox,
        recipient: backend.public_key.clone(),
    })
}

fn run_flow<T: Transport>(flow: &mut FirstStage<T>) -> Result<(), FlowError> {
    let status = flow.check_card()?;
    if let PasswordStatus::Tries(n) = status {
        println!("    マイナンバーカード（JPKI）を確認。署名用パスワードの残り回数: {n} / My Number card found; signing-password tries left: {n}");
    }

    step(
        3,
        "暗証番号：署名用パスワードを入力",
        "Password: the holder enters the signing password",
    );
    let password = SigningPassword::parse(DEMO_PASSWORD)?;
    println!("    ******** ({} 文字 / characters)", password.len());
    flow.verify_password(&password, false)?;
    drop(password);
    println!("    照合しました / verified");

    step(
        4,
        "確認：署名用電子証明書を読み取り",
        "Check: the signing certificate",
    );
    let certificate = flow.read_certificate()?;
    println!(
        "    発行番号 / serial: {} (decimal {})",
        certificate.serial_hex(),
        certificate.serial_decimal()
    );
    println!(
        "    有効期間 / valid: {} – {}",
        format_time(certificate.not_before()),
        format_time(certificate.not_after())
    );
    if let Some(chain) = flow.trusted_chain() {
        println!("    信頼の起点 / trust anchor: {}", chain.anchor_label);
    }
    if let Some(Ok(basic4)) = flow.basic4() {
        // Shown to staff for comparison with the license record; never stored.
        println!(
            "    氏名（照合用・保存しません） / name (for comparison, not stored): {}",
            basic4.name
        );
    }

    step(
        5,
        "送信前：カードで署名し、端末で検証",
        "Sign: the card signs, the terminal verifies",
    );
    let signed = flow.sign()?;
    println!(
        "    署名を検証しました / signature verified ({} bytes)",
        signed.signature.len()
    );
    println!(
        "    ステートメント SHA-256 / statement: {}",
        hex::encode(signed.statement.sha256())
    );
    Ok(())
}
