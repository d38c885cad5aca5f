//! The terminal's client of the backend API (see [`crate::api`]): HTTPS with a per-terminal
//! bearer token, one pooled connection reused for every call, and plain HTTP refused for
//! anything but loopback.

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

/// `https://` anywhere; `http://` only to a loopback address, where no network is crossed.
pub fn check_url(url: &str) -> Result<Url, BackendConfigError> {
    let parsed =
        Url::parse(url).map_err(|e| BackendConfigError(format!("backend URL {url:?}: {e}")))?;
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" => {
            let loopback = match parsed.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if loopback {
                Ok(parsed)
            } else {
                Err(BackendConfigError(format!(
                    "backend URL {url}: plain http is allowed only to a loopback address; use https"
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
    /// one (a police network's own CA).
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
            .user_agent(concat!("mynalink/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca_pem {
            let ca = reqwest::Certificate::from_pem(pem)
                .map_err(|e| BackendConfigError(format!("backend CA certificate: {e}")))?;
            builder = builder.add_root_certificate(ca);
        }
        let http = builder
            .build()
            .map_err(|e| BackendConfigError(format!("HTTP client: {e}")))?;
        Ok(Backend { http, base, token })
    }

    /// Reads the token file: the token on its first line, nothing else.
    pub fn read_token(path: &Path) -> Result<Zeroizing<String>, BackendConfigError> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| BackendConfigError(format!("token file {}: {e}", path.display())))?,
        );
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
        if !response.status().is_success() {
            return Err(not_now(response));
        }
        read_json(response)
    }

    /// Whether the backend answers its health check.
    pub fn healthy(&self) -> bool {
        self.url("healthz")
            .ok()
            .and_then(|u| self.http.get(u).send().ok())
            .is_some_and(|r| r.status().is_success())
    }
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
        assert!(check_url("http://localhost:8080/").is_ok());
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
        let dir = std::env::temp_dir().join(format!("mynalink-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("token");
        std::fs::write(&path, "  s3cret-token \nignored\n").expect("write");
        assert_eq!(
            Backend::read_token(&path).expect("token").as_str(),
            "s3cret-token"
        );
        std::fs::write(&path, "\n").expect("write");
        assert!(Backend::read_token(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
