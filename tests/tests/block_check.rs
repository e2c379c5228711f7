//! The block-check policy end to end: the proxy with the built component, the block
//! service and the log service of the simulator, real TLS. Blocked records never reach
//! the consumer, emergency access releases them and is logged as such, every access has
//! its StoreLog entry at the log service, and an untrusted caller cannot assert a user.

use std::time::{Duration, Instant};

use http::StatusCode;
use rtp_proxy::contracts;
use rtp_proxy::response::scan::scan_document;
use rtp_proxy_tests::*;

const BLOCKS_NS: &str = "urn:riv:ehr:blocking:querying:GetBlocksForPatientResponder:2";
const STORE_LOG_NS: &str = "urn:riv:ehr:log:store:StoreLogResponder:1";
const VG01: &str = "SE2321000016-VG01";
const VG02: &str = "SE2321000016-VG02";

/// Four records for the patient, owned alternately by VG01/VE01 and VG02/VE02; VG02's
/// information is under an outer block.
fn sim_extra() -> String {
    format!(
        r#"
[[producer]]
name = "block-service"
kind = "blocks"

[[producer]]
name = "log-service"
kind = "log"

[patients."{patient}"]
records = 4
dates = ["20240110", "20230301", "20220601", "20210901"]
care_providers = ["{VG01}", "{VG02}"]
care_units = ["SE2321000016-VE01", "SE2321000016-VE02"]

[[blocks]]
patient_id = "{patient}"
block_id = "B-OUTER"
block_type = "Outer"
care_provider = "{VG02}"

[[route]]
contract = "{blocks}"
logical_address = "*"
producer = "block-service"

[[route]]
contract = "{log}"
logical_address = "*"
producer = "log-service"

[[permission]]
sender = "{proxy}"
contract = "{blocks}"
logical_address = "*"

[[permission]]
sender = "{proxy}"
contract = "{log}"
logical_address = "*"
"#,
        patient = ids::PATIENT,
        blocks = BLOCKS_NS,
        log = STORE_LOG_NS,
        proxy = ids::PROXY,
    )
}

struct Env {
    pki: Pki,
    sim: ntjp_sim::RunningSim,
    proxy: rtp_proxy::server::RunningProxy,
    _journal: tempfile::TempDir,
}

async fn start() -> Env {
    let pki = Pki::generate();
    let sim = start_sim(&sim_toml(&pki, &sim_extra())).await;
    let url = format!("https://127.0.0.1:{}", sim.https_addr().unwrap().port());
    let journal = tempfile::tempdir().unwrap();
    let sections = format!(
        r#"
[blocks]
upstream = "ntjp"

[access_log]
dir = "{journal}"
upstream = "ntjp"
system_id = "{proxy}"
retry_initial_ms = 50

[[route]]
name = "records"

[[route.policy]]
file = "{wasm}"
settings = {{ trusted_actor_assertors = ["{consumer}"] }}
"#,
        journal = journal.path().display(),
        proxy = ids::PROXY,
        wasm = shipped_policy_wasm("block-check").display(),
        consumer = ids::CONSUMER,
    );
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
        [VG01, VG01],
        "VG02's records are under an outer block"
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
    env.proxy.shutdown().await;
}

#[tokio::test]
async fn emergency_access_releases_blocked_records_and_is_logged_as_such() {
    let env = start().await;
    let reply = call_as(&env, "consumer", true).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        owners(&reply.body).len(),
        4,
        "nödöppning overrides the block"
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
    assert_eq!(
        reply.fault_code().as_deref(),
        Some("RTP111"),
        "{}",
        reply.text()
    );
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
