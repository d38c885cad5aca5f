//! The terminal's client of the backend API (see [`crate::api`]): HTTPS with a per-terminal
//! bearer token, one pooled connection reused for every call, and plain HTTP refused for
//! anything but a literal loopback address. Redirects are never followed (the token and the
//! signed binding go to the configured backend or nowhere), and a configured `ca_file` is the
//! only root trusted: a public CA cannot then stand in for the backend.

use std::path::Path;
use std::time::Duration;

use reqwest::blocking::{Client, Response};
use reqwest::{StatusCode, Url};
use zeroize::Zeroizing;

use crate::api::{ApiError, BindingAccepted, BindingRequest, LicenseStatus, LinkedVia};

/// How long one request may take before the binding is queued instead.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the backend decided about a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// 201 (new) or 200 (the same statement again).
    Linked {
        accepted: BindingAccepted,
        repeated: bool,
    },
    /// 409: the record is linked already.
    AlreadyLinked { via: Option<LinkedVia> },
    /// 4xx with a code: a final decision; retrying cannot change it.
    Rejected(ApiError),
}

/// The backend could not decide now (network, timeout, 5xx, 429, 408): keep the binding
/// queued. The reason names the backend's code when it gave one (e.g. `server_busy`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// `GET /v1/whoami`: the credential the token maps to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub id: String,
    /// `terminal`, `mynaportal` or `admin`.
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WhoAmIAnswer {
    Known(Identity),
    /// The token was refused (401 or 403, with the backend's code).
    Refused(ApiError),
}

/// What [`Backend::whoami`] learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhoAmI {
    pub answer: WhoAmIAnswer,
    /// The backend's clock when it answered (HTTP `Date`, whole seconds), if it said.
    pub backend_time: Option<time::OffsetDateTime>,
}

/// A settings problem, found before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BackendConfigError(pub String);

/// Clones share the HTTP client and its connection pool.
#[derive(Clone)]
pub struct Backend {
    http: Client,
    base: Url,
    token: Zeroizing<String>,
}

/// `https://` anywhere; `http://` only to a literal loopback address (127.0.0.0/8, ::1),
/// where no network is crossed. Not the name `localhost`: what it resolves to is up to the
/// resolver's configuration, not to this check.
pub fn check_url(url: &str) -> Result<Url, BackendConfigError> {
    let parsed =
        Url::parse(url).map_err(|e| BackendConfigError(format!("backend URL {url:?}: {e}")))?;
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" => {
            let loopback = match parsed.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(_)) | None => false,
            };
            if loopback {
                Ok(parsed)
            } else {
                Err(BackendConfigError(format!(
                    "backend URL {url}: plain http is allowed only to a literal loopback address \
                     (127.0.0.1, [::1]); use https"
                )))
            }
        }
        other => Err(BackendConfigError(format!(
            "backend URL {url}: unsupported scheme {other}"
        ))),
    }
}

impl Backend {
    /// `ca_pem`: the root that signed the backend's TLS certificate, when it is not a public
    /// one (a police network's own CA). It is then the only root trusted.
    pub fn new(
        url: &str,
        token: Zeroizing<String>,
        ca_pem: Option<&[u8]>,
    ) -> Result<Backend, BackendConfigError> {
        let base = check_url(url)?;
        let mut builder = Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .https_only(base.scheme() == "https")
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mynalink/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca_pem {
            let ca = reqwest::Certificate::from_pem(pem)
                .map_err(|e| BackendConfigError(format!("backend CA certificate: {e}")))?;
            builder = builder
                .tls_built_in_root_certs(false)
                .add_root_certificate(ca);
        }
        let http = builder
            .build()
            .map_err(|e| BackendConfigError(format!("HTTP client: {e}")))?;
        Ok(Backend { http, base, token })
    }

    /// Reads the token file: the token on its first line, nothing else. A file other users
    /// may read is refused: whoever reads the token can submit as this terminal.
    pub fn read_token(path: &Path) -> Result<Zeroizing<String>, BackendConfigError> {
        let failed =
            |e: std::io::Error| BackendConfigError(format!("token file {}: {e}", path.display()));
        let mut file = std::fs::File::open(path).map_err(failed)?;
        // The mode of the file actually opened, not of whatever the path names later.
        check_private(path, &file.metadata().map_err(failed)?)?;
        let mut text = Zeroizing::new(String::new());
        std::io::Read::read_to_string(&mut file, &mut text).map_err(failed)?;
        let token = text.lines().next().unwrap_or("").trim();
        if token.is_empty() {
            return Err(BackendConfigError(format!(
                "token file {} is empty",
                path.display()
            )));
        }
        Ok(Zeroizing::new(token.to_string()))
    }

    fn url(&self, path: &str) -> Result<Url, Unavailable> {
        self.base
            .join(path)
            .map_err(|e| Unavailable(format!("URL {path}: {e}")))
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token.as_str())
    }

    pub fn submit(&self, request: &BindingRequest) -> Result<Submitted, Unavailable> {
        let response = self
            .http
            .post(self.url("v1/bindings")?)
            .header(reqwest::header::AUTHORIZATION, self.auth())
            .json(request)
            .send()
            .map_err(|e| Unavailable(describe(&e)))?;
        let status = response.status();
        match status {
            s if s.is_redirection() => Err(redirected(&response)),
            StatusCode::CREATED | StatusCode::OK => {
                let accepted: BindingAccepted = read_json(response)?;
                Ok(Submitted::Linked {
                    accepted,
                    repeated: status == StatusCode::OK,
                })
            }
            StatusCode::CONFLICT => {
                let error: Option<ApiError> = read_json(response).ok();
                Ok(Submitted::AlreadyLinked {
                    via: error.and_then(|e| e.linked_via),
                })
            }
            // 408: the request did not arrive in time; sending it again may well work.
            s if s.is_server_error()
                || s == StatusCode::TOO_MANY_REQUESTS
                || s == StatusCode::REQUEST_TIMEOUT =>
            {
                Err(not_now(response))
            }
            s => match read_json::<ApiError>(response) {
                Ok(error) => Ok(Submitted::Rejected(error)),
                Err(_) => Err(Unavailable(format!(
                    "backend answered {s} without an error body"
                ))),
            },
        }
    }

    pub fn license_status(&self, license_number: &str) -> Result<LicenseStatus, Unavailable> {
        let response = self
            .http
            .get(self.url(&format!("v1/licenses/{license_number}/status"))?)
            .header(reqwest::header::AUTHORIZATION, self.auth())
            .send()
            .map_err(|e| Unavailable(describe(&e)))?;
        if response.status().is_redirection() {
            return Err(redirected(&response));
        }
        if !response.status().is_success() {
            return Err(not_now(response));
        }
        read_json(response)
    }

    /// Which id and kind of credential the backend maps this terminal's token to, and the
    /// backend's clock (its `Date` header), for `mynalink doctor`.
    pub fn whoami(&self) -> Result<WhoAmI, Unavailable> {
        let response = self
            .http
            .get(self.url("v1/whoami")?)
            .header(reqwest::header::AUTHORIZATION, self.auth())
            .send()
            .map_err(|e| Unavailable(describe(&e)))?;
        let date = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .map(time::OffsetDateTime::from);
        let status = response.status();
        if status.is_redirection() {
            return Err(redirected(&response));
        }
        let answer = if status.is_success() {
            WhoAmIAnswer::Known(read_json(response)?)
        } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            WhoAmIAnswer::Refused(read_json(response)?)
        } else {
            return Err(not_now(response));
        };
        Ok(WhoAmI {
            answer,
            backend_time: date,
        })
    }

    /// Whether the backend answers its health check.
    pub fn healthy(&self) -> bool {
        self.url("healthz")
            .ok()
            .and_then(|u| self.http.get(u).send().ok())
            .is_some_and(|r| r.status().is_success())
    }
}

/// A secret file must be readable by its owner only (mode 0600 or stricter).
#[cfg(unix)]
fn check_private(path: &Path, meta: &std::fs::Metadata) -> Result<(), BackendConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(BackendConfigError(format!(
            "token file {path} can be read by other users (mode {mode:04o}); \
             restrict it with `chmod 600 {path}`",
            path = path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path, _: &std::fs::Metadata) -> Result<(), BackendConfigError> {
    Ok(())
}

/// An answer that decides nothing, with the backend's code when its body has one.
fn not_now(response: Response) -> Unavailable {
    let status = response.status();
    match response.json::<ApiError>() {
        Ok(error) => Unavailable(format!(
            "backend answered {status}: {} ({})",
            error.code, error.message_en
        )),
        Err(_) => Unavailable(format!("backend answered {status}")),
    }
}

fn read_json<T: serde::de::DeserializeOwned>(response: Response) -> Result<T, Unavailable> {
    let status = response.status();
    response
        .json::<T>()
        .map_err(|e| Unavailable(format!("unreadable {status} answer: {e}")))
}

/// A 3xx: not followed (the body and the token must not go to another host), and it says
/// where it pointed so that the operator can correct `backend_url`.
fn redirected(response: &Response) -> Unavailable {
    let target = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|l| response.url().join(l).ok())
        .map_or_else(|| "nowhere".to_string(), |u| u.without_url_secret());
    Unavailable(format!(
        "backend answered {} redirecting to {target}; redirects are not followed: \
         set backend_url to the backend's own address",
        response.status()
    ))
}

/// A short reason without the request (no token, no body).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    match e.url() {
        Some(url) => format!("{kind}: {}", url.without_url_secret()),
        None => kind.to_string(),
    }
}

trait WithoutSecret {
    fn without_url_secret(&self) -> String;
}

impl WithoutSecret for Url {
    fn without_url_secret(&self) -> String {
        format!(
            "{}://{}{}",
            self.scheme(),
            self.host_str().unwrap_or(""),
            self.port().map(|p| format!(":{p}")).unwrap_or_default()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_loopback() {
        assert!(check_url("https://backend.example.jp/").is_ok());
        assert!(check_url("http://127.0.0.1:8080/").is_ok());
        assert!(check_url("http://[::1]:8080/").is_ok());
        assert!(check_url("http://127.3.4.5:8080/").is_ok());
        // A name is whatever the resolver makes of it.
        assert!(check_url("http://localhost:8080/").is_err());
        assert!(check_url("http://LOCALHOST/").is_err());
        assert!(check_url("http://localhost.:8080/").is_err());
        assert!(check_url("http://[::ffff:127.0.0.1]/").is_err());
        assert!(check_url("https://localhost:8443/").is_ok());
        let e = check_url("http://10.0.0.5:8080/").unwrap_err();
        assert!(e.0.contains("loopback"), "{e}");
        assert!(check_url("http://backend.example.jp/").is_err());
        assert!(check_url("ftp://127.0.0.1/").is_err());
        assert!(check_url("not a url").is_err());
    }

    #[test]
    fn an_unreachable_backend_is_unavailable_not_an_error() {
        let backend =
            Backend::new("http://127.0.0.1:9/", Zeroizing::new("t".into()), None).expect("client");
        assert!(!backend.healthy());
        assert!(backend.license_status("729913281070").is_err());
    }

    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// A backend on 127.0.0.1 that answers one request with `status` and `body`.
    fn answering_once(status: &str, body: &str) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let answer = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            // The whole request (head and Content-Length body), then the answer.
            let mut request = Vec::new();
            let mut buf = [0u8; 8192];
            while let Ok(n @ 1..) = stream.read(&mut buf) {
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            let _ = stream.write_all(answer.as_bytes());
        });
        url
    }

    fn request() -> BindingRequest {
        BindingRequest {
            statement: "c3RhdGVtZW50".into(),
            signature: "c2lnbmF0dXJl".into(),
            certificate: Some("Y2VydA==".into()),
            sealed_certificate: None,
            ca_certificate: None,
            staff_confirmed_identity: false,
        }
    }

    fn api_error(code: &str) -> String {
        format!(r#"{{"code":"{code}","message_ja":"…","message_en":"Message of {code}."}}"#)
    }

    #[test]
    fn busy_or_timed_out_answers_keep_the_binding_queued_and_name_the_code() {
        for (status, code) in [
            ("503 Service Unavailable", "server_busy"),
            ("500 Internal Server Error", "server_error"),
            ("408 Request Timeout", "request_timeout"),
            ("429 Too Many Requests", "rate_limited"),
            // The revocation status could not be obtained: nothing was decided.
            ("503 Service Unavailable", "revocation_unavailable"),
        ] {
            let url = answering_once(status, &api_error(code));
            let backend = Backend::new(&url, Zeroizing::new("t".into()), None).expect("client");
            match backend.submit(&request()) {
                Err(Unavailable(reason)) => {
                    assert!(reason.contains(status), "{reason}");
                    assert!(reason.contains(code), "{reason}");
                }
                other => panic!("{status}: {other:?}"),
            }
        }
        // Without an error body: still queued, with the status.
        let url = answering_once("503 Service Unavailable", "");
        let backend = Backend::new(&url, Zeroizing::new("t".into()), None).expect("client");
        let reason = backend.submit(&request()).expect_err("queued").0;
        assert!(reason.contains("503"), "{reason}");
        // A revoked certificate is a final refusal, with its reason and time.
        let body = r#"{"code":"certificate_revoked","message_ja":"…","message_en":"…",
            "revocation_reason":"affiliationChanged","revoked_at":"2026-11-20T03:00:00Z"}"#;
        let url = answering_once("422 Unprocessable Entity", body);
        let backend = Backend::new(&url, Zeroizing::new("t".into()), None).expect("client");
        match backend.submit(&request()) {
            Ok(Submitted::Rejected(error)) => {
                assert_eq!(error.code, "certificate_revoked");
                assert_eq!(
                    error.revocation_reason.as_deref(),
                    Some("affiliationChanged")
                );
                assert_eq!(error.revoked_at.as_deref(), Some("2026-11-20T03:00:00Z"));
            }
            other => panic!("{other:?}"),
        }
        // A final refusal stays final.
        let url = answering_once("422 Unprocessable Entity", &api_error("signature_invalid"));
        let backend = Backend::new(&url, Zeroizing::new("t".into()), None).expect("client");
        match backend.submit(&request()) {
            Ok(Submitted::Rejected(error)) => assert_eq!(error.code, "signature_invalid"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn token_file_first_line() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("token");
        std::fs::write(&path, "  s3cret-token \nignored\n").expect("write");
        set_mode(&path, 0o600);
        assert_eq!(
            Backend::read_token(&path).expect("token").as_str(),
            "s3cret-token"
        );
        std::fs::write(&path, "\n").expect("write");
        assert!(Backend::read_token(&path).is_err());
    }

    #[test]
    fn a_token_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret-token\n").expect("write");
        for mode in [0o640, 0o604, 0o644, 0o660, 0o666] {
            set_mode(&path, mode);
            let e = Backend::read_token(&path).expect_err("readable by others");
            assert!(
                e.0.contains(&format!("chmod 600 {}", path.display())),
                "{e}"
            );
            assert!(e.0.contains(&format!("{mode:04o}")), "{e}");
            assert!(!e.0.contains("s3cret"), "{e}");
        }
        set_mode(&path, 0o400);
        assert_eq!(
            Backend::read_token(&path).expect("owner only").as_str(),
            "s3cret-token"
        );
    }
}
