//! A route's ordered policies. In the request phase each policy sees the call as the
//! policies before it left it (their header and period edits applied), and the first
//! refusal ends the pipeline: a refused call never reaches the upstream.

use std::sync::Arc;
use std::time::Instant;

use super::capabilities::AccessEntry;
use super::loaded::{FailureMode, PolicyFailure};
use super::reload::PolicySlot;
use super::wit;
use crate::decision::PolicyTrace;
use crate::fault::{Fault, FaultCode};
use crate::metrics::{Metrics, Phase, PolicyResult};

/// The outcome of the request phase.
#[derive(Debug, Clone)]
pub enum RequestDecision {
    /// Relay, with these edits applied in order.
    Proceed(Vec<wit::Edit>),
    Reject(Fault),
}

/// The outcome of the response phase for one batch of records.
#[derive(Debug, Clone, Default)]
pub struct ResponseDecision {
    /// Indexes of the records to leave out, ascending.
    pub dropped: Vec<u32>,
    /// Access-log entries the policies recorded; durable before the batch is released.
    pub access: Vec<AccessEntry>,
    /// Set when the response must not be released: a policy replaced it, or failed
    /// closed.
    pub fault: Option<Fault>,
    /// Each policy's verdict and time on this batch, for the decision log.
    pub trace: Vec<PolicyTrace>,
}

/// The policies of one route, in order.
#[derive(Debug, Clone)]
pub struct Pipeline {
    slots: Vec<Arc<PolicySlot>>,
    /// Where verdicts, failures and call times are counted.
    metrics: Arc<Metrics>,
}

impl Default for Pipeline {
    fn default() -> Self {
        Pipeline::new(Vec::new())
    }
}

impl Pipeline {
    /// A pipeline whose metrics nobody exposes (tests, benchmarks).
    pub fn new(slots: Vec<Arc<PolicySlot>>) -> Pipeline {
        Pipeline::with_metrics(slots, Metrics::detached())
    }

    /// A pipeline counting its policies' verdicts and failures in `metrics`.
    pub fn with_metrics(slots: Vec<Arc<PolicySlot>>, metrics: Arc<Metrics>) -> Pipeline {
        Pipeline { slots, metrics }
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn slots(&self) -> &[Arc<PolicySlot>] {
        &self.slots
    }

    /// Whether any policy wants the response phase (checked per call: a reload may
    /// change it).
    pub fn wants_response(&self) -> bool {
        self.slots.iter().any(|slot| slot.current().wants_response)
    }

    /// Runs every request-phase policy over the call; the call is left as the last
    /// policy saw it (edits applied), for the response phase.
    pub async fn on_request(&self, call: &mut wit::Call) -> RequestDecision {
        self.on_request_traced(call, &mut Vec::new()).await
    }

    /// [`Pipeline::on_request`], with each policy's verdict and time added to `trace`
    /// (for the decision log). A dry-run policy runs and is traced and counted, but its
    /// verdict is not enforced: its edits are not applied, its reject does not refuse,
    /// its failure is ignored.
    pub async fn on_request_traced(
        &self,
        call: &mut wit::Call,
        trace: &mut Vec<PolicyTrace>,
    ) -> RequestDecision {
        let mut edits = Vec::new();
        // Each policy's version in force when the call reaches it; a reload meanwhile
        // does not change the version a running call uses.
        for slot in &self.slots {
            let policy = slot.current();
            if !policy.wants_request {
                continue;
            }
            let started = Instant::now();
            let answer = policy.on_request(call).await;
            let elapsed = started.elapsed();
            let result = match &answer {
                Ok(wit::RequestAction::Proceed(_)) => PolicyResult::Proceed,
                Ok(wit::RequestAction::Reject(_)) => PolicyResult::Reject,
                Err(failure) => failure_result(failure),
            };
            if slot.dry_run() {
                self.metrics
                    .policy_dry_run(&policy.name, Phase::Request, result, elapsed);
                let verdict = match &answer {
                    Ok(wit::RequestAction::Proceed(_)) => "proceed",
                    Ok(wit::RequestAction::Reject(_)) => "reject",
                    Err(_) => "failed",
                };
                let mut traced = PolicyTrace::new(&policy.name, "request", verdict, elapsed, true);
                if let Ok(wit::RequestAction::Proceed(policy_edits)) = &answer {
                    traced = traced.with_notes(policy_edits);
                }
                trace.push(traced);
                continue;
            }
            self.metrics
                .policy_called(&policy.name, Phase::Request, result, elapsed);
            let traced =
                |verdict| PolicyTrace::new(&policy.name, "request", verdict, elapsed, false);
            match answer {
                Ok(wit::RequestAction::Proceed(policy_edits)) => {
                    trace.push(traced("proceed").with_notes(&policy_edits));
                    for edit in &policy_edits {
                        apply_to_call(call, edit);
                    }
                    edits.extend(policy_edits);
                }
                Ok(wit::RequestAction::Reject(fault)) => {
                    trace.push(traced("reject"));
                    return RequestDecision::Reject(Fault::new(
                        FaultCode::Policy(fault.code),
                        format!("{} (policy {})", fault.message, policy.name),
                    ));
                }
                Err(failure) => match policy.failure_mode {
                    FailureMode::FailOpen => {
                        trace.push(traced("skipped"));
                        self.metrics.policy_skipped(&policy.name, Phase::Request);
                        tracing::warn!(policy = %policy.name, error = %failure, "policy skipped (fail-open)");
                    }
                    FailureMode::FailClosed | FailureMode::Reload => {
                        trace.push(traced("failed"));
                        return RequestDecision::Reject(Fault::new(
                            FaultCode::Rtp190,
                            failure.to_string(),
                        ));
                    }
                },
            }
        }
        RequestDecision::Proceed(edits)
    }

    /// Runs every response-phase policy over a batch of records. Each policy sees the
    /// records the policies before it kept. A dry-run policy sees them too, and its
    /// verdict is traced and counted, but it drops nothing, replaces nothing, records no
    /// access and its failure is ignored.
    pub async fn on_response(
        &self,
        call: &wit::Call,
        records: Vec<wit::RecordSummary>,
    ) -> ResponseDecision {
        let mut decision = ResponseDecision::default();
        let batch: Vec<u32> = records.iter().map(|r| r.index).collect();
        let mut remaining = records;
        for slot in &self.slots {
            let policy = slot.current();
            if !policy.wants_response {
                continue;
            }
            let started = Instant::now();
            let answer = policy.on_response(call, &remaining).await;
            let elapsed = started.elapsed();
            let (result, verdict) = match &answer {
                Ok((wit::ResponseAction::KeepAll, _)) => (PolicyResult::Keep, "keep"),
                Ok((wit::ResponseAction::Drop(_), _)) => (PolicyResult::Drop, "drop"),
                Ok((wit::ResponseAction::Replace(_), _)) => (PolicyResult::Replace, "replace"),
                Err(failure) => (failure_result(failure), "failed"),
            };
            let mut traced =
                PolicyTrace::new(&policy.name, "response", verdict, elapsed, slot.dry_run());
            if slot.dry_run() {
                self.metrics
                    .policy_dry_run(&policy.name, Phase::Response, result, elapsed);
                if let Ok((wit::ResponseAction::Drop(indexes), _)) = &answer {
                    let indexes = sorted(indexes.clone());
                    traced.dropped = remaining
                        .iter()
                        .filter(|r| indexes.binary_search(&r.index).is_ok())
                        .count();
                }
                decision.trace.push(traced);
                continue;
            }
            self.metrics
                .policy_called(&policy.name, Phase::Response, result, elapsed);
            match answer {
                Ok((action, access)) => {
                    decision.access.extend(access);
                    match action {
                        wit::ResponseAction::KeepAll => decision.trace.push(traced),
                        wit::ResponseAction::Drop(indexes) => {
                            let indexes = sorted(indexes);
                            let before = remaining.len();
                            remaining.retain(|r| indexes.binary_search(&r.index).is_err());
                            traced.dropped = before - remaining.len();
                            self.metrics.records_dropped(&policy.name, traced.dropped);
                            decision.trace.push(traced);
                        }
                        wit::ResponseAction::Replace(fault) => {
                            decision.trace.push(traced);
                            decision.fault = Some(Fault::new(
                                FaultCode::Policy(fault.code),
                                format!("{} (policy {})", fault.message, policy.name),
                            ));
                            return decision;
                        }
                    }
                }
                Err(failure) => match policy.failure_mode {
                    FailureMode::FailOpen => {
                        traced.verdict = "skipped";
                        decision.trace.push(traced);
                        self.metrics.policy_skipped(&policy.name, Phase::Response);
                        tracing::warn!(policy = %policy.name, error = %failure, "response policy skipped (fail-open)");
                    }
                    FailureMode::FailClosed | FailureMode::Reload => {
                        decision.trace.push(traced);
                        decision.fault = Some(Fault::new(FaultCode::Rtp190, failure.to_string()));
                        return decision;
                    }
                },
            }
        }
        // Both lists are in document order, so one walk finds the records that went.
        let mut kept = remaining.iter().map(|r| r.index).peekable();
        decision.dropped = batch
            .into_iter()
            .filter(|index| {
                if kept.peek() == Some(index) {
                    kept.next();
                    false
                } else {
                    true
                }
            })
            .collect();
        decision
    }
}

/// A policy's drop list, sorted for lookups: a batch may hold thousands of records, and
/// a policy may name them in any order.
fn sorted(mut indexes: Vec<u32>) -> Vec<u32> {
    indexes.sort_unstable();
    indexes
}

fn failure_result(failure: &PolicyFailure) -> PolicyResult {
    match failure {
        PolicyFailure::Trapped { .. } => PolicyResult::Trap,
        PolicyFailure::CrashLooping { .. } => PolicyResult::CrashLoop,
    }
}

/// Keeps the call the next policy sees in step with the edits made so far.
pub(crate) fn apply_to_call(call: &mut wit::Call, edit: &wit::Edit) {
    match edit {
        wit::Edit::SetHeader(header) => {
            let name = header.name.to_ascii_lowercase();
            // The identity fields follow the headers the host will forward: the OSC only
            // back to the authenticated sender (the relay ignores any other OSC edit).
            if name == crate::headers::ORIGINAL_CONSUMER {
                if header.value != call.sender {
                    return;
                }
                call.original_consumer = header.value.clone();
            } else if name == crate::headers::ACTING_ON_BEHALF_OF {
                call.acting_on_behalf_of = Some(header.value.clone());
            }
            call.headers.retain(|h| !h.name.eq_ignore_ascii_case(&name));
            call.headers.push(wit::Header {
                name,
                value: header.value.clone(),
            });
        }
        wit::Edit::RemoveHeader(name) => {
            if name.eq_ignore_ascii_case(crate::headers::ORIGINAL_CONSUMER) {
                // Not removable (the relay keeps it); the call stays as it is.
                return;
            }
            if name.eq_ignore_ascii_case(crate::headers::ACTING_ON_BEHALF_OF) {
                call.acting_on_behalf_of = None;
            }
            call.headers.retain(|h| !h.name.eq_ignore_ascii_case(name))
        }
        wit::Edit::SetPeriod(period) => call.period = Some(period.clone()),
        // Notes go to the decision log only; the call itself is unchanged.
        wit::Edit::Note(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> wit::Call {
        wit::Call {
            route: "r".into(),
            contract: "urn:x".into(),
            operation: "X".into(),
            logical_address: "LA".into(),
            sender: "SE-AGG".into(),
            original_consumer: "SE-CLAIMED".into(),
            acting_on_behalf_of: Some("SE-AOB".into()),
            patient: None,
            period: None,
            period_element: None,
            source_system: None,
            correlation_id: "c".into(),
            headers: Vec::new(),
        }
    }

    fn set(name: &str, value: &str) -> wit::Edit {
        wit::Edit::SetHeader(wit::Header {
            name: name.into(),
            value: value.into(),
        })
    }

    #[test]
    fn later_policies_see_the_identity_the_edits_left() {
        let mut c = call();
        apply_to_call(
            &mut c,
            &set("x-rivta-original-serviceconsumer-hsaid", "SE-AGG"),
        );
        assert_eq!(c.original_consumer, "SE-AGG", "an OSC reset to the sender");
        apply_to_call(
            &mut c,
            &set("x-rivta-original-serviceconsumer-hsaid", "SE-OTHER"),
        );
        assert_eq!(
            c.original_consumer, "SE-AGG",
            "any other OSC is not applied"
        );
        apply_to_call(
            &mut c,
            &wit::Edit::RemoveHeader("x-rivta-acting-on-behalf-of-hsaid".into()),
        );
        assert_eq!(c.acting_on_behalf_of, None);
    }
}
