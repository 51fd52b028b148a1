//! The main job: a whole local HSM stack on the simulator.
//!
//! Starts `lustre-simd`, `coordinatoold` and two unmodified C copytools
//! (`lhsmtool-sim`) under the preload shim, creates files, archives, releases,
//! restores and removes them with a live progress display, checks every byte,
//! prints the daemon's final status table, and cleans up.
//!
//! Exit codes: 0 success, 1 a step failed (the logs of every process are
//! printed), 2 bad arguments.

use anyhow::{Context, Result, bail};
use coordinatool_protocol::client::Client;
use coordinatool_protocol::{Request, Response, StatusReply};
use coordinatool_tests::{AgentOptions, Stack, StackOptions};
use lustre_bindings::flags::{HS_ARCHIVED, HS_EXISTS, HS_RELEASED};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: coordinatool-demo [--files N] [--mover-delay-ms N] [--keep]
  --files N            number of files to create (default 400)
  --mover-delay-ms N   time each mover spends per item, standing in for tape
                       or network latency, so progress is visible (default 100)
  --keep               keep the temporary folder and print its path";

struct Args {
    files: usize,
    mover_delay_ms: u32,
    keep: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        files: 400,
        mover_delay_ms: 100,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--files" => {
                let v = it.next().ok_or("--files needs a number")?;
                args.files = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0 && n <= 100_000)
                    .ok_or(format!("--files: {v:?} is not a number from 1 to 100000"))?;
            }
            "--mover-delay-ms" => {
                let v = it.next().ok_or("--mover-delay-ms needs a number")?;
                args.mover_delay_ms = v.parse().ok().filter(|&n| n <= 60_000).ok_or(format!(
                    "--mover-delay-ms: {v:?} is not a number from 0 to 60000"
                ))?;
            }
            "--keep" => args.keep = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("coordinatool-demo: {msg}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(if msg.is_empty() { 0 } else { 2 });
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\ncoordinatool-demo: FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A progress line: redrawn in place on a terminal, one line a second otherwise.
struct Progress {
    tty: bool,
    last: Instant,
}

impl Progress {
    fn new() -> Self {
        Progress {
            tty: std::io::stdout().is_terminal(),
            last: Instant::now() - Duration::from_secs(10),
        }
    }

    fn show(&mut self, phase: &str, done: usize, total: usize, extra: &str) {
        let width = 30;
        let filled = done * width / total.max(1);
        let line = format!(
            "{phase:<8} [{}{}] {done:>5}/{total:<5} {extra}",
            "#".repeat(filled),
            ".".repeat(width - filled)
        );
        if self.tty {
            print!("\r{line:<100}");
            let _ = std::io::stdout().flush();
        } else if self.last.elapsed() >= Duration::from_secs(1) || done == total {
            println!("{line}");
            self.last = Instant::now();
        }
    }

    fn finish(&mut self, phase: &str, total: usize, took: Duration) {
        if self.tty {
            println!();
        }
        println!(
            "{phase:<8} done: {total} files in {:.1}s",
            took.as_secs_f64()
        );
    }
}

fn status(stack: &Stack) -> Result<StatusReply> {
    let (host, port) = stack.daemon_host_port()?;
    let mut c = Client::connect_admin(&host, port, "coordinatool-demo", Duration::from_secs(5))?;
    match c.call(Request::Status)? {
        Response::Status(s) => Ok(*s),
        other => bail!("unexpected status reply {other:?}"),
    }
}

fn per_agent(s: &StatusReply, idx: usize) -> String {
    s.agents
        .iter()
        .map(|a| format!("{} {}", a.client_id, a.done[idx]))
        .collect::<Vec<_>>()
        .join(", ")
}

fn done_sum(s: &StatusReply, idx: usize) -> u64 {
    s.agents.iter().map(|a| a.done[idx]).sum()
}

/// Runs one HSM phase and shows progress until `target(flags)` holds for all files.
fn phase(
    stack: &Stack,
    name: &str,
    lfs_cmd: &str,
    files: &[PathBuf],
    done_idx: usize,
    target: impl Fn(u32) -> bool,
) -> Result<()> {
    let start = Instant::now();
    let done_before = status(stack).map(|s| done_sum(&s, done_idx)).unwrap_or(0);
    stack.hsm(lfs_cmd, files, &[])?;
    let mut progress = Progress::new();
    let deadline = start + Duration::from_secs(600);
    let mut all_done_at: Option<Instant> = None;
    loop {
        // Movers' counts first: sampled after the files, they would run ahead
        // of the bar.
        let st = status(stack).ok();
        let movers = st
            .as_ref()
            .map(|s| per_agent(s, done_idx))
            .unwrap_or_default();
        let counted = st
            .map_or(0, |s| done_sum(&s, done_idx))
            .saturating_sub(done_before);
        let flags = stack.hsm_flags_many(files)?;
        let done = flags.iter().filter(|&&f| target(f)).count();
        progress.show(name, done, files.len(), &format!("done by: {movers}"));
        if done == files.len() {
            // The movers report their completions to coordinatoold a few
            // milliseconds after Lustre: wait (briefly) for its counts too.
            let at = *all_done_at.get_or_insert_with(Instant::now);
            if counted >= files.len() as u64 || at.elapsed() > Duration::from_secs(2) {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!(
                "{name}: only {done} of {} files finished after 10 minutes",
                files.len()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    progress.finish(name, files.len(), start.elapsed());
    Ok(())
}

fn run(args: &Args) -> Result<()> {
    println!("coordinatool demo: a local HSM stack on the Lustre simulator");
    let mut stack = Stack::new(StackOptions {
        fsname: "demofs".into(),
        ..StackOptions::default()
    })
    .context("starting lustre-simd")?;
    println!("  mount point      {}", stack.mount.display());
    let addr = stack.start_daemon().context("starting coordinatoold")?;
    println!(
        "  coordinatoold    listening on {addr}, state in {}",
        stack.state_dir.display()
    );
    for id in ["mover-a", "mover-b"] {
        stack.start_agent(AgentOptions {
            client_id: id.into(),
            archives: vec![1],
            extra_args: vec!["--delay-ms".into(), args.mover_delay_ms.to_string()],
            // Each mover runs at most 8 items at once (its fanout), so both take part.
            env: vec![
                ("COORDINATOOL_MAX_ARCHIVE".into(), "8".into()),
                ("COORDINATOOL_MAX_RESTORE".into(), "8".into()),
                ("COORDINATOOL_MAX_REMOVE".into(), "8".into()),
            ],
        })?;
    }
    coordinatool_tests::wait_until("both movers to connect", Duration::from_secs(30), || {
        let s = status(&stack)?;
        Ok((s.agents.iter().filter(|a| a.connected).count() == 2).then_some(()))
    })?;
    println!("  movers           mover-a, mover-b (lhsmtool-sim under LD_PRELOAD)");
    println!("  archive folder   {}", stack.hsm_root.display());

    let result = (|| -> Result<()> {
        let files = stack.make_files("demo", args.files, 0x5eed)?;
        let originals: Vec<Vec<u8>> = files.iter().map(std::fs::read).collect::<Result<_, _>>()?;
        let bytes: usize = originals.iter().map(Vec::len).sum();
        println!("\ncreated {} files, {} bytes in all\n", files.len(), bytes);

        phase(&stack, "archive", "hsm_archive", &files, 0, |f| {
            f & (HS_EXISTS | HS_ARCHIVED) == (HS_EXISTS | HS_ARCHIVED)
        })?;

        let start = Instant::now();
        stack.hsm("hsm_release", &files, &[])?;
        let released = stack.count_flags(&files, HS_RELEASED, 0)?;
        if released != files.len() {
            bail!("only {released} of {} files are released", files.len());
        }
        let still_there = files
            .iter()
            .zip(&originals)
            .filter(|(f, o)| !o.is_empty() && std::fs::read(f).ok().as_ref() == Some(*o))
            .count();
        if still_there != 0 {
            bail!("{still_there} released files still hold their data");
        }
        println!(
            "release  done: {} files in {:.1}s (data dropped, sizes kept)",
            files.len(),
            start.elapsed().as_secs_f64()
        );

        phase(&stack, "restore", "hsm_restore", &files, 1, |f| {
            f & HS_RELEASED == 0
        })?;

        let mut bad = Vec::new();
        for (f, o) in files.iter().zip(&originals) {
            if std::fs::read(f)? != *o {
                bad.push(f.display().to_string());
            }
        }
        if !bad.is_empty() {
            bail!(
                "{} restored files differ from their originals, e.g. {}",
                bad.len(),
                bad[0]
            );
        }
        println!(
            "verify   ok: all {} files restored byte for byte ({bytes} bytes)",
            files.len()
        );

        phase(&stack, "remove", "hsm_remove", &files, 2, |f| {
            f & HS_ARCHIVED == 0
        })?;
        let left = count_files(&stack.hsm_root)?;
        if left != 0 {
            bail!("{left} files are left in the archive folder after remove");
        }
        println!("archive folder empty after remove");
        stack.wait_mdt_idle(Duration::from_secs(30))?;
        println!("MDT has no active request left\n");

        print_status(&status(&stack)?);
        Ok(())
    })();

    if let Err(e) = result {
        eprintln!("{}", stack.dump_logs());
        return Err(e);
    }
    for (_, a) in &mut stack.agents {
        a.stop(Duration::from_secs(10))?;
    }
    if let Some(d) = &mut stack.daemon {
        let st = d.stop(Duration::from_secs(20))?;
        if !st.success() {
            bail!("coordinatoold exited with {st} on SIGTERM");
        }
    }
    if args.keep {
        let kept = std::mem::replace(&mut stack.dir, tempfile::tempdir()?).keep();
        println!("kept {}", kept.display());
    }
    println!("demo finished: everything archived, restored, verified and removed");
    Ok(())
}

fn count_files(dir: &std::path::Path) -> Result<usize> {
    let mut n = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            n += count_files(&e.path())?;
        } else {
            n += 1;
        }
    }
    Ok(n)
}

fn print_status(s: &StatusReply) {
    println!(
        "final status of coordinatoold ({} on {}):",
        s.fsname, s.mountpoint
    );
    println!(
        "  {:<8} {:>8} {:>8} {:>8} {:>8}",
        "action", "waiting", "running", "done", "failed"
    );
    for a in &s.actions {
        println!(
            "  {:<8} {:>8} {:>8} {:>8} {:>8}",
            a.action, a.waiting, a.running, a.done, a.failed
        );
    }
    println!(
        "  {:<10} {:>9} {:>9} {:>9}",
        "mover", "archived", "restored", "removed"
    );
    for a in &s.agents {
        println!(
            "  {:<10} {:>9} {:>9} {:>9}",
            a.client_id, a.done[0], a.done[1], a.done[2]
        );
    }
}
