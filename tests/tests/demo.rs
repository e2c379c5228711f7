//! The README's first command: `rtp-proxy demo` starts the simulator and the proxy with a
//! generated PKI, the printed call works over mutual TLS, and SIGTERM stops everything.
//! Uses the demo's fixed loopback ports (8443, 8080, 9443, 9080).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use http::StatusCode;
use rtp_proxy_tests::*;

fn binary(name: &str) -> PathBuf {
    profile_dir().join(name)
}

/// Builds the two binaries the demo runs, so the test never runs stale ones (cargo
/// builds another package's binaries for its tests only under `--workspace`).
fn build_binaries(repo: &Path) {
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(repo)
        .args(["build", "--bins", "-p", "rtp-proxy", "-p", "ntjp-sim"]);
    if profile_dir().file_name().is_some_and(|p| p == "release") {
        cargo.arg("--release");
    }
    let status = cargo.status().expect("run cargo build");
    assert!(status.success(), "building the demo binaries failed");
    // The demo config's policies, as the README's command builds them.
    let status = Command::new(env!("CARGO"))
        .current_dir(repo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            "rtp-policy-*",
        ])
        .status()
        .expect("run cargo build for the policies");
    assert!(status.success(), "building the demo policies failed");
}

#[tokio::test]
async fn the_demo_serves_the_printed_call_and_stops_on_sigterm() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    build_binaries(&repo);
    let mut demo = Command::new(binary("rtp-proxy"))
        .current_dir(&repo)
        .arg("demo")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the demo");

    // Bounded wait for the proxy's mutual-TLS port. Generous: on a fresh checkout the
    // debug build compiles the four policy components before it listens (an unoptimised
    // wasmtime takes tens of seconds for them; later starts take them from the cache).
    let deadline = Instant::now() + Duration::from_secs(300);
    while tokio::net::TcpStream::connect("127.0.0.1:8443")
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the demo did not listen on 8443 in time"
        );
        assert!(demo.try_wait().unwrap().is_none(), "the demo exited early");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let pki = repo.join("config/demo-pki");
    let tls = rtp_proxy::tls::client_config(
        &pki.join("ca.crt"),
        Some((&pki.join("consumer.crt"), &pki.join("consumer.key"))),
        &rtp_proxy::tls::Revocation::default(),
    )
    .unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls));
    let body = std::fs::read(repo.join(rtp_proxy::demo::DEMO_REQUEST)).unwrap();
    let mut call = Call::soap(body);
    for (name, value) in rtp_proxy::demo::DEMO_ACTOR {
        call = call.header(name, value);
    }
    let reply = post_tls("127.0.0.1:8443".parse().unwrap(), &connector, call)
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.assert_text_contains("GetCareDocumentationResponse");
    reply.assert_text_contains("careDocumentation");

    // Stop it by its own PID, as an operator's Ctrl-C or systemd would.
    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(demo.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = demo.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = demo.kill();
            panic!("the demo did not stop within 15 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}");
    let mut printed = String::new();
    std::io::Read::read_to_string(demo.stdout.as_mut().unwrap(), &mut printed).unwrap();
    assert!(
        printed.contains("curl -sS --cacert config/demo-pki/ca.crt"),
        "{printed}"
    );
    assert!(
        printed.contains("-H 'x-rtp-actor-employee-hsaid: SE2321000016-E001'"),
        "the printed call names the user for the block check: {printed}"
    );
    // The simulator went down with it.
    assert!(tokio::net::TcpStream::connect("127.0.0.1:9443")
        .await
        .is_err());
}
