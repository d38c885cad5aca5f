//! `mynalink-server serve`: the options, the TLS setup and the accept loop.
//!
//! TLS is rustls with the `ring` provider. Plain HTTP is served only when asked for with
//! `--insecure-loopback-http` and only on a loopback address, where no network is crossed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use mynalink_link::seal::{SealError, SealPrivateKey};
use mynalink_link::trust::{is_public_test_root, TrustAnchor, TrustStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use zeroize::Zeroizing;

use crate::connections::{self, ConnectionLimiter, Limits, Slot, WriteStallGuard};
use crate::credentials::{Credentials, TokenFiles};
use crate::http::{router, AppState};
use crate::logging::LogFormat;
use crate::pool::StorePool;
use crate::revocation::{Mode, Revocation, RevocationOptions};
use crate::secret_file::read_secret;
use crate::store::DatabaseUrl;
use crate::submission::{SealKey, SubmissionConfig};

/// How long open requests may run on after SIGTERM/SIGINT.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Freshness windows beyond a year are a configuration mistake.
const MAX_FRESHNESS_HOURS: i64 = 24 * 366;

/// The `serve` command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub database: String,
    /// The PostgreSQL password, on the first line of a file only its owner may read.
    pub database_password_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub terminal_tokens: Option<PathBuf>,
    /// Mynaportal's credentials (same file format), for the second stage and cancellations.
    pub mynaportal_tokens: Option<PathBuf>,
    /// Administrators' credentials (same file format): cancellations and status only.
    pub admin_tokens: Option<PathBuf>,
    pub trust_anchors: Vec<PathBuf>,
    pub seal_key: Option<PathBuf>,
    /// The key the second stage's card-info basic-4 is hashed with; required with
    /// `mynaportal_tokens`.
    pub basic4_key: Option<PathBuf>,
    pub insecure_loopback_http: bool,
    pub freshness_hours: Option<i64>,
    /// Trust the simulated card's TEST root when it is given as a trust anchor.
    pub allow_test_root: bool,
    /// Open connections at most (default: from the descriptor limit, see [`connections`]).
    pub max_connections: Option<usize>,
    /// Open connections from one source address at most.
    pub max_connections_per_ip: Option<usize>,
    /// `--log-format text|json`.
    pub log_format: LogFormat,
    /// Where `/metrics` is served (`--metrics-listen`); off when not given.
    pub metrics_listen: Option<SocketAddr>,
    /// Revocation sources and mode (`--ocsp`, `--crl`, `--revocation`, …).
    pub revocation: RevocationOptions,
    /// Re-check active bindings every N hours (`--recheck-hours`).
    pub recheck_hours: Option<u64>,
}

/// Re-check intervals beyond a year are a configuration mistake.
const MAX_RECHECK_HOURS: u64 = 24 * 366;

impl ServeOptions {
    /// Parses the arguments after `serve`; both `--opt VALUE` and `--opt=VALUE`.
    pub fn parse(args: &[String]) -> Result<ServeOptions, String> {
        let mut listen = None;
        let mut database = None;
        let mut database_password_file = None;
        let mut tls_cert = None;
        let mut tls_key = None;
        let mut terminal_tokens = None;
        let mut mynaportal_tokens = None;
        let mut admin_tokens = None;
        let mut trust_anchors = Vec::new();
        let mut seal_key = None;
        let mut basic4_key = None;
        let mut insecure_loopback_http = false;
        let mut allow_test_root = false;
        let mut freshness_hours = None;
        let mut max_connections = None;
        let mut max_connections_per_ip = None;
        let mut log_format = None;
        let mut metrics_listen = None;
        let mut metrics_allow_remote = false;
        let mut revocation = RevocationOptions::default();
        let mut recheck_hours = None;

        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) if name.starts_with("--") => (name, Some(value.to_string())),
                _ => (arg.as_str(), None),
            };
            if let "--insecure-loopback-http" | "--allow-test-root" | "--metrics-allow-remote" =
                name
            {
                if inline.is_some() {
                    return Err(format!("{name} takes no value"));
                }
                match name {
                    "--allow-test-root" => allow_test_root = true,
                    "--metrics-allow-remote" => metrics_allow_remote = true,
                    _ => insecure_loopback_http = true,
                }
                continue;
            }
            let mut value = || -> Result<String, String> {
                match &inline {
                    Some(v) => Ok(v.clone()),
                    None => iter.next().cloned().ok_or(format!("{name} needs a value")),
                }
            };
            if let Some(result) = revocation.accept(name, &mut value) {
                result?;
                continue;
            }
            fn once<T>(slot: &mut Option<T>, name: &str, value: T) -> Result<(), String> {
                if slot.replace(value).is_some() {
                    return Err(format!("{name} given twice"));
                }
                Ok(())
            }
            match name {
                "--listen" => {
                    let text = value()?;
                    let addr = text.parse::<SocketAddr>().map_err(|_| {
                        format!("--listen {text:?}: give IP:PORT, e.g. 127.0.0.1:8443 or [::1]:0")
                    })?;
                    once(&mut listen, name, addr)?;
                }
                "--database" => once(&mut database, name, value()?)?,
                "--database-password-file" => {
                    once(&mut database_password_file, name, PathBuf::from(value()?))?
                }
                "--tls-cert" => once(&mut tls_cert, name, PathBuf::from(value()?))?,
                "--tls-key" => once(&mut tls_key, name, PathBuf::from(value()?))?,
                "--terminal-tokens" => once(&mut terminal_tokens, name, PathBuf::from(value()?))?,
                "--mynaportal-tokens" => {
                    once(&mut mynaportal_tokens, name, PathBuf::from(value()?))?
                }
                "--admin-tokens" => once(&mut admin_tokens, name, PathBuf::from(value()?))?,
                "--trust-anchor" => trust_anchors.push(PathBuf::from(value()?)),
                "--seal-key" => once(&mut seal_key, name, PathBuf::from(value()?))?,
                "--basic4-key" => once(&mut basic4_key, name, PathBuf::from(value()?))?,
                "--freshness-hours" => {
                    let text = value()?;
                    let hours = text
                        .parse::<i64>()
                        .ok()
                        .filter(|h| (1..=MAX_FRESHNESS_HOURS).contains(h))
                        .ok_or(format!(
                            "--freshness-hours {text:?}: give whole hours from 1 to \
                             {MAX_FRESHNESS_HOURS}"
                        ))?;
                    once(&mut freshness_hours, name, hours)?;
                }
                "--max-connections" => once(&mut max_connections, name, count(name, value()?)?)?,
                "--recheck-hours" => {
                    let text = value()?;
                    let hours = text
                        .parse::<u64>()
                        .ok()
                        .filter(|h| (1..=MAX_RECHECK_HOURS).contains(h))
                        .ok_or(format!(
                            "--recheck-hours {text:?}: give whole hours from 1 to \
                             {MAX_RECHECK_HOURS}"
                        ))?;
                    once(&mut recheck_hours, name, hours)?;
                }
                "--max-connections-per-ip" => {
                    once(&mut max_connections_per_ip, name, count(name, value()?)?)?
                }
                "--log-format" => once(&mut log_format, name, LogFormat::parse(&value()?)?)?,
                "--metrics-listen" => once(&mut metrics_listen, name, metrics_address(&value()?)?)?,
                other => return Err(format!("unknown option {other:?}")),
            }
        }
        match metrics_listen {
            Some(addr) if !addr.ip().is_loopback() && !metrics_allow_remote => {
                return Err(format!(
                    "--metrics-listen {addr}: metrics are served without TLS or a token, so \
                     only on a loopback address unless --metrics-allow-remote is given"
                ))
            }
            None if metrics_allow_remote => {
                return Err("--metrics-allow-remote needs --metrics-listen ADDR".into())
            }
            _ => {}
        }

        let listen = listen.ok_or("--listen ADDR is required")?;
        let database = database.ok_or("--database URL is required")?;
        revocation.validate()?;
        if recheck_hours.is_some() && revocation.resolved_mode() == Ok(Mode::Off) {
            return Err(
                "--recheck-hours needs revocation sources (--ocsp, --crl): with --revocation \
                 off only expiry could be re-checked"
                    .into(),
            );
        }
        // Mynaportal's credentials open the second stage, which keeps the basic-4 as hashes
        // under this key: a server that would only fail there must not start.
        if mynaportal_tokens.is_some() && basic4_key.is_none() {
            return Err(
                "--mynaportal-tokens needs --basic4-key FILE, the key the second \
                        stage's basic-4 is hashed with (create one with `mynalink-server \
                        basic4-key generate --out FILE`)"
                    .into(),
            );
        }
        if insecure_loopback_http {
            if !listen.ip().is_loopback() {
                return Err(format!(
                    "--insecure-loopback-http: plain HTTP is served only on a loopback address, \
                     not {listen}; use --tls-cert and --tls-key"
                ));
            }
            if tls_cert.is_some() || tls_key.is_some() {
                return Err(
                    "--insecure-loopback-http cannot be combined with --tls-cert or \
                            --tls-key"
                        .into(),
                );
            }
        } else if tls_cert.is_none() || tls_key.is_none() {
            return Err(
                "--tls-cert FILE and --tls-key FILE are required (plain HTTP only with \
                        --insecure-loopback-http on a loopback address)"
                    .into(),
            );
        }
        Ok(ServeOptions {
            listen,
            database,
            database_password_file,
            tls_cert,
            tls_key,
            terminal_tokens,
            mynaportal_tokens,
            admin_tokens,
            trust_anchors,
            seal_key,
            basic4_key,
            insecure_loopback_http,
            freshness_hours,
            allow_test_root,
            max_connections,
            max_connections_per_ip,
            log_format: log_format.unwrap_or_default(),
            metrics_listen,
            revocation,
            recheck_hours,
        })
    }
}

/// `--metrics-listen`: IP:PORT, or a bare PORT on 127.0.0.1.
fn metrics_address(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>()
        .or_else(|_| {
            text.parse::<u16>()
                .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
        })
        .map_err(|_| {
            format!("--metrics-listen {text:?}: give IP:PORT or PORT, e.g. 127.0.0.1:9464 or 9464")
        })
}

/// A number of connections: a whole number from 1.
fn count(name: &str, text: String) -> Result<usize, String> {
    text.parse::<usize>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or(format!("{name} {text:?}: give a whole number from 1"))
}

/// Why `serve` stopped: configuration (exit 2) or a failure while running (exit 1).
#[derive(Debug)]
pub enum ServeError {
    Config(String),
    Runtime(String),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::Config(m) | ServeError::Runtime(m) => f.write_str(m),
        }
    }
}

fn read(path: &Path, what: &str) -> Result<Zeroizing<Vec<u8>>, ServeError> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| ServeError::Config(format!("{what} {}: {e}", path.display())))
}

/// Everything the server needs, read and checked before the socket is bound.
pub struct Prepared {
    pub state: AppState,
    pub tls: Option<TlsAcceptor>,
    pub limits: Limits,
}

/// The trust anchors from `--trust-anchor` files (the TEST root only with
/// `--allow-test-root`).
pub fn trust_store(anchors: &[PathBuf], allow_test_root: bool) -> Result<TrustStore, ServeError> {
    let mut trust = TrustStore::new();
    for path in anchors {
        let bytes = read(path, "trust anchor")?;
        refuse_public_test_root(path, &bytes, allow_test_root)?;
        trust
            .add_trust_anchor(&bytes)
            .map_err(|e| ServeError::Config(format!("trust anchor {}: {e}", path.display())))?;
    }
    Ok(trust)
}

pub fn prepare(options: &ServeOptions) -> Result<Prepared, ServeError> {
    let trust = trust_store(&options.trust_anchors, options.allow_test_root)?;
    let revocation = configure_revocation(&options.revocation, &trust)?;
    tracing::info!(event = "revocation", "{}", revocation.describe());
    let mut config = SubmissionConfig::new(trust);
    config.revocation = revocation;
    if let Some(hours) = options.freshness_hours {
        config.freshness_window = time::Duration::hours(hours);
    }
    if let Some(path) = &options.seal_key {
        config.seal_key = Some(load_seal_key(path)?);
    }
    if let Some(path) = &options.basic4_key {
        config.basic4_key = Some(
            crate::basic4_key::Basic4Key::load(path)
                .map_err(|e| ServeError::Config(e.to_string()))?,
        );
    }

    let credentials = Credentials::load(TokenFiles {
        terminal: options.terminal_tokens.clone(),
        mynaportal: options.mynaportal_tokens.clone(),
        admin: options.admin_tokens.clone(),
    })
    .map_err(ServeError::Config)?;
    if credentials.current().terminals.is_empty() {
        tracing::warn!("no terminal tokens configured; every API call will be 401");
    }

    let url = DatabaseUrl::resolve(&options.database, options.database_password_file.as_deref())
        .map_err(|e| ServeError::Config(e.to_string()))?;
    let pool = StorePool::open(url).map_err(|e| ServeError::Config(e.to_string()))?;

    let tls = match (&options.tls_cert, &options.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
        _ => None,
    };
    let limits = Limits::resolve(options.max_connections, options.max_connections_per_ip)
        .map_err(ServeError::Config)?;

    Ok(Prepared {
        state: AppState {
            pool,
            config: Arc::new(config),
            credentials: Arc::new(credentials),
        },
        tls,
        limits,
    })
}

/// The revocation sources, with the CRLs loaded once (on a thread of its own, so that this
/// also works when the caller runs inside a runtime).
pub fn configure_revocation(
    options: &RevocationOptions,
    trust: &TrustStore,
) -> Result<Revocation, ServeError> {
    if options.resolved_mode().map_err(ServeError::Config)? == Mode::Off {
        return Ok(Revocation::off());
    }
    let (result, warnings) = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let mut warnings = Vec::new();
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start a runtime: {e}"))
                    .and_then(|runtime| {
                        runtime.block_on(Revocation::configure(options, trust, &mut warnings))
                    });
                (result, warnings)
            })
            .join()
            .unwrap_or_else(|_| {
                (
                    Err("loading the revocation sources failed".into()),
                    Vec::new(),
                )
            })
    });
    for warning in warnings {
        tracing::warn!(
            event = "crl_unavailable",
            "{warning}; status from it is unavailable until it loads"
        );
    }
    result.map_err(ServeError::Config)
}

/// The simulated card's TEST roots (RSA and the provisional P-384 one) sign whatever anyone
/// asks (their keys are public): as trust anchors they are refused unless `--allow-test-root`
/// says this is a demo or a test.
fn refuse_public_test_root(path: &Path, bytes: &[u8], allowed: bool) -> Result<(), ServeError> {
    let Ok(anchor) = TrustAnchor::from_pem_or_der(bytes) else {
        // Not a usable anchor at all: adding it reports why.
        return Ok(());
    };
    if !is_public_test_root(&anchor.sha256()) || allowed {
        return Ok(());
    }
    Err(ServeError::Config(format!(
        "trust anchor {}: the simulated card's TEST root, whose private key is public; a \
         server that trusts it accepts statements anyone can forge. It is refused unless \
         --allow-test-root is given (demos and tests only)",
        path.display()
    )))
}

fn secret(path: &Path, what: &'static str) -> Result<Zeroizing<Vec<u8>>, ServeError> {
    read_secret(path, what).map_err(|e| ServeError::Config(e.to_string()))
}

fn load_seal_key(path: &Path) -> Result<SealKey, ServeError> {
    let bytes = secret(path, "seal key")?;
    let key = SealPrivateKey::parse(&bytes).map_err(|e| {
        ServeError::Config(if e == SealError::RetiredRsaKey {
            format!(
                "seal key {}: an RSA key, which is no longer used for sealing; make an X25519 \
                 key with `mynalink-server seal-key generate --out FILE` and give terminals its \
                 public key (`mynalink-server seal-key public FILE`)",
                path.display()
            )
        } else {
            format!(
                "seal key {}: not an X25519 private key in PKCS#8 PEM (BEGIN PRIVATE KEY); make \
                 one with `mynalink-server seal-key generate --out FILE`",
                path.display()
            )
        })
    })?;
    Ok(SealKey(Arc::new(key)))
}

fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ServeError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| ServeError::Config(format!("TLS certificate {}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(ServeError::Config(format!(
            "TLS certificate {}: no CERTIFICATE in the PEM file",
            cert.display()
        )));
    }
    let pem = secret(key, "TLS key")?;
    let private = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| ServeError::Config(format!("TLS key {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, private))
        .map_err(|e| ServeError::Config(format!("TLS certificate and key: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// How often expired second-stage basic-4 is deleted.
pub const SECOND_STAGE_PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// Binds, prints `listening on URL` as the only line on standard output, and serves until
/// SIGTERM or SIGINT.
pub async fn run(options: ServeOptions, prepared: Prepared) -> Result<(), ServeError> {
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|e| ServeError::Runtime(format!("cannot listen on {}: {e}", options.listen)))?;
    let mut acceptor = connections::Acceptor::new(listener);
    let limiter = ConnectionLimiter::new(prepared.limits);
    let local = acceptor
        .local_addr()
        .map_err(|e| ServeError::Runtime(format!("listening socket: {e}")))?;
    let scheme = if prepared.tls.is_some() {
        "https"
    } else {
        "http"
    };
    // Registered before the line below: a supervisor may stop the server as soon as it has
    // read it, and that must be the graceful stop, not the signal's default; SIGHUP (CRL
    // refresh) must not end it either.
    let mut signals = ShutdownSignals::install()?;
    // SIGHUP's default would end the server: caught before the line below too.
    #[cfg(unix)]
    let reloader = crate::credentials::reload_on_hangup(Arc::clone(&prepared.state.credentials))
        .map_err(|e| ServeError::Runtime(format!("signal handler: {e}")))?;
    let metrics = match options.metrics_listen {
        Some(addr) => Some(
            crate::metrics::serve(addr, prepared.state.pool.clone())
                .await
                .map_err(|e| ServeError::Runtime(e.to_string()))?,
        ),
        None => None,
    };
    let hangups = Hangups::install()?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        // Tests and supervisors read the port from this line; it must leave at once.
        writeln!(out, "listening on {scheme}://{local}")
            .and_then(|()| out.flush())
            .map_err(|e| ServeError::Runtime(format!("standard output: {e}")))?;
    }
    tracing::info!(event = "listening", url = %format!("{scheme}://{local}"), "listening");

    // Card-info basic-4 of an abandoned second stage must not outlive its time limit, even
    // when no further second-stage call comes to purge it.
    let purge_pool = prepared.state.pool.clone();
    let purger = tokio::spawn(async move {
        let mut every = tokio::time::interval(SECOND_STAGE_PURGE_INTERVAL);
        loop {
            every.tick().await;
            let now = crate::now_text();
            if let Err(e) = purge_pool
                .run(move |store| store.purge_expired_second_stage(&now))
                .await
            {
                tracing::error!(
                    event = "purge_failed",
                    error = %e,
                    "purging expired second stages failed"
                );
            }
        }
    });

    let revocation = prepared.state.config.revocation.clone();
    let refresher = tokio::spawn(refresh_crls(
        revocation.clone(),
        options.revocation.crl_refresh(),
        hangups,
    ));
    let rechecker = options.recheck_hours.map(|hours| {
        let pool = prepared.state.pool.clone();
        tokio::spawn(async move {
            let every = Duration::from_secs(hours * 3600);
            loop {
                tokio::time::sleep(every).await;
                match crate::recheck::recheck(&pool, &revocation, time::OffsetDateTime::now_utc())
                    .await
                {
                    Ok(summary) => tracing::info!(event = "recheck", "{summary}"),
                    Err(e) => {
                        tracing::error!(event = "recheck_failed", error = %e, "re-check stopped")
                    }
                }
            }
        })
    });

    let app = crate::observe::instrument(connections::with_body_deadline(router(prepared.state)));
    let graceful = GracefulShutdown::new();
    let shutdown = signals.recv();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            (tcp, peer) = acceptor.accept() => {
                // Over a cap: closed at once, before any TLS work.
                let Ok(slot) = limiter.admit(peer.ip()) else {
                    drop(tcp);
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                tokio::spawn(connection(
                    tcp,
                    slot,
                    prepared.tls.clone(),
                    app.clone(),
                    graceful.watcher(),
                ));
            }
            () = &mut shutdown => break,
        }
    }
    drop(acceptor);
    purger.abort();
    refresher.abort();
    if let Some(rechecker) = rechecker {
        rechecker.abort();
    }
    #[cfg(unix)]
    reloader.abort();
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    tracing::info!(event = "shutting_down", "shutting down");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!(
                event = "shutdown_timeout",
                "requests still open after {SHUTDOWN_GRACE:?}; stopping"
            );
        }
    }
    Ok(())
}

/// Serves one connection; its place is given back when it ends.
async fn connection(
    tcp: tokio::net::TcpStream,
    _slot: Slot,
    tls: Option<TlsAcceptor>,
    app: Router,
    watcher: Watcher,
) {
    let tcp = WriteStallGuard::new(tcp);
    match tls {
        Some(acceptor) => {
            if let Ok(Ok(stream)) =
                tokio::time::timeout(connections::HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            {
                serve_http(TokioIo::new(stream), app, watcher).await;
            }
        }
        None => serve_http(TokioIo::new(tcp), app, watcher).await,
    }
}

async fn serve_http<I>(io: I, app: Router, watcher: Watcher)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let conn = connections::http1_builder().serve_connection(io, TowerToHyperService::new(app));
    // A client that goes away mid-request is not the server's error.
    let _ = watcher.watch(conn).await;
}

/// SIGHUP, caught from the moment it is installed: it asks for the CRLs to be loaded again.
struct Hangups {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Hangups {
    fn install() -> Result<Hangups, ServeError> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Hangups {
                signal: signal(SignalKind::hangup())
                    .map_err(|e| ServeError::Runtime(format!("signal handler: {e}")))?,
            })
        }
        #[cfg(not(unix))]
        Ok(Hangups {})
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if self.signal.recv().await.is_none() {
            std::future::pending::<()>().await;
        }
        #[cfg(not(unix))]
        std::future::pending::<()>().await;
    }
}

/// Loads the CRLs again every `every` and on SIGHUP, and says what happened.
async fn refresh_crls(revocation: Revocation, every: Duration, mut hangups: Hangups) {
    let mut timer = tokio::time::interval(every);
    timer.tick().await;
    loop {
        let why = tokio::select! {
            _ = timer.tick() => "timer",
            () = hangups.recv() => "SIGHUP",
        };
        if !revocation.has_crls() {
            if why == "SIGHUP" {
                tracing::info!(
                    event = "crl_refresh",
                    "SIGHUP: no CRL is configured, nothing to refresh"
                );
            }
            continue;
        }
        for line in revocation.refresh_crls().await {
            match line {
                Ok(line) => tracing::info!(event = "crl_refresh", "CRL refreshed ({why}): {line}"),
                Err(line) => {
                    tracing::warn!(
                        event = "crl_refresh_failed",
                        "CRL refresh failed ({why}): {line}"
                    )
                }
            }
        }
    }
}

/// SIGTERM and SIGINT, caught from the moment they are installed.
struct ShutdownSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> Result<ShutdownSignals, ServeError> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let install = |kind| {
                signal(kind).map_err(|e| ServeError::Runtime(format!("signal handler: {e}")))
            };
            Ok(ShutdownSignals {
                terminate: install(SignalKind::terminate())?,
                interrupt: install(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(ShutdownSignals {})
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `args`, with `--revocation off` unless they name revocation themselves.
    fn parse(args: &str) -> Result<ServeOptions, String> {
        let mut args: Vec<String> = args.split_whitespace().map(str::to_string).collect();
        if !args
            .iter()
            .any(|a| a.starts_with("--revocation") || a.starts_with("--ocsp"))
        {
            args.splice(0..0, ["--revocation".to_string(), "off".to_string()]);
        }
        ServeOptions::parse(&args)
    }

    #[test]
    fn revocation_options() {
        let o = parse(
            "--listen 127.0.0.1:0 --database sqlite:x --insecure-loopback-http \
             --ocsp http://127.0.0.1:9/ocsp --crl /c.crl --crl=http://127.0.0.1:9/c.crl \
             --ocsp-signer s.pem --crl-refresh-minutes 15 --recheck-hours 24",
        )
        .expect("revocation");
        assert_eq!(o.revocation.ocsp, ["http://127.0.0.1:9/ocsp"]);
        assert_eq!(o.revocation.crls.len(), 2);
        assert_eq!(o.revocation.resolved_mode(), Ok(Mode::Require));
        assert_eq!(o.revocation.crl_refresh(), Duration::from_secs(900));
        assert_eq!(o.recheck_hours, Some(24));
        for (args, needle) in [
            (
                "--listen 127.0.0.1:1 --database sqlite:x --insecure-loopback-http \
                 --revocation require",
                "no revocation source",
            ),
            (
                "--listen 127.0.0.1:1 --database sqlite:x --insecure-loopback-http \
                 --revocation off --recheck-hours 3",
                "--recheck-hours",
            ),
            (
                "--listen 127.0.0.1:1 --database sqlite:x --insecure-loopback-http \
                 --ocsp http://127.0.0.1:9/ --recheck-hours 0",
                "whole hours",
            ),
        ] {
            let e = parse(args).expect_err(args);
            assert!(e.contains(needle), "{args}: {e}");
        }
        // Without any source and without `off`, the server does not start.
        let args: Vec<String> = "--listen 127.0.0.1:1 --database sqlite:x --insecure-loopback-http"
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let e = ServeOptions::parse(&args).expect_err("no source");
        assert!(e.contains("--revocation off"), "{e}");
    }

    #[test]
    fn options() {
        let o = parse(
            "--listen 127.0.0.1:0 --database=sqlite:/tmp/x.db --tls-cert c.pem --tls-key k.pem \
             --trust-anchor a.pem --trust-anchor b.der --freshness-hours 24",
        )
        .expect("parse");
        assert_eq!(o.listen.port(), 0);
        assert_eq!(o.trust_anchors.len(), 2);
        assert_eq!(o.freshness_hours, Some(24));
        assert!(!o.insecure_loopback_http);
        assert_eq!((o.max_connections, o.max_connections_per_ip), (None, None));

        let o = parse(
            "--listen 127.0.0.1:0 --database sqlite:x --insecure-loopback-http \
             --max-connections 500 --max-connections-per-ip=8",
        )
        .expect("caps");
        assert_eq!(o.max_connections, Some(500));
        assert_eq!(o.max_connections_per_ip, Some(8));

        let o = parse("--listen [::1]:8080 --database sqlite:x --insecure-loopback-http")
            .expect("plain on loopback");
        assert!(o.insecure_loopback_http && o.tls_cert.is_none());
        assert_eq!(o.basic4_key, None);

        let o = parse(
            "--listen 127.0.0.1:0 --database sqlite:x --insecure-loopback-http \
             --mynaportal-tokens m --basic4-key=k",
        )
        .expect("Mynaportal with a basic-4 key");
        assert_eq!(o.basic4_key.as_deref(), Some(Path::new("k")));
    }

    #[test]
    fn refusals() {
        for (args, needle) in [
            ("--database sqlite:x --insecure-loopback-http", "--listen"),
            (
                "--listen 127.0.0.1:1 --insecure-loopback-http",
                "--database",
            ),
            ("--listen 127.0.0.1:1 --database sqlite:x", "--tls-cert"),
            (
                "--listen 127.0.0.1:1 --database sqlite:x --tls-cert c",
                "--tls-key",
            ),
            (
                "--listen 0.0.0.0:1 --database sqlite:x --insecure-loopback-http",
                "loopback",
            ),
            (
                "--listen 10.0.0.5:1 --database sqlite:x --insecure-loopback-http",
                "loopback",
            ),
            (
                "--listen 127.0.0.1:1 --database sqlite:x --insecure-loopback-http --tls-cert c",
                "combined",
            ),
            ("--listen localhost:1 --database sqlite:x", "IP:PORT"),
            (
                "--listen 127.0.0.1:1 --listen 127.0.0.1:2 --database sqlite:x",
                "twice",
            ),
            (
                "--listen 127.0.0.1:1 --database sqlite:x --freshness-hours 0",
                "freshness",
            ),
            (
                "--listen 127.0.0.1:1 --database sqlite:x --bogus",
                "unknown",
            ),
            ("--listen", "needs a value"),
            (
                "--listen 127.0.0.1:1 --database sqlite:x --insecure-loopback-http \
                 --mynaportal-tokens m",
                "--basic4-key",
            ),
            (
                "--listen 127.0.0.1:1 --database sqlite:x --max-connections 0",
                "whole number",
            ),
            (
                "--listen 127.0.0.1:1 --database sqlite:x --max-connections-per-ip=-3",
                "whole number",
            ),
            (
                "--listen 127.0.0.1:1 --database sqlite:x --max-connections 5 \
                 --max-connections 6",
                "twice",
            ),
        ] {
            let e = parse(args).expect_err(args);
            assert!(e.contains(needle), "{args}: {e}");
        }
    }
}
