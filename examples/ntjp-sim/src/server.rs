//! Listeners and per-call processing in VP's order (ntjp-vp.md 3.7):
//! sender id (VP002/VP011) → routing history (VP014) → payload (VP015) →
//! original consumer (VP013) → logical address (VP003) → route (VP004) →
//! permission (VP007) → producer.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::config::{FaultMode, ProducerConfig, SimConfig, TIMEOUT_HANG};
use crate::producers::Producers;
use crate::recorder::{RecordedCall, Recorder};
use crate::tak;
use crate::vp::{VpCode, VpFault, CONTENT_TYPE_XML};
use crate::xml::parse_payload;

/// Header names used by the platform.
pub mod headers {
    pub const CORRELATION_ID: &str = "x-skltp-correlation-id";
    pub const ROUTING_HISTORY: &str = "x-rivta-routing-history";
    pub const ORIGINAL_CONSUMER: &str = "x-rivta-original-serviceconsumer-hsaid";
    pub const SENDER_ID: &str = "x-vp-sender-id";
    pub const PRODUCER_RESPONSE_TIME: &str = "x-skltp-prt";
}

/// Largest request body accepted; larger bodies get VP015.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// Bound on the TLS handshake so a silent client cannot hold a task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between the partial body and the dropped connection in `reset` mode,
/// long enough for hyper to flush headers and the first chunk.
const RESET_PAUSE: Duration = Duration::from_millis(50);

type ResBody = BoxBody<Bytes, std::io::Error>;

/// State shared by all connections.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: SimConfig,
    pub producers: Producers,
    pub recorder: Recorder,
}

/// How the caller reached us.
#[derive(Debug, Clone)]
enum Transport {
    /// mTLS; the sender id from the certificate, if it had a serialNumber.
    Https {
        cert_sender: Option<String>,
    },
    Http,
}

#[derive(Debug, Clone)]
struct ConnInfo {
    transport: Transport,
    peer: SocketAddr,
}

/// Accept loop for one listener (mutual TLS when `acceptor` is given, else plain
/// HTTP); ends when `shutdown` flips.
pub(crate) async fn serve(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            res = listener.accept() => match res {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let shared = shared.clone();
        match acceptor.clone() {
            None => {
                let info = ConnInfo {
                    transport: Transport::Http,
                    peer,
                };
                conns.spawn(serve_connection(stream, info, shared));
            }
            Some(acceptor) => {
                conns.spawn(async move {
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    let tls = match handshake.await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::info!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::info!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let cert_sender = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| crate::tls::sender_id_from_cert(c.as_ref()));
                    let info = ConnInfo {
                        transport: Transport::Https { cert_sender },
                        peer,
                    };
                    serve_connection(tls, info, shared).await;
                });
            }
        }
    }
    conns.shutdown().await;
}

async fn serve_connection<S>(stream: S, info: ConnInfo, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        let info = info.clone();
        async move { Ok::<_, Infallible>(handle(req, &shared, &info).await) }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

fn full(body: impl Into<Bytes>) -> ResBody {
    Full::new(body.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

fn plain(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<ResBody> {
    let mut res = Response::new(full(body));
    *res.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        res.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    res
}

fn set_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
}

async fn handle(req: Request<Incoming>, shared: &Shared, info: &ConnInfo) -> Response<ResBody> {
    let path = req.uri().path().to_string();
    if let Some(api) = path.strip_prefix("/_sim/") {
        return sim_api(req.method(), api, shared);
    }
    let (parts, body) = req.into_parts();
    let mut call = RecordedCall {
        sender_id: None,
        transport: match info.transport {
            Transport::Https { .. } => "https".to_string(),
            Transport::Http => "http".to_string(),
        },
        method: parts.method.to_string(),
        path,
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: Vec::new(),
        contract: None,
        logical_address: None,
        producer: None,
        status: 0,
        fault_code: None,
    };
    let correlation_id = header_str(&parts.headers, headers::CORRELATION_ID)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());

    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => Some(b.to_bytes()),
        Err(e) => {
            tracing::info!(error = %e, "could not read request body");
            None
        }
    };
    let outcome = match body {
        Some(bytes) => {
            call.body = bytes.to_vec();
            vp_pipeline(&parts.headers, &bytes, shared, info, &mut call)
        }
        None => Err(VpFault::new(
            VpCode::Vp015,
            "The request could not be read properly. Body unreadable or too large.",
        )),
    };
    match outcome {
        Err(fault) => {
            tracing::info!(code = fault.code.as_str(), detail = %fault.detail, "VP fault");
            call.fault_code = Some(fault.code.as_str().to_string());
            call.status = 500;
            shared.recorder.record_call(call);
            let mut res = plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                CONTENT_TYPE_XML,
                fault.to_envelope(&shared.config.name),
            );
            set_header(res.headers_mut(), headers::CORRELATION_ID, &correlation_id);
            res
        }
        Ok(routed) => produce(routed, shared, call, &correlation_id).await,
    }
}

/// The result of VP's checks: who called, and which producer answers.
struct Routed<'a> {
    sender: String,
    contract: String,
    logical_address: String,
    routing_history: String,
    producer: &'a ProducerConfig,
}

fn vp_pipeline<'a>(
    headers_in: &HeaderMap,
    body: &[u8],
    shared: &'a Shared,
    info: &ConnInfo,
    call: &mut RecordedCall,
) -> Result<Routed<'a>, VpFault> {
    let cfg = &shared.config;
    // 0. Sender id.
    let sender = match &info.transport {
        Transport::Https { cert_sender } => cert_sender.clone().ok_or_else(|| {
            VpFault::new(
                VpCode::Vp002,
                "No sender ID (SERIALNUMBER) found in certificate.",
            )
        })?,
        Transport::Http => {
            let ip = info.peer.ip().to_string();
            let whitelist = cfg
                .http
                .as_ref()
                .map(|h| h.ip_whitelist.as_slice())
                .unwrap_or_default();
            // VP semantics: prefix match, empty list allows nobody.
            if !whitelist
                .iter()
                .any(|w| !w.trim().is_empty() && ip.starts_with(w.trim()))
            {
                return Err(VpFault::new(
                    VpCode::Vp011,
                    format!("Caller was not on the white list of accepted IP-addresses. IP-address: {ip}. HTTP header that caused checking: none"),
                ));
            }
            header_str(headers_in, headers::SENDER_ID)
                .map(|s| s.trim().to_string())
                .ok_or_else(|| {
                    VpFault::new(
                        VpCode::Vp002,
                        format!("No sender id found in http header {}", headers::SENDER_ID),
                    )
                })?
        }
    };
    call.sender_id = Some(sender.clone());

    // Routing history (loop protection).
    let routing_history = match header_str(headers_in, headers::ROUTING_HISTORY) {
        Some(h) => {
            if h.split('#').any(|p| p.trim() == cfg.instance_id) {
                return Err(VpFault::new(VpCode::Vp014, ""));
            }
            format!("{h}#{}", cfg.instance_id)
        }
        None => format!("{sender}#{}", cfg.instance_id),
    };

    // 1. Payload.
    let payload = parse_payload(body).map_err(|e| {
        VpFault::new(
            VpCode::Vp015,
            format!("The request could not be read properly. {e}"),
        )
    })?;
    call.contract = payload.contract.clone();
    call.logical_address = payload.logical_address.clone();
    let contract = payload.contract.ok_or_else(|| {
        VpFault::new(
            VpCode::Vp015,
            "The request could not be read properly. The first element in Body has no namespace.",
        )
    })?;

    // 2. Original consumer.
    if header_str(headers_in, headers::ORIGINAL_CONSUMER).is_some()
        && !cfg
            .allow_osc_senders
            .iter()
            .any(|s| s.eq_ignore_ascii_case(&sender))
    {
        if cfg.reject_unapproved_osc {
            return Err(VpFault::new(
                VpCode::Vp013,
                "Sender is not approved to set header x-rivta-original-serviceconsumer-hsaid.",
            ));
        }
        tracing::warn!(%sender, "sender not approved to set {}", headers::ORIGINAL_CONSUMER);
    }

    // 3. Routing, then 4. authorisation (independent lookups, as in VP).
    let logical_address = payload.logical_address.ok_or_else(|| {
        VpFault::new(
            VpCode::Vp003,
            "No receiverId (logical address) found in message header.",
        )
    })?;
    let route = tak::route(&cfg.routes, &contract, &logical_address)?;
    tak::authorise(&cfg.permissions, &sender, &contract, &logical_address)?;
    let producer = cfg
        .producers
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(&route.producer))
        .ok_or_else(|| {
            // Unreachable with a validated config; VP010 would be the closest real code.
            VpFault::new(
                VpCode::Vp009,
                format!("Producer {} is not configured", route.producer),
            )
        })?;
    call.producer = Some(producer.name.clone());
    Ok(Routed {
        sender,
        contract,
        logical_address,
        routing_history,
        producer,
    })
}

/// Lets the simulated producer answer, applying latency and its fault mode.
async fn produce(
    routed: Routed<'_>,
    shared: &Shared,
    mut call: RecordedCall,
    correlation_id: &str,
) -> Response<ResBody> {
    let started = Instant::now();
    let mode = shared.producers.fault_mode(routed.producer);
    let answer = shared.producers.answer(
        &shared.config,
        routed.producer,
        &routed.contract,
        &routed.logical_address,
        &routed.sender,
        &call.body,
    );
    let fault_label = match mode {
        FaultMode::None => None,
        FaultMode::SoapFault => Some("soap-fault"),
        FaultMode::Http503 => Some("http-503"),
        FaultMode::Reset => Some("reset"),
        FaultMode::Timeout => Some("timeout"),
    };
    call.fault_code = fault_label.map(str::to_string);
    call.status = match mode {
        FaultMode::None => answer.status,
        FaultMode::SoapFault => 500,
        FaultMode::Http503 => 503,
        FaultMode::Reset => 200,
        FaultMode::Timeout => 0,
    };
    // A log service that is "down" must not keep the entries it refused.
    if mode == FaultMode::None && !answer.log_entries.is_empty() {
        shared.recorder.record_logs(answer.log_entries.clone());
    }
    // Record before any waiting so that tests see hanging calls too.
    shared.recorder.record_call(call);

    if routed.producer.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(routed.producer.latency_ms)).await;
    }
    let mut res = match mode {
        FaultMode::None => plain(
            StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK),
            CONTENT_TYPE_XML,
            answer.body,
        ),
        FaultMode::SoapFault => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            CONTENT_TYPE_XML,
            shared.producers.soap_fault_body().to_string(),
        ),
        FaultMode::Http503 => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=UTF-8",
            "503 Service Unavailable (simulated producer outage)",
        ),
        FaultMode::Reset => reset_response(answer.body),
        FaultMode::Timeout => {
            tokio::time::sleep(TIMEOUT_HANG).await;
            plain(StatusCode::OK, CONTENT_TYPE_XML, answer.body)
        }
    };
    let prt = started.elapsed().as_millis().to_string();
    let h = res.headers_mut();
    set_header(h, headers::CORRELATION_ID, correlation_id);
    if mode == FaultMode::None || mode == FaultMode::Reset {
        set_header(h, headers::PRODUCER_RESPONSE_TIME, &prt);
        set_header(h, headers::ROUTING_HISTORY, &routed.routing_history);
    }
    res
}

/// Announces the full length, sends the first half, then fails the body so
/// hyper drops the connection mid-response.
fn reset_response(body: String) -> Response<ResBody> {
    let bytes = Bytes::from(body);
    let full_len = bytes.len();
    let half = bytes.slice(..full_len / 2);
    let mut res = Response::new(
        ResetBody {
            chunk: Some(half),
            pause: Box::pin(tokio::time::sleep(RESET_PAUSE)),
        }
        .boxed(),
    );
    let h = res.headers_mut();
    set_header(h, "content-type", CONTENT_TYPE_XML);
    set_header(h, "content-length", &full_len.to_string());
    res
}

struct ResetBody {
    chunk: Option<Bytes>,
    pause: Pin<Box<tokio::time::Sleep>>,
}

impl Body for ResetBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if let Some(chunk) = self.chunk.take() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match self.pause.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "simulated connection reset",
            )))),
        }
    }
}

/// `GET /_sim/calls`, `GET /_sim/logs`, `POST /_sim/reset`.
fn sim_api(method: &Method, api: &str, shared: &Shared) -> Response<ResBody> {
    let json = |value: Result<String, serde_json::Error>| match value {
        Ok(s) => plain(StatusCode::OK, "application/json", s),
        Err(e) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            e.to_string(),
        ),
    };
    match (method, api) {
        (&Method::GET, "calls") => json(serde_json::to_string(&shared.recorder.calls())),
        (&Method::GET, "logs") => json(serde_json::to_string(&shared.recorder.logs())),
        (&Method::POST, "reset") => {
            shared.recorder.reset();
            plain(StatusCode::NO_CONTENT, "text/plain", Bytes::new())
        }
        _ => plain(
            StatusCode::NOT_FOUND,
            "text/plain",
            "unknown simulator endpoint; use GET /_sim/calls, GET /_sim/logs, POST /_sim/reset",
        ),
    }
}
