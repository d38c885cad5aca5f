//! The terminal's token file must be readable by its owner only: whoever reads the token can
//! submit as this terminal. Anything wider is refused before the card is touched.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;

#[test]
fn a_token_file_other_users_can_read_is_refused_with_the_fix() {
    let dir = temp_dir();
    let token = dir.path().join("terminal.token");
    std::fs::write(&token, "s3cret-terminal-token\n").expect("token");
    for mode in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let token_arg = path_str(&token);
        let outbox = path_str(&dir.path().join("outbox.db"));
        let run = mynalink(
            &[
                "headless",
                "--sim",
                "--license",
                LICENSE,
                "--pin-stdin",
                "--json",
                "--backend",
                "http://127.0.0.1:1/",
                "--token-file",
                &token_arg,
                "--backend-key",
                "/nonexistent/backend-seal.pem",
                "--outbox",
                &outbox,
            ],
            Some("TEST1234\n"),
        );
        assert_eq!(run.status, 2, "mode {mode:o}: {}", run.stdout);
        let json = run.json();
        assert_eq!(json["error"]["code"], "configuration_invalid", "{json}");
        let detail = json["error"]["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(&format!("chmod 600 {token_arg}")),
            "names the file and the fix: {detail}"
        );
        assert_eq!(json["apdu_count"], 0, "nothing reached the card");
        assert!(!run.stdout.contains("s3cret"), "the token is never shown");
        assert!(!run.stderr.contains("s3cret"));
    }
}
