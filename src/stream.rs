//! Token-level streaming: audio while T3 is still decoding.
//!
//! [`Engine::synthesize_stream`] runs S3Gen, HiFT and Perth on the speech tokens decoded so
//! far each time [`StreamOptions::first_chunk_tokens`], then every
//! [`StreamOptions::chunk_tokens`] more, have been drawn, and delivers only audio it has not
//! delivered before. The algorithm, what each pass recomputes and why, and its cost are in
//! `docs/STREAMING.md`; in short, per pass over `n` tokens of a text chunk:
//!
//! 1. the flow (encoder + Euler loop) over the voice's prompt tokens and all `n` tokens, the
//!    frames of the last [`PRE_LOOKAHEAD_TOKENS`] tokens left out until T3 has stopped (the
//!    reference's `finalize=False`); the start noise is position-stable
//!    ([`S3GenNoise`]), so a frame gets the noise it gets in the non-streamed synthesis;
//! 2. HiFT over all mel frames of the pass (its sine source keeps its phase from sample 0,
//!    which is the reference's `cache_source` continuity, exactly);
//! 3. the samples from the end of the last delivery up to [`HOLDBACK_FRAMES`] frames before
//!    the pass's end are delivered; their first [`CROSSFADE_FRAMES`] frames are cross-faded
//!    from the previous pass's samples there (raised cosine, weights summing to 1);
//! 4. Perth over those samples with up to [`WATERMARK_CONTEXT_SECONDS`] of already delivered
//!    audio before them and the held-back samples after them, keeping the delivered part.
//!
//! The last pass (T3 stopped) uses every token and delivers everything left; it computes
//! exactly what [`Engine::synthesize`] computes for the chunk, so the two differ only in the
//! samples delivered by earlier passes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use crate::audio;
use crate::bundle::{S3GenRefView, Voice};
use crate::engine::{Audio, Engine, Progress, Request, StageTimings};
use crate::engine::{CHUNK_FADE_OUT_SECONDS, CHUNK_GAP_SECONDS};
use crate::error::{Error, Result};
use crate::family;
use crate::limits;
use crate::residency::Stage;
use crate::rng::EngineRng;
use crate::s3gen::flow::PRE_LOOKAHEAD_TOKENS;
use crate::s3gen::noise::S3GenNoise;

/// Default speech tokens before the first S3Gen pass (about 0.8 s of speech; the first
/// delivery holds about 0.3 s of it, the rest follows with the next pass).
pub const DEFAULT_FIRST_CHUNK_TOKENS: usize = 20;
/// Default speech tokens between two later passes (about 1.6 s of speech).
pub const DEFAULT_CHUNK_TOKENS: usize = 40;
/// Mel frames at the end of a non-final pass that are not delivered: HiFT (and the flow's
/// convolutions) have not seen their right context yet. 10 frames = 200 ms.
pub const HOLDBACK_FRAMES: usize = 10;
/// Mel frames at the start of each delivery cross-faded from the previous pass. 2 frames =
/// 40 ms.
pub const CROSSFADE_FRAMES: usize = 2;
/// Already delivered audio given to Perth before the new samples, in seconds.
pub const WATERMARK_CONTEXT_SECONDS: f64 = 0.5;

/// How a streaming synthesis cuts its token stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOptions {
    /// Speech tokens of a text chunk before its first S3Gen pass, in
    /// [`limits::MIN_STREAM_FIRST_TOKENS`] ..= [`limits::MAX_STREAM_CHUNK_TOKENS`]: smaller
    /// gives earlier first audio.
    pub first_chunk_tokens: usize,
    /// Speech tokens between two later passes, in 1 ..= [`limits::MAX_STREAM_CHUNK_TOKENS`]:
    /// every pass recomputes the flow over the prompt and all tokens so far, so larger
    /// chunks cost less in total.
    pub chunk_tokens: usize,
    /// Run T3 on its own thread, decoding the next tokens while S3Gen turns the finished
    /// ones into audio. The delivered audio is the same either way.
    pub overlap: bool,
}

impl Default for StreamOptions {
    fn default() -> StreamOptions {
        StreamOptions {
            first_chunk_tokens: DEFAULT_FIRST_CHUNK_TOKENS,
            chunk_tokens: DEFAULT_CHUNK_TOKENS,
            overlap: false,
        }
    }
}

impl StreamOptions {
    /// Checks the bounds; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let max = limits::MAX_STREAM_CHUNK_TOKENS;
        let min_first = limits::MIN_STREAM_FIRST_TOKENS;
        if !(min_first..=max).contains(&self.first_chunk_tokens) {
            return Err(Error::invalid_argument(
                "first_chunk_tokens",
                format!(
                    "must be in {min_first}..={max} (fewer tokens give the first pass \
                     nothing to deliver: the flow holds back {PRE_LOOKAHEAD_TOKENS} tokens \
                     and the pass {HOLDBACK_FRAMES} frames), got {}",
                    self.first_chunk_tokens
                ),
            ));
        }
        if !(1..=max).contains(&self.chunk_tokens) {
            return Err(Error::invalid_argument(
                "chunk_tokens",
                format!("must be in 1..={max}, got {}", self.chunk_tokens),
            ));
        }
        Ok(())
    }
}

/// One delivery of a streaming synthesis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamChunk<'a> {
    /// Watermarked mono samples in `[-1, 1]` at the bundle's rate (24 kHz); may be empty
    /// only for the last chunk.
    pub samples: &'a [f32],
    /// Where `samples[0]` sits in the whole stream (chunks are contiguous: each offset is
    /// the previous offset plus the previous length).
    pub offset: usize,
    /// Index of this delivery (0-based).
    pub index: usize,
    /// The text chunk the samples belong to (0-based).
    pub text_chunk: usize,
    /// Speech tokens of that text chunk the delivery is computed from.
    pub tokens: usize,
    /// Nothing follows.
    pub last: bool,
    /// Seconds since the call started.
    pub elapsed_s: f64,
}

/// Hands deliveries to the caller and keeps the stream's bookkeeping.
struct Sink<'c> {
    on_chunk: &'c mut dyn FnMut(&StreamChunk<'_>) -> bool,
    start: Instant,
    last_delivery: Instant,
    samples: Vec<f32>,
    latencies: Vec<f64>,
    first_audio_s: Option<f64>,
}

impl Sink<'_> {
    /// Delivers `piece`; `Cancelled` when the callback says stop.
    fn deliver(
        &mut self,
        piece: &[f32],
        text_chunk: usize,
        tokens: usize,
        last: bool,
    ) -> Result<()> {
        if piece.is_empty() && !last {
            return Ok(());
        }
        let now = Instant::now();
        let chunk = StreamChunk {
            samples: piece,
            offset: self.samples.len(),
            index: self.latencies.len(),
            text_chunk,
            tokens,
            last,
            elapsed_s: now.duration_since(self.start).as_secs_f64(),
        };
        self.latencies
            .push(now.duration_since(self.last_delivery).as_secs_f64());
        self.last_delivery = now;
        if !piece.is_empty() && self.first_audio_s.is_none() {
            self.first_audio_s = Some(chunk.elapsed_s);
        }
        self.samples.extend_from_slice(piece);
        if !(self.on_chunk)(&chunk) {
            return Err(Error::cancelled("synthesis stopped by the chunk callback"));
        }
        Ok(())
    }
}

/// The incremental S3Gen of one text chunk (module docs, steps 1-4).
struct Incremental<'e> {
    engine: &'e Engine,
    voice: S3GenRefView<'e>,
    flow_steps: usize,
    watermark: bool,
    noise: S3GenNoise,
    /// Samples of this text chunk delivered so far.
    emitted: usize,
    /// The last pass's (unwatermarked) samples from `emitted` on: the cross-fade source.
    tail: Vec<f32>,
    /// The last delivered samples before watermarking: Perth's left context.
    history: Vec<f32>,
    holdback: usize,
    crossfade: usize,
    context: usize,
    passes: usize,
}

impl<'e> Incremental<'e> {
    fn new(engine: &'e Engine, voice: &'e Voice, req: &Request, stream: u64) -> Incremental<'e> {
        let s3 = &engine.bundle().config().s3gen;
        let frame = s3.samples_per_mel_frame;
        Incremental {
            engine,
            voice: voice.s3gen_reference(),
            flow_steps: req.flow_steps,
            watermark: req.watermark,
            noise: S3GenNoise::new(req.seed, stream, s3.hift_harmonics),
            emitted: 0,
            tail: Vec::new(),
            history: Vec::new(),
            holdback: HOLDBACK_FRAMES * frame,
            crossfade: CROSSFADE_FRAMES * frame,
            context: (WATERMARK_CONTEXT_SECONDS * f64::from(s3.sample_rate)) as usize,
            passes: 0,
        }
    }

    /// One pass over `tokens` (every speech token of the text chunk so far); `last`: T3 has
    /// stopped. Returns the samples to deliver (watermarked when asked), maybe none.
    fn pass(&mut self, tokens: &[i64], last: bool, stages: &mut StageTimings) -> Result<Vec<f32>> {
        self.passes += 1;
        let e = self.engine;
        let (mel, frames) = e.s3gen_mel(
            tokens,
            self.voice,
            self.flow_steps,
            last,
            &mut self.noise,
            stages,
        )?;
        let wav = e.vocode(&mel, frames, &mut self.noise, stages)?;
        drop(mel);
        let end = if last {
            wav.len()
        } else {
            wav.len().saturating_sub(self.holdback)
        };
        if end <= self.emitted {
            return Ok(Vec::new());
        }
        let mut out = wav[self.emitted..end].to_vec();
        let n = self.crossfade.min(self.tail.len()).min(out.len());
        audio::fade::crossfade(&self.tail[..n], &mut out[..n]);
        self.tail = wav[end..(end + self.crossfade).min(wav.len())].to_vec();
        self.emitted = end;
        if !self.watermark {
            return Ok(out);
        }
        // Perth over [history | out | held back], keeping the `out` part.
        let left = self.history.len();
        let mut window = Vec::with_capacity(left + out.len() + (wav.len() - end));
        window.extend_from_slice(&self.history);
        window.extend_from_slice(&out);
        window.extend_from_slice(&wav[end..]);
        let marked = e.watermark_wav(&window, stages)?;
        self.history.extend_from_slice(&out);
        let keep_from = self.history.len().saturating_sub(self.context);
        self.history.drain(..keep_from);
        Ok(marked[left..left + out.len()].to_vec())
    }
}

impl Engine {
    /// Synthesizes `text` with `voice`, delivering audio to `on_chunk` while T3 is still
    /// decoding (module docs; `docs/STREAMING.md`). `on_progress` is called after every
    /// speech token and `on_chunk` after every S3Gen pass that has new audio; either
    /// returning `false` cancels (the call then fails with `Cancelled`). Text chunks are
    /// joined as [`Engine::synthesize`] joins them. The same seed gives the same stream,
    /// with or without [`StreamOptions::overlap`]; the returned [`Audio`] holds every
    /// delivered sample, and its [`StageTimings`] the first-audio time and the gaps
    /// between deliveries.
    ///
    /// Residency: the stages T3, S3Gen and the watermark are held for the whole call
    /// ([`crate::residency::Host::streaming_stages`]), so `swap` sessions are created
    /// once per call, not once per chunk; a `budget` below the plan's
    /// `streaming_peak_bytes` is a `Budget` error.
    pub fn synthesize_stream(
        &self,
        text: &str,
        voice: &Voice,
        req: &Request,
        opts: &StreamOptions,
        on_progress: &mut dyn FnMut(&Progress) -> bool,
        on_chunk: &mut dyn FnMut(&StreamChunk<'_>) -> bool,
    ) -> Result<Audio> {
        let start = Instant::now();
        opts.validate()?;
        let chunks = self.prepare(text, voice, req)?;
        let mut stages = StageTimings {
            chunks: chunks.len(),
            ..StageTimings::default()
        };
        let cond = self.conditioning(voice, req, &mut stages)?;
        let _held = self.host().streaming_stages()?;

        let sr = self.bundle().config().s3gen.sample_rate;
        let gap = vec![0f32; (CHUNK_GAP_SECONDS * f64::from(sr)) as usize];
        let fade_out = (CHUNK_FADE_OUT_SECONDS * f64::from(sr)) as usize;
        let mut sink = Sink {
            on_chunk,
            start,
            last_delivery: start,
            samples: Vec::new(),
            latencies: Vec::new(),
            first_audio_s: None,
        };
        let mut passes = 0;
        for (ci, chunk) in chunks.iter().enumerate() {
            let ids = self.text_ids(chunk, req.language)?;
            let mut inc = Incremental::new(self, voice, req, ci as u64);
            let mut progress = |tokens: usize| {
                on_progress(&Progress {
                    chunk: ci,
                    chunks: chunks.len(),
                    tokens,
                    max_new_tokens: req.max_new_tokens,
                })
            };
            let run = ChunkRun {
                engine: self,
                req,
                opts,
                cond: &cond,
                ids: &ids,
                text_chunk: ci,
            };
            let sampled = if opts.overlap {
                run.overlapped(&mut inc, &mut sink, &mut stages, &mut progress)?
            } else {
                run.inline(&mut inc, &mut sink, &mut stages, &mut progress)?
            };
            stages.t3_tokens += sampled.len();
            let tokens = family::tokens_for_s3gen(self.bundle(), self.t3_dims(), &sampled);
            stages.speech_tokens += tokens.len();
            let mut piece = if tokens.is_empty() {
                Vec::new()
            } else {
                inc.pass(&tokens, true, &mut stages)?
            };
            passes += inc.passes;
            let last = ci + 1 == chunks.len();
            if !last {
                audio::fade::fade_out(&mut piece, fade_out);
                piece.extend_from_slice(&gap);
            }
            sink.deliver(&piece, ci, tokens.len(), last)?;
        }
        stages.s3gen_passes = passes;
        stages.first_audio_s = sink.first_audio_s.unwrap_or(0.0);
        stages.audio_chunks = sink.latencies.len();
        stages.chunk_latency_s = sink.latencies;
        Ok(self.finish_audio(sink.samples, stages, start))
    }
}

/// One text chunk's T3 + incremental S3Gen.
struct ChunkRun<'a> {
    engine: &'a Engine,
    req: &'a Request,
    opts: &'a StreamOptions,
    cond: &'a [f32],
    ids: &'a [i64],
    text_chunk: usize,
}

impl ChunkRun<'_> {
    /// Runs a pass when the tokens for S3Gen so far reach `*next_at`; returns whether
    /// the synthesis goes on.
    fn maybe_pass(
        &self,
        sampled: &[i64],
        next_at: &mut usize,
        inc: &mut Incremental<'_>,
        sink: &mut Sink<'_>,
        stages: &mut StageTimings,
    ) -> Result<()> {
        if sampled.len() >= self.req.max_new_tokens {
            // T3 stops here: the last pass follows at once.
            return Ok(());
        }
        let e = self.engine;
        let tokens = family::partial_tokens_for_s3gen(e.bundle(), e.t3_dims(), sampled);
        if tokens.len() < *next_at {
            return Ok(());
        }
        *next_at = tokens.len() + self.opts.chunk_tokens;
        let piece = inc.pass(&tokens, false, stages)?;
        sink.deliver(&piece, self.text_chunk, tokens.len(), false)
    }

    /// T3 for the text chunk (its stage entered), `on_token` as in
    /// [`family::generate_speech_tokens`].
    fn generate(
        &self,
        rng: &mut EngineRng,
        on_token: &mut dyn FnMut(usize, i64) -> bool,
    ) -> Result<Vec<i64>> {
        let e = self.engine;
        let _stage = e.host().stage(Stage::T3)?;
        family::generate_speech_tokens(
            e.host(),
            e.bundle(),
            e.t3_dims(),
            Some(e.t3_prefix()),
            self.cond,
            self.ids,
            self.req,
            rng,
            on_token,
        )
    }

    /// T3 and the passes on the calling thread: a pass runs inside the token callback.
    fn inline(
        &self,
        inc: &mut Incremental<'_>,
        sink: &mut Sink<'_>,
        stages: &mut StageTimings,
        progress: &mut dyn FnMut(usize) -> bool,
    ) -> Result<Vec<i64>> {
        let mut rng = EngineRng::with_stream(self.req.seed, self.text_chunk as u64);
        let mut sampled = Vec::new();
        let mut next_at = self.opts.first_chunk_tokens;
        let mut failure: Option<Error> = None;
        let mut in_passes = 0.0;
        let t = Instant::now();
        let result = self.generate(&mut rng, &mut |n, token| {
            sampled.push(token);
            if !progress(n) {
                return false;
            }
            let tp = Instant::now();
            let r = self.maybe_pass(&sampled, &mut next_at, inc, sink, stages);
            in_passes += tp.elapsed().as_secs_f64();
            match r {
                Ok(()) => true,
                Err(err) => {
                    failure = Some(err);
                    false
                }
            }
        });
        stages.t3_s += t.elapsed().as_secs_f64() - in_passes;
        result.map_err(|err| failure.unwrap_or(err))
    }

    /// T3 on a scoped thread sending each token; the passes on the calling thread at the
    /// same token counts as [`ChunkRun::inline`] (so the stream does not depend on timing).
    fn overlapped(
        &self,
        inc: &mut Incremental<'_>,
        sink: &mut Sink<'_>,
        stages: &mut StageTimings,
        progress: &mut dyn FnMut(usize) -> bool,
    ) -> Result<Vec<i64>> {
        let cancel = AtomicBool::new(false);
        let (tx, rx) = mpsc::channel::<i64>();
        std::thread::scope(|scope| {
            let cancel = &cancel;
            let t3 = std::thread::Builder::new()
                .name("cbx-stream-t3".into())
                .spawn_scoped(scope, move || {
                    let t = Instant::now();
                    let mut rng = EngineRng::with_stream(self.req.seed, self.text_chunk as u64);
                    let result = self.generate(&mut rng, &mut |_, token| {
                        // A closed channel means the consumer stopped.
                        tx.send(token).is_ok() && !cancel.load(Ordering::Relaxed)
                    });
                    drop(tx);
                    (result, t.elapsed().as_secs_f64())
                })
                .map_err(|err| Error::internal(format!("spawning the T3 thread: {err}")))?;
            let mut sampled = Vec::new();
            let mut next_at = self.opts.first_chunk_tokens;
            let mut failure: Option<Error> = None;
            for token in rx.iter() {
                sampled.push(token);
                let r = if progress(sampled.len()) {
                    self.maybe_pass(&sampled, &mut next_at, inc, sink, stages)
                } else {
                    Err(Error::cancelled(
                        "speech token generation stopped by the caller",
                    ))
                };
                if let Err(err) = r {
                    failure = Some(err);
                    cancel.store(true, Ordering::Relaxed);
                    break;
                }
            }
            drop(rx);
            let (result, t3_s) = t3
                .join()
                .map_err(|_| Error::internal("the T3 thread panicked"))?;
            stages.t3_s += t3_s;
            match failure {
                Some(err) => Err(err),
                None => result,
            }
        })
    }
}
