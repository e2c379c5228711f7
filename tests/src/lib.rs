//! Test harness for end-to-end tests: a generated PKI, the NTjP simulator and the proxy
//! started in-process on 127.0.0.1 (port 0), a static producer for byte-exact checks, and
//! HTTP clients over real TLS. Everything listens on loopback and every wait is bounded.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rtp_proxy::config::Config;
use rtp_proxy::pki::TestCa;
use rtp_proxy::server::RunningProxy;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

/// HSA-ids used across the tests.
pub mod ids {
    pub const PROXY: &str = "SE2321000016-RTP1";
    pub const CONSUMER: &str = "SE2321000016-A12B";
    pub const AGGREGATOR: &str = "SE2321000016-AGP1";
    pub const PATIENT: &str = "191212121212";
}

/// The contract of sample 01.
pub const CD2: &str =
    "urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:2";

/// A generated PKI written to a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn generate() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = TestCa::new("test CA").expect("CA");
        std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).expect("write CA");
        let loopback = ["localhost", "127.0.0.1"];
        ca.server(ids::PROXY, &loopback)
            .unwrap()
            .write(dir.path(), "proxy")
            .unwrap();
        ca.server("SE2321000016-NTJP", &loopback)
            .unwrap()
            .write(dir.path(), "ntjp")
            .unwrap();
        ca.client("journal", Some(ids::CONSUMER))
            .unwrap()
            .write(dir.path(), "consumer")
            .unwrap();
        ca.client("aggregator", Some(ids::AGGREGATOR))
            .unwrap()
            .write(dir.path(), "aggregator")
            .unwrap();
        ca.client("no hsa-id", None)
            .unwrap()
            .write(dir.path(), "anonymous")
            .unwrap();
        // Revocation lists: one revoking nothing, one revoking the aggregator's
        // certificate, one the simulator's (NTjP's), and one past its nextUpdate.
        let aggregator = std::fs::read_to_string(dir.path().join("aggregator.crt")).unwrap();
        let ntjp = std::fs::read_to_string(dir.path().join("ntjp.crt")).unwrap();
        for (file, revoked, next_update_days) in [
            ("crl-none.pem", vec![], 30),
            ("crl-aggregator.pem", vec![aggregator.as_str()], 30),
            ("crl-ntjp.pem", vec![ntjp.as_str()], 30),
            ("crl-expired.pem", vec![], -1),
        ] {
            let crl = ca.crl(&revoked, next_update_days).expect("CRL");
            std::fs::write(dir.path().join(file), crl).expect("write CRL");
        }
        let rogue = TestCa::new("rogue CA").unwrap();
        rogue
            .client("rogue", Some(ids::CONSUMER))
            .unwrap()
            .write(dir.path(), "rogue")
            .unwrap();
        Pki { dir }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// A TLS client trusting the test CA, presenting `<stem>.crt/.key` if given.
    pub fn client(&self, stem: Option<&str>) -> TlsConnector {
        let cert = stem.map(|s| {
            (
                self.path(&format!("{s}.crt")),
                self.path(&format!("{s}.key")),
            )
        });
        let identity = cert.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
        let config =
            rtp_proxy::tls::client_config(&self.path("ca.crt"), identity, &Default::default())
                .expect("client config");
        TlsConnector::from(Arc::new(config))
    }
}

/// The directory of the shared sample messages.
pub fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/samples")
}

/// A sample file, with the SoapUI placeholders for the patient filled in.
pub fn sample(name: &str) -> Vec<u8> {
    let path = samples_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.replace("${patientId}", ids::PATIENT)
        .replace("${patientid}", ids::PATIENT)
        .into_bytes()
}

/// A reply as the test client saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The fault code token at the start of `faultstring`, if this is a fault.
    pub fn fault_code(&self) -> Option<String> {
        let text = self.text();
        let start = text.find("<faultstring>")? + "<faultstring>".len();
        text[start..].split_whitespace().next().map(str::to_owned)
    }

    /// Asserts that this is a SOAP fault with `code` first in its faultstring; the
    /// failure shows the whole answer.
    #[track_caller]
    pub fn assert_fault_code(&self, code: &str) {
        assert_eq!(self.fault_code().as_deref(), Some(code), "{}", self.text());
    }

    /// Asserts that the body holds `needle`, showing the body when it does not.
    pub fn assert_text_contains(&self, needle: &str) {
        let text = self.text();
        assert!(text.contains(needle), "{needle:?} missing in {text}");
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A request to the admin listener on a fresh connection: status and body. Bounded:
/// panics if the listener does not answer within a minute.
pub async fn admin_request(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
) -> (StatusCode, String) {
    tokio::time::timeout(Duration::from_secs(60), async {
        let tcp = TcpStream::connect(addr).await.expect("connect to admin");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .expect("admin handshake");
        let driver = tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string())
            .body(Empty::<Bytes>::new())
            .expect("request");
        let response = sender.send_request(request).await.expect("admin answer");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        driver.abort();
        (status, String::from_utf8_lossy(&body).into_owned())
    })
    .await
    .expect("admin answered in time")
}

/// The value of the sample with exactly this name and label text in a metrics scrape
/// (`rtp_connections_open `, `rtp_calls_total{route="r",...}`), if present.
pub fn sample_value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// `GET /metrics` from the admin listener, which must answer 200.
pub async fn scrape_metrics(addr: SocketAddr) -> String {
    let (status, body) = admin_request(addr, http::Method::GET, "/metrics").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The record ids of an answer of `contract`, read by a full parse (which also proves
/// the XML is well-formed).
pub fn record_ids(contract: &str, body: &[u8]) -> Vec<String> {
    let contract = rtp_proxy::contracts::lookup(contract).expect("an NPÖ contract");
    rtp_proxy::response::scan::scan_document(contract, body)
        .unwrap_or_else(|e| panic!("the answer is not well-formed: {e}"))
        .into_iter()
        .map(|r| r.summary.id.unwrap_or_default())
        .collect()
}

/// A request to send.
pub struct Call<'a> {
    pub path: &'a str,
    pub content_type: &'a str,
    pub headers: Vec<(&'a str, String)>,
    pub body: Vec<u8>,
}

impl<'a> Call<'a> {
    pub fn soap(body: Vec<u8>) -> Self {
        Call {
            path: "/vp/clinicalprocess/healthcond/description/GetCareDocumentation/2/rivtabp21",
            content_type: "text/xml; charset=UTF-8",
            headers: Vec::new(),
            body,
        }
    }

    pub fn header(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn request(self, host: SocketAddr) -> Request<Full<Bytes>> {
        let mut builder = Request::post(self.path)
            .header("host", host.to_string())
            .header("content-type", self.content_type);
        for (name, value) in self.headers {
            builder = builder.header(name, value);
        }
        builder
            .body(Full::new(Bytes::from(self.body)))
            .expect("request")
    }
}

const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Sends one call over mutual TLS on a fresh connection.
pub async fn post_tls(
    addr: SocketAddr,
    tls: &TlsConnector,
    call: Call<'_>,
) -> anyhow::Result<Reply> {
    tokio::time::timeout(CALL_TIMEOUT, async {
        let tcp = TcpStream::connect(addr).await?;
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1")?;
        let stream = tls.connect(name, tcp).await?;
        exchange(TokioIo::new(stream), call.request(addr)).await
    })
    .await?
}

/// A kept-alive mutual-TLS connection: calls one after another on the same connection,
/// and the certificate the server presented in the handshake.
pub struct TlsSession {
    addr: SocketAddr,
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
    /// The server's certificate (DER), as presented when the connection was opened.
    pub served: Vec<u8>,
}

impl TlsSession {
    pub async fn open(addr: SocketAddr, tls: &TlsConnector) -> anyhow::Result<TlsSession> {
        tokio::time::timeout(CALL_TIMEOUT, async {
            let tcp = TcpStream::connect(addr).await?;
            let name = rustls_pki_types::ServerName::try_from("127.0.0.1")?;
            let stream = tls.connect(name, tcp).await?;
            let served = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|cert| cert.as_ref().to_vec())
                .ok_or_else(|| anyhow::anyhow!("the server presented no certificate"))?;
            let (sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            let driver = tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok(TlsSession {
                addr,
                sender,
                driver,
                served,
            })
        })
        .await?
    }

    /// Sends a call on this connection and reads the whole answer.
    pub async fn send(&mut self, call: Call<'_>) -> anyhow::Result<Reply> {
        tokio::time::timeout(CALL_TIMEOUT, async {
            self.sender.ready().await?;
            let response = self.sender.send_request(call.request(self.addr)).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        })
        .await?
    }
}

impl Drop for TlsSession {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// The first certificate of a PEM file, as DER: what a server presenting it sends.
pub fn certificate_der(pem: &Path) -> Vec<u8> {
    rtp_proxy::tls::load_certs(pem).expect("a PEM certificate")[0]
        .as_ref()
        .to_vec()
}

/// Sends one call over plain HTTP on a fresh connection.
pub async fn post_plain(addr: SocketAddr, call: Call<'_>) -> anyhow::Result<Reply> {
    tokio::time::timeout(CALL_TIMEOUT, async {
        let tcp = TcpStream::connect(addr).await?;
        exchange(TokioIo::new(tcp), call.request(addr)).await
    })
    .await?
}

async fn exchange<I>(io: TokioIo<I>, request: Request<Full<Bytes>>) -> anyhow::Result<Reply>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    driver.abort();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// Every contract the tests call: the twelve NPÖ contracts and those of samples 04 and 05.
pub fn contracts() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = ntjp_sim::NPO_CONTRACTS
        .iter()
        .map(|c| c.namespace)
        .collect();
    all.push("urn:riv:itintegration:engagementindex:FindContentResponder:1");
    all.push("urn:riv:ehr:accesscontrol:AssertCareEngagementResponder:1");
    all
}

/// Logical addresses the simulator answers specially: after `latency_ms` 3000 ("slow")
/// or by resetting the connection mid-answer ("resetting").
pub const SLOW_ADDRESS: &str = "SLOW-1";
pub const RESETTING_ADDRESS: &str = "RESET-1";

/// The simulator's config for the tests: HTTPS with the test PKI, every contract routed
/// (TAK-style, exact contract) to a producer, the proxy authorised everywhere.
pub fn sim_toml(pki: &Pki, extra: &str) -> String {
    let mut text = format!(
        r#"
instance_id = "ntjp-test"
name = "NTJP-SIM"
samples_dir = "{samples}"
allow_osc_senders = ["{proxy}"]
reject_unapproved_osc = true

[https]
listen = "127.0.0.1:0"
cert = "{dir}/ntjp.crt"
key = "{dir}/ntjp.key"
client_ca = "{dir}/ca.crt"

[[producer]]
name = "source-system"
records = 2

[[producer]]
name = "slow"
latency_ms = 3000

[[producer]]
name = "resetting"
fault = "reset"
{extra}
"#,
        samples = samples_dir().display(),
        proxy = ids::PROXY,
        dir = pki.dir.path().display(),
    );
    for contract in contracts() {
        for (address, producer) in [
            (SLOW_ADDRESS, "slow"),
            (RESETTING_ADDRESS, "resetting"),
            ("*", "source-system"),
        ] {
            text.push_str(&format!(
                "\n[[route]]\ncontract = \"{contract}\"\nlogical_address = \"{address}\"\nproducer = \"{producer}\"\n"
            ));
        }
        text.push_str(&format!(
            "\n[[permission]]\nsender = \"{}\"\ncontract = \"{contract}\"\nlogical_address = \"*\"\n",
            ids::PROXY
        ));
    }
    text
}

/// The contract of the block service the proxy calls (GetBlocksForPatient 2).
pub const BLOCKS_NS: &str = "urn:riv:ehr:blocking:querying:GetBlocksForPatientResponder:2";
/// The contract of the log service the access log is delivered to (StoreLog 1).
pub const STORE_LOG_NS: &str = "urn:riv:ehr:log:store:StoreLogResponder:1";

/// For [`sim_toml`]'s `extra`: the simulator's block service (`block-service`) and log
/// service (`log-service`), routed for every logical address, and the proxy allowed to
/// call both. A test's own route for a specific logical address wins over these (the
/// simulator, like TAK, routes an exact address before `*`).
pub fn sim_services() -> String {
    format!(
        r#"
[[producer]]
name = "block-service"
kind = "blocks"

[[producer]]
name = "log-service"
kind = "log"

[[route]]
contract = "{BLOCKS_NS}"
logical_address = "*"
producer = "block-service"

[[route]]
contract = "{STORE_LOG_NS}"
logical_address = "*"
producer = "log-service"

[[permission]]
sender = "{proxy}"
contract = "{BLOCKS_NS}"
logical_address = "*"

[[permission]]
sender = "{proxy}"
contract = "{STORE_LOG_NS}"
logical_address = "*"
"#,
        proxy = ids::PROXY,
    )
}

/// For [`proxy_toml`]'s `extra`: the route `records` running the shipped block-check
/// policy, with the test consumer trusted to assert its user.
pub fn block_check_route() -> String {
    format!(
        r#"
[[route]]
name = "records"

[[route.policy]]
file = "{wasm}"
settings = {{ trusted_actor_assertors = ["{consumer}"] }}
"#,
        wasm = shipped_policy_wasm("block-check").display(),
        consumer = ids::CONSUMER,
    )
}

/// The proxy's config for the tests: both listeners, one upstream (`upstream_url`).
pub fn proxy_toml(pki: &Pki, upstream_url: &str, extra: &str) -> String {
    format!(
        r#"
[proxy]
instance_id = "rtp-test"
default_upstream = "ntjp"
max_request_bytes = 65536
body_read_timeout_ms = 2000
shutdown_grace_ms = 2000

[https]
listen = "127.0.0.1:0"
cert = "{dir}/proxy.crt"
key = "{dir}/proxy.key"
client_ca = "{dir}/ca.crt"

[http]
listen = "127.0.0.1:0"
allowed_sources = ["127.0.0.1"]

[headers]
osc_trusted_senders = ["{aggregator}"]

[policies]
cache_dir = "{cache}"
# Tests run an unoptimised wasmtime on a busy 2-core machine: a wider deadline than the
# production default keeps a slow but well-behaved call from counting as a runaway.
deadline_ms = 50

[[upstream]]
name = "ntjp"
url = "{upstream_url}"
client_cert = "{dir}/proxy.crt"
client_key = "{dir}/proxy.key"
ca = "{dir}/ca.crt"
response_timeout_ms = 1500
body_idle_timeout_ms = 1500
{extra}
"#,
        dir = pki.dir.path().display(),
        aggregator = ids::AGGREGATOR,
        cache = policy_cache_dir().display(),
    )
}

/// The proxy in front of the simulator (NTjP), both on loopback with a fresh test PKI.
pub struct Stack {
    pub pki: Pki,
    pub sim: ntjp_sim::RunningSim,
    pub proxy: RunningProxy,
}

impl Stack {
    /// Starts both; `routes` is the proxy's `[[route]]` section.
    pub async fn start(routes: &str) -> Stack {
        let pki = Pki::generate();
        let sim = start_sim(&sim_toml(&pki, "")).await;
        let url = format!(
            "https://127.0.0.1:{}",
            sim.https_addr().expect("sim https").port()
        );
        let proxy = start_proxy(&proxy_toml(&pki, &url, routes)).await;
        Stack { pki, sim, proxy }
    }
}

/// Starts the proxy from config text.
pub async fn start_proxy(text: &str) -> RunningProxy {
    let config = Config::parse(text, Path::new("test.toml"), Path::new("."))
        .unwrap_or_else(|e| panic!("test config: {e}"));
    rtp_proxy::server::start(&config)
        .await
        .expect("proxy starts")
}

/// Starts the simulator from config text.
pub async fn start_sim(text: &str) -> ntjp_sim::RunningSim {
    let config = ntjp_sim::SimConfig::from_toml_str(text, ".")
        .unwrap_or_else(|e| panic!("simulator config: {e}"));
    ntjp_sim::start(config).await.expect("simulator starts")
}

/// A producer stand-in over plain HTTP that answers every call with fixed bytes and
/// records what it received: for checks that bodies pass byte for byte.
pub struct StaticProducer {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl StaticProducer {
    pub async fn start(status: StatusCode, body: Vec<u8>) -> StaticProducer {
        StaticProducer::start_delayed(status, body, Duration::ZERO).await
    }

    /// Like [`StaticProducer::start`], answering each call only `delay` after it has
    /// been received: a slow producer.
    pub async fn start_delayed(
        status: StatusCode,
        body: Vec<u8>,
        delay: Duration,
    ) -> StaticProducer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let body = Bytes::from(body);
        let log = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let body = body.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let body = body.clone();
                        let log = log.clone();
                        async move {
                            let (parts, incoming) = req.into_parts();
                            let bytes = incoming
                                .collect()
                                .await
                                .map(|c| c.to_bytes())
                                .unwrap_or_default();
                            log.lock().unwrap().push((parts.headers, bytes));
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            let mut response = Response::new(Full::new(body));
                            *response.status_mut() = status;
                            response
                                .headers_mut()
                                .insert("content-type", "text/xml; charset=UTF-8".parse().unwrap());
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        StaticProducer {
            addr,
            received,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn received(&self) -> Vec<(HeaderMap, Bytes)> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for StaticProducer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The workspace's target directory (honouring `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target"))
}

/// Builds the test policy for wasm32-wasip2 into `target` (with a build stamp, if given)
/// and returns the component file.
fn build_test_policy(target: &Path, stamp: Option<&str>) -> PathBuf {
    let mut cargo = std::process::Command::new(env!("CARGO"));
    cargo
        .current_dir(workspace_dir())
        .env("CARGO_TARGET_DIR", target)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            "rtp-test-policy",
        ]);
    match stamp {
        Some(stamp) => cargo.env("RTP_TEST_POLICY_STAMP", stamp),
        None => cargo.env_remove("RTP_TEST_POLICY_STAMP"),
    };
    let status = cargo.status().expect("run cargo build for the test policy");
    assert!(
        status.success(),
        "building the test policy failed (is the wasm32-wasip2 target installed?)"
    );
    let wasm = target.join("wasm32-wasip2/release/rtp_test_policy.wasm");
    assert!(wasm.is_file(), "{} missing after the build", wasm.display());
    wasm
}

/// The test policy (`plugins/test-policy`) built as a wasm32-wasip2 component, once per
/// test binary. Real compiled components, as the host will run them in production.
pub fn test_policy_wasm() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| build_test_policy(&target_dir(), None))
        .clone()
}

/// Two builds of the test policy that differ only in their build stamp (`a` and `b`),
/// for reload tests. Built in their own target directory so they never overwrite the
/// component other tests are running.
pub fn test_policy_builds() -> (PathBuf, PathBuf) {
    static BUILT: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let build_dir = target_dir().join("test-policy-builds");
            let keep = |stamp: &str| {
                let kept = build_dir.join(format!("test-policy-{stamp}.wasm"));
                std::fs::copy(build_test_policy(&build_dir, Some(stamp)), &kept)
                    .expect("keep the build");
                kept
            };
            (keep("a"), keep("b"))
        })
        .clone()
}

/// Sandbox limits for tests that drive a policy directly: the production defaults with
/// the wider deadline of `proxy_toml` (an unoptimised wasmtime on a busy machine).
pub fn test_limits() -> rtp_proxy::policy::loaded::Limits {
    rtp_proxy::policy::loaded::Limits {
        deadline_ticks: 50,
        ..Default::default()
    }
}

/// Compiled policies shared by the tests (the host's on-disk cache).
pub fn policy_cache_dir() -> PathBuf {
    target_dir().join("test-policy-cache")
}

/// A `[[route]]` for everything with the test policy in the given behaviour.
pub fn route_with_test_policy(behaviour: &str, failure_mode: &str) -> String {
    format!(
        r#"
[[route]]
name = "with-policy"

[[route.policy]]
file = "{wasm}"
failure_mode = "{failure_mode}"
settings = {{ behaviour = "{behaviour}", version = "v1" }}
"#,
        wasm = test_policy_wasm().display()
    )
}

/// A port on loopback with nothing listening (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr")
}

/// A shipped policy (`policies/<dir>`, package `rtp-policy-<dir>`) built as a
/// wasm32-wasip2 component, once per test binary and policy.
pub fn shipped_policy_wasm(dir: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, wasm)) = built.iter().find(|(d, _)| d == dir) {
        return wasm.clone();
    }
    let package = format!("rtp-policy-{dir}");
    let status = std::process::Command::new(env!("CARGO"))
        .current_dir(workspace_dir())
        .env("CARGO_TARGET_DIR", target_dir())
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            &package,
        ])
        .status()
        .expect("run cargo build for a policy");
    assert!(status.success(), "building {package} failed");
    let wasm = target_dir().join(format!(
        "wasm32-wasip2/release/{}.wasm",
        package.replace('-', "_")
    ));
    assert!(wasm.is_file(), "{} missing after the build", wasm.display());
    built.push((dir.to_owned(), wasm.clone()));
    wasm
}

/// target/<profile>/deps/<test>-<hash> → target/<profile>: where cargo put the binaries
/// of the profile the tests were built with.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_owned()
}

/// A free port on loopback (bound, then released), for a proxy started as its own
/// process, whose address the test must know in advance.
pub async fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr").port()
}

/// The `rtp-proxy` binary of this test build's profile, built once per test binary so
/// it is never stale (cargo builds another package's binaries for its tests only under
/// `--workspace`).
pub fn rtp_proxy_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let mut cargo = std::process::Command::new(env!("CARGO"));
            cargo.current_dir(workspace_dir()).args([
                "build",
                "--bin",
                "rtp-proxy",
                "-p",
                "rtp-proxy",
            ]);
            if profile_dir().file_name().is_some_and(|p| p == "release") {
                cargo.arg("--release");
            }
            assert!(
                cargo.status().expect("run cargo build").success(),
                "building rtp-proxy failed"
            );
            profile_dir().join("rtp-proxy")
        })
        .clone()
}

/// Starts `rtp-proxy run --config FILE` as its own process ([`rtp_proxy_binary`]);
/// waits (bounded) until it listens on `port`. Its stderr is appended to FILE with the
/// extension `log`, for post-mortems.
pub async fn spawn_proxy(config: &Path, port: u16) -> std::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.with_extension("log"))
        .expect("open the proxy's log file");
    let mut child = std::process::Command::new(rtp_proxy_binary())
        .args(["run", "--config"])
        .arg(config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start rtp-proxy");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "rtp-proxy did not listen in time"
        );
        assert!(
            child.try_wait().expect("poll rtp-proxy").is_none(),
            "rtp-proxy exited early (see {})",
            config.with_extension("log").display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child
}

/// Captures the process's tracing output as JSON lines in a shared buffer, for tests
/// that check log lines. One global subscriber per test binary: the filter of the
/// first call holds for the binary (`EnvFilter` syntax, e.g. `rtp_proxy::mirror=info`).
pub fn capture_logs(filter: &str) -> &'static Arc<Mutex<Vec<u8>>> {
    static BUFFER: std::sync::OnceLock<Arc<Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    BUFFER.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = LogCapture(buffer.clone());
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("one subscriber per test binary");
        buffer
    })
}

#[derive(Clone)]
struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
