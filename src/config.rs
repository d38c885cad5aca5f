//! Settings from a TOML file: `--config FILE`, else `$XDG_CONFIG_HOME/mynalink/config.toml`
//! (or `~/.config/mynalink/config.toml`), else the system-wide `/etc/mynalink/config.toml` that
//! the Debian package installs (so IT configures a counter PC once for every staff login); the
//! first file that exists is used whole, never merged. Command-line flags override it. Relative paths in
//! the file are taken from the file's directory (so a file planted in whatever directory the
//! client happens to start in is never picked up); relative paths on the command line stay
//! relative to the working directory. A key the client does not know is an error, so a
//! typo never silently changes behaviour.
//!
//! ```toml
//! reader = "SONY FeliCa RC-S300/P 00 00"   # or "auto": the only reader with a My Number card
//! terminal_id = "fuchu-counter-03"
//! operator_id = "staff-0042"
//! jpki_ca = ["/etc/mynalink/sign_ca_2023.pem"]   # J-LIS CA certificates (pinned fingerprints)
//! trust_anchors = []                              # extra roots, for test environments only
//! language = "ja"                                 # or "en"
//! backend_url = "https://dms.example.police.jp/"  # the driver-management backend
//! token_file = "/etc/mynalink/terminal.token"     # this terminal's bearer token
//! ca_file = "/etc/mynalink/backend-ca.pem"        # the backend's TLS root, if not public
//! backend_key = "/etc/mynalink/backend-seal.pem"  # the backend's public key for the outbox
//! outbox = "/var/lib/mynalink/outbox.db"          # default: $XDG_DATA_HOME/mynalink/outbox.db
//! terms_file = "/etc/mynalink/terms.txt"          # the operator's official terms of use
//! terms_version = "2025-03-24"                    # its version, recorded with the consent
//! prefecture = "東京都"                            # this center's prefecture (§4 住所地)
//! operator_password_hash = "pbkdf2-sha256$…"      # settings and the kiosk exit
//!                                                 # (`mynalink operator-password` makes it)
//! kiosk_idle_seconds = 120                        # kiosk: reset after this long untouched
//! ```

use std::path::{Path, PathBuf};

use mynalink_link::{ErrorCode, FlowError};
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub reader: Option<String>,
    pub terminal_id: Option<String>,
    pub operator_id: Option<String>,
    #[serde(default)]
    pub jpki_ca: Vec<PathBuf>,
    #[serde(default)]
    pub trust_anchors: Vec<PathBuf>,
    pub language: Option<Language>,
    pub backend_url: Option<String>,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub backend_key: Option<PathBuf>,
    pub outbox: Option<PathBuf>,
    pub terms_file: Option<PathBuf>,
    pub terms_version: Option<String>,
    pub prefecture: Option<String>,
    pub operator_password_hash: Option<String>,
    pub kiosk_idle_seconds: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Ja,
    En,
}

impl Config {
    /// Every key that names a file. The destructuring lists every field, so a key added
    /// later must be sorted here (path or not) before the crate compiles.
    fn paths_mut(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        let Config {
            reader: _,
            terminal_id: _,
            operator_id: _,
            jpki_ca,
            trust_anchors,
            language: _,
            backend_url: _,
            token_file,
            ca_file,
            backend_key,
            outbox,
            terms_file,
            terms_version: _,
            prefecture: _,
            operator_password_hash: _,
            kiosk_idle_seconds: _,
        } = self;
        jpki_ca
            .iter_mut()
            .chain(trust_anchors.iter_mut())
            .chain(token_file.iter_mut())
            .chain(ca_file.iter_mut())
            .chain(backend_key.iter_mut())
            .chain(outbox.iter_mut())
            .chain(terms_file.iter_mut())
    }
}

/// The default location, when no `--config` is given.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("mynalink").join("config.toml"))
}

fn invalid(path: &Path, detail: impl std::fmt::Display) -> FlowError {
    FlowError::new(ErrorCode::ConfigurationInvalid)
        .with_detail(format!("{}: {detail}", path.display()))
}

/// Where the outbox lives unless configured: `$XDG_DATA_HOME/mynalink/outbox.db` (or
/// `~/.local/share/mynalink/outbox.db`).
pub fn default_outbox() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    Some(base.join("mynalink").join("outbox.db"))
}

/// The system-wide file (a conffile of the Debian package, every key commented out).
pub const SYSTEM_PATH: &str = "/etc/mynalink/config.toml";

/// Loads the explicit file (which must exist), else the first default one that exists (the
/// user's, then the system's; both may be absent).
pub fn load(explicit: Option<&Path>) -> Result<Config, FlowError> {
    match explicit {
        Some(path) => load_first(&[path.to_path_buf()], true),
        None => {
            let defaults: Vec<PathBuf> = default_path()
                .into_iter()
                .chain([PathBuf::from(SYSTEM_PATH)])
                .collect();
            load_first(&defaults, false)
        }
    }
}

/// The first of `paths` that exists, parsed; the defaults when none does and none is required.
fn load_first(paths: &[PathBuf], required: bool) -> Result<Config, FlowError> {
    for path in paths {
        match std::fs::read_to_string(path) {
            Ok(text) => return parse(&text, path),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(invalid(path, e)),
        }
    }
    Ok(Config::default())
}

/// The line of an unknown key: toml points such an error at the whole table, not the key.
fn unknown_key_line(text: &str, message: &str) -> Option<usize> {
    let key = message.strip_prefix("unknown field `")?.split('`').next()?;
    text.lines()
        .position(|line| {
            line.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|index| index + 1)
}

/// Parses a config file's text; errors name the key and the line.
pub fn parse(text: &str, path: &Path) -> Result<Config, FlowError> {
    let mut config: Config = toml::from_str(text).map_err(|e| {
        // toml's message names the key; keep it on one line.
        let message = e.message().to_string();
        let line = unknown_key_line(text, &message).or_else(|| {
            e.span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
        });
        match line {
            Some(line) => invalid(path, format!("line {line}: {message}")),
            None => invalid(path, message),
        }
    })?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    for p in config.paths_mut() {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_file() {
        let c = parse(
            "reader = \"auto\"\nterminal_id = \"t1\"\njpki_ca = [\"ca.pem\"]\ntrust_anchors = [\"/abs/root.der\"]\nlanguage = \"en\"\n",
            Path::new("/etc/mynalink/config.toml"),
        )
        .expect("valid");
        assert_eq!(c.reader.as_deref(), Some("auto"));
        assert_eq!(c.jpki_ca, [PathBuf::from("/etc/mynalink/ca.pem")]);
        assert_eq!(c.trust_anchors, [PathBuf::from("/abs/root.der")]);
        assert_eq!(c.language, Some(Language::En));
    }

    #[test]
    fn every_path_key_is_relative_to_the_file() {
        let c = parse(
            "jpki_ca = [\"ca.pem\"]\ntrust_anchors = [\"root.der\"]\ntoken_file = \"terminal.token\"\n\
             ca_file = \"tls/backend-ca.pem\"\nbackend_key = \"backend-seal.pem\"\n\
             outbox = \"outbox.db\"\nterms_file = \"terms.txt\"\n",
            Path::new("/etc/mynalink/config.toml"),
        )
        .expect("valid");
        let dir = Path::new("/etc/mynalink");
        assert_eq!(c.jpki_ca, [dir.join("ca.pem")]);
        assert_eq!(c.trust_anchors, [dir.join("root.der")]);
        assert_eq!(c.token_file, Some(dir.join("terminal.token")));
        assert_eq!(c.ca_file, Some(dir.join("tls/backend-ca.pem")));
        assert_eq!(c.backend_key, Some(dir.join("backend-seal.pem")));
        assert_eq!(c.outbox, Some(dir.join("outbox.db")));
        assert_eq!(c.terms_file, Some(dir.join("terms.txt")));
        // Absolute paths stay as they are.
        let c = parse(
            "token_file = \"/srv/t.token\"\n",
            Path::new("/etc/mynalink/config.toml"),
        )
        .expect("valid");
        assert_eq!(c.token_file, Some(PathBuf::from("/srv/t.token")));
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse("terminal_idd = \"x\"\n", Path::new("c.toml")).expect_err("unknown key");
        assert_eq!(e.code, ErrorCode::ConfigurationInvalid);
        assert!(
            e.detail
                .as_deref()
                .is_some_and(|d| d.contains("terminal_idd")),
            "{e:?}"
        );
        let e = parse("\n\nlanguage = \"fr\"\n", Path::new("c.toml")).expect_err("bad value");
        let detail = e.detail.unwrap_or_default();
        assert!(detail.contains("line 3"), "{detail}");
        // An unknown key on line 2, and a bad value at the start of line 2.
        let e = parse(
            "terminal_id = \"x\"\nbackend_ulr = \"https://x/\"\n",
            Path::new("c.toml"),
        )
        .expect_err("unknown key");
        let detail = e.detail.unwrap_or_default();
        assert!(
            detail.contains("line 2") && detail.contains("backend_ulr"),
            "{detail}"
        );
        let e = parse(
            "terminal_id = \"x\"\nkiosk_idle_seconds = \"ten\"\n",
            Path::new("c.toml"),
        )
        .expect_err("bad value");
        let detail = e.detail.unwrap_or_default();
        assert!(detail.contains("line 2"), "{detail}");
        let e = parse("trust_anchors = \"x\"\n", Path::new("c.toml")).expect_err("wrong type");
        assert!(e.detail.is_some());
        assert_eq!(
            parse("", Path::new("c.toml")).expect("empty"),
            Config::default()
        );
    }

    #[test]
    fn missing_default_file_is_fine_but_missing_explicit_file_is_not() {
        assert!(load(Some(Path::new("/nonexistent/mynalink.toml"))).is_err());
    }

    /// The conffiles the Debian packages install: every key the client knows is there,
    /// commented out (`#key = value`) with a value that parses, and nothing is set.
    #[test]
    fn packaged_config_files_list_every_key_commented_out() {
        for (name, text) in [
            (
                "packaging/mynalink/config.toml",
                include_str!("../packaging/mynalink/config.toml"),
            ),
            (
                "packaging/mynalink-kiosk/config.toml",
                include_str!("../packaging/mynalink-kiosk/config.toml"),
            ),
        ] {
            let path = Path::new(name);
            assert_eq!(
                parse(text, path).expect("the file as shipped parses"),
                Config::default(),
                "{name}: nothing may be set as shipped"
            );
            // Uncomment the `#key = value` lines (prose lines are `# …`).
            let uncommented: String = text
                .lines()
                .map(|line| match line.strip_prefix('#') {
                    Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => rest,
                    _ => line,
                })
                .map(|line| format!("{line}\n"))
                .collect();
            // An unknown key, a key twice or a bad value fails here.
            let all = parse(&uncommented, path)
                .unwrap_or_else(|e| panic!("{name} uncommented: {:?}", e.detail));
            // Listing every field: a key added to Config must be added to the files too.
            let Config {
                reader,
                terminal_id,
                operator_id,
                jpki_ca,
                trust_anchors: _, // shown as `[]`: test benches only
                language,
                backend_url,
                token_file,
                ca_file,
                backend_key,
                outbox,
                terms_file,
                terms_version,
                prefecture,
                operator_password_hash,
                kiosk_idle_seconds,
            } = all;
            assert!(
                text.lines().any(|l| l.starts_with("#trust_anchors = ")),
                "{name}: trust_anchors"
            );
            assert!(!jpki_ca.is_empty(), "{name}: jpki_ca");
            for (key, set) in [
                ("reader", reader.is_some()),
                ("terminal_id", terminal_id.is_some()),
                ("operator_id", operator_id.is_some()),
                ("language", language.is_some()),
                ("backend_url", backend_url.is_some()),
                ("token_file", token_file.is_some()),
                ("ca_file", ca_file.is_some()),
                ("backend_key", backend_key.is_some()),
                ("outbox", outbox.is_some()),
                ("terms_file", terms_file.is_some()),
                ("terms_version", terms_version.is_some()),
                ("prefecture", prefecture.is_some()),
                ("operator_password_hash", operator_password_hash.is_some()),
                ("kiosk_idle_seconds", kiosk_idle_seconds.is_some()),
            ] {
                assert!(set, "{name}: `#{key} = …` is missing");
            }
        }
    }

    #[test]
    fn the_users_file_comes_before_the_systems_and_neither_is_needed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let user = dir.path().join("user/config.toml");
        let system = dir.path().join("etc/config.toml");
        std::fs::create_dir_all(system.parent().expect("parent")).expect("mkdir");
        std::fs::write(
            &system,
            "terminal_id = \"from-etc\"\nterms_file = \"terms.txt\"\n",
        )
        .expect("write");
        let candidates = [user.clone(), system.clone()];
        // No user file: the system's is used, its relative paths from its own directory.
        let c = load_first(&candidates, false).expect("system file");
        assert_eq!(c.terminal_id.as_deref(), Some("from-etc"));
        assert_eq!(c.terms_file, Some(dir.path().join("etc/terms.txt")));
        // A user file wins whole: nothing is merged from the system's.
        std::fs::create_dir_all(user.parent().expect("parent")).expect("mkdir");
        std::fs::write(&user, "operator_id = \"staff-1\"\n").expect("write");
        let c = load_first(&candidates, false).expect("user file");
        assert_eq!(c.operator_id.as_deref(), Some("staff-1"));
        assert_eq!(c.terminal_id, None);
        // A file that exists but is bad is an error, not a reason to try the next one.
        std::fs::write(&user, "terminal_idd = 1\n").expect("write");
        assert!(load_first(&candidates, false).is_err());
        // Neither exists: the defaults.
        let none = [dir.path().join("a.toml"), dir.path().join("b.toml")];
        assert_eq!(
            load_first(&none, false).expect("defaults"),
            Config::default()
        );
    }
}
