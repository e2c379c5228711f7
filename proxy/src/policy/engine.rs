//! The wasmtime engine shared by all policies: compilation (cached on disk by content
//! hash and engine compatibility), the epoch ticker that enforces call deadlines, and
//! the linker with the host imports.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, StoreLimits};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::rtp::policy::{access_log, blocks, clock, log, types};
use super::bindings::Policy;
use super::capabilities::{validate_access_entry, AccessEntry, HostServices};

/// How often the epoch advances: the unit of a call's deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Why a policy could not be loaded. Names the file and the cause.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: not a usable policy component: {message}")]
    Compile { file: PathBuf, message: String },
    #[error("{file}: {message}")]
    Instantiate { file: PathBuf, message: String },
    #[error("{file}: init refused the settings: {message}")]
    Init { file: PathBuf, message: String },
    #[error("wasm engine: {0}")]
    Engine(String),
}

/// What every policy call's store holds: a WASI context with nothing granted (no
/// files, no network, no environment), the memory limiter, the policy's name for its
/// log lines, and the capabilities the host lends.
pub struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limits: StoreLimits,
    policy: Arc<str>,
    services: HostServices,
    /// Access entries recorded during the current call, when the call may record them.
    access_entries: Option<Vec<AccessEntry>>,
    /// Set when the guest waited on the host (a block lookup) since the deadline was
    /// armed: that wait is not the guest's running time, so the deadline is renewed.
    pub(crate) waited_on_host: bool,
}

impl State {
    pub fn new(policy: Arc<str>, limits: StoreLimits, services: HostServices) -> State {
        State {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits,
            policy,
            services,
            access_entries: None,
            waited_on_host: false,
        }
    }

    pub(crate) fn set_policy_name(&mut self, name: Arc<str>) {
        self.policy = name;
    }

    /// Opens (response phase) or closes the window in which `record-access` is accepted.
    pub(crate) fn allow_access_entries(&mut self, allowed: bool) {
        self.access_entries = allowed.then(Vec::new);
    }

    /// The access entries recorded since the window opened.
    pub(crate) fn take_access_entries(&mut self) -> Vec<AccessEntry> {
        self.access_entries.take().unwrap_or_default()
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

// The types interface has no functions; its host trait is empty.
impl types::Host for State {}

impl clock::Host for State {
    fn now_millis(&mut self) -> u64 {
        if let Some(clock) = &self.services.clock {
            return clock.now_millis();
        }
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

impl log::Host for State {
    fn log(&mut self, level: log::Level, message: String) {
        let policy = &*self.policy;
        match level {
            log::Level::Debug => tracing::debug!(policy, "{message}"),
            log::Level::Info => tracing::info!(policy, "{message}"),
            log::Level::Warn => tracing::warn!(policy, "{message}"),
            log::Level::Error => tracing::error!(policy, "{message}"),
        }
    }
}

impl blocks::Host for State {
    async fn blocks_for_patient(
        &mut self,
        patient_id: String,
        care_provider: String,
    ) -> Result<Vec<blocks::Block>, String> {
        let Some(lookup) = self.services.blocks.clone() else {
            return Err("no block service is configured ([blocks] in the config)".into());
        };
        let answer = lookup.blocks_for_patient(&patient_id, &care_provider).await;
        self.waited_on_host = true;
        answer
    }
}

impl access_log::Host for State {
    fn record_access(&mut self, entry: access_log::AccessEntry) -> Result<(), String> {
        if self.services.access_log.is_none() {
            return Err("no access-log journal is configured ([access_log] in the config)".into());
        }
        validate_access_entry(&entry)?;
        match &mut self.access_entries {
            Some(entries) => {
                entries.push(entry);
                Ok(())
            }
            None => Err("accesses are recorded in the response phase only".into()),
        }
    }
}

/// The engine, linker, compile cache and the capabilities lent to policies.
#[derive(Clone)]
pub struct PolicyEngine {
    engine: Engine,
    linker: Arc<Linker<State>>,
    cache_dir: Option<PathBuf>,
    services: HostServices,
}

impl PolicyEngine {
    /// One engine per process. `cache_dir` keeps compiled components across restarts;
    /// `services` are the capabilities every policy instance gets.
    pub fn new(
        cache_dir: Option<PathBuf>,
        services: HostServices,
    ) -> Result<PolicyEngine, LoadError> {
        let mut config = Config::new();
        // Deadlines: a policy that loops is interrupted at the next epoch check.
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| LoadError::Engine(e.to_string()))?;
        Policy::add_to_linker::<State, HasSelf<State>>(&mut linker, |state| state)
            .map_err(|e| LoadError::Engine(e.to_string()))?;
        start_epoch_ticker(&engine).map_err(|e| {
            LoadError::Engine(format!("cannot start the policy deadline thread: {e}"))
        })?;
        Ok(PolicyEngine {
            engine,
            linker: Arc::new(linker),
            cache_dir,
            services,
        })
    }

    pub fn services(&self) -> &HostServices {
        &self.services
    }

    /// The same engine (compiled components stay usable, the compile cache is shared)
    /// lending other capabilities to the policies loaded through it: `policy test` gives
    /// each case its own clock, blocks and access log.
    pub fn with_services(&self, services: HostServices) -> PolicyEngine {
        PolicyEngine {
            services,
            ..self.clone()
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn linker(&self) -> &Linker<State> {
        &self.linker
    }

    /// Compiles a component file, or takes it from the cache, on a blocking thread.
    /// Returns it with the SHA-256 of the file's bytes (the policy's content hash).
    pub async fn compile(&self, file: &Path) -> Result<(Component, String), LoadError> {
        let engine = self.clone();
        let owned = file.to_owned();
        tokio::task::spawn_blocking(move || engine.compile_blocking(&owned))
            .await
            .map_err(|e| LoadError::Engine(format!("compilation interrupted: {e}")))?
    }

    fn compile_blocking(&self, file: &Path) -> Result<(Component, String), LoadError> {
        let bytes = std::fs::read(file).map_err(|source| LoadError::Read {
            file: file.to_owned(),
            source,
        })?;
        let hash = hex(&Sha256::digest(&bytes));
        let cached = self
            .cache_dir
            .as_ref()
            .map(|dir| dir.join(self.cache_name(&hash)));
        if let Some(path) = &cached {
            if path.is_file() {
                // SAFETY: the cache directory holds only what this function serialised with a
                // compatible engine (the name includes the engine's compatibility hash).
                if let Ok(component) = unsafe { Component::deserialize_file(&self.engine, path) } {
                    return Ok((component, hash));
                }
            }
        }
        let component =
            Component::from_binary(&self.engine, &bytes).map_err(|e| LoadError::Compile {
                file: file.to_owned(),
                message: format!("{e:#}"),
            })?;
        if let Some(path) = &cached {
            // A cache that cannot be written only costs a recompile next time.
            if let Err(e) = write_cache(path, &component) {
                tracing::warn!(path = %path.display(), error = %e, "policy compile cache not written");
            }
        }
        Ok((component, hash))
    }

    fn cache_name(&self, content_hash: &str) -> String {
        let mut hasher = DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        format!("{content_hash}-{:016x}.cwasm", hasher.finish())
    }
}

fn write_cache(path: &Path, component: &Component) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let bytes = component.serialize().map_err(|e| anyhow::anyhow!("{e}"))?;
    // Write then rename, so a concurrent reader never sees half a file.
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is dropped. Without
/// it no deadline would fire, so failing to start it fails the engine.
fn start_epoch_ticker(engine: &Engine) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("rtp-policy-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(|_| ())
}
