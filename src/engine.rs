//! The public synthesis API: [`Engine`], [`EngineOptions`], [`Request`],
//! [`Audio`]. The pipeline, in order, per text chunk: T3 conditioning (once per
//! synthesis) -> T3 speech tokens -> S3Gen flow (mel) -> HiFT (wav) -> trim-fade
//! -> Perth watermark.
//!
//! # Sharing
//!
//! [`Engine`] is `Send + Sync`: share it between threads (e.g. in an `Arc`) and
//! call [`Engine::synthesize`] concurrently. Each call owns its request, its
//! random generator and its intermediate tensors; the component sessions are
//! owned by the residency [`Host`], which runs one call at a time per session
//! (concurrent syntheses interleave component by component). A [`Voice`] is
//! plain data that any number of calls may borrow at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::audio;
use crate::bundle::{
    Bundle, Config, Family, GenerationDefaults, LanguageEntry, S3GenRefView, Voice,
};
use crate::conditioning;
use crate::error::{Error, Result};
use crate::family;
use crate::limits;
use crate::multilingual::Language;
use crate::residency::{Component, Host, ResidencyOptions, Stage};
use crate::rng::EngineRng;
pub use crate::runtime::Provider;
use crate::runtime::{self, RuntimeOptions};
use crate::s3gen;
use crate::s3gen::noise::S3GenNoise;
use crate::t3::{decode, sampler, T3Dims};
use crate::text;
use crate::watermark;

/// Silence inserted between two text chunks, in seconds.
pub const CHUNK_GAP_SECONDS: f64 = 0.1;
/// Text tokens kept free in each chunk for what `punc_norm` may add.
const CHUNK_TOKEN_MARGIN: usize = 32;
/// Raised-cosine fade-out applied to the end of every chunk but the last, in
/// seconds (the next chunk starts with the trim-fade's silence and fade-in).
pub const CHUNK_FADE_OUT_SECONDS: f64 = 0.01;

/// How to load an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The bundle folder (holding `manifest.json`).
    pub bundle: PathBuf,
    /// Execution provider.
    pub provider: Provider,
    /// ONNX Runtime intra-op threads per session (`None`: ONNX Runtime's default); at
    /// most [`limits::max_threads`].
    pub threads: Option<usize>,
    /// Which components stay loaded, and where.
    pub residency: ResidencyOptions,
    /// Explicit `libonnxruntime` path (else the search order of `runtime::provision`).
    pub onnxruntime: Option<PathBuf>,
    /// Session cache folder for CPU sessions: the first creation of a component stores the
    /// graph ONNX Runtime optimized with its weights pre-packed for this CPU (about twice
    /// the component's size on disk), later creations map that file, which makes creating
    /// sessions (loading, `swap`, `idle`) cheaper. Its `verified/` folder keeps
    /// verification stamps, so unchanged component files are not hashed again by every
    /// process ([`Bundle::set_verification_stamps`]). `None`: no cache. Default:
    /// [`runtime::default_session_cache_dir`]. A residency's own `optimized_cache_dir`
    /// takes precedence.
    pub session_cache: Option<PathBuf>,
}

impl EngineOptions {
    /// Defaults (CPU, default threads and residency) for the bundle in `bundle`.
    pub fn new(bundle: impl Into<PathBuf>) -> EngineOptions {
        EngineOptions {
            bundle: bundle.into(),
            provider: Provider::Cpu,
            threads: None,
            residency: ResidencyOptions::default(),
            onnxruntime: None,
            session_cache: runtime::default_session_cache_dir(),
        }
    }

    /// Checks the options against [`crate::limits`] without loading anything.
    pub fn validate(&self) -> Result<()> {
        limits::check_threads(self.threads)
    }
}

/// The settings of one synthesis. [`Engine::default_request`] gives the
/// bundle's `generation` defaults; [`Request::default`] the reference's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Request {
    /// Emotion exaggeration, finite and `>= 0` (0.5 is neutral).
    pub exaggeration: f32,
    /// T3 classifier-free guidance weight, `>= 0` (0 runs without the unconditional row).
    pub cfg_weight: f32,
    /// Sampling temperature, `> 0`.
    pub temperature: f32,
    /// min-p filter, in `[0, 1)`.
    pub min_p: f32,
    /// top-p filter, in `(0, 1]` (1 disables it).
    pub top_p: f32,
    /// top-k filter (Turbo; 0 disables it), at most [`limits::MAX_TOP_K`]. The
    /// original model has no top-k and ignores it.
    pub top_k: usize,
    /// Repetition penalty, `> 0` (1 disables it).
    pub repetition_penalty: f32,
    /// Seed of every random draw (token sampling, flow noise, HiFT source).
    pub seed: u64,
    /// Most speech tokens per text chunk, `>= 1`.
    pub max_new_tokens: usize,
    /// Speech tokens each text chunk must produce before it may stop (0: no
    /// minimum). Until then the stop token and every other non-speech token are
    /// suppressed, so with `min_new_tokens == max_new_tokens` a chunk yields
    /// exactly that many speech tokens (how benchmarks fix the length: random
    /// weights never stop). At most `max_new_tokens`.
    pub min_new_tokens: usize,
    /// Euler steps of the flow matching, in `1..=limits::MAX_FLOW_STEPS`.
    pub flow_steps: usize,
    /// Embed the Perth watermark.
    pub watermark: bool,
    /// The text's language (multilingual bundles: required, one of the bundle's
    /// `config.text.languages`; other bundles: must be `None`).
    pub language: Option<Language>,
}

impl Default for Request {
    /// The reference `ChatterboxTTS.generate` defaults, seed 0, watermark on.
    fn default() -> Request {
        Request {
            exaggeration: 0.5,
            cfg_weight: 0.5,
            temperature: 0.8,
            min_p: 0.05,
            top_p: 1.0,
            top_k: 0,
            repetition_penalty: 1.2,
            seed: 0,
            max_new_tokens: 1000,
            min_new_tokens: 0,
            flow_steps: 10,
            watermark: true,
            language: None,
        }
    }
}

impl Request {
    /// A request with a bundle's `generation` defaults (seed 0, no minimum
    /// length, watermark on).
    pub fn from_generation(g: &GenerationDefaults) -> Request {
        Request {
            exaggeration: g.exaggeration,
            cfg_weight: g.cfg_weight,
            temperature: g.temperature,
            min_p: g.min_p,
            top_p: g.top_p,
            top_k: g.top_k,
            repetition_penalty: g.repetition_penalty,
            seed: 0,
            max_new_tokens: g.max_new_tokens,
            min_new_tokens: 0,
            flow_steps: g.flow_steps,
            watermark: true,
            language: None,
        }
    }

    /// Checks every parameter; the error (`InvalidArgument`) names the bad one.
    pub fn validate(&self) -> Result<()> {
        let e = self.exaggeration;
        if !(e.is_finite() && e >= 0.0) {
            return Err(Error::invalid_argument(
                "exaggeration",
                format!("must be finite and >= 0, got {e}"),
            ));
        }
        self.sampler_params().validate()?;
        limits::check_top_k(self.top_k)?;
        if self.max_new_tokens == 0 {
            return Err(Error::invalid_argument(
                "max_new_tokens",
                "must be >= 1, got 0",
            ));
        }
        if self.min_new_tokens > self.max_new_tokens {
            return Err(Error::invalid_argument(
                "min_new_tokens",
                format!(
                    "must be <= max_new_tokens ({}), got {}",
                    self.max_new_tokens, self.min_new_tokens
                ),
            ));
        }
        limits::check_flow_steps(self.flow_steps)?;
        Ok(())
    }

    /// Checks the limits that come from the model: `max_new_tokens` against T3's
    /// learned speech positions, and with the voice's `prompt_tokens` against
    /// S3Gen's token limit. Call after [`Request::validate`].
    pub fn check_model_limits(&self, config: &Config, prompt_tokens: usize) -> Result<()> {
        decode::check_limits(&T3Dims::from_config(config), self.max_new_tokens)?;
        let max_tokens = config.s3gen.max_tokens;
        if prompt_tokens.saturating_add(self.max_new_tokens) > max_tokens {
            return Err(Error::invalid_argument(
                "max_new_tokens",
                format!(
                    "{} plus the voice's {prompt_tokens} prompt tokens exceeds S3Gen's limit of {max_tokens} tokens",
                    self.max_new_tokens
                ),
            ));
        }
        Ok(())
    }

    /// The T3 sampler settings of this request (CFG, penalty, temperature, min-p, top-p).
    pub fn sampler_params(&self) -> sampler::SamplerParams {
        sampler::SamplerParams {
            cfg_weight: self.cfg_weight,
            repetition_penalty: self.repetition_penalty,
            temperature: self.temperature,
            min_p: self.min_p,
            top_p: self.top_p,
        }
    }
}

/// Wall time per stage of one synthesis (all text chunks together), in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StageTimings {
    /// Text chunks synthesized.
    pub chunks: usize,
    /// T3 conditioning (`t3_cond`, once per synthesis).
    pub conditioning_s: f64,
    /// T3: embeddings, prefill and decode steps, sampling.
    pub t3_s: f64,
    /// Tokens sampled by T3 (a drawn stop token included).
    pub t3_tokens: usize,
    /// `t3_s / t3_tokens`.
    pub t3_s_per_token: f64,
    /// Speech tokens given to S3Gen (after dropping special tokens).
    pub speech_tokens: usize,
    /// S3Gen flow: encoder and Euler steps.
    pub s3gen_s: f64,
    /// HiFT vocoder and trim-fade.
    pub vocoder_s: f64,
    /// Perth watermark with its resampling.
    pub watermark_s: f64,
    /// The whole call.
    pub total_s: f64,
    /// Seconds of audio produced.
    pub audio_s: f64,
    /// Real-time factor: `total_s / audio_s` (0 when no audio was produced).
    pub rtf: f64,
    /// Seconds from the call's start to the first delivered audio (the first text chunk
    /// for [`Engine::synthesize_streaming`], the first token chunk for
    /// [`Engine::synthesize_stream`]; the whole call for [`Engine::synthesize`]).
    pub first_audio_s: f64,
    /// Audio deliveries made.
    pub audio_chunks: usize,
    /// Seconds between consecutive deliveries (the first from the call's start).
    pub chunk_latency_s: Vec<f64>,
    /// S3Gen passes run (one per text chunk unless streaming token chunks).
    pub s3gen_passes: usize,
}

/// Synthesized audio: mono samples in `[-1, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    /// The samples.
    pub samples: Vec<f32>,
    /// Samples per second (24 000).
    pub sample_rate: u32,
    /// Where the time went.
    pub stages: StageTimings,
}

impl Audio {
    /// Duration in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.sample_rate.max(1))
    }
}

/// Progress of a running synthesis, given to the progress callback of
/// [`Engine::synthesize_with_progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The chunk being synthesized (0-based).
    pub chunk: usize,
    /// Number of text chunks.
    pub chunks: usize,
    /// Speech tokens sampled so far in this chunk.
    pub tokens: usize,
    /// The request's token budget per chunk.
    pub max_new_tokens: usize,
}

/// A loaded model bundle, ready to synthesize. See the module docs for sharing.
pub struct Engine {
    bundle: Arc<Bundle>,
    host: Host,
    frontend: family::T3Frontend,
    /// Turbo: the KV cache of the last voice's conditioning prefix.
    t3_prefix: crate::turbo::t3::CondPrefixCache,
    default_voice: Voice,
    dims: T3Dims,
    /// [`EngineOptions::session_cache`] (CPU engines only).
    session_cache: Option<PathBuf>,
}

/// `residency` with the engine's session cache unless it names its own.
fn with_session_cache(
    mut residency: ResidencyOptions,
    cache: &Option<PathBuf>,
) -> ResidencyOptions {
    if residency.optimized_cache_dir.is_none() {
        residency.optimized_cache_dir = cache.clone();
    }
    residency
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("bundle", &self.bundle.dir())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens and checks the bundle, loads ONNX Runtime (once per process), the
    /// tokenizer and the default voice, and creates the sessions the residency
    /// policy keeps resident.
    pub fn load(opts: EngineOptions) -> Result<Engine> {
        opts.validate()?;
        // The cache holds CPU kernels' pre-packed weights; CUDA sessions are built as before.
        let session_cache = opts
            .session_cache
            .clone()
            .filter(|_| matches!(opts.provider, Provider::Cpu));
        let mut bundle = Bundle::open(&opts.bundle)?;
        bundle.set_verification_stamps(session_cache.as_ref().map(|d| d.join("verified")));
        let bundle = Arc::new(bundle);
        for c in Component::ALL {
            bundle.component(c.name())?;
        }
        bundle
            .manifest()
            .check_signatures(&bundle.dir().join(crate::bundle::MANIFEST_FILE))?;
        runtime::init(&RuntimeOptions {
            library_path: opts.onnxruntime.clone(),
            ..RuntimeOptions::default()
        })?;
        let frontend = family::T3Frontend::load(&bundle)?;
        let default_voice = bundle.default_voice()?;
        default_voice.validate(bundle.config())?;
        let dims = T3Dims::from_config(bundle.config());
        let host = Host::new(
            Arc::clone(&bundle),
            opts.provider,
            opts.threads,
            with_session_cache(opts.residency, &session_cache),
        )?;
        Ok(Engine {
            bundle,
            host,
            session_cache,
            frontend,
            t3_prefix: Default::default(),
            default_voice,
            dims,
        })
    }

    /// The opened bundle.
    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// The residency host that runs the components (for stage-level use and stats).
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The T3 sizes of this bundle.
    pub fn t3_dims(&self) -> &T3Dims {
        &self.dims
    }

    /// The languages of a multilingual bundle (`config.text.languages`); empty for others.
    pub fn languages(&self) -> &[LanguageEntry] {
        &self.bundle.config().text.languages
    }

    /// Checks a request's language against the bundle: a multilingual bundle needs one of
    /// its languages; other bundles take none.
    ///
    /// Errors: `InvalidArgument` naming `language`, listing the supported ids.
    pub fn check_language(&self, language: Option<Language>) -> Result<()> {
        let supported = self.languages();
        let list = || {
            supported
                .iter()
                .map(|l| l.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match (self.family(), language) {
            (Family::Multilingual, None) => Err(Error::invalid_argument(
                "language",
                format!(
                    "a multilingual bundle needs the text's language; one of: {}",
                    list()
                ),
            )),
            (Family::Multilingual, Some(l)) => {
                if supported.iter().any(|s| s.id == l.as_str()) {
                    Ok(())
                } else {
                    Err(Error::invalid_argument(
                        "language",
                        format!("unsupported language '{l}'; supported: {}", list()),
                    ))
                }
            }
            (family, Some(l)) => Err(Error::invalid_argument(
                "language",
                format!(
                    "the bundle holds the {family} model, which has no languages (got '{l}'); \
                     languages apply to multilingual bundles"
                ),
            )),
            (_, None) => Ok(()),
        }
    }

    /// The model family of the bundle (`model.family` of its manifest).
    pub fn family(&self) -> Family {
        self.bundle.manifest().model.family
    }

    /// The bundle's default voice (`voice.safetensors`).
    pub fn default_voice(&self) -> &Voice {
        &self.default_voice
    }

    /// A request with the bundle's `generation` defaults (seed 0, watermark on).
    pub fn default_request(&self) -> Request {
        Request::from_generation(self.bundle.generation())
    }

    /// Changes the residency policy (sessions are created or dropped as needed). Also
    /// drops the cached KV of the last voice's T3 conditioning (Turbo).
    pub fn set_residency(&self, residency: ResidencyOptions) -> Result<()> {
        self.t3_prefix.clear();
        self.host
            .set_residency(with_session_cache(residency, &self.session_cache))
    }

    /// The host's memory and session statistics as JSON.
    pub fn stats_json(&self) -> Result<String> {
        serde_json::to_string(&self.host.stats())
            .map_err(|e| Error::internal(format!("serializing stats: {e}")))
    }

    /// Builds a voice from a WAV file (any sample rate; channels are averaged).
    pub fn voice_from_wav(&self, path: &Path) -> Result<Voice> {
        let wav = audio::read_wav(path, conditioning::MIN_VOICE_SECONDS as f32)?;
        self.voice_from_samples(&wav.samples, wav.sample_rate)
            .map_err(|e| match e {
                Error::InvalidAudio(m) => {
                    Error::invalid_audio(format!("`{}`: {m}", path.display()))
                }
                other => other,
            })
    }

    /// Builds a voice from mono samples at `sample_rate`. Rejects empty input,
    /// NaN or infinite samples and clips shorter than 0.5 s.
    pub fn voice_from_samples(&self, samples: &[f32], sample_rate: u32) -> Result<Voice> {
        let _stage = self.host.stage(Stage::Conditioning)?;
        conditioning::build_voice(
            &self.host,
            self.family(),
            self.bundle.config(),
            samples,
            sample_rate,
        )
    }

    /// The chunks [`Engine::synthesize`] splits `text` into (sentence groups
    /// that fit T3's text positions). Errors with `InvalidText` when `text` is
    /// empty or whitespace only.
    pub fn text_chunks(&self, text: &str, language: Option<Language>) -> Result<Vec<String>> {
        self.check_language(language)?;
        limits::check_text_len(text.len())?;
        if text.trim().is_empty() {
            return Err(Error::invalid_text("the text is empty or whitespace only"));
        }
        // Room for the start/stop tokens (original model) and what `punc_norm` may add.
        let special = self.frontend.special_text_tokens();
        let limits = text::ChunkLimits {
            max_tokens: self
                .dims
                .text_max_positions
                .saturating_sub(special + CHUNK_TOKEN_MARGIN)
                .max(1),
            ..text::ChunkLimits::default()
        };
        let chunks: Vec<String> =
            text::chunk_text(text, &limits, |s| self.frontend.count_tokens(s, language))?
                .into_iter()
                .filter(|c| !c.trim().is_empty())
                .collect();
        if chunks.is_empty() {
            return Err(Error::invalid_text("the text is empty or whitespace only"));
        }
        Ok(chunks)
    }

    /// Synthesizes `text` with `voice`. Long text is split into sentence chunks
    /// synthesized in order and joined with a short silence.
    pub fn synthesize(&self, text: &str, voice: &Voice, req: &Request) -> Result<Audio> {
        self.synthesize_with_progress(text, voice, req, &mut |_| true, &mut |_| true)
    }

    /// Like [`Engine::synthesize`], calling `on_chunk` with the audio of each
    /// text chunk as soon as it is ready (at least once per chunk). Returning
    /// `false` cancels: the call then fails with `Cancelled`.
    pub fn synthesize_streaming(
        &self,
        text: &str,
        voice: &Voice,
        req: &Request,
        on_chunk: &mut dyn FnMut(&[f32]) -> bool,
    ) -> Result<Audio> {
        self.synthesize_with_progress(text, voice, req, &mut |_| true, on_chunk)
    }

    /// [`Engine::synthesize_streaming`] that also reports [`Progress`] after
    /// every speech token; `on_progress` returning `false` cancels too.
    pub fn synthesize_with_progress(
        &self,
        text: &str,
        voice: &Voice,
        req: &Request,
        on_progress: &mut dyn FnMut(&Progress) -> bool,
        on_chunk: &mut dyn FnMut(&[f32]) -> bool,
    ) -> Result<Audio> {
        let start = Instant::now();
        let chunks = self.prepare(text, voice, req)?;
        let sr = self.bundle.config().s3gen.sample_rate;
        let mut stages = StageTimings {
            chunks: chunks.len(),
            ..StageTimings::default()
        };
        let cond = self.conditioning(voice, req, &mut stages)?;

        let gap = vec![0f32; (CHUNK_GAP_SECONDS * f64::from(sr)) as usize];
        let fade_out = (CHUNK_FADE_OUT_SECONDS * f64::from(sr)) as usize;
        let mut samples = Vec::new();
        let mut last_delivery = start;
        for (ci, chunk) in chunks.iter().enumerate() {
            let mut piece = self.synthesize_chunk(
                chunk,
                voice,
                req,
                &cond,
                ci as u64,
                &mut stages,
                &mut |tokens| {
                    on_progress(&Progress {
                        chunk: ci,
                        chunks: chunks.len(),
                        tokens,
                        max_new_tokens: req.max_new_tokens,
                    })
                },
            )?;
            stages.s3gen_passes += 1;
            if ci + 1 < chunks.len() {
                audio::fade::fade_out(&mut piece, fade_out);
                piece.extend_from_slice(&gap);
            }
            let now = Instant::now();
            stages
                .chunk_latency_s
                .push(now.duration_since(last_delivery).as_secs_f64());
            last_delivery = now;
            if stages.audio_chunks == 0 {
                stages.first_audio_s = now.duration_since(start).as_secs_f64();
            }
            stages.audio_chunks += 1;
            if !on_chunk(&piece) {
                return Err(Error::cancelled("synthesis stopped by the chunk callback"));
            }
            samples.extend_from_slice(&piece);
        }
        Ok(self.finish_audio(samples, stages, start))
    }

    /// Validates a synthesis call and splits its text into chunks.
    pub(crate) fn prepare(&self, text: &str, voice: &Voice, req: &Request) -> Result<Vec<String>> {
        req.validate()?;
        let config = self.bundle.config();
        voice.validate(config)?;
        req.check_model_limits(config, voice.prompt_token.len())?;
        let mut chunks = self.text_chunks(text, req.language)?;
        if chunks.len() == 1 {
            // One chunk: normalise the text exactly as given, like the reference
            // (`punc_norm` looks at the first character before collapsing spaces).
            chunks[0] = text.to_string();
        }
        self.frontend.warn_ignored(text, req);
        Ok(chunks)
    }

    /// T3 conditioning of `voice` (once per synthesis).
    pub(crate) fn conditioning(
        &self,
        voice: &Voice,
        req: &Request,
        stages: &mut StageTimings,
    ) -> Result<Vec<f32>> {
        let t = Instant::now();
        let cond = {
            let _stage = self.host.stage(Stage::Conditioning)?;
            family::t3_conditioning(&self.host, self.family(), &self.dims, voice, req)?
        };
        stages.conditioning_s = t.elapsed().as_secs_f64();
        Ok(cond)
    }

    /// The call's audio with its totals filled in.
    pub(crate) fn finish_audio(
        &self,
        samples: Vec<f32>,
        mut stages: StageTimings,
        start: Instant,
    ) -> Audio {
        let sr = self.bundle.config().s3gen.sample_rate;
        stages.total_s = start.elapsed().as_secs_f64();
        stages.audio_s = samples.len() as f64 / f64::from(sr);
        stages.rtf = if stages.audio_s > 0.0 {
            stages.total_s / stages.audio_s
        } else {
            0.0
        };
        stages.t3_s_per_token = if stages.t3_tokens > 0 {
            stages.t3_s / stages.t3_tokens as f64
        } else {
            0.0
        };
        Audio {
            samples,
            sample_rate: sr,
            stages,
        }
    }

    /// Turbo's cache of the last voice's conditioning prefix.
    pub(crate) fn t3_prefix(&self) -> &crate::turbo::t3::CondPrefixCache {
        &self.t3_prefix
    }

    /// One text chunk through T3, S3Gen, HiFT and the watermark.
    #[allow(clippy::too_many_arguments)]
    fn synthesize_chunk(
        &self,
        chunk: &str,
        voice: &Voice,
        req: &Request,
        cond: &[f32],
        stream: u64,
        stages: &mut StageTimings,
        on_token: &mut dyn FnMut(usize) -> bool,
    ) -> Result<Vec<f32>> {
        let ids = self.text_ids(chunk, req.language)?;
        let mut rng = EngineRng::with_stream(req.seed, stream);

        // T3.
        let t = Instant::now();
        let sampled = {
            let _stage = self.host.stage(Stage::T3)?;
            family::generate_speech_tokens(
                &self.host,
                &self.bundle,
                &self.dims,
                Some(&self.t3_prefix),
                cond,
                &ids,
                req,
                &mut rng,
                &mut |n, _| on_token(n),
            )?
        };
        stages.t3_s += t.elapsed().as_secs_f64();
        stages.t3_tokens += sampled.len();
        let tokens = family::tokens_for_s3gen(&self.bundle, &self.dims, &sampled);
        stages.speech_tokens += tokens.len();
        if tokens.is_empty() {
            return Ok(Vec::new());
        }

        let mut noise =
            S3GenNoise::new(req.seed, stream, self.bundle.config().s3gen.hift_harmonics);
        self.tokens_to_wav(
            &tokens,
            voice.s3gen_reference(),
            req.flow_steps,
            req.watermark,
            &mut noise,
            stages,
        )
    }

    /// Speech tokens (without the prompt) to watermarked audio with S3Gen conditionals
    /// `voice`: the flow (prompt tokens + `tokens`), HiFT, the trim-fade and, with
    /// `watermark`, Perth. Shared by text-to-speech and voice conversion.
    pub(crate) fn tokens_to_wav(
        &self,
        tokens: &[i64],
        voice: S3GenRefView<'_>,
        flow_steps: usize,
        watermark: bool,
        noise: &mut S3GenNoise,
        stages: &mut StageTimings,
    ) -> Result<Vec<f32>> {
        let (mel, frames) = self.s3gen_mel(tokens, voice, flow_steps, true, noise, stages)?;
        let wav = self.vocode(&mel, frames, noise, stages)?;
        drop(mel);
        if watermark {
            self.watermark_wav(&wav, stages)
        } else {
            Ok(wav)
        }
    }

    /// The S3Gen flow over the voice's prompt tokens + `tokens`: the mel of the frames
    /// after the prompt, `[80, frames]`, and `frames`. With `finalize` false the frames of
    /// the last [`s3gen::flow::PRE_LOOKAHEAD_TOKENS`] tokens are left out, as the reference's
    /// `flow_inference(finalize=False)` does: the encoder has not seen what follows them.
    pub(crate) fn s3gen_mel(
        &self,
        tokens: &[i64],
        voice: S3GenRefView<'_>,
        flow_steps: usize,
        finalize: bool,
        noise: &mut S3GenNoise,
        stages: &mut StageTimings,
    ) -> Result<(Vec<f32>, usize)> {
        let config = self.bundle.config();
        let t = Instant::now();
        let s3 = &config.s3gen;
        let prompt_feat: Vec<f32> = voice.prompt_feat.iter().copied().collect();
        let prompt_frames = voice.prompt_feat.shape()[1];
        let xvector: Vec<f32> = voice.embedding.iter().copied().collect();
        let mut all: Vec<i64> = voice.prompt_token.iter().copied().collect();
        all.extend_from_slice(tokens);
        let out = {
            let _stage = self.host.stage(Stage::S3Gen)?;
            let mut enc = s3gen::flow::encode(&self.host, &all, &xvector)?;
            if enc.frames != s3.mel_frames_per_token * all.len() {
                return Err(Error::model_mismatch(
                    "flow_encoder",
                    format!("{} mel frames for {} tokens", enc.frames, all.len()),
                ));
            }
            if !finalize {
                let cut = s3gen::flow::PRE_LOOKAHEAD_TOKENS * s3.mel_frames_per_token;
                enc.truncate(enc.frames.saturating_sub(cut).max(prompt_frames));
            }
            if enc.frames == prompt_frames {
                (Vec::new(), 0)
            } else {
                let start = noise.flow_noise(enc.frames);
                let mel = s3gen::flow::solve_euler(
                    &self.host,
                    &enc,
                    start,
                    &prompt_feat,
                    prompt_frames,
                    &s3gen::flow::FlowParams::new(config, self.bundle.generation(), flow_steps),
                    |_| {},
                )?;
                (mel, enc.frames - prompt_frames)
            }
        };
        stages.s3gen_s += t.elapsed().as_secs_f64();
        Ok(out)
    }

    /// HiFT over `mel` ([80, frames]) with `noise`'s draws, then the reference's trim-fade.
    pub(crate) fn vocode(
        &self,
        mel: &[f32],
        frames: usize,
        noise: &mut S3GenNoise,
        stages: &mut StageTimings,
    ) -> Result<Vec<f32>> {
        if frames == 0 {
            return Ok(Vec::new());
        }
        let s3 = &self.bundle.config().s3gen;
        let t = Instant::now();
        let mut wav = {
            let _stage = self.host.stage(Stage::S3Gen)?;
            let draws = noise.hift_draws(frames * s3.samples_per_mel_frame);
            s3gen::vocoder::hift(&self.host, mel, frames, draws)?
        };
        let sr = f64::from(s3.sample_rate);
        let window = s3gen::vocoder::trim_fade_window(
            (s3.fade_zeros_seconds * sr).round() as usize,
            (s3.fade_in_seconds * sr).round() as usize,
        );
        s3gen::vocoder::apply_trim_fade(&mut wav, &window);
        stages.vocoder_s += t.elapsed().as_secs_f64();
        Ok(wav)
    }

    /// Perth over `wav`, clamped to the engine's output range.
    pub(crate) fn watermark_wav(&self, wav: &[f32], stages: &mut StageTimings) -> Result<Vec<f32>> {
        let config = self.bundle.config();
        let t = Instant::now();
        let _stage = self.host.stage(Stage::Watermark)?;
        let mut out = watermark::apply(
            &self.host,
            wav,
            config.s3gen.sample_rate,
            config.perth.sample_rate,
        )?;
        // HiFT clamps to +-0.99 but Perth adds its residual after that; the
        // engine's output contract is [-1, 1] (WAV and C callers rely on it).
        for s in &mut out {
            *s = s.clamp(-1.0, 1.0);
        }
        stages.watermark_s += t.elapsed().as_secs_f64();
        Ok(out)
    }

    /// Normalises one chunk (the family's `punc_norm`) and tokenizes it as the
    /// reference does (the original model puts start and stop text tokens around
    /// it; Turbo adds none).
    pub fn text_ids(&self, chunk: &str, language: Option<Language>) -> Result<Vec<i64>> {
        self.check_language(language)?;
        let ids = self.frontend.text_ids(chunk, language)?;
        if ids.len() > self.dims.text_max_positions {
            return Err(Error::invalid_text(format!(
                "a text chunk has {} tokens; T3 takes at most {} (start/stop included)",
                ids.len(),
                self.dims.text_max_positions
            )));
        }
        Ok(ids)
    }
}

/// The logit given to suppressed tokens: finite (the sampler rejects
/// non-finite logits) and low enough to stay at probability 0 after the
/// repetition penalty and any temperature.
const SUPPRESSED_LOGIT: f32 = -1e30;

/// Copies of the step logits in which every token `>= num_codes` (stop, start
/// and the other special tokens) can never be drawn: both rows get
/// [`SUPPRESSED_LOGIT`] there, so CFG mixing keeps it.
pub(crate) fn suppress_non_speech(
    cond: &[f32],
    uncond: Option<&[f32]>,
    num_codes: i64,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let suppress = |row: &[f32]| {
        let from = usize::try_from(num_codes).unwrap_or(0).min(row.len());
        let mut r = row.to_vec();
        r[from..].fill(SUPPRESSED_LOGIT);
        r
    };
    (suppress(cond), uncond.map(suppress))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn validate_names_the_parameter() {
        let ok = Request::default();
        assert!(ok.validate().is_ok());
        let cases: Vec<(Request, &str)> = vec![
            (
                Request {
                    temperature: -1.0,
                    ..ok
                },
                "temperature",
            ),
            (
                Request {
                    temperature: 0.0,
                    ..ok
                },
                "temperature",
            ),
            (Request { top_p: 1.5, ..ok }, "top_p"),
            (Request { top_p: 0.0, ..ok }, "top_p"),
            (Request { min_p: 1.0, ..ok }, "min_p"),
            (
                Request {
                    repetition_penalty: 0.0,
                    ..ok
                },
                "repetition_penalty",
            ),
            (
                Request {
                    cfg_weight: -0.1,
                    ..ok
                },
                "cfg_weight",
            ),
            (
                Request {
                    exaggeration: f32::NAN,
                    ..ok
                },
                "exaggeration",
            ),
            (
                Request {
                    exaggeration: -1.0,
                    ..ok
                },
                "exaggeration",
            ),
            (
                Request {
                    flow_steps: 0,
                    ..ok
                },
                "flow_steps",
            ),
            (
                Request {
                    flow_steps: crate::limits::MAX_FLOW_STEPS + 1,
                    ..ok
                },
                "flow_steps",
            ),
            (
                Request {
                    flow_steps: usize::MAX,
                    ..ok
                },
                "flow_steps",
            ),
            (
                Request {
                    max_new_tokens: 0,
                    ..ok
                },
                "max_new_tokens",
            ),
            (
                Request {
                    min_new_tokens: 1001,
                    ..ok
                },
                "min_new_tokens",
            ),
            (
                Request {
                    temperature: f32::INFINITY,
                    ..ok
                },
                "temperature",
            ),
        ];
        for (r, name) in cases {
            let e = r.validate().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
            assert!(e.to_string().contains(name), "{e}");
        }
    }

    #[test]
    fn suppression_leaves_only_speech_codes() {
        let s = SUPPRESSED_LOGIT;
        let (c, u) = suppress_non_speech(&[1.0, 2.0, 3.0, 4.0], Some(&[5.0, 6.0, 7.0, 8.0]), 2);
        assert_eq!(c, vec![1.0, 2.0, s, s]);
        assert_eq!(u.unwrap(), vec![5.0, 6.0, s, s]);
        let (c, u) = suppress_non_speech(&[1.0, 2.0], None, 1);
        assert_eq!(c, vec![1.0, s]);
        assert!(u.is_none());
        // Through the sampler: only speech codes can be drawn, even with a huge special logit.
        let params = sampler::SamplerParams {
            cfg_weight: 0.5,
            repetition_penalty: 1.2,
            temperature: 0.8,
            min_p: 0.0,
            top_p: 1.0,
        };
        let mut cond = vec![0.0f32; 8];
        cond[6] = 50.0;
        let (c, u) = suppress_non_speech(&cond, Some(&cond), 4);
        let p = sampler::process(&c, u.as_deref(), &[4], &params).unwrap();
        let probs = sampler::softmax(&p);
        assert!(probs[4..].iter().all(|&x| x == 0.0), "{probs:?}");
    }

    #[test]
    fn engine_is_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Engine>();
    }
}
