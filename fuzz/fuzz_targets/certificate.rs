#![no_main]
//! DER certificates as a card might hold them.

use libfuzzer_sys::fuzz_target;
use mynalink_link::certificate::SigningCertificate;

fuzz_target!(|data: &[u8]| {
    if let Ok(cert) = SigningCertificate::parse(data) {
        let _ = cert.serial_hex();
        let _ = cert.serial_decimal();
        let _ = cert.issuer();
        let _ = cert.authority_key_id();
        let _ = cert.basic4();
        let _ = cert.public_key();
        let _ = cert.verify_sha256_signature(b"statement", &[0u8; 256]);
    }
});
