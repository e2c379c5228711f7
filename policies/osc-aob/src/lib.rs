//! OSC/AoB propagation, per route.
//!
//! The host already sets `x-rivta-original-serviceconsumer-hsaid` (OSC) from the
//! certificate when a caller sends none, and refuses (VP013) OSC assertions from callers
//! outside its global trusted list. This policy narrows that per route: a caller asserting
//! an OSC, or an `x-rivta-acting-on-behalf-of-hsaid` (AoB), must be trusted for it here;
//! otherwise the value is stripped (OSC reset to the caller's own HSA-id, AoB removed) or
//! the call refused. Every call gets decision-log notes naming the OSC and AoB forwarded
//! and where they came from. See README.md.

use rtp_policy_sdk::*;
use serde::Deserialize;

pub use rtp_policy_sdk::pattern::{Pattern, Patterns};

/// The original service consumer header.
pub const OSC: &str = "x-rivta-original-serviceconsumer-hsaid";
/// The acting-on-behalf-of header (RIV-TA BP 2.1 rule #24).
pub const AOB: &str = "x-rivta-acting-on-behalf-of-hsaid";

/// Refusal of an OSC assertion: NTjP's code, same meaning.
pub const CODE_OSC: &str = "VP013";
/// Refusal of an AoB assertion (no NTjP code exists for it).
pub const CODE_AOB: &str = "RTP102";

/// What to do with a value asserted by a caller not trusted for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Untrusted {
    /// Forward the caller's own identity as OSC, drop the AoB, and go on.
    #[default]
    Strip,
    /// Refuse the call (VP013 for OSC, RTP102 for AoB).
    Reject,
}

/// Validated settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Callers (authenticated sender HSA-ids, patterns) trusted to assert an OSC.
    #[serde(default)]
    pub trusted_osc: Option<Patterns>,
    /// Callers trusted to assert an AoB.
    #[serde(default)]
    pub trusted_aob: Option<Patterns>,
    #[serde(default)]
    pub untrusted: Untrusted,
}

impl Settings {
    /// Parses and validates; errors name the key that failed.
    pub fn parse(json: &str) -> Result<Settings, String> {
        let mut de = serde_json::Deserializer::from_str(json);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                format!("invalid settings: {}", e.inner())
            } else {
                format!("invalid settings at `{path}`: {}", e.inner())
            }
        })
    }
}

fn trusted(list: &Option<Patterns>, sender: &str) -> bool {
    list.as_ref().is_some_and(|p| p.matches(sender))
}

fn note(name: &str, value: &str) -> Edit {
    Edit::Note(Header {
        name: name.to_owned(),
        value: value.to_owned(),
    })
}

pub struct OscAob {
    settings: Settings,
}

impl OscAob {
    pub fn new(settings: Settings) -> OscAob {
        OscAob { settings }
    }
}

impl Policy for OscAob {
    fn describe() -> Metadata {
        Metadata::new("osc-aob", env!("CARGO_PKG_VERSION"), &[Phase::Request])
    }

    fn init(settings: &str) -> Result<Self, String> {
        Settings::parse(settings).map(OscAob::new)
    }

    fn on_request(&self, call: &Call) -> RequestAction {
        let mut edits = Vec::new();
        let sender = call.sender.trim();

        // OSC: the incoming header as the caller sent it.
        let forwarded_osc = if call.original_consumer.trim().is_empty() {
            sender
        } else {
            call.original_consumer.trim()
        };
        let (osc, osc_source) = match call.header(OSC).map(str::trim) {
            None => (forwarded_osc, "certificate"),
            // A blank header is no assertion: replace it with the caller's own id.
            Some("") => {
                edits.push(Edit::SetHeader(Header {
                    name: OSC.to_owned(),
                    value: sender.to_owned(),
                }));
                (sender, "certificate")
            }
            // Naming oneself asserts nothing.
            Some(asserted) if asserted.eq_ignore_ascii_case(sender) => {
                (forwarded_osc, "certificate")
            }
            Some(_) if trusted(&self.settings.trusted_osc, sender) => {
                (forwarded_osc, "trusted-caller")
            }
            Some(_) => match self.settings.untrusted {
                Untrusted::Reject => {
                    return RequestAction::reject(
                        CODE_OSC,
                        &format!("caller is not allowed to set {OSC} on this route"),
                    )
                }
                Untrusted::Strip => {
                    // The host accepts an OSC edit only when it is the authenticated sender.
                    edits.push(Edit::SetHeader(Header {
                        name: OSC.to_owned(),
                        value: sender.to_owned(),
                    }));
                    (sender, "stripped")
                }
            },
        };

        // AoB: the header, or what the host parsed from it.
        let header_present = call.header(AOB).is_some();
        let asserted_aob = call
            .header(AOB)
            .or(call.acting_on_behalf_of.as_deref())
            .map(str::trim)
            .filter(|v| !v.is_empty());
        let (aob, aob_source) = match asserted_aob {
            None => {
                if header_present {
                    // Blank: forward nothing rather than an empty claim.
                    edits.push(Edit::RemoveHeader(AOB.to_owned()));
                }
                ("none", "none")
            }
            Some(value) if trusted(&self.settings.trusted_aob, sender) => (value, "caller"),
            Some(_) => match self.settings.untrusted {
                Untrusted::Reject => {
                    return RequestAction::reject(
                        CODE_AOB,
                        &format!("caller is not allowed to set {AOB} on this route"),
                    )
                }
                Untrusted::Strip => {
                    edits.push(Edit::RemoveHeader(AOB.to_owned()));
                    ("none", "stripped")
                }
            },
        };

        edits.push(note("osc", osc));
        edits.push(note("osc_source", osc_source));
        edits.push(note("aob", aob));
        edits.push(note("aob_source", aob_source));
        RequestAction::Proceed(edits)
    }
}

export_policy!(OscAob);

#[cfg(test)]
mod tests {
    use super::*;
    use rtp_policy_sdk::testing;

    const CD2: &str =
        "urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:2";
    const CALLER: &str = "SE2321000016-A12B";
    const AGGREGATOR: &str = "SE2321000016-AGG1";
    const EHS: &str = "SE2321000016-EHS1";
    const PRINCIPAL: &str = "SE2321000016-UPPDR";

    fn policy(json: &str) -> OscAob {
        OscAob::init(json).expect("valid settings")
    }

    fn trusting(untrusted: &str) -> OscAob {
        policy(&format!(
            r#"{{"trusted_osc": ["SE2321000016-AGG*"], "trusted_aob": ["SE2321000016-AGG*", "SE2321000016-A12B"], "untrusted": "{untrusted}"}}"#
        ))
    }

    /// A call as the host hands it over: `original_consumer` is the asserted OSC when the
    /// caller sent one (the host's global list let it through), else the sender.
    fn call(sender: &str, osc: Option<&str>, aob: Option<&str>) -> Call {
        let mut call = testing::call(CD2).with_sender(sender);
        if let Some(osc) = osc {
            call = call.with_header(OSC, osc);
            call.original_consumer = osc.to_owned();
        }
        if let Some(aob) = aob {
            call = call.with_header(AOB, aob);
            call.acting_on_behalf_of = Some(aob.to_owned());
        }
        call
    }

    fn edits(action: RequestAction) -> Vec<Edit> {
        match action {
            RequestAction::Proceed(edits) => edits,
            RequestAction::Reject(f) => panic!("unexpected rejection {f:?}"),
        }
    }

    fn notes(edits: &[Edit]) -> Vec<(String, String)> {
        edits
            .iter()
            .filter_map(|e| match e {
                Edit::Note(h) => Some((h.name.clone(), h.value.clone())),
                _ => None,
            })
            .collect()
    }

    fn expect_notes(edits: &[Edit], osc: &str, osc_source: &str, aob: &str, aob_source: &str) {
        assert_eq!(
            notes(edits),
            vec![
                ("osc".to_owned(), osc.to_owned()),
                ("osc_source".to_owned(), osc_source.to_owned()),
                ("aob".to_owned(), aob.to_owned()),
                ("aob_source".to_owned(), aob_source.to_owned()),
            ]
        );
    }

    fn changes(edits: &[Edit]) -> Vec<Edit> {
        edits
            .iter()
            .filter(|e| !matches!(e, Edit::Note(_)))
            .cloned()
            .collect()
    }

    fn set_osc(value: &str) -> Edit {
        Edit::SetHeader(Header {
            name: OSC.to_owned(),
            value: value.to_owned(),
        })
    }

    #[test]
    fn describes_the_request_phase() {
        let meta = OscAob::describe();
        assert_eq!(meta.name, "osc-aob");
        assert_eq!(meta.phases, vec![Phase::Request]);
    }

    #[test]
    fn without_headers_the_certificate_is_the_osc() {
        let e = edits(trusting("reject").on_request(&call(CALLER, None, None)));
        assert!(changes(&e).is_empty());
        expect_notes(&e, CALLER, "certificate", "none", "none");
    }

    #[test]
    fn a_caller_naming_itself_asserts_nothing() {
        let e =
            edits(trusting("reject").on_request(&call(CALLER, Some("se2321000016-a12b"), None)));
        assert!(changes(&e).is_empty());
        expect_notes(&e, "se2321000016-a12b", "certificate", "none", "none");
    }

    #[test]
    fn a_trusted_caller_keeps_its_osc() {
        let e = edits(trusting("reject").on_request(&call(AGGREGATOR, Some(EHS), None)));
        assert!(changes(&e).is_empty());
        expect_notes(&e, EHS, "trusted-caller", "none", "none");
    }

    #[test]
    fn a_spoofed_osc_is_stripped_to_the_sender() {
        let e = edits(trusting("strip").on_request(&call(CALLER, Some(EHS), None)));
        assert_eq!(changes(&e), vec![set_osc(CALLER)]);
        expect_notes(&e, CALLER, "stripped", "none", "none");
    }

    #[test]
    fn a_spoofed_osc_is_refused_with_vp013() {
        let RequestAction::Reject(f) =
            trusting("reject").on_request(&call(CALLER, Some(EHS), None))
        else {
            panic!("expected a rejection")
        };
        assert_eq!(f.code, "VP013");
        assert!(f.message.contains(OSC), "{}", f.message);
        assert!(!f.message.contains(EHS) && !f.message.contains("191212121212"));
    }

    #[test]
    fn nobody_is_trusted_by_default_and_strip_is_the_default() {
        let e = edits(policy("{}").on_request(&call(AGGREGATOR, Some(EHS), Some(PRINCIPAL))));
        assert_eq!(
            changes(&e),
            vec![set_osc(AGGREGATOR), Edit::RemoveHeader(AOB.to_owned())]
        );
        expect_notes(&e, AGGREGATOR, "stripped", "none", "stripped");
    }

    #[test]
    fn a_trusted_caller_keeps_its_aob() {
        let e = edits(trusting("reject").on_request(&call(CALLER, None, Some(PRINCIPAL))));
        assert!(changes(&e).is_empty());
        expect_notes(&e, CALLER, "certificate", PRINCIPAL, "caller");
        let e = edits(trusting("reject").on_request(&call(AGGREGATOR, Some(EHS), Some(PRINCIPAL))));
        assert!(changes(&e).is_empty());
        expect_notes(&e, EHS, "trusted-caller", PRINCIPAL, "caller");
    }

    #[test]
    fn an_untrusted_aob_is_removed_or_refused() {
        let untrusted = "SE2321000016-OTHER";
        let e = edits(trusting("strip").on_request(&call(untrusted, None, Some(PRINCIPAL))));
        assert_eq!(changes(&e), vec![Edit::RemoveHeader(AOB.to_owned())]);
        expect_notes(&e, untrusted, "certificate", "none", "stripped");
        let RequestAction::Reject(f) =
            trusting("reject").on_request(&call(untrusted, None, Some(PRINCIPAL)))
        else {
            panic!("expected a rejection")
        };
        assert_eq!(f.code, "RTP102");
        assert!(
            f.message.contains(AOB) && !f.message.contains(PRINCIPAL),
            "{}",
            f.message
        );
    }

    #[test]
    fn trust_for_aob_does_not_give_trust_for_osc() {
        // CALLER is trusted for AoB only.
        let e = edits(trusting("strip").on_request(&call(CALLER, Some(EHS), Some(PRINCIPAL))));
        assert_eq!(changes(&e), vec![set_osc(CALLER)]);
        expect_notes(&e, CALLER, "stripped", PRINCIPAL, "caller");
    }

    #[test]
    fn the_osc_check_comes_first_when_both_are_refused() {
        let p = policy(r#"{"untrusted": "reject"}"#);
        let RequestAction::Reject(f) = p.on_request(&call(CALLER, Some(EHS), Some(PRINCIPAL)))
        else {
            panic!("expected a rejection")
        };
        assert_eq!(f.code, "VP013");
    }

    #[test]
    fn blank_headers_are_not_forwarded() {
        let mut c = call(CALLER, None, None)
            .with_header(OSC, " ")
            .with_header(AOB, "");
        c.original_consumer = CALLER.into();
        let e = edits(policy(r#"{"untrusted": "reject"}"#).on_request(&c));
        assert_eq!(
            changes(&e),
            vec![set_osc(CALLER), Edit::RemoveHeader(AOB.to_owned())]
        );
        expect_notes(&e, CALLER, "certificate", "none", "none");
    }

    #[test]
    fn trusted_patterns_are_case_insensitive_wildcards() {
        let p = policy(r#"{"trusted_osc": "se2321000016-agg?", "untrusted": "reject"}"#);
        assert!(matches!(
            p.on_request(&call(AGGREGATOR, Some(EHS), None)),
            RequestAction::Proceed(_)
        ));
        assert!(matches!(
            p.on_request(&call("SE2321000016-AGG12", Some(EHS), None)),
            RequestAction::Reject(_)
        ));
    }

    #[test]
    fn settings_errors_name_the_bad_key() {
        let err = |json: &str| {
            OscAob::init(json)
                .err()
                .unwrap_or_else(|| panic!("{json} accepted"))
        };
        let e = err(r#"{"untrusted": "drop"}"#);
        assert!(e.contains("`untrusted`") && e.contains("strip"), "{e}");
        let e = err(r#"{"trusted_osc": ["A", ""]}"#);
        assert!(
            e.contains("trusted_osc[1]") && e.contains("empty pattern"),
            "{e}"
        );
        let e = err(r#"{"trusted_aob": []}"#);
        assert!(
            e.contains("`trusted_aob`") && e.contains("empty list"),
            "{e}"
        );
        let e = err(r#"{"trusted": ["A"]}"#);
        assert!(e.contains("unknown field `trusted`"), "{e}");
        assert!(err("nonsense").starts_with("invalid settings"));
    }
}
