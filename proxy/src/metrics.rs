//! The proxy's Prometheus metrics: one registry per running proxy, its families created
//! once at start, and a small typed API the relay, the policy pipeline, the reloader and
//! the block service call with one line each.
//!
//! Labels never carry personal data or anything a caller can choose freely: route and
//! upstream names come from the config, policy names from the deployed components, phases,
//! outcomes and verdicts are fixed words, and the two values that come from outside, the
//! service contract (namespace of the request) and fault code tokens (a policy's, or one
//! passed through from the upstream), are checked before use: a known NPÖ contract, or a
//! RIV-TA-shaped namespace without a run of digits a personnummer or HSA-id would need,
//! and a code token of letters then digits; anything else is `other`. The number of such
//! values is capped, so a caller cannot grow the registry either.
//!
//! Hot path: a label lookup (a hash of a few shared strings) and an atomic add; label
//! values are `&'static str` or `Arc<str>` clones, never allocated per call.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry, Unit};

use crate::access_log::JournalStats;
use crate::tls_reload::Validity;

/// The `Content-Type` of the text `/metrics` answers with (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Most distinct contract or code label values taken from outside (beyond the known
/// contracts and the proxy's own codes); later new ones are counted as `other`.
const MAX_DYNAMIC_LABELS: usize = 200;

/// A label value: fixed text, or text shared with the config or a loaded policy.
#[derive(Clone)]
pub struct Label(Repr);

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Label {
    pub const fn fixed(text: &'static str) -> Label {
        Label(Repr::Static(text))
    }

    pub fn shared(text: Arc<str>) -> Label {
        Label(Repr::Shared(text))
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            Repr::Shared(s) => s,
        }
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for Label {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Label {}

impl Hash for Label {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl EncodeLabelValue for Label {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        fmt::Write::write_str(encoder, self.as_str())
    }
}

/// The value of a label that is not known (a call refused before routing).
pub const NONE: Label = Label::fixed("none");
/// A value from outside that failed the checks, or came after the cap.
pub const OTHER: Label = Label::fixed("other");

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream's answer was relayed (2xx).
    Relayed,
    /// The upstream answered with a SOAP fault, passed through to the caller.
    UpstreamFault,
    /// The proxy answered with a fault of its own (the upstream was not called, failed,
    /// or a policy refused).
    Fault,
}

impl Outcome {
    fn label(self) -> Label {
        Label::fixed(match self {
            Outcome::Relayed => "relayed",
            Outcome::UpstreamFault => "upstream_fault",
            Outcome::Fault => "fault",
        })
    }
}

/// The phase a policy was called in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Request,
    Response,
}

impl Phase {
    fn label(self) -> Label {
        Label::fixed(match self {
            Phase::Request => "request",
            Phase::Response => "response",
        })
    }
}

/// What one policy call came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyResult {
    Proceed,
    Reject,
    Keep,
    Drop,
    Replace,
    /// Trapped, ran past its deadline or memory cap (after the failure mode's retry).
    Trap,
    /// Not run: failed too often in a row until reloaded.
    CrashLoop,
}

/// What a block lookup came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockLookup {
    /// A fresh answer from the cache.
    Hit,
    /// Not cached (or expired): the service was asked and answered.
    Miss,
    /// The service failed; a cached answer past its TTL was served.
    Stale,
    /// No answer: the service failed and nothing usable was cached, or bad input.
    Error,
}

/// What a mirrored call came to (see `crate::mirror`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorResult {
    /// Both answers agree on status, fault code, record count and record ids.
    Same,
    /// They differ in at least one of those.
    Different,
    /// The mirror upstream could not be reached or did not answer in time.
    MirrorFailed,
    /// Not mirrored: the route's `max_concurrent` mirrored calls were in flight.
    Skipped,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MirrorLabels {
    route: Label,
    result: Label,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MirrorSide {
    route: Label,
    side: Label,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CallLabels {
    route: Label,
    contract: Label,
    outcome: Label,
    code: Label,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteOutcome {
    route: Label,
    outcome: Label,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UpstreamLabel {
    upstream: Label,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PolicyPhase {
    policy: Label,
    phase: Label,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PolicyVerdict {
    policy: Label,
    phase: Label,
    verdict: Label,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PolicyFailure {
    policy: Label,
    phase: Label,
    reason: Label,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PolicyLabel {
    policy: Label,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: Label,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ListenerLabel {
    listener: Label,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TlsLabel {
    tls: Label,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FileLabel {
    file: Label,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TlsReload {
    tls: Label,
    outcome: Label,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PolicyReload {
    route: Label,
    policy: Label,
    outcome: Label,
}

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

fn call_buckets() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

fn policy_buckets() -> Histogram {
    Histogram::new([
        0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
        0.1,
    ])
}

/// The metric families of one proxy, and the registry they are exposed from.
pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    call_duration: HistogramFamily<RouteOutcome>,
    upstream_duration: HistogramFamily<UpstreamLabel>,
    upstream_in_flight: Family<UpstreamLabel, Gauge>,
    policy_duration: HistogramFamily<PolicyPhase>,
    policy_verdicts: Family<PolicyVerdict, Counter>,
    policy_failures: Family<PolicyFailure, Counter>,
    policy_skips: Family<PolicyPhase, Counter>,
    records_dropped: Family<PolicyLabel, Counter>,
    dry_run_verdicts: Family<PolicyVerdict, Counter>,
    config_reloads: Family<OutcomeLabel, Counter>,
    policy_reloads: Family<PolicyReload, Counter>,
    tls_reloads: Family<TlsReload, Counter>,
    connections_open: Gauge,
    connections_refused: Family<ListenerLabel, Counter>,
    /// The consumer listeners' connection permits and their number, read at scrape.
    connection_limit: OnceLock<(Arc<tokio::sync::Semaphore>, usize)>,
    tls_expiry: Family<TlsLabel, Gauge>,
    crl_next_update: Family<FileLabel, Gauge>,
    block_lookups: Family<OutcomeLabel, Counter>,
    journal_depth: Gauge,
    journal_lag: Gauge<f64, std::sync::atomic::AtomicU64>,
    journal_totals: JournalCounters,
    mirror_calls: Family<MirrorLabels, Counter>,
    mirror_duration: HistogramFamily<MirrorSide>,
    /// Contract and code values taken from outside, shared by every call that uses them.
    dynamic: RwLock<HashMap<Box<str>, Label>>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The access-log journal's running totals, as counters.
#[derive(Debug)]
struct JournalCounters {
    appended: Counter,
    commits: Counter,
    delivered: Counter,
    delivery_failures: Counter,
    skipped_lines: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Registers `metric` under `name` and hands back the handle the proxy updates (the
/// registry keeps a clone; both share the values).
fn registered<M: Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    metric: M,
) -> M {
    match unit {
        Some(unit) => registry.register_with_unit(name, help, unit, metric.clone()),
        None => registry.register(name, help, metric.clone()),
    }
    metric
}

impl Metrics {
    /// A registry with every family registered (empty until used).
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let calls = registered(
            &mut registry,
            "rtp_calls",
            "Calls handled, by route, service contract, outcome (relayed, upstream_fault, fault) and fault code",
            None,
            Family::<CallLabels, Counter>::default(),
        );
        let call_duration = registered(
            &mut registry,
            "rtp_call_duration",
            "Time from a call's arrival until its response head is sent, by route and outcome",
            Some(Unit::Seconds),
            HistogramFamily::<RouteOutcome>::new_with_constructor(call_buckets),
        );
        let upstream_duration = registered(
            &mut registry,
            "rtp_upstream_duration",
            "Time from sending a call upstream until its response head (or the error), by upstream",
            Some(Unit::Seconds),
            HistogramFamily::<UpstreamLabel>::new_with_constructor(call_buckets),
        );
        let upstream_in_flight = registered(
            &mut registry,
            "rtp_upstream_in_flight",
            "Calls relayed to the upstream and not finished (response body still streaming included)",
            None,
            Family::<UpstreamLabel, Gauge>::default(),
        );
        let policy_duration = registered(
            &mut registry,
            "rtp_policy_call_duration",
            "Time of one policy call, by policy and phase",
            Some(Unit::Seconds),
            HistogramFamily::<PolicyPhase>::new_with_constructor(policy_buckets),
        );
        let policy_verdicts = registered(
            &mut registry,
            "rtp_policy_verdicts",
            "Policy verdicts: proceed or reject (request phase), keep, drop or replace (response phase)",
            None,
            Family::<PolicyVerdict, Counter>::default(),
        );
        let policy_failures = registered(
            &mut registry,
            "rtp_policy_failures",
            "Policy calls without a verdict: trap (trap, deadline, memory cap) or crash_loop (not run)",
            None,
            Family::<PolicyFailure, Counter>::default(),
        );
        let policy_skips = registered(
            &mut registry,
            "rtp_policy_fail_open_skips",
            "Failed policy calls skipped because the policy is fail-open",
            None,
            Family::<PolicyPhase, Counter>::default(),
        );
        let records_dropped = registered(
            &mut registry,
            "rtp_policy_records_dropped",
            "Response records left out because a policy dropped them",
            None,
            Family::<PolicyLabel, Counter>::default(),
        );
        let dry_run_verdicts = registered(
            &mut registry,
            "rtp_policy_dry_run_verdicts",
            "Verdicts of dry-run policies, logged and counted but not enforced: proceed, reject, keep, drop, replace, or failed",
            None,
            Family::<PolicyVerdict, Counter>::default(),
        );
        let config_reloads = registered(
            &mut registry,
            "rtp_config_reloads",
            "Config reloads of a changed file: success or failure (the running config stays)",
            None,
            Family::<OutcomeLabel, Counter>::default(),
        );
        let policy_reloads = registered(
            &mut registry,
            "rtp_policy_reloads",
            "Policy reloads of a changed file, by route and policy: success or failure (the running version stays)",
            None,
            Family::<PolicyReload, Counter>::default(),
        );
        let tls_reloads = registered(
            &mut registry,
            "rtp_tls_reloads",
            "Rebuilds of a TLS configuration whose certificate, key, CA or revocation list files changed (the https listener, an upstream's client): success or failure (the certificate in force stays)",
            None,
            Family::<TlsReload, Counter>::default(),
        );
        let tls_expiry = registered(
            &mut registry,
            "rtp_tls_certificate_expiry_timestamp_seconds",
            "notAfter of the certificate each TLS configuration presents (the https listener's, an upstream client's), Unix time: alert well before it",
            None,
            Family::<TlsLabel, Gauge>::default(),
        );
        let crl_next_update = registered(
            &mut registry,
            "rtp_tls_crl_next_update_timestamp_seconds",
            "Earliest nextUpdate of each revocation list file in force, Unix time: past it the list refuses every peer it covers unless allow_expired_crls",
            None,
            Family::<FileLabel, Gauge>::default(),
        );
        let connections_open = registered(
            &mut registry,
            "rtp_connections_open",
            "Consumer connections open now (both listeners; the admin listener's are not counted)",
            None,
            Gauge::default(),
        );
        let connections_refused = registered(
            &mut registry,
            "rtp_connections_refused",
            "Consumer connections closed as soon as accepted because [proxy] max_connections were open",
            None,
            Family::<ListenerLabel, Counter>::default(),
        );
        let block_lookups = registered(
            &mut registry,
            "rtp_block_lookups",
            "Block lookups: hit (cached), miss (the service answered), stale (served past the TTL while the service fails), error",
            None,
            Family::<OutcomeLabel, Counter>::default(),
        );
        let journal_depth = registered(
            &mut registry,
            "rtp_access_log_journal_depth",
            "Access-log entries journaled and not yet delivered to the log service",
            None,
            Gauge::default(),
        );
        let journal_lag = registered(
            &mut registry,
            "rtp_access_log_delivery_lag",
            "Age of the oldest undelivered access-log entry (0 when none)",
            Some(Unit::Seconds),
            Gauge::<f64, std::sync::atomic::AtomicU64>::default(),
        );
        let journal_totals = JournalCounters {
            appended: registered(
                &mut registry,
                "rtp_access_log_appended",
                "Access-log entries made durable in the journal",
                None,
                Counter::default(),
            ),
            commits: registered(
                &mut registry,
                "rtp_access_log_commits",
                "Journal group commits (one fdatasync each); appended / commits is the group size",
                None,
                Counter::default(),
            ),
            delivered: registered(
                &mut registry,
                "rtp_access_log_delivered",
                "Access-log entries the log service confirmed",
                None,
                Counter::default(),
            ),
            delivery_failures: registered(
                &mut registry,
                "rtp_access_log_delivery_failures",
                "Failed deliveries to the log service (each is retried)",
                None,
                Counter::default(),
            ),
            skipped_lines: registered(
                &mut registry,
                "rtp_access_log_skipped_lines",
                "Unreadable journal lines skipped (corruption inside a file)",
                None,
                Counter::default(),
            ),
        };
        let mirror_calls = registered(
            &mut registry,
            "rtp_mirror_calls",
            "Mirrored calls by route and result: same, different, mirror_failed, skipped (over max_concurrent)",
            None,
            Family::<MirrorLabels, Counter>::default(),
        );
        let mirror_duration = registered(
            &mut registry,
            "rtp_mirror_upstream_duration",
            "Time until the response head of a mirrored call, by route and side (primary, mirror)",
            Some(Unit::Seconds),
            HistogramFamily::<MirrorSide>::new_with_constructor(call_buckets),
        );
        Metrics {
            registry,
            mirror_calls,
            mirror_duration,
            calls,
            call_duration,
            upstream_duration,
            upstream_in_flight,
            policy_duration,
            policy_verdicts,
            policy_failures,
            policy_skips,
            records_dropped,
            dry_run_verdicts,
            config_reloads,
            policy_reloads,
            tls_reloads,
            connections_open,
            connections_refused,
            connection_limit: OnceLock::new(),
            tls_expiry,
            crl_next_update,
            block_lookups,
            journal_depth,
            journal_lag,
            journal_totals,
            dynamic: RwLock::new(HashMap::new()),
        }
    }

    /// Metrics nobody exposes: for relays and pipelines built outside a running proxy
    /// (`rtp-proxy check`, tests, benchmarks).
    pub fn detached() -> Arc<Metrics> {
        static DETACHED: OnceLock<Arc<Metrics>> = OnceLock::new();
        DETACHED.get_or_init(|| Arc::new(Metrics::new())).clone()
    }

    /// One call finished (its response head is ready).
    pub fn call_finished(
        &self,
        route: &Label,
        contract: &Label,
        outcome: Outcome,
        code: &Label,
        elapsed: Duration,
    ) {
        let labels = CallLabels {
            route: route.clone(),
            contract: contract.clone(),
            outcome: outcome.label(),
            code: code.clone(),
        };
        self.calls.get_or_create(&labels).inc();
        let labels = RouteOutcome {
            route: route.clone(),
            outcome: outcome.label(),
        };
        self.call_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// The handles of one upstream, looked up once when the relay is built.
    pub fn upstream(&self, name: &str) -> UpstreamMetrics {
        let labels = UpstreamLabel {
            upstream: Label::shared(Arc::from(name)),
        };
        UpstreamMetrics {
            duration: self.upstream_duration.get_or_create_owned(&labels),
            in_flight: self.upstream_in_flight.get_or_create_owned(&labels),
        }
    }

    /// One policy call, with what it came to.
    pub fn policy_called(
        &self,
        policy: &Arc<str>,
        phase: Phase,
        result: PolicyResult,
        elapsed: Duration,
    ) {
        let policy = Label::shared(policy.clone());
        let labels = PolicyPhase {
            policy: policy.clone(),
            phase: phase.label(),
        };
        self.policy_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        let (verdict, reason) = match result {
            PolicyResult::Proceed => ("proceed", None),
            PolicyResult::Reject => ("reject", None),
            PolicyResult::Keep => ("keep", None),
            PolicyResult::Drop => ("drop", None),
            PolicyResult::Replace => ("replace", None),
            PolicyResult::Trap => ("", Some("trap")),
            PolicyResult::CrashLoop => ("", Some("crash_loop")),
        };
        match reason {
            None => {
                let labels = PolicyVerdict {
                    policy,
                    phase: phase.label(),
                    verdict: Label::fixed(verdict),
                };
                self.policy_verdicts.get_or_create(&labels).inc();
            }
            Some(reason) => {
                let labels = PolicyFailure {
                    policy,
                    phase: phase.label(),
                    reason: Label::fixed(reason),
                };
                self.policy_failures.get_or_create(&labels).inc();
            }
        }
    }

    /// One call of a dry-run policy: its time, and what it would have come to.
    pub fn policy_dry_run(
        &self,
        policy: &Arc<str>,
        phase: Phase,
        result: PolicyResult,
        elapsed: Duration,
    ) {
        let policy = Label::shared(policy.clone());
        let labels = PolicyPhase {
            policy: policy.clone(),
            phase: phase.label(),
        };
        self.policy_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        let verdict = match result {
            PolicyResult::Proceed => "proceed",
            PolicyResult::Reject => "reject",
            PolicyResult::Keep => "keep",
            PolicyResult::Drop => "drop",
            PolicyResult::Replace => "replace",
            PolicyResult::Trap | PolicyResult::CrashLoop => "failed",
        };
        let labels = PolicyVerdict {
            policy,
            phase: phase.label(),
            verdict: Label::fixed(verdict),
        };
        self.dry_run_verdicts.get_or_create(&labels).inc();
    }

    /// A failed policy call was skipped (fail-open).
    pub fn policy_skipped(&self, policy: &Arc<str>, phase: Phase) {
        let labels = PolicyPhase {
            policy: Label::shared(policy.clone()),
            phase: phase.label(),
        };
        self.policy_skips.get_or_create(&labels).inc();
    }

    /// Records a policy dropped from a response.
    pub fn records_dropped(&self, policy: &Arc<str>, count: usize) {
        if count == 0 {
            return;
        }
        let labels = PolicyLabel {
            policy: Label::shared(policy.clone()),
        };
        self.records_dropped
            .get_or_create(&labels)
            .inc_by(count as u64);
    }

    /// A changed config file was loaded, or failed to.
    pub fn config_reloaded(&self, success: bool) {
        let labels = OutcomeLabel {
            outcome: success_label(success),
        };
        self.config_reloads.get_or_create(&labels).inc();
    }

    /// A changed policy file was loaded, or failed to.
    pub fn policy_reloaded(&self, route: &str, policy: &Arc<str>, success: bool) {
        let labels = PolicyReload {
            route: Label::shared(Arc::from(route)),
            policy: Label::shared(policy.clone()),
            outcome: success_label(success),
        };
        self.policy_reloads.get_or_create(&labels).inc();
    }

    /// The TLS files of `what` (`https listener`, `upstream <name>`) changed and were
    /// built, or failed to.
    pub fn tls_reloaded(&self, what: &str, success: bool) {
        let labels = TlsReload {
            tls: Label::shared(Arc::from(what)),
            outcome: success_label(success),
        };
        self.tls_reloads.get_or_create(&labels).inc();
    }

    /// Reports the open consumer connections from `permits` (of `max` in all). Set once,
    /// when the proxy starts.
    pub fn watch_connections(&self, permits: Arc<tokio::sync::Semaphore>, max: usize) {
        let _ = self.connection_limit.set((permits, max));
    }

    /// A consumer connection was closed at the limit.
    pub fn connection_refused(&self, listener: &'static str) {
        let labels = ListenerLabel {
            listener: Label::fixed(listener),
        };
        self.connections_refused.get_or_create(&labels).inc();
    }

    /// When the certificates and revocation lists in force run out, per TLS
    /// configuration (read at scrape). Replaces what was set before, so an upstream a
    /// config reload removed is no longer shown.
    pub fn set_tls_validity(&self, all: &[(String, Validity)]) {
        self.tls_expiry.clear();
        self.crl_next_update.clear();
        for (what, validity) in all {
            self.set_one_tls_validity(what, validity);
        }
    }

    fn set_one_tls_validity(&self, what: &str, validity: &Validity) {
        if let Some(not_after) = validity.certificate_not_after {
            let labels = TlsLabel {
                tls: Label::shared(Arc::from(what)),
            };
            self.tls_expiry.get_or_create(&labels).set(not_after);
        }
        for (file, next_update) in &validity.crl_next_update {
            let labels = FileLabel {
                file: Label::shared(Arc::from(file.display().to_string().as_str())),
            };
            self.crl_next_update
                .get_or_create(&labels)
                .set(*next_update);
        }
    }

    /// A block lookup finished.
    pub fn block_lookup(&self, result: BlockLookup) {
        let outcome = Label::fixed(match result {
            BlockLookup::Hit => "hit",
            BlockLookup::Miss => "miss",
            BlockLookup::Stale => "stale",
            BlockLookup::Error => "error",
        });
        self.block_lookups
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// The access-log journal's state, set just before a scrape.
    pub fn set_access_log(&self, stats: &JournalStats) {
        self.journal_depth
            .set(i64::try_from(stats.depth).unwrap_or(i64::MAX));
        self.journal_lag.set(stats.delivery_lag.as_secs_f64());
        // The journal keeps the totals; the counters follow them (never backwards, also
        // when two scrapes race).
        let totals = &self.journal_totals;
        for (counter, total) in [
            (&totals.appended, stats.appended_total),
            (&totals.commits, stats.commits_total),
            (&totals.delivered, stats.delivered_total),
            (&totals.delivery_failures, stats.delivery_failures_total),
            (&totals.skipped_lines, stats.skipped_lines_total),
        ] {
            counter.inner().fetch_max(total, Ordering::Relaxed);
        }
    }

    /// A mirrored call's result on a route.
    pub fn mirror_call(&self, route: &Label, result: MirrorResult) {
        let result = Label::fixed(match result {
            MirrorResult::Same => "same",
            MirrorResult::Different => "different",
            MirrorResult::MirrorFailed => "mirror_failed",
            MirrorResult::Skipped => "skipped",
        });
        let labels = MirrorLabels {
            route: route.clone(),
            result,
        };
        self.mirror_calls.get_or_create(&labels).inc();
    }

    /// How long one side of a mirrored call took to its response head.
    pub fn mirror_latency(&self, route: &Label, primary: bool, elapsed: Duration) {
        let labels = MirrorSide {
            route: route.clone(),
            side: Label::fixed(if primary { "primary" } else { "mirror" }),
        };
        self.mirror_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> String {
        if let Some((permits, max)) = self.connection_limit.get() {
            let open = max.saturating_sub(permits.available_permits());
            self.connections_open
                .set(i64::try_from(open).unwrap_or(i64::MAX));
        }
        let mut text = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail; an encoding error would leave a partial text.
        if prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry).is_err()
        {
            tracing::error!("metrics could not be encoded");
        }
        text
    }

    /// The label of a request's service contract: a known contract's namespace, or the
    /// namespace when it passes [`plausible_contract`], or `other`.
    pub fn contract_label(&self, namespace: &str) -> Label {
        if let Some(known) = crate::contracts::lookup(namespace) {
            return Label::fixed(known.namespace);
        }
        if !plausible_contract(namespace) {
            return OTHER;
        }
        self.dynamic_label(namespace)
    }

    /// The label of a fault code: the proxy's own codes as they are, a policy's or the
    /// upstream's when it is a code token (letters, then digits), else `other`.
    pub fn code_label(&self, code: &crate::fault::FaultCode) -> Label {
        use crate::fault::FaultCode;
        match code {
            FaultCode::Policy(token) => self.code_token_label(token),
            own => match own.token() {
                "VP002" => Label::fixed("VP002"),
                "VP003" => Label::fixed("VP003"),
                "VP004" => Label::fixed("VP004"),
                "VP007" => Label::fixed("VP007"),
                "VP009" => Label::fixed("VP009"),
                "VP011" => Label::fixed("VP011"),
                "VP013" => Label::fixed("VP013"),
                "VP014" => Label::fixed("VP014"),
                "VP015" => Label::fixed("VP015"),
                "RTP001" => Label::fixed("RTP001"),
                "RTP002" => Label::fixed("RTP002"),
                "RTP003" => Label::fixed("RTP003"),
                "RTP004" => Label::fixed("RTP004"),
                "RTP190" => Label::fixed("RTP190"),
                other => self.code_token_label(other),
            },
        }
    }

    /// The label of a code token from outside (a policy's, or in an upstream's fault).
    pub fn code_token_label(&self, token: &str) -> Label {
        if plausible_code(token) {
            self.dynamic_label(token)
        } else {
            OTHER
        }
    }

    fn dynamic_label(&self, value: &str) -> Label {
        // Calls share the read lock; only a value seen for the first time writes.
        let seen = self.dynamic.read().unwrap_or_else(|p| p.into_inner());
        if let Some(label) = seen.get(value) {
            return label.clone();
        }
        drop(seen);
        let mut known = self.dynamic.write().unwrap_or_else(|p| p.into_inner());
        if let Some(label) = known.get(value) {
            return label.clone();
        }
        if known.len() >= MAX_DYNAMIC_LABELS {
            return OTHER;
        }
        let label = Label::shared(Arc::from(value));
        known.insert(Box::from(value), label.clone());
        label
    }
}

fn success_label(success: bool) -> Label {
    Label::fixed(if success { "success" } else { "failure" })
}

/// A RIV-TA service contract namespace (`urn:riv:...`), short, of URN characters only,
/// and without four digits in a row: a personnummer (10 or 12 digits), an HSA-id
/// (`SE2321000016-...`) or an organisation number cannot hide in it, while contract
/// versions (`:2`, `:3`) and names pass.
pub fn plausible_contract(namespace: &str) -> bool {
    if !namespace.starts_with("urn:riv:") || namespace.len() > 160 {
        return false;
    }
    let mut digits = 0;
    for b in namespace.bytes() {
        if b.is_ascii_digit() {
            digits += 1;
            if digits >= 4 {
                return false;
            }
        } else {
            digits = 0;
            if !(b.is_ascii_alphabetic() || matches!(b, b':' | b'.' | b'-' | b'_')) {
                return false;
            }
        }
    }
    true
}

/// A fault code token: two to five ASCII capitals, then one to four digits (`VP009`,
/// `RTP101`).
pub fn plausible_code(token: &str) -> bool {
    let letters = token.bytes().take_while(u8::is_ascii_uppercase).count();
    let digits = &token.as_bytes()[letters..];
    (2..=5).contains(&letters)
        && (1..=4).contains(&digits.len())
        && digits.iter().all(u8::is_ascii_digit)
}

/// The handles of one upstream.
#[derive(Clone, Debug)]
pub struct UpstreamMetrics {
    duration: Histogram,
    in_flight: Gauge,
}

impl UpstreamMetrics {
    /// A call is being sent upstream: in flight until the guard is dropped.
    pub fn start(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// The upstream answered (its response head) or failed after `elapsed`.
    pub fn answered(&self, elapsed: Duration) {
        self.duration.observe(elapsed.as_secs_f64());
    }
}

/// One call in flight to an upstream; dropped when its response is finished.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::FaultCode;

    const CD2: &str =
        "urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:2";

    #[test]
    fn contracts_are_labelled_only_when_they_cannot_carry_personal_data() {
        let metrics = Metrics::new();
        assert_eq!(metrics.contract_label(CD2).as_str(), CD2);
        let blocks = "urn:riv:ehr:blocking:querying:GetBlocksForPatientResponder:2";
        assert_eq!(metrics.contract_label(blocks).as_str(), blocks);
        for hostile in [
            "urn:riv:clinicalprocess:191212121212:GetDiagnosisResponder:2",
            "urn:riv:SE2321000016-A12B:Responder:1",
            "urn:riv:x:19121212-1212:Responder:1",
            "urn:riv:x y:Responder:1",
            "urn:riv:x\"}:Responder:1",
            "http://example.org/191212121212",
            "",
        ] {
            assert_eq!(metrics.contract_label(hostile), OTHER, "{hostile}");
        }
        assert_eq!(
            metrics
                .contract_label(&format!("urn:riv:{}:1", "a".repeat(200)))
                .as_str(),
            "other"
        );
    }

    #[test]
    fn outside_values_are_capped() {
        let metrics = Metrics::new();
        for i in 0..MAX_DYNAMIC_LABELS {
            let name: String = i
                .to_string()
                .bytes()
                .map(|b| char::from(b'a' + (b - b'0')))
                .collect();
            let label = metrics.contract_label(&format!("urn:riv:test:{name}Responder:1"));
            assert_ne!(label, OTHER);
        }
        assert_eq!(
            metrics.contract_label("urn:riv:test:oneTooManyResponder:1"),
            OTHER
        );
        // Values seen before the cap keep their label.
        assert_eq!(
            metrics.contract_label("urn:riv:test:aResponder:1").as_str(),
            "urn:riv:test:aResponder:1"
        );
    }

    #[test]
    fn fault_codes_are_tokens_or_other() {
        let metrics = Metrics::new();
        assert_eq!(metrics.code_label(&FaultCode::Vp009).as_str(), "VP009");
        assert_eq!(
            metrics
                .code_label(&FaultCode::Policy("RTP101".into()))
                .as_str(),
            "RTP101"
        );
        for bad in [
            "191212121212",
            "RTP",
            "rtp101",
            "RTP1012345",
            "X1",
            "VP009 x",
        ] {
            assert_eq!(
                metrics.code_label(&FaultCode::Policy(bad.into())),
                OTHER,
                "{bad}"
            );
        }
    }

    #[test]
    fn calls_and_policies_render_as_prometheus_text() {
        let metrics = Metrics::new();
        let route = Label::shared(Arc::from("npo"));
        let contract = metrics.contract_label(CD2);
        metrics.call_finished(
            &route,
            &contract,
            Outcome::Relayed,
            &Label::fixed(""),
            Duration::from_millis(3),
        );
        let policy: Arc<str> = Arc::from("look-back");
        metrics.policy_called(
            &policy,
            Phase::Request,
            PolicyResult::Reject,
            Duration::from_micros(40),
        );
        metrics.policy_called(
            &policy,
            Phase::Response,
            PolicyResult::CrashLoop,
            Duration::ZERO,
        );
        metrics.records_dropped(&policy, 3);
        let upstream = metrics.upstream("ntjp");
        let in_flight = upstream.start();
        metrics.set_access_log(&JournalStats {
            depth: 7,
            delivery_lag: Duration::from_millis(1500),
            appended_total: 40,
            commits_total: 10,
            delivered_total: 33,
            delivery_failures_total: 2,
            skipped_lines_total: 0,
        });
        let text = metrics.render();
        for line in [
            &format!(
                "rtp_calls_total{{route=\"npo\",contract=\"{CD2}\",outcome=\"relayed\",code=\"\"}} 1"
            ),
            "rtp_call_duration_seconds_count{route=\"npo\",outcome=\"relayed\"} 1",
            "rtp_policy_verdicts_total{policy=\"look-back\",phase=\"request\",verdict=\"reject\"} 1",
            "rtp_policy_failures_total{policy=\"look-back\",phase=\"response\",reason=\"crash_loop\"} 1",
            "rtp_policy_records_dropped_total{policy=\"look-back\"} 3",
            "rtp_upstream_in_flight{upstream=\"ntjp\"} 1",
            "rtp_access_log_journal_depth 7",
            "rtp_access_log_delivery_lag_seconds 1.5",
            "rtp_access_log_appended_total 40",
            "rtp_access_log_commits_total 10",
            "rtp_access_log_delivered_total 33",
            "rtp_access_log_delivery_failures_total 2",
            "rtp_access_log_skipped_lines_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        // A scrape that read older totals (racing another) never moves a counter back.
        metrics.set_access_log(&JournalStats {
            appended_total: 39,
            ..JournalStats::default()
        });
        assert!(metrics
            .render()
            .lines()
            .any(|l| l == "rtp_access_log_appended_total 40"));
        drop(in_flight);
        assert!(metrics
            .render()
            .lines()
            .any(|l| l == "rtp_upstream_in_flight{upstream=\"ntjp\"} 0"));
    }
}
