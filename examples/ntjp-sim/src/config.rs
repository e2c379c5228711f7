//! Simulator configuration: a TOML file (or a value built in code by tests).
//!
//! Every table rejects unknown keys so that a typo in a demo or test config
//! fails loudly instead of silently changing the simulated platform.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors from loading or validating a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown/mistyped keys (toml reports line/column).
    #[error("invalid config {origin}: {message}")]
    Parse { origin: String, message: String },
    /// The TOML parsed but is inconsistent.
    #[error("invalid config {origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// The whole simulator configuration. All fields are public so that tests can
/// build a configuration in code starting from [`SimConfig::default`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// VP instance id, appended to `x-rivta-routing-history` (loop protection).
    pub instance_id: String,
    /// Instance name used in fault strings: `"<CODE> [<name>] <message>"`.
    pub name: String,
    /// Mutual-TLS listener (the sender id is the client certificate's serialNumber).
    pub https: Option<HttpsConfig>,
    /// Plain HTTP listener (sender id from `x-vp-sender-id`, peer must be whitelisted).
    pub http: Option<HttpConfig>,
    /// Directory with the sample messages used as record templates.
    /// `None` means the repository's `shared/samples` directory.
    pub samples_dir: Option<PathBuf>,
    /// Senders allowed to set `x-rivta-original-serviceconsumer-hsaid`.
    pub allow_osc_senders: Vec<String>,
    /// `true`: an unapproved sender setting the OSC header gets VP013; `false`: warning only.
    pub reject_unapproved_osc: bool,
    /// TAK routing entries (vägval).
    #[serde(rename = "route")]
    pub routes: Vec<RouteConfig>,
    /// TAK authorisations (anropsbehörigheter).
    #[serde(rename = "permission")]
    pub permissions: Vec<PermissionConfig>,
    /// Simulated producers.
    #[serde(rename = "producer")]
    pub producers: Vec<ProducerConfig>,
    /// Per-patient overrides, keyed by personnummer.
    pub patients: BTreeMap<String, PatientConfig>,
    /// Blocks served by producers of kind `blocks`.
    pub blocks: Vec<BlockConfig>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            instance_id: "ntjp-sim".to_string(),
            name: "NTJP-SIM".to_string(),
            https: None,
            http: None,
            samples_dir: None,
            allow_osc_senders: Vec::new(),
            reject_unapproved_osc: false,
            routes: Vec::new(),
            permissions: Vec::new(),
            producers: Vec::new(),
            patients: BTreeMap::new(),
            blocks: Vec::new(),
        }
    }
}

/// `[https]`: mTLS listener. Paths are PEM files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpsConfig {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA bundle that client certificates must chain to.
    pub client_ca: PathBuf,
}

/// `[http]`: plain listener for whitelisted peers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// IP prefixes (VP semantics: the peer IP string starts with an entry). Empty = nobody.
    #[serde(default)]
    pub ip_whitelist: Vec<String>,
}

/// `[[route]]`: a TAK routing entry. `logical_address = "*"` is the default route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub contract: String,
    pub logical_address: String,
    pub producer: String,
}

/// `[[permission]]`: a TAK authorisation. `logical_address = "*"` means any address.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionConfig {
    pub sender: String,
    pub contract: String,
    pub logical_address: String,
}

/// What a simulated producer does with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ProducerKind {
    /// Answers NPÖ contracts with generated records (other contracts: sample as-is or a generic answer).
    #[default]
    Records,
    /// Block service (`GetBlocksForPatient` 2).
    Blocks,
    /// Log service (`StoreLog` 1).
    Log,
}

/// How a producer misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum FaultMode {
    /// Answer normally.
    #[default]
    #[serde(rename = "none")]
    None,
    /// HTTP 500 with a SOAP 1.1 fault.
    #[serde(rename = "soap-fault")]
    SoapFault,
    /// HTTP 503 with a non-SOAP body.
    #[serde(rename = "http-503")]
    Http503,
    /// Send the headers and part of the body, then drop the connection.
    #[serde(rename = "reset")]
    Reset,
    /// Do not answer for a long time (bounded, see [`TIMEOUT_HANG`]).
    #[serde(rename = "timeout")]
    Timeout,
}

/// How long a producer in [`FaultMode::Timeout`] stays silent: far beyond
/// NTjP's 29 s producer timeout, yet bounded so nothing hangs forever.
pub const TIMEOUT_HANG: std::time::Duration = std::time::Duration::from_secs(120);

/// `[[producer]]`: a simulated producer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerConfig {
    pub name: String,
    #[serde(default)]
    pub kind: ProducerKind,
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default)]
    pub fault: FaultMode,
    /// Default number of records per answer.
    #[serde(default = "default_records")]
    pub records: usize,
    /// Record owner care providers (round-robin).
    #[serde(default)]
    pub care_providers: Vec<String>,
    /// Record owner care units (round-robin).
    #[serde(default)]
    pub care_units: Vec<String>,
    /// Record dates `YYYYMMDD` (round-robin); default: consecutive days from 2024-01-01.
    #[serde(default)]
    pub dates: Vec<String>,
    /// Source system HSA-id; default: the logical address of the call (RIV rule R3).
    #[serde(default)]
    pub source_system: Option<String>,
}

fn default_records() -> usize {
    2
}

impl ProducerConfig {
    /// A producer with defaults and the given name (handy in tests).
    pub fn new(name: impl Into<String>) -> Self {
        ProducerConfig {
            name: name.into(),
            kind: ProducerKind::Records,
            latency_ms: 0,
            fault: FaultMode::None,
            records: default_records(),
            care_providers: Vec::new(),
            care_units: Vec::new(),
            dates: Vec::new(),
            source_system: None,
        }
    }
}

/// `[patients."<personnummer>"]`: overrides of the producer defaults for one patient.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientConfig {
    pub records: Option<usize>,
    #[serde(default)]
    pub dates: Vec<String>,
    #[serde(default)]
    pub care_providers: Vec<String>,
    #[serde(default)]
    pub care_units: Vec<String>,
    /// Zero-based indexes of records generated without owner ids.
    #[serde(default)]
    pub missing_owner: Vec<usize>,
}

/// `[[blocks]]`: one block in the block service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockConfig {
    pub patient_id: String,
    pub block_id: String,
    pub block_type: BlockKind,
    pub care_provider: String,
    #[serde(default)]
    pub care_unit: Option<String>,
    /// `YYYY-MM-DDThh:mm:ss`
    #[serde(default)]
    pub start: Option<String>,
    /// `YYYY-MM-DDThh:mm:ss`
    #[serde(default)]
    pub end: Option<String>,
    /// `lak` and/or `upp`.
    #[serde(default)]
    pub excluded_info_types: Vec<String>,
    #[serde(default)]
    pub temporary_revokes: Vec<TemporaryRevokeConfig>,
}

/// Inner (within a care provider, between care units) or outer (between care providers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum BlockKind {
    Inner,
    Outer,
}

impl BlockKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BlockKind::Inner => "Inner",
            BlockKind::Outer => "Outer",
        }
    }
}

/// A temporary revoke of a block for a care unit (and optionally one employee).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemporaryRevokeConfig {
    pub care_unit: String,
    #[serde(default)]
    pub employee: Option<String>,
    /// `YYYY-MM-DDThh:mm:ss`
    pub end_date: String,
}

impl SimConfig {
    /// Loads a config file; relative paths inside are resolved against its directory.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        Self::parse(&text, &base, &path.display().to_string())
    }

    /// Parses TOML text; relative paths are resolved against `base_dir`.
    pub fn from_toml_str(text: &str, base_dir: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::parse(text, base_dir.as_ref(), "<string>")
    }

    fn parse(text: &str, base: &Path, origin: &str) -> Result<Self, ConfigError> {
        let mut cfg: SimConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(https) = cfg.https.as_mut() {
            resolve(&mut https.cert);
            resolve(&mut https.key);
            resolve(&mut https.client_ca);
        }
        // The documented default is relative to the config file, not to the process.
        let mut samples = cfg
            .samples_dir
            .take()
            .unwrap_or_else(|| PathBuf::from("../../shared/samples"));
        resolve(&mut samples);
        cfg.samples_dir = Some(samples);
        cfg.validate().map_err(|message| ConfigError::Invalid {
            origin: origin.to_string(),
            message,
        })?;
        Ok(cfg)
    }

    /// Checks cross references and value formats. Also run by `start` for configs built in code.
    pub fn validate(&self) -> Result<(), String> {
        let mut names = std::collections::HashSet::new();
        for p in &self.producers {
            if !names.insert(p.name.to_ascii_lowercase()) {
                return Err(format!("duplicate producer name {:?}", p.name));
            }
            check_dates(&p.dates, &format!("producer {:?}", p.name))?;
        }
        for (i, r) in self.routes.iter().enumerate() {
            if !names.contains(&r.producer.to_ascii_lowercase()) {
                return Err(format!(
                    "route #{} ({} / {}) names unknown producer {:?}",
                    i + 1,
                    r.contract,
                    r.logical_address,
                    r.producer
                ));
            }
            if r.contract.trim().is_empty() || r.logical_address.trim().is_empty() {
                return Err(format!(
                    "route #{} has an empty contract or logical_address",
                    i + 1
                ));
            }
        }
        for (i, p) in self.permissions.iter().enumerate() {
            if p.sender.trim().is_empty()
                || p.contract.trim().is_empty()
                || p.logical_address.trim().is_empty()
            {
                return Err(format!("permission #{} has an empty field", i + 1));
            }
        }
        for (id, p) in &self.patients {
            check_dates(&p.dates, &format!("patient {id:?}"))?;
        }
        for b in &self.blocks {
            if b.block_type == BlockKind::Inner && b.care_unit.is_none() {
                return Err(format!(
                    "block {:?} is Inner and needs a care_unit",
                    b.block_id
                ));
            }
        }
        if self.name.is_empty() || self.instance_id.is_empty() {
            return Err("name and instance_id must not be empty".to_string());
        }
        if self.instance_id.contains('#') {
            return Err("instance_id must not contain '#'".to_string());
        }
        Ok(())
    }

    /// The samples directory in effect.
    pub fn samples_dir(&self) -> PathBuf {
        self.samples_dir.clone().unwrap_or_else(default_samples_dir)
    }
}

/// The repository's `shared/samples` directory, relative to this crate's sources.
pub fn default_samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/samples")
}

fn check_dates(dates: &[String], owner: &str) -> Result<(), String> {
    for d in dates {
        if d.len() != 8 || !d.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{owner}: date {d:?} is not YYYYMMDD"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_resolves_paths() {
        let cfg = SimConfig::from_toml_str(
            r#"
            name = "X"
            [https]
            listen = "127.0.0.1:0"
            cert = "a.crt"
            key = "/abs/a.key"
            client_ca = "ca.crt"
            [[producer]]
            name = "p"
            [[route]]
            contract = "urn:x"
            logical_address = "*"
            producer = "p"
            "#,
            "/base",
        )
        .expect("valid");
        let https = cfg.https.expect("https");
        assert_eq!(https.cert, PathBuf::from("/base/a.crt"));
        assert_eq!(https.key, PathBuf::from("/abs/a.key"));
        assert_eq!(cfg.instance_id, "ntjp-sim");
        assert_eq!(
            cfg.samples_dir,
            Some(PathBuf::from("/base/../../shared/samples"))
        );
    }

    #[test]
    fn unknown_key_and_bad_reference_are_reported() {
        let err = SimConfig::from_toml_str("nme = 1", ".").expect_err("unknown key");
        assert!(err.to_string().contains("nme"), "{err}");
        let err = SimConfig::from_toml_str(
            "[[route]]\ncontract='a'\nlogical_address='b'\nproducer='nope'",
            ".",
        )
        .expect_err("bad producer");
        assert!(err.to_string().contains("nope"), "{err}");
        let err = SimConfig::from_file("/nonexistent/sim.toml").expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/sim.toml"), "{err}");
    }
}
