//! Helpers for unit-testing a policy natively: build calls and records tersely.

use crate::{Call, Header, Patient, Period, RecordSummary};

/// A call for `contract`, from a plain consumer, with a patient and no period.
pub fn call(contract: &str) -> Call {
    Call {
        route: "test".into(),
        contract: contract.into(),
        operation: contract
            .rsplit(':')
            .nth(1)
            .map(|responder| responder.trim_end_matches("Responder").to_owned())
            .unwrap_or_default(),
        logical_address: "SE2321000016-7P3S".into(),
        sender: "SE2321000016-A12B".into(),
        original_consumer: "SE2321000016-A12B".into(),
        acting_on_behalf_of: None,
        patient: Some(Patient {
            id: "191212121212".into(),
            kind: Some("1.2.752.129.2.1.3.1".into()),
        }),
        period: None,
        period_element: None,
        source_system: None,
        correlation_id: "test-correlation-id".into(),
        headers: Vec::new(),
    }
}

impl Call {
    pub fn with_sender(mut self, sender: &str) -> Self {
        self.sender = sender.into();
        self.original_consumer = sender.into();
        self
    }

    pub fn with_period(mut self, element: &str, start: Option<&str>, end: Option<&str>) -> Self {
        self.period_element = Some(element.into());
        self.period = Some(Period {
            start: start.map(str::to_owned),
            end: end.map(str::to_owned),
        });
        self
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push(Header {
            name: name.to_ascii_lowercase(),
            value: value.into(),
        });
        self
    }
}

/// A record owned by `care_provider`/`care_unit` at `time` (`YYYYMMDDhhmmss`).
pub fn record(index: u32, care_provider: &str, care_unit: &str, time: &str) -> RecordSummary {
    RecordSummary {
        index,
        care_provider: Some(care_provider.into()),
        care_unit: Some(care_unit.into()),
        times: vec![time.into()],
        ..RecordSummary::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_names_the_operation_from_the_contract() {
        let call =
            call("urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:2")
                .with_header("X-Rivta-Test", "1");
        assert_eq!(call.operation, "GetCareDocumentation");
        assert_eq!(call.header("x-rivta-test"), Some("1"));
    }
}
