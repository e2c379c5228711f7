//! A loaded policy: the compiled component pre-linked against the host imports, its
//! settings, and a pool of ready, initialised instances.
//!
//! Instantiating per call costs tens of microseconds, a call on a ready instance under
//! one (DESIGN.md), so instances are pooled and reused. Every entry into the guest runs
//! under the epoch deadline and the store's memory cap. An instance is discarded after
//! a trap (including a deadline or memory-cap hit) and after `max_calls_per_instance`
//! calls, so state a policy accumulates cannot grow without bound.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Deserialize;
use wasmtime::component::Component;
use wasmtime::{Store, StoreLimitsBuilder};

use super::bindings::{Policy, PolicyPre};
use super::capabilities::{AccessEntry, HostServices};
use super::engine::{LoadError, PolicyEngine, State};
use super::wit;

/// What the pipeline does with a call when a policy fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureMode {
    /// Refuse the call with a fault (RTP190). The safe default.
    #[default]
    FailClosed,
    /// Skip the policy for this call and record that it was skipped.
    FailOpen,
    /// Retry the call once on a fresh instance; refuse it if that fails too.
    Reload,
}

/// Per-policy sandbox limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Epoch ticks (milliseconds) a single guest entry may run.
    pub deadline_ticks: u64,
    /// Largest linear memory an instance may have.
    pub memory_bytes: usize,
    /// Calls after which an instance is replaced by a fresh one.
    pub max_calls_per_instance: u64,
    /// Consecutive failures after which the policy counts as failed until reloaded.
    pub crash_loop_limit: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline_ticks: 20,
            memory_bytes: 16 * 1024 * 1024,
            max_calls_per_instance: 10_000,
            crash_loop_limit: 5,
        }
    }
}

/// Why a policy gave no answer for a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyFailure {
    #[error("policy {policy} failed: {message}")]
    Trapped { policy: String, message: String },
    #[error(
        "policy {policy} failed {failures} times in a row and is disabled until it is reloaded"
    )]
    CrashLooping { policy: String, failures: u32 },
}

/// An instance ready for calls.
struct Ready {
    store: Store<State>,
    bindings: Policy,
    calls: u64,
}

pub struct LoadedPolicy {
    pub name: Arc<str>,
    pub version: String,
    pub wants_request: bool,
    pub wants_response: bool,
    pub file: PathBuf,
    /// SHA-256 of the component file.
    pub content_hash: String,
    pub loaded_at: SystemTime,
    pub failure_mode: FailureMode,
    settings: String,
    pre: PolicyPre<State>,
    engine: wasmtime::Engine,
    services: HostServices,
    limits: Limits,
    pool: Mutex<Vec<Ready>>,
    consecutive_failures: AtomicU32,
}

impl std::fmt::Debug for LoadedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPolicy")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("file", &self.file)
            .field("content_hash", &self.content_hash)
            .finish_non_exhaustive()
    }
}

impl LoadedPolicy {
    /// Compiles (or takes from the cache) and links the component, then proves it on a
    /// canary instance: `init` with these settings, then `describe`, must succeed. Blocking:
    /// call it off the request path.
    pub async fn load(
        engine: &PolicyEngine,
        file: &Path,
        settings_json: String,
        failure_mode: FailureMode,
        limits: Limits,
    ) -> Result<LoadedPolicy, LoadError> {
        let (component, content_hash) = engine.compile(file).await?;
        LoadedPolicy::load_compiled(
            engine,
            file,
            &component,
            content_hash,
            settings_json,
            failure_mode,
            limits,
        )
        .await
    }

    /// [`LoadedPolicy::load`] for a component `engine` compiled already (with
    /// [`PolicyEngine::compile`]): `policy test` compiles a policy once and loads it per
    /// case, with each case's settings and capabilities.
    pub async fn load_compiled(
        engine: &PolicyEngine,
        file: &Path,
        component: &Component,
        content_hash: String,
        settings_json: String,
        failure_mode: FailureMode,
        limits: Limits,
    ) -> Result<LoadedPolicy, LoadError> {
        let instantiate_error = |e: wasmtime::Error| LoadError::Instantiate {
            file: file.to_owned(),
            message: format!("{e:#}"),
        };
        let instance_pre = engine
            .linker()
            .instantiate_pre(component)
            .map_err(instantiate_error)?;
        let pre = PolicyPre::new(instance_pre).map_err(instantiate_error)?;

        let file_name: Arc<str> = Arc::from(file.display().to_string());
        let mut canary = instantiate(&pre, engine.engine(), engine.services(), &limits, file_name)
            .await
            .map_err(|message| LoadError::Instantiate {
                file: file.to_owned(),
                message,
            })?;
        // `init` first: the phases `describe` declares may depend on the settings (a
        // caller filter without care-unit restrictions has no response phase).
        init(&mut canary, &settings_json, &limits)
            .await
            .map_err(|message| LoadError::Init {
                file: file.to_owned(),
                message,
            })?;
        canary.store.set_epoch_deadline(limits.deadline_ticks);
        let metadata = canary
            .bindings
            .call_describe(&mut canary.store)
            .await
            .map_err(|e| LoadError::Instantiate {
                file: file.to_owned(),
                message: format!("describe failed: {e:#}"),
            })?;
        let name: Arc<str> = Arc::from(metadata.name.as_str());
        canary.store.data_mut().set_policy_name(name.clone());
        Ok(LoadedPolicy {
            name,
            version: metadata.version,
            wants_request: metadata.phases.contains(&wit::Phase::Request),
            wants_response: metadata.phases.contains(&wit::Phase::Response),
            file: file.to_owned(),
            content_hash,
            loaded_at: SystemTime::now(),
            failure_mode,
            settings: settings_json,
            pre,
            engine: engine.engine().clone(),
            services: engine.services().clone(),
            limits,
            pool: Mutex::new(vec![canary]),
            consecutive_failures: AtomicU32::new(0),
        })
    }

    /// The policy's verdict on a request, or why it has none. Applies the failure mode's
    /// retry (reload); the pipeline decides between refusing and skipping.
    pub async fn on_request(&self, call: &wit::Call) -> Result<wit::RequestAction, PolicyFailure> {
        match self.with_instance(Op::Request(call)).await? {
            Answer::Request(action) => Ok(action),
            Answer::Response(..) => unreachable!("a request call answers a request action"),
        }
    }

    /// The policy's verdict on a batch of a response's records, with the access-log
    /// entries it recorded while deciding.
    pub async fn on_response(
        &self,
        call: &wit::Call,
        records: &[wit::RecordSummary],
    ) -> Result<(wit::ResponseAction, Vec<AccessEntry>), PolicyFailure> {
        match self.with_instance(Op::Response(call, records)).await? {
            Answer::Response(action, entries) => Ok((action, entries)),
            Answer::Request(_) => unreachable!("a response call answers a response action"),
        }
    }

    /// Runs one call on a pooled (or fresh) instance under the limits.
    async fn with_instance(&self, op: Op<'_>) -> Result<Answer, PolicyFailure> {
        let failures = self.consecutive_failures.load(Ordering::Relaxed);
        if failures >= self.limits.crash_loop_limit {
            return Err(PolicyFailure::CrashLooping {
                policy: self.name.to_string(),
                failures,
            });
        }
        let attempts = if self.failure_mode == FailureMode::Reload {
            2
        } else {
            1
        };
        let mut last = String::new();
        for _ in 0..attempts {
            match self.attempt(&op).await {
                Ok(answer) => {
                    self.consecutive_failures.store(0, Ordering::Relaxed);
                    return Ok(answer);
                }
                Err(message) => {
                    self.consecutive_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(policy = %self.name, error = %message, "policy call failed; its instance is discarded");
                    last = message;
                }
            }
        }
        Err(PolicyFailure::Trapped {
            policy: self.name.to_string(),
            message: last,
        })
    }

    async fn attempt(&self, op: &Op<'_>) -> Result<Answer, String> {
        let pooled = self.pool.lock().ok().and_then(|mut pool| pool.pop());
        let mut ready = match pooled {
            Some(ready) => ready,
            None => {
                let mut fresh = instantiate(
                    &self.pre,
                    &self.engine,
                    &self.services,
                    &self.limits,
                    self.name.clone(),
                )
                .await?;
                init(&mut fresh, &self.settings, &self.limits).await?;
                fresh
            }
        };
        ready.store.set_epoch_deadline(self.limits.deadline_ticks);
        ready.store.data_mut().waited_on_host = false;
        // A failed call drops the instance: after a trap its state is not to be trusted.
        let answer = match op {
            Op::Request(call) => ready
                .bindings
                .call_on_request(&mut ready.store, call)
                .await
                .map(Answer::Request),
            Op::Response(call, records) => {
                ready.store.data_mut().allow_access_entries(true);
                let action = ready
                    .bindings
                    .call_on_response(&mut ready.store, call, records)
                    .await;
                let entries = ready.store.data_mut().take_access_entries();
                action.map(|action| Answer::Response(action, entries))
            }
        }
        .map_err(|e| describe_trap(&e))?;
        ready.calls += 1;
        if ready.calls < self.limits.max_calls_per_instance {
            if let Ok(mut pool) = self.pool.lock() {
                pool.push(ready);
            }
        }
        Ok(answer)
    }

    /// How many failures in a row the policy has had.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    /// Whether the policy failed too often in a row and is not run until reloaded.
    pub fn is_crash_looping(&self) -> bool {
        self.consecutive_failures() >= self.limits.crash_loop_limit
    }
}

/// One call into a policy.
enum Op<'a> {
    Request(&'a wit::Call),
    Response(&'a wit::Call, &'a [wit::RecordSummary]),
}

enum Answer {
    Request(wit::RequestAction),
    Response(wit::ResponseAction, Vec<AccessEntry>),
}

async fn instantiate(
    pre: &PolicyPre<State>,
    engine: &wasmtime::Engine,
    services: &HostServices,
    limits: &Limits,
    name: Arc<str>,
) -> Result<Ready, String> {
    let store_limits = StoreLimitsBuilder::new()
        .memory_size(limits.memory_bytes)
        .trap_on_grow_failure(true)
        .build();
    let mut store = Store::new(engine, State::new(name, store_limits, services.clone()));
    store.limiter(|state| &mut state.limits);
    // The deadline bounds the guest's own running time: time spent waiting on the host
    // (a block lookup, bounded by its own timeout) renews it once per wait.
    let ticks = limits.deadline_ticks;
    store.epoch_deadline_callback(move |mut store| {
        if std::mem::take(&mut store.data_mut().waited_on_host) {
            Ok(wasmtime::UpdateDeadline::Continue(ticks))
        } else {
            Err(wasmtime::Trap::Interrupt.into())
        }
    });
    store.set_epoch_deadline(limits.deadline_ticks);
    let bindings = pre
        .instantiate_async(&mut store)
        .await
        .map_err(|e| describe_trap(&e))?;
    Ok(Ready {
        store,
        bindings,
        calls: 0,
    })
}

async fn init(ready: &mut Ready, settings: &str, limits: &Limits) -> Result<(), String> {
    ready.store.set_epoch_deadline(limits.deadline_ticks);
    match ready.bindings.call_init(&mut ready.store, settings).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(message)) => Err(message),
        Err(e) => Err(describe_trap(&e)),
    }
}

/// A trap in words an operator understands.
fn describe_trap(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => "ran past its deadline and was stopped".to_owned(),
        Some(trap) => format!("trapped: {trap}"),
        None => {
            let text = format!("{e:#}");
            if text.contains("memory") && text.contains("limit") {
                format!("hit its memory cap: {text}")
            } else {
                text
            }
        }
    }
}
