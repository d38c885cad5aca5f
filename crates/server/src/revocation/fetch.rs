//! HTTP for revocation data: an OCSP request POSTed, a CRL fetched with GET. Plain
//! `http://` only, as OCSP and CRL distribution use it: both are signed, and what is sent
//! (a CA's key hash and a serial number) is no secret. One request per connection, bounded
//! in time and size, with hyper's client (no other HTTP stack enters the server).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// An `http://host[:port]/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    host: String,
    port: u16,
    path: String,
    text: String,
}

impl HttpUrl {
    pub fn parse(text: &str) -> Result<HttpUrl, String> {
        let rest = text.strip_prefix("http://").ok_or_else(|| {
            if text.starts_with("https://") {
                format!(
                    "{text}: give an http:// URL (OCSP responses and CRLs are signed; they are \
                     served over plain HTTP)"
                )
            } else {
                format!("{text}: not an http:// URL")
            }
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("{text}: no host, or credentials in the URL"));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| format!("{text}: unclosed [ in the host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p,
                None if after.is_empty() => "80",
                None => return Err(format!("{text}: unexpected text after the host")),
            };
            (host.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host.to_string(), port),
                None => (authority.to_string(), "80"),
            }
        };
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{text}: the port is not a number from 1 to 65535"))?;
        if host.is_empty() || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("{text}: not a usable URL"));
        }
        Ok(HttpUrl {
            host,
            port,
            path: path.to_string(),
            text: text.to_string(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("HTTP {0}")]
    Status(u16),
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("HTTP exchange failed: {0}")]
    Protocol(String),
}

/// POSTs `body` (with `content_type`) or, without one, GETs; returns the 200 body.
pub async fn fetch(
    url: &HttpUrl,
    body: Option<(&'static str, Vec<u8>)>,
    accept: &'static str,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, FetchError> {
    match tokio::time::timeout(timeout, exchange(url, body, accept, limit)).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Timeout(timeout)),
    }
}

async fn exchange(
    url: &HttpUrl,
    body: Option<(&'static str, Vec<u8>)>,
    accept: &'static str,
    limit: usize,
) -> Result<Vec<u8>, FetchError> {
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| FetchError::Connect(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| FetchError::Protocol(e.to_string()))?;
    // Drives the connection; it ends when the sender is dropped.
    let driver = tokio::spawn(connection);
    let builder = Request::builder()
        .uri(url.path.as_str())
        .header(HOST, url.host_header())
        .header(ACCEPT, accept);
    let request = match body {
        Some((content_type, bytes)) => builder
            .method(Method::POST)
            .header(CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(bytes))),
        None => builder.method(Method::GET).body(Full::new(Bytes::new())),
    }
    .map_err(|e| FetchError::Protocol(e.to_string()))?;
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| FetchError::Protocol(e.to_string()))?;
        if response.status() != hyper::StatusCode::OK {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        let collected = Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    FetchError::TooLarge(limit)
                } else {
                    FetchError::Protocol(e.to_string())
                }
            })?;
        Ok(collected.to_bytes().to_vec())
    }
    .await;
    drop(sender);
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = HttpUrl::parse("http://127.0.0.1:8888/ocsp").expect("url");
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8888, "/ocsp")
        );
        assert_eq!(u.host_header(), "127.0.0.1:8888");
        let u = HttpUrl::parse("http://ocsp.example").expect("url");
        assert_eq!(
            (u.port, u.path.as_str(), u.host_header().as_str()),
            (80, "/", "ocsp.example")
        );
        let u = HttpUrl::parse("http://[::1]:9/x.crl").expect("v6");
        assert_eq!((u.host.as_str(), u.port), ("::1", 9));
        assert_eq!(u.host_header(), "[::1]:9");
        for bad in [
            "https://x/",
            "ftp://x/",
            "http:///x",
            "http://user@x/",
            "http://x:0/",
            "http://x:99999/",
            "http://[::1/",
            "http://x/a b",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
        assert!(HttpUrl::parse("https://x/")
            .expect_err("https")
            .contains("signed"));
    }
}
