//! Voices: from a WAV file, from samples, saved and loaded.

use std::ffi::c_char;

use super::args;
use super::engine::CbxEngine;
use super::status::{guard, guard_value, CbxStatus, FfiError};
use crate::bundle::Voice;

/// A speaker's conditioning (embeddings, prompt tokens, prompt mel), made
/// from a reference clip or loaded from a voice file. Opaque and immutable;
/// free with `cbx_voice_free`. A voice does not borrow the engine that made
/// it and can be used with any engine of a bundle of the same model.
pub struct CbxVoice {
    pub(crate) voice: Voice,
}

/// Makes a voice from a reference WAV file (any sample rate, mono or
/// multi-channel, 16/24/32-bit PCM or float; about 10 s of clean speech is
/// best). Runs the conditioning graphs; can take a while on the CPU.
///
/// On success `*out` owns the voice: free it with `cbx_voice_free`. On
/// failure `*out` is NULL.
///
/// Errors: `CBX_INVALID_ARGUMENT` (NULL), `CBX_INVALID_AUDIO` (the file
/// cannot be opened, is not a WAV, is corrupt, holds non-finite samples, less
/// than 0.5 s or more than 300 s, or a rate outside 4000..=384000 Hz),
/// `CBX_RUNTIME`.
///
/// Thread-safety: may run concurrently with any call on the same engine
/// except `cbx_engine_free`.
///
/// # Safety
/// `engine` is NULL or a live engine; `path` is NULL or NUL-terminated;
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cbx_voice_from_wav_file(
    engine: *const CbxEngine,
    path: *const c_char,
    out: *mut *mut CbxVoice,
) -> CbxStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out_ptr(out, "out") }?;
        let engine = unsafe { args::borrow(engine, "engine") }?;
        let path = unsafe { args::path(path, "path") }?;
        let voice = engine.engine.voice_from_wav(&path)?;
        *out = args::into_raw(CbxVoice { voice });
        Ok(())
    })
}

/// Makes a voice from mono samples in [-1, 1] at `sample_rate` Hz (the
/// engine resamples). The samples are only read during the call.
///
/// On success `*out` owns the voice: free it with `cbx_voice_free`. On
/// failure `*out` is NULL.
///
/// Errors: `CBX_INVALID_ARGUMENT` (NULL `engine`, `out`, or `samples` with
/// `count` > 0; a zero `sample_rate`), `CBX_INVALID_AUDIO` (no samples,
/// samples that are not finite or exceed +-1000, less than 0.5 s or more than
/// 300 s, a rate outside 4000..=384000 Hz), `CBX_RUNTIME`.
///
/// Thread-safety: may run concurrently with any call on the same engine
/// except `cbx_engine_free`.
///
/// # Safety
/// `engine` is NULL or a live engine; `samples` is NULL or points to `count`
/// readable floats; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cbx_voice_from_samples(
    engine: *const CbxEngine,
    samples: *const f32,
    count: usize,
    sample_rate: u32,
    out: *mut *mut CbxVoice,
) -> CbxStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out_ptr(out, "out") }?;
        let engine = unsafe { args::borrow(engine, "engine") }?;
        let samples: &[f32] = if count == 0 {
            &[]
        } else if samples.is_null() {
            return Err(FfiError::invalid_argument(format!(
                "`samples` is NULL but `count` is {count}"
            )));
        } else {
            // SAFETY: non-NULL and `count` floats long by the contract.
            unsafe { std::slice::from_raw_parts(samples, count) }
        };
        let voice = engine.engine.voice_from_samples(samples, sample_rate)?;
        *out = args::into_raw(CbxVoice { voice });
        Ok(())
    })
}

/// Saves a voice to a file (safetensors, the format of a bundle's
/// `voice.safetensors`). A regular file at `path` (or a symbolic link's
/// target) is replaced atomically: a uniquely named temporary file in the same
/// folder is written, synced, given the old file's permission bits and renamed
/// over it, so concurrent savers and readers never see a partial file. A
/// character device or FIFO is written in place; a directory, block device or
/// socket is refused.
///
/// Errors: `CBX_INVALID_ARGUMENT` (NULL; `path` is a directory, block device
/// or socket), `CBX_IO` (the message names `path`).
///
/// Thread-safety: voices are immutable; any number of threads may use one
/// voice at once, except with `cbx_voice_free`.
///
/// # Safety
/// `voice` is NULL or a live voice; `path` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn cbx_voice_save(voice: *const CbxVoice, path: *const c_char) -> CbxStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let voice = unsafe { args::borrow(voice, "voice") }?;
        let path = unsafe { args::path(path, "path") }?;
        voice.voice.save(&path)?;
        Ok(())
    })
}

/// Loads a voice saved by `cbx_voice_save` (or a bundle's
/// `voice.safetensors`). Needs no engine.
///
/// On success `*out` owns the voice: free it with `cbx_voice_free`. On
/// failure `*out` is NULL.
///
/// Errors: `CBX_INVALID_ARGUMENT` (NULL), `CBX_IO` (cannot read, or larger
/// than 16 MiB), `CBX_BUNDLE` (not a voice file, wrong tensors or version).
///
/// Thread-safety: callable from any thread.
///
/// # Safety
/// `path` is NULL or NUL-terminated; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cbx_voice_load(path: *const c_char, out: *mut *mut CbxVoice) -> CbxStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out_ptr(out, "out") }?;
        let path = unsafe { args::path(path, "path") }?;
        let voice = Voice::load(&path)?;
        *out = args::into_raw(CbxVoice { voice });
        Ok(())
    })
}

/// Frees a voice. NULL is a no-op.
///
/// Thread-safety: must not run while another call uses this voice.
///
/// # Safety
/// `voice` is NULL or came from a `cbx_voice_*` constructor and was not
/// freed.
#[no_mangle]
pub unsafe extern "C" fn cbx_voice_free(voice: *mut CbxVoice) {
    // SAFETY: the caller's contract.
    guard_value((), || unsafe { args::drop_raw(voice) })
}
