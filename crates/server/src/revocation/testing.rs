//! A test PKI made with OpenSSL, for tests and load tests of revocation: a CA that issues
//! JPKI-profile signing certificates (`openssl ca`, with the holder's basic-4 as
//! otherNames), revokes them with a reason, makes CRLs (`openssl ca -gencrl`), and runs
//! OpenSSL's OCSP responder on loopback (`openssl ocsp -index`). Nothing here is used by
//! the server itself; like [`crate::scratch`] it exists so that tests drive real
//! components. Needs the `openssl` command (and `faketime` for responders with a shifted
//! clock).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The basic-4 of the test holder, as the simulated card and the tests' license records
/// have it.
pub const HOLDER_NAME: &str = "試験\u{3000}花子";
pub const HOLDER_BIRTH: &str = "419900102";
const HOLDER_ADDRESS: &str = "東京都千代田区試験町一丁目２番３号";

fn config(dir: &Path) -> String {
    format!(
        r#"[ ca ]
default_ca = testca
[ testca ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/issued
serial = $dir/serial
crlnumber = $dir/crlnumber
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
default_days = 1000
default_crl_days = 1
policy = anything
unique_subject = no
copy_extensions = none
email_in_dn = no
utf8 = yes
string_mask = utf8only
[ anything ]
countryName = optional
organizationName = optional
commonName = supplied
[ req ]
distinguished_name = dn
utf8 = yes
string_mask = utf8only
[ dn ]
[ v3_ca ]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[ jpki_sign ]
keyUsage = critical,digitalSignature,nonRepudiation
subjectAltName = @basic4
authorityKeyIdentifier = keyid
[ basic4 ]
# FORMAT:UTF8: the value is UTF-8 already (without it OpenSSL reads it as Latin-1 and
# encodes it twice).
otherName.1 = 1.2.392.200149.8.5.5.1;FORMAT:UTF8,UTF8:{HOLDER_NAME}
otherName.2 = 1.2.392.200149.8.5.5.4;UTF8:{HOLDER_BIRTH}
otherName.3 = 1.2.392.200149.8.5.5.3;UTF8:2
otherName.4 = 1.2.392.200149.8.5.5.5;FORMAT:UTF8,UTF8:{HOLDER_ADDRESS}
otherName.5 = 1.2.392.200149.8.5.5.2;UTF8:00000
otherName.6 = 1.2.392.200149.8.5.5.6;UTF8:00000000000000000
[ ocsp_signer ]
keyUsage = critical,digitalSignature
extendedKeyUsage = OCSPSigning
authorityKeyIdentifier = keyid
[ not_ocsp ]
keyUsage = critical,digitalSignature
authorityKeyIdentifier = keyid
"#,
        dir = dir.display()
    )
}

fn openssl(dir: &Path, args: &[&str]) -> Result<Vec<u8>, String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run openssl (install it): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out.stdout)
}

/// OpenSSL's date form for `-startdate`/`-enddate`.
fn openssl_date(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn pem_to_der(pem: &[u8]) -> Result<Vec<u8>, String> {
    super::pem_or_der(pem, "CERTIFICATE")
}

/// A CA in its own directory, run by `openssl ca`.
#[derive(Debug, Clone)]
pub struct TestCa {
    dir: PathBuf,
    counter: Arc<std::sync::atomic::AtomicU32>,
}

/// Who signs a responder's answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponderSigner {
    /// The CA's own key.
    Ca,
    /// A certificate the CA issued for OCSP signing.
    Delegated,
}

impl TestCa {
    fn prepare(dir: &Path) -> Result<TestCa, String> {
        std::fs::create_dir_all(dir.join("issued")).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("index.txt"), "").map_err(|e| e.to_string())?;
        std::fs::write(dir.join("index.txt.attr"), "unique_subject = no\n")
            .map_err(|e| e.to_string())?;
        std::fs::write(dir.join("serial"), "5E0100\n").map_err(|e| e.to_string())?;
        std::fs::write(dir.join("crlnumber"), "01\n").map_err(|e| e.to_string())?;
        std::fs::write(dir.join("ca.cnf"), config(dir)).map_err(|e| e.to_string())?;
        Ok(TestCa {
            dir: dir.to_path_buf(),
            counter: Arc::default(),
        })
    }

    /// A new CA (RSA-2048) named `common_name`, valid from a year ago for ten years.
    pub fn create(dir: &Path, common_name: &str) -> Result<TestCa, String> {
        let ca = TestCa::prepare(dir)?;
        openssl(dir, &["genrsa", "-out", "ca.key", "2048"])?;
        ca.self_sign(common_name)?;
        Ok(ca)
    }

    fn self_sign(&self, common_name: &str) -> Result<(), String> {
        let now = time::OffsetDateTime::now_utc();
        let subject = format!("/C=JP/O=JPKI-TEST/CN={common_name}");
        openssl(
            &self.dir,
            &[
                "req", "-new", "-key", "ca.key", "-subj", &subject, "-config", "ca.cnf", "-out",
                "ca.csr",
            ],
        )?;
        openssl(
            &self.dir,
            &[
                "ca",
                "-batch",
                "-config",
                "ca.cnf",
                "-selfsign",
                "-keyfile",
                "ca.key",
                "-in",
                "ca.csr",
                "-out",
                "ca.pem",
                "-notext",
                "-extensions",
                "v3_ca",
                "-startdate",
                &openssl_date(now - time::Duration::days(365)),
                "-enddate",
                &openssl_date(now + time::Duration::days(3650)),
            ],
        )?;
        Ok(())
    }

    /// Takes over an existing CA certificate (DER) and its private key (PKCS#1 or PKCS#8
    /// DER), e.g. the simulated card's TEST root, so that its certificates can be revoked.
    pub fn adopt(dir: &Path, ca_der: &[u8], key_der: &[u8]) -> Result<TestCa, String> {
        let ca = TestCa::prepare(dir)?;
        std::fs::write(dir.join("ca.der"), ca_der).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("ca.key.der"), key_der).map_err(|e| e.to_string())?;
        openssl(
            dir,
            &["x509", "-inform", "DER", "-in", "ca.der", "-out", "ca.pem"],
        )?;
        openssl(
            dir,
            &[
                "pkey",
                "-inform",
                "DER",
                "-in",
                "ca.key.der",
                "-out",
                "ca.key",
            ],
        )?;
        Ok(ca)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn ca_pem_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn ca_der(&self) -> Result<Vec<u8>, String> {
        let pem = std::fs::read(self.ca_pem_path()).map_err(|e| e.to_string())?;
        pem_to_der(&pem)
    }

    fn next_name(&self, stem: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        format!("{stem}-{n}")
    }

    /// Issues a certificate from `extensions` for the key in `key_pem` (PKCS#8 PEM).
    fn issue(
        &self,
        key_pem: &str,
        subject: &str,
        extensions: &str,
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> Result<(Vec<u8>, PathBuf), String> {
        let name = self.next_name(extensions);
        let key = self.dir.join(format!("{name}.key"));
        std::fs::write(&key, key_pem).map_err(|e| e.to_string())?;
        let key_arg = key.display().to_string();
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        openssl(
            &self.dir,
            &[
                "req", "-new", "-key", &key_arg, "-subj", subject, "-config", "ca.cnf", "-out",
                &csr,
            ],
        )?;
        openssl(
            &self.dir,
            &[
                "ca",
                "-batch",
                "-config",
                "ca.cnf",
                "-in",
                &csr,
                "-out",
                &pem,
                "-notext",
                "-extensions",
                extensions,
                "-startdate",
                &openssl_date(not_before),
                "-enddate",
                &openssl_date(not_after),
            ],
        )?;
        let bytes = std::fs::read(self.dir.join(&pem)).map_err(|e| e.to_string())?;
        Ok((pem_to_der(&bytes)?, key))
    }

    /// A JPKI-profile signing certificate for the test holder ([`HOLDER_NAME`], born
    /// 1990-01-02) with the RSA-2048 key in `key_pem` (PKCS#8 PEM): valid from 30 days ago
    /// for `days` days. DER.
    pub fn issue_holder(&self, key_pem: &str, days: i64) -> Result<Vec<u8>, String> {
        let now = time::OffsetDateTime::now_utc();
        self.issue(
            key_pem,
            "/C=JP/CN=mynalink test holder",
            "jpki_sign",
            now - time::Duration::days(30),
            now - time::Duration::days(30) + time::Duration::days(days),
        )
        .map(|(der, _)| der)
    }

    /// A responder certificate this CA issued, for OCSP signing (`for_ocsp`) or not: the
    /// certificate (PEM path) and its new key (PEM path).
    pub fn responder_certificate(&self, for_ocsp: bool) -> Result<(PathBuf, PathBuf), String> {
        let name = self.next_name("responder-key");
        let key = self.dir.join(format!("{name}.pem"));
        openssl(
            &self.dir,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                &key.display().to_string(),
            ],
        )?;
        let key_pem = std::fs::read_to_string(&key).map_err(|e| e.to_string())?;
        let now = time::OffsetDateTime::now_utc();
        let (der, key_path) = self.issue(
            &key_pem,
            "/C=JP/CN=mynalink test OCSP responder",
            if for_ocsp { "ocsp_signer" } else { "not_ocsp" },
            now - time::Duration::days(1),
            now + time::Duration::days(365),
        )?;
        let cert = key_path.with_extension("crt");
        std::fs::write(&cert, pem(&der, "CERTIFICATE")).map_err(|e| e.to_string())?;
        Ok((cert, key_path))
    }

    fn with_cert_file<T>(
        &self,
        der: &[u8],
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, String> {
        let name = format!("{}.pem", self.next_name("subject"));
        std::fs::write(self.dir.join(&name), pem(der, "CERTIFICATE")).map_err(|e| e.to_string())?;
        f(&name)
    }

    /// Enters a certificate this CA issued elsewhere (e.g. the simulated card's) in its
    /// index as valid, so that the responder answers `good` for it.
    pub fn register_valid(&self, der: &[u8]) -> Result<(), String> {
        self.with_cert_file(der, |file| {
            openssl(&self.dir, &["ca", "-config", "ca.cnf", "-valid", file]).map(drop)
        })
    }

    /// Revokes a certificate with an RFC 5280 reason (`keyCompromise`,
    /// `affiliationChanged`, `superseded`, `cessationOfOperation`, …).
    pub fn revoke(&self, der: &[u8], reason: &str) -> Result<(), String> {
        self.with_cert_file(der, |file| {
            openssl(
                &self.dir,
                &[
                    "ca",
                    "-config",
                    "ca.cnf",
                    "-revoke",
                    file,
                    "-crl_reason",
                    reason,
                ],
            )
            .map(drop)
        })
    }

    /// Releases a certificate put on hold (`certificateHold`, the one reversible reason):
    /// its index entry becomes valid again. The index is replaced, not rewritten in place,
    /// as `openssl ca` does, so that a running responder sees the change.
    pub fn release_hold(&self, der: &[u8]) -> Result<(), String> {
        let serial = mynalink_link::certificate::SigningCertificate::parse_any(der)
            .map_err(|e| e.to_string())?
            .serial_hex()
            .to_uppercase();
        let index =
            std::fs::read_to_string(self.dir.join("index.txt")).map_err(|e| e.to_string())?;
        let mut released = false;
        let lines: Vec<String> = index
            .lines()
            .map(|line| {
                let fields: Vec<&str> = line.split('\t').collect();
                let held = fields.len() == 6
                    && fields[0] == "R"
                    && fields[2].ends_with(",certificateHold")
                    && fields[3].trim_start_matches('0') == serial.trim_start_matches('0');
                if held {
                    released = true;
                    format!(
                        "V\t{}\t\t{}\t{}\t{}",
                        fields[1], fields[3], fields[4], fields[5]
                    )
                } else {
                    line.to_string()
                }
            })
            .collect();
        if !released {
            return Err(format!("no certificate {serial} on hold"));
        }
        let new = self.dir.join("index.txt.released");
        std::fs::write(&new, lines.join("\n") + "\n").map_err(|e| e.to_string())?;
        std::fs::rename(&new, self.dir.join("index.txt")).map_err(|e| e.to_string())
    }

    /// A CRL (DER) valid for `seconds` from now, written to `file` in the CA's directory.
    pub fn crl(&self, seconds: u64, file: &str) -> Result<PathBuf, String> {
        let pem = format!("{file}.pem");
        openssl(
            &self.dir,
            &[
                "ca",
                "-config",
                "ca.cnf",
                "-gencrl",
                "-crlsec",
                &seconds.to_string(),
                "-out",
                &pem,
            ],
        )?;
        openssl(
            &self.dir,
            &["crl", "-in", &pem, "-outform", "DER", "-out", file],
        )?;
        Ok(self.dir.join(file))
    }

    /// Starts `openssl ocsp` for this CA's index on a free port; answers carry a
    /// `nextUpdate` `next_minutes` after `thisUpdate`. `signed_by`: the CA that signs
    /// (`self` or another, to test refusals) and how. `clock`: a `faketime -f` offset
    /// such as `-2d` to run the responder with a shifted clock.
    pub fn responder(
        &self,
        signed_by: &TestCa,
        signer: ResponderSigner,
        next_minutes: u32,
        clock: Option<&str>,
    ) -> Result<OcspResponder, String> {
        let (rsigner, rkey) = match signer {
            ResponderSigner::Ca => (signed_by.ca_pem_path(), signed_by.dir.join("ca.key")),
            ResponderSigner::Delegated => signed_by.responder_certificate(true)?,
        };
        OcspResponder::start(self, &rsigner, &rkey, next_minutes, clock)
    }
}

/// PEM text of DER bytes.
pub fn pem(der: &[u8], label: &str) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A running `openssl ocsp` responder; stopped when dropped.
#[derive(Debug)]
pub struct OcspResponder {
    child: Child,
    pub port: u16,
    pub url: String,
    /// The responder's signing certificate (PEM).
    pub signer_cert: PathBuf,
    ca_dir: PathBuf,
}

impl OcspResponder {
    fn start(
        ca: &TestCa,
        rsigner: &Path,
        rkey: &Path,
        next_minutes: u32,
        clock: Option<&str>,
    ) -> Result<OcspResponder, String> {
        let mut command = match clock {
            Some(offset) => {
                let mut c = Command::new("faketime");
                c.args(["-f", offset, "openssl"]);
                c
            }
            None => Command::new("openssl"),
        };
        let mut child = command
            .args(["ocsp", "-index", "index.txt", "-CA", "ca.pem", "-rsigner"])
            .arg(rsigner)
            .arg("-rkey")
            .arg(rkey)
            .args(["-port", "0", "-nmin", &next_minutes.to_string()])
            .current_dir(&ca.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start openssl ocsp (or faketime): {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        // `ACCEPT [::]:PORT PID=N`
        let read = BufReader::new(stdout).read_line(&mut line);
        let port = line
            .split_whitespace()
            .nth(1)
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse::<u16>().ok());
        let Some(port) = port.filter(|_| read.is_ok()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("openssl ocsp did not say its port: {line:?}"));
        };
        Ok(OcspResponder {
            child,
            port,
            url: format!("http://127.0.0.1:{port}/"),
            signer_cert: rsigner.to_path_buf(),
            ca_dir: ca.dir.clone(),
        })
    }

    /// Makes the responder read its CA's index again, after a revocation: `openssl ocsp`
    /// looks for a changed index only before it accepts a connection, i.e. while it is
    /// already waiting for the next one. One throwaway query moves it on to that check.
    pub fn reload_index(&self) -> Result<(), String> {
        openssl(
            &self.ca_dir,
            &[
                "ocsp",
                "-issuer",
                "ca.pem",
                "-serial",
                "0x1",
                "-url",
                &self.url,
                "-noverify",
            ],
        )
        .map(drop)
    }

    /// Stops the responder (it no longer answers; its port is free).
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OcspResponder {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback HTTP server that answers every request with the same body: a CRL
/// distribution point, or a cache replaying a recorded OCSP response. Stops when dropped.
#[derive(Debug)]
pub struct FixedHttp {
    pub url: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FixedHttp {
    pub fn start(body: Vec<u8>, content_type: &'static str) -> Result<FixedHttp, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                        let _ = answer(&mut stream, &body, content_type);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(FixedHttp {
            url: format!("http://127.0.0.1:{port}/"),
            stop,
            thread: Some(thread),
        })
    }
}

fn answer(
    stream: &mut std::net::TcpStream,
    body: &[u8],
    content_type: &str,
) -> std::io::Result<()> {
    // The head, then as many body bytes as it announces.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 && Instant::now() < deadline {
        if stream.read(&mut byte)? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(64 * 1024);
    let mut request_body = vec![0u8; length];
    stream.read_exact(&mut request_body)?;
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: \
         close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    stream.flush()
}

impl Drop for FixedHttp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The DER OCSP response `openssl ocsp` gives for certificate `der` of `ca` from the
/// responder at `url` (no nonce unless `nonce`), as a cache would have recorded it.
pub fn record_response(ca: &TestCa, der: &[u8], url: &str, nonce: bool) -> Result<Vec<u8>, String> {
    let name = format!("{}.der", ca.next_name("recorded"));
    ca.with_cert_file(der, |file| {
        let mut args = vec![
            "ocsp",
            "-issuer",
            "ca.pem",
            "-cert",
            file,
            "-url",
            url,
            "-respout",
            &name,
            "-noverify",
        ];
        args.push(if nonce { "-nonce" } else { "-no_nonce" });
        openssl(&ca.dir, &args)
    })?;
    std::fs::read(ca.dir.join(&name)).map_err(|e| e.to_string())
}
