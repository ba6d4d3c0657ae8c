//! A voice: the conditioning tensors computed from a reference clip, stored as
//! `voice.safetensors` (see `docs/BUNDLE.md`).

use std::collections::HashMap;
use std::path::Path;

use ndarray::{Array2, Array3};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::manifest::Config;
use crate::error::{Error, Result};
use crate::limits;

/// `__metadata__["format"]` of a voice file.
pub const VOICE_FORMAT: &str = "chatterbox-ort-voice";
/// `__metadata__["version"]` of a voice file.
pub const VOICE_VERSION: &str = "1";

const T_SPEAKER_EMB: &str = "t3.speaker_emb";
const T_COND_TOKENS: &str = "t3.cond_prompt_speech_tokens";
const T_PROMPT_TOKEN: &str = "gen.prompt_token";
const T_PROMPT_FEAT: &str = "gen.prompt_feat";
const T_EMBEDDING: &str = "gen.embedding";

/// Conditioning for one speaker.
#[derive(Debug, Clone, PartialEq)]
pub struct Voice {
    /// `t3.speaker_emb` f32 [1, 256]: VoiceEncoder embedding of the whole clip.
    pub speaker_emb: Array2<f32>,
    /// `t3.cond_prompt_speech_tokens` i64 [1, P]: S3 tokens of the first 6 s.
    pub cond_prompt_speech_tokens: Array2<i64>,
    /// `gen.prompt_token` i64 [1, N]: S3 tokens of the first 10 s.
    pub prompt_token: Array2<i64>,
    /// `gen.prompt_feat` f32 [1, 2N or 2N + 1, 80]: S3Gen mel of the first 10 s.
    pub prompt_feat: Array3<f32>,
    /// `gen.embedding` f32 [1, 192]: CAM++ x-vector of the first 10 s.
    pub embedding: Array2<f32>,
}

/// A borrowed view of S3Gen's conditionals (the reference `gen` dict): what the flow
/// needs of a voice, for text-to-speech and voice conversion alike.
#[derive(Debug, Clone, Copy)]
pub struct S3GenRefView<'a> {
    /// Prompt speech tokens `[1, N]`.
    pub prompt_token: &'a Array2<i64>,
    /// Prompt mel `[1, frames, bins]`.
    pub prompt_feat: &'a Array3<f32>,
    /// CAM++ x-vector `[1, 192]`.
    pub embedding: &'a Array2<f32>,
}

impl Voice {
    /// S3Gen's part of this voice.
    pub fn s3gen_reference(&self) -> S3GenRefView<'_> {
        S3GenRefView {
            prompt_token: &self.prompt_token,
            prompt_feat: &self.prompt_feat,
            embedding: &self.embedding,
        }
    }

    /// Reads a voice file, checking format metadata, tensor names, dtypes and shapes.
    pub fn load(path: &Path) -> Result<Voice> {
        let bytes = limits::read_capped(path, limits::MAX_VOICE_FILE_BYTES, "a voice file")?;
        Self::from_bytes(&bytes, path)
    }

    /// Parses the bytes of a voice file; `path` is only used in error messages.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Voice> {
        let bad = |reason: String| Error::voice_file(path, reason);
        let (_, meta) = SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let info = meta.metadata().clone().unwrap_or_default();
        match info.get("format").map(String::as_str) {
            Some(VOICE_FORMAT) => {}
            other => {
                return Err(bad(format!(
                    "metadata `format` is {other:?}, expected \"{VOICE_FORMAT}\""
                )))
            }
        }
        match info.get("version").map(String::as_str) {
            Some(VOICE_VERSION) => {}
            other => {
                return Err(bad(format!(
                    "metadata `version` is {other:?}, this engine reads version \"{VOICE_VERSION}\""
                )))
            }
        }
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;

        let speaker_emb = read_f32(&st, T_SPEAKER_EMB, 2, path)?;
        let cond_tokens = read_i64(&st, T_COND_TOKENS, 2, path)?;
        let prompt_token = read_i64(&st, T_PROMPT_TOKEN, 2, path)?;
        let prompt_feat = read_f32(&st, T_PROMPT_FEAT, 3, path)?;
        let embedding = read_f32(&st, T_EMBEDDING, 2, path)?;

        let voice = Voice {
            speaker_emb: speaker_emb
                .into_dimensionality()
                .map_err(|e| bad(format!("{T_SPEAKER_EMB}: {e}")))?,
            cond_prompt_speech_tokens: cond_tokens
                .into_dimensionality()
                .map_err(|e| bad(format!("{T_COND_TOKENS}: {e}")))?,
            prompt_token: prompt_token
                .into_dimensionality()
                .map_err(|e| bad(format!("{T_PROMPT_TOKEN}: {e}")))?,
            prompt_feat: prompt_feat
                .into_dimensionality()
                .map_err(|e| bad(format!("{T_PROMPT_FEAT}: {e}")))?,
            embedding: embedding
                .into_dimensionality()
                .map_err(|e| bad(format!("{T_EMBEDDING}: {e}")))?,
        };
        voice.check_structure().map_err(bad)?;
        Ok(voice)
    }

    /// Checks shapes that do not depend on the model config: batch 1 everywhere and
    /// `prompt_feat` frames = 2 x `prompt_token` length, or one more (the reference's
    /// `embed_ref` keeps an odd last mel frame when it cuts the tokens).
    fn check_structure(&self) -> std::result::Result<(), String> {
        let batch = [
            (T_SPEAKER_EMB, self.speaker_emb.shape()[0]),
            (T_COND_TOKENS, self.cond_prompt_speech_tokens.shape()[0]),
            (T_PROMPT_TOKEN, self.prompt_token.shape()[0]),
            (T_PROMPT_FEAT, self.prompt_feat.shape()[0]),
            (T_EMBEDDING, self.embedding.shape()[0]),
        ];
        for (name, b) in batch {
            if b != 1 {
                return Err(format!("{name}: first dimension must be 1, got {b}"));
            }
        }
        let n = self.prompt_token.shape()[1];
        let frames = self.prompt_feat.shape()[1];
        if frames != 2 * n && frames != 2 * n + 1 {
            return Err(format!(
                "{T_PROMPT_FEAT} has {frames} frames but {T_PROMPT_TOKEN} has {n} tokens (expected {} or {} frames)",
                2 * n,
                2 * n + 1
            ));
        }
        Ok(())
    }

    /// Checks the voice against a model config (embedding sizes, mel bins, prompt length,
    /// token range). Call before using a voice with a bundle.
    pub fn validate(&self, config: &Config) -> Result<()> {
        let bad = |name: &str, reason: String| {
            Error::invalid_argument("voice", format!("{name}: {reason}"))
        };
        let se = self.speaker_emb.shape()[1];
        if se != config.t3.speaker_embed_size {
            return Err(bad(
                T_SPEAKER_EMB,
                format!(
                    "size {se}, the model expects {}",
                    config.t3.speaker_embed_size
                ),
            ));
        }
        let xe = self.embedding.shape()[1];
        if xe != config.campplus.embed_size {
            return Err(bad(
                T_EMBEDDING,
                format!(
                    "size {xe}, the model expects {}",
                    config.campplus.embed_size
                ),
            ));
        }
        let bins = self.prompt_feat.shape()[2];
        if bins != config.s3gen.mel_bins {
            return Err(bad(
                T_PROMPT_FEAT,
                format!(
                    "{bins} mel bins, the model expects {}",
                    config.s3gen.mel_bins
                ),
            ));
        }
        let p = self.cond_prompt_speech_tokens.shape()[1];
        if p > config.t3.prompt_max_tokens {
            return Err(bad(
                T_COND_TOKENS,
                format!(
                    "{p} tokens, at most {} allowed",
                    config.t3.prompt_max_tokens
                ),
            ));
        }
        let num_codes = config.speech.num_codes;
        for (name, tokens) in [
            (T_COND_TOKENS, &self.cond_prompt_speech_tokens),
            (T_PROMPT_TOKEN, &self.prompt_token),
        ] {
            if let Some(t) = tokens.iter().find(|&&t| t < 0 || t >= num_codes) {
                return Err(bad(name, format!("token {t} outside [0, {num_codes})")));
            }
        }
        if self
            .speaker_emb
            .iter()
            .chain(self.embedding.iter())
            .chain(self.prompt_feat.iter())
            .any(|v| !v.is_finite())
        {
            return Err(bad("voice", "contains NaN or infinite values".to_string()));
        }
        Ok(())
    }

    /// Serializes the voice to safetensors bytes (with format/version metadata).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let speaker = f32_bytes(&self.speaker_emb);
        let cond = i64_bytes(&self.cond_prompt_speech_tokens);
        let ptok = i64_bytes(&self.prompt_token);
        let feat = f32_bytes(&self.prompt_feat);
        let emb = f32_bytes(&self.embedding);
        let tensors = vec![
            (
                T_SPEAKER_EMB,
                view(
                    Dtype::F32,
                    self.speaker_emb.shape(),
                    &speaker,
                    T_SPEAKER_EMB,
                )?,
            ),
            (
                T_COND_TOKENS,
                view(
                    Dtype::I64,
                    self.cond_prompt_speech_tokens.shape(),
                    &cond,
                    T_COND_TOKENS,
                )?,
            ),
            (
                T_PROMPT_TOKEN,
                view(Dtype::I64, self.prompt_token.shape(), &ptok, T_PROMPT_TOKEN)?,
            ),
            (
                T_PROMPT_FEAT,
                view(Dtype::F32, self.prompt_feat.shape(), &feat, T_PROMPT_FEAT)?,
            ),
            (
                T_EMBEDDING,
                view(Dtype::F32, self.embedding.shape(), &emb, T_EMBEDDING)?,
            ),
        ];
        let meta = HashMap::from([
            ("format".to_string(), VOICE_FORMAT.to_string()),
            ("version".to_string(), VOICE_VERSION.to_string()),
        ]);
        safetensors::serialize(tensors, Some(meta))
            .map_err(|e| Error::internal(format!("serializing voice: {e}")))
    }

    /// Writes the voice to `path` with [`crate::output::write_output`]: a regular file (or a
    /// link's target) is replaced atomically (temporary file in the same folder, synced,
    /// renamed over it, permission bits kept); a character device or FIFO is written in
    /// place; a directory is refused.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.save_checked(path, &[])
    }

    /// [`Voice::save`], refusing (`InvalidArgument`) a `path` that is one of `inputs` (e.g.
    /// the reference clip the voice was made from).
    pub fn save_checked(&self, path: &Path, inputs: &[&Path]) -> Result<()> {
        self.check_structure()
            .map_err(|r| Error::invalid_argument("voice", r))?;
        let bytes = self.to_bytes()?;
        crate::output::write_output(path, &bytes, inputs)
    }
}

fn view<'a>(dtype: Dtype, shape: &[usize], data: &'a [u8], name: &str) -> Result<TensorView<'a>> {
    TensorView::new(dtype, shape.to_vec(), data)
        .map_err(|e| Error::internal(format!("voice tensor {name}: {e}")))
}

fn tensor<'a>(st: &'a SafeTensors<'a>, name: &str, path: &Path) -> Result<TensorView<'a>> {
    st.tensor(name)
        .map_err(|_| Error::voice_file(path, format!("missing tensor `{name}`")))
}

fn check_view(
    view: &TensorView<'_>,
    name: &str,
    dtype: Dtype,
    rank: usize,
    path: &Path,
) -> Result<()> {
    if view.dtype() != dtype {
        return Err(Error::voice_file(
            path,
            format!(
                "tensor `{name}` has dtype {:?}, expected {dtype:?}",
                view.dtype()
            ),
        ));
    }
    if view.shape().len() != rank {
        return Err(Error::voice_file(
            path,
            format!(
                "tensor `{name}` has shape {:?}, expected rank {rank}",
                view.shape()
            ),
        ));
    }
    Ok(())
}

fn read_f32(
    st: &SafeTensors<'_>,
    name: &str,
    rank: usize,
    path: &Path,
) -> Result<ndarray::ArrayD<f32>> {
    let view = tensor(st, name, path)?;
    check_view(&view, name, Dtype::F32, rank, path)?;
    let data: Vec<f32> = view
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    ndarray::ArrayD::from_shape_vec(view.shape().to_vec(), data)
        .map_err(|e| Error::voice_file(path, format!("tensor `{name}`: {e}")))
}

fn read_i64(
    st: &SafeTensors<'_>,
    name: &str,
    rank: usize,
    path: &Path,
) -> Result<ndarray::ArrayD<i64>> {
    let view = tensor(st, name, path)?;
    check_view(&view, name, Dtype::I64, rank, path)?;
    let data: Vec<i64> = view
        .data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect();
    ndarray::ArrayD::from_shape_vec(view.shape().to_vec(), data)
        .map_err(|e| Error::voice_file(path, format!("tensor `{name}`: {e}")))
}

fn f32_bytes<D: ndarray::Dimension>(a: &ndarray::Array<f32, D>) -> Vec<u8> {
    a.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn i64_bytes<D: ndarray::Dimension>(a: &ndarray::Array<i64, D>) -> Vec<u8> {
    a.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Voice {
        Voice {
            speaker_emb: Array2::from_shape_fn((1, 256), |(_, j)| j as f32 * 0.01),
            cond_prompt_speech_tokens: Array2::from_shape_fn((1, 7), |(_, j)| j as i64 * 3),
            prompt_token: Array2::from_shape_fn((1, 5), |(_, j)| 6000 + j as i64),
            prompt_feat: Array3::from_shape_fn((1, 10, 80), |(_, i, j)| (i * 80 + j) as f32 - 0.5),
            embedding: Array2::from_shape_fn((1, 192), |(_, j)| -(j as f32)),
        }
    }

    #[test]
    fn round_trip_bytes() {
        let v = sample();
        let bytes = v.to_bytes().unwrap();
        let back = Voice::from_bytes(&bytes, Path::new("mem")).unwrap();
        assert_eq!(v, back);
    }

    #[test]
    fn wrong_frames_rejected() {
        let mut v = sample();
        v.prompt_feat = Array3::zeros((1, 9, 80));
        let bytes = v.to_bytes().unwrap();
        let err = Voice::from_bytes(&bytes, Path::new("v.safetensors")).unwrap_err();
        assert!(err.to_string().contains("gen.prompt_feat"), "{err}");
    }
}
