//! The C ABI: `libchatterbox_ort` as seen from C, C++, Python `ctypes` and
//! anything else that can call C.
//!
//! A thin shell over [`crate::engine::Engine`]: every function converts its
//! arguments, calls the library and converts the result back. The header
//! `include/chatterbox_ort.h` is generated from this module by cbindgen
//! (`cbindgen.toml`); `tests/capi.rs` regenerates it and fails when the
//! committed copy differs.
//!
//! Conventions, kept by every function here:
//! - fallible calls return [`CbxStatus`] and write results through
//!   out-pointers, which are set to NULL first and filled only on success;
//! - the message of the last failure is kept per thread
//!   ([`cbx_last_error_message`]);
//! - every body runs inside `catch_unwind`: a panic becomes
//!   [`CbxStatus::CBX_INTERNAL`] (the crate is built with `panic = "unwind"`
//!   for this reason);
//! - NULL pointers are [`CbxStatus::CBX_INVALID_ARGUMENT`], text that is not
//!   UTF-8 is [`CbxStatus::CBX_INVALID_TEXT`]; neither ever crashes.

// cbindgen writes the functions in the order it meets them: status codes
// and errors, versions, the engine, voices, synthesis, token-level
// streaming, voice conversion.
mod status;

mod version;

mod engine;

mod voice;

mod audio;

mod stream;

mod convert;

// Argument conversions, no exports.
mod args;

pub use audio::{
    cbx_audio_free, cbx_audio_samples, cbx_synthesize, cbx_synthesize_streaming, CbxAudio,
    CbxChunkCallback,
};
pub use convert::{
    cbx_convert, cbx_convert_request_default, cbx_convert_streaming, cbx_convert_wav_file,
    cbx_vc_target_free, cbx_vc_target_from_samples, cbx_vc_target_from_voice,
    cbx_vc_target_from_wav_file, CbxConvertRequest, CbxVcTarget,
};
pub use engine::{
    cbx_engine_create, cbx_engine_free, cbx_engine_languages, cbx_engine_options_default,
    cbx_engine_set_residency, cbx_engine_stats_json, cbx_request_default, cbx_string_free,
    CbxEngine, CbxEngineOptions, CbxProvider, CbxRequest, CBX_PROVIDER_AUTO, CBX_PROVIDER_CPU,
    CBX_PROVIDER_CUDA,
};
pub use status::{cbx_last_error_message, cbx_status_name, CbxStatus};
pub use stream::{
    cbx_stream_options_default, cbx_synthesize_stream, CbxStreamCallback, CbxStreamChunk,
    CbxStreamOptions, CbxStreamStats,
};
pub use version::{cbx_abi_version, cbx_onnxruntime_version, cbx_version, CBX_ABI_VERSION};
pub use voice::{
    cbx_voice_free, cbx_voice_from_samples, cbx_voice_from_wav_file, cbx_voice_load,
    cbx_voice_save, CbxVoice,
};
