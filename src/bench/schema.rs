//! The JSON schema shared by the Rust bench workers, the PyTorch baseline
//! (`benches/baseline_torch.py`) and the merged report.
//!
//! A worker prints one [`ModeResult`] on stdout. The orchestrator gathers them
//! into a [`Report`], adds the [`Machine`] and the per-mode [`ModeSummary`]
//! (medians, spread and ratios to `resident`). The baseline script writes a
//! [`Report`] too (without summaries); `--baseline` merges its results.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Schema tag written in every result and report.
pub const SCHEMA: &str = "chatterbox-ort-bench/1";

/// What a worker measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultKind {
    /// Full syntheses (text to audio) under one residency mode.
    Synthesis,
    /// Only the largest stage, loaded and run alone: the reference footprint.
    LargestStage,
    /// Session creation split into file read, graph optimization and initializer set-up.
    SwapCost,
}

/// One measured synthesis (or one run of the largest stage alone). Absent
/// fields read as 0.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunMetrics {
    /// Wall time of the call, seconds.
    pub gen_s: f64,
    /// Seconds of audio produced (for the largest stage alone: tokens / 25 Hz).
    pub audio_s: f64,
    /// Real-time factor: `gen_s / audio_s`.
    pub rtf: f64,
    /// Speech tokens generated.
    pub tokens: usize,
    /// Peak resident set size during the call (VmHWM, reset before the call), bytes.
    pub peak_rss_bytes: u64,
    /// Resident set size after the call, bytes.
    pub rss_after_bytes: u64,
    /// Seconds spent creating sessions during the call.
    pub session_create_s: f64,
    /// Sessions created during the call.
    pub sessions_created: u64,
    /// Sessions destroyed during the call.
    pub sessions_destroyed: u64,
    /// Host <-> device transfers during the call (0 on the CPU provider).
    pub transfers: u64,
    /// Bytes moved host <-> device during the call (0 on the CPU provider).
    pub transfer_bytes: u64,
    /// Components that were offloaded (destroyed, or kept off the accelerator) during the call.
    pub components_offloaded: u64,
    /// Peak device memory during the call where a GPU is present (NVML), bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_peak_bytes: Option<u64>,
    /// Peak RSS per pipeline stage where the engine reports it, bytes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stage_peak_rss_bytes: BTreeMap<String, u64>,
    /// Seconds per pipeline stage where the engine or script reports it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stage_seconds: BTreeMap<String, f64>,
    /// Seconds from the call's start to its first audio (the engine's
    /// `StageTimings::first_audio_s`): for a non-streamed synthesis of a one-chunk text the
    /// whole synthesis, for a streamed one the first delivery. 0 where not measured.
    pub first_audio_s: f64,
    /// Audio deliveries of the call (one per text chunk without streaming).
    pub audio_chunks: usize,
    /// The longest gap between two deliveries (the first counted from the call's start),
    /// seconds.
    pub max_chunk_latency_s: f64,
    /// Every gap between deliveries, seconds (`StageTimings::chunk_latency_s`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunk_latency_s: Vec<f64>,
    /// S3Gen passes run (one per text chunk without streaming).
    pub s3gen_passes: usize,
}

/// The load average (1, 5 and 15 minutes, as `uptime` shows it) around one worker process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadAverage {
    /// Before the worker started.
    pub before: [f64; 3],
    /// After it ended.
    pub after: [f64; 3],
    /// CPU time used by other processes while the worker ran, as a share of the machine's
    /// capacity (all cores x wall time): `/proc/stat` busy time less the worker's own CPU
    /// time. Unlike the load average it is not raised by the worker itself.
    #[serde(default)]
    pub foreign_cpu_share: Option<f64>,
}

/// Session-creation cost of one component, split into its parts.
///
/// Four ways to create the same session, each timed (median of the repeats):
/// from the files, from the files with the optimized-model cache, from bytes
/// already in RAM, and from cached optimized bytes already in RAM. The parts
/// follow by difference: file read = file - memory, graph optimization =
/// uncached - cached, initializer set-up = cached from memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SwapCost {
    /// Manifest name of the component.
    pub component: String,
    /// Bytes of its files (graph plus external data).
    pub file_bytes: u64,
    /// Seconds to read its files into RAM (page cache warm).
    pub read_s: f64,
    /// Create from the files, optimizing the graph.
    pub create_file_s: f64,
    /// Create from the files of the optimized-model cache (no optimization).
    pub create_file_cached_s: f64,
    /// Create from bytes in RAM, optimizing the graph.
    pub create_memory_s: f64,
    /// Create from optimized bytes in RAM (no optimization).
    pub create_memory_cached_s: f64,
    /// Derived: file read part.
    pub part_file_read_s: f64,
    /// Derived: graph optimization part.
    pub part_optimize_s: f64,
    /// Derived: initializer set-up (and session construction) part.
    pub part_initializers_s: f64,
    /// How many times each variant was timed.
    pub repeats: usize,
    /// RSS added by the live session (created from the files), bytes.
    pub session_rss_bytes: u64,
    /// Peak RSS above the pre-creation RSS while creating it from the files, bytes.
    pub create_peak_file_bytes: u64,
    /// The same when created from bytes already in RAM (the bytes themselves not counted).
    pub create_peak_memory_bytes: u64,
}

/// What one worker process (one mode) measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModeResult {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Mode name as given on the command line (`swap`, `idle=30`, `torch-offload`, ...).
    pub mode: String,
    /// What was measured.
    pub kind: ResultKind,
    /// `onnxruntime` or `pytorch`.
    pub framework: String,
    /// Execution provider or device: `cpu`, `cuda`.
    pub provider: String,
    /// Speech tokens per synthesis.
    pub tokens: usize,
    /// Seconds to load the engine (or model).
    pub load_s: f64,
    /// RSS before loading, bytes (runtime library loaded, no model).
    pub rss_before_load_bytes: u64,
    /// RSS right after loading, bytes.
    pub load_rss_bytes: u64,
    /// The warm-up call (cold: first after load).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<RunMetrics>,
    /// The measured calls.
    #[serde(default)]
    pub runs: Vec<RunMetrics>,
    /// The streamed warm-up (`bench --stream`; after the non-streamed warm-up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_warmup: Option<RunMetrics>,
    /// The streamed measured calls (`bench --stream`): `Engine::synthesize_stream` with
    /// the same request, each right after the non-streamed call of the same index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stream_runs: Vec<RunMetrics>,
    /// The machine's load average around each worker process of this mode (one entry per
    /// round), where `/proc/loadavg` exists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_average: Vec<LoadAverage>,
    /// Peak RSS of the whole process (VmHWM at exit, load and warm-up included), bytes.
    pub process_peak_rss_bytes: u64,
    /// Per-component swap costs (kind `swap_cost` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub swap_cost: Vec<SwapCost>,
    /// Free-form facts about the measurement (what applies, what was substituted).
    #[serde(default)]
    pub notes: Vec<String>,
    /// Runtime versions: `onnxruntime`, `torch`, ...
    #[serde(default)]
    pub versions: BTreeMap<String, String>,
    /// The engine's own statistics at the end, as it reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_stats: Option<serde_json::Value>,
}

/// The machine the benchmark ran on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Machine {
    /// CPU model (`model name` in /proc/cpuinfo).
    pub cpu: String,
    /// Logical cores available to the process.
    pub cores: usize,
    /// Physical memory, bytes.
    pub ram_bytes: u64,
    /// Kernel release.
    pub kernel: String,
    /// GPU name where one was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
}

/// Median and spread of one figure over the measured runs, with its ratio to
/// the `resident` median of the same report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Median.
    pub median: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// `median / resident median`; absent without a resident result or when that median is 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
}

/// The figures of one mode, summarised.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModeSummary {
    /// Mode name.
    pub mode: String,
    /// Framework (`onnxruntime`, `pytorch`).
    pub framework: String,
    /// Result kind.
    pub kind: Option<ResultKind>,
    /// Measured runs summarised.
    pub runs: usize,
    /// RSS after load, bytes (one sample per process).
    pub load_rss_bytes: Spread,
    /// Peak RSS per measured run, bytes.
    pub peak_rss_bytes: Spread,
    /// Real-time factor.
    pub rtf: Spread,
    /// Generation wall time, seconds.
    pub gen_s: Spread,
    /// Time creating sessions, seconds.
    pub session_create_s: Spread,
    /// Sessions created per run.
    pub sessions_created: Spread,
    /// Sessions destroyed per run.
    pub sessions_destroyed: Spread,
    /// Host <-> device transfers per run.
    pub transfers: Spread,
    /// Components offloaded per run.
    pub components_offloaded: Spread,
    /// Peak device memory, bytes, where measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_peak_bytes: Option<Spread>,
    /// Time to first audio of the measured (non-streamed) runs, seconds: the whole
    /// synthesis for a one-chunk text. Zeros where not measured (older reports, PyTorch).
    #[serde(default)]
    pub first_audio_s: Spread,
    /// The streamed runs (`bench --stream`), where measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamSummary>,
}

/// The streamed runs of one mode, summarised; ratios are to the streamed runs of
/// `resident`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamSummary {
    /// Streamed runs summarised.
    pub runs: usize,
    /// Time to first audio, seconds.
    pub first_audio_s: Spread,
    /// Streaming real-time factor: wall time of the streamed call / audio seconds.
    pub rtf: Spread,
    /// Wall time of the streamed call, seconds.
    pub gen_s: Spread,
    /// Audio deliveries per call.
    pub audio_chunks: Spread,
    /// The longest gap between two deliveries per call, seconds.
    pub max_chunk_latency_s: Spread,
    /// Peak RSS per streamed call, bytes.
    pub peak_rss_bytes: Spread,
}

/// The acceptance figures of the residency work, computed from a report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Acceptance {
    /// `swap` peak RSS / `resident` peak RSS (target <= 0.72).
    pub swap_peak_vs_resident: Option<f64>,
    /// `swap` peak RSS / largest stage's own peak RSS (target <= 1.00).
    pub swap_peak_vs_largest_stage: Option<f64>,
    /// The swap configuration with the lowest RTF (`swap`, `swap-prefetch`, ...).
    pub best_swap_mode: Option<String>,
    /// Its RTF / `resident` RTF (target <= 1.10).
    pub best_swap_rtf_vs_resident: Option<f64>,
    /// One line per target: met or not, with the numbers.
    pub verdicts: Vec<String>,
}

/// Everything one bench invocation produced; also the baseline file format.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// UTC time the report was written (seconds since the Unix epoch).
    pub created_unix_s: u64,
    /// Where it ran.
    pub machine: Machine,
    /// Bundle path, tokens, runs, provider, threads: how it was invoked.
    pub config: BTreeMap<String, String>,
    /// One result per mode, in the order run (baseline results appended).
    pub results: Vec<ModeResult>,
    /// Summaries of `results` (filled by the Rust side).
    #[serde(default)]
    pub summary: Vec<ModeSummary>,
    /// Acceptance figures (filled by the Rust side).
    #[serde(default)]
    pub acceptance: Acceptance,
}
