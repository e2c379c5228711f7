//! Routing variants: a route mirrors its calls to a second upstream. The mirror gets the
//! request the primary got (marked), the answers are compared into the metrics and one
//! `rtp_proxy::mirror` log line, an unreachable mirror is counted as failed, a slow
//! mirror never slows the primary, the concurrency cap skips rather than queues, and
//! `sample_rate` copies no call at 0 and about its share of them otherwise.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;
use rtp_proxy::server::RunningProxy;
use rtp_proxy_tests::*;
use serde_json::Value;

const REQUEST: &str = "01_GetCareDocumentation_v2_request.xml";

/// A fault as a platform answers it.
const FAULT: &str = r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><soapenv:Fault><faultcode>soapenv:Server</faultcode><faultstring>VP007 [other] Authorization missing</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#;

/// The simulator as the primary (`ntjp`), `mirror_url` as the route's mirror.
async fn stack(
    mirror_url: &str,
    mirror_settings: &str,
) -> (Pki, ntjp_sim::RunningSim, RunningProxy) {
    let pki = Pki::generate();
    let sim = start_sim(&sim_toml(&pki, "")).await;
    let proxy = proxy_with(&pki, &sim_url(&sim), mirror_url, mirror_settings).await;
    (pki, sim, proxy)
}

fn sim_url(sim: &ntjp_sim::RunningSim) -> String {
    format!(
        "https://127.0.0.1:{}",
        sim.https_addr().expect("sim https").port()
    )
}

/// The proxy with the route `cd` relaying to `primary_url`, mirrored to `mirror_url`.
async fn proxy_with(
    pki: &Pki,
    primary_url: &str,
    mirror_url: &str,
    mirror_settings: &str,
) -> RunningProxy {
    let extra = format!(
        r#"
[[upstream]]
name = "mirror"
url = "{mirror_url}"
client_cert = "{dir}/proxy.crt"
client_key = "{dir}/proxy.key"
ca = "{dir}/ca.crt"
response_timeout_ms = 5000

[admin]
listen = "127.0.0.1:0"

[[route]]
name = "cd"

[route.mirror]
upstream = "mirror"
{mirror_settings}
"#,
        dir = pki.dir.path().display(),
    );
    start_proxy(&proxy_toml(pki, primary_url, &extra)).await
}

/// `rtp_mirror_calls_total` of the route `cd` with this result.
fn mirror_calls(text: &str, result: &str) -> u64 {
    let labels = format!("rtp_mirror_calls_total{{route=\"cd\",result=\"{result}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&labels))
        .map(|value| value.trim().parse().expect("a count"))
        .unwrap_or(0)
}

/// Waits (at most 10 s) until the comparison counted `count` calls with `result`.
async fn wait_for(proxy: &RunningProxy, result: &str, count: u64) -> String {
    let addr = proxy.admin_addr.expect("admin listener");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape_metrics(addr).await;
        if mirror_calls(&text, result) >= count || Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_mirror_receives_the_request_the_primary_got_marked_as_a_mirror() {
    let mirror = StaticProducer::start(StatusCode::OK, b"<x/>".to_vec()).await;
    let (pki, _sim, proxy) = stack(&mirror.url(), "").await;
    let request = sample(REQUEST);
    let reply = post_tls(
        proxy.https_addr.unwrap(),
        &pki.client(Some("consumer")),
        Call::soap(request.clone()).header("x-skltp-correlation-id", "mirror-test-1"),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    wait_for(&proxy, "different", 1).await;
    let received = mirror.received();
    assert_eq!(received.len(), 1, "one copy");
    let (headers, body) = &received[0];
    assert_eq!(body, &request[..], "the same body, byte for byte");
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    assert_eq!(header("x-rtp-mirror"), Some("1"));
    assert_eq!(header("x-skltp-correlation-id"), Some("mirror-test-1"));
    assert_eq!(
        header("x-rivta-original-serviceconsumer-hsaid"),
        Some(ids::CONSUMER),
        "the identity headers the primary got"
    );
    assert!(header("x-rivta-routing-history").is_some());
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_mirror_answering_differently_is_counted_as_different_and_an_equal_one_as_same() {
    let mirror = StaticProducer::start(StatusCode::INTERNAL_SERVER_ERROR, FAULT.into()).await;
    let (pki, sim, proxy) = stack(&mirror.url(), "").await;
    let consumer = pki.client(Some("consumer"));
    let reply = post_tls(
        proxy.https_addr.unwrap(),
        &consumer,
        Call::soap(sample(REQUEST)),
    )
    .await
    .unwrap();
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "the primary's answer, unchanged"
    );
    let text = wait_for(&proxy, "different", 1).await;
    assert_eq!(mirror_calls(&text, "different"), 1, "{text}");
    assert_eq!(mirror_calls(&text, "same"), 0, "{text}");
    assert!(
        text.contains("rtp_mirror_upstream_duration_seconds_count{route=\"cd\",side=\"mirror\"} 1"),
        "{text}"
    );
    proxy.shutdown().await;

    // The same simulator as both variants: the same records, so the same answer.
    let url = sim_url(&sim);
    let proxy = proxy_with(&pki, &url, &url, "").await;
    let reply = post_tls(
        proxy.https_addr.unwrap(),
        &consumer,
        Call::soap(sample(REQUEST)),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let text = wait_for(&proxy, "same", 1).await;
    assert_eq!(mirror_calls(&text, "same"), 1, "{text}");
    assert_eq!(mirror_calls(&text, "different"), 0, "{text}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_slow_mirror_does_not_slow_the_primary() {
    let mirror =
        StaticProducer::start_delayed(StatusCode::OK, b"<x/>".to_vec(), Duration::from_secs(2))
            .await;
    let (pki, _sim, proxy) = stack(&mirror.url(), "").await;
    let consumer = pki.client(Some("consumer"));
    // A first call warms the connections and the policy-free path.
    post_tls(
        proxy.https_addr.unwrap(),
        &consumer,
        Call::soap(sample(REQUEST)),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let reply = post_tls(
        proxy.https_addr.unwrap(),
        &consumer,
        Call::soap(sample(REQUEST)),
    )
    .await
    .unwrap();
    let took = started.elapsed();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(
        took < Duration::from_millis(1000),
        "the primary answered in {took:?}, not well under the mirror's 2 s"
    );
    // The mirror did get the call, and its comparison comes later.
    assert!(!mirror.received().is_empty());
    let text = wait_for(&proxy, "different", 2).await;
    assert_eq!(mirror_calls(&text, "different"), 2, "{text}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn calls_over_the_concurrency_cap_are_skipped_and_counted() {
    let mirror =
        StaticProducer::start_delayed(StatusCode::OK, b"<x/>".to_vec(), Duration::from_secs(2))
            .await;
    let (pki, _sim, proxy) = stack(&mirror.url(), "max_concurrent = 1\nsample_rate = 1.0").await;
    let consumer = pki.client(Some("consumer"));
    let addr = proxy.https_addr.unwrap();
    let call = || post_tls(addr, &consumer, Call::soap(sample(REQUEST)));
    let (a, b, c) = tokio::join!(call(), call(), call());
    for reply in [a, b, c] {
        let reply = reply.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    let text = wait_for(&proxy, "different", 1).await;
    assert_eq!(mirror_calls(&text, "skipped"), 2, "{text}");
    assert_eq!(mirror_calls(&text, "different"), 1, "{text}");
    assert_eq!(mirror.received().len(), 1, "only one copy under the cap");
    proxy.shutdown().await;
}

/// The proxy's `rtp_proxy::mirror` lines in this test binary, as JSON objects.
fn mirror_log() -> &'static Arc<Mutex<Vec<u8>>> {
    capture_logs("rtp_proxy::mirror=info")
}

/// A GetCareDocumentation 2 answer with these document ids.
fn care_documentation(ids: &[&str]) -> Vec<u8> {
    let mut body = String::from(
        r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><r:GetCareDocumentationResponse xmlns:r="urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:2" xmlns:c="urn:riv:clinicalprocess:healthcond:description:2">"#,
    );
    for id in ids {
        body.push_str(&format!(
            "<r:careDocumentation><c:careDocumentationHeader><c:documentId>{id}</c:documentId></c:careDocumentationHeader></r:careDocumentation>"
        ));
    }
    body.push_str("<r:result><c:resultCode>OK</c:resultCode></r:result></r:GetCareDocumentationResponse></s:Body></s:Envelope>");
    body.into_bytes()
}

#[tokio::test]
async fn each_comparison_is_one_log_line_with_both_sides_and_the_differing_ids() {
    let log = mirror_log();
    let mirror =
        StaticProducer::start(StatusCode::OK, care_documentation(&["only-in-mirror-1"])).await;
    let (pki, _sim, proxy) = stack(&mirror.url(), "").await;
    let reply = post_tls(
        proxy.https_addr.unwrap(),
        &pki.client(Some("consumer")),
        Call::soap(sample(REQUEST)).header("x-skltp-correlation-id", "mirror-log-1"),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    wait_for(&proxy, "different", 1).await;
    let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["fields"]["correlation_id"] == "mirror-log-1")
        .collect();
    assert_eq!(lines.len(), 1, "one line per mirrored call: {text}");
    let line = &lines[0];
    assert_eq!(line["target"], "rtp_proxy::mirror");
    let fields = &line["fields"];
    assert_eq!(fields["verdict"], "different", "{fields}");
    assert_eq!(fields["route"], "cd");
    assert_eq!(fields["primary_status"], 200);
    assert_eq!(fields["mirror_status"], 200);
    assert_eq!(fields["primary_records"], 2, "the simulator's two records");
    assert_eq!(fields["mirror_records"], 1);
    assert!(fields["primary_ms"].is_u64() && fields["mirror_ms"].is_u64());
    let only_in_mirror: Vec<String> =
        serde_json::from_str(fields["only_in_mirror"].as_str().unwrap()).unwrap();
    assert_eq!(only_in_mirror, ["only-in-mirror-1"]);
    let only_in_primary: Vec<String> =
        serde_json::from_str(fields["only_in_primary"].as_str().unwrap()).unwrap();
    assert_eq!(only_in_primary.len(), 2, "{fields}");
    assert!(
        !line.to_string().contains(ids::PATIENT),
        "no patient id in the line: {line}"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_mirror_is_counted_as_failed_and_the_primary_answers() {
    let closed = closed_port().await;
    let (pki, _sim, proxy) = stack(&format!("http://{closed}"), "").await;
    let reply = post_tls(
        proxy.https_addr.unwrap(),
        &pki.client(Some("consumer")),
        Call::soap(sample(REQUEST)),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let text = wait_for(&proxy, "mirror_failed", 1).await;
    assert_eq!(mirror_calls(&text, "mirror_failed"), 1, "{text}");
    proxy.shutdown().await;
}

/// Sends `n` calls one after the other; every one must be answered by the primary.
async fn answered_calls(proxy: &RunningProxy, pki: &Pki, n: usize) {
    let consumer = pki.client(Some("consumer"));
    for i in 0..n {
        let reply = post_tls(
            proxy.https_addr.unwrap(),
            &consumer,
            Call::soap(sample(REQUEST)),
        )
        .await
        .unwrap_or_else(|e| panic!("call {i}: {e}"));
        assert_eq!(reply.status, StatusCode::OK, "call {i}: {}", reply.text());
    }
}

/// Waits (at most 10 s) until every copy the mirror received has its comparison counted
/// and nothing changed for half a second; returns the metrics text.
async fn settled(proxy: &RunningProxy, mirror: &StaticProducer) -> String {
    let addr = proxy.admin_addr.expect("admin listener");
    let counted = |text: &str| {
        ["same", "different", "mirror_failed"]
            .iter()
            .map(|result| mirror_calls(text, result))
            .sum::<u64>()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = None;
    loop {
        let text = scrape_metrics(addr).await;
        let now = (counted(&text), mirror.received().len() as u64);
        if (now.0 == now.1 && last == Some(now)) || Instant::now() > deadline {
            return text;
        }
        last = Some(now);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn sample_rate_zero_mirrors_nothing_and_a_fraction_mirrors_about_that_share() {
    // Nothing sampled: every call answered, none copied, none counted.
    let nothing = StaticProducer::start(StatusCode::OK, b"<x/>".to_vec()).await;
    let (pki, sim, proxy) = stack(&nothing.url(), "sample_rate = 0.0\nmax_concurrent = 1000").await;
    answered_calls(&proxy, &pki, 40).await;
    let text = settled(&proxy, &nothing).await;
    assert_eq!(nothing.received().len(), 0, "no copy with sample_rate = 0");
    assert!(
        !text.contains("rtp_mirror_calls_total{route=\"cd\""),
        "calls left out by sampling are not counted: {text}"
    );
    assert_eq!(sim.calls().len(), 40, "every call reached the primary");
    proxy.shutdown().await;

    // A quarter: N calls, the mirror's count within 6 binomial standard deviations of
    // N/4 (sqrt(N p (1-p)) = 6.1 for N = 200), so the bound holds for random sampling
    // too; the implementation spreads the share evenly and lands on 50.
    const N: usize = 200;
    const RATE: f64 = 0.25;
    let sigma = (N as f64 * RATE * (1.0 - RATE)).sqrt();
    let low = (N as f64 * RATE - 6.0 * sigma).ceil() as usize;
    let high = (N as f64 * RATE + 6.0 * sigma).floor() as usize;
    let quarter = StaticProducer::start(StatusCode::OK, b"<x/>".to_vec()).await;
    // A cap no sequence of calls reaches: no copy is skipped.
    let proxy = proxy_with(
        &pki,
        &sim_url(&sim),
        &quarter.url(),
        &format!("sample_rate = {RATE}\nmax_concurrent = 1000"),
    )
    .await;
    answered_calls(&proxy, &pki, N).await;
    let text = settled(&proxy, &quarter).await;
    let copies = quarter.received().len();
    assert!(
        (low..=high).contains(&copies),
        "{copies} of {N} calls mirrored at rate {RATE}, expected {low}..={high}"
    );
    for (headers, _) in quarter.received() {
        assert_eq!(
            headers.get("x-rtp-mirror").map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
    }
    // Each copy compared once (the mirror answers differently from the primary).
    assert_eq!(mirror_calls(&text, "different"), copies as u64, "{text}");
    assert_eq!(mirror_calls(&text, "skipped"), 0, "{text}");
    assert_eq!(sim.calls().len(), 40 + N, "every call reached the primary");
    proxy.shutdown().await;
}
