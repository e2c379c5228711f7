//! SIGTERM drains the proxy: `rtp-proxy run` as its own process in front of the simulator,
//! whose producer answers after 300 ms, under a bounded concurrent load over mutual TLS.
//! SIGTERM in the middle of it: every call the proxy accepted (TCP connected and TLS
//! handshake done) gets its complete 200 answer, including one on a connection opened
//! before the SIGTERM whose request comes after it; an idle keep-alive connection is
//! closed by the proxy instead of holding the shutdown up; connections attempted once the
//! listener has closed are refused while the calls in flight still finish; and the
//! process exits 0 before the shutdown grace runs out.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rtp_proxy_tests::*;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// The logical address the lagging producer answers.
const LAGGING_ADDRESS: &str = "DRAIN-1";
const LATENCY_MS: u64 = 300;
/// Long enough that a drain that has to wait for it (an idle connection held open) shows.
const GRACE_MS: u64 = 5000;
const CLIENTS: usize = 8;

fn sim_extra() -> String {
    format!(
        r#"
[[producer]]
name = "lagging"
latency_ms = {LATENCY_MS}

[[route]]
contract = "{CD2}"
logical_address = "{LAGGING_ADDRESS}"
producer = "lagging"
"#
    )
}

fn request_body() -> Bytes {
    let text = String::from_utf8(sample("01_GetCareDocumentation_v2_request.xml")).unwrap();
    assert!(text.contains(">VS-1<"), "the sample's logical address");
    Bytes::from(text.replace(">VS-1<", &format!(">{LAGGING_ADDRESS}<")))
}

fn request(addr: SocketAddr, body: &Bytes) -> Request<Full<Bytes>> {
    Request::post("/vp/clinicalprocess/healthcond/description/GetCareDocumentation/2/rivtabp21")
        .header("host", addr.to_string())
        .header("content-type", "text/xml; charset=UTF-8")
        .body(Full::new(body.clone()))
        .unwrap()
}

/// What became of one call.
#[derive(Debug)]
enum Outcome {
    /// The TCP connect or the TLS handshake failed: the proxy never took the call.
    NotAccepted(std::io::Error),
    /// The whole answer arrived.
    Answered {
        status: StatusCode,
        body: Bytes,
        connection_close: bool,
    },
    /// The proxy took the call but the answer never came, or came cut off.
    #[allow(dead_code)] // shown through Debug in failure messages
    Broken(String),
}

#[derive(Debug)]
struct Record {
    started: Instant,
    /// When the TLS handshake completed.
    connected: Option<Instant>,
    finished: Instant,
    outcome: Outcome,
}

impl Record {
    fn complete_200(&self) -> bool {
        matches!(&self.outcome, Outcome::Answered { status, body, .. }
            if *status == StatusCode::OK && is_whole_envelope(body))
    }
}

fn is_whole_envelope(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    let text = text.trim_end();
    text.ends_with("Envelope>") && text.contains("GetCareDocumentationResponse")
}

async fn connect(addr: SocketAddr, tls: &TlsConnector) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tls.connect(name, tcp).await
}

/// One call on a connection already made: status, the whole body, and whether the proxy
/// said it closes the connection.
async fn exchange(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Outcome {
    let call = async {
        let response = sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        let connection_close = parts
            .headers
            .get("connection")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        Ok::<_, hyper::Error>(Outcome::Answered {
            status: parts.status,
            body,
            connection_close,
        })
    };
    match tokio::time::timeout(Duration::from_secs(10), call).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => Outcome::Broken(format!("{e:?}")),
        Err(_) => Outcome::Broken("no answer in 10 s".into()),
    }
}

/// One call on a fresh connection.
async fn call(addr: SocketAddr, tls: &TlsConnector, body: &Bytes) -> Record {
    let started = Instant::now();
    let stream = match tokio::time::timeout(Duration::from_secs(10), connect(addr, tls)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            return Record {
                started,
                connected: None,
                finished: Instant::now(),
                outcome: Outcome::NotAccepted(e),
            }
        }
        Err(_) => panic!("connecting took over 10 s"),
    };
    let connected = Some(Instant::now());
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("client handshake (no I/O)");
    let driver = tokio::spawn(connection);
    let outcome = exchange(&mut sender, request(addr, body)).await;
    driver.abort();
    Record {
        started,
        connected,
        finished: Instant::now(),
        outcome,
    }
}

fn sigterm(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_accepted_calls_refuses_new_ones_and_exits_0() {
    let pki = Pki::generate();
    let sim = start_sim(&sim_toml(&pki, &sim_extra())).await;
    let url = format!("https://127.0.0.1:{}", sim.https_addr().unwrap().port());
    let port = free_port().await;
    let text = proxy_toml(&pki, &url, "[[route]]\nname = \"everything\"\n")
        .replacen(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
            1,
        )
        .replacen(
            "shutdown_grace_ms = 2000",
            &format!("shutdown_grace_ms = {GRACE_MS}"),
            1,
        );
    assert!(text.contains(&format!("shutdown_grace_ms = {GRACE_MS}")));
    let config = pki.dir.path().join("rtp-proxy.toml");
    std::fs::write(&config, text).unwrap();
    let log = config.with_extension("log");
    let mut proxy = spawn_proxy(&config, port).await;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let body = request_body();
    let tls = pki.client(Some("consumer"));

    // A keep-alive connection that has had its call and is idle at the SIGTERM.
    let (mut idle_sender, idle_driver) = {
        let stream = connect(addr, &tls).await.expect("connect");
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        (sender, tokio::spawn(connection))
    };
    let first = exchange(&mut idle_sender, request(addr, &body)).await;
    assert!(
        matches!(&first, Outcome::Answered { status, connection_close: false, .. } if *status == StatusCode::OK),
        "{first:?}"
    );
    // A connection made before the SIGTERM whose request is sent after it (a client that
    // connected ahead, or whose request was on its way).
    let preconnected = connect(addr, &tls).await.expect("connect");

    // The load: each client calls on fresh connections until the proxy refuses it, then
    // checks once more that it is still refused.
    let records = Arc::new(Mutex::new(Vec::<Record>::new()));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (tls, body, records) = (tls.clone(), body.clone(), records.clone());
        clients.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut refused = 0;
            for _ in 0..300 {
                if refused == 2 || Instant::now() > deadline {
                    break;
                }
                let record = call(addr, &tls, &body).await;
                if matches!(record.outcome, Outcome::NotAccepted(_)) {
                    refused += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                records.lock().unwrap().push(record);
            }
        }));
    }
    let answered = || {
        records
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.complete_200())
            .count()
    };
    let warm = Instant::now() + Duration::from_secs(60);
    while answered() < 2 * CLIENTS && Instant::now() < warm {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(answered() >= 2 * CLIENTS, "the load is running");

    let sigterm_at = Instant::now();
    sigterm(proxy.id());

    // The listener closes at once: connects are refused while calls are still draining.
    let refused_at = loop {
        match TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break Instant::now(),
            _ => {}
        }
        assert!(
            sigterm_at.elapsed() < Duration::from_secs(5),
            "the listener still accepts 5 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };

    // The preconnected client sends its request now, after the SIGTERM and after the
    // listener closed: the connection was accepted, so the call is answered (and the
    // proxy says it closes the connection afterwards).
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(preconnected))
            .await
            .unwrap();
    let pre_driver = tokio::spawn(connection);
    let late = exchange(&mut sender, request(addr, &body)).await;
    pre_driver.abort();

    // The idle keep-alive connection is closed by the proxy, well within the grace.
    let idle_closed = tokio::time::timeout(Duration::from_millis(GRACE_MS / 2), idle_driver)
        .await
        .is_ok();

    // The process exits 0, and before the grace is up: nothing held the drain open.
    let exit_deadline = sigterm_at + Duration::from_millis(GRACE_MS + 3000);
    let status = loop {
        if let Some(status) = proxy.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > exit_deadline {
            let _ = proxy.kill();
            let _ = proxy.wait();
            panic!(
                "rtp-proxy still running {:?} after SIGTERM\n{}",
                sigterm_at.elapsed(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let exited_after = sigterm_at.elapsed();
    for client in clients {
        client.await.unwrap();
    }
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.success(),
        "exit status {status:?} on SIGTERM\n{stderr}"
    );
    assert!(
        exited_after < Duration::from_millis(GRACE_MS),
        "exited {exited_after:?} after SIGTERM: the drain waited for the grace\n{stderr}"
    );
    assert!(
        !stderr.contains("still in flight"),
        "calls cut off at the end of the grace\n{stderr}"
    );
    assert!(
        idle_closed,
        "the idle keep-alive connection was not closed by the proxy"
    );
    assert!(
        matches!(&late, Outcome::Answered { status, body, connection_close: true }
            if *status == StatusCode::OK && is_whole_envelope(body)),
        "a call on a connection accepted before SIGTERM: {late:?}"
    );

    let records = records.lock().unwrap();
    // Every call the proxy accepted got its whole answer: none cut off, none reset.
    let broken: Vec<&Record> = records
        .iter()
        .filter(|r| r.connected.is_some() && !r.complete_200())
        .collect();
    assert!(
        broken.is_empty(),
        "{} accepted call(s) without a complete 200 answer: {broken:#?}",
        broken.len()
    );
    // The SIGTERM came while calls were in flight, and they finished after the listener
    // had closed.
    let in_flight = records
        .iter()
        .filter(|r| r.connected.is_some_and(|c| c < sigterm_at) && r.finished > sigterm_at)
        .count();
    assert!(
        in_flight >= CLIENTS / 2,
        "only {in_flight} call(s) in flight at the SIGTERM"
    );
    assert!(
        records
            .iter()
            .any(|r| r.complete_200() && r.finished > refused_at),
        "no call finished after the listener closed"
    );
    // Once refused, always refused: every connection attempted after the listener
    // closed was refused, at the TCP connect.
    let after_close: Vec<&Record> = records.iter().filter(|r| r.started > refused_at).collect();
    assert!(!after_close.is_empty());
    for r in after_close {
        assert!(
            matches!(&r.outcome, Outcome::NotAccepted(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
            "a connection attempted after the listener closed: {r:?}"
        );
    }
}
