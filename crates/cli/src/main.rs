//! `writeback`: writes Microsoft Entra ID groups back to on-premises Active Directory.
//! This is the binary's edge: command line, exit codes, logging; the work is in the crates.

mod adimage;
mod adopt;
mod cloud;
mod config;
mod cycle;
mod daemon;
mod drift;
mod export;
mod grant;
mod guard;
mod metrics;
mod preflight;
mod progress;
mod render;
mod thresholds;
mod web;

/// jemalloc, not the system allocator: a plan at 100,000 groups makes millions of small
/// allocations, and a daemon runs for months — jemalloc is faster at both and keeps
/// fragmentation down (`docs/BENCHMARKS.md`, engine at scale).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::{Parser, Subcommand};
use config::Config;
use cycle::{run_cycle, CycleOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Write Microsoft Entra ID (Azure AD) groups back to on-premises Active Directory.
///
/// writeback reads groups from Microsoft Graph with delta queries, decides which are in
/// scope (writebackConfiguration, scope rules), resolves their members to AD objects and
/// creates, renames, updates and (when allowed) deletes the groups it owns in the managed
/// OU(s). It never touches an object it does not own.
///
/// Exit codes: 0 success; 1 the cycle ran but some objects have errors; 2 bad usage or bad
/// configuration (the key is named; also a managed OU missing in AD); 3 a directory or Graph
/// endpoint unreachable or refusing the credentials, or the DC lost during the export;
/// 4 stopped by a threshold (deletes, member removals or creates).
#[derive(Parser, Debug)]
#[command(name = "writeback", version, propagate_version = true)]
struct Cli {
    /// Configuration file (TOML). Without --config: the WRITEBACK_CONFIG environment
    /// variable, else ./writeback.toml.
    #[arg(
        long,
        global = true,
        env = "WRITEBACK_CONFIG",
        default_value = "writeback.toml",
        value_name = "FILE"
    )]
    config: PathBuf,
    /// Machine-readable JSON output for every read command.
    #[arg(long, global = true)]
    json: bool,
    /// More log output (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors in the log.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one writeback cycle now: import from Graph and AD, plan, export to AD.
    Sync {
        /// Full round: restart Graph delta queries from scratch and re-read everything.
        #[arg(long)]
        full: bool,
        /// Let this one cycle through the delete thresholds (delete_threshold,
        /// member_removal_threshold).
        #[arg(long)]
        allow_deletes: bool,
        /// Let this one cycle through the create threshold (create_threshold: more group
        /// creates in one cycle than that, after the first cycle, create none).
        #[arg(long)]
        allow_creates: bool,
    },
    /// Show the exact LDAP changes the next cycle would make; nothing is written.
    Plan {
        /// Plan from a full round.
        #[arg(long)]
        full: bool,
    },
    /// Show the last run and every group's state (written, orphaned, errors, foreign
    /// objects), with a DRIFT column: changes made by hand in the last 24 h. Reads only the
    /// state file: runs without the secrets.
    Status,
    /// List recent runs (newest first). Reads only the state file: runs without the secrets.
    Runs {
        /// How many runs to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Show one run in full: counts, errors, and what was (or would have been) exported.
    /// Reads only the state file: runs without the secrets.
    Show {
        /// Run id (from `writeback runs`).
        run: i64,
    },
    /// Changes made by hand in AD to the groups writeback writes (members added or
    /// removed, groups renamed, moved, retyped or deleted, anchors cleared), found and put
    /// back by the cycles, from the run history; newest first. Reads only the state file:
    /// runs without the secrets.
    Drift {
        /// How far back: a duration like "1h", "24h", "7d".
        #[arg(long, default_value = "24h", value_name = "DURATION", value_parser = parse_since)]
        since: std::time::Duration,
    },
    /// Why a group is or isn't written back, and the fate of each of its members.
    Explain {
        /// The group: object id or exact display name.
        group: String,
    },
    /// The daemon: a cycle every `interval`, a full reconcile every `full_interval`.
    Run,
    /// Check everything a cycle needs: AD bind and TLS, the OUs, the rights (a probe group
    /// is created, modified, renamed and deleted), the schema, the Graph token and the Graph
    /// permissions. Exit 0 when all pass, 1 when a check fails, 3 when AD or Graph refuses
    /// the credentials or cannot be reached.
    Preflight,
    /// Take over an existing AD group in place for a cloud group: writes its anchor and
    /// records the join; the next cycle manages its members and attributes where it is
    /// (never moved unless a rule's `ou` matches, never deleted). Preview unless --yes.
    /// Refuses (exit 2) protected objects (Domain Admins, adminCount = 1, builtin groups)
    /// and objects joined to or anchored by another group.
    Adopt {
        /// The cloud group: object id or exact display name (as the last cycle saw it).
        group: String,
        /// The DN of the AD group to take over.
        #[arg(long)]
        dn: String,
        /// Write the anchor and record the join (without it: a preview).
        #[arg(long)]
        yes: bool,
    },
    /// Cloud-side admin commands (Microsoft Graph): writebackConfiguration of one group or of
    /// every Microsoft 365 group, and the tenant default for new Microsoft 365 groups.
    Cloud {
        #[command(subcommand)]
        command: cloud::CloudCommand,
    },
    /// Active Directory admin commands: `ad grant-permissions` gives the service account its
    /// rights on the managed OUs. They need the [ad] settings only (no Graph credential).
    Ad {
        #[command(subcommand)]
        command: grant::AdCommand,
    },
}

impl Command {
    /// The commands that read only the state file: they run without the secrets.
    fn reads_only_state(&self) -> bool {
        matches!(
            self,
            Command::Status | Command::Runs { .. } | Command::Show { .. } | Command::Drift { .. }
        )
    }
}

/// Runs a command that reads only the state file at `state`.
fn state_command(command: Command, state: &Path, json: bool) -> i32 {
    match command {
        Command::Status => render::status(state, json),
        Command::Runs { limit } => render::runs(state, limit, json),
        Command::Show { run } => render::show_run(state, run, json),
        Command::Drift { since } => render::drift(state, since, json),
        other => {
            eprintln!("error: {other:?} is not a command that reads only the state");
            2
        }
    }
}

/// `--since`: a positive duration ("90m", "24h", "7d").
fn parse_since(text: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be greater than zero".into()),
        Err(e) => Err(format!(
            "{text:?} is not a duration like \"1h\", \"24h\", \"7d\" ({e})"
        )),
    }
}

fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let level = if cli.quiet {
        "error"
    } else {
        match cli.verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    };
    let filter = EnvFilter::try_from_env("WRITEBACK_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!("warn,writeback={level},wb_engine={level},wb_graph={level},wb_ad={level},wb_store={level}"))
    });
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if std::env::var("WRITEBACK_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.with_target(false).init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    let code = runtime.block_on(dispatch(cli));
    ExitCode::from(code as u8)
}

async fn dispatch(cli: Cli) -> i32 {
    // The commands that read only the state file load the configuration without its
    // secrets: an administrator runs them without the service's environment.
    if cli.command.reads_only_state() {
        return match Config::load_for_state(&cli.config) {
            Ok(c) => state_command(cli.command, &c.state, cli.json),
            Err(e) => {
                eprintln!("error: configuration {}: {e}", cli.config.display());
                2
            }
        };
    }
    if let Command::Ad { command } = cli.command {
        return match Config::load_for_ad(&cli.config) {
            Ok(c) => grant::run(&c, command, cli.json).await,
            Err(e) => {
                eprintln!("error: configuration {}: {e}", cli.config.display());
                2
            }
        };
    }
    let cfg = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: configuration {}: {e}", cli.config.display());
            return 2;
        }
    };
    match cli.command {
        Command::Sync {
            full,
            allow_deletes,
            allow_creates,
        } => {
            let opts = CycleOptions {
                full,
                allow_deletes,
                allow_creates,
                plan_only: false,
                all_outcomes: cli.json,
            };
            match run_cycle(&cfg, opts).await {
                Ok(report) => {
                    render::cycle(&report, cli.json);
                    let code = report.exit_code();
                    // The process ends here: its memory goes with it, without freeing a
                    // plan's outcomes one by one (250,000 for a group at the limit).
                    std::mem::forget(report);
                    code
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    e.exit_code()
                }
            }
        }
        Command::Plan { full } => {
            let opts = CycleOptions {
                full,
                plan_only: true,
                ..Default::default()
            };
            match run_cycle(&cfg, opts).await {
                Ok(report) => {
                    render::plan(&report.plan, cli.json);
                    0
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    e.exit_code()
                }
            }
        }
        Command::Status | Command::Runs { .. } | Command::Show { .. } | Command::Drift { .. } => {
            state_command(cli.command, &cfg.state, cli.json)
        }
        Command::Explain { group } => {
            let opts = CycleOptions {
                plan_only: true,
                ..Default::default()
            };
            match run_cycle(&cfg, opts).await {
                Ok(report) => render::explain(&report.plan, &group, &cfg, cli.json),
                Err(e) => {
                    eprintln!("error: {e}");
                    e.exit_code()
                }
            }
        }
        Command::Run => daemon::run(&cli.config, cfg).await,
        Command::Preflight => {
            let (checks, code) = preflight::run(&cfg).await;
            preflight::render(&checks, cli.json);
            code
        }
        Command::Cloud { command } => cloud::run(&cfg, command, cli.json).await,
        // Dispatched above, with the configuration loaded without the Graph credential.
        Command::Ad { .. } => 2,
        Command::Adopt { group, dn, yes } => adopt::run(&cfg, &group, &dn, yes, cli.json).await,
    }
}
