//! Re-checks of active bindings: a binding is only as good as the certificate behind it,
//! and J-LIS revokes a signing certificate when its holder moves or changes name, and
//! replaces it at renewal. `mynalink-server recheck` (one-shot, for a timer) and
//! `serve --recheck-hours N` walk the active bindings; one whose certificate is revoked or
//! has expired becomes `stale` with its reason (audited as `binding_stale`), and its
//! license needs the first stage again, which supersedes it. A status that cannot be
//! obtained changes nothing: the next re-check asks again.

use std::path::PathBuf;

use time::OffsetDateTime;

use crate::pool::{PoolError, StorePool};
use crate::revocation::{Finding, Mode, Revocation, RevocationOptions};
use crate::store::StaleReason;

/// Bindings read per database call.
const PAGE: u32 = 500;

/// What one re-check did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub checked: usize,
    pub still_good: usize,
    pub revoked: usize,
    pub expired: usize,
    /// No status could be obtained (or the issuing CA is not configured): unchanged.
    pub unavailable: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "re-checked {} active bindings: {} good, {} revoked and {} expired (now stale), {} \
             without a status (unchanged)",
            self.checked, self.still_good, self.revoked, self.expired, self.unavailable
        )
    }
}

/// Re-checks every active binding at `now`; problems are written to standard error.
pub async fn recheck(
    pool: &StorePool,
    revocation: &Revocation,
    now: OffsetDateTime,
) -> Result<Summary, PoolError> {
    let mut summary = Summary::default();
    let now_text = crate::revocation::text(now);
    let mut after = String::new();
    loop {
        let from = after.clone();
        let page = pool
            .run(move |store| store.active_bindings_after(&from, PAGE))
            .await?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.binding_id.clone();
        for binding in page {
            summary.checked += 1;
            let stale = if binding.certificate_not_after < now_text {
                summary.expired += 1;
                Some((StaleReason::CertificateExpired, None, None))
            } else if revocation.is_off() {
                summary.still_good += 1;
                None
            } else {
                let issuer = binding
                    .issuer_key_id
                    .as_deref()
                    .and_then(|k| hex::decode(k).ok())
                    .and_then(|k| revocation.issuer_by_key_id(&k));
                let serial = hex::decode(&binding.certificate_serial).unwrap_or_default();
                let Some(issuer) = issuer else {
                    summary.unavailable += 1;
                    eprintln!(
                        "mynalink-server: recheck: binding {}: its issuing CA (key id {}) is \
                         not a configured --trust-anchor",
                        binding.binding_id,
                        binding.issuer_key_id.as_deref().unwrap_or("none")
                    );
                    continue;
                };
                match revocation.check(&issuer, &serial, now).await {
                    Finding::Good { .. } | Finding::Off => {
                        summary.still_good += 1;
                        None
                    }
                    Finding::Revoked(revoked) => {
                        summary.revoked += 1;
                        Some((
                            StaleReason::CertificateRevoked,
                            revoked.reason.map(|r| r.as_str().to_string()),
                            Some(crate::revocation::text(revoked.at)),
                        ))
                    }
                    Finding::Unavailable(problems) => {
                        summary.unavailable += 1;
                        eprintln!(
                            "mynalink-server: recheck: binding {}: no status: {}",
                            binding.binding_id,
                            problems
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join("; ")
                        );
                        continue;
                    }
                }
            };
            let id = binding.binding_id.clone();
            let at = now_text.clone();
            pool.run(move |store| {
                store.record_recheck(
                    &id,
                    &at,
                    stale
                        .as_ref()
                        .map(|(reason, r, t)| (*reason, r.as_deref(), t.as_deref())),
                )
            })
            .await?;
        }
    }
    Ok(summary)
}

/// The `recheck` command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecheckOptions {
    pub database: String,
    pub database_password_file: Option<PathBuf>,
    pub trust_anchors: Vec<PathBuf>,
    pub allow_test_root: bool,
    pub revocation: RevocationOptions,
}

impl RecheckOptions {
    pub fn parse(args: &[String]) -> Result<RecheckOptions, String> {
        let mut database = None;
        let mut database_password_file = None;
        let mut trust_anchors = Vec::new();
        let mut allow_test_root = false;
        let mut revocation = RevocationOptions::default();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) if name.starts_with("--") => (name, Some(value.to_string())),
                _ => (arg.as_str(), None),
            };
            if name == "--allow-test-root" {
                allow_test_root = true;
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
            match name {
                "--database" => {
                    if database.replace(value()?).is_some() {
                        return Err("--database given twice".into());
                    }
                }
                "--database-password-file" => {
                    if database_password_file
                        .replace(PathBuf::from(value()?))
                        .is_some()
                    {
                        return Err("--database-password-file given twice".into());
                    }
                }
                "--trust-anchor" => trust_anchors.push(PathBuf::from(value()?)),
                other => return Err(format!("unknown option {other:?}")),
            }
        }
        revocation.validate()?;
        if revocation.resolved_mode() == Ok(Mode::Off) {
            eprintln!("mynalink-server: recheck with --revocation off re-checks expiry only");
        }
        Ok(RecheckOptions {
            database: database.ok_or("--database URL is required")?,
            database_password_file,
            trust_anchors,
            allow_test_root,
            revocation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let args: Vec<String> = "--database sqlite:x --trust-anchor a.der --allow-test-root \
                                 --ocsp http://127.0.0.1:9/ --crl=/c.crl"
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let o = RecheckOptions::parse(&args).expect("parse");
        assert_eq!(o.trust_anchors.len(), 1);
        assert!(o.allow_test_root);
        assert_eq!(o.revocation.ocsp.len(), 1);
        assert_eq!(o.revocation.crls, ["/c.crl"]);
        for (args, needle) in [
            ("--trust-anchor a --revocation off", "--database"),
            ("--database sqlite:x", "--revocation off"),
            ("--database sqlite:x --revocation off --bogus", "unknown"),
        ] {
            let args: Vec<String> = args.split_whitespace().map(str::to_string).collect();
            let e = RecheckOptions::parse(&args).expect_err(needle);
            assert!(e.contains(needle), "{e}");
        }
    }
}
