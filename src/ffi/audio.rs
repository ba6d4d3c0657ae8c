//! Synthesis, whole and streaming, and the audio it returns.

use std::ffi::{c_char, c_void};

use super::args;
use super::engine::{request_arg, CbxEngine, CbxRequest};
use super::status::{guard, guard_value, CbxStatus, FfiError, FfiResult};
use super::voice::CbxVoice;
use crate::bundle::Voice;
use crate::engine::{Audio, Engine, Request};

/// Synthesised speech: mono float samples at the engine's output rate
/// (24000 Hz), in [-1, 1] (the engine clamps after the Perth watermark).
/// Opaque and immutable; free with
/// `cbx_audio_free`.
pub struct CbxAudio {
    pub(crate) audio: Audio,
}

/// Receives streamed audio: `count` mono samples (as `CbxAudio`) at `sample_rate`
/// Hz. `samples` is valid only during the call (copy what you keep).
/// Return 0 to go on, non-zero to stop: the synthesis call then returns
/// `CBX_CANCELLED`. Called on the thread that called
/// `cbx_synthesize_streaming`; it must not unwind (C++ exceptions, longjmp)
/// through the library, and must not free the engine or voice in use.
pub type CbxChunkCallback = Option<
    unsafe extern "C" fn(
        samples: *const f32,
        count: usize,
        sample_rate: u32,
        user_data: *mut c_void,
    ) -> i32,
>;

/// The engine, text, voice and request of a synthesis call, checked.
pub(super) struct SynthesisArgs<'a> {
    pub(super) engine: &'a Engine,
    pub(super) text: &'a str,
    pub(super) voice: &'a Voice,
    pub(super) request: Request,
}

/// # Safety
/// The pointer contracts of `cbx_synthesize`.
pub(super) unsafe fn synthesis_args<'a>(
    engine: *const CbxEngine,
    text: *const c_char,
    voice: *const CbxVoice,
    request: *const CbxRequest,
) -> FfiResult<SynthesisArgs<'a>> {
    // SAFETY: the caller's contract.
    let engine = &unsafe { args::borrow(engine, "engine") }?.engine;
    let text = unsafe { args::utf8(text, "text", CbxStatus::CBX_INVALID_TEXT) }?;
    let voice = match unsafe { voice.as_ref() } {
        Some(voice) => &voice.voice,
        None => engine.default_voice(),
    };
    let request = unsafe { request_arg(engine, request) }?;
    Ok(SynthesisArgs {
        engine,
        text,
        voice,
        request,
    })
}

/// Synthesises `text` (UTF-8) in `voice` (NULL: the bundle's default voice)
/// with `request` (NULL: the bundle's defaults, seed 0).
///
/// On success `*out` owns the audio: free it with `cbx_audio_free`. On
/// failure `*out` is NULL.
///
/// Errors: `CBX_INVALID_ARGUMENT` (NULL engine, text or out; a request field
/// out of range, bad `struct_size`), `CBX_INVALID_TEXT` (not UTF-8, empty),
/// `CBX_RUNTIME`, `CBX_BUDGET`.
///
/// Thread-safety: any number of threads may synthesise on one engine at
/// once (each component's session runs one call at a time, so calls
/// interleave stage by stage); the result does not depend on what else runs.
/// Not concurrently with `cbx_engine_free` on the engine or
/// `cbx_voice_free` on the voice.
///
/// # Safety
/// `engine`, `voice` are NULL or live handles; `text` is NULL or
/// NUL-terminated; `request` is NULL or points to a `CbxRequest` of its
/// `struct_size`; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cbx_synthesize(
    engine: *const CbxEngine,
    text: *const c_char,
    voice: *const CbxVoice,
    request: *const CbxRequest,
    out: *mut *mut CbxAudio,
) -> CbxStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out_ptr(out, "out") }?;
        let call = unsafe { synthesis_args(engine, text, voice, request) }?;
        let audio = call
            .engine
            .synthesize(call.text, call.voice, &call.request)?;
        *out = args::into_raw(CbxAudio { audio });
        Ok(())
    })
}

/// Synthesises like `cbx_synthesize`, handing the audio to `callback` in
/// chunks as it is made: one chunk per text chunk (the engine splits long
/// text into sentence groups), each as soon as it is ready; `user_data` is
/// passed through untouched. The chunks, joined, are the audio
/// `cbx_synthesize` returns for the same arguments.
///
/// Returns `CBX_OK` when the text is done, `CBX_CANCELLED` when the callback
/// returned non-zero (no further call is made), or an error as
/// `cbx_synthesize` (`CBX_INVALID_ARGUMENT` also for a NULL callback).
///
/// Thread-safety: as `cbx_synthesize`; the callback runs on the calling
/// thread.
///
/// # Safety
/// As `cbx_synthesize`; `callback` is NULL or a function of the
/// `CbxChunkCallback` contract.
#[no_mangle]
pub unsafe extern "C" fn cbx_synthesize_streaming(
    engine: *const CbxEngine,
    text: *const c_char,
    voice: *const CbxVoice,
    request: *const CbxRequest,
    callback: CbxChunkCallback,
    user_data: *mut c_void,
) -> CbxStatus {
    guard(|| {
        let callback = callback.ok_or_else(|| FfiError::invalid_argument("`callback` is NULL"))?;
        // SAFETY: the caller's contract.
        let call = unsafe { synthesis_args(engine, text, voice, request) }?;
        let sample_rate = call.engine.bundle().config().s3gen.sample_rate;
        let mut cancelled = false;
        let mut on_chunk = |chunk: &[f32]| -> bool {
            if cancelled {
                return false;
            }
            // SAFETY: the callback's contract; `chunk` outlives the call.
            let verdict = unsafe { callback(chunk.as_ptr(), chunk.len(), sample_rate, user_data) };
            cancelled = verdict != 0;
            !cancelled
        };
        let result =
            call.engine
                .synthesize_streaming(call.text, call.voice, &call.request, &mut on_chunk);
        match result {
            Ok(_) if cancelled => Err(FfiError::new(
                CbxStatus::CBX_CANCELLED,
                "synthesis cancelled by the chunk callback",
            )),
            Ok(_) => Ok(()),
            Err(err) => Err(err.into()),
        }
    })
}

/// The samples of `audio`: `*samples` points to `*count` mono floats
/// at `*sample_rate` Hz.
///
/// Ownership: the samples belong to `audio` and stay valid until
/// `cbx_audio_free(audio)`; do not free or write them.
///
/// Errors: `CBX_INVALID_ARGUMENT` when any pointer is NULL.
///
/// Thread-safety: audio is immutable; callable from any thread.
///
/// # Safety
/// `audio` is NULL or a live audio; the out-pointers are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cbx_audio_samples(
    audio: *const CbxAudio,
    samples: *mut *const f32,
    count: *mut usize,
    sample_rate: *mut u32,
) -> CbxStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let samples = unsafe { samples.as_mut() }
            .ok_or_else(|| FfiError::invalid_argument("`samples` is NULL"))?;
        *samples = std::ptr::null();
        let count = unsafe { count.as_mut() }
            .ok_or_else(|| FfiError::invalid_argument("`count` is NULL"))?;
        *count = 0;
        let rate = unsafe { sample_rate.as_mut() }
            .ok_or_else(|| FfiError::invalid_argument("`sample_rate` is NULL"))?;
        *rate = 0;
        let audio = &unsafe { args::borrow(audio, "audio") }?.audio;
        *samples = audio.samples.as_ptr();
        *count = audio.samples.len();
        *rate = audio.sample_rate;
        Ok(())
    })
}

/// Frees audio (and its samples). NULL is a no-op.
///
/// Thread-safety: must not run while another call uses this audio.
///
/// # Safety
/// `audio` is NULL or came from `cbx_synthesize` and was not freed.
#[no_mangle]
pub unsafe extern "C" fn cbx_audio_free(audio: *mut CbxAudio) {
    // SAFETY: the caller's contract.
    guard_value((), || unsafe { args::drop_raw(audio) })
}
