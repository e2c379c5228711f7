//! Helpers for unit-testing a policy natively: build calls and records tersely, and
//! stand in for the host's block service and access log (per test thread).

use std::cell::RefCell;
use std::collections::HashMap;

use crate::{AccessEntry, Block, Call, Header, Patient, Period, RecordSummary, RecordTime};

thread_local! {
    static BLOCKS: RefCell<HashMap<String, Result<Vec<Block>, String>>> = RefCell::new(HashMap::new());
    static ACCESS_LOG: RefCell<Result<Vec<AccessEntry>, String>> = const { RefCell::new(Ok(Vec::new())) };
}

/// Makes `host::blocks_for_patient` answer `blocks` for `patient_id` on this thread.
pub fn set_blocks(patient_id: &str, blocks: Vec<Block>) {
    BLOCKS.with(|b| b.borrow_mut().insert(patient_id.to_owned(), Ok(blocks)));
}

/// Makes `host::blocks_for_patient` fail for `patient_id`, as when the block service
/// is down and nothing fresh is cached.
pub fn set_block_service_down(patient_id: &str) {
    BLOCKS.with(|b| {
        b.borrow_mut().insert(
            patient_id.to_owned(),
            Err("block service unreachable".to_owned()),
        )
    });
}

/// Makes `host::record_access` fail on this thread (e.g. journal unavailable).
pub fn set_access_log_failing() {
    ACCESS_LOG.with(|l| *l.borrow_mut() = Err("access log unavailable".to_owned()));
}

/// The access-log entries recorded on this thread so far, emptying the list.
pub fn take_access_entries() -> Vec<AccessEntry> {
    ACCESS_LOG.with(|l| match &mut *l.borrow_mut() {
        Ok(entries) => std::mem::take(entries),
        Err(_) => Vec::new(),
    })
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn fake_blocks_for_patient(
    patient_id: &str,
    _care_provider: &str,
) -> Result<Vec<Block>, String> {
    BLOCKS.with(|b| {
        b.borrow()
            .get(patient_id)
            .cloned()
            .unwrap_or(Ok(Vec::new()))
    })
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn fake_record_access(entry: &AccessEntry) -> Result<(), String> {
    ACCESS_LOG.with(|l| match &mut *l.borrow_mut() {
        Ok(entries) => {
            entries.push(entry.clone());
            Ok(())
        }
        Err(e) => Err(e.clone()),
    })
}

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

/// A record owned by `care_provider`/`care_unit` with one time, `documentTime`
/// (`YYYYMMDDhhmmss`). Add others with [`RecordSummary::with_time`].
pub fn record(index: u32, care_provider: &str, care_unit: &str, time: &str) -> RecordSummary {
    RecordSummary {
        index,
        care_provider: Some(care_provider.into()),
        care_unit: Some(care_unit.into()),
        times: vec![RecordTime {
            field: "header/documentTime".into(),
            value: time.into(),
        }],
        ..RecordSummary::default()
    }
}

impl RecordSummary {
    /// Adds a time at `field` (element path below the record).
    pub fn with_time(mut self, field: &str, value: &str) -> Self {
        self.times.push(RecordTime {
            field: field.into(),
            value: value.into(),
        });
        self
    }

    /// Replaces all times with none.
    pub fn without_times(mut self) -> Self {
        self.times.clear();
        self
    }

    pub fn with_information_type(mut self, information_type: &str) -> Self {
        self.information_type = Some(information_type.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_time_matches_on_element_boundaries() {
        let r = record(0, "P", "U", "20240101120000")
            .with_time("alertInformationBody/validityTimePeriod/start", "20230101");
        assert!(r.time("documentTime").is_some());
        assert!(r.time("validityTimePeriod/start").is_some());
        assert!(
            r.time("Time").is_none(),
            "a partial element name must not match"
        );
        assert_eq!(r.time("start").and_then(|t| t.date()), Some("20230101"));
    }

    #[test]
    fn fakes_answer_blocks_and_collect_access_entries() {
        set_blocks("191212121212", Vec::new());
        assert_eq!(
            crate::host::blocks_for_patient("191212121212", "P"),
            Ok(Vec::new())
        );
        set_block_service_down("191212121212");
        assert!(crate::host::blocks_for_patient("191212121212", "P").is_err());
        let entry = AccessEntry {
            user: "U".into(),
            care_unit: "CU".into(),
            care_provider: "CP".into(),
            activity: "Läsa".into(),
            purpose: "Vård och behandling".into(),
            patient_id: "191212121212".into(),
            owners: Vec::new(),
        };
        crate::host::record_access(&entry).unwrap();
        assert_eq!(take_access_entries(), vec![entry.clone()]);
        set_access_log_failing();
        assert!(crate::host::record_access(&entry).is_err());
    }

    #[test]
    fn call_names_the_operation_from_the_contract() {
        let call =
            call("urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:2")
                .with_header("X-Rivta-Test", "1");
        assert_eq!(call.operation, "GetCareDocumentation");
        assert_eq!(call.header("x-rivta-test"), Some("1"));
    }
}
