//! The host capabilities policies lean on, against the simulator over real TLS: the block
//! lookup (GetBlocksForPatient 2, cached) and the PDL access-log journal with its delivery
//! to the log service (StoreLog 1).

use std::collections::HashSet;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use ntjp_sim::FaultMode;
use rtp_proxy::access_log::{AccessJournal, DeliveryHandle};
use rtp_proxy::blocks::BlockService;
use rtp_proxy::config::Config;
use rtp_proxy::policy::capabilities::access_log::Owner;
use rtp_proxy::policy::capabilities::blocks::BlockKind;
use rtp_proxy::policy::{AccessEntry, BlockLookup};
use rtp_proxy_tests::*;

/// The accessing actor's care provider: the logical address of lookups and log calls.
const ACTOR_VG: &str = "SE2321000016-VG10";
/// A care provider whose block service answers slowly (single-flight checks).
const SLOW_VG: &str = "SE2321000016-SLOW";
const OTHER_PATIENT: &str = "194011232399";
const WAIT: Duration = Duration::from_secs(15);

/// Block service, log service, two blocks for the test patient, routes and permissions.
fn sim_extra() -> String {
    format!(
        r#"
[[producer]]
name = "slow-block-service"
kind = "blocks"
latency_ms = 300

[[blocks]]
patient_id = "{patient}"
block_id = "B-INNER"
block_type = "Inner"
care_provider = "SE2321000016-VG01"
care_unit = "SE2321000016-VE01"
start = "2019-01-01T00:00:00"
end = "2023-06-30T23:59:59"
excluded_info_types = ["upp"]

[[blocks.temporary_revokes]]
care_unit = "SE2321000016-VE05"
employee = "SE2321000016-E005"
end_date = "2030-01-31T00:00:00"

[[blocks]]
patient_id = "{patient}"
block_id = "B-OUTER"
block_type = "Outer"
care_provider = "SE2321000016-VG02"

[[blocks]]
patient_id = "{other}"
block_id = "B-OTHER"
block_type = "Outer"
care_provider = "SE2321000016-VG03"

[[route]]
contract = "{blocks}"
logical_address = "{slow}"
producer = "slow-block-service"
{services}"#,
        patient = ids::PATIENT,
        other = OTHER_PATIENT,
        blocks = BLOCKS_NS,
        slow = SLOW_VG,
        services = sim_services(),
    )
}

struct Env {
    pki: Pki,
    sim: ntjp_sim::RunningSim,
}

impl Env {
    async fn start() -> Env {
        let pki = Pki::generate();
        let sim = start_sim(&sim_toml(&pki, &sim_extra())).await;
        Env { pki, sim }
    }

    fn url(&self) -> String {
        format!(
            "https://127.0.0.1:{}",
            self.sim.https_addr().expect("sim https").port()
        )
    }

    /// The proxy's config with a route and the given sections, towards `url`.
    fn config_for(&self, url: &str, sections: &str) -> Config {
        let text = proxy_toml(
            &self.pki,
            url,
            &format!("\n[[route]]\nname = \"all\"\n{sections}"),
        );
        Config::parse(&text, Path::new("test.toml"), Path::new("."))
            .unwrap_or_else(|e| panic!("test config: {e}"))
    }

    fn config(&self, sections: &str) -> Config {
        self.config_for(&self.url(), sections)
    }

    fn calls_to(&self, contract: &str) -> Vec<ntjp_sim::RecordedCall> {
        self.sim
            .calls()
            .into_iter()
            .filter(|c| c.contract.as_deref() == Some(contract))
            .collect()
    }

    fn blocks(&self, ttl_ms: u64, stale_if_error_ms: u64) -> BlockService {
        let config = self.config(&format!(
            "\n[blocks]\nupstream = \"ntjp\"\nttl_ms = {ttl_ms}\nstale_if_error_ms = {stale_if_error_ms}\ntimeout_ms = 2000\nmax_entries = 100\n"
        ));
        BlockService::from_config(&config)
            .expect("block service")
            .expect("[blocks] configured")
    }
}

/// Polls `check` until it holds or `WAIT` has passed.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn block_lookup_returns_the_patients_blocks_from_the_service() {
    let env = Env::start().await;
    let service = env.blocks(60_000, 0);
    let mut blocks = service
        .blocks_for_patient(ids::PATIENT, ACTOR_VG)
        .await
        .expect("blocks");
    blocks.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(blocks.len(), 2, "only this patient's blocks");

    let inner = &blocks[0];
    assert_eq!(inner.id, "B-INNER");
    assert!(matches!(inner.kind, BlockKind::Inner));
    assert_eq!(inner.care_provider, "SE2321000016-VG01");
    assert_eq!(inner.care_unit.as_deref(), Some("SE2321000016-VE01"));
    assert_eq!(inner.start_date.as_deref(), Some("20190101"));
    assert_eq!(inner.end_date.as_deref(), Some("20230630"));
    assert_eq!(inner.excluded_information_types, vec!["upp".to_string()]);
    assert_eq!(inner.temporary_revokes.len(), 1);
    let revoke = &inner.temporary_revokes[0];
    assert_eq!(revoke.revoked_for_care_unit, "SE2321000016-VE05");
    assert_eq!(
        revoke.revoked_for_employee.as_deref(),
        Some("SE2321000016-E005")
    );
    assert_eq!(revoke.end_date, "20300131");

    let outer = &blocks[1];
    assert_eq!(outer.id, "B-OUTER");
    assert!(matches!(outer.kind, BlockKind::Outer));
    assert_eq!(outer.care_unit, None);
    assert_eq!(outer.start_date, None);

    // The call went to the actor's care provider as logical address, as the proxy.
    let calls = env.calls_to(BLOCKS_NS);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].logical_address.as_deref(), Some(ACTOR_VG));
    assert_eq!(calls[0].sender_id.as_deref(), Some(ids::PROXY));
    assert_eq!(calls[0].status, 200);

    // A patient without blocks gets an empty answer, not an error.
    let none = service
        .lookup("195001011234", ACTOR_VG)
        .await
        .expect("no blocks");
    assert!(none.is_empty());
}

#[tokio::test]
async fn answers_are_cached_within_the_ttl_and_fetched_again_after_it() {
    let env = Env::start().await;
    let ttl = Duration::from_millis(500);
    let service = env.blocks(ttl.as_millis() as u64, 0);
    let first = service.lookup(ids::PATIENT, ACTOR_VG).await.unwrap();
    let fetched_at = Instant::now();
    for _ in 0..5 {
        let again = service.lookup(ids::PATIENT, ACTOR_VG).await.unwrap();
        assert_eq!(again.len(), first.len());
    }
    // (Checked only while the TTL holds, so a stalled machine cannot fail the test.)
    if fetched_at.elapsed() < ttl {
        assert_eq!(env.calls_to(BLOCKS_NS).len(), 1, "served from the cache");
    }
    // The key is (patient, care provider): another actor's provider is asked for.
    let before = env.calls_to(BLOCKS_NS).len();
    service
        .lookup(ids::PATIENT, "SE2321000016-VG11")
        .await
        .unwrap();
    let calls = env.calls_to(BLOCKS_NS);
    assert_eq!(calls.len(), before + 1);
    assert_eq!(
        calls[before].logical_address.as_deref(),
        Some("SE2321000016-VG11")
    );

    tokio::time::sleep(ttl.saturating_sub(fetched_at.elapsed()) + Duration::from_millis(20)).await;
    let before = env.calls_to(BLOCKS_NS).len();
    service.lookup(ids::PATIENT, ACTOR_VG).await.unwrap();
    assert_eq!(
        env.calls_to(BLOCKS_NS).len(),
        before + 1,
        "fetched again after the TTL"
    );
}

#[tokio::test]
async fn concurrent_lookups_of_one_key_make_one_call() {
    let env = Env::start().await;
    let service = env.blocks(60_000, 0);
    let lookups: Vec<_> = (0..20)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move { service.lookup(ids::PATIENT, SLOW_VG).await })
        })
        .collect();
    for lookup in lookups {
        assert_eq!(lookup.await.unwrap().unwrap().len(), 2);
    }
    assert_eq!(env.calls_to(BLOCKS_NS).len(), 1);
}

#[tokio::test]
async fn a_failing_service_without_a_usable_cached_answer_is_an_error() {
    let env = Env::start().await;
    let service = env.blocks(60_000, 0);
    env.sim
        .set_producer_fault("block-service", FaultMode::Http503);
    let err = service
        .blocks_for_patient(ids::PATIENT, ACTOR_VG)
        .await
        .unwrap_err();
    assert!(err.contains("503"), "{err}");
    assert!(!err.contains(ids::PATIENT), "no personnummer in: {err}");

    env.sim
        .set_producer_fault("block-service", FaultMode::SoapFault);
    let err = service
        .blocks_for_patient(ids::PATIENT, ACTOR_VG)
        .await
        .unwrap_err();
    assert!(err.contains("SOAP fault"), "{err}");

    // Nothing listening at all.
    let closed = format!("http://{}", closed_port().await);
    let config = env.config_for(&closed, "\n[blocks]\nupstream = \"ntjp\"\n");
    let unreachable = BlockService::from_config(&config).unwrap().unwrap();
    let err = unreachable
        .blocks_for_patient(ids::PATIENT, ACTOR_VG)
        .await
        .unwrap_err();
    assert!(err.contains("unreachable"), "{err}");
    assert!(!err.contains(ids::PATIENT), "no personnummer in: {err}");
}

#[tokio::test]
async fn a_failing_service_with_a_fresh_enough_answer_serves_it() {
    let env = Env::start().await;
    let ttl = Duration::from_millis(200);
    let service = env.blocks(ttl.as_millis() as u64, 60_000);
    let cached = service.lookup(ids::PATIENT, ACTOR_VG).await.unwrap();
    env.sim
        .set_producer_fault("block-service", FaultMode::Http503);

    // Within the TTL the service is not even asked.
    let calls = env.calls_to(BLOCKS_NS).len();
    let within = service.lookup(ids::PATIENT, ACTOR_VG).await.unwrap();
    assert_eq!(within.len(), cached.len());

    // Past the TTL it is asked, fails, and the answer within stale_if_error serves.
    tokio::time::sleep(ttl + Duration::from_millis(20)).await;
    let stale = service.lookup(ids::PATIENT, ACTOR_VG).await.unwrap();
    assert_eq!(stale.len(), cached.len());
    assert!(
        env.calls_to(BLOCKS_NS).len() > calls,
        "the service was asked"
    );

    // Without a stale window the same situation is an error.
    let strict = env.blocks(ttl.as_millis() as u64, 0);
    env.sim.set_producer_fault("block-service", FaultMode::None);
    strict.lookup(ids::PATIENT, ACTOR_VG).await.unwrap();
    env.sim
        .set_producer_fault("block-service", FaultMode::Http503);
    tokio::time::sleep(ttl + Duration::from_millis(20)).await;
    assert!(strict.lookup(ids::PATIENT, ACTOR_VG).await.is_err());
}

// ---------------------------------------------------------------------------------------
// The access-log journal and its delivery.
// ---------------------------------------------------------------------------------------

fn access(user: &str, owners: &[(&str, Option<&str>)]) -> AccessEntry {
    AccessEntry {
        user: user.into(),
        care_unit: "SE2321000016-VE10".into(),
        care_provider: ACTOR_VG.into(),
        activity: "Läsa".into(),
        purpose: "Vård och behandling".into(),
        patient_id: ids::PATIENT.into(),
        owners: owners
            .iter()
            .map(|(provider, unit)| Owner {
                care_provider: (*provider).into(),
                care_unit: unit.map(Into::into),
            })
            .collect(),
    }
}

fn log_section(dir: &Path, batch_size: usize) -> String {
    format!(
        r#"
[access_log]
dir = "{dir}"
upstream = "ntjp"
system_id = "SE2321000016-RTP1"
system_name = "rtp-proxy test"
batch_size = {batch_size}
retry_initial_ms = 50
retry_max_ms = 200
timeout_ms = 2000
"#,
        dir = dir.display()
    )
}

/// Opens the journal with its delivery running.
fn open_journal(env: &Env, dir: &Path, batch_size: usize) -> (AccessJournal, DeliveryHandle) {
    let (journal, delivery) =
        AccessJournal::open(&env.config(&log_section(dir, batch_size))).expect("journal opens");
    (journal, delivery.expect("delivery configured").spawn())
}

/// Stops delivery and the writer, as a shutdown does.
async fn stop(journal: AccessJournal, delivery: DeliveryHandle) {
    delivery.shutdown().await;
    journal.close().await;
}

fn stored_users(env: &Env) -> HashSet<String> {
    env.sim
        .store_log_entries()
        .into_iter()
        .filter_map(|e| e.user_id)
        .collect()
}

fn journal_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
        .count()
}

#[tokio::test]
async fn entries_reach_the_log_service_in_the_storelog_shape() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (journal, delivery) = open_journal(&env, dir.path(), 100);
    let released = access(
        "SE2321000016-E001",
        &[
            ("SE2321000016-VG01", Some("SE2321000016-VE01")),
            ("SE2321000016-VG02", None),
        ],
    );
    let nothing_released = access("SE2321000016-E002", &[]);
    journal
        .record(&[released, nothing_released], Some("voo"))
        .await
        .expect("durable");
    eventually("delivery", || async {
        env.sim.store_log_entries().len() == 2
    })
    .await;
    eventually("the depth to drop", || async { journal.depth() == 0 }).await;
    assert_eq!(journal.delivery_lag(), Duration::ZERO);

    let mut entries = env.sim.store_log_entries();
    entries.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    let e = &entries[0];
    assert!(
        uuid_like(e.log_id.as_deref().unwrap_or("")),
        "{:?}",
        e.log_id
    );
    assert_eq!(e.system_id.as_deref(), Some("SE2321000016-RTP1"));
    assert_eq!(e.activity_type.as_deref(), Some("Läsa"));
    assert_eq!(e.purpose.as_deref(), Some("Vård och behandling"));
    let start = e.start_date.as_deref().unwrap_or("");
    assert!(
        start.len() == 19 && start.as_bytes()[10] == b'T',
        "StartDate {start:?}"
    );
    assert_eq!(e.user_care_provider.as_deref(), Some(ACTOR_VG));
    assert_eq!(e.user_care_unit.as_deref(), Some("SE2321000016-VE10"));
    assert_eq!(e.resources.len(), 2);
    assert_eq!(e.resources[0].resource_type.as_deref(), Some("voo"));
    assert_eq!(e.resources[0].patient_id.as_deref(), Some(ids::PATIENT));
    assert_eq!(
        e.resources[0].care_provider.as_deref(),
        Some("SE2321000016-VG01")
    );
    assert_eq!(
        e.resources[0].care_unit.as_deref(),
        Some("SE2321000016-VE01")
    );
    assert_eq!(e.resources[1].care_unit, None);
    // No records released: the user's own care provider and unit own the resource.
    let own = &entries[1].resources;
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].care_provider.as_deref(), Some(ACTOR_VG));
    assert_eq!(own[0].care_unit.as_deref(), Some("SE2321000016-VE10"));

    let calls = env.calls_to(STORE_LOG_NS);
    assert!(calls
        .iter()
        .all(|c| c.logical_address.as_deref() == Some(ACTOR_VG)));
    assert_eq!(calls.len(), 1, "one batch, one call");
    stop(journal, delivery).await;
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.bytes().filter(|b| *b == b'-').count() == 4
}

#[tokio::test]
async fn appended_entries_survive_a_restart() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The log service is down: nothing is delivered, the journal holds everything.
    env.sim
        .set_producer_fault("log-service", FaultMode::Http503);
    let (journal, delivery) = open_journal(&env, dir.path(), 10);
    for i in 0..25 {
        journal
            .record(&[access(&format!("SE2321000016-E{i:03}"), &[])], None)
            .await
            .expect("durable");
    }
    assert_eq!(journal.depth(), 25);
    stop(journal, delivery).await;

    // Read back after reopening: all 25 are still there, and go out once the service is up.
    env.sim.set_producer_fault("log-service", FaultMode::None);
    let (journal, delivery) = open_journal(&env, dir.path(), 10);
    assert_eq!(journal.depth(), 25);
    eventually("all 25 delivered", || async {
        stored_users(&env).len() == 25
    })
    .await;
    eventually("the depth to drop", || async { journal.depth() == 0 }).await;
    let stored = env.sim.store_log_entries();
    assert!(stored
        .iter()
        .all(|e| e.resources[0].resource_type.as_deref() == Some("Journalinformation")));
    eventually("delivered files to be removed", || async {
        journal_files(dir.path()) == 1
    })
    .await;
    stop(journal, delivery).await;
}

#[tokio::test]
async fn many_concurrent_appends_are_committed_together_and_all_delivered() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (journal, delivery) = open_journal(&env, dir.path(), 200);
    let appends: Vec<_> = (0..400)
        .map(|i| {
            let journal = journal.clone();
            tokio::spawn(async move {
                journal
                    .record(&[access(&format!("SE2321000016-C{i:04}"), &[])], None)
                    .await
            })
        })
        .collect();
    for append in appends {
        append.await.unwrap().expect("durable");
    }
    let stats = journal.stats();
    assert_eq!(stats.appended_total, 400);
    assert!(
        stats.commits_total < 400,
        "{} fsyncs for 400 appends: no group commit",
        stats.commits_total
    );
    eventually("all 400 delivered", || async {
        stored_users(&env).len() == 400
    })
    .await;
    eventually("the depth to drop", || async { journal.depth() == 0 }).await;
    let calls = env.calls_to(STORE_LOG_NS).len();
    assert!(calls <= 400 / 200 + 2, "{calls} StoreLog calls: batching");
    stop(journal, delivery).await;
}

#[tokio::test]
async fn a_torn_tail_is_ignored_and_the_entries_before_it_delivered() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    env.sim
        .set_producer_fault("log-service", FaultMode::Http503);
    let (journal, delivery) = open_journal(&env, dir.path(), 100);
    for i in 0..3 {
        journal
            .record(&[access(&format!("SE2321000016-T{i}"), &[])], None)
            .await
            .unwrap();
    }
    stop(journal, delivery).await;
    // A crash while the next entry was being written: half a line at the end.
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let complete = bytes.len();
    bytes.extend_from_within(..complete / 5);
    std::fs::write(&file, &bytes).unwrap();

    env.sim.set_producer_fault("log-service", FaultMode::None);
    let (journal, delivery) = open_journal(&env, dir.path(), 100);
    assert_eq!(journal.depth(), 3);
    journal
        .record(&[access("SE2321000016-T3", &[])], None)
        .await
        .unwrap();
    eventually("all 4 delivered", || async {
        stored_users(&env).len() == 4
    })
    .await;
    assert_eq!(journal.stats().skipped_lines_total, 0);
    assert_eq!(env.sim.store_log_entries().len(), 4);
    stop(journal, delivery).await;
}

#[tokio::test]
async fn delivery_retries_while_the_log_service_fails_then_succeeds() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    env.sim
        .set_producer_fault("log-service", FaultMode::Http503);
    let (journal, delivery) = open_journal(&env, dir.path(), 100);
    journal
        .record(&[access("SE2321000016-R001", &[])], None)
        .await
        .unwrap();
    eventually("several attempts", || async {
        env.calls_to(STORE_LOG_NS).len() >= 3
    })
    .await;
    assert!(env.sim.store_log_entries().is_empty());
    assert_eq!(journal.depth(), 1);
    assert!(journal.stats().delivery_failures_total >= 3);
    let error = journal.last_delivery_error().expect("an error is reported");
    assert!(error.contains("503"), "{error}");
    assert!(!error.contains(ids::PATIENT));
    eventually("a measurable lag", || async {
        journal.delivery_lag() >= Duration::from_millis(50)
    })
    .await;

    // A connection cut mid-answer and a SOAP fault are failures too.
    env.sim.set_producer_fault("log-service", FaultMode::Reset);
    let calls = env.calls_to(STORE_LOG_NS).len();
    eventually("an attempt against the resetting service", || async {
        env.calls_to(STORE_LOG_NS).len() > calls
    })
    .await;
    env.sim
        .set_producer_fault("log-service", FaultMode::SoapFault);
    let calls = env.calls_to(STORE_LOG_NS).len();
    eventually("an attempt against the faulting service", || async {
        env.calls_to(STORE_LOG_NS).len() > calls
    })
    .await;
    assert!(env.sim.store_log_entries().is_empty());

    env.sim.set_producer_fault("log-service", FaultMode::None);
    eventually("delivery", || async {
        !env.sim.store_log_entries().is_empty()
    })
    .await;
    eventually("the depth to drop", || async { journal.depth() == 0 }).await;
    assert_eq!(journal.last_delivery_error(), None);
    assert_eq!(stored_users(&env).len(), 1);
    stop(journal, delivery).await;
}

#[tokio::test]
async fn a_restart_in_the_middle_of_delivery_loses_nothing() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (journal, delivery) = open_journal(&env, dir.path(), 5);
    for i in 0..10 {
        journal
            .record(&[access(&format!("SE2321000016-M{i:02}"), &[])], None)
            .await
            .unwrap();
    }
    eventually("the first entries delivered", || async {
        journal.depth() == 0
    })
    .await;
    // The service goes down; more entries arrive; the proxy stops before they go out.
    env.sim
        .set_producer_fault("log-service", FaultMode::Http503);
    for i in 10..20 {
        journal
            .record(&[access(&format!("SE2321000016-M{i:02}"), &[])], None)
            .await
            .unwrap();
    }
    eventually("a failed attempt", || async {
        journal.stats().delivery_failures_total > 0
    })
    .await;
    stop(journal, delivery).await;

    env.sim.set_producer_fault("log-service", FaultMode::None);
    let (journal, delivery) = open_journal(&env, dir.path(), 5);
    assert_eq!(journal.depth(), 10, "only the undelivered ones are pending");
    eventually("all 20 delivered", || async {
        stored_users(&env).len() == 20
    })
    .await;
    eventually("the depth to drop", || async { journal.depth() == 0 }).await;
    // At-least-once: nothing lost; the first ten were confirmed, so not sent again.
    let stored = env.sim.store_log_entries();
    let ids: HashSet<_> = stored.iter().filter_map(|e| e.log_id.clone()).collect();
    assert_eq!(ids.len(), 20);
    assert_eq!(stored.len(), 20, "no entry sent twice here");
    stop(journal, delivery).await;
}
