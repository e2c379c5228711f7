//! Shared by the benches: the test policy component and a call to feed it.

#![allow(dead_code)] // each bench uses its own part

use std::path::{Path, PathBuf};
use std::process::Command;

use rtp_proxy::policy::wit;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds the test policy with a stamp into its own target dir and returns the file.
pub fn build_test_policy(stamp: &str) -> PathBuf {
    let dir = workspace().join("target/bench-policy-builds");
    let status = Command::new(env!("CARGO"))
        .current_dir(workspace())
        .env("CARGO_TARGET_DIR", &dir)
        .env("RTP_TEST_POLICY_STAMP", stamp)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            "rtp-test-policy",
        ])
        .status()
        .expect("cargo build");
    assert!(status.success(), "building the test policy failed");
    let kept = dir.join(format!("test-policy-{stamp}.wasm"));
    std::fs::copy(
        dir.join("wasm32-wasip2/release/rtp_test_policy.wasm"),
        &kept,
    )
    .unwrap();
    kept
}

pub fn call() -> wit::Call {
    wit::Call {
        route: "bench".into(),
        contract: "urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:2"
            .into(),
        operation: "GetCareDocumentation".into(),
        logical_address: "SE2321000016-7P3S".into(),
        sender: "SE2321000016-A12B".into(),
        original_consumer: "SE2321000016-A12B".into(),
        acting_on_behalf_of: None,
        patient: Some(wit::Patient {
            id: "191212121212".into(),
            kind: Some("1.2.752.129.2.1.3.1".into()),
        }),
        period: None,
        period_element: None,
        source_system: None,
        correlation_id: "bench".into(),
        headers: vec![wit::Header {
            name: "content-type".into(),
            value: "text/xml; charset=UTF-8".into(),
        }],
    }
}
