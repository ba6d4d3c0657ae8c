//! `chatterbox-ort bench-worker`: one mode, measured in this process, printed
//! as one JSON line on stdout.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::schema::{ModeResult, ResultKind, RunMetrics, SwapCost, SCHEMA};
use super::WorkerArgs;
use crate::bundle::Bundle;
use crate::engine::{Engine, EngineOptions, Request};
use crate::residency::{Component, Host, Policy, ResidencyOptions, Stage};
use crate::runtime::{
    self, CudaOptions, Provider, RuntimeOptions, Session, SessionOptions, Target,
};
use crate::stats as mem;
use crate::stream::StreamOptions;
use crate::t3::T3Dims;

/// What a mode name asks for.
pub(crate) fn kind_of(mode: &str) -> ResultKind {
    match mode {
        "largest-stage" => ResultKind::LargestStage,
        "swap-cost" => ResultKind::SwapCost,
        _ => ResultKind::Synthesis,
    }
}

/// The session cache folder of the benchmark's modes (kept between modes and runs; ONNX
/// Runtime's optimized graphs are keyed by component hash, target, CPU and version), so a
/// benchmark does not depend on the user's own cache.
pub fn opt_cache_dir() -> std::path::PathBuf {
    std::env::temp_dir().join("chatterbox-ort-bench-opt-cache")
}

/// Residency options of a synthesis mode: a preset (`resident`, `swap`, `cpu`,
/// `idle=SECS`, `budget=SIZE`), optionally with a `-prefetch` suffix, and with
/// further items joined by `+` (since `,` separates the modes on the command
/// line): the residency items `prefetch`, `ram-cache`, `COMPONENT=POLICY`, and
/// `no-cache` (sessions created from the bundle's graphs; by default, as in the engine,
/// through the session cache, here in [`opt_cache_dir`]; `opt-cache` says so explicitly),
/// e.g. `swap+no-cache`.
pub(crate) fn residency_of(mode: &str) -> Result<ResidencyOptions> {
    let mut opt_cache = true;
    let mut items: Vec<&str> = Vec::new();
    for (i, item) in mode.split('+').enumerate() {
        match (i, item.strip_suffix("-prefetch")) {
            (0, Some(preset)) => items.extend([preset, "prefetch"]),
            _ if item == "opt-cache" => opt_cache = true,
            _ if item == "no-cache" => opt_cache = false,
            _ => items.push(item),
        }
    }
    let mut opts: ResidencyOptions = items
        .join(",")
        .parse()
        .with_context(|| format!("mode `{mode}` is not a residency preset"))?;
    if opt_cache {
        opts.optimized_cache_dir = Some(opt_cache_dir());
    }
    Ok(opts)
}

/// Runs one mode and prints its [`ModeResult`] as one JSON line on stdout.
pub fn run_worker(args: &WorkerArgs) -> Result<()> {
    let result = match kind_of(&args.mode) {
        ResultKind::Synthesis => synthesis(args)?,
        ResultKind::LargestStage => largest_stage(args)?,
        ResultKind::SwapCost => swap_cost(args)?,
    };
    let line = serde_json::to_string(&result).context("serializing the result")?;
    println!("{line}");
    Ok(())
}

fn provider_of(args: &WorkerArgs) -> Result<Provider> {
    args.run
        .provider
        .parse::<Provider>()
        .with_context(|| format!("--provider {}", args.run.provider))
}

/// Loads ONNX Runtime before anything is measured, so the library is part of
/// the baseline RSS, not of the load.
fn init_runtime() -> Result<()> {
    runtime::init(&RuntimeOptions::default()).context("loading ONNX Runtime")
}

fn empty_result(args: &WorkerArgs, kind: ResultKind) -> ModeResult {
    let mut versions = BTreeMap::new();
    if let Ok(v) = runtime::onnxruntime_version() {
        versions.insert("onnxruntime".to_string(), v);
    }
    ModeResult {
        schema: SCHEMA.into(),
        mode: args.mode.clone(),
        kind,
        framework: "onnxruntime".into(),
        provider: args.run.provider.clone(),
        tokens: args.run.tokens,
        load_s: 0.0,
        rss_before_load_bytes: rss(),
        load_rss_bytes: 0,
        warmup: None,
        runs: Vec::new(),
        stream_warmup: None,
        stream_runs: Vec::new(),
        load_average: Vec::new(),
        process_peak_rss_bytes: 0,
        swap_cost: Vec::new(),
        notes: Vec::new(),
        versions,
        engine_stats: None,
    }
}

fn rss() -> u64 {
    mem::rss_bytes().unwrap_or(0)
}

fn peak_rss() -> u64 {
    mem::peak_rss_bytes().unwrap_or(0)
}

/// The host's counters that a run's metrics are differences of.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    created: u64,
    destroyed: u64,
    create_s: f64,
    transfers: u64,
    transfer_bytes: u64,
}

fn counters(host: &Host) -> (Counters, Vec<(String, u64)>) {
    let stats = host.stats();
    let mut c = Counters::default();
    let mut per = Vec::new();
    for comp in &stats.components {
        c.created += comp.sessions_created;
        c.destroyed += comp.sessions_destroyed;
        c.create_s += comp.create_seconds;
        c.transfers += comp.transfers;
        c.transfer_bytes += comp.transfer_bytes;
        per.push((comp.name.clone(), comp.sessions_destroyed));
    }
    (c, per)
}

/// Runs `f` with the peak RSS reset before it and the host's counters read
/// around it.
fn measure(host: &Host, tokens: usize, f: impl FnOnce() -> Result<f64>) -> Result<RunMetrics> {
    let (before, per_before) = counters(host);
    mem::reset_peak_rss();
    let t = Instant::now();
    let audio_s = f()?;
    let gen_s = t.elapsed().as_secs_f64();
    let peak = peak_rss();
    let (after, per_after) = counters(host);
    let offloaded = per_after
        .iter()
        .zip(&per_before)
        .filter(|((_, a), (_, b))| a > b)
        .count() as u64;
    let stats = host.stats();
    Ok(RunMetrics {
        gen_s,
        audio_s,
        rtf: if audio_s > 0.0 { gen_s / audio_s } else { 0.0 },
        tokens,
        peak_rss_bytes: peak,
        rss_after_bytes: rss(),
        session_create_s: after.create_s - before.create_s,
        sessions_created: after.created - before.created,
        sessions_destroyed: after.destroyed - before.destroyed,
        transfers: after.transfers - before.transfers,
        transfer_bytes: after.transfer_bytes - before.transfer_bytes,
        components_offloaded: offloaded + stats.components_on_cpu_off_device(),
        device_peak_bytes: stats.device_peak_bytes,
        ..Default::default()
    })
}

fn synthesis(args: &WorkerArgs) -> Result<ModeResult> {
    let stream = args.run.stream_options();
    if let Some(o) = &stream {
        o.validate()?;
    }
    init_runtime()?;
    let mut result = empty_result(args, ResultKind::Synthesis);
    let mut opts = EngineOptions::new(&args.bundle);
    opts.provider = provider_of(args)?;
    opts.threads = args.run.threads;
    opts.residency = residency_of(&args.mode)?;
    // The mode says whether sessions go through the cache (and its verification stamps), in
    // the benchmark's folder, never the user's own.
    opts.session_cache = opts.residency.optimized_cache_dir.take();

    result.rss_before_load_bytes = rss();
    let t = Instant::now();
    let engine = Engine::load(opts).context("loading the engine")?;
    result.load_s = t.elapsed().as_secs_f64();
    result.load_rss_bytes = rss();
    let mut process_peak = peak_rss();

    let voice = engine.default_voice();
    let req = Request {
        max_new_tokens: args.run.tokens,
        min_new_tokens: args.run.tokens,
        seed: 0,
        language: args.run.language_for(engine.family())?,
        ..engine.default_request()
    };
    let warm_tokens = args.run.warmup_tokens.unwrap_or(args.run.tokens);
    let warm_req = Request {
        max_new_tokens: warm_tokens,
        min_new_tokens: warm_tokens,
        flow_steps: args.run.warmup_flow_steps.unwrap_or(req.flow_steps),
        ..req
    };
    // One synthesis, non-streamed (`None`) or streamed with the given options.
    let run = |req: &Request, stream: Option<&StreamOptions>| -> Result<RunMetrics> {
        let tokens = req.max_new_tokens;
        let mut stages = None;
        let mut m = measure(engine.host(), tokens, || {
            let audio = match stream {
                None => engine.synthesize(&args.run.text, voice, req)?,
                Some(o) => engine.synthesize_stream(
                    &args.run.text,
                    voice,
                    req,
                    o,
                    &mut |_| true,
                    &mut |_| true,
                )?,
            };
            let secs = audio.seconds();
            stages = Some(audio.stages);
            Ok(secs)
        })?;
        if let Some(s) = stages {
            // Turbo appends its silence tokens after the sampled ones.
            let appended = engine.bundle().config().speech.silence_tokens;
            if s.speech_tokens != tokens + appended {
                bail!(
                    "forced {tokens} speech tokens (+{appended} appended) but S3Gen got {}",
                    s.speech_tokens
                );
            }
            m.stage_seconds = [
                ("conditioning", s.conditioning_s),
                ("t3", s.t3_s),
                ("s3gen", s.s3gen_s),
                ("vocoder", s.vocoder_s),
                ("watermark", s.watermark_s),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            m.first_audio_s = s.first_audio_s;
            m.audio_chunks = s.audio_chunks;
            m.max_chunk_latency_s = s.chunk_latency_s.iter().copied().fold(0.0, f64::max);
            m.chunk_latency_s = s.chunk_latency_s;
            m.s3gen_passes = s.s3gen_passes;
        }
        Ok(m)
    };
    let warm = run(&warm_req, None)?;
    process_peak = process_peak.max(warm.peak_rss_bytes);
    result.warmup = Some(warm);
    if let Some(o) = &stream {
        let warm = run(&warm_req, Some(o))?;
        process_peak = process_peak.max(warm.peak_rss_bytes);
        result.stream_warmup = Some(warm);
    }
    // Streamed and non-streamed runs alternate, so drift hits both alike.
    for _ in 0..args.run.runs {
        let m = run(&req, None)?;
        process_peak = process_peak.max(m.peak_rss_bytes);
        result.runs.push(m);
        if let Some(o) = &stream {
            let m = run(&req, Some(o))?;
            process_peak = process_peak.max(m.peak_rss_bytes);
            result.stream_runs.push(m);
        }
    }
    if let Some(o) = &stream {
        result.notes.push(format!(
            "streamed runs: Engine::synthesize_stream, first S3Gen pass after {} tokens, then \
             every {} tokens, overlap {}; each right after the non-streamed run",
            o.first_chunk_tokens, o.chunk_tokens, o.overlap
        ));
    }
    result.process_peak_rss_bytes = process_peak;
    result.engine_stats = serde_json::to_value(engine.host().stats()).ok();
    Ok(result)
}

/// Bytes of weights per stage, from the manifest.
fn stage_bytes(bundle: &Bundle) -> Result<Vec<(Stage, u64)>> {
    let mut out: Vec<(Stage, u64)> = Vec::new();
    for comp in Component::ALL {
        let spec = bundle.component(comp.name())?;
        let stage = comp.stage();
        match out.iter_mut().find(|(s, _)| *s == stage) {
            Some((_, b)) => *b += spec.weight_bytes(),
            None => out.push((stage, spec.weight_bytes())),
        }
    }
    Ok(out)
}

/// Loads and runs only the stage with the most weight bytes (T3 or S3Gen),
/// every one of its components resident: the reference footprint.
fn largest_stage(args: &WorkerArgs) -> Result<ModeResult> {
    init_runtime()?;
    let mut result = empty_result(args, ResultKind::LargestStage);
    let bundle = Arc::new(Bundle::open(&args.bundle)?);
    let sizes = stage_bytes(&bundle)?;
    let (stage, bytes) = sizes
        .iter()
        .copied()
        .filter(|(s, _)| matches!(s, Stage::T3 | Stage::S3Gen))
        .max_by_key(|(_, b)| *b)
        .context("the bundle has no T3 or S3Gen stage")?;
    result.notes.push(format!(
        "largest stage: {stage:?} ({:.0} MiB of weights; stages: {})",
        bytes as f64 / (1024.0 * 1024.0),
        sizes
            .iter()
            .map(|(s, b)| format!("{s:?} {:.0} MiB", *b as f64 / (1024.0 * 1024.0)))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let dims = T3Dims::from_config(bundle.config());
    let voice = bundle.default_voice()?;

    // Everything outside the stage is swap (never created unless used); the
    // stage's own components are resident from load on.
    let mut residency = ResidencyOptions {
        default: Policy::Swap,
        ..Default::default()
    };
    for comp in stage.components() {
        residency.set_policy(comp, Policy::Resident);
    }
    result.rss_before_load_bytes = rss();
    let t = Instant::now();
    let host = Host::new(
        Arc::clone(&bundle),
        provider_of(args)?,
        args.run.threads,
        residency,
    )?;
    result.load_s = t.elapsed().as_secs_f64();
    result.load_rss_bytes = rss();
    let mut process_peak = peak_rss();

    // Inputs made outside the measurement: T3 conditioning, text ids (the family's).
    // The bundle's generation defaults (exaggeration 0.5 for the original model).
    let mut req = crate::engine::Request::from_generation(bundle.generation());
    req.language = args.run.language_for(bundle.manifest().model.family)?;
    let cond = {
        let _g = host.stage(Stage::Conditioning)?;
        crate::family::t3_conditioning(&host, bundle.manifest().model.family, &dims, &voice, &req)?
    };
    let frontend = crate::family::T3Frontend::load(&bundle)?;
    let ids = frontend.text_ids(&args.run.text, req.language)?;
    let rate = f64::from(bundle.config().speech.token_rate_hz);

    let run_once = |seed: u64, tokens: usize| -> Result<f64> {
        let _g = host.stage(stage)?;
        match stage {
            Stage::T3 => {
                let mut rng = crate::rng::EngineRng::with_stream(seed, 0);
                let req = crate::engine::Request {
                    max_new_tokens: tokens,
                    min_new_tokens: tokens,
                    ..req
                };
                let toks = crate::family::generate_speech_tokens(
                    &host,
                    &bundle,
                    &dims,
                    None,
                    &cond,
                    &ids,
                    &req,
                    &mut rng,
                    &mut |_, _| true,
                )?;
                if toks.len() != tokens {
                    bail!("forced {tokens} tokens, got {}", toks.len());
                }
            }
            _ => bail!("running {stage:?} alone is not implemented (T3 is the largest stage of every bundle so far)"),
        }
        Ok(tokens as f64 / rate)
    };
    let warm_tokens = args.run.warmup_tokens.unwrap_or(args.run.tokens);
    let warm = measure(&host, warm_tokens, || run_once(0, warm_tokens))?;
    process_peak = process_peak.max(warm.peak_rss_bytes);
    result.warmup = Some(warm);
    for i in 0..args.run.runs {
        let m = measure(&host, args.run.tokens, || {
            run_once(i as u64 + 1, args.run.tokens)
        })?;
        process_peak = process_peak.max(m.peak_rss_bytes);
        result.runs.push(m);
    }
    result.process_peak_rss_bytes = process_peak;
    result.engine_stats = serde_json::to_value(host.stats()).ok();
    Ok(result)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        0.0
    } else if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    }
}

/// Times session creation of every component four ways and splits the cost.
fn swap_cost(args: &WorkerArgs) -> Result<ModeResult> {
    init_runtime()?;
    let mut result = empty_result(args, ResultKind::SwapCost);
    let bundle = Bundle::open(&args.bundle)?;
    let target = match provider_of(args)? {
        Provider::Cpu => Target::Cpu,
        Provider::Cuda { device } | Provider::Auto { device } => Target::Cuda(CudaOptions {
            device_id: i32::try_from(device).context("device ordinal")?,
            ..Default::default()
        }),
    };
    let plain = SessionOptions {
        target: target.clone(),
        threads: args
            .run
            .threads
            .unwrap_or_else(|| SessionOptions::default().threads),
        ..Default::default()
    };
    let cache_dir =
        std::env::temp_dir().join(format!("chatterbox-ort-swap-cost-{}", std::process::id()));
    std::fs::create_dir_all(&cache_dir)
        .with_context(|| format!("creating {}", cache_dir.display()))?;
    let cached = SessionOptions {
        optimized_model_cache: Some(cache_dir.clone()),
        ..plain.clone()
    };
    let repeats = args.run.swap_cost_repeats.max(1);
    let dir = bundle.dir().to_path_buf();
    let time_it = |f: &dyn Fn() -> crate::Result<()>| -> Result<f64> {
        let mut v = Vec::with_capacity(repeats);
        for _ in 0..repeats {
            let t = Instant::now();
            f()?;
            v.push(t.elapsed().as_secs_f64());
            mem::trim_heap();
        }
        Ok(median(v))
    };
    for comp in Component::ALL {
        let name = comp.name();
        let spec = bundle.component(name)?.clone();
        bundle.verify_component(name)?;
        // Writes the optimized-model cache (not timed).
        drop(Session::create(&dir, name, &spec, &cached)?);
        mem::trim_heap();

        // Memory: what the live session holds, and the transient peak of creating it.
        let creation_peak = |f: &dyn Fn() -> crate::Result<Session>| -> Result<(u64, u64)> {
            mem::trim_heap();
            let before = rss();
            mem::reset_peak_rss();
            let session = f()?;
            let (peak, alive) = (peak_rss(), rss());
            drop(session);
            mem::trim_heap();
            Ok((peak.saturating_sub(before), alive.saturating_sub(before)))
        };
        let (create_peak_file_bytes, session_rss_bytes) =
            creation_peak(&|| Session::create(&dir, name, &spec, &plain))?;
        let in_ram = Session::read_model(&dir, &spec)?;
        let (create_peak_memory_bytes, _) =
            creation_peak(&|| Session::create_from_memory(name, &spec, &in_ram, &plain))?;
        drop(in_ram);

        let read_s = time_it(&|| Session::read_model(&dir, &spec).map(drop))?;
        let create_file_s = time_it(&|| Session::create(&dir, name, &spec, &plain).map(drop))?;
        let create_file_cached_s =
            time_it(&|| Session::create(&dir, name, &spec, &cached).map(drop))?;
        let bytes = Session::read_model(&dir, &spec)?;
        let create_memory_s =
            time_it(&|| Session::create_from_memory(name, &spec, &bytes, &plain).map(drop))?;
        drop(bytes);
        let optimized = Session::read_optimized_cache(&cache_dir, name, &spec, &target)?;
        let create_memory_cached_s =
            time_it(&|| Session::create_from_memory(name, &spec, &optimized, &plain).map(drop))?;
        drop(optimized);
        mem::trim_heap();
        eprintln!(
            "swap-cost {name}: read {read_s:.3} s, files {create_file_s:.3} s, files+cache \
             {create_file_cached_s:.3} s, RAM {create_memory_s:.3} s, RAM+cache {create_memory_cached_s:.3} s"
        );
        result.swap_cost.push(SwapCost {
            component: name.to_string(),
            file_bytes: spec.files.iter().map(|f| f.bytes).sum(),
            read_s,
            create_file_s,
            create_file_cached_s,
            create_memory_s,
            create_memory_cached_s,
            part_file_read_s: create_file_s - create_memory_s,
            part_optimize_s: create_file_s - create_file_cached_s,
            part_initializers_s: create_memory_cached_s,
            repeats,
            session_rss_bytes,
            create_peak_file_bytes,
            create_peak_memory_bytes,
        });
    }
    let _ = std::fs::remove_dir_all(&cache_dir);
    result.process_peak_rss_bytes = peak_rss();
    result.notes.push(format!(
        "session creation timed {repeats} times per variant (median), page cache warm, heap trimmed between; \
         read = Session::read_model of the graph and its external data"
    ));
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_map_to_kinds() {
        assert_eq!(kind_of("largest-stage"), ResultKind::LargestStage);
        assert_eq!(kind_of("swap-cost"), ResultKind::SwapCost);
        assert_eq!(kind_of("swap"), ResultKind::Synthesis);
    }

    #[test]
    fn modes_map_to_residency_options() {
        let swap = residency_of("swap").unwrap();
        assert_eq!(swap.default, Policy::Swap);
        assert!(!swap.prefetch);
        let pre = residency_of("swap-prefetch").unwrap();
        assert_eq!(pre.default, Policy::Swap);
        assert!(pre.prefetch);
        let ram = residency_of("swap+prefetch+ram-cache").unwrap();
        assert!(ram.prefetch && ram.model_cache_in_ram);
        assert_eq!(residency_of("budget=2GiB").unwrap().budget, Some(2 << 30));
        let cached = residency_of("swap-prefetch+opt-cache").unwrap();
        assert!(cached.prefetch);
        assert_eq!(cached.optimized_cache_dir, Some(opt_cache_dir()));
        assert_eq!(
            residency_of("swap").unwrap().optimized_cache_dir,
            Some(opt_cache_dir())
        );
        assert!(residency_of("swap+no-cache")
            .unwrap()
            .optimized_cache_dir
            .is_none());
        assert!(matches!(
            residency_of("idle=30").unwrap().default,
            Policy::Idle(_)
        ));
        assert!(residency_of("fast").is_err());
    }

    fn tiny_args(mode: &str) -> WorkerArgs {
        WorkerArgs {
            bundle: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("onnx/tiny"),
            mode: mode.into(),
            run: crate::bench::RunArgs {
                runs: 1,
                tokens: 6,
                provider: "cpu".into(),
                threads: Some(1),
                text: "A short test.".into(),
                swap_cost_repeats: 1,
                warmup_tokens: Some(3),
                warmup_flow_steps: Some(1),
                stream: false,
                first_chunk_tokens: None,
                chunk_tokens: None,
                overlap: false,
                language: None,
            },
        }
    }

    #[test]
    fn swap_mode_on_the_tiny_bundle() {
        let r = synthesis(&tiny_args("swap")).unwrap();
        assert_eq!(r.kind, ResultKind::Synthesis);
        assert_eq!(r.warmup.as_ref().unwrap().tokens, 3);
        let run = &r.runs[0];
        assert_eq!(run.tokens, 6);
        // 6 tokens of 960 samples at 24 kHz.
        assert!((run.audio_s - 6.0 * 0.04).abs() < 1e-9, "{}", run.audio_s);
        assert!(run.sessions_created > 0 && run.sessions_created == run.sessions_destroyed);
        assert!(run.peak_rss_bytes > 0 && run.rtf > 0.0);
        assert!(r.load_rss_bytes > 0);
        // Non-streamed: one delivery, first audio with it; no streamed runs.
        assert_eq!((run.audio_chunks, run.s3gen_passes), (1, 1));
        assert!(run.first_audio_s > 0.0 && run.first_audio_s <= run.gen_s);
        assert_eq!(run.max_chunk_latency_s, run.chunk_latency_s[0]);
        assert!(r.stream_runs.is_empty() && r.stream_warmup.is_none());
    }

    #[test]
    fn streamed_runs_on_the_tiny_bundle() {
        let mut args = tiny_args("resident");
        args.run.runs = 2;
        args.run.tokens = 30;
        args.run.stream = true;
        args.run.first_chunk_tokens = Some(12);
        args.run.chunk_tokens = Some(8);
        let r = synthesis(&args).unwrap();
        assert_eq!((r.runs.len(), r.stream_runs.len()), (2, 2));
        assert_eq!(r.stream_warmup.as_ref().unwrap().tokens, 3);
        for (plain, streamed) in r.runs.iter().zip(&r.stream_runs) {
            // The same audio length either way.
            assert_eq!(plain.audio_s, streamed.audio_s);
            assert_eq!(streamed.tokens, 30);
            // Passes at 12, 20, 28 tokens and the last one.
            assert_eq!(streamed.s3gen_passes, 4);
            assert_eq!(streamed.audio_chunks, 4);
            assert_eq!(streamed.chunk_latency_s.len(), 4);
            assert!(streamed.first_audio_s > 0.0 && streamed.first_audio_s < streamed.gen_s);
            let max = streamed.chunk_latency_s.iter().copied().fold(0.0, f64::max);
            assert_eq!(streamed.max_chunk_latency_s, max);
            assert!(streamed.peak_rss_bytes > 0 && streamed.rtf > 0.0);
        }
        assert!(r.notes.iter().any(|n| n.contains("after 12 tokens")));
        // Bad streaming options are refused before anything runs.
        args.run.chunk_tokens = Some(0);
        let e = synthesis(&args).unwrap_err();
        assert!(format!("{e:#}").contains("chunk_tokens"), "{e:#}");
    }

    #[test]
    fn largest_stage_and_swap_cost_on_the_tiny_bundle() {
        let r = largest_stage(&tiny_args("largest-stage")).unwrap();
        assert_eq!(r.runs.len(), 1);
        assert_eq!(r.runs[0].sessions_created, 0);
        assert!(r.notes[0].starts_with("largest stage:"));
        let c = swap_cost(&tiny_args("swap-cost")).unwrap();
        assert_eq!(c.swap_cost.len(), Component::ALL.len());
        assert!(c
            .swap_cost
            .iter()
            .all(|x| x.create_file_s > 0.0 && x.create_memory_cached_s > 0.0));
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(Vec::new()), 0.0);
    }
}
