//! The durable outbox with statements signed by the simulated card: entries survive reopening
//! and crashes, are never stored twice, are scheduled with backoff, and the terminal's files
//! never hold the certificate or the holder's basic-4 information.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use mynalink_card::SigningPassword;
use mynalink_link::outbox::{
    backoff, certificate_aad, EntryId, Outbox, OutboxError, BACKOFF_BASE, BACKOFF_CAP,
};
use mynalink_link::seal::{self, RecipientKey, SealPrivateKey};
use mynalink_link::statement::Statement;
use mynalink_link::trust::TrustStore;
use mynalink_link::{FirstStage, FlowInputs, SignedStatement};
use mynalink_simcard::{sign_test_root_der, SimOptions, SimTransport};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

const NAME: &str = "試験\u{3000}花子";
const ADDRESS: &str = "東京都";

fn backend_key() -> &'static SealPrivateKey {
    static KEY: OnceLock<SealPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| SealPrivateKey::generate().expect("keygen"))
}

fn backend_public() -> RecipientKey {
    backend_key().public_key().clone()
}

/// A fresh statement (new nonce) signed by the simulated card.
fn sign_fresh() -> SignedStatement {
    let mut trust = TrustStore::new();
    trust
        .add_trust_anchor(sign_test_root_der())
        .expect("test root");
    let inputs = FlowInputs::fresh("729913281070", "test-terminal", None, None);
    let mut flow =
        FirstStage::new(SimTransport::new(SimOptions::default()), inputs, trust).expect("flow");
    flow.check_card().expect("card");
    flow.verify_password(&SigningPassword::parse("TEST1234").expect("format"), false)
        .expect("verify");
    flow.read_certificate().expect("certificate");
    let signed = flow.sign().expect("sign").clone();
    flow.end();
    signed
}

fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_795_000_000 + seconds).expect("time")
}

fn companion(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether any 24-byte run of `secret` appears in `data`: catches a partial copy too.
fn shares_a_run(data: &[u8], secret: &[u8]) -> bool {
    const RUN: usize = 24;
    let runs: std::collections::HashSet<&[u8]> = data.windows(RUN).collect();
    secret.windows(RUN).any(|w| runs.contains(w))
}

#[test]
fn an_entry_survives_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("outbox.db");
    let signed = sign_fresh();
    let (id, new) = {
        let mut outbox = Outbox::open(&path).expect("open");
        assert!(outbox.is_empty().expect("len"));
        outbox.add(&signed, &backend_public()).expect("add")
    };
    assert!(new);

    let outbox = Outbox::open(&path).expect("reopen");
    assert_eq!(outbox.len().expect("len"), 1);
    let list = outbox.list().expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, id);
    assert_eq!(list[0].license_number, "729913281070");
    assert_eq!(
        list[0].statement_sha256,
        hex::encode(Sha256::digest(&signed.bytes))
    );
    assert_eq!(list[0].attempts, 0);
    assert_eq!(list[0].last_error, None);

    let due = outbox.due(OffsetDateTime::now_utc()).expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].statement, signed.bytes);
    assert_eq!(due[0].signature, signed.signature);
}

#[test]
fn adding_the_same_statement_twice_keeps_one_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("outbox.db");
    let signed = sign_fresh();
    let mut outbox = Outbox::open(&path).expect("open");
    let (first, new) = outbox.add(&signed, &backend_public()).expect("add");
    assert!(new);
    let (again, new) = outbox.add(&signed, &backend_public()).expect("add again");
    assert!(!new);
    assert_eq!(again, first);
    drop(outbox);
    let mut outbox = Outbox::open(&path).expect("reopen");
    let (after_reopen, new) = outbox.add(&signed, &backend_public()).expect("add");
    assert!(!new);
    assert_eq!(after_reopen, first);
    assert_eq!(outbox.len().expect("len"), 1);

    // A different statement from the same card is a different entry.
    let (second, new) = outbox.add(&sign_fresh(), &backend_public()).expect("add");
    assert!(new);
    assert_ne!(second, first);
    assert_eq!(outbox.len().expect("len"), 2);
}

#[test]
fn removal_after_acknowledgement() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("outbox.db");
    let mut outbox = Outbox::open(&path).expect("open");
    let (id, _) = outbox.add(&sign_fresh(), &backend_public()).expect("add");
    assert!(outbox.remove(id).expect("remove"));
    assert!(!outbox.remove(id).expect("remove again"));
    assert_eq!(outbox.len().expect("len"), 0);
    assert!(outbox.due(at(1_000_000)).expect("due").is_empty());
    assert_eq!(outbox.next_due_at().expect("next"), None);
    drop(outbox);

    let mut outbox = Outbox::open(&path).expect("reopen");
    assert!(outbox.list().expect("list").is_empty());
    // Ids are not reused: a late acknowledgement of the old id cannot remove a new entry.
    let (newer, _) = outbox.add(&sign_fresh(), &backend_public()).expect("add");
    assert!(newer > id);
    assert!(!outbox.remove(id).expect("stale remove"));
    assert_eq!(outbox.len().expect("len"), 1);
}

#[test]
fn failures_are_retried_with_growing_jittered_waits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut outbox = Outbox::open(dir.path().join("outbox.db")).expect("open");
    let t0 = at(0);
    let (id, _) = outbox
        .add_at(&sign_fresh(), &backend_public(), t0)
        .expect("add");
    assert_eq!(
        outbox.due(t0 - Duration::from_secs(1)).expect("due").len(),
        0
    );
    assert_eq!(outbox.due(t0).expect("due").len(), 1);
    assert_eq!(outbox.next_due_at().expect("next"), Some(t0));

    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let mut now = t0;
    for attempt in 1..=15u32 {
        // The schedule is exactly `backoff` with the same random stream.
        let expected = backoff(attempt, &mut rng.clone());
        let next = outbox
            .record_failure(id, "backend_unreachable", now, &mut rng)
            .expect("record");
        assert_eq!(next, now + expected, "attempt {attempt}");
        assert!(next >= now);
        assert!(expected <= BACKOFF_CAP);
        assert!(expected <= BACKOFF_BASE * 2u32.pow(attempt - 1));
        assert_eq!(outbox.next_due_at().expect("next"), Some(next));

        let entry = &outbox.list().expect("list")[0];
        assert_eq!(entry.attempts, attempt);
        assert_eq!(entry.next_attempt_at, next);
        assert_eq!(entry.last_error.as_deref(), Some("backend_unreachable"));
        if next > now {
            assert!(outbox
                .due(next - Duration::from_millis(1))
                .expect("due")
                .is_empty());
        }
        let due = outbox.due(next).expect("due");
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].attempts, attempt);
        now = next;
    }

    let long = "x".repeat(10_000);
    outbox
        .record_failure(id, &long, now, &mut rng)
        .expect("record");
    let stored = outbox.list().expect("list")[0].last_error.clone();
    assert_eq!(stored.map(|e| e.len()), Some(500));

    let missing = EntryId(id.0 + 1000);
    assert!(matches!(
        outbox.record_failure(missing, "x", now, &mut rng),
        Err(OutboxError::NotFound(m)) if m == missing
    ));
}

#[test]
fn backoff_bounds() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    assert_eq!(backoff(0, &mut rng), Duration::ZERO);
    for attempts in 1..=40u32 {
        let window = if attempts <= 10 {
            (BACKOFF_BASE * 2u32.pow(attempts - 1)).min(BACKOFF_CAP)
        } else {
            BACKOFF_CAP
        };
        let samples: Vec<Duration> = (0..2000).map(|_| backoff(attempts, &mut rng)).collect();
        let max = samples.iter().max().copied().unwrap_or_default();
        let min = samples.iter().min().copied().unwrap_or_default();
        assert!(max <= window, "attempt {attempts}: {max:?} > {window:?}");
        // Full jitter: the whole window is used, from (nearly) zero up to its ceiling.
        assert!(
            max >= window.mul_f64(0.95),
            "attempt {attempts}: max {max:?}"
        );
        assert!(
            min <= window.mul_f64(0.05),
            "attempt {attempts}: min {min:?}"
        );
    }
    assert!(backoff(u32::MAX, &mut rng) <= BACKOFF_CAP);
    // Seeded: the same stream gives the same waits.
    let a: Vec<_> = (1..10)
        .map(|n| backoff(n, &mut ChaCha20Rng::seed_from_u64(5)))
        .collect();
    let b: Vec<_> = (1..10)
        .map(|n| backoff(n, &mut ChaCha20Rng::seed_from_u64(5)))
        .collect();
    assert_eq!(a, b);
}

#[test]
fn files_are_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("outbox.db");
    let mut outbox = Outbox::open(&path).expect("open");
    outbox.add(&sign_fresh(), &backend_public()).expect("add");
    for p in [
        path.clone(),
        companion(&path, "-wal"),
        companion(&path, "-shm"),
    ] {
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    drop(outbox);

    // An existing file with loose permissions is tightened.
    let loose = dir.path().join("loose.db");
    std::fs::write(&loose, b"").expect("create");
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let outbox = Outbox::open(&loose).expect("open");
    assert_eq!(mode(&loose), 0o600);
    assert_eq!(mode(&companion(&loose, "-wal")), 0o600);
    drop(outbox);
}

#[test]
fn the_files_never_hold_the_certificate_or_basic4() {
    let signed = sign_fresh();
    let der = &signed.certificate_der;
    // The needles must be in the certificate for their absence below to mean anything.
    assert!(contains(der, NAME.as_bytes()), "name not in the test DER");
    assert!(
        contains(der, ADDRESS.as_bytes()),
        "address not in the test DER"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("outbox.db");
    let wal = companion(&path, "-wal");
    let mut outbox = Outbox::open(&path).expect("open");
    outbox.add(&signed, &backend_public()).expect("add");
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let (other, _) = outbox.add(&sign_fresh(), &backend_public()).expect("add");
    outbox
        .record_failure(other, "backend_unreachable", at(0), &mut rng)
        .expect("record");

    let check = |stage: &str| {
        let mut all = Vec::new();
        for p in [&path, &wal] {
            let bytes = std::fs::read(p).unwrap_or_default();
            all.extend_from_slice(&bytes);
        }
        // The entry is in these files (this is where to look) ...
        assert!(
            contains(&all, &signed.bytes),
            "{stage}: statement not found"
        );
        // ... and nothing of the certificate is.
        assert!(!contains(&all, der), "{stage}: certificate DER");
        assert!(!shares_a_run(&all, der), "{stage}: part of the certificate");
        assert!(!contains(&all, NAME.as_bytes()), "{stage}: holder name");
        assert!(!contains(&all, ADDRESS.as_bytes()), "{stage}: address");
    };
    // Without a checkpoint the new rows are in the WAL.
    assert!(std::fs::metadata(&wal).expect("wal").len() > 0);
    check("before checkpoint");
    outbox.checkpoint().expect("checkpoint");
    check("after checkpoint");
    drop(outbox);
    check("after close");
}

#[test]
fn the_backend_opens_the_sealed_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut outbox = Outbox::open(dir.path().join("outbox.db")).expect("open");
    let signed = sign_fresh();
    outbox.add(&signed, &backend_public()).expect("add");
    let other = sign_fresh();
    outbox.add(&other, &backend_public()).expect("add");

    let due = outbox.due(OffsetDateTime::now_utc()).expect("due");
    assert_eq!(due.len(), 2);
    let entry = due
        .iter()
        .find(|e| e.statement == signed.bytes)
        .expect("entry");
    // The backend rebuilds the AAD from the statement it received.
    let aad = certificate_aad(&entry.statement);
    let der = seal::open(backend_key(), &entry.sealed_certificate, &aad).expect("open");
    assert_eq!(&der[..], &signed.certificate_der[..]);
    let statement = Statement::from_canonical_bytes(&entry.statement).expect("statement");
    assert_eq!(
        statement.certificate_sha256,
        hex::encode(Sha256::digest(&der[..]))
    );

    // Bound to its statement: it does not open against another one.
    let other_aad = certificate_aad(&other.bytes);
    assert_eq!(
        seal::open(backend_key(), &entry.sealed_certificate, &other_aad).expect_err("swap"),
        seal::SealError::Open
    );
    // And the terminal holds no key that opens it.
    let stranger = SealPrivateKey::generate().expect("keygen");
    assert!(seal::open(&stranger, &entry.sealed_certificate, &aad).is_err());
}

#[test]
fn inconsistent_statements_are_refused_without_their_contents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut outbox = Outbox::open(dir.path().join("outbox.db")).expect("open");
    let signed = sign_fresh();

    let mut swapped = signed.clone();
    swapped.certificate_der.push(0);
    let mut garbled = signed.clone();
    garbled.bytes.insert(0, b' ');
    let mut unsigned = signed.clone();
    unsigned.signature.clear();
    for bad in [swapped, garbled, unsigned] {
        let e = outbox.add(&bad, &backend_public()).expect_err("refused");
        assert!(matches!(e, OutboxError::InvalidStatement(_)), "{e:?}");
        let text = format!("{e} {e:?}");
        assert!(!text.contains("729913281070"), "{text}");
        assert!(!text.contains(&signed.statement.nonce), "{text}");
    }
    assert_eq!(outbox.len().expect("len"), 0);
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("outbox.db");
    drop(Outbox::open(&path).expect("open"));
    let conn = rusqlite::Connection::open(&path).expect("sqlite");
    conn.execute("UPDATE schema_version SET version = 99", [])
        .expect("update");
    drop(conn);
    assert!(matches!(
        Outbox::open(&path),
        Err(OutboxError::UnsupportedSchema {
            found: 99,
            supported: mynalink_link::outbox::SCHEMA_VERSION
        })
    ));
}

const CHILD_DIR: &str = "MYNALINK_OUTBOX_CRASH_DIR";

/// Runs only as the child of `a_crash_right_after_add_loses_nothing_and_duplicates_nothing`:
/// adds the statement it finds in the directory, reports, and aborts without any cleanup.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let read = |name: &str| std::fs::read(dir.join(name)).expect(name);
    let bytes = read("statement.bin");
    let signed = SignedStatement {
        statement: Statement::from_canonical_bytes(&bytes).expect("statement"),
        bytes,
        signature: read("signature.bin"),
        algorithm: mynalink_card::SignatureAlgorithm::RsaPkcs1(
            mynalink_card::HashAlgorithm::Sha256,
        ),
        certificate_der: read("certificate.der"),
    };
    let recipient = seal::parse_public_key(&read("backend.pem")).expect("key");
    let mut outbox = Outbox::open(dir.join("outbox.db")).expect("open");
    let (id, new) = outbox.add(&signed, &recipient).expect("add");
    println!("ADDED {id} {new}");
    std::process::abort();
}

fn run_child(dir: &Path) -> (Option<i32>, String) {
    let exe = std::env::current_exe().expect("test binary");
    // umask 000: the modes checked afterwards must not depend on the umask.
    let output = Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(exe)
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .output()
        .expect("spawn");
    (
        output.status.signal(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn a_crash_right_after_add_loses_nothing_and_duplicates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signed = sign_fresh();
    std::fs::write(dir.path().join("statement.bin"), &signed.bytes).expect("write");
    std::fs::write(dir.path().join("signature.bin"), &signed.signature).expect("write");
    std::fs::write(dir.path().join("certificate.der"), &signed.certificate_der).expect("write");
    let pem = backend_public().to_pem().expect("pem");
    std::fs::write(dir.path().join("backend.pem"), pem).expect("write");

    let (signal, stdout) = run_child(dir.path());
    assert_eq!(signal, Some(6), "child did not abort: {stdout}");
    assert!(stdout.contains("ADDED 1 true"), "{stdout}");
    // The second crash adds the same statement: it finds the first one.
    let (signal, stdout) = run_child(dir.path());
    assert_eq!(signal, Some(6), "child did not abort: {stdout}");
    assert!(stdout.contains("ADDED 1 false"), "{stdout}");

    // The aborted processes left the WAL behind, created private under umask 000.
    let path = dir.path().join("outbox.db");
    for p in [
        path.clone(),
        companion(&path, "-wal"),
        companion(&path, "-shm"),
    ] {
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }

    let mut outbox = Outbox::open(&path).expect("open after crash");
    assert_eq!(outbox.len().expect("len"), 1);
    let due = outbox.due(OffsetDateTime::now_utc()).expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, EntryId(1));
    assert_eq!(due[0].statement, signed.bytes);
    let der = seal::open(
        backend_key(),
        &due[0].sealed_certificate,
        &certificate_aad(&due[0].statement),
    )
    .expect("open sealed");
    assert_eq!(&der[..], &signed.certificate_der[..]);
    assert_eq!(
        outbox.add(&signed, &backend_public()).expect("add"),
        (EntryId(1), false)
    );
}
