//! The revocation options `serve` and `recheck` share.

use std::path::PathBuf;

use super::Mode;

/// Minutes between CRL refreshes when `--crl-refresh-minutes` is not given.
pub const DEFAULT_CRL_REFRESH_MINUTES: u64 = 60;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationOptions {
    /// `--revocation`; `None`: `require` when a source is given.
    pub mode: Option<Mode>,
    pub ocsp: Vec<String>,
    pub ocsp_signers: Vec<PathBuf>,
    pub crls: Vec<String>,
    pub crl_refresh_minutes: Option<u64>,
}

impl RevocationOptions {
    /// Takes `name` (with its value) if it is a revocation option: `None` when it is not.
    pub fn accept(
        &mut self,
        name: &str,
        value: impl FnOnce() -> Result<String, String>,
    ) -> Option<Result<(), String>> {
        let result = match name {
            "--revocation" => value().and_then(|v| {
                let mode = Mode::parse(&v)
                    .ok_or(format!("--revocation {v:?}: give require, prefer or off"))?;
                if self.mode.replace(mode).is_some() {
                    return Err("--revocation given twice".into());
                }
                Ok(())
            }),
            "--ocsp" => value().map(|v| self.ocsp.push(v)),
            "--ocsp-signer" => value().map(|v| self.ocsp_signers.push(PathBuf::from(v))),
            "--crl" => value().map(|v| self.crls.push(v)),
            "--crl-refresh-minutes" => value().and_then(|v| {
                let minutes = v
                    .parse::<u64>()
                    .ok()
                    .filter(|m| (1..=7 * 24 * 60).contains(m))
                    .ok_or(format!(
                        "--crl-refresh-minutes {v:?}: give whole minutes from 1 to 10080"
                    ))?;
                if self.crl_refresh_minutes.replace(minutes).is_some() {
                    return Err("--crl-refresh-minutes given twice".into());
                }
                Ok(())
            }),
            _ => return None,
        };
        Some(result)
    }

    pub fn has_sources(&self) -> bool {
        !self.ocsp.is_empty() || !self.crls.is_empty()
    }

    /// The mode in force, or why the combination is refused: without a source only an
    /// explicit `--revocation off` starts.
    pub fn resolved_mode(&self) -> Result<Mode, String> {
        match (self.mode, self.has_sources()) {
            (Some(Mode::Off), true) => Err(
                "--revocation off with --ocsp or --crl: the sources would never be asked; \
                 remove them or choose --revocation require or prefer"
                    .into(),
            ),
            (Some(Mode::Off), false) => Ok(Mode::Off),
            (Some(mode), true) => Ok(mode),
            (None, true) => Ok(Mode::Require),
            (_, false) => Err(
                "no revocation source: give --ocsp URL and/or --crl FILE_OR_URL (the law on \
                 JPKI signatures requires checking that a certificate was not revoked), or \
                 start with --revocation off for a demo or a test"
                    .into(),
            ),
        }
    }

    /// Checks what parsing alone can tell.
    pub fn validate(&self) -> Result<(), String> {
        self.resolved_mode()?;
        if !self.ocsp_signers.is_empty() && self.ocsp.is_empty() {
            return Err("--ocsp-signer needs --ocsp URL".into());
        }
        if self.crl_refresh_minutes.is_some() && self.crls.is_empty() {
            return Err("--crl-refresh-minutes needs --crl FILE_OR_URL".into());
        }
        for url in &self.ocsp {
            super::fetch::HttpUrl::parse(url).map_err(|e| format!("--ocsp {e}"))?;
        }
        for crl in &self.crls {
            super::crl::Location::parse(crl).map_err(|e| format!("--crl {e}"))?;
        }
        Ok(())
    }

    pub fn crl_refresh(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            60 * self
                .crl_refresh_minutes
                .unwrap_or(DEFAULT_CRL_REFRESH_MINUTES),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<RevocationOptions, String> {
        let mut options = RevocationOptions::default();
        let mut iter = args.iter();
        while let Some(name) = iter.next() {
            let value = iter.next().map(|v| v.to_string());
            options
                .accept(name, || value.ok_or("needs a value".to_string()))
                .expect("a revocation option")?;
        }
        options.validate()?;
        Ok(options)
    }

    #[test]
    fn modes_and_sources() {
        let o = parse(&["--ocsp", "http://127.0.0.1:9/"]).expect("ocsp");
        assert_eq!(o.resolved_mode(), Ok(Mode::Require));
        let o = parse(&["--crl", "/x.crl", "--revocation", "prefer"]).expect("crl");
        assert_eq!(o.resolved_mode(), Ok(Mode::Prefer));
        assert_eq!(o.crl_refresh(), std::time::Duration::from_secs(3600));
        let o = parse(&["--revocation", "off"]).expect("off");
        assert_eq!(o.resolved_mode(), Ok(Mode::Off));
        for (args, needle) in [
            (&[][..], "--revocation off"),
            (&["--revocation", "require"][..], "no revocation source"),
            (&["--revocation", "off", "--crl", "x"][..], "never be asked"),
            (&["--revocation", "maybe"][..], "require, prefer or off"),
            (&["--ocsp", "https://x/"][..], "http://"),
            (
                &["--crl", "x", "--crl-refresh-minutes", "0"][..],
                "1 to 10080",
            ),
            (
                &["--revocation", "off", "--crl-refresh-minutes", "5"][..],
                "needs --crl",
            ),
            (
                &["--revocation", "off", "--ocsp-signer", "s.pem"][..],
                "needs --ocsp",
            ),
        ] {
            let e = parse(args).expect_err(needle);
            assert!(e.contains(needle), "{args:?}: {e}");
        }
        assert!(RevocationOptions::default()
            .accept("--listen", || Ok(String::new()))
            .is_none());
    }
}
