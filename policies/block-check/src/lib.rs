//! Block check (spärrkontroll) under PDL, as an rtp-proxy policy.
//!
//! - **Request phase**: the accessing actor (employee, care unit, care provider,
//!   purpose, emergency flag) must come in request headers from a caller trusted to
//!   assert its user, and the request must name the patient; otherwise the call is
//!   refused before it is relayed.
//! - **Response phase**: each record is decided on its own ([`rules::is_blocked`])
//!   against the patient's blocks from the host's block service; blocked records and
//!   records without owner ids are dropped, and one PDL access-log entry is recorded
//!   for the records released in the batch. If the blocks cannot be had or the access
//!   cannot be logged, the response is replaced by a fault: nothing is released
//!   unchecked or unlogged.
//!
//! Settings, headers, rules and fault codes: `README.md` beside this crate.

use std::collections::BTreeSet;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use rtp_policy_sdk::host::{self, Level};
use rtp_policy_sdk::*;

pub mod actor;
pub mod rules;
pub mod settings;

use actor::{actor_of, patient_of};
use rules::{is_blocked, owner, Day, Withheld};
use settings::Settings;

pub use actor::{INVALID_ACTOR, MISSING_ACTOR, UNTRUSTED_ASSERTOR};

/// The block service could not be asked and the host has no fresh answer cached.
pub const BLOCK_SERVICE_UNAVAILABLE: &str = "RTP112";
/// The host could not take the PDL access-log entry.
pub const ACCESS_NOT_LOGGED: &str = "RTP113";

/// The access-log activity of an ordinary read.
pub const ACTIVITY_READ: &str = "Läsa";
/// The access-log activity of an emergency access, which overrides blocks.
pub const ACTIVITY_EMERGENCY: &str = "Nödöppning";

/// Temporary revokes run to the end of a Swedish calendar day.
const ZONE: &str = "Europe/Stockholm";

pub struct BlockCheck {
    settings: Settings,
    zone: TimeZone,
}

impl Policy for BlockCheck {
    fn describe() -> Metadata {
        Metadata::new(
            "block-check",
            env!("CARGO_PKG_VERSION"),
            &[Phase::Request, Phase::Response],
        )
    }

    fn init(settings: &str) -> Result<Self, String> {
        let settings = Settings::parse(settings)?;
        let zone = TimeZone::get(ZONE).map_err(|e| format!("time zone {ZONE}: {e}"))?;
        Ok(BlockCheck { settings, zone })
    }

    fn on_request(&self, call: &Call) -> RequestAction {
        let checked =
            actor_of(call, &self.settings).and_then(|actor| patient_of(call).map(|_| actor));
        match checked {
            Ok(actor) => RequestAction::Proceed(vec![Edit::Note(Header {
                name: "block-check".into(),
                value: format!(
                    "actor asserted by {}: care provider {}, care unit {}, purpose {}, emergency {}",
                    call.sender.trim(),
                    actor.care_provider,
                    actor.care_unit,
                    actor.purpose,
                    actor.emergency
                ),
            })]),
            Err(fault) => RequestAction::Reject(fault),
        }
    }

    fn on_response(&self, call: &Call, records: &[RecordSummary]) -> ResponseAction {
        self.respond(call, records, self.today())
    }
}

impl BlockCheck {
    /// Today's date in Sweden, from the host's clock.
    pub fn today(&self) -> Day {
        self.day_at(host::now_millis())
    }

    /// The Swedish calendar date at `millis` since the Unix epoch. If that cannot be
    /// read as a date, a day after every other, so that no temporary revoke is taken to
    /// hold (fail closed).
    pub fn day_at(&self, millis: u64) -> Day {
        i64::try_from(millis)
            .ok()
            .and_then(|ms| Timestamp::from_millisecond(ms).ok())
            .map(|now| self.zone.to_datetime(now).date())
            .and_then(|date| Day::from_ymd(i32::from(date.year()), date.month(), date.day()))
            .unwrap_or(Day::LAST)
    }

    /// The response phase with `today` given, so tests choose the date.
    pub fn respond(&self, call: &Call, records: &[RecordSummary], today: Day) -> ResponseAction {
        match self.decide(call, records, today) {
            Ok(action) => action,
            Err(fault) => ResponseAction::Replace(fault),
        }
    }

    fn decide(
        &self,
        call: &Call,
        records: &[RecordSummary],
        today: Day,
    ) -> Result<ResponseAction, Fault> {
        // The request phase checked both already; the response is decided on the same
        // evidence again rather than trusting that it ran.
        let actor = actor_of(call, &self.settings)?;
        let patient = patient_of(call)?;

        // Emergency access overrides every block, so it needs none (and works while
        // the block service is down); a batch without an owned record needs none either.
        let needs_blocks = !actor.emergency && records.iter().any(|r| owner(r).is_some());
        let blocks = if needs_blocks {
            // The host's error text is not logged: it may name the patient.
            host::blocks_for_patient(patient, &actor.care_provider).map_err(|_| {
                host::log(Level::Warn, "block service unavailable: response withheld");
                Fault {
                    code: BLOCK_SERVICE_UNAVAILABLE.into(),
                    message: "the block service is unavailable: records cannot be released \
                              without a block check"
                        .into(),
                }
            })?
        } else {
            Vec::new()
        };

        let mut dropped = Vec::new();
        let mut owners = BTreeSet::new();
        let (mut blocked, mut unowned) = (0usize, 0usize);
        for record in records {
            match (owner(record), is_blocked(record, &blocks, &actor, today)) {
                (Some((care_provider, care_unit)), None) => {
                    owners.insert(Owner {
                        care_provider: care_provider.to_owned(),
                        care_unit: Some(care_unit.to_owned()),
                    });
                }
                (_, Some(Withheld::Blocked { .. })) => {
                    blocked += 1;
                    dropped.push(record.index);
                }
                (None, _) | (_, Some(Withheld::MissingOwner)) => {
                    unowned += 1;
                    dropped.push(record.index);
                }
            }
        }

        let entry = AccessEntry {
            user: actor.employee.clone(),
            care_unit: actor.care_unit.clone(),
            care_provider: actor.care_provider.clone(),
            activity: if actor.emergency {
                ACTIVITY_EMERGENCY
            } else {
                ACTIVITY_READ
            }
            .into(),
            purpose: actor.purpose.clone(),
            patient_id: patient.to_owned(),
            owners: owners.into_iter().collect(),
        };
        host::record_access(&entry).map_err(|_| {
            host::log(Level::Error, "access cannot be logged: response withheld");
            Fault {
                code: ACCESS_NOT_LOGGED.into(),
                message: "the access cannot be logged (PDL): records cannot be released".into(),
            }
        })?;

        host::log(
            Level::Debug,
            &format!(
                "{} record(s) released{}, {blocked} blocked, {unowned} without owner ids",
                records.len() - dropped.len(),
                if actor.emergency {
                    " under emergency access"
                } else {
                    ""
                }
            ),
        );
        Ok(if dropped.is_empty() {
            ResponseAction::KeepAll
        } else {
            ResponseAction::Drop(dropped)
        })
    }
}

export_policy!(BlockCheck);

#[cfg(test)]
mod tests;
