//! The proxy's configuration: a TOML file, validated as a whole before anything starts.
//!
//! Errors name the file, the line and the key, since the person reading them is an
//! operator with the file open: syntax and type errors come from the TOML parser's spans,
//! and semantic checks (an unknown upstream, a bad URL, a missing certificate file) carry
//! the key path, whose line is found by walking the spanned document.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Uri;
use ipnet::IpNet;
use serde::Deserialize;

/// Default request size limit: 10 MiB, as large as any RIV-TA read request gets.
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 10 * 1024 * 1024;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub proxy: ProxySettings,
    pub https: Option<HttpsListener>,
    pub http: Option<HttpListener>,
    #[serde(default)]
    pub headers: HeaderSettings,
    #[serde(default)]
    pub policies: PolicySandbox,
    #[serde(default, rename = "upstream")]
    pub upstreams: Vec<UpstreamConfig>,
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    /// The block service policies may consult; none: no block lookups.
    pub blocks: Option<BlocksConfig>,
    /// The PDL access-log journal and its delivery; none: no access logging.
    pub access_log: Option<AccessLogConfig>,
    /// The operations listener (health, readiness, metrics, policies, reload).
    #[serde(default)]
    pub admin: AdminConfig,
    /// The per-call decision log (`rtp_proxy::decision`) and how patient ids are masked.
    #[serde(default)]
    pub decision_log: DecisionLogConfig,
    /// Directory relative paths are resolved against: the config file's own.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The file the config was loaded from (none when parsed from text): watched for
    /// changes and reloaded.
    #[serde(skip)]
    pub source_file: Option<PathBuf>,
}

/// `[proxy]`: the platform itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySettings {
    /// This platform's id in `x-rivta-routing-history` and in fault strings.
    pub instance_id: String,
    /// Upstream used by routes that name none.
    pub default_upstream: Option<String>,
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: u64,
    /// Time allowed for a caller to send its request headers.
    #[serde(default = "default_header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// Time allowed for a caller to send its whole request body.
    #[serde(default = "default_body_read_timeout_ms")]
    pub body_read_timeout_ms: u64,
    /// Time allowed for a TLS handshake.
    #[serde(default = "default_tls_handshake_timeout_ms")]
    pub tls_handshake_timeout_ms: u64,
    /// How long a shutdown waits for calls in flight.
    #[serde(default = "default_shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
    /// Worker threads; 0 = one per CPU the process may run on. With one, the proxy runs
    /// on a single-threaded scheduler, which costs less per call than work stealing.
    #[serde(default)]
    pub worker_threads: usize,
    /// Connections the consumer listeners (`[https]` and `[http]` together) hold open at
    /// once; one more is closed as soon as it is accepted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

/// `[https]`: the mutual-TLS listener consumers use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpsListener {
    pub listen: SocketAddr,
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// CA bundle (PEM) client certificates must chain to.
    pub client_ca: PathBuf,
    /// Subject attribute holding the caller's HSA-id: `serialNumber` (SITHS), `CN`, or a dotted OID.
    #[serde(default = "default_sender_id_attribute")]
    pub sender_id_attribute: String,
    /// Certificate revocation lists (PEM or DER files) client certificates are checked
    /// against; none: no revocation check.
    #[serde(default)]
    pub crls: Vec<PathBuf>,
    /// Which certificates of a caller's chain are checked against the CRLs.
    #[serde(default)]
    pub crl_check: CrlCheck,
    /// Accept a certificate no CRL covers (else the handshake fails).
    #[serde(default)]
    pub allow_unknown_revocation_status: bool,
    /// Accept revocation answers from a CRL past its nextUpdate (else the handshake fails).
    #[serde(default)]
    pub allow_expired_crls: bool,
}

/// `[https] crl_check`: which certificates of a caller's chain must not be revoked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CrlCheck {
    /// Every certificate below the trust anchor (the caller's and its issuing CAs').
    #[default]
    Chain,
    /// Only the caller's own certificate.
    EndEntity,
}

/// `[http]`: plain HTTP for development and trusted internal callers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpListener {
    pub listen: SocketAddr,
    /// Source addresses (IPs or CIDR networks) allowed to call; anyone else gets VP011.
    pub allowed_sources: Vec<String>,
    /// HSA-id assumed for an allowed caller that sends no `x-vp-sender-id` (benchmarks,
    /// simple internal callers). Absent: such a call gets VP002.
    pub anonymous_sender: Option<String>,
}

/// `[headers]`: how RIV-TA identity headers are treated.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderSettings {
    /// Callers (HSA-ids) trusted to set `x-rivta-original-serviceconsumer-hsaid` themselves.
    #[serde(default)]
    pub osc_trusted_senders: Vec<String>,
}

/// `[policies]`: the sandbox every policy runs in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySandbox {
    /// Where compiled policies are cached across restarts; none: compile at every start.
    pub cache_dir: Option<PathBuf>,
    /// Longest a policy may run per call (milliseconds, in 1 ms ticks).
    #[serde(default = "default_policy_deadline_ms")]
    pub deadline_ms: u64,
    /// Largest memory a policy instance may use.
    #[serde(default = "default_policy_memory_bytes")]
    pub memory_limit_bytes: usize,
    /// Calls after which an instance is replaced by a fresh one.
    #[serde(default = "default_max_calls_per_instance")]
    pub max_calls_per_instance: u64,
    /// Consecutive failures after which a policy counts as failed until reloaded.
    #[serde(default = "default_crash_loop_limit")]
    pub crash_loop_limit: u32,
    /// Watch policy files and reload a policy when its file's content changes.
    #[serde(default = "default_true")]
    pub watch: bool,
    /// Quiet time after the last file event before a reload check runs.
    #[serde(default = "default_reload_debounce_ms")]
    pub reload_debounce_ms: u64,
    /// Response bytes collected before the response policies decide on a batch of
    /// records and it is released: bounds the memory per call.
    #[serde(default = "default_response_batch_bytes")]
    pub response_batch_bytes: u64,
    /// Largest single record the response phase holds while it is still incomplete: a
    /// bigger one fails the answer (VP009) instead of growing the memory without bound.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: u64,
}

impl Default for PolicySandbox {
    fn default() -> Self {
        PolicySandbox {
            cache_dir: None,
            deadline_ms: default_policy_deadline_ms(),
            memory_limit_bytes: default_policy_memory_bytes(),
            max_calls_per_instance: default_max_calls_per_instance(),
            crash_loop_limit: default_crash_loop_limit(),
            watch: true,
            reload_debounce_ms: default_reload_debounce_ms(),
            response_batch_bytes: default_response_batch_bytes(),
            max_record_bytes: default_max_record_bytes(),
        }
    }
}

fn default_response_batch_bytes() -> u64 {
    1024 * 1024
}

fn default_max_record_bytes() -> u64 {
    32 * 1024 * 1024
}

/// `[[route.policy]]`: one policy in a route's pipeline, in order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutePolicy {
    /// The policy component (`.wasm`, built for wasm32-wasip2).
    pub file: PathBuf,
    /// What happens to a call when the policy fails: fail-closed, fail-open or reload.
    #[serde(default)]
    pub failure_mode: crate::policy::FailureMode,
    /// The policy's own settings, handed to its `init` as JSON.
    #[serde(default)]
    pub settings: toml::Table,
    /// Run the policy and log and count its verdicts, but never enforce them: no
    /// refusal, no edits, no dropped records, no access entries, failures ignored.
    #[serde(default)]
    pub dry_run: bool,
}

/// `[decision_log]`: one structured line per call, target `rtp_proxy::decision`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DecisionLogConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How the patient id appears in the line: `hash` (keyed with the salt) or `drop`.
    #[serde(default)]
    pub patient_id: PatientIdMode,
    /// The secret key of `hash`; or `salt_file`, a file holding it.
    pub salt: Option<String>,
    pub salt_file: Option<PathBuf>,
}

impl Default for DecisionLogConfig {
    fn default() -> Self {
        DecisionLogConfig {
            enabled: true,
            patient_id: PatientIdMode::default(),
            salt: None,
            salt_file: None,
        }
    }
}

// The salt is a secret: never printed.
impl fmt::Debug for DecisionLogConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecisionLogConfig")
            .field("enabled", &self.enabled)
            .field("patient_id", &self.patient_id)
            .field("salt", &self.salt.as_ref().map(|_| "<secret>"))
            .field("salt_file", &self.salt_file)
            .finish()
    }
}

/// How a patient id is shown in the decision log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PatientIdMode {
    /// HMAC-SHA256 of the id keyed with the salt, hex, truncated to 32 digits.
    Hash,
    /// No patient field at all.
    #[default]
    Drop,
}

impl DecisionLogConfig {
    /// The salt's bytes: `salt`, or the content of `salt_file` (resolved against the
    /// config's directory, surrounding whitespace trimmed).
    pub fn salt_bytes(&self, config: &Config) -> Result<Option<Vec<u8>>, String> {
        if let Some(salt) = &self.salt {
            return Ok(Some(salt.as_bytes().to_vec()));
        }
        let Some(file) = &self.salt_file else {
            return Ok(None);
        };
        let path = config.resolve(file);
        let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Some(text.trim_ascii().to_vec()))
    }
}

/// `[[upstream]]`: a platform or producer the proxy relays to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub name: String,
    /// `https://host:port/base` (mTLS with the proxy's own certificate) or `http://...`.
    pub url: String,
    /// The proxy's client certificate (PEM) towards this upstream.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// CA bundle (PEM) the upstream's server certificate must chain to.
    pub ca: Option<PathBuf>,
    /// Revocation lists (PEM or DER) the upstream's server certificate chain is checked
    /// against; none: no revocation check.
    #[serde(default)]
    pub crls: Vec<PathBuf>,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Time until the upstream's response headers; above NTjP's 29 s producer timeout.
    #[serde(default = "default_response_timeout_ms")]
    pub response_timeout_ms: u64,
    /// Longest pause allowed while the response body streams.
    #[serde(default = "default_body_idle_timeout_ms")]
    pub body_idle_timeout_ms: u64,
    /// Idle keep-alive connections kept per upstream host.
    #[serde(default = "default_max_idle_connections")]
    pub max_idle_connections: usize,
    #[serde(default = "default_idle_connection_timeout_ms")]
    pub idle_connection_timeout_ms: u64,
    /// For plain-HTTP upstreams that identify callers by `x-vp-sender-id` (an NTjP
    /// internal listener): the HSA-id the proxy sends as its own.
    pub vp_sender_id: Option<String>,
}

/// `[[route]]`: which calls go where. The first matching route wins.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub name: String,
    /// Service contract namespace pattern (`*` wildcard, case-insensitive).
    #[serde(default = "any")]
    pub contract: String,
    /// Logical address pattern (`*` wildcard, case-insensitive).
    #[serde(default = "any")]
    pub logical_address: String,
    /// Only for this caller (HSA-id pattern), if given.
    pub sender: Option<String>,
    /// Upstream name; the `[proxy] default_upstream` if absent.
    pub upstream: Option<String>,
    /// Fixed path on the upstream instead of the incoming one.
    pub path: Option<String>,
    /// Overrides the upstream's `response_timeout_ms` for this route.
    pub response_timeout_ms: Option<u64>,
    /// The route's policy pipeline, in order.
    #[serde(default, rename = "policy")]
    pub policies: Vec<RoutePolicy>,
    /// A second upstream the route's calls are also sent to, answers compared.
    pub mirror: Option<MirrorConfig>,
}

/// `[route.mirror]`: sends a copy of the route's calls (as the request policies left
/// them) to a second upstream and compares the answers, never touching the primary's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// The `[[upstream]]` the copies go to.
    pub upstream: String,
    /// Share of the route's calls that are mirrored, 0.0 to 1.0.
    #[serde(default = "default_mirror_sample_rate")]
    pub sample_rate: f64,
    /// Most mirrored calls at once; a call over the cap is not mirrored (`skipped`).
    #[serde(default = "default_mirror_max_concurrent")]
    pub max_concurrent: usize,
    /// Fixed path on the mirror upstream; absent: the primary call's path.
    pub path: Option<String>,
}

fn default_mirror_sample_rate() -> f64 {
    1.0
}
fn default_mirror_max_concurrent() -> usize {
    16
}

/// `[admin]`: the operations listener: `/healthz`, `/readyz`, `/metrics`, `/policies`
/// and `POST /reload`, plain HTTP without authentication, so loopback unless allowed.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where it listens; none: no admin listener.
    pub listen: Option<SocketAddr>,
    /// Allow a `listen` address other than loopback (the endpoints have no
    /// authentication, and `POST /reload` changes what runs).
    #[serde(default)]
    pub allow_non_loopback: bool,
    /// `/readyz`: connect timeout of the TCP check of the default upstream.
    #[serde(default = "default_admin_upstream_check_timeout_ms")]
    pub upstream_check_timeout_ms: u64,
    /// `/readyz`: how long one upstream check's result is reused, so that frequent
    /// probes do not each open a connection.
    #[serde(default = "default_admin_upstream_check_cache_ms")]
    pub upstream_check_cache_ms: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: None,
            allow_non_loopback: false,
            upstream_check_timeout_ms: default_admin_upstream_check_timeout_ms(),
            upstream_check_cache_ms: default_admin_upstream_check_cache_ms(),
        }
    }
}

fn default_admin_upstream_check_timeout_ms() -> u64 {
    1_000
}
fn default_admin_upstream_check_cache_ms() -> u64 {
    2_000
}

/// `[blocks]`: the block service (GetBlocksForPatient 2) behind the `blocks` capability.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlocksConfig {
    /// The `[[upstream]]` the block service is reached through (NTjP, or the region's own).
    pub upstream: String,
    /// HTTP path of the contract on that upstream (after its base path).
    #[serde(default = "default_blocks_path")]
    pub path: String,
    /// How long an answer is used without asking again.
    #[serde(default = "default_blocks_ttl_ms")]
    pub ttl_ms: u64,
    /// How long past `ttl_ms` an answer may still be used while the service fails.
    #[serde(default)]
    pub stale_if_error_ms: u64,
    /// Time allowed for one lookup (connect, answer and body).
    #[serde(default = "default_blocks_timeout_ms")]
    pub timeout_ms: u64,
    /// Cached answers kept at most; the oldest goes first.
    #[serde(default = "default_blocks_max_entries")]
    pub max_entries: usize,
}

/// `[access_log]`: the durable PDL access-log journal and its delivery (StoreLog 1).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// Directory of the journal files and the delivery cursor; created if absent.
    pub dir: PathBuf,
    /// The `[[upstream]]` the log service is reached through; none: journal only.
    pub upstream: Option<String>,
    /// HSA-id of the system writing the log (`System/SystemId`).
    pub system_id: String,
    /// `System/SystemName`.
    #[serde(default = "default_access_log_system_name")]
    pub system_name: String,
    /// `ResourceType` when the call gives no information type.
    #[serde(default = "default_access_log_resource_type")]
    pub resource_type: String,
    /// HTTP path of StoreLog on the upstream (after its base path).
    #[serde(default = "default_access_log_path")]
    pub path: String,
    /// Most entries per StoreLog call.
    #[serde(default = "default_access_log_batch_size")]
    pub batch_size: usize,
    /// First pause after a failed delivery; doubled per failure up to `retry_max_ms`.
    #[serde(default = "default_access_log_retry_initial_ms")]
    pub retry_initial_ms: u64,
    #[serde(default = "default_access_log_retry_max_ms")]
    pub retry_max_ms: u64,
    /// Time allowed for one StoreLog call (connect, answer and body).
    #[serde(default = "default_access_log_timeout_ms")]
    pub timeout_ms: u64,
    /// Size after which the journal continues in a new file.
    #[serde(default = "default_access_log_segment_bytes")]
    pub segment_bytes: u64,
}

fn default_blocks_path() -> String {
    "/vp/ehr/blocking/GetBlocksForPatient/2/rivtabp21".into()
}
fn default_blocks_ttl_ms() -> u64 {
    60_000
}
fn default_blocks_timeout_ms() -> u64 {
    5_000
}
fn default_blocks_max_entries() -> usize {
    100_000
}
fn default_access_log_system_name() -> String {
    "rtp-proxy".into()
}
fn default_access_log_resource_type() -> String {
    "Journalinformation".into()
}
fn default_access_log_path() -> String {
    "/vp/ehr/log/StoreLog/1/rivtabp21".into()
}
fn default_access_log_batch_size() -> usize {
    100
}
fn default_access_log_retry_initial_ms() -> u64 {
    500
}
fn default_access_log_retry_max_ms() -> u64 {
    60_000
}
fn default_access_log_timeout_ms() -> u64 {
    10_000
}
fn default_access_log_segment_bytes() -> u64 {
    16 * 1024 * 1024
}

fn any() -> String {
    "*".into()
}
fn default_max_request_bytes() -> u64 {
    DEFAULT_MAX_REQUEST_BYTES
}
fn default_header_read_timeout_ms() -> u64 {
    10_000
}
fn default_body_read_timeout_ms() -> u64 {
    30_000
}
fn default_tls_handshake_timeout_ms() -> u64 {
    10_000
}
fn default_shutdown_grace_ms() -> u64 {
    35_000
}
fn default_max_connections() -> usize {
    10_000
}
fn default_sender_id_attribute() -> String {
    "serialNumber".into()
}
fn default_connect_timeout_ms() -> u64 {
    2_000
}
fn default_response_timeout_ms() -> u64 {
    32_000
}
fn default_body_idle_timeout_ms() -> u64 {
    30_000
}
fn default_max_idle_connections() -> usize {
    64
}
fn default_idle_connection_timeout_ms() -> u64 {
    60_000
}
fn default_policy_deadline_ms() -> u64 {
    // Wall-clock ticks: generous enough that a busy machine does not cut a healthy
    // call, tight enough that a looping policy costs little.
    20
}
fn default_policy_memory_bytes() -> usize {
    16 * 1024 * 1024
}
fn default_max_calls_per_instance() -> u64 {
    10_000
}
fn default_crash_loop_limit() -> u32 {
    5
}
fn default_true() -> bool {
    true
}
fn default_reload_debounce_ms() -> u64 {
    100
}

pub fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// A configuration error, located for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Key path, e.g. `route[2].upstream`, when known.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl ProxySettings {
    /// The number of worker threads to run, after the default.
    pub fn effective_worker_threads(&self) -> usize {
        if self.worker_threads > 0 {
            self.worker_threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: None,
            key: None,
            message: format!("cannot read the file: {e}"),
        })?;
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut config = Config::parse(&text, path, &base_dir)?;
        config.source_file = Some(path.to_owned());
        Ok(config)
    }

    /// Parses and validates configuration text; `file` is used in messages only.
    pub fn parse(text: &str, file: &Path, base_dir: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let span = e.span();
            ConfigError {
                file: file.to_owned(),
                line: span.map(|s| line_of(text, s.start)),
                key: None,
                message: e.message().trim().to_owned(),
            }
        })?;
        config.base_dir = base_dir.to_owned();
        config.validate().map_err(|invalid| ConfigError {
            file: file.to_owned(),
            line: locate(text, &invalid.key),
            key: Some(invalid.key.to_string()),
            message: invalid.message,
        })?;
        Ok(config)
    }

    /// Resolves a path from the file against the config file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.base_dir.join(path)
        }
    }

    pub fn upstream(&self, name: &str) -> Option<&UpstreamConfig> {
        self.upstreams.iter().find(|u| u.name == name)
    }

    /// The upstream a route uses, after defaults.
    pub fn route_upstream<'a>(&'a self, route: &'a RouteConfig) -> Option<&'a str> {
        route
            .upstream
            .as_deref()
            .or(self.proxy.default_upstream.as_deref())
    }

    fn validate(&self) -> Result<(), Invalid> {
        let p = &self.proxy;
        if p.instance_id.trim().is_empty() || p.instance_id.contains('#') {
            return Err(Invalid::at(
                KeyPath::new("proxy").key("instance_id"),
                "must be a non-empty id without '#' (it is an element of x-rivta-routing-history)",
            ));
        }
        if p.max_request_bytes == 0 {
            return Err(Invalid::at(
                KeyPath::new("proxy").key("max_request_bytes"),
                "must be greater than zero",
            ));
        }
        if p.max_connections == 0 {
            return Err(Invalid::at(
                KeyPath::new("proxy").key("max_connections"),
                "must be greater than zero",
            ));
        }
        if let Some(name) = &p.default_upstream {
            if self.upstream(name).is_none() {
                return Err(Invalid::at(
                    KeyPath::new("proxy").key("default_upstream"),
                    format!("no [[upstream]] is named \"{name}\""),
                ));
            }
        }
        if self.policies.deadline_ms == 0
            || self.policies.memory_limit_bytes == 0
            || self.policies.max_record_bytes == 0
        {
            return Err(Invalid::at(
                KeyPath::new("policies"),
                "deadline_ms, memory_limit_bytes and max_record_bytes must be greater than zero",
            ));
        }
        if self.https.is_none() && self.http.is_none() {
            return Err(Invalid::at(
                KeyPath::new("proxy"),
                "no listener: configure [https] and/or [http]",
            ));
        }
        if let Some(https) = &self.https {
            let at = KeyPath::new("https");
            self.file_exists(&https.cert, at.key("cert"))?;
            self.file_exists(&https.key, at.key("key"))?;
            self.file_exists(&https.client_ca, at.key("client_ca"))?;
            for (i, crl) in https.crls.iter().enumerate() {
                self.file_exists(crl, at.key("crls").index(i))?;
            }
            if crate::identity::SenderIdAttribute::parse(&https.sender_id_attribute).is_none() {
                return Err(Invalid::at(
                    at.key("sender_id_attribute"),
                    "must be serialNumber, CN or a dotted OID such as 2.5.4.5",
                ));
            }
        }
        if let Some(http) = &self.http {
            for (i, source) in http.allowed_sources.iter().enumerate() {
                if parse_source(source).is_none() {
                    return Err(Invalid::at(
                        KeyPath::new("http").key("allowed_sources").index(i),
                        format!("\"{source}\" is neither an IP address nor a CIDR network"),
                    ));
                }
            }
        }
        for (i, upstream) in self.upstreams.iter().enumerate() {
            self.validate_upstream(upstream, KeyPath::new("upstream").index(i))?;
            if self.upstreams[..i].iter().any(|u| u.name == upstream.name) {
                return Err(Invalid::at(
                    KeyPath::new("upstream").index(i).key("name"),
                    format!("upstream \"{}\" is defined twice", upstream.name),
                ));
            }
        }
        if self.routes.is_empty() {
            return Err(Invalid::at(
                KeyPath::new("route"),
                "no [[route]]: every call would be refused with VP004",
            ));
        }
        for (i, route) in self.routes.iter().enumerate() {
            let at = KeyPath::new("route").index(i);
            match self.route_upstream(route) {
                None => {
                    return Err(Invalid::at(
                        at.key("upstream"),
                        "missing, and [proxy] has no default_upstream",
                    ))
                }
                Some(name) if self.upstream(name).is_none() => {
                    let key = if route.upstream.is_some() {
                        at.key("upstream")
                    } else {
                        KeyPath::new("proxy").key("default_upstream")
                    };
                    return Err(Invalid::at(
                        key,
                        format!("no [[upstream]] is named \"{name}\""),
                    ));
                }
                Some(_) => {}
            }
            for (j, policy) in route.policies.iter().enumerate() {
                self.file_exists(&policy.file, at.key("policy").index(j).key("file"))?;
            }
            if let Some(path) = &route.path {
                check_path(path, at.key("path"))?;
            }
            if let Some(mirror) = &route.mirror {
                validate_mirror(self, mirror, at.key("mirror"))?;
            }
        }
        if let Some(blocks) = &self.blocks {
            self.validate_blocks(blocks)?;
        }
        if let Some(access_log) = &self.access_log {
            self.validate_access_log(access_log)?;
        }
        validate_admin(&self.admin)?;
        self.validate_decision_log()?;
        Ok(())
    }

    fn validate_decision_log(&self) -> Result<(), Invalid> {
        let log = &self.decision_log;
        let at = KeyPath::new("decision_log");
        if log.salt.is_some() && log.salt_file.is_some() {
            return Err(Invalid::at(
                at.key("salt_file"),
                "give salt or salt_file, not both",
            ));
        }
        if !log.enabled || log.patient_id != PatientIdMode::Hash {
            return Ok(());
        }
        match log.salt_bytes(self) {
            Ok(Some(salt)) if salt.len() >= 16 => Ok(()),
            Ok(Some(_)) => {
                let key = if log.salt.is_some() {
                    "salt"
                } else {
                    "salt_file"
                };
                Err(Invalid::at(
                    at.key(key),
                    "the salt must be at least 16 bytes",
                ))
            }
            Ok(None) => Err(Invalid::at(
                at.key("patient_id"),
                "patient_id = \"hash\" needs a secret salt or salt_file",
            )),
            Err(e) => Err(Invalid::at(at.key("salt_file"), e)),
        }
    }

    fn validate_blocks(&self, blocks: &BlocksConfig) -> Result<(), Invalid> {
        let at = KeyPath::new("blocks");
        self.upstream_exists(&blocks.upstream, at.key("upstream"))?;
        check_path(&blocks.path, at.key("path"))?;
        if blocks.timeout_ms == 0 {
            return Err(Invalid::at(
                at.key("timeout_ms"),
                "must be greater than zero",
            ));
        }
        if blocks.max_entries == 0 {
            return Err(Invalid::at(
                at.key("max_entries"),
                "must be greater than zero",
            ));
        }
        Ok(())
    }

    fn validate_access_log(&self, log: &AccessLogConfig) -> Result<(), Invalid> {
        let at = KeyPath::new("access_log");
        if log.dir.as_os_str().is_empty() {
            return Err(Invalid::at(at.key("dir"), "must not be empty"));
        }
        let dir = self.resolve(&log.dir);
        if dir.exists() && !dir.is_dir() {
            return Err(Invalid::at(
                at.key("dir"),
                format!("{} exists and is not a directory", dir.display()),
            ));
        }
        if let Some(name) = &log.upstream {
            self.upstream_exists(name, at.key("upstream"))?;
        }
        if log.system_id.trim().is_empty() {
            return Err(Invalid::at(
                at.key("system_id"),
                "must be the HSA-id of the system writing the log",
            ));
        }
        if log.resource_type.trim().is_empty() {
            return Err(Invalid::at(at.key("resource_type"), "must not be empty"));
        }
        check_path(&log.path, at.key("path"))?;
        if log.batch_size == 0 || log.batch_size > 10_000 {
            return Err(Invalid::at(
                at.key("batch_size"),
                "must be between 1 and 10000",
            ));
        }
        if log.retry_initial_ms == 0 {
            return Err(Invalid::at(
                at.key("retry_initial_ms"),
                "must be greater than zero",
            ));
        }
        if log.retry_max_ms < log.retry_initial_ms {
            return Err(Invalid::at(
                at.key("retry_max_ms"),
                "must not be below retry_initial_ms",
            ));
        }
        if log.timeout_ms == 0 {
            return Err(Invalid::at(
                at.key("timeout_ms"),
                "must be greater than zero",
            ));
        }
        if log.segment_bytes < 4096 {
            return Err(Invalid::at(
                at.key("segment_bytes"),
                "must be at least 4096",
            ));
        }
        Ok(())
    }

    fn upstream_exists(&self, name: &str, key: KeyPath) -> Result<(), Invalid> {
        if self.upstream(name).is_some() {
            Ok(())
        } else {
            Err(Invalid::at(
                key,
                format!("no [[upstream]] is named \"{name}\""),
            ))
        }
    }

    fn validate_upstream(&self, upstream: &UpstreamConfig, at: KeyPath) -> Result<(), Invalid> {
        let uri: Uri = upstream.url.parse().map_err(|e| {
            Invalid::at(
                at.key("url"),
                format!("\"{}\" is not a URL: {e}", upstream.url),
            )
        })?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(Invalid::at(
                    at.key("url"),
                    format!("\"{}\" must start with https:// or http://", upstream.url),
                ))
            }
        };
        if uri.authority().is_none() {
            return Err(Invalid::at(
                at.key("url"),
                format!("\"{}\" has no host", upstream.url),
            ));
        }
        if uri.query().is_some() {
            return Err(Invalid::at(at.key("url"), "must not carry a query string"));
        }
        for (i, crl) in upstream.crls.iter().enumerate() {
            self.file_exists(crl, at.key("crls").index(i))?;
        }
        match (&upstream.client_cert, &upstream.client_key) {
            (Some(cert), Some(key)) => {
                self.file_exists(cert, at.key("client_cert"))?;
                self.file_exists(key, at.key("client_key"))?;
            }
            (Some(_), None) => {
                return Err(Invalid::at(
                    at.key("client_key"),
                    "missing: client_cert is set",
                ))
            }
            (None, Some(_)) => {
                return Err(Invalid::at(
                    at.key("client_cert"),
                    "missing: client_key is set",
                ))
            }
            (None, None) if https => return Err(Invalid::at(
                at.key("client_cert"),
                "an https upstream needs the proxy's client certificate (NTjP requires mutual TLS)",
            )),
            (None, None) => {}
        }
        if https {
            match &upstream.ca {
                Some(ca) => self.file_exists(ca, at.key("ca"))?,
                None => {
                    return Err(Invalid::at(
                        at.key("ca"),
                        "an https upstream needs the CA bundle its certificate chains to",
                    ))
                }
            }
        }
        if upstream.response_timeout_ms == 0 || upstream.connect_timeout_ms == 0 {
            return Err(Invalid::at(
                at.key("response_timeout_ms"),
                "timeouts must be greater than zero",
            ));
        }
        Ok(())
    }

    fn file_exists(&self, path: &Path, key: KeyPath) -> Result<(), Invalid> {
        let resolved = self.resolve(path);
        if resolved.is_file() {
            Ok(())
        } else {
            Err(Invalid::at(
                key,
                format!("file {} does not exist", resolved.display()),
            ))
        }
    }
}

fn validate_admin(admin: &AdminConfig) -> Result<(), Invalid> {
    let at = KeyPath::new("admin");
    if let Some(listen) = admin.listen {
        if !listen.ip().is_loopback() && !admin.allow_non_loopback {
            return Err(Invalid::at(
                at.key("listen"),
                format!(
                    "{listen} is not a loopback address: the admin endpoints have no authentication \
                     and POST /reload changes what runs; use 127.0.0.1 or ::1, or set \
                     allow_non_loopback = true to expose them on purpose"
                ),
            ));
        }
    }
    if admin.upstream_check_timeout_ms == 0 {
        return Err(Invalid::at(
            at.key("upstream_check_timeout_ms"),
            "must be greater than zero",
        ));
    }
    Ok(())
}

/// An absolute URL path (no scheme, no host).
fn validate_mirror(config: &Config, mirror: &MirrorConfig, at: KeyPath) -> Result<(), Invalid> {
    config.upstream_exists(&mirror.upstream, at.key("upstream"))?;
    if !(0.0..=1.0).contains(&mirror.sample_rate) {
        return Err(Invalid::at(
            at.key("sample_rate"),
            "must be between 0.0 and 1.0",
        ));
    }
    if mirror.max_concurrent == 0 {
        return Err(Invalid::at(
            at.key("max_concurrent"),
            "must be greater than zero (to mirror nothing, remove [route.mirror] or set sample_rate = 0.0)",
        ));
    }
    if let Some(path) = &mirror.path {
        check_path(path, at.key("path"))?;
    }
    Ok(())
}

fn check_path(path: &str, key: KeyPath) -> Result<(), Invalid> {
    if !path.starts_with('/') || path.parse::<http::uri::PathAndQuery>().is_err() {
        return Err(Invalid::at(
            key,
            format!("\"{path}\" is not an absolute URL path"),
        ));
    }
    Ok(())
}

/// Parses an allowed source: a CIDR network or a single address.
pub fn parse_source(source: &str) -> Option<IpNet> {
    let source = source.trim();
    source
        .parse::<IpNet>()
        .ok()
        .or_else(|| source.parse::<IpAddr>().ok().map(IpNet::from))
}

/// A semantic error found after parsing, before it is located in the text.
#[derive(Debug)]
struct Invalid {
    key: KeyPath,
    message: String,
}

impl Invalid {
    fn at(key: KeyPath, message: impl Into<String>) -> Self {
        Invalid {
            key,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone)]
enum Segment {
    Key(String),
    Index(usize),
}

/// A path to a value in the TOML document, e.g. `route[2].upstream`.
#[derive(Debug, Clone)]
struct KeyPath(Vec<Segment>);

impl KeyPath {
    fn new(table: &str) -> Self {
        KeyPath(vec![Segment::Key(table.into())])
    }
    fn key(&self, key: &str) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Key(key.into()));
        next
    }
    fn index(&self, i: usize) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Index(i));
        next
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Key(k) if i == 0 => write!(f, "{k}")?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Finds the line of the deepest part of `key` present in the document.
fn locate(text: &str, key: &KeyPath) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let root = DeTable::parse(text).ok()?;
    let mut table = root.get_ref();
    let mut best: Option<usize> = None;
    let mut segments = key.0.iter().peekable();
    while let Some(seg) = segments.next() {
        let Segment::Key(name) = seg else { return best };
        let (k, value) = table
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == name.as_str())?;
        best = Some(k.span().start);
        let mut value = value;
        if let Some(Segment::Index(i)) = segments.peek() {
            segments.next();
            match value.get_ref() {
                DeValue::Array(items) => {
                    let item = items.get(*i)?;
                    best = Some(item.span().start);
                    value = item;
                }
                _ => return best.map(|b| line_of(text, b)),
            }
        }
        match value.get_ref() {
            DeValue::Table(t) => table = t,
            _ => {
                if segments.peek().is_some() {
                    break;
                }
            }
        }
    }
    best.map(|b| line_of(text, b))
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[proxy]
instance_id = "rtp-test"
default_upstream = "ntjp"

[http]
listen = "127.0.0.1:0"
allowed_sources = ["127.0.0.1", "10.0.0.0/8"]

[[upstream]]
name = "ntjp"
url = "http://127.0.0.1:9080/vp"

[[route]]
name = "all"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"), Path::new("."))
    }

    #[test]
    fn a_good_config_parses_with_defaults() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.proxy.max_request_bytes, DEFAULT_MAX_REQUEST_BYTES);
        assert_eq!(config.routes[0].contract, "*");
        assert_eq!(config.route_upstream(&config.routes[0]), Some("ntjp"));
        assert_eq!(config.upstreams[0].response_timeout_ms, 32_000);
        assert_eq!(config.policies.max_record_bytes, 32 * 1024 * 1024);
    }

    #[test]
    fn a_zero_record_limit_is_refused_naming_the_section() {
        let text = format!("{GOOD}\n[policies]\nmax_record_bytes = 0\n");
        let err = parse(&text).unwrap_err();
        assert!(err.to_string().contains("max_record_bytes"), "{err}");
        assert_eq!(err.key.as_deref(), Some("policies"), "{err}");
    }

    #[test]
    fn a_hashed_patient_id_needs_a_salt_and_dry_run_is_off_by_default() {
        let config = parse(GOOD).unwrap();
        assert!(config.decision_log.enabled);
        assert_eq!(config.decision_log.patient_id, PatientIdMode::Drop);
        let text = format!("{GOOD}\n[decision_log]\npatient_id = \"hash\"\n");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("decision_log.patient_id"));
        assert_eq!(err.line, Some(18), "{err}");
        let salted = format!("{text}salt = \"0123456789abcdef-secret\"\n");
        let config = parse(&salted).unwrap();
        assert!(
            !format!("{config:?}").contains("abcdef"),
            "the salt is never printed"
        );
        let short = format!("{text}salt = \"short\"\n");
        assert_eq!(parse(&short).unwrap_err().line, Some(19));
    }

    #[test]
    fn unknown_keys_are_reported_with_their_line() {
        let text = GOOD.replace("name = \"all\"", "name = \"all\"\nupstreem = \"ntjp\"");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.line, Some(16), "{err}");
        assert!(err.message.contains("upstreem"), "{err}");
    }

    #[test]
    fn an_unknown_upstream_names_the_route_key_and_line() {
        let text = GOOD.replace("name = \"all\"", "name = \"all\"\nupstream = \"nowhere\"");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("route[0].upstream"));
        assert_eq!(err.line, Some(16), "{err}");
        assert!(err
            .to_string()
            .starts_with("test.toml:16: key `route[0].upstream`"));
    }

    #[test]
    fn a_bad_url_and_a_bad_source_are_located() {
        let err = parse(&GOOD.replace("http://127.0.0.1:9080/vp", "ftp://x")).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("upstream[0].url"));
        assert_eq!(err.line, Some(12));
        let err = parse(&GOOD.replace("10.0.0.0/8", "ten")).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("http.allowed_sources[1]"));
        assert_eq!(err.line, Some(8));
    }

    #[test]
    fn an_https_upstream_without_client_certificate_is_refused() {
        let err = parse(&GOOD.replace("http://127.0.0.1", "https://127.0.0.1")).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("upstream[0].client_cert"));
    }

    #[test]
    fn a_missing_certificate_file_is_named() {
        let text = format!(
            "{GOOD}\n[https]\nlisten = \"127.0.0.1:0\"\ncert = \"nope.crt\"\nkey = \"nope.key\"\nclient_ca = \"ca.crt\"\n"
        );
        let err = parse(&text).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("https.cert"));
        assert!(err.message.contains("nope.crt"));
    }

    #[test]
    fn blocks_and_access_log_sections_take_defaults() {
        let text = format!(
            "{GOOD}\n[blocks]\nupstream = \"ntjp\"\n\n[access_log]\ndir = \"journal\"\nupstream = \"ntjp\"\nsystem_id = \"SE-RTP\"\n"
        );
        let config = parse(&text).unwrap();
        let blocks = config.blocks.unwrap();
        assert_eq!(
            blocks.path,
            "/vp/ehr/blocking/GetBlocksForPatient/2/rivtabp21"
        );
        assert_eq!(blocks.stale_if_error_ms, 0);
        let log = config.access_log.unwrap();
        assert_eq!(log.path, "/vp/ehr/log/StoreLog/1/rivtabp21");
        assert_eq!(log.batch_size, 100);
        assert!(log.retry_max_ms >= log.retry_initial_ms);
    }

    #[test]
    fn blocks_and_access_log_errors_are_located() {
        let err = parse(&format!("{GOOD}\n[blocks]\nupstream = \"nowhere\"\n")).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("blocks.upstream"));
        assert_eq!(err.line, Some(18), "{err}");
        assert!(err.message.contains("nowhere"));
        let err = parse(&format!(
            "{GOOD}\n[blocks]\nupstream = \"ntjp\"\npath = \"vp/x\"\n"
        ))
        .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("blocks.path"));
        let log = "[access_log]\ndir = \"j\"\nsystem_id = \"SE-RTP\"\n";
        let err = parse(&format!("{GOOD}\n{log}upstream = \"x\"\n")).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("access_log.upstream"));
        assert_eq!(err.line, Some(20), "{err}");
        let err = parse(&format!(
            "{GOOD}\n{log}retry_initial_ms = 10\nretry_max_ms = 5\n"
        ))
        .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("access_log.retry_max_ms"));
        let err = parse(&format!("{GOOD}\n{log}batch_size = 0\n")).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("access_log.batch_size"));
        let err = parse(&format!(
            "{GOOD}\n[access_log]\ndir = \"j\"\nsystem_id = \" \"\n"
        ))
        .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("access_log.system_id"));
        let err = parse(&format!("{GOOD}\n{log}sytem_name = \"x\"\n")).unwrap_err();
        assert!(err.message.contains("sytem_name"), "{err}");
    }

    #[test]
    fn the_admin_listener_is_off_by_default_and_loopback_unless_allowed() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.admin.listen, None);
        let config = parse(&format!("{GOOD}\n[admin]\nlisten = \"127.0.0.1:9901\"\n")).unwrap();
        assert_eq!(config.admin.listen, Some("127.0.0.1:9901".parse().unwrap()));
        assert_eq!(config.admin.upstream_check_cache_ms, 2_000);
        assert!(parse(&format!("{GOOD}\n[admin]\nlisten = \"[::1]:9901\"\n")).is_ok());

        let err = parse(&format!("{GOOD}\n[admin]\nlisten = \"0.0.0.0:9901\"\n")).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("admin.listen"));
        assert_eq!(err.line, Some(18), "{err}");
        assert!(err.message.contains("allow_non_loopback = true"), "{err}");
        assert!(
            err.to_string()
                .starts_with("test.toml:18: key `admin.listen`"),
            "{err}"
        );

        let allowed =
            format!("{GOOD}\n[admin]\nlisten = \"0.0.0.0:9901\"\nallow_non_loopback = true\n");
        assert!(parse(&allowed).is_ok());
        let err = parse(&format!("{GOOD}\n[admin]\nlisen = \"127.0.0.1:1\"\n")).unwrap_err();
        assert!(err.message.contains("lisen"), "{err}");
    }

    #[test]
    fn a_route_mirror_takes_defaults_and_its_errors_are_located() {
        let mirror = "[route.mirror]\nupstream = \"ntjp\"\n";
        let config = parse(&format!("{GOOD}{mirror}")).unwrap();
        let m = config.routes[0].mirror.as_ref().unwrap();
        assert_eq!((m.sample_rate, m.max_concurrent), (1.0, 16));
        assert_eq!(m.path, None);
        let err = parse(&format!("{GOOD}[route.mirror]\nupstream = \"sim\"\n")).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("route[0].mirror.upstream"));
        assert_eq!(err.line, Some(17), "{err}");
        let err = parse(&format!("{GOOD}{mirror}sample_rate = 1.5\n")).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("route[0].mirror.sample_rate"));
        assert_eq!(err.line, Some(18), "{err}");
        let err = parse(&format!("{GOOD}{mirror}max_concurrent = 0\n")).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("route[0].mirror.max_concurrent"));
        let err = parse(&format!("{GOOD}{mirror}path = \"x\"\n")).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("route[0].mirror.path"));
        let err = parse(&format!("{GOOD}{mirror}sampel_rate = 0.5\n")).unwrap_err();
        assert!(err.message.contains("sampel_rate"), "{err}");
    }

    #[test]
    fn sources_accept_addresses_and_networks() {
        assert!(parse_source("127.0.0.1")
            .unwrap()
            .contains(&"127.0.0.1".parse::<IpAddr>().unwrap()));
        assert!(parse_source("::1").is_some());
        assert!(parse_source("10.1.0.0/16").is_some());
        assert!(parse_source("localhost").is_none());
    }
}
