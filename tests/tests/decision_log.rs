//! The decision log and dry-run policies, end to end: one `rtp_proxy::decision` line per
//! call with the call's identity, each policy's verdict and time, the upstream's answer
//! and the outcome; the patient id only masked (or not at all); a dry-run policy's
//! reject and drops logged and counted but not enforced; a producer's fault passed
//! through logged as `upstream_fault`, and an answer broken off after its first batch
//! as `aborted`, each with its code.
//!
//! The log is captured by a JSON subscriber installed once for this test binary (the
//! proxy's tasks run on other threads, so a per-thread subscriber would miss them);
//! each test finds its own lines by the correlation id it sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use rtp_proxy::decision::masked_patient_id;
use rtp_proxy::server::RunningProxy;
use rtp_proxy_tests::*;
use serde_json::Value;

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
    assert!(!record_ids(CD2, &reply.body).is_empty());

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

    let metrics = scrape_metrics(stack.proxy.admin_addr.expect("admin")).await;
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
    let kept = record_ids(CD2, &reply.body);
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
    let kept = record_ids(CD2, &reply.body).len();

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
    reply.assert_fault_code("RTP199");
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
    refused.assert_fault_code("RTP002");
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

/// A producer's SOAP fault as NTjP sends one: the code token first in `faultstring`.
const PRODUCER_FAULT: &str = r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><soapenv:Fault><faultcode>soapenv:Server</faultcode><faultstring>VP007 [producer] Authorization missing</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#;

/// Sample 01 to a proxy of its own (in front of a [`StaticProducer`]).
async fn call_proxy(proxy: &RunningProxy, pki: &Pki, correlation_id: &str) -> Reply {
    post_tls(
        proxy.https_addr.unwrap(),
        &pki.client(Some("consumer")),
        Call::soap(sample(REQUEST)).header("x-skltp-correlation-id", correlation_id),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_producer_fault_passed_through_is_logged_as_upstream_fault_with_its_code() {
    captured();
    let pki = Pki::generate();
    let producer =
        StaticProducer::start(StatusCode::INTERNAL_SERVER_ERROR, PRODUCER_FAULT.into()).await;
    let route = "\n[[route]]\nname = \"faulting\"\n";
    let proxy = start_proxy(&proxy_toml(&pki, &producer.url(), route)).await;
    let reply = call_proxy(&proxy, &pki, "dl-upstream-fault").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        reply.text(),
        PRODUCER_FAULT,
        "the producer's fault passes unchanged"
    );

    let lines = decisions("dl-upstream-fault").await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let fields = &lines[0]["fields"];
    assert_eq!(fields["outcome"], "upstream_fault", "{fields}");
    assert_eq!(fields["code"], "VP007", "{fields}");
    assert_eq!(fields["upstream_status"], 500, "{fields}");
    assert_eq!(fields["route"], "faulting");
    assert!(fields["upstream_us"].is_u64(), "{fields}");
    proxy.shutdown().await;

    // A fault whose faultstring does not start with a code token: logged as `other`,
    // never the producer's prose.
    let prose = PRODUCER_FAULT.replace("VP007 [producer] Authorization missing", "It broke");
    let producer = StaticProducer::start(StatusCode::INTERNAL_SERVER_ERROR, prose.into()).await;
    let proxy = start_proxy(&proxy_toml(&pki, &producer.url(), route)).await;
    let reply = call_proxy(&proxy, &pki, "dl-upstream-fault-prose").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    let lines = decisions("dl-upstream-fault-prose").await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["fields"]["outcome"], "upstream_fault");
    assert_eq!(lines[0]["fields"]["code"], "other");
    proxy.shutdown().await;
}

/// A CD2 answer with `n` records of about 600 bytes each; records from `owned_from` on
/// name their care unit and care provider, those before it do not.
fn answer(n: usize, owned_from: usize) -> Vec<u8> {
    let mut body = String::from(
        r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header/><s:Body><r:GetCareDocumentationResponse xmlns:r="urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:2" xmlns:c="urn:riv:clinicalprocess:healthcond:description:2">"#,
    );
    for i in 0..n {
        let owner = if i >= owned_from {
            format!("<c:healthcareProfessionalCareUnitHSAId>SE2321000016-VE{i:02}</c:healthcareProfessionalCareUnitHSAId><c:healthcareProfessionalCareGiverHSAId>SE2321000016-VG{i:02}</c:healthcareProfessionalCareGiverHSAId>")
        } else {
            String::new()
        };
        body.push_str(&format!(
            "\n<r:careDocumentation><c:careDocumentationHeader><c:documentId>doc-{i}</c:documentId><c:sourceSystemHSAid>SYS</c:sourceSystemHSAid><c:documentTime>20240101120000</c:documentTime><c:accountableHealthcareProfessional><c:authorTime>20240101120000</c:authorTime>{owner}</c:accountableHealthcareProfessional><c:approvedForPatient>true</c:approvedForPatient></c:careDocumentationHeader><c:careDocumentationBody><c:clinicalDocumentNote><c:clinicalDocumentNoteText>note {i}, with some length to it so that a batch holds about two records of this answer</c:clinicalDocumentNoteText></c:clinicalDocumentNote></c:careDocumentationBody></r:careDocumentation>"
        ));
    }
    body.push_str("\n<r:result><c:resultCode>OK</c:resultCode></r:result></r:GetCareDocumentationResponse></s:Body></s:Envelope>");
    body.into_bytes()
}

/// Batches of about two records: the response phase decides an answer in several steps.
fn small_batches(config: String) -> String {
    config.replace(
        "deadline_ms = 50",
        "deadline_ms = 50\nresponse_batch_bytes = 1200",
    )
}

/// Whether the consumer got a broken answer: the body failed, or what came is cut short.
fn broken(reply: &anyhow::Result<Reply>) -> bool {
    match reply {
        Err(_) => true,
        Ok(reply) => !reply.text().trim_end().ends_with("</s:Envelope>"),
    }
}

#[tokio::test]
async fn a_response_policy_fault_on_a_later_batch_is_logged_as_aborted_with_its_code() {
    captured();
    let pki = Pki::generate();
    // The first records name no owner, so the block check needs no blocks for the first
    // batch, which is released; a later batch holds owned records, the block service is
    // down, and block-check replaces the answer with RTP112: too late, the body is cut.
    let producer = StaticProducer::start(StatusCode::OK, answer(12, 6)).await;
    let down = closed_port().await;
    let journal = tempfile::tempdir().unwrap();
    let sections = format!(
        r#"
[[upstream]]
name = "blocks-down"
url = "http://{down}"

[blocks]
upstream = "blocks-down"
timeout_ms = 1000

[access_log]
dir = "{journal}"
system_id = "{proxy}"
{route}"#,
        journal = journal.path().display(),
        proxy = ids::PROXY,
        route = block_check_route(),
    );
    let proxy = start_proxy(&small_batches(proxy_toml(&pki, &producer.url(), &sections))).await;
    let reply = post_tls(
        proxy.https_addr.unwrap(),
        &pki.client(Some("consumer")),
        Call::soap(sample(REQUEST))
            .header("x-skltp-correlation-id", "dl-aborted-policy")
            .header("x-rtp-actor-employee-hsaid", "SE2321000016-E001")
            .header("x-rtp-actor-careunit-hsaid", "SE2321000016-VE01")
            .header("x-rtp-actor-careprovider-hsaid", "SE2321000016-VG01")
            .header("x-rtp-actor-emergency", "false"),
    )
    .await;
    if let Ok(reply) = &reply {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    assert!(broken(&reply), "the answer is cut off: {reply:?}");

    let lines = decisions("dl-aborted-policy").await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let fields = &lines[0]["fields"];
    assert_eq!(fields["outcome"], "aborted", "{fields}");
    assert_eq!(fields["code"], "RTP112", "{fields}");
    assert_eq!(fields["upstream_status"], 200, "{fields}");
    let traced = policies(&lines[0]);
    let response = traced
        .iter()
        .find(|p| p["phase"] == "response")
        .expect("response verdict");
    assert_eq!(response["name"], "block-check");
    assert_eq!(response["verdict"], "replace", "{traced:?}");
    // The unowned records of the first batches went before the fault.
    assert!(response["dropped"].as_u64().unwrap_or(0) >= 1, "{traced:?}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_answer_broken_off_after_its_first_batch_is_logged_as_aborted_not_relayed() {
    captured();
    let pki = Pki::generate();
    // Well-formed for its first batches, then cut: the filter fails after the status
    // and the first records went out, however fast it gets there.
    let mut body = answer(8, 0);
    body.truncate(body.len() - 40);
    let producer = StaticProducer::start(StatusCode::OK, body).await;
    let proxy = start_proxy(&small_batches(proxy_toml(
        &pki,
        &producer.url(),
        &route_with_test_policy("drop-even-records", "fail-closed"),
    )))
    .await;
    for attempt in 0..5 {
        let correlation_id = format!("dl-aborted-unreadable-{attempt}");
        let reply = post_tls(
            proxy.https_addr.unwrap(),
            &pki.client(Some("consumer")),
            Call::soap(sample(REQUEST)).header("x-skltp-correlation-id", correlation_id.clone()),
        )
        .await;
        assert!(broken(&reply), "the answer is cut off: {reply:?}");
        let lines = decisions(&correlation_id).await;
        assert_eq!(lines.len(), 1, "{lines:?}");
        let fields = &lines[0]["fields"];
        assert_eq!(fields["outcome"], "aborted", "{fields}");
        assert_eq!(fields["code"], "VP009", "{fields}");
        assert_eq!(fields["upstream_status"], 200, "{fields}");
        assert_eq!(policies(&lines[0])[1]["verdict"], "drop");
    }
    proxy.shutdown().await;
}
