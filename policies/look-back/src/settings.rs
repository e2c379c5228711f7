//! The policy's settings (JSON) and their validation.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::contracts;

/// The longest limit accepted: 100 years.
const MAX_MONTHS: u32 = 1200;

/// How far back a consumer may fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Unlimited,
    Months(u32),
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Unlimited => f.write_str("unlimited"),
            Limit::Months(1) => f.write_str("1 month"),
            Limit::Months(n) => write!(f, "{n} months"),
        }
    }
}

impl Limit {
    /// Parses `"36 months"`, `"3 years"`, `"1 year"`, `"36"` or `"unlimited"`.
    pub fn parse(text: &str) -> Result<Limit, String> {
        let lower = text.trim().to_ascii_lowercase();
        if lower == "unlimited" {
            return Ok(Limit::Unlimited);
        }
        let mut words = lower.split_whitespace();
        let (Some(number), unit, None) = (words.next(), words.next(), words.next()) else {
            return Err(format!(
                "invalid limit {text:?}: expected e.g. \"36 months\", \"3 years\" or \"unlimited\""
            ));
        };
        let n: u32 = number
            .parse()
            .map_err(|_| format!("invalid limit {text:?}: {number:?} is not a whole number"))?;
        let months = match unit {
            None | Some("month" | "months") => Some(n),
            Some("year" | "years") => n.checked_mul(12),
            Some(other) => {
                return Err(format!(
                    "invalid limit {text:?}: unknown unit {other:?}, use months or years"
                ))
            }
        };
        Limit::months(months.unwrap_or(u32::MAX))
            .map_err(|e| format!("invalid limit {text:?}: {e}"))
    }

    fn months(months: u32) -> Result<Limit, String> {
        match months {
            0 => Err("a limit must be at least 1 month (use \"unlimited\" for none)".to_owned()),
            n if n > MAX_MONTHS => Err(format!("a limit may be at most {MAX_MONTHS} months")),
            n => Ok(Limit::Months(n)),
        }
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LimitVisitor;

        impl Visitor<'_> for LimitVisitor {
            type Value = Limit;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a limit: a number of months, \"36 months\", \"3 years\" or \"unlimited\"",
                )
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Limit, E> {
                Limit::months(u32::try_from(v).unwrap_or(u32::MAX)).map_err(E::custom)
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Limit, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom("a limit cannot be negative")),
                }
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Limit, E> {
                Limit::parse(v).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(LimitVisitor)
    }
}

/// What to do with a request that reaches back past the limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Move the period's start up to the limit (inserting a period if there is none).
    #[default]
    Clamp,
    /// Refuse the call with RTP101.
    Reject,
}

/// What to do with a response record that has none of the times its contract's rule
/// looks at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Undated {
    #[default]
    Keep,
    Drop,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    default: Limit,
    #[serde(default)]
    contracts: BTreeMap<String, Limit>,
    #[serde(default)]
    consumers: BTreeMap<String, Limit>,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    undated: Undated,
}

/// Validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub default: Limit,
    /// By operation name (`GetVaccinationHistory`), for every major version.
    pub contracts: BTreeMap<String, Limit>,
    /// By consumer HSA-id, upper-cased.
    pub consumers: BTreeMap<String, Limit>,
    pub mode: Mode,
    pub undated: Undated,
}

/// Where a call's limit came from, for notes and faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Consumer,
    Contract,
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Consumer => "consumer override",
            Source::Contract => "contract override",
            Source::Default => "default",
        })
    }
}

impl Settings {
    /// Parses and validates; errors name the key that failed.
    pub fn parse(json: &str) -> Result<Settings, String> {
        let mut de = serde_json::Deserializer::from_str(json);
        let raw: Raw = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                format!("invalid settings: {}", e.inner())
            } else {
                format!("invalid settings at `{path}`: {}", e.inner())
            }
        })?;
        let known = contracts::operation_names();
        for operation in raw.contracts.keys() {
            if !known.contains(&operation.as_str()) {
                return Err(format!(
                    "invalid settings at `contracts.{operation}`: unknown contract {operation:?}; \
                     expected an operation name, one of {}",
                    known.join(", ")
                ));
            }
        }
        let mut consumers = BTreeMap::new();
        for (consumer, limit) in raw.consumers {
            let key = consumer.trim().to_ascii_uppercase();
            if key.is_empty() {
                return Err("invalid settings at `consumers`: an empty consumer HSA-id".to_owned());
            }
            if consumers.insert(key, limit).is_some() {
                return Err(format!(
                    "invalid settings at `consumers.{consumer}`: the consumer is listed twice"
                ));
            }
        }
        Ok(Settings {
            default: raw.default,
            contracts: raw.contracts,
            consumers,
            mode: raw.mode,
            undated: raw.undated,
        })
    }

    /// The limit for `consumer` calling `operation`: a consumer override wins over a
    /// contract override, which wins over the default.
    pub fn limit_for(&self, consumer: &str, operation: &str) -> (Limit, Source) {
        if let Some(limit) = self.consumers.get(&consumer.trim().to_ascii_uppercase()) {
            return (*limit, Source::Consumer);
        }
        if let Some(limit) = self.contracts.get(operation) {
            return (*limit, Source::Contract);
        }
        (self.default, Source::Default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_in_months_years_numbers_and_unlimited() {
        assert_eq!(Limit::parse("36 months"), Ok(Limit::Months(36)));
        assert_eq!(Limit::parse(" 1 Month "), Ok(Limit::Months(1)));
        assert_eq!(Limit::parse("3 years"), Ok(Limit::Months(36)));
        assert_eq!(Limit::parse("1 year"), Ok(Limit::Months(12)));
        assert_eq!(Limit::parse("18"), Ok(Limit::Months(18)));
        assert_eq!(Limit::parse("Unlimited"), Ok(Limit::Unlimited));
        for bad in [
            "",
            "months",
            "3 moths",
            "3 years ago",
            "-3 months",
            "1.5 years",
            "0 months",
            "101 years",
            "99999999999 years",
        ] {
            assert!(Limit::parse(bad).is_err(), "{bad:?} should not parse");
        }
        assert_eq!(Limit::Months(36).to_string(), "36 months");
        assert_eq!(Limit::Months(1).to_string(), "1 month");
    }

    #[test]
    fn full_settings_parse() {
        let s = Settings::parse(
            r#"{"default": "36 months", "contracts": {"GetVaccinationHistory": "unlimited", "GetDiagnosis": 60},
                "consumers": {"se2321000016-a12b": "12 months"}, "mode": "reject", "undated": "drop"}"#,
        )
        .expect("valid settings");
        assert_eq!(s.default, Limit::Months(36));
        assert_eq!(s.contracts["GetVaccinationHistory"], Limit::Unlimited);
        assert_eq!(s.contracts["GetDiagnosis"], Limit::Months(60));
        assert_eq!(s.consumers["SE2321000016-A12B"], Limit::Months(12));
        assert_eq!(s.mode, Mode::Reject);
        assert_eq!(s.undated, Undated::Drop);
    }

    #[test]
    fn defaults_are_clamp_and_keep() {
        let s = Settings::parse(r#"{"default": 24}"#).expect("valid settings");
        assert_eq!(s.mode, Mode::Clamp);
        assert_eq!(s.undated, Undated::Keep);
        assert!(s.contracts.is_empty() && s.consumers.is_empty());
    }

    #[test]
    fn errors_name_the_bad_key() {
        let err = |json: &str| Settings::parse(json).expect_err(json);
        assert!(err(r#"{}"#).contains("missing field `default`"));
        let e =
            err(r#"{"default": "36 months", "contracts": {"GetVaccinationHistory": "3 moths"}}"#);
        assert!(
            e.contains("contracts.GetVaccinationHistory") && e.contains("3 moths"),
            "{e}"
        );
        let e =
            err(r#"{"default": "36 months", "contracts": {"GetVacinationHistory": "3 years"}}"#);
        assert!(
            e.contains("contracts.GetVacinationHistory") && e.contains("GetVaccinationHistory"),
            "{e}"
        );
        let e = err(r#"{"default": "36 months", "consumers": {"SE1": -1}}"#);
        assert!(e.contains("consumers.SE1") && e.contains("negative"), "{e}");
        let e = err(r#"{"default": "36 months", "mode": "clip"}"#);
        assert!(e.contains("`mode`") && e.contains("clamp"), "{e}");
        let e = err(r#"{"default": "36 months", "undated": "maybe"}"#);
        assert!(e.contains("`undated`"), "{e}");
        let e = err(r#"{"default": "36 months", "defualt": 3}"#);
        assert!(e.contains("unknown field `defualt`"), "{e}");
        let e = err(r#"{"default": true}"#);
        assert!(e.contains("`default`") && e.contains("a limit"), "{e}");
        let e = err(r#"{"default": 0}"#);
        assert!(e.contains("at least 1 month"), "{e}");
        let e = err(r#"{"default": 1, "consumers": {"SE1-A": 2, "se1-a": 3}}"#);
        assert!(e.contains("listed twice"), "{e}");
        assert!(err("not json").starts_with("invalid settings"));
    }

    #[test]
    fn consumer_override_wins_over_contract_override_over_default() {
        let s = Settings::parse(
            r#"{"default": "36 months", "contracts": {"GetDiagnosis": "60 months"},
                "consumers": {"SE2321000016-A12B": "12 months"}}"#,
        )
        .expect("valid settings");
        assert_eq!(
            s.limit_for("SE2321000016-a12b", "GetDiagnosis"),
            (Limit::Months(12), Source::Consumer)
        );
        assert_eq!(
            s.limit_for("SE2321000016-OTHER", "GetDiagnosis"),
            (Limit::Months(60), Source::Contract)
        );
        assert_eq!(
            s.limit_for("SE2321000016-OTHER", "GetCareDocumentation"),
            (Limit::Months(36), Source::Default)
        );
    }
}
