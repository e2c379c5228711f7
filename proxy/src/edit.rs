//! Request edits a policy asks for, applied by the host. The body is never re-serialised:
//! only the period element's bytes are replaced, or a period is inserted right after
//! `patientId` (its schema position in every NPÖ contract), and every other byte of the
//! request stays as the caller sent it.

use bytes::Bytes;

use crate::contracts;
use crate::inspect::Call;

/// A period to write; dates as `YYYYMMDD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPeriod {
    pub start: Option<String>,
    pub end: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("{0:?} is not a date YYYYMMDD")]
    BadDate(String),
    #[error("the request has no patientId to place a period after")]
    NoPatient,
    #[error("contract {0} is not one whose period element is known")]
    UnknownContract(String),
}

fn checked(date: &Option<String>) -> Result<Option<&str>, EditError> {
    match date {
        None => Ok(None),
        Some(d) if d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(d)),
        Some(d) => Err(EditError::BadDate(d.clone())),
    }
}

/// The request body with its period set to `period`.
pub fn set_period(body: &[u8], call: &Call, period: &NewPeriod) -> Result<Bytes, EditError> {
    let start = checked(&period.start)?;
    let end = checked(&period.end)?;
    let element = |name: &str, prefix: &str, child: &str| {
        let mut xml = format!("<{prefix}{name}>");
        if let Some(start) = start {
            xml.push_str(&format!("<{child}start>{start}</{child}start>"));
        }
        if let Some(end) = end {
            xml.push_str(&format!("<{child}end>{end}</{child}end>"));
        }
        xml.push_str(&format!("</{prefix}{name}>"));
        xml
    };
    let (range, xml) = match &call.period {
        Some(existing) => (
            existing.span.clone(),
            element(&existing.element, &existing.prefix, &existing.child_prefix),
        ),
        None => {
            let patient = call.patient.as_ref().ok_or(EditError::NoPatient)?;
            let info = contracts::lookup(&call.contract)
                .ok_or_else(|| EditError::UnknownContract(call.contract.clone()))?;
            let at = patient.span.end;
            (
                at..at,
                element(info.period_element, &patient.prefix, &patient.child_prefix),
            )
        }
    };
    let mut out = Vec::with_capacity(body.len() + xml.len());
    out.extend_from_slice(&body[..range.start]);
    out.extend_from_slice(xml.as_bytes());
    out.extend_from_slice(&body[range.end..]);
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::inspect;

    const WITH_PERIOD: &str = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:a="urn:riv:itintegration:registry:1" xmlns:r="urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:2" xmlns:c="urn:riv:clinicalprocess:healthcond:description:2"><s:Header><a:LogicalAddress>LA</a:LogicalAddress></s:Header><s:Body><r:GetCareDocumentation><r:patientId><c:id>191212121212</c:id><c:type>1.2.752.129.2.1.3.1</c:type></r:patientId><r:timePeriod><c:start>20100101</c:start><c:end>20251231</c:end></r:timePeriod><r:sourceSystemHSAid>SE1</r:sourceSystemHSAid></r:GetCareDocumentation></s:Body></s:Envelope>"#;

    fn period(start: &str, end: Option<&str>) -> NewPeriod {
        NewPeriod {
            start: Some(start.into()),
            end: end.map(str::to_owned),
        }
    }

    #[test]
    fn replaces_an_existing_period_in_place() {
        let call = inspect(WITH_PERIOD.as_bytes()).unwrap();
        let out = set_period(
            WITH_PERIOD.as_bytes(),
            &call,
            &period("20230101", Some("20251231")),
        )
        .unwrap();
        let expected = WITH_PERIOD.replace("20100101", "20230101");
        assert_eq!(std::str::from_utf8(&out).unwrap(), expected);
        let again = inspect(&out).unwrap();
        assert_eq!(again.period.unwrap().start.as_deref(), Some("20230101"));
    }

    #[test]
    fn inserts_a_period_after_patient_id_with_the_contracts_element_name() {
        let without = WITH_PERIOD.replace(
            "<r:timePeriod><c:start>20100101</c:start><c:end>20251231</c:end></r:timePeriod>",
            "",
        );
        let call = inspect(without.as_bytes()).unwrap();
        let out = set_period(
            without.as_bytes(),
            &call,
            &period("20230101", Some("20261125")),
        )
        .unwrap();
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.contains("</r:patientId><r:timePeriod><c:start>20230101</c:start><c:end>20261125</c:end></r:timePeriod><r:sourceSystemHSAid>"), "{text}");
        assert_eq!(
            inspect(&out).unwrap().period.unwrap().end.as_deref(),
            Some("20261125")
        );
    }

    #[test]
    fn refuses_bad_dates_and_unknown_contracts() {
        let call = inspect(WITH_PERIOD.as_bytes()).unwrap();
        assert_eq!(
            set_period(WITH_PERIOD.as_bytes(), &call, &period("2023-01-01", None)),
            Err(EditError::BadDate("2023-01-01".into()))
        );
        let other = WITH_PERIOD
            .replace("GetCareDocumentationResponder:2", "OtherResponder:1")
            .replace(
                "<r:timePeriod><c:start>20100101</c:start><c:end>20251231</c:end></r:timePeriod>",
                "",
            );
        let call = inspect(other.as_bytes()).unwrap();
        assert!(matches!(
            set_period(other.as_bytes(), &call, &period("20230101", None)),
            Err(EditError::UnknownContract(_))
        ));
    }
}
