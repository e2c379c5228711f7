//! `ntjp-sim`: a simulator of Inera's national service platform NTjP (the SKLTP
//! virtualisation platform, VP) with simulated producers, a block service and a
//! PDL log service. It lets tests, the demo and benchmarks run rtp-proxy against
//! something that behaves like NTjP; it is deliberately independent of the proxy.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let config = ntjp_sim::SimConfig::from_file("config/ntjp-sim.toml")?;
//! let sim = ntjp_sim::start(config).await?;
//! println!("https on {:?}", sim.https_addr());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

pub mod blocks;
pub mod config;
pub mod log_service;
pub mod producers;
pub mod recorder;
mod server;
pub mod tak;
pub mod templates;
pub mod tls;
pub mod vp;
pub mod xml;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{
    BlockConfig, BlockKind, ConfigError, FaultMode, HttpConfig, HttpsConfig, PatientConfig,
    PermissionConfig, ProducerConfig, ProducerKind, RouteConfig, SimConfig, TemporaryRevokeConfig,
};
pub use log_service::{LogResource, StoreLogEntry};
pub use recorder::RecordedCall;
pub use server::headers;
pub use templates::NPO_CONTRACTS;

/// Errors starting the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error(transparent)]
    Template(#[from] templates::TemplateError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A running simulator. Dropping it without [`RunningSim::shutdown`] leaves the
/// listeners running until the tokio runtime ends.
#[derive(Debug)]
pub struct RunningSim {
    shared: Arc<server::Shared>,
    https_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Starts the configured listeners (port 0 picks a free port).
pub async fn start(config: SimConfig) -> Result<RunningSim, SimError> {
    config.validate().map_err(SimError::Invalid)?;
    if config.https.is_none() && config.http.is_none() {
        return Err(SimError::Invalid(
            "neither [https] nor [http] is configured".to_string(),
        ));
    }
    let producers = producers::Producers::load(&config.samples_dir())?;
    let tls_config = config.https.as_ref().map(tls::server_config).transpose()?;
    let https_cfg = config.https.clone();
    let http_cfg = config.http.clone();
    let shared = Arc::new(server::Shared {
        config,
        producers,
        recorder: recorder::Recorder::default(),
    });
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut https_addr = None;
    let mut http_addr = None;
    if let (Some(https), Some(tls_config)) = (https_cfg, tls_config) {
        let listener = bind(https.listen).await?;
        https_addr = listener.local_addr().ok();
        tracing::info!(addr = ?https_addr, "NTjP simulator listening (mTLS)");
        tasks.push(tokio::spawn(server::serve(
            listener,
            Some(tokio_rustls::TlsAcceptor::from(tls_config)),
            shared.clone(),
            shutdown_rx.clone(),
        )));
    }
    if let Some(http) = http_cfg {
        let listener = bind(http.listen).await?;
        http_addr = listener.local_addr().ok();
        tracing::info!(addr = ?http_addr, "NTjP simulator listening (plain HTTP)");
        tasks.push(tokio::spawn(server::serve(
            listener,
            None,
            shared.clone(),
            shutdown_rx,
        )));
    }
    Ok(RunningSim {
        shared,
        https_addr,
        http_addr,
        shutdown_tx,
        tasks,
    })
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, SimError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| SimError::Bind { addr, source })
}

impl RunningSim {
    /// Address of the mTLS listener.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// Address of the plain HTTP listener.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// All calls recorded since start or the last reset.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.shared.recorder.calls()
    }

    /// Log entries received by log services (only while not in a fault mode).
    pub fn store_log_entries(&self) -> Vec<StoreLogEntry> {
        self.shared.recorder.logs()
    }

    /// Clears recorded calls and log entries.
    pub fn reset(&self) {
        self.shared.recorder.reset();
    }

    /// Changes a producer's fault mode at runtime, e.g. to take the log service
    /// down and bring it back. Unknown names are accepted and have no effect.
    pub fn set_producer_fault(&self, producer: &str, mode: FaultMode) {
        self.shared.producers.set_fault(producer, mode);
    }

    /// The configuration in effect.
    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    /// Stops the listeners and drops open connections (including hanging
    /// `timeout` calls). Bounded: never waits more than a few seconds.
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        for mut task in self.tasks {
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}
