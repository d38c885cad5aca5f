//! The real `mynalink-server` binary over HTTPS for end-to-end tests of the client: TLS
//! material and a seal key made at test time, a tokens file, license records imported with
//! the binary's own `import-licenses`, and a server process that can be killed and
//! restarted on the same database.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use super::x509;

pub const TERMINAL: &str = "reliability-counter-01";
pub const TOKEN: &str = "reliability-token-0123456789abcdef";

/// The server binary next to the client's, built (or found up to date) once per test
/// process: a test of the root package has no `CARGO_BIN_EXE_` of another package.
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let client = Path::new(env!("CARGO_BIN_EXE_mynalink"));
        let profile_dir = client.parent().expect("the client's directory");
        let target_dir = profile_dir.parent().expect("the target directory");
        let mut build = Command::new(env!("CARGO"));
        build
            .args(["build", "--quiet", "-p", "mynalink-server", "--bin"])
            .arg("mynalink-server")
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => {}
            Some("release") => {
                build.arg("--release");
            }
            Some(other) => {
                build.args(["--profile", other]);
            }
            None => panic!("unexpected binary location {}", client.display()),
        }
        let status = build.status().expect("run cargo build for mynalink-server");
        assert!(status.success(), "building mynalink-server failed");
        let binary = profile_dir.join("mynalink-server");
        assert!(binary.is_file(), "{} is missing", binary.display());
        binary
    })
}

/// Everything a backend and its terminal need, in one directory.
pub struct Setup {
    pub dir: PathBuf,
    pub database: String,
    pub ca_pem: PathBuf,
    pub token_file: PathBuf,
    pub seal_public: PathBuf,
    server_args: Vec<String>,
}

impl Setup {
    /// `records`: CSV rows after the header `license_number,holding,name,birth_date,status`.
    /// `anchors`: extra trusted signing roots (DER) besides the simulated card's.
    pub fn new(dir: &Path, records: &str, anchors: &[&[u8]]) -> Setup {
        std::fs::create_dir_all(dir).expect("backend dir");
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).expect("write a backend file");
            path
        };
        // Keys and tokens: the server and the client refuse them readable by others.
        let write_secret = |name: &str, bytes: &[u8]| {
            use std::os::unix::fs::PermissionsExt;
            let path = write(name, bytes);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .expect("chmod 600");
            path
        };
        let (ca, cert, key) = x509::tls();
        let ca_pem = write("tls-ca.pem", ca.as_bytes());
        let cert = write("tls-cert.pem", cert.as_bytes());
        let tls_key = write_secret("tls-key.pem", key.as_bytes());
        let seal_pem = x509::seal_key().to_pkcs8_pem().expect("seal key PEM");
        let seal_key = write_secret("seal-key.pem", seal_pem.as_bytes());
        let seal_public = write(
            "seal-public.pem",
            x509::seal_key()
                .public_key()
                .to_pem()
                .expect("public key PEM")
                .as_bytes(),
        );
        let token_file = write_secret("token", format!("{TOKEN}\n").as_bytes());
        let tokens = write_secret(
            "terminal-tokens",
            format!("{TERMINAL} {}\n", hex::encode(Sha256::digest(TOKEN))).as_bytes(),
        );
        let mut anchor_paths = vec![write(
            "sim-root.der",
            include_bytes!("../../assets/sim-sign-test-root.der"),
        )];
        for (i, anchor) in anchors.iter().enumerate() {
            anchor_paths.push(write(&format!("anchor-{i}.der"), anchor));
        }
        let database = format!("sqlite:{}", dir.join("backend.sqlite").display());
        let csv = write(
            "licenses.csv",
            format!("license_number,holding,name,birth_date,status\n{records}").as_bytes(),
        );
        let out = Command::new(binary())
            .args(["import-licenses", "--database", &database])
            .arg(&csv)
            .output()
            .expect("run import-licenses");
        assert!(
            out.status.success(),
            "import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let path = |p: &Path| p.display().to_string();
        let mut server_args: Vec<String> = vec![
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--database".into(),
            database.clone(),
            "--tls-cert".into(),
            path(&cert),
            "--tls-key".into(),
            path(&tls_key),
            "--terminal-tokens".into(),
            path(&tokens),
            "--seal-key".into(),
            path(&seal_key),
        ];
        for anchor in &anchor_paths {
            server_args.push("--trust-anchor".into());
            server_args.push(path(anchor));
        }
        // The first anchor is the simulated card's TEST root.
        server_args.push("--allow-test-root".into());
        // Not about revocation unless the test adds sources ([`Setup::with_revocation`]).
        server_args.extend(["--revocation".into(), "off".into()]);
        Setup {
            dir: dir.to_path_buf(),
            database,
            ca_pem,
            token_file,
            seal_public,
            server_args,
        }
    }

    /// Checks certificates for revocation with `args` (`--ocsp URL`, `--crl …`,
    /// `--revocation …`) instead of `--revocation off`.
    pub fn with_revocation(mut self, args: &[String]) -> Setup {
        let at = self
            .server_args
            .iter()
            .position(|a| a == "--revocation")
            .expect("--revocation off");
        self.server_args.drain(at..at + 2);
        self.server_args.extend(args.iter().cloned());
        self
    }

    /// `mynalink-server recheck` on this backend's database and trust anchors with the
    /// revocation options `args`: exit status, standard output, standard error.
    pub fn recheck(&self, args: &[String]) -> (Option<i32>, String, String) {
        let mut command = Command::new(binary());
        command.args(["recheck", "--database", &self.database]);
        let anchors = self
            .server_args
            .iter()
            .enumerate()
            .filter(|(_, a)| *a == "--trust-anchor");
        for (i, _) in anchors {
            command.args(["--trust-anchor", &self.server_args[i + 1]]);
        }
        let out = command
            .arg("--allow-test-root")
            .args(args)
            .output()
            .expect("run mynalink-server recheck");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Starts the server on a free port and waits until it listens.
    pub fn start(&self) -> ServerProcess {
        let mut child = Command::new(binary())
            .args(&self.server_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mynalink-server");
        let stdout = child.stdout.take().expect("server stdout");
        let mut line = String::new();
        let read = BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the server's first line");
        if read == 0 {
            let status = child.wait().expect("wait");
            panic!("mynalink-server exited before listening: {status}");
        }
        let url = line
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        assert!(url.starts_with("https://127.0.0.1:"), "{url}");
        ServerProcess {
            child,
            url: format!("{url}/"),
        }
    }

    /// The terminal's own client, straight to `url` (not through a proxy).
    pub fn client(&self, url: &str) -> mynalink_link::backend::Backend {
        let ca = std::fs::read(&self.ca_pem).expect("CA");
        mynalink_link::backend::Backend::new(
            url,
            zeroize::Zeroizing::new(TOKEN.to_string()),
            Some(&ca),
        )
        .expect("backend client")
    }

    /// The backend's decisions so far, from its audit table: (code, license number).
    pub fn audit(&self) -> Vec<(String, Option<String>)> {
        let mut store =
            mynalink_server::Store::open_url(&self.database).expect("open the backend store");
        store
            .audit_rows()
            .expect("audit rows")
            .into_iter()
            .map(|row| (row.code, row.license_number))
            .collect()
    }

    /// How many times the backend decided `code` for `license`.
    pub fn decisions(&self, code: &str, license: &str) -> usize {
        self.audit()
            .iter()
            .filter(|(c, l)| c == code && l.as_deref() == Some(license))
            .count()
    }
}

/// A running server; SIGKILLed when dropped.
pub struct ServerProcess {
    child: Child,
    pub url: String,
}

impl ServerProcess {
    /// SIGKILL: no graceful shutdown, no flushing of anything.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
