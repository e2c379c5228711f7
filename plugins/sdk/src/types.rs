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

/// One record of a response, as the host extracted it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordSummary {
    pub index: u32,
    pub care_provider: Option<String>,
    pub care_unit: Option<String>,
    /// Record times, `YYYYMMDDhhmmss`.
    pub times: Vec<String>,
    pub source_system: Option<String>,
    pub information_type: Option<String>,
    pub approved_for_patient: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseAction {
    KeepAll,
    Drop(Vec<u32>),
    Replace(Fault),
}
