//! Facts about the twelve NPÖ read contracts the host needs (`reference/riv-contracts.md`
//! §1.1). Element names differ between contracts, so they come from this table, never
//! from guesses.

/// A contract the host knows: its responder namespace and its time-filter element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContractInfo {
    pub namespace: &'static str,
    /// `timePeriod` or `datePeriod`.
    pub period_element: &'static str,
}

pub const NPO_CONTRACTS: [ContractInfo; 12] = [
    info(
        "urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:2",
        "timePeriod",
    ),
    info(
        "urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:3",
        "datePeriod",
    ),
    info(
        "urn:riv:clinicalprocess:healthcond:description:GetDiagnosisResponder:2",
        "timePeriod",
    ),
    info(
        "urn:riv:clinicalprocess:healthcond:description:GetAlertInformationResponder:2",
        "timePeriod",
    ),
    info(
        "urn:riv:clinicalprocess:healthcond:description:GetFunctionalStatusResponder:2",
        "datePeriod",
    ),
    info(
        "urn:riv:clinicalprocess:healthcond:actoutcome:GetLaboratoryOrderOutcomeResponder:3",
        "timePeriod",
    ),
    info(
        "urn:riv:clinicalprocess:healthcond:actoutcome:GetLaboratoryOrderOutcomeResponder:4",
        "datePeriod",
    ),
    info(
        "urn:riv:clinicalprocess:activityprescription:actoutcome:GetMedicationHistoryResponder:2",
        "datePeriod",
    ),
    info(
        "urn:riv:clinicalprocess:activityprescription:actoutcome:GetVaccinationHistoryResponder:2",
        "timePeriod",
    ),
    info(
        "urn:riv:clinicalprocess:healthcond:actoutcome:GetImagingOutcomeResponder:1",
        "datePeriod",
    ),
    info(
        "urn:riv:clinicalprocess:healthcond:actoutcome:GetReferralOutcomeResponder:3",
        "datePeriod",
    ),
    info(
        "urn:riv:clinicalprocess:logistics:logistics:GetCareContactsResponder:2",
        "timePeriod",
    ),
];

const fn info(namespace: &'static str, period_element: &'static str) -> ContractInfo {
    ContractInfo {
        namespace,
        period_element,
    }
}

/// The table entry for a contract namespace, if it is an NPÖ read contract.
pub fn lookup(namespace: &str) -> Option<&'static ContractInfo> {
    NPO_CONTRACTS.iter().find(|c| c.namespace == namespace)
}
