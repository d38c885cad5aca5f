//! `cargo xtask package`: the three Debian packages, built with `dpkg-deb --root-owner-group`
//! from trees staged under `target/debian/stage/`, then checked (`systemd-analyze verify` on
//! the units, `lintian` failing on errors). Plain dpkg-deb rather than debhelper: the binaries
//! come from cargo, and every file, mode and maintainer script is then visible in
//! `packaging/` and here.
//!
//! - `mynalink`: the client, its desktop entry and icons, man pages and completions generated
//!   from its clap definitions, `/etc/mynalink/config.toml`.
//! - `mynalink-kiosk` (all): a systemd unit running `cage -- mynalink kiosk` on tty1 as the
//!   system user `mynalink-kiosk`, its PAM service and `/etc/mynalink-kiosk/config.toml`.
//! - `mynalink-server`: the reference backend as a hardened systemd service, its options in
//!   `/etc/default/mynalink-server`, `/etc/mynalink-server/server.toml`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::system::{cargo, ensure_packages, step};

/// What building and checking the packages needs besides the build packages.
pub const PACKAGE_TOOLS: &[&str] = &[
    "dpkg-dev",     // dpkg-shlibdeps
    "binutils",     // strip
    "librsvg2-bin", // rsvg-convert: the PNG icons from the SVG
    "lintian",
    "systemd", // systemd-analyze
];

/// Written into every package's control file and changelog.
const MAINTAINER: &str = "mynalink developers <dev@mynalink.invalid>";
/// The PNG sizes of the icon (hicolor theme), besides the SVG.
const ICON_SIZES: &[u32] = &[16, 22, 24, 32, 48, 64, 128, 256];
/// What the client loads at run time with dlopen (nothing links them, so dpkg-shlibdeps cannot
/// see them): the reader service, the Japanese font, and the X11 and Wayland libraries of
/// winit and softbuffer.
const CLIENT_RUNTIME_DEPENDS: &[&str] = &[
    "pcscd",
    "fonts-noto-cjk",
    "libx11-6",
    "libx11-xcb1",
    "libxcb1",
    "libxcursor1",
    "libxi6",
    "libxrandr2",
    "libxkbcommon0",
    "libxkbcommon-x11-0",
    "libwayland-client0",
];

/// The server package's systemd units (in `packaging/mynalink-server/`).
const SERVER_UNITS: &[&str] = &[
    "mynalink-server.service",
    "mynalink-server-recheck.service",
    "mynalink-server-recheck.timer",
];

/// The three `.deb` files of one build.
pub struct Debs {
    pub client: PathBuf,
    pub kiosk: PathBuf,
    pub server: PathBuf,
}

impl Debs {
    pub fn all(&self) -> [&Path; 3] {
        [&self.client, &self.kiosk, &self.server]
    }
}

/// `cargo xtask package`: release binaries, the packages, their checks.
pub fn run(rest: &[String]) -> Result<(), String> {
    if let Some(arg) = rest.first() {
        return Err(format!(
            "unknown argument {arg:?} (cargo xtask package takes none)"
        ));
    }
    let debs = build_and_check(&crate::canonical_target_dir()?)?;
    step("packages");
    for deb in debs.all() {
        let size = fs::metadata(deb).map_err(|e| e.to_string())?.len();
        eprintln!("    {} ({:.1} MiB)", deb.display(), size as f64 / 1048576.0);
    }
    Ok(())
}

/// Builds the release binaries and the packages into `target/debian/`, and checks them.
pub fn build_and_check(target: &Path) -> Result<Debs, String> {
    check_built(target, Profile::Release, &target.join("debian"))
}

/// The cargo profile whose binaries are packaged.
#[derive(Clone, Copy)]
pub enum Profile {
    /// What `cargo xtask package` ships.
    Release,
    /// The binaries `cargo xtask test` has just built: packaging them costs no second build of
    /// the window crate (a release build takes ~10 minutes on 2 cores); the packages differ
    /// only in how the binaries are optimised.
    Dev,
}

/// Builds the binaries of `profile`, the packages into `out`, and checks them.
pub fn check_built(target: &Path, profile: Profile, out: &Path) -> Result<Debs, String> {
    ensure_packages(crate::BUILD_PACKAGES)?;
    ensure_packages(PACKAGE_TOOLS)?;
    let bin_dir = match profile {
        Profile::Release => {
            step("building the release binaries");
            cargo(&[
                "build",
                "--release",
                "--package",
                "mynalink",
                "--package",
                "mynalink-server",
            ])?;
            target.join("release")
        }
        Profile::Dev => {
            // The very command of `cargo xtask test`'s build step, so that in the suite it
            // builds nothing: `cargo build -p …` alone would resolve other features (no
            // dev-dependencies), rebuild ring, rustls and the window crate, and the next test
            // run would rebuild them back.
            step("the binaries of the test build (cargo test --workspace --all-targets --no-run)");
            cargo(&["test", "--workspace", "--all-targets", "--no-run"])?;
            target.join("debug")
        }
    };
    let debs = build(out, &bin_dir)?;
    verify_units(out)?;
    lint(&debs)?;
    Ok(debs)
}

/// Stages (in `out/stage/`) and builds (into `out`) the three packages from the binaries in
/// `bin_dir`.
pub fn build(out: &Path, bin_dir: &Path) -> Result<Debs, String> {
    let version = env!("CARGO_PKG_VERSION");
    let arch = capture("dpkg", &["--print-architecture"])?;
    let arch = arch.trim();
    let stage = out.join("stage");
    if stage.exists() {
        fs::remove_dir_all(&stage).map_err(|e| format!("{}: {e}", stage.display()))?;
    }
    let date = changelog_date()?;
    let context = Context {
        version,
        date: &date,
        repo: &repo_root(),
        stage: &stage,
    };
    step("staging mynalink");
    let client = stage_client(&context, bin_dir)?;
    step("staging mynalink-kiosk");
    let kiosk = stage_kiosk(&context)?;
    step("staging mynalink-server");
    let server = stage_server(&context, bin_dir)?;
    let built = |dir: &Path, name: &str, arch: &str| -> Result<PathBuf, String> {
        let deb = out.join(format!("{name}_{version}_{arch}.deb"));
        step(&format!("building {}", deb.display()));
        let status = Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(dir)
            .arg(&deb)
            .env("SOURCE_DATE_EPOCH", &context.date.epoch)
            .status()
            .map_err(|e| format!("cannot start dpkg-deb: {e}"))?;
        if status.success() {
            Ok(deb)
        } else {
            Err(format!(
                "dpkg-deb --build {} failed ({status})",
                dir.display()
            ))
        }
    };
    Ok(Debs {
        client: built(&client, "mynalink", arch)?,
        kiosk: built(&kiosk, "mynalink-kiosk", "all")?,
        server: built(&server, "mynalink-server", arch)?,
    })
}

struct Context<'a> {
    version: &'a str,
    date: &'a ChangelogDate,
    repo: &'a Path,
    stage: &'a Path,
}

impl Context<'_> {
    fn packaging(&self, path: &str) -> PathBuf {
        self.repo.join("packaging").join(path)
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn stage_client(cx: &Context, bin_dir: &Path) -> Result<PathBuf, String> {
    let root = cx.stage.join("mynalink");
    let binary = root.join("usr/bin/mynalink");
    install_stripped(&bin_dir.join("mynalink"), &binary)?;
    install(
        &cx.packaging("mynalink.desktop"),
        &root.join("usr/share/applications/mynalink.desktop"),
        0o644,
    )?;
    let svg = cx.repo.join("assets/mynalink.svg");
    let icons = root.join("usr/share/icons/hicolor");
    install(&svg, &icons.join("scalable/apps/mynalink.svg"), 0o644)?;
    for size in ICON_SIZES {
        let png = icons.join(format!("{size}x{size}/apps/mynalink.png"));
        mkdir_parent(&png)?;
        let side = size.to_string();
        let args = [
            "--width",
            side.as_str(),
            "--height",
            side.as_str(),
            "--output",
            path_str(&png)?,
            path_str(&svg)?,
        ];
        run_quiet("rsvg-convert", &args)?;
        chmod(&png, 0o644)?;
    }
    // Man pages and completions from the binary being packaged, so they match it.
    let man = root.join("usr/share/man/man1");
    run_quiet(path_str(&binary)?, &["generate-manpages", path_str(&man)?])?;
    for page in read_dir_sorted(&man)? {
        gzip(&page)?;
    }
    for (shell, path) in [
        ("bash", "usr/share/bash-completion/completions/mynalink"),
        ("zsh", "usr/share/zsh/vendor-completions/_mynalink"),
        ("fish", "usr/share/fish/vendor_completions.d/mynalink.fish"),
    ] {
        let script = capture(path_str(&binary)?, &["generate-completions", shell])?;
        write(&root.join(path), script.as_bytes(), 0o644)?;
    }
    install(
        &cx.packaging("mynalink/config.toml"),
        &root.join("etc/mynalink/config.toml"),
        0o644,
    )?;
    install_doc(cx, &root, "mynalink", &[cx.repo.join("README.md")])?;
    let mut depends = shlibs_depends(&root, &[&binary])?;
    depends.extend(CLIENT_RUNTIME_DEPENDS.iter().map(|d| d.to_string()));
    control(
        cx,
        &root,
        &Control {
            package: "mynalink",
            arch: &capture("dpkg", &["--print-architecture"])?,
            section: "misc",
            depends: &depends,
            recommends: &["libccid".into()],
            description: "first-stage Mynaportal linking client for license centers\n \
                mynalink performs the first stage of linking a Japanese driving-license\n \
                record with Mynaportal at a license center's counter or self-service\n \
                kiosk: it reads the signing certificate from the holder's My Number card\n \
                over PC/SC, has the card sign a statement of the submission, and hands\n \
                the binding to the license center's backend.\n \
                .\n \
                This package holds the staff window, the kiosk mode and the headless\n \
                command line. The kiosk session without a desktop is in mynalink-kiosk.",
        },
    )?;
    Ok(root)
}

fn stage_kiosk(cx: &Context) -> Result<PathBuf, String> {
    let root = cx.stage.join("mynalink-kiosk");
    install(
        &cx.packaging("mynalink-kiosk/mynalink-kiosk.service"),
        &root.join("lib/systemd/system/mynalink-kiosk.service"),
        0o644,
    )?;
    install(
        &cx.packaging("mynalink-kiosk/pam"),
        &root.join("etc/pam.d/mynalink-kiosk"),
        0o644,
    )?;
    install(
        &cx.packaging("mynalink-kiosk/config.toml"),
        &root.join("etc/mynalink-kiosk/config.toml"),
        0o644,
    )?;
    install_doc(cx, &root, "mynalink-kiosk", &[])?;
    install_scripts(cx, &root, "mynalink-kiosk")?;
    let depends = [
        format!("mynalink (= {})", cx.version),
        "cage".into(),
        // Debian's cage (0.1.4) will not start without Xwayland, yet does not depend on it.
        "xwayland".into(),
        "libpam-systemd".into(),
        "adduser".into(),
    ];
    control(
        cx,
        &root,
        &Control {
            package: "mynalink-kiosk",
            arch: "all",
            section: "misc",
            depends: &depends,
            recommends: &[],
            description: "self-service kiosk session for mynalink, without a desktop\n \
                Runs the mynalink kiosk full screen in the cage Wayland compositor on tty1,\n \
                as the system user mynalink-kiosk, and starts it again whenever it ends.\n \
                Its settings are in /etc/mynalink-kiosk/config.toml.",
        },
    )?;
    Ok(root)
}

fn stage_server(cx: &Context, bin_dir: &Path) -> Result<PathBuf, String> {
    let root = cx.stage.join("mynalink-server");
    let binary = root.join("usr/bin/mynalink-server");
    install_stripped(&bin_dir.join("mynalink-server"), &binary)?;
    // The re-check's service and timer are installed, not enabled (the postinst leaves them).
    for unit in SERVER_UNITS {
        install(
            &cx.packaging(&format!("mynalink-server/{unit}")),
            &root.join("lib/systemd/system").join(unit),
            0o644,
        )?;
    }
    install(
        &cx.packaging("mynalink-server/default"),
        &root.join("etc/default/mynalink-server"),
        0o644,
    )?;
    install(
        &cx.packaging("mynalink-server/server.toml"),
        &root.join("etc/mynalink-server/server.toml"),
        0o644,
    )?;
    let man = root.join("usr/share/man/man1");
    // Hand-written until the server's command line is clap's; then the binary writes it
    // (`mynalink-server generate-manpages DIR`) and the file in packaging/ goes.
    let page = cx.packaging("mynalink-server/mynalink-server.1");
    if page.exists() {
        let text = read(&page)?.replace("@VERSION@", cx.version);
        write(&man.join("mynalink-server.1"), text.as_bytes(), 0o644)?;
    } else {
        run_quiet(path_str(&binary)?, &["generate-manpages", path_str(&man)?])?;
    }
    for page in read_dir_sorted(&man)? {
        gzip(&page)?;
    }
    install_doc(cx, &root, "mynalink-server", &[])?;
    install_scripts(cx, &root, "mynalink-server")?;
    let mut depends = shlibs_depends(&root, &[&binary])?;
    depends.push("adduser".into());
    control(
        cx,
        &root,
        &Control {
            package: "mynalink-server",
            arch: &capture("dpkg", &["--print-architecture"])?,
            section: "net",
            depends: &depends,
            recommends: &[],
            description: "reference backend for first-stage Mynaportal linking\n \
                mynalink-server checks the signed first-stage submissions of mynalink\n \
                terminals and keeps one binding per driving license, on SQLite or\n \
                PostgreSQL, over HTTPS. It runs as the hardened systemd service\n \
                mynalink-server.service under its own system user.",
        },
    )?;
    Ok(root)
}

struct Control<'a> {
    package: &'a str,
    arch: &'a str,
    section: &'a str,
    depends: &'a [String],
    recommends: &'a [String],
    /// The synopsis, then the extended description's lines (each starting with a space).
    description: &'a str,
}

/// Writes DEBIAN/control, DEBIAN/conffiles (every file under /etc) and DEBIAN/md5sums.
fn control(cx: &Context, root: &Path, c: &Control) -> Result<(), String> {
    let files: Vec<String> = files_under(root)?
        .into_iter()
        .filter(|f| !f.starts_with("DEBIAN/"))
        .collect();
    let conffiles: Vec<String> = files
        .iter()
        .filter(|f| f.starts_with("etc/"))
        .map(|f| format!("/{f}\n"))
        .collect();
    let mut text = format!(
        "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: {MAINTAINER}\n\
         Installed-Size: {}\nSection: {}\nPriority: optional\n",
        c.package,
        cx.version,
        c.arch.trim(),
        installed_size_kib(root)?,
        c.section,
    );
    if !c.depends.is_empty() {
        text.push_str(&format!("Depends: {}\n", c.depends.join(", ")));
    }
    if !c.recommends.is_empty() {
        text.push_str(&format!("Recommends: {}\n", c.recommends.join(", ")));
    }
    text.push_str(&format!("Description: {}\n", c.description));
    let debian = root.join("DEBIAN");
    write(&debian.join("control"), text.as_bytes(), 0o644)?;
    if !conffiles.is_empty() {
        write(
            &debian.join("conffiles"),
            conffiles.concat().as_bytes(),
            0o644,
        )?;
    }
    let others: Vec<&str> = files
        .iter()
        .filter(|f| !f.starts_with("etc/"))
        .map(String::as_str)
        .collect();
    let mut sums = String::new();
    if !others.is_empty() {
        let output = Command::new("md5sum")
            .arg("--")
            .args(&others)
            .current_dir(root)
            .output()
            .map_err(|e| format!("cannot start md5sum: {e}"))?;
        if !output.status.success() {
            return Err(format!("md5sum failed ({})", output.status));
        }
        sums = String::from_utf8_lossy(&output.stdout).into_owned();
    }
    write(&debian.join("md5sums"), sums.as_bytes(), 0o644)
}

fn install_scripts(cx: &Context, root: &Path, package: &str) -> Result<(), String> {
    for script in ["postinst", "prerm", "postrm"] {
        let source = cx.packaging(&format!("{package}/debian/{script}"));
        install(&source, &root.join("DEBIAN").join(script), 0o755)?;
    }
    Ok(())
}

/// `/usr/share/doc/PACKAGE/`: copyright, changelog.gz and the given documents (gzipped).
fn install_doc(cx: &Context, root: &Path, package: &str, docs: &[PathBuf]) -> Result<(), String> {
    let dir = root.join("usr/share/doc").join(package);
    let copyright = COPYRIGHT.replace("@YEARS@", &cx.date.years);
    write(&dir.join("copyright"), copyright.as_bytes(), 0o644)?;
    let changelog = format!(
        "{package} ({version}) unstable; urgency=medium\n\n  \
         * Built from the mynalink source tree with `cargo xtask package`.\n\n \
         -- {MAINTAINER}  {date}\n",
        version = cx.version,
        date = cx.date.rfc2822,
    );
    // A version without a Debian revision is a native package: changelog.gz, not .Debian.gz.
    write(&dir.join("changelog"), changelog.as_bytes(), 0o644)?;
    gzip(&dir.join("changelog"))?;
    for doc in docs {
        let name = doc.file_name().ok_or("a document without a name")?;
        let target = dir.join(name);
        install(doc, &target, 0o644)?;
        gzip(&target)?;
    }
    Ok(())
}

/// The date of the last commit: the same sources give the same packages.
struct ChangelogDate {
    epoch: String,
    rfc2822: String,
    /// The years of the first and the last commit, for the copyright notice.
    years: String,
}

fn changelog_date() -> Result<ChangelogDate, String> {
    let repo = repo_root();
    let repo = path_str(&repo)?;
    let epoch = capture("git", &["-C", repo, "log", "-1", "--format=%ct"])?;
    let rfc2822 = capture("git", &["-C", repo, "log", "-1", "--format=%cD"])?;
    let years = capture(
        "git",
        &["-C", repo, "log", "--format=%cd", "--date=format:%Y"],
    )?;
    let last = years.lines().next().unwrap_or_default().trim();
    let first = years.lines().last().unwrap_or_default().trim();
    Ok(ChangelogDate {
        epoch: epoch.trim().to_string(),
        rfc2822: rfc2822.trim().to_string(),
        years: if first == last {
            last.to_string()
        } else {
            format!("{first}-{last}")
        },
    })
}

/// The libraries the binaries link, as dpkg-shlibdeps finds them (e.g. `libc6 (>= 2.34)`).
fn shlibs_depends(root: &Path, binaries: &[&Path]) -> Result<Vec<String>, String> {
    // dpkg-shlibdeps wants a debian/control in its working directory; it reads nothing from it
    // that matters here.
    let work = root.with_extension("shlibdeps");
    write(
        &work.join("debian/control"),
        b"Source: mynalink\n\nPackage: mynalink\nArchitecture: any\n",
        0o644,
    )?;
    let mut command = Command::new("dpkg-shlibdeps");
    command.arg("-O").current_dir(&work);
    for binary in binaries {
        command.arg(fs::canonicalize(binary).map_err(|e| format!("{}: {e}", binary.display()))?);
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot start dpkg-shlibdeps: {e}"))?;
    fs::remove_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    if !output.status.success() {
        return Err(format!(
            "dpkg-shlibdeps failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .ok_or_else(|| format!("dpkg-shlibdeps printed no shlibs:Depends: {stdout}"))?;
    Ok(line.split(", ").map(str::to_string).collect())
}

/// `systemd-analyze verify` on the units, in a scratch root holding the host's systemd units,
/// the packages' files and the packaged binaries, so that `ExecStart=` is checked against what
/// is installed. cage comes from Debian: an empty stand-in here (the install test verifies the
/// units again beside the real one). Any diagnostic fails: systemd-analyze exits 0 on a
/// directive it ignores.
pub fn verify_units(out: &Path) -> Result<(), String> {
    step("checking the systemd units (systemd-analyze verify)");
    let stage = out.join("stage");
    let root = out.join("verify-root");
    if root.exists() {
        fs::remove_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    }
    fs::create_dir_all(root.join("usr/lib/systemd")).map_err(|e| e.to_string())?;
    run_quiet(
        "cp",
        &[
            "-a",
            "/usr/lib/systemd/system",
            path_str(&root.join("usr/lib/systemd"))?,
        ],
    )?;
    std::os::unix::fs::symlink("usr/lib", root.join("lib")).map_err(|e| e.to_string())?;
    for package in ["mynalink", "mynalink-kiosk", "mynalink-server"] {
        let from = stage.join(package);
        for file in files_under(&from)? {
            if file.starts_with("DEBIAN/") {
                continue;
            }
            // lib/systemd/system lands in usr/lib/systemd/system through the lib symlink.
            let to = root.join(&file);
            mkdir_parent(&to)?;
            // fs::copy keeps the mode: systemd complains about executable unit files.
            fs::copy(from.join(&file), &to).map_err(|e| format!("{}: {e}", to.display()))?;
        }
    }
    write(
        &root.join("usr/bin/cage"),
        b"#!/bin/sh\n# stand-in for Debian's cage\n",
        0o755,
    )?;
    // ExecReload's shell, as on every Debian system (usrmerge: /bin is /usr/bin).
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).map_err(|e| e.to_string())?;
    fs::copy("/usr/bin/dash", root.join("usr/bin/sh"))
        .map_err(|e| format!("/usr/bin/dash: {e}"))?;
    let units: Vec<String> = std::iter::once("mynalink-kiosk.service")
        .chain(SERVER_UNITS.iter().copied())
        .map(|unit| format!("/usr/lib/systemd/system/{unit}"))
        .collect();
    let root_arg = format!("--root={}", path_str(&root)?);
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no", &root_arg])
        .args(&units)
        .output()
        .map_err(|e| format!("cannot start systemd-analyze: {e}"))?;
    let diagnostics = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || !diagnostics.trim().is_empty() {
        return Err(format!(
            "systemd-analyze verify ({}):\n{}",
            output.status,
            diagnostics.trim_end()
        ));
    }
    Ok(())
}

/// lintian on each package: errors fail, warnings are shown.
pub fn lint(debs: &Debs) -> Result<(), String> {
    for deb in debs.all() {
        step(&format!("lintian {}", deb.display()));
        let output = Command::new("lintian")
            .args(["--fail-on", "error", "--tag-display-limit", "0"])
            .arg(deb)
            .output()
            .map_err(|e| format!("cannot start lintian: {e}"))?;
        let report = String::from_utf8_lossy(&output.stdout);
        for line in report.lines() {
            eprintln!("    {line}");
        }
        if !output.status.success() {
            return Err(format!(
                "lintian found errors in {} ({}): {}",
                deb.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim_end()
            ));
        }
    }
    Ok(())
}

/// Sum of the files' sizes in KiB (each rounded up), plus one per directory or symlink, as
/// dpkg-gencontrol counts.
fn installed_size_kib(root: &Path) -> Result<u64, String> {
    fn walk(dir: &Path, total: &mut u64) -> Result<(), String> {
        for entry in fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let entry = entry.map_err(|e| e.to_string())?;
            if entry.file_name() == "DEBIAN" {
                continue;
            }
            let meta = fs::symlink_metadata(entry.path()).map_err(|e| e.to_string())?;
            if meta.is_dir() {
                *total += 1;
                walk(&entry.path(), total)?;
            } else if meta.is_file() {
                *total += meta.len().div_ceil(1024);
            } else {
                *total += 1;
            }
        }
        Ok(())
    }
    let mut total = 0;
    walk(root, &mut total)?;
    Ok(total)
}

/// Every regular file under `root`, relative, sorted.
fn files_under(root: &Path) -> Result<Vec<String>, String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), String> {
        for entry in fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let entry = entry.map_err(|e| e.to_string())?;
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).map_err(|e| e.to_string())?;
            if meta.is_dir() {
                walk(base, &path, out)?;
            } else if meta.is_file() {
                let relative = path.strip_prefix(base).map_err(|e| e.to_string())?;
                out.push(path_str(relative)?.to_string());
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.sort();
    Ok(out)
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .map(|e| e.map(|e| e.path()).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    paths.sort();
    Ok(paths)
}

fn mkdir_parent(path: &Path) -> Result<(), String> {
    let parent = path.parent().ok_or("a path without a parent")?;
    fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))
}

fn chmod(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn read(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    mkdir_parent(path)?;
    fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    chmod(path, mode)
}

fn install(from: &Path, to: &Path, mode: u32) -> Result<(), String> {
    mkdir_parent(to)?;
    fs::copy(from, to).map_err(|e| format!("{} -> {}: {e}", from.display(), to.display()))?;
    chmod(to, mode)
}

/// A copy without debug information and symbol tables, as Debian ships binaries.
fn install_stripped(from: &Path, to: &Path) -> Result<(), String> {
    install(from, to, 0o755)?;
    run_quiet(
        "strip",
        &[
            "--strip-unneeded",
            "--remove-section=.comment",
            "--remove-section=.note",
            path_str(to)?,
        ],
    )
}

/// gzip -9n, keeping nothing but FILE.gz (no name or time inside: reproducible).
fn gzip(path: &Path) -> Result<(), String> {
    run_quiet("gzip", &["-9nf", path_str(path)?])
}

pub fn path_str(path: &Path) -> Result<&str, String> {
    path.to_str()
        .ok_or_else(|| format!("{} is not UTF-8", path.display()))
}

fn run_quiet(program: &str, args: &[&str]) -> Result<(), String> {
    capture(program, args).map(drop)
}

/// Runs a command and returns its standard output; its error output on failure.
pub fn capture(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        ))
    }
}

/// DEP-5 copyright of every package.
const COPYRIGHT: &str = "\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: mynalink
Comment: The binaries are built with Cargo and include Rust crates from crates.io
 statically; each crate carries its own licence (see `cargo metadata` in the
 source tree).

Files: *
Copyright: @YEARS@ the mynalink developers
License: MIT or Apache-2.0

License: MIT
 Permission is hereby granted, free of charge, to any person obtaining a copy
 of this software and associated documentation files (the \"Software\"), to deal
 in the Software without restriction, including without limitation the rights
 to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
 copies of the Software, and to permit persons to whom the Software is
 furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in
 all copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
 FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
 LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
 OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
 SOFTWARE.

License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
";
