//! A policy for testing the host, not for production: what it does is chosen by its
//! settings, so one component covers every behaviour the host must survive.
//!
//! Settings (JSON): `{"behaviour": "...", "version": "..."}` where behaviour is one of
//! `noop`, `allow`, `reject`, `set-header`, `remove-header`, `set-period`, `drop-even-records`,
//! `trap`, `loop`, `allocate`. `version` comes back as the header edit
//! `x-test-policy-version`; the build stamp (`RTP_TEST_POLICY_STAMP` at build time) as
//! `x-test-policy-build` and as `describe`'s version, so reload tests can tell two
//! builds of this component apart.

use rtp_policy_sdk::*;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    behaviour: Behaviour,
    #[serde(default)]
    version: String,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Behaviour {
    /// Proceed without edits: the cost of a policy that decides nothing.
    Noop,
    Allow,
    Reject,
    SetHeader,
    RemoveHeader,
    SetPeriod,
    DropEvenRecords,
    Trap,
    Loop,
    Allocate,
}

/// Which build of the component this is.
const BUILD: &str = match option_env!("RTP_TEST_POLICY_STAMP") {
    Some(stamp) => stamp,
    None => env!("CARGO_PKG_VERSION"),
};

pub struct TestPolicy {
    settings: Settings,
}

impl Policy for TestPolicy {
    fn describe() -> Metadata {
        Metadata::new("test-policy", BUILD, &[Phase::Request, Phase::Response])
    }

    fn init(settings: &str) -> Result<Self, String> {
        let settings: Settings =
            serde_json::from_str(settings).map_err(|e| format!("invalid settings: {e}"))?;
        Ok(TestPolicy { settings })
    }

    fn on_request(&self, call: &Call) -> RequestAction {
        let version = Edit::SetHeader(Header {
            name: "x-test-policy-version".into(),
            value: self.settings.version.clone(),
        });
        let build = Edit::SetHeader(Header {
            name: "x-test-policy-build".into(),
            value: BUILD.into(),
        });
        match self.settings.behaviour {
            Behaviour::Noop => RequestAction::proceed(),
            Behaviour::Allow | Behaviour::DropEvenRecords => {
                RequestAction::Proceed(vec![version, build])
            }
            Behaviour::Reject => RequestAction::reject("RTP199", "rejected by the test policy"),
            Behaviour::SetHeader => RequestAction::Proceed(vec![
                version,
                Edit::SetHeader(Header {
                    name: "x-rivta-test-policy".into(),
                    value: format!("seen {}", call.operation),
                }),
            ]),
            Behaviour::RemoveHeader => RequestAction::Proceed(vec![
                version,
                Edit::RemoveHeader("x-rivta-remove-me".into()),
            ]),
            Behaviour::SetPeriod => RequestAction::Proceed(vec![
                version,
                Edit::SetPeriod(Period {
                    start: Some("20230101".into()),
                    end: Some("20231231".into()),
                }),
            ]),
            Behaviour::Trap => panic!("the test policy traps on purpose"),
            Behaviour::Loop => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Behaviour::Allocate => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
                }
            }
        }
    }

    fn on_response(&self, _call: &Call, records: &[RecordSummary]) -> ResponseAction {
        match self.settings.behaviour {
            Behaviour::DropEvenRecords => ResponseAction::Drop(
                records
                    .iter()
                    .map(|r| r.index)
                    .filter(|i| i % 2 == 0)
                    .collect(),
            ),
            _ => ResponseAction::KeepAll,
        }
    }
}

export_policy!(TestPolicy);

#[cfg(test)]
mod tests {
    use super::*;
    use rtp_policy_sdk::testing;

    #[test]
    fn settings_choose_the_behaviour() {
        let policy = TestPolicy::init(r#"{"behaviour": "reject"}"#).unwrap();
        let call = testing::call("urn:x:OpResponder:1");
        assert!(matches!(policy.on_request(&call), RequestAction::Reject(f) if f.code == "RTP199"));
        assert!(TestPolicy::init(r#"{"behaviour": "dance"}"#).is_err());
    }

    #[test]
    fn drops_even_records() {
        let policy = TestPolicy::init(r#"{"behaviour": "drop-even-records"}"#).unwrap();
        let records: Vec<_> = (0..4)
            .map(|i| testing::record(i, "VG", "VE", "20240101120000"))
            .collect();
        assert_eq!(
            policy.on_response(&testing::call("urn:x"), &records),
            ResponseAction::Drop(vec![0, 2])
        );
    }
}
