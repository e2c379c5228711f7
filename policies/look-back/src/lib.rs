//! Look-back limit: a consumer (or everyone) may fetch at most N months back per NPÖ
//! contract.
//!
//! Request phase: the period's start is clamped up to the limit date (today in
//! Europe/Stockholm minus N months), a period is inserted when the request has none, or,
//! in `reject` mode, the call is refused with RTP101. Response phase: records that lie
//! wholly before the limit date under their contract's time semantics are dropped,
//! because producers may ignore or loosely apply the period. See README.md.

mod contracts;
mod settings;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};
use rtp_policy_sdk::*;

pub use contracts::{lookup, parse_date, Contract, Rule, Verdict, CONTRACTS};
pub use settings::{Limit, Mode, Settings, Source, Undated};

/// The zone whose calendar date is "today" (record times are Swedish local time).
pub const ZONE: &str = "Europe/Stockholm";

/// The fault code for a refused request.
pub const CODE: &str = "RTP101";

/// The decision-log key of the policy's notes.
pub const NOTE: &str = "look_back";

pub struct LookBack {
    settings: Settings,
    zone: TimeZone,
}

impl Policy for LookBack {
    fn describe() -> Metadata {
        Metadata::new(
            "look-back",
            env!("CARGO_PKG_VERSION"),
            &[Phase::Request, Phase::Response],
        )
    }

    fn init(settings: &str) -> Result<Self, String> {
        LookBack::new(Settings::parse(settings)?)
    }

    fn on_request(&self, call: &Call) -> RequestAction {
        self.on_request_at(call, self.today())
    }

    fn on_response(&self, call: &Call, records: &[RecordSummary]) -> ResponseAction {
        self.on_response_at(call, records, self.today())
    }
}

export_policy!(LookBack);

/// The calendar date in `zone` at `millis` since the Unix epoch.
pub fn today_in(zone: &TimeZone, millis: u64) -> Date {
    let millis = i64::try_from(millis).unwrap_or(i64::MAX);
    Timestamp::from_millisecond(millis)
        .unwrap_or(Timestamp::MAX)
        .to_zoned_datetime(zone.clone())
        .date()
}

/// `today` minus `months` calendar months; a day missing in the target month becomes that
/// month's last day (2024-03-31 minus 1 month is 2024-02-29).
pub fn limit_date(today: Date, months: u32) -> Date {
    today.saturating_sub(Span::new().months(months))
}

/// `YYYYMMDD`.
pub fn format_date(date: Date) -> String {
    format!("{:04}{:02}{:02}", date.year(), date.month(), date.day())
}

fn note(value: String) -> Edit {
    Edit::Note(Header {
        name: NOTE.to_owned(),
        value,
    })
}

impl LookBack {
    pub fn new(settings: Settings) -> Result<LookBack, String> {
        let zone = TimeZone::get(ZONE).map_err(|e| format!("time zone {ZONE} unavailable: {e}"))?;
        Ok(LookBack { settings, zone })
    }

    /// Today's date in Sweden, from the host's clock.
    pub fn today(&self) -> Date {
        today_in(&self.zone, host::now_millis())
    }

    /// The contract, limit and limit date that apply to `call`, or `None` when the
    /// policy does not limit it (not an NPÖ contract it knows, or unlimited).
    fn limit(
        &self,
        call: &Call,
        today: Date,
    ) -> Result<(&'static Contract, Limit, Source, Date), String> {
        let Some(contract) = contracts::lookup(&call.operation, &call.contract) else {
            return Err("not one of the NPÖ contracts the policy knows; untouched".to_owned());
        };
        let (limit, source) = self
            .settings
            .limit_for(&call.original_consumer, contract.operation);
        match limit {
            Limit::Unlimited => Err(format!("{}: unlimited ({source})", contract.label())),
            Limit::Months(months) => Ok((contract, limit, source, limit_date(today, months))),
        }
    }

    /// The request decision for a given `today`.
    pub fn on_request_at(&self, call: &Call, today: Date) -> RequestAction {
        let (contract, limit, source, limit_day) = match self.limit(call, today) {
            Ok(found) => found,
            Err(untouched) => return RequestAction::Proceed(vec![note(untouched)]),
        };
        let limit_text = format_date(limit_day);
        let rule = format!(
            "{} may reach back {limit} ({source}), to {limit_text}",
            contract.label()
        );
        let period = call.period.as_ref();
        let start = period.and_then(|p| p.start.as_deref());
        let end = period.and_then(|p| p.end.as_deref());

        // Nothing asked for lies inside the limit: no clamped period could answer it.
        if end.and_then(parse_date).is_some_and(|end| end < limit_day) {
            return RequestAction::reject(
                CODE,
                &format!("look-back limit: {rule}; the requested period ends before that"),
            );
        }
        if start
            .and_then(parse_date)
            .is_some_and(|start| start >= limit_day)
        {
            return RequestAction::Proceed(vec![note(format!("{rule}; requested start inside"))]);
        }
        if self.settings.mode == Mode::Reject {
            let problem = match (period, start) {
                (None, _) => "the request has no period",
                (Some(_), None) => "the requested period has no start",
                (Some(_), Some(_)) => "the requested period starts before that",
            };
            return RequestAction::reject(CODE, &format!("look-back limit: {rule}; {problem}"));
        }
        let new_end = match end {
            Some(end) => Some(end.to_owned()),
            None if contract.start_and_end_mandatory => Some(format_date(today)),
            None => None,
        };
        let what = match (period, start) {
            (None, _) => format!("inserted {}", contract.period_element),
            (Some(_), None) => "start added".to_owned(),
            (Some(_), Some(start)) => format!("start {start} clamped"),
        };
        RequestAction::Proceed(vec![
            Edit::SetPeriod(Period {
                start: Some(limit_text.clone()),
                end: new_end.clone(),
            }),
            note(format!(
                "{rule}; {what}: start {limit_text}, end {}",
                new_end.as_deref().unwrap_or("open")
            )),
        ])
    }

    /// The response decision for a given `today`: each record on its own, so batches
    /// need no memory of earlier ones.
    pub fn on_response_at(
        &self,
        call: &Call,
        records: &[RecordSummary],
        today: Date,
    ) -> ResponseAction {
        let Ok((contract, limit, _, limit_day)) = self.limit(call, today) else {
            return ResponseAction::KeepAll;
        };
        let dropped: Vec<u32> = records
            .iter()
            .filter(|record| match contract.rule.judge(record, limit_day) {
                Verdict::Keep => false,
                Verdict::Drop => true,
                Verdict::Undated => self.settings.undated == Undated::Drop,
            })
            .map(|record| record.index)
            .collect();
        if dropped.is_empty() {
            return ResponseAction::KeepAll;
        }
        host::log(
            host::Level::Info,
            &format!(
                "{}: dropped {} of {} records before {} ({limit})",
                contract.label(),
                dropped.len(),
                records.len(),
                format_date(limit_day)
            ),
        );
        ResponseAction::Drop(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use rtp_policy_sdk::testing;

    const CD2: &str =
        "urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:2";
    const CD3: &str =
        "urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:3";
    const DIA: &str = "urn:riv:clinicalprocess:healthcond:description:GetDiagnosisResponder:2";
    const ALE: &str =
        "urn:riv:clinicalprocess:healthcond:description:GetAlertInformationResponder:2";
    const FUN: &str =
        "urn:riv:clinicalprocess:healthcond:description:GetFunctionalStatusResponder:2";
    const LAB3: &str =
        "urn:riv:clinicalprocess:healthcond:actoutcome:GetLaboratoryOrderOutcomeResponder:3";
    const LAB4: &str =
        "urn:riv:clinicalprocess:healthcond:actoutcome:GetLaboratoryOrderOutcomeResponder:4";
    const MED: &str =
        "urn:riv:clinicalprocess:activityprescription:actoutcome:GetMedicationHistoryResponder:2";
    const VAC: &str =
        "urn:riv:clinicalprocess:activityprescription:actoutcome:GetVaccinationHistoryResponder:2";
    const IMG: &str = "urn:riv:clinicalprocess:healthcond:actoutcome:GetImagingOutcomeResponder:1";
    const REF: &str = "urn:riv:clinicalprocess:healthcond:actoutcome:GetReferralOutcomeResponder:3";
    const CC: &str = "urn:riv:clinicalprocess:logistics:logistics:GetCareContactsResponder:2";

    /// 2024-03-15: with 36 months the limit is 2021-03-15.
    const TODAY: Date = date(2024, 3, 15);

    fn policy(json: &str) -> LookBack {
        LookBack::init(json).expect("valid settings")
    }

    fn clamp36() -> LookBack {
        policy(r#"{"default": "36 months"}"#)
    }

    fn set_period(action: &RequestAction) -> Option<Period> {
        match action {
            RequestAction::Proceed(edits) => edits.iter().find_map(|e| match e {
                Edit::SetPeriod(p) => Some(p.clone()),
                _ => None,
            }),
            RequestAction::Reject(_) => None,
        }
    }

    fn period(start: Option<&str>, end: Option<&str>) -> Option<Period> {
        Some(Period {
            start: start.map(str::to_owned),
            end: end.map(str::to_owned),
        })
    }

    fn fault(action: &RequestAction) -> &Fault {
        match action {
            RequestAction::Reject(f) => f,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn describes_both_phases_and_refuses_bad_settings() {
        let meta = LookBack::describe();
        assert_eq!(meta.name, "look-back");
        assert_eq!(meta.phases, vec![Phase::Request, Phase::Response]);
        assert!(LookBack::init("{}").is_err());
        assert!(LookBack::init(r#"{"default": "forever"}"#).is_err());
    }

    #[test]
    fn limit_dates_clamp_to_month_ends_and_leap_days() {
        assert_eq!(limit_date(date(2024, 2, 29), 12), date(2023, 2, 28));
        assert_eq!(limit_date(date(2024, 2, 29), 48), date(2020, 2, 29));
        assert_eq!(limit_date(date(2024, 3, 31), 1), date(2024, 2, 29));
        assert_eq!(limit_date(date(2023, 3, 31), 1), date(2023, 2, 28));
        assert_eq!(limit_date(date(2024, 5, 31), 1), date(2024, 4, 30));
        assert_eq!(limit_date(date(2025, 2, 28), 12), date(2024, 2, 28));
        assert_eq!(limit_date(date(2024, 1, 15), 1), date(2023, 12, 15));
        assert_eq!(limit_date(date(2024, 3, 15), 36), date(2021, 3, 15));
        assert_eq!(limit_date(date(2024, 3, 15), 1200), date(1924, 3, 15));
    }

    #[test]
    fn today_is_the_swedish_calendar_date() {
        let zone = TimeZone::get(ZONE).expect("bundled tzdb");
        // 2024-03-30T23:30:00Z is 00:30 on the 31st in CET (+01).
        assert_eq!(today_in(&zone, 1_711_841_400_000), date(2024, 3, 31));
        // 2024-06-30T22:30:00Z is 00:30 on 1 July in CEST (+02).
        assert_eq!(today_in(&zone, 1_719_786_600_000), date(2024, 7, 1));
        // 2024-06-30T21:30:00Z is still 30 June in Sweden.
        assert_eq!(today_in(&zone, 1_719_783_000_000), date(2024, 6, 30));
        assert_eq!(format_date(date(2024, 2, 9)), "20240209");
        // The host clock path works natively too.
        let today = clamp36().today();
        assert!(today.year() >= 2024);
    }

    #[test]
    fn an_early_start_is_clamped_and_the_end_kept_for_either_period_element() {
        let p = clamp36();
        for (contract, element) in [(CD2, "timePeriod"), (CD3, "datePeriod")] {
            let call =
                testing::call(contract).with_period(element, Some("20100101"), Some("20240301"));
            let action = p.on_request_at(&call, TODAY);
            assert_eq!(
                set_period(&action),
                period(Some("20210315"), Some("20240301")),
                "{element}"
            );
        }
    }

    #[test]
    fn a_start_inside_the_limit_is_left_alone() {
        let p = clamp36();
        for start in ["20210315", "20230101"] {
            let call = testing::call(DIA).with_period("timePeriod", Some(start), Some("20240301"));
            let action = p.on_request_at(&call, TODAY);
            assert!(matches!(&action, RequestAction::Proceed(_)));
            assert_eq!(set_period(&action), None, "{start}");
        }
    }

    #[test]
    fn a_missing_period_is_inserted_with_an_end_only_where_the_schema_demands_one() {
        let p = clamp36();
        for contract in [CD2, CD3, DIA, ALE, FUN, CC] {
            let action = p.on_request_at(&testing::call(contract), TODAY);
            assert_eq!(
                set_period(&action),
                period(Some("20210315"), Some("20240315")),
                "{contract}"
            );
        }
        for contract in [LAB3, LAB4, MED, VAC, IMG, REF] {
            let action = p.on_request_at(&testing::call(contract), TODAY);
            assert_eq!(
                set_period(&action),
                period(Some("20210315"), None),
                "{contract}"
            );
        }
    }

    #[test]
    fn a_period_without_start_gets_one_and_keeps_its_end() {
        let call = testing::call(LAB4).with_period("datePeriod", None, Some("20231231"));
        let action = clamp36().on_request_at(&call, TODAY);
        assert_eq!(
            set_period(&action),
            period(Some("20210315"), Some("20231231"))
        );
        let call = testing::call(MED).with_period("datePeriod", None, None);
        let action = clamp36().on_request_at(&call, TODAY);
        assert_eq!(set_period(&action), period(Some("20210315"), None));
    }

    #[test]
    fn an_unreadable_start_is_replaced() {
        let call = testing::call(VAC).with_period("timePeriod", Some("2010-01-01"), None);
        let action = clamp36().on_request_at(&call, TODAY);
        assert_eq!(set_period(&action), period(Some("20210315"), None));
    }

    #[test]
    fn a_period_ending_before_the_limit_is_refused_even_when_clamping() {
        let call = testing::call(CD3).with_period("datePeriod", Some("20100101"), Some("20150101"));
        let action = clamp36().on_request_at(&call, TODAY);
        let f = fault(&action);
        assert_eq!(f.code, "RTP101");
        assert!(
            f.message.contains("20210315") && f.message.contains("36 months"),
            "{}",
            f.message
        );
        assert!(f.message.contains("ends before"), "{}", f.message);
        // Ending on the limit day is still inside.
        let call = testing::call(CD3).with_period("datePeriod", Some("20100101"), Some("20210315"));
        assert_eq!(
            set_period(&clamp36().on_request_at(&call, TODAY)),
            period(Some("20210315"), Some("20210315"))
        );
    }

    #[test]
    fn reject_mode_refuses_early_missing_or_startless_periods_without_personal_data() {
        let p = policy(r#"{"default": "36 months", "mode": "reject"}"#);
        let early =
            testing::call(CD2).with_period("timePeriod", Some("20100101"), Some("20240301"));
        let none = testing::call(VAC);
        let startless = testing::call(MED).with_period("datePeriod", None, Some("20240301"));
        for (call, text) in [
            (&early, "starts before"),
            (&none, "no period"),
            (&startless, "no start"),
        ] {
            let action = p.on_request_at(call, TODAY);
            let f = fault(&action);
            assert_eq!(f.code, "RTP101");
            assert!(
                f.message.contains(text) && f.message.contains("20210315"),
                "{}",
                f.message
            );
            assert!(
                !f.message.contains("191212121212"),
                "no patient id in a fault"
            );
        }
        let inside =
            testing::call(CD2).with_period("timePeriod", Some("20220101"), Some("20240301"));
        assert_eq!(
            p.on_request_at(&inside, TODAY),
            RequestAction::Proceed(vec![note(
                "GetCareDocumentation 2 may reach back 36 months (default), to 20210315; requested start inside"
                    .to_owned()
            )])
        );
    }

    #[test]
    fn overrides_by_contract_and_by_original_consumer() {
        let p = policy(
            r#"{"default": "36 months",
                "contracts": {"GetVaccinationHistory": "unlimited", "GetCareDocumentation": "5 years"},
                "consumers": {"SE2321000016-AGGR": "12 months"}}"#,
        );
        let early = |contract: &str| {
            testing::call(contract).with_period("timePeriod", Some("19900101"), None)
        };
        assert_eq!(
            set_period(&p.on_request_at(&early(VAC), TODAY)),
            None,
            "unlimited contract"
        );
        assert_eq!(
            set_period(&p.on_request_at(&early(CD2), TODAY)),
            period(Some("20190315"), Some("20240315")),
            "contract override, both majors (an end is mandatory in a CD period)"
        );
        assert_eq!(
            set_period(&p.on_request_at(&early(CD3), TODAY)),
            period(Some("20190315"), Some("20240315"))
        );
        // The consumer is the original consumer the proxy forwards, which wins over the
        // contract override, even an unlimited one.
        let mut via_aggregator = early(VAC);
        via_aggregator.sender = "SE2321000016-PLATFORM".into();
        via_aggregator.original_consumer = "se2321000016-aggr".into();
        assert_eq!(
            set_period(&p.on_request_at(&via_aggregator, TODAY)),
            period(Some("20230315"), None)
        );
        // The sender alone does not select the consumer override.
        let mut sender_only = early(VAC);
        sender_only.sender = "SE2321000016-AGGR".into();
        sender_only.original_consumer = "SE2321000016-OTHER".into();
        assert_eq!(set_period(&p.on_request_at(&sender_only, TODAY)), None);
    }

    #[test]
    fn unknown_contracts_pass_untouched() {
        let call = testing::call("urn:riv:ehr:blocking:GetBlocksForPatientResponder:2");
        let action = clamp36().on_request_at(&call, TODAY);
        assert!(
            matches!(&action, RequestAction::Proceed(edits) if edits.iter().all(|e| matches!(e, Edit::Note(_))))
        );
        let old = testing::record(0, "VG", "VE", "19900101000000");
        assert_eq!(
            clamp36().on_response_at(&call, &[old], TODAY),
            ResponseAction::KeepAll
        );
        // A major version the policy has no table for is not guessed at either.
        let call = testing::call(
            "urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:4",
        );
        assert_eq!(set_period(&clamp36().on_request_at(&call, TODAY)), None);
    }

    #[test]
    fn clamping_notes_the_decision() {
        let action = clamp36().on_request_at(&testing::call(CD2), TODAY);
        let RequestAction::Proceed(edits) = action else {
            panic!("expected proceed")
        };
        assert!(edits.contains(&note(
            "GetCareDocumentation 2 may reach back 36 months (default), to 20210315; inserted timePeriod: start 20210315, end 20240315"
                .to_owned()
        )));
    }

    fn dia(index: u32, time: &str) -> RecordSummary {
        testing::record(index, "VG", "VE", "20240101000000")
            .without_times()
            .with_time("diagnosisBody/diagnosisTime", time)
    }

    #[test]
    fn old_records_are_dropped_across_batches_by_their_response_index() {
        let p = clamp36();
        let call = testing::call(DIA);
        let first = [
            dia(0, "20240101000000"),
            dia(1, "20190101000000"),
            dia(2, "20210315000000"),
        ];
        assert_eq!(
            p.on_response_at(&call, &first, TODAY),
            ResponseAction::Drop(vec![1])
        );
        let second = [dia(3, "20200101000000"), dia(4, "20230101000000")];
        assert_eq!(
            p.on_response_at(&call, &second, TODAY),
            ResponseAction::Drop(vec![3])
        );
        let recent = [dia(5, "20230101000000")];
        assert_eq!(
            p.on_response_at(&call, &recent, TODAY),
            ResponseAction::KeepAll
        );
    }

    #[test]
    fn undated_records_are_kept_unless_configured_otherwise() {
        let undated = testing::record(0, "VG", "VE", "20240101000000").without_times();
        let call = testing::call(FUN);
        assert_eq!(
            clamp36().on_response_at(&call, std::slice::from_ref(&undated), TODAY),
            ResponseAction::KeepAll
        );
        let strict = policy(r#"{"default": "36 months", "undated": "drop"}"#);
        assert_eq!(
            strict.on_response_at(&call, &[undated], TODAY),
            ResponseAction::Drop(vec![0])
        );
    }

    #[test]
    fn response_filtering_uses_the_consumer_limit_and_skips_unlimited() {
        let p =
            policy(r#"{"default": "unlimited", "consumers": {"SE2321000016-A12B": "12 months"}}"#);
        let call = testing::call(DIA);
        let records = [dia(0, "20230301000000"), dia(1, "20230401000000")];
        assert_eq!(
            p.on_response_at(&call, &records, TODAY),
            ResponseAction::Drop(vec![0])
        );
        let other = call.with_sender("SE2321000016-ZZZZ");
        assert_eq!(
            p.on_response_at(&other, &records, TODAY),
            ResponseAction::KeepAll
        );
    }

    #[test]
    fn every_contract_filters_responses_by_its_own_times() {
        let p = clamp36();
        let old = "20150101000000";
        let new = "20230101000000";
        let r = |time_field: &str, value: &str| {
            testing::record(0, "VG", "VE", new)
                .without_times()
                .with_time(time_field, value)
        };
        let cases: [(&str, &str); 12] = [
            (
                CD2,
                "careDocumentationHeader/accountableHealthcareProfessional/authorTime",
            ),
            (CD3, "header/record/timestamp"),
            (DIA, "diagnosisHeader/legalAuthenticator/signatureTime"),
            (ALE, "alertInformationBody/validityTimePeriod/end"),
            (FUN, "functionalStatusAssessmentHeader/documentTime"),
            (LAB3, "laboratoryOrderOutcomeBody/registrationTime"),
            (LAB4, "body/groupOfAnalyses/analysis/specimen/timestamp"),
            (
                MED,
                "medicationMedicalRecordBody/medicationPrescription/endOfTreatment",
            ),
            (VAC, "vaccinationMedicalRecordBody/registrationRecord/date"),
            (IMG, "imagingOutcomeBody/resultTime"),
            (
                REF,
                "referralOutcomeHeader/legalAuthenticator/signatureTime",
            ),
            (CC, "careContactBody/careContactTimePeriod/end"),
        ];
        for (contract, field) in cases {
            let call = testing::call(contract);
            let value = |t: &str| {
                if field.ends_with("/date") {
                    t[..8].to_owned()
                } else {
                    t.to_owned()
                }
            };
            assert_eq!(
                p.on_response_at(&call, &[r(field, &value(old))], TODAY),
                ResponseAction::Drop(vec![0]),
                "{contract} {field} old"
            );
            assert_eq!(
                p.on_response_at(&call, &[r(field, &value(new))], TODAY),
                ResponseAction::KeepAll,
                "{contract} {field} new"
            );
        }
    }
}
