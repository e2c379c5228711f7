//! rtp-proxy: a regional RIV-TA proxy in front of Sweden's national service platform NTjP.
//!
//! A call flows listener → [`inspect`] → [`routing`] → [`relay`] → upstream, and the answer
//! back the same way. See the repository README for the tour.

pub mod access_log;
pub mod admin;
pub mod blocks;
pub mod check;
pub mod config;
pub mod contracts;
pub mod decision;
pub mod demo;
pub mod edit;
pub mod fault;
pub mod headers;
pub mod identity;
pub mod inspect;
pub mod metrics;
pub mod mirror;
pub mod pki;
pub mod policy;
pub mod policy_test;
pub mod relay;
pub mod reload;
pub mod response;
pub mod routing;
pub mod server;
pub mod tls;
pub mod tls_reload;
pub mod upstream;
