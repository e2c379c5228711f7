//! The decision log and dry-run policies, end to end: one `rtp_proxy::decision` line per
//! call with the call's identity, each policy's verdict and time, the upstream's answer
//! and the outcome; the patient id only masked (or not at all); a dry-run policy's
//! reject and drops logged and counted but not enforced.
//!
//! The log is captured by a JSON subscriber installed once for this test binary (the
//! proxy's tasks run on other threads, so a per-thread subscriber would miss them);
//! each test finds its own lines by the correlation id it sent.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rtp_proxy::contracts;
use rtp_proxy::decision::masked_patient_id;
use rtp_proxy::response::scan::scan_document;
use rtp_proxy_tests::*;
use serde_json::Value;
use tokio::net::TcpStream;

const REQUEST: &str = "01_GetCareDocumentation_v2_request.xml";
const CD2: &str = "urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:2";
const SALT: &str = "a-test-salt-of-enough-length";
const ADMIN: &str = "\n[admin]\nlisten = \"127.0.0.1:0\"\n";

/// Everything the proxy logged in this test binary, one JSON object a line.
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    capture_logs("info,rtp_proxy=debug")
}

fn all_lines() -> Vec<String> {
    let buffer = captured().lock().unwrap_or_else(|e| e.into_inner());
    String::from_utf8_lossy(&buffer)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The decision lines of the call with this correlation id (waiting a moment: the line
/// of a call whose body is filtered is written when the filter finishes).
async fn decisions(correlation_id: &str) -> Vec<Value> {
    let mut found = Vec::new();
    for _ in 0..50 {
        found = all_lines()
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|v| v["target"] == "rtp_proxy::decision")
            .filter(|v| v["fields"]["correlation_id"] == correlation_id)
            .collect();
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Any second line would have had the time to appear too.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = all_lines()
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| v["target"] == "rtp_proxy::decision")
        .filter(|v| v["fields"]["correlation_id"] == correlation_id)
        .count();
    assert_eq!(again, found.len(), "lines of {correlation_id} kept coming");
    found
}

fn policies(line: &Value) -> Vec<Value> {
    let text = line["fields"]["policies"]
        .as_str()
        .unwrap_or_else(|| panic!("policies is a JSON string: {line}"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

async fn call(stack: &Stack, correlation_id: &str) -> Reply {
    post_tls(
        stack.proxy.https_addr.unwrap(),
        &stack.pki.client(Some("consumer")),
        Call::soap(sample(REQUEST)).header("x-skltp-correlation-id", correlation_id),
    )
    .await
    .unwrap()
}

fn dry_run_route(behaviour: &str) -> String {
    format!(
        r#"
[[route]]
name = "dry"

[[route.policy]]
file = "{wasm}"
dry_run = true
settings = {{ behaviour = "{behaviour}", version = "v1" }}
"#,
        wasm = test_policy_wasm().display()
    )
}

fn record_ids(body: &[u8]) -> Vec<String> {
    let contract = contracts::lookup(CD2).unwrap();
    scan_document(contract, body)
        .unwrap_or_else(|e| panic!("the answer is not well-formed: {e}"))
        .into_iter()
        .map(|r| r.summary.id.unwrap_or_default())
        .collect()
}

/// `/metrics` from the admin listener.
async fn scrape(addr: SocketAddr) -> String {
    let tcp = TcpStream::connect(addr).await.expect("connect to admin");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("admin handshake");
    let driver = tokio::spawn(connection);
    let request = http::Request::get("/metrics")
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("admin answer");
    assert_eq!(response.status(), StatusCode::OK);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    driver.abort();
    String::from_utf8_lossy(&body).into_owned()
}

/// The value of the sample with exactly this name and label text, if present.
fn sample_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

fn assert_no_personnummer() {
    for line in all_lines() {
        assert!(
            !line.contains(ids::PATIENT),
            "the personnummer is in a log line: {line}"
        );
    }
}

#[tokio::test]
async fn a_dry_run_reject_lets_the_call_through_and_is_logged_and_counted() {
    captured();
    let stack = Stack::start(&format!("{ADMIN}{}", dry_run_route("reject"))).await;
    let reply = call(&stack, "dl-dry-reject").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(!record_ids(&reply.body).is_empty());

    let lines = decisions("dl-dry-reject").await;
    assert_eq!(lines.len(), 1, "one line per call: {lines:?}");
    let fields = &lines[0]["fields"];
    assert_eq!(fields["outcome"], "relayed");
    assert_eq!(fields["upstream_status"], 200);
    assert_eq!(fields["route"], "dry");
    let traced = policies(&lines[0]);
    let request = traced
        .iter()
        .find(|p| p["phase"] == "request")
        .expect("request verdict");
    assert_eq!(request["name"], "test-policy");
    assert_eq!(request["verdict"], "reject");
    assert_eq!(request["dry_run"], true);
    assert!(request["micros"].is_u64());

    let metrics = scrape(stack.proxy.admin_addr.expect("admin")).await;
    assert_eq!(
        sample_value(
            &metrics,
            r#"rtp_policy_dry_run_verdicts_total{policy="test-policy",phase="request",verdict="reject"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample_value(
            &metrics,
            r#"rtp_policy_verdicts_total{policy="test-policy",phase="request",verdict="reject"}"#
        ),
        None,
        "a dry-run verdict is not an enforced one"
    );
    assert_no_personnummer();
}

#[tokio::test]
async fn a_dry_run_drop_drops_nothing_but_says_what_it_would_have_dropped() {
    captured();
    let stack = Stack::start(&dry_run_route("drop-even-records")).await;
    let reply = call(&stack, "dl-dry-drop").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let kept = record_ids(&reply.body);
    assert!(kept.len() >= 2, "the simulator answers several records");

    let lines = decisions("dl-dry-drop").await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let traced = policies(&lines[0]);
    let response = traced
        .iter()
        .find(|p| p["phase"] == "response")
        .expect("response verdict");
    assert_eq!(response["verdict"], "drop");
    assert_eq!(response["dry_run"], true);
    // Every record reached the consumer; the even-indexed ones would have gone.
    assert_eq!(response["dropped"], kept.len().div_ceil(2));
    assert_eq!(lines[0]["fields"]["records_dropped"], 0);
}

#[tokio::test]
async fn each_call_has_one_line_with_its_identity_and_a_masked_patient() {
    captured();
    let routes = format!(
        "\n[decision_log]\npatient_id = \"hash\"\nsalt = \"{SALT}\"\n{}",
        route_with_test_policy("drop-even-records", "fail-closed")
    );
    let stack = Stack::start(&routes).await;
    let reply = call(&stack, "dl-hash-1").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let kept = record_ids(&reply.body).len();

    let lines = decisions("dl-hash-1").await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let fields = &lines[0]["fields"];
    assert_eq!(fields["message"], "decision");
    assert_eq!(fields["route"], "with-policy");
    assert_eq!(fields["contract"], CD2);
    assert_eq!(fields["sender"], ids::CONSUMER);
    assert_eq!(fields["original_consumer"], ids::CONSUMER);
    assert_eq!(fields["logical_address"], "VS-1");
    assert_eq!(fields["outcome"], "relayed");
    assert_eq!(fields["upstream_status"], 200);
    assert!(fields["upstream_us"].is_u64() && fields["total_us"].is_u64());
    assert_eq!(
        fields["patient"],
        masked_patient_id(SALT.as_bytes(), ids::PATIENT)
    );
    let traced = policies(&lines[0]);
    let verdicts: Vec<(&str, &str, bool)> = traced
        .iter()
        .map(|p| {
            (
                p["phase"].as_str().unwrap(),
                p["verdict"].as_str().unwrap(),
                p["dry_run"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        [("request", "proceed", false), ("response", "drop", false)]
    );
    let dropped = traced[1]["dropped"].as_u64().unwrap();
    assert!(dropped >= 1);
    assert_eq!(fields["records_dropped"], dropped);
    // The even-indexed of all records went: as many as were kept, or one more.
    let dropped = usize::try_from(dropped).unwrap();
    assert!(
        dropped == kept || dropped == kept + 1,
        "{dropped} of {kept}"
    );

    // A second call: a line of its own.
    call(&stack, "dl-hash-2").await;
    assert_eq!(decisions("dl-hash-2").await.len(), 1);
    assert_no_personnummer();
}

#[tokio::test]
async fn refused_calls_have_their_line_with_the_fault_code_and_no_patient_by_default() {
    captured();
    let stack = Stack::start(&route_with_test_policy("reject", "fail-closed")).await;
    let reply = call(&stack, "dl-reject").await;
    assert_eq!(reply.fault_code().as_deref(), Some("RTP199"));
    let lines = decisions("dl-reject").await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let fields = &lines[0]["fields"];
    assert_eq!(fields["outcome"], "fault");
    assert_eq!(fields["code"], "RTP199");
    assert!(fields.get("upstream_status").is_none(), "{fields}");
    assert!(
        fields.get("patient").is_none(),
        "drop is the default: {fields}"
    );
    let traced = policies(&lines[0]);
    assert_eq!(traced.len(), 1);
    assert_eq!(traced[0]["verdict"], "reject");
    assert_eq!(traced[0]["dry_run"], false);

    // Refused before any policy: not SOAP.
    let refused = post_tls(
        stack.proxy.https_addr.unwrap(),
        &stack.pki.client(Some("consumer")),
        Call {
            content_type: "application/json",
            ..Call::soap(sample(REQUEST))
        }
        .header("x-skltp-correlation-id", "dl-not-soap"),
    )
    .await
    .unwrap();
    assert_eq!(refused.fault_code().as_deref(), Some("RTP002"));
    let lines = decisions("dl-not-soap").await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["fields"]["code"], "RTP002");
    assert_eq!(lines[0]["fields"]["sender"], ids::CONSUMER);
    assert_no_personnummer();
}

#[tokio::test]
async fn dry_run_edits_are_not_applied_and_a_dry_run_failure_never_refuses() {
    captured();
    let stack = Stack::start(&dry_run_route("set-header")).await;
    let reply = call(&stack, "dl-dry-edit").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let calls = stack.sim.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].header("x-rivta-test-policy"), None);
    assert_eq!(calls[0].header("x-test-policy-version"), None);
    let lines = decisions("dl-dry-edit").await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(policies(&lines[0])[0]["verdict"], "proceed");

    let stack = Stack::start(&dry_run_route("trap")).await;
    let reply = call(&stack, "dl-dry-trap").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let lines = decisions("dl-dry-trap").await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["fields"]["outcome"], "relayed");
    let traced = policies(&lines[0]);
    assert_eq!(traced[0]["verdict"], "failed");
    assert_eq!(traced[0]["dry_run"], true);
}
