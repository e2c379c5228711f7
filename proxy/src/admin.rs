//! The admin listener: plain HTTP on its own address (loopback unless the config allows
//! otherwise), for operators and orchestrators.
//!
//! - `GET /healthz`: 200 `ok` while the process serves.
//! - `GET /readyz`: 200 when no policy is crash-looping and the default upstream accepts a
//!   TCP connection (checked with a short timeout, the result reused for a moment so
//!   frequent probes do not each open one); else 503 with the reasons as JSON.
//! - `GET /metrics`: the Prometheus text format (`crate::metrics`).
//! - `GET /policies`: every loaded policy (route, position, name, version, file, content
//!   hash, load time, failure mode, dry run, reloads, last load error, failures in a row)
//!   and the config's reload state, as JSON.
//! - `POST /reload`: the same check as SIGHUP and the file watch (config, policies, TLS
//!   certificates); answers the report.
//!
//! Other paths get 404, a known path with another method 405.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::access_log::AccessJournal;
use crate::config::{millis, AdminConfig};
use crate::policy::ReloadOutcome;
use crate::relay::UpstreamTarget;
use crate::reload::{ConfigOutcome, Reloader};
use crate::tls_reload::TlsOutcome;

/// What the admin endpoints read and trigger.
pub struct Admin {
    reloader: Arc<Reloader>,
    journal: Option<AccessJournal>,
    upstream_check: UpstreamCheck,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

/// The readiness check of the default upstream, its last result kept for a moment.
struct UpstreamCheck {
    timeout: Duration,
    reuse_for: Duration,
    /// A tokio mutex: probes arriving during a check wait for its result.
    last: tokio::sync::Mutex<Option<Checked>>,
}

struct Checked {
    at: Instant,
    target: UpstreamTarget,
    result: Result<(), String>,
}

impl UpstreamCheck {
    async fn reachable(&self, target: &UpstreamTarget) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some(checked) = last.as_ref() {
            if checked.target == *target && checked.at.elapsed() < self.reuse_for {
                return checked.result.clone();
            }
        }
        let connect = TcpStream::connect((target.host.as_str(), target.port));
        let result = match tokio::time::timeout(self.timeout, connect).await {
            Ok(Ok(_connected)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no connection within {:?}", self.timeout)),
        };
        *last = Some(Checked {
            at: Instant::now(),
            target: target.clone(),
            result: result.clone(),
        });
        result
    }
}

impl Admin {
    pub fn new(
        config: &AdminConfig,
        reloader: Arc<Reloader>,
        journal: Option<AccessJournal>,
    ) -> Admin {
        Admin {
            reloader,
            journal,
            upstream_check: UpstreamCheck {
                timeout: millis(config.upstream_check_timeout_ms),
                reuse_for: millis(config.upstream_check_cache_ms),
                last: tokio::sync::Mutex::new(None),
            },
        }
    }

    /// Answers one admin request.
    pub async fn handle(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        let method = request.method();
        match request.uri().path() {
            "/healthz" if method == Method::GET => text(StatusCode::OK, "ok\n"),
            "/readyz" if method == Method::GET => self.readyz().await,
            "/metrics" if method == Method::GET => self.metrics(),
            "/policies" if method == Method::GET => json_response(StatusCode::OK, &self.policies()),
            "/reload" if method == Method::POST => {
                let report = self.reload().await;
                json_response(StatusCode::OK, &report)
            }
            "/healthz" | "/readyz" | "/metrics" | "/policies" => not_allowed("GET"),
            "/reload" => not_allowed("POST"),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    async fn readyz(&self) -> Response<Full<Bytes>> {
        let mut reasons = Vec::new();
        if let Some(policies) = self.reloader.policies() {
            for slot in policies.slots() {
                let policy = slot.current();
                if policy.is_crash_looping() {
                    reasons.push(format!(
                        "policy {} (route {}, position {}) is crash-looping: {} failures in a row",
                        policy.name,
                        slot.route,
                        slot.index,
                        policy.consecutive_failures()
                    ));
                }
            }
        }
        let relay = self.reloader.relay();
        if let Some(target) = relay.default_upstream() {
            if let Err(e) = self.upstream_check.reachable(target).await {
                reasons.push(format!(
                    "default upstream {} ({}:{}) is unreachable: {e}",
                    target.name, target.host, target.port
                ));
            }
        }
        if reasons.is_empty() {
            json_response(StatusCode::OK, &json!({ "ready": true }))
        } else {
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({ "ready": false, "reasons": reasons }),
            )
        }
    }

    fn metrics(&self) -> Response<Full<Bytes>> {
        let metrics = self.reloader.metrics();
        if let Some(journal) = &self.journal {
            metrics.set_access_log(&journal.stats());
        }
        metrics.set_tls_validity(&self.reloader.tls_validity());
        let mut response = Response::new(Full::new(Bytes::from(metrics.render())));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
        );
        response
    }

    /// The loaded policies and the config's reload state.
    pub fn policies(&self) -> Value {
        let policies: Vec<Value> = self
            .reloader
            .policies()
            .map(|reloader| {
                reloader
                    .slots()
                    .iter()
                    .map(|slot| {
                        let policy = slot.current();
                        json!({
                            "route": slot.route,
                            "position": slot.index,
                            "name": policy.name.as_ref(),
                            "version": policy.version,
                            "file": slot.file.display().to_string(),
                            "content_hash": policy.content_hash,
                            "loaded_at": rfc3339(policy.loaded_at),
                            "failure_mode": failure_mode(policy.failure_mode),
                            "dry_run": slot.dry_run(),
                            "reload_count": slot.reload_count(),
                            "last_error": slot.last_error(),
                            "consecutive_failures": policy.consecutive_failures(),
                            "crash_looping": policy.is_crash_looping(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "config_file": self.reloader.config_file().map(|f| f.display().to_string()),
            "config_reload_count": self.reloader.config_reload_count(),
            "last_config_error": self.reloader.last_config_error(),
            "policies": policies,
        })
    }

    /// Runs a reload check and describes what it did.
    pub async fn reload(&self) -> Value {
        let report = self.reloader.reload().await;
        info!(?report, "admin: reload check done");
        let config = match &report.config {
            ConfigOutcome::Unchanged => json!({ "outcome": "unchanged", "error": null }),
            ConfigOutcome::Reloaded => json!({ "outcome": "reloaded", "error": null }),
            ConfigOutcome::Failed(e) => json!({ "outcome": "failed", "error": e }),
        };
        let policies: Vec<Value> = report
            .slots
            .iter()
            .zip(&report.policies)
            .map(|(slot, outcome)| {
                let mut entry = json!({
                    "route": slot.route,
                    "position": slot.index,
                    "file": slot.file.display().to_string(),
                    "name": slot.policy,
                });
                let fields = match outcome {
                    ReloadOutcome::Unchanged => json!({ "outcome": "unchanged" }),
                    ReloadOutcome::Reloaded { from, to } => {
                        json!({ "outcome": "reloaded", "from": from, "to": to })
                    }
                    ReloadOutcome::Failed(e) => json!({ "outcome": "failed", "error": e }),
                };
                if let (Some(entry), Value::Object(fields)) = (entry.as_object_mut(), fields) {
                    entry.extend(fields);
                }
                entry
            })
            .collect();
        let certificates: Vec<Value> = report
            .certificates
            .iter()
            .map(|tls| match &tls.outcome {
                TlsOutcome::Unchanged => json!({ "tls": tls.what, "outcome": "unchanged" }),
                TlsOutcome::Reloaded => json!({ "tls": tls.what, "outcome": "reloaded" }),
                TlsOutcome::Failed(e) => {
                    json!({ "tls": tls.what, "outcome": "failed", "error": e })
                }
            })
            .collect();
        json!({ "config": config, "policies": policies, "certificates": certificates })
    }
}

fn failure_mode(mode: crate::policy::FailureMode) -> &'static str {
    match mode {
        crate::policy::FailureMode::FailClosed => "fail-closed",
        crate::policy::FailureMode::FailOpen => "fail-open",
        crate::policy::FailureMode::Reload => "reload",
    }
}

/// A time as RFC 3339 in UTC, e.g. `2025-03-01T12:00:00.123Z`.
fn rfc3339(at: SystemTime) -> Option<String> {
    let at = jiff::Timestamp::try_from(at).ok()?;
    let at = at.round(jiff::Unit::Millisecond).unwrap_or(at);
    Some(at.to_string())
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json_response(status: StatusCode, value: &Value) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_else(|_| b"{}".to_vec());
    body.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// Serves the admin endpoints until `shutdown` fires; requests in flight then get
/// `grace` to finish.
pub async fn serve(
    listener: TcpListener,
    admin: Arc<Admin>,
    header_read_timeout: Duration,
    grace: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let admin = admin.clone();
                    let watcher = graceful.watcher();
                    tokio::spawn(async move {
                        serve_connection(stream, peer, admin, header_read_timeout, watcher).await;
                    });
                }
                Err(e) => {
                    warn!(error = %e, "admin: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(grace, graceful.shutdown()).await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    admin: Arc<Admin>,
    header_read_timeout: Duration,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let service = service_fn(move |request: Request<Incoming>| {
        let admin = admin.clone();
        async move { Ok::<_, std::convert::Infallible>(admin.handle(&request).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = watcher.watch(connection).await {
        debug!(%peer, error = %e, "admin connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_times_are_rfc3339_utc() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(at).as_deref(), Some("2023-11-14T22:13:20.123Z"));
    }
}
