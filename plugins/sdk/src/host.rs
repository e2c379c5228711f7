//! What the host offers a policy: the clock and the log. In the wasm build these call the
//! host's imports; natively they use the system clock and stderr, for unit tests.

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        crate::glue::bindings::rtp::policy::clock::now_millis()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// A log line, written by the host with the policy's name. No personal data.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::glue::bindings::rtp::policy::log as wit;
        let level = match level {
            Level::Debug => wit::Level::Debug,
            Level::Info => wit::Level::Info,
            Level::Warn => wit::Level::Warn,
            Level::Error => wit::Level::Error,
        };
        wit::log(level, message);
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        eprintln!("[policy {level:?}] {message}");
    }
}
