//! Hot reload under load: the policy file is replaced 20 times, by write-and-rename and by
//! a Kubernetes-style `..data` symlink swap, while calls flow. No call fails, every change
//! causes exactly one reload, and once a swap has settled every call uses the new build.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use rtp_proxy_tests::*;

const REQUEST: &str = "01_GetCareDocumentation_v2_request.xml";
const REPLACEMENTS: usize = 20;

fn route(policy_file: &Path) -> String {
    format!(
        r#"
[[route]]
name = "reloading"

[[route.policy]]
file = "{}"
settings = {{ behaviour = "allow", version = "reload-test" }}
"#,
        policy_file.display()
    )
}

/// Runs the load and the replacements; `replace(i, build)` puts `build` in force the
/// i-th time.
async fn reload_under_load(policy_file: PathBuf, replace: impl Fn(usize, &Path)) {
    let (a, b) = test_policy_builds();
    let stack = Stack::start(&route(&policy_file)).await;
    let slot = stack
        .proxy
        .reloader()
        .policies()
        .expect("policies configured")
        .slots()[0]
        .clone();
    assert_eq!(slot.current().version, "a");

    // Load: one client calling in a loop, bounded in count and time.
    let stop = Arc::new(AtomicBool::new(false));
    let addr = stack.proxy.https_addr.unwrap();
    let tls = stack.pki.client(Some("consumer"));
    let load = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::Relaxed) && ok < 20_000 && Instant::now() < deadline {
                match post_tls(addr, &tls, Call::soap(sample(REQUEST))).await {
                    Ok(reply) if reply.status == StatusCode::OK => ok += 1,
                    Ok(reply) => failed.push(format!("{}: {}", reply.status, reply.text())),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        })
    };

    for i in 0..REPLACEMENTS {
        let (build, stamp) = if i % 2 == 0 { (&b, "b") } else { (&a, "a") };
        replace(i, build);
        let settled = Instant::now() + Duration::from_secs(30);
        while slot.current().version != stamp {
            assert!(
                Instant::now() < settled,
                "replacement {i} not in force after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Let calls run on the new version for a moment.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Any late duplicate event would show as an extra reload.
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = load.await.unwrap();
    assert!(failed.is_empty(), "failed calls during reloads: {failed:?}");
    assert!(ok > 0, "the load sent calls");
    assert_eq!(
        slot.reload_count(),
        REPLACEMENTS as u64,
        "one reload per replacement"
    );
    assert_eq!(slot.last_error(), None);

    // Settled: every call now runs the last build ("a" after an even count).
    stack.sim.reset();
    for _ in 0..10 {
        let reply = post_tls(
            addr,
            &stack.pki.client(Some("consumer")),
            Call::soap(sample(REQUEST)),
        )
        .await
        .unwrap();
        assert_eq!(reply.status, StatusCode::OK);
    }
    let builds: Vec<_> = stack
        .sim
        .calls()
        .iter()
        .map(|c| c.header("x-test-policy-build").map(str::to_owned))
        .collect();
    assert_eq!(builds, vec![Some("a".to_owned()); 10]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_the_file_by_rename_20_times_loses_no_call() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.wasm");
    std::fs::copy(test_policy_builds().0, &file).unwrap();
    let target = file.clone();
    reload_under_load(file, move |i, build| {
        // An editor's save: write a temporary file, then rename it over the original.
        let tmp = target.with_file_name(format!(".policy.wasm.{i}.tmp"));
        std::fs::copy(build, &tmp).unwrap();
        std::fs::rename(&tmp, &target).unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_a_configmap_style_symlink_20_times_loses_no_call() {
    // Kubernetes mounts a ConfigMap as `..<timestamp>/` directories, `..data` pointing at
    // the current one, and each file as a symlink through `..data`.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let version = |i: usize| root.join(format!("..v{i}"));
    std::fs::create_dir(version(0)).unwrap();
    std::fs::copy(test_policy_builds().0, version(0).join("policy.wasm")).unwrap();
    std::os::unix::fs::symlink("..v0", root.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/policy.wasm", root.join("policy.wasm")).unwrap();
    let swap_root = root.clone();
    reload_under_load(root.join("policy.wasm"), move |i, build| {
        let next = swap_root.join(format!("..v{}", i + 1));
        std::fs::create_dir(&next).unwrap();
        std::fs::copy(build, next.join("policy.wasm")).unwrap();
        let tmp = swap_root.join("..data_tmp");
        std::os::unix::fs::symlink(format!("..v{}", i + 1), &tmp).unwrap();
        std::fs::rename(&tmp, swap_root.join("..data")).unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_broken_new_version_keeps_the_running_one_and_reports_why() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.wasm");
    std::fs::copy(test_policy_builds().0, &file).unwrap();
    let stack = Stack::start(&route(&file)).await;
    let slot = stack.proxy.reloader().policies().unwrap().slots()[0].clone();
    std::fs::write(dir.path().join(".tmp"), b"\0asm garbage").unwrap();
    std::fs::rename(dir.path().join(".tmp"), &file).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while slot.last_error().is_none() {
        assert!(
            Instant::now() < deadline,
            "the failed reload was not reported"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let error = slot.last_error().unwrap();
    assert!(
        error.contains("policy.wasm: not a usable policy component"),
        "{error}"
    );
    assert_eq!(slot.current().version, "a", "the running version stays");
    let reply = post_tls(
        stack.proxy.https_addr.unwrap(),
        &stack.pki.client(Some("consumer")),
        Call::soap(sample(REQUEST)),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(slot.reload_count(), 0);
}

/// Polls `check` every 20 ms until it holds or `limit` passes.
async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

#[tokio::test]
async fn a_changed_config_file_is_reloaded_and_a_broken_one_keeps_the_running_config() {
    let pki = Pki::generate();
    let sim = start_sim(&sim_toml(&pki, "")).await;
    let url = format!("https://127.0.0.1:{}", sim.https_addr().unwrap().port());
    let config_for = |behaviour: &str| {
        proxy_toml(
            &pki,
            &url,
            &route_with_test_policy(behaviour, "fail-closed"),
        )
    };
    let file = pki.dir.path().join("rtp-proxy.toml");
    std::fs::write(&file, config_for("allow")).unwrap();
    let config = rtp_proxy::config::Config::load(&file).unwrap();
    let proxy = rtp_proxy::server::start(&config).await.unwrap();
    let addr = proxy.https_addr.unwrap();
    let tls = pki.client(Some("consumer"));
    let reply = post_tls(addr, &tls, Call::soap(sample(REQUEST)))
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());

    // Same routes, the policy now rejects: the new config is in force without a restart.
    let reloader = proxy.reloader();
    std::fs::write(&file, config_for("reject")).unwrap();
    assert!(
        eventually(Duration::from_secs(20), || reloader.config_reload_count()
            == 1)
        .await,
        "the config change was not picked up: {:?}",
        reloader.last_config_error()
    );
    let reply = post_tls(addr, &tls, Call::soap(sample(REQUEST)))
        .await
        .unwrap();
    reply.assert_fault_code("RTP199");

    // A broken file: the error names file and line, and the running config stays.
    std::fs::write(
        &file,
        config_for("allow").replace("[proxy]", "[proxy]\nno_such_key = 1"),
    )
    .unwrap();
    assert!(
        eventually(Duration::from_secs(20), || reloader
            .last_config_error()
            .is_some())
        .await,
        "the broken config was not noticed"
    );
    let error = reloader.last_config_error().unwrap();
    assert!(
        error.contains("rtp-proxy.toml:") && error.contains("no_such_key"),
        "{error}"
    );
    assert_eq!(reloader.config_reload_count(), 1);
    let reply = post_tls(addr, &tls, Call::soap(sample(REQUEST)))
        .await
        .unwrap();
    assert_eq!(
        reply.fault_code().as_deref(),
        Some("RTP199"),
        "still the running config"
    );
    proxy.shutdown().await;
    sim.shutdown().await;
}

/// A reload check reads the config and the policy files; those reads must not count as
/// changes, or the watch would run checks in a loop, hashing every file ten times a
/// second on an idle proxy.
#[tokio::test]
async fn the_watch_runs_one_check_per_change_and_none_while_idle() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.wasm");
    std::fs::copy(test_policy_builds().0, &file).unwrap();
    let stack = Stack::start(&route(&file)).await;
    let reloader = stack.proxy.reloader();
    let quiet = Duration::from_millis(1500);

    tokio::time::sleep(quiet).await;
    assert_eq!(reloader.check_count(), 0, "checks ran with no file changed");

    // Same content written again: one check, which finds nothing to load.
    std::fs::write(&file, std::fs::read(&file).unwrap()).unwrap();
    assert!(
        eventually(Duration::from_secs(20), || reloader.check_count() >= 1).await,
        "the write was not noticed"
    );
    let after_change = reloader.check_count();
    tokio::time::sleep(quiet).await;
    assert_eq!(
        reloader.check_count(),
        after_change,
        "the check's own reads triggered more checks"
    );
    assert_eq!(reloader.policies().unwrap().slots()[0].reload_count(), 0);
}
