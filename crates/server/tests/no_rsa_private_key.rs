//! The server performs no RSA private-key operation. Sealed certificates used to be opened
//! with RSA-OAEP decryption, which the `rsa` crate does without constant-time guarantees
//! (RUSTSEC-2023-0071, the Marvin attack): any terminal could time it. They are opened with
//! HPKE now; the `rsa` crate stays for verifying card signatures, a public-key operation.
//! The check reads the built binary itself, so a private-key operation brought back by any
//! path fails it.

/// Function names of the `rsa` crate's private-key primitive (decryption and signing both
/// go through it), as they appear in the binary's symbol table.
const PRIVATE_KEY_OPERATIONS: [&str; 2] = ["rsa_decrypt", "rsa_decrypt_and_check"];

#[test]
fn the_server_binary_has_no_rsa_private_key_operation() {
    let path = env!("CARGO_BIN_EXE_mynalink-server");
    let binary = std::fs::read(path).expect("read the server binary");
    // The binary is built with symbols (debug = 1 in both profiles); a public-key operation
    // that it must have shows that the names are there to be found.
    assert!(
        contains(&binary, b"rsa_encrypt") || contains(&binary, b"pkcs1v15"),
        "{path}: no symbols of the rsa crate at all; is the binary stripped?"
    );
    for name in PRIVATE_KEY_OPERATIONS {
        assert!(
            !contains(&binary, name.as_bytes()),
            "{path} contains {name}: an RSA private-key operation is linked into the server"
        );
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
