//! The capabilities the host lends policies beyond clock and log: the patient's blocks
//! (from the block service, cached by the host) and the PDL access log (written to the
//! host's durable journal before a response is released). Both are optional in the
//! config; a policy asking for one that is not configured gets an error and, being
//! written to fail closed, refuses the call.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use super::bindings::rtp::policy::{access_log, blocks};

/// The answer of a block lookup: the patient's blocks, or why there is no answer.
pub type BlocksAnswer = Result<Vec<blocks::Block>, String>;

/// Where blocks come from (the block-service client with its cache).
pub trait BlockLookup: Send + Sync + 'static {
    fn blocks_for_patient<'a>(
        &'a self,
        patient_id: &'a str,
        care_provider: &'a str,
    ) -> Pin<Box<dyn Future<Output = BlocksAnswer> + Send + 'a>>;
}

/// An access-log entry a policy recorded during a response-phase call.
pub type AccessEntry = access_log::AccessEntry;

/// What the host knows about the call an access entry belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessContext {
    pub contract: String,
    pub information_type: String,
    pub correlation_id: String,
}

/// Where access entries go: the durable journal. `append` resolves once the entries are
/// on disk; the response they cover is released only then.
pub trait AccessSink: Send + Sync + 'static {
    fn append<'a>(
        &'a self,
        entries: Vec<AccessEntry>,
        context: &'a AccessContext,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
}

/// Where the time policies read (`clock.now-millis`) comes from.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> u64;
}

/// A clock that always reads the same instant: for `rtp-proxy policy test` cases and
/// tests of date-dependent policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedClock(pub u64);

impl Clock for FixedClock {
    fn now_millis(&self) -> u64 {
        self.0
    }
}

/// What the host offers every policy instance.
#[derive(Clone, Default)]
pub struct HostServices {
    /// The block lookup; none when the config has no block service.
    pub blocks: Option<Arc<dyn BlockLookup>>,
    /// The access-log journal; none when the config has none.
    pub access_log: Option<Arc<dyn AccessSink>>,
    /// The clock policies see; none is the system clock (always, in the proxy).
    pub clock: Option<Arc<dyn Clock>>,
}

impl std::fmt::Debug for HostServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostServices")
            .field("blocks", &self.blocks.is_some())
            .field("access_log", &self.access_log.is_some())
            .field("clock", &self.clock.as_ref().map(|c| c.now_millis()))
            .finish()
    }
}

/// Checks an entry before the host accepts it: every field the StoreLog shape makes
/// mandatory must be there.
pub fn validate_access_entry(entry: &AccessEntry) -> Result<(), String> {
    let required = [
        ("user", &entry.user),
        ("care-unit", &entry.care_unit),
        ("care-provider", &entry.care_provider),
        ("activity", &entry.activity),
        ("purpose", &entry.purpose),
        ("patient-id", &entry.patient_id),
    ];
    for (name, value) in required {
        if value.trim().is_empty() {
            return Err(format!("access entry without {name}"));
        }
    }
    if !matches!(entry.activity.as_str(), "Läsa" | "Nödöppning") {
        return Err(format!(
            "access entry activity must be Läsa or Nödöppning, not {:?}",
            entry.activity
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> AccessEntry {
        AccessEntry {
            user: "SE2321000016-E1".into(),
            care_unit: "SE2321000016-U1".into(),
            care_provider: "SE2321000016-P1".into(),
            activity: "Läsa".into(),
            purpose: "Vård och behandling".into(),
            patient_id: "191212121212".into(),
            owners: Vec::new(),
        }
    }

    #[test]
    fn a_complete_entry_is_accepted() {
        assert_eq!(validate_access_entry(&entry()), Ok(()));
    }

    #[test]
    fn missing_fields_and_unknown_activities_are_refused() {
        let mut e = entry();
        e.user = " ".into();
        assert!(validate_access_entry(&e).unwrap_err().contains("user"));
        let mut e = entry();
        e.activity = "Skriva".into();
        assert!(validate_access_entry(&e).unwrap_err().contains("Läsa"));
    }
}
