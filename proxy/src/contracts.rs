//! Facts about the twelve NPÖ read contracts the host needs (`reference/riv-contracts.md`
//! §1.1). Element names differ between contracts, so they come from this table, never
//! from guesses.

/// A contract the host knows: its responder namespace, its time-filter element, the
/// repeated record element of its response (§1.2) and the PDL information type of its
/// records (`lak`, `upp` for the types blocks may exclude; otherwise the contract's EI
/// categorisation, §1.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContractInfo {
    pub namespace: &'static str,
    /// `timePeriod` or `datePeriod`.
    pub period_element: &'static str,
    /// Local name of the record element, a child of the response root.
    pub record_element: &'static str,
    pub information_type: &'static str,
}

pub const NPO_CONTRACTS: [ContractInfo; 12] = [
    info(
        "urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:2",
        "timePeriod",
        "careDocumentation",
        "voo",
    ),
    info(
        "urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:3",
        "datePeriod",
        "careDocumentation",
        "voo",
    ),
    info(
        "urn:riv:clinicalprocess:healthcond:description:GetDiagnosisResponder:2",
        "timePeriod",
        "diagnosis",
        "dia",
    ),
    info(
        "urn:riv:clinicalprocess:healthcond:description:GetAlertInformationResponder:2",
        "timePeriod",
        "alertInformation",
        "upp",
    ),
    info(
        "urn:riv:clinicalprocess:healthcond:description:GetFunctionalStatusResponder:2",
        "datePeriod",
        "functionalStatusAssessment",
        "fun",
    ),
    info(
        "urn:riv:clinicalprocess:healthcond:actoutcome:GetLaboratoryOrderOutcomeResponder:3",
        "timePeriod",
        "laboratoryOrderOutcome",
        "und-kkm-ure",
    ),
    info(
        "urn:riv:clinicalprocess:healthcond:actoutcome:GetLaboratoryOrderOutcomeResponder:4",
        "datePeriod",
        "laboratoryOrderOutcome",
        "und-kkm-ure",
    ),
    info(
        "urn:riv:clinicalprocess:activityprescription:actoutcome:GetMedicationHistoryResponder:2",
        "datePeriod",
        "medicationMedicalRecord",
        "lak",
    ),
    info(
        "urn:riv:clinicalprocess:activityprescription:actoutcome:GetVaccinationHistoryResponder:2",
        "timePeriod",
        "vaccinationMedicalRecord",
        "caa-gvh",
    ),
    info(
        "urn:riv:clinicalprocess:healthcond:actoutcome:GetImagingOutcomeResponder:1",
        "datePeriod",
        "imagingOutcome",
        "und-bdi-ure",
    ),
    info(
        "urn:riv:clinicalprocess:healthcond:actoutcome:GetReferralOutcomeResponder:3",
        "datePeriod",
        "referralOutcome",
        "und-kon-ure",
    ),
    info(
        "urn:riv:clinicalprocess:logistics:logistics:GetCareContactsResponder:2",
        "timePeriod",
        "careContact",
        "vko",
    ),
];

const fn info(
    namespace: &'static str,
    period_element: &'static str,
    record_element: &'static str,
    information_type: &'static str,
) -> ContractInfo {
    ContractInfo {
        namespace,
        period_element,
        record_element,
        information_type,
    }
}

/// What the host assumes of a contract it has no table entry for: no record element
/// (responses are shown to response policies with no records) and no information type.
pub const UNKNOWN_CONTRACT: ContractInfo = info("", "", "", "");

/// The table entry for a contract namespace, if it is an NPÖ read contract.
pub fn lookup(namespace: &str) -> Option<&'static ContractInfo> {
    NPO_CONTRACTS.iter().find(|c| c.namespace == namespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contract_names_its_record_element_and_information_type() {
        let medication = lookup(
            "urn:riv:clinicalprocess:activityprescription:actoutcome:GetMedicationHistoryResponder:2",
        )
        .unwrap();
        assert_eq!(medication.record_element, "medicationMedicalRecord");
        assert_eq!(medication.information_type, "lak");
        let alerts =
            lookup("urn:riv:clinicalprocess:healthcond:description:GetAlertInformationResponder:2")
                .unwrap();
        assert_eq!(alerts.information_type, "upp");
        assert!(NPO_CONTRACTS
            .iter()
            .all(|c| !c.record_element.is_empty() && !c.information_type.is_empty()));
    }
}
