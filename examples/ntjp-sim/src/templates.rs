//! Response templates for the twelve NPÖ contracts.
//!
//! A template is a whole response document split into three parts: the text
//! before the first record element, one record element, and the text after the
//! last record element. Six contracts take their template from Inera's mock
//! responses in the samples directory (read at start-up); the other six use
//! compact, schema-shaped documents written here from the element trees in
//! `shared/reference/xsd-trees` (element names and casing per contract).
//!
//! Each record is produced by streaming the record template through quick-xml
//! and replacing the text of elements by role (owner, times, source system,
//! document id, patient); see [`role_of`].

use std::path::Path;

use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};
use quick_xml::{Reader, Writer};

/// Where a contract's template comes from.
#[derive(Debug, Clone, Copy)]
pub enum TemplateSource {
    /// A file in the samples directory.
    Sample(&'static str),
    /// A document defined in this module.
    Builtin(&'static str),
}

/// One simulated NPÖ contract.
#[derive(Debug, Clone, Copy)]
pub struct ContractSpec {
    /// Short name used in document ids and logs, e.g. `CD3`.
    pub short: &'static str,
    /// Responder namespace (the TAK contract id).
    pub namespace: &'static str,
    /// Local name of the repeated record element.
    pub record: &'static str,
    pub source: TemplateSource,
}

/// The twelve NPÖ contracts of riv-contracts.md §1.1.
pub const NPO_CONTRACTS: [ContractSpec; 12] = [
    ContractSpec {
        short: "CD2",
        namespace: "urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:2",
        record: "careDocumentation",
        source: TemplateSource::Builtin(CD2),
    },
    ContractSpec {
        short: "CD3",
        namespace: "urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:3",
        record: "careDocumentation",
        source: TemplateSource::Sample("08_GetCareDocumentation_v3_response_mock.xml"),
    },
    ContractSpec {
        short: "DIA2",
        namespace: "urn:riv:clinicalprocess:healthcond:description:GetDiagnosisResponder:2",
        record: "diagnosis",
        source: TemplateSource::Sample("10_GetDiagnosis_v2_response_mock.xml"),
    },
    ContractSpec {
        short: "ALE2",
        namespace: "urn:riv:clinicalprocess:healthcond:description:GetAlertInformationResponder:2",
        record: "alertInformation",
        source: TemplateSource::Sample("11_GetAlertInformation_v2_response_mock.xml"),
    },
    ContractSpec {
        short: "FUN2",
        namespace: "urn:riv:clinicalprocess:healthcond:description:GetFunctionalStatusResponder:2",
        record: "functionalStatusAssessment",
        source: TemplateSource::Builtin(FUN2),
    },
    ContractSpec {
        short: "LAB3",
        namespace:
            "urn:riv:clinicalprocess:healthcond:actoutcome:GetLaboratoryOrderOutcomeResponder:3",
        record: "laboratoryOrderOutcome",
        source: TemplateSource::Builtin(LAB3),
    },
    ContractSpec {
        short: "LAB4",
        namespace:
            "urn:riv:clinicalprocess:healthcond:actoutcome:GetLaboratoryOrderOutcomeResponder:4",
        record: "laboratoryOrderOutcome",
        source: TemplateSource::Sample("12_GetLaboratoryOrderOutcome_v4_response_mock.xml"),
    },
    ContractSpec {
        short: "MED2",
        namespace:
            "urn:riv:clinicalprocess:activityprescription:actoutcome:GetMedicationHistoryResponder:2",
        record: "medicationMedicalRecord",
        source: TemplateSource::Builtin(MED2),
    },
    ContractSpec {
        short: "VAC2",
        namespace:
            "urn:riv:clinicalprocess:activityprescription:actoutcome:GetVaccinationHistoryResponder:2",
        record: "vaccinationMedicalRecord",
        source: TemplateSource::Sample("14_GetVaccinationHistory_v2_response_mock.xml"),
    },
    ContractSpec {
        short: "IMG1",
        namespace: "urn:riv:clinicalprocess:healthcond:actoutcome:GetImagingOutcomeResponder:1",
        record: "imagingOutcome",
        source: TemplateSource::Sample("13_GetImagingOutcome_v1_response_mock.xml"),
    },
    ContractSpec {
        short: "REF3",
        namespace: "urn:riv:clinicalprocess:healthcond:actoutcome:GetReferralOutcomeResponder:3",
        record: "referralOutcome",
        source: TemplateSource::Builtin(REF3),
    },
    ContractSpec {
        short: "CC2",
        namespace: "urn:riv:clinicalprocess:logistics:logistics:GetCareContactsResponder:2",
        record: "careContact",
        source: TemplateSource::Builtin(CC2),
    },
];

/// Looks up an NPÖ contract by namespace (case-insensitive, like TAK).
pub fn npo_contract(namespace: &str) -> Option<&'static ContractSpec> {
    NPO_CONTRACTS
        .iter()
        .find(|c| c.namespace.eq_ignore_ascii_case(namespace))
}

/// Errors preparing templates.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read sample {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("template for {contract} is unusable: {message}")]
    Invalid { contract: String, message: String },
}

/// A response document split around its records.
#[derive(Debug, Clone)]
pub struct RecordTemplate {
    pub spec: ContractSpec,
    prefix: String,
    record: String,
    suffix: String,
}

/// Values substituted into one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordValues {
    pub care_provider: String,
    pub care_unit: String,
    /// `YYYYMMDD`
    pub date: String,
    pub source_system: String,
    pub document_id: String,
    pub patient_id: String,
    pub patient_id_type: String,
    /// `false`: the owner id elements are left out (records a consumer must not show).
    pub has_owner: bool,
}

impl RecordValues {
    /// The record timestamp `YYYYMMDDhhmmss` derived from the date (noon).
    pub fn timestamp(&self) -> String {
        format!("{}120000", self.date)
    }
}

impl RecordTemplate {
    /// Loads the template for a contract (reading its sample if it has one).
    pub fn load(spec: &ContractSpec, samples_dir: &Path) -> Result<Self, TemplateError> {
        let doc = match spec.source {
            TemplateSource::Builtin(doc) => doc.to_string(),
            TemplateSource::Sample(file) => {
                let path = samples_dir.join(file);
                std::fs::read_to_string(&path).map_err(|source| TemplateError::Read {
                    path: path.display().to_string(),
                    source,
                })?
            }
        };
        Self::from_document(spec, &doc)
    }

    /// Splits a response document around its record elements.
    pub fn from_document(spec: &ContractSpec, doc: &str) -> Result<Self, TemplateError> {
        let invalid = |message: String| TemplateError::Invalid {
            contract: spec.short.to_string(),
            message,
        };
        let mut reader = Reader::from_str(doc);
        reader.config_mut().check_end_names = true;
        let mut depth = 0usize;
        let mut record_depth: Option<usize> = None;
        let mut first_start: Option<usize> = None;
        let mut first_end: Option<usize> = None;
        let mut last_end: Option<usize> = None;
        loop {
            let before = to_usize(reader.buffer_position());
            let event = reader.read_event().map_err(|e| invalid(e.to_string()))?;
            match event {
                Event::Start(e) => {
                    depth += 1;
                    let is_record = e.local_name().as_ref() == spec.record.as_bytes();
                    if is_record && record_depth.is_none_or(|d| d == depth) {
                        record_depth = Some(depth);
                        first_start.get_or_insert(before);
                    }
                }
                Event::End(e) => {
                    if record_depth == Some(depth)
                        && e.local_name().as_ref() == spec.record.as_bytes()
                    {
                        let after = to_usize(reader.buffer_position());
                        first_end.get_or_insert(after);
                        last_end = Some(after);
                    }
                    depth = depth.saturating_sub(1);
                }
                Event::Eof => break,
                _ => {}
            }
        }
        match (first_start, first_end, last_end) {
            (Some(s), Some(e), Some(l)) if s < e && e <= l && l <= doc.len() => {
                Ok(RecordTemplate {
                    spec: *spec,
                    prefix: doc[..s].to_string(),
                    record: doc[s..e].to_string(),
                    suffix: doc[l..].to_string(),
                })
            }
            _ => Err(invalid(format!(
                "no <{}> record element found",
                spec.record
            ))),
        }
    }

    /// Renders a whole response with one record per entry of `records`.
    pub fn render(&self, records: &[RecordValues], log_id: &str) -> Result<String, String> {
        let mut out = String::with_capacity(self.prefix.len() + self.suffix.len() + 4096);
        out.push_str(&self.prefix);
        for values in records {
            out.push_str(&render_record(&self.record, values)?);
        }
        out.push_str(&self.suffix.replace("${logId}", log_id));
        Ok(out)
    }
}

fn to_usize(pos: u64) -> usize {
    usize::try_from(pos).unwrap_or(usize::MAX)
}

/// What an element's text stands for inside a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    CareProvider,
    CareUnit,
    Timestamp,
    Date,
    SourceSystem,
    DocumentId,
    PatientId,
    PatientIdType,
    /// An owner element to leave out entirely when the record has no owner.
    OwnerContainer,
    /// Care provider/unit ids in a record body: filled in, but never removed
    /// (some are mandatory, e.g. CC2 `careContactOrgUnit/orgUnitHSAId`).
    BodyCareProvider,
    BodyCareUnit,
}

/// Decides the role of element `name` given its ancestors (local names, record first).
fn role_of(ancestors: &[String], name: &str) -> Option<Role> {
    let parent = ancestors.last().map(String::as_str).unwrap_or("");
    let grandparent = ancestors
        .len()
        .checked_sub(2)
        .and_then(|i| ancestors.get(i))
        .map(String::as_str)
        .unwrap_or("");
    match name {
        // v2-style header (PatientSummaryHeaderType); HSAid spelling of pre-release shapes too.
        "healthcareProfessionalCareGiverHSAId" | "healthcareProfessionalCareGiverHSAid" => {
            Some(Role::CareProvider)
        }
        "healthcareProfessionalCareUnitHSAId" | "healthcareProfessionalCareUnitHSAid" => {
            Some(Role::CareUnit)
        }
        // JoL header (CD3, Lab4): the whole IIType element disappears without an owner.
        "accountableHealthcareProvider" | "accountableCareGiver" | "accountableCareUnit" => {
            Some(Role::OwnerContainer)
        }
        "extension" | "root" if parent == "patientId" => Some(if name == "extension" {
            Role::PatientId
        } else {
            Role::PatientIdType
        }),
        "extension"
            if matches!(
                parent,
                "accountableHealthcareProvider" | "accountableCareGiver"
            ) =>
        {
            Some(Role::CareProvider)
        }
        "extension" if parent == "accountableCareUnit" => Some(Role::CareUnit),
        "extension" if parent == "sourceSystemId" => Some(Role::SourceSystem),
        "root" | "extension" if parent == "id" && grandparent == "record" => Some(Role::DocumentId),
        "id" if parent == "patientId" => Some(Role::PatientId),
        "type" if parent == "patientId" => Some(Role::PatientIdType),
        "orgUnitHSAId" if parent == "careGiverOrg" => Some(Role::BodyCareProvider),
        "orgUnitHSAId"
            if matches!(
                parent,
                "healthcareProfessionalOrgUnit" | "careContactOrgUnit"
            ) =>
        {
            Some(Role::BodyCareUnit)
        }
        "sourceSystemHSAId" | "sourceSystemHSAid" => Some(Role::SourceSystem),
        "documentId" => Some(Role::DocumentId),
        "documentTime"
        | "authorTime"
        | "signatureTime"
        | "timestamp"
        | "blockComparisonTime"
        | "diagnosisTime"
        | "resultTime"
        | "registrationTime"
        | "verifiedTime"
        | "obsoleteTime"
        | "referralTime"
        | "actTime"
        | "evaluationTime"
        | "startOfTreatment"
        | "careContactTime" => Some(Role::Timestamp),
        "start" | "end" if parent.ends_with("TimePeriod") => Some(Role::Timestamp),
        "date" | "ascertainedDate" => Some(Role::Date),
        _ => None,
    }
}

fn value_for(role: Role, v: &RecordValues) -> String {
    match role {
        Role::CareProvider | Role::BodyCareProvider => v.care_provider.clone(),
        Role::CareUnit | Role::BodyCareUnit => v.care_unit.clone(),
        Role::Timestamp => v.timestamp(),
        Role::Date => v.date.clone(),
        Role::SourceSystem => v.source_system.clone(),
        Role::DocumentId => v.document_id.clone(),
        Role::PatientId => v.patient_id.clone(),
        Role::PatientIdType => v.patient_id_type.clone(),
        Role::OwnerContainer => String::new(),
    }
}

/// Owner ids that vanish from a record without an owner.
fn is_owner_role(role: Role) -> bool {
    matches!(
        role,
        Role::CareProvider | Role::CareUnit | Role::OwnerContainer
    )
}

/// Streams one record template, substituting values by role.
fn render_record(template: &str, values: &RecordValues) -> Result<String, String> {
    let mut reader = Reader::from_str(template);
    let mut writer = Writer::new(Vec::with_capacity(template.len() + 256));
    let mut ancestors: Vec<String> = Vec::new();
    // Depth (ancestors.len()) at which content is being skipped, and whether the
    // element's own end tag must be written (replaced text) or not (dropped element).
    let mut skipping: Option<(usize, bool)> = None;
    let write = |w: &mut Writer<Vec<u8>>, e: Event<'_>| w.write_event(e).map_err(|e| e.to_string());
    loop {
        let event = reader.read_event().map_err(|e| e.to_string())?;
        if let Some((depth, keep_end)) = skipping {
            match &event {
                Event::Start(e) => ancestors.push(local(e)),
                Event::End(_) => {
                    if ancestors.len() == depth {
                        skipping = None;
                        if keep_end {
                            write(&mut writer, event.clone())?;
                        }
                    }
                    ancestors.pop();
                }
                Event::Eof => break,
                _ => {}
            }
            continue;
        }
        match event {
            Event::Start(e) => {
                let name = local(&e);
                let role = role_of(&ancestors, &name);
                ancestors.push(name);
                match role {
                    Some(r) if is_owner_role(r) && !values.has_owner => {
                        skipping = Some((ancestors.len(), false));
                    }
                    Some(Role::OwnerContainer) | None => write(&mut writer, Event::Start(e))?,
                    Some(r) => {
                        write(&mut writer, Event::Start(e))?;
                        write(
                            &mut writer,
                            Event::Text(BytesText::new(&value_for(r, values))),
                        )?;
                        skipping = Some((ancestors.len(), true));
                    }
                }
            }
            Event::Empty(e) => {
                let name = local(&e);
                match role_of(&ancestors, &name) {
                    Some(r) if is_owner_role(r) && !values.has_owner => {}
                    Some(Role::OwnerContainer) | None => write(&mut writer, Event::Empty(e))?,
                    Some(r) => {
                        let end =
                            BytesEnd::new(String::from_utf8_lossy(e.name().as_ref()).into_owned());
                        write(&mut writer, Event::Start(e))?;
                        write(
                            &mut writer,
                            Event::Text(BytesText::new(&value_for(r, values))),
                        )?;
                        write(&mut writer, Event::End(end))?;
                    }
                }
            }
            Event::End(e) => {
                ancestors.pop();
                write(&mut writer, Event::End(e))?;
            }
            Event::Text(t) => {
                let raw = t.decode().map_err(|e| e.to_string())?;
                if raw.contains("${") {
                    let replaced = substitute_placeholders(&raw, values);
                    write(&mut writer, Event::Text(BytesText::from_escaped(replaced)))?;
                } else {
                    write(&mut writer, Event::Text(t))?;
                }
            }
            Event::Eof => break,
            other => write(&mut writer, other)?,
        }
    }
    String::from_utf8(writer.into_inner()).map_err(|e| e.to_string())
}

fn local(e: &BytesStart<'_>) -> String {
    String::from_utf8_lossy(e.local_name().as_ref()).into_owned()
}

/// Replaces the SoapUI property placeholders of the mock responses that are
/// not covered by a role (already-escaped text in, escaped text out).
fn substitute_placeholders(raw: &str, v: &RecordValues) -> String {
    let esc = |s: &str| crate::xml::escape(s);
    raw.replace("${patientId}", &esc(&v.patient_id))
        .replace("${patientIdType}", &esc(&v.patient_id_type))
        .replace("${careUnitHSAId}", &esc(&v.care_unit))
        .replace("${careGiverHSAId}", &esc(&v.care_provider))
        .replace("${sourceSystemHSAId}", &esc(&v.source_system))
        .replace("${documentId}", &esc(&v.document_id))
        .replace("${now}", &esc(&v.timestamp()))
}

// ---------------------------------------------------------------------------
// Built-in templates for contracts without a sample response. Empty elements
// are filled by role; fixed texts are neutral demo values.
// ---------------------------------------------------------------------------

/// GetCareDocumentation 2 (schema 2.1): note `sourceSystemHSAid` (lower-case id)
/// and `result` in the `description:2.1` namespace.
const CD2: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:r="urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:2" xmlns:c="urn:riv:clinicalprocess:healthcond:description:2" xmlns:x="urn:riv:clinicalprocess:healthcond:description:2.1"><soap:Header/><soap:Body><r:GetCareDocumentationResponse><r:careDocumentation><c:careDocumentationHeader><c:documentId/><c:sourceSystemHSAid/><c:documentTitle>Simulerad anteckning</c:documentTitle><c:documentTime/><c:patientId><c:id/><c:type/></c:patientId><c:accountableHealthcareProfessional><c:authorTime/><c:healthcareProfessionalHSAId>SE2321000016-SIM1</c:healthcareProfessionalHSAId><c:healthcareProfessionalName>Simulerad Läkare</c:healthcareProfessionalName><c:healthcareProfessionalCareUnitHSAId/><c:healthcareProfessionalCareGiverHSAId/></c:accountableHealthcareProfessional><c:legalAuthenticator><c:signatureTime/></c:legalAuthenticator><c:approvedForPatient>true</c:approvedForPatient></c:careDocumentationHeader><c:careDocumentationBody><c:clinicalDocumentNote><c:clinicalDocumentNoteCode>utr</c:clinicalDocumentNoteCode><c:clinicalDocumentNoteTitle>Utredning</c:clinicalDocumentNoteTitle><c:clinicalDocumentNoteText>Simulerad journaltext.</c:clinicalDocumentNoteText></c:clinicalDocumentNote></c:careDocumentationBody></r:careDocumentation><x:result><x:resultCode>OK</x:resultCode><x:logId>${logId}</x:logId></x:result></r:GetCareDocumentationResponse></soap:Body></soap:Envelope>"#;

/// GetFunctionalStatus 2: `datePeriod` contract, v2 header.
const FUN2: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:r="urn:riv:clinicalprocess:healthcond:description:GetFunctionalStatusResponder:2" xmlns:c="urn:riv:clinicalprocess:healthcond:description:2"><soap:Header/><soap:Body><r:GetFunctionalStatusResponse><r:functionalStatusAssessment><c:functionalStatusAssessmentHeader><c:documentId/><c:sourceSystemHSAId/><c:documentTitle>Funktionsbedömning</c:documentTitle><c:documentTime/><c:patientId><c:id/><c:type/></c:patientId><c:accountableHealthcareProfessional><c:authorTime/><c:healthcareProfessionalHSAId>SE2321000016-SIM1</c:healthcareProfessionalHSAId><c:healthcareProfessionalCareUnitHSAId/><c:healthcareProfessionalCareGiverHSAId/></c:accountableHealthcareProfessional><c:legalAuthenticator><c:signatureTime/></c:legalAuthenticator><c:approvedForPatient>true</c:approvedForPatient></c:functionalStatusAssessmentHeader><c:functionalStatusAssessmentBody><c:assessmentCategory>fun-fun</c:assessmentCategory><c:comment>Simulerad bedömning.</c:comment></c:functionalStatusAssessmentBody></r:functionalStatusAssessment><r:result><c:resultCode>OK</c:resultCode><c:logId>${logId}</c:logId></r:result></r:GetFunctionalStatusResponse></soap:Body></soap:Envelope>"#;

/// GetLaboratoryOrderOutcome 3 (3.1): v2-style header in `actoutcome:3`.
const LAB3: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:r="urn:riv:clinicalprocess:healthcond:actoutcome:GetLaboratoryOrderOutcomeResponder:3" xmlns:c="urn:riv:clinicalprocess:healthcond:actoutcome:3"><soap:Header/><soap:Body><r:GetLaboratoryOrderOutcomeResponse><r:laboratoryOrderOutcome><c:laboratoryOrderOutcomeHeader><c:documentId/><c:sourceSystemHSAId/><c:documentTitle>Laboratoriesvar</c:documentTitle><c:documentTime/><c:patientId><c:id/><c:type/></c:patientId><c:accountableHealthcareProfessional><c:authorTime/><c:healthcareProfessionalHSAId>SE2321000016-SIM1</c:healthcareProfessionalHSAId><c:healthcareProfessionalCareUnitHSAId/><c:healthcareProfessionalCareGiverHSAId/></c:accountableHealthcareProfessional><c:legalAuthenticator><c:signatureTime/></c:legalAuthenticator><c:approvedForPatient>true</c:approvedForPatient></c:laboratoryOrderOutcomeHeader><c:laboratoryOrderOutcomeBody><c:resultType>DEF</c:resultType><c:registrationTime/><c:discipline>Klinisk kemi</c:discipline><c:resultReport>Simulerat svar.</c:resultReport><c:order><c:orderId>SIM-ORDER</c:orderId></c:order></c:laboratoryOrderOutcomeBody></r:laboratoryOrderOutcome><r:result><c:resultCode>OK</c:resultCode><c:logId>${logId}</c:logId></r:result></r:GetLaboratoryOrderOutcomeResponse></soap:Body></soap:Envelope>"#;

/// GetMedicationHistory 2 (2.1): owner also on the prescriber.
const MED2: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:r="urn:riv:clinicalprocess:activityprescription:actoutcome:GetMedicationHistoryResponder:2" xmlns:c="urn:riv:clinicalprocess:activityprescription:actoutcome:2"><soap:Header/><soap:Body><r:GetMedicationHistoryResponse><r:medicationMedicalRecord><c:medicationMedicalRecordHeader><c:documentId/><c:sourceSystemHSAId/><c:documentTime/><c:patientId><c:id/><c:type/></c:patientId><c:accountableHealthcareProfessional><c:authorTime/><c:healthcareProfessionalHSAId>SE2321000016-SIM1</c:healthcareProfessionalHSAId><c:healthcareProfessionalCareUnitHSAId/><c:healthcareProfessionalCareGiverHSAId/></c:accountableHealthcareProfessional><c:approvedForPatient>true</c:approvedForPatient></c:medicationMedicalRecordHeader><c:medicationMedicalRecordBody><c:medicationPrescription><c:prescriptionId><c:root>1.2.752.129.2.1.2.1</c:root><c:extension>SIM-PRESCRIPTION</c:extension></c:prescriptionId><c:typeOfPrescription>I</c:typeOfPrescription><c:prescriptionStatus>Active</c:prescriptionStatus><c:prescriber><c:authorTime/><c:healthcareProfessionalCareUnitHSAId/><c:healthcareProfessionalCareGiverHSAId/></c:prescriber><c:startOfTreatment/><c:selfMedication>false</c:selfMedication></c:medicationPrescription></c:medicationMedicalRecordBody></r:medicationMedicalRecord><r:result><c:resultCode>OK</c:resultCode><c:logId>${logId}</c:logId></r:result></r:GetMedicationHistoryResponse></soap:Body></soap:Envelope>"#;

/// GetReferralOutcome 3 (3.1): header in `actoutcome:3`.
const REF3: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:r="urn:riv:clinicalprocess:healthcond:actoutcome:GetReferralOutcomeResponder:3" xmlns:c="urn:riv:clinicalprocess:healthcond:actoutcome:3"><soap:Header/><soap:Body><r:GetReferralOutcomeResponse><r:referralOutcome><c:referralOutcomeHeader><c:documentId/><c:sourceSystemHSAId/><c:documentTitle>Konsultationssvar</c:documentTitle><c:documentTime/><c:patientId><c:id/><c:type/></c:patientId><c:accountableHealthcareProfessional><c:authorTime/><c:healthcareProfessionalHSAId>SE2321000016-SIM1</c:healthcareProfessionalHSAId><c:healthcareProfessionalCareUnitHSAId/><c:healthcareProfessionalCareGiverHSAId/></c:accountableHealthcareProfessional><c:legalAuthenticator><c:signatureTime/></c:legalAuthenticator><c:approvedForPatient>true</c:approvedForPatient></c:referralOutcomeHeader><c:referralOutcomeBody><c:referralOutcomeTypeCode>SS</c:referralOutcomeTypeCode><c:referralOutcomeTitle>Svar</c:referralOutcomeTitle><c:referralOutcomeText>Simulerat konsultationssvar.</c:referralOutcomeText><c:referral><c:referralId>SIM-REFERRAL</c:referralId><c:referralReason>Simulerad frågeställning</c:referralReason><c:referralTime/><c:referralAuthor><c:authorTime/></c:referralAuthor></c:referral></c:referralOutcomeBody></r:referralOutcome><r:result><c:resultCode>OK</c:resultCode><c:logId>${logId}</c:logId></r:result></r:GetReferralOutcomeResponse></soap:Body></soap:Envelope>"#;

/// GetCareContacts 2: no `documentTime` in the header and no `result` element.
const CC2: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:r="urn:riv:clinicalprocess:logistics:logistics:GetCareContactsResponder:2" xmlns:c="urn:riv:clinicalprocess:logistics:logistics:2"><soap:Header/><soap:Body><r:GetCareContactsResponse><r:careContact><c:careContactHeader><c:documentId/><c:sourceSystemHSAId/><c:patientId><c:id/><c:type/></c:patientId><c:accountableHealthcareProfessional><c:authorTime/><c:healthcareProfessionalHSAId>SE2321000016-SIM1</c:healthcareProfessionalHSAId><c:healthcareProfessionalName>Simulerad Läkare</c:healthcareProfessionalName><c:healthcareProfessionalOrgUnit><c:orgUnitHSAId/><c:orgUnitName>Simulerad mottagning</c:orgUnitName></c:healthcareProfessionalOrgUnit><c:healthcareProfessionalCareUnitHSAId/><c:healthcareProfessionalCareGiverHSAId/></c:accountableHealthcareProfessional><c:approvedForPatient>true</c:approvedForPatient></c:careContactHeader><c:careContactBody><c:careContactCode>1</c:careContactCode><c:careContactReason>Simulerat besök</c:careContactReason><c:careContactOrgUnit><c:orgUnitHSAId/><c:orgUnitName>Simulerad mottagning</c:orgUnitName></c:careContactOrgUnit><c:careContactTimePeriod><c:start/><c:end/></c:careContactTimePeriod><c:careContactStatus>1</c:careContactStatus></c:careContactBody></r:careContact></r:GetCareContactsResponse></soap:Body></soap:Envelope>"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn values(owner: bool) -> RecordValues {
        RecordValues {
            care_provider: "SE-CG".into(),
            care_unit: "SE-CU".into(),
            date: "20230405".into(),
            source_system: "SE-SRC".into(),
            document_id: "doc-1".into(),
            patient_id: "191212121212".into(),
            patient_id_type: "1.2.752.129.2.1.3.1".into(),
            has_owner: owner,
        }
    }

    #[test]
    fn builtin_templates_render() {
        for spec in NPO_CONTRACTS.iter() {
            if let TemplateSource::Builtin(doc) = spec.source {
                let t = RecordTemplate::from_document(spec, doc).expect("splits");
                let out = t
                    .render(&[values(true), values(false)], "log")
                    .expect("renders");
                crate::xml::Element::parse(out.as_bytes()).expect("well-formed");
                assert!(out.contains("SE-CG"), "{}", spec.short);
                assert!(out.contains("20230405120000"), "{}", spec.short);
                assert!(!out.contains("${"), "{}", spec.short);
            }
        }
    }

    #[test]
    fn owner_is_dropped() {
        let spec = npo_contract(
            "urn:riv:clinicalprocess:healthcond:description:GetFunctionalStatusResponder:2",
        )
        .expect("known");
        let TemplateSource::Builtin(doc) = spec.source else {
            panic!("builtin expected")
        };
        let t = RecordTemplate::from_document(spec, doc).expect("splits");
        let out = t.render(&[values(false)], "log").expect("renders");
        assert!(!out.contains("healthcareProfessionalCareGiverHSAId"));
        assert!(out.contains("<c:documentId>doc-1</c:documentId>"));
    }
}
