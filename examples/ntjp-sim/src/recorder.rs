//! In-memory record of every call that reached the simulated platform.

use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use crate::log_service::StoreLogEntry;

/// One call as the simulator saw it, including rejected calls.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RecordedCall {
    /// Resolved sender id (certificate serialNumber or `x-vp-sender-id`), if any.
    pub sender_id: Option<String>,
    /// Listener the call came in on: `https` or `http`.
    pub transport: String,
    pub method: String,
    pub path: String,
    /// All request headers in arrival order (names lower-case, as HTTP/1 allows).
    pub headers: Vec<(String, String)>,
    /// The raw request body.
    #[serde(serialize_with = "body_as_text")]
    pub body: Vec<u8>,
    /// Service contract (namespace of the Body's first child), if parsed.
    pub contract: Option<String>,
    pub logical_address: Option<String>,
    /// Producer that answered, if routing succeeded.
    pub producer: Option<String>,
    /// HTTP status sent (0 if the connection was dropped before a status).
    pub status: u16,
    /// VP fault code (e.g. `VP007`) or `PRODUCER` for a simulated producer fault.
    pub fault_code: Option<String>,
}

fn body_as_text<S: serde::Serializer>(body: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(body))
}

impl RecordedCall {
    /// First value of a header, name compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) UTF-8 text.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Shared store of calls and received log entries.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    inner: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    calls: Vec<RecordedCall>,
    logs: Vec<StoreLogEntry>,
}

impl Recorder {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the vectors inconsistent,
        // so a poisoned lock is still safe to use.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record_call(&self, call: RecordedCall) {
        self.lock().calls.push(call);
    }

    pub fn record_logs(&self, entries: Vec<StoreLogEntry>) {
        self.lock().logs.extend(entries);
    }

    pub fn calls(&self) -> Vec<RecordedCall> {
        self.lock().calls.clone()
    }

    pub fn logs(&self) -> Vec<StoreLogEntry> {
        self.lock().logs.clone()
    }

    /// Clears calls and log entries.
    pub fn reset(&self) {
        let mut s = self.lock();
        s.calls.clear();
        s.logs.clear();
    }
}
