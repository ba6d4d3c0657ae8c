//! What is Turbo's own (`ChatterboxTurboTTS`, `chatterbox/tts_turbo.py`): the
//! GPT-2 T3 ([`t3`]), its sampler chain ([`sampler`]) and its text front-end
//! ([`text`]). Everything else — voice encoder, S3 tokenizer, CAM++, prompt mel,
//! the S3Gen flow (meanflow: linear schedule, no CFG, an `r` input; see
//! [`crate::s3gen::flow::FlowParams`]), HiFT, Perth, chunking and residency — is
//! the code the original model uses, driven by the bundle's manifest
//! (`model.family = "turbo"`, `config.voice.loudness_lufs`, `config.s3gen.meanflow`,
//! `generation.flow_schedule`, ...).

pub mod sampler;
pub mod t3;
pub mod text;
