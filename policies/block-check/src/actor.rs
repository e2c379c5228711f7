//! The accessing actor, from the request headers of a caller trusted to assert it.

use rtp_policy_sdk::{Call, Fault};

use crate::rules::Actor;
use crate::settings::{canonical_purpose, Settings, PURPOSES};

/// The request names no actor (or no patient): there is nothing to check blocks for.
pub const MISSING_ACTOR: &str = "RTP110";
/// The caller sent actor headers but is not trusted to assert its user.
pub const UNTRUSTED_ASSERTOR: &str = "RTP111";
/// An actor header is present but unreadable.
pub const INVALID_ACTOR: &str = "RTP114";

fn fault(code: &str, message: String) -> Fault {
    Fault {
        code: code.to_owned(),
        message,
    }
}

/// The actor a call asserts, or the fault to answer. Faults name headers and rules,
/// never a value.
pub fn actor_of(call: &Call, settings: &Settings) -> Result<Actor, Fault> {
    let names = &settings.headers;
    let asserted = names
        .all()
        .into_iter()
        .any(|name| call.header(name).is_some());
    if !settings.trusts(&call.sender) {
        return Err(if asserted {
            fault(
                UNTRUSTED_ASSERTOR,
                "the caller is not trusted to assert the accessing user (block check)".into(),
            )
        } else {
            fault(
                MISSING_ACTOR,
                "the block check needs the accessing user, and the caller is not trusted to \
                 assert one"
                    .into(),
            )
        });
    }

    let mut missing = Vec::new();
    let mut id = |name: &str| -> Result<String, Fault> {
        match call.header(name).map(str::trim) {
            None | Some("") => {
                missing.push(name.to_owned());
                Ok(String::new())
            }
            Some(value) if is_hsa_id(value) => Ok(value.to_owned()),
            Some(_) => Err(fault(
                INVALID_ACTOR,
                format!("header {name} is not an HSA-id"),
            )),
        }
    };
    let employee = id(&names.employee)?;
    let care_unit = id(&names.care_unit)?;
    let care_provider = id(&names.care_provider)?;

    let purpose = match call.header(&names.purpose).map(str::trim) {
        None | Some("") => match settings.default_purpose {
            Some(purpose) => purpose.to_owned(),
            None => {
                missing.push(names.purpose.clone());
                String::new()
            }
        },
        Some(value) => percent_decode(value)
            .as_deref()
            .and_then(canonical_purpose)
            .ok_or_else(|| {
                fault(
                    INVALID_ACTOR,
                    format!(
                        "header {} is not a StoreLog purpose (one of {}; percent-encode \
                         non-ASCII letters as UTF-8)",
                        names.purpose,
                        PURPOSES.join(", ")
                    ),
                )
            })?
            .to_owned(),
    };

    let emergency = match call.header(&names.emergency).map(str::trim) {
        None | Some("") => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(_) => {
            return Err(fault(
                INVALID_ACTOR,
                format!("header {} must be true or false", names.emergency),
            ))
        }
    };

    if !missing.is_empty() {
        return Err(fault(
            MISSING_ACTOR,
            format!(
                "the block check needs the accessing user: missing header {}",
                missing.join(", ")
            ),
        ));
    }
    Ok(Actor {
        employee,
        care_unit,
        care_provider,
        purpose,
        emergency,
    })
}

/// The patient the call is about, or the fault to answer.
pub fn patient_of(call: &Call) -> Result<&str, Fault> {
    call.patient
        .as_ref()
        .map(|p| p.id.trim())
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            fault(
                MISSING_ACTOR,
                "the block check needs the patient, and the request names none".into(),
            )
        })
}

/// An HSA-id as it may appear in a header: letters, digits and `-`, at most 64.
fn is_hsa_id(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Decodes `%XX` escapes as UTF-8 (the proxy passes only ASCII header values, so
/// `Kvalitetss%C3%A4kring` is how `Kvalitetssäkring` arrives). `None` for a broken
/// escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    if !text.contains('%') {
        return Some(text.to_owned());
    }
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = tail
                .get(..2)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
            bytes.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtp_policy_sdk::testing;

    const TRUSTED: &str = "SE2321000016-A12B";

    fn settings(extra: &str) -> Settings {
        Settings::parse(&format!(
            r#"{{"trusted_actor_assertors": ["{TRUSTED}"]{extra}}}"#
        ))
        .unwrap()
    }

    fn with_actor(call: Call) -> Call {
        call.with_header("x-rtp-actor-employee-hsaid", "SE2321000016-E001")
            .with_header("x-rtp-actor-careunit-hsaid", "SE2321000016-U001")
            .with_header("x-rtp-actor-careprovider-hsaid", "SE2321000016-P001")
    }

    fn call() -> Call {
        testing::call(
            "urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:2",
        )
        .with_sender(TRUSTED)
    }

    fn code(result: Result<Actor, Fault>) -> String {
        result.expect_err("a fault").code
    }

    #[test]
    fn trusted_caller_asserts_an_actor_with_the_default_purpose() {
        let actor = actor_of(&with_actor(call()), &settings("")).unwrap();
        assert_eq!(
            actor,
            Actor {
                employee: "SE2321000016-E001".into(),
                care_unit: "SE2321000016-U001".into(),
                care_provider: "SE2321000016-P001".into(),
                purpose: "Vård och behandling".into(),
                emergency: false,
            }
        );
    }

    #[test]
    fn purpose_and_emergency_from_headers() {
        let call = with_actor(call())
            .with_header("x-rtp-actor-purpose", "Kvalitetss%C3%A4kring")
            .with_header("x-rtp-actor-emergency", "TRUE");
        let actor = actor_of(&call, &settings("")).unwrap();
        assert_eq!(actor.purpose, "Kvalitetssäkring");
        assert!(actor.emergency);
        let call = with_actor(self::call())
            .with_header("x-rtp-actor-purpose", "statistik")
            .with_header("x-rtp-actor-emergency", "false");
        let actor = actor_of(&call, &settings("")).unwrap();
        assert_eq!(actor.purpose, "Statistik");
        assert!(!actor.emergency);
    }

    #[test]
    fn untrusted_caller_asserting_an_actor_is_refused() {
        let call = with_actor(call()).with_sender("SE2321000016-XXXX");
        assert_eq!(code(actor_of(&call, &settings(""))), UNTRUSTED_ASSERTOR);
        // Any one actor header is an assertion.
        let call = self::call()
            .with_sender("SE2321000016-XXXX")
            .with_header("x-rtp-actor-emergency", "true");
        assert_eq!(code(actor_of(&call, &settings(""))), UNTRUSTED_ASSERTOR);
    }

    #[test]
    fn untrusted_caller_without_an_actor_has_no_actor() {
        let call = call().with_sender("SE2321000016-XXXX");
        assert_eq!(code(actor_of(&call, &settings(""))), MISSING_ACTOR);
    }

    #[test]
    fn missing_actor_headers_are_named() {
        let f = actor_of(&call(), &settings("")).unwrap_err();
        assert_eq!(f.code, MISSING_ACTOR);
        assert!(
            f.message.contains("x-rtp-actor-employee-hsaid"),
            "{}",
            f.message
        );
        assert!(
            f.message.contains("x-rtp-actor-careprovider-hsaid"),
            "{}",
            f.message
        );
        let partial = call()
            .with_header("x-rtp-actor-employee-hsaid", "SE2321000016-E001")
            .with_header("x-rtp-actor-careunit-hsaid", " ");
        let f = actor_of(&partial, &settings("")).unwrap_err();
        assert_eq!(f.code, MISSING_ACTOR);
        assert!(
            f.message.contains("x-rtp-actor-careunit-hsaid"),
            "{}",
            f.message
        );
        assert!(!f.message.contains("employee"), "{}", f.message);
    }

    #[test]
    fn purpose_is_required_without_a_default() {
        let s = settings(r#", "default_purpose": null"#);
        let f = actor_of(&with_actor(call()), &s).unwrap_err();
        assert_eq!(f.code, MISSING_ACTOR);
        assert!(f.message.contains("x-rtp-actor-purpose"), "{}", f.message);
        let call = with_actor(call()).with_header("x-rtp-actor-purpose", "Administration");
        assert_eq!(actor_of(&call, &s).unwrap().purpose, "Administration");
    }

    #[test]
    fn unreadable_actor_headers_are_refused_without_their_values() {
        for (name, value) in [
            ("x-rtp-actor-employee-hsaid", "19121212-1212 Tolvan"),
            ("x-rtp-actor-purpose", "Nyfikenhet"),
            ("x-rtp-actor-purpose", "V%E5rd"),
            ("x-rtp-actor-purpose", "%"),
            ("x-rtp-actor-emergency", "yes"),
        ] {
            let mut call = with_actor(call());
            call.headers.retain(|h| h.name != name);
            let call = call.with_header(name, value);
            let f = actor_of(&call, &settings("")).unwrap_err();
            assert_eq!(f.code, INVALID_ACTOR, "{name}");
            assert!(f.message.contains(name), "{}", f.message);
            assert!(!f.message.contains(value), "{}", f.message);
        }
    }

    #[test]
    fn header_names_come_from_the_settings() {
        let s = settings(r#", "headers": {"employee": "x-rtp-user"}"#);
        let call = with_actor(call());
        let f = actor_of(&call, &s).unwrap_err();
        assert!(f.message.contains("x-rtp-user"), "{}", f.message);
        let call = call.with_header("x-rtp-user", "SE2321000016-E002");
        assert_eq!(actor_of(&call, &s).unwrap().employee, "SE2321000016-E002");
    }

    #[test]
    fn patient_is_required() {
        assert_eq!(patient_of(&call()).unwrap(), "191212121212");
        let mut none = call();
        none.patient = None;
        assert_eq!(patient_of(&none).unwrap_err().code, MISSING_ACTOR);
        let mut blank = call();
        blank.patient.as_mut().unwrap().id = " ".into();
        assert_eq!(patient_of(&blank).unwrap_err().code, MISSING_ACTOR);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode("V%C3%A5rd och behandling").as_deref(),
            Some("Vård och behandling")
        );
        assert_eq!(percent_decode("V%c3%a5rd").as_deref(), Some("Vård"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("%2"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%+1"), None);
        assert_eq!(percent_decode("%E5"), None);
    }
}
