//! The relay towards an upstream (NTjP, another platform, a producer): a pooled hyper
//! client over rustls, presenting the proxy's own certificate.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderValue;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::{Instant, Sleep};

use crate::config::{millis, Config, UpstreamConfig};
use crate::tls::{self, Revocation, TlsError};
use crate::tls_reload::{RefreshTls, TlsFiles, TlsOutcome, Validity};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One configured upstream with its connection pool.
#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    scheme: Scheme,
    authority: Authority,
    /// Base path the incoming path is appended to (no trailing slash).
    base_path: String,
    /// The pooled client, rebuilt (with a new pool) when its certificate files change.
    client: TlsFiles<HttpsClient>,
    pub response_timeout: Duration,
    pub body_idle_timeout: Duration,
    /// Sent as `x-vp-sender-id` to plain-HTTP upstreams that read it.
    pub vp_sender_id: Option<String>,
}

/// Why a relay failed; each becomes a VP009 fault.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("no response from upstream {upstream} within {timeout:?}")]
    Timeout { upstream: String, timeout: Duration },
    #[error("error contacting upstream {upstream}: {message}")]
    Connect { upstream: String, message: String },
    #[error("invalid upstream URI: {0}")]
    Uri(String),
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// How an upstream's connections are made and pooled.
#[derive(Debug, Clone, Copy)]
struct ClientSettings {
    connect_timeout: Duration,
    max_idle: usize,
    idle_timeout: Duration,
}

/// A pooled client: TLS trusting `ca` (presenting the proxy's `identity`, certificate
/// and key, when given) for an `https` upstream, plain for an `http` one.
fn pooled_client(
    settings: &ClientSettings,
    ca: Option<&Path>,
    identity: Option<&(PathBuf, PathBuf)>,
    revocation: &Revocation,
) -> Result<HttpsClient, TlsError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(settings.connect_timeout));
    http.set_nodelay(true);
    let tls_config = match ca {
        Some(ca) => tls::client_config(
            ca,
            identity.map(|(c, k)| (c.as_path(), k.as_path())),
            revocation,
        )?,
        // A plain-http upstream: the TLS part of the connector is never used.
        None => rustls::ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    };
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(settings.max_idle)
        .pool_idle_timeout(settings.idle_timeout)
        .build(connector))
}

impl Upstream {
    pub fn new(config: &UpstreamConfig, root: &Config) -> Result<Upstream, TlsError> {
        let uri: Uri = config
            .url
            .parse()
            .map_err(|e| TlsError::Config(format!("upstream {} url: {e}", config.name)))?;
        let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTP);
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| TlsError::Config(format!("upstream {} url has no host", config.name)))?;
        let base_path = uri.path().trim_end_matches('/').to_owned();

        let settings = ClientSettings {
            connect_timeout: millis(config.connect_timeout_ms),
            max_idle: config.max_idle_connections,
            idle_timeout: millis(config.idle_connection_timeout_ms),
        };
        let ca = config.ca.as_deref().map(|p| root.resolve(p));
        let identity = config
            .client_cert
            .as_deref()
            .map(|p| root.resolve(p))
            .zip(config.client_key.as_deref().map(|p| root.resolve(p)));
        // The upstream's revocation lists, checked as the listener checks callers' by
        // default: the whole chain, unknown status and stale lists refused.
        let revocation = Revocation {
            crls: config.crls.iter().map(|p| root.resolve(p)).collect(),
            ..Revocation::default()
        };
        // The files the client's TLS config is read from: a change rebuilds the client
        // (see `tls_reload`), so a renewed proxy certificate is used without a restart.
        let files: Vec<PathBuf> = ca
            .iter()
            .cloned()
            .chain(identity.iter().flat_map(|(c, k)| [c.clone(), k.clone()]))
            .chain(revocation.crls.iter().cloned())
            .collect();
        let presented = identity.as_ref().map(|(cert, _)| cert.clone());
        let reported = revocation.clone();
        let client = TlsFiles::load(format!("upstream {}", config.name), files, move || {
            pooled_client(&settings, ca.as_deref(), identity.as_ref(), &revocation)
        })?
        .reporting(presented, &reported);
        Ok(Upstream {
            name: config.name.clone(),
            scheme,
            authority,
            base_path,
            client,
            response_timeout: millis(config.response_timeout_ms),
            body_idle_timeout: millis(config.body_idle_timeout_ms),
            vp_sender_id: config.vp_sender_id.clone(),
        })
    }

    /// The same upstream as the client of one of the proxy's own services (`block
    /// lookups`): its TLS files are reported under that name, apart from the relay's.
    pub fn serving(mut self, service: &str) -> Upstream {
        let what = format!("{service} ({})", self.client.what());
        self.client = self.client.named(what);
        self
    }

    /// The upstream URI for an incoming path (and query), or the route's fixed path.
    pub fn uri_for(&self, path_and_query: &str) -> Result<Uri, RelayError> {
        let joined = format!("{}{}", self.base_path, path_and_query);
        let pq: PathAndQuery = joined
            .parse()
            .map_err(|e| RelayError::Uri(format!("{e}")))?;
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
            .map_err(|e| RelayError::Uri(e.to_string()))
    }

    /// Sends a call and waits, at most `timeout`, for the response headers.
    pub async fn send(
        &self,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Response<Incoming>, RelayError> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        let sent = self.client.with_current(|client| client.request(request));
        match tokio::time::timeout(timeout, sent).await {
            Err(_) => Err(RelayError::Timeout {
                upstream: self.name.clone(),
                timeout,
            }),
            Ok(Err(e)) => Err(RelayError::Connect {
                upstream: self.name.clone(),
                message: error_chain(&e),
            }),
            Ok(Ok(response)) => Ok(response),
        }
    }
}

/// An upstream's client certificate, key and CA are checked with the listener's: a
/// renewed certificate is presented on the connections opened after the check.
impl RefreshTls for Upstream {
    fn what(&self) -> &str {
        self.client.what()
    }

    fn files(&self) -> &[PathBuf] {
        self.client.files()
    }

    fn refresh(&self) -> TlsOutcome {
        self.client.refresh()
    }

    fn validity(&self) -> Validity {
        self.client.validity()
    }
}

/// An error with its causes, for details that say what really happened.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Request headers for a RIV-TA call the proxy makes on its own behalf (block lookups,
/// access-log delivery): SOAP 1.1 content type, the operation's SOAPAction, a fresh
/// correlation id, and `x-vp-sender-id` for a plain-HTTP upstream that reads it.
pub fn service_call_headers(upstream: &Upstream, soap_action: &'static str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml; charset=UTF-8"),
    );
    headers.insert("soapaction", HeaderValue::from_static(soap_action));
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        headers.insert(crate::headers::CORRELATION_ID, id);
    }
    if let Some(sender) = upstream
        .vp_sender_id
        .as_deref()
        .and_then(|s| HeaderValue::from_str(s).ok())
    {
        headers.insert(crate::headers::VP_SENDER_ID, sender);
    }
    headers
}

/// A streamed response body that fails if the upstream pauses longer than `idle`,
/// so a stalled producer cannot hold a caller's connection forever.
pub struct IdleTimeoutBody<B> {
    inner: B,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<B> IdleTimeoutBody<B> {
    pub fn new(inner: B, idle: Duration) -> Self {
        IdleTimeoutBody {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl<B> Body for IdleTimeoutBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = Instant::now() + this.idle;
                this.deadline.as_mut().reset(next);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(format!(
                    "upstream sent nothing for {:?} while streaming the response",
                    this.idle
                )
                .into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
