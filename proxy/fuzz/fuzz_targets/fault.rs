//! `is_soap_fault` and `fault_code_token` on arbitrary bytes, as an upstream's error
//! answer may be: never a panic. A token is the first word of a faultstring, so it holds
//! no whitespace and no markup, and there is none without a `faultstring` in the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtp_proxy::fault::{fault_code_token, is_soap_fault};

fuzz_target!(|body: &[u8]| {
    let _ = is_soap_fault(body);
    if let Some(token) = fault_code_token(body) {
        assert!(
            !token.bytes().any(|b| b.is_ascii_whitespace() || b == b'<'),
            "{token:?}"
        );
        assert!(body.windows(11).any(|w| w == b"faultstring"));
    }
});
