//! `inspect` on arbitrary bytes, as a caller may send them: an error or a call, never a
//! panic. A call's byte spans are what `edit` slices the body with, so they must lie
//! inside the body, in order, on character boundaries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtp_proxy::inspect::inspect;

fuzz_target!(|body: &[u8]| {
    let Ok(call) = inspect(body) else {
        return;
    };
    let spans = call
        .patient
        .iter()
        .map(|p| p.span.clone())
        .chain(call.period.iter().map(|p| p.span.clone()));
    for span in spans {
        assert!(span.start <= span.end && span.end <= body.len(), "{span:?}");
        assert_eq!(body[span.start], b'<', "a span starts at its start tag");
        assert_eq!(body[span.end - 1], b'>', "a span ends with its end tag");
    }
});
