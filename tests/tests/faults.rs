//! Every way a call can be refused: each gets its own RIV-TA fault and the upstream (the
//! simulator) never sees the call; upstream failures become VP009.

use http::StatusCode;
use rtp_proxy_tests::*;

const REQUEST: &str = "01_GetCareDocumentation_v2_request.xml";

async fn refused(env: &Stack, call: Call<'_>, code: &str, detail: &str) {
    let reply = post_tls(
        env.proxy.https_addr.unwrap(),
        &env.pki.client(Some("consumer")),
        call,
    )
    .await
    .unwrap();
    assert_eq!(
        reply.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        reply.text()
    );
    assert_eq!(
        reply.header("content-type"),
        Some("text/xml; charset=UTF-8")
    );
    reply.assert_fault_code(code);
    reply.assert_text_contains(detail);
    assert!(
        env.sim.calls().is_empty(),
        "{code}: the simulator must not be called"
    );
}

fn with_la(la: &str) -> Vec<u8> {
    String::from_utf8(sample(REQUEST))
        .unwrap()
        .replace(">VS-1<", &format!(">{la}<"))
        .into_bytes()
}

const CD_ROUTE: &str = r#"
[[route]]
name = "care-documentation"
contract = "urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:*"
logical_address = "VS-*"
"#;

#[tokio::test]
async fn malformed_and_structurally_wrong_requests_each_get_their_own_fault() {
    let env = Stack::start(CD_ROUTE).await;
    let truncated = sample(REQUEST)[..200].to_vec();
    refused(&env, Call::soap(truncated), "VP015", "not well-formed").await;
    let no_body = br#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header/></s:Envelope>"#;
    refused(&env, Call::soap(no_body.to_vec()), "VP015", "has no Body").await;
    let not_soap = b"<GetCareDocumentation/>".to_vec();
    refused(
        &env,
        Call::soap(not_soap),
        "VP015",
        "not a SOAP 1.1 Envelope",
    )
    .await;
    let dtd = [
        b"<!DOCTYPE x [<!ENTITY a \"b\">]>".to_vec(),
        sample(REQUEST),
    ]
    .concat();
    refused(&env, Call::soap(dtd), "VP015", "document type declarations").await;
    let no_la = String::from_utf8(sample(REQUEST))
        .unwrap()
        .replace(">VS-1<", "><");
    refused(
        &env,
        Call::soap(no_la.into_bytes()),
        "VP003",
        "no logical address",
    )
    .await;
    refused(&env, Call::soap(Vec::new()), "VP015", "empty").await;
}

#[tokio::test]
async fn transport_problems_get_their_own_faults() {
    let env = Stack::start(CD_ROUTE).await;
    let mut call = Call::soap(sample(REQUEST));
    call.content_type = "application/json";
    refused(&env, call, "RTP002", "application/json").await;
    let mut soap12 = Call::soap(sample(REQUEST));
    soap12.content_type = "application/soap+xml";
    refused(&env, soap12, "RTP002", "text/xml").await;
    // 64 KiB limit in the test config.
    let mut big = sample(REQUEST);
    big.extend(std::iter::repeat_n(b' ', 70_000));
    refused(&env, Call::soap(big), "RTP001", "65536 bytes").await;
}

#[tokio::test]
async fn a_call_without_route_gets_vp004() {
    let env = Stack::start(CD_ROUTE).await;
    refused(
        &env,
        Call::soap(with_la("SE0000000000-NONE")),
        "VP004",
        "receiverId: SE0000000000-NONE",
    )
    .await;
    let lab = sample("02_GetLaboratoryOrderOutcome_v3_request.xml");
    refused(
        &env,
        Call::soap(lab),
        "VP004",
        "GetLaboratoryOrderOutcomeResponder:3",
    )
    .await;
    // Routed through: the same call with a matching address.
    let reply = post_tls(
        env.proxy.https_addr.unwrap(),
        &env.pki.client(Some("consumer")),
        Call::soap(with_la("VS-2")),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
}

#[tokio::test]
async fn a_client_certificate_without_hsa_id_gets_vp002() {
    let env = Stack::start(CD_ROUTE).await;
    let reply = post_tls(
        env.proxy.https_addr.unwrap(),
        &env.pki.client(Some("anonymous")),
        Call::soap(sample(REQUEST)),
    )
    .await
    .unwrap();
    reply.assert_fault_code("VP002");
    assert!(env.sim.calls().is_empty());
}

#[tokio::test]
async fn clients_without_a_certificate_or_from_an_unknown_ca_are_refused_in_the_handshake() {
    let env = Stack::start(CD_ROUTE).await;
    let addr = env.proxy.https_addr.unwrap();
    assert!(
        post_tls(addr, &env.pki.client(None), Call::soap(sample(REQUEST)))
            .await
            .is_err()
    );
    assert!(post_tls(
        addr,
        &env.pki.client(Some("rogue")),
        Call::soap(sample(REQUEST))
    )
    .await
    .is_err());
    assert!(env.sim.calls().is_empty());
}

#[tokio::test]
async fn an_upstream_that_is_down_gives_vp009() {
    let pki = Pki::generate();
    let down = closed_port().await;
    let proxy = start_proxy(&proxy_toml(&pki, &format!("https://{down}"), CD_ROUTE)).await;
    let reply = post_tls(
        proxy.https_addr.unwrap(),
        &pki.client(Some("consumer")),
        Call::soap(sample(REQUEST)),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    reply.assert_fault_code("VP009");
    reply.assert_text_contains("error contacting upstream ntjp");
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_slow_upstream_times_out_with_vp009() {
    let Stack { pki, sim, proxy } = Stack::start("[[route]]\nname = \"all\"\n").await;
    let started = std::time::Instant::now();
    let reply = post_tls(
        proxy.https_addr.unwrap(),
        &pki.client(Some("consumer")),
        Call::soap(with_la(SLOW_ADDRESS)),
    )
    .await
    .unwrap();
    reply.assert_fault_code("VP009");
    assert!(reply.text().contains("Timeout"), "{}", reply.text());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "the proxy must not wait for the producer"
    );
    proxy.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn an_upstream_resetting_mid_response_never_yields_a_complete_answer() {
    let Stack { pki, sim, proxy } = Stack::start("[[route]]\nname = \"all\"\n").await;
    let result = post_tls(
        proxy.https_addr.unwrap(),
        &pki.client(Some("consumer")),
        Call::soap(with_la(RESETTING_ADDRESS)),
    )
    .await;
    match result {
        // Headers were already on their way: the caller sees a broken body, not a truncated success.
        Err(e) => assert!(!e.to_string().is_empty()),
        // Or the reset came before the headers: a VP009 fault.
        Ok(reply) => reply.assert_fault_code("VP009"),
    }
    // And the proxy keeps serving.
    let reply = post_tls(
        proxy.https_addr.unwrap(),
        &pki.client(Some("consumer")),
        Call::soap(with_la("VS-1")),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    proxy.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn producer_soap_faults_pass_through_and_other_errors_become_vp009() {
    let pki = Pki::generate();
    let fault = sample("15_GetFunctionalStatus_v2_soapfault_mock.xml");
    let producer = StaticProducer::start(StatusCode::INTERNAL_SERVER_ERROR, fault.clone()).await;
    let proxy = start_proxy(&proxy_toml(&pki, &producer.url(), CD_ROUTE)).await;
    let reply = post_tls(
        proxy.https_addr.unwrap(),
        &pki.client(Some("consumer")),
        Call::soap(sample(REQUEST)),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.body, fault, "the producer's fault passes unchanged");
    proxy.shutdown().await;

    let producer = StaticProducer::start(StatusCode::SERVICE_UNAVAILABLE, b"busy".to_vec()).await;
    let proxy = start_proxy(&proxy_toml(&pki, &producer.url(), CD_ROUTE)).await;
    let reply = post_tls(
        proxy.https_addr.unwrap(),
        &pki.client(Some("consumer")),
        Call::soap(sample(REQUEST)),
    )
    .await
    .unwrap();
    reply.assert_fault_code("VP009");
    assert!(
        reply
            .text()
            .contains("VP_PRODUCER_EXCEPTION_HTTP_STATUS=503"),
        "{}",
        reply.text()
    );
    proxy.shutdown().await;

    let producer = StaticProducer::start(StatusCode::OK, Vec::new()).await;
    let proxy = start_proxy(&proxy_toml(&pki, &producer.url(), CD_ROUTE)).await;
    let reply = post_tls(
        proxy.https_addr.unwrap(),
        &pki.client(Some("consumer")),
        Call::soap(sample(REQUEST)),
    )
    .await
    .unwrap();
    reply.assert_fault_code("VP009");
    assert!(reply.text().contains("empty body"), "{}", reply.text());
    proxy.shutdown().await;
}
