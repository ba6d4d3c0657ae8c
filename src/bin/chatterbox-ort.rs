//! `chatterbox-ort`: the command-line shell over the library.
//!
//! ```text
//! chatterbox-ort say "Hello there." -o hello.wav
//! chatterbox-ort say "Smaller file." -o hello.mp3        # format from the extension
//! chatterbox-ort say --stream "Spoken while it is computed." -o - | aplay
//! chatterbox-ort voice ref.wav -o voice.safetensors
//! chatterbox-ort convert speech.wav --voice target.wav -o converted.wav
//! chatterbox-ort info
//! ```
//!
//! Errors are printed as one line on stderr with a non-zero exit status; no
//! output file is left behind on failure. SIGINT (Ctrl-C) or SIGTERM during a synthesis
//! stops it at the next speech token or audio chunk: exit status 128 + the signal (130 for
//! Ctrl-C), no output file (audio already written to stdout or a FIFO stays written). A
//! second signal ends the process at once.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use chatterbox_ort::bundle::{Bundle, GenerationDefaults};
use chatterbox_ort::multilingual::Language;
use chatterbox_ort::output::OutputWriter;
use chatterbox_ort::AudioFormat;
use chatterbox_ort::{
    audio, conditioning, limits, Engine, EngineOptions, ErrorKind, Request, StreamChunk,
    StreamOptions, Voice,
};

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
    /// Serve the OpenAI-compatible speech API over HTTP (`POST /v1/audio/speech`, voices,
    /// models, health, Prometheus metrics).
    Serve(ServeArgs),
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
    /// COMPONENT=POLICY), e.g. `swap,prefetch`. Default: resident (`serve`: idle=300).
    #[arg(long, value_name = "PRESET")]
    residency: Option<String>,
    /// Session cache folder (CPU): ONNX Runtime's optimized graphs with the weights
    /// pre-packed for this CPU, written at a component's first creation (about twice its
    /// size on disk) and mapped by later ones. Default: $CHATTERBOX_ORT_SESSION_CACHE, else
    /// ~/.cache/chatterbox-ort/sessions.
    #[arg(long, value_name = "DIR", conflicts_with = "no_session_cache")]
    session_cache: Option<PathBuf>,
    /// Create every session from the bundle's graphs (no session cache).
    #[arg(long)]
    no_session_cache: bool,
}

/// `serve`'s settings.
#[derive(Args, Debug)]
struct ServeArgs {
    #[command(flatten)]
    engine: EngineArgs,
    /// Address to listen on (port 0: any free port). Anything but loopback needs
    /// --api-key (or --allow-unauthenticated).
    #[arg(long, default_value = "127.0.0.1:8000", value_name = "ADDR:PORT")]
    bind: std::net::SocketAddr,
    /// Require `Authorization: Bearer KEY` on every route but /health. Default:
    /// $CHATTERBOX_ORT_API_KEY.
    #[arg(long, value_name = "KEY")]
    api_key: Option<String>,
    /// Serve on a non-loopback address without an API key.
    #[arg(long)]
    allow_unauthenticated: bool,
    /// Voices folder: uploaded voices are stored there, requests name them.
    #[arg(long, value_name = "DIR")]
    voices: Option<PathBuf>,
    /// Voices kept loaded in memory (least recently used ones are dropped).
    #[arg(long, default_value_t = 16, value_name = "N")]
    voice_cache: usize,
    /// Syntheses running at once.
    #[arg(long, default_value_t = 1, value_name = "N")]
    concurrency: usize,
    /// Requests that may wait for a synthesis; more get 429 at once.
    #[arg(long, default_value_t = 16, value_name = "N")]
    max_queue: usize,
    /// Most characters of `input` per request (OpenAI's limit is 4096).
    #[arg(long, default_value_t = 4096, value_name = "N")]
    max_input_chars: usize,
    /// Largest voice upload in bytes.
    #[arg(long, default_value_t = 32 << 20, value_name = "BYTES")]
    max_upload_bytes: usize,
    /// Seconds a synthesis may run before it is cancelled (504).
    #[arg(long, default_value_t = 600.0, value_name = "SECONDS")]
    request_timeout: f64,
    /// Seconds work in flight may finish after SIGINT/SIGTERM before it is cancelled.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    shutdown_grace: f64,
}

#[derive(Args, Debug)]
struct SayArgs {
    /// The text to speak (or use --text-file).
    #[arg(value_name = "TEXT", conflicts_with = "text_file")]
    text: Option<String>,
    /// Read the text from a UTF-8 file (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    text_file: Option<PathBuf>,
    /// Output file (`-` for stdout); its extension picks the format unless --format does.
    #[arg(short, long, default_value = "out.wav", value_name = "FILE")]
    output: PathBuf,
    /// Output format: `wav` (16-bit PCM mono WAV), `pcm` (the same samples as raw
    /// little-endian signed 16-bit, 24 kHz mono, no header), `flac`, `mp3` (64 kbit/s) or
    /// `opus` (Ogg Opus, 48 kbit/s); flac, mp3 and opus not with --stream. Default: from
    /// the output's extension (.wav, .pcm/.raw, .flac, .mp3, .opus/.ogg), else wav.
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Write the audio as it is produced: S3Gen turns the speech tokens decoded so far into
    /// audio every few tokens while T3 goes on decoding, and each piece is written (and
    /// flushed) at once, so `-o - | aplay` speaks while it computes. A WAV then starts with
    /// an unknown-length header (a file gets its real sizes at the end).
    #[arg(long)]
    stream: bool,
    /// With --stream: speech tokens of each text chunk before its first audio (9..=4096;
    /// default 20, about 0.8 s of speech). Smaller: earlier first audio.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    first_chunk_tokens: Option<usize>,
    /// With --stream: speech tokens between two later pieces of audio (1..=4096; default
    /// 40). Larger: less total work (every piece recomputes S3Gen over the tokens so far).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    chunk_tokens: Option<usize>,
    /// With --stream: decode the next speech tokens on another thread while S3Gen turns the
    /// finished ones into audio (the same audio, sooner on a machine with spare cores).
    #[arg(long)]
    overlap: bool,
    /// The text's language (multilingual bundles, required there: `fr`, `zh`, ...;
    /// `info` lists a bundle's languages).
    #[arg(long, value_name = "ID", value_parser = parse_language)]
    language: Option<Language>,
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
    /// Speech tokens each text chunk must produce before it may stop (default 0; at most
    /// --max-new-tokens; equal to it fixes the length).
    #[arg(long, allow_negative_numbers = true)]
    min_new_tokens: Option<usize>,
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

/// How `say` encodes its audio.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// 16-bit PCM mono WAV.
    Wav,
    /// Raw little-endian signed 16-bit PCM, mono, at the bundle's rate (24 kHz), no header.
    Pcm,
    /// FLAC (lossless, 16-bit).
    Flac,
    /// MP3, 64 kbit/s.
    Mp3,
    /// Opus in Ogg, 48 kbit/s.
    Opus,
}

impl Format {
    /// `--format`, else the format `output`'s extension names, else WAV.
    fn resolve(format: Option<Format>, output: &Path) -> Format {
        format.unwrap_or_else(|| {
            AudioFormat::from_extension(output).map_or(Format::Wav, |f| match f {
                AudioFormat::Wav => Format::Wav,
                AudioFormat::Pcm => Format::Pcm,
                AudioFormat::Flac => Format::Flac,
                AudioFormat::Mp3 => Format::Mp3,
                AudioFormat::Opus => Format::Opus,
            })
        })
    }

    fn audio_format(self) -> AudioFormat {
        match self {
            Format::Wav => AudioFormat::Wav,
            Format::Pcm => AudioFormat::Pcm,
            Format::Flac => AudioFormat::Flac,
            Format::Mp3 => AudioFormat::Mp3,
            Format::Opus => AudioFormat::Opus,
        }
    }
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
        Command::Serve(args) => serve(args),
        Command::Bench(args) => chatterbox_ort::bench::run_cli(&args),
        Command::BenchWorker(args) => chatterbox_ort::bench::run_worker(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace(['\n', '\r'], " ");
            eprintln!("error: {msg}");
            match e.downcast_ref::<interrupt::Interrupted>() {
                Some(i) => ExitCode::from(i.exit_status()),
                None => ExitCode::FAILURE,
            }
        }
    }
}

/// `serve`: the engine behind the OpenAI-compatible HTTP API until SIGINT/SIGTERM.
fn serve(mut args: ServeArgs) -> Result<()> {
    let seconds = |name: &str, v: f64| -> Result<std::time::Duration> {
        std::time::Duration::try_from_secs_f64(v)
            .ok()
            .filter(|d| *d <= chatterbox_ort::serve::MAX_TIMEOUT)
            .ok_or_else(|| {
                anyhow!(
                    "invalid argument `--{name}`: must be in 0..={} seconds, got {v}",
                    chatterbox_ort::serve::MAX_TIMEOUT.as_secs()
                )
            })
    };
    let api_key = args.api_key.take().or_else(|| {
        std::env::var("CHATTERBOX_ORT_API_KEY")
            .ok()
            .filter(|k| !k.is_empty())
    });
    let config = chatterbox_ort::serve::ServeConfig {
        bind: args.bind,
        api_key,
        allow_unauthenticated: args.allow_unauthenticated,
        voices: args.voices.clone(),
        voice_cache: args.voice_cache,
        concurrency: args.concurrency,
        max_queue: args.max_queue,
        limits: chatterbox_ort::openai::ApiLimits {
            max_input_chars: args.max_input_chars,
        },
        max_upload_bytes: args.max_upload_bytes,
        request_timeout: seconds("request-timeout", args.request_timeout)?,
        shutdown_grace: seconds("shutdown-grace", args.shutdown_grace)?,
    };
    config.validate()?;
    if args.engine.residency.is_none() {
        args.engine.residency = Some("idle=300".to_string());
    }
    let engine = load_engine(&args.engine)?;
    let residency = args.engine.residency.clone().unwrap_or_default();
    chatterbox_ort::serve::run(engine, config, |addr| {
        // One line on stdout that scripts (and the tests) wait for.
        println!("listening on http://{addr} (residency {residency})");
        let _ = std::io::stdout().flush();
    })?;
    eprintln!("serve: stopped");
    Ok(())
}

/// SIGINT / SIGTERM while a synthesis runs: a flag the synthesis callbacks check, so the
/// synthesis stops between speech tokens or audio chunks and the output is cleaned up.
mod interrupt {
    use std::sync::atomic::{AtomicI32, Ordering};

    /// The signal received, 0 while none.
    static SIGNAL: AtomicI32 = AtomicI32::new(0);

    extern "C" fn on_signal(signal: libc::c_int) {
        // Only an atomic store: async-signal-safe.
        SIGNAL.store(signal, Ordering::SeqCst);
    }

    /// Installs the handler for SIGINT and SIGTERM, unless the signal is ignored (a
    /// background job). The handler resets itself (`SA_RESETHAND`): a second signal ends
    /// the process at once, as if no handler were installed.
    pub fn install() -> std::io::Result<()> {
        for signal in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: `sigaction` with a zeroed, then filled struct; the handler only
            // stores to an atomic.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal, std::ptr::null(), &mut old) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if old.sa_sigaction == libc::SIG_IGN {
                    continue;
                }
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
                sa.sa_flags = libc::SA_RESETHAND | libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                if libc::sigaction(signal, &sa, std::ptr::null_mut()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }

    /// The signal received since [`install`], if any.
    pub fn received() -> Option<i32> {
        match SIGNAL.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    /// Sends SIGINT to this process (the test hook of `say --stream`).
    pub fn raise_sigint() {
        // SAFETY: raise(3) with a valid signal; the handler runs before it returns.
        unsafe {
            libc::raise(libc::SIGINT);
        }
    }

    /// A synthesis stopped by a signal; the exit status is 128 + the signal.
    #[derive(Debug)]
    pub struct Interrupted {
        pub signal: i32,
        /// What happened to the output.
        pub what: String,
    }

    impl Interrupted {
        pub fn exit_status(&self) -> u8 {
            u8::try_from(128 + self.signal).unwrap_or(1)
        }
    }

    impl std::fmt::Display for Interrupted {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let name = match self.signal {
                libc::SIGINT => "SIGINT".to_string(),
                libc::SIGTERM => "SIGTERM".to_string(),
                s => format!("signal {s}"),
            };
            write!(f, "interrupted by {name}: {}", self.what)
        }
    }

    impl std::error::Error for Interrupted {}
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
    opts.residency = args.residency.as_deref().unwrap_or("resident").parse()?;
    if args.no_session_cache {
        opts.session_cache = None;
    } else if let Some(dir) = &args.session_cache {
        opts.session_cache = Some(dir.clone());
    }
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
    if let Some(v) = args.min_new_tokens {
        r.min_new_tokens = v;
    }
    if let Some(v) = args.flow_steps {
        r.flow_steps = v;
    }
    if args.no_watermark {
        r.watermark = false;
    }
    r.language = args.language;
    r
}

/// `--language`: two or three letters (which ones a bundle supports is checked later).
fn parse_language(s: &str) -> std::result::Result<Language, String> {
    Language::parse(s).map_err(|e| e.to_string())
}

/// The input files of a `say` (an output path must not be one of them).
fn say_inputs(args: &SayArgs) -> Vec<&Path> {
    [&args.voice, &args.voice_file, &args.text_file]
        .into_iter()
        .filter_map(|p| p.as_deref())
        .collect()
}

/// The streaming options of `say`: `None` without `--stream`; every value checked.
fn stream_options(args: &SayArgs) -> Result<Option<StreamOptions>> {
    if !args.stream {
        for (given, flag) in [
            (args.first_chunk_tokens.is_some(), "--first-chunk-tokens"),
            (args.chunk_tokens.is_some(), "--chunk-tokens"),
            (args.overlap, "--overlap"),
        ] {
            if given {
                bail!("{flag} applies only with --stream");
            }
        }
        return Ok(None);
    }
    let mut opts = StreamOptions::default();
    if let Some(v) = args.first_chunk_tokens {
        opts.first_chunk_tokens = v;
    }
    if let Some(v) = args.chunk_tokens {
        opts.chunk_tokens = v;
    }
    opts.overlap = args.overlap;
    opts.validate()?;
    Ok(Some(opts))
}

/// Test hook (not an interface): `say` sends itself SIGINT right after this many audio
/// chunks have been delivered (written, with `--stream`), so tests cancel at an exact point
/// through the real signal path.
const TEST_INTERRUPT_ENV: &str = "CHATTERBOX_ORT_TEST_INTERRUPT_AFTER_CHUNKS";

/// The chunk count of [`TEST_INTERRUPT_ENV`], if set.
fn test_interrupt_after() -> Option<usize> {
    std::env::var(TEST_INTERRUPT_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
}

fn say(args: SayArgs) -> Result<()> {
    let wall = Instant::now();
    let to_stdout = args.output.as_os_str() == "-";
    if !to_stdout {
        chatterbox_ort::output::check_not_an_input(&args.output, &say_inputs(&args))?;
    }
    let stream = stream_options(&args)?;
    let format = Format::resolve(args.format, &args.output);
    if stream.is_some() && !matches!(format, Format::Wav | Format::Pcm) {
        bail!(
            "--stream writes wav or pcm, not {} (from --format or the output's extension); \
             drop --stream or choose --format wav|pcm",
            format.audio_format()
        );
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
    let chunks = engine.text_chunks(&text, req.language)?.len();
    let rate = engine.bundle().config().s3gen.sample_rate;

    let bar = ProgressBar::with_draw_target(Some(chunks as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} chunk {pos}/{len} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // From here on a signal stops the synthesis cleanly (before, it ends the process:
    // nothing has been written yet).
    interrupt::install().context("installing the SIGINT handler")?;
    let interrupt_after = test_interrupt_after();
    let mut first_audio_wall_s = None;
    let audio = if let Some(stream_opts) = &stream {
        let mut sink = AudioSink::open(&args.output, format, rate, &say_inputs(&args))?;
        let mut write_error: Option<anyhow::Error> = None;
        let written = std::cell::Cell::new(0usize);
        let result = engine.synthesize_stream(
            &text,
            voice,
            &req,
            stream_opts,
            &mut |p| {
                bar.set_position(p.chunk as u64);
                bar.set_message(format!(
                    "{} tokens, {:.1} s of audio out",
                    p.tokens,
                    written.get() as f64 / f64::from(rate)
                ));
                interrupt::received().is_none()
            },
            &mut |c: &StreamChunk<'_>| {
                if let Err(e) = sink.write(c.samples) {
                    write_error = Some(e);
                    return false;
                }
                written.set(written.get() + c.samples.len());
                if first_audio_wall_s.is_none() && !c.samples.is_empty() {
                    first_audio_wall_s = Some(wall.elapsed().as_secs_f64());
                }
                if c.last {
                    bar.set_position(chunks as u64);
                }
                if interrupt_after == Some(c.index + 1) {
                    interrupt::raise_sigint();
                }
                interrupt::received().is_none()
            },
        );
        bar.finish_and_clear();
        if let Some(e) = write_error {
            return Err(e);
        }
        let kept = sink.keeps_partial_output().then(|| written.get());
        let audio = result.map_err(|e| stopped(e.into(), &args.output, kept, rate))?;
        sink.finish()?;
        audio
    } else {
        let mut delivered = 0;
        let result = engine.synthesize_with_progress(
            &text,
            voice,
            &req,
            &mut |p| {
                bar.set_position(p.chunk as u64);
                bar.set_message(format!("{} tokens", p.tokens));
                interrupt::received().is_none()
            },
            &mut |_| {
                bar.inc(1);
                delivered += 1;
                if interrupt_after == Some(delivered) {
                    interrupt::raise_sigint();
                }
                interrupt::received().is_none()
            },
        );
        bar.finish_and_clear();
        let audio = result.map_err(|e| stopped(e.into(), &args.output, None, rate))?;
        write_audio(
            &args.output,
            format,
            &audio.samples,
            audio.sample_rate,
            &say_inputs(&args),
        )?;
        first_audio_wall_s = Some(wall.elapsed().as_secs_f64());
        audio
    };
    let wall_s = wall.elapsed().as_secs_f64();
    let secs = audio.seconds();
    // The engine's RTF: synthesis time over audio seconds (0 without audio).
    let s = &audio.stages;
    let streamed = if stream.is_some() {
        format!(
            ", first audio after {:.2} s, {} piece{}",
            s.first_audio_s,
            s.audio_chunks,
            if s.audio_chunks == 1 { "" } else { "s" }
        )
    } else {
        String::new()
    };
    eprintln!(
        "{:.2} s of audio in {:.2} s (synthesis {:.2} s, RTF {:.3}{streamed}){}",
        secs,
        wall_s,
        s.total_s,
        s.rtf,
        destination(&args.output)
    );
    if args.stats {
        let extra = serde_json::json!({
            "first_audio_wall_seconds": first_audio_wall_s,
            "stream": stream.map(|o| serde_json::json!({
                "first_chunk_tokens": o.first_chunk_tokens,
                "chunk_tokens": o.chunk_tokens,
                "overlap": o.overlap,
            })),
        });
        print_stats(&engine, &req, &audio.stages, wall_s, &args.output, extra)?;
    }
    Ok(())
}

/// The error of a synthesis that failed: a stop by a signal becomes
/// [`interrupt::Interrupted`] saying what happened to the output: `kept` samples written
/// that stay (stdout, a FIFO or device), or `None`: nothing written.
fn stopped(e: anyhow::Error, output: &Path, kept: Option<usize>, rate: u32) -> anyhow::Error {
    let cancelled = e
        .downcast_ref::<chatterbox_ort::Error>()
        .is_some_and(|x| x.kind() == ErrorKind::Cancelled);
    match (cancelled, interrupt::received()) {
        (true, Some(signal)) => {
            let what = match kept {
                Some(n) => format!(
                    "synthesis stopped; {:.2} s of audio were written to {}",
                    n as f64 / f64::from(rate.max(1)),
                    if output.as_os_str() == "-" {
                        "stdout".to_string()
                    } else {
                        format!("`{}`", output.display())
                    }
                ),
                None if output.as_os_str() == "-" => {
                    "synthesis stopped; nothing was written to stdout".to_string()
                }
                None => format!("synthesis stopped; `{}` was not written", output.display()),
            };
            anyhow::Error::new(interrupt::Interrupted { signal, what })
        }
        _ => e,
    }
}

/// Where `say --stream` writes its audio as it comes: stdout, or an [`OutputWriter`]
/// (a regular file through a temporary file renamed at the end; a device or FIFO in place).
struct AudioSink {
    dest: Dest,
    format: Format,
    rate: u32,
    data_bytes: u64,
}

enum Dest {
    Stdout(std::io::Stdout),
    File(OutputWriter),
}

impl AudioSink {
    /// Opens the output and writes the WAV header (of unknown length) for `Format::Wav`.
    fn open(output: &Path, format: Format, rate: u32, inputs: &[&Path]) -> Result<AudioSink> {
        let dest = if output.as_os_str() == "-" {
            Dest::Stdout(std::io::stdout())
        } else {
            Dest::File(OutputWriter::create(output, inputs)?)
        };
        let mut sink = AudioSink {
            dest,
            format,
            rate,
            data_bytes: 0,
        };
        if format == Format::Wav {
            sink.put(&audio::wav::wav_header(rate, None))?;
        }
        Ok(sink)
    }

    /// Whether what is written stays written when the synthesis stops (stdout, a device or
    /// FIFO), unlike a file, which only appears when complete.
    fn keeps_partial_output(&self) -> bool {
        match &self.dest {
            Dest::Stdout(_) => true,
            Dest::File(w) => !w.is_file(),
        }
    }

    /// Writes and flushes `bytes`.
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        match &mut self.dest {
            Dest::Stdout(out) => {
                let mut out = out.lock();
                out.write_all(bytes)
                    .and_then(|()| out.flush())
                    .context("writing the audio to stdout")
            }
            Dest::File(w) => {
                let path = w.path().to_path_buf();
                w.write_all(bytes)
                    .and_then(|()| w.flush())
                    .map_err(|e| chatterbox_ort::Error::io(&path, e).into())
            }
        }
    }

    /// Writes one piece of audio as 16-bit PCM.
    fn write(&mut self, samples: &[f32]) -> Result<()> {
        if samples.is_empty() {
            return Ok(());
        }
        let bytes = audio::wav::pcm16_le(samples);
        self.put(&bytes)?;
        self.data_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Completes the output: a WAV file gets its real sizes, a file is renamed into place.
    fn finish(self) -> Result<()> {
        match self.dest {
            Dest::Stdout(out) => out.lock().flush().context("writing the audio to stdout"),
            Dest::File(mut w) => {
                if self.format == Format::Wav && w.is_file() {
                    w.write_at(0, &audio::wav::wav_header(self.rate, Some(self.data_bytes)))?;
                }
                Ok(w.commit()?)
            }
        }
    }
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

/// Writes the audio in `format` to `output` (`-`: stdout), refusing an output that is one
/// of `inputs`.
fn write_audio(
    output: &Path,
    format: Format,
    samples: &[f32],
    sample_rate: u32,
    inputs: &[&Path],
) -> Result<()> {
    let bytes = audio::encode::encode(format.audio_format(), sample_rate, samples)?;
    if output.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        out.write_all(&bytes)
            .context("writing the audio to stdout")?;
        out.flush().context("writing the audio to stdout")?;
    } else {
        chatterbox_ort::output::write_output(output, &bytes, inputs)?;
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

/// Prints the `--stats` report (timings, request, host statistics, and the members of
/// `extra` when it is an object) as one JSON line: to stdout, or to stderr when the audio
/// goes to stdout (`output` is `-`).
fn print_stats(
    engine: &Engine,
    request: &impl serde::Serialize,
    stages: &chatterbox_ort::StageTimings,
    wall_s: f64,
    output: &Path,
    extra: serde_json::Value,
) -> Result<()> {
    let host: serde_json::Value = serde_json::from_str(&engine.stats_json()?)?;
    let mut report = serde_json::json!({
        "audio_seconds": stages.audio_s,
        "wall_seconds": wall_s,
        "rtf": stages.rtf,
        "request": request,
        "stages": stages,
        "host": host,
    });
    if let (Some(report), serde_json::Value::Object(extra)) = (report.as_object_mut(), extra) {
        report.extend(extra);
    }
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

    write_audio(&args.output, Format::Wav, &samples, rate, &inputs)?;
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
        print_stats(
            &engine,
            &req,
            &stages,
            wall_s,
            &args.output,
            serde_json::Value::Null,
        )?;
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
    let languages = &m.config.text.languages;
    if !languages.is_empty() {
        let list: Vec<String> = languages
            .iter()
            .map(|l| format!("{} ({})", l.id, l.name))
            .collect();
        println!("languages   {} ({})", languages.len(), list.join(", "));
    }
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
