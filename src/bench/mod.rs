//! `chatterbox-ort bench`: residency modes compared, each in a fresh process.
//!
//! The `bench` command ([`run_cli`]) re-executes its own binary once per mode
//! with the hidden `bench-worker` subcommand ([`run_worker`]), so no mode
//! inherits another's memory. A worker loads the engine under one residency
//! mode, runs a warm-up synthesis and then the measured ones with exactly
//! `--tokens` speech tokens, and prints one [`schema::ModeResult`] as JSON on
//! stdout. The orchestrator summarises them (median, min-max, ratio to
//! `resident`), merges PyTorch baseline results (`--baseline`, written by
//! `benches/baseline_torch.py` in the same schema) and writes JSON, Markdown
//! and a PNG plot.
//!
//! With `--stream` every synthesis mode also measures streamed synthesis
//! (`Engine::synthesize_stream`, the same request): a streamed warm-up after the
//! non-streamed one, then each measured run followed by a streamed run. Both report the
//! time to first audio (non-streamed: the whole synthesis of the one-chunk text); the
//! streamed runs also the streaming RTF, the audio chunks, the longest gap between chunks
//! and their own peak RSS.
//!
//! Special modes besides the residency presets:
//! - `largest-stage`: loads and runs only the stage with the most weight bytes
//!   (T3 for the real model), all of it resident: the reference footprint that
//!   swap's peak is compared with.
//! - `swap-cost`: times session creation of every component four ways and
//!   splits it into file read, graph optimization and initializer set-up.
//!
//! This module is a command-line tool inside the library: it reports errors
//! with `anyhow`, like the CLI.

pub mod machine;
pub mod markdown;
pub mod plot;
pub mod schema;
pub mod summary;
mod worker;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use crate::multilingual::Language;
use schema::{LoadAverage, ModeResult, Report, ResultKind, SCHEMA};

pub use worker::run_worker;

/// Modes run when `--modes` is not given.
pub const DEFAULT_MODES: &str =
    "resident,swap,swap-prefetch,cpu,idle=30,budget=2GiB,largest-stage,swap-cost";

/// The fixed text every synthesis speaks (its length only affects the prefill).
pub const DEFAULT_TEXT: &str =
    "Memory is the treasury and guardian of all things, and speech is its most faithful messenger.";

/// Synthesis settings of a benchmark, shared by `bench` and each `bench-worker`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Measured syntheses per mode (after one warm-up).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Speech tokens per synthesis (forced: the stop token is suppressed).
    #[arg(long, default_value_t = 100)]
    pub tokens: usize,
    /// Execution provider: `cpu` or `cuda`.
    #[arg(long, default_value = "cpu")]
    pub provider: String,
    /// Intra-op threads per session (default: the engine's).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Text to synthesize.
    #[arg(long, default_value = DEFAULT_TEXT)]
    pub text: String,
    /// Times each session-creation variant is repeated in `swap-cost`.
    #[arg(long, default_value_t = 3)]
    pub swap_cost_repeats: usize,
    /// Speech tokens of the warm-up synthesis (default: `--tokens`). The warm-up
    /// creates every session the mode creates; a shorter one saves time on slow machines.
    #[arg(long)]
    pub warmup_tokens: Option<usize>,
    /// Flow-matching steps of the warm-up synthesis (default: the bundle's).
    #[arg(long)]
    pub warmup_flow_steps: Option<usize>,
    /// Also measure streamed synthesis in every synthesis mode: a streamed run after each
    /// non-streamed one (time to first audio, streaming RTF, chunks, chunk latency, peak
    /// RSS).
    #[arg(long)]
    pub stream: bool,
    /// With --stream: speech tokens before the first S3Gen pass (default: the library's).
    #[arg(long, value_name = "N")]
    pub first_chunk_tokens: Option<usize>,
    /// With --stream: speech tokens between later S3Gen passes (default: the library's).
    #[arg(long, value_name = "N")]
    pub chunk_tokens: Option<usize>,
    /// With --stream: T3 decodes on its own thread while S3Gen runs.
    #[arg(long)]
    pub overlap: bool,
    /// The text's language on a multilingual bundle (default `en` there; other bundles
    /// take none).
    #[arg(long, value_name = "ID")]
    pub language: Option<String>,
}

impl RunArgs {
    /// These settings as `bench-worker` command-line arguments.
    fn to_cli_args(&self) -> Vec<String> {
        let mut a = vec![
            "--runs".to_string(),
            self.runs.to_string(),
            "--tokens".to_string(),
            self.tokens.to_string(),
            "--provider".to_string(),
            self.provider.clone(),
            "--text".to_string(),
            self.text.clone(),
            "--swap-cost-repeats".to_string(),
            self.swap_cost_repeats.to_string(),
        ];
        for (flag, value) in [
            ("--threads", self.threads),
            ("--warmup-tokens", self.warmup_tokens),
            ("--warmup-flow-steps", self.warmup_flow_steps),
            ("--first-chunk-tokens", self.first_chunk_tokens),
            ("--chunk-tokens", self.chunk_tokens),
        ] {
            if let Some(v) = value {
                a.extend([flag.to_string(), v.to_string()]);
            }
        }
        if let Some(l) = &self.language {
            a.extend(["--language".to_string(), l.clone()]);
        }
        for (flag, on) in [("--stream", self.stream), ("--overlap", self.overlap)] {
            if on {
                a.push(flag.to_string());
            }
        }
        a
    }

    /// The request language for a bundle of `family`: `--language`, or `en` on a
    /// multilingual bundle.
    pub fn language_for(&self, family: crate::bundle::Family) -> Result<Option<Language>> {
        Ok(match (&self.language, family) {
            (Some(l), _) => Some(Language::parse(l)?),
            (None, crate::bundle::Family::Multilingual) => Some(Language::parse("en")?),
            (None, _) => None,
        })
    }

    /// The streaming options of `--stream` (`None` without it); not validated.
    pub fn stream_options(&self) -> Option<crate::stream::StreamOptions> {
        if !self.stream {
            return None;
        }
        let mut opts = crate::stream::StreamOptions::default();
        if let Some(v) = self.first_chunk_tokens {
            opts.first_chunk_tokens = v;
        }
        if let Some(v) = self.chunk_tokens {
            opts.chunk_tokens = v;
        }
        opts.overlap = self.overlap;
        Some(opts)
    }
}

/// Arguments of `chatterbox-ort bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Model bundle folder.
    #[arg(long, default_value = "onnx/tiny")]
    pub bundle: PathBuf,
    /// Comma-separated modes: residency presets (`resident`, `swap`, `cpu`,
    /// `idle=SECS`, `budget=SIZE`), a `-prefetch` suffix for prefetching,
    /// `largest-stage` and `swap-cost`.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_MODES)]
    pub modes: Vec<String>,
    /// Synthesis settings shared with every worker.
    #[command(flatten)]
    pub run: RunArgs,
    /// Write the full report (results, summaries, acceptance) as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the Markdown tables here.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Write the peak-memory vs RTF plot (PNG) here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Write the compact README table here (links to `--markdown`).
    #[arg(long)]
    pub snippet: Option<PathBuf>,
    /// Baseline report(s) in the same JSON schema (from benches/baseline_torch.py) to merge.
    #[arg(long)]
    pub baseline: Vec<PathBuf>,
    /// Do not run anything: re-render the report in this JSON file (plus any `--baseline`).
    #[arg(long)]
    pub from_json: Option<PathBuf>,
    /// Give up on a mode's worker after this many seconds.
    #[arg(long, default_value_t = 1800)]
    pub mode_timeout_s: u64,
    /// Run the whole mode list this many times, in reverse order every other
    /// round (A B, B A, ...), pooling each mode's runs: on a noisy machine this
    /// spreads drift evenly over the modes.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
}

/// Arguments of the hidden `chatterbox-ort bench-worker` (one mode, one process).
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Model bundle folder.
    #[arg(long)]
    pub bundle: PathBuf,
    /// One mode (see `bench --modes`).
    #[arg(long)]
    pub mode: String,
    /// Synthesis settings.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Runs `chatterbox-ort bench`: every mode in its own worker process, then the reports.
pub fn run_cli(args: &BenchArgs) -> Result<()> {
    let (mut report, failed) = match &args.from_json {
        Some(path) => (read_report(path)?, Vec::new()),
        None => run_modes(args)?,
    };
    for b in &args.baseline {
        let base = read_report(b)?;
        report.results.retain(|r| {
            !base
                .results
                .iter()
                .any(|x| x.mode == r.mode && x.framework == r.framework)
        });
        report.results.extend(base.results);
        for (k, v) in base.config {
            report.config.entry(format!("baseline.{k}")).or_insert(v);
        }
    }
    finish(&mut report);
    write_outputs(&report, args)?;
    // The report shows each failed mode; the command still fails, so scripts notice.
    if !failed.is_empty() {
        bail!(
            "{} mode run(s) failed: {} (see the messages above)",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// Fills the summaries and the acceptance figures of a report.
pub fn finish(report: &mut Report) {
    report.schema = SCHEMA.into();
    report.summary = summary::summarize_all(&report.results);
    report.acceptance = summary::acceptance(&report.summary);
}

fn read_report(path: &Path) -> Result<Report> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let report: Report = serde_json::from_str(&text)
        .with_context(|| format!("parsing {} as a bench report", path.display()))?;
    if report.schema != SCHEMA {
        bail!(
            "{}: schema `{}`, expected `{SCHEMA}`",
            path.display(),
            report.schema
        );
    }
    Ok(report)
}

fn write_outputs(report: &Report, args: &BenchArgs) -> Result<()> {
    let write = |path: &Path, bytes: &[u8]| -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
    };
    if let Some(p) = &args.json {
        write(p, serde_json::to_string_pretty(report)?.as_bytes())?;
    }
    let md = markdown::render(report);
    if let Some(p) = &args.markdown {
        write(p, md.as_bytes())?;
    }
    if let Some(p) = &args.snippet {
        let link = args
            .markdown
            .as_ref()
            .map_or_else(|| "-".to_string(), |m| m.display().to_string());
        write(p, markdown::render_snippet(report, &link).as_bytes())?;
    }
    if let Some(p) = &args.plot {
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let pts = plot::points(&report.summary);
        let reference: Vec<(String, f64)> = report
            .summary
            .iter()
            .filter(|s| s.kind == Some(ResultKind::LargestStage) && s.runs > 0)
            .map(|s| {
                (
                    format!("largest stage alone ({})", s.mode),
                    s.peak_rss_bytes.median / (1024.0 * 1024.0),
                )
            })
            .collect();
        let title = format!(
            "Peak memory vs RTF, {} tokens ({})",
            report.config.get("tokens").map_or("?", String::as_str),
            report.config.get("provider").map_or("?", String::as_str)
        );
        plot::write_png(p, &title, &pts, &reference)?;
    }
    if args.markdown.is_none() && args.json.is_none() {
        print!("{md}");
    }
    Ok(())
}

/// Most measured runs, rounds and swap-cost repeats per mode.
pub const MAX_REPEATS: usize = 100;

impl RunArgs {
    /// Checks every setting against the bundle and [`crate::limits`] (nothing is run).
    fn validate(&self, bundle: &Path) -> Result<()> {
        crate::limits::check_range("runs", self.runs, 1, MAX_REPEATS)?;
        crate::limits::check_range("swap_cost_repeats", self.swap_cost_repeats, 1, MAX_REPEATS)?;
        crate::limits::check_threads(self.threads)?;
        self.provider
            .parse::<crate::runtime::Provider>()
            .with_context(|| format!("--provider {}", self.provider))?;
        if self.text.trim().is_empty() {
            bail!("invalid text: --text is empty or whitespace only");
        }
        crate::limits::check_text_len(self.text.len())?;
        match self.stream_options() {
            Some(opts) => opts.validate()?,
            None => {
                for (given, flag) in [
                    (self.first_chunk_tokens.is_some(), "--first-chunk-tokens"),
                    (self.chunk_tokens.is_some(), "--chunk-tokens"),
                    (self.overlap, "--overlap"),
                ] {
                    if given {
                        bail!("{flag} applies only with --stream");
                    }
                }
            }
        }
        let bundle = crate::bundle::Bundle::open(bundle)?;
        let mut req = crate::engine::Request::from_generation(bundle.generation());
        req.language = self.language_for(bundle.manifest().model.family)?;
        for (tokens, steps) in [
            (self.tokens, None),
            (
                self.warmup_tokens.unwrap_or(self.tokens),
                self.warmup_flow_steps,
            ),
        ] {
            req.max_new_tokens = tokens;
            req.flow_steps = steps.unwrap_or(req.flow_steps);
            req.validate()?;
            req.check_model_limits(bundle.config(), 0)?;
        }
        Ok(())
    }
}

impl BenchArgs {
    /// Checks every argument before any worker is started.
    fn validate(&self) -> Result<()> {
        if self.modes.is_empty() || self.modes.iter().any(|m| m.trim().is_empty()) {
            bail!("invalid argument `modes`: give a comma-separated list of modes, e.g. resident,swap");
        }
        for mode in &self.modes {
            if worker::kind_of(mode) == ResultKind::Synthesis {
                worker::residency_of(mode)?;
            }
        }
        crate::limits::check_range("rounds", self.rounds, 1, MAX_REPEATS)?;
        if self.mode_timeout_s == 0 {
            bail!("invalid argument `mode_timeout_s`: must be >= 1");
        }
        self.run.validate(&self.bundle)
    }
}

/// Runs every mode; returns the report and the modes whose worker failed.
fn run_modes(args: &BenchArgs) -> Result<(Report, Vec<String>)> {
    args.validate()?;
    let exe = std::env::current_exe().context("finding the chatterbox-ort executable")?;
    let mut report = Report {
        schema: SCHEMA.into(),
        created_unix_s: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        machine: machine::machine(),
        config: [
            ("bundle", args.bundle.display().to_string()),
            ("tokens", args.run.tokens.to_string()),
            ("runs", args.run.runs.to_string()),
            ("provider", args.run.provider.clone()),
            (
                "threads",
                args.run
                    .threads
                    .map_or_else(|| "default".into(), |t| t.to_string()),
            ),
            ("modes", args.modes.join(",")),
            (
                "warmup",
                format!(
                    "{} tokens, {} flow steps",
                    args.run.warmup_tokens.unwrap_or(args.run.tokens),
                    args.run
                        .warmup_flow_steps
                        .map_or_else(|| "default".to_string(), |s| s.to_string())
                ),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        ..Default::default()
    };
    if let Some(o) = args.run.stream_options() {
        report.config.insert(
            "stream".into(),
            format!(
                "first chunk {} tokens, then every {} tokens, overlap {}",
                o.first_chunk_tokens, o.chunk_tokens, o.overlap
            ),
        );
    }
    let mut failed = Vec::new();
    let mut order: Vec<&String> = Vec::new();
    for round in 0..args.rounds {
        if round % 2 == 0 {
            order.extend(args.modes.iter());
        } else {
            order.extend(args.modes.iter().rev());
        }
    }
    report
        .config
        .insert("rounds".into(), args.rounds.to_string());
    for mode in order {
        eprintln!(
            "== bench: mode `{mode}` ({} tokens, {} runs)",
            args.run.tokens, args.run.runs
        );
        let mut cmd = Command::new(&exe);
        cmd.arg("bench-worker")
            .arg("--bundle")
            .arg(&args.bundle)
            .args(["--mode", mode])
            .args(args.run.to_cli_args());
        let t0 = Instant::now();
        let load_before = machine::load_averages();
        let busy_before = machine::machine_busy_seconds();
        let own_before = machine::own_and_children_cpu_seconds();
        let result = run_one(cmd, mode, Duration::from_secs(args.mode_timeout_s));
        let wall = t0.elapsed().as_secs_f64();
        let foreign_cpu_share = busy_before
            .zip(machine::machine_busy_seconds())
            .map(|(b0, b1)| {
                let own = machine::own_and_children_cpu_seconds() - own_before;
                ((b1 - b0 - own) / (wall * report.machine.cores.max(1) as f64)).max(0.0)
            });
        let load = match (load_before, machine::load_averages()) {
            (Some(before), Some(after)) => Some(LoadAverage {
                before,
                after,
                foreign_cpu_share,
            }),
            _ => None,
        };
        let load_note = match load {
            Some(l) => format!(
                "load average (1, 5, 15 min) {} before, {} after this mode ({} cores); \
                 other processes used {} of the CPU meanwhile{}",
                machine::format_load(&l.before),
                machine::format_load(&l.after),
                report.machine.cores,
                l.foreign_cpu_share
                    .map_or("an unknown share".to_string(), |f| format!(
                        "{:.0} %",
                        f * 100.0
                    )),
                if is_loaded(&l) {
                    format!(
                        "; LOADED (other processes above {:.0} % of the CPU): not a headline \
                         figure",
                        LOADED_FOREIGN_SHARE * 100.0
                    )
                } else {
                    String::new()
                }
            ),
            None => "machine load unknown".to_string(),
        };
        match result {
            Ok(mut r) => {
                r.notes.push(load_note);
                r.load_average.extend(load);
                if report.machine.gpu.is_none() {
                    report.machine.gpu = r.versions.get("gpu").cloned();
                }
                eprintln!(
                    "== bench: mode `{mode}` done in {:.1} s",
                    t0.elapsed().as_secs_f64()
                );
                pool(&mut report.results, r);
            }
            Err(e) => {
                eprintln!("== bench: mode `{mode}` FAILED: {e:#}");
                failed.push(mode.clone());
                let mut r =
                    failed_result(mode, &args.run.provider, args.run.tokens, &format!("{e:#}"));
                r.notes.push(load_note);
                r.load_average.extend(load);
                pool(&mut report.results, r);
            }
        }
    }
    Ok((report, failed))
}

/// Share of the machine's CPU used by other processes during a mode above which its figures
/// are marked as taken on a loaded machine.
pub const LOADED_FOREIGN_SHARE: f64 = 0.10;

/// Whether other processes used the machine during a mode.
pub fn is_loaded(l: &LoadAverage) -> bool {
    l.foreign_cpu_share
        .is_some_and(|f| f > LOADED_FOREIGN_SHARE)
}

/// Adds `r` to `results`, or pools it into an earlier result of the same mode
/// (runs and notes appended; load figures and warm-up of the first process kept,
/// the process peak the larger of the two).
fn pool(results: &mut Vec<ModeResult>, r: ModeResult) {
    match results
        .iter_mut()
        .find(|x| x.mode == r.mode && x.framework == r.framework)
    {
        Some(x) => {
            x.runs.extend(r.runs);
            x.stream_runs.extend(r.stream_runs);
            x.load_average.extend(r.load_average);
            x.stream_warmup = x.stream_warmup.take().or(r.stream_warmup);
            x.notes.extend(r.notes);
            x.swap_cost.extend(r.swap_cost);
            x.process_peak_rss_bytes = x.process_peak_rss_bytes.max(r.process_peak_rss_bytes);
        }
        None => results.push(r),
    }
}

/// A placeholder result for a mode whose worker failed, so the report says so.
fn failed_result(mode: &str, provider: &str, tokens: usize, why: &str) -> ModeResult {
    ModeResult {
        schema: SCHEMA.into(),
        mode: mode.into(),
        kind: worker::kind_of(mode),
        framework: "onnxruntime".into(),
        provider: provider.into(),
        tokens,
        load_s: 0.0,
        rss_before_load_bytes: 0,
        load_rss_bytes: 0,
        warmup: None,
        runs: Vec::new(),
        stream_warmup: None,
        stream_runs: Vec::new(),
        load_average: Vec::new(),
        process_peak_rss_bytes: 0,
        swap_cost: Vec::new(),
        notes: vec![format!("worker failed: {why}")],
        versions: Default::default(),
        engine_stats: None,
    }
}

/// Runs one worker: its stderr is passed through (and its tail kept for the
/// error message), its stdout's last JSON line is the result.
fn run_one(mut cmd: Command, mode: &str, timeout: Duration) -> Result<ModeResult> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the bench worker")?;
    let stderr = child.stderr.take().context("worker stderr")?;
    let tail = std::thread::spawn(move || {
        let mut tail: Vec<String> = Vec::new();
        for line in BufReader::new(stderr)
            .lines()
            .map_while(std::result::Result::ok)
        {
            eprintln!("  | {line}");
            tail.push(line);
            if tail.len() > 15 {
                tail.remove(0);
            }
        }
        tail
    });
    let stdout = child.stdout.take().context("worker stdout")?;
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stdout), &mut text);
        text
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().context("waiting for the bench worker")? {
            break s;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "mode `{mode}` ran past {} s and was stopped",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = out.join().unwrap_or_default();
    let tail = tail.join().unwrap_or_default();
    if !status.success() {
        bail!("worker exited with {status}: {}", tail.join(" / "));
    }
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| format!("worker printed no JSON result: {}", tail.join(" / ")))?;
    let result: ModeResult =
        serde_json::from_str(line).context("parsing the worker's JSON result")?;
    Ok(result)
}
