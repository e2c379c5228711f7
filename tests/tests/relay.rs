//! The proxy relaying real RIV-TA messages: bodies pass byte for byte, the identity and
//! tracing headers follow DOMAIN.md, and the simulator (NTjP) sees the proxy's identity.

use http::StatusCode;
use rtp_proxy_tests::*;

const REQUESTS: [&str; 5] = [
    "01_GetCareDocumentation_v2_request.xml",
    "02_GetLaboratoryOrderOutcome_v3_request.xml",
    "03_GetMedicationHistory_v2_request_aggregating.xml",
    "04_EI_FindContent_request.xml",
    "05_AssertCareEngagement_request.xml",
];

const RESPONSES: [&str; 8] = [
    "06_AssertCareEngagement_response.xml",
    "07_GetCareContacts_v2_response.xml",
    "08_GetCareDocumentation_v3_response_mock.xml",
    "10_GetDiagnosis_v2_response_mock.xml",
    "11_GetAlertInformation_v2_response_mock.xml",
    "12_GetLaboratoryOrderOutcome_v4_response_mock.xml",
    "13_GetImagingOutcome_v1_response_mock.xml",
    "14_GetVaccinationHistory_v2_response_mock.xml",
];

const ALL_ROUTES: &str = "[[route]]\nname = \"everything\"\n";

#[tokio::test]
async fn every_sample_request_is_relayed_and_every_response_returned_byte_identical() {
    let pki = Pki::generate();
    let consumer = pki.client(Some("consumer"));
    for (i, response_file) in RESPONSES.iter().enumerate() {
        let response = sample(response_file);
        let producer = StaticProducer::start(StatusCode::OK, response.clone()).await;
        let proxy = start_proxy(&proxy_toml(&pki, &producer.url(), ALL_ROUTES)).await;
        let request_file = REQUESTS[i % REQUESTS.len()];
        let request = sample(request_file);
        let reply = post_tls(
            proxy.https_addr.unwrap(),
            &consumer,
            Call::soap(request.clone()),
        )
        .await
        .unwrap();
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{request_file}: {}",
            reply.text()
        );
        assert_eq!(
            reply.body, response,
            "{response_file} must come back byte for byte"
        );
        let received = producer.received();
        assert_eq!(received.len(), 1);
        assert_eq!(
            received[0].1, request,
            "{request_file} must reach the producer byte for byte"
        );
        proxy.shutdown().await;
    }
}

#[tokio::test]
async fn every_sample_request_reaches_the_simulator_as_sent() {
    let Stack { pki, sim, proxy } = Stack::start(ALL_ROUTES).await;
    let consumer = pki.client(Some("consumer"));
    for file in REQUESTS {
        sim.reset();
        let request = sample(file);
        let reply = post_tls(
            proxy.https_addr.unwrap(),
            &consumer,
            Call::soap(request.clone()),
        )
        .await
        .unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{file}: {}", reply.text());
        let calls = sim.calls();
        assert_eq!(calls.len(), 1, "{file}");
        assert_eq!(
            calls[0].body.as_ref() as &[u8],
            request.as_slice(),
            "{file}"
        );
        // NTjP authenticates the proxy, not the consumer.
        assert_eq!(calls[0].sender_id.as_deref(), Some(ids::PROXY), "{file}");
        assert_eq!(
            calls[0].header("x-rivta-original-serviceconsumer-hsaid"),
            Some(ids::CONSUMER)
        );
    }
    proxy.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn osc_is_set_from_the_certificate_kept_for_trusted_callers_and_rejected_otherwise() {
    let Stack { pki, sim, proxy } = Stack::start(ALL_ROUTES).await;
    let addr = proxy.https_addr.unwrap();
    let request = sample(REQUESTS[0]);
    let osc = "x-rivta-original-serviceconsumer-hsaid";

    // Set: absent, so the authenticated consumer becomes the original consumer.
    let reply = post_tls(
        addr,
        &pki.client(Some("consumer")),
        Call::soap(request.clone()),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(sim.calls()[0].header(osc), Some(ids::CONSUMER));

    // Kept: the aggregator is trusted to pass on its own consumer.
    sim.reset();
    let call = Call::soap(request.clone()).header(osc, "SE2321000016-ORIG");
    let reply = post_tls(addr, &pki.client(Some("aggregator")), call)
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(sim.calls()[0].header(osc), Some("SE2321000016-ORIG"));

    // Rejected: an ordinary consumer may not claim someone else's identity.
    sim.reset();
    let call = Call::soap(request).header(osc, "SE2321000016-SPOOF");
    let reply = post_tls(addr, &pki.client(Some("consumer")), call)
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    reply.assert_fault_code("VP013");
    assert!(
        sim.calls().is_empty(),
        "a rejected call must not reach NTjP"
    );
    proxy.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn aob_and_other_rivta_headers_pass_and_internal_headers_are_stripped() {
    let Stack { pki, sim, proxy } = Stack::start(ALL_ROUTES).await;
    let call = Call::soap(sample(REQUESTS[0]))
        .header("x-rivta-acting-on-behalf-of-hsaid", "SE2321000016-AOB1")
        .header("x-rivta-test1", "kept")
        .header("x-vp-sender-id", "SE-SPOOFED")
        .header("x-vp-instance-id", "ntjp-test")
        .header("soapaction", "\"urn:x:GetCareDocumentation\"");
    let reply = post_tls(
        proxy.https_addr.unwrap(),
        &pki.client(Some("consumer")),
        call,
    )
    .await
    .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seen = &sim.calls()[0];
    assert_eq!(
        seen.header("x-rivta-acting-on-behalf-of-hsaid"),
        Some("SE2321000016-AOB1")
    );
    assert_eq!(seen.header("x-rivta-test1"), Some("kept"));
    assert_eq!(
        seen.header("soapaction"),
        Some("\"urn:x:GetCareDocumentation\"")
    );
    assert_eq!(seen.header("x-vp-sender-id"), None);
    assert_eq!(seen.header("x-vp-instance-id"), None);
    assert_eq!(seen.sender_id.as_deref(), Some(ids::PROXY));
    proxy.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn correlation_id_is_generated_or_kept_and_always_returned() {
    let Stack { pki, sim, proxy } = Stack::start(ALL_ROUTES).await;
    let addr = proxy.https_addr.unwrap();
    let consumer = pki.client(Some("consumer"));

    let reply = post_tls(addr, &consumer, Call::soap(sample(REQUESTS[0])))
        .await
        .unwrap();
    let generated = reply
        .header("x-skltp-correlation-id")
        .expect("returned")
        .to_owned();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    assert_eq!(
        sim.calls()[0].header("x-skltp-correlation-id"),
        Some(generated.as_str())
    );
    assert!(
        reply.header("x-skltp-prt").is_some(),
        "producer response time is added"
    );

    let call = Call::soap(sample(REQUESTS[0])).header("x-skltp-correlation-id", "trace-42");
    let reply = post_tls(addr, &consumer, call).await.unwrap();
    assert_eq!(reply.header("x-skltp-correlation-id"), Some("trace-42"));

    // Faults return it too.
    let call = Call::soap(b"<not-soap/>".to_vec()).header("x-skltp-correlation-id", "trace-43");
    let reply = post_tls(addr, &consumer, call).await.unwrap();
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.header("x-skltp-correlation-id"), Some("trace-43"));
    proxy.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn routing_history_is_appended_and_a_loop_is_refused() {
    let Stack { pki, sim, proxy } = Stack::start(ALL_ROUTES).await;
    let addr = proxy.https_addr.unwrap();
    let consumer = pki.client(Some("consumer"));

    let reply = post_tls(addr, &consumer, Call::soap(sample(REQUESTS[0])))
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    let history = sim.calls()[0]
        .header("x-rivta-routing-history")
        .map(str::to_owned);
    assert_eq!(
        history.as_deref(),
        Some(format!("{}#rtp-test", ids::CONSUMER).as_str())
    );

    sim.reset();
    let call =
        Call::soap(sample(REQUESTS[0])).header("x-rivta-routing-history", "SE1#ntjp#rtp-test");
    let reply = post_tls(addr, &consumer, call).await.unwrap();
    reply.assert_fault_code("VP014");
    assert!(sim.calls().is_empty());
    proxy.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn the_plain_listener_takes_identity_from_x_vp_sender_id_only_from_allowed_sources() {
    let Stack { pki, sim, proxy } = Stack::start(ALL_ROUTES).await;
    let addr = proxy.http_addr.unwrap();

    let call = Call::soap(sample(REQUESTS[0])).header("x-vp-sender-id", ids::CONSUMER);
    let reply = post_plain(addr, call).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seen = &sim.calls()[0];
    assert_eq!(
        seen.header("x-rivta-original-serviceconsumer-hsaid"),
        Some(ids::CONSUMER)
    );
    assert_eq!(
        seen.header("x-vp-sender-id"),
        None,
        "the caller's claim is not forwarded"
    );

    sim.reset();
    let reply = post_plain(addr, Call::soap(sample(REQUESTS[0])))
        .await
        .unwrap();
    reply.assert_fault_code("VP002");
    proxy.shutdown().await;

    // A listener that allows only another network refuses loopback callers.
    let url = format!("https://127.0.0.1:{}", sim.https_addr().unwrap().port());
    let text = proxy_toml(&pki, &url, ALL_ROUTES).replace(
        "allowed_sources = [\"127.0.0.1\"]",
        "allowed_sources = [\"10.0.0.0/8\"]",
    );
    let proxy = start_proxy(&text).await;
    let call = Call::soap(sample(REQUESTS[0])).header("x-vp-sender-id", ids::CONSUMER);
    let reply = post_plain(proxy.http_addr.unwrap(), call).await.unwrap();
    reply.assert_fault_code("VP011");
    assert!(sim.calls().is_empty());
    proxy.shutdown().await;
    sim.shutdown().await;
}
