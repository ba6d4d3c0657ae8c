//! Voice conversion: target voices, requests, whole and streaming conversion.

use std::ffi::{c_char, c_void};
use std::mem::size_of;

use super::args::{self, Versioned};
use super::audio::{CbxAudio, CbxChunkCallback};
use super::engine::CbxEngine;
use super::status::{guard, guard_value, CbxStatus, FfiError, FfiResult};
use super::voice::CbxVoice;
use crate::bundle::S3GenRefView;
use crate::conditioning::S3GenReference;
use crate::convert::{read_source, ConvertRequest};
use crate::engine::Engine;
use crate::limits::{self, ClipKind};

/// The target voice of a conversion: S3Gen's conditionals of a clip (its
/// first 10 s: prompt speech tokens, prompt mel, speaker x-vector). Opaque
/// and immutable; free with `cbx_vc_target_free`. It does not borrow the
/// engine that made it.
pub struct CbxVcTarget {
    pub(crate) target: S3GenReference,
}

/// The settings of one conversion. Initialise with
/// `cbx_convert_request_default` (the bundle's defaults), then change fields.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CbxConvertRequest {
    /// `sizeof(CbxConvertRequest)`, set by `cbx_convert_request_default`.
    pub struct_size: u32,
    /// Euler steps of the S3Gen flow matching, in 1..=100.
    pub flow_steps: u32,
    /// Seed of every random draw: the same seed, source, target and settings
    /// give the same audio.
    pub seed: u64,
    /// Non-zero: embed the Perth watermark.
    pub watermark: i32,
}

impl Versioned for CbxConvertRequest {
    const MIN_SIZE: usize = size_of::<CbxConvertRequest>();
    const NAME: &'static str = "CbxConvertRequest";
}

impl CbxConvertRequest {
    fn from_request(request: &ConvertRequest) -> Self {
        CbxConvertRequest {
            struct_size: size_of::<CbxConvertRequest>() as u32,
            flow_steps: u32::try_from(request.flow_steps).unwrap_or(u32::MAX),
            seed: request.seed,
            watermark: i32::from(request.watermark),
        }
    }

    fn to_request(self) -> ConvertRequest {
        ConvertRequest {
            seed: self.seed,
            flow_steps: self.flow_steps as usize,
            watermark: self.watermark != 0,
        }
    }
}

/// The library request for a C request; NULL means the bundle's defaults.
///
/// # Safety
/// `request` is NULL or points to a `CbxConvertRequest` of `struct_size` bytes.
unsafe fn request_arg(
    engine: &Engine,
    request: *const CbxConvertRequest,
) -> FfiResult<ConvertRequest> {
    let defaults = engine.default_convert_request();
    if request.is_null() {
        return Ok(defaults);
    }
    // SAFETY: non-NULL, the caller's contract covers `struct_size` bytes.
    let c_request = unsafe {
        args::read_versioned(
            request,
            CbxConvertRequest::from_request(&defaults),
            "request",
        )
    }?;
    Ok(c_request.to_request())
}

/// Borrows `count` samples, checking what can be checked before touching
/// them: NULL with a count, the rate and the length bound of `kind` (so a
/// huge `count` never becomes a slice).
///
/// # Safety
/// `samples` is NULL or points to `count` readable floats.
unsafe fn samples_arg<'a>(
    samples: *const f32,
    count: usize,
    sample_rate: u32,
    kind: ClipKind,
    what: &str,
) -> FfiResult<&'a [f32]> {
    if count == 0 {
        return Ok(&[]);
    }
    if samples.is_null() {
        return Err(FfiError::invalid_argument(format!(
            "`samples` is NULL but `count` is {count}"
        )));
    }
    if sample_rate == 0 {
        return Err(FfiError::invalid_argument(
            "`sample_rate` is 0; it must be > 0",
        ));
    }
    limits::check_sample_rate(sample_rate, what)?;
    kind.check_frames(count as u64, sample_rate, what)?;
    // SAFETY: non-NULL and `count` floats long by the contract; `count` is
    // bounded above (an hour at 384 kHz), far below `isize::MAX / 4`.
    Ok(unsafe { std::slice::from_raw_parts(samples, count) })
}

/// The target of a call: the given one, or the bundle's voice for NULL.
///
/// # Safety
/// `target` is NULL or a live target.
unsafe fn target_arg<'a>(engine: &'a Engine, target: *const CbxVcTarget) -> S3GenRefView<'a> {
    // SAFETY: the caller's contract.
    match unsafe { target.as_ref() } {
        Some(t) => t.target.view(),
        None => engine.default_voice().s3gen_reference(),
    }
}

/// Makes a conversion target from a WAV file (any sample rate, mono or
/// multi-channel, 16/24/32-bit PCM or float; its first 10 s are used, as the
/// reference `ChatterboxVC.set_target_voice` does). Runs the S3Gen
/// conditioning graphs (S3 tokenizer, CAM++, mel).
///
/// On success `*out` owns the target: free it with `cbx_vc_target_free`. On
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
pub unsafe extern "C" fn cbx_vc_target_from_wav_file(
    engine: *const CbxEngine,
    path: *const c_char,
    out: *mut *mut CbxVcTarget,
) -> CbxStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out_ptr(out, "out") }?;
        let engine = unsafe { args::borrow(engine, "engine") }?;
        let path = unsafe { args::path(path, "path") }?;
        let target = engine.engine.vc_target_from_wav(&path)?;
        *out = args::into_raw(CbxVcTarget { target });
        Ok(())
    })
}

/// Makes a conversion target from mono samples in [-1, 1] at `sample_rate`
/// Hz (the engine resamples; the first 10 s are used). The samples are only
/// read during the call.
///
/// On success `*out` owns the target: free it with `cbx_vc_target_free`. On
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
pub unsafe extern "C" fn cbx_vc_target_from_samples(
    engine: *const CbxEngine,
    samples: *const f32,
    count: usize,
    sample_rate: u32,
    out: *mut *mut CbxVcTarget,
) -> CbxStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out_ptr(out, "out") }?;
        let engine = unsafe { args::borrow(engine, "engine") }?;
        let kind = ClipKind::Voice {
            min_seconds: crate::conditioning::MIN_VOICE_SECONDS,
        };
        let samples = unsafe { samples_arg(samples, count, sample_rate, kind, "the target clip") }?;
        let target = engine.engine.vc_target_from_samples(samples, sample_rate)?;
        *out = args::into_raw(CbxVcTarget { target });
        Ok(())
    })
}

/// Makes a conversion target from a voice (`cbx_voice_*`): a copy of its
/// S3Gen part, which is what `cbx_vc_target_from_wav_file` makes of the same
/// clip. Needs no engine.
///
/// On success `*out` owns the target: free it with `cbx_vc_target_free`. On
/// failure `*out` is NULL.
///
/// Errors: `CBX_INVALID_ARGUMENT` (NULL).
///
/// Thread-safety: callable from any thread.
///
/// # Safety
/// `voice` is NULL or a live voice; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cbx_vc_target_from_voice(
    voice: *const CbxVoice,
    out: *mut *mut CbxVcTarget,
) -> CbxStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out_ptr(out, "out") }?;
        let voice = &unsafe { args::borrow(voice, "voice") }?.voice;
        let target = S3GenReference {
            prompt_token: voice.prompt_token.clone(),
            prompt_feat: voice.prompt_feat.clone(),
            embedding: voice.embedding.clone(),
        };
        *out = args::into_raw(CbxVcTarget { target });
        Ok(())
    })
}

/// Frees a conversion target. NULL is a no-op.
///
/// Thread-safety: must not run while another call uses this target.
///
/// # Safety
/// `target` is NULL or came from a `cbx_vc_target_*` constructor and was not
/// freed.
#[no_mangle]
pub unsafe extern "C" fn cbx_vc_target_free(target: *mut CbxVcTarget) {
    // SAFETY: the caller's contract.
    guard_value((), || unsafe { args::drop_raw(target) })
}

/// Fills `request` with the conversion defaults of the engine's bundle (its
/// manifest's flow steps), seed 0 and the watermark on.
///
/// Errors: `CBX_INVALID_ARGUMENT` when a pointer is NULL.
///
/// Thread-safety: may run concurrently with any call on the same engine
/// except `cbx_engine_free`.
///
/// # Safety
/// `engine` is NULL or a live engine; `request` is NULL or points to
/// writable storage for a `CbxConvertRequest`.
#[no_mangle]
pub unsafe extern "C" fn cbx_convert_request_default(
    engine: *const CbxEngine,
    request: *mut CbxConvertRequest,
) -> CbxStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        unsafe {
            args::write_default(engine, request, "request", |e| {
                CbxConvertRequest::from_request(&e.default_convert_request())
            })
        }
    })
}

/// Converts the speech in `samples` (`count` mono floats in [-1, 1] at
/// `sample_rate` Hz, 40 ms to one hour) to the voice of `target` (NULL: the
/// bundle's voice) with `request` (NULL: the bundle's defaults, seed 0): the
/// reference `ChatterboxVC.generate`. A source longer than 30 s is converted
/// in pieces joined by short cross-fades (see docs/VC.md); the output has the
/// source's duration, at 24000 Hz.
///
/// On success `*out` owns the audio: free it with `cbx_audio_free`. On
/// failure `*out` is NULL.
///
/// Errors: `CBX_INVALID_ARGUMENT` (NULL engine or out; NULL `samples` with
/// `count` > 0; a zero `sample_rate`; a request field out of range, bad
/// `struct_size`), `CBX_INVALID_AUDIO` (no samples, silent (every sample
/// below 1e-4), shorter than 40 ms, longer than one hour, samples that are not
/// finite or exceed +-1000, a rate outside 4000..=384000 Hz), `CBX_RUNTIME`.
///
/// Thread-safety: as `cbx_synthesize`: any number of threads may convert and
/// synthesise on one engine at once. Not concurrently with `cbx_engine_free`
/// on the engine or `cbx_vc_target_free` on the target.
///
/// # Safety
/// `engine`, `target` are NULL or live handles; `samples` is NULL or points to
/// `count` readable floats; `request` is NULL or points to a
/// `CbxConvertRequest` of its `struct_size`; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cbx_convert(
    engine: *const CbxEngine,
    samples: *const f32,
    count: usize,
    sample_rate: u32,
    target: *const CbxVcTarget,
    request: *const CbxConvertRequest,
    out: *mut *mut CbxAudio,
) -> CbxStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out_ptr(out, "out") }?;
        let engine = &unsafe { args::borrow(engine, "engine") }?.engine;
        let samples =
            unsafe { samples_arg(samples, count, sample_rate, ClipKind::Source, "the source") }?;
        let request = unsafe { request_arg(engine, request) }?;
        let target = unsafe { target_arg(engine, target) };
        let audio = engine.convert(samples, sample_rate, target, &request)?;
        *out = args::into_raw(CbxAudio { audio });
        Ok(())
    })
}

/// Converts like `cbx_convert`, handing the audio to `callback` piece by
/// piece as it is made (one call per piece of up to 30 s; a source of up to
/// 30 s is one call) and keeping none of it; `user_data` is passed through
/// untouched. The chunks, joined, are the audio `cbx_convert` returns for the
/// same arguments.
///
/// Returns `CBX_OK` when the source is done, `CBX_CANCELLED` when the
/// callback returned non-zero (no further call is made), or an error as
/// `cbx_convert` (`CBX_INVALID_ARGUMENT` also for a NULL callback).
///
/// Thread-safety: as `cbx_convert`; the callback runs on the calling thread.
///
/// # Safety
/// As `cbx_convert`; `callback` is NULL or a function of the
/// `CbxChunkCallback` contract.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn cbx_convert_streaming(
    engine: *const CbxEngine,
    samples: *const f32,
    count: usize,
    sample_rate: u32,
    target: *const CbxVcTarget,
    request: *const CbxConvertRequest,
    callback: CbxChunkCallback,
    user_data: *mut c_void,
) -> CbxStatus {
    guard(|| {
        let callback = callback.ok_or_else(|| FfiError::invalid_argument("`callback` is NULL"))?;
        // SAFETY: the caller's contract.
        let engine = &unsafe { args::borrow(engine, "engine") }?.engine;
        let samples =
            unsafe { samples_arg(samples, count, sample_rate, ClipKind::Source, "the source") }?;
        let request = unsafe { request_arg(engine, request) }?;
        let target = unsafe { target_arg(engine, target) };
        let out_rate = engine.bundle().config().s3gen.sample_rate;
        let mut cancelled = false;
        let mut on_chunk = |chunk: &[f32]| -> bool {
            if cancelled {
                return false;
            }
            // SAFETY: the callback's contract; `chunk` outlives the call.
            let verdict = unsafe { callback(chunk.as_ptr(), chunk.len(), out_rate, user_data) };
            cancelled = verdict != 0;
            !cancelled
        };
        match engine.convert_streaming(samples, sample_rate, target, &request, &mut on_chunk) {
            Ok(_) => Ok(()),
            Err(_) if cancelled => Err(FfiError::new(
                CbxStatus::CBX_CANCELLED,
                "conversion cancelled by the chunk callback",
            )),
            Err(err) => Err(err.into()),
        }
    })
}

/// Converts the speech in the WAV file at `source_path` (any rate and
/// channel count, 40 ms to one hour; a longer file is refused after reading
/// one frame past the hour) like `cbx_convert`.
///
/// On success `*out` owns the audio: free it with `cbx_audio_free`. On
/// failure `*out` is NULL.
///
/// Errors: as `cbx_convert`; `CBX_INVALID_AUDIO` also when the file cannot
/// be opened or is not a readable WAV (the message names the file).
///
/// Thread-safety: as `cbx_convert`.
///
/// # Safety
/// As `cbx_convert`; `source_path` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn cbx_convert_wav_file(
    engine: *const CbxEngine,
    source_path: *const c_char,
    target: *const CbxVcTarget,
    request: *const CbxConvertRequest,
    out: *mut *mut CbxAudio,
) -> CbxStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out_ptr(out, "out") }?;
        let engine = &unsafe { args::borrow(engine, "engine") }?.engine;
        let path = unsafe { args::path(source_path, "source_path") }?;
        let request = unsafe { request_arg(engine, request) }?;
        request.validate()?;
        let target = unsafe { target_arg(engine, target) };
        let source = read_source(&path)?;
        let audio = engine.convert(&source.samples, source.sample_rate, target, &request)?;
        *out = args::into_raw(CbxAudio { audio });
        Ok(())
    })
}
