//! Policies as real compiled components in the proxy's pipeline, in front of the
//! simulator: verdicts and edits take effect, and a policy that traps, loops, hoards
//! memory, is corrupt or refuses its settings never takes the proxy down.

use std::time::{Duration, Instant};

use http::StatusCode;
use rtp_proxy::config::Config;
use rtp_proxy::policy::loaded::{FailureMode, Limits};
use rtp_proxy::policy::{wit, LoadedPolicy, PolicyEngine};
use rtp_proxy_tests::*;

const REQUEST: &str = "01_GetCareDocumentation_v2_request.xml";

async fn stack(behaviour: &str, failure_mode: &str) -> Stack {
    Stack::start(&route_with_test_policy(behaviour, failure_mode)).await
}

async fn call(stack: &Stack, call: Call<'_>) -> Reply {
    post_tls(
        stack.proxy.https_addr.unwrap(),
        &stack.pki.client(Some("consumer")),
        call,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn an_allowing_policy_lets_the_call_through_with_its_edits() {
    let stack = stack("allow", "fail-closed").await;
    let reply = call(&stack, Call::soap(sample(REQUEST))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seen = &stack.sim.calls()[0];
    assert_eq!(seen.header("x-test-policy-version"), Some("v1"));
    assert_eq!(
        seen.body,
        sample(REQUEST),
        "no body edit asked for, none made"
    );
}

#[tokio::test]
async fn a_rejecting_policy_answers_with_its_fault_and_ntjp_never_sees_the_call() {
    let stack = stack("reject", "fail-closed").await;
    let reply = call(&stack, Call::soap(sample(REQUEST))).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    reply.assert_fault_code("RTP199");
    assert!(
        reply
            .text()
            .contains("rejected by the test policy (policy test-policy)"),
        "{}",
        reply.text()
    );
    assert!(stack.sim.calls().is_empty());
}

#[tokio::test]
async fn header_edits_reach_the_producer() {
    let stack = stack("set-header", "fail-closed").await;
    let reply = call(&stack, Call::soap(sample(REQUEST))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        stack.sim.calls()[0].header("x-rivta-test-policy"),
        Some("seen GetCareDocumentation")
    );

    let stack = Stack::start(&route_with_test_policy("remove-header", "fail-closed")).await;
    let reply = call(
        &stack,
        Call::soap(sample(REQUEST)).header("x-rivta-remove-me", "secret"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(stack.sim.calls()[0].header("x-rivta-remove-me"), None);
}

#[tokio::test]
async fn a_period_edit_is_written_into_the_request_ntjp_receives() {
    let stack = stack("set-period", "fail-closed").await;
    // Sample 01 has no period: it is inserted after patientId, as timePeriod (CD v2).
    let reply = call(&stack, Call::soap(sample(REQUEST))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body = stack.sim.calls()[0].body_text();
    assert!(
        body.contains("</urn1:patientId><urn1:timePeriod><urn2:start>20230101</urn2:start><urn2:end>20231231</urn2:end></urn1:timePeriod>"),
        "{body}"
    );
    let original = String::from_utf8(sample(REQUEST)).unwrap();
    let (before, after) = original.split_once("</urn1:patientId>").unwrap();
    assert!(
        body.starts_with(before) && body.ends_with(after),
        "the rest of the body is untouched"
    );
}

#[tokio::test]
async fn a_trapping_policy_fails_closed_or_open_as_configured() {
    let closed = stack("trap", "fail-closed").await;
    let reply = call(&closed, Call::soap(sample(REQUEST))).await;
    reply.assert_fault_code("RTP190");
    assert!(reply.text().contains("trapped"), "{}", reply.text());
    assert!(closed.sim.calls().is_empty());

    let open = stack("trap", "fail-open").await;
    let reply = call(&open, Call::soap(sample(REQUEST))).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "fail-open skips the broken policy: {}",
        reply.text()
    );
    assert_eq!(open.sim.calls().len(), 1);
}

#[tokio::test]
async fn a_looping_policy_is_stopped_by_its_deadline() {
    let stack = stack("loop", "fail-closed").await;
    let started = Instant::now();
    let reply = call(&stack, Call::soap(sample(REQUEST))).await;
    reply.assert_fault_code("RTP190");
    assert!(reply.text().contains("deadline"), "{}", reply.text());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped, not waited out"
    );
    assert!(stack.sim.calls().is_empty());
}

#[tokio::test]
async fn a_policy_allocating_without_bound_is_stopped_by_its_memory_cap() {
    let stack = stack("allocate", "fail-closed").await;
    let reply = call(&stack, Call::soap(sample(REQUEST))).await;
    reply.assert_fault_code("RTP190");
    assert!(stack.sim.calls().is_empty());
}

#[tokio::test]
async fn the_proxy_keeps_serving_other_routes_while_a_policy_fails() {
    let routes = format!(
        "{}\n[[route]]\nname = \"plain\"\n",
        route_with_test_policy("trap", "fail-closed").replace(
            "name = \"with-policy\"",
            "name = \"with-policy\"\nlogical_address = \"VS-1\""
        )
    );
    let stack = Stack::start(&routes).await;
    for _ in 0..3 {
        let reply = call(&stack, Call::soap(sample(REQUEST))).await;
        reply.assert_fault_code("RTP190");
    }
    let other = String::from_utf8(sample(REQUEST))
        .unwrap()
        .replace(">VS-1<", ">VS-2<");
    let reply = call(&stack, Call::soap(other.into_bytes())).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
}

async fn config_with(routes: &str) -> Result<rtp_proxy::relay::Relay, String> {
    let pki = Pki::generate();
    let text = proxy_toml(&pki, "http://127.0.0.1:9", routes);
    let config = Config::parse(
        &text,
        std::path::Path::new("test.toml"),
        std::path::Path::new("."),
    )
    .map_err(|e| e.to_string())?;
    rtp_proxy::relay::Relay::build(&config)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_corrupt_component_is_refused_at_load_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.wasm");
    let mut bytes = std::fs::read(test_policy_wasm()).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&corrupt, bytes).unwrap();
    let routes = route_with_test_policy("allow", "fail-closed").replace(
        &test_policy_wasm().display().to_string(),
        &corrupt.display().to_string(),
    );
    let err = config_with(&routes).await.unwrap_err();
    assert!(err.contains("route with-policy, policy 0"), "{err}");
    assert!(
        err.contains("corrupt.wasm: not a usable policy component"),
        "{err}"
    );
}

#[tokio::test]
async fn a_policy_whose_init_refuses_its_settings_is_not_loaded() {
    let err = config_with(&route_with_test_policy("dance", "fail-closed"))
        .await
        .unwrap_err();
    assert!(
        err.contains("init refused the settings: invalid settings"),
        "{err}"
    );
    assert!(err.contains("rtp_test_policy.wasm"), "{err}");
}

fn test_call() -> wit::Call {
    wit::Call {
        route: "r".into(),
        contract: CD2.into(),
        operation: "GetCareDocumentation".into(),
        logical_address: "VS-1".into(),
        sender: ids::CONSUMER.into(),
        original_consumer: ids::CONSUMER.into(),
        acting_on_behalf_of: None,
        patient: None,
        period: None,
        period_element: None,
        source_system: None,
        correlation_id: "c".into(),
        headers: Vec::new(),
    }
}

#[tokio::test]
async fn reload_mode_retries_on_a_fresh_instance_and_a_crash_loop_disables_the_policy() {
    let engine = PolicyEngine::new(None, Default::default()).unwrap();
    let limits = Limits {
        crash_loop_limit: 4,
        ..test_limits()
    };
    let settings = r#"{"behaviour":"trap"}"#.to_owned();
    let policy = LoadedPolicy::load(
        &engine,
        &test_policy_wasm(),
        settings,
        FailureMode::Reload,
        limits,
    )
    .await
    .unwrap();
    assert!(policy.on_request(&test_call()).await.is_err());
    assert_eq!(policy.consecutive_failures(), 2, "one call, two attempts");
    assert!(policy.on_request(&test_call()).await.is_err());
    let err = policy.on_request(&test_call()).await.unwrap_err();
    assert!(
        err.to_string().contains("disabled until it is reloaded"),
        "{err}"
    );
}

#[tokio::test]
async fn compiled_components_are_cached_by_content_hash() {
    let cache = tempfile::tempdir().unwrap();
    let engine = PolicyEngine::new(Some(cache.path().to_owned()), Default::default()).unwrap();
    let (_, hash) = engine.compile(&test_policy_wasm()).await.unwrap();
    let cached: Vec<_> = std::fs::read_dir(cache.path()).unwrap().flatten().collect();
    assert_eq!(cached.len(), 1);
    let name = cached[0].file_name().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&hash) && name.ends_with(".cwasm"),
        "{name}"
    );
    // A second engine loads it from the cache and gets the same content hash.
    let again = PolicyEngine::new(Some(cache.path().to_owned()), Default::default()).unwrap();
    let (_, hash_again) = again.compile(&test_policy_wasm()).await.unwrap();
    assert_eq!(hash, hash_again);
}

#[tokio::test]
async fn instances_are_reused_and_answer_consistently() {
    let engine = PolicyEngine::new(None, Default::default()).unwrap();
    let settings = r#"{"behaviour":"allow","version":"v7"}"#.to_owned();
    let policy = LoadedPolicy::load(
        &engine,
        &test_policy_wasm(),
        settings,
        FailureMode::FailClosed,
        test_limits(),
    )
    .await
    .unwrap();
    assert_eq!(policy.name.as_ref(), "test-policy");
    assert!(policy.wants_request && policy.wants_response);
    assert_eq!(policy.content_hash.len(), 64);
    for _ in 0..100 {
        match policy.on_request(&test_call()).await.unwrap() {
            wit::RequestAction::Proceed(edits) => assert_eq!(edits.len(), 2),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(policy.consecutive_failures(), 0);
}
