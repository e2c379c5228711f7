//! The WebAssembly policy host: policies are components implementing the WIT world
//! `rtp:policy/policy` (`plugins/wit/`), loaded once, run per call in a sandbox with a
//! time deadline and a memory cap, and chained per route into a pipeline.
//!
//! - [`capabilities`]: block lookup and the PDL access log, lent to policies.
//! - [`engine`]: the one wasmtime `Engine`, its epoch ticker and the on-disk compile cache.
//! - [`loaded`]: a loaded policy: its pre-linked component, settings and pool of ready
//!   instances, and what happens when it fails.
//! - [`pipeline`]: a route's ordered policies and the request phase.
//! - [`reload`]: replacing a policy while calls flow (file watch, manual trigger).

mod bindings {
    // Exports are called asynchronously: WASI's host side runs on tokio, and a guest
    // that writes to stderr (a panic message) must not block the proxy's workers.
    wasmtime::component::bindgen!({
        world: "policy",
        path: "../plugins/wit",
        exports: { default: async },
        // The block lookup may wait on the block service; it must not hold a worker.
        imports: { "rtp:policy/blocks.blocks-for-patient": async },
    });
}

pub mod capabilities;
pub mod engine;
pub mod loaded;
pub mod pipeline;
pub mod reload;

pub use bindings::rtp::policy::types as wit;
pub use capabilities::{
    AccessContext, AccessEntry, AccessSink, BlockLookup, BlocksAnswer, Clock, FixedClock,
    HostServices,
};
pub use engine::{LoadError, PolicyEngine};
pub use loaded::{FailureMode, LoadedPolicy};
pub use pipeline::{Pipeline, RequestDecision, ResponseDecision};
pub use reload::{PolicyReloader, PolicySlot, ReloadOutcome};
