//! A route's ordered policies. In the request phase each policy sees the call as the
//! policies before it left it (their header and period edits applied), and the first
//! refusal ends the pipeline: a refused call never reaches the upstream.

use std::sync::Arc;

use super::loaded::FailureMode;
use super::reload::PolicySlot;
use super::wit;
use crate::fault::{Fault, FaultCode};

/// The outcome of the request phase.
#[derive(Debug, Clone)]
pub enum RequestDecision {
    /// Relay, with these edits applied in order.
    Proceed(Vec<wit::Edit>),
    Reject(Fault),
}

/// The policies of one route, in order.
#[derive(Debug, Default, Clone)]
pub struct Pipeline {
    slots: Vec<Arc<PolicySlot>>,
}

impl Pipeline {
    pub fn new(slots: Vec<Arc<PolicySlot>>) -> Pipeline {
        Pipeline { slots }
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn slots(&self) -> &[Arc<PolicySlot>] {
        &self.slots
    }

    /// Runs every request-phase policy over the call.
    pub async fn on_request(&self, mut call: wit::Call) -> RequestDecision {
        let mut edits = Vec::new();
        // Each policy's version in force when the call reaches it; a reload meanwhile
        // does not change the version a running call uses.
        for policy in self.slots.iter().map(|slot| slot.current()) {
            if !policy.wants_request {
                continue;
            }
            match policy.on_request(&call).await {
                Ok(wit::RequestAction::Proceed(policy_edits)) => {
                    for edit in &policy_edits {
                        apply_to_call(&mut call, edit);
                    }
                    edits.extend(policy_edits);
                }
                Ok(wit::RequestAction::Reject(fault)) => {
                    return RequestDecision::Reject(Fault::new(
                        FaultCode::Policy(fault.code),
                        format!("{} (policy {})", fault.message, policy.name),
                    ));
                }
                Err(failure) => match policy.failure_mode {
                    FailureMode::FailOpen => {
                        tracing::warn!(policy = %policy.name, error = %failure, "policy skipped (fail-open)");
                    }
                    FailureMode::FailClosed | FailureMode::Reload => {
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
}

/// Keeps the call the next policy sees in step with the edits made so far.
fn apply_to_call(call: &mut wit::Call, edit: &wit::Edit) {
    match edit {
        wit::Edit::SetHeader(header) => {
            let name = header.name.to_ascii_lowercase();
            call.headers.retain(|h| !h.name.eq_ignore_ascii_case(&name));
            call.headers.push(wit::Header {
                name,
                value: header.value.clone(),
            });
        }
        wit::Edit::RemoveHeader(name) => {
            call.headers.retain(|h| !h.name.eq_ignore_ascii_case(name))
        }
        wit::Edit::SetPeriod(period) => call.period = Some(period.clone()),
        // Notes go to the decision log only; the call itself is unchanged.
        wit::Edit::Note(_) => {}
    }
}
