//! The shipped copy of the simulated card's TEST root is the one the card generates.

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
