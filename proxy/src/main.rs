//! The `rtp-proxy` command: run the proxy, check a configuration, or run the demo.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use rtp_proxy::config::Config;
use rtp_proxy::{demo, relay::Relay, server};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "rtp-proxy",
    version,
    about = "A regional RIV-TA proxy in front of NTjP"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy until SIGTERM or Ctrl-C.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration (and load its certificates); exit non-zero on the first error.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the demo: the NTjP simulator and the proxy on loopback with a generated PKI.
    Demo {
        /// The proxy's demo configuration.
        #[arg(long, default_value = "config/rtp-proxy.toml")]
        config: PathBuf,
        /// The simulator's configuration.
        #[arg(long, default_value = "config/ntjp-sim.toml")]
        sim_config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rtp-proxy: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run { config } => run(config).await,
            Command::Check { config } => check(config),
            Command::Demo { config, sim_config } => demo::run(&config, &sim_config).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rtp-proxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(path: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&path)?;
    let running = server::start(&config)
        .await
        .with_context(|| format!("starting with {}", path.display()))?;
    demo::wait_for_stop_signal().await?;
    tracing::info!("stopping: no new connections, finishing calls in flight");
    running.shutdown().await;
    Ok(())
}

fn check(path: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&path)?;
    // Building the relay loads every certificate and key, so a broken PEM shows here too.
    Relay::new(&config).with_context(|| format!("{}", path.display()))?;
    if let Some(https) = &config.https {
        rtp_proxy::tls::server_config(
            &config.resolve(&https.cert),
            &config.resolve(&https.key),
            &config.resolve(&https.client_ca),
        )
        .with_context(|| format!("{}: [https]", path.display()))?;
    }
    println!(
        "{}: OK ({} upstream(s), {} route(s))",
        path.display(),
        config.upstreams.len(),
        config.routes.len()
    );
    Ok(())
}
