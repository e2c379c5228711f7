//! The block rules as a pure function: one record, the patient's blocks, the accessing
//! actor and today's date in, a reason to withhold the record (or none) out. Nothing
//! here calls the host, so every rule is unit-tested with plain values.
//!
//! The rules follow CheckBlocks 3's evaluation (TKB ehr:blocking 3.2.2 §7.7), applied
//! per block; a record is withheld as soon as one block holds:
//!
//! 1. a record without owner care provider or care unit is never shown;
//! 2. emergency access (nödöppning) overrides every block;
//! 3. a block holds only where it applies to the record's owner and the actor
//!    (`applies`), does not exclude the record's information type, covers the
//!    record's time (`covers_time`) and is not temporarily revoked for the actor
//!    (`revoked_for`).
//!
//! Where input is malformed (an unreadable date, a record without a readable time),
//! each rule errs on the side of withholding: a blocked record reaching a user is the
//! failure that must never happen; a record withheld by mistake is the lesser harm.

use rtp_policy_sdk::{Block, BlockKind, RecordSummary};

/// A calendar date, `YYYYMMDD` as a number, so that dates compare in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Day(u32);

impl Day {
    /// A day after every day [`Day::parse`] reads: no revoke holds on it.
    pub const LAST: Day = Day(u32::MAX);

    /// Reads a date from `YYYYMMDD`, `YYYYMMDDhhmmss` (the date part) or an ISO date
    /// `YYYY-MM-DD` (with anything after it, as in `xs:dateTime`). Month and day are
    /// range-checked, not checked against the calendar.
    pub fn parse(text: &str) -> Option<Day> {
        let text = text.trim();
        let digits: String = if text.as_bytes().get(4) == Some(&b'-') {
            let (year, month, day) = (text.get(..4)?, text.get(5..7)?, text.get(8..10)?);
            if text.as_bytes().get(7) != Some(&b'-') {
                return None;
            }
            [year, month, day].concat()
        } else {
            text.get(..8)?.to_owned()
        };
        if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let value: u32 = digits.parse().ok()?;
        let (month, day) = (value / 100 % 100, value % 100);
        ((1..=12).contains(&month) && (1..=31).contains(&day)).then_some(Day(value))
    }

    /// From year, month and day; `None` outside the ranges [`Day::parse`] accepts.
    pub fn from_ymd(year: i32, month: i8, day: i8) -> Option<Day> {
        let year = u32::try_from(year).ok().filter(|y| *y <= 9999)?;
        let (month, day) = (u32::try_from(month).ok()?, u32::try_from(day).ok()?);
        ((1..=12).contains(&month) && (1..=31).contains(&day))
            .then_some(Day(year * 10_000 + month * 100 + day))
    }
}

impl std::fmt::Display for Day {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:08}", self.0)
    }
}

/// The accessing user, as a trusted caller asserted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The employee's HSA-id.
    pub employee: String,
    pub care_unit: String,
    pub care_provider: String,
    /// A StoreLog purpose, e.g. `Vård och behandling`.
    pub purpose: String,
    /// Emergency access (nödöppning): blocks are overridden and the access is logged
    /// as `Nödöppning`.
    pub emergency: bool,
}

/// Why a record is withheld from the actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Withheld {
    /// The record names no owner care provider or care unit: never shown.
    MissingOwner,
    /// This block holds for the record and the actor.
    Blocked { block_id: String, kind: BlockKind },
}

/// Whether `record` must be withheld from `actor`, and why.
pub fn is_blocked(
    record: &RecordSummary,
    blocks: &[Block],
    actor: &Actor,
    today: Day,
) -> Option<Withheld> {
    let Some((provider, unit)) = owner(record) else {
        return Some(Withheld::MissingOwner);
    };
    if actor.emergency {
        return None;
    }
    let span = time_span(record);
    blocks
        .iter()
        .find(|block| {
            applies(block, provider, unit, actor)
                && !excludes(block, record)
                && covers_time(block, span)
                && !revoked_for(block, actor, today)
        })
        .map(|block| Withheld::Blocked {
            block_id: block.id.clone(),
            kind: block.kind,
        })
}

/// The record's owner care provider and care unit, both present and non-blank.
pub fn owner(record: &RecordSummary) -> Option<(&str, &str)> {
    Some((
        present(record.care_provider.as_deref())?,
        present(record.care_unit.as_deref())?,
    ))
}

/// An id that is there and not blank, trimmed.
fn present(id: Option<&str>) -> Option<&str> {
    id.map(str::trim).filter(|s| !s.is_empty())
}

/// HSA-ids compare without regard to ASCII case or surrounding blanks.
fn same_id(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// Whether the block covers records of this owner when `actor` reads them.
///
/// - The block must be on the record's care provider and, when it names a care unit,
///   on the record's care unit (an outer block that names a unit covers only that
///   unit's records; an inner block without a unit, which the block service should
///   not have, is taken to cover every unit of its provider).
/// - **Outer** (between care providers): holds for actors of any other care provider,
///   never for the record's own provider.
/// - **Inner** (between care units): holds for every actor except one at the record's
///   own care unit of the record's own provider. That includes other care providers:
///   information a patient has closed to the other units of its own provider is not
///   opened to other providers through sammanhållen journalföring either.
fn applies(block: &Block, provider: &str, unit: &str, actor: &Actor) -> bool {
    if !same_id(&block.care_provider, provider) {
        return false;
    }
    if present(block.care_unit.as_deref()).is_some_and(|u| !same_id(u, unit)) {
        return false;
    }
    let own_provider = same_id(&actor.care_provider, provider);
    match block.kind {
        BlockKind::Outer => !own_provider,
        BlockKind::Inner => !(own_provider && same_id(&actor.care_unit, unit)),
    }
}

/// Whether the block excludes the record's information type (`lak`, `upp`).
fn excludes(block: &Block, record: &RecordSummary) -> bool {
    let Some(kind) = present(record.information_type.as_deref()) else {
        return false;
    };
    block
        .excluded_information_types
        .iter()
        .any(|excluded| excluded.trim().eq_ignore_ascii_case(kind))
}

/// The days the record's information spans: its `blockComparisonTime` when it has a
/// readable one (the time the producer names for block evaluation), otherwise from
/// the earliest to the latest of all its readable times. `None` when it has none.
pub fn time_span(record: &RecordSummary) -> Option<(Day, Day)> {
    if let Some(day) = record
        .time("blockComparisonTime")
        .and_then(|t| Day::parse(&t.value))
    {
        return Some((day, day));
    }
    record
        .times
        .iter()
        .filter_map(|t| Day::parse(&t.value))
        .fold(None, |span, day| match span {
            None => Some((day, day)),
            Some((first, last)) => Some((first.min(day), last.max(day))),
        })
}

/// Whether the block's validity covers the record's span: a block without validity
/// covers everything; otherwise a span inside or partly overlapping
/// `[start_date, end_date]` (both inclusive, either open when absent) is covered and
/// one completely outside is not. An unreadable block date counts as open (the block
/// covers more), and a record without a readable time is covered.
fn covers_time(block: &Block, span: Option<(Day, Day)>) -> bool {
    let start = block.start_date.as_deref().and_then(Day::parse);
    let end = block.end_date.as_deref().and_then(Day::parse);
    let Some((first, last)) = span else {
        return true;
    };
    start.is_none_or(|start| last >= start) && end.is_none_or(|end| first <= end)
}

/// Whether a temporary revoke lifts the block for the actor today: a revoke for the
/// actor's care unit that, if it names an employee, names this one, and whose last day
/// (`end_date`, inclusive) is today or later. A revoke with an unreadable end date
/// lifts nothing.
fn revoked_for(block: &Block, actor: &Actor, today: Day) -> bool {
    block.temporary_revokes.iter().any(|revoke| {
        same_id(&revoke.revoked_for_care_unit, &actor.care_unit)
            && revoke
                .revoked_for_employee
                .as_deref()
                .is_none_or(|employee| same_id(employee, &actor.employee))
            && Day::parse(&revoke.end_date).is_some_and(|end| end >= today)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtp_policy_sdk::testing::record;
    use rtp_policy_sdk::TemporaryRevoke;

    // Two care providers; provider A has care units A1 and A2.
    const A: &str = "SE2321000016-AAAA";
    const A1: &str = "SE2321000016-A001";
    const A2: &str = "SE2321000016-A002";
    const B: &str = "SE2321000016-BBBB";
    const B1: &str = "SE2321000016-B001";
    const EMPLOYEE: &str = "SE2321000016-E001";
    const OTHER_EMPLOYEE: &str = "SE2321000016-E002";

    fn today() -> Day {
        Day::parse("20250615").unwrap()
    }

    fn actor(provider: &str, unit: &str) -> Actor {
        Actor {
            employee: EMPLOYEE.into(),
            care_unit: unit.into(),
            care_provider: provider.into(),
            purpose: "Vård och behandling".into(),
            emergency: false,
        }
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

    fn inner(provider: &str, unit: &str) -> Block {
        Block {
            id: "inner-1".into(),
            kind: BlockKind::Inner,
            care_unit: Some(unit.into()),
            ..outer(provider)
        }
    }

    fn valid(mut block: Block, start: Option<&str>, end: Option<&str>) -> Block {
        block.start_date = start.map(str::to_owned);
        block.end_date = end.map(str::to_owned);
        block
    }

    fn revoke(mut block: Block, unit: &str, employee: Option<&str>, end: &str) -> Block {
        block.temporary_revokes.push(TemporaryRevoke {
            revoked_for_care_unit: unit.into(),
            revoked_for_employee: employee.map(str::to_owned),
            end_date: end.into(),
        });
        block
    }

    fn a1_record(time: &str) -> RecordSummary {
        record(0, A, A1, time)
    }

    /// Whether A1's record dated 2024-01-01 is withheld from `actor` today.
    fn a1_record_for(blocks: &[Block], actor: &Actor) -> Option<Withheld> {
        is_blocked(&a1_record("20240101120000"), blocks, actor, today())
    }

    fn blocked_by(id: &str, kind: BlockKind) -> Option<Withheld> {
        Some(Withheld::Blocked {
            block_id: id.into(),
            kind,
        })
    }

    #[test]
    fn days_parse_from_clinical_and_iso_forms() {
        assert_eq!(Day::parse("20240131"), Some(Day(20240131)));
        assert_eq!(Day::parse("20240131235959"), Some(Day(20240131)));
        assert_eq!(Day::parse("2024-01-31"), Some(Day(20240131)));
        assert_eq!(Day::parse("2024-01-31T10:00:00"), Some(Day(20240131)));
        assert_eq!(Day::parse(" 20240131 "), Some(Day(20240131)));
        for bad in [
            "",
            "2024013",
            "2024-1-31",
            "20241331",
            "20240100",
            "2024013x",
            "yesterday",
        ] {
            assert_eq!(Day::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Day::from_ymd(2025, 6, 5), Some(Day(20250605)));
        assert_eq!(Day::from_ymd(-1, 6, 5), None);
        assert_eq!(Day(20250605).to_string(), "20250605");
    }

    #[test]
    fn without_blocks_nothing_is_withheld() {
        assert_eq!(a1_record_for(&[], &actor(B, B1)), None);
    }

    #[test]
    fn outer_block_hides_records_from_other_care_providers() {
        let blocks = [outer(A)];
        assert_eq!(
            a1_record_for(&blocks, &actor(B, B1)),
            blocked_by("outer-1", BlockKind::Outer)
        );
    }

    #[test]
    fn outer_block_does_not_hide_records_from_their_own_care_provider() {
        let blocks = [outer(A)];
        for unit in [A1, A2] {
            assert_eq!(a1_record_for(&blocks, &actor(A, unit)), None, "{unit}");
        }
    }

    #[test]
    fn outer_block_covers_only_its_own_care_provider() {
        let blocks = [outer(B)];
        assert_eq!(a1_record_for(&blocks, &actor(B, B1)), None);
    }

    #[test]
    fn outer_block_naming_a_care_unit_covers_only_that_units_records() {
        let mut block = outer(A);
        block.care_unit = Some(A2.into());
        let blocks = [block];
        assert_eq!(a1_record_for(&blocks, &actor(B, B1)), None);
        assert_eq!(
            is_blocked(
                &record(0, A, A2, "20240101120000"),
                &blocks,
                &actor(B, B1),
                today()
            ),
            blocked_by("outer-1", BlockKind::Outer)
        );
    }

    #[test]
    fn inner_block_hides_records_from_other_units_of_the_same_provider() {
        let blocks = [inner(A, A1)];
        assert_eq!(
            a1_record_for(&blocks, &actor(A, A2)),
            blocked_by("inner-1", BlockKind::Inner)
        );
    }

    #[test]
    fn inner_block_does_not_hide_records_from_their_own_unit() {
        let blocks = [inner(A, A1)];
        assert_eq!(a1_record_for(&blocks, &actor(A, A1)), None);
    }

    #[test]
    fn inner_block_covers_only_its_own_unit() {
        let blocks = [inner(A, A2)];
        assert_eq!(a1_record_for(&blocks, &actor(A, A2)), None);
    }

    #[test]
    fn inner_block_hides_records_from_other_care_providers_too() {
        let blocks = [inner(A, A1)];
        assert_eq!(
            a1_record_for(&blocks, &actor(B, B1)),
            blocked_by("inner-1", BlockKind::Inner)
        );
    }

    #[test]
    fn inner_block_without_a_unit_covers_every_unit_of_its_provider() {
        let mut block = inner(A, A1);
        block.care_unit = Some("  ".into());
        let blocks = [block];
        assert_eq!(
            a1_record_for(&blocks, &actor(A, A2)),
            blocked_by("inner-1", BlockKind::Inner)
        );
        assert_eq!(a1_record_for(&blocks, &actor(A, A1)), None);
    }

    #[test]
    fn ids_compare_without_case_or_blanks() {
        let blocks = [outer(&A.to_lowercase())];
        let rec = record(0, &format!(" {A} "), A1, "20240101120000");
        assert_eq!(
            is_blocked(&rec, &blocks, &actor(B, B1), today()),
            blocked_by("outer-1", BlockKind::Outer)
        );
        assert_eq!(
            is_blocked(&rec, &blocks, &actor(&A.to_lowercase(), A2), today()),
            None
        );
    }

    #[test]
    fn block_without_validity_covers_every_time_even_none() {
        let blocks = [outer(A)];
        let timeless = a1_record("20240101120000").without_times();
        assert_eq!(
            is_blocked(&timeless, &blocks, &actor(B, B1), today()),
            blocked_by("outer-1", BlockKind::Outer)
        );
    }

    #[test]
    fn record_inside_the_validity_is_blocked() {
        let blocks = [valid(outer(A), Some("20240101"), Some("20241231"))];
        assert!(is_blocked(
            &a1_record("20240601083000"),
            &blocks,
            &actor(B, B1),
            today()
        )
        .is_some());
    }

    #[test]
    fn validity_bounds_are_inclusive() {
        let blocks = [valid(outer(A), Some("20240101"), Some("20241231"))];
        for time in ["20240101000000", "20241231235959", "20240101", "20241231"] {
            assert!(
                is_blocked(&a1_record(time), &blocks, &actor(B, B1), today()).is_some(),
                "{time}"
            );
        }
    }

    #[test]
    fn record_outside_the_validity_is_not_blocked() {
        let blocks = [valid(outer(A), Some("20240101"), Some("20241231"))];
        for time in ["20231231235959", "20250101000000"] {
            assert_eq!(
                is_blocked(&a1_record(time), &blocks, &actor(B, B1), today()),
                None,
                "{time}"
            );
        }
    }

    #[test]
    fn record_partly_overlapping_the_validity_is_blocked() {
        // The record's information spans 2023-12-01 .. 2024-01-15; the block starts in between.
        let blocks = [valid(outer(A), Some("20240101"), Some("20241231"))];
        let rec = a1_record("20231201100000").with_time("body/resultTime", "20240115090000");
        assert!(is_blocked(&rec, &blocks, &actor(B, B1), today()).is_some());
        // And one that spans the block's end.
        let rec = a1_record("20241215100000").with_time("body/resultTime", "20250115090000");
        assert!(is_blocked(&rec, &blocks, &actor(B, B1), today()).is_some());
        // A span enclosing the whole validity overlaps it too.
        let rec = a1_record("20231215100000").with_time("body/resultTime", "20250115090000");
        assert!(is_blocked(&rec, &blocks, &actor(B, B1), today()).is_some());
    }

    #[test]
    fn open_ended_validity() {
        let from = [valid(outer(A), Some("20240101"), None)];
        assert!(is_blocked(&a1_record("20300101120000"), &from, &actor(B, B1), today()).is_some());
        assert!(is_blocked(&a1_record("20231231120000"), &from, &actor(B, B1), today()).is_none());
        let until = [valid(outer(A), None, Some("20240101"))];
        assert!(is_blocked(&a1_record("19990101120000"), &until, &actor(B, B1), today()).is_some());
        assert!(is_blocked(&a1_record("20240102120000"), &until, &actor(B, B1), today()).is_none());
    }

    #[test]
    fn block_that_ended_yesterday_does_not_cover_a_record_from_today() {
        let blocks = [valid(outer(A), Some("20200101"), Some("20250614"))];
        assert_eq!(
            is_blocked(
                &a1_record("20250615081500"),
                &blocks,
                &actor(B, B1),
                today()
            ),
            None
        );
    }

    #[test]
    fn block_comparison_time_decides_over_the_other_times() {
        let blocks = [valid(outer(A), Some("20240101"), Some("20241231"))];
        // Document time inside the validity, comparison time outside: not blocked.
        let rec = a1_record("20240601120000").with_time(
            "header/accessControlHeader/blockComparisonTime",
            "20230601120000",
        );
        assert_eq!(is_blocked(&rec, &blocks, &actor(B, B1), today()), None);
        // And the other way round: blocked.
        let rec = a1_record("20230601120000").with_time(
            "header/accessControlHeader/blockComparisonTime",
            "20240601120000",
        );
        assert!(is_blocked(&rec, &blocks, &actor(B, B1), today()).is_some());
    }

    #[test]
    fn unreadable_block_comparison_time_falls_back_to_the_other_times() {
        let blocks = [valid(outer(A), Some("20240101"), Some("20241231"))];
        let rec = a1_record("20240601120000")
            .with_time("header/accessControlHeader/blockComparisonTime", "unknown");
        assert!(is_blocked(&rec, &blocks, &actor(B, B1), today()).is_some());
    }

    #[test]
    fn record_without_a_readable_time_is_covered_by_a_block_with_validity() {
        let blocks = [valid(outer(A), Some("20240101"), Some("20241231"))];
        let rec = a1_record("not a time");
        assert!(is_blocked(&rec, &blocks, &actor(B, B1), today()).is_some());
        let rec = a1_record("20240101").without_times();
        assert!(is_blocked(&rec, &blocks, &actor(B, B1), today()).is_some());
    }

    #[test]
    fn unreadable_block_dates_count_as_open() {
        let blocks = [valid(outer(A), Some("garbage"), Some("20241231"))];
        assert!(is_blocked(
            &a1_record("19990101120000"),
            &blocks,
            &actor(B, B1),
            today()
        )
        .is_some());
        let blocks = [valid(outer(A), Some("20240101"), Some("garbage"))];
        assert!(is_blocked(
            &a1_record("20300101120000"),
            &blocks,
            &actor(B, B1),
            today()
        )
        .is_some());
    }

    #[test]
    fn excluded_information_types_are_not_blocked() {
        let mut block = outer(A);
        block.excluded_information_types = vec!["lak".into(), "upp".into()];
        let blocks = [block];
        for kind in ["lak", "upp", "LAK"] {
            let rec = a1_record("20240101120000").with_information_type(kind);
            assert_eq!(
                is_blocked(&rec, &blocks, &actor(B, B1), today()),
                None,
                "{kind}"
            );
        }
        for rec in [
            a1_record("20240101120000").with_information_type("voo"),
            a1_record("20240101120000"),
        ] {
            assert!(is_blocked(&rec, &blocks, &actor(B, B1), today()).is_some());
        }
    }

    #[test]
    fn excluding_one_type_leaves_the_other_blocked() {
        let mut block = outer(A);
        block.excluded_information_types = vec!["lak".into()];
        let blocks = [block];
        let upp = a1_record("20240101120000").with_information_type("upp");
        assert!(is_blocked(&upp, &blocks, &actor(B, B1), today()).is_some());
        let lak = a1_record("20240101120000").with_information_type("lak");
        assert_eq!(is_blocked(&lak, &blocks, &actor(B, B1), today()), None);
    }

    #[test]
    fn revoke_ending_tomorrow_or_today_unblocks() {
        for end in ["20250616", "20250615"] {
            let blocks = [revoke(outer(A), B1, None, end)];
            assert_eq!(a1_record_for(&blocks, &actor(B, B1)), None, "{end}");
        }
    }

    #[test]
    fn revoke_that_ended_yesterday_does_not_unblock() {
        let blocks = [revoke(outer(A), B1, None, "20250614")];
        assert!(a1_record_for(&blocks, &actor(B, B1)).is_some());
    }

    #[test]
    fn revoke_for_another_care_unit_does_not_unblock() {
        let blocks = [revoke(outer(A), "SE2321000016-B002", None, "20250616")];
        assert!(a1_record_for(&blocks, &actor(B, B1)).is_some());
    }

    #[test]
    fn revoke_naming_an_employee_unblocks_only_that_employee() {
        let blocks = [revoke(outer(A), B1, Some(EMPLOYEE), "20250616")];
        assert_eq!(a1_record_for(&blocks, &actor(B, B1)), None);
        let colleague = Actor {
            employee: OTHER_EMPLOYEE.into(),
            ..actor(B, B1)
        };
        assert!(a1_record_for(&blocks, &colleague).is_some());
    }

    #[test]
    fn revoke_with_an_unreadable_end_date_does_not_unblock() {
        let blocks = [revoke(outer(A), B1, None, "forever")];
        assert!(a1_record_for(&blocks, &actor(B, B1)).is_some());
    }

    #[test]
    fn revoke_lifts_only_its_own_block() {
        let blocks = [
            revoke(outer(A), B1, None, "20250616"),
            Block {
                id: "outer-2".into(),
                ..outer(A)
            },
        ];
        assert_eq!(
            a1_record_for(&blocks, &actor(B, B1)),
            blocked_by("outer-2", BlockKind::Outer)
        );
    }

    #[test]
    fn revoke_of_an_inner_block_for_another_unit() {
        let blocks = [revoke(inner(A, A1), A2, None, "20250701")];
        assert_eq!(a1_record_for(&blocks, &actor(A, A2)), None);
    }

    #[test]
    fn emergency_overrides_blocks() {
        let blocks = [outer(A), inner(A, A1)];
        let emergency = Actor {
            emergency: true,
            ..actor(B, B1)
        };
        assert_eq!(a1_record_for(&blocks, &emergency), None);
    }

    #[test]
    fn record_lacking_owner_ids_is_withheld_even_in_an_emergency() {
        let emergency = Actor {
            emergency: true,
            ..actor(A, A1)
        };
        let no_provider = RecordSummary {
            care_provider: None,
            ..a1_record("20240101120000")
        };
        let no_unit = RecordSummary {
            care_unit: None,
            ..a1_record("20240101120000")
        };
        let blank_unit = RecordSummary {
            care_unit: Some(" ".into()),
            ..a1_record("20240101120000")
        };
        for rec in [&no_provider, &no_unit, &blank_unit] {
            for who in [&actor(A, A1), &emergency] {
                assert_eq!(
                    is_blocked(rec, &[], who, today()),
                    Some(Withheld::MissingOwner)
                );
            }
        }
    }

    #[test]
    fn time_span_is_the_hull_of_the_record_times() {
        let rec = a1_record("20240301120000")
            .with_time("a/authorTime", "20240101")
            .with_time("b/signatureTime", "20240501083000")
            .with_time("c/bad", "x");
        assert_eq!(time_span(&rec), Some((Day(20240101), Day(20240501))));
        assert_eq!(time_span(&rec.without_times()), None);
    }
}
