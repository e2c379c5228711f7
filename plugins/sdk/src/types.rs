//! Plain Rust mirrors of the WIT types, so that policies never see generated bindings.

/// An HTTP header, name in lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// A requested time period; dates as `YYYYMMDD`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Period {
    pub start: Option<String>,
    pub end: Option<String>,
}

/// The patient as the request states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patient {
    pub id: String,
    pub kind: Option<String>,
}

/// What the proxy found out about a call before relaying it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Call {
    pub route: String,
    pub contract: String,
    pub operation: String,
    pub logical_address: String,
    /// The caller's HSA-id, as authenticated.
    pub sender: String,
    /// The original service consumer as the proxy will forward it.
    pub original_consumer: String,
    pub acting_on_behalf_of: Option<String>,
    pub patient: Option<Patient>,
    pub period: Option<Period>,
    /// `timePeriod` or `datePeriod`, when the request has a period.
    pub period_element: Option<String>,
    pub source_system: Option<String>,
    pub correlation_id: String,
    pub headers: Vec<Header>,
}

impl Call {
    /// A request header by name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Request,
    Response,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub name: String,
    pub version: String,
    pub phases: Vec<Phase>,
}

impl Metadata {
    pub fn new(name: &str, version: &str, phases: &[Phase]) -> Self {
        Metadata {
            name: name.to_owned(),
            version: version.to_owned(),
            phases: phases.to_vec(),
        }
    }
}

/// A change the host applies to the request before relaying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    SetHeader(Header),
    RemoveHeader(String),
    /// Rewrites (or inserts) the period in the request body.
    SetPeriod(Period),
    /// A key and value for the call's decision log; never forwarded.
    Note(Header),
}

/// A refusal, answered as a SOAP fault. Never put personal data in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// A code token: the `RTP` range for policy decisions, or a VP code with its meaning.
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestAction {
    Proceed(Vec<Edit>),
    Reject(Fault),
}

impl RequestAction {
    /// Proceed without edits.
    pub fn proceed() -> Self {
        RequestAction::Proceed(Vec::new())
    }

    pub fn reject(code: &str, message: &str) -> Self {
        RequestAction::Reject(Fault {
            code: code.to_owned(),
            message: message.to_owned(),
        })
    }
}

/// A time found in a record: where (element path below the record, e.g.
/// `careDocumentationHeader/documentTime`) and its value as written (`YYYYMMDDhhmmss`, or
/// `YYYYMMDD` for date fields).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordTime {
    pub field: String,
    pub value: String,
}

impl RecordTime {
    /// Whether the field path ends with `suffix` at an element boundary
    /// (`a/b/authorTime` ends with `authorTime` and with `b/authorTime`).
    pub fn is(&self, suffix: &str) -> bool {
        self.field == suffix
            || (self.field.ends_with(suffix)
                && self.field.as_bytes()[self.field.len() - suffix.len() - 1] == b'/')
    }

    /// The date part, `YYYYMMDD`, if the value starts with eight digits.
    pub fn date(&self) -> Option<&str> {
        let date = self.value.get(..8)?;
        date.bytes().all(|b| b.is_ascii_digit()).then_some(date)
    }
}

/// One record of a response, as the host extracted it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordSummary {
    /// Position in the response, counting from 0 across batches.
    pub index: u32,
    /// The record's own id, if it has one.
    pub id: Option<String>,
    /// Owner care provider HSA-id.
    pub care_provider: Option<String>,
    /// Owner care unit HSA-id.
    pub care_unit: Option<String>,
    pub times: Vec<RecordTime>,
    pub source_system: Option<String>,
    /// `lak`, `upp`, or the contract's EI categorisation.
    pub information_type: Option<String>,
    pub approved_for_patient: Option<bool>,
}

impl RecordSummary {
    /// The first time whose field ends with `suffix` (see [`RecordTime::is`]).
    pub fn time(&self, suffix: &str) -> Option<&RecordTime> {
        self.times.iter().find(|t| t.is(suffix))
    }
}

/// The kind of a patient block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Between care units of one care provider.
    Inner,
    /// Between care providers.
    Outer,
}

/// A temporary lift of a block for one accessing care unit (and employee).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemporaryRevoke {
    pub revoked_for_care_unit: String,
    pub revoked_for_employee: Option<String>,
    /// Last day the revoke holds, `YYYYMMDD`.
    pub end_date: String,
}

/// A patient block, as the block service states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub id: String,
    pub kind: BlockKind,
    pub care_provider: String,
    pub care_unit: Option<String>,
    /// Validity of the blocked information, `YYYYMMDD`; `None` is open-ended.
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    /// `lak`, `upp`: information types the block does not cover.
    pub excluded_information_types: Vec<String>,
    pub temporary_revokes: Vec<TemporaryRevoke>,
}

/// The owner of records released to a user.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Owner {
    pub care_provider: String,
    pub care_unit: Option<String>,
}

/// A PDL access-log entry (StoreLog 1 shape); the host adds id, time and system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    pub user: String,
    pub care_unit: String,
    pub care_provider: String,
    /// `Läsa` or `Nödöppning`.
    pub activity: String,
    pub purpose: String,
    pub patient_id: String,
    pub owners: Vec<Owner>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseAction {
    KeepAll,
    Drop(Vec<u32>),
    Replace(Fault),
}
