use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// The system allocator by default: it keeps a small pod small (docs/decisions/0009).
// `--features mimalloc` trades memory for throughput on many small allocations.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clw_gateway::config::{Config, LogFormat};
use clw_gateway::error::GatewayError;
use clw_gateway::sources::shutdown;
use clw_gateway::wiring::Wiring;
use clw_gateway::{app, cli};

/// clw-gateway moves social-prescribing referrals from GP systems to Community Link
/// Worker platforms, exactly once, and tells you precisely why when it cannot.
///
/// With no configuration it runs the embedded default: referral files dropped in
/// data/spool/referrals/inbox are delivered to data/outbox/referrals, with state in
/// data/clw-gateway.db (SQLite). Configure a [broker] to consume from RabbitMQ instead.
#[derive(Parser)]
#[command(name = "clw-gateway", version, max_term_width = 100)]
struct Cli {
    /// Configuration file (TOML). Every key can be overridden by CLW_SECTION__KEY=value.
    #[arg(long, short, global = true, env = "CLW_CONFIG")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: consume referrals (RabbitMQ, or the spool folders when no broker is
    /// configured), deliver them, and serve /healthz, /readyz and /metrics. Stops gracefully
    /// on SIGTERM or SIGINT: no new messages are taken, in-flight ones finish and are acked.
    Serve,
    /// Check the configuration, every destination's schema and token, and (if configured)
    /// that the store and broker can be reached. Exits non-zero naming each problem.
    Check,
    /// Parked messages (failed for good, or waiting for a person), as the store keeps them:
    /// reason, field, attempts; list, replay or dismiss them. Works in both modes.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Show what happened to one message: its state, attempts, last error, each
    /// destination's delivery and the audit trail. With no id, counts messages per state.
    Status {
        /// The message id (ce-id, or the Bundle / MessageHeader id when there is none).
        message_id: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Record a person's answer for a delivery whose outcome was unknown (sent, no usable
    /// answer): it arrived (--delivered) or it did not (--resend). Then replay the parked
    /// message: a delivered destination is skipped, a resend goes out once. Audited.
    Resolve {
        /// The message id.
        message_id: String,
        /// The destination named in the parking reason.
        destination: String,
        /// It arrived at the destination.
        #[arg(long, conflicts_with = "resend", required_unless_present = "resend")]
        delivered: bool,
        /// It did not arrive: allow one more send.
        #[arg(long)]
        resend: bool,
        /// The flow (referral or message-back).
        #[arg(long, default_value = "referral")]
        flow: String,
        /// Who checked, for the audit log (default: $USER).
        #[arg(long, env = "USER", default_value = "operator")]
        actor: String,
    },
    /// Apply the [retention] periods once: remove processed spool files, outbox and
    /// practice-folder files, CSV sheets, parked bodies, referral records, message rows and
    /// audit rows past their period. Audited; the running service does the same every
    /// `retention.every`.
    Purge {
        /// Count what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Who is purging, for the audit log (default: $USER).
        #[arg(long, env = "USER", default_value = "operator")]
        actor: String,
    },
    /// The programme dataset: the row-level extract of one programme's referrals in a
    /// period — one row per referral, pseudonymised (needs dataset.pseudonym_key), a
    /// declined-consent or opted-out referral counted only. Audited.
    Extract(cli::dataset::ExtractArgs),
    /// The programme dataset's aggregate report for a programme (or one practice) and
    /// period: referrals per month, response and time to first contact, contacts per
    /// referral, SWEMWBS change, onward referrals and outcomes, deprivation and age — as a
    /// self-contained HTML file, JSON or PDF; small counts suppressed. Audited.
    Report(cli::dataset::ReportArgs),
    /// The information-governance pack, from this configuration: per programme and
    /// destination the agreement, fields, consent, channel, retention and where data
    /// rests; record writers, platforms, operators, the dataset and the hazards per
    /// route — Markdown, self-contained HTML, JSON, a data-flow SVG, the DPIA annex and
    /// the DSA field schedule. No secret is read. Audited.
    Ig(cli::ig::IgArgs),
    /// Print the RabbitMQ topology as a definitions file (deploy/rabbitmq/definitions.json).
    Topology {
        #[arg(long, default_value = "/")]
        vhost: String,
    },
    /// Measure end-to-end referrals/s against a raw lapin consume-and-ack loop on the same
    /// broker and message, and print the ratio (needs RabbitMQ; see docs/benchmarks.md).
    Bench(cli::bench::BenchArgs),
    /// Mappings (mappings/*.yaml): run their golden fixtures, or map one file and show the
    /// output and every validation error. No broker or store needed.
    Mapping {
        #[command(subcommand)]
        command: cli::mapping::MappingCommand,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// List parked messages: id, stage, error class, field and reason (nothing is removed).
    List {
        /// Which flow's parked messages: referral or message-back.
        #[arg(long, default_value = "referral")]
        flow: String,
    },
    /// Send parked messages through their flow again (after the cause is fixed), each once.
    /// Audited.
    Replay {
        /// The message id (ce-id) to replay.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        message_id: Option<String>,
        /// Replay every parked message.
        #[arg(long)]
        all: bool,
        /// Who is replaying, for the audit log (default: $USER).
        #[arg(long, env = "USER", default_value = "operator")]
        actor: String,
        /// Which flow's parked messages: referral or message-back.
        #[arg(long, default_value = "referral")]
        flow: String,
    },
    /// Close parked messages that must never be replayed (a superseded copy, an event
    /// for the wrong patient): they leave the list, with the reason audited.
    Dismiss {
        /// The message id whose parked copies to dismiss.
        message_id: String,
        /// Why, for the audit log.
        #[arg(long)]
        reason: String,
        /// Who is dismissing, for the audit log (default: $USER).
        #[arg(long, env = "USER", default_value = "operator")]
        actor: String,
        /// Which flow: referral or message-back.
        #[arg(long, default_value = "referral")]
        flow: String,
    },
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.logging.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.logging.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("clw-gateway: {e}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    // Before any thread exists: glibc reads the arena limit when a thread first allocates.
    limit_malloc_arenas();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run()),
        Err(e) => fail(format!("cannot start the async runtime: {e}")),
    }
}

/// glibc gives each thread that allocates its own arena, up to 8 per core, and keeps
/// freed memory in each: with ~10 threads that was most of the gateway's peak above
/// idle. One arena holds the same work in less, at no throughput cost measured on two
/// cores (docs/decisions/0009). An operator's own MALLOC_ARENA_MAX wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc")))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; it is called before the
        // runtime starts any thread, as glibc requires for M_ARENA_MAX to apply to all.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

async fn run() -> ExitCode {
    let cli = Cli::parse();
    // serve and check report the configuration's problems together with the wiring
    // plan's (Wiring::build); the other commands need only a valid file.
    let wired = matches!(cli.command, Command::Serve | Command::Check);
    let loaded = if wired {
        Config::parse(cli.config.as_deref(), std::env::vars())
    } else {
        Config::load(cli.config.as_deref(), std::env::vars())
    };
    let config = match loaded {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let result: Result<(), GatewayError> = match cli.command {
        Command::Serve => {
            let wiring = match Wiring::build(&config) {
                Ok(w) => w,
                Err(e) => return fail(e),
            };
            init_logging(&config);
            serve(config, wiring).await
        }
        Command::Check => return cli::check(&config).await,
        Command::Dlq { command } => match command {
            DlqCommand::List { flow } => cli::dlq_list(&config, &flow).await,
            DlqCommand::Replay {
                message_id,
                all,
                actor,
                flow,
            } => cli::dlq_replay(&config, &flow, message_id.as_deref(), all, &actor).await,
            DlqCommand::Dismiss {
                message_id,
                reason,
                actor,
                flow,
            } => cli::dlq_dismiss(&config, &flow, &message_id, &reason, &actor).await,
        },
        Command::Resolve {
            message_id,
            destination,
            delivered,
            flow,
            actor,
            ..
        } => cli::resolve(&config, &flow, &message_id, &destination, delivered, &actor).await,
        Command::Status { message_id, json } => {
            cli::status(&config, message_id.as_deref(), json).await
        }
        Command::Purge { dry_run, actor } => cli::purge(&config, dry_run, &actor).await,
        Command::Topology { vhost } => cli::topology(&config, &vhost),
        Command::Extract(args) => cli::dataset::extract(&config, args).await,
        Command::Report(args) => cli::dataset::report(&config, args).await,
        Command::Ig(args) => cli::ig::ig(&config, args).await,
        Command::Mapping { command } => {
            return cli::mapping::run(command, &config).unwrap_or_else(fail);
        }
        Command::Bench(args) => {
            init_logging(&config);
            cli::bench::run(&config, args).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

async fn serve(config: Config, wiring: Wiring) -> Result<(), GatewayError> {
    let running = app::start_wired(config, wiring).await?;
    tokio::spawn(shutdown::on_signals(running.trigger().clone()));
    running.wait().await
}
