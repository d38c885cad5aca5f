//! The install test (the last step of `cargo xtask test`; alone: `cargo xtask install-test`):
//! the three packages installed with apt into a clean Debian 12 root made by
//! `debootstrap --variant=minbase`, their dependencies from Debian, then used, checked and
//! purged (`install_test.sh`, run inside the root through chroot).
//!
//! The root is made once and kept as a tarball under `target/debian/install-test/cache/`, with
//! apt's downloaded packages and lists beside it, so that later runs download nothing new. Each
//! run starts from a fresh copy of the tarball. The mounts the chroot needs (/proc, /dev, the
//! apt caches) are made in a private mount namespace (`unshare --mount`): they vanish with it,
//! whatever happens to the test.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::package::{capture, path_str, Debs};
use crate::system::{ensure_packages, step};

const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";
/// The root's apt sources: the release, its updates and security, as on a real server.
const SOURCES: &str = "deb http://deb.debian.org/debian bookworm main\n\
                       deb http://deb.debian.org/debian bookworm-updates main\n\
                       deb http://deb.debian.org/debian-security bookworm-security main\n";
const SCRIPT: &str = include_str!("install_test.sh");

/// Makes (or reuses) the clean root, installs `debs` into it and runs the checks.
pub fn run(target: &Path, debs: &Debs) -> Result<(), String> {
    if !is_root() {
        return Err(
            "the install test needs root (debootstrap, chroot and mounts): run it as root, \
             e.g. `sudo -E cargo xtask test`"
                .into(),
        );
    }
    ensure_packages(&["debootstrap"])?;
    let started = Instant::now();
    let dir = target.join("debian/install-test");
    let cache = dir.join("cache");
    let arch = capture("dpkg", &["--print-architecture"])?;
    let arch = arch.trim();
    let tarball = cache.join(format!("{SUITE}-minbase-{arch}.tar.gz"));
    let cold = !tarball.exists();
    if cold {
        make_tarball(&dir, &tarball, arch)?;
    } else {
        step(&format!(
            "using the cached clean root {}",
            tarball.display()
        ));
    }
    let root = dir.join("root");
    remove_root(&root)?;
    fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    run_checked(
        "tar",
        &[
            "--numeric-owner",
            "-xzf",
            path_str(&tarball)?,
            "-C",
            path_str(&root)?,
        ],
    )?;
    fs::write(root.join("etc/apt/sources.list"), SOURCES).map_err(|e| e.to_string())?;
    fs::copy("/etc/resolv.conf", root.join("etc/resolv.conf"))
        .map_err(|e| format!("/etc/resolv.conf: {e}"))?;
    let debs_dir = root.join("tmp/mynalink-debs");
    fs::create_dir_all(&debs_dir).map_err(|e| e.to_string())?;
    for deb in debs.all() {
        let name = deb.file_name().ok_or("a package without a name")?;
        fs::copy(deb, debs_dir.join(name)).map_err(|e| format!("{}: {e}", deb.display()))?;
    }
    fs::write(root.join("tmp/mynalink-install-test.sh"), SCRIPT).map_err(|e| e.to_string())?;
    let archives = cache.join("apt-archives");
    let lists = cache.join("apt-lists");
    for d in [&archives, &lists] {
        fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    step(&format!(
        "installing, using and purging the packages in {}",
        root.display()
    ));
    // Everything mounted here belongs to the namespace and goes with it.
    const INSIDE: &str = "set -e
mount -t proc proc \"$1/proc\"
mount --bind /dev \"$1/dev\"
mount --bind \"$2\" \"$1/var/cache/apt/archives\"
mount --bind \"$3\" \"$1/var/lib/apt/lists\"
exec chroot \"$1\" /bin/bash /tmp/mynalink-install-test.sh \"$4\"
";
    let status = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            INSIDE,
            "sh",
        ])
        .args([
            path_str(&root)?,
            path_str(&archives)?,
            path_str(&lists)?,
            env!("CARGO_PKG_VERSION"),
        ])
        .status()
        .map_err(|e| format!("cannot start unshare: {e}"))?;
    let took = started.elapsed();
    if !status.success() {
        return Err(format!(
            "the install test failed ({status}) after {}; the root is kept in {}",
            seconds(took),
            root.display()
        ));
    }
    remove_root(&root)?;
    step(&format!(
        "install test passed in {} ({})",
        seconds(took),
        if cold {
            "cold: the root made with debootstrap"
        } else {
            "warm: the root and apt's downloads from the cache"
        }
    ));
    Ok(())
}

/// `debootstrap --variant=minbase` into a scratch directory, then a tarball of it.
fn make_tarball(dir: &Path, tarball: &Path, arch: &str) -> Result<(), String> {
    step(&format!(
        "making a clean Debian 12 root (debootstrap --variant=minbase {SUITE}, from {MIRROR})"
    ));
    let scratch = dir.join("debootstrap");
    remove_root(&scratch)?;
    let arch_arg = format!("--arch={arch}");
    // Its hundreds of progress lines go to a log, shown when it fails.
    let log = dir.join("debootstrap.log");
    let output = Command::new("debootstrap")
        .args([
            "--variant=minbase",
            &arch_arg,
            SUITE,
            path_str(&scratch)?,
            MIRROR,
        ])
        .output()
        .map_err(|e| format!("cannot start debootstrap: {e}"))?;
    let mut text = output.stdout;
    text.extend_from_slice(&output.stderr);
    fs::write(&log, &text).map_err(|e| format!("{}: {e}", log.display()))?;
    if !output.status.success() {
        let text = String::from_utf8_lossy(&text);
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        for line in tail.iter().rev() {
            eprintln!("    {line}");
        }
        return Err(format!(
            "debootstrap failed ({}); its log: {}",
            output.status,
            log.display()
        ));
    }
    let parent = tarball.parent().ok_or("a tarball without a directory")?;
    fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    // Written aside and renamed: an interrupted run never leaves half a tarball in the cache.
    let partial = tarball.with_extension("partial");
    run_checked(
        "tar",
        &[
            "--numeric-owner",
            "-czf",
            path_str(&partial)?,
            "-C",
            path_str(&scratch)?,
            ".",
        ],
    )?;
    fs::rename(&partial, tarball).map_err(|e| format!("{}: {e}", tarball.display()))?;
    remove_root(&scratch)
}

/// Removes a root directory, after making sure nothing is mounted inside it (removing a
/// bound /dev would remove the host's).
fn remove_root(root: &Path) -> Result<(), String> {
    if !root.exists() {
        return Ok(());
    }
    let canonical = fs::canonicalize(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let mounts = fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    if let Some(point) = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .find(|point| Path::new(point).starts_with(&canonical))
    {
        return Err(format!(
            "{point} is mounted inside {}: unmount it first",
            root.display()
        ));
    }
    run_checked("rm", &["-rf", "--one-file-system", path_str(&canonical)?])
}

fn is_root() -> bool {
    capture("id", &["-u"]).is_ok_and(|uid| uid.trim() == "0")
}

fn seconds(d: Duration) -> String {
    format!("{:.0} s", d.as_secs_f64())
}

fn run_checked(program: &str, args: &[&str]) -> Result<(), String> {
    let status = Command::new(program)
        .args(args)
        .status()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` failed ({status})", args.join(" ")))
    }
}

/// `cargo xtask install-test`, and the last step of `cargo xtask test`: the packages of the
/// test build (in `target/debian/test/`), checked, then installed in the clean root.
pub fn build_and_run(target: &Path) -> Result<(), String> {
    let debs = crate::package::check_built(
        target,
        crate::package::Profile::Dev,
        &target.join("debian/test"),
    )?;
    run(target, &debs)
}
