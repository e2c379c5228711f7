//! What the host offers a policy: the clock, the log, block lookup and the PDL access
//! log. In the wasm build these call the host's imports. Natively (unit tests) the clock
//! and log use the system clock and stderr, and blocks and the access log use the
//! fakes in [`crate::testing`].

use crate::{AccessEntry, Block};

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

/// The patient's blocks, from the host's block-service cache. `Err` means the block
/// service could not be reached and no fresh answer is cached: fail closed.
pub fn blocks_for_patient(patient_id: &str, care_provider: &str) -> Result<Vec<Block>, String> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::glue::bindings::rtp::policy::blocks::blocks_for_patient(patient_id, care_provider)
            .map(|blocks| {
                blocks
                    .into_iter()
                    .map(crate::glue::block_from_wit)
                    .collect()
            })
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::fake_blocks_for_patient(patient_id, care_provider)
    }
}

/// Adds a PDL access-log entry to the call; the host makes it durable before the
/// response is released. `Err` means the access cannot be logged: fail closed.
pub fn record_access(entry: &AccessEntry) -> Result<(), String> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::glue::bindings::rtp::policy::access_log::record_access(
            &crate::glue::access_entry_to_wit(entry),
        )
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::fake_record_access(entry)
    }
}
