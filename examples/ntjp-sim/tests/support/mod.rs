//! Test support: an rcgen PKI written to a temp dir, a small hyper client over
//! plain TCP or mTLS, and request builders. All waits are bounded.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use ntjp_sim::xml::Element;
use ntjp_sim::{HttpConfig, HttpsConfig, PermissionConfig, ProducerConfig, RouteConfig, SimConfig};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

pub const SENDER: &str = "SE2321000016-RTP1";
pub const LA: &str = "SE2321000016-7P3S";
pub const PATIENT: &str = "191212121212";
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Client identity for mTLS: cert + key PEM.
#[derive(Clone)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A throwaway PKI: CA, server cert for localhost/127.0.0.1, client certs.
pub struct Pki {
    pub dir: PathBuf,
    pub ca_pem: String,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = std::env::temp_dir().join(format!("ntjp-sim-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Test CA");
        let ca =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca");
        let ca_pem = ca.pem();
        std::fs::write(dir.join("ca.crt"), &ca_pem).expect("write ca");
        let pki = Pki { dir, ca_pem, ca };
        let server = pki.leaf(Some("ntjp"), None, true);
        std::fs::write(pki.dir.join("server.crt"), &server.cert_pem).expect("write");
        std::fs::write(pki.dir.join("server.key"), &server.key_pem).expect("write");
        pki
    }

    /// Issues a certificate; `serial` becomes the subject serialNumber (2.5.4.5).
    pub fn leaf(&self, cn: Option<&str>, serial: Option<&str>, server: bool) -> Identity {
        let names = if server {
            vec!["localhost".to_string(), "127.0.0.1".to_string()]
        } else {
            Vec::new()
        };
        let mut params = CertificateParams::new(names).expect("params");
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        if let Some(serial) = serial {
            params
                .distinguished_name
                .push(DnType::CustomDnType(vec![2, 5, 4, 5]), serial);
        }
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("sign");
        Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    pub fn client(&self, serial: Option<&str>) -> Identity {
        self.leaf(Some("test consumer"), serial, false)
    }

    pub fn https_config(&self) -> HttpsConfig {
        HttpsConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            cert: self.dir.join("server.crt"),
            key: self.dir.join("server.key"),
            client_ca: self.dir.join("ca.crt"),
        }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A plain HTTP listener for 127.0.0.1.
pub fn http_config() -> HttpConfig {
    HttpConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ip_whitelist: vec!["127.0.0.1".to_string()],
    }
}

/// A config routing `contracts` at LA to producer "src" with permission for SENDER.
pub fn base_config(contracts: &[&str]) -> SimConfig {
    let mut cfg = SimConfig {
        name: "SIM".to_string(),
        http: Some(http_config()),
        ..SimConfig::default()
    };
    cfg.producers.push(ProducerConfig::new("src"));
    for c in contracts {
        cfg.routes.push(RouteConfig {
            contract: c.to_string(),
            logical_address: LA.to_string(),
            producer: "src".to_string(),
        });
        cfg.permissions.push(PermissionConfig {
            sender: SENDER.to_string(),
            contract: c.to_string(),
            logical_address: "*".to_string(),
        });
    }
    cfg
}

/// The request root name for a responder namespace, e.g. `GetDiagnosis`.
pub fn root_name(ns: &str) -> String {
    let parts: Vec<&str> = ns.split(':').collect();
    let name = parts
        .get(parts.len().saturating_sub(2))
        .copied()
        .unwrap_or("X");
    name.strip_suffix("Responder").unwrap_or(name).to_string()
}

/// A RIV-TA 2.1 request. `v3_patient` uses `{root, extension}`.
pub fn request(ns: &str, la: Option<&str>, patient: &str, v3_patient: bool) -> String {
    let header = match la {
        Some(la) => format!(
            "<soapenv:Header><itr:LogicalAddress xmlns:itr=\"urn:riv:itintegration:registry:1\">{la}</itr:LogicalAddress></soapenv:Header>"
        ),
        None => "<soapenv:Header/>".to_string(),
    };
    let pid = if v3_patient {
        format!("<c:root>1.2.752.129.2.1.3.1</c:root><c:extension>{patient}</c:extension>")
    } else {
        format!("<c:id>{patient}</c:id><c:type>1.2.752.129.2.1.3.1</c:type>")
    };
    let root = root_name(ns);
    format!(
        "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\">{header}<soapenv:Body><r:{root} xmlns:r=\"{ns}\" xmlns:c=\"urn:core\"><r:patientId>{pid}</r:patientId></r:{root}></soapenv:Body></soapenv:Envelope>"
    )
}

/// A response as the test sees it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a VP fault with the given code.
    pub fn assert_vp_fault(&self, code: &str) {
        assert_eq!(self.status, 500, "{code}: {}", self.body);
        assert!(
            self.body.contains(&format!("<faultstring>{code} [SIM] ")),
            "expected {code}: {}",
            self.body
        );
        assert!(self.header("x-skltp-correlation-id").is_some());
        assert!(self
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/xml")));
    }

    pub fn xml(&self) -> Element {
        Element::parse(self.body.as_bytes()).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Sends one request over a fresh connection (mTLS if `tls` is given).
pub async fn send(
    addr: SocketAddr,
    tls: Option<(&Pki, &Identity)>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Reply, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    for (n, v) in headers {
        builder = builder.header(*n, *v);
    }
    let req = builder
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    match tls {
        Some((pki, id)) => {
            let stream = tls_connect(tcp, pki, id).await?;
            exchange(stream, req).await
        }
        None => exchange(tcp, req).await,
    }
}

async fn tls_connect(
    tcp: tokio::net::TcpStream,
    pki: &Pki,
    id: &Identity,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).map_err(|e| e.to_string())?;
    roots.add(ca).map_err(|e| e.to_string())?;
    let chain =
        vec![CertificateDer::from_pem_slice(id.cert_pem.as_bytes()).map_err(|e| e.to_string())?];
    let key = PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).map_err(|e| e.to_string())?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())
}

async fn exchange<S>(stream: S, req: Request<Full<Bytes>>) -> Result<Reply, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    driver.abort();
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A POST bounded by [`TIMEOUT`]; panics on timeout or transport error.
pub async fn call(
    addr: SocketAddr,
    tls: Option<(&Pki, &Identity)>,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    tokio::time::timeout(TIMEOUT, send(addr, tls, "POST", "/vp/test", headers, body))
        .await
        .expect("bounded wait")
        .expect("transport ok")
}

/// Whether any descendant has exactly this (trimmed) text.
pub fn has_text(el: &Element, text: &str) -> bool {
    el.children
        .iter()
        .any(|c| c.text.trim() == text || has_text(c, text))
}

/// Whether any descendant has this local name.
pub fn has_element(el: &Element, name: &str) -> bool {
    el.children
        .iter()
        .any(|c| c.name == name || has_element(c, name))
}
