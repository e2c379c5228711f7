//! The response phase: when a route's pipeline has response policies, the upstream's
//! answer is scanned once for its records, the policies decide per batch, and the body
//! is re-emitted without the records they dropped.
//!
//! - [`scan`]: finds records and summarises them (owner, times, source system, id).
//! - [`source`]: the upstream body, chunk by chunk, keeping unreleased chunks.
//! - [`parser`]: the chunks as records, parsed with a slice reader as markup completes.
//! - [`filter`]: the streaming driver: batches, verdicts, access log, emission.

pub mod filter;
pub mod parser;
pub mod scan;
pub mod source;

pub use filter::{FilteredBody, ResponseFilter};
