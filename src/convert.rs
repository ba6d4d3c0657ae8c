//! Voice conversion: the reference `ChatterboxVC` (chatterbox-tts 0.1.7, `vc.py`).
//!
//! The reference, in order:
//! 1. target voice: `librosa.load(target, sr=24000)[:10 s]` -> `S3Gen.embed_ref` (prompt
//!    mel, S3 prompt tokens and CAM++ x-vector of the crop; no loudness normalisation, no
//!    T3 parts) = [`Engine::vc_target_from_wav`] / [`Engine::vc_target_from_samples`]
//!    ([`conditioning::s3gen_reference`]);
//! 2. `librosa.load(source, sr=16000)` -> S3 tokens of the whole source
//!    (`s3gen.tokenizer(audio_16)`);
//! 3. `s3gen.inference(tokens, ref_dict)`: the flow on the target's prompt tokens followed
//!    by the source tokens (Euler with the bundle's schedule and CFG), HiFT, the 40 ms
//!    trim-fade; then the Perth watermark; 24 kHz out.
//!
//! # Pieces
//!
//! The reference tokenizes and converts the whole source in one pass (one flow call whose
//! attention is quadratic in the source's length). Here S3Gen converts a source in pieces of
//! at most `budget = min(750, max_tokens - prompt tokens)` tokens (30 s), so memory stays
//! flat however long the source: only the input samples, one tokenizer window, the tokens of
//! about one piece, one piece's tensors and (for [`Engine::convert`]) the output are held;
//! [`Engine::convert_streaming`] hands each piece's audio to its callback and keeps none.
//!
//! Tokens: the reference's own windows (`SourceTokens`): up to 30 s one pass; past it
//! windows of 30 s every 26 s merged by dropping 50 tokens on each side of every overlap, as
//! `S3Tokenizer.quantize` does, each window through the `s3_tokenizer` graph, run when a piece
//! needs it.
//!
//! Geometry (one S3 token = 640 samples at 16 kHz = 40 ms = 960 output samples at 24 kHz): a
//! piece starting at token `s` renders output samples `960 s ..` of the whole (the flow's
//! output is token aligned), so the pieces line up sample for sample. A source that fits one
//! piece is converted exactly as the reference does: the whole source resampled at once, its
//! tokens in one pass, random stream 0 of the seed.
//!
//! A longer source is cut at the quietest 40 ms token frame `j` among the last
//! [`SEARCH_TOKENS`] frames a piece can reach (energy of the 16 kHz samples; the latest of
//! equal minima). Piece `k` ends [`TAIL_TOKENS`] tokens after its cut frame (right context for
//! the flow's lookahead, discarded); piece `k + 1` starts [`LEAD_TOKENS`] tokens before it (the
//! first is under the trim-fade's 40 ms, the others are left context, discarded). The cut frame
//! is rendered by both pieces and cross-faded with a raised cosine over its 960 output samples
//! (weights summing to 1, so `|x| <= 1` holds). Each piece draws from its own random stream
//! (`S3GenNoise::new(seed, k, ..)`), so the output is deterministic per seed. The output has
//! exactly the reference's length (`960 x ceil(ceil(frames / 2) / 2)` with `frames = n16 /
//! 160`, less 480 when the target's prompt mel has an odd last frame).
//!
//! Deviations from the reference for sources longer than 30 s (see `docs/VC.md`): S3Gen in
//! pieces joined by cross-fades; each tokenizer window has its own log-mel floor and STFT edges
//! (the reference cuts one log-mel of the whole clip); the last 2 s that the reference's merge
//! leaves without tokens for some lengths are tokenized; the source is resampled stretch by
//! stretch (0.25 s margins on block-aligned stretches: equal to the whole resampling up to
//! float rounding).

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::audio;
use crate::bundle::{Config, GenerationDefaults, S3GenRefView};
use crate::conditioning::{self, S3GenReference};
use crate::engine::{Audio, Engine, StageTimings};
use crate::error::{Error, Result};
use crate::limits::{self, ClipKind};
use crate::residency::Stage;
use crate::s3gen::noise::S3GenNoise;

/// Tokens of source before a piece's opening cross-fade frame (the first one lies under
/// the trim-fade; the audio of all of them is discarded).
pub const LEAD_TOKENS: usize = 5;
/// Tokens of source after a piece's closing cross-fade frame (right context, discarded).
pub const TAIL_TOKENS: usize = 4;
/// Token frames searched for the quietest cut point, ending where the piece budget ends
/// (75 frames = 3 s).
pub const SEARCH_TOKENS: usize = 75;
/// Samples per S3 log-mel frame at 16 kHz (the tokenizer's STFT hop).
const S3_HOP: usize = 160;
/// Log-mel frames per S3 token (two stride-2 convolutions).
const S3_FRAMES_PER_TOKEN: usize = 4;
/// Overlap of the reference tokenizer's windows past 30 s, in seconds.
const TOKENIZER_OVERLAP_SECONDS: f64 = 4.0;
/// Resampling margin on each side of a piece, in seconds.
const RESAMPLE_MARGIN_SECONDS: f64 = 0.25;

/// The settings of one conversion. [`Engine::default_convert_request`] gives the bundle's
/// defaults; [`ConvertRequest::default`] the reference's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ConvertRequest {
    /// Seed of every random draw (flow noise, HiFT source), one stream per piece.
    pub seed: u64,
    /// Euler steps of the flow matching, in `1..=limits::MAX_FLOW_STEPS`.
    pub flow_steps: usize,
    /// Embed the Perth watermark.
    pub watermark: bool,
}

impl Default for ConvertRequest {
    /// The reference `ChatterboxVC.generate`: 10 flow steps, watermark on, seed 0.
    fn default() -> ConvertRequest {
        ConvertRequest {
            seed: 0,
            flow_steps: 10,
            watermark: true,
        }
    }
}

impl ConvertRequest {
    /// A request with a bundle's `generation` defaults (seed 0, watermark on).
    pub fn from_generation(g: &GenerationDefaults) -> ConvertRequest {
        ConvertRequest {
            seed: 0,
            flow_steps: g.flow_steps,
            watermark: true,
        }
    }

    /// Checks every parameter; the error (`InvalidArgument`) names the bad one.
    pub fn validate(&self) -> Result<()> {
        limits::check_flow_steps(self.flow_steps)
    }
}

/// Reads a voice-conversion source WAV (any rate and channel count, up to
/// [`limits::MAX_SOURCE_SECONDS`]; reading stops past that) and checks it as
/// [`Engine::convert`] does (length, values, not silent), naming the file.
pub fn read_source(path: &Path) -> Result<audio::WavData> {
    let wav = audio::wav::read_wav_as(path, ClipKind::Source)?;
    limits::check_source(
        &wav.samples,
        wav.sample_rate,
        &format!("the source `{}`", path.display()),
    )?;
    Ok(wav)
}

/// Checks a target reference against the model: prompt tokens within the speech codes and
/// under S3Gen's token limit, prompt mel of `2 N` or `2 N + 1` frames of the model's
/// bins, x-vector size, every value finite (`InvalidArgument` naming `target`).
pub fn check_target(target: S3GenRefView<'_>, config: &Config) -> Result<()> {
    let bad = |reason: String| Error::invalid_argument("target", reason);
    let n = target.prompt_token.len();
    let feat = target.prompt_feat.shape();
    let bins = config.s3gen.mel_bins;
    if feat[2] != bins {
        return Err(bad(format!(
            "prompt mel has {} bins, the model expects {bins}",
            feat[2]
        )));
    }
    let per = config.s3gen.mel_frames_per_token;
    if feat[1] < per * n || feat[1] > per * n + 1 {
        return Err(bad(format!(
            "prompt mel has {} frames for {n} prompt tokens (expected {} or {})",
            feat[1],
            per * n,
            per * n + 1
        )));
    }
    let xe = target.embedding.len();
    if xe != config.campplus.embed_size {
        return Err(bad(format!(
            "x-vector has {xe} values, the model expects {}",
            config.campplus.embed_size
        )));
    }
    let codes = config.speech.num_codes;
    if let Some(t) = target.prompt_token.iter().find(|&&t| t < 0 || t >= codes) {
        return Err(bad(format!("prompt token {t} outside [0, {codes})")));
    }
    if target
        .prompt_feat
        .iter()
        .chain(target.embedding.iter())
        .any(|v| !v.is_finite())
    {
        return Err(bad("contains NaN or infinite values".to_string()));
    }
    let max = config.s3gen.max_tokens;
    if n >= max {
        return Err(bad(format!(
            "{n} prompt tokens leave no room under S3Gen's limit of {max} tokens"
        )));
    }
    Ok(())
}

/// The fixed sizes of a conversion.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Geometry {
    /// The tokenizer's rate (16 kHz).
    sr16: u32,
    /// 16 kHz samples per token (640).
    tok16: usize,
    /// Output samples per token (960).
    tok_out: usize,
    /// Output samples the flow drops at the start for an odd prompt mel frame (0 or 480).
    lag: usize,
    /// Tokens of one tokenizer window (the graph's 30 s: 750).
    window_tokens: usize,
    /// Most tokens per piece.
    budget: usize,
}

impl Geometry {
    fn new(config: &Config, target: S3GenRefView<'_>) -> Result<Geometry> {
        let sr16 = config.s3_tokenizer.sample_rate;
        let s3 = &config.s3gen;
        let tok16 = S3_HOP * S3_FRAMES_PER_TOKEN;
        let tok_out = s3.mel_frames_per_token * s3.samples_per_mel_frame;
        // 640 samples at 16 kHz and 960 at 24 kHz must be the same 40 ms.
        if tok16 as u64 * u64::from(s3.sample_rate) != tok_out as u64 * u64::from(sr16) {
            return Err(Error::model_mismatch(
                "s3gen",
                format!(
                    "{tok_out} output samples per token at {} Hz do not span the {tok16} samples of an S3 token at {sr16} Hz",
                    s3.sample_rate
                ),
            ));
        }
        let n = target.prompt_token.len();
        let odd = target.prompt_feat.shape()[1] - s3.mel_frames_per_token * n;
        let window_tokens = (config.s3_tokenizer.max_seconds * f64::from(sr16)) as usize / tok16;
        let overlap_tokens = (TOKENIZER_OVERLAP_SECONDS * f64::from(sr16)) as usize / tok16;
        if window_tokens < 2 * overlap_tokens {
            return Err(Error::model_mismatch(
                "s3_tokenizer",
                format!(
                    "windows of {} s are too short for the reference's {TOKENIZER_OVERLAP_SECONDS} s overlaps",
                    config.s3_tokenizer.max_seconds
                ),
            ));
        }
        let budget = window_tokens.min(s3.max_tokens.saturating_sub(n));
        Ok(Geometry {
            sr16,
            tok16,
            tok_out,
            lag: odd * s3.samples_per_mel_frame,
            window_tokens,
            budget,
        })
    }

    /// The tokens the S3 tokenizer gives `n16` samples (the reference's short path).
    fn tokens_for(&self, n16: usize) -> usize {
        (n16 / S3_HOP).div_ceil(2).div_ceil(2)
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The 16 kHz samples `a..b` of `source` (at `rate`) resampled as the reference loads the
/// whole source (`librosa.load(sr=16000)`): a stretch of the source with
/// [`RESAMPLE_MARGIN_SECONDS`] on each side, starting and ending on whole blocks of the
/// rational rate ratio (so its output samples fall on the whole resampling's), resampled
/// with [`audio::resample`] and cut. A stretch that covers the whole source is exactly the
/// whole resampling.
fn source_16k(source: &[f32], rate: u32, sr16: u32, a: usize, b: usize) -> Result<Vec<f32>> {
    if rate == sr16 {
        return Ok(source[a.min(source.len())..b.min(source.len())].to_vec());
    }
    let g = gcd(u64::from(rate), u64::from(sr16));
    let (u, v) = (
        (u64::from(sr16) / g) as usize,
        (u64::from(rate) / g) as usize,
    );
    let margin = (RESAMPLE_MARGIN_SECONDS * f64::from(sr16)) as usize;
    let qa = a.saturating_sub(margin) / u;
    let qb = (b + margin).div_ceil(u);
    let from = (qa * v).min(source.len());
    let to = qb.saturating_mul(v).min(source.len());
    let out = audio::resample(&source[from..to], rate, sr16)?;
    let off = qa * u;
    let (lo, hi) = (a - off, b - off);
    if hi > out.len() {
        return Err(Error::internal(format!(
            "resampled source stretch has {} samples, {hi} needed",
            out.len()
        )));
    }
    Ok(out[lo..hi].to_vec())
}

impl Engine {
    /// A conversion request with the bundle's `generation` defaults (seed 0, watermark on).
    pub fn default_convert_request(&self) -> ConvertRequest {
        ConvertRequest::from_generation(self.bundle().generation())
    }

    /// The target voice of a conversion from a WAV file (any rate and channel count,
    /// 0.5 ..= 300 s; reference `ChatterboxVC.set_target_voice`).
    pub fn vc_target_from_wav(&self, path: &Path) -> Result<S3GenReference> {
        let wav = audio::read_wav(path, conditioning::MIN_VOICE_SECONDS as f32)?;
        self.vc_target_from_samples(&wav.samples, wav.sample_rate)
            .map_err(|e| match e {
                Error::InvalidAudio(m) => {
                    Error::invalid_audio(format!("`{}`: {m}", path.display()))
                }
                other => other,
            })
    }

    /// The target voice of a conversion from mono samples at `sample_rate`: the clip at
    /// 24 kHz (librosa's resampling), then `S3Gen.embed_ref` of its first 10 s. Checked
    /// like a voice clip (0.5 ..= 300 s, finite samples within +-1000, rate in bounds).
    pub fn vc_target_from_samples(
        &self,
        samples: &[f32],
        sample_rate: u32,
    ) -> Result<S3GenReference> {
        limits::check_clip(
            samples,
            sample_rate,
            conditioning::MIN_VOICE_SECONDS,
            "the target clip",
        )?;
        let config = self.bundle().config();
        let wav_24k = audio::resample(samples, sample_rate, config.s3gen.sample_rate)?;
        let _stage = self.host().stage(Stage::Conditioning)?;
        conditioning::s3gen_reference(self.host(), config, &wav_24k)
    }

    /// Converts `source` (mono samples at `source_rate`) to the voice of `target` (from
    /// [`Engine::vc_target_from_wav`], or [`crate::Voice::s3gen_reference`] of any
    /// voice). Long sources are converted in pieces (see the module docs); the result
    /// has the reference's length, 24 kHz.
    ///
    /// Errors: `InvalidArgument` (a request field, a zero rate, a malformed target),
    /// `InvalidAudio` (source empty, silent, shorter than one token, longer than an hour,
    /// NaN/infinite or huge samples, rate out of bounds), and the engine's errors.
    pub fn convert(
        &self,
        source: &[f32],
        source_rate: u32,
        target: S3GenRefView<'_>,
        req: &ConvertRequest,
    ) -> Result<Audio> {
        let start = Instant::now();
        let geo = self.prepare_conversion(source, source_rate, target, req)?;
        let want = geo.output_len(audio::resample::resampled_len(
            source.len(),
            source_rate,
            geo.sr16,
        ));
        let mut samples: Vec<f32> = Vec::new();
        samples.try_reserve_exact(want).map_err(|_| {
            Error::invalid_audio(format!(
                "not enough memory for the {want} output samples of the source"
            ))
        })?;
        let stages =
            self.convert_pieces(start, source, source_rate, target, req, geo, &mut |chunk| {
                samples.extend_from_slice(chunk);
                true
            })?;
        Ok(Audio {
            samples,
            sample_rate: self.bundle().config().s3gen.sample_rate,
            stages,
        })
    }

    /// Like [`Engine::convert`], handing the audio to `on_chunk` piece by piece as soon as
    /// each is ready (one call per piece; joined, the chunks are what [`Engine::convert`]
    /// returns) and keeping none of it. Returning `false` cancels: the call then fails with
    /// `Cancelled` and makes no further call. Returns the timings.
    pub fn convert_streaming(
        &self,
        source: &[f32],
        source_rate: u32,
        target: S3GenRefView<'_>,
        req: &ConvertRequest,
        on_chunk: &mut dyn FnMut(&[f32]) -> bool,
    ) -> Result<StageTimings> {
        let start = Instant::now();
        let geo = self.prepare_conversion(source, source_rate, target, req)?;
        self.convert_pieces(start, source, source_rate, target, req, geo, on_chunk)
    }

    /// Every check of a conversion, before anything runs; the geometry of its pieces.
    fn prepare_conversion(
        &self,
        source: &[f32],
        source_rate: u32,
        target: S3GenRefView<'_>,
        req: &ConvertRequest,
    ) -> Result<Geometry> {
        req.validate()?;
        limits::check_source(source, source_rate, "the source")?;
        let config = self.bundle().config();
        check_target(target, config)?;
        let geo = Geometry::new(config, target)?;
        let n16 = audio::resample::resampled_len(source.len(), source_rate, geo.sr16);
        if geo.tokens_for(n16) > geo.budget && geo.budget < LEAD_TOKENS + TAIL_TOKENS + 2 {
            return Err(Error::invalid_argument(
                "target",
                format!(
                    "its {} prompt tokens leave {} of S3Gen's {} tokens per piece; a long source needs at least {}",
                    target.prompt_token.len(),
                    geo.budget,
                    config.s3gen.max_tokens,
                    LEAD_TOKENS + TAIL_TOKENS + 2
                ),
            ));
        }
        Ok(geo)
    }

    /// The pieces of a checked conversion (see the module docs), each handed to
    /// `on_chunk`.
    #[allow(clippy::too_many_arguments)]
    fn convert_pieces(
        &self,
        start: Instant,
        source: &[f32],
        source_rate: u32,
        target: S3GenRefView<'_>,
        req: &ConvertRequest,
        geo: Geometry,
        on_chunk: &mut dyn FnMut(&[f32]) -> bool,
    ) -> Result<StageTimings> {
        let config = self.bundle().config();
        let n16 = audio::resample::resampled_len(source.len(), source_rate, geo.sr16);
        let mut stages = StageTimings::default();
        let mut stream = SourceTokens::new(source, source_rate, geo, n16);
        let total = stream.total();
        let mut produced = 0usize;
        // The closing cross-fade frame of the previous piece (its token), and its audio.
        let mut held: Option<(usize, Vec<f32>)> = None;
        let mut first = 0usize; // the piece's first source token
        for piece in 0u64.. {
            let t = Instant::now();
            stream.release(first);
            let (cut, end) = if total - first <= geo.budget {
                (None, total)
            } else {
                let limit = first + geo.budget;
                stream.fill(self, limit)?;
                let hi = limit - 1 - TAIL_TOKENS;
                let lo = held
                    .as_ref()
                    .map_or(1, |(j, _)| j + 1)
                    .max((hi + 1).saturating_sub(SEARCH_TOKENS));
                let j = stream.quietest(lo, hi);
                (Some(j), j + 1 + TAIL_TOKENS)
            };
            stream.fill(self, end)?;
            let tokens = stream.slice(first, end);
            stages.conditioning_s += t.elapsed().as_secs_f64();
            stages.speech_tokens += tokens.len();
            stages.chunks += 1;

            let mut noise =
                S3GenNoise::new(req.seed, piece, self.bundle().config().s3gen.hift_harmonics);
            let wav = self.tokens_to_wav(
                &tokens,
                target,
                req.flow_steps,
                req.watermark,
                &mut noise,
                &mut stages,
            )?;
            if wav.len() + geo.lag != tokens.len() * geo.tok_out {
                return Err(Error::model_mismatch(
                    "s3gen",
                    format!("{} output samples for {} tokens", wav.len(), tokens.len()),
                ));
            }
            // Output sample `i` of this piece is sample `tok_out * first + lag + i` of the
            // whole; `local(j)` is where token frame `j` starts in it.
            let local = |j: usize| (j - first) * geo.tok_out - geo.lag;
            let begin = held.as_ref().map_or(0, |(j, _)| local(*j));
            let end = cut.map_or(wav.len(), local);
            let mut chunk = wav[begin..end].to_vec();
            if let Some((_, tail)) = held.take() {
                audio::fade::crossfade(&tail, &mut chunk[..geo.tok_out]);
            }
            held = cut.map(|j| (j, wav[local(j)..local(j) + geo.tok_out].to_vec()));
            drop(wav);
            produced += chunk.len();
            if !on_chunk(&chunk) {
                return Err(Error::cancelled("conversion stopped by the chunk callback"));
            }
            match cut {
                Some(j) => first = j - LEAD_TOKENS,
                None => break,
            }
        }
        let want = geo.output_len(n16);
        if produced != want {
            return Err(Error::internal(format!(
                "conversion produced {produced} samples, expected {want}"
            )));
        }
        stages.total_s = start.elapsed().as_secs_f64();
        stages.audio_s = produced as f64 / f64::from(config.s3gen.sample_rate);
        stages.rtf = if stages.audio_s > 0.0 {
            stages.total_s / stages.audio_s
        } else {
            0.0
        };
        Ok(stages)
    }
}

/// The source's S3 tokens as the reference tokenizer makes them, produced window by window
/// and kept only while needed, with the energy of each token's 40 ms frame.
///
/// The reference (`S3Tokenizer.quantize`) tokenizes a source of up to 30 s (3000 log-mel
/// frames) in one pass and a longer one in windows of 3000 frames every 2600 (4 s overlap),
/// dropping 50 tokens on each side of every overlap (`merge_tokenized_segments`). The
/// windows here are the same, each through the `s3_tokenizer` graph on its own samples
/// (its own log-mel floor and STFT edges, where the reference cuts one log-mel of the whole
/// clip). One fix: where the reference's last window is shorter than 400 frames (its 50
/// dropped tokens then leave up to 2 s of the source without tokens, shifting the rest),
/// the window before it, which already reaches the end, is the last.
struct SourceTokens<'a> {
    source: &'a [f32],
    rate: u32,
    geo: Geometry,
    n16: usize,
    /// Log-mel frames of the whole source (`n16 / 160`).
    frames: usize,
    /// Frames per window and between window starts.
    window: usize,
    hop: usize,
    /// Tokens dropped on each side of an overlap.
    edge: usize,
    /// The next window to run; `None` once the last has run.
    next: Option<usize>,
    /// Global index of `tokens[0]`.
    base: usize,
    tokens: std::collections::VecDeque<i64>,
    energy: std::collections::VecDeque<f64>,
}

impl<'a> SourceTokens<'a> {
    fn new(source: &'a [f32], rate: u32, geo: Geometry, n16: usize) -> SourceTokens<'a> {
        let window = geo.window_tokens * S3_FRAMES_PER_TOKEN;
        let overlap = (TOKENIZER_OVERLAP_SECONDS * f64::from(geo.sr16)) as usize / S3_HOP;
        SourceTokens {
            source,
            rate,
            geo,
            n16,
            frames: n16 / S3_HOP,
            window,
            hop: window - overlap,
            edge: overlap / (2 * S3_FRAMES_PER_TOKEN),
            next: Some(0),
            base: 0,
            tokens: Default::default(),
            energy: Default::default(),
        }
    }

    /// The source's token count (the reference's `ceil(ceil(frames / 2) / 2)`).
    fn total(&self) -> usize {
        self.geo.tokens_for(self.n16)
    }

    /// Tokens of `frames` log-mel frames.
    fn count(frames: usize) -> usize {
        frames.div_ceil(2).div_ceil(2)
    }

    /// Runs windows until the tokens before global index `upto` are there.
    fn fill(&mut self, engine: &Engine, upto: usize) -> Result<()> {
        while self.base + self.tokens.len() < upto {
            let Some(i) = self.next else {
                return Err(Error::internal(format!(
                    "source tokens end at {}, {upto} needed",
                    self.base + self.tokens.len()
                )));
            };
            let (start, end, last) =
                tokenizer_window(self.frames, self.window, self.hop, self.edge, i);
            let a = start * S3_HOP;
            let b = if last { self.n16 } else { end * S3_HOP };
            let wav16 = source_16k(self.source, self.rate, self.geo.sr16, a, b)?;
            let tokens = {
                let _stage = engine.host().stage(Stage::Conditioning)?;
                conditioning::s3_tokens(engine.host(), &wav16, None)?
            };
            let want = Self::count(wav16.len() / S3_HOP);
            if tokens.len() != want {
                return Err(Error::model_mismatch(
                    "s3_tokenizer",
                    format!(
                        "{} tokens for {} samples, expected {want}",
                        tokens.len(),
                        wav16.len()
                    ),
                ));
            }
            let keep_from = if i == 0 { 0 } else { self.edge };
            let keep_to = if last { want } else { want - self.edge };
            let global = start / S3_FRAMES_PER_TOKEN + keep_from;
            if global != self.base + self.tokens.len() {
                return Err(Error::internal(format!(
                    "tokenizer window {i} starts at token {global}, expected {}",
                    self.base + self.tokens.len()
                )));
            }
            let tok16 = self.geo.tok16;
            for t in keep_from..keep_to {
                let frame =
                    &wav16[(t * tok16).min(wav16.len())..((t + 1) * tok16).min(wav16.len())];
                self.tokens.push_back(tokens[t]);
                self.energy
                    .push_back(frame.iter().map(|&x| f64::from(x) * f64::from(x)).sum());
            }
            self.next = (!last).then_some(i + 1);
        }
        Ok(())
    }

    /// Forgets the tokens before global index `before`.
    fn release(&mut self, before: usize) {
        while self.base < before && !self.tokens.is_empty() {
            self.tokens.pop_front();
            self.energy.pop_front();
            self.base += 1;
        }
    }

    /// The tokens `a..b` (global indices; filled and not released).
    fn slice(&self, a: usize, b: usize) -> Vec<i64> {
        self.tokens
            .range(a - self.base..b - self.base)
            .copied()
            .collect()
    }

    /// The quietest token frame in `lo..=hi` (global indices); the latest of equal minima.
    fn quietest(&self, lo: usize, hi: usize) -> usize {
        let mut best = (f64::INFINITY, hi);
        for j in lo..=hi {
            let e = self.energy[j - self.base];
            if e <= best.0 {
                best = (e, j);
            }
        }
        best.1
    }
}

/// Window `i` of the tokenizer over `frames` log-mel frames: its first and end frames, and
/// whether it is the last. Up to `window` frames: one window (the reference's short path).
/// Past that, windows of `window` frames every `hop` while the previous one has not reached the
/// end, as `S3Tokenizer.quantize` cuts them, except that a window reaching the end is the last
/// when the reference's next one would be too short to supply the `edge` tokens its
/// predecessor drops (fewer than `2 edge` tokens: the reference's hole).
fn tokenizer_window(
    frames: usize,
    window: usize,
    hop: usize,
    edge: usize,
    i: usize,
) -> (usize, usize, bool) {
    let start = i * hop;
    let end = (start + window).min(frames);
    let next = start + hop;
    let last = end == frames
        && (frames <= window || next >= frames || SourceTokens::count(frames - next) < 2 * edge);
    (start, end, last)
}

impl Engine {
    /// The source tokens a conversion with `target` uses: the reference tokenizer's, window
    /// by window (see [`Engine::convert`]). For tests: unlike a conversion, this holds all
    /// of them; runs only the tokenizer.
    #[doc(hidden)]
    pub fn vc_source_tokens(
        &self,
        source: &[f32],
        source_rate: u32,
        target: S3GenRefView<'_>,
    ) -> Result<Vec<i64>> {
        let geo =
            self.prepare_conversion(source, source_rate, target, &ConvertRequest::default())?;
        let n16 = audio::resample::resampled_len(source.len(), source_rate, geo.sr16);
        let mut stream = SourceTokens::new(source, source_rate, geo, n16);
        let total = stream.total();
        stream.fill(self, total)?;
        Ok(stream.slice(0, total))
    }
}

impl Geometry {
    /// The output length for `n16` source samples (the reference's).
    fn output_len(&self, n16: usize) -> usize {
        (self.tokens_for(n16) * self.tok_out).saturating_sub(self.lag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(n: usize, rate: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                let env = 0.5 + 0.5 * (2.0 * std::f64::consts::PI * 2.0 * t).sin();
                (0.4 * env * (2.0 * std::f64::consts::PI * 190.0 * t).sin()
                    + 0.1 * (2.0 * std::f64::consts::PI * 2300.0 * t).sin()) as f32
            })
            .collect()
    }

    #[test]
    fn request_validation_names_the_field() {
        assert!(ConvertRequest::default().validate().is_ok());
        for steps in [0, limits::MAX_FLOW_STEPS + 1, usize::MAX] {
            let e = ConvertRequest {
                flow_steps: steps,
                ..ConvertRequest::default()
            }
            .validate()
            .unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
            assert!(e.to_string().contains("flow_steps"), "{e}");
        }
    }

    /// Piecewise resampling equals resampling the whole source up to float rounding.
    #[test]
    fn piecewise_resampling_matches_the_whole() {
        for rate in [8_000u32, 22_050, 44_100, 48_000, 44_101] {
            let src = signal(3 * rate as usize + 17, rate);
            let whole = audio::resample(&src, rate, 16_000).unwrap();
            let mut worst = 0f32;
            for (a, b) in [(0, 640 * 20), (640 * 7, 640 * 40), (640 * 30, whole.len())] {
                let part = source_16k(&src, rate, 16_000, a, b).unwrap();
                assert_eq!(part.len(), b - a);
                for (x, y) in part.iter().zip(&whole[a..b]) {
                    worst = worst.max((x - y).abs());
                }
            }
            eprintln!("{rate} Hz: piecewise vs whole max abs diff {worst:e}");
            assert!(worst <= 1e-6, "{rate} Hz: max abs diff {worst:e}");
            // The whole source as one stretch is the whole resampling, bit for bit.
            assert_eq!(
                source_16k(&src, rate, 16_000, 0, whole.len()).unwrap(),
                whole
            );
        }
    }

    /// The reference's token count (`S3Tokenizer.quantize`, short or long path; vc.json's
    /// `token_count_rule`).
    fn reference_count(frames: usize) -> usize {
        if frames <= 3000 {
            return SourceTokens::count(frames);
        }
        let starts: Vec<usize> = (0..frames).step_by(2600).collect();
        let mut total = 0;
        for (i, &s) in starts.iter().enumerate() {
            let k = SourceTokens::count((s + 3000).min(frames) - s);
            let drop = if i > 0 { 50 } else { 0 } + if i + 1 < starts.len() { 50 } else { 0 };
            total += k.saturating_sub(drop);
        }
        total
    }

    /// The windows merge to the full token count for every length; they are the reference's
    /// wherever the reference leaves no hole, and one window up to 30 s.
    #[test]
    fn tokenizer_windows_follow_the_reference() {
        let mut holes = 0;
        for frames in 1..20_000usize {
            let mut merged = 0;
            let mut windows = 0;
            for i in 0.. {
                let (start, end, last) = tokenizer_window(frames, 3000, 2600, 50, i);
                let c = SourceTokens::count(end - start);
                let from = if i == 0 { 0 } else { 50 };
                let to = if last { c } else { c - 50 };
                assert_eq!(start / 4 + from, merged, "{frames} frames, window {i}");
                merged += to - from;
                windows += 1;
                if last {
                    break;
                }
            }
            let full = SourceTokens::count(frames);
            assert_eq!(merged, full, "{frames} frames");
            if frames <= 3000 {
                assert_eq!(windows, 1, "{frames} frames: the short path");
            }
            let reference = reference_count(frames);
            // The reference's hole: frames > 5200 with frames mod 2600 in [1, 396]
            // (vc.json `reference_long_path`).
            let hole = frames > 5200 && (1..=396).contains(&(frames % 2600));
            assert_eq!(reference != full, hole, "{frames} frames");
            if reference == full {
                let reference_windows = if frames <= 3000 {
                    1
                } else {
                    frames.div_ceil(2600)
                };
                assert_eq!(windows, reference_windows, "{frames} frames");
            } else {
                holes += 1;
                assert!(full - reference <= 50, "{frames} frames");
            }
        }
        assert_eq!(holes, 6 * 396, "lengths below 20000 frames with a hole");
    }
}
