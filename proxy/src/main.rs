//! The `rtp-proxy` command: run the proxy, check a configuration, or run the demo.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use rtp_proxy::config::Config;
use rtp_proxy::{demo, policy_test, server};
use tracing_subscriber::EnvFilter;

// A proxy allocates many small, short-lived buffers per call; mimalloc serves them with
// less CPU than glibc malloc (measured: see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Work with policy components.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Run a built policy against recorded cases (TOML files; see plugins/README.md) and
    /// report each PASS or FAIL with what differed; exit non-zero if any case fails or is
    /// invalid.
    Test {
        /// The built policy component (.wasm).
        #[arg(long)]
        policy: PathBuf,
        /// Case files, or directories whose *.toml files are cases.
        #[arg(required = true)]
        cases: Vec<PathBuf>,
        /// Also print the call, the response's records and the outcome of every case.
        #[arg(long)]
        show: bool,
        /// Deadline of one policy call, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        deadline_ms: u64,
        /// Keep compiled components here across runs (as `[policies] cache_dir`).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A test run's output is its report; RUST_LOG=debug adds the policies' log lines.
    let default_level = match cli.command {
        Command::Policy { .. } => "off",
        _ => "info",
    };
    init_logging(cli.log_format, default_level);
    let result = match cli.command {
        Command::Run { config } => run(config),
        Command::Check { config } => runtime(1).and_then(|rt| rt.block_on(check(config))),
        Command::Demo { config, sim_config } => {
            runtime(0).and_then(|rt| rt.block_on(demo::run(&config, &sim_config)))
        }
        Command::Policy {
            command:
                PolicyCommand::Test {
                    policy,
                    cases,
                    show,
                    deadline_ms,
                    cache_dir,
                },
        } => {
            let options = policy_test::Options {
                policy,
                cases,
                show,
                deadline_ms,
                cache_dir,
            };
            runtime(1).and_then(|rt| rt.block_on(run_policy_tests(options)))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rtp-proxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The tokio runtime: single-threaded for one worker (no work-stealing cost per call),
/// multi-threaded otherwise. 0 means one worker per CPU the process may use.
fn runtime(worker_threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let workers = if worker_threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        worker_threads
    };
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(path: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&path)?;
    runtime(config.proxy.effective_worker_threads())?.block_on(async {
        let running = server::start(&config)
            .await
            .with_context(|| format!("starting with {}", path.display()))?;
        serve_until_stopped(&running).await?;
        tracing::info!("stopping: no new connections, finishing calls in flight");
        running.shutdown().await;
        Ok(())
    })
}

/// Waits for SIGTERM or Ctrl-C; SIGHUP meanwhile reloads the config or the policies
/// whose files changed.
async fn serve_until_stopped(running: &server::RunningProxy) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let stop = demo::wait_for_stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            stopped = &mut stop => return stopped,
            _ = hangup.recv() => {
                let report = running.reloader().reload().await;
                tracing::info!(?report, "SIGHUP: reload check done");
            }
        }
    }
}

async fn check(path: PathBuf) -> anyhow::Result<()> {
    let now = jiff::Timestamp::now().as_second();
    let report = rtp_proxy::check::check(&path, now).await?;
    print!("{}: {report}", path.display());
    Ok(())
}

/// `policy test`: the report goes to stdout; failed or invalid cases fail the command.
async fn run_policy_tests(options: policy_test::Options) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    let summary = policy_test::run(&options, &mut stdout).await?;
    if summary.success() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} case(s) failed, {} invalid",
            summary.failed,
            summary.invalid
        )
    }
}
