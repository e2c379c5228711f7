//! `[proxy] max_connections` over real sockets: past the limit a new connection is
//! closed at once and counted, the connections already open go on serving, and the
//! limit frees as connections end. Both consumer listeners share it. Idle keep-alive
//! connections cannot hold the limit: they are closed after `header_read_timeout_ms`.

use std::time::{Duration, Instant};

use http::StatusCode;
use rtp_proxy_tests::*;

const REQUEST: &str = "01_GetCareDocumentation_v2_request.xml";
/// What the producer stand-in answers: no policy reads it.
const RESPONSE: &str = "08_GetCareDocumentation_v3_response_mock.xml";

/// The test config in front of `producer`, one route for every call, with `setting`
/// added to `[proxy]` and `extra` after the rest.
fn config(pki: &Pki, producer: &StaticProducer, setting: &str, extra: &str) -> String {
    let extra = format!("{extra}\n[[route]]\nname = \"everything\"\n");
    proxy_toml(pki, &producer.url(), &extra).replacen(
        "[proxy]\n",
        &format!("[proxy]\n{setting}\n"),
        1,
    )
}

#[tokio::test]
async fn past_max_connections_new_connections_are_closed_and_counted_until_one_ends() {
    let pki = Pki::generate();
    let producer = StaticProducer::start(StatusCode::OK, sample(RESPONSE)).await;
    let proxy = start_proxy(&config(
        &pki,
        &producer,
        "max_connections = 2",
        "[admin]\nlisten = \"127.0.0.1:0\"\n",
    ))
    .await;
    let https = proxy.https_addr.expect("https listener");
    let http = proxy.http_addr.expect("http listener");
    let admin = proxy.admin_addr.expect("admin listener");
    let consumer = pki.client(Some("consumer"));
    let call = || Call::soap(sample(REQUEST));

    let mut first = TlsSession::open(https, &consumer).await.expect("connects");
    let mut second = TlsSession::open(https, &consumer).await.expect("connects");
    for session in [&mut first, &mut second] {
        let reply = session.send(call()).await.expect("answer");
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }

    // Two are open: a third is closed on either listener, before any call is read.
    assert!(post_tls(https, &consumer, call()).await.is_err());
    assert!(post_plain(http, call()).await.is_err());
    assert_eq!(
        producer.received().len(),
        2,
        "nothing from the refused reached the producer"
    );
    let metrics = scrape_metrics(admin).await;
    assert_eq!(
        sample_value(&metrics, "rtp_connections_open "),
        Some(2.0),
        "{metrics}"
    );
    for listener in ["https", "http"] {
        let series = format!("rtp_connections_refused_total{{listener=\"{listener}\"}}");
        assert_eq!(
            sample_value(&metrics, &series),
            Some(1.0),
            "{series}: {metrics}"
        );
    }

    // The open connections are not disturbed by the refusals.
    let reply = second.send(call()).await.expect("answer");
    assert_eq!(reply.status, StatusCode::OK);

    // One ends: once the proxy has seen it close, a new connection gets through.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(reply) = post_tls(https, &consumer, call()).await {
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
            break;
        }
        assert!(Instant::now() < deadline, "the limit never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_read_timeout() {
    let pki = Pki::generate();
    let producer = StaticProducer::start(StatusCode::OK, sample(RESPONSE)).await;
    let proxy = start_proxy(&config(&pki, &producer, "header_read_timeout_ms = 300", "")).await;
    let https = proxy.https_addr.expect("https listener");
    let mut session = TlsSession::open(https, &pki.client(Some("consumer")))
        .await
        .expect("connects");
    let reply = session
        .send(Call::soap(sample(REQUEST)))
        .await
        .expect("answer");
    assert_eq!(reply.status, StatusCode::OK);
    // Idle for five times the timeout: the proxy has closed the connection.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = session.send(Call::soap(sample(REQUEST))).await;
    assert!(
        second.is_err(),
        "an idle connection must not be held open: {:?}",
        second.map(|r| r.status)
    );
}
