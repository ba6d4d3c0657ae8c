//! Engine options, the engine handle, requests, residency and stats.

use std::ffi::{c_char, CString};
use std::mem::size_of;

use super::args::{self, Versioned};
use super::status::{guard, guard_value, CbxStatus, FfiError, FfiResult};
use crate::engine::{Engine, EngineOptions, Provider, Request};
use crate::error::{Error, Result};
use crate::multilingual::Language;
use crate::residency::ResidencyOptions;

/// An execution provider: one of the `CBX_PROVIDER_*` values.
pub type CbxProvider = u32;
/// ONNX Runtime's CPU provider.
pub const CBX_PROVIDER_CPU: CbxProvider = 0;
/// CUDA (device `cuda_device`); `CBX_PROVIDER_UNAVAILABLE` when ONNX Runtime
/// or the machine has no CUDA.
pub const CBX_PROVIDER_CUDA: CbxProvider = 1;
/// CUDA when available, otherwise the CPU.
pub const CBX_PROVIDER_AUTO: CbxProvider = 2;

/// How to load an engine. Initialise with `cbx_engine_options_default`,
/// then set the fields you need: `struct_size` lets later versions append
/// fields without breaking callers built against this header.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CbxEngineOptions {
    /// `sizeof(CbxEngineOptions)`, set by `cbx_engine_options_default`.
    pub struct_size: u32,
    /// The execution provider, a `CBX_PROVIDER_*` value. Default: CPU.
    pub provider: CbxProvider,
    /// The bundle folder (the one holding `manifest.json`), UTF-8 or, on
    /// Unix, any bytes. Required; borrowed only during `cbx_engine_create`.
    pub bundle_dir: *const c_char,
    /// Which components stay loaded, and where: a preset `"resident"`,
    /// `"swap"`, `"cpu"`, `"idle=SECS"` or `"budget=SIZE"` (e.g.
    /// `"budget=2GiB"`), optionally followed by comma-separated items
    /// `prefetch`, `ram-cache`, `budget=SIZE`, `COMPONENT=POLICY` (e.g.
    /// `"swap,prefetch,t3_decoder=resident"`). NULL: `"resident"`. Borrowed
    /// only during the call.
    pub residency: *const c_char,
    /// ONNX Runtime intra-op threads per session; 0: ONNX Runtime's default. At most
    /// 4 x the machine's logical CPUs (1024 at most), else `CBX_INVALID_ARGUMENT`.
    pub threads: u32,
    /// The CUDA device ordinal, for `CBX_PROVIDER_CUDA` and
    /// `CBX_PROVIDER_AUTO`. Default 0.
    pub cuda_device: u32,
    /// The ONNX Runtime shared library to load. NULL: `ORT_DYLIB_PATH`, then
    /// beside the executable, then beside this library, then the copy the
    /// build provisioned. ONNX Runtime is loaded once per process: a later
    /// engine naming another file fails with `CBX_RUNTIME`. Borrowed only
    /// during the call.
    pub onnxruntime_library: *const c_char,
}

impl Versioned for CbxEngineOptions {
    const MIN_SIZE: usize = size_of::<CbxEngineOptions>();
    const NAME: &'static str = "CbxEngineOptions";
}

impl Default for CbxEngineOptions {
    fn default() -> Self {
        CbxEngineOptions {
            struct_size: size_of::<CbxEngineOptions>() as u32,
            provider: CBX_PROVIDER_CPU,
            bundle_dir: std::ptr::null(),
            residency: std::ptr::null(),
            threads: 0,
            cuda_device: 0,
            onnxruntime_library: std::ptr::null(),
        }
    }
}

/// Sampling and synthesis settings of one request. Initialise with
/// `cbx_request_default` (the bundle's defaults), then change fields.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CbxRequest {
    /// `sizeof(CbxRequest)`, set by `cbx_request_default`.
    pub struct_size: u32,
    /// Emotion exaggeration, >= 0 (0.5 is neutral).
    pub exaggeration: f32,
    /// Classifier-free guidance weight of T3, >= 0.
    pub cfg_weight: f32,
    /// Sampling temperature, > 0.
    pub temperature: f32,
    /// min-p filter, in [0, 1).
    pub min_p: f32,
    /// top-p (nucleus) filter, in (0, 1]; 1 disables it.
    pub top_p: f32,
    /// Repetition penalty, > 0; 1 disables it.
    pub repetition_penalty: f32,
    /// The speech-token budget per text chunk, >= 1: generation stops here
    /// if T3 has not stopped by itself.
    pub max_new_tokens: u32,
    /// Seed of every random draw: the same seed, text, voice and settings
    /// give the same audio.
    pub seed: u64,
    /// Speech tokens each text chunk must produce before T3 may stop (0: no
    /// minimum), <= `max_new_tokens`. Equal to `max_new_tokens`, every chunk
    /// has exactly that many tokens (960 samples each).
    pub min_new_tokens: u32,
    /// Euler steps of the S3Gen flow matching, in 1..=100.
    pub flow_steps: u32,
    /// Non-zero: embed the Perth watermark.
    pub watermark: i32,
    /// top-k filter (Turbo; 0 disables it; the original model ignores it),
    /// <= 1048576. Appended after the first version: a caller built against an older header gets
    /// the bundle's default.
    pub top_k: u32,
    /// The text's language, NUL-terminated ASCII (`"fr"`, `"zh"`): required by a
    /// multilingual bundle (one of `cbx_engine_language`), empty (all NUL) for the others.
    /// Appended after the second version: an older caller gets none.
    pub language: [c_char; 8],
}

impl Versioned for CbxRequest {
    // The first published version ended with `watermark`.
    const MIN_SIZE: usize = std::mem::offset_of!(CbxRequest, watermark) + size_of::<i32>();
    const NAME: &'static str = "CbxRequest";
}

impl CbxRequest {
    fn from_request(request: &Request) -> Self {
        CbxRequest {
            struct_size: size_of::<CbxRequest>() as u32,
            exaggeration: request.exaggeration,
            cfg_weight: request.cfg_weight,
            temperature: request.temperature,
            min_p: request.min_p,
            top_p: request.top_p,
            repetition_penalty: request.repetition_penalty,
            max_new_tokens: u32::try_from(request.max_new_tokens).unwrap_or(u32::MAX),
            seed: request.seed,
            min_new_tokens: u32::try_from(request.min_new_tokens).unwrap_or(u32::MAX),
            flow_steps: u32::try_from(request.flow_steps).unwrap_or(u32::MAX),
            watermark: i32::from(request.watermark),
            top_k: u32::try_from(request.top_k).unwrap_or(u32::MAX),
            language: language_field(request.language),
        }
    }

    fn to_request(self) -> Result<Request> {
        Ok(Request {
            exaggeration: self.exaggeration,
            cfg_weight: self.cfg_weight,
            temperature: self.temperature,
            min_p: self.min_p,
            top_p: self.top_p,
            repetition_penalty: self.repetition_penalty,
            seed: self.seed,
            max_new_tokens: self.max_new_tokens as usize,
            min_new_tokens: self.min_new_tokens as usize,
            flow_steps: self.flow_steps as usize,
            watermark: self.watermark != 0,
            top_k: self.top_k as usize,
            language: parse_language_field(&self.language)?,
        })
    }
}

/// `CbxRequest::language` of a request language.
fn language_field(language: Option<Language>) -> [c_char; 8] {
    let mut out = [0 as c_char; 8];
    if let Some(l) = language {
        for (d, b) in out.iter_mut().zip(l.as_str().bytes()) {
            *d = b as c_char;
        }
    }
    out
}

/// The language of a `CbxRequest::language` field: up to the first NUL; all NUL is none.
fn parse_language_field(field: &[c_char; 8]) -> Result<Option<Language>> {
    let bytes: Vec<u8> = field
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    if bytes.is_empty() {
        return Ok(None);
    }
    if bytes.len() == field.len() {
        return Err(Error::invalid_argument(
            "language",
            "CbxRequest.language is not NUL-terminated",
        ));
    }
    let id = std::str::from_utf8(&bytes)
        .map_err(|_| Error::invalid_argument("language", "CbxRequest.language is not ASCII"))?;
    Language::parse(id).map(Some)
}

/// A loaded engine: the bundle's sessions, under a residency policy.
/// Opaque; create with `cbx_engine_create`, free with `cbx_engine_free`.
pub struct CbxEngine {
    pub(crate) engine: Engine,
}

// The header promises that engines, voices and audio may be used from any
// thread: keep that true at compile time.
const _: () = {
    const fn shared_across_threads<T: Send + Sync>() {}
    shared_across_threads::<Engine>();
    shared_across_threads::<crate::bundle::Voice>();
    shared_across_threads::<crate::engine::Audio>();
};

/// The library request for a C request; NULL means the bundle's defaults.
///
/// # Safety
/// `request` is NULL or points to a `CbxRequest` of `struct_size` bytes.
pub(crate) unsafe fn request_arg(
    engine: &Engine,
    request: *const CbxRequest,
) -> FfiResult<Request> {
    let defaults = engine.default_request();
    if request.is_null() {
        return Ok(defaults);
    }
    // SAFETY: non-NULL, the caller's contract covers `struct_size` bytes.
    let c_request =
        unsafe { args::read_versioned(request, CbxRequest::from_request(&defaults), "request") }?;
    Ok(c_request.to_request()?)
}

fn residency_arg(preset: &str) -> FfiResult<ResidencyOptions> {
    preset.parse::<ResidencyOptions>().map_err(FfiError::from)
}

fn provider_arg(provider: CbxProvider, device: u32) -> FfiResult<Provider> {
    match provider {
        CBX_PROVIDER_CPU => Ok(Provider::Cpu),
        CBX_PROVIDER_CUDA => Ok(Provider::Cuda { device }),
        CBX_PROVIDER_AUTO => Ok(Provider::Auto { device }),
        other => Err(FfiError::invalid_argument(format!(
            "`options->provider` is {other}: not a CBX_PROVIDER_* value (CPU 0, CUDA 1, AUTO 2)"
        ))),
    }
}

/// Fills `options` with the defaults: `struct_size` set, CPU provider,
/// ONNX Runtime's thread count, the default residency, no bundle.
///
/// Returns `CBX_INVALID_ARGUMENT` when `options` is NULL.
///
/// Thread-safety: callable from any thread.
///
/// # Safety
/// `options` is NULL or points to writable storage for a `CbxEngineOptions`.
#[no_mangle]
pub unsafe extern "C" fn cbx_engine_options_default(options: *mut CbxEngineOptions) -> CbxStatus {
    guard(|| {
        // SAFETY: NULL or writable, by the caller's contract.
        let slot = unsafe { options.as_mut() }
            .ok_or_else(|| FfiError::invalid_argument("`options` is NULL"))?;
        *slot = CbxEngineOptions::default();
        Ok(())
    })
}

/// Loads the bundle at `options->bundle_dir` and creates an engine. This
/// verifies the bundle, starts ONNX Runtime on first use in the process and
/// creates the sessions the residency policy keeps resident; it can take
/// seconds.
///
/// On success `*out` owns the engine: free it with `cbx_engine_free`. On
/// failure `*out` is NULL. `options` and its strings are only read during
/// the call.
///
/// Errors: `CBX_INVALID_ARGUMENT` (NULL pointer, unknown provider or
/// residency preset, bad `struct_size`), `CBX_BUNDLE` (missing or broken
/// bundle), `CBX_MODEL_MISMATCH`, `CBX_RUNTIME`, `CBX_PROVIDER_UNAVAILABLE`,
/// `CBX_IO`.
///
/// Thread-safety: callable from any thread; engines are independent.
///
/// # Safety
/// `options` is NULL or points to a `CbxEngineOptions` of at least
/// `options->struct_size` bytes whose strings are NULL or NUL-terminated;
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cbx_engine_create(
    options: *const CbxEngineOptions,
    out: *mut *mut CbxEngine,
) -> CbxStatus {
    guard(|| {
        // SAFETY: out-pointer and struct contracts are the caller's.
        let out = unsafe { args::out_ptr(out, "out") }?;
        let options =
            unsafe { args::read_versioned(options, CbxEngineOptions::default(), "options") }?;
        let bundle = unsafe { args::path(options.bundle_dir, "options->bundle_dir") }?;
        let mut engine_options = EngineOptions::new(bundle);
        engine_options.provider = provider_arg(options.provider, options.cuda_device)?;
        engine_options.threads = (options.threads > 0).then_some(options.threads as usize);
        if !options.residency.is_null() {
            // SAFETY: non-NULL and NUL-terminated by the caller's contract.
            let preset = unsafe {
                args::utf8(
                    options.residency,
                    "options->residency",
                    CbxStatus::CBX_INVALID_ARGUMENT,
                )
            }?;
            engine_options.residency = residency_arg(preset)?;
        }
        if !options.onnxruntime_library.is_null() {
            // SAFETY: non-NULL and NUL-terminated by the caller's contract.
            let library =
                unsafe { args::path(options.onnxruntime_library, "options->onnxruntime_library") }?;
            engine_options.onnxruntime = Some(library);
        }
        let engine = Engine::load(engine_options)?;
        *out = args::into_raw(CbxEngine { engine });
        Ok(())
    })
}

/// Frees an engine and everything it holds (sessions, device memory).
/// NULL is a no-op.
///
/// Thread-safety: must not run while any other call uses this engine.
/// Voices and audio made with it stay valid (they do not borrow it).
///
/// # Safety
/// `engine` is NULL or came from `cbx_engine_create` and was not freed.
#[no_mangle]
pub unsafe extern "C" fn cbx_engine_free(engine: *mut CbxEngine) {
    // SAFETY: the caller's contract.
    guard_value((), || unsafe { args::drop_raw(engine) })
}

/// Fills `request` with the defaults of the engine's bundle (its manifest's
/// `generation` section), seed 0 and the watermark on.
///
/// Errors: `CBX_INVALID_ARGUMENT` when a pointer is NULL.
///
/// Thread-safety: may run concurrently with any call on the same engine
/// except `cbx_engine_free`.
///
/// # Safety
/// `engine` is NULL or a live engine; `request` is NULL or points to
/// writable storage for a `CbxRequest`.
#[no_mangle]
pub unsafe extern "C" fn cbx_request_default(
    engine: *const CbxEngine,
    request: *mut CbxRequest,
) -> CbxStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        unsafe {
            args::write_default(engine, request, "request", |e| {
                CbxRequest::from_request(&e.default_request())
            })
        }
    })
}

/// Changes the residency policy of a live engine (the syntax of
/// `CbxEngineOptions::residency`). The new plan is checked now and applied at
/// the next stage boundary, where sessions are created or dropped as it needs.
///
/// Errors: `CBX_INVALID_ARGUMENT` (NULL, unknown preset), `CBX_RUNTIME`,
/// `CBX_BUDGET`.
///
/// Thread-safety: may run concurrently with other calls on the same engine
/// (except `cbx_engine_free`); a synthesis already running switches at its
/// next stage boundary.
///
/// # Safety
/// `engine` is NULL or a live engine; `preset` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn cbx_engine_set_residency(
    engine: *const CbxEngine,
    preset: *const c_char,
) -> CbxStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let engine = unsafe { args::borrow(engine, "engine") }?;
        let preset = unsafe { args::utf8(preset, "preset", CbxStatus::CBX_INVALID_ARGUMENT) }?;
        engine.engine.set_residency(residency_arg(preset)?)?;
        Ok(())
    })
}

/// The engine's residency and memory statistics as a JSON object (UTF-8,
/// NUL-terminated): provider, residency and budget, the planner's predicted
/// peak, per component its policy and session state, per stage its counts
/// and times, process RSS and peak RSS, device memory where known.
///
/// On success `*out_json` owns the string: free it with `cbx_string_free`.
/// On failure `*out_json` is NULL.
///
/// Thread-safety: may run concurrently with any call on the same engine
/// except `cbx_engine_free`.
///
/// # Safety
/// `engine` is NULL or a live engine; `out_json` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cbx_engine_stats_json(
    engine: *const CbxEngine,
    out_json: *mut *mut c_char,
) -> CbxStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out_ptr(out_json, "out_json") }?;
        let engine = unsafe { args::borrow(engine, "engine") }?;
        *out = owned_string(engine.engine.stats_json()?, "the stats JSON")?;
        Ok(())
    })
}

/// The languages of the engine's bundle, comma-separated ids in the manifest's order
/// (`"ar,da,de,..."`; a multilingual bundle), or an empty string (other bundles, which
/// take no `CbxRequest.language`). Free `*out_list` with `cbx_string_free`.
///
/// Thread-safety: callable from any thread.
///
/// # Safety
/// `engine` is NULL or a live engine; `out_list` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cbx_engine_languages(
    engine: *const CbxEngine,
    out_list: *mut *mut c_char,
) -> CbxStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out_ptr(out_list, "out_list") }?;
        let engine = unsafe { args::borrow(engine, "engine") }?;
        let ids: Vec<&str> = engine
            .engine
            .languages()
            .iter()
            .map(|l| l.id.as_str())
            .collect();
        *out = owned_string(ids.join(","), "the language list")?;
        Ok(())
    })
}

/// `s` as a string the caller frees with `cbx_string_free`.
fn owned_string(s: String, what: &str) -> FfiResult<*mut c_char> {
    let cstring = CString::new(s).map_err(|_| {
        FfiError::new(
            CbxStatus::CBX_INTERNAL,
            format!("{what} contains a NUL byte"),
        )
    })?;
    Ok(cstring.into_raw())
}

/// Frees a string returned by this library (`cbx_engine_stats_json`,
/// `cbx_engine_languages`).
/// NULL is a no-op. Never pass it strings from `cbx_last_error_message`,
/// `cbx_status_name` or the version functions: those are not owned by the
/// caller.
///
/// Thread-safety: callable from any thread.
///
/// # Safety
/// `string` is NULL or came from this library as an owned string and was
/// not freed.
#[no_mangle]
pub unsafe extern "C" fn cbx_string_free(string: *mut c_char) {
    if !string.is_null() {
        // SAFETY: the caller's contract: it came from `CString::into_raw`.
        guard_value((), || drop(unsafe { CString::from_raw(string) }))
    }
}
