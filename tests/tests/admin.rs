//! The admin listener: health and readiness, Prometheus metrics after real calls (parsed,
//! not grepped), the loaded policies before and after good and bad reloads (and which of
//! them run in dry-run), the reload trigger's report, the loopback rule, and no personal
//! data in any metric label.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use rtp_proxy::config::Config;
use rtp_proxy_tests::*;
use serde_json::Value;

const REQUEST: &str = "01_GetCareDocumentation_v2_request.xml";
/// The logical address in sample 01.
const SAMPLE_ADDRESS: &str = "<urn:LogicalAddress>VS-1</urn:LogicalAddress>";
const ADMIN: &str = "\n[admin]\nlisten = \"127.0.0.1:0\"\n";

async fn get_json(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = admin_request(addr, Method::GET, path).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

async fn post_reload(addr: SocketAddr) -> Value {
    let (status, body) = admin_request(addr, Method::POST, "/reload").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/reload: {e}: {body}"))
}

/// One sample of the Prometheus text format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text format (0.0.4): `name{label="value",...} value`, with
/// `\\`, `\"` and `\n` escapes in label values; `#` lines are comments. Panics on
/// anything else, so a malformed exposition fails the test.
fn parse_metrics(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(parse_sample)
        .collect()
}

fn parse_sample(line: &str) -> Sample {
    let chars: Vec<char> = line.chars().collect();
    let at = |i: usize| chars.get(i).copied();
    let mut i = 0;
    let mut name = String::new();
    while let Some(c) = at(i).filter(|c| *c != '{' && *c != ' ') {
        assert!(
            c.is_ascii_alphanumeric() || c == '_' || c == ':',
            "name in {line}"
        );
        name.push(c);
        i += 1;
    }
    let mut labels = BTreeMap::new();
    if at(i) == Some('{') {
        i += 1;
        loop {
            match at(i) {
                Some('}') => {
                    i += 1;
                    break;
                }
                Some(',') => {
                    i += 1;
                    continue;
                }
                None => panic!("labels not closed: {line}"),
                Some(_) => {}
            }
            let mut key = String::new();
            while let Some(c) = at(i).filter(|c| *c != '=') {
                key.push(c);
                i += 1;
            }
            assert_eq!(at(i + 1), Some('"'), "label value not quoted: {line}");
            i += 2;
            let mut value = String::new();
            loop {
                match at(i) {
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        value.push(match at(i + 1) {
                            Some('n') => '\n',
                            Some(c @ ('\\' | '"')) => c,
                            other => panic!("bad escape {other:?} in {line}"),
                        });
                        i += 2;
                    }
                    Some(c) => {
                        value.push(c);
                        i += 1;
                    }
                    None => panic!("label value not closed: {line}"),
                }
            }
            labels.insert(key, value);
        }
    }
    let value: String = chars[i..].iter().collect();
    let value = match value.trim() {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|e| panic!("{e}: {line}")),
    };
    Sample {
        name,
        labels,
        value,
    }
}

/// The value of the sample with exactly these labels, if present.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let wanted: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    samples
        .iter()
        .find(|s| s.name == name && s.labels == wanted)
        .map(|s| s.value)
}

async fn scrape(addr: SocketAddr) -> (String, Vec<Sample>) {
    let text = scrape_metrics(addr).await;
    let samples = parse_metrics(&text);
    (text, samples)
}

/// Two routes: calls to logical address REFUSE-1 meet the test policy rejecting; every
/// other call is relayed without policies.
fn refused_and_open_routes() -> String {
    format!(
        r#"
[[route]]
name = "refused"
logical_address = "REFUSE-1"

[[route.policy]]
file = "{wasm}"
settings = {{ behaviour = "reject", version = "v1" }}

[[route]]
name = "open"
"#,
        wasm = test_policy_wasm().display()
    )
}

fn refused_request() -> Vec<u8> {
    String::from_utf8(sample(REQUEST))
        .unwrap()
        .replace(
            SAMPLE_ADDRESS,
            "<urn:LogicalAddress>REFUSE-1</urn:LogicalAddress>",
        )
        .into_bytes()
}

/// Polls `check` every 20 ms until it holds or `limit` passes.
async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check().await
}

#[tokio::test]
async fn metrics_count_a_relayed_call_and_a_policy_reject() {
    let stack = Stack::start(&format!("{ADMIN}{}", refused_and_open_routes())).await;
    let admin_addr = stack.proxy.admin_addr.expect("admin listener");
    let tls = stack.pki.client(Some("consumer"));
    let https = stack.proxy.https_addr.unwrap();

    let relayed = post_tls(https, &tls, Call::soap(sample(REQUEST)))
        .await
        .unwrap();
    assert_eq!(relayed.status, StatusCode::OK, "{}", relayed.text());
    let refused = post_tls(https, &tls, Call::soap(refused_request()))
        .await
        .unwrap();
    refused.assert_fault_code("RTP199");

    // The relayed body has been read by the client; the proxy's side of the exchange
    // ends a moment later.
    assert!(
        eventually(Duration::from_secs(5), || async {
            let (_, samples) = scrape(admin_addr).await;
            value(&samples, "rtp_upstream_in_flight", &[("upstream", "ntjp")]) == Some(0.0)
        })
        .await,
        "the relayed call stays in flight"
    );
    let (text, samples) = scrape(admin_addr).await;
    let calls = |route, outcome, code| {
        value(
            &samples,
            "rtp_calls_total",
            &[
                ("route", route),
                ("contract", CD2),
                ("outcome", outcome),
                ("code", code),
            ],
        )
    };
    assert_eq!(calls("open", "relayed", ""), Some(1.0), "{text}");
    assert_eq!(calls("refused", "fault", "RTP199"), Some(1.0), "{text}");
    let total: f64 = samples
        .iter()
        .filter(|s| s.name == "rtp_calls_total")
        .map(|s| s.value)
        .sum();
    assert_eq!(total, 2.0, "exactly two calls counted: {text}");
    assert_eq!(
        value(
            &samples,
            "rtp_policy_verdicts_total",
            &[
                ("policy", "test-policy"),
                ("phase", "request"),
                ("verdict", "reject")
            ]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &samples,
            "rtp_policy_call_duration_seconds_count",
            &[("policy", "test-policy"), ("phase", "request")]
        ),
        Some(1.0)
    );
    for outcome in ["relayed", "fault"] {
        let route = if outcome == "fault" {
            "refused"
        } else {
            "open"
        };
        assert_eq!(
            value(
                &samples,
                "rtp_call_duration_seconds_count",
                &[("route", route), ("outcome", outcome)]
            ),
            Some(1.0),
            "{outcome}: {text}"
        );
    }
    // Only the relayed call reached the upstream.
    assert_eq!(
        value(
            &samples,
            "rtp_upstream_duration_seconds_count",
            &[("upstream", "ntjp")]
        ),
        Some(1.0)
    );
    let buckets: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == "rtp_call_duration_seconds_bucket" && s.labels["route"] == "open")
        .collect();
    assert!(buckets.len() > 5, "histogram buckets: {text}");
    assert_eq!(
        buckets
            .iter()
            .find(|s| s.labels["le"] == "+Inf")
            .map(|s| s.value),
        Some(1.0)
    );
    // Without [access_log] the journal gauges are present and zero.
    assert_eq!(
        value(&samples, "rtp_access_log_journal_depth", &[]),
        Some(0.0)
    );
    assert!(text.contains("# TYPE rtp_calls_total counter"), "{text}");
}

#[tokio::test]
async fn no_metric_label_carries_the_patient_id() {
    let stack = Stack::start(&format!(
        "{ADMIN}\n[[route]]\nname = \"npo\"\ncontract = \"urn:riv:clinicalprocess:*\"\n"
    ))
    .await;
    let admin_addr = stack.proxy.admin_addr.unwrap();
    let tls = stack.pki.client(Some("consumer"));
    let https = stack.proxy.https_addr.unwrap();
    let with_contract = |namespace: &str| {
        String::from_utf8(sample(REQUEST))
            .unwrap()
            .replace(CD2, namespace)
            .into_bytes()
    };
    // The patient's personnummer in the body, as every NPÖ call has it.
    let reply = post_tls(https, &tls, Call::soap(sample(REQUEST)))
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    // A contract namespace carrying the personnummer: routed (and faulted by NTjP) ...
    let routed = format!(
        "urn:riv:clinicalprocess:healthcond:description:Get{}Responder:2",
        ids::PATIENT
    );
    let reply = post_tls(https, &tls, Call::soap(with_contract(&routed)))
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    // ... and one no route matches (VP004), the personnummer in the logical address too.
    let unrouted = format!("urn:riv:{}:GetThingsResponder:1", ids::PATIENT);
    let body = String::from_utf8(with_contract(&unrouted))
        .unwrap()
        .replace("VS-1", ids::PATIENT);
    let reply = post_tls(https, &tls, Call::soap(body.into_bytes()))
        .await
        .unwrap();
    reply.assert_fault_code("VP004");

    let (text, samples) = scrape(admin_addr).await;
    for sample in &samples {
        for (key, label) in &sample.labels {
            assert!(
                !label.contains(ids::PATIENT) && !label.contains("121212"),
                "label {key}={label:?} of {} carries the patient id",
                sample.name
            );
        }
    }
    assert!(!text.contains(ids::PATIENT), "{text}");
    // The two hostile contracts were counted, as `other`.
    let others: f64 = samples
        .iter()
        .filter(|s| s.name == "rtp_calls_total" && s.labels["contract"] == "other")
        .map(|s| s.value)
        .sum();
    assert_eq!(others, 2.0, "{text}");
    assert_eq!(
        value(
            &samples,
            "rtp_calls_total",
            &[
                ("route", "none"),
                ("contract", "other"),
                ("outcome", "fault"),
                ("code", "VP004")
            ]
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn policies_and_reload_show_a_good_reload_and_a_bad_one() {
    let (a, b) = test_policy_builds();
    let pki = Pki::generate();
    let sim = start_sim(&sim_toml(&pki, "")).await;
    let url = format!("https://127.0.0.1:{}", sim.https_addr().unwrap().port());
    let policy_file = pki.dir.path().join("policy.wasm");
    std::fs::copy(&a, &policy_file).unwrap();
    let route = format!(
        "{ADMIN}\n[[route]]\nname = \"reloading\"\n\n[[route.policy]]\nfile = \"{}\"\nsettings = {{ behaviour = \"allow\", version = \"admin-test\" }}\n",
        policy_file.display()
    );
    // No file watch: the reloads happen when the test asks for them, so the reports are
    // deterministic.
    let config_text = proxy_toml(&pki, &url, &route)
        .replace("deadline_ms = 50", "deadline_ms = 50\nwatch = false");
    let config_file = pki.dir.path().join("rtp-proxy.toml");
    std::fs::write(&config_file, &config_text).unwrap();
    let config = Config::load(&config_file).unwrap();
    let proxy = rtp_proxy::server::start(&config).await.unwrap();
    let addr = proxy.admin_addr.unwrap();

    let before = get_json(addr, "/policies").await;
    assert_eq!(
        before["config_file"].as_str(),
        Some(config_file.display().to_string().as_str())
    );
    assert_eq!(before["config_reload_count"], 0);
    assert_eq!(before["last_config_error"], Value::Null);
    let policy = &before["policies"][0];
    assert_eq!(policy["route"], "reloading");
    assert_eq!(policy["position"], 0);
    assert_eq!(policy["name"], "test-policy");
    assert_eq!(policy["version"], "a");
    assert_eq!(policy["file"], policy_file.display().to_string());
    assert_eq!(policy["reload_count"], 0);
    assert_eq!(policy["last_error"], Value::Null);
    assert_eq!(policy["consecutive_failures"], 0);
    let hash_a = policy["content_hash"].as_str().unwrap().to_owned();
    assert_eq!(hash_a.len(), 64);
    let loaded_a = policy["loaded_at"].as_str().unwrap().to_owned();
    assert!(
        loaded_a.ends_with('Z') && loaded_a.contains('T'),
        "RFC 3339: {loaded_a}"
    );

    // Nothing changed: the report says so.
    let report = post_reload(addr).await;
    assert_eq!(report["config"]["outcome"], "unchanged", "{report}");
    assert_eq!(report["policies"][0]["outcome"], "unchanged", "{report}");

    // A new build: reloaded, with a new hash and version.
    std::fs::copy(&b, &policy_file).unwrap();
    let report = post_reload(addr).await;
    let entry = &report["policies"][0];
    assert_eq!(entry["outcome"], "reloaded", "{report}");
    assert_eq!(entry["route"], "reloading");
    assert_eq!(entry["from"].as_str(), Some(hash_a.as_str()));
    let hash_b = entry["to"].as_str().unwrap().to_owned();
    assert_ne!(hash_a, hash_b);
    let after = get_json(addr, "/policies").await;
    let policy = &after["policies"][0];
    assert_eq!(policy["version"], "b");
    assert_eq!(policy["content_hash"].as_str(), Some(hash_b.as_str()));
    assert_eq!(policy["reload_count"], 1);
    assert_eq!(policy["last_error"], Value::Null);
    assert!(policy["loaded_at"].as_str().unwrap() >= loaded_a.as_str());

    // A corrupt file: the running version stays and the error names the file.
    std::fs::write(&policy_file, b"\0asm but not a component").unwrap();
    let report = post_reload(addr).await;
    let entry = &report["policies"][0];
    assert_eq!(entry["outcome"], "failed", "{report}");
    assert!(
        entry["error"].as_str().unwrap().contains("policy.wasm"),
        "{report}"
    );
    let broken = get_json(addr, "/policies").await;
    let policy = &broken["policies"][0];
    assert_eq!(policy["version"], "b", "the running version stays");
    assert_eq!(policy["content_hash"].as_str(), Some(hash_b.as_str()));
    assert_eq!(policy["reload_count"], 1);
    let error = policy["last_error"].as_str().expect("last_error set");
    assert!(
        error.contains(&policy_file.display().to_string()),
        "{error}"
    );

    // A broken config: FILE:LINE in the report and in /policies; the running one stays.
    std::fs::write(
        &config_file,
        config_text.replace("[proxy]", "[proxy]\nno_such_key = 1"),
    )
    .unwrap();
    let report = post_reload(addr).await;
    assert_eq!(report["config"]["outcome"], "failed", "{report}");
    let config_error = report["config"]["error"].as_str().unwrap();
    assert!(
        config_error.starts_with(&format!("{}:", config_file.display())),
        "{config_error}"
    );
    assert!(config_error.contains("no_such_key"), "{config_error}");
    assert_eq!(report["policies"][0]["outcome"], "failed", "{report}");
    let state = get_json(addr, "/policies").await;
    assert_eq!(state["last_config_error"].as_str(), Some(config_error));
    assert_eq!(state["config_reload_count"], 0);
    assert_eq!(state["policies"][0]["version"], "b");

    let (text, samples) = scrape(addr).await;
    let reloads = |outcome| {
        value(
            &samples,
            "rtp_policy_reloads_total",
            &[
                ("route", "reloading"),
                ("policy", "test-policy"),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(reloads("success"), Some(1.0), "{text}");
    // The corrupt policy file is still there at the config check, which tries it again.
    assert_eq!(reloads("failure"), Some(2.0), "{text}");
    assert_eq!(
        value(
            &samples,
            "rtp_config_reloads_total",
            &[("outcome", "failure")]
        ),
        Some(1.0),
        "{text}"
    );

    // Both rolled back to what runs: the errors are gone, nothing is reloaded.
    std::fs::write(&config_file, &config_text).unwrap();
    std::fs::copy(&b, &policy_file).unwrap();
    let report = post_reload(addr).await;
    assert_eq!(report["config"]["outcome"], "unchanged", "{report}");
    assert_eq!(report["policies"][0]["outcome"], "unchanged", "{report}");
    let state = get_json(addr, "/policies").await;
    assert_eq!(state["last_config_error"], Value::Null, "{state}");
    assert_eq!(state["policies"][0]["last_error"], Value::Null, "{state}");
    assert_eq!(state["policies"][0]["reload_count"], 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn health_readiness_and_http_errors() {
    let stack = Stack::start(&format!(
        "{ADMIN}{}",
        route_with_test_policy("allow", "fail-closed")
    ))
    .await;
    let addr = stack.proxy.admin_addr.unwrap();
    assert_eq!(
        admin_request(addr, Method::GET, "/healthz").await,
        (StatusCode::OK, "ok\n".to_owned())
    );
    let (status, body) = admin_request(addr, Method::GET, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["ready"], true);
    assert_eq!(
        admin_request(addr, Method::GET, "/nope").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        admin_request(addr, Method::POST, "/metrics").await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        admin_request(addr, Method::GET, "/reload").await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        admin_request(addr, Method::DELETE, "/policies").await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );

    // The default upstream does not accept connections: not ready, and why.
    let pki = Pki::generate();
    let closed = closed_port().await;
    let text = proxy_toml(
        &pki,
        &format!("https://{closed}"),
        &format!("{ADMIN}\n[[route]]\nname = \"all\"\n"),
    );
    let proxy = start_proxy(&text).await;
    let addr = proxy.admin_addr.unwrap();
    assert_eq!(
        admin_request(addr, Method::GET, "/healthz").await.0,
        StatusCode::OK
    );
    let (status, body) = admin_request(addr, Method::GET, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["ready"], false);
    let reason = answer["reasons"][0].as_str().unwrap();
    assert!(
        reason.contains("default upstream ntjp") && reason.contains(&closed.to_string()),
        "{reason}"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_crash_looping_policy_is_counted_and_makes_the_proxy_unready() {
    let stack = Stack::start(&format!(
        "{ADMIN}{}",
        route_with_test_policy("trap", "fail-closed")
    ))
    .await;
    let addr = stack.proxy.admin_addr.unwrap();
    let tls = stack.pki.client(Some("consumer"));
    let https = stack.proxy.https_addr.unwrap();
    // crash_loop_limit (5) traps in a row, then the policy is not run at all.
    for _ in 0..6 {
        let reply = post_tls(https, &tls, Call::soap(sample(REQUEST)))
            .await
            .unwrap();
        reply.assert_fault_code("RTP190");
    }
    let (text, samples) = scrape(addr).await;
    let failures = |reason| {
        value(
            &samples,
            "rtp_policy_failures_total",
            &[
                ("policy", "test-policy"),
                ("phase", "request"),
                ("reason", reason),
            ],
        )
    };
    assert_eq!(failures("trap"), Some(5.0), "{text}");
    assert_eq!(failures("crash_loop"), Some(1.0), "{text}");
    assert_eq!(
        value(
            &samples,
            "rtp_calls_total",
            &[
                ("route", "with-policy"),
                ("contract", CD2),
                ("outcome", "fault"),
                ("code", "RTP190")
            ]
        ),
        Some(6.0),
        "{text}"
    );

    let (status, body) = admin_request(addr, Method::GET, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("crash-looping"), "{body}");
    let policies = get_json(addr, "/policies").await;
    assert_eq!(policies["policies"][0]["crash_looping"], true);
    assert_eq!(policies["policies"][0]["consecutive_failures"], 5);
}

#[tokio::test]
async fn a_non_loopback_admin_address_is_refused_unless_allowed() {
    let pki = Pki::generate();
    let text = proxy_toml(
        &pki,
        "http://127.0.0.1:9",
        "\n[admin]\nlisten = \"0.0.0.0:9901\"\n\n[[route]]\nname = \"all\"\n",
    );
    let line = text
        .lines()
        .position(|l| l.starts_with("listen = \"0.0.0.0"))
        .unwrap()
        + 1;
    let err = Config::parse(&text, Path::new("test.toml"), Path::new("."))
        .expect_err("a non-loopback admin address is refused");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("test.toml:{line}: key `admin.listen`")),
        "{message}"
    );
    assert!(message.contains("allow_non_loopback = true"), "{message}");

    let allowed = text.replace(
        "listen = \"0.0.0.0:9901\"",
        "listen = \"0.0.0.0:9901\"\nallow_non_loopback = true",
    );
    let config = Config::parse(&allowed, Path::new("test.toml"), Path::new(".")).unwrap();
    assert_eq!(config.admin.listen, Some("0.0.0.0:9901".parse().unwrap()));
    assert!(config.admin.allow_non_loopback);

    // Without [admin] there is no admin listener.
    let proxy = start_proxy(&proxy_toml(
        &pki,
        "http://127.0.0.1:9",
        "\n[[route]]\nname = \"all\"\n",
    ))
    .await;
    assert_eq!(proxy.admin_addr, None);
    proxy.shutdown().await;
}

#[tokio::test]
async fn policies_show_which_entries_run_in_dry_run_and_follow_a_config_reload() {
    let pki = Pki::generate();
    let sim = start_sim(&sim_toml(&pki, "")).await;
    let url = format!("https://127.0.0.1:{}", sim.https_addr().unwrap().port());
    // Two entries, as config/README.md suggests for trying a new version: the one in
    // force lets calls through, the dry-run one would refuse them.
    let enforced = pki.dir.path().join("enforced.wasm");
    let trial = pki.dir.path().join("trial.wasm");
    std::fs::copy(test_policy_wasm(), &enforced).unwrap();
    std::fs::copy(test_policy_wasm(), &trial).unwrap();
    let route = |trial_dry_run: bool| {
        format!(
            r#"{ADMIN}
[[route]]
name = "trying"

[[route.policy]]
file = "{enforced}"
settings = {{ behaviour = "allow", version = "v1" }}

[[route.policy]]
file = "{trial}"
dry_run = {trial_dry_run}
settings = {{ behaviour = "reject", version = "v2" }}
"#,
            enforced = enforced.display(),
            trial = trial.display(),
        )
    };
    // No file watch: the config reload happens when the test asks for it.
    let config_text = |trial_dry_run| {
        proxy_toml(&pki, &url, &route(trial_dry_run))
            .replace("deadline_ms = 50", "deadline_ms = 50\nwatch = false")
    };
    let config_file = pki.dir.path().join("rtp-proxy.toml");
    std::fs::write(&config_file, config_text(true)).unwrap();
    let proxy = rtp_proxy::server::start(&Config::load(&config_file).unwrap())
        .await
        .unwrap();
    let addr = proxy.admin_addr.unwrap();
    let tls = pki.client(Some("consumer"));
    let https = proxy.https_addr.unwrap();

    let state = get_json(addr, "/policies").await;
    let policies = state["policies"].as_array().expect("policies");
    assert_eq!(policies.len(), 2, "{state}");
    let dry_run = |entry: &Value| {
        entry["dry_run"]
            .as_bool()
            .unwrap_or_else(|| panic!("dry_run is a bool: {entry}"))
    };
    assert_eq!(policies[0]["file"], enforced.display().to_string());
    assert!(!dry_run(&policies[0]), "{state}");
    assert_eq!(policies[1]["file"], trial.display().to_string());
    assert!(dry_run(&policies[1]), "{state}");
    // What /policies says is what runs: the dry-run reject refuses nothing.
    let reply = post_tls(https, &tls, Call::soap(sample(REQUEST)))
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());

    // The trial is put in force by the config.
    std::fs::write(&config_file, config_text(false)).unwrap();
    let report = post_reload(addr).await;
    assert_eq!(report["config"]["outcome"], "reloaded", "{report}");
    let state = get_json(addr, "/policies").await;
    let policies = state["policies"].as_array().expect("policies");
    assert_eq!(policies.len(), 2, "{state}");
    assert!(!dry_run(&policies[0]), "{state}");
    assert!(!dry_run(&policies[1]), "now enforced: {state}");
    let reply = post_tls(https, &tls, Call::soap(sample(REQUEST)))
        .await
        .unwrap();
    reply.assert_fault_code("RTP199");
    proxy.shutdown().await;
}
