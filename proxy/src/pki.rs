//! A throw-away PKI in the shape SITHS uses: a CA, server certificates for the proxy and
//! the simulator, and function certificates whose subject `serialNumber` (OID 2.5.4.5) is
//! the holder's HSA-id. The demo generates one at start; the tests generate their own.
//! Never for production: real deployments use certificates issued under SITHS.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertificateRevocationListParams,
    CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod,
    KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams, SerialNumber,
};

/// The subject attribute SITHS function certificates carry the HSA-id in.
pub const SERIAL_NUMBER_OID: [u64; 4] = [2, 5, 4, 5];

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("generating a certificate failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("not a usable certificate: {0}")]
    Certificate(String),
    #[error("a date out of range: {0}")]
    Date(String),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A certificate with its private key, both PEM.
#[derive(Debug, Clone)]
pub struct CertifiedKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl CertifiedKey {
    /// Writes `<stem>.crt` and `<stem>.key` into `dir`.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf), PkiError> {
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        write_file(&cert, &self.cert_pem)?;
        write_file(&key, &self.key_pem)?;
        Ok((cert, key))
    }
}

/// A certificate authority that issues server and client certificates.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(common_name: &str) -> Result<Self, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = named(common_name, None);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(TestCa { issuer })
    }

    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A TLS server certificate for the given DNS names or IP addresses, carrying an
    /// HSA-id as well, since a platform is both a server and, towards NTjP, a client.
    pub fn server(&self, hsa_id: &str, names: &[&str]) -> Result<CertifiedKey, PkiError> {
        self.issue(server_params(hsa_id, names)?)
    }

    /// As [`TestCa::server`], valid until midnight (UTC) `days` from today: negative
    /// for one that has expired. For checks of expiry warnings and refusals.
    pub fn server_until(
        &self,
        hsa_id: &str,
        names: &[&str],
        days: i64,
    ) -> Result<CertifiedKey, PkiError> {
        let mut params = server_params(hsa_id, names)?;
        let (year, month, day) = utc_date(days)?;
        params.not_after = date_time_ymd(year, month, day);
        let (year, month, day) = utc_date(days.min(0) - 30)?;
        params.not_before = date_time_ymd(year, month, day);
        self.issue(params)
    }

    /// A client (function) certificate; `hsa_id` goes into the subject serialNumber.
    /// `None` makes a certificate without one, which callers must refuse.
    pub fn client(
        &self,
        common_name: &str,
        hsa_id: Option<&str>,
    ) -> Result<CertifiedKey, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = named(common_name, hsa_id);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    /// A CRL (PEM) revoking the given certificates (PEM, issued by this CA), issued
    /// yesterday; its nextUpdate is `next_update_days` from today (negative: expired).
    pub fn crl(&self, revoked: &[&str], next_update_days: i64) -> Result<String, PkiError> {
        let day = |offset: i64| -> Result<_, PkiError> {
            let (year, month, day) = utc_date(offset)?;
            Ok(date_time_ymd(year, month, day))
        };
        let revoked_certs = revoked
            .iter()
            .map(|pem| {
                Ok(RevokedCertParams {
                    serial_number: serial_of(pem)?,
                    revocation_time: day(-1)?,
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, PkiError>>()?;
        let params = CertificateRevocationListParams {
            this_update: day(next_update_days.min(0) - 1)?,
            next_update: day(next_update_days)?,
            crl_number: SerialNumber::from(1),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }

    fn issue(&self, mut params: CertificateParams) -> Result<CertifiedKey, PkiError> {
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn server_params(hsa_id: &str, names: &[&str]) -> Result<CertificateParams, PkiError> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name = named(hsa_id, Some(hsa_id));
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    Ok(params)
}

/// The UTC date `offset` days from now: (year, month, day).
fn utc_date(offset: i64) -> Result<(i32, u8, u8), PkiError> {
    let at = jiff::Timestamp::now()
        .checked_add(jiff::Span::new().hours(offset * 24))
        .map_err(|e| PkiError::Date(e.to_string()))?;
    let date = jiff::tz::Offset::UTC.to_datetime(at).date();
    Ok((
        i32::from(date.year()),
        date.month().unsigned_abs(),
        date.day().unsigned_abs(),
    ))
}

/// The serial number of a PEM certificate, as a CRL names it.
fn serial_of(cert_pem: &str) -> Result<SerialNumber, PkiError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| PkiError::Certificate(e.to_string()))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| PkiError::Certificate(e.to_string()))?;
    Ok(SerialNumber::from_slice(cert.raw_serial()))
}

fn named(common_name: &str, hsa_id: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "SE");
    dn.push(DnType::OrganizationName, "rtp-proxy test PKI");
    dn.push(DnType::CommonName, common_name);
    if let Some(id) = hsa_id {
        dn.push(DnType::CustomDnType(SERIAL_NUMBER_OID.to_vec()), id);
    }
    dn
}

pub(crate) fn write_file(path: &Path, contents: &str) -> Result<(), PkiError> {
    fs::write(path, contents).map_err(|source| PkiError::Write {
        path: path.to_owned(),
        source,
    })
}

/// The HSA-ids of the demo's parties.
pub mod demo_ids {
    /// The proxy's own identity towards NTjP.
    pub const PROXY: &str = "SE2321000016-RTP1";
    /// The simulated NTjP.
    pub const NTJP: &str = "SE2321000016-NTJP";
    /// A journal system calling through the proxy.
    pub const CONSUMER: &str = "SE2321000016-A12B";
}

/// Generates the demo PKI into `dir`: `ca.crt`, `proxy.crt/.key`, `ntjp.crt/.key`,
/// `consumer.crt/.key`.
pub fn write_demo_pki(dir: &Path) -> Result<(), PkiError> {
    fs::create_dir_all(dir).map_err(|source| PkiError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let ca = TestCa::new("rtp-proxy demo CA")?;
    write_file(&dir.join("ca.crt"), &ca.cert_pem())?;
    let loopback = ["localhost", "127.0.0.1"];
    ca.server(demo_ids::PROXY, &loopback)?.write(dir, "proxy")?;
    ca.server(demo_ids::NTJP, &loopback)?.write(dir, "ntjp")?;
    ca.client("demo journal system", Some(demo_ids::CONSUMER))?
        .write(dir, "consumer")?;
    Ok(())
}
