//! The policy host's costs, for BENCHMARKS.md: a call on a pooled instance, a call that
//! needs a fresh instance, a pipeline of four no-op policies, and the time from a policy
//! file being replaced to the new version being in force.
//!
//! Run: `cargo bench -p rtp-proxy --bench policy_host` (builds the test policy component
//! for wasm32-wasip2 first).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

mod common;
use common::{build_test_policy, call};
use rtp_proxy::config::Config;
use rtp_proxy::policy::loaded::{FailureMode, Limits};
use rtp_proxy::policy::{LoadedPolicy, Pipeline, PolicyEngine, PolicySlot};
use rtp_proxy::relay::Relay;
use rtp_proxy::reload::Reloader;

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
            .iter(|| async { pipeline.on_request(&mut call.clone()).await })
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
    // The proxy's own reloader and file watch, as `run` sets them up.
    let config_text = format!(
        r#"
[proxy]
instance_id = "bench"
default_upstream = "none"

[policies]
cache_dir = "{cache}"

[[upstream]]
name = "none"
url = "http://127.0.0.1:9"

[[route]]
name = "bench"

[[route.policy]]
file = "{file}"
settings = {{ behaviour = "noop" }}
"#,
        cache = cache.path().display(),
        file = file.display()
    );
    let config = Config::parse(&config_text, Path::new("bench.toml"), Path::new(".")).unwrap();
    let reloader = rt.block_on(async {
        let relay = Relay::build(&config).await.unwrap();
        let reloader = Arc::new(Reloader::new(relay, &config, Default::default()));
        reloader.watch(Duration::from_millis(100)).unwrap();
        reloader
    });
    let slot = reloader.policies().unwrap().slots()[0].clone();

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
