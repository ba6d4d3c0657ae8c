//! Hostile input (issue 11, "Robustness against hostile input"): well over a
//! hundred crafted cases against the CLI and the C ABI.
//!
//! Every case runs in its own process, under a memory limit (`RLIMIT_AS`, so a
//! memory bomb is a detected failure instead of eating the machine) and a time
//! limit (the process group is killed past it). A case passes when
//!
//! - the process exits 0 where success is expected, or exits non-zero with
//!   EXACTLY ONE stderr line starting with `error: ` where failure is
//!   expected (other stderr lines, such as warnings or clap's usage, are
//!   allowed), the line naming the parameter or file (`needles`);
//! - it was not killed by a signal (abort, segfault) and no stderr line
//!   contains `panicked`;
//! - on failure the requested output is exactly as before (absent, or the same
//!   bytes, mode, link or device), and no temporary file is left in the
//!   output folder (on success either).
//!
//! The C ABI cases are in `tests/hostile/capi_cases.py` (Python ctypes, standard
//! library only); each runs in its own `python3` process, so an abort in the
//! library is a signal here, not a dead harness.
//!
//! All failing cases are reported together in one assertion message. Set
//! `HOSTILE_REPORT=FILE` to also get a Markdown list of the failures, and
//! `HOSTILE_FILTER=SUBSTRING` to run only the cases whose name contains it.
//!
//! `cargo test --release --test hostile` (about a minute on 2 cores).

use std::collections::{BTreeSet, VecDeque};
use std::ffi::{CString, OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[path = "support/cdylib.rs"]
mod cdylib_path;
use cdylib_path::cdylib;

const BIN: &str = env!("CARGO_BIN_EXE_chatterbox-ort");
/// Address-space limit of every case's process.
const MEMORY_LIMIT: u64 = 6 << 30;
/// Cases that must be refused before any real work.
const PROMPT: u64 = 30;
/// Cases that load the engine and synthesize a few tokens.
const SYNTH: u64 = 120;
/// The library's text bound (given to `tests/hostile/capi_cases.py` as `HOSTILE_MAX_TEXT_BYTES`).
const MAX_TEXT_BYTES: usize = chatterbox_ort::limits::MAX_TEXT_BYTES;

/// `OsString` arguments from anything path- or string-like.
macro_rules! args {
    ($($x:expr),* $(,)?) => { vec![$(OsString::from($x)),*] };
}

// ---------------------------------------------------------------------------
// Cases, their outcome and the verdict
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Debug)]
enum Expect {
    /// Exit 0.
    Ok,
    /// Non-zero exit with one `error: ` line.
    Fail,
    /// Either of the above (no crash, no hang, clean output folder).
    Either,
}

/// What a successful run must have written at `output`.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Produces {
    Nothing,
    Wav,
    Voice,
}

/// How the process reports its result.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Judge {
    /// The CLI: exit status and stderr.
    Cli,
    /// The ctypes harness: its last stdout line is `{"pass": bool, "detail": str}`.
    Harness,
}

type Check = Box<dyn Fn(&Outcome) -> Result<(), String> + Send + Sync>;

struct Case {
    name: String,
    program: OsString,
    args: Vec<OsString>,
    /// The case's own folder (inputs are made here; watched for leftovers).
    dir: PathBuf,
    cwd: PathBuf,
    stdin: Option<Vec<u8>>,
    env: Vec<(OsString, Option<OsString>)>,
    expect: Expect,
    /// Each must occur in the error line (case-insensitive); `a|b` = either.
    needles: Vec<String>,
    /// None may occur anywhere in stderr (case-insensitive).
    forbid: Vec<String>,
    /// The output the command was asked to write (`-o`), as the process sees it.
    output: Option<PathBuf>,
    /// Where to inspect that output from here (differs under `/dev` isolation).
    probe: Option<PathBuf>,
    produces: Produces,
    timeout: Duration,
    /// Bind this folder over `/dev` in a private mount namespace.
    isolate_dev: Option<PathBuf>,
    /// Make this folder read-only (a read-only bind mount over itself in a private
    /// mount namespace), so that even root cannot write into it.
    read_only: Option<PathBuf>,
    judge: Judge,
    checks: Vec<Check>,
    /// Names that may appear in the case folder besides the output.
    allow_new: Vec<OsString>,
}

impl Case {
    /// Removes `flag` and its value from the arguments.
    fn without(mut self, flag: &str) -> Self {
        if let Some(i) = self.args.iter().position(|a| a == flag) {
            let end = (i + 2).min(self.args.len());
            self.args.drain(i..end);
        }
        self
    }
    fn ok(mut self) -> Self {
        self.expect = Expect::Ok;
        self
    }
    fn fail(mut self, needles: &[&str]) -> Self {
        self.expect = Expect::Fail;
        self.needles = needles.iter().map(|s| s.to_string()).collect();
        self
    }
    fn either(mut self) -> Self {
        self.expect = Expect::Either;
        self
    }
    fn forbid(mut self, words: &[&str]) -> Self {
        self.forbid.extend(words.iter().map(|s| s.to_string()));
        self
    }
    fn timeout(mut self, secs: u64) -> Self {
        self.timeout = Duration::from_secs(secs);
        self
    }
    fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }
    fn env(mut self, key: &str, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), Some(value.into())));
        self
    }
    fn check(mut self, f: impl Fn(&Outcome) -> Result<(), String> + Send + Sync + 'static) -> Self {
        self.checks.push(Box::new(f));
        self
    }
    fn produces(mut self, p: Produces) -> Self {
        self.produces = p;
        self
    }

    fn command_line(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.env {
            match v {
                Some(v) => s.push_str(&format!("{}={} ", k.to_string_lossy(), quote(v))),
                None => s.push_str(&format!("(unset {}) ", k.to_string_lossy())),
            }
        }
        s.push_str(&quote(&self.program));
        for a in &self.args {
            s.push(' ');
            s.push_str(&quote(a));
        }
        if let Some(i) = &self.stdin {
            s.push_str(&format!(" < ({} bytes)", i.len()));
        }
        if self.isolate_dev.is_some() {
            s.push_str("   [private /dev]");
        }
        if self.read_only.is_some() {
            s.push_str("   [read-only folder]");
        }
        s
    }
}

fn quote(s: &OsStr) -> String {
    let t = s.to_string_lossy();
    let shown: String = if t.len() > 120 {
        format!("{}...({} bytes)", &t[..t.floor_char_boundary(60)], t.len())
    } else {
        t.into_owned()
    };
    if !shown.is_empty()
        && shown
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        shown
    } else {
        format!("'{}'", shown.replace('\'', "'\\''"))
    }
}

struct Outcome {
    status: Option<ExitStatus>,
    timed_out: bool,
    elapsed: Duration,
    stdout: Vec<u8>,
    stderr: String,
    spawn_error: Option<String>,
}

impl Outcome {
    fn describe(&self) -> String {
        if let Some(e) = &self.spawn_error {
            return format!("could not start: {e}");
        }
        let st = match self.status {
            Some(s) => match (s.code(), s.signal()) {
                (Some(c), _) => format!("exit {c}"),
                (None, Some(sig)) => format!("killed by signal {sig} ({})", signal_name(sig)),
                _ => s.to_string(),
            },
            None => "no status".into(),
        };
        if self.timed_out {
            format!(
                "TIMED OUT ({st} after kill) after {:.1} s",
                self.elapsed.as_secs_f64()
            )
        } else {
            format!("{st} after {:.1} s", self.elapsed.as_secs_f64())
        }
    }

    fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect()
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGABRT => "SIGABRT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGKILL => "SIGKILL",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGTRAP => "SIGTRAP",
        _ => "signal",
    }
}

/// The state of a path, compared before and after a failing run.
#[derive(Debug, PartialEq)]
enum Snap {
    Absent,
    File { bytes: Vec<u8>, mode: u32 },
    Link(PathBuf),
    Dir(BTreeSet<OsString>),
    Device { char: bool, rdev: u64, mode: u32 },
    Other(String),
}

impl Snap {
    fn take(p: &Path) -> Snap {
        let Ok(m) = std::fs::symlink_metadata(p) else {
            return Snap::Absent;
        };
        let ft = m.file_type();
        if ft.is_symlink() {
            Snap::Link(std::fs::read_link(p).unwrap_or_default())
        } else if ft.is_file() {
            Snap::File {
                bytes: std::fs::read(p).unwrap_or_default(),
                mode: m.mode() & 0o7777,
            }
        } else if ft.is_dir() {
            Snap::Dir(list(p))
        } else if ft.is_char_device() || ft.is_block_device() {
            Snap::Device {
                char: ft.is_char_device(),
                rdev: m.rdev(),
                mode: m.mode() & 0o7777,
            }
        } else {
            Snap::Other(format!("{ft:?}"))
        }
    }

    fn short(&self) -> String {
        match self {
            Snap::Absent => "absent".into(),
            Snap::File { bytes, mode } => {
                format!("regular file, {} bytes, mode {mode:o}", bytes.len())
            }
            Snap::Link(t) => format!("symlink -> {}", t.display()),
            Snap::Dir(e) => format!("folder with {} entries", e.len()),
            Snap::Device { char, rdev, mode } => format!(
                "{} device {}:{}, mode {mode:o}",
                if *char { "character" } else { "block" },
                libc::major(*rdev),
                libc::minor(*rdev)
            ),
            Snap::Other(s) => s.clone(),
        }
    }
}

fn list(dir: &Path) -> BTreeSet<OsString> {
    std::fs::read_dir(dir)
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.file_name())).collect())
        .unwrap_or_default()
}

/// Runs one case's process: memory limit, own process group, time limit.
fn execute(case: &Case) -> Outcome {
    let mut cmd = Command::new(&case.program);
    cmd.args(&case.args)
        .current_dir(&case.cwd)
        .stdin(if case.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("CHATTERBOX_ORT_BUNDLE")
        .env_remove("CHATTERBOX_ORT_LOG")
        .env_remove("RUST_BACKTRACE")
        .env("NO_COLOR", "1")
        .process_group(0);
    for (k, v) in &case.env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let dev = case
        .isolate_dev
        .as_ref()
        .map(|p| CString::new(p.as_os_str().as_bytes()).expect("no NUL in a path"));
    let read_only = case
        .read_only
        .as_ref()
        .map(|p| CString::new(p.as_os_str().as_bytes()).expect("no NUL in a path"));
    // SAFETY: only async-signal-safe libc calls on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: MEMORY_LIMIT as libc::rlim_t,
                rlim_max: MEMORY_LIMIT as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if (dev.is_some() || read_only.is_some())
                && (libc::unshare(libc::CLONE_NEWNS) != 0
                    || libc::mount(
                        c"none".as_ptr(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(dir) = &read_only {
                if libc::mount(
                    dir.as_ptr(),
                    dir.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ) != 0
                    || libc::mount(
                        std::ptr::null(),
                        dir.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                        std::ptr::null(),
                    ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some(dev) = &dev {
                if libc::mount(
                    dev.as_ptr(),
                    c"/dev".as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let start = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                status: None,
                timed_out: false,
                elapsed: start.elapsed(),
                stdout: Vec::new(),
                stderr: String::new(),
                spawn_error: Some(e.to_string()),
            }
        }
    };
    let pid = child.id() as libc::pid_t;
    let feeder = case.stdin.clone().map(|data| {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let mut out_pipe = child.stdout.take().expect("stdout pipe");
    let mut err_pipe = child.stderr.take().expect("stderr pipe");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) => {}
            Err(_) => break None,
        }
        if start.elapsed() > case.timeout {
            timed_out = true;
            // SAFETY: signalling our own child's process group.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            break child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = start.elapsed();
    // Whatever the process started (bench workers) goes with it.
    // SAFETY: signalling our own child's process group.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    if let Some(f) = feeder {
        let _ = f.join();
    }
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    Outcome {
        status,
        timed_out,
        elapsed,
        stdout,
        stderr,
        spawn_error: None,
    }
}

/// Runs a case and returns its problems (empty: passed).
fn run_case(case: &Case) -> (Outcome, Vec<String>) {
    let probe = case.probe.clone().or_else(|| case.output.clone());
    let before = probe.as_deref().map(Snap::take);
    let mut watched: Vec<PathBuf> = vec![case.dir.clone()];
    if let Some(parent) = probe.as_deref().and_then(Path::parent) {
        if parent.is_dir() && parent != case.dir && parent.starts_with(&case.dir) {
            watched.push(parent.to_path_buf());
        }
    }
    let listed: Vec<BTreeSet<OsString>> = watched.iter().map(|d| list(d)).collect();

    let out = execute(case);
    let mut p = Vec::new();
    if let Some(e) = &out.spawn_error {
        p.push(format!("could not start the process: {e}"));
        return (out, p);
    }
    if out.timed_out {
        p.push(format!(
            "did not finish within {} s (killed)",
            case.timeout.as_secs()
        ));
    }
    if let Some(sig) = out.status.and_then(|s| s.signal()) {
        if !out.timed_out {
            p.push(format!("killed by signal {sig} ({})", signal_name(sig)));
        }
    }
    if out.stderr.lines().any(|l| l.contains("panicked")) {
        p.push("stderr reports a panic (`panicked`)".into());
    }
    let success = out.status.is_some_and(|s| s.success()) && !out.timed_out;
    let exited_nonzero = out.status.is_some_and(|s| s.code().is_some_and(|c| c != 0));
    let lower = out.stderr.to_lowercase();
    for f in &case.forbid {
        if lower.contains(&f.to_lowercase()) {
            p.push(format!("stderr mentions `{f}`"));
        }
    }

    match case.judge {
        Judge::Cli => {
            let errors = out.error_lines();
            if success {
                if case.expect == Expect::Fail {
                    p.push("exited 0, expected a refusal".into());
                }
                if !errors.is_empty() {
                    p.push(format!(
                        "exited 0 but printed {} `error: ` line(s)",
                        errors.len()
                    ));
                }
            } else if exited_nonzero {
                if case.expect == Expect::Ok {
                    p.push("failed, expected success".into());
                }
                if errors.len() != 1 {
                    p.push(format!(
                        "expected exactly one stderr line starting with `error: `, got {}",
                        errors.len()
                    ));
                }
                if let Some(line) = errors.first() {
                    let l = line.to_lowercase();
                    if case.expect != Expect::Ok {
                        for n in &case.needles {
                            if !n.split('|').any(|alt| l.contains(&alt.to_lowercase())) {
                                p.push(format!("the error line does not name `{n}`"));
                            }
                        }
                    }
                    if l.contains(".tmp") {
                        p.push("the error line names a temporary file (`.tmp`)".into());
                    }
                    for cause in [
                        "os error",
                        "no such file or directory",
                        "permission denied",
                        "is a directory",
                        "not a directory",
                    ] {
                        if l.matches(cause).count() > 1 {
                            p.push(format!(
                                "the error line repeats its cause (`{cause}` twice)"
                            ));
                        }
                    }
                }
            }
        }
        Judge::Harness => {
            let last = String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .unwrap_or("")
                .to_string();
            match serde_json::from_str::<serde_json::Value>(&last) {
                Ok(v) => {
                    if v["pass"] != serde_json::Value::Bool(true) {
                        p.push(v["detail"].as_str().unwrap_or("(no detail)").to_string());
                    }
                }
                Err(_) if success || exited_nonzero => {
                    p.push("the harness printed no verdict".into());
                }
                Err(_) => {}
            }
        }
    }

    // The output: unchanged on failure; present (and well-formed) on expected success.
    if let (Some(probe), Some(before)) = (&probe, &before) {
        let after = Snap::take(probe);
        if !success && after != *before {
            p.push(format!(
                "failed but changed its output {}: before {}, after {}",
                probe.display(),
                before.short(),
                after.short()
            ));
        }
        if success && case.judge == Judge::Cli {
            match case.produces {
                Produces::Wav => {
                    if let Err(e) = hound::WavReader::open(probe) {
                        p.push(format!(
                            "succeeded but {} is not a WAV: {e}",
                            probe.display()
                        ));
                    }
                }
                Produces::Voice => {
                    if !probe.is_file() {
                        p.push(format!(
                            "succeeded but wrote no voice file {}",
                            probe.display()
                        ));
                    }
                }
                Produces::Nothing => {}
            }
        }
    }
    // Nothing new in the watched folders but the output itself.
    let output_name = probe
        .as_deref()
        .and_then(Path::file_name)
        .map(OsStr::to_os_string);
    for (dir, was) in watched.iter().zip(&listed) {
        let now = list(dir);
        let new: Vec<String> = now
            .difference(was)
            .filter(|n| {
                let allowed_output =
                    (success && Some(*n) == output_name.as_ref()) || case.allow_new.contains(n);
                let judged_elsewhere =
                    case.judge == Judge::Harness && !n.to_string_lossy().ends_with(".tmp");
                !allowed_output && !judged_elsewhere
            })
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        if !new.is_empty() {
            p.push(format!(
                "left behind in {}: {}",
                dir.display(),
                new.join(", ")
            ));
        }
    }
    for c in &case.checks {
        if let Err(e) = c(&out) {
            p.push(e);
        }
    }
    (out, p)
}

/// Runs all cases on a few worker threads; returns the failures' reports and a
/// Markdown list of them.
fn run_all(suite: &str, cases: Vec<Case>) -> (usize, Vec<String>, String) {
    let filter = std::env::var("HOSTILE_FILTER").unwrap_or_default();
    let cases: Vec<Case> = cases
        .into_iter()
        .filter(|c| c.name.contains(&filter))
        .collect();
    let total = cases.len();
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 4);
    let queue = Mutex::new(cases.into_iter().collect::<VecDeque<_>>());
    let failures: Mutex<Vec<(String, String, String)>> = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let Some(case) = queue.lock().unwrap().pop_front() else {
                    break;
                };
                let (out, problems) = run_case(&case);
                eprintln!(
                    "[{suite}] {:<48} {:>6.1} s  {}",
                    case.name,
                    out.elapsed.as_secs_f64(),
                    if problems.is_empty() { "ok".to_string() } else { format!("FAIL: {}", problems.join("; ")) }
                );
                if !problems.is_empty() {
                    let tail: String = {
                        let t = out.stderr.trim_end();
                        let cut = t.len().saturating_sub(1500);
                        t[t.ceil_char_boundary(cut)..].to_string()
                    };
                    let report = format!(
                        "--- {} ---\n  expected: {}\n  command:  {}\n  result:   {}\n  problems: {}\n  stderr:\n{}\n",
                        case.name,
                        match case.judge {
                            Judge::Harness => "see the case in tests/hostile/capi_cases.py".to_string(),
                            Judge::Cli if case.needles.is_empty() => format!("{:?}", case.expect),
                            Judge::Cli => format!("{:?} naming {:?}", case.expect, case.needles),
                        },
                        case.command_line(),
                        out.describe(),
                        problems.join("\n            "),
                        tail.lines().map(|l| format!("    | {l}")).collect::<Vec<_>>().join("\n"),
                    );
                    let first_error = out
                        .error_lines()
                        .first()
                        .map(|l| l.to_string())
                        .unwrap_or_else(|| out.stderr.lines().last().unwrap_or("").to_string());
                    let md = format!(
                        "- **{}** ({}): {}. Command: `{}`. Stderr: `{}`",
                        case.name,
                        out.describe(),
                        problems.join("; "),
                        case.command_line().replace('`', "'"),
                        first_error.chars().take(300).collect::<String>().replace('`', "'")
                    );
                    failures.lock().unwrap().push((case.name.clone(), report, md));
                }
            });
        }
    });
    let mut f = failures.into_inner().unwrap();
    f.sort_by(|a, b| a.0.cmp(&b.0));
    eprintln!(
        "[{suite}] {} cases, {} failed, {:.0} s",
        total,
        f.len(),
        started.elapsed().as_secs_f64()
    );
    let md = f.iter().map(|x| x.2.clone()).collect::<Vec<_>>().join("\n");
    (total, f.into_iter().map(|x| x.1).collect(), md)
}

fn finish(suite: &str, total: usize, failures: Vec<String>, md: String) {
    if let Some(path) = std::env::var_os("HOSTILE_REPORT") {
        let path = PathBuf::from(format!("{}.{suite}.md", path.to_string_lossy()));
        let body = format!(
            "## {suite}: {} of {total} cases failed\n\n{md}\n",
            failures.len()
        );
        let _ = std::fs::write(path, body);
    }
    assert!(
        failures.is_empty(),
        "{} of {total} hostile {suite} cases failed:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// The scratch area and crafted inputs
// ---------------------------------------------------------------------------

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

struct Ctx {
    base: PathBuf,
    tiny: PathBuf,
    cpus: usize,
    root: bool,
}

impl Ctx {
    fn new(suite: &str) -> Ctx {
        let tiny = root().join("onnx/tiny");
        assert!(
            tiny.join("manifest.json").is_file(),
            "the tiny bundle {} is missing",
            tiny.display()
        );
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        // No word "bundle" in these paths: some cases check messages do not say it.
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("hostile")
            .join(format!("{suite}-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&base).expect("creating the scratch folder");
        Ctx {
            base,
            tiny,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            root: is_root(),
        }
    }

    fn cleanup(&self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }

    /// A bare case of `program` with its own empty folder.
    fn case(&self, name: &str, program: impl Into<OsString>, args: Vec<OsString>) -> Case {
        let dir = self.base.join(name);
        std::fs::create_dir_all(&dir).expect("creating a case folder");
        let mut c = Case {
            name: name.to_string(),
            program: program.into(),
            args,
            cwd: dir.clone(),
            dir,
            stdin: None,
            env: Vec::new(),
            expect: Expect::Either,
            needles: Vec::new(),
            forbid: Vec::new(),
            output: None,
            probe: None,
            produces: Produces::Nothing,
            timeout: Duration::from_secs(PROMPT),
            isolate_dev: None,
            read_only: None,
            judge: Judge::Cli,
            checks: Vec::new(),
            allow_new: Vec::new(),
        };
        c.output = explicit_output(&c.args, &c.cwd);
        c
    }

    fn dir(&self, name: &str) -> PathBuf {
        let d = self.base.join(name);
        std::fs::create_dir_all(&d).expect("creating a case folder");
        d
    }

    /// `say` with the tiny bundle, `-o <case>/out.wav` and a tiny synthesis, unless
    /// `extra` gives its own.
    fn say(&self, name: &str, extra: Vec<OsString>) -> Case {
        let dir = self.dir(name);
        let mut a = args!["say"];
        let mut produces = Produces::Nothing;
        if !has(&extra, "--bundle") {
            a.extend(args!["--bundle", &self.tiny]);
        }
        if !has(&extra, "-o") && !has(&extra, "--output") {
            a.extend(args!["-o", dir.join("out.wav")]);
            produces = Produces::Wav;
        }
        if !has(&extra, "--max-new-tokens") {
            a.extend(args!["--max-new-tokens", "5"]);
        }
        if !has(&extra, "--flow-steps") {
            a.extend(args!["--flow-steps", "1"]);
        }
        // One intra-op thread keeps parallel cases from oversubscribing the CPUs.
        if !has(&extra, "--threads") {
            a.extend(args!["--threads", "1"]);
        }
        a.extend(extra);
        let mut c = self.case(name, BIN, a);
        if c.output
            .as_deref()
            .is_some_and(|o| o.extension() == Some(OsStr::new("wav")))
        {
            produces = Produces::Wav;
        }
        c.produces = produces;
        c.timeout = Duration::from_secs(SYNTH);
        c
    }

    /// `voice` with the tiny bundle and `-o <case>/out.voice.safetensors` unless given.
    fn voice(&self, name: &str, extra: Vec<OsString>) -> Case {
        let dir = self.dir(name);
        let mut a = args!["voice"];
        if !has(&extra, "--bundle") {
            a.extend(args!["--bundle", &self.tiny]);
        }
        if !has(&extra, "-o") && !has(&extra, "--output") {
            a.extend(args!["-o", dir.join("out.voice.safetensors")]);
        }
        if !has(&extra, "--threads") {
            a.extend(args!["--threads", "1"]);
        }
        a.extend(extra);
        let mut c = self.case(name, BIN, a);
        c.produces = Produces::Voice;
        c.timeout = Duration::from_secs(SYNTH);
        c
    }

    /// `convert SOURCE` with the tiny bundle, `-o <case>/out.wav`, one flow step and one
    /// thread unless `extra` gives its own.
    fn convert(&self, name: &str, source: impl Into<OsString>, extra: Vec<OsString>) -> Case {
        let dir = self.dir(name);
        let mut a = args!["convert", source.into()];
        let mut produces = Produces::Nothing;
        if !has(&extra, "--bundle") {
            a.extend(args!["--bundle", &self.tiny]);
        }
        if !has(&extra, "-o") && !has(&extra, "--output") {
            a.extend(args!["-o", dir.join("out.wav")]);
            produces = Produces::Wav;
        }
        if !has(&extra, "--flow-steps") {
            a.extend(args!["--flow-steps", "1"]);
        }
        if !has(&extra, "--threads") {
            a.extend(args!["--threads", "1"]);
        }
        a.extend(extra);
        let mut c = self.case(name, BIN, a);
        if c.output
            .as_deref()
            .is_some_and(|o| o.extension() == Some(OsStr::new("wav")))
        {
            produces = Produces::Wav;
        }
        c.produces = produces;
        c.timeout = Duration::from_secs(SYNTH);
        c
    }

    fn info(&self, name: &str, extra: Vec<OsString>) -> Case {
        let mut a = args!["info"];
        if !has(&extra, "--bundle") {
            a.extend(args!["--bundle", &self.tiny]);
        }
        a.extend(extra);
        self.case(name, BIN, a)
    }

    /// `bench`, made cheap (one run of two tokens per mode) in case it runs at all.
    fn bench(&self, name: &str, extra: Vec<OsString>) -> Case {
        let mut a = args!["bench"];
        if !has(&extra, "--bundle") {
            a.extend(args!["--bundle", &self.tiny]);
        }
        for (flag, value) in [
            ("--runs", "1"),
            ("--tokens", "2"),
            ("--swap-cost-repeats", "1"),
            ("--warmup-tokens", "1"),
            ("--warmup-flow-steps", "1"),
            ("--mode-timeout-s", "20"),
        ] {
            if !has(&extra, flag) {
                a.extend(args![flag, value]);
            }
        }
        a.extend(extra);
        self.case(name, BIN, a)
    }

    /// A copy of the tiny bundle (hard links, else copies; no goldens) whose manifest
    /// `edit` changes. Files are never written through the links: replace them with
    /// [`replace_file`].
    fn bundle_copy(&self, name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
        let dst = self.dir(name);
        for entry in std::fs::read_dir(&self.tiny).expect("listing the tiny bundle") {
            let entry = entry.expect("a bundle entry");
            let src = entry.path();
            if !src.is_file() || entry.file_name() == "manifest.json" {
                continue;
            }
            let to = dst.join(entry.file_name());
            if std::fs::hard_link(&src, &to).is_err() {
                std::fs::copy(&src, &to).expect("copying a bundle file");
            }
        }
        let mut manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(self.tiny.join("manifest.json")).expect("reading the manifest"),
        )
        .expect("parsing the manifest");
        edit(&mut manifest);
        std::fs::write(
            dst.join("manifest.json"),
            serde_json::to_vec_pretty(&manifest).expect("manifest JSON"),
        )
        .expect("writing the manifest");
        dst
    }

    fn tensors(&self) -> Vec<Tensor> {
        read_safetensors(
            &std::fs::read(self.tiny.join("voice.safetensors")).expect("the bundle voice"),
        )
    }
}

/// Whether `flag` is among `args` (also as `flag=value`).
fn has(args: &[OsString], flag: &str) -> bool {
    args.iter().any(|a| {
        let a = a.to_string_lossy();
        a == flag || a.starts_with(&format!("{flag}="))
    })
}

/// The value of `-o`/`--output` in `args`, resolved against `cwd` (not `-`).
fn explicit_output(args: &[OsString], cwd: &Path) -> Option<PathBuf> {
    let mut it = args.iter();
    let mut found = None;
    while let Some(a) = it.next() {
        if a == "-o" || a == "--output" {
            found = it.next().cloned();
        } else if let Some(v) = a.to_str().and_then(|s| s.strip_prefix("--output=")) {
            found = Some(OsString::from(v));
        }
    }
    let f = found?;
    if f == "-" || f.is_empty() {
        return None;
    }
    Some(cwd.join(f))
}

/// Writes a file, first removing what is there (never writes through a hard link).
fn replace_file(path: &Path, bytes: &[u8]) {
    let _ = std::fs::remove_file(path);
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    replace_file(&p, bytes);
    p
}

/// A speech-like test signal: two tones and a slow amplitude wobble.
fn tone(seconds: f64, rate: u32) -> Vec<f32> {
    let n = (seconds * rate as f64) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / rate as f64;
            let env = 0.6 + 0.4 * (2.0 * std::f64::consts::PI * 3.0 * t).sin();
            (env * (0.3 * (2.0 * std::f64::consts::PI * 220.0 * t).sin()
                + 0.05 * (2.0 * std::f64::consts::PI * 1730.0 * t).sin())) as f32
        })
        .collect()
}

fn pcm16(samples: &[f32]) -> Vec<u8> {
    samples
        .iter()
        .flat_map(|&s| ((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes())
        .collect()
}

fn f32le(samples: &[f32]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// A canonical 44-byte-header WAV (`fmt ` of 16 bytes, then `data`) around `data`.
/// The header fields are what the arguments say, consistent or not.
fn wav(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
    let block = (channels as u32 * (bits as u32).div_ceil(8)) as u16;
    let mut v = Vec::with_capacity(44 + data.len());
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&tag.to_le_bytes());
    v.extend_from_slice(&channels.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&rate.wrapping_mul(block as u32).to_le_bytes());
    v.extend_from_slice(&block.to_le_bytes());
    v.extend_from_slice(&bits.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v.extend_from_slice(data);
    v
}

fn wav16(samples: &[f32], rate: u32) -> Vec<u8> {
    wav(1, 1, rate, 16, &pcm16(samples))
}

fn wavf32(samples: &[f32], rate: u32) -> Vec<u8> {
    wav(3, 1, rate, 32, &f32le(samples))
}

fn set_u16(v: &mut [u8], at: usize, x: u16) {
    v[at..at + 2].copy_from_slice(&x.to_le_bytes());
}

fn set_u32(v: &mut [u8], at: usize, x: u32) {
    v[at..at + 4].copy_from_slice(&x.to_le_bytes());
}

/// One tensor of a safetensors file.
#[derive(Clone)]
struct Tensor {
    name: String,
    dtype: String,
    shape: Vec<u64>,
    data: Vec<u8>,
}

fn read_safetensors(bytes: &[u8]) -> Vec<Tensor> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).expect("a safetensors header");
    let body = &bytes[8 + n..];
    let mut out: Vec<Tensor> = header
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| {
            let o = v["data_offsets"].as_array().unwrap();
            let (a, b) = (
                o[0].as_u64().unwrap() as usize,
                o[1].as_u64().unwrap() as usize,
            );
            Tensor {
                name: k.clone(),
                dtype: v["dtype"].as_str().unwrap().to_string(),
                shape: v["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap())
                    .collect(),
                data: body[a..b].to_vec(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// A voice file: the voice metadata (unless `meta` says otherwise) and `tensors`;
/// the header is padded with spaces so the file is `total` bytes when given.
fn voice_file(
    tensors: &[Tensor],
    meta: Option<serde_json::Value>,
    total: Option<usize>,
) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert(
        "__metadata__".into(),
        meta.unwrap_or_else(
            || serde_json::json!({"format": "chatterbox-ort-voice", "version": "1"}),
        ),
    );
    let mut body = Vec::new();
    for t in tensors {
        let start = body.len();
        body.extend_from_slice(&t.data);
        header.insert(
            t.name.clone(),
            serde_json::json!({"dtype": t.dtype, "shape": t.shape, "data_offsets": [start, body.len()]}),
        );
    }
    let mut h = serde_json::to_vec(&header).unwrap();
    let want = match total {
        Some(total) => total - 8 - body.len(),
        None => h.len().div_ceil(8) * 8,
    };
    assert!(want >= h.len(), "voice file too small for its header");
    h.resize(want, b' ');
    let mut v = Vec::new();
    v.extend_from_slice(&(h.len() as u64).to_le_bytes());
    v.extend_from_slice(&h);
    v.extend_from_slice(&body);
    v
}

fn edit_tensor(ts: &mut [Tensor], name: &str, f: impl FnOnce(&mut Tensor)) {
    f(ts.iter_mut()
        .find(|t| t.name == name)
        .expect("a voice tensor"));
}

fn wav_check(path: PathBuf) -> impl Fn(&Outcome) -> Result<(), String> + Send + Sync {
    move |_o: &Outcome| {
        hound::WavReader::open(&path)
            .map(|_| ())
            .map_err(|e| format!("{} is not a readable WAV: {e}", path.display()))
    }
}

fn unchanged(
    path: PathBuf,
    bytes: Vec<u8>,
) -> impl Fn(&Outcome) -> Result<(), String> + Send + Sync {
    move |_o: &Outcome| match std::fs::read(&path) {
        Ok(now) if now == bytes => Ok(()),
        Ok(now) => Err(format!(
            "input {} changed ({} -> {} bytes)",
            path.display(),
            bytes.len(),
            now.len()
        )),
        Err(e) => Err(format!("input {} is gone: {e}", path.display())),
    }
}

fn still_char_device(
    path: PathBuf,
    rdev: u64,
) -> impl Fn(&Outcome) -> Result<(), String> + Send + Sync {
    move |_o: &Outcome| match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_char_device() && m.rdev() == rdev => Ok(()),
        Ok(m) => Err(format!(
            "{} is no longer the character device it was: {:?}, rdev {:#x}",
            path.display(),
            m.file_type(),
            m.rdev()
        )),
        Err(e) => Err(format!("{} is gone: {e}", path.display())),
    }
}

fn mknod_char(path: &Path, major: u32, minor: u32, mode: u32) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    let r = unsafe {
        libc::mknod(
            c.as_ptr(),
            libc::S_IFCHR | mode,
            libc::makedev(major, minor),
        )
    };
    assert_eq!(
        r,
        0,
        "mknod {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

// ---------------------------------------------------------------------------
// The CLI cases
// ---------------------------------------------------------------------------

fn cli_cases(x: &Ctx) -> Vec<Case> {
    let mut v: Vec<Case> = Vec::new();
    let max_threads = 4 * x.cpus;
    let hi = "Hi there.";

    // ---- 1. Unbounded resources -------------------------------------------------
    for cmd in ["say", "voice", "info"] {
        let name = format!("threads_100000_{cmd}");
        let c = match cmd {
            "say" => x.say(&name, args![hi, "--threads", "100000"]),
            "voice" => {
                let d = x.dir(&name);
                let r = write(&d, "ref.wav", &wav16(&tone(1.0, 16_000), 16_000));
                x.voice(&name, args![&r, "--threads", "100000"])
            }
            _ => x.info(&name, args!["--threads", "100000"]),
        };
        v.push(c.fail(&["threads"]).timeout(PROMPT));
    }
    v.push(
        x.info("info_threads_0", args!["--threads", "0"])
            .fail(&["threads"]),
    );
    v.push(
        x.say("threads_0", args![hi, "--threads", "0"])
            .fail(&["threads"])
            .timeout(PROMPT),
    );
    v.push(
        x.say(
            "threads_at_bound_4x_cpus",
            args![hi, "--threads", max_threads.to_string()],
        )
        .ok(),
    );
    v.push(
        x.say(
            "threads_past_bound",
            args![hi, "--threads", (max_threads + 1).to_string()],
        )
        .fail(&["threads"])
        .timeout(PROMPT),
    );
    v.push(
        x.say("threads_negative", args![hi, "--threads", "-1"])
            .fail(&["threads"])
            .timeout(PROMPT),
    );
    v.push(
        x.say("threads_not_a_number", args![hi, "--threads", "many"])
            .fail(&["threads"])
            .timeout(PROMPT),
    );
    v.push(
        x.say(
            "threads_u64_overflow",
            args![hi, "--threads", "18446744073709551616"],
        )
        .fail(&["threads"])
        .timeout(PROMPT),
    );

    let fs = "flow_steps|flow-steps";
    for (name, val) in [
        ("flow_steps_u64_max", "18446744073709551615"),
        ("flow_steps_1e9", "1000000000"),
        ("flow_steps_100000", "100000"),
        ("flow_steps_101", "101"),
        ("flow_steps_0", "0"),
        ("flow_steps_negative", "-1"),
        ("flow_steps_u64_overflow", "18446744073709551616"),
        ("flow_steps_fraction", "2.5"),
    ] {
        v.push(
            x.say(name, args![hi, "--flow-steps", val])
                .fail(&[fs])
                .timeout(PROMPT),
        );
    }
    v.push(
        x.say("flow_steps_2_valid", args![hi, "--flow-steps", "2"])
            .ok(),
    );
    {
        let b = x.bundle_copy("bndl_flow_steps_1e9", |m| {
            m["generation"]["flow_steps"] = 1_000_000_000.into()
        });
        // No --flow-steps: the manifest's default applies.
        let c = x
            .say("manifest_flow_steps_1e9", args![hi, "--bundle", &b])
            .without("--flow-steps");
        v.push(c.fail(&[fs]).timeout(PROMPT));
    }
    let mnt = "max_new_tokens|max-new-tokens";
    v.push(
        x.say(
            "max_new_tokens_u64_max",
            args![hi, "--max-new-tokens", "18446744073709551615"],
        )
        .fail(&[mnt])
        .timeout(PROMPT),
    );
    v.push(
        x.say(
            "max_new_tokens_1e9",
            args![hi, "--max-new-tokens", "1000000000"],
        )
        .fail(&[mnt])
        .timeout(PROMPT),
    );
    v.push(
        x.say("max_new_tokens_0", args![hi, "--max-new-tokens", "0"])
            .fail(&[mnt])
            .timeout(PROMPT),
    );
    v.push(
        x.say(
            "max_new_tokens_negative",
            args![hi, "--max-new-tokens", "-5"],
        )
        .fail(&[mnt])
        .timeout(PROMPT),
    );
    {
        let b = x.bundle_copy("bndl_max_new_tokens_1e18", |m| {
            m["generation"]["max_new_tokens"] = 1_000_000_000_000_000_000u64.into()
        });
        let c = x
            .say("manifest_max_new_tokens_1e18", args![hi, "--bundle", &b])
            .without("--max-new-tokens");
        v.push(c.fail(&[mnt]).timeout(PROMPT));
    }
    v.push(
        x.say(
            "seed_u64_max_valid",
            args![hi, "--seed", "18446744073709551615"],
        )
        .ok(),
    );
    v.push(
        x.say(
            "seed_u64_overflow",
            args![hi, "--seed", "18446744073709551616"],
        )
        .fail(&["seed"])
        .timeout(PROMPT),
    );
    v.push(
        x.say("seed_negative", args![hi, "--seed", "-1"])
            .fail(&["seed"])
            .timeout(PROMPT),
    );

    // ---- numeric sampling options ----------------------------------------------------
    let numeric: &[(&str, &str, &str)] = &[
        ("exaggeration", "nan", "exaggeration"),
        ("exaggeration", "inf", "exaggeration"),
        ("exaggeration", "-inf", "exaggeration"),
        ("exaggeration", "loud", "exaggeration"),
        ("cfg-weight", "-1", "cfg_weight|cfg-weight"),
        ("cfg-weight", "nan", "cfg_weight|cfg-weight"),
        ("cfg-weight", "inf", "cfg_weight|cfg-weight"),
        ("temperature", "0", "temperature"),
        ("temperature", "-1", "temperature"),
        ("temperature", "nan", "temperature"),
        ("temperature", "inf", "temperature"),
        ("min-p", "1", "min_p|min-p"),
        ("min-p", "-0.1", "min_p|min-p"),
        ("min-p", "nan", "min_p|min-p"),
        ("top-p", "0", "top_p|top-p"),
        ("top-p", "1.5", "top_p|top-p"),
        ("top-p", "nan", "top_p|top-p"),
        (
            "repetition-penalty",
            "0",
            "repetition_penalty|repetition-penalty",
        ),
        (
            "repetition-penalty",
            "-1",
            "repetition_penalty|repetition-penalty",
        ),
        (
            "repetition-penalty",
            "nan",
            "repetition_penalty|repetition-penalty",
        ),
        (
            "repetition-penalty",
            "inf",
            "repetition_penalty|repetition-penalty",
        ),
    ];
    for (opt, val, needle) in numeric {
        let name = format!(
            "{}_{}",
            opt.replace('-', "_"),
            val.replace('-', "neg").replace('.', "_")
        );
        v.push(
            x.say(&name, args![hi, format!("--{opt}"), *val])
                .fail(&[needle])
                .forbid(&["-- -"])
                .timeout(PROMPT),
        );
    }
    // The issue's case: a negative value is the validation error, not clap's `-- -1` tip.
    v.push(
        x.say("exaggeration_negative", args![hi, "--exaggeration", "-1"])
            .fail(&["exaggeration"])
            .forbid(&["-- -1"])
            .timeout(PROMPT),
    );
    v.push(
        x.say(
            "temperature_tiny_1e-30",
            args![hi, "--temperature", "1e-30"],
        )
        .either(),
    );
    v.push(
        x.say(
            "exaggeration_huge_1e30",
            args![hi, "--exaggeration", "1e30"],
        )
        .either(),
    );
    v.push(
        x.say(
            "repetition_penalty_huge_1e38",
            args![hi, "--repetition-penalty", "1e38"],
        )
        .either(),
    );

    // ---- text ----------------------------------------------------------------------
    v.push(
        x.say("text_empty", args![""])
            .fail(&["empty|text"])
            .timeout(PROMPT),
    );
    v.push(
        x.say("text_whitespace_only", args![" \t \n  "])
            .fail(&["empty|whitespace"])
            .timeout(PROMPT),
    );
    v.push(
        x.say(
            "text_arg_invalid_utf8",
            vec![OsString::from_vec(b"caf\xe9 \xff".to_vec())],
        )
        .fail(&["utf-8|utf8"])
        .timeout(PROMPT),
    );
    {
        let d = x.dir("text_file_invalid_utf8");
        let f = write(&d, "latin1.txt", b"caf\xe9 au lait");
        v.push(
            x.say("text_file_invalid_utf8", args!["--text-file", &f])
                .fail(&["latin1.txt"])
                .timeout(PROMPT),
        );
    }
    v.push(
        x.say("text_stdin_invalid_utf8", args!["--text-file", "-"])
            .stdin(b"\xff\xfe\xfd bad".to_vec())
            .fail(&["stdin"])
            .timeout(PROMPT),
    );
    v.push(
        x.say("text_stdin_empty", args!["--text-file", "-"])
            .stdin(Vec::new())
            .fail(&["empty|text"])
            .timeout(PROMPT),
    );
    {
        let d = x.dir("text_file_missing");
        v.push(
            x.say(
                "text_file_missing",
                args!["--text-file", d.join("nope.txt")],
            )
            .fail(&["nope.txt"])
            .timeout(PROMPT),
        );
        let d = x.dir("text_file_is_a_folder");
        let sub = d.join("chapter");
        std::fs::create_dir_all(&sub).unwrap();
        v.push(
            x.say("text_file_is_a_folder", args!["--text-file", &sub])
                .fail(&["chapter"])
                .timeout(PROMPT),
        );
    }
    v.push(
        x.say("text_file_dev_zero", args!["--text-file", "/dev/zero"])
            .fail(&["/dev/zero|text"])
            .timeout(PROMPT),
    );
    v.push(
        x.say(
            "text_file_dev_urandom",
            args!["--text-file", "/dev/urandom"],
        )
        .fail(&["/dev/urandom|text"])
        .timeout(PROMPT),
    );
    {
        // MAX_TEXT_BYTES (the bound) are accepted: two short sentences and blank padding
        // between them (none at the ends, so trimming does not change the length).
        let pad = |n: usize| format!("Hi there.{}Bye.", " ".repeat(n - 13));
        let d = x.dir("text_at_bound");
        let f = write(&d, "bound.txt", pad(MAX_TEXT_BYTES).as_bytes());
        v.push(x.say("text_at_bound", args!["--text-file", &f]).ok());
        let t = pad(MAX_TEXT_BYTES + 1);
        let d = x.dir("text_past_bound_by_one_byte");
        let f = write(&d, "past.txt", t.as_bytes());
        v.push(
            x.say("text_past_bound_by_one_byte", args!["--text-file", &f])
                .fail(&["text"])
                .timeout(PROMPT),
        );
        // Past the bound on stdin (one argv string cannot exceed 128 KiB on Linux).
        let long: String = "Words go here. ".repeat(MAX_TEXT_BYTES / 15 + 1);
        v.push(
            x.say("text_stdin_past_bound", args!["--text-file", "-"])
                .stdin(long.into_bytes())
                .fail(&["text"])
                .timeout(PROMPT),
        );
        let d = x.dir("text_file_10_mb");
        let f = write(
            &d,
            "huge.txt",
            "All work and no play. ".repeat(500_000).as_bytes(),
        );
        v.push(
            x.say("text_file_10_mb", args!["--text-file", &f])
                .fail(&["text|huge.txt"])
                .timeout(PROMPT),
        );
    }
    v.push(
        x.say("text_with_nul_bytes", args!["--text-file", "-"])
            .stdin(b"Hello\0world.\0".to_vec())
            .either(),
    );
    v.push(x.say("text_only_punctuation", args!["?!...;:--"]).either());
    v.push(
        x.say("text_with_bom", args!["\u{feff}Hello there."])
            .either(),
    );
    v.push(
        x.say("text_stdin_10_mb", args!["--text-file", "-"])
            .stdin("Read this aloud. ".repeat(600_000))
            .fail(&["stdin|text"])
            .timeout(PROMPT),
    );
    {
        let d = x.dir("inputs_symlink_loop");
        symlink("loop-b", d.join("loop-a")).unwrap();
        symlink("loop-a", d.join("loop-b")).unwrap();
        let c = x.say(
            "voice_wav_symlink_loop",
            args!["Hi there.", "--voice", d.join("loop-a")],
        );
        v.push(c.fail(&["loop-a"]).timeout(PROMPT));
        let c = x.say(
            "text_file_symlink_loop",
            args!["--text-file", d.join("loop-a")],
        );
        v.push(c.fail(&["loop-a"]).timeout(PROMPT));
        let d = x.dir("output_symlink_loop");
        symlink("loop-b.wav", d.join("loop-a.wav")).unwrap();
        symlink("loop-a.wav", d.join("loop-b.wav")).unwrap();
        let c = x.say(
            "output_symlink_loop",
            args!["Hi there.", "-o", d.join("loop-a.wav")],
        );
        v.push(c.fail(&["loop-a.wav"]));
        let d = x.dir("output_symlink_into_missing_folder");
        symlink("gone/out.wav", d.join("link.wav")).unwrap();
        let c = x.say(
            "output_symlink_into_missing_folder",
            args!["Hi there.", "-o", d.join("link.wav")],
        );
        v.push(c.fail(&["link.wav|gone/out.wav"]));
    }
    v.push(
        x.say(
            "text_emoji_and_cjk",
            args!["\u{1F600}\u{1F4A9} \u{4F60}\u{597D}\u{4E16}\u{754C} \u{202E}abc"],
        )
        .either(),
    );
    v.push(
        x.say(
            "text_control_characters",
            args!["Hi\u{7}\u{1b}[31m there\u{8}\u{0b}."],
        )
        .either(),
    );
    v.push(
        x.say("text_one_5000_char_word", args!["a".repeat(5_000)])
            .either(),
    );
    {
        let d = x.dir("text_both_arg_and_file");
        let f = write(&d, "t.txt", b"Hello.");
        v.push(
            x.say("text_both_arg_and_file", args![hi, "--text-file", &f])
                .fail(&["text"])
                .timeout(PROMPT),
        );
    }
    v.push(
        x.say("text_none_given", args![])
            .fail(&["text"])
            .timeout(PROMPT),
    );

    // ---- 2. sizes read from files, WAV input ---------------------------------------
    wav_cases(x, &mut v);
    // ---- voice files -----------------------------------------------------------------
    voice_file_cases(x, &mut v);
    // ---- bundles, residency, providers ----------------------------------------------
    bundle_cases(x, &mut v);
    // ---- 3. outputs -------------------------------------------------------------------
    output_cases(x, &mut v);
    // ---- voice conversion ------------------------------------------------------------
    convert_cases(x, &mut v);
    turbo_cases(x, &mut v);

    // ---- 5. commands that used to exit 0 -----------------------------------------------
    v.push(
        x.bench("bench_modes_unknown", args!["--modes", "foo"])
            .fail(&["foo|modes"]),
    );
    v.push(
        x.bench("bench_modes_empty", args!["--modes", ""])
            .fail(&["modes"]),
    );
    v.push(
        x.bench("bench_modes_one_unknown", args!["--modes", "resident,foo"])
            .fail(&["foo"]),
    );
    {
        let d = x.dir("bench_bundle_missing");
        v.push(
            x.bench(
                "bench_bundle_missing",
                args!["--bundle", d.join("no-such-model"), "--modes", "resident"],
            )
            .fail(&["no-such-model"]),
        );
    }
    v.push(
        x.bench(
            "bench_text_empty",
            args!["--text", "", "--modes", "resident"],
        )
        .fail(&["text"]),
    );
    v.push(
        x.bench(
            "bench_rounds_0",
            args!["--rounds", "0", "--modes", "resident"],
        )
        .fail(&["rounds"]),
    );
    v.push(
        x.bench("bench_runs_0", args!["--runs", "0", "--modes", "resident"])
            .fail(&["runs"]),
    );
    v.push(
        x.bench(
            "bench_tokens_0",
            args!["--tokens", "0", "--modes", "resident"],
        )
        .fail(&["tokens"]),
    );
    {
        let d = x.dir("bench_from_json_missing");
        v.push(
            x.bench(
                "bench_from_json_missing",
                args!["--from-json", d.join("old.json")],
            )
            .fail(&["old.json"]),
        );
        let d = x.dir("bench_from_json_garbage");
        let f = write(&d, "report.json", b"{\"schema\": 42, \"results\": [");
        v.push(
            x.bench("bench_from_json_garbage", args!["--from-json", &f])
                .fail(&["report.json"]),
        );
    }
    v.push(
        x.info("info_provider_unknown", args!["--provider", "foo"])
            .fail(&["foo|provider"]),
    );
    v.push(
        x.info("info_residency_unknown", args!["--residency", "foo"])
            .fail(&["foo|residency"]),
    );
    {
        let d = x.dir("info_bundle_missing");
        v.push(
            x.info("info_bundle_missing", args!["--bundle", d.join("gone")])
                .fail(&["gone"]),
        );
    }

    // ---- 6. messages, no bundle fallback ------------------------------------------------
    {
        // A folder with no onnx/tiny, no --bundle, no CHATTERBOX_ORT_BUNDLE.
        let c = x.say("no_bundle_anywhere", args![hi]).without("--bundle");
        v.push(c.fail(&["bundle"]).timeout(PROMPT));
        let d = x.dir("env_bundle_missing");
        let c = x
            .say("env_bundle_missing", args![hi])
            .without("--bundle")
            .env("CHATTERBOX_ORT_BUNDLE", d.join("elsewhere"));
        v.push(c.fail(&["elsewhere"]).timeout(PROMPT));
    }
    v.push(
        x.case("unknown_subcommand", BIN, args!["speak", hi])
            .fail(&["speak"]),
    );
    v.push(
        x.say("unknown_flag", args![hi, "--volume", "11"])
            .fail(&["volume"])
            .timeout(PROMPT),
    );
    v.push(x.case("no_arguments", BIN, args![]).fail(&[]));
    v
}

fn wav_cases(x: &Ctx, v: &mut Vec<Case>) {
    let good = wav16(&tone(1.0, 16_000), 16_000);
    // (name, bytes, expect); failures must name the file.
    let mut items: Vec<(&str, Vec<u8>, Expect)> = Vec::new();
    items.push(("wav_truncated_header", good[..20].to_vec(), Expect::Fail));
    let mut w = good.clone();
    set_u16(&mut w, 22, 0);
    items.push(("wav_zero_channels", w, Expect::Fail));
    let mut w = good.clone();
    set_u32(&mut w, 24, 0);
    items.push(("wav_zero_hz", w, Expect::Fail));
    items.push((
        "wav_float_64bit",
        wav(3, 1, 16_000, 64, &vec![0u8; 16_000 * 8]),
        Expect::Fail,
    ));
    items.push((
        "wav_int_4bit",
        wav(1, 1, 16_000, 4, &vec![0x55u8; 16_000]),
        Expect::Fail,
    ));
    items.push((
        "wav_int_0bit",
        wav(1, 1, 16_000, 0, &vec![0u8; 16_000]),
        Expect::Fail,
    ));
    items.push((
        "wav_int_33bit",
        wav(1, 1, 16_000, 33, &vec![0u8; 16_000 * 5]),
        Expect::Fail,
    ));
    items.push((
        "wav_65535_channels",
        wav(1, 65_535, 16_000, 16, &vec![0x11u8; 65_535 * 2 * 4]),
        Expect::Fail,
    ));
    items.push((
        "wav_unknown_format_tag",
        wav(0x1234, 1, 16_000, 16, &pcm16(&tone(1.0, 16_000))),
        Expect::Fail,
    ));
    items.push((
        "wav_not_a_wav",
        b"Dear diary, today I recorded nothing.\n".repeat(500),
        Expect::Fail,
    ));
    items.push(("wav_empty_file", Vec::new(), Expect::Fail));
    items.push(("wav_only_riff_magic", b"RIFF".to_vec(), Expect::Fail));
    let mut w = good.clone();
    set_u32(&mut w, 16, 0xFFFF_FFF0);
    items.push(("wav_fmt_chunk_claims_4gb", w, Expect::Fail));
    {
        let mut w = good[..36].to_vec();
        w.extend_from_slice(b"LIST");
        w.extend_from_slice(&0xFFFF_FF00u32.to_le_bytes());
        w.extend_from_slice(&good[36..]);
        items.push(("wav_junk_chunk_claims_4gb", w, Expect::Fail));
    }
    let mut x1 = tone(1.0, 16_000);
    x1[4000] = f32::NAN;
    items.push(("wav_float_nan_sample", wavf32(&x1, 16_000), Expect::Fail));
    let mut x2 = tone(1.0, 16_000);
    x2[10] = f32::INFINITY;
    items.push(("wav_float_inf_sample", wavf32(&x2, 16_000), Expect::Fail));
    let mut x3 = tone(1.0, 16_000);
    x3[100] = 1001.0;
    items.push((
        "wav_sample_magnitude_1001",
        wavf32(&x3, 16_000),
        Expect::Fail,
    ));
    items.push((
        "wav_rate_3999_hz",
        wav16(&tone(1.0, 3_999), 3_999),
        Expect::Fail,
    ));
    items.push((
        "wav_rate_384001_hz",
        wav16(&tone(1.0, 384_001), 384_001),
        Expect::Fail,
    ));
    items.push((
        "wav_too_short_0_3_s",
        wav16(&tone(0.3, 16_000), 16_000),
        Expect::Fail,
    ));
    items.push((
        "wav_301_seconds",
        wav(1, 1, 4_000, 8, &vec![128u8; 4_000 * 301]),
        Expect::Fail,
    ));
    {
        // 55 hours at 1 Hz (about 400 KB): a real file, resampling it would need ~13 GB.
        let d: Vec<f32> = (0..198_000).map(|i| ((i % 7) as f32 - 3.0) * 0.1).collect();
        items.push(("wav_1hz_55_hours", wav16(&d, 1), Expect::Fail));
    }
    {
        // 7 KB of data whose header claims one hour at 16 kHz.
        let mut w = wav16(&tone(0.22, 16_000), 16_000);
        set_u32(&mut w, 40, 3600 * 16_000 * 2);
        set_u32(&mut w, 4, 36 + 3600 * 16_000 * 2);
        items.push(("wav_7kb_claims_one_hour", w, Expect::Fail));
    }
    {
        let mut w = good.clone();
        set_u32(&mut w, 4, 0xFFFF_FFFF);
        items.push(("wav_riff_size_lies", w, Expect::Either));
        let mut w = good.clone();
        set_u16(&mut w, 32, 0);
        items.push(("wav_block_align_zero", w, Expect::Either));
        let mut w = good.clone();
        set_u32(&mut w, 28, 7);
        items.push(("wav_byte_rate_lies", w, Expect::Either));
        items.push((
            "wav_all_silence",
            wav16(&vec![0.0; 16_000], 16_000),
            Expect::Either,
        ));
        let sq: Vec<f32> = (0..16_000)
            .map(|i| if (i / 40) % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        items.push(("wav_full_scale_square", wav16(&sq, 16_000), Expect::Either));
        let mut w = wav16(&tone(2.0, 16_000), 16_000);
        w.truncate(44 + 16_000 * 2); // the data chunk says 2 s, 1 s is there
        items.push(("wav_data_chunk_cut_short", w, Expect::Ok));
    }
    items.push((
        "wav_rate_4000_hz_at_bound",
        wav16(&tone(1.0, 4_000), 4_000),
        Expect::Ok,
    ));
    items.push((
        "wav_rate_384000_hz_at_bound",
        wav16(&tone(1.0, 384_000), 384_000),
        Expect::Ok,
    ));
    {
        let mut x4 = tone(1.0, 16_000);
        x4[100] = 1000.0;
        x4[200] = -1000.0;
        items.push((
            "wav_sample_magnitude_1000_at_bound",
            wavf32(&x4, 16_000),
            Expect::Ok,
        ));
    }
    items.push((
        "wav_300_seconds_at_bound",
        wav(1, 1, 4_000, 8, &{
            let t = tone(300.0, 4_000);
            t.iter()
                .map(|s| ((s * 127.0) + 128.0) as u8)
                .collect::<Vec<u8>>()
        }),
        Expect::Ok,
    ));
    {
        let t = tone(1.0, 44_100);
        let data: Vec<u8> = t
            .iter()
            .flat_map(|s| {
                let i = ((s * 8_388_607.0) as i32).to_le_bytes();
                [i[0], i[1], i[2], i[0], i[1], i[2]]
            })
            .collect();
        items.push((
            "wav_24bit_stereo_44100_valid",
            wav(1, 2, 44_100, 24, &data),
            Expect::Ok,
        ));
    }

    // Refusals through `say --voice` (the clip is read before the engine loads),
    // successes through `voice` (conditioning only, no synthesis).
    for (name, bytes, expect) in items {
        let d = x.dir(name);
        let file = format!("{name}.wav");
        let p = write(&d, &file, &bytes);
        let c = match expect {
            Expect::Fail => x
                .say(name, args!["Hi there.", "--voice", &p])
                .fail(&[&file])
                .timeout(PROMPT),
            Expect::Ok => x.voice(name, args![&p]).ok(),
            Expect::Either => x.voice(name, args![&p]).either(),
        };
        v.push(c);
    }
    // The issue's lying headers through `voice` as well.
    for name in ["wav_1hz_55_hours", "wav_7kb_claims_one_hour", "wav_zero_hz"] {
        let src = x.base.join(name).join(format!("{name}.wav"));
        let n = format!("voice_{name}");
        let d = x.dir(&n);
        let p = d.join("ref.wav");
        std::fs::copy(&src, &p).unwrap();
        v.push(x.voice(&n, args![&p]).fail(&["ref.wav"]).timeout(PROMPT));
    }
    v.push(
        x.voice("voice_wav_dev_zero", args!["/dev/zero"])
            .fail(&["/dev/zero"])
            .timeout(PROMPT),
    );
    v.push(
        x.say(
            "say_voice_dev_zero",
            args!["Hi there.", "--voice", "/dev/zero"],
        )
        .fail(&["/dev/zero"])
        .timeout(PROMPT),
    );
    {
        let d = x.dir("wav_is_a_folder");
        let sub = d.join("clips.wav");
        std::fs::create_dir_all(&sub).unwrap();
        v.push(
            x.say("wav_is_a_folder", args!["Hi there.", "--voice", &sub])
                .fail(&["clips.wav"])
                .timeout(PROMPT),
        );
        let d = x.dir("wav_missing");
        v.push(
            x.say(
                "wav_missing",
                args!["Hi there.", "--voice", d.join("ghost.wav")],
            )
            .fail(&["ghost.wav"])
            .timeout(PROMPT),
        );
        let d = x.dir("voice_wav_missing");
        v.push(
            x.voice("voice_wav_missing", args![d.join("ghost.wav")])
                .fail(&["ghost.wav"])
                .timeout(PROMPT),
        );
    }
}

/// Turbo: a clip of 5 s or less and a silent clip are one `error:` line naming the rule;
/// options Turbo ignores and an unknown tag are a one-line warning and the synthesis runs.
fn turbo_cases(x: &Ctx, v: &mut Vec<Case>) {
    let turbo = root().join("onnx/tiny-turbo");
    let warns = |needle: &'static str| {
        move |o: &Outcome| {
            let lines: Vec<&str> = o.stderr.lines().filter(|l| l.contains(needle)).collect();
            if lines.len() == 1 && lines[0].contains("WARN") {
                Ok(())
            } else {
                Err(format!(
                    "expected one warning line with `{needle}`, stderr: {}",
                    o.stderr
                ))
            }
        }
    };
    for (name, clip, needle) in [
        (
            "tb_voice_exactly_5s",
            wav16(&tone(5.0, 24_000), 24_000),
            "longer than 5",
        ),
        (
            "tb_voice_3s",
            wav16(&tone(3.0, 16_000), 16_000),
            "longer than 5",
        ),
        (
            "tb_voice_silent",
            wav16(&vec![0.0; 24_000 * 6], 24_000),
            "silent",
        ),
    ] {
        let path = write(&x.dir(name), "clip.wav", &clip);
        v.push(
            x.say(name, args!["--bundle", &turbo, "hi", "--voice", &path])
                .fail(&[needle, "clip.wav"]),
        );
    }
    v.push(
        x.say(
            "tb_ignored_options_warn",
            args![
                "--bundle",
                &turbo,
                "hi",
                "--cfg-weight",
                "0.5",
                "--min-p",
                "0.1"
            ],
        )
        .ok()
        .check(warns("ignoring cfg_weight 0.5, min_p 0.1")),
    );
    v.push(
        x.say(
            "tb_unknown_tag_warns",
            args!["--bundle", &turbo, "hi [giggle] there [laugh]"],
        )
        .ok()
        .check(warns("[giggle]")),
    );
    v.push(
        x.say(
            "tb_top_k_out_of_range",
            args!["--bundle", &turbo, "hi", "--top-k", "2000000"],
        )
        .fail(&["top_k"]),
    );
    v.push(
        x.say("tb_top_k_on_original_warns", args!["hi", "--top-k", "50"])
            .ok()
            .check(warns("no top-k")),
    );
}

/// `convert`: every bad source, target and option is one `error:` line naming it, with
/// no output written; the valid forms succeed.
fn convert_cases(x: &Ctx, v: &mut Vec<Case>) {
    let source = wav16(&tone(1.0, 16_000), 16_000);
    // Bad sources, each naming the file.
    let mut nan = tone(1.0, 16_000);
    nan[500] = f32::NAN;
    let mut inf = tone(1.0, 16_000);
    inf[9] = f32::INFINITY;
    let mut huge = tone(1.0, 16_000);
    huge[9] = 1e6;
    let mut zero_hz = source.clone();
    set_u32(&mut zero_hz, 24, 0);
    let items: Vec<(&str, Vec<u8>, &str)> = vec![
        ("cv_src_no_samples", wav16(&[], 16_000), "no audio"),
        ("cv_src_silent", wav16(&vec![0.0; 16_000], 16_000), "silent"),
        (
            "cv_src_below_silence_peak",
            wavf32(&vec![5e-5; 16_000], 16_000),
            "silent",
        ),
        ("cv_src_30_ms", wav16(&tone(0.03, 16_000), 16_000), "0.04 s"),
        (
            "cv_src_3601_seconds",
            wav(1, 1, 4_000, 8, &vec![100u8; 4_000 * 3601]),
            "3600 s",
        ),
        ("cv_src_nan_sample", wavf32(&nan, 16_000), "sample 500"),
        ("cv_src_inf_sample", wavf32(&inf, 16_000), "finite"),
        ("cv_src_sample_1e6", wavf32(&huge, 16_000), "1000"),
        (
            "cv_src_rate_3999_hz",
            wav16(&tone(1.0, 3_999), 3_999),
            "3999",
        ),
        (
            "cv_src_rate_384001_hz",
            wav16(&tone(0.1, 384_001), 384_001),
            "384001",
        ),
        ("cv_src_zero_hz", zero_hz, ""),
        (
            "cv_src_not_a_wav",
            b"just some text, not audio\n".repeat(100),
            "",
        ),
    ];
    for (name, bytes, needle) in items {
        let d = x.dir(name);
        let file = format!("{name}.wav");
        let p = write(&d, &file, &bytes);
        let needles: Vec<&str> = [file.as_str(), needle]
            .into_iter()
            .filter(|n| !n.is_empty())
            .collect();
        v.push(x.convert(name, &p, args![]).fail(&needles).timeout(PROMPT));
    }
    v.push(
        x.convert("cv_src_dev_zero", "/dev/zero", args![])
            .fail(&["/dev/zero"])
            .timeout(PROMPT),
    );
    {
        let d = x.dir("cv_src_missing");
        v.push(
            x.convert("cv_src_missing", d.join("ghost.wav"), args![])
                .fail(&["ghost.wav"])
                .timeout(PROMPT),
        );
    }
    // A header claiming two hours over 1 s of data: read up to the cut, converted.
    {
        let mut w = wav16(&tone(1.0, 16_000), 16_000);
        set_u32(&mut w, 40, 7200 * 16_000 * 2);
        set_u32(&mut w, 4, 36 + 7200 * 16_000 * 2);
        let d = x.dir("cv_src_claims_two_hours");
        let p = write(&d, "s.wav", &w);
        v.push(x.convert("cv_src_claims_two_hours", &p, args![]).either());
    }
    // Bad targets, each naming the file.
    let targets: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (
            "cv_target_0_3_s",
            "t.wav",
            wav16(&tone(0.3, 16_000), 16_000),
            "0.5 s",
        ),
        (
            "cv_target_301_s",
            "t.wav",
            wav(1, 1, 4_000, 8, &vec![100u8; 4_000 * 301]),
            "300 s",
        ),
        ("cv_target_not_a_wav", "t.wav", b"RIFF".to_vec(), ""),
        (
            "cv_target_voice_file_truncated",
            "t.safetensors",
            std::fs::read(x.tiny.join("voice.safetensors")).unwrap()[..100].to_vec(),
            "",
        ),
    ];
    for (name, file, bytes, needle) in targets {
        let d = x.dir(name);
        let s = write(&d, "s.wav", &source);
        let t = write(&d, file, &bytes);
        let needles: Vec<&str> = [file, needle]
            .into_iter()
            .filter(|n| !n.is_empty())
            .collect();
        v.push(
            x.convert(name, &s, args!["--voice", &t])
                .fail(&needles)
                .timeout(PROMPT),
        );
    }
    {
        let d = x.dir("cv_target_missing");
        let s = write(&d, "s.wav", &source);
        v.push(
            x.convert(
                "cv_target_missing",
                &s,
                args!["--voice", d.join("ghost.wav")],
            )
            .fail(&["ghost.wav"])
            .timeout(PROMPT),
        );
    }
    // Outputs that are inputs: refused, the input untouched.
    {
        let d = x.dir("cv_output_is_the_source");
        let s = write(&d, "s.wav", &source);
        v.push(
            x.convert("cv_output_is_the_source", &s, args!["-o", &s])
                .fail(&["s.wav"])
                .check(unchanged(s.clone(), source.clone()))
                .timeout(PROMPT),
        );
        let d = x.dir("cv_output_is_the_target");
        let s = write(&d, "s.wav", &source);
        let t = write(&d, "t.wav", &source);
        v.push(
            x.convert(
                "cv_output_is_the_target",
                &s,
                args!["--voice", &t, "-o", &t],
            )
            .fail(&["t.wav"])
            .check(unchanged(t.clone(), source.clone()))
            .timeout(PROMPT),
        );
    }
    // Options.
    let fs = "flow_steps|flow-steps";
    for (name, opt, val, needle) in [
        ("cv_flow_steps_0", "--flow-steps", "0", fs),
        ("cv_flow_steps_101", "--flow-steps", "101", fs),
        ("cv_flow_steps_negative", "--flow-steps", "-1", fs),
        (
            "cv_flow_steps_u64_overflow",
            "--flow-steps",
            "18446744073709551616",
            fs,
        ),
        ("cv_seed_negative", "--seed", "-1", "seed"),
        (
            "cv_seed_u64_overflow",
            "--seed",
            "18446744073709551616",
            "seed",
        ),
        ("cv_threads_0", "--threads", "0", "threads"),
        ("cv_threads_100000", "--threads", "100000", "threads"),
        (
            "cv_residency_unknown",
            "--residency",
            "sometimes",
            "sometimes|residency",
        ),
    ] {
        let d = x.dir(name);
        let s = write(&d, "s.wav", &source);
        v.push(
            x.convert(name, &s, args![opt, val])
                .fail(&[needle])
                .timeout(PROMPT),
        );
    }
    // Valid conversions.
    {
        let d = x.dir("cv_valid_wav_target");
        let s = write(&d, "s.wav", &source);
        let t = write(&d, "t.wav", &wav16(&tone(1.0, 22_050), 22_050));
        let out = d.join("out.wav");
        v.push(
            x.convert("cv_valid_wav_target", &s, args!["--voice", &t])
                .ok()
                .check(wav_check(out)),
        );
        let d = x.dir("cv_valid_voice_file_target");
        let s = write(&d, "s.wav", &source);
        v.push(
            x.convert(
                "cv_valid_voice_file_target",
                &s,
                args![
                    "--voice",
                    x.tiny.join("voice.safetensors"),
                    "--seed",
                    "18446744073709551615"
                ],
            )
            .ok(),
        );
        let d = x.dir("cv_valid_40_ms_source");
        let s = write(&d, "s.wav", &wav16(&tone(0.04, 16_000), 16_000));
        v.push(x.convert("cv_valid_40_ms_source", &s, args![]).ok());
        let d = x.dir("cv_valid_to_stdout");
        let s = write(&d, "s.wav", &source);
        v.push(
            x.convert("cv_valid_to_stdout", &s, args!["-o", "-", "--no-watermark"])
                .ok()
                .check(|o: &Outcome| {
                    hound::WavReader::new(std::io::Cursor::new(&o.stdout))
                        .map(|_| ())
                        .map_err(|e| format!("stdout is not a WAV: {e}"))
                }),
        );
        // 35 s at 44.1 kHz stereo: two pieces.
        let d = x.dir("cv_valid_two_pieces");
        let t = tone(35.0, 44_100);
        let data: Vec<u8> = t
            .iter()
            .flat_map(|s| {
                let b = ((s * 32767.0) as i16).to_le_bytes();
                [b[0], b[1], b[0], b[1]]
            })
            .collect();
        let s = write(&d, "s.wav", &wav(1, 2, 44_100, 16, &data));
        let out = d.join("out.wav");
        v.push(
            x.convert("cv_valid_two_pieces", &s, args!["--stats"])
                .ok()
                .check(move |o: &Outcome| {
                    let text = String::from_utf8_lossy(&o.stdout);
                    if !text.contains("\"chunks\":2") {
                        return Err(format!("--stats does not report 2 pieces: {text}"));
                    }
                    let r = hound::WavReader::open(&out).map_err(|e| e.to_string())?;
                    let n = r.duration() as usize;
                    if n != 35 * 24_000 {
                        return Err(format!("{n} samples, expected {}", 35 * 24_000));
                    }
                    Ok(())
                }),
        );
    }
}

fn voice_file_cases(x: &Ctx, v: &mut Vec<Case>) {
    let base = x.tensors();
    let good = voice_file(&base, None, None);
    let mut items: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    items.push(("vf_truncated", good[..good.len() / 2].to_vec(), ""));
    items.push(("vf_empty", Vec::new(), ""));
    items.push((
        "vf_random_bytes",
        (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect(),
        "",
    ));
    {
        let mut w = good.clone();
        w[..8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
        items.push(("vf_header_length_huge", w, ""));
        let mut w = good.clone();
        w[8] = b'[';
        items.push(("vf_header_not_json", w, ""));
    }
    items.push((
        "vf_wrong_format_metadata",
        voice_file(
            &base,
            Some(serde_json::json!({"format": "something-else", "version": "1"})),
            None,
        ),
        "",
    ));
    items.push((
        "vf_no_metadata",
        voice_file(&base, Some(serde_json::json!({})), None),
        "",
    ));
    {
        let mut t = base.clone();
        edit_tensor(&mut t, "t3.speaker_emb", |t| {
            t.shape = vec![1, 255];
            t.data.truncate(255 * 4);
        });
        items.push((
            "vf_speaker_emb_wrong_shape",
            voice_file(&t, None, None),
            "speaker_emb",
        ));
        let mut t = base.clone();
        edit_tensor(&mut t, "gen.embedding", |t| t.shape = vec![2, 96]);
        items.push(("vf_embedding_batch_2", voice_file(&t, None, None), ""));
        let mut t = base.clone();
        edit_tensor(&mut t, "gen.prompt_token", |t| {
            t.dtype = "F32".into();
            t.data.truncate(t.data.len() / 2);
        });
        items.push((
            "vf_prompt_token_wrong_dtype",
            voice_file(&t, None, None),
            "",
        ));
        let mut t = base.clone();
        edit_tensor(&mut t, "gen.embedding", |t| {
            t.data[0..4].copy_from_slice(&f32::NAN.to_le_bytes())
        });
        items.push(("vf_nan_embedding", voice_file(&t, None, None), "nan|finite"));
        let mut t = base.clone();
        edit_tensor(&mut t, "gen.prompt_feat", |t| {
            t.data[40..44].copy_from_slice(&f32::INFINITY.to_le_bytes())
        });
        items.push((
            "vf_inf_prompt_feat",
            voice_file(&t, None, None),
            "nan|finite|inf",
        ));
        let mut t = base.clone();
        edit_tensor(&mut t, "t3.cond_prompt_speech_tokens", |t| {
            t.data[0..8].copy_from_slice(&6561i64.to_le_bytes())
        });
        items.push(("vf_token_out_of_range", voice_file(&t, None, None), "token"));
        let mut t = base.clone();
        edit_tensor(&mut t, "gen.prompt_token", |t| {
            t.data[8..16].copy_from_slice(&(-3i64).to_le_bytes())
        });
        items.push(("vf_token_negative", voice_file(&t, None, None), "token"));
        let mut t = base.clone();
        edit_tensor(&mut t, "gen.prompt_token", |t| {
            t.data[0..8].copy_from_slice(&i64::MAX.to_le_bytes())
        });
        items.push(("vf_token_i64_max", voice_file(&t, None, None), "token"));
        let mut t = base.clone();
        edit_tensor(&mut t, "gen.prompt_feat", |t| {
            t.shape = vec![1, 499, 80];
            t.data.truncate(499 * 80 * 4);
        });
        items.push(("vf_prompt_frames_mismatch", voice_file(&t, None, None), ""));
        let mut t = base.clone();
        t.retain(|t| t.name != "gen.embedding");
        items.push(("vf_missing_tensor", voice_file(&t, None, None), ""));
        let mut t = base.clone();
        edit_tensor(&mut t, "gen.prompt_feat", |t| {
            t.shape = vec![1, 1 << 40, 80]
        });
        items.push(("vf_shape_claims_terabytes", voice_file(&t, None, None), ""));
        let mut t = base.clone();
        edit_tensor(&mut t, "t3.cond_prompt_speech_tokens", |t| {
            t.shape = vec![1, 5000];
            t.data = (0..5000i64)
                .flat_map(|i| (i % 6561).to_le_bytes())
                .collect();
        });
        items.push((
            "vf_too_many_cond_tokens",
            voice_file(&t, None, None),
            "token",
        ));
    }
    {
        // Exactly 16 MiB (padding in the header) is accepted; one byte more is not.
        let ok = voice_file(&base, None, Some(16 << 20));
        assert_eq!(ok.len(), 16 << 20);
        let d = x.dir("vf_16_mib_at_bound");
        let p = write(&d, "padded.safetensors", &ok);
        v.push(
            x.say("vf_16_mib_at_bound", args!["Hi there.", "--voice-file", &p])
                .ok(),
        );
        items.push((
            "vf_16_mib_plus_one",
            voice_file(&base, None, Some((16 << 20) + 1)),
            "",
        ));
    }
    for (name, bytes, extra_needle) in items {
        let d = x.dir(name);
        let file = format!("{name}.safetensors");
        let p = write(&d, &file, &bytes);
        // A file that cannot be read as a voice is named; a well-formed voice that does
        // not fit the model is named by its file or by the offending tensor.
        let either = format!("{file}|{extra_needle}");
        let needles: Vec<&str> = if extra_needle.is_empty() {
            vec![file.as_str()]
        } else {
            vec![either.as_str()]
        };
        // A bad --voice-file is the user's file, not the bundle.
        v.push(
            x.say(name, args!["Hi there.", "--voice-file", &p])
                .fail(&needles)
                .forbid(&["bundle"])
                .timeout(PROMPT),
        );
    }
    {
        let mut t = base.clone();
        edit_tensor(&mut t, "gen.prompt_token", |t| {
            t.shape = vec![1, 0];
            t.data.clear();
        });
        edit_tensor(&mut t, "gen.prompt_feat", |t| {
            t.shape = vec![1, 0, 80];
            t.data.clear();
        });
        let d = x.dir("vf_empty_prompt");
        let p = write(&d, "empty-prompt.safetensors", &voice_file(&t, None, None));
        v.push(
            x.say("vf_empty_prompt", args!["Hi there.", "--voice-file", &p])
                .either()
                .forbid(&["bundle"]),
        );
    }
    v.push(
        x.say(
            "vf_dev_zero",
            args!["Hi there.", "--voice-file", "/dev/zero"],
        )
        .fail(&["/dev/zero"])
        .forbid(&["bundle"])
        .timeout(PROMPT),
    );
    {
        let d = x.dir("vf_is_a_folder");
        let sub = d.join("voices");
        std::fs::create_dir_all(&sub).unwrap();
        v.push(
            x.say("vf_is_a_folder", args!["Hi there.", "--voice-file", &sub])
                .fail(&["voices"])
                .forbid(&["bundle"])
                .timeout(PROMPT),
        );
        let d = x.dir("vf_missing");
        v.push(
            x.say(
                "vf_missing",
                args!["Hi there.", "--voice-file", d.join("me.safetensors")],
            )
            .fail(&["me.safetensors"])
            .forbid(&["bundle"])
            .timeout(PROMPT),
        );
    }
}

fn bundle_cases(x: &Ctx, v: &mut Vec<Case>) {
    let hi = "Hi there.";
    let say_b = |name: &str, b: &Path| x.say(name, args![hi, "--bundle", b]);
    {
        let b = x.bundle_copy("bndl_no_manifest", |_| {});
        std::fs::remove_file(b.join("manifest.json")).unwrap();
        v.push(
            say_b("bundle_missing_manifest", &b)
                .fail(&["manifest.json"])
                .timeout(PROMPT),
        );
        let b = x.bundle_copy("bndl_bad_json", |_| {});
        replace_file(
            &b.join("manifest.json"),
            b"{\"schema_version\": 1, \"model\": ",
        );
        v.push(
            say_b("bundle_manifest_invalid_json", &b)
                .fail(&["manifest"])
                .timeout(PROMPT),
        );
        let b = x.bundle_copy("bndl_empty_manifest", |_| {});
        replace_file(&b.join("manifest.json"), b"");
        v.push(
            say_b("bundle_manifest_empty", &b)
                .fail(&["manifest"])
                .timeout(PROMPT),
        );
        let b = x.bundle_copy("bndl_manifest_dev_zero", |_| {});
        std::fs::remove_file(b.join("manifest.json")).unwrap();
        symlink("/dev/zero", b.join("manifest.json")).unwrap();
        v.push(
            say_b("bundle_manifest_is_dev_zero", &b)
                .fail(&["manifest"])
                .timeout(PROMPT),
        );
        let b = x.bundle_copy("bndl_schema_2", |m| m["schema_version"] = 2.into());
        v.push(
            say_b("bundle_schema_version_2", &b)
                .fail(&["schema"])
                .timeout(PROMPT),
        );
        let b = x.bundle_copy("bndl_schema_string", |m| m["schema_version"] = "one".into());
        v.push(
            say_b("bundle_schema_version_string", &b)
                .fail(&["schema|manifest"])
                .timeout(PROMPT),
        );
    }
    {
        // The same size, one byte flipped: the sha256 check must catch it.
        let b = x.bundle_copy("bndl_bad_sha", |_| {});
        let p = b.join("t3_decoder.onnx");
        let mut bytes = std::fs::read(&p).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 0x5a;
        replace_file(&p, &bytes);
        v.push(
            say_b("bundle_component_wrong_sha256", &b)
                .fail(&["t3_decoder"])
                .timeout(PROMPT),
        );
        let b = x.bundle_copy("bndl_sha_in_manifest", |m| {
            m["components"]["hift"]["files"][0]["sha256"] = "00".repeat(32).into()
        });
        v.push(
            say_b("bundle_manifest_sha256_wrong", &b)
                .fail(&["hift"])
                .timeout(PROMPT),
        );
        let b = x.bundle_copy("bndl_sha_not_hex", |m| {
            m["components"]["hift"]["files"][0]["sha256"] = "not hex at all".into()
        });
        v.push(
            say_b("bundle_manifest_sha256_not_hex", &b)
                .fail(&["hift|sha256"])
                .timeout(PROMPT),
        );
        let b = x.bundle_copy("bndl_no_hift", |_| {});
        std::fs::remove_file(b.join("hift.onnx")).unwrap();
        v.push(
            say_b("bundle_component_file_missing", &b)
                .fail(&["hift.onnx"])
                .timeout(PROMPT),
        );
        let b = x.bundle_copy("bndl_tok_sha", |_| {});
        let p = b.join("tokenizer.json");
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[100] ^= 0x01;
        replace_file(&p, &bytes);
        v.push(
            say_b("bundle_tokenizer_wrong_sha256", &b)
                .fail(&["tokenizer.json"])
                .timeout(PROMPT),
        );
        let b = x.bundle_copy("bndl_tok_zero", |_| {});
        std::fs::remove_file(b.join("tokenizer.json")).unwrap();
        symlink("/dev/zero", b.join("tokenizer.json")).unwrap();
        v.push(
            say_b("bundle_tokenizer_is_dev_zero", &b)
                .fail(&["tokenizer"])
                .timeout(PROMPT),
        );
        let b = x.bundle_copy("bndl_hift_zero", |_| {});
        std::fs::remove_file(b.join("hift.onnx")).unwrap();
        symlink("/dev/zero", b.join("hift.onnx")).unwrap();
        v.push(
            say_b("bundle_component_is_dev_zero", &b)
                .fail(&["hift"])
                .timeout(PROMPT),
        );
        let b = x.bundle_copy("bndl_traversal", |m| {
            m["components"]["t3_cond"]["files"][0]["path"] =
                "../../../../../../../../etc/passwd".into()
        });
        v.push(
            say_b("bundle_path_traversal", &b)
                .fail(&["passwd|t3_cond"])
                .timeout(PROMPT),
        );
        let b = x.bundle_copy("bndl_bytes_huge", |m| {
            m["components"]["hift"]["files"][0]["bytes"] = 1_000_000_000_000_000u64.into()
        });
        v.push(
            say_b("bundle_component_bytes_huge", &b)
                .fail(&["hift"])
                .timeout(PROMPT),
        );
        let b = x.bundle_copy("bndl_no_components", |m| {
            m["components"] = serde_json::json!({})
        });
        v.push(
            say_b("bundle_no_components", &b)
                .fail(&["component|manifest|voice_encoder"])
                .timeout(PROMPT),
        );
    }
    {
        // The issue's case: a layer count of 10^9 must be an error at load, not an abort.
        let b = x.bundle_copy("bndl_layers_1e9", |m| {
            m["config"]["t3"]["num_layers"] = 1_000_000_000.into()
        });
        v.push(
            say_b("bundle_num_layers_1e9", &b)
                .fail(&["layer|t3_decoder"])
                .timeout(PROMPT),
        );
        let b = x.bundle_copy("bndl_layers_0", |m| {
            m["config"]["t3"]["num_layers"] = 0.into()
        });
        v.push(
            say_b("bundle_num_layers_0", &b)
                .fail(&["layer|t3_decoder|past_key"])
                .timeout(PROMPT),
        );
        let b = x.bundle_copy("bndl_heads_0", |m| {
            m["config"]["t3"]["num_heads"] = 0.into()
        });
        v.push(say_b("bundle_num_heads_0", &b).either());
        let b = x.bundle_copy("bndl_sr_0", |m| {
            m["config"]["s3gen"]["sample_rate"] = 0.into()
        });
        v.push(say_b("bundle_output_sample_rate_0", &b).either());
        let b = x.bundle_copy("bndl_token_rate_0", |m| {
            m["config"]["speech"]["token_rate_hz"] = 0.into()
        });
        v.push(say_b("bundle_token_rate_0", &b).either());
        let b = x.bundle_copy("bndl_vocab_huge", |m| {
            m["config"]["speech"]["vocab_size"] = 1_000_000_000_000u64.into()
        });
        v.push(say_b("bundle_speech_vocab_1e12", &b).either());
        let b = x.bundle_copy("bndl_temp_neg", |m| {
            m["generation"]["temperature"] = (-1.0).into()
        });
        v.push(
            x.say(
                "bundle_default_temperature_negative",
                args![hi, "--bundle", &b],
            )
            .fail(&["temperature"])
            .timeout(PROMPT),
        );
    }
    {
        let d = x.dir("bundle_missing_folder");
        v.push(
            x.say(
                "bundle_missing_folder",
                args![hi, "--bundle", d.join("nowhere")],
            )
            .fail(&["nowhere"])
            .timeout(PROMPT),
        );
        let d = x.dir("bundle_is_a_file");
        let f = write(&d, "model.bin", b"not a folder");
        v.push(
            x.say("bundle_is_a_file", args![hi, "--bundle", &f])
                .fail(&["model.bin"])
                .timeout(PROMPT),
        );
    }
    for (name, val, needle) in [
        ("residency_unknown", "sometimes", "sometimes|residency"),
        ("residency_idle_overflow", "idle=1e300", "idle|residency"),
        ("residency_idle_nan", "idle=nan", "idle|residency"),
        ("residency_idle_negative", "idle=-5", "idle|residency"),
        ("residency_budget_1_byte", "budget=1B", "budget"),
        (
            "residency_budget_overflow",
            "budget=99999999999999999999TiB",
            "budget",
        ),
        (
            "residency_component_policy_unknown",
            "t3_decoder=sometimes",
            "sometimes|t3_decoder|residency",
        ),
        (
            "residency_component_unknown",
            "swap,larynx=resident",
            "larynx",
        ),
    ] {
        v.push(
            x.say(name, args![hi, "--residency", val])
                .fail(&[needle])
                .timeout(PROMPT),
        );
    }
    v.push(
        x.say("residency_empty", args![hi, "--residency", ""])
            .either(),
    );
    v.push(
        x.say(
            "residency_swap_valid",
            args![hi, "--residency", "swap,prefetch"],
        )
        .ok(),
    );
    for (name, val, needle) in [
        ("provider_unknown", "tpu", "tpu|provider"),
        ("provider_empty", "", "provider"),
        (
            "provider_cuda_device_overflow",
            "cuda:99999999999999999999",
            "cuda|provider",
        ),
        ("provider_cuda_device_garbage", "cuda:x", "cuda|provider"),
    ] {
        v.push(
            x.say(name, args![hi, "--provider", val])
                .fail(&[needle])
                .timeout(PROMPT),
        );
    }
    {
        let d = x.dir("ort_library_is_text");
        let f = write(&d, "libonnxruntime.so", b"not a library\n");
        v.push(
            x.say("ort_library_is_text", args![hi])
                .env("ORT_DYLIB_PATH", &f)
                .either(),
        );
    }
    v.push(
        x.say("log_filter_garbage", args![hi])
            .env("CHATTERBOX_ORT_LOG", "[[[=====")
            .ok(),
    );
}

fn output_cases(x: &Ctx, v: &mut Vec<Case>) {
    let hi = "Hi there.";
    {
        // The issue's case: a missing folder names the user's path, once, no temp name.
        let d = x.dir("output_in_missing_folder");
        v.push(
            x.say(
                "output_in_missing_folder",
                args![hi, "-o", d.join("no-such-dir/out.wav")],
            )
            .fail(&["no-such-dir/out.wav"])
            .forbid(&[".tmp"]),
        );
        let d = x.dir("voice_output_in_missing_folder");
        let r = write(&d, "ref.wav", &wav16(&tone(1.0, 16_000), 16_000));
        v.push(
            x.voice(
                "voice_output_in_missing_folder",
                args![&r, "-o", d.join("no-such-dir/v.safetensors")],
            )
            .fail(&["no-such-dir/v.safetensors"])
            .forbid(&[".tmp"]),
        );
    }
    {
        // An unwritable folder (as root, made read-only by a bind mount: root ignores
        // permission bits, and dropping to another uid would lose access to the build).
        let d = x.dir("output_in_unwritable_folder");
        let ro = d.join("read-only");
        std::fs::create_dir_all(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        let mut c = x
            .say(
                "output_in_unwritable_folder",
                args![hi, "-o", ro.join("out.wav")],
            )
            .fail(&["read-only/out.wav"])
            .forbid(&[".tmp"]);
        if x.root {
            c.read_only = Some(ro.clone());
        }
        v.push(c);
    }
    {
        let d = x.dir("output_is_a_folder");
        let sub = d.join("existing-folder");
        std::fs::create_dir_all(sub.join("inside")).unwrap();
        v.push(
            x.say("output_is_a_folder", args![hi, "-o", &sub])
                .fail(&["existing-folder"]),
        );
        let d = x.dir("output_under_a_file");
        let f = write(&d, "plain.txt", b"just a file");
        v.push(
            x.say("output_under_a_file", args![hi, "-o", f.join("out.wav")])
                .fail(&["plain.txt/out.wav"]),
        );
        v.push(
            x.say("output_empty_path", args![hi, "-o", ""])
                .fail(&["output|path"]),
        );
        let d = x.dir("output_name_too_long");
        let long = "n".repeat(300) + ".wav";
        v.push(
            x.say("output_name_too_long", args![hi, "-o", d.join(&long)])
                .fail(&["nnnnnnnnnn"]),
        );
        let d = x.dir("output_trailing_slash");
        let mut p = d.join("out.wav").into_os_string();
        p.push("/");
        v.push(
            x.say("output_trailing_slash", args![hi, "-o", p])
                .fail(&["out.wav"]),
        );
    }
    v.push(
        x.say("output_to_stdout", args![hi, "-o", "-"])
            .ok()
            .check(|o| {
                hound::WavReader::new(std::io::Cursor::new(o.stdout.clone()))
                    .map(|_| ())
                    .map_err(|e| format!("stdout is not a WAV: {e}"))
            }),
    );
    {
        // -o /dev/null succeeds and /dev/null stays a character device. As root the
        // process gets a private /dev (a copy of the nodes it needs), so a bug that
        // replaces the node cannot break this machine's /dev/null.
        let name = "output_dev_null";
        let d = x.dir(name);
        let mut c = x.say(name, args![hi, "-o", "/dev/null"]).ok();
        c.output = Some(PathBuf::from("/dev/null"));
        if x.root {
            let dev = d.join("dev");
            std::fs::create_dir_all(dev.join("shm")).unwrap();
            for (n, minor) in [
                ("null", 3),
                ("zero", 5),
                ("full", 7),
                ("random", 8),
                ("urandom", 9),
            ] {
                mknod_char(&dev.join(n), 1, minor, 0o666);
            }
            for (n, fd) in [("stdin", 0), ("stdout", 1), ("stderr", 2)] {
                symlink(format!("/proc/self/fd/{fd}"), dev.join(n)).unwrap();
            }
            symlink("/proc/self/fd", dev.join("fd")).unwrap();
            let rdev = std::fs::metadata(dev.join("null")).unwrap().rdev();
            c.probe = Some(dev.join("null"));
            c.isolate_dev = Some(dev.clone());
            c = c.check(still_char_device(dev.join("null"), rdev));
        } else {
            let rdev = std::fs::metadata("/dev/null").unwrap().rdev();
            c = c.check(still_char_device(PathBuf::from("/dev/null"), rdev));
        }
        v.push(c);
    }
    if x.root {
        // A character device node in the user's folder (same as /dev/null).
        let d = x.dir("output_char_device_node");
        let node = d.join("node");
        mknod_char(&node, 1, 3, 0o666);
        let rdev = std::fs::metadata(&node).unwrap().rdev();
        v.push(
            x.say("output_char_device_node", args![hi, "-o", &node])
                .either()
                .check(still_char_device(node.clone(), rdev)),
        );
        let d = x.dir("voice_output_char_device_node");
        let node = d.join("node");
        mknod_char(&node, 1, 3, 0o666);
        let r = write(&d, "ref.wav", &wav16(&tone(1.0, 16_000), 16_000));
        v.push(
            x.voice("voice_output_char_device_node", args![&r, "-o", &node])
                .either()
                .produces(Produces::Nothing)
                .check(still_char_device(node.clone(), rdev)),
        );
    } else {
        eprintln!("[cli] not root: skipping the mknod cases");
    }
    {
        // -o link -> real.wav: real.wav is written, the link stays a link.
        let d = x.dir("output_through_symlink");
        let real = write(&d, "real.wav", b"old contents");
        let link = d.join("link.wav");
        symlink("real.wav", &link).unwrap();
        let (l2, r2) = (link.clone(), real.clone());
        let mut c = x
            .say("output_through_symlink", args![hi, "-o", &link])
            .ok()
            .check(move |_| {
                let m =
                    std::fs::symlink_metadata(&l2).map_err(|e| format!("the link is gone: {e}"))?;
                if !m.file_type().is_symlink() {
                    return Err(format!("{} is no longer a symlink", l2.display()));
                }
                Ok(())
            });
        c.probe = Some(link.clone());
        c = c.check(wav_check(r2));
        v.push(c);
        let d = x.dir("output_dangling_symlink");
        let link = d.join("dangling.wav");
        symlink("target.wav", &link).unwrap();
        let t = d.join("target.wav");
        let mut c = x
            .say("output_dangling_symlink", args![hi, "-o", &link])
            .either();
        c.probe = Some(link);
        c.allow_new.push("target.wav".into());
        c.checks.push(Box::new(move |o: &Outcome| {
            if o.status.is_some_and(|s| s.success()) {
                wav_check(t.clone())(o)
            } else {
                Ok(())
            }
        }));
        v.push(c.produces(Produces::Nothing));
    }
    {
        // An existing output keeps its permission bits.
        let d = x.dir("output_keeps_mode_0640");
        let p = write(&d, "out.wav", b"previous");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let p2 = p.clone();
        v.push(
            x.say("output_keeps_mode_0640", args![hi, "-o", &p])
                .ok()
                .check(move |_| {
                    let mode = std::fs::metadata(&p2).map_err(|e| e.to_string())?.mode() & 0o7777;
                    if mode == 0o640 {
                        Ok(())
                    } else {
                        Err(format!("mode of {} is {mode:o}, was 640", p2.display()))
                    }
                }),
        );
        let d = x.dir("voice_output_keeps_mode_0600");
        let r = write(&d, "ref.wav", &wav16(&tone(1.0, 16_000), 16_000));
        let p = write(&d, "me.safetensors", b"previous");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let p2 = p.clone();
        v.push(
            x.voice("voice_output_keeps_mode_0600", args![&r, "-o", &p])
                .ok()
                .check(move |_| {
                    let mode = std::fs::metadata(&p2).map_err(|e| e.to_string())?.mode() & 0o7777;
                    if mode == 0o600 {
                        Ok(())
                    } else {
                        Err(format!("mode of {} is {mode:o}, was 600", p2.display()))
                    }
                }),
        );
    }
    {
        // An output that is an input is refused, and the input is untouched.
        let clip = wav16(&tone(1.0, 16_000), 16_000);
        let d = x.dir("output_is_the_voice_wav");
        let p = write(&d, "x.wav", &clip);
        v.push(
            x.say(
                "output_is_the_voice_wav",
                args![hi, "--voice", &p, "-o", &p],
            )
            .fail(&["x.wav"])
            .check(unchanged(p.clone(), clip.clone())),
        );
        let d = x.dir("voice_output_is_its_reference");
        let p = write(&d, "x.wav", &clip);
        v.push(
            x.voice("voice_output_is_its_reference", args![&p, "-o", &p])
                .fail(&["x.wav"])
                .check(unchanged(p.clone(), clip.clone())),
        );
        let d = x.dir("output_is_the_text_file");
        let p = write(&d, "t.txt", b"Hello there, this is my text.");
        v.push(
            x.say(
                "output_is_the_text_file",
                args!["--text-file", &p, "-o", &p],
            )
            .fail(&["t.txt"])
            .check(unchanged(
                p.clone(),
                b"Hello there, this is my text.".to_vec(),
            )),
        );
        let d = x.dir("output_is_the_voice_file");
        let vf = std::fs::read(x.tiny.join("voice.safetensors")).unwrap();
        let p = write(&d, "v.safetensors", &vf);
        v.push(
            x.say(
                "output_is_the_voice_file",
                args![hi, "--voice-file", &p, "-o", &p],
            )
            .fail(&["v.safetensors"])
            .check(unchanged(p.clone(), vf.clone())),
        );
        let d = x.dir("output_is_the_input_via_symlink");
        let p = write(&d, "x.wav", &clip);
        let link = d.join("alias.wav");
        symlink("x.wav", &link).unwrap();
        v.push(
            x.say(
                "output_is_the_input_via_symlink",
                args![hi, "--voice", &p, "-o", &link],
            )
            .fail(&["x.wav|alias.wav"])
            .check(unchanged(p.clone(), clip.clone())),
        );
        let d = x.dir("output_is_the_input_via_hard_link");
        let p = write(&d, "x.wav", &clip);
        let hl = d.join("hard.wav");
        std::fs::hard_link(&p, &hl).unwrap();
        v.push(
            x.say(
                "output_is_the_input_via_hard_link",
                args![hi, "--voice", &p, "-o", &hl],
            )
            .fail(&["x.wav|hard.wav"])
            .check(unchanged(p.clone(), clip.clone())),
        );
        let d = x.dir("output_is_the_input_via_dotdot");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        let p = write(&d, "x.wav", &clip);
        v.push(
            x.say(
                "output_is_the_input_via_dotdot",
                args![hi, "--voice", &p, "-o", d.join("sub/../x.wav")],
            )
            .fail(&["x.wav"])
            .check(unchanged(p.clone(), clip.clone())),
        );
    }
    {
        let d = x.dir("say_with_voice_clip_valid");
        let r = write(&d, "ref.wav", &wav16(&tone(1.0, 16_000), 16_000));
        v.push(
            x.say("say_with_voice_clip_valid", args![hi, "--voice", &r])
                .ok(),
        );
    }
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

/// The judge itself: every kind of failure the suite looks for is seen, and a
/// clean refusal passes. Uses `sh` and `python3` stand-ins, not the engine.
#[test]
fn hostile_judge_sees_every_failure() {
    let x = Ctx::new("judge");
    let sh = |name: &str, script: &str| x.case(name, "sh", args!["-c", script]).timeout(10);
    let mut cases = vec![
        (sh("clean_refusal", "echo 'error: invalid argument `threads`' >&2; exit 1").fail(&["threads"]), ""),
        (sh("segfault", "kill -SEGV $$").fail(&[]), "signal 11"),
        (x.case("abort", "python3", args!["-c", "import os; os.abort()"]).fail(&[]), "SIGABRT"),
        (sh("hang", "sleep 30").fail(&[]).timeout(1), "did not finish"),
        (sh("two_error_lines", "echo 'error: a' >&2; echo 'error: b' >&2; exit 1").fail(&[]), "exactly one"),
        (sh("no_error_line", "echo 'oops' >&2; exit 1").fail(&[]), "exactly one"),
        (sh("panic", "echo \"thread 'main' panicked at x\" >&2; echo 'error: x' >&2; exit 1").fail(&[]), "panicked"),
        (sh("wrong_needle", "echo 'error: something' >&2; exit 1").fail(&["flow_steps"]), "flow_steps"),
        (sh("exit_0_on_bad_input", "exit 0").fail(&[]), "expected a refusal"),
        (sh("forbidden_word", "echo 'error: bad bundle' >&2; exit 1").fail(&[]).forbid(&["bundle"]), "mentions `bundle`"),
        (sh("temp_name_in_error", "echo 'error: writing .out.wav.1.tmp' >&2; exit 1").fail(&[]), ".tmp"),
        (sh("cause_twice", "echo 'error: x: Permission denied (os error 13): Permission denied (os error 13)' >&2; exit 1").fail(&[]), "repeats"),
        (
            x.case("memory_bomb", "python3", args!["-c", "b = bytearray(7 << 30); print(len(b))"]).ok(),
            "expected success",
        ),
    ];
    // Output left behind / changed on failure, and a temporary file left behind.
    let d = x.dir("leftover");
    let mut c = sh(
        "leftover",
        "touch out.wav .out.wav.42.tmp; echo 'error: x' >&2; exit 1",
    )
    .fail(&[]);
    c.output = Some(d.join("out.wav"));
    cases.push((c, "left behind"));
    let d = x.dir("output_changed");
    write(&d, "out.wav", b"before");
    let mut c = sh(
        "output_changed",
        "echo after > out.wav; echo 'error: x' >&2; exit 1",
    )
    .fail(&[]);
    c.output = Some(d.join("out.wav"));
    cases.push((c, "changed its output"));

    let mut wrong = Vec::new();
    for (case, want) in &cases {
        let (out, problems) = run_case(case);
        let all = problems.join("; ");
        let ok = if want.is_empty() {
            problems.is_empty()
        } else {
            all.contains(want)
        };
        if !ok {
            wrong.push(format!(
                "{}: wanted {:?}, got [{all}] ({})",
                case.name,
                if want.is_empty() { "no problem" } else { want },
                out.describe()
            ));
        }
    }
    x.cleanup();
    assert!(
        wrong.is_empty(),
        "the judge misjudged:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn hostile_cli() {
    let x = Ctx::new("cli");
    let cases = cli_cases(&x);
    let mut names = BTreeSet::new();
    for c in &cases {
        assert!(
            names.insert(c.name.clone()),
            "duplicate case name {}",
            c.name
        );
    }
    let (total, failures, md) = run_all("cli", cases);
    if failures.is_empty() {
        x.cleanup();
    }
    finish("cli", total, failures, md);
}

#[test]
fn hostile_c_abi() {
    let x = Ctx::new("capi");
    let harness = root().join("tests/hostile/capi_cases.py");
    let listed = Command::new("python3")
        .arg(&harness)
        .arg("list")
        .output()
        .expect("running python3 (the C ABI cases need it)");
    assert!(
        listed.status.success(),
        "listing the C ABI cases: {}",
        String::from_utf8_lossy(&listed.stderr)
    );
    // A private copy: a concurrent `cargo build` may replace the original mid-run.
    let lib = x.base.join("libchatterbox_ort.so");
    std::fs::copy(cdylib(), &lib).expect("copying the cdylib");
    let cases: Vec<Case> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|name| {
            let mut c = x
                .case(name, "python3", args![&harness, "run", name])
                .env("HOSTILE_LIB", &lib)
                .env("HOSTILE_BUNDLE", &x.tiny)
                .env("HOSTILE_MAX_TEXT_BYTES", MAX_TEXT_BYTES.to_string())
                .timeout(60);
            c.env
                .push(("HOSTILE_DIR".into(), Some(c.dir.clone().into_os_string())));
            c.env.push(("LD_LIBRARY_PATH".into(), None));
            c.judge = Judge::Harness;
            c.expect = Expect::Ok;
            c
        })
        .collect();
    assert!(cases.len() >= 60, "only {} C ABI cases listed", cases.len());
    let (total, failures, md) = run_all("capi", cases);
    if failures.is_empty() {
        x.cleanup();
    }
    finish("capi", total, failures, md);
}
