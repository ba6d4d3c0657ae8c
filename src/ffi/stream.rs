//! Token-level streaming synthesis: audio while T3 is still decoding
//! ([`crate::Engine::synthesize_stream`]).

use std::ffi::{c_char, c_void};
use std::mem::size_of;

use super::args::{self, Versioned};
use super::audio::synthesis_args;
use super::engine::{CbxEngine, CbxRequest};
use super::status::{guard, CbxStatus, FfiError, FfiResult};
use super::voice::CbxVoice;
use crate::engine::StageTimings;
use crate::stream::{StreamChunk, StreamOptions};

/// How `cbx_synthesize_stream` cuts the speech-token stream into audio
/// chunks. Initialise with `cbx_stream_options_default`, then change fields:
/// `struct_size` lets later versions append fields without breaking callers
/// built against this header.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CbxStreamOptions {
    /// `sizeof(CbxStreamOptions)`, set by `cbx_stream_options_default`.
    pub struct_size: u32,
    /// Speech tokens (40 ms of speech each) of a text chunk before its first
    /// audio pass, in 9..=4096 (fewer would give that pass nothing to deliver);
    /// default 20. Smaller gives earlier first audio.
    pub first_chunk_tokens: u32,
    /// Speech tokens between two later passes, in 1..=4096; default 40. Every
    /// pass recomputes the audio of all tokens so far, so larger chunks cost
    /// less in total.
    pub chunk_tokens: u32,
    /// Non-zero: decode the next speech tokens on a library thread while the
    /// finished ones become audio. The audio is the same either way; the
    /// callback still runs on the calling thread. Default 0.
    pub overlap: i32,
}

impl Versioned for CbxStreamOptions {
    const MIN_SIZE: usize = size_of::<CbxStreamOptions>();
    const NAME: &'static str = "CbxStreamOptions";
}

impl Default for CbxStreamOptions {
    fn default() -> Self {
        let defaults = StreamOptions::default();
        CbxStreamOptions {
            struct_size: size_of::<CbxStreamOptions>() as u32,
            first_chunk_tokens: u32::try_from(defaults.first_chunk_tokens).unwrap_or(u32::MAX),
            chunk_tokens: u32::try_from(defaults.chunk_tokens).unwrap_or(u32::MAX),
            overlap: i32::from(defaults.overlap),
        }
    }
}

impl CbxStreamOptions {
    fn to_options(self) -> StreamOptions {
        StreamOptions {
            first_chunk_tokens: self.first_chunk_tokens as usize,
            chunk_tokens: self.chunk_tokens as usize,
            overlap: self.overlap != 0,
        }
    }
}

/// One delivery of `cbx_synthesize_stream`, passed to the `CbxStreamCallback`.
/// Valid only during the callback (copy what you keep). `struct_size` is
/// `sizeof(CbxStreamChunk)` of the library: later versions may append fields,
/// which a callback built against this header simply does not read.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CbxStreamChunk {
    /// `sizeof(CbxStreamChunk)` as the library knows it.
    pub struct_size: u32,
    /// `count` watermarked (when the request asks) mono samples in [-1, 1].
    /// Never NULL; valid only during the callback.
    pub samples: *const f32,
    /// Samples in this chunk; 0 only for the last chunk.
    pub count: usize,
    /// Where `samples[0]` sits in the whole stream: chunks are contiguous, so
    /// each `offset` is the previous `offset` plus the previous `count`.
    pub offset: u64,
    /// Samples per second (24000).
    pub sample_rate: u32,
    /// This delivery's index, 0-based: the number of earlier callbacks.
    pub index: u32,
    /// The text chunk the samples belong to, 0-based (long text is split
    /// into sentence groups).
    pub text_chunk: u32,
    /// Speech tokens of that text chunk the samples are computed from.
    pub tokens: u32,
    /// Non-zero on the last chunk: nothing follows.
    pub last: i32,
    /// Seconds since the call started.
    pub elapsed_s: f64,
}

impl CbxStreamChunk {
    fn new(chunk: &StreamChunk<'_>, sample_rate: u32) -> Self {
        // An empty last chunk still gets a valid pointer (memcpy(dst, p, 0) needs one).
        static NO_SAMPLES: f32 = 0.0;
        let samples = if chunk.samples.is_empty() {
            &NO_SAMPLES as *const f32
        } else {
            chunk.samples.as_ptr()
        };
        CbxStreamChunk {
            struct_size: size_of::<CbxStreamChunk>() as u32,
            samples,
            count: chunk.samples.len(),
            offset: chunk.offset as u64,
            sample_rate,
            index: u32::try_from(chunk.index).unwrap_or(u32::MAX),
            text_chunk: u32::try_from(chunk.text_chunk).unwrap_or(u32::MAX),
            tokens: u32::try_from(chunk.tokens).unwrap_or(u32::MAX),
            last: i32::from(chunk.last),
            elapsed_s: chunk.elapsed_s,
        }
    }
}

/// Receives the chunks of `cbx_synthesize_stream`: `chunk` (never NULL) and
/// what it points to are valid only during the call. Return 0 to go on,
/// non-zero to stop: the synthesis call then returns `CBX_CANCELLED` and
/// makes no further call. Called on the thread that called
/// `cbx_synthesize_stream`; it must not unwind (C++ exceptions, longjmp)
/// through the library, and must not free the engine or voice in use.
pub type CbxStreamCallback =
    Option<unsafe extern "C" fn(chunk: *const CbxStreamChunk, user_data: *mut c_void) -> i32>;

/// What a `cbx_synthesize_stream` call took, filled by the library on
/// success. Set `struct_size` to `sizeof(CbxStreamStats)` before the call:
/// the library fills the fields that fit in it (a program built against an
/// older header gets the fields it knows) and leaves `struct_size` as set.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CbxStreamStats {
    /// `sizeof(CbxStreamStats)`, set by the caller.
    pub struct_size: u32,
    /// Seconds from the call's start to the first chunk with samples.
    pub first_audio_s: f64,
    /// Chunks delivered: the number of callback calls.
    pub chunks: u32,
    /// The longest wait between two deliveries (the first counted from the
    /// call's start), in seconds.
    pub max_chunk_latency_s: f64,
    /// The mean of those waits, in seconds.
    pub mean_chunk_latency_s: f64,
    /// The whole call, in seconds.
    pub total_s: f64,
    /// Seconds of audio delivered.
    pub audio_s: f64,
    /// Real-time factor: `total_s / audio_s` (0 without audio).
    pub rtf: f64,
    /// Audio (S3Gen) passes run; each recomputes the audio of all speech
    /// tokens of its text chunk so far.
    pub s3gen_passes: u32,
}

impl Versioned for CbxStreamStats {
    const MIN_SIZE: usize = size_of::<CbxStreamStats>();
    const NAME: &'static str = "CbxStreamStats";
}

impl CbxStreamStats {
    fn from_stages(stages: &StageTimings) -> Self {
        let latencies = &stages.chunk_latency_s;
        let max = latencies.iter().copied().fold(0.0, f64::max);
        let mean = if latencies.is_empty() {
            0.0
        } else {
            latencies.iter().sum::<f64>() / latencies.len() as f64
        };
        CbxStreamStats {
            struct_size: size_of::<CbxStreamStats>() as u32,
            first_audio_s: stages.first_audio_s,
            chunks: u32::try_from(stages.audio_chunks).unwrap_or(u32::MAX),
            max_chunk_latency_s: max,
            mean_chunk_latency_s: mean,
            total_s: stages.total_s,
            audio_s: stages.audio_s,
            rtf: stages.rtf,
            s3gen_passes: u32::try_from(stages.s3gen_passes).unwrap_or(u32::MAX),
        }
    }
}

/// The library options for C options; NULL means the defaults. Checked:
/// a field out of range fails naming it.
///
/// # Safety
/// `options` is NULL or points to a `CbxStreamOptions` of `struct_size` bytes.
unsafe fn options_arg(options: *const CbxStreamOptions) -> FfiResult<StreamOptions> {
    let defaults = CbxStreamOptions::default();
    let options = if options.is_null() {
        defaults
    } else {
        // SAFETY: non-NULL, the caller's contract covers `struct_size` bytes.
        unsafe { args::read_versioned(options, defaults, "options") }?
    }
    .to_options();
    options.validate()?;
    Ok(options)
}

/// Fills `options` with the defaults: `struct_size` set, first audio after
/// 20 speech tokens, then every 40, no overlap.
///
/// Returns `CBX_INVALID_ARGUMENT` when `options` is NULL.
///
/// Thread-safety: callable from any thread.
///
/// # Safety
/// `options` is NULL or points to writable storage for a `CbxStreamOptions`.
#[no_mangle]
pub unsafe extern "C" fn cbx_stream_options_default(options: *mut CbxStreamOptions) -> CbxStatus {
    guard(|| {
        // SAFETY: NULL or writable, by the caller's contract.
        let slot = unsafe { options.as_mut() }
            .ok_or_else(|| FfiError::invalid_argument("`options` is NULL"))?;
        *slot = CbxStreamOptions::default();
        Ok(())
    })
}

/// Synthesises like `cbx_synthesize`, handing audio to `callback` while the
/// speech tokens are still being decoded: the first chunk once
/// `options->first_chunk_tokens` tokens of the first text chunk are drawn,
/// then one every `options->chunk_tokens` more, and the rest of each text
/// chunk when it ends (`options` NULL: the defaults of
/// `cbx_stream_options_default`). `user_data` is passed through untouched.
/// The chunks are contiguous (`offset`), the last has `last` non-zero, and
/// the same arguments give the same chunks; they differ from what
/// `cbx_synthesize` returns only in the samples delivered before a text
/// chunk ended (the algorithm: `docs/STREAMING.md`).
///
/// When `out_stats` is not NULL, its `struct_size` must be set (to
/// `sizeof(CbxStreamStats)`); the fields that fit are zeroed first and
/// filled on success (first-audio time, chunk count and latencies, total
/// time, real-time factor).
///
/// Returns `CBX_OK` when the text is done, `CBX_CANCELLED` when the callback
/// returned non-zero (no further call is made), or an error as
/// `cbx_synthesize`: `CBX_INVALID_ARGUMENT` also for a NULL callback, an
/// options field out of range (the message names it), a `struct_size` of
/// `options` or `out_stats` that is too small; `CBX_BUDGET` when the
/// residency budget cannot hold T3, S3Gen and the watermark at once (they
/// are held for the whole call).
///
/// Thread-safety: as `cbx_synthesize`; the callback runs on the calling
/// thread (with `overlap`, tokens are decoded on a library thread meanwhile).
///
/// # Safety
/// As `cbx_synthesize`; `options` is NULL or points to a `CbxStreamOptions`
/// of its `struct_size`; `callback` is NULL or a function of the
/// `CbxStreamCallback` contract; `out_stats` is NULL or points to a writable
/// `CbxStreamStats` of its `struct_size`.
#[no_mangle]
pub unsafe extern "C" fn cbx_synthesize_stream(
    engine: *const CbxEngine,
    text: *const c_char,
    voice: *const CbxVoice,
    request: *const CbxRequest,
    options: *const CbxStreamOptions,
    callback: CbxStreamCallback,
    user_data: *mut c_void,
    out_stats: *mut CbxStreamStats,
) -> CbxStatus {
    guard(|| {
        let callback = callback.ok_or_else(|| FfiError::invalid_argument("`callback` is NULL"))?;
        // SAFETY: the caller's contract.
        let stats_size = unsafe { args::versioned_out(out_stats, "out_stats") }?;
        let call = unsafe { synthesis_args(engine, text, voice, request) }?;
        let options = unsafe { options_arg(options) }?;
        let sample_rate = call.engine.bundle().config().s3gen.sample_rate;
        let mut cancelled = false;
        let mut on_chunk = |chunk: &StreamChunk<'_>| -> bool {
            if cancelled {
                return false;
            }
            let c_chunk = CbxStreamChunk::new(chunk, sample_rate);
            // SAFETY: the callback's contract; `c_chunk` and the samples it
            // points to outlive the call.
            let verdict = unsafe { callback(&c_chunk, user_data) };
            cancelled = verdict != 0;
            !cancelled
        };
        let result = call.engine.synthesize_stream(
            call.text,
            call.voice,
            &call.request,
            &options,
            &mut |_| true,
            &mut on_chunk,
        );
        match result {
            Err(_) if cancelled => Err(FfiError::new(
                CbxStatus::CBX_CANCELLED,
                "synthesis cancelled by the stream callback",
            )),
            Err(err) => Err(err.into()),
            Ok(audio) => {
                if let Some(known) = stats_size {
                    let stats = CbxStreamStats::from_stages(&audio.stages);
                    // SAFETY: `out_stats` passed `versioned_out`.
                    unsafe { args::write_versioned(out_stats, &stats, known) };
                }
                Ok(())
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_options_are_the_library_defaults() {
        let mut options = CbxStreamOptions {
            struct_size: 0,
            first_chunk_tokens: 0,
            chunk_tokens: 0,
            overlap: 7,
        };
        // SAFETY: a live struct.
        assert_eq!(
            unsafe { cbx_stream_options_default(&mut options) },
            CbxStatus::CBX_OK
        );
        assert_eq!(options.struct_size as usize, size_of::<CbxStreamOptions>());
        assert_eq!(options.to_options(), StreamOptions::default());
        // SAFETY: NULL is checked.
        assert_eq!(
            unsafe { cbx_stream_options_default(std::ptr::null_mut()) },
            CbxStatus::CBX_INVALID_ARGUMENT
        );
    }

    #[test]
    fn options_out_of_range_name_their_field() {
        let mut options = CbxStreamOptions {
            first_chunk_tokens: 3,
            ..CbxStreamOptions::default()
        };
        // SAFETY: a live struct of its size.
        let err = unsafe { options_arg(&options) }.err();
        assert!(
            err.is_some_and(|e| e.status == CbxStatus::CBX_INVALID_ARGUMENT
                && e.message.contains("first_chunk_tokens"))
        );
        options = CbxStreamOptions {
            chunk_tokens: 0,
            ..CbxStreamOptions::default()
        };
        // SAFETY: as above.
        let err = unsafe { options_arg(&options) }.err();
        assert!(err.is_some_and(|e| e.message.contains("chunk_tokens")));
        options.struct_size = 8;
        // SAFETY: as above.
        let err = unsafe { options_arg(&options) }.err();
        assert!(err.is_some_and(|e| e.message.contains("`options->struct_size` is 8")));
        // SAFETY: NULL means the defaults.
        assert_eq!(
            unsafe { options_arg(std::ptr::null()) }.ok(),
            Some(StreamOptions::default())
        );
    }

    #[test]
    fn stats_summarise_the_latencies() {
        let stages = StageTimings {
            first_audio_s: 0.5,
            audio_chunks: 3,
            chunk_latency_s: vec![0.5, 0.25, 0.75],
            s3gen_passes: 4,
            total_s: 2.0,
            audio_s: 4.0,
            rtf: 0.5,
            ..StageTimings::default()
        };
        let stats = CbxStreamStats::from_stages(&stages);
        assert_eq!(stats.chunks, 3);
        assert_eq!(stats.s3gen_passes, 4);
        assert_eq!(stats.max_chunk_latency_s, 0.75);
        assert_eq!(stats.mean_chunk_latency_s, 0.5);
        assert_eq!(
            (stats.first_audio_s, stats.total_s, stats.audio_s, stats.rtf),
            (0.5, 2.0, 4.0, 0.5)
        );
        let none = CbxStreamStats::from_stages(&StageTimings::default());
        assert_eq!(
            (
                none.chunks,
                none.max_chunk_latency_s,
                none.mean_chunk_latency_s
            ),
            (0, 0.0, 0.0)
        );
    }
}
