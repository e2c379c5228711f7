//! The policy host's costs, for BENCHMARKS.md: a call on a pooled instance, a call that
//! needs a fresh instance, a pipeline of four no-op policies, and the time from a policy
//! file being replaced to the new version being in force.
//!
//! Run: `cargo bench -p rtp-proxy --bench policy_host` (builds the test policy component
//! for wasm32-wasip2 first).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use rtp_proxy::policy::loaded::{FailureMode, Limits};
use rtp_proxy::policy::{wit, LoadedPolicy, Pipeline, PolicyEngine, PolicyReloader, PolicySlot};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds the test policy with a stamp into its own target dir and returns the file.
fn build_test_policy(stamp: &str) -> PathBuf {
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

fn call() -> wit::Call {
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

const NOOP: &str = r#"{"behaviour":"noop"}"#;

fn policy_calls(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let file = build_test_policy("a");
    let engine = PolicyEngine::new(None, Default::default()).unwrap();
    let load = |limits: Limits| {
        rt.block_on(LoadedPolicy::load(
            &engine,
            &file,
            NOOP.into(),
            FailureMode::FailClosed,
            limits,
        ))
        .unwrap()
    };
    let pooled = load(Limits::default());
    let fresh = load(Limits {
        max_calls_per_instance: 1,
        ..Limits::default()
    });
    let call = call();

    c.bench_function("policy call, pooled instance", |b| {
        b.to_async(&rt)
            .iter(|| async { pooled.on_request(&call).await.unwrap() })
    });
    c.bench_function("policy call, fresh instance", |b| {
        b.to_async(&rt)
            .iter(|| async { fresh.on_request(&call).await.unwrap() })
    });

    let slots = (0..4)
        .map(|i| {
            let policy = load(Limits::default());
            Arc::new(PolicySlot::new(
                "bench".into(),
                i,
                policy,
                NOOP.into(),
                FailureMode::FailClosed,
                Limits::default(),
            ))
        })
        .collect();
    let pipeline = Pipeline::new(slots);
    c.bench_function("pipeline of four no-op policies", |b| {
        b.to_async(&rt)
            .iter(|| async { pipeline.on_request(call.clone()).await })
    });
}

/// From replacing the file (rename) to the new version in force, through the file watch.
fn reload_latency(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let builds = [build_test_policy("a"), build_test_policy("b")];
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.wasm");
    std::fs::copy(&builds[0], &file).unwrap();
    let engine = PolicyEngine::new(Some(cache.path().to_owned()), Default::default()).unwrap();
    let policy = rt
        .block_on(LoadedPolicy::load(
            &engine,
            &file,
            NOOP.into(),
            FailureMode::FailClosed,
            Limits::default(),
        ))
        .unwrap();
    let slot = Arc::new(PolicySlot::new(
        "bench".into(),
        0,
        policy,
        NOOP.into(),
        FailureMode::FailClosed,
        Limits::default(),
    ));
    let reloader = Arc::new(PolicyReloader::new(engine, vec![slot.clone()]));
    let _watcher = rt
        .block_on(async { reloader.watch(Duration::from_millis(100)) })
        .unwrap();

    let mut next = 1usize;
    let mut group = c.benchmark_group("reload");
    group.sample_size(10);
    group.bench_function(
        "file replaced to new version in force (100 ms debounce)",
        |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let stamp = if next % 2 == 1 { "b" } else { "a" };
                    let tmp = dir.path().join(".policy.tmp");
                    std::fs::copy(&builds[next % 2], &tmp).unwrap();
                    let started = Instant::now();
                    std::fs::rename(&tmp, &file).unwrap();
                    let deadline = started + Duration::from_secs(30);
                    while slot.current().version != stamp {
                        assert!(Instant::now() < deadline, "reload did not happen");
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    total += started.elapsed();
                    next += 1;
                }
                total
            })
        },
    );
    group.finish();
}

criterion_group!(benches, policy_calls, reload_latency);
criterion_main!(benches);
