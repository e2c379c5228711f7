//! Caller filtering.
//!
//! Request phase: ordered allow/deny rules over the authenticated consumer, the original
//! consumer (OSC), the contract and the logical address; the first rule that matches
//! decides, `default` when none does; a deny is answered with VP007 naming the rule.
//!
//! Response phase: care-unit restrictions drop the records of listed care units (and
//! care providers) for the consumers they name, so the answer looks as if those units had
//! not been queried (Inera's producer tests 7.1-7.3). See README.md.

use std::collections::BTreeSet;

use rtp_policy_sdk::*;
use serde::Deserialize;

pub use rtp_policy_sdk::pattern::{Pattern, Patterns};

/// The fault code for a denied call: NTjP's "not authorised" code, same meaning.
pub const CODE: &str = "VP007";

/// Decision-log keys.
pub const NOTE_RULE: &str = "caller_filter";
pub const NOTE_RESTRICTIONS: &str = "caller_filter_restrictions";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Deny,
}

/// What a rule or restriction matches; an absent field matches anything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Match {
    /// The authenticated caller (`call.sender`).
    pub consumer: Option<Patterns>,
    /// The original consumer as it will be forwarded (`call.original_consumer`).
    pub osc: Option<Patterns>,
    /// A pattern with `:` is matched against the contract namespace, one without
    /// against the operation name.
    pub contract: Option<Patterns>,
    pub logical_address: Option<Patterns>,
}

impl Match {
    pub fn matches(&self, call: &Call) -> bool {
        let field = |patterns: &Option<Patterns>, value: &str| {
            patterns.as_ref().is_none_or(|p| p.matches(value))
        };
        let contract = self.contract.as_ref().is_none_or(|patterns| {
            patterns.0.iter().any(|p| {
                if p.as_str().contains(':') {
                    p.matches(&call.contract)
                } else {
                    p.matches(&call.operation)
                }
            })
        });
        field(&self.consumer, &call.sender)
            && field(&self.osc, &call.original_consumer)
            && contract
            && field(&self.logical_address, &call.logical_address)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub effect: Effect,
    pub when: Match,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Restriction {
    pub name: String,
    pub when: Match,
    pub care_units: Option<Patterns>,
    pub care_providers: Option<Patterns>,
}

impl Restriction {
    /// Whether a record with this owner is hidden by the restriction. A record without
    /// the owner id a restriction lists is not hidden by it.
    pub fn hides(&self, record: &RecordSummary) -> bool {
        let hit = |patterns: &Option<Patterns>, owner: &Option<String>| match (patterns, owner) {
            (Some(patterns), Some(owner)) => patterns.matches(owner),
            _ => false,
        };
        hit(&self.care_units, &record.care_unit) || hit(&self.care_providers, &record.care_provider)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    effect: Effect,
    consumer: Option<Patterns>,
    osc: Option<Patterns>,
    contract: Option<Patterns>,
    logical_address: Option<Patterns>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRestriction {
    name: String,
    consumer: Option<Patterns>,
    osc: Option<Patterns>,
    contract: Option<Patterns>,
    logical_address: Option<Patterns>,
    care_units: Option<Patterns>,
    care_providers: Option<Patterns>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    default: Effect,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    care_unit_restrictions: Vec<RawRestriction>,
}

/// Validated settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub default: Effect,
    pub rules: Vec<Rule>,
    pub restrictions: Vec<Restriction>,
}

impl Settings {
    /// Parses and validates; errors name the key that failed.
    pub fn parse(json: &str) -> Result<Settings, String> {
        let mut de = serde_json::Deserializer::from_str(json);
        let raw: RawSettings = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                format!("invalid settings: {}", e.inner())
            } else {
                format!("invalid settings at `{path}`: {}", e.inner())
            }
        })?;
        let mut names = BTreeSet::new();
        let mut check_name = |name: &str, at: String| {
            if name.trim().is_empty() {
                return Err(format!(
                    "invalid settings at `{at}.name`: a name is required"
                ));
            }
            if !names.insert(name.to_owned()) {
                return Err(format!(
                    "invalid settings at `{at}.name`: the name {name:?} is used twice"
                ));
            }
            Ok(())
        };
        let mut rules = Vec::new();
        for (i, r) in raw.rules.into_iter().enumerate() {
            check_name(&r.name, format!("rules[{i}]"))?;
            rules.push(Rule {
                name: r.name,
                effect: r.effect,
                when: Match {
                    consumer: r.consumer,
                    osc: r.osc,
                    contract: r.contract,
                    logical_address: r.logical_address,
                },
            });
        }
        let mut restrictions = Vec::new();
        for (i, r) in raw.care_unit_restrictions.into_iter().enumerate() {
            let at = format!("care_unit_restrictions[{i}]");
            check_name(&r.name, at.clone())?;
            if r.care_units.is_none() && r.care_providers.is_none() {
                return Err(format!(
                    "invalid settings at `{at}`: list care_units or care_providers to hide"
                ));
            }
            restrictions.push(Restriction {
                name: r.name,
                when: Match {
                    consumer: r.consumer,
                    osc: r.osc,
                    contract: r.contract,
                    logical_address: r.logical_address,
                },
                care_units: r.care_units,
                care_providers: r.care_providers,
            });
        }
        Ok(Settings {
            default: raw.default,
            rules,
            restrictions,
        })
    }
}

pub struct CallerFilter {
    settings: Settings,
}

fn note(name: &str, value: String) -> Edit {
    Edit::Note(Header {
        name: name.to_owned(),
        value,
    })
}

impl CallerFilter {
    pub fn new(settings: Settings) -> CallerFilter {
        CallerFilter { settings }
    }

    /// The first rule matching `call`, if any.
    pub fn first_match(&self, call: &Call) -> Option<&Rule> {
        self.settings.rules.iter().find(|r| r.when.matches(call))
    }

    /// The care-unit restrictions that apply to `call` (all that match, not the first).
    pub fn restrictions_for<'a>(
        &'a self,
        call: &'a Call,
    ) -> impl Iterator<Item = &'a Restriction> + 'a {
        self.settings
            .restrictions
            .iter()
            .filter(move |r| r.when.matches(call))
    }
}

impl Policy for CallerFilter {
    fn describe() -> Metadata {
        Metadata::new(
            "caller-filter",
            env!("CARGO_PKG_VERSION"),
            &[Phase::Request, Phase::Response],
        )
    }

    fn init(settings: &str) -> Result<Self, String> {
        Settings::parse(settings).map(CallerFilter::new)
    }

    /// Without care-unit restrictions there is nothing to drop: no response phase, so
    /// a route with rules only is not scanned for this policy's sake.
    fn phases(&self) -> Vec<Phase> {
        if self.settings.restrictions.is_empty() {
            vec![Phase::Request]
        } else {
            vec![Phase::Request, Phase::Response]
        }
    }

    fn on_request(&self, call: &Call) -> RequestAction {
        const DENIED: &str = "caller not authorised for this contract and logical address";
        let rule = self.first_match(call);
        let effect = rule.map_or(self.settings.default, |r| r.effect);
        let decided_by = match rule {
            Some(rule) => format!("rule {:?}", rule.name),
            None => "default".to_owned(),
        };
        if effect == Effect::Deny {
            let message = match rule {
                Some(rule) => format!("{DENIED} by regional rule {:?}", rule.name),
                None => format!("{DENIED}: no regional rule allows it (default deny)"),
            };
            return RequestAction::reject(CODE, &message);
        }
        let mut edits = vec![note(NOTE_RULE, format!("allowed by {decided_by}"))];
        let restrictions: Vec<&str> = self
            .restrictions_for(call)
            .map(|r| r.name.as_str())
            .collect();
        if !restrictions.is_empty() {
            edits.push(note(NOTE_RESTRICTIONS, restrictions.join(",")));
        }
        RequestAction::Proceed(edits)
    }

    fn on_response(&self, call: &Call, records: &[RecordSummary]) -> ResponseAction {
        let restrictions: Vec<&Restriction> = self.restrictions_for(call).collect();
        if restrictions.is_empty() {
            return ResponseAction::KeepAll;
        }
        let dropped: Vec<u32> = records
            .iter()
            .filter(|record| restrictions.iter().any(|r| r.hides(record)))
            .map(|record| record.index)
            .collect();
        if dropped.is_empty() {
            return ResponseAction::KeepAll;
        }
        host::log(
            host::Level::Info,
            &format!(
                "care-unit restrictions {}: dropped {} of {} records",
                restrictions
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                dropped.len(),
                records.len()
            ),
        );
        ResponseAction::Drop(dropped)
    }
}

export_policy!(CallerFilter);

#[cfg(test)]
mod tests {
    use super::*;
    use rtp_policy_sdk::testing;

    const CD2: &str =
        "urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:2";
    const CD3: &str =
        "urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:3";
    const LAB4: &str =
        "urn:riv:clinicalprocess:healthcond:actoutcome:GetLaboratoryOrderOutcomeResponder:4";

    fn policy(json: &str) -> CallerFilter {
        CallerFilter::init(json).expect("valid settings")
    }

    fn fault(action: RequestAction) -> Fault {
        match action {
            RequestAction::Reject(f) => f,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    fn allowed_by(action: &RequestAction) -> Option<String> {
        match action {
            RequestAction::Proceed(edits) => edits.iter().find_map(|e| match e {
                Edit::Note(h) if h.name == NOTE_RULE => Some(h.value.clone()),
                _ => None,
            }),
            RequestAction::Reject(_) => None,
        }
    }

    #[test]
    fn describes_both_phases_and_needs_the_response_only_with_restrictions() {
        let meta = CallerFilter::describe();
        assert_eq!(meta.name, "caller-filter");
        assert_eq!(meta.phases, vec![Phase::Request, Phase::Response]);
        let rules_only = CallerFilter::init(r#"{"default": "allow"}"#).unwrap();
        assert_eq!(rules_only.phases(), vec![Phase::Request]);
        let restricted = CallerFilter::init(
            r#"{"default": "allow", "care_unit_restrictions": [{"name": "r", "care_units": ["SE2321000016-15CQ"]}]}"#,
        )
        .unwrap();
        assert_eq!(restricted.phases(), vec![Phase::Request, Phase::Response]);
    }

    #[test]
    fn the_default_decides_when_no_rule_matches() {
        let call = testing::call(CD2);
        let allow = policy(r#"{"default": "allow"}"#);
        assert_eq!(
            allowed_by(&allow.on_request(&call)).as_deref(),
            Some("allowed by default")
        );
        let f = fault(policy(r#"{"default": "deny"}"#).on_request(&call));
        assert_eq!(f.code, "VP007");
        assert!(f.message.contains("default deny"), "{}", f.message);
    }

    #[test]
    fn the_first_matching_rule_decides_and_is_named() {
        let p = policy(
            r#"{"default": "deny", "rules": [
                {"name": "no-lab-for-ehs", "effect": "deny", "consumer": "SE2321000016-E*", "contract": "GetLaboratoryOrderOutcome"},
                {"name": "region-systems", "effect": "allow", "consumer": "SE2321000016-*"},
                {"name": "never-reached", "effect": "deny", "consumer": "SE2321000016-EHS1"}
            ]}"#,
        );
        let ehs = |contract: &str| testing::call(contract).with_sender("SE2321000016-EHS1");
        let f = fault(p.on_request(&ehs(LAB4)));
        assert_eq!(f.code, "VP007");
        assert!(f.message.contains("\"no-lab-for-ehs\""), "{}", f.message);
        assert!(
            !f.message.contains("191212121212"),
            "no patient id in a fault"
        );
        assert_eq!(
            allowed_by(&p.on_request(&ehs(CD2))).as_deref(),
            Some("allowed by rule \"region-systems\"")
        );
        let outsider = testing::call(CD2).with_sender("SE5565594230-X");
        assert!(fault(p.on_request(&outsider))
            .message
            .contains("default deny"));
    }

    #[test]
    fn consumer_and_osc_are_matched_separately() {
        let p = policy(
            r#"{"default": "allow", "rules": [
                {"name": "no-ehs-through-aggregators", "effect": "deny", "consumer": "SE2321000016-AGG*", "osc": "SE2321000016-E*"}
            ]}"#,
        );
        let mut via_aggregator = testing::call(CD2).with_sender("SE2321000016-AGG1");
        via_aggregator.original_consumer = "SE2321000016-EHS1".into();
        assert!(matches!(
            p.on_request(&via_aggregator),
            RequestAction::Reject(_)
        ));
        // The same OSC without the aggregator as sender, or the aggregator on its own.
        let direct = testing::call(CD2).with_sender("SE2321000016-EHS1");
        assert!(matches!(p.on_request(&direct), RequestAction::Proceed(_)));
        let aggregator_alone = testing::call(CD2).with_sender("SE2321000016-AGG1");
        assert!(matches!(
            p.on_request(&aggregator_alone),
            RequestAction::Proceed(_)
        ));
    }

    #[test]
    fn contract_patterns_match_the_operation_or_with_a_colon_the_namespace() {
        let by_operation = policy(
            r#"{"default": "allow", "rules": [{"name": "r", "effect": "deny", "contract": "getcaredocumentation"}]}"#,
        );
        assert!(matches!(
            by_operation.on_request(&testing::call(CD2)),
            RequestAction::Reject(_)
        ));
        assert!(matches!(
            by_operation.on_request(&testing::call(CD3)),
            RequestAction::Reject(_)
        ));
        assert!(matches!(
            by_operation.on_request(&testing::call(LAB4)),
            RequestAction::Proceed(_)
        ));
        let by_namespace = policy(
            r#"{"default": "allow", "rules": [{"name": "r", "effect": "deny", "contract": "urn:riv:clinicalprocess:healthcond:description:*:3"}]}"#,
        );
        assert!(matches!(
            by_namespace.on_request(&testing::call(CD2)),
            RequestAction::Proceed(_)
        ));
        assert!(matches!(
            by_namespace.on_request(&testing::call(CD3)),
            RequestAction::Reject(_)
        ));
        let by_domain = policy(
            r#"{"default": "allow", "rules": [{"name": "r", "effect": "deny", "contract": ["urn:riv:clinicalprocess:healthcond:actoutcome:*", "GetDiagnosis"]}]}"#,
        );
        assert!(matches!(
            by_domain.on_request(&testing::call(LAB4)),
            RequestAction::Reject(_)
        ));
        assert!(matches!(
            by_domain.on_request(&testing::call(CD3)),
            RequestAction::Proceed(_)
        ));
    }

    #[test]
    fn logical_address_wildcards_and_lists() {
        let p = policy(
            r#"{"default": "deny", "rules": [
                {"name": "own-region", "effect": "allow", "logical_address": ["SE2321000016-*", "SE16232100020?"]}
            ]}"#,
        );
        let mut call = testing::call(CD2);
        for (address, allowed) in [
            ("SE2321000016-7P3S", true),
            ("se2321000016-7p3s", true),
            ("SE162321000201", true),
            ("SE1623210002011", false),
            ("SE2321000017-7P3S", false),
        ] {
            call.logical_address = address.into();
            assert_eq!(
                matches!(p.on_request(&call), RequestAction::Proceed(_)),
                allowed,
                "{address}"
            );
        }
    }

    #[test]
    fn a_rule_with_every_field_needs_all_of_them() {
        let p = policy(
            r#"{"default": "deny", "rules": [
                {"name": "narrow", "effect": "allow", "consumer": "SE2321000016-A12B", "osc": "SE2321000016-A12B",
                 "contract": "GetCareDocumentation", "logical_address": "SE2321000016-7P3S"}
            ]}"#,
        );
        let call = testing::call(CD2);
        assert!(matches!(p.on_request(&call), RequestAction::Proceed(_)));
        let mut other_address = call.clone();
        other_address.logical_address = "SE2321000016-OTHER".into();
        assert!(matches!(
            p.on_request(&other_address),
            RequestAction::Reject(_)
        ));
        assert!(matches!(
            p.on_request(&testing::call(LAB4)),
            RequestAction::Reject(_)
        ));
    }

    fn restricted() -> CallerFilter {
        policy(
            r#"{"default": "allow", "care_unit_restrictions": [
                {"name": "ehs-no-psychiatry", "osc": "SE2321000016-E*", "care_units": ["SE2321000016-PSY*"]},
                {"name": "no-private-provider", "consumer": "SE2321000016-EHS2", "care_providers": "SE5565594230"}
            ]}"#,
        )
    }

    fn records() -> Vec<RecordSummary> {
        vec![
            testing::record(0, "SE2321000016-VG", "SE2321000016-PSY1", "20240101120000"),
            testing::record(1, "SE2321000016-VG", "SE2321000016-VC1", "20240101120000"),
            testing::record(2, "SE5565594230", "SE5565594230-VE1", "20240101120000"),
            testing::record(3, "SE2321000016-VG", "se2321000016-psy2", "20240101120000"),
        ]
    }

    #[test]
    fn restricted_units_are_dropped_for_the_consumers_named() {
        let p = restricted();
        let ehs1 = testing::call(CD2).with_sender("SE2321000016-EHS1");
        assert_eq!(
            p.on_response(&ehs1, &records()),
            ResponseAction::Drop(vec![0, 3])
        );
        // Both restrictions apply to EHS2: units and the provider.
        let ehs2 = testing::call(CD2).with_sender("SE2321000016-EHS2");
        assert_eq!(
            p.on_response(&ehs2, &records()),
            ResponseAction::Drop(vec![0, 2, 3])
        );
        // Another consumer sees everything: the answer is independent of them (7.3).
        let other = testing::call(CD2).with_sender("SE2321000016-A12B");
        assert_eq!(p.on_response(&other, &records()), ResponseAction::KeepAll);
        assert_eq!(
            p.on_response(&ehs1, &records()[1..3]),
            ResponseAction::KeepAll,
            "a batch without restricted units"
        );
    }

    #[test]
    fn restrictions_follow_the_original_consumer_through_an_aggregator() {
        let mut call = testing::call(CD2).with_sender("SE2321000016-AGG1");
        call.original_consumer = "SE2321000016-EHS1".into();
        assert_eq!(
            restricted().on_response(&call, &records()),
            ResponseAction::Drop(vec![0, 3])
        );
    }

    #[test]
    fn records_without_the_listed_owner_id_are_kept() {
        let mut unowned = testing::record(0, "P", "U", "20240101120000");
        unowned.care_unit = None;
        unowned.care_provider = None;
        let call = testing::call(CD2).with_sender("SE2321000016-EHS2");
        assert_eq!(
            restricted().on_response(&call, &[unowned]),
            ResponseAction::KeepAll
        );
    }

    #[test]
    fn the_request_notes_the_rule_and_the_restrictions_in_force() {
        let call = testing::call(CD2).with_sender("SE2321000016-EHS2");
        let RequestAction::Proceed(edits) = restricted().on_request(&call) else {
            panic!("expected proceed")
        };
        assert!(edits.contains(&note(NOTE_RULE, "allowed by default".into())));
        assert!(edits.contains(&note(
            NOTE_RESTRICTIONS,
            "ehs-no-psychiatry,no-private-provider".into()
        )));
        let RequestAction::Proceed(edits) = restricted().on_request(&testing::call(CD2)) else {
            panic!("expected proceed")
        };
        assert_eq!(edits.len(), 1, "no restriction note when none applies");
    }

    #[test]
    fn without_restrictions_responses_are_untouched() {
        let p = policy(r#"{"default": "allow"}"#);
        assert_eq!(
            p.on_response(&testing::call(CD2), &records()),
            ResponseAction::KeepAll
        );
    }

    #[test]
    fn settings_errors_name_the_bad_key() {
        let err = |json: &str| {
            CallerFilter::init(json)
                .err()
                .unwrap_or_else(|| panic!("{json} accepted"))
        };
        assert!(err("{}").contains("missing field `default`"));
        let e = err(r#"{"default": "maybe"}"#);
        assert!(e.contains("`default`") && e.contains("allow"), "{e}");
        let e = err(
            r#"{"default": "allow", "rules": [{"name": "a", "effect": "allow"}, {"name": "b", "effect": "permit"}]}"#,
        );
        assert!(e.contains("rules[1].effect"), "{e}");
        let e = err(
            r#"{"default": "allow", "rules": [{"name": "a", "effect": "allow", "sender": "X"}]}"#,
        );
        assert!(
            e.contains("rules[0]") && e.contains("unknown field `sender`"),
            "{e}"
        );
        let e = err(
            r#"{"default": "allow", "rules": [{"name": "a", "effect": "allow", "consumer": []}]}"#,
        );
        assert!(
            e.contains("rules[0].consumer") && e.contains("empty list"),
            "{e}"
        );
        let e = err(r#"{"default": "allow", "rules": [{"effect": "allow"}]}"#);
        assert!(
            e.contains("rules[0]") && e.contains("missing field `name`"),
            "{e}"
        );
        let e = err(r#"{"default": "allow", "rules": [{"name": " ", "effect": "allow"}]}"#);
        assert!(e.contains("rules[0].name"), "{e}");
        let e = err(
            r#"{"default": "allow", "rules": [{"name": "a", "effect": "allow"}, {"name": "a", "effect": "deny"}]}"#,
        );
        assert!(e.contains("rules[1].name") && e.contains("twice"), "{e}");
        let e = err(
            r#"{"default": "allow", "care_unit_restrictions": [{"name": "r", "consumer": "X"}]}"#,
        );
        assert!(
            e.contains("care_unit_restrictions[0]") && e.contains("care_units"),
            "{e}"
        );
        let e = err(
            r#"{"default": "allow", "care_unit_restrictions": [{"name": "r", "care_units": 7}]}"#,
        );
        assert!(e.contains("care_unit_restrictions[0].care_units"), "{e}");
        let e = err(r#"{"default": "allow", "care_unit_restriction": []}"#);
        assert!(e.contains("unknown field `care_unit_restriction`"), "{e}");
    }
}
