//! `manifest.json` types (schema version 1, see `docs/BUNDLE.md`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::limits;

/// Largest file a manifest may list (1 TiB): far above any real graph, small enough
/// that sums of sizes cannot overflow.
pub const MAX_FILE_BYTES: u64 = 1 << 40;

/// The only manifest schema version this engine reads.
pub const SCHEMA_VERSION: u32 = 1;

/// The parsed `manifest.json` of a bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Which model this is.
    pub model: ModelInfo,
    /// Versions of the exporting tools (informational).
    #[serde(default)]
    pub exporter: BTreeMap<String, serde_json::Value>,
    /// Model hyper-parameters.
    pub config: Config,
    /// Default generation parameters.
    pub generation: GenerationDefaults,
    /// Where each front-end step runs (informational).
    #[serde(default)]
    pub frontends: BTreeMap<String, String>,
    /// One entry per ONNX graph, keyed by component name (`t3_decoder`, ...).
    pub components: BTreeMap<String, ComponentSpec>,
    /// Top-level files (`tokenizer.json`, `voice.safetensors`).
    #[serde(default)]
    pub files: Vec<FileEntry>,
}

/// Which Chatterbox model a bundle holds (`model.family`; absent means
/// [`Family::Original`], the bundles made before Turbo existed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// `ChatterboxTTS`: Llama T3 with CFG, 10-step CFG flow (`chatterbox/tts.py`).
    #[default]
    Original,
    /// `ChatterboxTurboTTS`: GPT-2 T3 without CFG, 2-step meanflow (`chatterbox/tts_turbo.py`).
    Turbo,
    /// `ChatterboxMultilingualTTS`: the original model's architecture with a 2454-token
    /// grapheme vocabulary, 23 languages and online alignment checks (`chatterbox/mtl_tts.py`).
    Multilingual,
}

impl Family {
    /// The manifest spelling (`original`, `turbo`).
    pub fn name(self) -> &'static str {
        match self {
            Family::Original => "original",
            Family::Turbo => "turbo",
            Family::Multilingual => "multilingual",
        }
    }

    /// The reference class this family reproduces.
    pub fn reference(self) -> &'static str {
        match self {
            Family::Original => "ChatterboxTTS",
            Family::Turbo => "ChatterboxTurboTTS",
            Family::Multilingual => "ChatterboxMultilingualTTS",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `model` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Model id, e.g. `chatterbox-tiny-random`.
    pub id: String,
    /// The model family (absent: original).
    #[serde(default)]
    pub family: Family,
    /// Config name (`tiny`, `full`).
    pub config: String,
    /// Where the weights came from (informational).
    #[serde(default)]
    pub origin: serde_json::Value,
}

/// `config` section: hyper-parameters the engine needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// Text tokenizer.
    pub text: TextConfig,
    /// Speech token space.
    pub speech: SpeechConfig,
    /// T3 (the Llama backbone).
    pub t3: T3Config,
    /// VoiceEncoder.
    pub voice_encoder: VoiceEncoderConfig,
    /// S3 tokenizer.
    pub s3_tokenizer: S3TokenizerConfig,
    /// CAM++ speaker encoder.
    pub campplus: CampPlusConfig,
    /// S3Gen (flow + HiFT).
    pub s3gen: S3GenConfig,
    /// Perth watermarker.
    pub perth: PerthConfig,
    /// Reference-clip rules (absent: the original model's).
    #[serde(default)]
    pub voice: VoiceConfig,
}

/// `config.voice`: what a reference clip must be and how it is prepared.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VoiceConfig {
    /// Shortest clip accepted, in seconds (Turbo: a clip must be *longer* than this).
    #[serde(default = "default_min_voice_seconds")]
    pub min_seconds: f64,
    /// Integrated loudness (ITU-R BS.1770, LUFS) the 24 kHz clip is normalised to before
    /// anything else; absent: no normalisation.
    #[serde(default)]
    pub loudness_lufs: Option<f64>,
}

fn default_min_voice_seconds() -> f64 {
    0.5
}

impl Default for VoiceConfig {
    fn default() -> Self {
        VoiceConfig {
            min_seconds: default_min_voice_seconds(),
            loudness_lufs: None,
        }
    }
}

/// `config.text`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TextConfig {
    /// Text vocabulary size.
    pub vocab_size: usize,
    /// Start-of-text token id (original family; Turbo adds none).
    #[serde(default)]
    pub start_token: Option<i64>,
    /// End-of-text token id (original family).
    #[serde(default)]
    pub stop_token: Option<i64>,
    /// Space token id (original family).
    #[serde(default)]
    pub space_token: Option<i64>,
    /// Unknown token id (original family).
    #[serde(default)]
    pub unk_token: Option<i64>,
    /// Maximum number of text positions.
    pub max_positions: usize,
    /// Tokenizer kind (`gpt2-bpe` for Turbo; absent for the original's).
    #[serde(default)]
    pub tokenizer: Option<String>,
    /// Paralinguistic tags the tokenizer holds as added tokens (Turbo), in id order.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The languages of a multilingual bundle, in the reference's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub languages: Vec<LanguageEntry>,
    /// The Cangjie table of a multilingual bundle (Chinese), relative to the bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cangjie: Option<String>,
}

/// One entry of `config.text.languages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LanguageEntry {
    /// The id requests use (`fr`).
    pub id: String,
    /// The English name (`French`).
    pub name: String,
}

/// `config.speech`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpeechConfig {
    /// Speech vocabulary size (logits width).
    pub vocab_size: usize,
    /// Number of real speech codes (tokens >= this are special).
    pub num_codes: i64,
    /// Start-of-speech token id.
    pub start_token: i64,
    /// End-of-speech token id.
    pub stop_token: i64,
    /// Maximum number of speech positions.
    pub max_positions: usize,
    /// Speech tokens per second.
    pub token_rate_hz: u32,
    /// Token appended after the generated ones before S3Gen (Turbo: `S3GEN_SIL`).
    #[serde(default)]
    pub silence_token: Option<i64>,
    /// How many [`SpeechConfig::silence_token`]s are appended (Turbo: 3).
    #[serde(default)]
    pub silence_tokens: usize,
}

/// `config.t3`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct T3Config {
    /// Hidden size `D`.
    pub hidden_size: usize,
    /// Layer count `L_layers`.
    pub num_layers: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// KV heads `H`.
    pub num_kv_heads: usize,
    /// Head dim `hd`.
    pub head_dim: usize,
    /// Conditioning length (1 + 32 + 1 for the real config).
    pub cond_len: usize,
    /// Speaker embedding size.
    pub speaker_embed_size: usize,
    /// Maximum prompt speech tokens.
    pub prompt_max_tokens: usize,
    /// Prompt crop length in seconds.
    pub prompt_seconds: f64,
    /// Positions of the backbone's own position table, cond + text + speech together
    /// (Turbo's GPT-2: 8196); absent when positions are the learned text/speech tables.
    #[serde(default)]
    pub max_positions: Option<usize>,
    /// `[layer, head]` pairs whose attention the multilingual model's alignment checks
    /// read (`t3_decoder` output `alignment` is their mean); empty for other families.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alignment_heads: Vec<[usize; 2]>,
}

/// `config.voice_encoder`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VoiceEncoderConfig {
    /// Input sample rate.
    pub sample_rate: u32,
    /// Silence trim threshold in dB.
    pub trim_top_db: f64,
    /// Embedding size.
    pub embed_size: usize,
}

/// `config.s3_tokenizer`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct S3TokenizerConfig {
    /// Input sample rate.
    pub sample_rate: u32,
    /// Longest input in seconds.
    pub max_seconds: f64,
}

/// `config.campplus`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CampPlusConfig {
    /// Input sample rate.
    pub sample_rate: u32,
    /// X-vector size.
    pub embed_size: usize,
}

/// `config.s3gen`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct S3GenConfig {
    /// Output sample rate.
    pub sample_rate: u32,
    /// Prompt crop length in seconds.
    pub prompt_seconds: f64,
    /// Mel bins.
    pub mel_bins: usize,
    /// Mel frames per speech token.
    pub mel_frames_per_token: usize,
    /// Audio samples per mel frame.
    pub samples_per_mel_frame: usize,
    /// Maximum speech tokens (prompt + new).
    pub max_tokens: usize,
    /// HiFT harmonics.
    pub hift_harmonics: usize,
    /// Zeros at the start of the trim-fade, seconds.
    pub fade_zeros_seconds: f64,
    /// Raised-cosine fade-in length, seconds.
    pub fade_in_seconds: f64,
    /// The flow estimator is a meanflow model with an `r` (end time) input (Turbo).
    #[serde(default)]
    pub meanflow: bool,
}

/// `config.perth`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PerthConfig {
    /// Watermarker sample rate.
    pub sample_rate: u32,
}

/// `generation` section: default request parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerationDefaults {
    /// Emotion exaggeration.
    pub exaggeration: f32,
    /// Classifier-free guidance weight for T3.
    pub cfg_weight: f32,
    /// Sampling temperature.
    pub temperature: f32,
    /// min-p filter.
    pub min_p: f32,
    /// top-p filter.
    pub top_p: f32,
    /// Repetition penalty.
    pub repetition_penalty: f32,
    /// top-k filter (Turbo: 1000); absent or 0: off.
    #[serde(default)]
    pub top_k: usize,
    /// Euler steps of flow matching.
    pub flow_steps: usize,
    /// CFG rate of flow matching (0: no unconditional batch row).
    pub flow_cfg_rate: f32,
    /// Time schedule of the Euler steps (absent: cosine).
    #[serde(default)]
    pub flow_schedule: FlowSchedule,
    /// Maximum new speech tokens.
    pub max_new_tokens: usize,
}

/// The time points of the flow's Euler steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowSchedule {
    /// `t = 1 - cos(s * pi / 2)` (the original model).
    #[default]
    Cosine,
    /// `t = s` (Turbo's meanflow).
    Linear,
}

/// A file of the bundle with its expected size and digest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    /// Path relative to the bundle folder.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Lower-case hex sha256.
    pub sha256: String,
}

/// One component's graph files and I/O signature.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComponentSpec {
    /// `files[0]` is the `.onnx`; a second entry is its external-data file.
    pub files: Vec<FileEntry>,
    /// Weight precision: `fp32`, `fp16`, or `int8` / `int4` (weight-only, `t3_decoder`).
    #[serde(default = "default_precision")]
    pub precision: String,
    /// ONNX opset.
    #[serde(default)]
    pub opset: Option<u32>,
    /// Graph inputs, in order.
    pub inputs: Vec<TensorSpec>,
    /// Graph outputs, in order.
    pub outputs: Vec<TensorSpec>,
    /// Exporter self-check result (informational).
    #[serde(default)]
    pub self_check: Option<serde_json::Value>,
}

fn default_precision() -> String {
    "fp32".to_string()
}

impl ComponentSpec {
    /// Total bytes of this component's files (graph + external data): its weight size.
    pub fn weight_bytes(&self) -> u64 {
        self.files
            .iter()
            .fold(0u64, |t, f| t.saturating_add(f.bytes))
    }

    /// The input with this name.
    pub fn input(&self, name: &str) -> Option<&TensorSpec> {
        self.inputs.iter().find(|t| t.name == name)
    }

    /// The output with this name.
    pub fn output(&self, name: &str) -> Option<&TensorSpec> {
        self.outputs.iter().find(|t| t.name == name)
    }
}

/// A graph input or output as declared by the manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TensorSpec {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Dimensions: fixed sizes or symbolic names.
    pub shape: Vec<Dim>,
}

impl fmt::Display for TensorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.name,
            self.dtype,
            DimsDisplay(&self.shape)
        )
    }
}

/// Element types used by bundles.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// 32-bit float.
    Float32,
    /// 16-bit float.
    Float16,
    /// 64-bit signed integer.
    Int64,
    /// 32-bit signed integer.
    Int32,
    /// Boolean.
    Bool,
}

impl DType {
    /// The manifest spelling (`float32`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::Float32 => "float32",
            DType::Float16 => "float16",
            DType::Int64 => "int64",
            DType::Int32 => "int32",
            DType::Bool => "bool",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::Float32 | DType::Int32 => 4,
            DType::Float16 => 2,
            DType::Int64 => 8,
            DType::Bool => 1,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One dimension: a fixed size or a symbolic (dynamic) name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Dim {
    /// A fixed size.
    Fixed(u64),
    /// A dynamic dimension with this name.
    Symbolic(String),
}

impl Dim {
    /// The fixed size, if fixed.
    pub fn fixed(&self) -> Option<u64> {
        match self {
            Dim::Fixed(n) => Some(*n),
            Dim::Symbolic(_) => None,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Symbolic(s) => write!(f, "\"{s}\""),
        }
    }
}

/// Formats a dim list as `[1, "seq", 80]`.
pub struct DimsDisplay<'a>(pub &'a [Dim]);

impl fmt::Display for DimsDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

impl Manifest {
    /// Parses manifest JSON. `path` is only used in error messages.
    ///
    /// The schema version is checked before anything else, so a manifest of another
    /// version reports that rather than a missing field.
    pub fn from_json(text: &str, path: &Path) -> Result<Manifest> {
        let raw: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::bundle(path, format!("not valid JSON: {e}")))?;
        match raw.get("schema_version").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(SCHEMA_VERSION) => {}
            Some(v) => {
                return Err(Error::bundle(
                    path,
                    format!(
                    "unsupported schema_version {v} (this engine reads version {SCHEMA_VERSION})"
                ),
                ))
            }
            None => {
                return Err(Error::bundle(
                    path,
                    "missing or non-integer `schema_version`",
                ))
            }
        }
        let manifest: Manifest = serde_json::from_value(raw)
            .map_err(|e| Error::bundle(path, format!("invalid manifest: {e}")))?;
        manifest.validate(path)?;
        Ok(manifest)
    }

    /// Structural checks serde cannot express: file paths stay inside the bundle,
    /// digests are hex, every component has a graph file.
    fn validate(&self, path: &Path) -> Result<()> {
        let check_file = |f: &FileEntry, owner: &str| -> Result<()> {
            if !inside_bundle(&f.path) {
                return Err(Error::bundle(
                    path,
                    format!(
                        "{owner}: file path `{}` must be relative and inside the bundle",
                        f.path
                    ),
                ));
            }
            if f.bytes > MAX_FILE_BYTES {
                return Err(Error::bundle(
                    path,
                    format!(
                        "{owner}: `{}` claims {} bytes; at most {MAX_FILE_BYTES} are accepted",
                        f.path, f.bytes
                    ),
                ));
            }
            if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::bundle(
                    path,
                    format!(
                        "{owner}: `{}` has a malformed sha256 `{}`",
                        f.path, f.sha256
                    ),
                ));
            }
            Ok(())
        };
        for (name, spec) in &self.components {
            let owner = format!("component `{name}`");
            if spec.files.is_empty() {
                return Err(Error::bundle(path, format!("{owner} lists no files")));
            }
            for f in &spec.files {
                check_file(f, &owner)?;
            }
        }
        for f in &self.files {
            check_file(f, "files")?;
        }
        self.check_config()
            .map_err(|reason| Error::bundle(path, reason))
    }

    /// Every number of `config` and `generation` within a plausible range, so no
    /// size read from the manifest can drive an absurd allocation or loop.
    fn check_config(&self) -> std::result::Result<(), String> {
        let c = &self.config;
        let count = |name: &str, v: usize, max: usize| -> std::result::Result<(), String> {
            if v == 0 || v > max {
                return Err(format!("`{name}` is {v}; expected 1..={max}"));
            }
            Ok(())
        };
        let token = |name: &str, v: i64, vocab: usize| -> std::result::Result<(), String> {
            if v < 0 || v as u64 >= vocab as u64 {
                return Err(format!("`{name}` is {v}; expected 0..{vocab}"));
            }
            Ok(())
        };
        let seconds = |name: &str, v: f64, min: f64, max: f64| -> std::result::Result<(), String> {
            if !(v.is_finite() && v >= min && v <= max) {
                return Err(format!("`{name}` is {v}; expected {min}..={max}"));
            }
            Ok(())
        };
        let rate = |name: &str, v: u32| -> std::result::Result<(), String> {
            if !(limits::MIN_SAMPLE_RATE..=limits::MAX_SAMPLE_RATE).contains(&v) {
                return Err(format!(
                    "`{name}` is {v} Hz; expected {}..={}",
                    limits::MIN_SAMPLE_RATE,
                    limits::MAX_SAMPLE_RATE
                ));
            }
            Ok(())
        };
        const VOCAB: usize = 1 << 20;
        const WIDTH: usize = 1 << 16;
        const POSITIONS: usize = 1 << 16;
        count("config.text.vocab_size", c.text.vocab_size, VOCAB)?;
        let family = self.model.family;
        for (n, v) in [
            ("config.text.start_token", c.text.start_token),
            ("config.text.stop_token", c.text.stop_token),
            ("config.text.space_token", c.text.space_token),
            ("config.text.unk_token", c.text.unk_token),
        ] {
            match v {
                Some(v) => token(n, v, c.text.vocab_size)?,
                None if family != Family::Turbo => {
                    return Err(format!("`{n}` is missing (the {family} model needs it)"))
                }
                None => {}
            }
        }
        count("config.text.max_positions", c.text.max_positions, POSITIONS)?;
        count("config.speech.vocab_size", c.speech.vocab_size, VOCAB)?;
        count(
            "config.speech.num_codes",
            usize::try_from(c.speech.num_codes).unwrap_or(0),
            c.speech.vocab_size,
        )?;
        token(
            "config.speech.start_token",
            c.speech.start_token,
            c.speech.vocab_size,
        )?;
        token(
            "config.speech.stop_token",
            c.speech.stop_token,
            c.speech.vocab_size,
        )?;
        count(
            "config.speech.max_positions",
            c.speech.max_positions,
            POSITIONS,
        )?;
        count(
            "config.speech.token_rate_hz",
            c.speech.token_rate_hz as usize,
            1000,
        )?;
        count("config.t3.hidden_size", c.t3.hidden_size, WIDTH)?;
        count("config.t3.num_layers", c.t3.num_layers, 512)?;
        count("config.t3.num_heads", c.t3.num_heads, 1024)?;
        count("config.t3.num_kv_heads", c.t3.num_kv_heads, c.t3.num_heads)?;
        count("config.t3.head_dim", c.t3.head_dim, 1024)?;
        count("config.t3.cond_len", c.t3.cond_len, POSITIONS)?;
        count(
            "config.t3.speaker_embed_size",
            c.t3.speaker_embed_size,
            WIDTH,
        )?;
        count(
            "config.t3.prompt_max_tokens",
            c.t3.prompt_max_tokens,
            c.speech.max_positions,
        )?;
        seconds("config.t3.prompt_seconds", c.t3.prompt_seconds, 0.1, 600.0)?;
        rate(
            "config.voice_encoder.sample_rate",
            c.voice_encoder.sample_rate,
        )?;
        seconds(
            "config.voice_encoder.trim_top_db",
            c.voice_encoder.trim_top_db,
            0.0,
            200.0,
        )?;
        count(
            "config.voice_encoder.embed_size",
            c.voice_encoder.embed_size,
            WIDTH,
        )?;
        rate(
            "config.s3_tokenizer.sample_rate",
            c.s3_tokenizer.sample_rate,
        )?;
        seconds(
            "config.s3_tokenizer.max_seconds",
            c.s3_tokenizer.max_seconds,
            0.1,
            3600.0,
        )?;
        rate("config.campplus.sample_rate", c.campplus.sample_rate)?;
        count("config.campplus.embed_size", c.campplus.embed_size, WIDTH)?;
        let g = &c.s3gen;
        rate("config.s3gen.sample_rate", g.sample_rate)?;
        seconds("config.s3gen.prompt_seconds", g.prompt_seconds, 0.1, 600.0)?;
        count("config.s3gen.mel_bins", g.mel_bins, 1024)?;
        count(
            "config.s3gen.mel_frames_per_token",
            g.mel_frames_per_token,
            64,
        )?;
        count(
            "config.s3gen.samples_per_mel_frame",
            g.samples_per_mel_frame,
            1 << 17,
        )?;
        count("config.s3gen.max_tokens", g.max_tokens, POSITIONS)?;
        count("config.s3gen.hift_harmonics", g.hift_harmonics, 1024)?;
        seconds(
            "config.s3gen.fade_zeros_seconds",
            g.fade_zeros_seconds,
            0.0,
            10.0,
        )?;
        seconds("config.s3gen.fade_in_seconds", g.fade_in_seconds, 0.0, 10.0)?;
        rate("config.perth.sample_rate", c.perth.sample_rate)?;
        seconds("config.voice.min_seconds", c.voice.min_seconds, 0.1, 60.0)?;
        if let Some(l) = c.voice.loudness_lufs {
            seconds("config.voice.loudness_lufs", l, -70.0, 0.0)?;
        }
        if let Some(t) = c.speech.silence_token {
            token(
                "config.speech.silence_token",
                t,
                c.speech.num_codes.max(0) as usize,
            )?;
        }
        if c.speech.silence_tokens > 64 {
            return Err(format!(
                "`config.speech.silence_tokens` is {}; expected 0..=64",
                c.speech.silence_tokens
            ));
        }
        if c.speech.silence_tokens > 0 && c.speech.silence_token.is_none() {
            return Err(
                "`config.speech.silence_tokens` is set but `silence_token` is missing".into(),
            );
        }
        if let Some(p) = c.t3.max_positions {
            count("config.t3.max_positions", p, POSITIONS)?;
        }
        if family == Family::Turbo {
            if c.t3.max_positions.is_none() {
                return Err(
                    "`config.t3.max_positions` is missing (a Turbo bundle needs it)".into(),
                );
            }
            if !c.s3gen.meanflow {
                return Err("`config.s3gen.meanflow` must be true in a Turbo bundle".into());
            }
        }
        check_multilingual(family, c)?;

        let gen = &self.generation;
        let request = crate::engine::Request::from_generation(gen);
        request
            .validate()
            .and_then(|()| request.check_model_limits(c, 0))
            .map_err(|e| format!("`generation`: {e}"))?;
        if !(gen.flow_cfg_rate.is_finite() && gen.flow_cfg_rate >= 0.0) {
            return Err(format!(
                "`generation.flow_cfg_rate` is {}; expected a finite value >= 0",
                gen.flow_cfg_rate
            ));
        }
        Ok(())
    }

    /// Checks that the sizes of `config` agree with the I/O signatures the manifest
    /// declares for the Chatterbox components (which each session checks against its
    /// real graph when it is created), so the numbers the engine allocates by are those
    /// of the graphs. [`crate::Engine::load`] calls it; a bundle of other graphs (tests,
    /// tools) need not pass it. `path` names the manifest in the error.
    pub fn check_signatures(&self, path: &Path) -> Result<()> {
        self.config_matches_signatures()
            .map_err(|reason| Error::bundle(path, reason))
    }

    fn config_matches_signatures(&self) -> std::result::Result<(), String> {
        let c = &self.config;
        let t3 = &c.t3;
        // (component, tensor, axis, expected size, config key)
        let dim = |comp: &str,
                   tensor: &str,
                   axis: usize,
                   want: usize,
                   key: &str|
         -> std::result::Result<(), String> {
            let spec = self
                .components
                .get(comp)
                .ok_or_else(|| format!("no component `{comp}`"))?;
            let t = spec
                .input(tensor)
                .or_else(|| spec.output(tensor))
                .ok_or_else(|| format!("component `{comp}` has no tensor `{tensor}`"))?;
            match t.shape.get(axis) {
                Some(Dim::Fixed(n)) if *n == want as u64 => Ok(()),
                Some(Dim::Symbolic(_)) => Ok(()),
                other => Err(format!(
                    "`{key}` is {want} but `{comp}` tensor `{tensor}` has dim {axis} = {}",
                    other.map_or("none".to_string(), |d| d.to_string())
                )),
            }
        };
        let dec = self
            .components
            .get("t3_decoder")
            .ok_or_else(|| "no component `t3_decoder`".to_string())?;
        // `past_len` is absent from bundles of older exports: the decoder names that case.
        let with_past_len = usize::from(dec.input("past_len").is_some());
        let expected_inputs = 1 + with_past_len + 2 * t3.num_layers;
        if dec.inputs.len() != expected_inputs {
            let parts = if with_past_len == 1 {
                "embeddings, past_len and a key and a value per layer"
            } else {
                "embeddings + a key and a value per layer"
            };
            return Err(format!(
                "`config.t3.num_layers` is {} but `t3_decoder` declares {} inputs (expected {expected_inputs}: {parts})",
                t3.num_layers,
                dec.inputs.len()
            ));
        }
        for layer in 0..t3.num_layers {
            for kind in ["key", "value"] {
                let name = format!("past_{kind}_{layer}");
                dim(
                    "t3_decoder",
                    &name,
                    1,
                    t3.num_kv_heads,
                    "config.t3.num_kv_heads",
                )?;
                dim("t3_decoder", &name, 3, t3.head_dim, "config.t3.head_dim")?;
            }
        }
        dim(
            "t3_decoder",
            "inputs_embeds",
            2,
            t3.hidden_size,
            "config.t3.hidden_size",
        )?;
        dim(
            "t3_decoder",
            "logits",
            2,
            c.speech.vocab_size,
            "config.speech.vocab_size",
        )?;
        dim(
            "t3_text_embed",
            "token_embeds",
            2,
            t3.hidden_size,
            "config.t3.hidden_size",
        )?;
        dim(
            "t3_speech_embed",
            "embeds",
            2,
            t3.hidden_size,
            "config.t3.hidden_size",
        )?;
        dim(
            "t3_cond",
            "speaker_emb",
            1,
            t3.speaker_embed_size,
            "config.t3.speaker_embed_size",
        )?;
        dim(
            "t3_cond",
            "cond",
            2,
            t3.hidden_size,
            "config.t3.hidden_size",
        )?;
        dim(
            "voice_encoder",
            "embedding",
            1,
            c.voice_encoder.embed_size,
            "config.voice_encoder.embed_size",
        )?;
        dim(
            "campplus",
            "embedding",
            1,
            c.campplus.embed_size,
            "config.campplus.embed_size",
        )?;
        dim(
            "s3gen_mel",
            "mel",
            2,
            c.s3gen.mel_bins,
            "config.s3gen.mel_bins",
        )?;
        dim(
            "flow_encoder",
            "mu",
            1,
            c.s3gen.mel_bins,
            "config.s3gen.mel_bins",
        )?;
        dim(
            "flow_estimator",
            "x",
            1,
            c.s3gen.mel_bins,
            "config.s3gen.mel_bins",
        )?;
        dim("hift", "mel", 1, c.s3gen.mel_bins, "config.s3gen.mel_bins")?;
        let has_r = self
            .components
            .get("flow_estimator")
            .is_some_and(|e| e.input("r").is_some());
        if has_r != c.s3gen.meanflow {
            return Err(format!(
                "`config.s3gen.meanflow` is {} but `flow_estimator` {} an `r` input",
                c.s3gen.meanflow,
                if has_r { "has" } else { "lacks" }
            ));
        }
        dim(
            "hift",
            "phase_init",
            1,
            c.s3gen.hift_harmonics,
            "config.s3gen.hift_harmonics",
        )?;
        Ok(())
    }

    /// The component spec with this manifest key.
    pub fn component(&self, name: &str) -> Option<&ComponentSpec> {
        self.components.get(name)
    }
}

/// Whether a manifest path is non-empty, relative and stays inside the bundle.
fn inside_bundle(path: &str) -> bool {
    let p = Path::new(path);
    !path.is_empty()
        && !p.is_absolute()
        && p.components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        })
}

/// The multilingual family's own fields: a language list of valid, distinct ids, the
/// Cangjie table, and alignment heads inside the backbone; none of them on other families.
fn check_multilingual(family: Family, c: &Config) -> std::result::Result<(), String> {
    let languages = &c.text.languages;
    if family != Family::Multilingual {
        if !languages.is_empty() || c.text.cangjie.is_some() || !c.t3.alignment_heads.is_empty() {
            return Err(format!(
                "`config.text.languages`, `config.text.cangjie` and `config.t3.alignment_heads` \
                 belong to multilingual bundles, not to a {family} bundle"
            ));
        }
        return Ok(());
    }
    if languages.is_empty() || languages.len() > 256 {
        return Err(format!(
            "`config.text.languages` has {} entries; a multilingual bundle needs 1..=256",
            languages.len()
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for l in languages {
        let id = crate::multilingual::Language::parse(&l.id)
            .map_err(|_| format!("`config.text.languages` has an invalid id {:?}", l.id))?;
        if id.as_str() != l.id || !seen.insert(l.id.as_str()) {
            return Err(format!(
                "`config.text.languages`: id {:?} is not lowercase or appears twice",
                l.id
            ));
        }
    }
    match &c.text.cangjie {
        Some(p) if inside_bundle(p) => {}
        Some(p) => {
            return Err(format!(
                "`config.text.cangjie` is `{p}`; it must be relative and inside the bundle"
            ))
        }
        None => {
            return Err("`config.text.cangjie` is missing (a multilingual bundle needs it)".into())
        }
    }
    let t3 = &c.t3;
    if t3.alignment_heads.is_empty() || t3.alignment_heads.len() > 64 {
        return Err("`config.t3.alignment_heads` must list 1..=64 [layer, head] pairs".into());
    }
    for &[layer, head] in &t3.alignment_heads {
        if layer >= t3.num_layers || head >= t3.num_heads {
            return Err(format!(
                "`config.t3.alignment_heads` has [{layer}, {head}]; T3 has {} layers of {} heads",
                t3.num_layers, t3.num_heads
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dims_parse_fixed_and_symbolic() {
        let t: TensorSpec =
            serde_json::from_str(r#"{"name":"x","dtype":"float32","shape":["batch",80,"frames"]}"#)
                .unwrap();
        assert_eq!(
            t.shape,
            vec![
                Dim::Symbolic("batch".into()),
                Dim::Fixed(80),
                Dim::Symbolic("frames".into())
            ]
        );
        assert_eq!(t.to_string(), r#"x float32 ["batch", 80, "frames"]"#);
    }

    /// The committed tiny manifest with one value replaced (`pointer` as in RFC 6901).
    fn tiny_with(pointer: &str, value: serde_json::Value) -> Result<Manifest> {
        let mut m: serde_json::Value =
            serde_json::from_str(include_str!("../../onnx/tiny/manifest.json")).unwrap();
        *m.pointer_mut(pointer).unwrap() = value;
        let path = Path::new("manifest.json");
        let manifest = Manifest::from_json(&m.to_string(), path)?;
        manifest.check_signatures(path)?;
        Ok(manifest)
    }

    #[test]
    fn tiny_manifest_passes_the_load_checks() {
        tiny_with("/schema_version", 1.into()).unwrap();
    }

    #[test]
    fn absurd_numbers_fail_at_load_naming_the_key() {
        let cases: Vec<(&str, serde_json::Value, &str)> = vec![
            (
                "/config/t3/num_layers",
                1_000_000_000u64.into(),
                "config.t3.num_layers",
            ),
            ("/config/t3/num_layers", 3.into(), "config.t3.num_layers"),
            ("/config/t3/num_layers", 0.into(), "config.t3.num_layers"),
            ("/config/t3/hidden_size", 33.into(), "config.t3.hidden_size"),
            (
                "/config/t3/num_kv_heads",
                1.into(),
                "config.t3.num_kv_heads",
            ),
            (
                "/config/speech/vocab_size",
                8195.into(),
                "config.speech.vocab_size",
            ),
            (
                "/config/speech/stop_token",
                9000.into(),
                "config.speech.stop_token",
            ),
            (
                "/config/speech/max_positions",
                1u64.into(),
                "config.t3.prompt_max_tokens",
            ),
            ("/config/s3gen/mel_bins", 81.into(), "config.s3gen.mel_bins"),
            (
                "/config/s3gen/hift_harmonics",
                10.into(),
                "config.s3gen.hift_harmonics",
            ),
            (
                "/config/s3gen/sample_rate",
                0.into(),
                "config.s3gen.sample_rate",
            ),
            (
                "/config/s3gen/prompt_seconds",
                1e300.into(),
                "config.s3gen.prompt_seconds",
            ),
            ("/config/s3gen/samples_per_mel_frame", 1u64.into(), "ok"),
            (
                "/generation/flow_steps",
                1_000_000_000u64.into(),
                "flow_steps",
            ),
            (
                "/generation/max_new_tokens",
                1_000_000_000u64.into(),
                "max_new_tokens",
            ),
            ("/generation/temperature", (-1.0).into(), "temperature"),
            ("/generation/flow_cfg_rate", (-1.0).into(), "flow_cfg_rate"),
        ];
        for (pointer, value, key) in cases {
            let r = tiny_with(pointer, value.clone());
            if key == "ok" {
                r.unwrap();
                continue;
            }
            let e = r.unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::Bundle, "{pointer}");
            assert!(e.to_string().contains(key), "{pointer}={value}: {e}");
        }
    }

    #[test]
    fn unknown_dtype_is_rejected() {
        let r: std::result::Result<TensorSpec, _> =
            serde_json::from_str(r#"{"name":"x","dtype":"complex64","shape":[1]}"#);
        assert!(r.is_err());
    }
}
