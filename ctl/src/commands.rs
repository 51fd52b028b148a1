//! The subcommands, written against the [`Daemon`] trait so that they can be
//! tested with a scripted daemon as well as a real one.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use coordinatool_protocol::client::{Client, ClientError};
use coordinatool_protocol::{
    Cancel, CancelReply, List, ListReply, Queue, QueueItem, QueueReply, Request, Response,
    StatusReply,
};

use crate::cli::{Command, DrainArgs, ImportArgs, ListArgs, QueueArgs, StatusArgs};
use crate::exit::{self, CtlError};
use crate::format;
use crate::input::{self, LineError, ParsedInput};

/// Most requests sent in one `queue` message by `import` and `queue`.
pub const IMPORT_BATCH: u32 = 5000;

/// A connection to coordinatoold.
pub trait Daemon {
    /// Sends one request and waits for its reply.
    fn call(&mut self, req: Request) -> Result<Response, ClientError>;
    /// `host:port`, for messages.
    fn addr(&self) -> &str;
}

impl Daemon for Client {
    fn call(&mut self, req: Request) -> Result<Response, ClientError> {
        Client::call(self, req)
    }
    fn addr(&self) -> &str {
        Client::addr(self)
    }
}

/// Opens a connection when a command needs one.
pub type Connector<'a> = dyn FnMut() -> Result<Box<dyn Daemon>, CtlError> + 'a;

/// Where a command reads and writes.
pub struct Env<'a> {
    /// Normal output.
    pub stdout: &'a mut dyn Write,
    /// Warnings and progress messages that are not the result.
    pub stderr: &'a mut dyn Write,
    /// Input of `queue` and `import` when no file is given.
    pub stdin: &'a mut dyn Read,
    /// Whether stdout is a terminal (drain draws a progress bar).
    pub tty: bool,
    /// Whether stdin is a terminal (`queue` and `import` then say they wait
    /// for input).
    pub stdin_tty: bool,
    /// Connects to the daemon.
    pub connect: &'a mut Connector<'a>,
}

impl std::fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("tty", &self.tty)
            .finish_non_exhaustive()
    }
}

fn call(d: &mut dyn Daemon, req: Request) -> Result<Response, CtlError> {
    d.call(req).map_err(|e| CtlError::from_client(d.addr(), e))
}

fn unexpected(d: &dyn Daemon, op: &'static str, got: Response) -> CtlError {
    CtlError::from_client(
        d.addr(),
        ClientError::Unexpected {
            op,
            got: format!("{got:?}"),
        },
    )
}

fn status(d: &mut dyn Daemon) -> Result<StatusReply, CtlError> {
    match call(d, Request::Status)? {
        Response::Status(s) => Ok(*s),
        other => Err(unexpected(d, "status", other)),
    }
}

fn set_lock(d: &mut dyn Daemon, lock: bool) -> Result<bool, CtlError> {
    let (req, op) = if lock {
        (Request::Lock, "lock")
    } else {
        (Request::Unlock, "unlock")
    };
    match call(d, req)? {
        Response::Locked { locked } => Ok(locked),
        other => Err(unexpected(d, op, other)),
    }
}

fn json_line(out: &mut dyn Write, v: &impl serde::Serialize) -> Result<(), CtlError> {
    serde_json::to_writer(&mut *out, v).map_err(|e| CtlError::Output(e.into()))?;
    writeln!(out)?;
    Ok(())
}

/// Runs one subcommand and returns its exit code (errors carry theirs).
pub fn run(cmd: &Command, env: &mut Env<'_>) -> Result<u8, CtlError> {
    match cmd {
        Command::Status(a) => cmd_status(a, env),
        Command::List(a) => cmd_list(a, env),
        Command::Agents(a) => {
            let mut d = (env.connect)()?;
            let st = status(d.as_mut())?;
            if a.json {
                json_line(env.stdout, &st.agents)?;
            } else {
                env.stdout
                    .write_all(format::agents_text(&st.agents).as_bytes())?;
            }
            Ok(exit::OK)
        }
        Command::Queue(a) => cmd_queue(a, env),
        Command::Import(a) => cmd_import(a, env),
        Command::Lock | Command::Unlock => {
            let want = matches!(cmd, Command::Lock);
            let mut d = (env.connect)()?;
            let locked = set_lock(d.as_mut(), want)?;
            if locked != want {
                writeln!(
                    env.stderr,
                    "coordinatoold at {} answered locked={locked}",
                    d.addr()
                )?;
                return Ok(exit::FAILURE);
            }
            writeln!(
                env.stdout,
                "coordinatoold at {} is {}",
                d.addr(),
                if locked {
                    "locked: no work is handed to agents"
                } else {
                    "unlocked: work is handed to agents"
                }
            )?;
            Ok(exit::OK)
        }
        Command::Drain(a) => cmd_drain(a, env),
        Command::Cancel(a) => {
            let fids = input::parse_fids(&a.fids).map_err(CtlError::Usage)?;
            let mut d = (env.connect)()?;
            let r = match call(d.as_mut(), Request::Cancel(Cancel { fids }))? {
                Response::Cancel(r) => r,
                other => return Err(unexpected(d.as_ref(), "cancel", other)),
            };
            write_cancel(env.stdout, &r)?;
            Ok(if r.not_found.is_empty() {
                exit::OK
            } else {
                exit::FAILURE
            })
        }
    }
}

fn write_cancel(out: &mut dyn Write, r: &CancelReply) -> Result<(), CtlError> {
    for f in &r.canceled {
        writeln!(
            out,
            "{f}: canceled (was queued; reported to Lustre as canceled)"
        )?;
    }
    for f in &r.forwarded {
        writeln!(out, "{f}: running; cancel forwarded to its agent")?;
    }
    for f in &r.not_found {
        writeln!(out, "{f}: no such request")?;
    }
    Ok(())
}

fn cmd_status(a: &StatusArgs, env: &mut Env<'_>) -> Result<u8, CtlError> {
    let mut d = (env.connect)()?;
    let st = status(d.as_mut())?;
    if a.json {
        json_line(env.stdout, &format::status_json(&st, d.addr(), a.timeout))?;
    } else {
        env.stdout
            .write_all(format::status_text(&st, d.addr(), a.timeout).as_bytes())?;
    }
    Ok(exit::OK)
}

fn cmd_list(a: &ListArgs, env: &mut Env<'_>) -> Result<u8, CtlError> {
    let mut d = (env.connect)()?;
    let req = List {
        state: a.state,
        action: a.action.map(|x| x.as_u32()),
        agent: a.agent.clone(),
        archive_id: a.archive,
        limit: a.limit,
    };
    let ListReply {
        requests,
        truncated,
    } = match call(d.as_mut(), Request::List(req))? {
        Response::List(l) => l,
        other => return Err(unexpected(d.as_ref(), "list", other)),
    };
    if a.json {
        for r in &requests {
            json_line(env.stdout, &format::ListLine::new(r))?;
        }
        if truncated {
            writeln!(
                env.stderr,
                "more requests match than --limit allowed; raise --limit to see them"
            )?;
        }
    } else {
        env.stdout
            .write_all(format::list_text(&requests, truncated).as_bytes())?;
    }
    Ok(exit::OK)
}

fn read_input(file: Option<&std::path::Path>, env: &mut Env<'_>) -> Result<String, CtlError> {
    let mut bytes = Vec::new();
    match file {
        Some(p) => {
            bytes = std::fs::read(p).map_err(|source| CtlError::Read {
                what: p.display().to_string(),
                source,
            })?;
        }
        None => {
            if env.stdin_tty {
                writeln!(env.stderr, "reading from stdin (end with Ctrl-D)")?;
            }
            env.stdin
                .read_to_end(&mut bytes)
                .map_err(|source| CtlError::Read {
                    what: "stdin".into(),
                    source,
                })?;
        }
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn cmd_queue(a: &QueueArgs, env: &mut Env<'_>) -> Result<u8, CtlError> {
    let parsed = if a.fids.is_empty() {
        let text = read_input(a.file.as_deref(), env)?;
        input::parse_json_lines(&text)
    } else {
        let items = input::items_from_args(
            &a.fids,
            a.action,
            a.archive_id,
            &a.cookies,
            a.flags,
            a.data.as_deref(),
        )
        .map_err(CtlError::Usage)?;
        ParsedInput {
            items,
            ..ParsedInput::default()
        }
    };
    send_items(parsed, a.fsname.clone(), IMPORT_BATCH as usize, "line", env)
}

fn cmd_import(a: &ImportArgs, env: &mut Env<'_>) -> Result<u8, CtlError> {
    let text = read_input(a.file.as_deref(), env)?;
    let parsed = input::parse_active_requests(&text);
    let fsname = a.fsname.clone().or_else(|| parsed.fsname.clone());
    send_items(parsed, fsname, a.batch as usize, "line", env)
}

/// Totals of a `queue` or `import` run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct QueueTotals {
    /// New requests.
    pub enqueued: u64,
    /// Already known (by the daemon, or repeated in the input).
    pub skipped: u64,
    /// Refused lines, by the parser or the daemon, in line order.
    pub rejected: Vec<LineError>,
}

/// Sends the items in batches and merges the replies, mapping each rejected
/// index back to its line.
pub fn queue_batches(
    d: &mut dyn Daemon,
    items: &[(usize, QueueItem)],
    fsname: Option<&str>,
    batch: usize,
) -> Result<QueueTotals, CtlError> {
    let mut t = QueueTotals::default();
    for chunk in items.chunks(batch.max(1)) {
        let req = Request::Queue(Queue {
            fsname: fsname.map(str::to_string),
            items: chunk.iter().map(|(_, q)| q.clone()).collect(),
        });
        let r: QueueReply = match call(d, req)? {
            Response::Queue(r) => r,
            other => return Err(unexpected(d, "queue", other)),
        };
        t.enqueued += r.enqueued;
        t.skipped += r.skipped;
        for rej in r.rejected {
            let line = chunk.get(rej.index as usize).map_or(0, |(l, _)| *l);
            t.rejected.push(LineError {
                line,
                reason: rej.reason,
            });
        }
    }
    Ok(t)
}

fn send_items(
    parsed: ParsedInput,
    fsname: Option<String>,
    batch: usize,
    what: &str,
    env: &mut Env<'_>,
) -> Result<u8, CtlError> {
    if parsed.items.is_empty() {
        if parsed.rejected.is_empty() {
            writeln!(env.stdout, "no requests in the input; nothing sent")?;
            return Ok(exit::OK);
        }
        for e in &parsed.rejected {
            writeln!(env.stdout, "rejected {what} {}: {}", e.line, e.reason)?;
        }
        return Err(CtlError::BadInput(format!(
            "no valid request in the input ({} line(s) rejected); nothing sent",
            parsed.rejected.len()
        )));
    }
    let mut d = (env.connect)()?;
    let mut totals = queue_batches(d.as_mut(), &parsed.items, fsname.as_deref(), batch)?;
    totals.skipped += parsed.duplicates.len() as u64;
    totals.rejected.extend(parsed.rejected);
    totals.rejected.sort_by_key(|e| e.line);
    for e in &totals.rejected {
        writeln!(env.stdout, "rejected {what} {}: {}", e.line, e.reason)?;
    }
    writeln!(
        env.stdout,
        "enqueued {}, skipped {} (already known), rejected {}",
        totals.enqueued,
        totals.skipped,
        totals.rejected.len()
    )?;
    Ok(if totals.rejected.is_empty() {
        exit::OK
    } else {
        exit::FAILURE
    })
}

fn running(st: &StatusReply) -> u64 {
    st.actions.iter().map(|a| a.running).sum()
}

fn waiting(st: &StatusReply) -> u64 {
    st.actions.iter().map(|a| a.waiting).sum()
}

/// A progress bar: `[#####.....] 5/10 done, 5 running, 12s`.
pub fn progress_bar(total: u64, left: u64, elapsed: Duration) -> String {
    const WIDTH: u64 = 30;
    let done = total.saturating_sub(left);
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
    format!(
        "[{}{}] {done}/{total} done, {left} running, {}",
        "#".repeat(filled as usize),
        ".".repeat((WIDTH - filled) as usize),
        format::duration(elapsed.as_millis() as u64)
    )
}

fn cmd_drain(a: &DrainArgs, env: &mut Env<'_>) -> Result<u8, CtlError> {
    let mut d = (env.connect)()?;
    let addr = d.addr().to_string();
    if !set_lock(d.as_mut(), true)? {
        writeln!(env.stderr, "coordinatoold at {addr} did not lock")?;
        return Ok(exit::FAILURE);
    }
    writeln!(
        env.stdout,
        "coordinatoold at {addr} locked; waiting for running requests to finish"
    )?;
    let start = Instant::now();
    let deadline = a.timeout.map(|s| start + Duration::from_secs(s));
    let interval = Duration::from_millis(a.interval_ms);
    let mut total = 0u64;
    let mut last_printed: Option<u64> = None;
    let st = loop {
        let st = status(d.as_mut())?;
        let left = running(&st);
        total = total.max(left);
        if env.tty {
            write!(
                env.stdout,
                "\r{}\x1b[K",
                progress_bar(total, left, start.elapsed())
            )?;
            env.stdout.flush()?;
        } else if last_printed != Some(left) {
            writeln!(
                env.stdout,
                "{left} request(s) running, {} elapsed",
                format::duration(start.elapsed().as_millis() as u64)
            )?;
            last_printed = Some(left);
        }
        if left == 0 {
            break st;
        }
        let now = Instant::now();
        if let Some(dl) = deadline
            && now >= dl
        {
            if env.tty {
                writeln!(env.stdout)?;
            }
            writeln!(
                env.stderr,
                "drain timed out after {}s with {left} request(s) still running; \
                 coordinatoold at {addr} stays locked (`coordinatool-ctl unlock` resumes)",
                a.timeout.unwrap_or(0)
            )?;
            return Ok(exit::DRAIN_TIMEOUT);
        }
        let nap = deadline.map_or(interval, |dl| interval.min(dl - now));
        std::thread::sleep(nap);
    };
    if env.tty {
        writeln!(env.stdout)?;
    }
    writeln!(
        env.stdout,
        "drained: nothing running ({} waiting request(s) stay queued)",
        waiting(&st)
    )?;
    if a.quit {
        match d.call(Request::Shutdown) {
            Ok(Response::ShuttingDown) | Err(ClientError::Closed { .. }) => {}
            Ok(other) => return Err(unexpected(d.as_ref(), "shutdown", other)),
            Err(e) => return Err(CtlError::from_client(&addr, e)),
        }
        writeln!(env.stdout, "coordinatoold at {addr} is shutting down")?;
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;
    use coordinatool_protocol::{ActionCounts, ErrorReply, Rejected, WireFid};
    use std::cell::RefCell;
    use std::rc::Rc;

    type Responder = Box<dyn FnMut(&Request) -> Result<Response, ClientError>>;

    struct Fake {
        log: Rc<RefCell<Vec<Request>>>,
        respond: Responder,
    }

    impl Daemon for Fake {
        fn call(&mut self, req: Request) -> Result<Response, ClientError> {
            let r = (self.respond)(&req);
            self.log.borrow_mut().push(req);
            r
        }
        fn addr(&self) -> &str {
            "fake:5123"
        }
    }

    struct Outcome {
        code: Result<u8, CtlError>,
        out: String,
        err: String,
        log: Vec<Request>,
    }

    fn run_with(args: &[&str], stdin: &str, tty: bool, respond: Responder) -> Outcome {
        let cli =
            Cli::try_parse_from(std::iter::once("coordinatool-ctl").chain(args.iter().copied()))
                .unwrap();
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut respond = Some(respond);
        let log2 = log.clone();
        let mut connect = move || -> Result<Box<dyn Daemon>, CtlError> {
            let respond = respond.take().expect("connected twice");
            Ok(Box::new(Fake {
                log: log2.clone(),
                respond,
            }))
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut input = stdin.as_bytes();
        let code = {
            let mut env = Env {
                stdout: &mut out,
                stderr: &mut err,
                stdin: &mut input,
                tty,
                stdin_tty: false,
                connect: &mut connect,
            };
            run(&cli.command, &mut env)
        };
        let log = log.borrow().clone();
        Outcome {
            code,
            out: String::from_utf8(out).unwrap(),
            err: String::from_utf8(err).unwrap(),
            log,
        }
    }

    fn status_with(running: u64, waiting: u64) -> Response {
        Response::Status(Box::new(StatusReply {
            actions: vec![ActionCounts {
                action: "ARCHIVE".into(),
                waiting,
                running,
                ..ActionCounts::default()
            }],
            ..StatusReply::default()
        }))
    }

    const SAMPLE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/testdata/active_requests/testfs0-MDT0000-100-archives.txt"
    );

    #[test]
    fn import_batches_and_maps_daemon_rejections_to_lines() {
        let mut text = std::fs::read_to_string(SAMPLE).unwrap();
        text.push_str("this line is garbage\n"); // line 102
        let second = text.lines().nth(2).unwrap().to_string();
        text.push_str(&second); // line 103: duplicate of line 3
        text.push('\n');
        let o = run_with(
            &["import", "--batch", "40"],
            &text,
            false,
            Box::new(|req| {
                let Request::Queue(q) = req else {
                    panic!("{req:?}")
                };
                // The daemon already knows the first item of each batch and
                // refuses the second.
                Ok(Response::Queue(QueueReply {
                    enqueued: q.items.len() as u64 - 2,
                    skipped: 1,
                    rejected: vec![Rejected {
                        index: 1,
                        reason: "bad dfid".into(),
                    }],
                }))
            }),
        );
        assert_eq!(o.code.unwrap(), exit::FAILURE);
        let sizes: Vec<usize> = o
            .log
            .iter()
            .map(|r| match r {
                Request::Queue(q) => {
                    assert_eq!(q.fsname.as_deref(), Some("testfs0"));
                    q.items.len()
                }
                _ => 0,
            })
            .collect();
        assert_eq!(sizes, vec![40, 40, 20]);
        // Batches start at lines 2, 42 and 82: index 1 is lines 3, 43 and 83.
        for needle in [
            "rejected line 3: bad dfid",
            "rejected line 43: bad dfid",
            "rejected line 83: bad dfid",
            "rejected line 102: field `token`",
            "enqueued 94, skipped 4 (already known), rejected 4",
        ] {
            assert!(o.out.contains(needle), "{needle:?} not in\n{}", o.out);
        }
    }

    #[test]
    fn import_of_only_bad_lines_is_a_data_error_and_sends_nothing() {
        let o = run_with(
            &["import"],
            "garbage\nfid=[0x1:0x1:0x0]\n",
            false,
            Box::new(|_| panic!("nothing must be sent")),
        );
        let e = o.code.unwrap_err();
        assert_eq!(e.exit_code(), exit::DATAERR);
        assert!(o.out.contains("rejected line 1") && o.out.contains("rejected line 2"));
        // An empty dump (the MDT has nothing active) is fine.
        let o = run_with(
            &["import"],
            "mdt.testfs0-MDT0000.hsm.active_requests=\n",
            false,
            Box::new(|_| panic!("nothing must be sent")),
        );
        assert_eq!(o.code.unwrap(), exit::OK);
        assert!(o.out.contains("nothing sent"));
    }

    #[test]
    fn queue_from_arguments_and_json_lines() {
        let o = run_with(
            &[
                "queue",
                "--action",
                "restore",
                "--archive",
                "3",
                "--cookie",
                "7",
                "[0x200000401:0x5:0x0]",
            ],
            "",
            false,
            Box::new(|_| {
                Ok(Response::Queue(QueueReply {
                    enqueued: 1,
                    ..QueueReply::default()
                }))
            }),
        );
        assert_eq!(o.code.unwrap(), exit::OK, "{}", o.out);
        let Request::Queue(q) = &o.log[0] else {
            panic!()
        };
        assert_eq!(q.items[0].archive_id, 3);
        assert_eq!(q.items[0].item.action, 21);
        assert_eq!(q.items[0].item.cookie, 7);
        assert!(o.out.contains("enqueued 1, skipped 0"));

        let o = run_with(
            &["queue", "--fsname", "testfs"],
            "{\"fid\":\"[0x1:0x1:0x0]\",\"action\":\"archive\",\"archive_id\":1,\"cookie\":1}\n{oops\n",
            false,
            Box::new(|_| {
                Ok(Response::Queue(QueueReply {
                    enqueued: 1,
                    ..QueueReply::default()
                }))
            }),
        );
        assert_eq!(o.code.unwrap(), exit::FAILURE);
        assert!(
            o.out.contains("rejected line 2: not valid JSON"),
            "{}",
            o.out
        );
        let Request::Queue(q) = &o.log[0] else {
            panic!()
        };
        assert_eq!(q.fsname.as_deref(), Some("testfs"));

        // Cookie count mismatch is a usage error before connecting.
        let o = run_with(
            &[
                "queue",
                "--action",
                "archive",
                "--archive",
                "1",
                "[0x1:0x1:0x0]",
            ],
            "",
            false,
            Box::new(|_| panic!("nothing must be sent")),
        );
        assert_eq!(o.code.unwrap_err().exit_code(), exit::USAGE);
    }

    #[test]
    fn daemon_errors_name_the_address() {
        let o = run_with(
            &[
                "queue",
                "--action",
                "archive",
                "--archive",
                "1",
                "--cookie",
                "1",
                "[0x1:0x1:0x0]",
            ],
            "",
            false,
            Box::new(|_| {
                Err(ClientError::Server {
                    op: "queue",
                    reply: ErrorReply::new(22, "Bad fsname"),
                })
            }),
        );
        let e = o.code.unwrap_err();
        assert_eq!(e.exit_code(), exit::FAILURE);
        let msg = e.to_string();
        assert!(
            msg.contains("fake:5123") && msg.contains("Bad fsname"),
            "{msg}"
        );
        let o = run_with(
            &["status"],
            "",
            false,
            Box::new(|_| {
                Err(ClientError::Closed {
                    addr: "fake:5123".into(),
                })
            }),
        );
        assert_eq!(o.code.unwrap_err().exit_code(), exit::UNAVAILABLE);
    }

    #[test]
    fn drain_waits_then_quits() {
        let mut polls = 0;
        let o = run_with(
            &["drain", "--quit", "--interval-ms", "10"],
            "",
            false,
            Box::new(move |req| match req {
                Request::Lock => Ok(Response::Locked { locked: true }),
                Request::Status => {
                    polls += 1;
                    Ok(status_with(3u64.saturating_sub(polls), 5))
                }
                Request::Shutdown => Ok(Response::ShuttingDown),
                other => panic!("{other:?}"),
            }),
        );
        assert_eq!(o.code.unwrap(), exit::OK, "{}{}", o.out, o.err);
        assert!(matches!(o.log[0], Request::Lock));
        assert!(matches!(o.log.last(), Some(Request::Shutdown)));
        for needle in [
            "locked",
            "2 request(s) running",
            "1 request(s) running",
            "drained: nothing running (5 waiting request(s) stay queued)",
            "shutting down",
        ] {
            assert!(o.out.contains(needle), "{needle:?} not in\n{}", o.out);
        }
        assert!(!o.out.contains('\r'), "no progress bar when not a tty");
    }

    #[test]
    fn drain_times_out_with_code_3_and_stays_locked() {
        let o = run_with(
            &["drain", "--timeout", "0", "--quit", "--interval-ms", "10"],
            "",
            true,
            Box::new(|req| match req {
                Request::Lock => Ok(Response::Locked { locked: true }),
                Request::Status => Ok(status_with(2, 0)),
                other => panic!("no {other:?} expected"),
            }),
        );
        assert_eq!(o.code.unwrap(), exit::DRAIN_TIMEOUT);
        assert!(
            o.out.contains("\r[") && o.out.contains("0/2 done, 2 running"),
            "{}",
            o.out
        );
        assert!(
            o.err.contains("timed out") && o.err.contains("stays locked"),
            "{}",
            o.err
        );
    }

    #[test]
    fn cancel_reports_each_fid_and_fails_on_unknown() {
        let f = |oid| WireFid {
            seq: 0x200000401,
            oid,
            ver: 0,
        };
        let o = run_with(
            &[
                "cancel",
                "[0x200000401:0x1:0x0]",
                "0x200000401:0x2:0x0",
                "[0x200000401:0x3:0x0]",
            ],
            "",
            false,
            Box::new(move |req| {
                let Request::Cancel(c) = req else { panic!() };
                assert_eq!(c.fids.len(), 3);
                Ok(Response::Cancel(CancelReply {
                    canceled: vec![f(1)],
                    forwarded: vec![f(2)],
                    not_found: vec![f(3)],
                }))
            }),
        );
        assert_eq!(o.code.unwrap(), exit::FAILURE);
        assert!(
            o.out.contains("[0x200000401:0x1:0x0]: canceled"),
            "{}",
            o.out
        );
        assert!(
            o.out
                .contains("[0x200000401:0x2:0x0]: running; cancel forwarded")
        );
        assert!(o.out.contains("[0x200000401:0x3:0x0]: no such request"));
        let o = run_with(&["cancel", "zz"], "", false, Box::new(|_| panic!()));
        assert_eq!(o.code.unwrap_err().exit_code(), exit::USAGE);
    }

    #[test]
    fn list_sends_filters_and_lock_unlock_report() {
        let o = run_with(
            &[
                "list",
                "--action",
                "remove",
                "--archive",
                "2",
                "--state",
                "waiting",
                "--json",
            ],
            "",
            false,
            Box::new(|_| Ok(Response::List(ListReply::default()))),
        );
        assert_eq!(o.code.unwrap(), exit::OK);
        let Request::List(l) = &o.log[0] else {
            panic!()
        };
        assert_eq!(l.action, Some(22));
        assert_eq!(l.archive_id, Some(2));
        assert_eq!(o.out, "");
        let o = run_with(
            &["unlock"],
            "",
            false,
            Box::new(|_| Ok(Response::Locked { locked: false })),
        );
        assert_eq!(o.code.unwrap(), exit::OK);
        assert!(o.out.contains("unlocked"));
        assert!(matches!(o.log[0], Request::Unlock));
    }

    #[test]
    fn progress_bar_shape() {
        assert_eq!(
            progress_bar(10, 5, Duration::from_secs(12)),
            format!(
                "[{}{}] 5/10 done, 5 running, 12s",
                "#".repeat(15),
                ".".repeat(15)
            )
        );
        assert!(progress_bar(0, 0, Duration::ZERO).starts_with(&format!("[{}]", "#".repeat(30))));
    }
}
