//! The shipped copies of the simulated card's TEST roots are the ones the card generates.

use sha2::Digest;

#[test]
fn shipped_test_root_matches_the_generated_one() {
    let shipped = include_bytes!("../assets/sim-sign-test-root.der");
    assert_eq!(&shipped[..], mynalink_simcard::sign_test_root_der());
    assert_eq!(
        mynalink_simcard::SIGN_TEST_ROOT_SHA256_HEX,
        "d500662b3377b7012a32a73bdb6ce2fc4b67044fa88f189eebac6532363ac554"
    );
    // The backend refuses it as a trust anchor by this fingerprint (unless told otherwise).
    assert_eq!(
        hex::encode(mynalink_link::trust::PUBLIC_TEST_ROOT_SHA256),
        mynalink_simcard::SIGN_TEST_ROOT_SHA256_HEX
    );
}

#[test]
fn shipped_p384_test_root_matches_the_generated_one() {
    use mynalink_simcard::SimKey;
    let shipped = include_bytes!("../assets/sim-sign-test-root-ec-p384.der");
    assert_eq!(
        &shipped[..],
        mynalink_simcard::sign_test_root_der_for(SimKey::EcP384)
    );
    assert_eq!(
        hex::encode(mynalink_link::trust::PUBLIC_TEST_ROOT_EC_P384_SHA256),
        mynalink_simcard::SIGN_TEST_ROOT_EC_P384_SHA256_HEX
    );
    assert_eq!(
        hex::encode(sha2::Sha256::digest(shipped)),
        mynalink_simcard::SIGN_TEST_ROOT_EC_P384_SHA256_HEX
    );
}
