//! `rtp-proxy demo`: the NTjP simulator and the proxy on loopback, with a generated PKI,
//! and a ready-to-paste `curl` call. The simulator runs as its own process (the
//! `ntjp-sim` binary built beside this one), as NTjP would; the proxy runs in this one.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

use crate::config::Config;
use crate::pki;
use crate::server;

/// The demo request the printed `curl` call sends.
pub const DEMO_REQUEST: &str = "examples/requests/GetCareDocumentation_v2.xml";

/// The accessing user the demo journal system asserts for the block check (headers the
/// block-check policy reads; the proxy does not forward them).
pub const DEMO_ACTOR: [(&str, &str); 3] = [
    ("x-rtp-actor-employee-hsaid", "SE2321000016-E001"),
    ("x-rtp-actor-careunit-hsaid", "SE2321000016-VE01"),
    ("x-rtp-actor-careprovider-hsaid", "SE2321000016-VG01"),
];

pub async fn run(config_path: &Path, sim_config: &Path) -> anyhow::Result<()> {
    let config_dir = config_path.parent().unwrap_or(Path::new("."));
    let pki_dir = config_dir.join("demo-pki");
    if !pki_dir.join("ca.crt").is_file() {
        pki::write_demo_pki(&pki_dir).context("generating the demo PKI")?;
        println!("generated a demo PKI in {}", pki_dir.display());
    }
    let config = Config::load(config_path)?;
    let missing: Vec<String> = config
        .routes
        .iter()
        .flat_map(|r| &r.policies)
        .map(|p| config.resolve(&p.file))
        .filter(|file| !file.is_file())
        .map(|file| file.display().to_string())
        .collect();
    if !missing.is_empty() {
        bail!(
            "the demo's policies are not built ({}); build them with: cargo build --release --target wasm32-wasip2 -p 'rtp-policy-*'",
            missing.join(", ")
        );
    }

    let mut sim = start_simulator(sim_config).await?;
    let proxy = match server::start(&config).await {
        Ok(proxy) => proxy,
        Err(e) => {
            stop_simulator(&mut sim).await;
            return Err(e).context("starting the proxy");
        }
    };
    print_instructions(&pki_dir, &config);

    let stopped = wait_for_stop_signal().await;
    println!("stopping the demo");
    proxy.shutdown().await;
    stop_simulator(&mut sim).await;
    stopped
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn wait_for_stop_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C"),
        _ = term.recv() => Ok(()),
    }
}

fn simulator_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the rtp-proxy executable")?;
    let sim = exe.with_file_name("ntjp-sim");
    if !sim.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release --workspace --bins`",
            sim.display()
        );
    }
    Ok(sim)
}

async fn start_simulator(sim_config: &Path) -> anyhow::Result<Child> {
    let binary = simulator_binary()?;
    let mut child = Command::new(&binary)
        .arg("--config")
        .arg(sim_config)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    // Bounded wait for its HTTPS port (9443) to accept connections.
    for _ in 0..100 {
        if let Ok(Some(status)) = child.try_wait() {
            bail!("the NTjP simulator exited at start ({status}); see its messages above");
        }
        if tokio::net::TcpStream::connect("127.0.0.1:9443")
            .await
            .is_ok()
        {
            return Ok(child);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_simulator(&mut child).await;
    bail!("the NTjP simulator did not listen on 127.0.0.1:9443 within 10 s")
}

async fn stop_simulator(child: &mut Child) {
    // Only the child this demo started, by its own handle (its PID).
    let _ = child.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
}

fn print_instructions(pki_dir: &Path, config: &Config) {
    let pki = pki_dir.display();
    let https = config.https.as_ref().map(|h| h.listen.to_string());
    let http = config.http.as_ref().map(|h| h.listen.to_string());
    let path = "/vp/clinicalprocess/healthcond/description/GetCareDocumentation/2/rivtabp21";
    let action = "urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:2:GetCareDocumentation";
    let actor: String = DEMO_ACTOR
        .iter()
        .map(|(name, value)| format!("  -H '{name}: {value}' \\\n"))
        .collect();
    println!("\nrtp-proxy demo is running. NTjP simulator: https://127.0.0.1:9443. Ctrl-C stops everything.\n");
    if let Some(addr) = https {
        println!(
            "A GetCareDocumentation call over mutual TLS, as the journal system {}:\n",
            pki::demo_ids::CONSUMER
        );
        println!(
            "curl -sS --cacert {pki}/ca.crt --cert {pki}/consumer.crt --key {pki}/consumer.key \\\n  -H 'Content-Type: text/xml; charset=UTF-8' -H 'SOAPAction: \"{action}\"' \\\n{actor}  --data-binary @{DEMO_REQUEST} https://{addr}{path}\n"
        );
        println!(
            "GetCareDocumentation passes four policies (osc-aob, caller-filter, look-back, block-check):\nthe x-rtp-actor-* headers name the user for the block check; records under the\npatient's block are withheld, and the access is logged (journal in target/demo-access-log,\ndelivered to the simulator's log service).\n"
        );
    }
    if let Some(addr) = http {
        println!("The same over the development HTTP listener (identity from x-vp-sender-id):\n");
        println!(
            "curl -sS -H 'Content-Type: text/xml; charset=UTF-8' -H 'x-vp-sender-id: {}' \\\n{actor}  --data-binary @{DEMO_REQUEST} http://{addr}{path}\n",
            pki::demo_ids::CONSUMER
        );
    }
    if let Some(addr) = config.admin.listen {
        println!("The admin listener:\n");
        println!("  curl -sS http://{addr}/policies              # loaded policies: versions, hashes, errors");
        println!("  curl -sS http://{addr}/metrics | grep rtp_   # Prometheus metrics");
        println!(
            "  curl -sS http://{addr}/readyz                # 200 when ready, else 503 and why"
        );
        println!("  curl -sS http://{addr}/healthz");
        println!("  curl -sS -X POST http://{addr}/reload        # reload changed config and policy files\n");
    }
}
