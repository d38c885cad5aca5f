//! End-to-end bench for the HTTP server: a test TLS CA and server certificate made at test
//! time, a tokens file, an imported license CSV, and the real `mynalink-server` binary
//! listening on 127.0.0.1:0.
#![allow(dead_code)]

use std::io::Read;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mynalink_link::backend::Backend;
use mynalink_server::scratch::{self, ScratchDatabase};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub const BIN: &str = env!("CARGO_BIN_EXE_mynalink-server");

/// The token of `common::TERMINAL`.
pub const TOKEN: &str = "counter-03-token-0123456789abcdef";
/// A second configured terminal.
pub const OTHER_TERMINAL: &str = "tokyo-fuchu-kiosk-01";
pub const OTHER_TOKEN: &str = "kiosk-01-token-fedcba9876543210";
/// Mynaportal's caller id and token (`--mynaportal-tokens`).
pub const PORTAL: &str = "mynaportal-01";
pub const PORTAL_TOKEN: &str = "portal-token-00112233445566778899";
/// An administrator (`--admin-tokens`).
pub const ADMIN: &str = "ops-admin-01";
pub const ADMIN_TOKEN: &str = "admin-token-99887766554433221100";

pub struct Files {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub tokens: PathBuf,
    pub trust_anchor: PathBuf,
    /// The `--database` URL.
    pub database: String,
    pub db: ScratchDatabase,
}

impl Files {
    /// Certificates, tokens and a fresh database of the given kind with the given CSV rows
    /// (after the header), imported with the binary.
    pub fn new(backend: scratch::Backend, csv_rows: &str) -> Files {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca_pem, cert_pem, key_pem) = tls_certificates();
        let cert = dir.path().join("server.pem");
        let key = dir.path().join("server.key");
        std::fs::write(&cert, cert_pem).expect("write cert");
        write_secret(&key, key_pem);

        let tokens = dir.path().join("tokens");
        write_secret(
            &tokens,
            format!(
                "# terminal  sha256(token)\n{} {}\n{OTHER_TERMINAL} {}  # kiosk\n",
                crate::common::TERMINAL,
                hex::encode(Sha256::digest(TOKEN)),
                hex::encode(Sha256::digest(OTHER_TOKEN)),
            ),
        );

        // The simulated card's signing root, as an operator would configure a test root.
        let trust_anchor = dir.path().join("sign-test-root.der");
        std::fs::write(&trust_anchor, mynalink_simcard::sign_test_root_der()).expect("root");

        let db = ScratchDatabase::create(backend).expect("scratch database");
        let database = db.url().to_string();
        let csv = dir.path().join("licenses.csv");
        std::fs::write(
            &csv,
            format!("license_number,holding,name,birth_date,status\n{csv_rows}"),
        )
        .expect("write csv");
        let out = Command::new(BIN)
            .args(["import-licenses", "--database", &database])
            .arg(&csv)
            .output()
            .expect("run import-licenses");
        assert!(
            out.status.success(),
            "import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        Files {
            dir,
            ca_pem,
            cert,
            key,
            tokens,
            trust_anchor,
            database,
            db,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `--basic4-key FILE` with a new key that `basic4-key generate` wrote.
    pub fn basic4_key_args(&self) -> Vec<String> {
        let key = self.path("basic4.key");
        let out = Command::new(BIN)
            .args(["basic4-key", "generate", "--out"])
            .arg(&key)
            .output()
            .expect("run basic4-key generate");
        assert!(
            out.status.success(),
            "basic4-key generate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        vec!["--basic4-key".into(), path_arg(&key)]
    }

    /// `--mynaportal-tokens` and `--admin-tokens` with [`PORTAL_TOKEN`] and [`ADMIN_TOKEN`],
    /// and the `--basic4-key` Mynaportal's credentials need.
    pub fn portal_and_admin_args(&self) -> Vec<String> {
        let portal = self.path("mynaportal-tokens");
        write_secret(
            &portal,
            format!("{PORTAL} {}\n", hex::encode(Sha256::digest(PORTAL_TOKEN))),
        );
        let admin = self.path("admin-tokens");
        write_secret(
            &admin,
            format!("{ADMIN} {}\n", hex::encode(Sha256::digest(ADMIN_TOKEN))),
        );
        let mut args = vec![
            "--mynaportal-tokens".into(),
            path_arg(&portal),
            "--admin-tokens".into(),
            path_arg(&admin),
        ];
        args.extend(self.basic4_key_args());
        args
    }

    /// The usual TLS server arguments.
    pub fn tls_args(&self) -> Vec<String> {
        vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--database".into(),
            self.database.clone(),
            "--tls-cert".into(),
            path_arg(&self.cert),
            "--tls-key".into(),
            path_arg(&self.key),
            "--terminal-tokens".into(),
            path_arg(&self.tokens),
            "--trust-anchor".into(),
            path_arg(&self.trust_anchor),
            // That anchor is the simulated card's TEST root.
            "--allow-test-root".into(),
            // Not about revocation (the revocation tests give sources instead).
            "--revocation".into(),
            "off".into(),
        ]
    }

    pub fn backend(&self, url: &str, token: &str) -> Backend {
        Backend::new(
            url,
            Zeroizing::new(token.to_string()),
            Some(self.ca_pem.as_bytes()),
        )
        .expect("backend client")
    }

    /// A plain HTTP client that trusts the test CA, for what `Backend` does not cover.
    pub fn http(&self) -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("CA"),
            )
            .timeout(Duration::from_secs(15))
            .build()
            .expect("client")
    }
}

/// Writes a file the server treats as secret (keys, token files): mode 0600, as it requires.
pub fn write_secret(path: &Path, contents: impl AsRef<[u8]>) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).expect("write secret file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
}

pub fn path_arg(path: &Path) -> String {
    path.to_str().expect("UTF-8 temp path").to_string()
}

/// A test CA (PEM) and a server certificate for 127.0.0.1 and localhost it signed, with
/// the server's key (PEM).
pub fn tls_certificates() -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mynalink test TLS CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
        .expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "mynalink test backend");
    let server_cert = params.signed_by(&server_key, &issuer).expect("server cert");
    (ca_cert.pem(), server_cert.pem(), server_key.serialize_pem())
}

/// A running server; killed when dropped if the test did not stop it.
pub struct Server {
    child: Child,
    pub url: String,
    /// What the server wrote to standard error, when started with [`Server::spawn`].
    stderr: Option<Arc<Mutex<String>>>,
}

impl Server {
    /// Starts the binary and waits for its `listening on URL` line.
    pub fn start(args: &[String]) -> Server {
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start server");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line).expect("read");
        if read == 0 {
            let status = child.wait().expect("wait");
            panic!("the server exited before listening: {status}");
        }
        let url = line
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Server {
            child,
            url: format!("{url}/"),
            stderr: None,
        }
    }

    /// Starts `command` (the binary with `serve` and its arguments, set up as the test
    /// needs), keeps what it writes to standard error (also passed on to the test's), and
    /// waits for its `listening on URL` line.
    pub fn spawn(mut command: Command) -> Server {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start server");
        let mut stderr = child.stderr.take().expect("stderr");
        let text = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&text);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stderr.read(&mut buf) {
                let chunk = String::from_utf8_lossy(&buf[..n]);
                eprint!("{chunk}");
                sink.lock().expect("stderr text").push_str(&chunk);
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line).expect("read");
        if read == 0 {
            let status = child.wait().expect("wait");
            std::thread::sleep(Duration::from_millis(100));
            panic!(
                "the server exited before listening: {status}\n{}",
                text.lock().expect("stderr text")
            );
        }
        let url = line
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Server {
            child,
            url: format!("{url}/"),
            stderr: Some(text),
        }
    }

    /// What the server has written to standard error so far ([`Server::spawn`] only).
    pub fn stderr_text(&self) -> String {
        self.stderr
            .as_ref()
            .map(|t| t.lock().expect("stderr text").clone())
            .unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `serve` expecting it to refuse to start; returns (exit code, stderr).
pub fn serve_refused(args: &[String]) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start server");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server started although it should have refused: {args:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    assert!(
        out.stdout.is_empty(),
        "a refused server printed {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
