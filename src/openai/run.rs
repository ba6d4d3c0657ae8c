//! Runs a [`SpeechJob`]: synthesis, encoding and (for SSE) framing, handing the bytes to
//! the caller as they are ready.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use base64::Engine as _;

use super::request::{Delivery, SpeechJob};
use crate::audio::encode::{self, AudioEncoder};
use crate::bundle::Voice;
use crate::engine::{Engine, StageTimings};
use crate::error::{Error, Result};

/// What a finished job did.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechOutcome {
    /// The engine's timings (RTF, speech tokens, ...).
    pub stages: StageTimings,
    /// Seconds of audio.
    pub audio_s: f64,
    /// Seconds from the start of [`run_speech`] to the first bytes of audio handed out.
    pub first_bytes_s: Option<f64>,
    /// Bytes handed out.
    pub bytes: usize,
}

/// Runs `job` with `voice`, calling `emit` with each piece of the response body (the whole
/// file once for [`Delivery::Whole`]; header and audio as they are encoded for
/// [`Delivery::Audio`]; SSE events for [`Delivery::Sse`]). `emit` returning `false` (the
/// client is gone) or `cancel` becoming true stops the synthesis at the next speech token
/// or audio chunk with a `Cancelled` error.
pub fn run_speech(
    engine: &Engine,
    job: &SpeechJob,
    voice: &Voice,
    cancel: &AtomicBool,
    emit: &mut dyn FnMut(&[u8]) -> bool,
) -> Result<SpeechOutcome> {
    let start = Instant::now();
    let sr = engine.bundle().config().s3gen.sample_rate;
    let mut first_bytes_s = None;
    let mut bytes = 0usize;
    let mut gone = false;
    let mut out = |piece: &[u8], audio: bool| -> bool {
        if piece.is_empty() {
            return true;
        }
        if audio && first_bytes_s.is_none() {
            first_bytes_s = Some(start.elapsed().as_secs_f64());
        }
        bytes += piece.len();
        let ok = emit(piece);
        gone |= !ok;
        ok
    };
    let mut on_progress = |_: &crate::engine::Progress| !cancel.load(Ordering::Relaxed);
    let audio = match job.delivery {
        Delivery::Whole => {
            let audio = engine.synthesize_with_progress(
                &job.input,
                voice,
                &job.request,
                &mut on_progress,
                &mut |_| !cancel.load(Ordering::Relaxed),
            )?;
            let file = encode::encode(job.format, sr, &audio.samples)?;
            if !out(&file, true) {
                return Err(Error::cancelled("the client went away"));
            }
            audio
        }
        Delivery::Audio | Delivery::Sse => {
            let sse = job.delivery == Delivery::Sse;
            let mut encoder = AudioEncoder::new(job.format, sr)?;
            let mut failure: Option<Error> = None;
            let result = engine.synthesize_stream(
                &job.input,
                voice,
                &job.request,
                &job.stream,
                &mut on_progress,
                &mut |chunk| {
                    if cancel.load(Ordering::Relaxed) {
                        return false;
                    }
                    match encoder.push(chunk.samples) {
                        Ok(piece) if sse => out(sse_delta(&piece).as_bytes(), !piece.is_empty()),
                        Ok(piece) => out(&piece, true),
                        Err(e) => {
                            failure = Some(e);
                            false
                        }
                    }
                },
            );
            if let Some(e) = failure {
                return Err(e);
            }
            let audio = result?;
            let tail = encoder.finish()?;
            let sent = if sse {
                out(sse_delta(&tail).as_bytes(), !tail.is_empty())
                    && out(sse_done(&audio.stages).as_bytes(), false)
            } else {
                out(&tail, true)
            };
            if !sent {
                return Err(Error::cancelled("the client went away"));
            }
            audio
        }
    };
    if gone {
        return Err(Error::cancelled("the client went away"));
    }
    Ok(SpeechOutcome {
        audio_s: audio.seconds(),
        stages: audio.stages,
        first_bytes_s,
        bytes,
    })
}

/// One `speech.audio.delta` event (nothing for no audio).
fn sse_delta(audio: &[u8]) -> String {
    if audio.is_empty() {
        return String::new();
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(audio);
    format!("data: {{\"type\":\"speech.audio.delta\",\"audio\":\"{b64}\"}}\n\n")
}

/// The closing `speech.audio.done` event; `usage` counts speech tokens as output tokens
/// (Chatterbox has no input token count to report).
fn sse_done(stages: &StageTimings) -> String {
    let event = serde_json::json!({
        "type": "speech.audio.done",
        "usage": {
            "input_tokens": 0,
            "output_tokens": stages.speech_tokens,
            "total_tokens": stages.speech_tokens,
        },
    });
    format!("data: {event}\n\n")
}
