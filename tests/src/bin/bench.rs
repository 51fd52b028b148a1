//! `coordinatool-bench`: throughput, latency, durability cost, restart
//! replay, memory and scheduling cost of coordinatoold on lustre-sim, each
//! next to its target. Run it through `scripts/bench.sh` (release builds);
//! `docs/performance.md` explains every figure.
//!
//! Sections (`--only`, default all):
//! - `throughput`: the same N archive requests through (a) one
//!   `lhsmtool-sim --noop` registered directly on the sim (the baseline) and
//!   (b) sim → coordinatoold → two shimmed `lhsmtool-sim --noop` agents;
//!   items/s, ratio, and MDT-dispatch → agent-receive latency from the two
//!   `--trace` files joined on cookie + FID.
//! - `durability`: (b) again with the daemon's `--no-flush`.
//! - `replay`: a store of M requests written in-process, then the real
//!   daemon timed from spawn to its ready line; the store's size on disk.
//! - `memory`: VmRSS of that daemon with M queued requests, minus an empty
//!   daemon's, per request.
//! - `sched`: time of one `Scheduler::recv` with 100 000 waiting requests
//!   across several archive ids and agents, in-process.
//!
//! Progress goes to stderr; the table (or JSON with `--json`) to stdout.
//!
//! Exit codes: 0 the benchmark ran (targets missed or not: see the table),
//! 1 a step failed (a process died, a timeout, a wrong result), 2 bad usage.

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, ValueEnum};
use coordinatool_protocol::{WireFid, WireItem};
use coordinatool_tests::{Artifacts, run_capture};
use coordinatoold::scheduler::{Kind, Record, RecvSpec, ReqKey, SchedConfig, Scheduler};
use coordinatoold::store::Store;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "coordinatool-bench",
    about = "Benchmark coordinatoold on lustre-sim against the kernel-only baseline",
    after_help = "Exit codes: 0 ran (see PASS/MISS in the table), 1 a step failed, 2 bad usage."
)]
struct Cli {
    /// Archive requests per throughput run.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    requests: u64,
    /// Baseline/coordinatool run pairs in the throughput section (the
    /// medians are reported).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    repeat: u32,
    /// Requests in the store for the replay and memory sections.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=20_000_000))]
    replay: u64,
    /// Waiting requests for the scheduling section.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    sched_waiting: u64,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Run only these sections.
    #[arg(long, value_enum, num_args = 1..)]
    only: Vec<Section>,
    /// Keep the work folder (logs, traces, stores) and print its path.
    #[arg(long)]
    keep: bool,
    /// Where to make the work folder (default: the system's temporary folder).
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// Internal: time and measure the replay phases of the store in
    /// STATE_DIR in this (fresh) process and print them as JSON.
    #[arg(long, hide = true, value_name = "STATE_DIR")]
    replay_phases: Option<PathBuf>,
}

/// A part of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Section {
    /// Baseline vs coordinatool items/s, ratio, latency.
    Throughput,
    /// Durable (default) vs `--no-flush` daemon.
    Durability,
    /// Restart replay time and store size.
    Replay,
    /// Resident memory per queued request.
    Memory,
    /// Scheduler recv cost at 100k waiting.
    Sched,
}

fn progress(msg: impl AsRef<str>) {
    eprintln!("[bench] {}", msg.as_ref());
}

// ---------------------------------------------------------------------------
// Processes whose output is watched line by line.

/// Counts lines containing a pattern, across processes, and records when
/// the count reached its target.
#[derive(Debug)]
struct LineCounter {
    pattern: String,
    count: AtomicU64,
    target: u64,
    reached: Mutex<Option<Instant>>,
}

impl LineCounter {
    fn new(pattern: &str, target: u64) -> Arc<LineCounter> {
        Arc::new(LineCounter {
            pattern: pattern.to_string(),
            count: AtomicU64::new(0),
            target,
            reached: Mutex::new(None),
        })
    }

    fn get(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    fn reached(&self) -> Option<Instant> {
        *self.reached.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the reader threads of one process share.
#[derive(Debug, Default)]
struct WatchState {
    /// `(needle, when first seen, the line)`.
    seen: Mutex<Vec<(String, Instant, String)>>,
    needles: Vec<String>,
    counters: Vec<Arc<LineCounter>>,
}

impl WatchState {
    fn line(&self, line: &str) {
        let now = Instant::now();
        for c in &self.counters {
            if line.contains(&c.pattern) {
                let n = c.count.fetch_add(1, Ordering::SeqCst) + 1;
                if n == c.target {
                    *c.reached.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
                }
            }
        }
        for n in &self.needles {
            if line.contains(n.as_str()) {
                let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                if !seen.iter().any(|(s, _, _)| s == n) {
                    seen.push((n.clone(), now, line.to_string()));
                }
            }
        }
    }
}

/// A child process with stdout and stderr read by threads (timestamped
/// matches, counters) and copied to a log file. Killed on drop.
#[derive(Debug)]
struct Watched {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    state: Arc<WatchState>,
    spawned: Instant,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Watched {
    fn spawn(
        name: &str,
        mut cmd: Command,
        log: &Path,
        needles: &[&str],
        counters: &[Arc<LineCounter>],
    ) -> Result<Watched> {
        let out = Arc::new(Mutex::new(BufWriter::new(
            File::create(log).with_context(|| format!("cannot create {}", log.display()))?,
        )));
        let state = Arc::new(WatchState {
            seen: Mutex::new(Vec::new()),
            needles: needles.iter().map(|s| s.to_string()).collect(),
            counters: counters.to_vec(),
        });
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawned = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}: {cmd:?}"))?;
        let mut readers = Vec::new();
        let streams: Vec<Box<dyn Read + Send>> = vec![
            Box::new(child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?),
            Box::new(child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?),
        ];
        for stream in streams {
            let state = state.clone();
            let out = out.clone();
            readers.push(std::thread::spawn(move || {
                let mut r = BufReader::with_capacity(1 << 16, stream);
                let mut line = String::new();
                loop {
                    line.clear();
                    match r.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            state.line(line.trim_end());
                            let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
                            let _ = o.write_all(line.as_bytes());
                        }
                    }
                }
                let _ = out.lock().unwrap_or_else(|e| e.into_inner()).flush();
            }));
        }
        Ok(Watched {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
            state,
            spawned,
            readers,
        })
    }

    fn pid(&self) -> Result<u32> {
        self.child
            .as_ref()
            .map(Child::id)
            .ok_or_else(|| anyhow!("{} is not running", self.name))
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn seen(&self, needle: &str) -> Option<(Instant, String)> {
        self.state
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(n, _, _)| n == needle)
            .map(|(_, t, l)| (*t, l.clone()))
    }

    fn tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Waits for a line containing `needle` (registered at spawn); returns
    /// when the reader saw it and the line.
    fn wait_needle(&mut self, needle: &str, timeout: Duration) -> Result<(Instant, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.seen(needle) {
                return Ok(s);
            }
            if let Some(st) = self.exited() {
                bail!(
                    "{} exited ({st}) before printing {needle:?}; last lines of {}:\n{}",
                    self.name,
                    self.log.display(),
                    self.tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not print {needle:?} within {timeout:?}; last lines of {}:\n{}",
                    self.name,
                    self.log.display(),
                    self.tail()
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Some(st) = self.exited() {
            bail!(
                "{} exited ({st}); last lines of {}:\n{}",
                self.name,
                self.log.display(),
                self.tail()
            );
        }
        Ok(())
    }

    /// `/proc/PID/status` field in kB (`VmRSS`, `VmHWM`).
    fn status_kb(&self, field: &str) -> Result<u64> {
        status_kb(self.pid()?, field)
    }

    /// User + system CPU seconds so far.
    fn cpu_s(&self) -> Result<f64> {
        cpu_seconds(self.pid()?)
    }

    /// SIGTERM, then waits (SIGKILL after `timeout`), and joins the readers
    /// so the log is complete.
    fn stop(&mut self, timeout: Duration) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            if c.try_wait()?.is_none() {
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(c.id().to_string())
                    .status();
                let deadline = Instant::now() + timeout;
                while c.try_wait()?.is_none() {
                    if Instant::now() > deadline {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        Ok(())
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn status_kb(pid: u32, field: &str) -> Result<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    parse_status_kb(&text, field).ok_or_else(|| anyhow!("no {field} in /proc/{pid}/status"))
}

fn parse_status_kb(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn cpu_seconds(pid: u32) -> Result<f64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("bad /proc/{pid}/stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): utime is field 14, stime 15.
    let ticks = |i: usize| -> Result<f64> {
        f.get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| anyhow!("bad /proc/{pid}/stat field {i}"))
    };
    Ok((ticks(14)? + ticks(15)?) / clock_ticks())
}

/// Bytes of the files under `dir` (apparent size) and the space they take.
fn du(dir: &Path) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut size = 0;
    let mut blocks = 0;
    for e in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let e = e?;
        let md = e.metadata()?;
        if md.is_dir() {
            let (s, b) = du(&e.path())?;
            size += s;
            blocks += b;
        } else {
            size += md.len();
            blocks += md.blocks() * 512;
        }
    }
    Ok((size, blocks))
}

// ---------------------------------------------------------------------------
// Statistics and traces.

/// Percentile (nearest rank) of sorted values.
fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// A FID as printed by both traces: `[0x200000400:0x1:0x0]` (the C side
/// prints a zero version as `0x0` too, but accept `0`).
fn parse_fid(s: &str) -> Option<(u64, u32, u32)> {
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    let mut it = inner.split(':');
    let num = |t: &str| -> Option<u64> {
        let t = t.trim();
        match t.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => t.parse().ok(),
        }
    };
    let seq = num(it.next()?)?;
    let oid = u32::try_from(num(it.next()?)?).ok()?;
    let ver = u32::try_from(num(it.next()?)?).ok()?;
    if it.next().is_some() {
        return None;
    }
    Some((seq, oid, ver))
}

type TraceKey = (u64, (u64, u32, u32));

/// Reads a trace file (`<cookie hex> <fid> <ns>` lines); keeps the first
/// time of each (cookie, fid). Returns the map and the count of bad lines.
fn read_trace(path: &Path, into: &mut HashMap<TraceKey, u128>) -> Result<usize> {
    let f = File::open(path).with_context(|| format!("cannot open trace {}", path.display()))?;
    let mut bad = 0;
    for line in BufReader::new(f).lines() {
        let line = line?;
        let mut it = line.split_whitespace();
        let parsed = (|| {
            let c = it.next()?;
            let cookie = u64::from_str_radix(c.strip_prefix("0x").unwrap_or(c), 16).ok()?;
            let fid = parse_fid(it.next()?)?;
            let ns: u128 = it.next()?.parse().ok()?;
            Some(((cookie, fid), ns))
        })();
        match parsed {
            Some((k, ns)) => {
                into.entry(k).or_insert(ns);
            }
            None => bad += 1,
        }
    }
    Ok(bad)
}

/// Latency from the MDT's dispatch to the copytool's receive, joined on
/// cookie + FID.
#[derive(Debug, Clone, Default)]
struct Latency {
    joined: usize,
    unmatched: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn join_traces(mdt: &Path, agents: &[PathBuf]) -> Result<Latency> {
    let mut sent = HashMap::new();
    let bad_mdt = read_trace(mdt, &mut sent)?;
    let mut got = HashMap::new();
    let mut bad_agents = 0;
    for a in agents {
        bad_agents += read_trace(a, &mut got)?;
    }
    if bad_mdt + bad_agents > 0 {
        progress(format!(
            "warning: {bad_mdt} unreadable line(s) in the MDT trace, {bad_agents} in the agents' traces"
        ));
    }
    let mut lat_ns: Vec<i128> = Vec::with_capacity(got.len());
    let mut unmatched = 0;
    for (k, t_recv) in &got {
        match sent.get(k) {
            Some(t_sent) => lat_ns.push(*t_recv as i128 - *t_sent as i128),
            None => unmatched += 1,
        }
    }
    lat_ns.sort_unstable();
    let ms = |v: Option<i128>| v.map_or(f64::NAN, |ns| ns as f64 / 1e6);
    Ok(Latency {
        joined: lat_ns.len(),
        unmatched,
        p50_ms: ms(percentile(&lat_ns, 50.0)),
        p99_ms: ms(percentile(&lat_ns, 99.0)),
        max_ms: ms(lat_ns.last().copied()),
    })
}

// ---------------------------------------------------------------------------
// Throughput runs.

/// How requests reach a copytool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `lhsmtool-sim --noop` registered on the sim.
    Baseline,
    /// Through coordinatoold (durable, or with `--no-flush`).
    Coordinatool { no_flush: bool },
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Baseline => "baseline",
            Mode::Coordinatool { no_flush: false } => "coordinatool",
            Mode::Coordinatool { no_flush: true } => "coordinatool-no-flush",
        }
    }
}

/// One throughput run's figures.
#[derive(Debug, Clone)]
struct RunResult {
    mode: Mode,
    n: u64,
    create_s: f64,
    issue_s: f64,
    total_s: f64,
    items_per_s: f64,
    archived: u64,
    latency: Option<Latency>,
    /// CPU seconds per process during the run (name, seconds).
    cpu: Vec<(String, f64)>,
    daemon_hwm_kb: Option<u64>,
}

const FSNAME: &str = "bench";
const FILES_PER_DIR: u64 = 1000;
const FANOUT: &str = "8";

/// CPU microseconds per item of a run's processes whose name starts with
/// `name`, together.
fn cpu_us(r: &RunResult, name: &str) -> f64 {
    let s: f64 = r
        .cpu
        .iter()
        .filter(|(n, _)| n.starts_with(name))
        .map(|(_, s)| s)
        .sum();
    s * 1e6 / r.n as f64
}

fn lfs(art: &Artifacts, args: &[&str], cwd: Option<&Path>) -> Result<String> {
    let mut cmd = Command::new(&art.lfs);
    cmd.args(args);
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let (st, out, err) = run_capture(cmd)?;
    if !st.success() {
        let mut err = err;
        err.truncate(2000);
        bail!("lfs-sim {} failed ({st}): {err}", args.join(" "));
    }
    Ok(out)
}

fn set_param(art: &Artifacts, mount: &Path, name: &str, value: &str) -> Result<()> {
    let m = mount.to_string_lossy();
    lfs(
        art,
        &[
            "set_param",
            "--mount",
            &m,
            &format!("mdt.{FSNAME}-MDT0000.hsm.{name}={value}"),
        ],
        None,
    )?;
    Ok(())
}

fn active_requests(art: &Artifacts, mount: &Path) -> Result<usize> {
    let m = mount.to_string_lossy();
    let out = lfs(
        art,
        &[
            "get_param",
            "--mount",
            &m,
            "-n",
            &format!("mdt.{FSNAME}-MDT0000.hsm.active_requests"),
        ],
        None,
    )?;
    Ok(out.lines().filter(|l| l.starts_with("fid=")).count())
}

fn start_sim(art: &Artifacts, dir: &Path, mount: &Path, trace: Option<&Path>) -> Result<Watched> {
    let mut cmd = Command::new(&art.simd);
    cmd.arg("--root")
        .arg(mount)
        .arg("--fsname")
        .arg(FSNAME)
        .arg("--mdts")
        .arg("1");
    if let Some(t) = trace {
        cmd.arg("--trace").arg(t);
    }
    let mut sim = Watched::spawn(
        "lustre-simd",
        cmd,
        &dir.join("sim.log"),
        &["lustre-simd: ready"],
        &[],
    )?;
    sim.wait_needle("lustre-simd: ready", Duration::from_secs(60))?;
    Ok(sim)
}

/// Starts coordinatoold on `mount` and waits for its ready line. Returns the
/// process, its `host:port`, and the instant of the ready line.
/// How to start one daemon.
#[derive(Debug, Clone, Copy)]
struct DaemonRun<'a> {
    name: &'a str,
    mount: &'a Path,
    state: &'a Path,
    conf: &'a Path,
    no_flush: bool,
    timeout: Duration,
}

fn start_daemon(
    art: &Artifacts,
    dir: &Path,
    run: DaemonRun<'_>,
) -> Result<(Watched, String, Instant)> {
    let DaemonRun {
        name,
        mount,
        state,
        conf,
        no_flush,
        timeout,
    } = run;
    let mut cmd = Command::new(&art.daemon);
    cmd.arg("--host")
        .arg("127.0.0.1")
        .arg("--port")
        .arg("0")
        .arg("--config")
        .arg(conf)
        .arg("--state-dir")
        .arg(state)
        .arg("--lustreapi")
        .arg(&art.fake_lib);
    if no_flush {
        cmd.arg("--no-flush");
    }
    cmd.arg(mount)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("COORDINATOOL_LOG")
        .env("NO_COLOR", "1");
    // For profiling: the daemon's log filter (e.g. `debug`, to see per-request
    // timestamps). Costs time: not for reported figures.
    if let Ok(f) = std::env::var("BENCH_DAEMON_LOG") {
        cmd.env("COORDINATOOL_LOG", f);
    }
    let mut d = Watched::spawn(
        name,
        cmd,
        &dir.join(format!("{name}.log")),
        &[
            "listening on ",
            "coordinatoold: ready",
            "state store replayed",
        ],
        &[],
    )?;
    let (_, line) = d.wait_needle("listening on ", timeout)?;
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_default()
        .to_string();
    let (ready, _) = d.wait_needle("coordinatoold: ready", timeout)?;
    Ok((d, addr, ready))
}

fn write_conf(dir: &Path) -> Result<PathBuf> {
    let conf = dir.join("coordinatool.conf");
    fs::write(&conf, "# coordinatool-bench\n")?;
    Ok(conf)
}

/// Requests per call in the light-load (latency) runs.
const LIGHT_BATCH: usize = 50;
/// Requests in each light-load run.
const LIGHT_REQUESTS: u64 = 2000;

fn run_throughput(
    art: &Artifacts,
    base: &Path,
    mode: Mode,
    n: u64,
    light: bool,
) -> Result<RunResult> {
    run_throughput_in(art, base, mode, n, light, 1)
}

/// [`run_throughput`], as the `round`-th run of its kind (its own folder).
fn run_throughput_in(
    art: &Artifacts,
    base: &Path,
    mode: Mode,
    n: u64,
    light: bool,
    round: u32,
) -> Result<RunResult> {
    let dir = base.join(format!(
        "{}{}{}",
        mode.name(),
        if light { "-light" } else { "" },
        if round > 1 {
            format!("-{round}")
        } else {
            String::new()
        }
    ));
    let mount = dir.join("mnt");
    let hsm = dir.join("hsm");
    let state = dir.join("state");
    for d in [&mount, &hsm, &state] {
        fs::create_dir_all(d)?;
    }
    progress(format!("{}: starting lustre-simd", mode.name()));
    let mdt_trace = dir.join("mdt.trace");
    let mut sim = start_sim(art, &dir, &mount, Some(&mdt_trace))?;
    set_param(art, &mount, "max_requests", &n.to_string())?;
    set_param(art, &mount, "loop_period", "1")?;

    progress(format!("{}: creating {n} empty files", mode.name()));
    let t = Instant::now();
    // Folders of 1000 files: huge folders make creation slow on ext4.
    let files = mount.join("d");
    let mut paths = Vec::with_capacity(n as usize);
    for i in 0..n {
        let sub = files.join(format!("{:05}", i / FILES_PER_DIR));
        if i % FILES_PER_DIR == 0 {
            fs::create_dir_all(&sub)?;
        }
        let p = sub.join(format!("f{i:08}"));
        File::create(&p).with_context(|| format!("cannot create {}", p.display()))?;
        paths.push(p);
    }
    let create_s = t.elapsed().as_secs_f64();

    let done = LineCounter::new("lhsmtool-sim: ARCHIVE ", n);
    let ok = LineCounter::new(" rc=0 ", u64::MAX);
    let mut agents: Vec<Watched> = Vec::new();
    let mut traces = Vec::new();
    let mut daemon = None;
    let ct_cmd = |trace: &Path| {
        let mut c = Command::new(&art.copytool);
        c.arg("--noop")
            .arg("--fanout")
            .arg(FANOUT)
            .arg("--trace")
            .arg(trace)
            .arg("--hsm-root")
            .arg(&hsm)
            .arg(&mount)
            .env("LD_LIBRARY_PATH", &art.fake_lib_dir);
        c
    };
    match mode {
        Mode::Baseline => {
            let trace = dir.join("ct.trace");
            let mut ct = Watched::spawn(
                "lhsmtool-sim",
                ct_cmd(&trace),
                &dir.join("ct.log"),
                &["registered on"],
                &[done.clone(), ok.clone()],
            )?;
            ct.wait_needle("registered on", Duration::from_secs(30))?;
            agents.push(ct);
            traces.push(trace);
        }
        Mode::Coordinatool { no_flush } => {
            progress(format!("{}: starting coordinatoold", mode.name()));
            let conf = write_conf(&dir)?;
            let (d, addr, _) = start_daemon(
                art,
                &dir,
                DaemonRun {
                    name: "coordinatoold",
                    mount: &mount,
                    state: &state,
                    conf: &conf,
                    no_flush,
                    timeout: Duration::from_secs(60),
                },
            )?;
            let (host, port) = addr
                .rsplit_once(':')
                .ok_or_else(|| anyhow!("bad daemon address {addr:?}"))?;
            for i in 1..=2 {
                let trace = dir.join(format!("agent{i}.trace"));
                let mut c = ct_cmd(&trace);
                c.env("LD_PRELOAD", &art.shim)
                    .env("COORDINATOOL_CONF", &conf)
                    .env("COORDINATOOL_HOST", host)
                    .env("COORDINATOOL_PORT", port)
                    .env("COORDINATOOL_CLIENT_ID", format!("bench-agent-{i}"));
                let mut a = Watched::spawn(
                    &format!("agent{i}"),
                    c,
                    &dir.join(format!("agent{i}.log")),
                    &["connected to coordinatoold", "registered on"],
                    &[done.clone(), ok.clone()],
                )?;
                a.wait_needle("connected to coordinatoold", Duration::from_secs(30))?;
                a.wait_needle("registered on", Duration::from_secs(30))?;
                agents.push(a);
                traces.push(trace);
            }
            daemon = Some(d);
        }
    }
    let cpu_before: Vec<(String, f64)> = std::iter::once(&sim)
        .chain(daemon.iter())
        .chain(agents.iter())
        .map(|p| (p.name.clone(), p.cpu_s().unwrap_or(f64::NAN)))
        .collect();

    // Light load: closed loop of small batches (each issued once the
    // previous one is done), for latency without queueing.
    let batch = if light { LIGHT_BATCH } else { n as usize };
    progress(format!(
        "{}: issuing {n} archive requests (lfs-sim hsm_archive --files-from, {} per call{})",
        mode.name(),
        batch,
        if light { ", closed loop" } else { "" }
    ));
    let t0 = Instant::now();
    let mut issue_s = 0.0;
    let mut issued = 0u64;
    for (k, chunk) in paths.chunks(batch).enumerate() {
        let list = dir.join(format!("files-{k}.list"));
        let mut l = BufWriter::new(File::create(&list)?);
        for p in chunk {
            writeln!(l, "{}", p.display())?;
        }
        l.flush()?;
        drop(l);
        let list_s = list.to_string_lossy().into_owned();
        let t = Instant::now();
        lfs(art, &["hsm_archive", "--files-from", &list_s], None)?;
        issue_s += t.elapsed().as_secs_f64();
        issued += chunk.len() as u64;
        if light {
            let deadline = Instant::now() + Duration::from_secs(60);
            while done.get() < issued {
                if Instant::now() > deadline {
                    bail!("{}: light-load batch {k} not done after 60 s", mode.name());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    progress(format!(
        "{}: issued in {issue_s:.2} s; {} done so far",
        mode.name(),
        done.get()
    ));

    // All items ended by the copytools (counted from their logs as they
    // come), then the MDT's active list empty.
    let deadline = t0 + Duration::from_secs(60) + Duration::from_millis(n.saturating_mul(3));
    let mut last_report = Instant::now();
    while done.reached().is_none() {
        sim.check_alive()?;
        if let Some(d) = daemon.as_mut() {
            d.check_alive()?;
        }
        for a in &mut agents {
            a.check_alive()?;
        }
        if Instant::now() > deadline {
            bail!(
                "{}: only {} of {n} items ended after {:.0} s",
                mode.name(),
                done.get(),
                t0.elapsed().as_secs_f64()
            );
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            progress(format!(
                "{}: {} of {n} done after {:.1} s",
                mode.name(),
                done.get(),
                t0.elapsed().as_secs_f64()
            ));
            last_report = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut t_end = done.reached().unwrap_or_else(Instant::now);
    if active_requests(art, &mount)? != 0 {
        let poll_deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if active_requests(art, &mount)? == 0 {
                t_end = Instant::now();
                break;
            }
            if Instant::now() > poll_deadline {
                bail!("{}: the MDT still has active requests", mode.name());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let total_s = t_end.duration_since(t0).as_secs_f64();
    let cpu: Vec<(String, f64)> = std::iter::once(&sim)
        .chain(daemon.iter())
        .chain(agents.iter())
        .zip(&cpu_before)
        .map(|(p, (name, before))| (name.clone(), p.cpu_s().unwrap_or(f64::NAN) - before))
        .collect();
    let daemon_hwm_kb = daemon.as_ref().and_then(|d| d.status_kb("VmHWM").ok());
    let failed = done.get() - ok.get().min(done.get());
    if failed > 0 {
        progress(format!(
            "warning: {}: {failed} item(s) ended with rc != 0",
            mode.name()
        ));
    }

    // One hsm_state pass over every file (argument lists of 20 000
    // relative names, run in the files' folder).
    progress(format!("{}: checking hsm_state of {n} files", mode.name()));
    let mut archived = 0u64;
    for chunk in paths.chunks(FILES_PER_DIR as usize) {
        let Some(sub) = chunk[0].parent() else {
            bail!("no parent folder for {}", chunk[0].display());
        };
        let mut args: Vec<String> = vec!["hsm_state".into()];
        args.extend(
            chunk
                .iter()
                .filter_map(|p| p.file_name().map(|f| f.to_string_lossy().into_owned())),
        );
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = lfs(art, &refs, Some(sub))?;
        archived += out.lines().filter(|l| l.contains(" archived")).count() as u64;
    }
    if archived != n {
        bail!("{}: only {archived} of {n} files are archived", mode.name());
    }

    // Stop everything so the traces are flushed, then join them.
    for a in &mut agents {
        a.stop(Duration::from_secs(10))?;
    }
    if let Some(d) = daemon.as_mut() {
        d.stop(Duration::from_secs(30))?;
    }
    sim.stop(Duration::from_secs(30))?;
    let latency = match join_traces(&mdt_trace, &traces) {
        Ok(l) => Some(l),
        Err(e) => {
            progress(format!(
                "warning: {}: no latency figures: {e:#}",
                mode.name()
            ));
            None
        }
    };
    let items_per_s = n as f64 / total_s;
    progress(format!(
        "{}: {n} items in {total_s:.2} s = {items_per_s:.0} items/s",
        mode.name()
    ));
    Ok(RunResult {
        mode,
        n,
        create_s,
        issue_s,
        total_s,
        items_per_s,
        archived,
        latency,
        cpu,
        daemon_hwm_kb,
    })
}

// ---------------------------------------------------------------------------
// Replay and memory.

#[derive(Debug, Clone)]
struct ReplayResult {
    n: u64,
    fill_s: f64,
    store_bytes: u64,
    store_disk_bytes: u64,
    /// Spawn to the ready line.
    ready_s: f64,
    /// The daemon's own `elapsed_ms` of "state store replayed" (open + load
    /// + scheduler), if logged.
    replayed_ms: Option<u64>,
    empty_ready_s: f64,
    empty_rss_kb: u64,
    full_rss_kb: u64,
    full_hwm_kb: u64,
    /// RSS samples after ready (ms after ready, kB).
    rss_samples: Vec<(u64, u64)>,
    /// [`replay_phases`] of a copy of the store, never opened before.
    phases: Value,
    /// [`replay_phases`] of the store after the daemon opened and closed it.
    phases_reopen: Value,
}

fn bench_record(i: u64, cookie_base: u64, now_ms: u64) -> Record {
    let fid = WireFid {
        seq: 0x200000400,
        oid: (i + 1) as u32,
        ver: 0,
    };
    Record {
        item: WireItem::whole_file(20, fid, cookie_base + i, Vec::new()),
        archive_id: (i % 4) as u32 + 1,
        flags: 0,
        received_at_ms: now_ms,
        agent: None,
        cancel_pending: false,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn run_replay(art: &Artifacts, base: &Path, n: u64) -> Result<ReplayResult> {
    let dir = base.join("replay");
    let mount = dir.join("mnt");
    let state = dir.join("state");
    let empty_state = dir.join("state-empty");
    for d in [&mount, &state, &empty_state] {
        fs::create_dir_all(d)?;
    }
    progress(format!(
        "replay: writing {n} records into the store (in-process)"
    ));
    let t = Instant::now();
    {
        let (store, _) = Store::open(&state, true).context("cannot open the bench store")?;
        let cookie_base = now_ms() / 1000;
        let now = now_ms();
        let mut i = 0;
        while i < n {
            let end = (i + 20_000).min(n);
            let recs: Vec<Record> = (i..end)
                .map(|j| bench_record(j, cookie_base, now))
                .collect();
            store
                .apply(recs.iter().map(|r| (r.key(), Some(r))), false)
                .context("cannot write the bench store")?;
            i = end;
        }
        store
            .flush_final()
            .context("cannot flush the bench store")?;
    }
    let fill_s = t.elapsed().as_secs_f64();
    let (store_bytes, store_disk_bytes) = du(&state.join("store"))?;
    progress(format!(
        "replay: store written in {fill_s:.1} s, {:.1} MB",
        store_bytes as f64 / 1e6
    ));
    // A copy for the in-process phase timing, opened first there too.
    let copy = dir.join("state-copy");
    let st = Command::new("cp")
        .arg("-a")
        .arg(&state)
        .arg(&copy)
        .status()?;
    if !st.success() {
        bail!("cp -a {} {} failed", state.display(), copy.display());
    }
    let mut sim = start_sim(art, &dir, &mount, None)?;
    let conf = write_conf(&dir)?;

    progress("replay: empty daemon (baseline RSS)");
    let (mut empty, _, ready) = start_daemon(
        art,
        &dir,
        DaemonRun {
            name: "daemon-empty",
            mount: &mount,
            state: &empty_state,
            conf: &conf,
            no_flush: false,
            timeout: Duration::from_secs(60),
        },
    )?;
    let empty_ready_s = ready.duration_since(empty.spawned).as_secs_f64();
    let empty_rss_kb = settle_rss(&empty)?.last().map_or(0, |s| s.1);
    empty.stop(Duration::from_secs(30))?;

    progress(format!("replay: daemon with {n} stored requests"));
    let (mut full, _, ready) = start_daemon(
        art,
        &dir,
        DaemonRun {
            name: "daemon-full",
            mount: &mount,
            state: &state,
            conf: &conf,
            no_flush: false,
            timeout: Duration::from_secs(300),
        },
    )?;
    let ready_s = ready.duration_since(full.spawned).as_secs_f64();
    let rss_samples = settle_rss(&full)?;
    let full_rss_kb = rss_samples.last().map_or(0, |s| s.1);
    let full_hwm_kb = full.status_kb("VmHWM")?;
    let replayed_ms = full.seen("state store replayed").and_then(|(_, l)| {
        l.split("elapsed_ms=")
            .nth(1)?
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    });
    full.stop(Duration::from_secs(60))?;
    sim.stop(Duration::from_secs(30))?;
    progress("replay: the same replay phase by phase, in a fresh process (copy never opened)");
    let phases = phases_of(&copy)?;
    progress("replay: again on the store the daemon has opened and closed");
    let phases_reopen = phases_of(&state)?;
    progress(format!(
        "replay: ready after {ready_s:.2} s; RSS {full_rss_kb} kB (empty daemon {empty_rss_kb} kB)"
    ));
    Ok(ReplayResult {
        n,
        fill_s,
        store_bytes,
        store_disk_bytes,
        ready_s,
        replayed_ms,
        empty_ready_s,
        empty_rss_kb,
        full_rss_kb,
        full_hwm_kb,
        rss_samples,
        phases,
        phases_reopen,
    })
}

/// Runs [`replay_phases`] in a fresh process of this binary.
fn phases_of(state: &Path) -> Result<Value> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("--replay-phases").arg(state);
    let (st, out, err) = run_capture(cmd)?;
    if !st.success() {
        bail!("replay phases failed ({st}): {err}");
    }
    serde_json::from_str(out.trim()).with_context(|| format!("bad replay phases output {out:?}"))
}

/// The daemon's replay, phase by phase, in this process: `Store::open`,
/// `Store::load_all`, the scheduler's `offer` of every record, then the
/// store dropped; wall time and VmRSS after each.
fn replay_phases(state: &Path) -> Result<Value> {
    let pid = std::process::id();
    let rss = || status_kb(pid, "VmRSS");
    let r0 = rss()?;
    let t = Instant::now();
    let (store, _) = Store::open(state, true).context("cannot open the store")?;
    let open_s = t.elapsed().as_secs_f64();
    let r_open = rss()?;
    let t = Instant::now();
    let recs = store.load_all().context("cannot load the store")?;
    let load_s = t.elapsed().as_secs_f64();
    let r_load = rss()?;
    let n = recs.len();
    let data_bytes: usize = recs.iter().map(|r| r.item.data.len()).sum();
    let encoded_bytes = match recs.first() {
        Some(r) => coordinatoold::store::encode_record(r)?.len(),
        None => 0,
    };
    let now = now_ms();
    let t = Instant::now();
    let mut sched = Scheduler::new(SchedConfig {
        fsname: FSNAME.into(),
        order: Kind::DEFAULT_ORDER,
        grace_ms: 600_000,
        max_hal_bytes: 1 << 20,
        archive_ids: Vec::new(),
        waiting_expiry_ms: None,
    });
    sched.reserve(n);
    for rec in recs {
        sched.offer(rec, now, false);
    }
    sched.take_effects();
    let sched_s = t.elapsed().as_secs_f64();
    let r_sched = rss()?;
    drop(store);
    let r_nostore = rss()?;
    let hwm = status_kb(pid, "VmHWM")?;
    Ok(json!({
        "records": n, "data_bytes": data_bytes, "held": sched.len(),
        "open_s": open_s, "load_all_s": load_s, "offer_s": sched_s,
        "rss_kb_start": r0, "rss_kb_after_open": r_open, "rss_kb_after_load_all": r_load,
        "rss_kb_after_offer": r_sched, "rss_kb_after_store_dropped": r_nostore, "hwm_kb": hwm,
        "size_of_record": std::mem::size_of::<Record>(),
        "encoded_record_bytes": encoded_bytes,
    }))
}

/// VmRSS sampled every 100 ms for one second after ready (the figure is the
/// last sample, once start-up allocations have settled).
fn settle_rss(p: &Watched) -> Result<Vec<(u64, u64)>> {
    let t = Instant::now();
    let mut out = Vec::new();
    for _ in 0..=10 {
        out.push((t.elapsed().as_millis() as u64, p.status_kb("VmRSS")?));
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Scheduling cost, in-process.

#[derive(Debug, Clone)]
struct SchedCase {
    name: String,
    limit: Option<u32>,
    recvs: usize,
    items: u64,
    waiting_min: u64,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
    /// Wall-clock maximum, run-queue waits included.
    max_wall_us: f64,
    /// Timed recvs during which the thread waited for a CPU.
    preempted: usize,
    per_item_us: f64,
}

/// CPU time used by this thread so far (`CLOCK_THREAD_CPUTIME_ID`: neither
/// the time it waits for a CPU nor, in a VM, the time the host takes).
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// Nanoseconds this thread has spent runnable but waiting for a CPU
/// (`/proc/thread-self/schedstat`, second field), if the kernel reports it.
fn run_queue_wait_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().nth(1)?.parse().ok()
}

#[derive(Debug, Clone)]
struct SchedResult {
    waiting: u64,
    archive_ids: u32,
    agents: usize,
    offer_s: f64,
    cases: Vec<SchedCase>,
}

fn sched_record(i: u64, now: u64) -> Record {
    // 8 archive ids, mostly archives with some restores and removes, two
    // flag values: 48 queues.
    let action = match i % 10 {
        0 => 21,
        1 => 22,
        _ => 20,
    };
    let fid = WireFid {
        seq: 0x200000400 + (i >> 32),
        oid: (i & 0xffff_ffff) as u32 + 1,
        ver: 0,
    };
    Record {
        item: WireItem::whole_file(action, fid, 0x6000_0000 + i, Vec::new()),
        archive_id: (i % 8) as u32 + 1,
        flags: (i / 8) % 2,
        received_at_ms: now,
        agent: None,
        cancel_pending: false,
    }
}

fn run_sched(waiting: u64) -> Result<SchedResult> {
    let mut cases = Vec::new();
    let mut offer_s = 0.0;
    let agent_archives: Vec<Vec<u32>> = vec![
        vec![1],
        vec![2],
        vec![3, 4],
        vec![5, 6, 7],
        vec![8],
        vec![],     // any archive id
        vec![1, 8], // overlapping
        vec![99],   // nothing waiting for it
    ];
    for limit in [Some(16), Some(256), None] {
        let now = now_ms();
        let mut s = Scheduler::new(SchedConfig {
            fsname: FSNAME.into(),
            order: Kind::DEFAULT_ORDER,
            grace_ms: 600_000,
            max_hal_bytes: 1 << 20,
            archive_ids: Vec::new(),
            waiting_expiry_ms: None,
        });
        let t = Instant::now();
        s.reserve(waiting as usize);
        let mut next = 0u64;
        while next < waiting {
            s.offer(sched_record(next, now), now, true);
            next += 1;
        }
        s.take_effects();
        // Cancel one waiting request in 20 so queues hold stale entries.
        for i in (0..waiting).step_by(20) {
            let rec = sched_record(i, now);
            s.cancel(&coordinatoold::scheduler::cancel_item(&rec.item), now);
        }
        s.take_effects();
        // Keep the count at `waiting`.
        while (s.waiting_counts().iter().sum::<u64>()) < waiting {
            s.offer(sched_record(next, now), now, true);
            next += 1;
        }
        s.take_effects();
        offer_s = t.elapsed().as_secs_f64();
        for (i, ids) in agent_archives.iter().enumerate() {
            s.connect(&format!("agent{i}"), None, ids.clone(), &[], now)
                .map_err(|e| anyhow!("connect: {e}"))?;
        }
        s.take_effects();
        let spec = RecvSpec {
            limits: [limit; 3],
            max_bytes: 1 << 20,
            deadline: None,
        };
        // A recv's cost is the CPU time its thread used: the figure the
        // target is about. Wall time also counts preemptions by other
        // processes on this shared machine, and the host's own steal in this
        // VM; its maximum is reported next to it, with the number of recvs
        // during which the thread waited for a CPU.
        let mut durations: Vec<Duration> = Vec::new();
        let mut max_wall = Duration::ZERO;
        let mut preempted = 0usize;
        let mut items = 0u64;
        let mut waiting_min = u64::MAX;
        let mut idle = vec![true; agent_archives.len()];
        // Fewer rounds for a small queue (a quick run), never below 100.
        let rounds = if limit.is_some_and(|l| l <= 16) {
            20_000
        } else {
            4_000
        }
        .min(usize::try_from(waiting / 5).unwrap_or(usize::MAX).max(100));
        let mut token = 0u64;
        for r in 0..rounds {
            let ai = r % agent_archives.len();
            if !idle[ai] {
                continue;
            }
            let id = format!("agent{ai}");
            token += 1;
            let waited_before = run_queue_wait_ns();
            let cpu = thread_cpu();
            let t = Instant::now();
            s.recv(&id, token, spec, now)
                .map_err(|e| anyhow!("recv: {e}"))?;
            let eff = s.take_effects();
            let wall = t.elapsed();
            let cost = thread_cpu().saturating_sub(cpu);
            let waited = match (waited_before, run_queue_wait_ns()) {
                (Some(a), Some(b)) => Duration::from_nanos(b.saturating_sub(a)),
                _ => Duration::ZERO,
            };
            if !waited.is_zero() {
                preempted += 1;
            }
            max_wall = max_wall.max(wall);
            durations.push(cost);
            // Untimed: the agents finish what they got at once, and as many
            // new requests arrive.
            idle[ai] = false;
            for d in eff.deliveries {
                let di = d
                    .agent
                    .strip_prefix("agent")
                    .and_then(|v| v.parse::<usize>().ok())
                    .ok_or_else(|| anyhow!("unexpected agent {}", d.agent))?;
                idle[di] = true;
                items += d.batch.items.len() as u64;
                for it in &d.batch.items {
                    s.done(ReqKey::of(it), 0, now);
                }
            }
            s.take_effects();
            waiting_min = waiting_min.min(s.waiting_counts().iter().sum());
            while s.waiting_counts().iter().sum::<u64>() < waiting {
                s.offer(sched_record(next, now), now, true);
                next += 1;
            }
            s.take_effects();
        }
        durations.sort_unstable();
        let us = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e6);
        let total: f64 = durations.iter().map(|d| d.as_secs_f64() * 1e6).sum();
        let name = match limit {
            Some(l) => format!("limit {l}/kind"),
            None => "unlimited (1 MiB batches)".to_string(),
        };
        progress(format!(
            "sched: {name}: {} recvs, {items} items, max {:.0} µs",
            durations.len(),
            us(durations.last().copied())
        ));
        cases.push(SchedCase {
            name,
            limit,
            recvs: durations.len(),
            items,
            waiting_min,
            p50_us: us(percentile(&durations, 50.0)),
            p99_us: us(percentile(&durations, 99.0)),
            max_us: us(durations.last().copied()),
            max_wall_us: us(Some(max_wall)),
            preempted,
            per_item_us: if items > 0 {
                total / items as f64
            } else {
                f64::NAN
            },
        });
    }
    Ok(SchedResult {
        waiting,
        archive_ids: 8,
        agents: agent_archives.len(),
        offer_s,
        cases,
    })
}

// ---------------------------------------------------------------------------
// Report.

/// One figure and its target.
#[derive(Debug, Clone)]
struct Row {
    section: &'static str,
    name: String,
    value: String,
    target: String,
    /// `Some(true)` PASS, `Some(false)` MISS, `None` no target.
    pass: Option<bool>,
    json: Value,
}

fn row(
    section: &'static str,
    name: impl Into<String>,
    value: impl Into<String>,
    target: impl Into<String>,
    pass: Option<bool>,
    json: Value,
) -> Row {
    Row {
        section,
        name: name.into(),
        value: value.into(),
        target: target.into(),
        pass,
        json,
    }
}

fn fmt_rate(v: f64) -> String {
    format!("{v:.0} items/s")
}

#[derive(Debug, Default)]
struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
    details: serde_json::Map<String, Value>,
}

/// The run with the median rate (the lower middle one for an even count).
fn median_run(mut runs: Vec<RunResult>) -> RunResult {
    runs.sort_by(|a, b| a.items_per_s.total_cmp(&b.items_per_s));
    let mid = (runs.len() - 1) / 2;
    runs.swap_remove(mid)
}

fn run_json(r: &RunResult) -> Value {
    json!({
        "mode": r.mode.name(),
        "requests": r.n,
        "create_s": r.create_s,
        "issue_s": r.issue_s,
        "total_s": r.total_s,
        "items_per_s": r.items_per_s,
        "archived": r.archived,
        "latency": r.latency.as_ref().map(|l| json!({
            "joined": l.joined, "unmatched": l.unmatched,
            "p50_ms": l.p50_ms, "p99_ms": l.p99_ms, "max_ms": l.max_ms,
        })),
        "cpu_s": r.cpu.iter().map(|(n, s)| (n.clone(), json!(s))).collect::<serde_json::Map<_, _>>(),
        "daemon_hwm_kb": r.daemon_hwm_kb,
    })
}

fn run_note(r: &RunResult) -> String {
    let cpu: Vec<String> = r.cpu.iter().map(|(n, s)| format!("{n} {s:.1} s")).collect();
    format!(
        "{}: {} requests, create {:.1} s, issue {:.2} s, first request to all done {:.2} s; CPU during the run: {}",
        r.mode.name(),
        r.n,
        r.create_s,
        r.issue_s,
        r.total_s,
        cpu.join(", ")
    )
}

fn print_table(rep: &Report, cli: &Cli) {
    let w0 = rep
        .rows
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(10)
        .max(6);
    let w1 = rep
        .rows
        .iter()
        .map(|r| r.value.chars().count())
        .max()
        .unwrap_or(10)
        .max(5);
    let w2 = rep
        .rows
        .iter()
        .map(|r| r.target.chars().count())
        .max()
        .unwrap_or(6)
        .max(6);
    println!(
        "coordinatool-bench: requests={} replay={} sched_waiting={}",
        cli.requests, cli.replay, cli.sched_waiting
    );
    println!(
        "{:<12} {:<w0$}  {:>w1$}  {:<w2$}  result",
        "section", "figure", "value", "target"
    );
    println!("{}", "-".repeat(12 + w0 + w1 + w2 + 16));
    for r in &rep.rows {
        let res = match r.pass {
            Some(true) => "PASS",
            Some(false) => "MISS",
            None => "",
        };
        let pad1 = w1.saturating_sub(r.value.chars().count());
        let pad2 = w2.saturating_sub(r.target.chars().count());
        println!(
            "{:<12} {:<w0$}  {}{}  {}{}  {res}",
            r.section,
            r.name,
            " ".repeat(pad1),
            r.value,
            r.target,
            " ".repeat(pad2)
        );
    }
    let missed: Vec<&Row> = rep.rows.iter().filter(|r| r.pass == Some(false)).collect();
    println!();
    if missed.is_empty() {
        println!("All measured targets are met.");
    } else {
        println!("TARGETS MISSED ({}):", missed.len());
        for r in missed {
            println!(
                "  - {} {}: {} (target {})",
                r.section, r.name, r.value, r.target
            );
        }
        println!("See docs/performance.md for where the time and memory go.");
    }
    if !rep.notes.is_empty() {
        println!();
        for n in &rep.notes {
            println!("note: {n}");
        }
    }
}

fn run(cli: &Cli) -> Result<Report> {
    let want = |s: Section| cli.only.is_empty() || cli.only.contains(&s);
    let mut rep = Report::default();
    let needs_processes = want(Section::Throughput)
        || want(Section::Durability)
        || want(Section::Replay)
        || want(Section::Memory);
    let art = if needs_processes {
        Some(Artifacts::locate()?)
    } else {
        None
    };
    if cfg!(debug_assertions) {
        rep.notes
            .push("this is a DEBUG build: figures are not meaningful; use scripts/bench.sh".into());
        progress("warning: debug build; use scripts/bench.sh (release) for real figures");
    }
    let base_tmp = match &cli.workdir {
        Some(d) => {
            fs::create_dir_all(d)?;
            tempfile::Builder::new()
                .prefix("coordinatool-bench-")
                .tempdir_in(d)?
        }
        None => tempfile::Builder::new()
            .prefix("coordinatool-bench-")
            .tempdir()?,
    };
    let base = base_tmp.path().to_path_buf();
    let result = run_sections(cli, art.as_ref(), &base, &mut rep);
    if cli.keep || result.is_err() {
        let kept = base_tmp.keep();
        progress(format!("work folder kept: {}", kept.display()));
        rep.notes
            .push(format!("logs and traces kept in {}", kept.display()));
    }
    result.map(|()| rep)
}

fn run_sections(cli: &Cli, art: Option<&Artifacts>, base: &Path, rep: &mut Report) -> Result<()> {
    let want = |s: Section| cli.only.is_empty() || cli.only.contains(&s);
    let n = cli.requests;
    let mut coord: Option<RunResult> = None;
    if want(Section::Throughput) {
        let art = art.ok_or_else(|| anyhow!("artefacts not located"))?;
        // Interleaved pairs, the median of each kind: single runs on a
        // shared machine move by ±20 %.
        let mut bs = Vec::new();
        let mut cs = Vec::new();
        for round in 1..=cli.repeat {
            bs.push(run_throughput_in(
                art,
                base,
                Mode::Baseline,
                n,
                false,
                round,
            )?);
            let coord = Mode::Coordinatool { no_flush: false };
            cs.push(run_throughput_in(art, base, coord, n, false, round)?);
        }
        let pairs: Vec<f64> = bs
            .iter()
            .zip(&cs)
            .map(|(b, c)| c.items_per_s / b.items_per_s)
            .collect();
        let b = median_run(bs);
        let c = median_run(cs);
        let nl = n.min(LIGHT_REQUESTS);
        let bl = run_throughput(art, base, Mode::Baseline, nl, true)?;
        let cl = run_throughput(art, base, Mode::Coordinatool { no_flush: false }, nl, true)?;
        let ratio = c.items_per_s / b.items_per_s;
        rep.rows.push(row(
            "throughput",
            "baseline (lhsmtool-sim on the sim), median",
            fmt_rate(b.items_per_s),
            "",
            None,
            json!(b.items_per_s),
        ));
        rep.rows.push(row(
            "throughput",
            "coordinatool (2 shimmed agents), median",
            fmt_rate(c.items_per_s),
            ">= 50000 items/s",
            Some(c.items_per_s >= 50_000.0),
            json!(c.items_per_s),
        ));
        rep.rows.push(row(
            "throughput",
            "coordinatool / baseline (medians)",
            format!("{:.1} %", ratio * 100.0),
            ">= 90 %",
            Some(ratio >= 0.9),
            json!(ratio),
        ));
        rep.rows.push(row(
            "throughput",
            format!(
                "  coordinatool / baseline of each pair ({} pairs)",
                pairs.len()
            ),
            pairs
                .iter()
                .map(|r| format!("{:.1}", r * 100.0))
                .collect::<Vec<_>>()
                .join(" / ")
                + " %",
            "",
            None,
            json!(pairs),
        ));
        // Where the CPU goes per item, from /proc/PID/stat of each process
        // over the median runs: the 50k target needs at most 40 µs of the
        // two cores per item.
        let (bs_us, bm_us) = (cpu_us(&b, "lustre-simd"), cpu_us(&b, "lhsmtool-sim"));
        let (cs_us, cd_us) = (cpu_us(&c, "lustre-simd"), cpu_us(&c, "coordinatoold"));
        let ca_us = cpu_us(&c, "agent");
        rep.rows.push(row(
            "throughput",
            "  CPU per item, baseline: sim + mover",
            format!("{bs_us:.1} + {bm_us:.1} = {:.1} µs", bs_us + bm_us),
            "",
            None,
            json!({"sim_us": bs_us, "mover_us": bm_us}),
        ));
        rep.rows.push(row(
            "throughput",
            "  CPU per item, coordinatool: sim + daemon + agents",
            format!(
                "{cs_us:.1} + {cd_us:.1} + {ca_us:.1} = {:.1} µs",
                cs_us + cd_us + ca_us
            ),
            "",
            None,
            json!({"sim_us": cs_us, "daemon_us": cd_us, "agents_us": ca_us}),
        ));
        // Too short a run may not reach one clock tick of daemon CPU.
        let daemon_rate = (cd_us > 0.0).then(|| 1e6 / cd_us);
        rep.rows.push(row(
            "throughput",
            "  coordinatoold alone: 1 / its CPU per item",
            daemon_rate.map_or_else(|| "n/a".to_string(), fmt_rate),
            "",
            None,
            json!(daemon_rate),
        ));
        let light = format!("light load, {LIGHT_BATCH}/call closed loop");
        let full = format!("{n} at once");
        for (r, label) in [
            (&c, format!("coordinatoold, {full}")),
            (&b, format!("direct, {full}")),
            (&cl, format!("coordinatoold, {light}")),
            (&bl, format!("direct, {light}")),
        ] {
            if let Some(l) = &r.latency {
                rep.rows.push(row(
                    "latency",
                    format!("dispatch->receive p50 / p99, {label}"),
                    format!("{:.2} / {:.2} ms", l.p50_ms, l.p99_ms),
                    "",
                    None,
                    json!({"p50_ms": l.p50_ms, "p99_ms": l.p99_ms, "max_ms": l.max_ms}),
                ));
                if l.unmatched > 0 || (l.joined as u64) < r.n {
                    rep.notes.push(format!(
                        "{}: latency joined {} items of {} ({} received items had no MDT trace line)",
                        r.mode.name(),
                        l.joined,
                        r.n,
                        l.unmatched
                    ));
                }
            }
        }
        rep.notes.push(run_note(&b));
        rep.notes.push(run_note(&c));
        rep.details.insert("baseline".into(), run_json(&b));
        rep.details.insert("coordinatool".into(), run_json(&c));
        rep.details.insert("baseline_light".into(), run_json(&bl));
        rep.details
            .insert("coordinatool_light".into(), run_json(&cl));
        coord = Some(c);
    }
    if want(Section::Durability) {
        let art = art.ok_or_else(|| anyhow!("artefacts not located"))?;
        let c = match coord.take() {
            Some(c) => c,
            None => {
                let c =
                    run_throughput(art, base, Mode::Coordinatool { no_flush: false }, n, false)?;
                rep.notes.push(run_note(&c));
                rep.details.insert("coordinatool".into(), run_json(&c));
                c
            }
        };
        let nf = run_throughput(art, base, Mode::Coordinatool { no_flush: true }, n, false)?;
        rep.rows.push(row(
            "durability",
            "coordinatool, flush per HAL (default)",
            fmt_rate(c.items_per_s),
            ">= 50000 items/s",
            Some(c.items_per_s >= 50_000.0),
            json!(c.items_per_s),
        ));
        rep.rows.push(row(
            "durability",
            "coordinatool --no-flush",
            fmt_rate(nf.items_per_s),
            "",
            None,
            json!(nf.items_per_s),
        ));
        let cost = 1.0 - c.items_per_s / nf.items_per_s;
        rep.rows.push(row(
            "durability",
            "price of durability (rate lost)",
            format!("{:.1} %", cost * 100.0),
            "",
            None,
            json!(cost),
        ));
        rep.notes.push(run_note(&nf));
        rep.details
            .insert("coordinatool_no_flush".into(), run_json(&nf));
    }
    if want(Section::Replay) || want(Section::Memory) {
        let art = art.ok_or_else(|| anyhow!("artefacts not located"))?;
        let m = cli.replay;
        let r = run_replay(art, base, m)?;
        // The target is defined for 1M requests only.
        let (target, pass) = if m == 1_000_000 {
            ("< 2 s".to_string(), Some(r.ready_s < 2.0))
        } else {
            ("(< 2 s at 1M only)".to_string(), None)
        };
        let ph = &r.phases;
        let f = |k: &str| ph.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
        let mb = |k: &str| f(k) / 1024.0;
        if want(Section::Replay) {
            rep.rows.push(row(
                "replay",
                format!("start to READY with {m} stored requests"),
                format!("{:.2} s", r.ready_s),
                target,
                pass,
                json!(r.ready_s),
            ));
            rep.rows.push(row(
                "replay",
                "  in-process: Store::open / load_all / offer",
                format!(
                    "{:.2} / {:.2} / {:.2} s",
                    f("open_s"),
                    f("load_all_s"),
                    f("offer_s")
                ),
                "",
                None,
                json!({"open_s": f("open_s"), "load_all_s": f("load_all_s"), "offer_s": f("offer_s")}),
            ));
            let g = |k: &str| {
                r.phases_reopen
                    .get(k)
                    .and_then(Value::as_f64)
                    .unwrap_or(f64::NAN)
            };
            rep.rows.push(row(
                "replay",
                "  the same after a clean daemon stop",
                format!(
                    "{:.2} / {:.2} / {:.2} s",
                    g("open_s"),
                    g("load_all_s"),
                    g("offer_s")
                ),
                "",
                None,
                json!({"open_s": g("open_s"), "load_all_s": g("load_all_s"), "offer_s": g("offer_s")}),
            ));
            rep.rows.push(row(
                "replay",
                "  of which store open + load + scheduler (daemon log)",
                r.replayed_ms
                    .map_or("?".into(), |ms| format!("{:.2} s", ms as f64 / 1000.0)),
                "",
                None,
                json!(r.replayed_ms),
            ));
            rep.rows.push(row(
                "replay",
                "start to READY, empty store",
                format!("{:.2} s", r.empty_ready_s),
                "",
                None,
                json!(r.empty_ready_s),
            ));
            rep.rows.push(row(
                "replay",
                "store size on disk (apparent / allocated)",
                format!(
                    "{:.1} / {:.1} MB",
                    r.store_bytes as f64 / 1e6,
                    r.store_disk_bytes as f64 / 1e6
                ),
                "",
                None,
                json!({"bytes": r.store_bytes, "allocated": r.store_disk_bytes}),
            ));
            rep.rows.push(row(
                "replay",
                "store bytes per request (apparent)",
                format!("{:.0} B", r.store_bytes as f64 / m as f64),
                "",
                None,
                json!(r.store_bytes as f64 / m as f64),
            ));
        }
        if want(Section::Memory) {
            let per = (r.full_rss_kb.saturating_sub(r.empty_rss_kb) * 1024) as f64 / m as f64;
            rep.rows.push(row(
                "memory",
                "VmRSS, empty daemon",
                format!("{:.1} MB", r.empty_rss_kb as f64 / 1024.0),
                "",
                None,
                json!(r.empty_rss_kb),
            ));
            rep.rows.push(row(
                "memory",
                format!("VmRSS with {m} queued requests"),
                format!("{:.1} MB", r.full_rss_kb as f64 / 1024.0),
                "",
                None,
                json!(r.full_rss_kb),
            ));
            rep.rows.push(row(
                "memory",
                "VmHWM (peak) during replay",
                format!("{:.1} MB", r.full_hwm_kb as f64 / 1024.0),
                "",
                None,
                json!(r.full_hwm_kb),
            ));
            rep.rows.push(row(
                "memory",
                "RSS per queued request (hai_data empty)",
                format!("{per:.0} B"),
                "< 300 B",
                Some(per < 300.0),
                json!(per),
            ));
            rep.rows.push(row(
                "memory",
                "  in-process RSS: opened / +load_all / +offer",
                format!(
                    "{:.0} / {:.0} / {:.0} MB",
                    mb("rss_kb_after_open"),
                    mb("rss_kb_after_load_all"),
                    mb("rss_kb_after_offer")
                ),
                "",
                None,
                json!(null),
            ));
            let sched_only =
                (f("rss_kb_after_store_dropped") - f("rss_kb_start")) * 1024.0 / m as f64;
            rep.rows.push(row(
                "memory",
                "  in-process: RSS per request, store dropped",
                format!("{sched_only:.0} B"),
                "",
                None,
                json!(sched_only),
            ));
        }
        rep.notes.push(format!(
            "replay: store of {m} records written in-process in {:.1} s",
            r.fill_s
        ));
        rep.details.insert(
            "replay".into(),
            json!({
                "requests": r.n, "fill_s": r.fill_s, "store_bytes": r.store_bytes,
                "store_allocated_bytes": r.store_disk_bytes, "ready_s": r.ready_s,
                "replayed_ms": r.replayed_ms, "empty_ready_s": r.empty_ready_s,
                "empty_rss_kb": r.empty_rss_kb, "full_rss_kb": r.full_rss_kb,
                "full_hwm_kb": r.full_hwm_kb, "rss_samples_ms_kb": r.rss_samples,
                "phases": r.phases, "phases_reopen": r.phases_reopen,
            }),
        );
    }
    if want(Section::Sched) {
        progress(format!(
            "sched: {} waiting requests, in-process",
            cli.sched_waiting
        ));
        let s = run_sched(cli.sched_waiting)?;
        for c in &s.cases {
            rep.rows.push(row(
                "sched",
                format!("recv p50 / p99, {}", c.name),
                format!("{:.1} / {:.1} µs", c.p50_us, c.p99_us),
                "",
                None,
                json!({"p50_us": c.p50_us, "p99_us": c.p99_us}),
            ));
            rep.rows.push(row(
                "sched",
                format!("recv max, {}", c.name),
                format!("{:.0} µs", c.max_us),
                "<= 1000 µs",
                Some(c.max_us <= 1000.0),
                json!(c.max_us),
            ));
            rep.rows.push(row(
                "sched",
                format!(
                    "  recv max wall-clock ({} of {} recvs preempted)",
                    c.preempted, c.recvs
                ),
                format!("{:.0} µs", c.max_wall_us),
                "",
                None,
                json!({"max_wall_us": c.max_wall_us, "preempted": c.preempted}),
            ));
        }
        rep.notes.push(format!(
            "sched: {} waiting over {} archive ids x 3 kinds x 2 flag values, {} agents (one serving an unused archive id, one any), 1 in 20 cancelled (stale queue entries); set-up {:.2} s",
            s.waiting, s.archive_ids, s.agents, s.offer_s
        ));
        for c in &s.cases {
            rep.notes.push(format!(
                "sched {}: {} recvs handed out {} items ({:.2} µs per item), waiting never below {}",
                c.name, c.recvs, c.items, c.per_item_us, c.waiting_min
            ));
        }
        rep.details.insert(
            "sched".into(),
            json!({
                "waiting": s.waiting,
                "cases": s.cases.iter().map(|c| json!({
                    "name": c.name, "limit": c.limit, "recvs": c.recvs, "items": c.items,
                    "p50_us": c.p50_us, "p99_us": c.p99_us, "max_us": c.max_us,
                    "max_wall_us": c.max_wall_us, "preempted": c.preempted,
                    "per_item_us": c.per_item_us, "waiting_min": c.waiting_min,
                })).collect::<Vec<_>>(),
            }),
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(state) = &cli.replay_phases {
        return match replay_phases(state) {
            Ok(v) => {
                println!("{v}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("coordinatool-bench --replay-phases: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    let started = Instant::now();
    match run(&cli) {
        Ok(rep) => {
            progress(format!(
                "finished in {:.0} s",
                started.elapsed().as_secs_f64()
            ));
            if cli.json {
                let rows: Vec<Value> = rep
                    .rows
                    .iter()
                    .map(|r| {
                        json!({
                            "section": r.section, "figure": r.name, "value": r.json,
                            "display": r.value, "target": r.target,
                            "result": match r.pass { Some(true) => "PASS", Some(false) => "MISS", None => "" },
                        })
                    })
                    .collect();
                let out = json!({
                    "requests": cli.requests,
                    "replay": cli.replay,
                    "sched_waiting": cli.sched_waiting,
                    "debug_build": cfg!(debug_assertions),
                    "rows": rows,
                    "missed": rep.rows.iter().filter(|r| r.pass == Some(false)).map(|r| format!("{} {}", r.section, r.name)).collect::<Vec<_>>(),
                    "notes": rep.notes,
                    "details": rep.details,
                });
                println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            } else {
                print_table(&rep, &cli);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("coordinatool-bench: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fids_parse_from_both_traces() {
        assert_eq!(
            parse_fid("[0x200000400:0x1:0x0]"),
            Some((0x200000400, 1, 0))
        );
        assert_eq!(
            parse_fid("[0x200000400:0x1f:0]"),
            Some((0x200000400, 31, 0))
        );
        assert_eq!(parse_fid("0x200000400:0x1:0x0"), None);
        assert_eq!(parse_fid("[0x1:0x2]"), None);
    }

    #[test]
    fn traces_join_on_cookie_and_fid() {
        let dir = tempfile::tempdir().unwrap();
        let mdt = dir.path().join("mdt");
        let a = dir.path().join("a");
        fs::write(
            &mdt,
            "0x10 [0x200000400:0x1:0x0] 1000000\n0x11 [0x200000400:0x2:0x0] 2000000\n\
             0x11 [0x200000400:0x2:0x0] 9000000\ngarbage\n",
        )
        .unwrap();
        fs::write(
            &a,
            "0x10 [0x200000400:0x1:0x0] 3000000\n0x11 [0x200000400:0x2:0x0] 3000000\n\
             0x12 [0x200000400:0x3:0x0] 3000000\n",
        )
        .unwrap();
        let l = join_traces(&mdt, &[a]).unwrap();
        assert_eq!(l.joined, 2);
        assert_eq!(l.unmatched, 1);
        // 2 ms and 1 ms (the first MDT line of a key wins).
        assert_eq!(l.p50_ms, 1.0);
        assert_eq!(l.max_ms, 2.0);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile::<u32>(&[], 50.0), None);
    }

    #[test]
    fn proc_status_fields_parse() {
        let t = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(parse_status_kb(t, "VmRSS"), Some(1024));
        assert_eq!(parse_status_kb(t, "VmHWM"), Some(2048));
        assert_eq!(parse_status_kb(t, "VmSwap"), None);
    }

    #[test]
    fn sched_section_runs_small() {
        let r = run_sched(2_000).unwrap();
        assert_eq!(r.cases.len(), 3);
        for c in &r.cases {
            assert!(c.items > 0, "{c:?}");
            assert!(c.waiting_min > 0, "{c:?}");
        }
    }
}
