//! The annotated `/etc/mynalink-server/server.toml` of the Debian package: every `serve` option
//! has its key there (the option without its dashes), commented out, with an example value that
//! `serve` accepts. Until `serve --config` reads the file, its keys are checked by turning each
//! back into its command-line option.

use mynalink_server::serve::ServeOptions;

const FILE: &str = include_str!("../../../packaging/mynalink-server/server.toml");

/// The options `serve` takes today, each a key of the file.
const OPTIONS: &[&str] = &[
    "listen",
    "database",
    "database-password-file",
    "tls-cert",
    "tls-key",
    "insecure-loopback-http",
    "terminal-tokens",
    "mynaportal-tokens",
    "admin-tokens",
    "trust-anchor",
    "seal-key",
    "basic4-key",
    "allow-test-root",
    "freshness-hours",
    "max-connections",
    "max-connections-per-ip",
    "log-format",
    "metrics-listen",
    "metrics-allow-remote",
    "ocsp",
    "ocsp-signer",
    "crl",
    "crl-refresh-minutes",
    "revocation",
    "recheck-hours",
];

/// The `#key = value` lines (prose comments are `# …`).
fn commented_keys() -> Vec<(String, String)> {
    FILE.lines()
        .filter_map(|line| line.strip_prefix('#'))
        .filter(|rest| rest.starts_with(|c: char| c.is_ascii_lowercase()))
        .map(|rest| {
            let (key, value) = rest.split_once(" = ").expect("`#key = value`");
            (key.to_string(), value.to_string())
        })
        .collect()
}

/// A value as the command line gives it: strings unquoted, an array as one option per item,
/// `true`/`false` as the bare flag or nothing.
fn as_arguments(key: &str, value: &str, arguments: &mut Vec<String>) {
    let option = format!("--{key}");
    match value {
        "true" => arguments.push(option),
        "false" => {}
        v if v.starts_with('[') => {
            for item in v.trim_matches(['[', ']']).split(',').map(str::trim) {
                arguments.push(option.clone());
                arguments.push(item.trim_matches('"').to_string());
            }
        }
        v => {
            arguments.push(option);
            arguments.push(v.trim_matches('"').to_string());
        }
    }
}

#[test]
fn nothing_is_set_as_shipped() {
    for line in FILE.lines() {
        assert!(
            line.is_empty() || line.starts_with('#'),
            "server.toml sets something: {line:?}"
        );
    }
}

#[test]
fn every_serve_option_has_its_key_and_every_key_is_an_option() {
    let keys = commented_keys();
    let mut names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    let mut expected = OPTIONS.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected, "the keys of server.toml");

    // Every example value is one `serve` accepts. Plain HTTP excludes TLS: the examples are
    // TLS, and the boolean flags are checked turned on, each with what it may be combined with.
    let mut arguments = Vec::new();
    for (key, value) in &keys {
        as_arguments(key, value, &mut arguments);
    }
    ServeOptions::parse(&arguments).unwrap_or_else(|e| panic!("{arguments:?}: {e}"));
    arguments.push("--allow-test-root".into());
    ServeOptions::parse(&arguments).unwrap_or_else(|e| panic!("{arguments:?}: {e}"));
    arguments.push("--metrics-allow-remote".into());
    ServeOptions::parse(&arguments).unwrap_or_else(|e| panic!("{arguments:?}: {e}"));
    let plain = [
        "--listen",
        "127.0.0.1:8443",
        "--database",
        "sqlite:/var/lib/mynalink-server/db.sqlite",
        "--insecure-loopback-http",
        "--revocation",
        "off",
    ]
    .map(String::from);
    ServeOptions::parse(&plain).unwrap_or_else(|e| panic!("{plain:?}: {e}"));
}
