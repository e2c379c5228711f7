//! The SDK for rtp-proxy policies.
//!
//! A policy is a type implementing [`Policy`] plus one `export_policy!(MyPolicy);` line.
//! Built for `wasm32-wasip2` it is a WebAssembly component implementing the WIT world
//! `rtp:policy/policy` (`plugins/wit/policy.wit`); built natively it is plain Rust, so its
//! logic is unit-tested with `cargo test` and the helpers in [`testing`].
//!
//! ```
//! use rtp_policy_sdk::*;
//!
//! struct DenyLab;
//!
//! impl Policy for DenyLab {
//!     fn describe() -> Metadata {
//!         Metadata::new("deny-lab", "1.0.0", &[Phase::Request])
//!     }
//!     fn init(_settings: &str) -> Result<Self, String> {
//!         Ok(DenyLab)
//!     }
//!     fn on_request(&self, call: &Call) -> RequestAction {
//!         if call.contract.contains("GetLaboratoryOrderOutcome") {
//!             RequestAction::reject("RTP101", "laboratory results are not available to this caller")
//!         } else {
//!             RequestAction::proceed()
//!         }
//!     }
//! }
//!
//! export_policy!(DenyLab);
//!
//! let call = testing::call("urn:riv:clinicalprocess:healthcond:actoutcome:GetLaboratoryOrderOutcomeResponder:4");
//! assert!(matches!(DenyLab.on_request(&call), RequestAction::Reject(_)));
//! ```

mod types;

pub use types::*;

pub mod host;
pub mod pattern;
pub mod testing;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod glue;

/// A policy. The host creates one per WebAssembly instance with [`Policy::init`] and
/// calls it for every call routed through a pipeline that holds it.
pub trait Policy: Sized + 'static {
    /// Name, version and the phases the policy needs.
    fn describe() -> Metadata;

    /// Parses and validates the policy's settings (JSON text, `{}` when none are
    /// configured). An error refuses the load and is shown to the operator.
    fn init(settings: &str) -> Result<Self, String>;

    /// The phases this instance needs under its settings; by default all those
    /// [`Policy::describe`] declares. Leaving out a phase the settings give nothing to
    /// do saves its call on every request (and the host's record scan when no policy
    /// of the pipeline wants the response).
    fn phases(&self) -> Vec<Phase> {
        Self::describe().phases
    }

    /// Decides on a request before it is relayed.
    fn on_request(&self, call: &Call) -> RequestAction;

    /// Decides on the records of a response; called only if [`Metadata::phases`] holds
    /// [`Phase::Response`].
    fn on_response(&self, _call: &Call, _records: &[RecordSummary]) -> ResponseAction {
        ResponseAction::KeepAll
    }
}

/// Exports a [`Policy`] type as the component's implementation of the WIT world.
/// Natively it expands to nothing, so the same crate builds and tests on the host.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            $crate::__export_glue!($policy);
        };
    };
}
