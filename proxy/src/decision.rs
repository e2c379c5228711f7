//! The decision log: one structured line per call, tracing target `rtp_proxy::decision`,
//! so operators can route it apart from the proxy's other lines (with `--log-format
//! json` each line is a JSON object).
//!
//! The relay fills a [`Decision`] along the call (who called, what, which route, each
//! policy's verdict and time, the upstream's answer, the outcome) and the line is written
//! once, when the last holder lets go of it: at the end of the call, or, when response
//! policies filter the body, when the filter is done. Every path ends there, so every
//! call has its line: relayed, refused, rejected by a policy, failed upstream.
//!
//! The patient id is never written as sent: it is keyed-hashed (HMAC-SHA256 with the
//! configured secret salt, truncated) or left out. Policy notes are written as the
//! policies made them; policies must not put personal data in notes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{Config, PatientIdMode};
use crate::inspect::Call;
use crate::metrics::Outcome;
use crate::policy::wit;

/// Hex digits of the masked patient id (128 bits of the HMAC).
const MASK_HEX_DIGITS: usize = 32;

/// One policy's verdict on a call, as the decision log shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PolicyTrace {
    pub name: String,
    /// `request` or `response`.
    pub phase: &'static str,
    /// proceed, reject (request); keep, drop, replace (response); failed, or skipped (a
    /// failed fail-open policy).
    pub verdict: &'static str,
    /// Time in the policy; summed over the response batches.
    pub micros: u64,
    pub dry_run: bool,
    /// Records the policy dropped (or, dry-run, would have dropped).
    #[serde(skip_serializing_if = "is_zero")]
    pub dropped: usize,
    /// The policy's `note` edits, as it wrote them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<NoteTrace>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NoteTrace {
    pub name: String,
    pub value: String,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl PolicyTrace {
    pub fn new(
        name: &str,
        phase: &'static str,
        verdict: &'static str,
        elapsed: Duration,
        dry_run: bool,
    ) -> PolicyTrace {
        PolicyTrace {
            name: name.to_owned(),
            phase,
            verdict,
            micros: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            dry_run,
            dropped: 0,
            notes: Vec::new(),
        }
    }

    /// The trace with the notes among `edits`.
    pub fn with_notes(mut self, edits: &[wit::Edit]) -> PolicyTrace {
        self.notes = edits
            .iter()
            .filter_map(|edit| match edit {
                wit::Edit::Note(note) => Some(NoteTrace {
                    name: note.name.clone(),
                    value: note.value.clone(),
                }),
                _ => None,
            })
            .collect();
        self
    }
}

/// How the patient id is masked.
#[derive(Clone)]
enum Masking {
    Hash(Arc<[u8]>),
    Drop,
}

/// The decision log's settings, made once from the config.
#[derive(Clone)]
pub struct DecisionLog {
    enabled: bool,
    masking: Masking,
}

impl std::fmt::Debug for DecisionLog {
    // The salt is a secret: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionLog")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecisionLogError {
    #[error("[decision_log] salt_file: {0}")]
    Salt(String),
    #[error("[decision_log] patient_id = \"hash\" needs a salt or salt_file")]
    NoSalt,
}

impl DecisionLog {
    pub fn from_config(config: &Config) -> Result<DecisionLog, DecisionLogError> {
        let settings = &config.decision_log;
        let masking = match settings.patient_id {
            PatientIdMode::Drop => Masking::Drop,
            PatientIdMode::Hash if !settings.enabled => Masking::Drop,
            PatientIdMode::Hash => {
                let salt = settings
                    .salt_bytes(config)
                    .map_err(DecisionLogError::Salt)?
                    .ok_or(DecisionLogError::NoSalt)?;
                Masking::Hash(Arc::from(salt))
            }
        };
        Ok(DecisionLog {
            enabled: settings.enabled,
            masking,
        })
    }

    /// No decision log.
    pub fn disabled() -> DecisionLog {
        DecisionLog {
            enabled: false,
            masking: Masking::Drop,
        }
    }

    /// The decision of a new call; an inert one when the log is off.
    pub fn start(&self, correlation_id: &str) -> Decision {
        // Filtered out by the subscriber (e.g. RUST_LOG=warn): the line would be built and
        // thrown away, so record nothing.
        if !self.enabled || !tracing::enabled!(target: "rtp_proxy::decision", tracing::Level::INFO)
        {
            return Decision::default();
        }
        Decision(Some(Arc::new(Shared {
            masking: self.masking.clone(),
            started: Instant::now(),
            record: Mutex::new(Record {
                correlation_id: correlation_id.to_owned(),
                ..Record::default()
            }),
        })))
    }
}

/// What the relay learnt of one call; the line is written when the last clone drops.
/// Cheap to clone; the default is inert.
#[derive(Clone, Default)]
pub struct Decision(Option<Arc<Shared>>);

struct Shared {
    masking: Masking,
    started: Instant,
    record: Mutex<Record>,
}

#[derive(Default)]
struct Record {
    correlation_id: String,
    route: Option<String>,
    contract: Option<String>,
    operation: Option<String>,
    sender: Option<String>,
    original_consumer: Option<String>,
    acting_on_behalf_of: Option<String>,
    logical_address: Option<String>,
    /// Already masked.
    patient: Option<String>,
    policies: Vec<PolicyTrace>,
    upstream_status: Option<u16>,
    upstream_micros: Option<u64>,
    outcome: Option<&'static str>,
    code: Option<String>,
}

impl Decision {
    fn with(&self, f: impl FnOnce(&mut Record, &Masking)) {
        if let Some(shared) = &self.0 {
            if let Ok(mut record) = shared.record.lock() {
                f(&mut record, &shared.masking);
            }
        }
    }

    pub fn sender(&self, sender: &str) {
        self.with(|r, _| r.sender = Some(sender.to_owned()));
    }

    /// What inspection found: contract, operation, logical address and the patient
    /// (masked here, before it is stored).
    pub fn call(&self, call: &Call) {
        self.with(|r, masking| {
            r.contract = Some(call.contract.clone());
            r.operation = Some(call.operation.clone());
            r.logical_address = Some(call.logical_address.clone());
            r.patient = match masking {
                Masking::Hash(salt) => call.patient.as_ref().map(|p| mask(salt, &p.id)),
                Masking::Drop => None,
            };
        });
    }

    /// The OSC and AoB forwarded (after the policies' edits, when there are policies).
    pub fn identity(&self, original_consumer: &str, acting_on_behalf_of: Option<&str>) {
        self.with(|r, _| {
            r.original_consumer = Some(original_consumer.to_owned());
            r.acting_on_behalf_of = acting_on_behalf_of.map(str::to_owned);
        });
    }

    pub fn route(&self, route: &str) {
        self.with(|r, _| r.route = Some(route.to_owned()));
    }

    /// Adds policy verdicts; a policy seen again in the same phase (a later response
    /// batch) is merged: times and drops summed, the verdict the last non-`keep` one.
    pub fn policies(&self, traces: Vec<PolicyTrace>) {
        if traces.is_empty() {
            return;
        }
        self.with(|r, _| {
            for trace in traces {
                match r
                    .policies
                    .iter_mut()
                    .find(|p| p.name == trace.name && p.phase == trace.phase)
                {
                    Some(known) => {
                        known.micros = known.micros.saturating_add(trace.micros);
                        known.dropped += trace.dropped;
                        if trace.verdict != "keep" {
                            known.verdict = trace.verdict;
                        }
                        known.notes.extend(trace.notes);
                    }
                    None => r.policies.push(trace),
                }
            }
        });
    }

    /// The upstream's status and the time until its response head.
    pub fn upstream(&self, status: u16, elapsed: Duration) {
        self.with(|r, _| {
            r.upstream_status = Some(status);
            r.upstream_micros = Some(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
        });
    }

    /// How the call ended, with the fault code when it was a fault. An abort already
    /// recorded stays: the response filter runs in a task of its own and can break the
    /// body off before the relay gets here with the answer's head.
    pub fn outcome(&self, outcome: Outcome, code: &str) {
        let outcome = match outcome {
            Outcome::Relayed => "relayed",
            Outcome::UpstreamFault => "upstream_fault",
            Outcome::Fault => "fault",
        };
        self.with(|r, _| {
            if r.outcome == Some("aborted") {
                return;
            }
            r.outcome = Some(outcome);
            r.code = Some(code.to_owned()).filter(|c| !c.is_empty());
        });
    }

    /// The response body was broken off after it had started (a response policy's
    /// fault on a later batch).
    pub fn aborted(&self, code: &str) {
        self.with(|r, _| {
            r.outcome = Some("aborted");
            r.code = Some(code.to_owned());
        });
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let total_micros = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let record = match self.record.get_mut() {
            Ok(record) => std::mem::take(record),
            Err(poisoned) => std::mem::take(poisoned.into_inner()),
        };
        let dropped: usize = record
            .policies
            .iter()
            .filter(|p| !p.dry_run)
            .map(|p| p.dropped)
            .sum();
        let policies = serde_json::to_string(&record.policies).unwrap_or_else(|_| "[]".into());
        tracing::info!(
            target: "rtp_proxy::decision",
            correlation_id = %record.correlation_id,
            route = record.route.as_deref(),
            contract = record.contract.as_deref(),
            operation = record.operation.as_deref(),
            sender = record.sender.as_deref(),
            original_consumer = record.original_consumer.as_deref(),
            acting_on_behalf_of = record.acting_on_behalf_of.as_deref(),
            logical_address = record.logical_address.as_deref(),
            patient = record.patient.as_deref(),
            policies = %policies,
            records_dropped = dropped,
            upstream_status = record.upstream_status,
            upstream_us = record.upstream_micros,
            outcome = record.outcome.unwrap_or("unfinished"),
            code = record.code.as_deref(),
            total_us = total_micros,
            "decision"
        );
    }
}

/// HMAC-SHA256 of the patient id keyed with the salt, hex, truncated.
fn mask(salt: &[u8], id: &str) -> String {
    let mac = hmac_sha256(salt, id.trim().as_bytes());
    let mut hex = String::with_capacity(MASK_HEX_DIGITS);
    for byte in &mac[..MASK_HEX_DIGITS / 2] {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// HMAC (RFC 2104) over SHA-256.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

/// The masked form of `id` under `salt`, as the decision log writes it (for tests and
/// for an operator looking up a patient's calls).
pub fn masked_patient_id(salt: &[u8], id: &str) -> String {
    mask(salt, id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn masking_depends_on_the_salt_and_hides_the_id() {
        let a = mask(b"salt-one-0123456789", "191212121212");
        let b = mask(b"salt-two-0123456789", "191212121212");
        assert_eq!(a.len(), MASK_HEX_DIGITS);
        assert_ne!(a, b);
        assert!(!a.contains("191212121212"));
    }

    fn enabled_log() -> DecisionLog {
        DecisionLog {
            enabled: true,
            masking: Masking::Drop,
        }
    }

    /// Runs `f` with a subscriber that lets INFO lines through.
    fn with_info_subscriber<T>(f: impl FnOnce() -> T) -> T {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(std::io::sink)
            .finish();
        tracing::subscriber::with_default(subscriber, f)
    }

    #[test]
    fn nothing_is_recorded_when_the_subscriber_filters_the_line_out() {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_writer(std::io::sink)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            assert!(enabled_log().start("c").0.is_none());
        });
        assert!(with_info_subscriber(|| enabled_log()
            .start("c")
            .0
            .is_some()));
    }

    #[test]
    fn an_abort_is_kept_whichever_comes_first() {
        let record = |decision: &Decision| {
            let record = decision.0.as_ref().unwrap().record.lock().unwrap();
            (record.outcome, record.code.clone())
        };
        let aborted = (Some("aborted"), Some("VP009".to_owned()));
        // The filter broke the body off before the relay recorded the answer's head.
        let decision = with_info_subscriber(|| enabled_log().start("c"));
        decision.aborted("VP009");
        decision.outcome(Outcome::Relayed, "");
        assert_eq!(record(&decision), aborted);
        // And after it.
        let decision = with_info_subscriber(|| enabled_log().start("c"));
        decision.outcome(Outcome::Relayed, "");
        decision.aborted("VP009");
        assert_eq!(record(&decision), aborted);
    }

    #[test]
    fn response_batches_of_one_policy_merge() {
        let decision = with_info_subscriber(|| enabled_log().start("c"));
        let mut first = PolicyTrace::new("p", "response", "keep", Duration::from_micros(5), false);
        first.dropped = 0;
        let mut second = PolicyTrace::new("p", "response", "drop", Duration::from_micros(7), false);
        second.dropped = 2;
        decision.policies(vec![first]);
        decision.policies(vec![second]);
        let shared = decision.0.as_ref().unwrap();
        let record = shared.record.lock().unwrap();
        assert_eq!(record.policies.len(), 1);
        assert_eq!(record.policies[0].verdict, "drop");
        assert_eq!(record.policies[0].micros, 12);
        assert_eq!(record.policies[0].dropped, 2);
    }
}
