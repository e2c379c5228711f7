//! The caller's HSA-id from its client certificate.
//!
//! SITHS function certificates carry the HSA-id in the subject's serialNumber (OID
//! 2.5.4.5), which is what NTjP uses by default (`reference/ntjp-vp.md` §2.2). The
//! attribute is configurable for regions whose certificates differ.

use std::str::FromStr;

use x509_parser::der_parser::oid::Oid;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Which subject attribute holds the HSA-id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderIdAttribute(Oid<'static>);

impl SenderIdAttribute {
    /// `serialNumber`, `CN`, or a dotted OID.
    pub fn parse(name: &str) -> Option<Self> {
        let dotted = match name {
            "serialNumber" | "SERIALNUMBER" => "2.5.4.5",
            "CN" | "commonName" => "2.5.4.3",
            other => other,
        };
        Oid::from_str(dotted).ok().map(SenderIdAttribute)
    }

    /// The HSA-id in a DER certificate, if its subject has the attribute.
    pub fn sender_id(&self, der: &[u8]) -> Result<String, IdentityError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| IdentityError::Unreadable(e.to_string()))?;
        let value = cert
            .subject()
            .iter_attributes()
            .find(|attr| attr.attr_type() == &self.0)
            .ok_or_else(|| IdentityError::NoAttribute(self.0.to_id_string()))?;
        let id = value
            .as_str()
            .map_err(|_| IdentityError::NoAttribute(self.0.to_id_string()))?
            .trim();
        if id.is_empty() {
            return Err(IdentityError::NoAttribute(self.0.to_id_string()));
        }
        Ok(id.to_owned())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("the client certificate could not be read: {0}")]
    Unreadable(String),
    #[error("no sender id (subject attribute {0}) in the client certificate")]
    NoAttribute(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::TestCa;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn reads_the_hsa_id_from_serial_number() {
        let ca = TestCa::new("ca").unwrap();
        let client = ca.client("journal", Some("SE2321000016-A12B")).unwrap();
        let attr = SenderIdAttribute::parse("serialNumber").unwrap();
        assert_eq!(
            attr.sender_id(&der(&client.cert_pem)).unwrap(),
            "SE2321000016-A12B"
        );
        let cn = SenderIdAttribute::parse("CN").unwrap();
        assert_eq!(cn.sender_id(&der(&client.cert_pem)).unwrap(), "journal");
    }

    #[test]
    fn a_certificate_without_the_attribute_has_no_sender() {
        let ca = TestCa::new("ca").unwrap();
        let client = ca.client("anonymous", None).unwrap();
        let attr = SenderIdAttribute::parse("2.5.4.5").unwrap();
        assert_eq!(
            attr.sender_id(&der(&client.cert_pem)),
            Err(IdentityError::NoAttribute("2.5.4.5".into()))
        );
        assert!(SenderIdAttribute::parse("not an oid").is_none());
    }
}
