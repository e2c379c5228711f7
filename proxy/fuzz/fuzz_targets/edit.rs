//! `set_period` on a request `inspect` accepted, with dates the fuzzer picks: an edited
//! body or an error, never a panic, and an edited body is again a request `inspect`
//! accepts, now carrying the new period (what edit.rs's tests assert of `inspect(&out)`).
//!
//! Input: byte 0 says whether there is a start (bit 0) and an end (bit 1); then 8 bytes
//! of start date and 8 of end date (any bytes: most are refused as `BadDate`); the rest
//! is the request body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtp_proxy::edit::{set_period, NewPeriod};
use rtp_proxy::inspect::inspect;

fuzz_target!(|data: &[u8]| {
    if data.len() < 17 {
        return;
    }
    let date = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let period = NewPeriod {
        start: (data[0] & 1 != 0).then(|| date(&data[1..9])),
        end: (data[0] & 2 != 0).then(|| date(&data[9..17])),
    };
    let body = &data[17..];
    let Ok(call) = inspect(body) else {
        return;
    };
    let Ok(out) = set_period(body, &call, &period) else {
        return;
    };
    let again = inspect(&out).unwrap_or_else(|e| {
        panic!(
            "the edited body is refused: {e}\n{}",
            String::from_utf8_lossy(&out)
        )
    });
    let written = again.period.expect("the edited body has a period");
    assert_eq!(
        (written.start, written.end),
        (period.start, period.end),
        "{}",
        String::from_utf8_lossy(&out)
    );
});
