//! The policy's settings (JSON), parsed and checked once per load. Every error names
//! the key it is about, so that `rtp-proxy check` tells the operator what to fix.

use serde::Deserialize;
use wildmatch::WildMatch;

/// The purposes a StoreLog entry may carry (TKB ehr:log 1.2.3, `Purpose`).
pub const PURPOSES: [&str; 6] = [
    "Vård och behandling",
    "Kvalitetssäkring",
    "Annan dokumentation enligt lag",
    "Statistik",
    "Administration",
    "Kvalitetsregister",
];

pub const DEFAULT_PURPOSE: &str = "Vård och behandling";

/// Header prefixes the proxy shows policies; a header outside them never reaches us.
const VISIBLE_PREFIXES: [&str; 3] = ["x-rtp-", "x-rivta-", "x-skltp-"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    trusted_actor_assertors: Vec<String>,
    #[serde(default)]
    headers: RawHeaders,
    #[serde(default = "default_purpose")]
    default_purpose: Option<String>,
}

fn default_purpose() -> Option<String> {
    Some(DEFAULT_PURPOSE.to_owned())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawHeaders {
    employee: String,
    care_unit: String,
    care_provider: String,
    purpose: String,
    emergency: String,
}

impl Default for RawHeaders {
    fn default() -> Self {
        let names = HeaderNames::default();
        RawHeaders {
            employee: names.employee,
            care_unit: names.care_unit,
            care_provider: names.care_provider,
            purpose: names.purpose,
            emergency: names.emergency,
        }
    }
}

/// The request headers that carry the actor, lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderNames {
    pub employee: String,
    pub care_unit: String,
    pub care_provider: String,
    pub purpose: String,
    pub emergency: String,
}

impl Default for HeaderNames {
    fn default() -> Self {
        HeaderNames {
            employee: "x-rtp-actor-employee-hsaid".into(),
            care_unit: "x-rtp-actor-careunit-hsaid".into(),
            care_provider: "x-rtp-actor-careprovider-hsaid".into(),
            purpose: "x-rtp-actor-purpose".into(),
            emergency: "x-rtp-actor-emergency".into(),
        }
    }
}

impl HeaderNames {
    /// All five, in a fixed order.
    pub fn all(&self) -> [&str; 5] {
        [
            &self.employee,
            &self.care_unit,
            &self.care_provider,
            &self.purpose,
            &self.emergency,
        ]
    }
}

/// Checked settings.
#[derive(Debug)]
pub struct Settings {
    /// Consumers (HSA-id patterns, `*` and `?` wildcards, any case) trusted to assert
    /// their user.
    pub trusted_actor_assertors: Vec<WildMatch>,
    pub headers: HeaderNames,
    /// The purpose when the request states none; `None`: the purpose header is required.
    pub default_purpose: Option<&'static str>,
}

impl Settings {
    pub fn parse(json: &str) -> Result<Settings, String> {
        let mut deserializer = serde_json::Deserializer::from_str(json);
        let raw: Raw = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                format!("invalid settings: {}", e.inner())
            } else {
                format!("invalid settings: {path}: {}", e.inner())
            }
        })?;
        deserializer
            .end()
            .map_err(|e| format!("invalid settings: {e}"))?;

        if raw.trusted_actor_assertors.is_empty() {
            return Err(
                "invalid settings: trusted_actor_assertors is empty: every call would be \
                 rejected; name the consumers trusted to assert their user"
                    .into(),
            );
        }
        let mut trusted = Vec::with_capacity(raw.trusted_actor_assertors.len());
        for (i, pattern) in raw.trusted_actor_assertors.iter().enumerate() {
            let pattern = pattern.trim();
            if pattern.is_empty() || pattern.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!(
                    "invalid settings: trusted_actor_assertors[{i}]: {pattern:?} is not an HSA-id \
                     pattern (empty or with blanks)"
                ));
            }
            trusted.push(WildMatch::new_case_insensitive(pattern));
        }

        let h = raw.headers;
        let headers = HeaderNames {
            employee: header_name("headers.employee", &h.employee)?,
            care_unit: header_name("headers.care_unit", &h.care_unit)?,
            care_provider: header_name("headers.care_provider", &h.care_provider)?,
            purpose: header_name("headers.purpose", &h.purpose)?,
            emergency: header_name("headers.emergency", &h.emergency)?,
        };
        let names = headers.all();
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                return Err(format!(
                    "invalid settings: headers: {name:?} is named for two actor fields"
                ));
            }
        }

        let default_purpose = match raw.default_purpose {
            None => None,
            Some(purpose) => Some(canonical_purpose(&purpose).ok_or_else(|| {
                format!(
                    "invalid settings: default_purpose: {purpose:?} is not a StoreLog purpose \
                     (one of {})",
                    PURPOSES.join(", ")
                )
            })?),
        };

        Ok(Settings {
            trusted_actor_assertors: trusted,
            headers,
            default_purpose,
        })
    }

    /// Whether the authenticated caller may assert its user.
    pub fn trusts(&self, sender: &str) -> bool {
        let sender = sender.trim();
        !sender.is_empty()
            && self
                .trusted_actor_assertors
                .iter()
                .any(|p| p.matches(sender))
    }
}

/// A header name the proxy shows policies, lower-cased.
fn header_name(key: &str, name: &str) -> Result<String, String> {
    let name = name.trim().to_ascii_lowercase();
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !token {
        return Err(format!(
            "invalid settings: {key}: {name:?} is not a header name"
        ));
    }
    if !VISIBLE_PREFIXES
        .iter()
        .any(|p| name.starts_with(p) && name.len() > p.len())
    {
        return Err(format!(
            "invalid settings: {key}: {name:?} is not shown to policies; the proxy passes only \
             x-rtp-*, x-rivta-* and x-skltp-* headers (use x-rtp-*)"
        ));
    }
    Ok(name)
}

/// The StoreLog purpose `text` names (same letters, any case), in its canonical form.
pub fn canonical_purpose(text: &str) -> Option<&'static str> {
    let text = text.trim().to_lowercase();
    PURPOSES.into_iter().find(|p| p.to_lowercase() == text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        Settings::parse(json).expect_err(json)
    }

    #[test]
    fn minimal_settings_take_the_defaults() {
        let s = Settings::parse(r#"{"trusted_actor_assertors": ["SE2321000016-A12B"]}"#).unwrap();
        assert_eq!(s.headers, HeaderNames::default());
        assert_eq!(s.default_purpose, Some("Vård och behandling"));
        assert!(s.trusts("SE2321000016-A12B"));
        assert!(!s.trusts("SE2321000016-XXXX"));
    }

    #[test]
    fn full_settings() {
        let s = Settings::parse(
            r#"{
                "trusted_actor_assertors": ["SE2321000016-A*", "se5565594230-b???"],
                "headers": {"employee": "X-RTP-User", "purpose": "x-rtp-purpose"},
                "default_purpose": null
            }"#,
        )
        .unwrap();
        assert_eq!(s.headers.employee, "x-rtp-user");
        assert_eq!(s.headers.purpose, "x-rtp-purpose");
        assert_eq!(s.headers.care_unit, "x-rtp-actor-careunit-hsaid");
        assert_eq!(s.default_purpose, None);
        assert!(s.trusts("SE2321000016-A12B"));
        assert!(s.trusts("SE5565594230-B123"));
        assert!(!s.trusts("SE5565594230-B1234"));
        assert!(!s.trusts(""));
    }

    #[test]
    fn default_purpose_is_checked_and_made_canonical() {
        let s = Settings::parse(
            r#"{"trusted_actor_assertors": ["X"], "default_purpose": "kvalitetssäkring"}"#,
        )
        .unwrap();
        assert_eq!(s.default_purpose, Some("Kvalitetssäkring"));
        let e = err(r#"{"trusted_actor_assertors": ["X"], "default_purpose": "Nyfikenhet"}"#);
        assert!(e.contains("default_purpose"), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        for (json, key) in [
            (r#"{}"#, "trusted_actor_assertors"),
            (
                r#"{"trusted_actor_assertors": "X"}"#,
                "trusted_actor_assertors",
            ),
            (
                r#"{"trusted_actor_assertors": []}"#,
                "trusted_actor_assertors",
            ),
            (
                r#"{"trusted_actor_assertors": ["X", " "]}"#,
                "trusted_actor_assertors[1]",
            ),
            (
                r#"{"trusted_actor_assertors": ["X"], "trusted": 1}"#,
                "trusted",
            ),
            (
                r#"{"trusted_actor_assertors": ["X"], "headers": {"user": "x-rtp-u"}}"#,
                "user",
            ),
            (
                r#"{"trusted_actor_assertors": ["X"], "headers": {"employee": 5}}"#,
                "headers.employee",
            ),
            (
                r#"{"trusted_actor_assertors": ["X"], "headers": {"employee": "x-user"}}"#,
                "headers.employee",
            ),
            (
                r#"{"trusted_actor_assertors": ["X"], "headers": {"care_unit": "x-rtp-a b"}}"#,
                "headers.care_unit",
            ),
            (
                r#"{"trusted_actor_assertors": ["X"], "headers": {"emergency": "x-rtp-"}}"#,
                "headers.emergency",
            ),
            (
                r#"{"trusted_actor_assertors": ["X"], "headers": {"purpose": "x-rtp-actor-employee-hsaid"}}"#,
                "headers",
            ),
            (
                r#"{"trusted_actor_assertors": ["X"], "default_purpose": 3}"#,
                "default_purpose",
            ),
        ] {
            let e = err(json);
            assert!(e.starts_with("invalid settings: "), "{e}");
            assert!(e.contains(key), "{json}: {e}");
        }
    }

    #[test]
    fn not_json_is_an_error() {
        assert!(err("").starts_with("invalid settings"));
        assert!(
            err(r#"{"trusted_actor_assertors": ["X"]} trailing"#).starts_with("invalid settings")
        );
    }

    #[test]
    fn purposes_match_in_any_case() {
        assert_eq!(
            canonical_purpose(" VÅRD OCH BEHANDLING "),
            Some("Vård och behandling")
        );
        assert_eq!(canonical_purpose("Statistik"), Some("Statistik"));
        assert_eq!(canonical_purpose("Vard och behandling"), None);
    }
}
