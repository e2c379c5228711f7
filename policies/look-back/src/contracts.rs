//! The twelve NPÖ read contracts: their period, and how a response record is judged
//! against a lower date bound (`reference/riv-contracts.md` §1.1 and §1.3).
//!
//! Element paths are below the record element, local names joined by `/`, exactly as the
//! host reports `RecordTime::field` (taken from `reference/xsd-trees/`). The look-back limit
//! is a lower bound only, so each TKB rule reduces to a question about the newest
//! relevant time:
//!
//! * "any of these times within the period" → kept when any of them is on or after the
//!   limit;
//! * "the interval overlaps the period" → kept when the interval's end is on or after
//!   the limit, or when the interval is open-ended (a start without an end).

use jiff::civil::Date;
use rtp_policy_sdk::RecordSummary;

/// How a record's times decide whether it reaches back past the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Kept when any time at any of these paths falls on or after the limit (also "an
    /// interval formed by these times overlaps", which is the same for a lower bound).
    AnyOf(&'static [&'static str]),
    /// The first of these paths present decides (a preferred time with fallbacks).
    FirstOf(&'static [&'static str]),
    /// An interval: its start is the first present of `start`, its end the first present
    /// of `end`; `also` are further points inside it. With a start and no end the interval
    /// is open-ended and overlaps any limit.
    Interval {
        start: &'static [&'static str],
        end: &'static [&'static str],
        also: &'static [&'static str],
    },
}

/// The outcome for one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Some relevant time lies on or after the limit (or the interval is open-ended).
    Keep,
    /// Every relevant time lies before the limit.
    Drop,
    /// The record has none of the times its contract's rule looks at.
    Undated,
}

/// What the policy knows about one contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contract {
    /// Local name of the request element, e.g. `GetCareDocumentation`.
    pub operation: &'static str,
    /// The major version: the last segment of the responder namespace.
    pub major: &'static str,
    /// `timePeriod` or `datePeriod`.
    pub period_element: &'static str,
    /// Whether `start` and `end` are both mandatory inside the period (so an inserted
    /// period needs an end too).
    pub start_and_end_mandatory: bool,
    /// How response records are judged.
    pub rule: Rule,
}

impl Contract {
    /// Short name for notes and faults, e.g. `GetCareDocumentation 3`.
    pub fn label(&self) -> String {
        format!("{} {}", self.operation, self.major)
    }
}

const fn contract(
    operation: &'static str,
    major: &'static str,
    period_element: &'static str,
    start_and_end_mandatory: bool,
    rule: Rule,
) -> Contract {
    Contract {
        operation,
        major,
        period_element,
        start_and_end_mandatory,
        rule,
    }
}

pub const CONTRACTS: [Contract; 12] = [
    // CD2: TKB text for major 2 not available; assumed as CD3 ("any of"), with the v2
    // header's names. The schema spells the body element `dissentintOpinion`.
    contract(
        "GetCareDocumentation",
        "2",
        "timePeriod",
        true,
        Rule::AnyOf(&[
            "careDocumentationHeader/documentTime",
            "careDocumentationHeader/accountableHealthcareProfessional/authorTime",
            "careDocumentationHeader/legalAuthenticator/signatureTime",
            "careDocumentationBody/clinicalDocumentNote/dissentintOpinion/authorTime",
        ]),
    ),
    // CD3: any of record, author and signature timestamps or a dissenting opinion's
    // authorTime within (TKB-DESC l.139). Not blockComparisonTime: that one is for blocks.
    contract(
        "GetCareDocumentation",
        "3",
        "datePeriod",
        true,
        Rule::AnyOf(&[
            "header/record/timestamp",
            "header/author/timestamp",
            "header/signature/timestamp",
            "body/dissentingOpinion/authorTime",
        ]),
    ),
    // DIA2: any of authorTime, signatureTime, diagnosisTime within (TKB-DESC l.269).
    contract(
        "GetDiagnosis",
        "2",
        "timePeriod",
        true,
        Rule::AnyOf(&[
            "diagnosisHeader/accountableHealthcareProfessional/authorTime",
            "diagnosisHeader/legalAuthenticator/signatureTime",
            "diagnosisBody/diagnosisTime",
        ]),
    ),
    // ALE2: [validityTimePeriod/start, obsoleteTime or validityTimePeriod/end or open]
    // overlaps (TKB-DESC l.372).
    contract(
        "GetAlertInformation",
        "2",
        "timePeriod",
        true,
        Rule::Interval {
            start: &["alertInformationBody/validityTimePeriod/start"],
            end: &[
                "alertInformationBody/obsoleteTime",
                "alertInformationBody/validityTimePeriod/end",
            ],
            also: &[],
        },
    ),
    // FUN2: documentTime within (TKB-DESC l.590). documentTime is optional in the schema;
    // without it the mandatory header authorTime stands in.
    contract(
        "GetFunctionalStatus",
        "2",
        "datePeriod",
        true,
        Rule::FirstOf(&[
            "functionalStatusAssessmentHeader/documentTime",
            "functionalStatusAssessmentHeader/accountableHealthcareProfessional/authorTime",
        ]),
    ),
    // Lab3: TKB text for major 3 not available; assumed as Lab4 (the time of the sample),
    // whose nearest v3 elements are the registration time and the analysis times.
    contract(
        "GetLaboratoryOrderOutcome",
        "3",
        "timePeriod",
        false,
        Rule::AnyOf(&[
            "laboratoryOrderOutcomeBody/registrationTime",
            "laboratoryOrderOutcomeBody/analysis/analysisTime/start",
            "laboratoryOrderOutcomeBody/analysis/analysisTime/end",
        ]),
    ),
    // Lab4: any sample's sampling time within (TKB-ACT). blockComparisonTime is the
    // latest sample's sampling time, so it agrees and stands in when no specimen is given.
    contract(
        "GetLaboratoryOrderOutcome",
        "4",
        "datePeriod",
        false,
        Rule::AnyOf(&[
            "body/groupOfAnalyses/analysis/specimen/timestamp",
            "header/accessControlHeader/blockComparisonTime",
        ]),
    ),
    // Med2: [prescriber/authorTime, fallback startOfTreatment, then header authorTime;
    // endOfTreatment, open if absent] overlaps (TKB-APA l.164).
    contract(
        "GetMedicationHistory",
        "2",
        "datePeriod",
        false,
        Rule::Interval {
            start: &[
                "medicationMedicalRecordBody/medicationPrescription/prescriber/authorTime",
                "medicationMedicalRecordBody/medicationPrescription/startOfTreatment",
                "medicationMedicalRecordHeader/accountableHealthcareProfessional/authorTime",
            ],
            end: &["medicationMedicalRecordBody/medicationPrescription/endOfTreatment"],
            also: &[],
        },
    ),
    // Vac2: any of documentTime, authorTime, signatureTime, registrationRecord/date within
    // (TKB-APA l.24).
    contract(
        "GetVaccinationHistory",
        "2",
        "timePeriod",
        false,
        Rule::AnyOf(&[
            "vaccinationMedicalRecordHeader/documentTime",
            "vaccinationMedicalRecordHeader/accountableHealthcareProfessional/authorTime",
            "vaccinationMedicalRecordHeader/legalAuthenticator/signatureTime",
            "vaccinationMedicalRecordBody/registrationRecord/date",
        ]),
    ),
    // Img1: the interval formed by authorTime, resultTime and the referral's authorTime
    // overlaps (TKB-ACT l.484): for a lower bound, any of them on or after the limit.
    contract(
        "GetImagingOutcome",
        "1",
        "datePeriod",
        false,
        Rule::AnyOf(&[
            "imagingOutcomeHeader/accountableHealthcareProfessional/authorTime",
            "imagingOutcomeBody/resultTime",
            "imagingOutcomeBody/referral/accountableHealthcareProfessional/authorTime",
        ]),
    ),
    // Ref3: [authorTime, signatureTime] overlaps; a missing signatureTime counts as today,
    // that is an open end (TKB-ACT l.184).
    contract(
        "GetReferralOutcome",
        "3",
        "datePeriod",
        false,
        Rule::Interval {
            start: &["referralOutcomeHeader/accountableHealthcareProfessional/authorTime"],
            end: &["referralOutcomeHeader/legalAuthenticator/signatureTime"],
            also: &[],
        },
    ),
    // CC2: the interval from authorTime and careContactTimePeriod start/end overlaps, an
    // ongoing contact (no end) being open-ended (TKB-LOG l.21, written for v3; v2 assumed
    // the same).
    contract(
        "GetCareContacts",
        "2",
        "timePeriod",
        true,
        Rule::Interval {
            start: &["careContactBody/careContactTimePeriod/start"],
            end: &["careContactBody/careContactTimePeriod/end"],
            also: &["careContactHeader/accountableHealthcareProfessional/authorTime"],
        },
    ),
];

/// The operation names a `contracts` override may use.
pub fn operation_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = CONTRACTS.iter().map(|c| c.operation).collect();
    names.dedup();
    names
}

/// The contract of a call, by its operation and the major version that ends its
/// namespace (`urn:...:GetCareDocumentationResponder:3` → `3`).
pub fn lookup(operation: &str, namespace: &str) -> Option<&'static Contract> {
    let major = namespace.rsplit(':').next()?;
    CONTRACTS
        .iter()
        .find(|c| c.operation == operation && c.major == major)
}

/// `YYYYMMDD` (or the date part of `YYYYMMDDhhmmss`) as a calendar date, if valid.
pub fn parse_date(text: &str) -> Option<Date> {
    let digits = text.get(..8)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: i16 = digits[..4].parse().ok()?;
    let month: i8 = digits[4..6].parse().ok()?;
    let day: i8 = digits[6..8].parse().ok()?;
    Date::new(year, month, day).ok()
}

/// The newest valid date among the record's times at any of `paths`.
fn newest(record: &RecordSummary, paths: &[&str]) -> Option<Date> {
    record
        .times
        .iter()
        .filter(|t| paths.iter().any(|p| t.is(p)))
        .filter_map(|t| t.date().and_then(parse_date))
        .max()
}

/// The time at the first of `paths` the record has (the newest, if it repeats).
fn first_present(record: &RecordSummary, paths: &[&str]) -> Option<Date> {
    paths.iter().find_map(|p| newest(record, &[p]))
}

impl Rule {
    /// Whether `record` reaches on or after `limit` under this rule.
    pub fn judge(&self, record: &RecordSummary, limit: Date) -> Verdict {
        let decisive = match *self {
            Rule::AnyOf(paths) => newest(record, paths),
            Rule::FirstOf(paths) => first_present(record, paths),
            Rule::Interval { start, end, also } => {
                let start = first_present(record, start);
                let end = first_present(record, end);
                let also = newest(record, also);
                if start.is_some() && end.is_none() {
                    return Verdict::Keep;
                }
                [start, end, also].into_iter().flatten().max()
            }
        };
        match decisive {
            None => Verdict::Undated,
            Some(date) if date >= limit => Verdict::Keep,
            Some(_) => Verdict::Drop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use rtp_policy_sdk::testing;

    fn record() -> RecordSummary {
        testing::record(0, "VG", "VE", "20240101000000").without_times()
    }

    const LIMIT: Date = date(2021, 3, 15);

    fn judge(operation: &str, major: &str, record: &RecordSummary) -> Verdict {
        let ns = format!("urn:riv:x:{operation}Responder:{major}");
        lookup(operation, &ns)
            .map(|c| c.rule.judge(record, LIMIT))
            .expect("a known contract")
    }

    #[test]
    fn the_table_covers_the_twelve_contracts_with_their_period_elements() {
        let expected = [
            ("GetCareDocumentation", "2", "timePeriod", true),
            ("GetCareDocumentation", "3", "datePeriod", true),
            ("GetDiagnosis", "2", "timePeriod", true),
            ("GetAlertInformation", "2", "timePeriod", true),
            ("GetFunctionalStatus", "2", "datePeriod", true),
            ("GetLaboratoryOrderOutcome", "3", "timePeriod", false),
            ("GetLaboratoryOrderOutcome", "4", "datePeriod", false),
            ("GetMedicationHistory", "2", "datePeriod", false),
            ("GetVaccinationHistory", "2", "timePeriod", false),
            ("GetImagingOutcome", "1", "datePeriod", false),
            ("GetReferralOutcome", "3", "datePeriod", false),
            ("GetCareContacts", "2", "timePeriod", true),
        ];
        for (operation, major, element, mandatory) in expected {
            let c = lookup(operation, &format!("urn:x:{operation}Responder:{major}"))
                .unwrap_or_else(|| panic!("{operation} {major} missing"));
            assert_eq!(c.period_element, element, "{operation} {major}");
            assert_eq!(c.start_and_end_mandatory, mandatory, "{operation} {major}");
        }
        assert_eq!(operation_names().len(), 10);
        assert!(lookup(
            "GetCareDocumentation",
            "urn:x:GetCareDocumentationResponder:9"
        )
        .is_none());
        assert!(lookup(
            "GetBlocksForPatient",
            "urn:riv:ehr:blocking:GetBlocksForPatientResponder:2"
        )
        .is_none());
    }

    #[test]
    fn dates_parse_from_dates_and_timestamps_and_reject_impossible_days() {
        assert_eq!(parse_date("20240229"), Some(date(2024, 2, 29)));
        assert_eq!(parse_date("20240229235959"), Some(date(2024, 2, 29)));
        assert_eq!(parse_date("20230229"), None);
        assert_eq!(parse_date("2024-02-"), None);
        assert_eq!(parse_date("2024"), None);
    }

    #[test]
    fn care_documentation_2_keeps_a_record_when_any_time_is_recent() {
        let old = record()
            .with_time("careDocumentationHeader/documentTime", "20190101120000")
            .with_time(
                "careDocumentationHeader/accountableHealthcareProfessional/authorTime",
                "20190101120000",
            );
        assert_eq!(judge("GetCareDocumentation", "2", &old), Verdict::Drop);
        let signed_late = old.clone().with_time(
            "careDocumentationHeader/legalAuthenticator/signatureTime",
            "20210315000000",
        );
        assert_eq!(
            judge("GetCareDocumentation", "2", &signed_late),
            Verdict::Keep
        );
        let late_opinion = old.with_time(
            "careDocumentationBody/clinicalDocumentNote/dissentintOpinion/authorTime",
            "20230101000000",
        );
        assert_eq!(
            judge("GetCareDocumentation", "2", &late_opinion),
            Verdict::Keep
        );
    }

    #[test]
    fn care_documentation_3_uses_record_author_signature_and_opinion_not_block_time() {
        let old = record()
            .with_time(
                "header/accessControlHeader/blockComparisonTime",
                "20240101000000",
            )
            .with_time("header/record/timestamp", "20190101120000")
            .with_time("header/author/timestamp", "20190101120000");
        assert_eq!(judge("GetCareDocumentation", "3", &old), Verdict::Drop);
        let signed = old
            .clone()
            .with_time("header/signature/timestamp", "20220101000000");
        assert_eq!(judge("GetCareDocumentation", "3", &signed), Verdict::Keep);
        // A second dissenting opinion, the recent one, counts too.
        let opinions = old
            .with_time("body/dissentingOpinion/authorTime", "20190101000000")
            .with_time("body/dissentingOpinion/authorTime", "20220101000000");
        assert_eq!(judge("GetCareDocumentation", "3", &opinions), Verdict::Keep);
    }

    #[test]
    fn diagnosis_counts_the_diagnosis_time() {
        let r = record()
            .with_time(
                "diagnosisHeader/accountableHealthcareProfessional/authorTime",
                "20190101000000",
            )
            .with_time(
                "diagnosisHeader/legalAuthenticator/signatureTime",
                "20190102000000",
            );
        assert_eq!(judge("GetDiagnosis", "2", &r), Verdict::Drop);
        let r = r.with_time("diagnosisBody/diagnosisTime", "20210315000000");
        assert_eq!(judge("GetDiagnosis", "2", &r), Verdict::Keep);
    }

    #[test]
    fn alert_information_is_an_interval_ended_by_obsolete_time_or_validity_end_or_open() {
        let start = record().with_time(
            "alertInformationBody/validityTimePeriod/start",
            "20100101000000",
        );
        assert_eq!(
            judge("GetAlertInformation", "2", &start),
            Verdict::Keep,
            "open-ended"
        );
        let ended = start.clone().with_time(
            "alertInformationBody/validityTimePeriod/end",
            "20200101000000",
        );
        assert_eq!(judge("GetAlertInformation", "2", &ended), Verdict::Drop);
        let still_valid = start.clone().with_time(
            "alertInformationBody/validityTimePeriod/end",
            "20300101000000",
        );
        assert_eq!(
            judge("GetAlertInformation", "2", &still_valid),
            Verdict::Keep
        );
        // obsoleteTime takes precedence over the validity end.
        let obsoleted =
            still_valid.with_time("alertInformationBody/obsoleteTime", "20200601000000");
        assert_eq!(judge("GetAlertInformation", "2", &obsoleted), Verdict::Drop);
        // Header times alone say nothing about the alert's validity.
        let header_only = record().with_time(
            "alertInformationHeader/accountableHealthcareProfessional/authorTime",
            "20240101000000",
        );
        assert_eq!(
            judge("GetAlertInformation", "2", &header_only),
            Verdict::Undated
        );
    }

    #[test]
    fn functional_status_prefers_document_time_and_falls_back_to_author_time() {
        let author =
            "functionalStatusAssessmentHeader/accountableHealthcareProfessional/authorTime";
        let r = record().with_time(author, "20220101000000");
        assert_eq!(judge("GetFunctionalStatus", "2", &r), Verdict::Keep);
        let r = r.with_time(
            "functionalStatusAssessmentHeader/documentTime",
            "20200101000000",
        );
        assert_eq!(
            judge("GetFunctionalStatus", "2", &r),
            Verdict::Drop,
            "documentTime decides"
        );
    }

    #[test]
    fn laboratory_3_uses_registration_and_analysis_times() {
        let r = record().with_time(
            "laboratoryOrderOutcomeBody/registrationTime",
            "20200101000000",
        );
        assert_eq!(judge("GetLaboratoryOrderOutcome", "3", &r), Verdict::Drop);
        let r = r.with_time(
            "laboratoryOrderOutcomeBody/analysis/analysisTime/start",
            "20210401000000",
        );
        assert_eq!(judge("GetLaboratoryOrderOutcome", "3", &r), Verdict::Keep);
    }

    #[test]
    fn laboratory_4_keeps_an_order_when_any_sample_is_recent() {
        let specimen = "body/groupOfAnalyses/analysis/specimen/timestamp";
        let r = record()
            .with_time("header/record/timestamp", "20240101000000")
            .with_time(specimen, "20200101000000");
        assert_eq!(
            judge("GetLaboratoryOrderOutcome", "4", &r),
            Verdict::Drop,
            "record time is not the sampling time"
        );
        let r = r.with_time(specimen, "20210315080000");
        assert_eq!(judge("GetLaboratoryOrderOutcome", "4", &r), Verdict::Keep);
        let no_specimen = record().with_time(
            "header/accessControlHeader/blockComparisonTime",
            "20220101000000",
        );
        assert_eq!(
            judge("GetLaboratoryOrderOutcome", "4", &no_specimen),
            Verdict::Keep
        );
        // Other timestamps under a specimen (activity time) are not the sampling time.
        let activity = record().with_time(
            "body/groupOfAnalyses/analysis/specimen/activity/time/start",
            "20220101000000",
        );
        assert_eq!(
            judge("GetLaboratoryOrderOutcome", "4", &activity),
            Verdict::Undated
        );
    }

    #[test]
    fn medication_history_is_open_ended_without_end_of_treatment() {
        let prescribed = record().with_time(
            "medicationMedicalRecordBody/medicationPrescription/prescriber/authorTime",
            "20150101000000",
        );
        assert_eq!(
            judge("GetMedicationHistory", "2", &prescribed),
            Verdict::Keep,
            "ongoing treatment"
        );
        let ended = prescribed.clone().with_time(
            "medicationMedicalRecordBody/medicationPrescription/endOfTreatment",
            "20200101000000",
        );
        assert_eq!(judge("GetMedicationHistory", "2", &ended), Verdict::Drop);
        // A newer header authorTime is only a fallback for the start; it does not extend
        // the treatment.
        let ended = ended.with_time(
            "medicationMedicalRecordHeader/accountableHealthcareProfessional/authorTime",
            "20230101000000",
        );
        assert_eq!(judge("GetMedicationHistory", "2", &ended), Verdict::Drop);
        let ends_later = prescribed.with_time(
            "medicationMedicalRecordBody/medicationPrescription/endOfTreatment",
            "20210315000000",
        );
        assert_eq!(
            judge("GetMedicationHistory", "2", &ends_later),
            Verdict::Keep
        );
        let start_of_treatment_only = record().with_time(
            "medicationMedicalRecordBody/medicationPrescription/startOfTreatment",
            "20100101000000",
        );
        assert_eq!(
            judge("GetMedicationHistory", "2", &start_of_treatment_only),
            Verdict::Keep
        );
    }

    #[test]
    fn vaccination_counts_the_registration_date() {
        let r = record().with_time(
            "vaccinationMedicalRecordHeader/accountableHealthcareProfessional/authorTime",
            "20190101000000",
        );
        assert_eq!(judge("GetVaccinationHistory", "2", &r), Verdict::Drop);
        let r = r.with_time(
            "vaccinationMedicalRecordBody/registrationRecord/date",
            "20210315",
        );
        assert_eq!(judge("GetVaccinationHistory", "2", &r), Verdict::Keep);
    }

    #[test]
    fn imaging_counts_result_time_and_referral_author_time() {
        let r = record()
            .with_time(
                "imagingOutcomeHeader/accountableHealthcareProfessional/authorTime",
                "20190101000000",
            )
            .with_time(
                "imagingOutcomeBody/referral/accountableHealthcareProfessional/authorTime",
                "20180101000000",
            );
        assert_eq!(judge("GetImagingOutcome", "1", &r), Verdict::Drop);
        let r = r.with_time("imagingOutcomeBody/resultTime", "20210316000000");
        assert_eq!(judge("GetImagingOutcome", "1", &r), Verdict::Keep);
    }

    #[test]
    fn referral_without_signature_runs_until_today() {
        let authored = record().with_time(
            "referralOutcomeHeader/accountableHealthcareProfessional/authorTime",
            "20150101000000",
        );
        assert_eq!(judge("GetReferralOutcome", "3", &authored), Verdict::Keep);
        let signed = authored.with_time(
            "referralOutcomeHeader/legalAuthenticator/signatureTime",
            "20160101000000",
        );
        assert_eq!(judge("GetReferralOutcome", "3", &signed), Verdict::Drop);
    }

    #[test]
    fn care_contacts_handle_ongoing_contacts_and_late_documentation() {
        let started = record().with_time(
            "careContactBody/careContactTimePeriod/start",
            "20150101000000",
        );
        assert_eq!(
            judge("GetCareContacts", "2", &started),
            Verdict::Keep,
            "ongoing contact"
        );
        let ended = started.clone().with_time(
            "careContactBody/careContactTimePeriod/end",
            "20150301000000",
        );
        assert_eq!(judge("GetCareContacts", "2", &ended), Verdict::Drop);
        let documented_late = ended.with_time(
            "careContactHeader/accountableHealthcareProfessional/authorTime",
            "20220101000000",
        );
        assert_eq!(
            judge("GetCareContacts", "2", &documented_late),
            Verdict::Keep
        );
    }

    #[test]
    fn the_limit_day_itself_is_inside_and_the_day_before_is_outside() {
        let on = record().with_time("diagnosisBody/diagnosisTime", "20210315000000");
        let before = record().with_time("diagnosisBody/diagnosisTime", "20210314235959");
        assert_eq!(judge("GetDiagnosis", "2", &on), Verdict::Keep);
        assert_eq!(judge("GetDiagnosis", "2", &before), Verdict::Drop);
    }

    #[test]
    fn invalid_times_count_as_absent() {
        let r = record().with_time("diagnosisBody/diagnosisTime", "20211345000000");
        assert_eq!(judge("GetDiagnosis", "2", &r), Verdict::Undated);
    }
}
