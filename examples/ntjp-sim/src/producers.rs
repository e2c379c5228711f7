//! Simulated producers: what answers a call once VP has routed it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use crate::blocks;
use crate::config::{FaultMode, PatientConfig, ProducerConfig, ProducerKind, SimConfig};
use crate::log_service::{self, StoreLogEntry};
use crate::templates::{npo_contract, RecordTemplate, RecordValues, TemplateError, NPO_CONTRACTS};
use crate::vp::{envelope, soap_fault};
use crate::xml::{escape, parse_payload, Element};

/// Default record owner care provider when none is configured.
pub const DEFAULT_CARE_PROVIDER: &str = "SE2321000016-SIMVG";
/// Default record owner care unit when none is configured.
pub const DEFAULT_CARE_UNIT: &str = "SE2321000016-SIMVE";
/// Personnummer OID, used when the request does not say.
pub const PERSONNUMMER_OID: &str = "1.2.752.129.2.1.3.1";

/// The sample used for the `soap-fault` mode (a SOAP 1.1 fault from Inera's mocks).
const SOAP_FAULT_SAMPLE: &str = "15_GetFunctionalStatus_v2_soapfault_mock.xml";

/// A producer's answer before fault modes are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerAnswer {
    pub status: u16,
    pub body: String,
    /// Log entries to record (StoreLog only).
    pub log_entries: Vec<StoreLogEntry>,
}

/// Templates and per-producer state shared by all connections.
#[derive(Debug)]
pub struct Producers {
    templates: HashMap<&'static str, RecordTemplate>,
    /// Sample responses by contract namespace (lower-case), answered as-is.
    as_is: HashMap<String, String>,
    soap_fault_body: String,
    /// Runtime overrides of `fault`, keyed by lower-case producer name.
    fault_overrides: Mutex<HashMap<String, FaultMode>>,
}

impl Producers {
    /// Loads templates from the samples directory.
    pub fn load(samples_dir: &Path) -> Result<Self, TemplateError> {
        let mut templates = HashMap::new();
        for spec in NPO_CONTRACTS.iter() {
            templates.insert(spec.namespace, RecordTemplate::load(spec, samples_dir)?);
        }
        let mut as_is = HashMap::new();
        // Other sample responses (e.g. AssertCareEngagement) are answered verbatim.
        if let Ok(dir) = std::fs::read_dir(samples_dir) {
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.contains("_response") || !name.ends_with(".xml") {
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(entry.path()) else {
                    continue;
                };
                if let Ok(info) = parse_payload(text.as_bytes()) {
                    if let Some(ns) = info.contract {
                        if npo_contract(&ns).is_none() {
                            as_is.insert(ns.to_ascii_lowercase(), text);
                        }
                    }
                }
            }
        }
        let soap_fault_body = std::fs::read_to_string(samples_dir.join(SOAP_FAULT_SAMPLE))
            .map(|t| t.replace("${validationMessages}", "Simulated producer fault"))
            .unwrap_or_else(|_| soap_fault("soap:Server", "Simulated producer fault", "ntjp-sim"));
        Ok(Producers {
            templates,
            as_is,
            soap_fault_body,
            fault_overrides: Mutex::new(HashMap::new()),
        })
    }

    /// The fault mode in effect for a producer (runtime override, else config).
    pub fn fault_mode(&self, producer: &ProducerConfig) -> FaultMode {
        self.fault_overrides
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&producer.name.to_ascii_lowercase())
            .copied()
            .unwrap_or(producer.fault)
    }

    /// Changes a producer's fault mode at runtime (e.g. log service down, then up).
    pub fn set_fault(&self, producer: &str, mode: FaultMode) {
        self.fault_overrides
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(producer.to_ascii_lowercase(), mode);
    }

    /// The SOAP fault body used by the `soap-fault` mode.
    pub fn soap_fault_body(&self) -> &str {
        &self.soap_fault_body
    }

    /// Produces the normal answer of `producer` to a call.
    pub fn answer(
        &self,
        config: &SimConfig,
        producer: &ProducerConfig,
        contract: &str,
        logical_address: &str,
        sender_id: &str,
        body: &[u8],
    ) -> ProducerAnswer {
        let doc = Element::parse(body).ok();
        let root = doc.as_ref().and_then(Element::body_root);
        match producer.kind {
            ProducerKind::Blocks => {
                let patient = root
                    .and_then(|r| {
                        r.text_at(&["PatientId"])
                            .or_else(|| r.text_at(&["patientId"]))
                    })
                    .unwrap_or_default();
                ok(envelope(&blocks::get_blocks_response(
                    &config.blocks,
                    &patient,
                )))
            }
            ProducerKind::Log => {
                let entries = root
                    .map(|r| log_service::parse_store_log(r, sender_id))
                    .unwrap_or_default();
                let mut answer = ok(envelope(&log_service::store_log_response(entries.len())));
                answer.log_entries = entries;
                answer
            }
            ProducerKind::Records => {
                if let Some(template) = self
                    .templates
                    .iter()
                    .find(|(ns, _)| ns.eq_ignore_ascii_case(contract))
                    .map(|(_, t)| t)
                {
                    let (patient, patient_type) = root.map(patient_of).unwrap_or_default();
                    let records = record_values(
                        config,
                        producer,
                        template.spec.short,
                        logical_address,
                        &patient,
                        &patient_type,
                    );
                    match template.render(&records, &uuid::Uuid::new_v4().to_string()) {
                        Ok(xml) => ok(xml),
                        Err(e) => ProducerAnswer {
                            status: 500,
                            body: soap_fault("soap:Server", "Simulator template error", &e),
                            log_entries: Vec::new(),
                        },
                    }
                } else if let Some(sample) = self.as_is.get(&contract.to_ascii_lowercase()) {
                    ok(sample.clone())
                } else {
                    // Unknown contract: an empty, namespaced `<XResponse>` with result OK.
                    let root_name = root.map(|r| r.name.as_str()).unwrap_or("Unknown");
                    let name = root_name.strip_suffix("Request").unwrap_or(root_name);
                    ok(envelope(&format!(
                        "<{name}Response xmlns=\"{}\"><result><resultCode>OK</resultCode></result></{name}Response>",
                        escape(contract)
                    )))
                }
            }
        }
    }
}

fn ok(body: String) -> ProducerAnswer {
    ProducerAnswer {
        status: 200,
        body,
        log_entries: Vec::new(),
    }
}

/// Reads the patient from `patientId/id` (v2) or `patientId/extension` (v3/v4).
fn patient_of(root: &Element) -> (String, String) {
    let Some(p) = root.child("patientId") else {
        return (String::new(), String::new());
    };
    let id = p
        .text_at(&["id"])
        .or_else(|| p.text_at(&["extension"]))
        .unwrap_or_default();
    let kind = p
        .text_at(&["type"])
        .or_else(|| p.text_at(&["root"]))
        .unwrap_or_else(|| PERSONNUMMER_OID.to_string());
    (id, kind)
}

fn pick<'a>(first: &'a [String], second: &'a [String]) -> &'a [String] {
    if first.is_empty() {
        second
    } else {
        first
    }
}

/// Computes the per-record values from producer defaults and patient overrides.
/// A request without a patient id gets no records.
pub fn record_values(
    config: &SimConfig,
    producer: &ProducerConfig,
    contract_short: &str,
    logical_address: &str,
    patient_id: &str,
    patient_id_type: &str,
) -> Vec<RecordValues> {
    if patient_id.is_empty() {
        return Vec::new();
    }
    let empty = PatientConfig::default();
    let patient = config.patients.get(patient_id).unwrap_or(&empty);
    let count = patient.records.unwrap_or(producer.records);
    let default_providers = [DEFAULT_CARE_PROVIDER.to_string()];
    let default_units = [DEFAULT_CARE_UNIT.to_string()];
    let providers = pick(
        &patient.care_providers,
        pick(&producer.care_providers, &default_providers),
    );
    let units = pick(
        &patient.care_units,
        pick(&producer.care_units, &default_units),
    );
    let dates = pick(&patient.dates, &producer.dates);
    let source = producer
        .source_system
        .clone()
        .unwrap_or_else(|| logical_address.to_string());
    (0..count)
        .map(|i| RecordValues {
            care_provider: providers[i % providers.len()].clone(),
            care_unit: units[i % units.len()].clone(),
            date: if dates.is_empty() {
                default_date(i)
            } else {
                dates[i % dates.len()].clone()
            },
            source_system: source.clone(),
            document_id: format!("{}-{}-{}", producer.name, contract_short, i + 1),
            patient_id: patient_id.to_string(),
            patient_id_type: patient_id_type.to_string(),
            has_owner: !patient.missing_owner.contains(&i),
        })
        .collect()
}

/// Deterministic default dates: 2024-01-01, 2024-01-02, … (wrapping at 28 days a month).
fn default_date(i: usize) -> String {
    let month = (i / 28) % 12 + 1;
    let day = i % 28 + 1;
    format!("2024{month:02}{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_robin_and_overrides() {
        let mut cfg = SimConfig::default();
        let mut p = ProducerConfig::new("p");
        p.care_providers = vec!["A".into(), "B".into()];
        cfg.patients.insert(
            "191212121212".into(),
            PatientConfig {
                records: Some(3),
                dates: vec!["20200101".into()],
                missing_owner: vec![1],
                ..PatientConfig::default()
            },
        );
        let v = record_values(&cfg, &p, "X", "LA", "191212121212", PERSONNUMMER_OID);
        assert_eq!(v.len(), 3);
        assert_eq!(v[2].care_provider, "A");
        assert_eq!(v[1].care_provider, "B");
        assert!(!v[1].has_owner);
        assert_eq!(v[0].source_system, "LA");
        assert_eq!(v[0].date, "20200101");
        let other = record_values(&cfg, &p, "X", "LA", "190101010101", PERSONNUMMER_OID);
        assert_eq!(other.len(), 2);
        assert_eq!(other[1].date, "20240102");
        assert!(record_values(&cfg, &p, "X", "LA", "", "").is_empty());
    }
}
