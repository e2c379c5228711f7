//! The path of one call: identity, header rules, inspection, routing, relay, response.
//! Each step that refuses the call answers with a RIV-TA fault and the upstream is never
//! called. The order follows NTjP (`reference/ntjp-vp.md` §3.7) so callers get the same
//! error for the same input.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Incoming};
use ipnet::IpNet;
use tracing::{debug, info, warn};

use crate::config::{millis, parse_source, Config};
use crate::contracts;
use crate::decision::{Decision, DecisionLog, DecisionLogError};
use crate::edit::{self, NewPeriod};
use crate::fault::{Fault, FaultCode};
use crate::headers::{self, ForwardedIdentity};
use crate::inspect::{inspect, InspectError};
use crate::metrics::{self, InFlight, Label, Metrics, Outcome, UpstreamMetrics};
use crate::policy::loaded::Limits as PolicyLimits;
use crate::policy::{
    wit, AccessContext, HostServices, LoadedPolicy, Pipeline, PolicyEngine, PolicyReloader,
    PolicySlot, RequestDecision,
};
use crate::response::ResponseFilter;
use crate::routing::Router;
use crate::upstream::{BoxError, IdleTimeoutBody, RelayError, Upstream};

pub type ResponseBody = BoxBody<Bytes, BoxError>;

/// Who is calling, as established by the listener the call came in on.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Mutual TLS: the HSA-id from the verified client certificate, or why there is none.
    Tls { sender: Result<String, String> },
    /// Plain HTTP from this source address.
    Plain { peer: SocketAddr },
}

/// Request limits applied before a body is inspected.
#[derive(Debug, Clone)]
struct RequestLimits {
    max_request_bytes: u64,
    body_read_timeout: Duration,
}

/// The proxy's request handler: everything a call needs, built once from the config.
#[derive(Debug)]
pub struct Relay {
    instance_id: String,
    limits: RequestLimits,
    osc_trusted: Vec<String>,
    plain_allowed: Vec<IpNet>,
    plain_anonymous_sender: Option<String>,
    router: Router,
    /// One client per configured upstream (the router's routes share them).
    upstreams: Vec<Arc<Upstream>>,
    /// Present when any route has policies.
    reloader: Option<Arc<PolicyReloader>>,
    /// The capabilities lent to policies; the access log among them is where their
    /// entries are made durable.
    services: HostServices,
    response_batch_bytes: u64,
    max_record_bytes: u64,
    metrics: Arc<Metrics>,
    /// Route names as metric labels, made once.
    route_labels: HashMap<String, Label>,
    /// Each upstream's metric handles, looked up once.
    upstream_metrics: HashMap<String, UpstreamMetrics>,
    default_upstream: Option<UpstreamTarget>,
    /// Where each call's decision-log line is made.
    decisions: DecisionLog,
}

/// Where an upstream listens: what the admin's readiness check connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTarget {
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl UpstreamTarget {
    fn of(config: &Config, name: &str) -> Option<UpstreamTarget> {
        let uri: http::Uri = config.upstream(name)?.url.parse().ok()?;
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        Some(UpstreamTarget {
            name: name.to_owned(),
            host: uri
                .host()?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
        })
    }
}

/// What the relay learnt of a call on its way, for the call's metric labels.
#[derive(Default)]
struct Seen {
    route: Option<Label>,
    contract: Option<Label>,
    /// The code of the upstream's own SOAP fault, when one was passed through.
    upstream_fault: Option<Label>,
    /// The call's decision-log entry, written when the call is done.
    decision: Decision,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("upstream {name}: {source}")]
    Upstream {
        name: String,
        source: crate::tls::TlsError,
    },
    #[error("route {route}, policy {index}: {source}")]
    Policy {
        route: String,
        index: usize,
        source: crate::policy::LoadError,
    },
    #[error(transparent)]
    DecisionLog(#[from] DecisionLogError),
}

impl Relay {
    /// Builds the handler: upstream clients, and every route's policies compiled (on
    /// blocking threads) and initialised.
    /// Without the block service and access log (those hold a cache and a journal
    /// lock, made once per process by `server::start`): for `check` and tests.
    pub async fn build(config: &Config) -> Result<Relay, BuildError> {
        Relay::build_with(config, HostServices::default()).await
    }

    /// Builds the handler with capabilities made earlier: a config reload keeps the
    /// block-service cache and the access-log journal of the running proxy.
    pub async fn build_with(config: &Config, services: HostServices) -> Result<Relay, BuildError> {
        Relay::build_with_metrics(config, services, Metrics::detached()).await
    }

    /// [`Relay::build_with`], counting calls, policy verdicts and upstream use in
    /// `metrics` (the running proxy's; a config reload keeps them).
    pub async fn build_with_metrics(
        config: &Config,
        services: HostServices,
        metrics: Arc<Metrics>,
    ) -> Result<Relay, BuildError> {
        let (pipelines, reloader) = match load_pipelines(config, &services, &metrics).await? {
            Some((pipelines, reloader)) => (pipelines, Some(Arc::new(reloader))),
            None => (Vec::new(), None),
        };
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| {
                Upstream::new(u, config)
                    .map(Arc::new)
                    .map_err(|source| BuildError::Upstream {
                        name: u.name.clone(),
                        source,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Relay {
            instance_id: config.proxy.instance_id.clone(),
            limits: RequestLimits {
                max_request_bytes: config.proxy.max_request_bytes,
                body_read_timeout: millis(config.proxy.body_read_timeout_ms),
            },
            osc_trusted: config.headers.osc_trusted_senders.clone(),
            plain_allowed: config
                .http
                .iter()
                .flat_map(|h| h.allowed_sources.iter())
                .filter_map(|s| parse_source(s))
                .collect(),
            plain_anonymous_sender: config
                .http
                .as_ref()
                .and_then(|h| h.anonymous_sender.clone()),
            router: Router::new(config, &upstreams, pipelines, &metrics),
            upstreams,
            reloader,
            services,
            response_batch_bytes: config.policies.response_batch_bytes.max(1),
            max_record_bytes: config.policies.max_record_bytes,
            route_labels: config
                .routes
                .iter()
                .map(|r| (r.name.clone(), Label::shared(Arc::from(r.name.as_str()))))
                .collect(),
            upstream_metrics: config
                .upstreams
                .iter()
                .map(|u| (u.name.clone(), metrics.upstream(&u.name)))
                .collect(),
            default_upstream: config
                .proxy
                .default_upstream
                .as_deref()
                .and_then(|name| UpstreamTarget::of(config, name)),
            metrics,
            decisions: DecisionLog::from_config(config)?,
        })
    }

    /// The clients of the configured upstreams, in config order.
    pub fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }

    /// The `[proxy] default_upstream`'s address, when there is one.
    pub fn default_upstream(&self) -> Option<&UpstreamTarget> {
        self.default_upstream.as_ref()
    }

    /// How many policies the routes hold in all.
    pub fn policy_count(&self) -> usize {
        self.router.policy_count()
    }

    /// Reloads policies whose files changed; None when no route has policies.
    pub fn reloader(&self) -> Option<Arc<PolicyReloader>> {
        self.reloader.clone()
    }

    /// Handles one call; never fails: every problem becomes a fault response.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        caller: &Caller,
    ) -> Response<ResponseBody> {
        let started = Instant::now();
        let correlation_id = headers::correlation_id(request.headers());
        let mut seen = Seen {
            decision: self.decisions.start(&correlation_id),
            ..Seen::default()
        };
        let (response, outcome, code) = match self
            .relay(request, caller, &correlation_id, &mut seen)
            .await
        {
            Ok(response) => match seen.upstream_fault.take() {
                Some(code) => (response, Outcome::UpstreamFault, code),
                None => (response, Outcome::Relayed, Label::fixed("")),
            },
            Err(fault) => {
                info!(
                    correlation_id = %correlation_id,
                    code = %fault.code,
                    detail = %fault.detail,
                    "call refused"
                );
                let code = self.metrics.code_label(&fault.code);
                (
                    self.fault_response(&fault, &correlation_id),
                    Outcome::Fault,
                    code,
                )
            }
        };
        seen.decision.outcome(outcome, code.as_str());
        self.metrics.call_finished(
            seen.route.as_ref().unwrap_or(&metrics::NONE),
            seen.contract.as_ref().unwrap_or(&metrics::NONE),
            outcome,
            &code,
            started.elapsed(),
        );
        response
    }

    /// A fault as NTjP sends it: HTTP 500, SOAP 1.1, the correlation id returned.
    pub fn fault_response(&self, fault: &Fault, correlation_id: &str) -> Response<ResponseBody> {
        let body = fault.to_soap(&self.instance_id);
        let mut response = Response::new(full(body));
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/xml; charset=UTF-8"),
        );
        headers::set(h, headers::CORRELATION_ID, correlation_id);
        response
    }

    async fn relay(
        &self,
        request: Request<Incoming>,
        caller: &Caller,
        correlation_id: &str,
        seen: &mut Seen,
    ) -> Result<Response<ResponseBody>, Fault> {
        let sender = self.sender(caller, request.headers())?;
        seen.decision.sender(&sender);
        let routing_history =
            headers::routing_history(request.headers(), &sender, &self.instance_id)?;
        if request.method() != Method::POST {
            return Err(Fault::new(
                FaultCode::Rtp003,
                format!(
                    "{} is not accepted; RIV-TA calls are SOAP POSTs",
                    request.method()
                ),
            ));
        }
        check_content_type(request.headers())?;

        let (parts, body) = request.into_parts();
        let body = self.read_body(body).await?;
        let call = inspect(&body).map_err(inspect_fault)?;
        seen.decision.call(&call);
        seen.contract = Some(self.metrics.contract_label(&call.contract));

        let original_consumer = headers::original_consumer(&parts.headers, &sender, |s| {
            self.osc_trusted.iter().any(|t| t.eq_ignore_ascii_case(s))
        })?;
        let route = self
            .router
            .find(&call.contract, &call.logical_address, &sender)
            .ok_or_else(|| {
                let whitespace = if call.logical_address.trim() != call.logical_address {
                    ". Whitespace detected in incoming request!"
                } else {
                    ""
                };
                Fault::new(
                    FaultCode::Vp004,
                    format!(
                        "No route for serviceNamespace: {}, receiverId: {}{whitespace}",
                        call.contract, call.logical_address
                    ),
                )
            })?;
        seen.route = self.route_labels.get(&route.name).cloned();
        seen.decision.route(&route.name);

        let upstream = &route.upstream;
        let identity = ForwardedIdentity {
            correlation_id: correlation_id.to_owned(),
            original_consumer,
            routing_history,
            vp_sender_id: upstream.vp_sender_id.clone(),
        };
        let mut out_headers = headers::upstream_request_headers(&parts.headers, &identity);
        let aob = parts.headers.get(headers::ACTING_ON_BEHALF_OF);
        let aob = aob.and_then(|v| v.to_str().ok());
        seen.decision.identity(&identity.original_consumer, aob);
        // The call as the request policies left it, kept for the response phase.
        let mut policy_view = None;
        let body = if route.pipeline.is_empty() {
            body
        } else {
            let mut view = policy_call(&call, &route.name, &sender, &identity, &parts.headers);
            let mut trace = Vec::new();
            let decision = route
                .pipeline
                .on_request_traced(&mut view, &mut trace)
                .await;
            seen.decision.policies(trace);
            seen.decision
                .identity(&view.original_consumer, view.acting_on_behalf_of.as_deref());
            policy_view = Some(view);
            match decision {
                RequestDecision::Reject(fault) => return Err(fault),
                RequestDecision::Proceed(edits) => {
                    apply_edits(edits, &call, &sender, &mut out_headers, body)?
                }
            }
        };
        let path = route
            .path
            .as_deref()
            .or_else(|| parts.uri.path_and_query().map(|pq| pq.as_str()))
            .unwrap_or("/");
        let uri = upstream.uri_for(path).map_err(relay_fault)?;
        // A mirrored route sends the same request to its mirror too, never awaited here.
        let mirrored = route
            .mirror
            .as_ref()
            .and_then(|m| m.start(path, &out_headers, &body, correlation_id, &call.contract));

        let upstream_metrics = self.upstream_metrics.get(&upstream.name);
        let in_flight = upstream_metrics.map(UpstreamMetrics::start);
        let started = Instant::now();
        let sent = upstream
            .send(uri, out_headers, body, route.response_timeout)
            .await;
        let elapsed = started.elapsed();
        if let Some(m) = upstream_metrics {
            m.answered(elapsed);
        }
        let response = sent.map_err(relay_fault)?;
        seen.decision.upstream(response.status().as_u16(), elapsed);
        let prt = elapsed.as_millis();
        // Per-call success lines are debug: at info they would cost a write per call.
        debug!(
            correlation_id = %correlation_id,
            sender = %sender,
            contract = %call.contract,
            logical_address = %call.logical_address,
            route = %route.name,
            status = response.status().as_u16(),
            upstream_ms = prt as u64,
            "call relayed"
        );
        let filter = policy_view
            .filter(|_| route.pipeline.wants_response())
            .map(|view| self.response_filter(&route.pipeline, view, &call.contract, seen));
        let response = response.map(|body| InFlightBody {
            inner: body,
            _in_flight: in_flight,
        });
        let answer = self
            .response(response, upstream, correlation_id, prt, filter, seen)
            .await;
        // The mirror compares with what the caller gets, observed as it streams.
        crate::mirror::observe(mirrored, elapsed, answer)
    }

    /// The response phase of a call whose pipeline has response policies.
    fn response_filter(
        &self,
        pipeline: &Pipeline,
        view: wit::Call,
        contract: &str,
        seen: &Seen,
    ) -> ResponseFilter {
        let contract = contracts::lookup(contract).unwrap_or(&contracts::UNKNOWN_CONTRACT);
        ResponseFilter {
            pipeline: pipeline.clone(),
            access_context: AccessContext {
                contract: view.contract.clone(),
                information_type: contract.information_type.to_owned(),
                correlation_id: view.correlation_id.clone(),
            },
            call: view,
            contract,
            batch_bytes: self.response_batch_bytes,
            max_record_bytes: self.max_record_bytes,
            access_log: self.services.access_log.clone(),
            decision: seen.decision.clone(),
        }
    }

    /// The caller's HSA-id, from its certificate or, on the plain listener from an
    /// allowed source, from `x-vp-sender-id` (as NTjP does for internal calls).
    fn sender(&self, caller: &Caller, headers: &HeaderMap) -> Result<String, Fault> {
        match caller {
            Caller::Tls { sender } => sender
                .clone()
                .map_err(|why| Fault::new(FaultCode::Vp002, why)),
            Caller::Plain { peer } => {
                let ip = peer.ip();
                if !self.plain_allowed.iter().any(|net| net.contains(&ip)) {
                    return Err(Fault::new(
                        FaultCode::Vp011,
                        format!("source address {ip} is not allowed on the plain-HTTP listener"),
                    ));
                }
                headers
                    .get(headers::VP_SENDER_ID)
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned)
                    .or_else(|| self.plain_anonymous_sender.clone())
                    .ok_or_else(|| {
                        Fault::new(
                            FaultCode::Vp002,
                            "no x-vp-sender-id header on a plain-HTTP call",
                        )
                    })
            }
        }
    }

    async fn read_body(&self, body: Incoming) -> Result<Bytes, Fault> {
        let limit = self.limits.max_request_bytes;
        let too_large = || {
            Fault::new(
                FaultCode::Rtp001,
                format!("the request body exceeds the limit of {limit} bytes"),
            )
        };
        // Refuse early when the declared length is already over the limit.
        if body.size_hint().lower() > limit {
            return Err(too_large());
        }
        let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
        match tokio::time::timeout(self.limits.body_read_timeout, limited.collect()).await {
            Err(_) => Err(Fault::new(
                FaultCode::Rtp004,
                format!(
                    "the request body was not received within {:?}",
                    self.limits.body_read_timeout
                ),
            )),
            Ok(Err(e)) if e.is::<LengthLimitError>() => Err(too_large()),
            Ok(Err(e)) => Err(Fault::new(
                FaultCode::Vp015,
                format!("the request body could not be read: {e}"),
            )),
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
        }
    }

    /// Producer answers per NTjP's matrix (`reference/ntjp-vp.md` §3.10): 2xx streams
    /// through untouched; a SOAP fault passes with its status; anything else is VP009.
    async fn response(
        &self,
        response: Response<InFlightBody<Incoming>>,
        upstream: &Upstream,
        correlation_id: &str,
        prt_ms: u128,
        filter: Option<ResponseFilter>,
        seen: &mut Seen,
    ) -> Result<Response<ResponseBody>, Fault> {
        let (mut parts, body) = response.into_parts();
        headers::downstream_response_headers(&mut parts.headers, correlation_id, prt_ms);
        if parts.status.is_success() {
            if body.is_end_stream() || body.size_hint().upper() == Some(0) {
                return Err(Fault::new(
                    FaultCode::Vp009,
                    format!(
                        "upstream {} answered status {} with an empty body",
                        upstream.name,
                        parts.status.as_u16()
                    ),
                ));
            }
            let streamed = IdleTimeoutBody::new(body, upstream.body_idle_timeout);
            let Some(filter) = filter else {
                return Ok(Response::from_parts(parts, BoxBody::new(streamed)));
            };
            let filtered = filter.start(streamed).await?;
            // Dropped records change the length: an answer decided whole goes out with
            // its new length, a longer one chunked.
            match filtered.exact_len() {
                Some(len) => {
                    parts
                        .headers
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                }
                None => {
                    parts.headers.remove(header::CONTENT_LENGTH);
                }
            }
            return Ok(Response::from_parts(parts, BoxBody::new(filtered)));
        }
        // Error answers are small; read them (bounded) to see whether they are SOAP faults.
        let limited = Limited::new(
            body,
            usize::try_from(self.limits.max_request_bytes).unwrap_or(usize::MAX),
        );
        let read = tokio::time::timeout(upstream.body_idle_timeout, limited.collect()).await;
        let bytes = match read {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) => {
                return Err(Fault::new(
                    FaultCode::Vp009,
                    format!(
                        "reading the error answer of upstream {} failed: {e}",
                        upstream.name
                    ),
                ))
            }
            Err(_) => {
                return Err(Fault::new(
                    FaultCode::Vp009,
                    format!(
                        "upstream {} did not finish its error answer in time",
                        upstream.name
                    ),
                ))
            }
        };
        if crate::fault::is_soap_fault(&bytes) {
            warn!(correlation_id = %correlation_id, status = parts.status.as_u16(), "producer fault passed through");
            seen.upstream_fault = Some(
                crate::fault::fault_code_token(&bytes)
                    .map(|token| self.metrics.code_token_label(token))
                    .unwrap_or(metrics::OTHER),
            );
            parts.headers.remove(header::CONTENT_LENGTH);
            return Ok(Response::from_parts(parts, full(bytes)));
        }
        Err(Fault::new(
            FaultCode::Vp009,
            format!(
                "upstream {} answered HTTP status {} without a SOAP fault. VP_PRODUCER_EXCEPTION_HTTP_STATUS={}",
                upstream.name,
                parts.status.as_u16(),
                parts.status.as_u16()
            ),
        ))
    }
}

/// Loads every route's policies (one engine for all of them), with the reloader that
/// replaces them later. The first failure is returned, naming the route, the policy's
/// position and file, and the cause. None when no route has policies.
async fn load_pipelines(
    config: &Config,
    services: &HostServices,
    metrics: &Arc<Metrics>,
) -> Result<Option<(Vec<Pipeline>, PolicyReloader)>, BuildError> {
    if config.routes.iter().all(|r| r.policies.is_empty()) {
        return Ok(None);
    }
    let sandbox = &config.policies;
    let engine = PolicyEngine::new(
        sandbox.cache_dir.as_ref().map(|d| config.resolve(d)),
        services.clone(),
    )
    .map_err(|source| BuildError::Policy {
        route: "-".into(),
        index: 0,
        source,
    })?;
    let limits = PolicyLimits {
        deadline_ticks: sandbox.deadline_ms,
        memory_bytes: sandbox.memory_limit_bytes,
        max_calls_per_instance: sandbox.max_calls_per_instance,
        crash_loop_limit: sandbox.crash_loop_limit,
    };
    let mut pipelines = Vec::with_capacity(config.routes.len());
    let mut all_slots = Vec::new();
    for route in &config.routes {
        let mut slots = Vec::with_capacity(route.policies.len());
        for (index, policy) in route.policies.iter().enumerate() {
            let settings = serde_json::to_string(&policy.settings).unwrap_or_else(|_| "{}".into());
            let loaded = LoadedPolicy::load(
                &engine,
                &config.resolve(&policy.file),
                settings.clone(),
                policy.failure_mode,
                limits,
            )
            .await
            .map_err(|source| BuildError::Policy {
                route: route.name.clone(),
                index,
                source,
            })?;
            let slot = Arc::new(
                PolicySlot::new(
                    route.name.clone(),
                    index,
                    loaded,
                    settings,
                    policy.failure_mode,
                    limits,
                )
                .with_dry_run(policy.dry_run),
            );
            all_slots.push(slot.clone());
            slots.push(slot);
        }
        pipelines.push(Pipeline::with_metrics(slots, metrics.clone()));
    }
    Ok(Some((pipelines, PolicyReloader::new(engine, all_slots))))
}

/// What policies see of a call.
pub(crate) fn policy_call(
    call: &crate::inspect::Call,
    route: &str,
    sender: &str,
    identity: &ForwardedIdentity,
    headers: &HeaderMap,
) -> wit::Call {
    wit::Call {
        route: route.to_owned(),
        contract: call.contract.clone(),
        operation: call.operation.clone(),
        logical_address: call.logical_address.clone(),
        sender: sender.to_owned(),
        original_consumer: identity.original_consumer.clone(),
        acting_on_behalf_of: headers
            .get(headers::ACTING_ON_BEHALF_OF)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        patient: call.patient.as_ref().map(|p| wit::Patient {
            id: p.id.clone(),
            kind: p.kind.clone(),
        }),
        period: call.period.as_ref().map(|p| wit::Period {
            start: p.start.clone(),
            end: p.end.clone(),
        }),
        period_element: call.period.as_ref().map(|p| p.element.clone()),
        source_system: call.source_system.clone(),
        correlation_id: identity.correlation_id.clone(),
        headers: headers
            .iter()
            .filter(|(name, _)| selected_for_policies(name.as_str()))
            .filter_map(|(name, value)| {
                Some(wit::Header {
                    name: name.as_str().to_owned(),
                    value: value.to_str().ok()?.to_owned(),
                })
            })
            .collect(),
    }
}

/// The request headers policies see: the RIV-TA and platform headers and SOAPAction.
/// Copying every header into every policy's memory on every call would cost more than
/// the policies' own work; `x-vp-*` (NTjP-internal) is never shown.
fn selected_for_policies(name: &str) -> bool {
    name.starts_with("x-rivta-")
        || name.starts_with("x-skltp-")
        || name.starts_with("x-rtp-")
        || name == "soapaction"
}

/// Headers the host manages itself: a policy's edits to them are ignored.
fn host_managed(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.starts_with("x-vp-")
        || [
            "host",
            "content-length",
            "transfer-encoding",
            "connection",
            "te",
            "upgrade",
        ]
        .contains(&name.as_str())
}

/// Applies the pipeline's edits to the outgoing headers and body.
fn apply_edits(
    edits: Vec<wit::Edit>,
    call: &crate::inspect::Call,
    sender: &str,
    out_headers: &mut HeaderMap,
    body: Bytes,
) -> Result<Bytes, Fault> {
    let correlation_id = out_headers
        .get(headers::CORRELATION_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut period = None;
    for edit in edits {
        match edit {
            // OSC comes from what was authenticated: a policy may only bring it back to
            // the authenticated sender (dropping a caller's assertion), never invent one.
            wit::Edit::SetHeader(h) if h.name.eq_ignore_ascii_case(headers::ORIGINAL_CONSUMER) => {
                if h.value == sender {
                    headers::set(out_headers, headers::ORIGINAL_CONSUMER, &h.value);
                } else {
                    warn!(correlation_id = %correlation_id, "a policy's OSC other than the authenticated sender is ignored");
                }
            }
            wit::Edit::RemoveHeader(name)
                if name.eq_ignore_ascii_case(headers::ORIGINAL_CONSUMER) =>
            {
                warn!(correlation_id = %correlation_id, "a policy cannot remove the OSC header; set it to the sender instead");
            }
            wit::Edit::SetHeader(h) if !host_managed(&h.name) => {
                let name = http::HeaderName::from_bytes(h.name.as_bytes());
                let value = HeaderValue::from_str(&h.value);
                match (name, value) {
                    (Ok(name), Ok(value)) => {
                        out_headers.insert(name, value);
                    }
                    _ => {
                        return Err(Fault::new(
                            FaultCode::Rtp190,
                            format!("a policy set an invalid header {:?}", h.name),
                        ))
                    }
                }
            }
            wit::Edit::RemoveHeader(name) if !host_managed(&name) => {
                out_headers.remove(name.as_str());
            }
            wit::Edit::SetHeader(wit::Header { name, .. }) | wit::Edit::RemoveHeader(name) => {
                warn!(header = %name, "a policy's edit of a host-managed header is ignored");
            }
            wit::Edit::SetPeriod(p) => period = Some(p),
            // Notes are written in the call's decision-log line (`crate::decision`).
            wit::Edit::Note(note) => {
                debug!(correlation_id = %correlation_id, note = %note.name, value = %note.value, "policy note");
            }
        }
    }
    match period {
        None => Ok(body),
        Some(p) => {
            let new = NewPeriod {
                start: p.start,
                end: p.end,
            };
            edit::set_period(&body, call, &new).map_err(|e| {
                Fault::new(
                    FaultCode::Rtp190,
                    format!("a policy's period edit could not be applied: {e}"),
                )
            })
        }
    }
}

fn full(bytes: Bytes) -> ResponseBody {
    BoxBody::new(Full::new(bytes).map_err(|never| match never {}))
}

/// A response body that counts as in flight to its upstream until it is finished or
/// dropped.
struct InFlightBody<B> {
    inner: B,
    _in_flight: Option<InFlight>,
}

impl<B: Body + Unpin> Body for InFlightBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// SOAP 1.1 is `text/xml`; SOAP 1.2 (`application/soap+xml`) and anything else is refused.
fn check_content_type(headers: &HeaderMap) -> Result<(), Fault> {
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media_type = value.split(';').next().unwrap_or("").trim();
    if media_type.eq_ignore_ascii_case("text/xml") {
        Ok(())
    } else {
        let shown = if media_type.is_empty() {
            "none"
        } else {
            media_type
        };
        Err(Fault::new(
            FaultCode::Rtp002,
            format!("content type {shown}; RIV-TA SOAP 1.1 requires text/xml"),
        ))
    }
}

fn inspect_fault(e: InspectError) -> Fault {
    let code = match e {
        InspectError::NoLogicalAddress => FaultCode::Vp003,
        _ => FaultCode::Vp015,
    };
    Fault::new(code, e.to_string())
}

fn relay_fault(e: RelayError) -> Fault {
    let detail = match &e {
        RelayError::Timeout { .. } => {
            format!("Timeout when waiting on response from producer: {e}")
        }
        _ => e.to_string(),
    };
    Fault::new(FaultCode::Vp009, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_see_riv_ta_and_platform_headers_but_never_x_vp() {
        for shown in [
            "x-rivta-original-serviceconsumer-hsaid",
            "x-skltp-correlation-id",
            "x-rtp-actor",
            "soapaction",
        ] {
            assert!(selected_for_policies(shown), "{shown}");
        }
        for hidden in ["x-vp-sender-id", "authorization", "cookie", "host"] {
            assert!(!selected_for_policies(hidden), "{hidden}");
        }
    }

    #[test]
    fn host_managed_headers_are_not_for_policies_to_edit() {
        assert!(host_managed("Content-Length"));
        assert!(host_managed("x-vp-instance-id"));
        assert!(!host_managed("x-rivta-original-serviceconsumer-hsaid"));
    }
}
