//! `POST /v1/audio/speech`: the OpenAI request body, checked field by field, as a
//! synthesis the engine can run.
//!
//! OpenAI's fields: `model` (this bundle's id or one of [`MODEL_ALIASES`]), `input`,
//! `voice` (a name in the voice library; `default` and OpenAI's built-in voice names are the
//! bundle's default voice unless the library holds a voice of that name),
//! `response_format` (wav, pcm, flac, mp3 (default), opus), `speed` (only 1.0: Chatterbox has
//! no speed control), `instructions` (refused unless empty: Chatterbox takes no style
//! prompt; see `exaggeration`), `stream_format` (`audio`: the encoded audio as the engine
//! produces it, token-level; `sse`: server-sent events with base64 audio deltas; absent: the
//! whole file at the end, with exact lengths in its header).
//!
//! Chatterbox's own knobs as extra fields: `seed`, `exaggeration`, `cfg_weight`,
//! `temperature`, `min_p`, `top_p`, `top_k`, `repetition_penalty`, `max_new_tokens`,
//! `min_new_tokens`, `flow_steps`, `watermark`, `language` (multilingual bundles),
//! `first_chunk_tokens` and `chunk_tokens` (streaming). Any other field is refused.

use serde_json::{Map, Value};

use super::error::ApiError;
use crate::audio::encode::AudioFormat;
use crate::engine::{Engine, Request};
use crate::multilingual::Language;
use crate::stream::StreamOptions;
use crate::Family;

/// Model names accepted besides the bundle's own id, so OpenAI clients work unchanged.
pub const MODEL_ALIASES: [&str; 3] = ["tts-1", "tts-1-hd", "gpt-4o-mini-tts"];

/// OpenAI's built-in voice names: the bundle's default voice unless the voice library holds
/// a voice of that name.
pub const OPENAI_VOICES: [&str; 11] = [
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
];

/// OpenAI's limit on `input`, in characters (the default of [`ApiLimits::max_input_chars`]).
pub const OPENAI_MAX_INPUT_CHARS: usize = 4096;

/// The response format when the request names none (OpenAI's default).
pub const DEFAULT_FORMAT: AudioFormat = AudioFormat::Mp3;

/// Per-request limits a server sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// Most characters of `input`.
    pub max_input_chars: usize,
}

impl ApiLimits {
    /// Checks the bounds: `max_input_chars` in 1 ..= the engine's text bound in characters
    /// (a character is at most 4 bytes of UTF-8); the error names it.
    pub fn validate(&self) -> crate::Result<()> {
        let most = crate::limits::MAX_TEXT_BYTES / 4;
        if (1..=most).contains(&self.max_input_chars) {
            Ok(())
        } else {
            Err(crate::Error::invalid_argument(
                "max_input_chars",
                format!("must be in 1..={most}, got {}", self.max_input_chars),
            ))
        }
    }
}

impl Default for ApiLimits {
    fn default() -> ApiLimits {
        ApiLimits {
            max_input_chars: OPENAI_MAX_INPUT_CHARS,
        }
    }
}

/// How the audio leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The whole file once synthesized (exact lengths in its header).
    Whole,
    /// The encoded audio as the engine produces it (`stream_format: "audio"`).
    Audio,
    /// Server-sent events: `speech.audio.delta` with base64 audio, then `speech.audio.done`
    /// (`stream_format: "sse"`).
    Sse,
}

/// A checked speech request.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechJob {
    /// The model name as requested.
    pub model: String,
    /// The text.
    pub input: String,
    /// The voice name.
    pub voice: String,
    /// The audio format.
    pub format: AudioFormat,
    /// How the audio leaves.
    pub delivery: Delivery,
    /// The synthesis settings: the bundle's defaults with the request's extra fields.
    pub request: Request,
    /// Token-level streaming cuts (used by [`Delivery::Audio`] and [`Delivery::Sse`]).
    pub stream: StreamOptions,
}

impl SpeechJob {
    /// The response's `Content-Type`.
    pub fn content_type(&self) -> &'static str {
        match self.delivery {
            Delivery::Sse => "text/event-stream",
            _ => self.format.content_type(),
        }
    }
}

/// The model id of a bundle of `family` (what `GET /v1/models` lists first).
pub fn model_id(family: Family) -> &'static str {
    match family {
        Family::Original => "chatterbox",
        Family::Turbo => "chatterbox-turbo",
        Family::Multilingual => "chatterbox-multilingual",
    }
}

/// Every model name a request may use with a bundle of `family`.
pub fn model_names(family: Family) -> Vec<&'static str> {
    std::iter::once(model_id(family))
        .chain(MODEL_ALIASES)
        .collect()
}

/// Parses and checks a request body against `engine` (model, text, settings, language):
/// everything that can be wrong with the request is found here, before any work starts.
/// The voice name is only checked for its form; the voice library resolves it.
pub fn parse_speech(
    body: &[u8],
    engine: &Engine,
    limits: &ApiLimits,
) -> Result<SpeechJob, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    let Value::Object(mut fields) = value else {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    };
    let mut f = Fields(&mut fields);

    let model = f.string("model")?.ok_or_else(|| missing("model"))?;
    let family = engine.family();
    if !model_names(family).contains(&model.as_str()) {
        return Err(ApiError::not_found(
            "model_not_found",
            format!(
                "the model `{model}` does not exist here; this server runs `{}` (also accepted: {})",
                model_id(family),
                MODEL_ALIASES.join(", ")
            ),
        )
        .with_param("model"));
    }
    let input = f.string("input")?.ok_or_else(|| missing("input"))?;
    let chars = input.chars().count();
    if chars > limits.max_input_chars {
        return Err(ApiError::invalid(
            "input",
            format!(
                "`input` is {chars} characters; at most {} per request",
                limits.max_input_chars
            ),
        ));
    }
    if input.trim().is_empty() {
        return Err(ApiError::invalid("input", "`input` is empty"));
    }
    let voice = match f.take("voice") {
        None | Some(Value::Null) => return Err(missing("voice")),
        Some(Value::String(s)) => s,
        // The newer API's `{"id": "..."}` form.
        Some(Value::Object(mut o)) => match o.remove("id") {
            Some(Value::String(s)) if o.is_empty() => s,
            _ => {
                return Err(ApiError::invalid(
                    "voice",
                    "`voice` must be a voice name or {\"id\": NAME}",
                ))
            }
        },
        Some(_) => return Err(ApiError::invalid("voice", "`voice` must be a string")),
    };
    super::voices::check_name(&voice)?;
    let format = match f.string("response_format")? {
        None => DEFAULT_FORMAT,
        Some(name) => AudioFormat::from_name(&name)
            .map_err(|e| ApiError::invalid("response_format", e.to_string()))?,
    };
    if let Some(speed) = f.number("speed")? {
        if speed != 1.0 {
            return Err(ApiError::invalid(
                "speed",
                format!(
                    "`speed` {speed} is not supported: Chatterbox has no speed control (only 1.0)"
                ),
            ));
        }
    }
    if let Some(instructions) = f.string("instructions")? {
        if !instructions.trim().is_empty() {
            return Err(ApiError::invalid(
                "instructions",
                "`instructions` is not supported: Chatterbox takes no style prompt (use `exaggeration`, `cfg_weight` and the voice)",
            ));
        }
    }
    let delivery = match f.string("stream_format")?.as_deref() {
        None => Delivery::Whole,
        Some("audio") => Delivery::Audio,
        Some("sse") => Delivery::Sse,
        Some(other) => {
            return Err(ApiError::invalid(
                "stream_format",
                format!("`stream_format` must be \"audio\" or \"sse\", got \"{other}\""),
            ))
        }
    };

    let mut request = engine.default_request();
    if let Some(v) = f.unsigned("seed")? {
        request.seed = v;
    }
    macro_rules! float_field {
        ($name:ident) => {
            if let Some(v) = f.number(stringify!($name))? {
                request.$name = v as f32;
            }
        };
    }
    float_field!(exaggeration);
    float_field!(cfg_weight);
    float_field!(temperature);
    float_field!(min_p);
    float_field!(top_p);
    float_field!(repetition_penalty);
    macro_rules! count_field {
        ($target:expr, $name:literal) => {
            if let Some(v) = f.unsigned($name)? {
                $target = usize::try_from(v)
                    .map_err(|_| ApiError::invalid($name, format!("`{}` is too large", $name)))?;
            }
        };
    }
    count_field!(request.top_k, "top_k");
    count_field!(request.max_new_tokens, "max_new_tokens");
    count_field!(request.min_new_tokens, "min_new_tokens");
    count_field!(request.flow_steps, "flow_steps");
    if let Some(v) = f.bool("watermark")? {
        request.watermark = v;
    }
    if let Some(code) = f.string("language")? {
        let language: Language = code
            .parse()
            .map_err(|e: crate::Error| ApiError::invalid("language", e.to_string()))?;
        request.language = Some(language);
    }
    let mut stream = StreamOptions::default();
    count_field!(stream.first_chunk_tokens, "first_chunk_tokens");
    count_field!(stream.chunk_tokens, "chunk_tokens");

    if let Some(unknown) = fields.keys().next() {
        return Err(ApiError::invalid(
            unknown,
            format!("unrecognized request argument supplied: {unknown}"),
        ));
    }
    request.validate().map_err(ApiError::from)?;
    engine
        .check_language(request.language)
        .map_err(|e| ApiError::invalid("language", e.to_string()))?;
    stream.validate().map_err(ApiError::from)?;
    // The text as the engine will cut it: empty or unspeakable text is refused now.
    engine
        .text_chunks(&input, request.language)
        .map_err(ApiError::from)?;
    Ok(SpeechJob {
        model,
        input,
        voice,
        format,
        delivery,
        request,
        stream,
    })
}

fn missing(param: &str) -> ApiError {
    ApiError::invalid(param, format!("missing required parameter `{param}`"))
}

/// The request's fields, taken one by one (what is left at the end is unknown).
struct Fields<'a>(&'a mut Map<String, Value>);

impl Fields<'_> {
    fn take(&mut self, name: &str) -> Option<Value> {
        self.0.remove(name)
    }

    fn typed<T>(
        &mut self,
        name: &str,
        what: &str,
        get: impl FnOnce(&Value) -> Option<T>,
    ) -> Result<Option<T>, ApiError> {
        match self.take(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => get(&v).map(Some).ok_or_else(|| {
                ApiError::invalid(name, format!("`{name}` must be {what}, got {v}"))
            }),
        }
    }

    fn string(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        self.typed(name, "a string", |v| v.as_str().map(str::to_string))
    }

    fn number(&mut self, name: &str) -> Result<Option<f64>, ApiError> {
        self.typed(name, "a number", Value::as_f64)
    }

    fn unsigned(&mut self, name: &str) -> Result<Option<u64>, ApiError> {
        self.typed(name, "a non-negative integer", Value::as_u64)
    }

    fn bool(&mut self, name: &str) -> Result<Option<bool>, ApiError> {
        self.typed(name, "true or false", Value::as_bool)
    }
}
