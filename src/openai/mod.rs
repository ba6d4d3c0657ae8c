//! The OpenAI speech API over the engine, without HTTP: request bodies checked field by
//! field ([`request`]), errors in OpenAI's JSON shape ([`error`]), the voice library
//! ([`voices`]) and the run of one request into response bytes ([`run`]). `chatterbox-ort
//! serve` puts it behind axum; the Python package behind Ray Serve. Feature `openai`.

pub mod error;
pub mod request;
pub mod run;
pub mod voices;

pub use error::ApiError;
pub use request::{model_id, model_names, parse_speech, ApiLimits, Delivery, SpeechJob};
pub use run::{run_speech, SpeechOutcome};
pub use voices::{VoiceInfo, VoiceLibrary};
