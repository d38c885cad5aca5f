//! `mynalink doctor` against the real pieces: pcscd with the simulated card in a vpcd reader,
//! the real `mynalink-server` over HTTPS, the J-LIS roots, a writable outbox — then with one
//! thing wrong at a time, each named by its own code, and the exit status 1.

mod common;
#[path = "common/server.rs"]
mod server;
#[path = "common/x509.rs"]
mod x509;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;

use common::{mynalink, path_str, pcsc, Run};
use serde_json::Value;
use server::{Setup, TERMINAL};

const RECORDS: &str = "729913281070,myna_only,試験　花子,1990-01-02,valid\n";

/// A config file in `dir` for the backend at `url`.
fn config(dir: &Path, setup: &Setup, url: &str, terminal_id: &str) -> String {
    let jlis = common::fixtures_dir().join("jlis");
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "terminal_id = {terminal_id:?}\n\
             backend_url = {url:?}\n\
             token_file = {:?}\n\
             ca_file = {:?}\n\
             backend_key = {:?}\n\
             outbox = {:?}\n\
             jpki_ca = [{:?}, {:?}]\n",
            path_str(&setup.token_file),
            path_str(&setup.ca_pem),
            path_str(&setup.seal_public),
            path_str(&dir.join("state/outbox.db")),
            path_str(&jlis.join("sign_ca_2023.pem")),
            path_str(&jlis.join("sign_ca_2015.pem")),
        ),
    )
    .expect("config");
    path_str(&path)
}

fn doctor(config: &str) -> (Run, Value) {
    let run = mynalink(&["--config", config, "doctor", "--json"], None);
    let json: Value = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {}{}", run.stdout, run.stderr));
    (run, json)
}

/// The codes of the checks named `check`.
fn codes(report: &Value, check: &str) -> Vec<String> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["check"] == check)
        .map(|c| c["code"].as_str().expect("code").to_string())
        .collect()
}

#[test]
fn a_working_counter_passes_and_each_fault_is_named() {
    // The doctor asks every reader's card what it is: no other test may use them meanwhile.
    let _readers = pcsc::lock_all();
    let _card = pcsc::VirtualCard::start(pcsc::SLOTS[0], &[]);
    let dir = common::temp_dir();
    let setup = Setup::new(&dir.path().join("backend"), RECORDS, &[]);
    let server = setup.start();

    let good = config(dir.path(), &setup, &server.url, TERMINAL);
    let (run, report) = doctor(&good);
    assert_eq!(run.status, 0, "{report:#}");
    assert_eq!(report["ok"], true);
    assert_eq!(codes(&report, "config"), ["config_ok"]);
    assert_eq!(codes(&report, "pcscd"), ["pcsc_ok"]);
    assert_eq!(codes(&report, "font"), ["font_ok"]);
    assert_eq!(codes(&report, "backend"), ["backend_ok"]);
    assert_eq!(codes(&report, "clock"), ["clock_ok"]);
    assert_eq!(codes(&report, "outbox"), ["outbox_ok"]);
    // The 2015 generation ended in 2025: reported, not a failure.
    let mut ca = codes(&report, "ca");
    ca.sort();
    assert_eq!(ca, ["ca_expired", "ca_ok"]);
    // The simulated card is in the first virtual reader.
    let reader = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["facts"]["name"] == pcsc::SLOTS[0].reader)
        .expect("the reader with the card");
    assert_eq!(reader["facts"]["my_number_card"], true, "{reader}");
    assert_eq!(reader["facts"]["card_present"], true);
    // No token, password or personal data in the report.
    assert!(!run.stdout.contains(server::TOKEN));
    assert!(!run.stdout.contains("花子"));

    // The token is another terminal's.
    let other = config(dir.path(), &setup, &server.url, "some-other-counter");
    let (run, report) = doctor(&other);
    assert_eq!(run.status, 1);
    assert_eq!(codes(&report, "backend"), ["token_for_another_terminal"]);

    // A token the backend does not know.
    let stranger = dir.path().join("stranger.token");
    std::fs::write(&stranger, "not-a-registered-token\n").expect("token");
    std::fs::set_permissions(
        &stranger,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    let text = std::fs::read_to_string(&good).expect("config");
    let refused = dir.path().join("refused.toml");
    std::fs::write(
        &refused,
        text.replace(&path_str(&setup.token_file), &path_str(&stranger)),
    )
    .expect("config");
    let (run, report) = doctor(&path_str(&refused));
    assert_eq!(run.status, 1);
    assert_eq!(codes(&report, "backend"), ["token_refused"]);

    // An outbox whose directory cannot be made (a file stands where it would be).
    let blocked = dir.path().join("blocked");
    std::fs::write(&blocked, b"").expect("file");
    let no_outbox = dir.path().join("no-outbox.toml");
    std::fs::write(
        &no_outbox,
        text.replace(
            &path_str(&dir.path().join("state/outbox.db")),
            &path_str(&blocked.join("outbox.db")),
        ),
    )
    .expect("config");
    let (run, report) = doctor(&path_str(&no_outbox));
    assert_eq!(run.status, 1);
    assert_eq!(codes(&report, "outbox"), ["outbox_unavailable"]);

    // The backend is gone.
    server.kill();
    let (run, report) = doctor(&good);
    assert_eq!(run.status, 1);
    assert_eq!(codes(&report, "backend"), ["backend_unreachable"]);

    // A configuration file with an unknown key names it and its line.
    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        "terminal_id = \"x\"\nbackend_ulr = \"https://x/\"\n",
    )
    .expect("config");
    let (run, report) = doctor(&path_str(&broken));
    assert_eq!(run.status, 1);
    let check = &report["checks"][0];
    assert_eq!(check["code"], "config_invalid");
    let detail = check["detail"].as_str().expect("detail");
    assert!(
        detail.contains("line 2") && detail.contains("backend_ulr"),
        "{detail}"
    );
}

/// A backend on 127.0.0.1 (plain HTTP is allowed to a literal loopback address) that answers
/// every request with the terminal's identity and the given `Date`.
fn backend_with_clock(date: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let body = format!(r#"{{"id":"{TERMINAL}","kind":"terminal"}}"#);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nDate: {date}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[test]
fn a_clock_the_backend_would_not_accept_is_named() {
    let _readers = pcsc::lock_all();
    let dir = common::temp_dir();
    let setup = Setup::new(&dir.path().join("backend"), RECORDS, &[]);
    for (date, code) in [
        // The backend lives in 2001: this terminal is far ahead.
        ("Mon, 01 Jan 2001 00:00:00 GMT", "clock_ahead"),
        // The backend lives in 2100: this terminal is far behind.
        ("Fri, 01 Jan 2100 00:00:00 GMT", "clock_behind"),
    ] {
        let url = backend_with_clock(date);
        let config = config(dir.path(), &setup, &url, TERMINAL);
        let (run, report) = doctor(&config);
        assert_eq!(run.status, 1, "{report:#}");
        assert_eq!(codes(&report, "backend"), ["backend_ok"]);
        assert_eq!(codes(&report, "clock"), [code]);
    }
}
