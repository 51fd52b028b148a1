//! Command-line definition (clap derive). Every doc comment here is `--help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use coordinatool_protocol::RequestState;

use crate::exit::EXIT_CODES_HELP;

/// The administrator's tool for coordinatoold, the userspace Lustre HSM
/// coordinator: look at its queues and agents, add or import requests, cancel
/// them, and lock, drain or stop hand-out.
#[derive(Debug, Parser)]
#[command(name = "coordinatool-ctl", version, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// Daemon host name or address (overrides `host` in the configuration
    /// file and COORDINATOOL_HOST; default "coordinatool").
    #[arg(short = 'H', long, global = true, value_name = "HOST")]
    pub host: Option<String>,

    /// Daemon TCP port (overrides `port` in the configuration file and
    /// COORDINATOOL_PORT; default 5123).
    #[arg(short = 'p', long, global = true, value_name = "PORT",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// Configuration file (default: $COORDINATOOL_CONF, else
    /// /etc/coordinatool.conf if it exists).
    #[arg(short = 'c', long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Seconds to wait for the connection and for each reply.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub io_timeout: u64,

    /// More log output on stderr (repeat for more).
    #[arg(short = 'v', long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Summary: requests per action and state, agents, lock state, and the age
    /// of the oldest request with a warning when it nears the MDT's
    /// active_request_timeout.
    #[command(after_help = EXIT_CODES_HELP)]
    Status(StatusArgs),
    /// List requests (fid, cookie, action, archive id, state, agent, age,
    /// data), filtered.
    #[command(alias = "dump", after_help = EXIT_CODES_HELP)]
    List(ListArgs),
    /// Connected and disconnected agents, with their limits, running counts
    /// and the grace time left to disconnected ones.
    #[command(after_help = EXIT_CODES_HELP)]
    Agents(JsonArg),
    /// Re-queue requests the MDT already handed out (each needs the cookie the
    /// MDT gave it), from FID arguments or from JSON lines on stdin.
    #[command(after_help = EXIT_CODES_HELP)]
    Queue(QueueArgs),
    /// Queue every request of the MDT's hsm/active_requests text (disaster
    /// recovery). Only the first 5 bytes of each request's data survive in
    /// that file.
    #[command(after_help = EXIT_CODES_HELP)]
    Import(ImportArgs),
    /// Stop handing work to agents (requests are still accepted and queued).
    #[command(after_help = EXIT_CODES_HELP)]
    Lock,
    /// Resume handing work to agents.
    #[command(after_help = EXIT_CODES_HELP)]
    Unlock,
    /// Lock, then wait until no request is running; with --quit, stop the
    /// daemon once drained.
    #[command(after_help = EXIT_CODES_HELP)]
    Drain(DrainArgs),
    /// Cancel the requests of these files: queued ones are dropped and
    /// reported to Lustre as canceled, running ones get a cancel forwarded to
    /// their agent.
    #[command(after_help = EXIT_CODES_HELP)]
    Cancel(CancelArgs),
}

/// `--json` alone.
#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print JSON for scripts instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `status` options.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The MDT's active_request_timeout in seconds (lctl get_param
    /// mdt.*.hsm.active_request_timeout): warn when the oldest request reaches
    /// 80% of it.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Print JSON for scripts instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `list` filters.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only requests in this state: waiting, running or orphaned.
    #[arg(long, value_name = "STATE")]
    pub state: Option<RequestState>,
    /// Only this action: archive, restore or remove.
    #[arg(long, value_name = "ACTION", value_parser = parse_action)]
    pub action: Option<lustre_bindings::HsmAction>,
    /// Only requests held by this agent (client id).
    #[arg(long, value_name = "CLIENT_ID")]
    pub agent: Option<String>,
    /// Only this archive id.
    #[arg(long, value_name = "ID")]
    pub archive: Option<u32>,
    /// Show at most this many requests (oldest first).
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    /// Print one JSON object per request and line (the format `queue` reads).
    #[arg(long)]
    pub json: bool,
}

/// `queue` options.
#[derive(Debug, Args)]
pub struct QueueArgs {
    /// Files to queue (FIDs such as [0x200000401:0x1:0x0]). Without FIDs, JSON
    /// lines are read from stdin (or --file).
    #[arg(value_name = "FID")]
    pub fids: Vec<String>,
    /// With FIDs: the action, archive, restore or remove.
    #[arg(long, value_name = "ACTION", value_parser = parse_action, requires = "fids")]
    pub action: Option<lustre_bindings::HsmAction>,
    /// With FIDs: the archive id (1 or more).
    #[arg(long = "archive", value_name = "ID", requires = "fids",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub archive_id: Option<u32>,
    /// With FIDs: the MDT cookie of each request, one per FID in the same
    /// order (repeat the option, or separate with commas; decimal or 0x-hex).
    #[arg(long = "cookie", value_name = "COOKIE", value_delimiter = ',',
          value_parser = parse_number, requires = "fids")]
    pub cookies: Vec<u64>,
    /// With FIDs: hal_flags of the requests.
    #[arg(long, value_name = "FLAGS", value_parser = parse_number, default_value = "0",
          requires = "fids")]
    pub flags: u64,
    /// With FIDs: request data (hai_data), as text.
    #[arg(long, value_name = "TEXT", requires = "fids")]
    pub data: Option<String>,
    /// Read JSON lines from this file instead of stdin.
    #[arg(long, value_name = "FILE", conflicts_with = "fids")]
    pub file: Option<PathBuf>,
    /// Only queue if the daemon serves this filesystem.
    #[arg(long, value_name = "FSNAME")]
    pub fsname: Option<String>,
}

/// `import` options.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Read this file instead of stdin (e.g. the output of
    /// `lctl get_param mdt.*.hsm.active_requests`).
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Only queue if the daemon serves this filesystem (default: the name in
    /// the `mdt.FSNAME-MDTxxxx.hsm.active_requests=` header, if present).
    #[arg(long, value_name = "FSNAME")]
    pub fsname: Option<String>,
    /// Most requests sent in one queue message.
    #[arg(long, value_name = "N", default_value_t = crate::commands::IMPORT_BATCH,
          value_parser = clap::value_parser!(u32).range(1..=50_000))]
    pub batch: u32,
}

/// `drain` options.
#[derive(Debug, Args)]
pub struct DrainArgs {
    /// Give up after this many seconds (exit code 3; the daemon stays locked).
    /// Default: wait as long as it takes.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Stop the daemon once nothing is running (queued work stays in its
    /// store and is handed out again after a restart).
    #[arg(long)]
    pub quit: bool,
    /// Milliseconds between two status polls.
    #[arg(long, value_name = "MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(10..))]
    pub interval_ms: u64,
}

/// `cancel` arguments.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// Files whose requests to cancel (FIDs such as [0x200000401:0x1:0x0]).
    #[arg(value_name = "FID", required = true)]
    pub fids: Vec<String>,
}

/// Parses an action name for `--action` (archive, restore, remove).
pub fn parse_action(s: &str) -> Result<lustre_bindings::HsmAction, String> {
    use lustre_bindings::HsmAction;
    match s.parse::<HsmAction>() {
        Ok(a @ (HsmAction::Archive | HsmAction::Restore | HsmAction::Remove)) => Ok(a),
        _ => Err(format!(
            "{s:?} is not a request action (expected archive, restore or remove)"
        )),
    }
}

/// Parses an unsigned number: decimal or 0x-hex.
pub fn parse_number(s: &str) -> Result<u64, String> {
    coordinatool_protocol::conf::parse_u64(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use lustre_bindings::HsmAction;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("coordinatool-ctl").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn globals_anywhere_and_defaults() {
        let cli = parse(&["status", "--host", "10.0.0.1", "-p", "6000"]).unwrap();
        assert_eq!(cli.host.as_deref(), Some("10.0.0.1"));
        assert_eq!(cli.port, Some(6000));
        assert_eq!(cli.io_timeout, 30);
        match cli.command {
            Command::Status(s) => {
                assert_eq!(s.timeout, 3600);
                assert!(!s.json);
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["--port", "0", "status"]).is_err());
        assert!(parse(&["--port", "70000", "status"]).is_err());
    }

    #[test]
    fn dump_is_list_with_filters() {
        let cli = parse(&[
            "dump",
            "--state",
            "running",
            "--action",
            "RESTORE",
            "--agent",
            "mover1",
            "--archive",
            "3",
            "--limit",
            "10",
            "--json",
        ])
        .unwrap();
        let Command::List(l) = cli.command else {
            panic!("not list")
        };
        assert_eq!(l.state, Some(RequestState::Running));
        assert_eq!(l.action, Some(HsmAction::Restore));
        assert_eq!(l.agent.as_deref(), Some("mover1"));
        assert_eq!(l.archive, Some(3));
        assert_eq!(l.limit, Some(10));
        assert!(l.json);
        let e = parse(&["list", "--state", "lost"]).unwrap_err().to_string();
        assert!(e.contains("lost"), "{e}");
        let e = parse(&["list", "--action", "cancel"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected archive, restore or remove"), "{e}");
    }

    #[test]
    fn queue_arguments_form() {
        let cli = parse(&[
            "queue",
            "--action",
            "archive",
            "--archive",
            "2",
            "--cookie",
            "0x10,17",
            "--flags",
            "0x4",
            "[0x200000401:0x1:0x0]",
            "0x200000401:0x2:0x0",
        ])
        .unwrap();
        let Command::Queue(q) = cli.command else {
            panic!("not queue")
        };
        assert_eq!(q.fids.len(), 2);
        assert_eq!(q.cookies, vec![16, 17]);
        assert_eq!(q.archive_id, Some(2));
        assert_eq!(q.flags, 4);
        // Options of the argument form need FIDs.
        assert!(parse(&["queue", "--action", "archive"]).is_err());
        // --archive 0 is refused by the parser.
        assert!(parse(&["queue", "--archive", "0", "[0x1:0x1:0x0]"]).is_err());
        // stdin form.
        let cli = parse(&["queue", "--file", "x.jsonl"]).unwrap();
        let Command::Queue(q) = cli.command else {
            panic!("not queue")
        };
        assert!(q.fids.is_empty());
        assert!(parse(&["queue", "--file", "x", "[0x1:0x1:0x0]"]).is_err());
    }

    #[test]
    fn drain_cancel_import() {
        let cli = parse(&["drain", "--timeout", "60", "--quit"]).unwrap();
        let Command::Drain(d) = cli.command else {
            panic!("not drain")
        };
        assert_eq!(d.timeout, Some(60));
        assert!(d.quit);
        assert!(parse(&["cancel"]).is_err());
        let cli = parse(&["import", "--file", "/tmp/ar.txt"]).unwrap();
        let Command::Import(i) = cli.command else {
            panic!("not import")
        };
        assert_eq!(i.batch, 5000);
    }

    #[test]
    fn help_shows_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        for needle in ["Exit codes", "69", "65", "drain"] {
            assert!(help.contains(needle), "{needle} missing from help:\n{help}");
        }
    }
}
