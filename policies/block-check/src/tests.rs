//! The policy through its `Policy` interface, with the SDK's fakes standing in for the
//! host's block service and access log. The rules themselves are tested in `rules`.

use super::*;
use rtp_policy_sdk::testing::{self, record};

const TRUSTED: &str = "SE2321000016-A12B";
const PATIENT: &str = "191212121212";
// Two care providers; provider A has care units A1 and A2. The actor works at B1.
const A: &str = "SE2321000016-AAAA";
const A1: &str = "SE2321000016-A001";
const A2: &str = "SE2321000016-A002";
const B: &str = "SE2321000016-BBBB";
const B1: &str = "SE2321000016-B001";
const EMPLOYEE: &str = "SE2321000016-E001";

fn policy() -> BlockCheck {
    BlockCheck::init(&format!(r#"{{"trusted_actor_assertors": ["{TRUSTED}"]}}"#)).unwrap()
}

fn today() -> Day {
    Day::parse("20250615").unwrap()
}

fn bare_call() -> Call {
    testing::call("urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:2")
        .with_sender(TRUSTED)
}

/// A call from the trusted consumer for an employee at B1 (provider B).
fn call() -> Call {
    bare_call()
        .with_header("x-rtp-actor-employee-hsaid", EMPLOYEE)
        .with_header("x-rtp-actor-careunit-hsaid", B1)
        .with_header("x-rtp-actor-careprovider-hsaid", B)
}

fn emergency_call() -> Call {
    call().with_header("x-rtp-actor-emergency", "true")
}

fn outer(provider: &str) -> Block {
    Block {
        id: "outer-1".into(),
        kind: BlockKind::Outer,
        care_provider: provider.into(),
        care_unit: None,
        start_date: None,
        end_date: None,
        excluded_information_types: Vec::new(),
        temporary_revokes: Vec::new(),
    }
}

fn owner(provider: &str, unit: &str) -> Owner {
    Owner {
        care_provider: provider.into(),
        care_unit: Some(unit.into()),
    }
}

fn fault_code(action: &ResponseAction) -> &str {
    match action {
        ResponseAction::Replace(fault) => &fault.code,
        other => panic!("expected a fault, got {other:?}"),
    }
}

fn only_entry() -> AccessEntry {
    let mut entries = testing::take_access_entries();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries.remove(0)
}

#[test]
fn describes_itself_with_both_phases() {
    let meta = BlockCheck::describe();
    assert_eq!(meta.name, "block-check");
    assert_eq!(meta.phases, vec![Phase::Request, Phase::Response]);
}

#[test]
fn init_refuses_bad_settings_naming_the_key() {
    let Err(e) = BlockCheck::init("{}") else {
        panic!("settings without trusted_actor_assertors were accepted");
    };
    assert!(e.contains("trusted_actor_assertors"), "{e}");
}

// --- request phase ---

#[test]
fn request_with_a_trusted_actor_proceeds_with_a_decision_note() {
    match policy().on_request(&call()) {
        RequestAction::Proceed(edits) => {
            assert_eq!(edits.len(), 1);
            let Edit::Note(note) = &edits[0] else {
                panic!("{edits:?}")
            };
            assert_eq!(note.name, "block-check");
            assert!(note.value.contains(B1), "{}", note.value);
            assert!(!note.value.contains(PATIENT), "{}", note.value);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn request_from_an_untrusted_caller_asserting_an_actor_is_rejected() {
    let action = policy().on_request(&call().with_sender("SE2321000016-XXXX"));
    let RequestAction::Reject(fault) = action else {
        panic!("{action:?}")
    };
    assert_eq!(fault.code, "RTP111");
    assert!(!fault.message.contains(EMPLOYEE) && !fault.message.contains(PATIENT));
}

#[test]
fn request_without_an_actor_is_rejected() {
    let action = policy().on_request(&bare_call());
    assert!(
        matches!(&action, RequestAction::Reject(f) if f.code == "RTP110"),
        "{action:?}"
    );
}

#[test]
fn request_without_a_patient_is_rejected() {
    let mut call = call();
    call.patient = None;
    let action = policy().on_request(&call);
    let RequestAction::Reject(fault) = action else {
        panic!("{action:?}")
    };
    assert_eq!(fault.code, "RTP110");
    assert!(fault.message.contains("patient"), "{}", fault.message);
}

#[test]
fn request_with_an_unreadable_actor_is_rejected() {
    let action = policy().on_request(&call().with_header("x-rtp-actor-emergency", "maybe"));
    assert!(
        matches!(&action, RequestAction::Reject(f) if f.code == "RTP114"),
        "{action:?}"
    );
}

// --- response phase ---

#[test]
fn blocked_records_are_dropped_and_only_released_owners_are_logged() {
    testing::set_blocks(PATIENT, vec![outer(A)]);
    let records = [
        record(0, A, A1, "20240101120000"),
        record(1, B, B1, "20240101120000"),
        record(2, A, A2, "20240101120000"),
        record(
            3,
            "SE2321000016-CCCC",
            "SE2321000016-C001",
            "20240101120000",
        ),
        record(4, B, B1, "20240201120000"),
    ];
    let action = policy().respond(&call(), &records, today());
    assert_eq!(action, ResponseAction::Drop(vec![0, 2]));
    assert_eq!(
        only_entry(),
        AccessEntry {
            user: EMPLOYEE.into(),
            care_unit: B1.into(),
            care_provider: B.into(),
            activity: "Läsa".into(),
            purpose: "Vård och behandling".into(),
            patient_id: PATIENT.into(),
            owners: vec![
                owner(B, B1),
                owner("SE2321000016-CCCC", "SE2321000016-C001")
            ],
        }
    );
}

#[test]
fn nothing_blocked_keeps_all_and_logs_each_owner_once() {
    testing::set_blocks(PATIENT, vec![outer(B)]);
    let records = [
        record(0, A, A1, "20240101120000"),
        record(1, A, A1, "20240301120000"),
        record(2, A, A2, "20240101120000"),
    ];
    assert_eq!(
        policy().respond(&call(), &records, today()),
        ResponseAction::KeepAll
    );
    assert_eq!(only_entry().owners, vec![owner(A, A1), owner(A, A2)]);
}

#[test]
fn a_call_releasing_nothing_is_logged_with_no_owners() {
    testing::set_blocks(PATIENT, vec![outer(A)]);
    let action = policy().respond(&call(), &[record(7, A, A1, "20240101120000")], today());
    assert_eq!(action, ResponseAction::Drop(vec![7]));
    let entry = only_entry();
    assert!(entry.owners.is_empty());
    assert_eq!(entry.activity, "Läsa");

    assert_eq!(
        policy().respond(&call(), &[], today()),
        ResponseAction::KeepAll
    );
    assert!(only_entry().owners.is_empty());
}

#[test]
fn records_without_owner_ids_are_dropped_and_not_logged() {
    testing::set_blocks(PATIENT, Vec::new());
    let records = [
        RecordSummary {
            care_provider: None,
            ..record(0, A, A1, "20240101120000")
        },
        RecordSummary {
            care_unit: None,
            ..record(1, A, A1, "20240101120000")
        },
        record(2, A, A1, "20240101120000"),
    ];
    assert_eq!(
        policy().respond(&call(), &records, today()),
        ResponseAction::Drop(vec![0, 1])
    );
    assert_eq!(only_entry().owners, vec![owner(A, A1)]);
}

#[test]
fn emergency_releases_blocked_records_and_is_logged_as_nodoppning() {
    testing::set_blocks(PATIENT, vec![outer(A)]);
    let records = [
        record(0, A, A1, "20240101120000"),
        RecordSummary {
            care_unit: None,
            ..record(1, A, A1, "20240101120000")
        },
    ];
    assert_eq!(
        policy().respond(&emergency_call(), &records, today()),
        ResponseAction::Drop(vec![1]),
        "the blocked record is released, the one without owner ids is not"
    );
    let entry = only_entry();
    assert_eq!(entry.activity, "Nödöppning");
    assert_eq!(entry.owners, vec![owner(A, A1)]);
}

#[test]
fn emergency_access_does_not_depend_on_the_block_service() {
    testing::set_block_service_down(PATIENT);
    let records = [record(0, A, A1, "20240101120000")];
    assert_eq!(
        policy().respond(&emergency_call(), &records, today()),
        ResponseAction::KeepAll
    );
    assert_eq!(only_entry().activity, "Nödöppning");
}

#[test]
fn block_service_down_replaces_the_response_and_logs_nothing() {
    testing::set_block_service_down(PATIENT);
    let action = policy().respond(&call(), &[record(0, B, B1, "20240101120000")], today());
    assert_eq!(fault_code(&action), "RTP112");
    let ResponseAction::Replace(fault) = &action else {
        unreachable!()
    };
    assert!(!fault.message.contains(PATIENT));
    assert!(testing::take_access_entries().is_empty());
}

#[test]
fn block_service_is_not_needed_when_no_record_could_be_released() {
    testing::set_block_service_down(PATIENT);
    let unowned = RecordSummary {
        care_provider: None,
        ..record(0, A, A1, "20240101120000")
    };
    assert_eq!(
        policy().respond(&call(), &[unowned], today()),
        ResponseAction::Drop(vec![0])
    );
    assert!(only_entry().owners.is_empty());
}

#[test]
fn access_log_failing_replaces_the_response() {
    testing::set_blocks(PATIENT, Vec::new());
    testing::set_access_log_failing();
    let action = policy().respond(&call(), &[record(0, A, A1, "20240101120000")], today());
    assert_eq!(fault_code(&action), "RTP113");
    // Even a batch that releases nothing is refused: the access itself goes unlogged.
    let action = policy().respond(&call(), &[], today());
    assert_eq!(fault_code(&action), "RTP113");
}

#[test]
fn response_phase_checks_the_actor_again() {
    let records = [record(0, A, A1, "20240101120000")];
    let untrusted = call().with_sender("SE2321000016-XXXX");
    assert_eq!(
        fault_code(&policy().respond(&untrusted, &records, today())),
        "RTP111"
    );
    assert_eq!(
        fault_code(&policy().respond(&bare_call(), &records, today())),
        "RTP110"
    );
    let mut no_patient = call();
    no_patient.patient = None;
    assert_eq!(
        fault_code(&policy().respond(&no_patient, &records, today())),
        "RTP110"
    );
    assert!(testing::take_access_entries().is_empty());
}

#[test]
fn each_batch_is_decided_and_logged_on_its_own() {
    testing::set_blocks(PATIENT, vec![outer(A)]);
    let p = policy();
    let first = [
        record(0, B, B1, "20240101120000"),
        record(1, A, A1, "20240101120000"),
    ];
    let second = [
        record(2, A, A2, "20240101120000"),
        record(
            3,
            "SE2321000016-CCCC",
            "SE2321000016-C001",
            "20240101120000",
        ),
    ];
    assert_eq!(
        p.respond(&call(), &first, today()),
        ResponseAction::Drop(vec![1])
    );
    assert_eq!(
        p.respond(&call(), &second, today()),
        ResponseAction::Drop(vec![2])
    );
    let entries = testing::take_access_entries();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].owners, vec![owner(B, B1)]);
    assert_eq!(
        entries[1].owners,
        vec![owner("SE2321000016-CCCC", "SE2321000016-C001")]
    );
}

#[test]
fn purpose_from_the_request_is_logged() {
    testing::set_blocks(PATIENT, Vec::new());
    let call = call().with_header("x-rtp-actor-purpose", "Kvalitetss%C3%A4kring");
    policy().respond(&call, &[], today());
    assert_eq!(only_entry().purpose, "Kvalitetssäkring");
}

#[test]
fn temporary_revoke_is_judged_against_the_given_day() {
    let mut block = outer(A);
    block.temporary_revokes.push(TemporaryRevoke {
        revoked_for_care_unit: B1.into(),
        revoked_for_employee: Some(EMPLOYEE.into()),
        end_date: "20250616".into(),
    });
    testing::set_blocks(PATIENT, vec![block]);
    let records = [record(0, A, A1, "20240101120000")];
    let p = policy();
    assert_eq!(
        p.respond(&call(), &records, today()),
        ResponseAction::KeepAll
    );
    let after = Day::parse("20250617").unwrap();
    assert_eq!(
        p.respond(&call(), &records, after),
        ResponseAction::Drop(vec![0])
    );
    assert_eq!(
        testing::take_access_entries()
            .iter()
            .map(|e| e.owners.len())
            .collect::<Vec<_>>(),
        vec![1, 0]
    );
}

#[test]
fn on_response_uses_todays_date() {
    testing::set_blocks(PATIENT, vec![outer(A)]);
    let records = [record(0, A, A1, "20240101120000")];
    assert_eq!(
        policy().on_response(&call(), &records),
        ResponseAction::Drop(vec![0])
    );
    assert!(only_entry().owners.is_empty());
}

#[test]
fn today_is_the_swedish_calendar_date() {
    let p = policy();
    // 2025-06-14 22:30 UTC is already 00:30 on the 15th in Stockholm (CEST, +2).
    assert_eq!(p.day_at(1_749_940_200_000), Day::parse("20250615").unwrap());
    // 2025-01-14 22:30 UTC is 23:30 on the 14th (CET, +1).
    assert_eq!(p.day_at(1_736_893_800_000), Day::parse("20250114").unwrap());
    // 2025-01-14 23:30 UTC is 00:30 on the 15th.
    assert_eq!(p.day_at(1_736_897_400_000), Day::parse("20250115").unwrap());
    // A clock beyond any date: no revoke may hold.
    assert_eq!(p.day_at(u64::MAX), Day::LAST);
    let now = p.today();
    assert!(now > Day::parse("20250101").unwrap() && now < Day::LAST);
}
