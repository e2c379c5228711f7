//! The configuration parser on arbitrary text: a config or an error naming what is
//! wrong, never a panic. `Config::parse` reads text, not a file; its validation only
//! checks whether referenced files exist, here under a directory that does not.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rtp_proxy::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Config::parse(
        text,
        Path::new("fuzz.toml"),
        Path::new("/nonexistent/rtp-proxy-fuzz"),
    ) {
        // The message is what an operator reads: it must render.
        let _ = e.to_string();
    }
});
