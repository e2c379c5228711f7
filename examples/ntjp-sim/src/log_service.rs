//! Simulated PDL log service: `urn:riv:ehr:log:store:StoreLogResponder:1`.
//!
//! Every `Log` element of a StoreLog request is kept (LogId, system, activity,
//! user, resources) and the answer is ResultCode OK. Element names follow
//! riv-contracts.md §2.4 and are matched by local name.

use serde::Serialize;

use crate::xml::{escape, Element};

/// The StoreLog contract namespace.
pub const STORE_LOG_NS: &str = "urn:riv:ehr:log:store:StoreLogResponder:1";
/// Core types namespace of the log domain.
pub const LOG_CORE_NS: &str = "urn:riv:ehr:log:1";

/// One received log entry (`LogType`).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct StoreLogEntry {
    pub log_id: Option<String>,
    pub system_id: Option<String>,
    pub activity_type: Option<String>,
    pub purpose: Option<String>,
    pub start_date: Option<String>,
    pub user_id: Option<String>,
    pub user_care_provider: Option<String>,
    pub user_care_unit: Option<String>,
    pub resources: Vec<LogResource>,
    /// Sender id of the call that delivered the entry.
    pub sender_id: Option<String>,
}

/// One `Resource` of a log entry.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct LogResource {
    pub resource_type: Option<String>,
    pub patient_id: Option<String>,
    pub care_provider: Option<String>,
    pub care_unit: Option<String>,
}

/// Extracts all `Log` entries of a StoreLog request root.
pub fn parse_store_log(root: &Element, sender_id: &str) -> Vec<StoreLogEntry> {
    root.children_named("Log")
        .map(|log| StoreLogEntry {
            log_id: log.text_at(&["LogId"]),
            system_id: log.text_at(&["System", "SystemId"]),
            activity_type: log.text_at(&["Activity", "ActivityType"]),
            purpose: log.text_at(&["Activity", "Purpose"]),
            start_date: log.text_at(&["Activity", "StartDate"]),
            user_id: log.text_at(&["User", "UserId"]),
            user_care_provider: log.text_at(&["User", "CareProvider", "CareProviderId"]),
            user_care_unit: log.text_at(&["User", "CareUnit", "CareUnitId"]),
            resources: log
                .child("Resources")
                .map(|r| {
                    r.children_named("Resource")
                        .map(|res| LogResource {
                            resource_type: res.text_at(&["ResourceType"]),
                            patient_id: res.text_at(&["Patient", "PatientId"]),
                            care_provider: res.text_at(&["CareProvider", "CareProviderId"]),
                            care_unit: res.text_at(&["CareUnit", "CareUnitId"]),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            sender_id: Some(sender_id.to_string()),
        })
        .collect()
}

/// The StoreLog answer (Body content).
pub fn store_log_response(count: usize) -> String {
    format!(
        "<StoreLogResponse xmlns=\"{STORE_LOG_NS}\"><ResultType><ResultCode xmlns=\"{LOG_CORE_NS}\">OK</ResultCode><ResultText xmlns=\"{LOG_CORE_NS}\">{}</ResultText></ResultType></StoreLogResponse>",
        escape(&format!("{count} log entries stored"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries() {
        let xml = r#"<StoreLogRequest xmlns="urn:riv:ehr:log:store:StoreLogResponder:1" xmlns:l="urn:riv:ehr:log:1">
          <Log><l:LogId>a</l:LogId><l:System><l:SystemId>SYS</l:SystemId></l:System>
          <l:Activity><l:ActivityType>Läsa</l:ActivityType><l:StartDate>2024-01-01T10:00:00</l:StartDate><l:Purpose>Vård och behandling</l:Purpose></l:Activity>
          <l:User><l:UserId>U</l:UserId><l:CareProvider><l:CareProviderId>CP</l:CareProviderId></l:CareProvider><l:CareUnit><l:CareUnitId>CU</l:CareUnitId></l:CareUnit></l:User>
          <l:Resources><l:Resource><l:ResourceType>Journal</l:ResourceType><l:Patient><l:PatientId>1912</l:PatientId></l:Patient><l:CareProvider><l:CareProviderId>OWN</l:CareProviderId></l:CareProvider></l:Resource></l:Resources></Log>
          <Log><l:LogId>b</l:LogId></Log></StoreLogRequest>"#;
        let root = Element::parse(xml.as_bytes()).expect("parses");
        let entries = parse_store_log(&root, "S");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].activity_type.as_deref(), Some("Läsa"));
        assert_eq!(
            entries[0].resources[0].care_provider.as_deref(),
            Some("OWN")
        );
        assert_eq!(entries[1].log_id.as_deref(), Some("b"));
    }
}
