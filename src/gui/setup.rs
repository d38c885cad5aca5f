//! What the window runs against, resolved before it opens: the card source, the backend,
//! the terms file and the terminal's identity. `--demo` builds the same from the simulated
//! card and an embedded reference backend.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[cfg(test)]
use mynalink_link::backend::Backend;
use mynalink_link::license::expected_check_digit;
#[cfg(test)]
use mynalink_link::outbox::Outbox;
use mynalink_link::sender::{Sender, SenderEvent, SenderHandle};
use mynalink_link::statement::TermsRef;
use mynalink_link::{ErrorCode, FlowError};
use mynalink_server::embedded::{EmbeddedBackend, Setup};
use mynalink_simcard::{SimOptions, SimTransport};
use sha2::{Digest, Sha256};

use super::card::{Card, CardSource};
use super::i18n::Lang;
use super::remote::Remote;
use crate::cli::BackendArgs;
use crate::config::{default_outbox, Config};
use crate::delivery::Uploader;
use crate::headless::SIMULATED_CARD_TEST_ROOT;
use crate::operator_password::{OperatorPasswordHash, PasswordCheck, Throttle};

/// The terms file is text for people; anything larger is not a terms file.
const MAX_TERMS_BYTES: u64 = 1 << 20;
/// Kiosk default: a turn is reset after this long without a touch.
pub const DEFAULT_KIOSK_IDLE: Duration = Duration::from_secs(120);
/// The demo operator password (`--demo` only) and its hash, computed once (a test checks it).
pub const DEMO_OPERATOR_PASSWORD: &str = "demo";
const DEMO_OPERATOR_HASH: &str = "pbkdf2-sha256$600000$6d796e616c696e6b2d64656d6f2d3031$4676ba22edb6a4ddf4014f6d06491348685a4fe7c0a3c5a97f3a204005209a05";
pub const DEMO_TERMINAL: &str = "demo-terminal";

/// The operator's official terms file as loaded.
#[derive(Debug, Clone)]
pub struct Terms {
    pub path: PathBuf,
    pub version: String,
    pub text: String,
    pub sha256: String,
}

impl Terms {
    pub fn load(path: &Path, version: &str) -> Result<Terms, String> {
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.len() > MAX_TERMS_BYTES {
            return Err(format!(
                "{}: larger than {MAX_TERMS_BYTES} bytes",
                path.display()
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let text =
            String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", path.display()))?;
        Ok(Terms {
            path: path.to_path_buf(),
            version: version.to_string(),
            text,
            sha256,
        })
    }

    pub fn reference(&self) -> TermsRef {
        TermsRef {
            version: self.version.clone(),
            sha256: self.sha256.clone(),
        }
    }
}

/// The background sender's event stream, handed to the window's subscription once.
#[derive(Default)]
pub struct SenderLink {
    pub handle: Mutex<Option<SenderHandle>>,
    pub events: Mutex<Option<std::sync::mpsc::Receiver<SenderEvent>>>,
}

#[derive(Clone)]
pub struct Environment {
    pub demo: bool,
    pub language: Lang,
    pub terminal_id: String,
    pub operator_id: Option<String>,
    pub prefecture: String,
    pub terms: Result<Terms, String>,
    pub card: Card,
    pub remote: Option<Remote>,
    /// Why there is no backend, when there is none.
    pub remote_problem: Option<String>,
    pub sender: Arc<SenderLink>,
    pub operator_password: Option<OperatorPasswordHash>,
    /// Failed operator-password attempts, shared by every window of the process.
    pub operator_throttle: Arc<Mutex<Throttle>>,
    pub kiosk_idle: Duration,
    /// Today's operations, beside the outbox (`None`: kept in memory only).
    pub history: Option<super::history::HistoryFile>,
    /// The kiosk sizes itself to the monitor (off in tests, which have no monitor).
    pub fit_to_monitor: bool,
    /// Kept alive while the window runs (`--demo`).
    pub embedded: Option<Arc<EmbeddedBackend>>,
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Environment")
            .field("demo", &self.demo)
            .field("terminal_id", &self.terminal_id)
            .field("card", &self.card.source)
            .finish_non_exhaustive()
    }
}

impl Environment {
    /// Checks the operator password (PBKDF2: a fraction of a second, so call it off the UI
    /// thread). No password configured: nobody gets in.
    pub fn operator_password_ok(&self, typed: &str) -> bool {
        self.operator_password
            .as_ref()
            .is_some_and(|hash| hash.verify(typed))
    }

    /// One attempt at the operator password, slowed down after failures (see
    /// [`Throttle`]). Blocks for the hash check: call it off the UI thread.
    pub fn check_operator_password(&self, typed: &str) -> PasswordCheck {
        Throttle::check(&self.operator_throttle, || self.operator_password_ok(typed))
    }

    pub fn simulated_card(&self) -> Option<&mynalink_simcard::SimHandle> {
        match &self.card.source {
            CardSource::Simulated(handle) => Some(handle),
            CardSource::Reader(_) => None,
        }
    }
}

fn config_error(detail: impl Into<String>) -> FlowError {
    FlowError::new(ErrorCode::ConfigurationInvalid).with_detail(detail)
}

/// A demo license number: ten fixed digits, the check digit, reissue count 0.
pub fn demo_number(first_ten: &str) -> String {
    let mut digits = [0u8; 10];
    for (d, c) in digits.iter_mut().zip(first_ten.bytes()) {
        *d = c.wrapping_sub(b'0');
    }
    format!("{first_ten}{}0", expected_check_digit(&digits))
}

/// Demo records: the simulated card's holder, and a holder who cannot link (licence card
/// only, §2(1)).
pub fn demo_records() -> String {
    format!(
        "license_number,holding,name,birth_date,status\n\
         {},myna_only,試験　花子,1990-01-02,valid\n\
         {},card_only,試験　太郎,1985-04-01,valid\n",
        crate::demo::DEMO_LICENSE,
        demo_ineligible_license()
    )
}

pub fn demo_ineligible_license() -> String {
    demo_number("7299132820")
}

/// Options of the demo's simulated card (slow mode: `MYNALINK_DEMO_SLOW_CARD=1`, for
/// checking that the window stays responsive while the card works).
fn demo_sim_options() -> SimOptions {
    let mut options = SimOptions::default();
    if std::env::var_os("MYNALINK_DEMO_SLOW_CARD").is_some() {
        options.apdu_latency = Duration::from_millis(30);
        options.sign_latency = Duration::from_millis(1500);
    }
    options
}

/// The demo: simulated card, embedded backend in a fresh temporary directory, a demo terms
/// file written there (a placeholder, not any operator's terms), operator password "demo".
pub fn demo(language: Lang) -> Result<Environment, FlowError> {
    demo_environment(language, demo_sim_options())
}

/// The demo with a given simulated card (the tests use blocked, slow or certificate-less
/// cards). The kiosk does not size itself to a monitor here.
#[cfg_attr(not(test), allow(dead_code))]
pub fn demo_with(language: Lang, sim_options: SimOptions) -> Result<Environment, FlowError> {
    let mut env = demo_environment(language, sim_options)?;
    env.fit_to_monitor = false;
    // The same password with the fewest iterations accepted: unoptimised test builds
    // would otherwise spend seconds on each check.
    env.operator_password = OperatorPasswordHash::parse(
        "pbkdf2-sha256$100000$6d796e616c696e6b2d74657374732d31$e36c5a7ab583c86fea4b46d6c46e7e8369e024a7daa8b9b779aaad7c479e800d",
    )
    .ok();
    Ok(env)
}

/// The demo with its backend out of reach: lookups fail and uploads stay in the outbox
/// (the tests of the queued path). Port 1 lies below the ephemeral range, so nothing else
/// can be listening there.
#[cfg(test)]
pub fn demo_backend_down(
    language: Lang,
    sim_options: SimOptions,
) -> Result<Environment, FlowError> {
    let mut env = demo_with(language, sim_options)?;
    let Some(backend) = env.embedded.clone() else {
        return Err(config_error("the demo has no embedded backend"));
    };
    let unreachable = Uploader {
        backend: Backend::new("http://127.0.0.1:1/", backend.token.clone(), None)
            .map_err(|e| config_error(e.0))?,
        outbox: Outbox::open(backend.dir.join("outbox-unreachable.db"))
            .map_err(|e| FlowError::new(ErrorCode::OutboxUnavailable).with_detail(e.to_string()))?,
        recipient: backend.public_key.clone(),
    };
    let (remote, sender) = start_remote(unreachable)?;
    env.remote = Some(remote);
    env.sender = sender;
    Ok(env)
}

fn demo_environment(language: Lang, sim_options: SimOptions) -> Result<Environment, FlowError> {
    // The embedded backend makes the directory 0700 and its keys 0600.
    let dir = EmbeddedBackend::temp_dir("mynalink-window-demo");
    let records = demo_records();
    let backend = EmbeddedBackend::start(&Setup {
        dir: dir.clone(),
        trust_anchors: &[SIMULATED_CARD_TEST_ROOT],
        records_csv: &records,
        terminal_id: DEMO_TERMINAL,
        port: 0,
    })
    .map_err(|e| config_error(format!("embedded backend: {e}")))?;
    let terms_path = dir.join("demo-terms.txt");
    std::fs::write(&terms_path, DEMO_TERMS)
        .map_err(|e| config_error(format!("{}: {e}", terms_path.display())))?;
    let trust = crate::source::trust_store([], [], true)?;
    let sim = SimTransport::new(sim_options).handle();
    let card = Card::start(CardSource::Simulated(sim), trust)
        .map_err(|e| config_error(format!("card worker: {e}")))?;
    let (remote, sender) = start_remote(crate::demo::demo_uploader(&backend)?)?;
    Ok(Environment {
        demo: true,
        language,
        terminal_id: DEMO_TERMINAL.into(),
        operator_id: Some("demo-operator".into()),
        prefecture: "東京都".into(),
        terms: Terms::load(&terms_path, "demo-1"),
        card,
        remote: Some(remote),
        remote_problem: None,
        sender,
        operator_password: OperatorPasswordHash::parse(DEMO_OPERATOR_HASH).ok(),
        operator_throttle: Arc::default(),
        kiosk_idle: DEFAULT_KIOSK_IDLE,
        history: Some(super::history::HistoryFile::new(dir.join("history.jsonl"))),
        fit_to_monitor: true,
        embedded: Some(Arc::new(backend)),
    })
}

/// The upload worker and the background sender, on one configured uploader.
fn start_remote(uploader: Uploader) -> Result<(Remote, Arc<SenderLink>), FlowError> {
    let (handle, events) = Sender::start(uploader.outbox.path(), uploader.backend.clone())
        .map_err(|e| FlowError::new(ErrorCode::OutboxUnavailable).with_detail(e.to_string()))?;
    let link = SenderLink {
        handle: Mutex::new(Some(handle)),
        events: Mutex::new(Some(events)),
    };
    let remote =
        Remote::start(uploader).map_err(|e| config_error(format!("upload worker: {e}")))?;
    Ok((remote, Arc::new(link)))
}

/// The real thing, from the config file: a reader, the configured backend and terms.
pub fn from_config(config: &Config) -> Result<Environment, FlowError> {
    let trust = crate::source::trust_store(&config.jpki_ca, &config.trust_anchors, false)?;
    let reader = config
        .reader
        .as_deref()
        .and_then(crate::source::named_reader);
    let card = Card::start(CardSource::Reader(reader), trust)
        .map_err(|e| config_error(format!("card worker: {e}")))?;
    let terms = match (&config.terms_file, &config.terms_version) {
        (Some(path), Some(version)) => Terms::load(path, version),
        (None, _) => Err("terms_file is not set in the config file".to_string()),
        (Some(_), None) => Err("terms_version is not set in the config file".to_string()),
    };
    let (remote, sender, remote_problem) = match configured_remote(config) {
        Ok((remote, sender)) => (Some(remote), sender, None),
        Err(e) => (
            None,
            Arc::new(SenderLink::default()),
            Some(e.detail.unwrap_or(e.message_en)),
        ),
    };
    Ok(Environment {
        demo: false,
        language: config.language.map(Lang::from).unwrap_or_default(),
        terminal_id: config
            .terminal_id
            .clone()
            .unwrap_or_else(|| "unconfigured".into()),
        operator_id: config.operator_id.clone(),
        prefecture: config.prefecture.clone().unwrap_or_default(),
        terms,
        card,
        remote,
        remote_problem,
        sender,
        operator_password: config
            .operator_password_hash
            .as_deref()
            .map(OperatorPasswordHash::parse)
            .transpose()
            .map_err(|e| config_error(format!("operator_password_hash: {e}")))?,
        operator_throttle: Arc::default(),
        kiosk_idle: config
            .kiosk_idle_seconds
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_KIOSK_IDLE)
            .max(Duration::from_secs(40)),
        history: config.outbox.clone().or_else(default_outbox).and_then(|p| {
            p.parent()
                .map(|d| super::history::HistoryFile::new(d.join("history.jsonl")))
        }),
        fit_to_monitor: true,
        embedded: None,
    })
}

/// The backend settings are read as for `mynalink headless` (one reading of them).
fn configured_remote(config: &Config) -> Result<(Remote, Arc<SenderLink>), FlowError> {
    let uploader = crate::delivery::prepare(&BackendArgs::default(), config)?
        .ok_or_else(|| config_error("backend_url is not set in the config file"))?;
    start_remote(uploader)
}

/// The demo's stand-in for the operator's terms file. Real installations configure the
/// operator's official file with `terms_file` and `terms_version`.
const DEMO_TERMS: &str = "\
【デモ用】規約ファイルの表示例 / [DEMO] how the terms file is shown

この画面には、運用者が設定した公式の利用規約ファイル（terms_file）がそのまま表示されます。
デモでは規約の本文の代わりにこの説明文を表示しています。

ふりがなの書き方：｜署名用電子証明書《しょめいようでんししょうめいしょ》のように、
読みを付けたい語の前に「｜」、読みを《》で囲んで書くと、キオスク画面で読みが表示されます。

This screen shows the operator's official terms-of-use file (terms_file) as it is.
The demo shows this explanation in place of the terms.
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_operator_hash_is_the_demo_password() {
        let hash = OperatorPasswordHash::parse(DEMO_OPERATOR_HASH).expect("parses");
        assert!(hash.verify(DEMO_OPERATOR_PASSWORD));
        let tests = demo_with(Lang::Ja, SimOptions::default()).expect("demo");
        assert!(tests.operator_password_ok(DEMO_OPERATOR_PASSWORD));
        if let Some(backend) = tests.embedded.clone() {
            let _ = std::fs::remove_dir_all(&backend.dir);
        }
    }

    #[test]
    fn the_demo_keeps_its_keys_and_token_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let env = demo_with(Lang::Ja, SimOptions::default()).expect("demo");
        let dir = env
            .embedded
            .as_ref()
            .map(|b| b.dir.clone())
            .expect("embedded");
        let mode = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        };
        let modes: Vec<(String, u32)> = ["", "seal-key.pem", "token", "terminal-tokens"]
            .iter()
            .map(|name| (name.to_string(), mode(&dir.join(name))))
            .collect();
        drop(env);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(modes[0].1, 0o700, "the directory");
        for (name, mode) in &modes[1..] {
            assert_eq!(*mode, 0o600, "{name}");
        }
    }
}
