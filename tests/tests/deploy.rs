//! The deployment recipes in examples/deploy/ hold together: the example config passes
//! what `rtp-proxy check` checks (every key, the certificates, and every policy loaded
//! and initialised with its settings) once its files are in place; the Kubernetes
//! manifest mounts every file the config names, probes and scrapes the admin port the
//! config opens, and waits longer than the config's drain; the systemd unit runs the
//! config, waits longer than the drain, and keeps its sandbox (`systemd-analyze verify`
//! where the tool exists); the alert rules name only metrics the proxy exports and
//! documents (`promtool check rules` where the tool exists).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rtp_proxy::config::Config;
use rtp_proxy_tests::*;
use yaml_rust2::{Yaml, YamlLoader};

const POLICIES: [&str; 4] = ["osc-aob", "caller-filter", "look-back", "block-check"];
/// Where kubernetes.yaml mounts the config.
const POD_CONFIG: &str = "/etc/rtp-proxy/config/rtp-proxy.toml";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/deploy")
}

fn read(name: &str) -> String {
    let path = deploy_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The example config as the proxy reads it, with every absolute path under `root`.
fn example_config_under(root: &Path) -> String {
    let root = root.display();
    read("rtp-proxy.toml")
        .replace("\"/etc/rtp-proxy/", &format!("\"{root}/etc/rtp-proxy/"))
        .replace(
            "\"/var/lib/rtp-proxy/",
            &format!("\"{root}/var/lib/rtp-proxy/"),
        )
}

/// The example config parsed in place (no file checks): its keys and values.
fn example_config() -> Config {
    let root = tempfile::tempdir().unwrap();
    let text = example_config_under(root.path());
    // Parsing checks that the named files exist: make empty ones for this look.
    for line in text.lines() {
        if let Some(path) = quoted_path_under(line, root.path()) {
            if path.extension().is_some() {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, b"").unwrap();
            }
        }
    }
    let mut config = Config::parse(&text, Path::new("rtp-proxy.toml"), root.path())
        .unwrap_or_else(|e| panic!("{e}"));
    // Report paths as the pod sees them.
    let strip = |p: &Path| Path::new("/").join(p.strip_prefix(root.path()).unwrap());
    for route in &mut config.routes {
        for policy in &mut route.policies {
            policy.file = strip(&policy.file);
        }
    }
    if let Some(https) = &mut config.https {
        https.cert = strip(&https.cert);
        https.key = strip(&https.key);
        https.client_ca = strip(&https.client_ca);
    }
    for upstream in &mut config.upstreams {
        for path in [
            &mut upstream.client_cert,
            &mut upstream.client_key,
            &mut upstream.ca,
        ]
        .into_iter()
        .flatten()
        {
            *path = strip(path);
        }
    }
    if let Some(log) = &mut config.access_log {
        log.dir = strip(&log.dir);
    }
    if let Some(cache) = &mut config.policies.cache_dir {
        *cache = strip(cache);
    }
    config
}

fn quoted_path_under(line: &str, root: &Path) -> Option<PathBuf> {
    let start = line.find(&format!("\"{}", root.display()))? + 1;
    let end = start + line[start..].find('"')?;
    Some(PathBuf::from(&line[start..end]))
}

/// Every file the config reads, as the pod sees it.
fn files_read(config: &Config) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(https) = &config.https {
        files.extend([
            https.cert.clone(),
            https.key.clone(),
            https.client_ca.clone(),
        ]);
    }
    for upstream in &config.upstreams {
        files.extend(
            [&upstream.client_cert, &upstream.client_key, &upstream.ca]
                .into_iter()
                .flatten()
                .cloned(),
        );
    }
    for route in &config.routes {
        files.extend(route.policies.iter().map(|p| p.file.clone()));
    }
    files
}

/// Directories the config writes to.
fn dirs_written(config: &Config) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    dirs.extend(config.access_log.as_ref().map(|l| l.dir.clone()));
    dirs.extend(config.policies.cache_dir.clone());
    dirs
}

#[tokio::test]
async fn the_example_config_passes_check_with_its_certificates_and_policies() {
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().join("etc/rtp-proxy");
    let tls = etc.join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    let pki = Pki::generate();
    for (from, to) in [
        ("proxy.crt", "tls.crt"),
        ("proxy.key", "tls.key"),
        ("ca.crt", "client-ca.crt"),
        ("ca.crt", "ntjp-ca.crt"),
    ] {
        std::fs::copy(pki.path(from), tls.join(to)).unwrap();
    }
    std::fs::create_dir_all(etc.join("policies")).unwrap();
    for policy in POLICIES {
        std::fs::copy(
            shipped_policy_wasm(policy),
            etc.join("policies").join(format!("{policy}.wasm")),
        )
        .unwrap();
    }
    let text = example_config_under(root.path());
    assert!(
        !text.contains("\"/etc/") && !text.contains("\"/var/"),
        "every absolute path of the example is under /etc/rtp-proxy or /var/lib/rtp-proxy"
    );
    let file = etc.join("config/rtp-proxy.toml");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, text).unwrap();

    // `rtp-proxy check`: the file validated, every certificate and policy loaded (each
    // policy compiled and initialised with its settings), the listener's TLS built.
    let now = jiff::Timestamp::now().as_second();
    let report = rtp_proxy::check::check(&file, now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.policies, POLICIES.len());
    assert!(report.warnings.is_empty(), "{report}");
    let config = Config::load(&file).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.https.is_some(), "a mutual-TLS listener");
    assert!(config.http.is_none(), "consumers use mutual TLS only");
    assert!(config.access_log.is_some() && config.blocks.is_some());
}

/// A YAML mapping's value, or a panic naming the key.
fn at<'a>(node: &'a Yaml, path: &str) -> &'a Yaml {
    path.split('.').fold(node, |node, key| {
        let next = &node[key];
        assert!(!next.is_badvalue(), "no `{path}` (at `{key}`)");
        next
    })
}

fn seq(node: &Yaml) -> &Vec<Yaml> {
    node.as_vec().expect("a sequence")
}

fn text(node: &Yaml) -> &str {
    node.as_str().expect("a string")
}

fn int(node: &Yaml) -> i64 {
    node.as_i64().expect("an integer")
}

#[test]
fn the_kubernetes_manifest_mounts_probes_and_drains_what_the_config_says() {
    let config = example_config();
    let docs = YamlLoader::load_from_str(&read("kubernetes.yaml")).expect("valid YAML");
    let kinds: Vec<&str> = docs.iter().map(|d| text(at(d, "kind"))).collect();
    for kind in [
        "ServiceAccount",
        "StatefulSet",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ] {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }
    let of = |kind: &str| docs.iter().find(|d| text(at(d, "kind")) == kind).unwrap();
    for doc in &docs {
        assert!(
            !text(at(doc, "apiVersion")).is_empty() && !text(at(doc, "metadata.name")).is_empty()
        );
    }

    let set = of("StatefulSet");
    assert_eq!(int(at(set, "spec.replicas")), 3);
    let labels = at(set, "spec.template.metadata.labels");
    assert_eq!(at(set, "spec.selector.matchLabels"), labels);
    let pod = at(set, "spec.template.spec");
    let containers = seq(at(pod, "containers"));
    assert_eq!(containers.len(), 1);
    let container = &containers[0];

    // It runs the config where the config ConfigMap is mounted, as a directory.
    let args: Vec<&str> = seq(at(container, "args")).iter().map(text).collect();
    let run = args.iter().position(|a| *a == "run").expect("`run`");
    assert_eq!(args[run + 1..], ["--config", POD_CONFIG]);
    let mounts = seq(at(container, "volumeMounts"));
    for mount in mounts {
        assert!(
            mount["subPath"].is_badvalue() && mount["subPathExpr"].is_badvalue(),
            "a subPath mount never sees a ConfigMap update: {mount:?}"
        );
    }
    let volumes = seq(at(pod, "volumes"));
    let claims: Vec<&str> = seq(at(set, "spec.volumeClaimTemplates"))
        .iter()
        .map(|c| text(at(c, "metadata.name")))
        .collect();
    // (mount path, read-only, the volume behind it)
    let mounted: Vec<(&str, bool, &Yaml)> = mounts
        .iter()
        .map(|m| {
            let name = text(at(m, "name"));
            let volume = volumes
                .iter()
                .find(|v| text(at(v, "name")) == name)
                .unwrap_or_else(|| {
                    assert!(claims.contains(&name), "no volume {name}");
                    &Yaml::Null
                });
            let read_only = m["readOnly"].as_bool().unwrap_or(false);
            (text(at(m, "mountPath")), read_only, volume)
        })
        .collect();
    let mount_of = |path: &Path| {
        mounted
            .iter()
            .filter(|(dir, _, _)| path.starts_with(dir))
            .max_by_key(|(dir, _, _)| dir.len())
            .unwrap_or_else(|| panic!("{} is on no volume", path.display()))
    };
    let (_, read_only, volume) = mount_of(Path::new(POD_CONFIG));
    assert!(*read_only);
    assert_eq!(
        text(at(volume, "configMap.name")),
        "rtp-proxy-config",
        "the config comes from a ConfigMap"
    );
    // Every file it reads is on a read-only volume; each policy from its own ConfigMap.
    let files = files_read(&config);
    assert!(files.len() > POLICIES.len());
    for file in &files {
        let (_, read_only, _) = mount_of(file);
        assert!(*read_only, "{} is on a writable volume", file.display());
    }
    let policies = volumes
        .iter()
        .find(|v| text(at(v, "name")) == "policies")
        .expect("a policies volume");
    let projected: BTreeSet<String> = seq(at(policies, "projected.sources"))
        .iter()
        .map(|s| text(at(s, "configMap.name")).to_owned())
        .collect();
    let named: BTreeSet<String> = config
        .routes
        .iter()
        .flat_map(|r| &r.policies)
        .map(|p| {
            format!(
                "rtp-policy-{}",
                p.file.file_stem().unwrap().to_string_lossy()
            )
        })
        .collect();
    assert_eq!(
        projected, named,
        "one ConfigMap per policy the config names"
    );
    // The journal and the compile cache are on the replica's own claim.
    for dir in dirs_written(&config) {
        let (path, read_only, volume) = mount_of(&dir);
        assert!(
            !read_only && volume.is_null(),
            "{} is not on the claim",
            dir.display()
        );
        assert!(claims.iter().any(|c| mounts
            .iter()
            .any(|m| text(at(m, "name")) == *c && text(at(m, "mountPath")) == *path)));
    }

    // The ports the config listens on, probes and scraping on the admin port.
    let ports = seq(at(container, "ports"));
    let port = |name: &str| {
        int(at(
            ports
                .iter()
                .find(|p| text(at(p, "name")) == name)
                .unwrap_or_else(|| panic!("no port {name}")),
            "containerPort",
        ))
    };
    let https = config.https.as_ref().unwrap().listen;
    let admin = config.admin.listen.expect("an admin listener");
    assert!(https.ip().is_unspecified() && admin.ip().is_unspecified());
    assert!(config.admin.allow_non_loopback);
    assert_eq!(port("https"), i64::from(https.port()));
    assert_eq!(port("admin"), i64::from(admin.port()));
    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        assert_eq!(text(at(container, &format!("{probe}.httpGet.path"))), path);
        assert_eq!(
            text(at(container, &format!("{probe}.httpGet.port"))),
            "admin"
        );
    }
    let annotations = at(set, "spec.template.metadata.annotations");
    let annotation = |key: &str| annotations[key].as_str().unwrap_or_default().to_owned();
    assert_eq!(annotation("prometheus.io/scrape"), "true");
    assert_eq!(annotation("prometheus.io/path"), "/metrics");
    assert_eq!(annotation("prometheus.io/port"), admin.port().to_string());
    // Only the monitoring namespace reaches the admin port.
    let rules = seq(at(of("NetworkPolicy"), "spec.ingress"));
    for rule in rules {
        let ports: Vec<i64> = seq(at(rule, "ports"))
            .iter()
            .map(|p| int(at(p, "port")))
            .collect();
        if ports.contains(&i64::from(admin.port())) {
            assert!(!rule["from"].is_badvalue(), "the admin port is open to all");
        }
    }

    // The kubelet waits for the preStop pause and the whole drain before it kills.
    let pause = int(at(container, "lifecycle.preStop.sleep.seconds"));
    let grace = int(at(pod, "terminationGracePeriodSeconds"));
    let drain_ms = i64::try_from(config.proxy.shutdown_grace_ms).unwrap();
    assert!(
        grace * 1000 >= pause * 1000 + drain_ms + 5000,
        "terminationGracePeriodSeconds {grace} does not cover a {pause} s pause and a {drain_ms} ms drain"
    );
    // Worker threads match the CPUs the replica is given.
    let cpus: usize = text(at(container, "resources.requests.cpu"))
        .parse()
        .unwrap();
    assert_eq!(config.proxy.worker_threads, cpus);

    // Hardening.
    assert_eq!(
        at(pod, "securityContext.runAsNonRoot").as_bool(),
        Some(true)
    );
    assert_eq!(
        at(pod, "automountServiceAccountToken").as_bool(),
        Some(false)
    );
    let security = at(container, "securityContext");
    assert_eq!(at(security, "readOnlyRootFilesystem").as_bool(), Some(true));
    assert_eq!(
        at(security, "allowPrivilegeEscalation").as_bool(),
        Some(false)
    );
    assert_eq!(
        seq(at(security, "capabilities.drop"))
            .iter()
            .map(text)
            .collect::<Vec<_>>(),
        ["ALL"]
    );

    // The Service passes TCP to the mutual-TLS port; the budget covers the replicas.
    let service = docs
        .iter()
        .find(|d| text(at(d, "kind")) == "Service" && d["spec"]["clusterIP"].is_badvalue())
        .expect("the consumers' Service");
    assert_eq!(at(service, "spec.selector"), labels);
    let service_ports = seq(at(service, "spec.ports"));
    assert!(service_ports
        .iter()
        .all(|p| text(at(p, "protocol")) == "TCP" && text(at(p, "targetPort")) == "https"));
    assert_eq!(
        at(of("PodDisruptionBudget"), "spec.selector.matchLabels"),
        labels
    );
}

/// The unit's `[Service]` settings, in order (a key may repeat).
fn unit_settings(unit: &str) -> Vec<(String, String)> {
    let mut section = "";
    let mut settings = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = line;
            continue;
        }
        let (key, value) = line.split_once('=').expect("KEY=VALUE");
        if section == "[Service]" {
            settings.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    settings
}

#[test]
fn the_systemd_unit_runs_the_config_sandboxed_and_waits_for_the_drain() {
    let config = example_config();
    let unit = read("rtp-proxy.service");
    let settings = unit_settings(&unit);
    let get = |key: &str| {
        let values: Vec<&str> = settings
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect();
        values
    };
    let one = |key: &str| match get(key).as_slice() {
        [value] => value.to_string(),
        other => panic!("{key}: {other:?}"),
    };
    assert_eq!(
        one("ExecStart"),
        "/usr/local/bin/rtp-proxy run --config /etc/rtp-proxy/rtp-proxy.toml"
    );
    assert_eq!(one("Type"), "simple");
    assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(one("KillSignal"), "SIGTERM");
    let stop: u64 = one("TimeoutStopSec")
        .trim_end_matches('s')
        .parse()
        .expect("TimeoutStopSec in seconds");
    assert!(
        stop * 1000 > config.proxy.shutdown_grace_ms + 5000,
        "TimeoutStopSec {stop} s does not cover a {} ms drain",
        config.proxy.shutdown_grace_ms
    );
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("StateDirectory", "rtp-proxy"),
        ("ReadOnlyPaths", "/etc/rtp-proxy"),
        ("ReadWritePaths", "/var/lib/rtp-proxy"),
    ] {
        assert_eq!(one(key), value, "{key}");
    }
    assert!(get("SystemCallFilter").contains(&"@system-service"));
    assert!(!one("LimitNOFILE").is_empty());
    assert!(
        get("MemoryDenyWriteExecute").is_empty(),
        "wasmtime's JIT makes written pages executable: MemoryDenyWriteExecute stops every policy"
    );
    for dir in dirs_written(&config) {
        assert!(dir.starts_with("/var/lib/rtp-proxy"), "{}", dir.display());
    }
    for file in files_read(&config) {
        assert!(file.starts_with("/etc/rtp-proxy"), "{}", file.display());
    }

    // systemd's own check, where systemd is installed: no unknown key, no bad value.
    // It wants ExecStart's binary to exist, so point it at one that does.
    let Ok(output) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        eprintln!("systemd-analyze not installed: skipping `systemd-analyze verify`");
        return;
    };
    assert!(output.status.success());
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("rtp-proxy.service");
    let exe = std::env::current_exe().unwrap();
    std::fs::write(
        &copy,
        unit.replace(
            "/usr/local/bin/rtp-proxy run",
            &format!("{} run", exe.display()),
        ),
    )
    .unwrap();
    let verify = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        verify.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
}

/// The `rtp_*` metric names an expression refers to.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("rtp_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    names
}

#[test]
fn the_alert_rules_name_only_metrics_the_proxy_exports() {
    // A family without samples is not in a scrape: the names registered are read from
    // the source instead (each is a string literal given to `registered`).
    let registry = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../proxy/src/metrics.rs"),
    )
    .expect("metrics.rs");
    // A scraped name is the registered one plus the type's suffix (`_total`; `_bucket`,
    // `_sum`, `_count`) and, for one registered with a unit, `_seconds`.
    let family = |name: &str| {
        let base = ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        let registered = |name: &str| registry.contains(&format!("\"{name}\""));
        registered(base) || base.strip_suffix("_seconds").is_some_and(registered)
    };
    let docs = read("../../config/README.md");

    let rules = YamlLoader::load_from_str(&read("alerts.yaml")).expect("alerts.yaml is YAML");
    let mut alerts = BTreeSet::new();
    for group in seq(&rules[0]["groups"]) {
        for rule in seq(&group["rules"]) {
            let alert = text(&rule["alert"]);
            assert!(alerts.insert(alert.to_owned()), "{alert} twice");
            assert!(
                ["warning", "critical"].contains(&text(at(rule, "labels.severity"))),
                "{alert}: severity"
            );
            assert!(!text(at(rule, "annotations.summary")).is_empty());
            let names = metric_names(text(&rule["expr"]));
            assert!(!names.is_empty(), "{alert} uses no rtp_ metric");
            for name in names {
                assert!(family(&name), "{alert}: {name} is not exported");
                assert!(
                    docs.contains(&format!("`{name}`")),
                    "{alert}: {name} is not documented"
                );
            }
        }
    }
    assert!(alerts.len() >= 10, "{alerts:?}");

    // The expressions are PromQL Prometheus accepts, where its checker is installed
    // (Debian's `prometheus` package).
    let rules_file = deploy_dir().join("alerts.yaml");
    match std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules_file)
        .output()
    {
        Ok(output) => assert!(
            output.status.success(),
            "promtool check rules: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(_) => eprintln!("promtool not installed: skipping `promtool check rules`"),
    }
}
