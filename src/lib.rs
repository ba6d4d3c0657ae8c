//! chatterbox-ort: Chatterbox text-to-speech on ONNX Runtime.

pub mod audio;
#[cfg(feature = "bench")]
pub mod bench;
pub mod bundle;
pub mod conditioning;
pub mod convert;
pub mod engine;
pub mod error;
pub mod family;
pub mod ffi;
pub mod limits;
pub mod multilingual;
#[cfg(feature = "openai")]
pub mod openai;
pub mod output;
pub mod residency;
pub mod rng;
pub mod runtime;
pub mod s3gen;
#[cfg(feature = "serve")]
pub mod serve;
pub mod stats;
pub mod stream;
pub mod t3;
pub mod text;
pub mod turbo;
pub mod watermark;

#[cfg(feature = "codecs")]
pub use audio::encode::{AudioEncoder, AudioFormat};
pub use bundle::{Family, Voice};
pub use conditioning::S3GenReference;
pub use convert::ConvertRequest;
pub use engine::{Audio, Engine, EngineOptions, Progress, Provider, Request, StageTimings};
pub use error::{Error, ErrorKind, Result};
pub use multilingual::Language;
pub use stream::{StreamChunk, StreamOptions};
