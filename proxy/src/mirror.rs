//! Routing variants: a route's calls copied to a second upstream (another platform, or
//! the simulator set up as the other variant) and the two answers compared, so that an
//! operator can see whether "the platform does the block check" and "the consumer does
//! it" give callers the same answers before switching.
//!
//! The primary call is never delayed or changed by this:
//! - the copy is the exact request the primary gets (after the request policies), its
//!   headers cloned and its body shared (`Bytes`), marked with `x-rtp-mirror: 1`;
//! - it is sent from a spawned task nobody on the primary path awaits;
//! - mirror traffic is bounded per route by sampling (`sample_rate`) and a concurrency
//!   cap (`max_concurrent`, taken with `try_acquire`: a call over the cap is not
//!   mirrored and counted as `skipped`, never queued);
//! - the primary's answer, as the caller gets it (after the response policies), is only
//!   observed ([`observe`]): its status is known from its head, its latency is the
//!   upstream's time to that head, and its body is teed as it streams to the caller,
//!   chunk references kept up to [`MAX_COMPARED_BYTES`] (over that, records are not
//!   compared). The mirror's answer is compared as its upstream sent it.
//!
//! The comparison (status, fault code token, record count, record ids, latency) goes to
//! the metrics (`rtp_mirror_calls`, `rtp_mirror_upstream_duration`) and to one log line
//! per mirrored call, target `rtp_proxy::mirror`. Record ids are document ids; patient
//! ids are never logged.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

use crate::config::MirrorConfig;
use crate::contracts::{self, ContractInfo};
use crate::fault::Fault;
use crate::headers;
use crate::metrics::{Label, Metrics, MirrorResult};
use crate::relay::ResponseBody;
use crate::response::scan::scan_document;
use crate::upstream::{BoxError, IdleTimeoutBody, Upstream};

/// The header that marks a mirrored request, so the other side can tell.
pub const MIRROR_HEADER: &str = "x-rtp-mirror";
/// Most bytes of either answer kept for the record comparison.
pub const MAX_COMPARED_BYTES: usize = 4 * 1024 * 1024;
/// Most ids listed per side in the comparison log line.
const MAX_LOGGED_IDS: usize = 20;
/// Sampling works in millionths of a call.
const SAMPLE_SCALE: u64 = 1_000_000;

/// A route's mirror: where copies go, and the bounds on them.
#[derive(Debug)]
pub struct Mirror {
    route: Label,
    upstream: Arc<Upstream>,
    path: Option<String>,
    /// `sample_rate` in millionths.
    step: u64,
    /// Sampling accumulator: a call is mirrored when adding `step` crosses a whole
    /// `SAMPLE_SCALE`, which spreads the sampled calls evenly.
    accumulated: AtomicU64,
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl Mirror {
    pub fn new(
        route: &str,
        config: &MirrorConfig,
        upstream: Arc<Upstream>,
        metrics: Arc<Metrics>,
    ) -> Mirror {
        let rate = config.sample_rate.clamp(0.0, 1.0);
        Mirror {
            route: Label::shared(Arc::from(route)),
            upstream,
            path: config.path.clone(),
            // In 0..=SAMPLE_SCALE after the clamp.
            step: (rate * SAMPLE_SCALE as f64).round() as u64,
            accumulated: AtomicU64::new(0),
            permits: Arc::new(Semaphore::new(
                config.max_concurrent.min(Semaphore::MAX_PERMITS),
            )),
            metrics,
        }
    }

    fn sampled(&self) -> bool {
        if self.step >= SAMPLE_SCALE {
            return true;
        }
        if self.step == 0 {
            return false;
        }
        let before = self.accumulated.fetch_add(self.step, Ordering::Relaxed);
        before.wrapping_add(self.step) / SAMPLE_SCALE != before / SAMPLE_SCALE
    }

    /// Called with the exact request about to go to the primary (`path` is the
    /// primary's path and query). When the call is sampled and under the cap, sends
    /// the copy from a spawned task and returns the handle the primary's answer is
    /// reported through; otherwise None, at once.
    pub fn start(
        &self,
        path: &str,
        request_headers: &HeaderMap,
        body: &Bytes,
        correlation_id: &str,
        contract: &str,
    ) -> Option<Mirrored> {
        if !self.sampled() {
            return None;
        }
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.metrics.mirror_call(&self.route, MirrorResult::Skipped);
            return None;
        };
        let uri = match self.upstream.uri_for(self.path.as_deref().unwrap_or(path)) {
            Ok(uri) => uri,
            Err(e) => {
                warn!(target: "rtp_proxy::mirror", correlation_id = %correlation_id, route = %self.route.as_str(), error = %e, "mirror URI");
                self.metrics
                    .mirror_call(&self.route, MirrorResult::MirrorFailed);
                return None;
            }
        };
        let mut out = request_headers.clone();
        // The mirror upstream's own sender id, never the primary's.
        out.remove(headers::VP_SENDER_ID);
        if let Some(id) = &self.upstream.vp_sender_id {
            headers::set(&mut out, headers::VP_SENDER_ID, id);
        }
        out.insert(MIRROR_HEADER, HeaderValue::from_static("1"));
        let (report, primary) = oneshot::channel();
        let job = Job {
            route: self.route.clone(),
            upstream: self.upstream.clone(),
            metrics: self.metrics.clone(),
            correlation_id: correlation_id.to_owned(),
            contract: contract.to_owned(),
        };
        tokio::spawn(job.run(uri, out, body.clone(), primary, permit));
        Some(Mirrored { report })
    }
}

/// A mirrored call's handle on the primary path. Dropped without [`Mirrored::answered`]
/// (the primary failed before its answer), the comparison sees no primary answer.
pub struct Mirrored {
    report: oneshot::Sender<PrimaryAnswer>,
}

impl Mirrored {
    /// The primary's answer has its head: its status and the upstream's time to it.
    /// The returned tee observes the body as it streams.
    fn answered(self, status: StatusCode, latency: Duration) -> Tee {
        Tee {
            report: Some(self.report),
            status,
            latency,
            chunks: Vec::new(),
            len: 0,
            over_cap: false,
        }
    }
}

/// Hands a mirrored call's primary answer (what the caller gets) to the comparison
/// and returns it unchanged: a fault at once, a response with its body teed as it
/// streams. `latency`: the primary upstream's time to its response head.
pub fn observe(
    mirrored: Option<Mirrored>,
    latency: Duration,
    answer: Result<Response<ResponseBody>, Fault>,
) -> Result<Response<ResponseBody>, Fault> {
    let Some(mirrored) = mirrored else {
        return answer;
    };
    match answer {
        Ok(response) => {
            let tee = mirrored.answered(response.status(), latency);
            Ok(response.map(|inner| BoxBody::new(TeeBody { inner, tee })))
        }
        Err(fault) => {
            // The proxy's own fault (VP009, a policy's replace): no body to read.
            let _ = mirrored.report.send(PrimaryAnswer {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                latency,
                body: None,
                fault: Some(fault.code.to_string()),
            });
            Err(fault)
        }
    }
}

/// The primary's body with a [`Tee`] watching it.
struct TeeBody {
    inner: ResponseBody,
    tee: Tee,
}

impl Body for TeeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(frame) = &polled {
            this.tee.observe(frame, this.inner.is_end_stream());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What the comparison learns of the primary's answer.
struct PrimaryAnswer {
    status: StatusCode,
    latency: Duration,
    /// The whole body; None when it was over the cap or did not finish.
    body: Option<Bytes>,
    /// The proxy's own fault code, when the caller got one instead of the answer.
    fault: Option<String>,
}

/// Observes the primary's response body frame by frame without holding it up: data
/// chunks are kept by reference (up to [`MAX_COMPARED_BYTES`]) and handed to the
/// comparison when the stream ends, fails, or is dropped.
struct Tee {
    report: Option<oneshot::Sender<PrimaryAnswer>>,
    status: StatusCode,
    latency: Duration,
    chunks: Vec<Bytes>,
    len: usize,
    over_cap: bool,
}

impl Tee {
    /// A frame the body just yielded; `end_of_stream`: the body says nothing follows.
    fn observe<E>(&mut self, frame: &Option<Result<Frame<Bytes>, E>>, end_of_stream: bool) {
        match frame {
            None => self.finish(true),
            Some(Err(_)) => self.finish(false),
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    if !self.over_cap {
                        if self.len + data.len() > MAX_COMPARED_BYTES {
                            self.over_cap = true;
                            self.chunks = Vec::new();
                        } else {
                            self.len += data.len();
                            self.chunks.push(data.clone());
                        }
                    }
                }
                if end_of_stream {
                    self.finish(true);
                }
            }
        }
    }

    fn finish(&mut self, complete: bool) {
        let Some(report) = self.report.take() else {
            return;
        };
        let chunks = std::mem::take(&mut self.chunks);
        let body = (complete && !self.over_cap).then(|| concat(chunks, self.len));
        // The comparison may be gone (its task ended); nothing to do then.
        let _ = report.send(PrimaryAnswer {
            status: self.status,
            latency: self.latency,
            body,
            fault: None,
        });
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        self.finish(false);
    }
}

fn concat(chunks: Vec<Bytes>, len: usize) -> Bytes {
    if chunks.len() == 1 {
        return chunks.into_iter().next().unwrap_or_default();
    }
    let mut all = Vec::with_capacity(len);
    for chunk in chunks {
        all.extend_from_slice(&chunk);
    }
    Bytes::from(all)
}

/// One mirrored call, run in its own task.
struct Job {
    route: Label,
    upstream: Arc<Upstream>,
    metrics: Arc<Metrics>,
    correlation_id: String,
    contract: String,
}

impl Job {
    async fn run(
        self,
        uri: Uri,
        request_headers: HeaderMap,
        body: Bytes,
        primary: oneshot::Receiver<PrimaryAnswer>,
        // Held until the comparison is done: bounds the mirror's calls and buffers.
        _permit: OwnedSemaphorePermit,
    ) {
        let started = Instant::now();
        let timeout = self.upstream.response_timeout;
        let mirror = match self
            .upstream
            .send(uri, request_headers, body, timeout)
            .await
        {
            Err(e) => Err(e.to_string()),
            Ok(response) => {
                let latency = started.elapsed();
                let status = response.status();
                let body = self.read(response.into_body()).await;
                Ok((status, latency, body))
            }
        };
        let primary = primary.await.ok();
        self.compare(primary, mirror);
    }

    /// The mirror's body, bounded in size and time; None when over either.
    async fn read(&self, body: Incoming) -> Option<Bytes> {
        let body = Limited::new(
            IdleTimeoutBody::new(body, self.upstream.body_idle_timeout),
            MAX_COMPARED_BYTES,
        );
        match tokio::time::timeout(self.upstream.response_timeout, body.collect()).await {
            Ok(Ok(collected)) => Some(collected.to_bytes()),
            _ => None,
        }
    }

    fn compare(
        &self,
        primary: Option<PrimaryAnswer>,
        mirror: Result<(StatusCode, Duration, Option<Bytes>), String>,
    ) {
        let contract = contracts::lookup(&self.contract);
        let p = match &primary {
            Some(a) => {
                let mut side = Side::of(contract, a.status, a.latency, a.body.as_deref());
                if a.fault.is_some() {
                    side.fault = a.fault.clone();
                }
                side
            }
            None => Side::default(),
        };
        let (m, mirror_error) = match &mirror {
            Ok((status, latency, body)) => {
                (Side::of(contract, *status, *latency, body.as_deref()), None)
            }
            Err(e) => (Side::default(), Some(e.as_str())),
        };
        let result = if mirror_error.is_some() {
            MirrorResult::MirrorFailed
        } else if p.same_as(&m) {
            MirrorResult::Same
        } else {
            MirrorResult::Different
        };
        self.metrics.mirror_call(&self.route, result);
        if let Some(latency) = p.latency {
            self.metrics.mirror_latency(&self.route, true, latency);
        }
        if let Some(latency) = m.latency {
            self.metrics.mirror_latency(&self.route, false, latency);
        }
        let (only_in_primary, only_in_mirror) = match (&p.records, &m.records) {
            (Records::Scanned { ids: a, .. }, Records::Scanned { ids: b, .. }) => {
                (id_list(a.difference(b)), id_list(b.difference(a)))
            }
            _ => (String::from("[]"), String::from("[]")),
        };
        info!(
            target: "rtp_proxy::mirror",
            correlation_id = %self.correlation_id,
            route = %self.route.as_str(),
            contract = %self.contract,
            verdict = verdict_word(result),
            primary_status = p.status,
            primary_fault = p.fault.as_deref(),
            primary_records = p.records.count(),
            primary_ms = p.latency.map(|l| l.as_millis() as u64),
            mirror_status = m.status,
            mirror_fault = m.fault.as_deref(),
            mirror_records = m.records.count(),
            mirror_ms = m.latency.map(|l| l.as_millis() as u64),
            mirror_error = mirror_error,
            only_in_primary = %only_in_primary,
            only_in_mirror = %only_in_mirror,
            "mirror comparison"
        );
    }
}

fn verdict_word(result: MirrorResult) -> &'static str {
    match result {
        MirrorResult::Same => "same",
        MirrorResult::Different => "different",
        MirrorResult::MirrorFailed => "mirror_failed",
        MirrorResult::Skipped => "skipped",
    }
}

/// Up to [`MAX_LOGGED_IDS`] ids as a JSON array.
fn id_list<'a>(ids: impl Iterator<Item = &'a String>) -> String {
    let ids: Vec<&String> = ids.take(MAX_LOGGED_IDS).collect();
    serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into())
}

/// The records of an answer, as far as they could be read.
#[derive(Debug, Default, PartialEq, Eq)]
enum Records {
    /// Not compared: no answer, not 2xx, body over the cap or unfinished, or a
    /// contract whose records the proxy does not know.
    #[default]
    Unknown,
    /// A 2xx answer that is not a readable document.
    Unscannable,
    Scanned {
        count: usize,
        ids: BTreeSet<String>,
    },
}

impl Records {
    fn count(&self) -> Option<u64> {
        match self {
            Records::Scanned { count, .. } => Some(*count as u64),
            _ => None,
        }
    }
}

/// One side's answer, summarised for the comparison.
#[derive(Debug, Default)]
struct Side {
    /// None: no answer.
    status: Option<u16>,
    /// The code token of a SOAP fault's faultstring.
    fault: Option<String>,
    records: Records,
    latency: Option<Duration>,
}

impl Side {
    fn of(
        contract: Option<&'static ContractInfo>,
        status: StatusCode,
        latency: Duration,
        body: Option<&[u8]>,
    ) -> Side {
        let mut side = Side {
            status: Some(status.as_u16()),
            latency: Some(latency),
            ..Side::default()
        };
        let Some(body) = body else {
            return side;
        };
        if crate::fault::is_soap_fault(body) {
            side.fault = Some(
                crate::fault::fault_code_token(body)
                    .unwrap_or_default()
                    .to_owned(),
            );
        } else if status.is_success() {
            if let Some(contract) = contract {
                side.records = match scan_document(contract, body) {
                    Ok(records) => Records::Scanned {
                        count: records.len(),
                        ids: records.into_iter().filter_map(|r| r.summary.id).collect(),
                    },
                    Err(_) => Records::Unscannable,
                };
            }
        }
        side
    }

    /// Same status and fault code, and, where both sides' records are known, the
    /// same count and ids. Latency never makes a difference.
    fn same_as(&self, other: &Side) -> bool {
        self.status == other.status
            && self.fault == other.fault
            && (self.records == Records::Unknown
                || other.records == Records::Unknown
                || self.records == other.records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::SOAP11_NS;

    const CD2: &str =
        "urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:2";

    fn answer(ids: &[&str]) -> Vec<u8> {
        let mut body = format!(
            r#"<s:Envelope xmlns:s="{SOAP11_NS}"><s:Body><r:GetCareDocumentationResponse xmlns:r="{CD2}" xmlns:c="urn:riv:clinicalprocess:healthcond:description:2">"#
        );
        for id in ids {
            body.push_str(&format!(
                "<r:careDocumentation><c:careDocumentationHeader><c:documentId>{id}</c:documentId></c:careDocumentationHeader></r:careDocumentation>"
            ));
        }
        body.push_str("<r:result><c:resultCode>OK</c:resultCode></r:result></r:GetCareDocumentationResponse></s:Body></s:Envelope>");
        body.into_bytes()
    }

    fn side(status: u16, body: &[u8]) -> Side {
        Side::of(
            contracts::lookup(CD2),
            StatusCode::from_u16(status).unwrap(),
            Duration::from_millis(5),
            Some(body),
        )
    }

    #[test]
    fn answers_compare_by_status_fault_count_and_ids() {
        let a = side(200, &answer(&["d1", "d2"]));
        assert_eq!(a.records.count(), Some(2));
        assert!(a.same_as(&side(200, &answer(&["d2", "d1"]))));
        assert!(!a.same_as(&side(200, &answer(&["d1"]))));
        assert!(!a.same_as(&side(200, &answer(&["d1", "d3"]))));
        assert!(!a.same_as(&side(200, b"<not xml")));
        let fault = format!(
            r#"<s:Envelope xmlns:s="{SOAP11_NS}"><s:Body><s:Fault><faultcode>s:Server</faultcode><faultstring>VP007 [x] no</faultstring></s:Fault></s:Body></s:Envelope>"#
        );
        let f = side(500, fault.as_bytes());
        assert_eq!(f.fault.as_deref(), Some("VP007"));
        assert!(!a.same_as(&f));
        assert!(f.same_as(&side(500, fault.as_bytes())));
        // Records unknown on one side (over the cap): status and fault decide.
        let unknown = Side::of(contracts::lookup(CD2), StatusCode::OK, Duration::ZERO, None);
        assert!(a.same_as(&unknown));
        assert!(!a.same_as(&Side::default()));
    }

    #[test]
    fn the_tee_reports_a_complete_body_once_and_an_unfinished_one_without_records() {
        let (report, mut rx) = oneshot::channel();
        let mut tee = Mirrored { report }.answered(StatusCode::OK, Duration::ZERO);
        let frame: Option<Result<Frame<Bytes>, ()>> = Some(Ok(Frame::data(Bytes::from("ab"))));
        tee.observe(&frame, false);
        let frame: Option<Result<Frame<Bytes>, ()>> = Some(Ok(Frame::data(Bytes::from("cd"))));
        tee.observe(&frame, true);
        let got = rx.try_recv().expect("reported at the end of the stream");
        assert_eq!(got.body.as_deref(), Some(&b"abcd"[..]));
        drop(tee);

        let (report, mut rx) = oneshot::channel();
        let mut tee = Mirrored { report }.answered(StatusCode::OK, Duration::ZERO);
        let frame: Option<Result<Frame<Bytes>, ()>> = Some(Ok(Frame::data(Bytes::from("ab"))));
        tee.observe(&frame, false);
        drop(tee);
        let got = rx.try_recv().expect("reported when dropped");
        assert!(got.body.is_none());
    }

    #[test]
    fn sampling_spreads_the_share_of_calls_evenly() {
        let upstream = crate::config::Config::parse(
            "[proxy]\ninstance_id = \"t\"\n[http]\nlisten = \"127.0.0.1:0\"\nallowed_sources = [\"127.0.0.1\"]\n[[upstream]]\nname = \"u\"\nurl = \"http://127.0.0.1:1\"\n[[route]]\nname = \"r\"\nupstream = \"u\"\n",
            std::path::Path::new("t.toml"),
            std::path::Path::new("."),
        )
        .unwrap();
        let u = Arc::new(Upstream::new(&upstream.upstreams[0], &upstream).unwrap());
        let config = |rate| MirrorConfig {
            upstream: "u".into(),
            sample_rate: rate,
            max_concurrent: 1,
            path: None,
        };
        for (rate, expected) in [(0.0, 0), (0.25, 25), (0.5, 50), (1.0, 100)] {
            let m = Mirror::new("r", &config(rate), u.clone(), Metrics::detached());
            let n = (0..100).filter(|_| m.sampled()).count();
            assert_eq!(n, expected, "rate {rate}");
        }
    }
}
