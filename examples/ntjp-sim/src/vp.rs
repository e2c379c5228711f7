//! VP error codes and the SOAP 1.1 faults VP generates (ntjp-vp.md 3.8, 3.9).

use crate::xml::escape;

/// The SOAP 1.1 envelope namespace used by VP in all faults.
pub const SOAP11_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// Content type of every SOAP answer.
pub const CONTENT_TYPE_XML: &str = "text/xml; charset=UTF-8";

/// The VP codes the simulator can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VpCode {
    Vp002,
    Vp003,
    Vp004,
    Vp007,
    Vp009,
    Vp011,
    Vp013,
    Vp014,
    Vp015,
}

impl VpCode {
    /// The code token, e.g. `VP007`.
    pub fn as_str(self) -> &'static str {
        match self {
            VpCode::Vp002 => "VP002",
            VpCode::Vp003 => "VP003",
            VpCode::Vp004 => "VP004",
            VpCode::Vp007 => "VP007",
            VpCode::Vp009 => "VP009",
            VpCode::Vp011 => "VP011",
            VpCode::Vp013 => "VP013",
            VpCode::Vp014 => "VP014",
            VpCode::Vp015 => "VP015",
        }
    }

    /// `Client` or `Server`, as in VpSemanticErrorCodeEnum (VP007 and VP014 are Server).
    pub fn fault_class(self) -> &'static str {
        match self {
            VpCode::Vp007 | VpCode::Vp009 | VpCode::Vp014 => "Server",
            _ => "Client",
        }
    }

    /// VP's (Swedish) message text for the code.
    pub fn message(self) -> &'static str {
        match self {
            VpCode::Vp002 => "Fel i klientcertifikat. Saknas, är av felaktig typ, eller är felaktigt utformad.",
            VpCode::Vp003 => "Logisk adressat saknas i RIV-headern.",
            VpCode::Vp004 => "Det finns inget vägval i tjänsteadresseringskatalogen som matchar anropets logiska adressat och tjänstekontrakt.",
            VpCode::Vp007 => "Tjänstekonsumenten saknar behörighet att anropa den logiska adressaten via detta tjänstekontrakt.",
            VpCode::Vp009 => "Fel vid kontakt med tjänsteproducenten.",
            VpCode::Vp011 => "Anropet är gjort utanför TLS vilket ej är tillåtet.",
            VpCode::Vp013 => "Tjänstekonsumenten saknar behörighet att använda headern x-rivta-original-serviceconsumer-hsaid.",
            VpCode::Vp014 => "Rundgång upptäckt i anropskedjan.",
            VpCode::Vp015 => "Felaktigt format på anropet, kan inte behandlas.",
        }
    }
}

/// A fault raised by the simulated platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpFault {
    pub code: VpCode,
    /// Text for `<detailString>`; never contains request bodies.
    pub detail: String,
}

impl VpFault {
    pub fn new(code: VpCode, detail: impl Into<String>) -> Self {
        VpFault {
            code,
            detail: detail.into(),
        }
    }

    /// `"<CODE> [<name>] <message>"`.
    pub fn fault_string(&self, name: &str) -> String {
        format!("{} [{}] {}", self.code.as_str(), name, self.code.message())
    }

    /// The SOAP 1.1 envelope VP sends with HTTP 500.
    pub fn to_envelope(&self, name: &str) -> String {
        soap_fault(
            &format!("SOAP-ENV:{}", self.code.fault_class()),
            &self.fault_string(name),
            &self.detail,
        )
    }
}

/// Builds a SOAP 1.1 fault envelope with `<detail><detailString>`.
pub fn soap_fault(faultcode: &str, faultstring: &str, detail: &str) -> String {
    format!(
        concat!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
            "<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"{ns}\"><SOAP-ENV:Header/><SOAP-ENV:Body>",
            "<SOAP-ENV:Fault><faultcode>{code}</faultcode><faultstring>{string}</faultstring>",
            "<detail><detailString>{detail}</detailString></detail></SOAP-ENV:Fault>",
            "</SOAP-ENV:Body></SOAP-ENV:Envelope>"
        ),
        ns = SOAP11_NS,
        code = escape(faultcode),
        string = escape(faultstring),
        detail = escape(detail),
    )
}

/// Wraps a body fragment (already XML) in a SOAP 1.1 envelope.
pub fn envelope(body_inner: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soap:Envelope xmlns:soap=\"{SOAP11_NS}\"><soap:Header/><soap:Body>{body_inner}</soap:Body></soap:Envelope>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_format() {
        let f = VpFault::new(VpCode::Vp007, "Authorization missing <x>");
        let xml = f.to_envelope("SIM");
        assert!(xml.contains("<faultcode>SOAP-ENV:Server</faultcode>"));
        assert!(xml.contains("<faultstring>VP007 [SIM] "));
        assert!(xml.contains("<detailString>Authorization missing &lt;x&gt;</detailString>"));
        assert_eq!(VpCode::Vp015.fault_class(), "Client");
    }
}
