//! `chatterbox-ort`: the command-line shell over the library.
//!
//! ```text
//! chatterbox-ort say "Hello there." -o hello.wav
//! chatterbox-ort voice ref.wav -o voice.safetensors
//! chatterbox-ort convert speech.wav --voice target.wav -o converted.wav
//! chatterbox-ort info
//! ```
//!
//! Errors are printed as one line on stderr with a non-zero exit status; no
//! output file is left behind on failure.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use chatterbox_ort::bundle::{Bundle, GenerationDefaults};
use chatterbox_ort::{audio, conditioning, limits, Engine, EngineOptions, Request, Voice};

/// Chatterbox text-to-speech on ONNX Runtime.
#[derive(Parser, Debug)]
#[command(name = "chatterbox-ort", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Synthesize speech from text into a 24 kHz mono WAV.
    Say(SayArgs),
    /// Build a voice from a reference WAV and save it (safetensors).
    Voice(VoiceArgs),
    /// Convert speech to another voice (voice conversion) into a 24 kHz mono WAV.
    Convert(ConvertArgs),
    /// Show the bundle, its components, ONNX Runtime's version and providers.
    Info(EngineArgs),
    /// Benchmark residency modes (each in a fresh process) against `resident`.
    Bench(chatterbox_ort::bench::BenchArgs),
    /// One benchmark mode in this process (run by `bench`; prints one JSON line).
    #[command(hide = true)]
    BenchWorker(chatterbox_ort::bench::WorkerArgs),
}

/// Where the model comes from and how it runs.
#[derive(Args, Debug, Clone)]
struct EngineArgs {
    /// Bundle folder. Default: $CHATTERBOX_ORT_BUNDLE, else `onnx/tiny` under the
    /// current folder.
    #[arg(long, value_name = "DIR")]
    bundle: Option<PathBuf>,
    /// Execution provider: cpu, cuda[:N] or auto[:N].
    #[arg(long, default_value = "cpu", value_name = "PROVIDER")]
    provider: String,
    /// ONNX Runtime intra-op threads per session.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    threads: Option<usize>,
    /// Residency of the components' sessions: resident, swap, cpu, idle=SECONDS,
    /// budget=SIZE, with extra comma items (prefetch, ram-cache,
    /// COMPONENT=POLICY), e.g. `swap,prefetch`.
    #[arg(long, default_value = "resident", value_name = "PRESET")]
    residency: String,
}

#[derive(Args, Debug)]
struct SayArgs {
    /// The text to speak (or use --text-file).
    #[arg(value_name = "TEXT", conflicts_with = "text_file")]
    text: Option<String>,
    /// Read the text from a UTF-8 file (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    text_file: Option<PathBuf>,
    /// Output WAV (`-` for stdout).
    #[arg(short, long, default_value = "out.wav", value_name = "FILE")]
    output: PathBuf,
    /// Reference clip to clone the voice from (WAV, any rate).
    #[arg(long, value_name = "WAV", conflicts_with = "voice_file")]
    voice: Option<PathBuf>,
    /// A voice saved by `chatterbox-ort voice`.
    #[arg(long, value_name = "FILE")]
    voice_file: Option<PathBuf>,
    /// Emotion exaggeration (>= 0; 0.5 neutral).
    #[arg(long, allow_hyphen_values = true)]
    exaggeration: Option<f32>,
    /// T3 classifier-free guidance weight (>= 0).
    #[arg(long, allow_hyphen_values = true)]
    cfg_weight: Option<f32>,
    /// Sampling temperature (> 0).
    #[arg(long, allow_hyphen_values = true)]
    temperature: Option<f32>,
    /// min-p filter, in [0, 1).
    #[arg(long, allow_hyphen_values = true)]
    min_p: Option<f32>,
    /// top-p filter, in (0, 1].
    #[arg(long, allow_hyphen_values = true)]
    top_p: Option<f32>,
    /// top-k filter (Turbo; 0 disables it; the original model has none).
    #[arg(long, allow_negative_numbers = true)]
    top_k: Option<usize>,
    /// Repetition penalty (> 0).
    #[arg(long, allow_hyphen_values = true)]
    repetition_penalty: Option<f32>,
    /// Random seed (same seed, same audio).
    #[arg(long, allow_negative_numbers = true)]
    seed: Option<u64>,
    /// Most speech tokens per text chunk (25 per second of audio).
    #[arg(long, allow_negative_numbers = true)]
    max_new_tokens: Option<usize>,
    /// Euler steps of the flow matching (>= 1).
    #[arg(long, allow_negative_numbers = true)]
    flow_steps: Option<usize>,
    /// Do not embed the Perth watermark.
    #[arg(long)]
    no_watermark: bool,
    /// Print per-stage timings and host statistics as JSON (stdout, or stderr with `-o -`).
    #[arg(long)]
    stats: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(Args, Debug)]
struct VoiceArgs {
    /// Reference clip (WAV, any rate, at least 0.5 s).
    #[arg(value_name = "WAV")]
    reference: PathBuf,
    /// Output voice file.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(Args, Debug)]
struct ConvertArgs {
    /// The speech to convert (WAV, any rate and channel count, 40 ms to 1 hour).
    #[arg(value_name = "SOURCE")]
    source: PathBuf,
    /// The target voice: a WAV clip (any rate, 0.5 to 300 s; its first 10 s are used) or a
    /// voice file saved by `chatterbox-ort voice` (a name ending in `.safetensors`).
    /// Default: the bundle's voice.
    #[arg(long, value_name = "WAV|VOICE")]
    voice: Option<PathBuf>,
    /// Output WAV (`-` for stdout).
    #[arg(short, long, default_value = "out.wav", value_name = "FILE")]
    output: PathBuf,
    /// Random seed (same seed, same audio).
    #[arg(long, allow_negative_numbers = true)]
    seed: Option<u64>,
    /// Euler steps of the flow matching (>= 1).
    #[arg(long, allow_negative_numbers = true)]
    flow_steps: Option<usize>,
    /// Do not embed the Perth watermark.
    #[arg(long)]
    no_watermark: bool,
    /// Print per-stage timings and host statistics as JSON (stdout, or stderr with `-o -`).
    #[arg(long)]
    stats: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // One line, like every other error: clap's first line names the problem.
            let rendered = e.render().to_string();
            let first = rendered
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("invalid command line");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("error: {first} (see --help)");
            return ExitCode::from(2);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CHATTERBOX_ORT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(false)
        .init();
    let result = match cli.command {
        Command::Say(args) => say(args),
        Command::Voice(args) => voice(args),
        Command::Convert(args) => convert(args),
        Command::Info(args) => info(args),
        Command::Bench(args) => chatterbox_ort::bench::run_cli(&args),
        Command::BenchWorker(args) => chatterbox_ort::bench::run_worker(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace(['\n', '\r'], " ");
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// The bundle folder: `--bundle`, else `$CHATTERBOX_ORT_BUNDLE`, else `onnx/tiny`
/// under the current folder.
fn bundle_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("CHATTERBOX_ORT_BUNDLE").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let local = PathBuf::from("onnx/tiny");
    if local.join("manifest.json").is_file() {
        return Ok(local);
    }
    bail!("no bundle: pass --bundle DIR or set CHATTERBOX_ORT_BUNDLE (there is no onnx/tiny/manifest.json in the current folder)")
}

fn load_engine(args: &EngineArgs) -> Result<Engine> {
    let dir = bundle_dir(args.bundle.as_deref())?;
    load_engine_from(&dir, args)
}

/// The engine options of `args`, every value checked (nothing is loaded).
fn engine_options(dir: &Path, args: &EngineArgs) -> Result<EngineOptions> {
    let mut opts = EngineOptions::new(dir);
    opts.provider = args.provider.parse()?;
    opts.threads = args.threads;
    opts.residency = args.residency.parse()?;
    opts.validate()?;
    Ok(opts)
}

fn load_engine_from(dir: &Path, args: &EngineArgs) -> Result<Engine> {
    Ok(Engine::load(engine_options(dir, args)?)?)
}

/// Reads the text argument or file; a file must be UTF-8.
fn read_text(args: &SayArgs) -> Result<String> {
    match (&args.text, &args.text_file) {
        (Some(t), None) => Ok(t.clone()),
        (None, Some(path)) => {
            let max = limits::MAX_TEXT_BYTES as u64;
            let (bytes, name) = if path.as_os_str() == "-" {
                let stdin = std::io::stdin().lock();
                let bytes = limits::read_capped_from(stdin, max, "text", Path::new("<stdin>"))?;
                (bytes, "stdin".to_string())
            } else {
                (
                    limits::read_capped(path, max, "text")?,
                    format!("`{}`", path.display()),
                )
            };
            String::from_utf8(bytes).map_err(|e| {
                anyhow!(
                    "invalid text: text file {name} is not valid UTF-8 (at byte {})",
                    e.utf8_error().valid_up_to()
                )
            })
        }
        (None, None) => bail!("no text: give TEXT or --text-file FILE"),
        (Some(_), Some(_)) => bail!("give either TEXT or --text-file, not both"),
    }
}

fn request(defaults: &GenerationDefaults, args: &SayArgs) -> Request {
    let mut r = Request::from_generation(defaults);
    if let Some(v) = args.exaggeration {
        r.exaggeration = v;
    }
    if let Some(v) = args.cfg_weight {
        r.cfg_weight = v;
    }
    if let Some(v) = args.temperature {
        r.temperature = v;
    }
    if let Some(v) = args.min_p {
        r.min_p = v;
    }
    if let Some(v) = args.top_p {
        r.top_p = v;
    }
    if let Some(v) = args.top_k {
        r.top_k = v;
    }
    if let Some(v) = args.repetition_penalty {
        r.repetition_penalty = v;
    }
    if let Some(v) = args.seed {
        r.seed = v;
    }
    if let Some(v) = args.max_new_tokens {
        r.max_new_tokens = v;
    }
    if let Some(v) = args.flow_steps {
        r.flow_steps = v;
    }
    if args.no_watermark {
        r.watermark = false;
    }
    r
}

/// The input files of a `say` (an output path must not be one of them).
fn say_inputs(args: &SayArgs) -> Vec<&Path> {
    [&args.voice, &args.voice_file, &args.text_file]
        .into_iter()
        .filter_map(|p| p.as_deref())
        .collect()
}

fn say(args: SayArgs) -> Result<()> {
    let wall = Instant::now();
    let to_stdout = args.output.as_os_str() == "-";
    if !to_stdout {
        chatterbox_ort::output::check_not_an_input(&args.output, &say_inputs(&args))?;
    }
    let text = read_text(&args)?;
    if text.trim().is_empty() {
        // Checked before loading anything; the library reports the same error.
        bail!("invalid text: the text is empty or whitespace only");
    }
    // Everything that can be checked without sessions is checked before loading them.
    let dir = bundle_dir(args.engine.bundle.as_deref())?;
    let opts = engine_options(&dir, &args.engine)?;
    let bundle = Bundle::open(&dir)?;
    let req = request(bundle.generation(), &args);
    req.validate()?;
    req.check_model_limits(bundle.config(), 0)?;
    drop(bundle);
    let reference = match &args.voice {
        Some(path) => Some(audio::read_wav(
            path,
            conditioning::MIN_VOICE_SECONDS as f32,
        )?),
        None => None,
    };
    let engine = Engine::load(opts)?;
    let loaded;
    let voice: &Voice = if let (Some(wav), Some(path)) = (&reference, &args.voice) {
        loaded = engine
            .voice_from_samples(&wav.samples, wav.sample_rate)
            .with_context(|| format!("reference clip `{}`", path.display()))?;
        &loaded
    } else if let Some(file) = &args.voice_file {
        loaded = Voice::load(file)?;
        &loaded
    } else {
        engine.default_voice()
    };
    let chunks = engine.text_chunks(&text)?.len();

    let bar = ProgressBar::with_draw_target(Some(chunks as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} chunk {pos}/{len} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let audio = engine.synthesize_with_progress(
        &text,
        voice,
        &req,
        &mut |p| {
            bar.set_position(p.chunk as u64);
            bar.set_message(format!("{} tokens", p.tokens));
            true
        },
        &mut |_| {
            bar.inc(1);
            true
        },
    );
    bar.finish_and_clear();
    let audio = audio?;

    write_audio(
        &args.output,
        &audio.samples,
        audio.sample_rate,
        &say_inputs(&args),
    )?;
    let wall_s = wall.elapsed().as_secs_f64();
    let secs = audio.seconds();
    // The engine's RTF: synthesis time over audio seconds (0 without audio).
    let rtf = audio.stages.rtf;
    eprintln!(
        "{:.2} s of audio in {:.2} s (synthesis {:.2} s, RTF {:.3}){}",
        secs,
        wall_s,
        audio.stages.total_s,
        rtf,
        destination(&args.output)
    );
    if args.stats {
        print_stats(&engine, &req, &audio.stages, wall_s, &args.output)?;
    }
    Ok(())
}

fn voice(args: VoiceArgs) -> Result<()> {
    chatterbox_ort::output::check_not_an_input(&args.output, &[&args.reference])?;
    let engine = load_engine(&args.engine)?;
    let voice = engine.voice_from_wav(&args.reference)?;
    voice.save_checked(&args.output, &[&args.reference])?;
    eprintln!(
        "voice from `{}` ({} T3 prompt tokens, {} S3Gen prompt tokens) -> {}",
        args.reference.display(),
        voice.cond_prompt_speech_tokens.len(),
        voice.prompt_token.len(),
        args.output.display()
    );
    Ok(())
}

/// The target voice of `convert`, read before the engine loads.
enum Target {
    Clip(PathBuf, audio::WavData),
    Saved(Box<Voice>),
    BundleVoice,
}

/// Whether `--voice` names a saved voice file rather than a WAV clip.
fn is_voice_file(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
}

/// The inputs of a `convert` (an output path must not be one of them).
fn convert_inputs(args: &ConvertArgs) -> Vec<&Path> {
    std::iter::once(args.source.as_path())
        .chain(args.voice.as_deref())
        .collect()
}

/// Writes a WAV to `output` (`-`: stdout), refusing an output that is one of `inputs`.
fn write_audio(output: &Path, samples: &[f32], sample_rate: u32, inputs: &[&Path]) -> Result<()> {
    if output.as_os_str() == "-" {
        let bytes = audio::wav::encode_wav(samples, sample_rate)?;
        let mut out = std::io::stdout().lock();
        out.write_all(&bytes).context("writing the WAV to stdout")?;
        out.flush().context("writing the WAV to stdout")?;
    } else {
        audio::wav::write_wav_file(output, samples, sample_rate, inputs)?;
    }
    Ok(())
}

/// `" -> FILE"` for the summary line, nothing when the audio goes to stdout.
fn destination(output: &Path) -> String {
    if output.as_os_str() == "-" {
        String::new()
    } else {
        format!(" -> {}", output.display())
    }
}

/// Prints the `--stats` report (timings, request, host statistics) as one JSON line: to
/// stdout, or to stderr when the audio goes to stdout (`output` is `-`).
fn print_stats(
    engine: &Engine,
    request: &impl serde::Serialize,
    stages: &chatterbox_ort::StageTimings,
    wall_s: f64,
    output: &Path,
) -> Result<()> {
    let host: serde_json::Value = serde_json::from_str(&engine.stats_json()?)?;
    let report = serde_json::json!({
        "audio_seconds": stages.audio_s,
        "wall_seconds": wall_s,
        "rtf": stages.rtf,
        "request": request,
        "stages": stages,
        "host": host,
    });
    let line = serde_json::to_string(&report)?;
    if output.as_os_str() == "-" {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
    Ok(())
}

fn convert(args: ConvertArgs) -> Result<()> {
    use chatterbox_ort::convert::{read_source, ConvertRequest};

    let wall = Instant::now();
    let to_stdout = args.output.as_os_str() == "-";
    let inputs = convert_inputs(&args);
    if !to_stdout {
        chatterbox_ort::output::check_not_an_input(&args.output, &inputs)?;
    }
    // Everything that can be checked without sessions is checked before loading them.
    let dir = bundle_dir(args.engine.bundle.as_deref())?;
    let opts = engine_options(&dir, &args.engine)?;
    let bundle = Bundle::open(&dir)?;
    let mut req = ConvertRequest::from_generation(bundle.generation());
    drop(bundle);
    if let Some(v) = args.seed {
        req.seed = v;
    }
    if let Some(v) = args.flow_steps {
        req.flow_steps = v;
    }
    req.watermark = !args.no_watermark;
    req.validate()?;
    let source = read_source(&args.source)?;
    let target = match &args.voice {
        Some(path) if is_voice_file(path) => Target::Saved(Box::new(Voice::load(path)?)),
        Some(path) => Target::Clip(
            path.clone(),
            audio::read_wav(path, conditioning::MIN_VOICE_SECONDS as f32)?,
        ),
        None => Target::BundleVoice,
    };
    let engine = Engine::load(opts)?;
    let built;
    let target = match &target {
        Target::Clip(path, wav) => {
            built = engine
                .vc_target_from_samples(&wav.samples, wav.sample_rate)
                .with_context(|| format!("target clip `{}`", path.display()))?;
            built.view()
        }
        Target::Saved(voice) => voice.s3gen_reference(),
        Target::BundleVoice => engine.default_voice().s3gen_reference(),
    };

    let rate = engine.bundle().config().s3gen.sample_rate;
    let total = source.duration_seconds();
    let bar = ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut samples: Vec<f32> = Vec::new();
    let stages = engine.convert_streaming(
        &source.samples,
        source.sample_rate,
        target,
        &req,
        &mut |chunk| {
            samples.extend_from_slice(chunk);
            let done = samples.len() as f64 / f64::from(rate);
            bar.set_position((1000.0 * done / total.max(1e-9)).min(1000.0) as u64);
            bar.set_message(format!("{done:.1} / {total:.1} s"));
            true
        },
    );
    bar.finish_and_clear();
    let stages = stages?;
    drop(source);

    write_audio(&args.output, &samples, rate, &inputs)?;
    let wall_s = wall.elapsed().as_secs_f64();
    eprintln!(
        "{:.2} s of audio converted in {:.2} s ({} piece{}, RTF {:.3}){}",
        stages.audio_s,
        wall_s,
        stages.chunks,
        if stages.chunks == 1 { "" } else { "s" },
        stages.rtf,
        destination(&args.output)
    );
    if args.stats {
        print_stats(&engine, &req, &stages, wall_s, &args.output)?;
    }
    Ok(())
}

fn info(args: EngineArgs) -> Result<()> {
    let dir = bundle_dir(args.bundle.as_deref())?;
    engine_options(&dir, &args)?;
    let bundle = Bundle::open(&dir)?;
    let m = bundle.manifest();
    println!("bundle      {}", dir.display());
    println!("model       {} (config {})", m.model.id, m.model.config);
    println!(
        "family      {} (reference {})",
        m.model.family,
        m.model.family.reference()
    );
    println!("origin      {}", m.model.origin);
    println!("components:");
    let mut total = 0u64;
    for (name, spec) in &m.components {
        let bytes = spec.weight_bytes();
        total += bytes;
        println!(
            "  {name:<16} {:>12} {:>6}",
            human_bytes(bytes),
            spec.precision
        );
    }
    println!("  {:<16} {:>12}", "total", human_bytes(total));
    chatterbox_ort::runtime::init(&chatterbox_ort::runtime::RuntimeOptions::default())?;
    println!(
        "onnxruntime {}",
        chatterbox_ort::runtime::onnxruntime_version()?
    );
    println!(
        "providers   {}",
        chatterbox_ort::runtime::available_providers()?.join(", ")
    );
    Ok(())
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
