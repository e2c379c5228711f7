//! Reloading while calls flow: the config file, the policy files and the TLS files.
//!
//! The relay (routes, upstreams, pipelines) sits behind an `ArcSwap`: each call takes the
//! relay in force when it starts and finishes on it. A changed config file is parsed,
//! validated and built into a new relay (every policy loaded and proved) off the request
//! path, then swapped in; if anything fails, the running relay stays and the error is
//! logged with file, line and cause. A changed policy file reloads just that policy
//! (`policy::reload`). Changed certificate, key or CA files rebuild the TLS
//! configuration that reads them (`tls_reload`): the listener's and every upstream
//! client's. Listener addresses, the paths of the listener's TLS files and the host
//! capabilities (block service, access-log journal) are bound at start: changing them
//! in the config needs a restart, and a reload says so.
//!
//! Triggers: a debounced file watch (directories of the config, of every policy and of
//! every TLS file, so rename-and-replace and Kubernetes' `..data` symlink swap are
//! seen), SIGHUP, and the admin listener's `POST /reload`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::policy::{HostServices, PolicyReloader, ReloadOutcome};
use crate::relay::Relay;
use crate::tls_reload::{RefreshTls, TlsOutcome, Validity};

/// What a config check did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOutcome {
    /// Not loaded from a file, or the file's content is the running config's.
    Unchanged,
    /// A new relay built from the new config is in force.
    Reloaded,
    /// The new config did not load; the running one stays.
    Failed(String),
}

/// The result of one reload check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    pub config: ConfigOutcome,
    /// Per policy slot, when the config itself did not change (a new config loads
    /// every policy afresh).
    pub policies: Vec<ReloadOutcome>,
    /// Which slot each of `policies` is, in the same order.
    pub slots: Vec<SlotRef>,
    /// Per set of TLS files (the listener's, each upstream's), what the check did.
    pub certificates: Vec<TlsReport>,
}

/// What a check did with one set of TLS files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsReport {
    /// `https listener`, `upstream <name>`.
    pub what: String,
    pub outcome: TlsOutcome,
}

/// A pipeline position, as a reload report names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRef {
    pub route: String,
    pub index: usize,
    pub file: PathBuf,
    /// The name of the version in force after the check.
    pub policy: String,
}

/// Holds the relay in force and replaces it, or its policies, when files change.
pub struct Reloader {
    relay: ArcSwap<Relay>,
    services: HostServices,
    config_file: Option<PathBuf>,
    /// Hash of the config file's content the running relay was built from.
    config_hash: Mutex<Option<String>>,
    /// What only a restart can change, as first loaded.
    restart_only: String,
    config_reloads: AtomicU64,
    /// Reload checks run, whether or not anything changed.
    checks: AtomicU64,
    last_config_error: Mutex<Option<String>>,
    metrics: Arc<Metrics>,
    /// One check at a time: a burst of triggers never loads a version twice.
    running: tokio::sync::Mutex<()>,
    watcher: Mutex<Option<(notify::RecommendedWatcher, BTreeSet<PathBuf>)>>,
    /// TLS files bound at start and checked with every reload: the listener's and the
    /// host capabilities' upstreams. The relay's upstreams are checked as well, from
    /// whichever relay is in force.
    tls: Mutex<Vec<Arc<dyn RefreshTls>>>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("config_file", &self.config_file)
            .finish_non_exhaustive()
    }
}

impl Reloader {
    pub fn new(relay: Relay, config: &Config, services: HostServices) -> Reloader {
        Reloader::with_metrics(relay, config, services, Metrics::detached())
    }

    /// A reloader that counts reloads in `metrics` and builds new relays with them.
    pub fn with_metrics(
        relay: Relay,
        config: &Config,
        services: HostServices,
        metrics: Arc<Metrics>,
    ) -> Reloader {
        let config_hash = config
            .source_file
            .as_deref()
            .and_then(|file| content_hash(file).ok());
        Reloader {
            relay: ArcSwap::from_pointee(relay),
            services,
            config_file: config.source_file.clone(),
            config_hash: Mutex::new(config_hash),
            restart_only: restart_only(config),
            config_reloads: AtomicU64::new(0),
            checks: AtomicU64::new(0),
            last_config_error: Mutex::new(None),
            metrics,
            running: tokio::sync::Mutex::new(()),
            watcher: Mutex::new(None),
            tls: Mutex::new(Vec::new()),
        }
    }

    /// Checks `source`'s files with every reload from now on (and watches their
    /// directories when the file watch runs).
    pub fn watch_tls(&self, source: Arc<dyn RefreshTls>) {
        if let Ok(mut sources) = self.tls.lock() {
            sources.push(source);
        }
        self.watch_new_directories();
    }

    /// Every set of TLS files in use: those bound at start, then the relay's upstreams.
    fn tls_sources(&self) -> Vec<Arc<dyn RefreshTls>> {
        let mut sources: Vec<Arc<dyn RefreshTls>> =
            self.tls.lock().map(|s| s.clone()).unwrap_or_default();
        let relay = self.relay();
        sources.extend(
            relay
                .upstreams()
                .iter()
                .map(|u| u.clone() as Arc<dyn RefreshTls>),
        );
        sources
    }

    /// When each TLS configuration's certificate and revocation lists run out, by what
    /// it is (`https listener`, `upstream <name>`, ...).
    pub fn tls_validity(&self) -> Vec<(String, Validity)> {
        self.tls_sources()
            .iter()
            .map(|source| (source.what().to_owned(), source.validity()))
            .collect()
    }

    /// Rebuilds each TLS configuration whose files changed.
    fn refresh_tls(&self) -> Vec<TlsReport> {
        self.tls_sources()
            .iter()
            .map(|source| {
                let outcome = source.refresh();
                match outcome {
                    TlsOutcome::Unchanged => {}
                    TlsOutcome::Reloaded => self.metrics.tls_reloaded(source.what(), true),
                    TlsOutcome::Failed(_) => self.metrics.tls_reloaded(source.what(), false),
                }
                TlsReport {
                    what: source.what().to_owned(),
                    outcome,
                }
            })
            .collect()
    }

    /// The relay in force now.
    pub fn relay(&self) -> Arc<Relay> {
        self.relay.load_full()
    }

    /// The running relay's policies; none when no route has policies.
    pub fn policies(&self) -> Option<Arc<PolicyReloader>> {
        self.relay().reloader()
    }

    /// The config file the running config came from (none when parsed from text).
    pub fn config_file(&self) -> Option<&Path> {
        self.config_file.as_deref()
    }

    /// The metrics of this proxy.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// How many times a new config has been swapped in.
    pub fn config_reload_count(&self) -> u64 {
        self.config_reloads.load(Ordering::Relaxed)
    }

    /// How many reload checks have run (file events, SIGHUP, `POST /reload`),
    /// including those that found nothing changed.
    pub fn check_count(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }

    /// The error of the last config reload attempt, if it failed.
    pub fn last_config_error(&self) -> Option<String> {
        self.last_config_error.lock().ok().and_then(|e| e.clone())
    }

    /// Reloads the config if its file changed, otherwise the policies whose files
    /// changed; then the TLS configurations whose certificate, key or CA files changed.
    pub async fn reload(&self) -> ReloadReport {
        let _one_at_a_time = self.running.lock().await;
        self.checks.fetch_add(1, Ordering::Relaxed);
        let config = self.reload_config().await;
        let (policies, slots) = match (&config, self.policies()) {
            (ConfigOutcome::Reloaded, _) | (_, None) => (Vec::new(), Vec::new()),
            (_, Some(reloader)) => {
                let outcomes = reloader.reload_changed().await;
                let slots: Vec<SlotRef> = reloader
                    .slots()
                    .iter()
                    .map(|slot| SlotRef {
                        route: slot.route.clone(),
                        index: slot.index,
                        file: slot.file.clone(),
                        policy: slot.current().name.to_string(),
                    })
                    .collect();
                for (slot, outcome) in reloader.slots().iter().zip(&outcomes) {
                    let success = match outcome {
                        ReloadOutcome::Unchanged => continue,
                        ReloadOutcome::Reloaded { .. } => true,
                        ReloadOutcome::Failed(_) => false,
                    };
                    self.metrics
                        .policy_reloaded(&slot.route, &slot.current().name, success);
                }
                (outcomes, slots)
            }
        };
        let certificates = self.refresh_tls();
        ReloadReport {
            config,
            policies,
            slots,
            certificates,
        }
    }

    async fn reload_config(&self) -> ConfigOutcome {
        let Some(file) = &self.config_file else {
            return ConfigOutcome::Unchanged;
        };
        let hash = match content_hash(file) {
            Ok(hash) => hash,
            Err(e) => return self.config_failed(format!("{}: cannot read: {e}", file.display())),
        };
        if self.config_hash.lock().ok().and_then(|h| h.clone()) == Some(hash.clone()) {
            // Back to the running config (a broken one rolled back): nothing is wrong.
            if let Ok(mut last) = self.last_config_error.lock() {
                *last = None;
            }
            return ConfigOutcome::Unchanged;
        }
        let config = match Config::load(file) {
            Ok(config) => config,
            Err(e) => return self.config_failed(e.to_string()),
        };
        if restart_only(&config) != self.restart_only {
            tracing::warn!(
                file = %file.display(),
                "listener (certificate paths among them), block-service or access-log settings changed: they take effect at the next restart; the rest is reloaded now"
            );
        }
        match Relay::build_with_metrics(&config, self.services.clone(), self.metrics.clone()).await
        {
            Ok(relay) => {
                self.relay.store(Arc::new(relay));
                if let Ok(mut running) = self.config_hash.lock() {
                    *running = Some(hash);
                }
                if let Ok(mut last) = self.last_config_error.lock() {
                    *last = None;
                }
                self.config_reloads.fetch_add(1, Ordering::Relaxed);
                self.metrics.config_reloaded(true);
                self.watch_new_directories();
                tracing::info!(file = %file.display(), "config reloaded");
                ConfigOutcome::Reloaded
            }
            Err(e) => self.config_failed(format!("{}: {e}", file.display())),
        }
    }

    fn config_failed(&self, message: String) -> ConfigOutcome {
        tracing::error!(error = %message, "config reload failed; the running config stays");
        self.metrics.config_reloaded(false);
        if let Ok(mut last) = self.last_config_error.lock() {
            *last = Some(message.clone());
        }
        ConfigOutcome::Failed(message)
    }

    /// Watches the directories of the config file and of every policy file, and runs a
    /// reload check after each burst of events has been quiet for `debounce`. The
    /// watch lives as long as the reloader.
    pub fn watch(self: &Arc<Self>, debounce: Duration) -> Result<(), notify::Error> {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Opening or reading a file is no change. Reacting to it would loop: every
            // check reads the config and policy files, and those reads are events too.
            if event.is_ok_and(|event| !event.kind.is_access()) {
                let _ = tx.send(());
            }
        })?;
        if let Ok(mut slot) = self.watcher.lock() {
            *slot = Some((watcher, BTreeSet::new()));
        }
        self.watch_new_directories();
        // The task holds a weak reference: it ends when the proxy drops the reloader.
        let reloader = Arc::downgrade(self);
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // Debounce: wait until no event has arrived for `debounce`.
                while let Ok(Some(())) = tokio::time::timeout(debounce, rx.recv()).await {}
                let Some(reloader) = reloader.upgrade() else {
                    break;
                };
                reloader.reload().await;
            }
        });
        Ok(())
    }

    /// Adds watches for directories the running config uses and that are not watched
    /// yet. Directories, not files: a file replaced by rename, or a swapped symlink,
    /// would leave a watch on the file itself pointing at nothing.
    fn watch_new_directories(&self) {
        let mut wanted: BTreeSet<PathBuf> = self
            .config_file
            .iter()
            .filter_map(|f| parent_dir(f))
            .collect();
        if let Some(policies) = self.policies() {
            wanted.extend(policies.slots().iter().filter_map(|s| parent_dir(&s.file)));
        }
        for source in self.tls_sources() {
            wanted.extend(source.files().iter().filter_map(|f| parent_dir(f)));
        }
        let Ok(mut slot) = self.watcher.lock() else {
            return;
        };
        let Some((watcher, watched)) = slot.as_mut() else {
            return;
        };
        for dir in wanted {
            if watched.contains(&dir) {
                continue;
            }
            match watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    watched.insert(dir);
                }
                Err(e) => {
                    tracing::error!(dir = %dir.display(), error = %e, "cannot watch for changes; use SIGHUP to reload")
                }
            }
        }
    }
}

fn parent_dir(file: &Path) -> Option<PathBuf> {
    match file.parent() {
        Some(dir) if dir.as_os_str().is_empty() => Some(PathBuf::from(".")),
        Some(dir) => Some(dir.to_path_buf()),
        None => None,
    }
}

/// The settings bound at start, as text for comparison.
fn restart_only(config: &Config) -> String {
    format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        config.https,
        config.http,
        config.blocks,
        config.access_log,
        config.proxy.worker_threads,
        config.admin
    )
}

/// The SHA-256 of a file's content, in hex: how every reload check (config, policies,
/// TLS files) tells a changed file from one merely touched or rewritten unchanged.
pub(crate) fn content_hash(file: &Path) -> std::io::Result<String> {
    let bytes = std::fs::read(file)?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
