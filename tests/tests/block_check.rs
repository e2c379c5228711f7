//! The block-check policy end to end: the proxy with the built component, the block
//! service and the log service of the simulator, real TLS. Blocked records never reach
//! the consumer, emergency access releases them and is logged as such, every access has
//! its StoreLog entry at the log service, and an untrusted caller cannot assert a user.

use std::time::{Duration, Instant};

use http::StatusCode;
use rtp_proxy::contracts;
use rtp_proxy::response::scan::scan_document;
use rtp_proxy_tests::*;

const VG01: &str = "SE2321000016-VG01";
const VG02: &str = "SE2321000016-VG02";

/// Four records for the patient, owned alternately by VG01/VE01 and VG02/VE02, the third
/// without owner ids; VG02's information is under an outer block.
fn sim_extra() -> String {
    format!(
        r#"
[patients."{patient}"]
records = 4
dates = ["20240110", "20230301", "20220601", "20210901"]
care_providers = ["{VG01}", "{VG02}"]
care_units = ["SE2321000016-VE01", "SE2321000016-VE02"]
missing_owner = [2]

[[blocks]]
patient_id = "{patient}"
block_id = "B-OUTER"
block_type = "Outer"
care_provider = "{VG02}"
{services}"#,
        patient = ids::PATIENT,
        services = sim_services(),
    )
}

struct Env {
    pki: Pki,
    sim: ntjp_sim::RunningSim,
    proxy: rtp_proxy::server::RunningProxy,
    _journal: tempfile::TempDir,
}

/// The proxy's block service, access log (journal in `journal`, delivered to the
/// simulator) and the block-check route, as every test here runs them.
fn proxy_sections(journal: &std::path::Path) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"

[blocks]
upstream = "ntjp"

[access_log]
dir = "{journal}"
upstream = "ntjp"
system_id = "{proxy}"
retry_initial_ms = 50
retry_max_ms = 200
{route}"#,
        journal = journal.display(),
        proxy = ids::PROXY,
        route = block_check_route(),
    )
}

async fn start() -> Env {
    let pki = Pki::generate();
    let sim = start_sim(&sim_toml(&pki, &sim_extra())).await;
    let url = format!("https://127.0.0.1:{}", sim.https_addr().unwrap().port());
    let journal = tempfile::tempdir().unwrap();
    let sections = proxy_sections(journal.path());
    let proxy = start_proxy(&proxy_toml(&pki, &url, &sections)).await;
    Env {
        pki,
        sim,
        proxy,
        _journal: journal,
    }
}

fn request() -> Vec<u8> {
    String::from_utf8(sample("01_GetCareDocumentation_v2_request.xml"))
        .unwrap()
        .replace("${patientId}", ids::PATIENT)
        .into_bytes()
}

/// Owner care providers of the records in a CD2 answer (a full parse).
fn owners(body: &[u8]) -> Vec<String> {
    let contract = contracts::lookup(CD2).unwrap();
    scan_document(contract, body)
        .expect("well-formed answer")
        .into_iter()
        .map(|r| r.summary.care_provider.unwrap_or_default())
        .collect()
}

async fn call_as(env: &Env, client: &str, emergency: bool) -> Reply {
    let call = Call::soap(request())
        .header("x-rtp-actor-employee-hsaid", "SE2321000016-E001")
        .header("x-rtp-actor-careunit-hsaid", "SE2321000016-VE01")
        .header("x-rtp-actor-careprovider-hsaid", VG01)
        .header(
            "x-rtp-actor-emergency",
            if emergency { "true" } else { "false" },
        );
    post_tls(
        env.proxy.https_addr.unwrap(),
        &env.pki.client(Some(client)),
        call,
    )
    .await
    .unwrap()
}

/// Waits (bounded) until the log service holds `n` entries.
async fn log_entries(env: &Env, n: usize) -> Vec<ntjp_sim::StoreLogEntry> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let entries = env.sim.store_log_entries();
        if entries.len() >= n || Instant::now() > deadline {
            return entries;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn blocked_records_are_withheld_and_the_access_is_logged() {
    let env = start().await;
    let reply = call_as(&env, "consumer", false).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let shown = owners(&reply.body);
    assert_eq!(
        shown,
        [VG01],
        "VG02's records are under an outer block; a record without owner ids is never shown"
    );
    assert!(
        env.sim
            .calls()
            .iter()
            .all(|c| c.header("x-rtp-actor-employee-hsaid").is_none()),
        "the actor headers stop at the proxy"
    );

    let entries = log_entries(&env, 1).await;
    assert_eq!(entries.len(), 1, "one access, one entry");
    let text = format!("{:?}", entries[0]);
    assert!(text.contains("Läsa"), "{text}");
    assert!(text.contains("SE2321000016-E001"), "{text}");

    // The journal's totals on /metrics: one entry, one group commit, and (once the log
    // service's answer is in) one delivery.
    let admin = env.proxy.admin_addr.expect("admin listener");
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let metrics = scrape_metrics(admin).await;
        let delivered = metrics
            .lines()
            .any(|l| l == "rtp_access_log_delivered_total 1");
        if delivered || Instant::now() > deadline {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    for line in [
        "rtp_access_log_appended_total 1",
        "rtp_access_log_commits_total 1",
        "rtp_access_log_delivered_total 1",
        "rtp_access_log_delivery_failures_total 0",
        "rtp_access_log_journal_depth 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing in\n{metrics}"
        );
    }
    env.proxy.shutdown().await;
}

#[tokio::test]
async fn emergency_access_releases_blocked_records_and_is_logged_as_such() {
    let env = start().await;
    let reply = call_as(&env, "consumer", true).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        owners(&reply.body),
        [VG01, VG02, VG02],
        "nödöppning overrides the block, but never shows a record without owner ids"
    );
    let entries = log_entries(&env, 1).await;
    assert!(
        format!("{:?}", entries[0]).contains("Nödöppning"),
        "{entries:?}"
    );
    env.proxy.shutdown().await;
}

#[tokio::test]
async fn an_untrusted_caller_cannot_assert_a_user_and_ntjp_never_sees_the_call() {
    let env = start().await;
    let reply = call_as(&env, "aggregator", false).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    reply.assert_fault_code("RTP111");
    assert!(
        !reply.text().contains(ids::PATIENT),
        "no personal data in faults"
    );
    assert!(env
        .sim
        .calls()
        .iter()
        .all(|c| !c.body_text().contains("GetCareDocumentation>")));
    env.proxy.shutdown().await;
}

/// The proxy is SIGKILLed in the middle of a bounded load while the log service is down,
/// so nothing has been delivered yet: after a restart, every response that was released
/// has its access-log entry at the log service (each call's employee id identifies it).
#[tokio::test]
async fn every_released_response_has_its_access_log_entry_after_a_sigkill() {
    let pki = Pki::generate();
    let sim = start_sim(&sim_toml(&pki, &sim_extra())).await;
    sim.set_producer_fault("log-service", ntjp_sim::FaultMode::Http503);
    let url = format!("https://127.0.0.1:{}", sim.https_addr().unwrap().port());
    let journal = tempfile::tempdir().unwrap();
    let port = free_port().await;
    let sections = proxy_sections(journal.path());
    let text = proxy_toml(&pki, &url, &sections).replacen(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
        1,
    );
    let config = pki.dir.path().join("rtp-proxy.toml");
    std::fs::write(&config, text).unwrap();
    let mut proxy = spawn_proxy(&config, port).await;

    // Load: four clients, each call as its own employee, bounded in count and time. The
    // proxy is killed while they run.
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let released = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for client in 0..4 {
        let tls = pki.client(Some("consumer"));
        let released = released.clone();
        clients.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            for n in 0..200 {
                if Instant::now() > deadline {
                    break;
                }
                let employee = format!("SE2321000016-E{client}x{n}");
                let call = Call::soap(request())
                    .header("x-rtp-actor-employee-hsaid", employee.clone())
                    .header("x-rtp-actor-careunit-hsaid", "SE2321000016-VE01")
                    .header("x-rtp-actor-careprovider-hsaid", VG01);
                match post_tls(addr, &tls, call).await {
                    // A complete 200 answer was released to the consumer.
                    Ok(reply) if reply.status == StatusCode::OK => {
                        released.lock().unwrap().push(employee)
                    }
                    Ok(_) => {}
                    Err(_) => break, // the proxy is gone
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while released.lock().unwrap().len() < 40 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.kill().expect("SIGKILL the proxy");
    let _ = proxy.wait();
    for client in clients {
        let _ = client.await;
    }
    let released = released.lock().unwrap().clone();
    assert!(
        released.len() >= 40,
        "the load released {} answers",
        released.len()
    );
    assert!(
        sim.store_log_entries().is_empty(),
        "nothing delivered before the kill"
    );

    // Restart on the same journal with the log service back: every released answer's
    // entry arrives.
    sim.set_producer_fault("log-service", ntjp_sim::FaultMode::None);
    let mut proxy = spawn_proxy(&config, port).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let missing = loop {
        let logged: std::collections::HashSet<String> = sim
            .store_log_entries()
            .into_iter()
            .filter_map(|e| e.user_id)
            .collect();
        let missing: Vec<&String> = released.iter().filter(|e| !logged.contains(*e)).collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing.len();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = proxy.kill();
    let _ = proxy.wait();
    assert_eq!(
        missing, 0,
        "released answers without a delivered access-log entry"
    );
}
