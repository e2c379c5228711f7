//! RIV-TA SOAP 1.1 faults the proxy itself produces.
//!
//! Callers of NTjP assert on HTTP 500 plus a code token at the start of `faultstring`
//! (`reference/ntjp-vp.md` §3.8-3.9), so every fault the proxy generates has that shape:
//! `faultcode` `soap:Client` or `soap:Server`, `faultstring` `"<CODE> [<instance>] <text>"`
//! and `detail/detailString`. VP codes are reused where the meaning is NTjP's; the `RTP`
//! range covers what only a regional proxy rejects. Fault texts never carry personal data.

use std::fmt;

use bytes::Bytes;
use quick_xml::escape::escape;

/// Which side of the exchange is to blame, as SOAP 1.1 puts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultSide {
    Client,
    Server,
}

/// The fault codes the proxy emits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultCode {
    /// Client certificate missing, of the wrong kind, or without an HSA-id.
    Vp002,
    /// No logical address in the RIV-TA header.
    Vp003,
    /// No route for the contract and logical address.
    Vp004,
    /// The caller is not authorised.
    Vp007,
    /// The upstream could not be reached, failed, or timed out.
    Vp009,
    /// Call on the plain-HTTP listener from a source that is not allowed.
    Vp011,
    /// The caller may not set the original-consumer header.
    Vp013,
    /// Routing loop between platforms.
    Vp014,
    /// The request could not be read as a RIV-TA SOAP 1.1 message.
    Vp015,
    /// The request body is larger than the configured limit.
    Rtp001,
    /// The request's content type is not SOAP 1.1 (`text/xml`).
    Rtp002,
    /// The request method is not POST.
    Rtp003,
    /// The caller was too slow sending its request.
    Rtp004,
    /// A policy refused the call, with the code token the policy chose.
    Policy(String),
    /// A policy failed (trapped, ran out of time or memory, or is crash-looping) and
    /// its failure mode is fail-closed.
    Rtp190,
}

impl FaultCode {
    /// The token that starts `faultstring`.
    pub fn token(&self) -> &str {
        match self {
            FaultCode::Vp002 => "VP002",
            FaultCode::Vp003 => "VP003",
            FaultCode::Vp004 => "VP004",
            FaultCode::Vp007 => "VP007",
            FaultCode::Vp009 => "VP009",
            FaultCode::Vp011 => "VP011",
            FaultCode::Vp013 => "VP013",
            FaultCode::Vp014 => "VP014",
            FaultCode::Vp015 => "VP015",
            FaultCode::Rtp001 => "RTP001",
            FaultCode::Rtp002 => "RTP002",
            FaultCode::Rtp003 => "RTP003",
            FaultCode::Rtp004 => "RTP004",
            FaultCode::Policy(token) => token,
            FaultCode::Rtp190 => "RTP190",
        }
    }

    /// Client or Server, following NTjP's classification for the VP codes.
    pub fn side(&self) -> FaultSide {
        match self {
            FaultCode::Vp007 | FaultCode::Vp009 | FaultCode::Vp014 | FaultCode::Rtp190 => {
                FaultSide::Server
            }
            // A policy reusing an NTjP code gets NTjP's side for it.
            FaultCode::Policy(token) if ["VP007", "VP009", "VP014"].contains(&token.as_str()) => {
                FaultSide::Server
            }
            _ => FaultSide::Client,
        }
    }

    /// The short, fixed message for the code; the details say what exactly happened.
    pub fn message(&self) -> &'static str {
        match self {
            FaultCode::Vp002 => "Client certificate missing or without a sender id",
            FaultCode::Vp003 => "Logical address missing in the RIV-TA header",
            FaultCode::Vp004 => "No route for the service contract and logical address",
            FaultCode::Vp007 => "The service consumer is not authorised",
            FaultCode::Vp009 => "Error contacting the service producer",
            FaultCode::Vp011 => "Caller not allowed on this listener",
            FaultCode::Vp013 => {
                "Sender is not approved to set header x-rivta-original-serviceconsumer-hsaid"
            }
            FaultCode::Vp014 => "Routing loop detected",
            FaultCode::Vp015 => "The request could not be read properly",
            FaultCode::Rtp001 => "Request too large",
            FaultCode::Rtp002 => "Unsupported content type",
            FaultCode::Rtp003 => "Method not allowed",
            FaultCode::Rtp004 => "Request not received in time",
            FaultCode::Policy(_) => "Refused by a regional policy",
            FaultCode::Rtp190 => "A regional policy failed",
        }
    }
}

impl fmt::Display for FaultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.token())
    }
}

/// A fault the proxy answers with instead of relaying the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub code: FaultCode,
    /// What exactly went wrong; goes into `detail/detailString`. No personal data.
    pub detail: String,
}

impl Fault {
    pub fn new(code: FaultCode, detail: impl Into<String>) -> Self {
        Fault {
            code,
            detail: detail.into(),
        }
    }

    /// `faultstring`: the code token first, as NTjP's callers expect.
    pub fn fault_string(&self, instance: &str) -> String {
        format!("{} [{}] {}", self.code, instance, self.code.message())
    }

    /// The SOAP 1.1 envelope for this fault.
    pub fn to_soap(&self, instance: &str) -> Bytes {
        let side = match self.code.side() {
            FaultSide::Client => "soap:Client",
            FaultSide::Server => "soap:Server",
        };
        let body = format!(
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?>"#,
                r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">"#,
                "<soap:Body><soap:Fault><faultcode>{}</faultcode><faultstring>{}</faultstring>",
                "<detail><detailString>{}</detailString></detail></soap:Fault></soap:Body></soap:Envelope>"
            ),
            side,
            escape(self.fault_string(instance).as_str()),
            escape(self.detail.as_str()),
        );
        Bytes::from(body)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.code, self.code.message(), self.detail)
    }
}

impl std::error::Error for Fault {}

/// Whether an upstream's error answer is a SOAP 1.1 fault (then it is passed on as is).
pub fn is_soap_fault(body: &[u8]) -> bool {
    let contains = |needle: &[u8]| memchr::memmem::find(body, needle).is_some();
    contains(crate::inspect::SOAP11_NS.as_bytes()) && contains(b"Fault")
}

/// The first whitespace-separated token of a SOAP fault's `faultstring`: the RIV-TA code
/// (`VP007 [..] ...`). The element may carry attributes (`xml:lang="SE"`) or a prefix.
/// Empty when the faultstring is; none without a faultstring.
pub fn fault_code_token(body: &[u8]) -> Option<&str> {
    const NAME: &[u8] = b"faultstring";
    let mut from = 0;
    let content = loop {
        let at = from + memchr::memmem::find(&body[from..], NAME)?;
        let after = at + NAME.len();
        from = after;
        // A start tag: `<faultstring` or `<p:faultstring`, then `>`, `/` or whitespace.
        let opens = at > 0 && matches!(body[at - 1], b'<' | b':');
        let name_ends = body
            .get(after)
            .is_some_and(|b| *b == b'>' || *b == b'/' || b.is_ascii_whitespace());
        let is_end_tag = body[..at]
            .iter()
            .rev()
            .find(|b| !(b.is_ascii_alphanumeric() || **b == b':' || **b == b'_' || **b == b'-'))
            .is_some_and(|b| *b == b'/');
        if !(opens && name_ends) || is_end_tag {
            continue;
        }
        let close = after + memchr::memchr(b'>', &body[after..])?;
        if body[close - 1] == b'/' {
            return Some("");
        }
        break &body[close + 1..];
    };
    let start = content
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(content.len());
    let token = &content[start..];
    let end = token
        .iter()
        .position(|b| b.is_ascii_whitespace() || *b == b'<')
        .unwrap_or(token.len());
    std::str::from_utf8(&token[..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_string_starts_with_the_code_token() {
        let fault = Fault::new(FaultCode::Vp004, "no route");
        assert!(fault.fault_string("rtp").starts_with("VP004 [rtp] "));
    }

    #[test]
    fn envelope_escapes_details_and_uses_the_soap11_namespace() {
        let fault = Fault::new(FaultCode::Vp015, "unexpected <tag> & more");
        let xml = String::from_utf8(fault.to_soap("rtp").to_vec()).unwrap();
        assert!(xml.contains(r#"xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/""#));
        assert!(xml.contains("<faultcode>soap:Client</faultcode>"));
        assert!(xml.contains("unexpected &lt;tag&gt; &amp; more"));
    }

    #[test]
    fn server_side_codes_follow_ntjp() {
        assert_eq!(FaultCode::Vp009.side(), FaultSide::Server);
        assert_eq!(FaultCode::Vp007.side(), FaultSide::Server);
        assert_eq!(FaultCode::Vp003.side(), FaultSide::Client);
    }

    #[test]
    fn the_code_of_an_upstream_fault_is_the_first_token_of_its_faultstring() {
        let fault = b"<soap:Fault><faultcode>soap:Server</faultcode><faultstring>VP007 [ntjp] Not authorised</faultstring></soap:Fault>";
        assert_eq!(fault_code_token(fault), Some("VP007"));
        assert_eq!(
            fault_code_token(b"<faultstring>\n  Boom</faultstring>"),
            Some("Boom")
        );
        assert_eq!(fault_code_token(b"<faultstring></faultstring>"), Some(""));
        assert_eq!(fault_code_token(b"<faultstring/>"), Some(""));
        assert_eq!(fault_code_token(b"<Fault/>"), None);
        // Attributes and a prefix, as some producers send them (shared sample 15).
        assert_eq!(
            fault_code_token(br#"<faultstring xml:lang="SE">VP011 no</faultstring>"#),
            Some("VP011")
        );
        assert_eq!(
            fault_code_token(b"<s:faultstring>RTP101 x</s:faultstring>"),
            Some("RTP101")
        );
        // Only a start tag counts, not an end tag or a longer name.
        assert_eq!(
            fault_code_token(
                b"<faultstringx>a</faultstringx></faultstring><faultstring>VP004 y</faultstring>"
            ),
            Some("VP004")
        );
    }

    #[test]
    fn the_shared_fault_sample_gives_its_first_word() {
        let sample = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/samples/15_GetFunctionalStatus_v2_soapfault_mock.xml"),
        )
        .expect("shared sample 15");
        assert!(is_soap_fault(&sample));
        assert_eq!(fault_code_token(&sample), Some("That's"));
    }
}
