//! Hot reload: a pipeline position ([`PolicySlot`]) holds its policy behind an `ArcSwap`.
//! A call takes the version in force when it starts and finishes on it; a new version is
//! compiled and proved on a canary instance off the request path, and only then swapped
//! in. A version that fails to load never replaces the running one: the error is logged
//! with the file and the cause, and kept for operators.
//!
//! Reloads are decided by content: the file's SHA-256 against the running version's. So
//! editors' save patterns (write and rename, truncate and write) and Kubernetes ConfigMap
//! updates (an atomic swap of the `..data` symlink) each change the content once and
//! cause one reload, and a burst of file events is collapsed by a debounce (the watch
//! itself is in `crate::reload`, which also reloads the config).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::engine::PolicyEngine;
use super::loaded::{FailureMode, Limits, LoadedPolicy};
use crate::reload::content_hash;

/// One position in a route's pipeline.
pub struct PolicySlot {
    pub route: String,
    pub index: usize,
    /// The file as configured (it may be a symlink).
    pub file: PathBuf,
    settings: String,
    failure_mode: FailureMode,
    limits: Limits,
    current: ArcSwap<LoadedPolicy>,
    last_error: Mutex<Option<String>>,
    reloads: AtomicU64,
    /// Verdicts are logged and counted, never enforced (`dry_run` in the config).
    dry_run: bool,
}

impl std::fmt::Debug for PolicySlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySlot")
            .field("route", &self.route)
            .field("index", &self.index)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// What a reload check did for one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The file's content is the running version's.
    Unchanged,
    /// A new version is in force.
    Reloaded { from: String, to: String },
    /// The new content did not load; the running version stays.
    Failed(String),
}

impl PolicySlot {
    pub fn new(
        route: String,
        index: usize,
        policy: LoadedPolicy,
        settings: String,
        failure_mode: FailureMode,
        limits: Limits,
    ) -> PolicySlot {
        PolicySlot {
            route,
            index,
            file: policy.file.clone(),
            settings,
            failure_mode,
            limits,
            current: ArcSwap::from_pointee(policy),
            last_error: Mutex::new(None),
            reloads: AtomicU64::new(0),
            dry_run: false,
        }
    }

    /// The slot with its verdicts logged and counted but not enforced, or enforced.
    pub fn with_dry_run(mut self, dry_run: bool) -> PolicySlot {
        self.dry_run = dry_run;
        self
    }

    /// Whether the slot's verdicts are only logged and counted.
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// The version in force now.
    pub fn current(&self) -> Arc<LoadedPolicy> {
        self.current.load_full()
    }

    /// How many times a new version has been swapped in.
    pub fn reload_count(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// The last load error, if the last reload attempt failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Loads the file again if its content differs from the running version's.
    pub async fn reload_if_changed(&self, engine: &PolicyEngine) -> ReloadOutcome {
        let running = self.current();
        match content_hash(&self.file) {
            // Back to the running version (a broken one rolled back): nothing is wrong.
            Ok(hash) if hash == running.content_hash => {
                self.clear_error();
                return ReloadOutcome::Unchanged;
            }
            Ok(_) => {}
            Err(e) => return self.failed(format!("{}: cannot read: {e}", self.file.display())),
        }
        let loaded = LoadedPolicy::load(
            engine,
            &self.file,
            self.settings.clone(),
            self.failure_mode,
            self.limits,
        )
        .await;
        match loaded {
            Ok(policy) if policy.content_hash == running.content_hash => {
                self.clear_error();
                ReloadOutcome::Unchanged
            }
            Ok(policy) => {
                let outcome = ReloadOutcome::Reloaded {
                    from: running.content_hash.clone(),
                    to: policy.content_hash.clone(),
                };
                tracing::info!(
                    route = %self.route,
                    policy = %policy.name,
                    version = %policy.version,
                    file = %self.file.display(),
                    content_hash = %policy.content_hash,
                    "policy reloaded"
                );
                self.current.store(Arc::new(policy));
                self.reloads.fetch_add(1, Ordering::Relaxed);
                self.clear_error();
                outcome
            }
            Err(e) => self.failed(e.to_string()),
        }
    }

    fn clear_error(&self) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = None;
        }
    }

    fn failed(&self, message: String) -> ReloadOutcome {
        tracing::error!(route = %self.route, file = %self.file.display(), error = %message, "policy reload failed; the running version stays");
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(message.clone());
        }
        ReloadOutcome::Failed(message)
    }
}

/// Every slot of every route, and the engine to load new versions with.
pub struct PolicyReloader {
    engine: PolicyEngine,
    slots: Vec<Arc<PolicySlot>>,
    /// One reload check at a time: a burst of triggers never loads a version twice.
    running: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for PolicyReloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyReloader")
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

impl PolicyReloader {
    pub fn new(engine: PolicyEngine, slots: Vec<Arc<PolicySlot>>) -> PolicyReloader {
        PolicyReloader {
            engine,
            slots,
            running: tokio::sync::Mutex::new(()),
        }
    }

    pub fn slots(&self) -> &[Arc<PolicySlot>] {
        &self.slots
    }

    /// Checks every policy file and reloads those whose content changed.
    pub async fn reload_changed(&self) -> Vec<ReloadOutcome> {
        let _one_at_a_time = self.running.lock().await;
        let mut outcomes = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            outcomes.push(slot.reload_if_changed(&self.engine).await);
        }
        outcomes
    }
}
