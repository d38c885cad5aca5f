#![no_main]
//! Response APDUs and certificate headers as a card might send them.

use libfuzzer_sys::fuzz_target;
use mynalink_card::apdu::Response;
use mynalink_card::jpki::der_certificate_length;
use mynalink_card::TokenKind;

fuzz_target!(|data: &[u8]| {
    let _ = Response::from_bytes(data.to_vec());
    let _ = der_certificate_length(data);
    let _ = TokenKind::from_label(data);
    let _ = mynalink_card::trace::mask_command(data);
});
