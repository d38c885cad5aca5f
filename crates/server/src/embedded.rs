//! A reference backend inside a process, for demos, end-to-end tests and load tests: SQLite
//! in a directory of its own (or a given database), given trust anchors, given license
//! records, plain HTTP on a loopback port. Stopping it keeps the directory (a later start on
//! the same port brings the same backend back); `remove` deletes it.

use std::path::PathBuf;
use std::thread::JoinHandle;

use mynalink_link::private_file;
use mynalink_link::seal::{RecipientKey, SealPrivateKey};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::secret_file::{read_secret, write_new_secret};

/// What the backend is set up with.
pub struct Setup<'a> {
    pub dir: PathBuf,
    /// Trusted roots (DER or PEM), e.g. the simulated card's TEST root.
    pub trust_anchors: &'a [&'a [u8]],
    /// License records as `import-licenses` CSV.
    pub records_csv: &'a str,
    /// The terminal the token belongs to.
    pub terminal_id: &'a str,
    /// 0 for any free port.
    pub port: u16,
}

pub struct EmbeddedBackend {
    pub url: String,
    pub token: Zeroizing<String>,
    /// The backend's public key, which the outbox seals certificates to.
    pub public_key: RecipientKey,
    pub dir: PathBuf,
    /// The `--database` URL it serves from.
    pub database: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedBackend {
    /// A fresh directory under the system's temporary directory.
    pub fn temp_dir(prefix: &str) -> PathBuf {
        let mut nonce = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut nonce);
        std::env::temp_dir().join(format!("{prefix}-{}", hex::encode(nonce)))
    }

    /// Starts the backend; if `setup.dir` already holds one (keys, token, database), that
    /// one comes back.
    pub fn start(setup: &Setup) -> Result<EmbeddedBackend, String> {
        EmbeddedBackend::start_on(setup, None)
    }

    /// The same on the database `database` names (`sqlite:PATH` or `postgres://…`), or on
    /// SQLite in `setup.dir` when it is `None`.
    pub fn start_on(setup: &Setup, database: Option<&str>) -> Result<EmbeddedBackend, String> {
        EmbeddedBackend::start_checking(setup, database, &[])
    }

    /// [`EmbeddedBackend::start_on`], checking certificates for revocation with
    /// `revocation` (`--ocsp URL`, `--crl …`, `--revocation …`) instead of
    /// `--revocation off` when it is not empty (the load test with OCSP in the path).
    pub fn start_checking(
        setup: &Setup,
        database: Option<&str>,
        revocation: &[String],
    ) -> Result<EmbeddedBackend, String> {
        let dir = setup.dir.clone();
        // Keys and the token live here: the directory is the owner's only, and so is every
        // file written in it.
        private_file::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            private_file::write(&path, bytes)
                .map(|()| path)
                .map_err(|e| format!("{name}: {e}"))
        };
        // Secrets are 0600 in a 0700 directory: the server refuses them otherwise.
        let write_secret = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            write_new_secret(&path, "embedded backend file", bytes)
                .map(|()| path)
                .map_err(|e| e.to_string())
        };

        // A key for sealing the outbox's certificates and a terminal token, made once per
        // directory.
        let key_path = dir.join("seal-key.pem");
        let key = if key_path.exists() {
            let pem = read_secret(&key_path, "seal key").map_err(|e| e.to_string())?;
            SealPrivateKey::parse(&pem).map_err(|e| format!("seal key: {e}"))?
        } else {
            let key = SealPrivateKey::generate().map_err(|e| format!("seal key: {e}"))?;
            let pem = key.to_pkcs8_pem().map_err(|e| format!("seal key: {e}"))?;
            write_secret("seal-key.pem", pem.as_bytes())?;
            key
        };
        let public_key = key.public_key().clone();
        drop(key);
        // Terminals are configured with this file (`backend_key`).
        let public_pem = public_key.to_pem().map_err(|e| format!("seal key: {e}"))?;
        write("seal-public.pem", public_pem.as_bytes())?;
        let token_path = dir.join("token");
        let token = if token_path.exists() {
            let bytes = read_secret(&token_path, "token").map_err(|e| e.to_string())?;
            Zeroizing::new(String::from_utf8_lossy(&bytes).trim().to_string())
        } else {
            let mut bytes = [0u8; 24];
            rand::thread_rng().fill_bytes(&mut bytes);
            let token = Zeroizing::new(hex::encode(bytes));
            write_secret("token", token.as_bytes())?;
            token
        };
        let token_hash = hex::encode(Sha256::digest(token.as_bytes()));
        let tokens = dir.join("terminal-tokens");
        let _ = std::fs::remove_file(&tokens);
        write_secret(
            "terminal-tokens",
            format!("{} {token_hash}\n", setup.terminal_id).as_bytes(),
        )?;
        let mut anchor_args = Vec::new();
        for (i, anchor) in setup.trust_anchors.iter().enumerate() {
            let path = write(&format!("anchor-{i}.der"), anchor)?;
            anchor_args.push("--trust-anchor".to_string());
            anchor_args.push(path.display().to_string());
        }
        let seal_key = key_path;
        // A throw-away key for the second stage's basic-4 hashes (mode 0600), made once per
        // directory like the seal key.
        let basic4_key = dir.join("basic4.key");
        if !basic4_key.exists() {
            crate::basic4_key::Basic4Key::generate()
                .write_new(&basic4_key)
                .map_err(|e| e.to_string())?;
        }
        let database = database.map_or_else(
            || format!("sqlite:{}", dir.join("backend.db").display()),
            str::to_string,
        );

        let mut store = crate::store::Store::open_url(&database).map_err(|e| e.to_string())?;
        crate::import::import_text(&mut store, setup.records_csv, &crate::now_text())
            .map_err(|e| e.to_string())?;
        drop(store);

        let mut args: Vec<String> = [
            "--listen",
            "127.0.0.1:0",
            "--database",
            &database,
            "--insecure-loopback-http",
            // The demo and the tests trust the simulated card's TEST root.
            "--allow-test-root",
            // The demo has no revocation source: its certificates are the simulated card's.
            "--revocation",
            "off",
            "--terminal-tokens",
            &tokens.display().to_string(),
            "--seal-key",
            &seal_key.display().to_string(),
            "--basic4-key",
            &basic4_key.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(anchor_args);
        if !revocation.is_empty() {
            if let Some(at) = args.iter().position(|a| a == "--revocation") {
                args.drain(at..at + 2);
            }
            args.extend(revocation.iter().cloned());
        }
        let options = crate::serve::ServeOptions::parse(&args)?;
        let prepared = crate::serve::prepare(&options).map_err(|e| e.to_string())?;
        let app = crate::http::router(prepared.state);

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", setup.port)))
            .map_err(|e| format!("listen: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        Ok(EmbeddedBackend {
            url: format!("http://127.0.0.1:{port}/"),
            token,
            public_key,
            dir,
            database,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }
}

impl EmbeddedBackend {
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .unwrap_or(0)
    }

    /// Stops serving; the directory stays.
    pub fn stop(mut self) {
        self.shut_down();
    }

    /// Stops serving and deletes the directory.
    pub fn remove(mut self) {
        self.shut_down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn shut_down(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for EmbeddedBackend {
    fn drop(&mut self) {
        self.shut_down();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_second_stage_key_is_made_once_per_directory_and_private() {
        let dir = EmbeddedBackend::temp_dir("mynalink-embedded-test");
        let setup = Setup {
            dir: dir.clone(),
            trust_anchors: &[],
            records_csv: "license_number,holding,name,birth_date,status\n",
            terminal_id: "t1",
            port: 0,
        };
        let backend = EmbeddedBackend::start(&setup).expect("start");
        let key = dir.join("basic4.key");
        let mode = std::fs::metadata(&key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let first = std::fs::read(&key).expect("read");
        backend.stop();
        let backend = EmbeddedBackend::start(&setup).expect("start again");
        assert_eq!(std::fs::read(&key).expect("read"), first);
        backend.remove();
        assert!(!dir.exists());
    }
}
