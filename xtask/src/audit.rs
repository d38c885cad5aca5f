//! `cargo xtask audit` (also part of `cargo xtask test`): the dependencies in Cargo.lock
//! checked with `cargo audit` against the offline RustSec snapshot in
//! `../shared/advisory-db`. Any vulnerability fails; advisories that do not apply are
//! ignored in `.cargo/audit.toml`, each with its reason beside it.
//!
//! cargo-audit is installed into `target/tools` at a fixed version the first time (without
//! its binary-scanning feature, which is not used and doubles the build).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::system::{cargo, step};

/// The cargo-audit release this project is checked with.
const CARGO_AUDIT_VERSION: &str = "0.22.2";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The advisory snapshot beside the checkout.
fn advisory_db() -> Result<PathBuf, String> {
    let db = workspace_root().join("../shared/advisory-db");
    if db.join("crates").is_dir() {
        Ok(db)
    } else {
        Err(format!(
            "the RustSec advisory snapshot is not at {} (the shared reference material \
             belongs beside the checkout)",
            db.display()
        ))
    }
}

/// cargo-audit from `target/tools`, installed there when missing or of another version.
fn cargo_audit(target: &Path) -> Result<PathBuf, String> {
    let root = target.join("tools");
    let binary = root.join("bin/cargo-audit");
    let current = Command::new(&binary)
        .arg("--version")
        .output()
        .ok()
        .is_some_and(|o| String::from_utf8_lossy(&o.stdout).contains(CARGO_AUDIT_VERSION));
    if !current {
        step(&format!(
            "installing cargo-audit {CARGO_AUDIT_VERSION} into {}",
            root.display()
        ));
        let root_arg = root.display().to_string();
        cargo(&[
            "install",
            "cargo-audit",
            "--locked",
            "--version",
            CARGO_AUDIT_VERSION,
            "--no-default-features",
            "--root",
            &root_arg,
        ])?;
    }
    Ok(binary)
}

pub fn run_audit(target: &Path) -> Result<(), String> {
    let db = advisory_db()?;
    let binary = cargo_audit(target)?;
    step(&format!(
        "auditing Cargo.lock against the advisories in {} (offline)",
        db.display()
    ));
    // cargo-audit reads `.cargo/audit.toml` (the ignored advisories and their reasons)
    // from its working directory.
    let status = Command::new(&binary)
        .current_dir(workspace_root())
        .args(["audit", "--no-fetch", "--db"])
        .arg(&db)
        .arg("--file")
        .arg(workspace_root().join("Cargo.lock"))
        .status()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "cargo audit found vulnerable dependencies ({status}); update them, or ignore an \
             advisory that does not apply in .cargo/audit.toml with the reason beside it"
        ))
    }
}
