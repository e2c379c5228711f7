//! Certificates renewed while the proxy runs, over real TLS: the listener presents a
//! renewed certificate to new connections while a connection opened before keeps its
//! own and goes on serving calls; a broken renewal keeps the certificate in force and
//! says which file; an upstream's renewed client certificate is what the next call to
//! NTjP presents. Callers' certificates are checked against revocation lists: a revoked
//! caller fails the handshake, a new list takes effect on reload, and stale or missing
//! lists refuse unless the operator allows them.

use std::path::Path;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use rtp_proxy_tests::*;

const REQUEST: &str = "01_GetCareDocumentation_v2_request.xml";
/// What the producer stand-in answers: any well-formed answer does, no policy reads it.
const RESPONSE: &str = "08_GetCareDocumentation_v3_response_mock.xml";
const WAIT: Duration = Duration::from_secs(15);

/// A PKI directory the proxy's files are read from and that the tests overwrite: a copy
/// of `pki`'s. The upstream client presents `upstream.crt`/`.key` (copies of the proxy's
/// certificate), so the listener's and the client's files change separately.
fn live_copy(pki: &Pki) -> Pki {
    let live = Pki {
        dir: tempfile::tempdir().expect("temp dir"),
    };
    for entry in std::fs::read_dir(pki.dir.path()).expect("pki dir") {
        let entry = entry.expect("entry");
        std::fs::copy(
            entry.path(),
            live.path(&entry.file_name().to_string_lossy()),
        )
        .expect("copy");
    }
    replace(pki, "proxy", &live, "upstream");
    live
}

/// Writes `from`'s `<stem>.crt/.key` over `to`'s `<as_stem>.crt/.key`, key first: as a
/// renewal that writes the files one by one does.
fn replace(from: &Pki, stem: &str, to: &Pki, as_stem: &str) {
    for ext in ["key", "crt"] {
        let bytes = std::fs::read(from.path(&format!("{stem}.{ext}"))).expect("read");
        std::fs::write(to.path(&format!("{as_stem}.{ext}")), bytes).expect("write");
    }
}

/// The proxy's config over `live`, with the admin listener and one route for every
/// call; the upstream client reads
/// `upstream.crt`/`.key`. `watch` turns the file watch on or off.
fn config(live: &Pki, upstream_url: &str, watch: bool) -> String {
    let dir = live.dir.path().display().to_string();
    let extra = "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[route]]\nname = \"everything\"\n";
    proxy_toml(live, upstream_url, extra)
        .replace(
            &format!("client_cert = \"{dir}/proxy.crt\""),
            &format!("client_cert = \"{dir}/upstream.crt\""),
        )
        .replace(
            &format!("client_key = \"{dir}/proxy.key\""),
            &format!("client_key = \"{dir}/upstream.key\""),
        )
        .replace("[policies]\n", &format!("[policies]\nwatch = {watch}\n"))
}

fn served_by(file: &Path) -> Vec<u8> {
    certificate_der(file)
}

async fn call_on(session: &mut TlsSession) -> Reply {
    let reply = session
        .send(Call::soap(sample(REQUEST)))
        .await
        .expect("an answer on the kept connection");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply
}

async fn reload(proxy: &rtp_proxy::server::RunningProxy) -> serde_json::Value {
    let admin = proxy.admin_addr.expect("admin listener");
    let (status, body) = admin_request(admin, Method::POST, "/reload").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).expect("a JSON report")
}

/// The report's entry for `what`.
fn tls_entry<'a>(report: &'a serde_json::Value, what: &str) -> &'a serde_json::Value {
    report["certificates"]
        .as_array()
        .and_then(|entries| entries.iter().find(|e| e["tls"] == what))
        .unwrap_or_else(|| panic!("no certificate entry for {what}: {report}"))
}

/// Whether `rtp_tls_reloads_total` counted a reload of `what` with `outcome`.
fn counted(metrics: &str, what: &str, outcome: &str) -> bool {
    let series = format!("rtp_tls_reloads_total{{tls=\"{what}\",outcome=\"{outcome}\"}}");
    sample_value(metrics, &series).is_some_and(|n| n >= 1.0)
}

#[tokio::test]
async fn a_renewed_listener_certificate_reaches_new_connections_and_an_open_one_keeps_serving() {
    let pki = Pki::generate();
    let live = live_copy(&pki);
    let producer = StaticProducer::start(StatusCode::OK, sample(RESPONSE)).await;
    let proxy = start_proxy(&config(&live, &producer.url(), true)).await;
    let addr = proxy.https_addr.expect("https listener");
    let consumer = pki.client(Some("consumer"));

    let mut kept = TlsSession::open(addr, &consumer).await.expect("connects");
    assert_eq!(kept.served, served_by(&pki.path("proxy.crt")));
    call_on(&mut kept).await;

    // The renewal: another certificate of the same CA, valid for the same names (the
    // test PKI's NTjP server certificate), written over the files the proxy reads. The
    // file watch alone must notice.
    replace(&pki, "ntjp", &live, "proxy");
    let renewed = served_by(&pki.path("ntjp.crt"));
    let deadline = Instant::now() + WAIT;
    loop {
        let fresh = TlsSession::open(addr, &consumer).await.expect("connects");
        if fresh.served == renewed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new connections still get the old certificate after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The connection opened before the renewal is not cut off: it keeps its handshake's
    // certificate and goes on serving calls.
    call_on(&mut kept).await;
    assert_eq!(kept.served, served_by(&pki.path("proxy.crt")));
    let mut fresh = TlsSession::open(addr, &consumer).await.expect("connects");
    call_on(&mut fresh).await;

    let metrics = scrape_metrics(proxy.admin_addr.expect("admin")).await;
    assert!(counted(&metrics, "https listener", "success"), "{metrics}");
    // When the certificates in force expire, for alerts.
    let expiry = |what: &str| {
        sample_value(
            &metrics,
            &format!("rtp_tls_certificate_expiry_timestamp_seconds{{tls=\"{what}\"}}"),
        )
    };
    let not_after = |file: &str| {
        let not_after = rtp_proxy::tls::not_after(&pki.path(file)).expect("not_after");
        not_after as f64
    };
    assert_eq!(expiry("https listener"), Some(not_after("ntjp.crt")));
    assert_eq!(expiry("upstream ntjp"), Some(not_after("proxy.crt")));
}

#[tokio::test]
async fn a_broken_renewal_keeps_the_certificate_in_force_and_names_the_file() {
    let pki = Pki::generate();
    let live = live_copy(&pki);
    let producer = StaticProducer::start(StatusCode::OK, sample(RESPONSE)).await;
    let proxy = start_proxy(&config(&live, &producer.url(), false)).await;
    let addr = proxy.https_addr.expect("https listener");
    let consumer = pki.client(Some("consumer"));

    let report = reload(&proxy).await;
    assert_eq!(tls_entry(&report, "https listener")["outcome"], "unchanged");

    std::fs::write(
        live.path("proxy.crt"),
        "-----BEGIN CERTIFICATE-----\ngarbled\n",
    )
    .expect("write");
    let report = reload(&proxy).await;
    let entry = tls_entry(&report, "https listener");
    assert_eq!(entry["outcome"], "failed", "{report}");
    let error = entry["error"].as_str().unwrap_or_default();
    assert!(error.contains("proxy.crt"), "names the file: {error}");

    // Still served with the certificate in force.
    let mut session = TlsSession::open(addr, &consumer).await.expect("connects");
    assert_eq!(session.served, served_by(&pki.path("proxy.crt")));
    call_on(&mut session).await;

    // A certificate whose key is still the old one does not load either.
    std::fs::copy(pki.path("ntjp.crt"), live.path("proxy.crt")).expect("copy");
    let report = reload(&proxy).await;
    let entry = tls_entry(&report, "https listener");
    assert_eq!(entry["outcome"], "failed", "{report}");
    assert!(
        entry["error"]
            .as_str()
            .is_some_and(|e| e.contains("does not match")),
        "{report}"
    );

    // The key follows: the pair loads.
    std::fs::copy(pki.path("ntjp.key"), live.path("proxy.key")).expect("copy");
    let report = reload(&proxy).await;
    assert_eq!(tls_entry(&report, "https listener")["outcome"], "reloaded");
    let session = TlsSession::open(addr, &consumer).await.expect("connects");
    assert_eq!(session.served, served_by(&pki.path("ntjp.crt")));

    let metrics = scrape_metrics(proxy.admin_addr.expect("admin")).await;
    assert!(counted(&metrics, "https listener", "failure"), "{metrics}");
    assert!(counted(&metrics, "https listener", "success"), "{metrics}");
}

#[tokio::test]
async fn a_renewed_upstream_client_certificate_is_presented_on_the_next_call() {
    let pki = Pki::generate();
    let live = live_copy(&pki);
    let sim = start_sim(&sim_toml(&pki, "")).await;
    let url = format!(
        "https://127.0.0.1:{}",
        sim.https_addr().expect("sim https").port()
    );
    // The block service's client is built from the same upstream: it is renewed too.
    let text = format!(
        "{}\n[blocks]\nupstream = \"ntjp\"\n",
        config(&live, &url, false)
    );
    let proxy = start_proxy(&text).await;
    let addr = proxy.https_addr.expect("https listener");
    let consumer = pki.client(Some("consumer"));

    let reply = post_tls(addr, &consumer, Call::soap(sample(REQUEST)))
        .await
        .expect("answer");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let senders = |sim: &ntjp_sim::RunningSim| -> Vec<Option<String>> {
        sim.calls().into_iter().map(|c| c.sender_id).collect()
    };
    assert_eq!(senders(&sim), [Some(ids::PROXY.to_owned())]);

    // The proxy's client certificate is replaced by one with another HSA-id (the test
    // PKI's aggregator certificate), so the simulator can tell which one it was shown.
    replace(&pki, "aggregator", &live, "upstream");
    let report = reload(&proxy).await;
    assert_eq!(
        tls_entry(&report, "upstream ntjp")["outcome"],
        "reloaded",
        "{report}"
    );
    assert_eq!(tls_entry(&report, "https listener")["outcome"], "unchanged");
    assert_eq!(
        tls_entry(&report, "block lookups (upstream ntjp)")["outcome"],
        "reloaded",
        "{report}"
    );

    // The simulator refuses the aggregator as a sender (it only trusts the proxy with
    // OSC), but records who connected: the renewed certificate, on a new connection.
    let _ = post_tls(addr, &consumer, Call::soap(sample(REQUEST))).await;
    assert_eq!(
        senders(&sim),
        [
            Some(ids::PROXY.to_owned()),
            Some(ids::AGGREGATOR.to_owned())
        ]
    );
}

/// `config` with the listener checking callers against `crls` (file names in `live`)
/// and `more` added to `[https]`.
fn with_crls(text: &str, live: &Pki, crls: &[&str], more: &str) -> String {
    let dir = live.dir.path().display().to_string();
    let list: Vec<String> = crls.iter().map(|f| format!("\"{dir}/{f}\"")).collect();
    let client_ca = format!("client_ca = \"{dir}/ca.crt\"\n");
    text.replacen(
        &client_ca,
        &format!("{client_ca}crls = [{}]\n{more}", list.join(", ")),
        1,
    )
}

async fn answered(addr: std::net::SocketAddr, pki: &Pki, stem: &str) -> bool {
    match post_tls(addr, &pki.client(Some(stem)), Call::soap(sample(REQUEST))).await {
        Ok(reply) => reply.status == StatusCode::OK,
        Err(_) => false,
    }
}

#[tokio::test]
async fn a_revoked_caller_is_refused_in_the_handshake_and_a_new_crl_takes_effect_on_reload() {
    let pki = Pki::generate();
    let live = live_copy(&pki);
    std::fs::copy(pki.path("crl-none.pem"), live.path("callers.crl")).expect("copy");
    let producer = StaticProducer::start(StatusCode::OK, sample(RESPONSE)).await;
    let text = with_crls(
        &config(&live, &producer.url(), false),
        &live,
        &["callers.crl"],
        "",
    );
    let proxy = start_proxy(&text).await;
    let addr = proxy.https_addr.expect("https listener");
    assert!(answered(addr, &pki, "consumer").await);
    assert!(answered(addr, &pki, "aggregator").await, "not revoked yet");

    // The CA revokes the aggregator's certificate; the new list is put in place.
    std::fs::copy(pki.path("crl-aggregator.pem"), live.path("callers.crl")).expect("copy");
    let report = reload(&proxy).await;
    assert_eq!(
        tls_entry(&report, "https listener")["outcome"],
        "reloaded",
        "{report}"
    );
    assert!(
        !answered(addr, &pki, "aggregator").await,
        "a revoked certificate must not get a call through"
    );
    assert!(answered(addr, &pki, "consumer").await, "others still pass");
    // Nothing the revoked caller sent reached the producer.
    assert_eq!(producer.received().len(), 3);
    // The list in force is due for renewal in 30 days: the gauge alerts are made from.
    let metrics = scrape_metrics(proxy.admin_addr.expect("admin")).await;
    let series = format!(
        "rtp_tls_crl_next_update_timestamp_seconds{{file=\"{}\"}}",
        live.path("callers.crl").display()
    );
    let next_update =
        sample_value(&metrics, &series).unwrap_or_else(|| panic!("{series}: {metrics}"));
    let in_days = (next_update as i64 - jiff::Timestamp::now().as_second()) / 86_400;
    assert!((28..=30).contains(&in_days), "{in_days} days");

    // A garbled list is refused naming the file; the list in force stays.
    std::fs::write(live.path("callers.crl"), "-----BEGIN X509 CRL-----\nAAAA\n").expect("write");
    let report = reload(&proxy).await;
    let entry = tls_entry(&report, "https listener");
    assert_eq!(entry["outcome"], "failed", "{report}");
    assert!(
        entry["error"]
            .as_str()
            .is_some_and(|e| e.contains("callers.crl")),
        "{report}"
    );
    assert!(!answered(addr, &pki, "aggregator").await, "still revoked");
}

#[tokio::test]
async fn an_expired_crl_refuses_every_caller_unless_allowed() {
    let pki = Pki::generate();
    let live = live_copy(&pki);
    let producer = StaticProducer::start(StatusCode::OK, sample(RESPONSE)).await;
    let base = config(&live, &producer.url(), false);

    // A list past its nextUpdate cannot tell a certificate revoked since: refused.
    let strict = start_proxy(&with_crls(&base, &live, &["crl-expired.pem"], "")).await;
    assert!(!answered(strict.https_addr.expect("https"), &pki, "consumer").await);

    // Unless the operator accepts stale lists for a while.
    let lenient = with_crls(
        &base,
        &live,
        &["crl-expired.pem"],
        "allow_expired_crls = true\n",
    );
    let lenient = start_proxy(&lenient).await;
    assert!(answered(lenient.https_addr.expect("https"), &pki, "consumer").await);

    // A caller no list covers (here: a list by another CA only) is refused by default.
    let other_ca = "rogue-ca.crl";
    let rogue = rtp_proxy::pki::TestCa::new("another CA").expect("CA");
    std::fs::write(live.path(other_ca), rogue.crl(&[], 30).expect("CRL")).expect("write");
    let unknown = start_proxy(&with_crls(&base, &live, &[other_ca], "")).await;
    assert!(!answered(unknown.https_addr.expect("https"), &pki, "consumer").await);
    let allowed = with_crls(
        &base,
        &live,
        &[other_ca],
        "allow_unknown_revocation_status = true\n",
    );
    let allowed = start_proxy(&allowed).await;
    assert!(answered(allowed.https_addr.expect("https"), &pki, "consumer").await);
}

#[tokio::test]
async fn an_upstream_whose_certificate_is_revoked_is_not_called() {
    let pki = Pki::generate();
    let sim = start_sim(&sim_toml(&pki, "")).await;
    let url = format!(
        "https://127.0.0.1:{}",
        sim.https_addr().expect("sim https").port()
    );
    let dir = pki.dir.path().display().to_string();
    let with_upstream_crl = |crl: &str| {
        // The upstream's `ca` line (the listener's is `client_ca`).
        proxy_toml(&pki, &url, "[[route]]\nname = \"everything\"\n").replacen(
            &format!("\nca = \"{dir}/ca.crt\"\n"),
            &format!("\nca = \"{dir}/ca.crt\"\ncrls = [\"{dir}/{crl}\"]\n"),
            1,
        )
    };
    let consumer = pki.client(Some("consumer"));

    // NTjP's certificate is not on the list: calls go through.
    let proxy = start_proxy(&with_upstream_crl("crl-none.pem")).await;
    let reply = post_tls(
        proxy.https_addr.expect("https"),
        &consumer,
        Call::soap(sample(REQUEST)),
    )
    .await
    .expect("answer");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(sim.calls().len(), 1);

    // It is revoked: the handshake towards it fails, the caller gets VP009, and nothing
    // was sent to the revoked server.
    let proxy = start_proxy(&with_upstream_crl("crl-ntjp.pem")).await;
    let reply = post_tls(
        proxy.https_addr.expect("https"),
        &consumer,
        Call::soap(sample(REQUEST)),
    )
    .await
    .expect("answer");
    reply.assert_fault_code("VP009");
    assert_eq!(sim.calls().len(), 1, "no call reached the revoked upstream");
}
