//! Voice conditioning: builds a [`Voice`] from a reference clip the way the
//! reference `ChatterboxTTS.prepare_conditionals` does, and the T3
//! conditioning tensor for an exaggeration.
//!
//! Steps (reference in brackets):
//! 1. the clip at 24 kHz [`librosa.load(sr=24000)`: mono by channel averaging,
//!    soxr "HQ"], and the whole clip at 16 kHz [`librosa.resample`, soxr "HQ"];
//! 2. S3Gen prompt from the first 10 s at 24 kHz [`S3Token2Mel.embed_ref`]:
//!    prompt mel; that crop resampled to 16 kHz [torchaudio `Resample`, a
//!    Hann-windowed sinc] gives the S3 tokens and the CAM++ x-vector; tokens are
//!    truncated to `mel_frames / 2` and the mel to `2 x tokens` frames;
//! 3. T3 prompt: S3 tokens of the first 6 s of the 16 kHz clip, at most 150;
//! 4. VoiceEncoder on the whole 16 kHz clip after silence trimming
//!    (top_db 20) [`VoiceEncoder.embeds_from_wavs`].
//!
//! Turbo (`ChatterboxTurboTTS.prepare_conditionals`) differs only by the bundle's
//! numbers and one step: the clip must be longer than 5 s, the 24 kHz clip is
//! loudness-normalised to -27 LUFS before step 1's 16 kHz copy, and the T3 prompt is
//! the first 15 s (at most 375 tokens).
//!
//! Each resampling uses the reference's algorithm ([`audio::resample`]: libsoxr
//! at librosa's settings; [`audio::resample::resample_sinc`]: torchaudio's
//! kernel), so a voice built here is the reference's voice: on the tiny bundle's
//! goldens (8 to 48 kHz sources, mono and stereo) the speech tokens are equal and
//! the embeddings agree to float rounding (see `tests/pipeline_voices.rs`).

use ndarray::{Array2, Array3};

use crate::audio;
use crate::bundle::{Config, Family, Voice};
use crate::error::{Error, Result};
use crate::limits;
use crate::residency::{Component, Host};
use crate::runtime::Value;
use crate::t3::{self, T3Dims};

/// Shortest reference clip accepted, in seconds.
pub const MIN_VOICE_SECONDS: f64 = 0.5;

/// VoiceEncoder embedding [embed_size] of a 16 kHz clip that is already
/// silence-trimmed (graph `voice_encoder`).
pub fn voice_encoder_embedding(host: &Host, wav_16k_trimmed: &[f32]) -> Result<Vec<f32>> {
    if wav_16k_trimmed.is_empty() {
        return Err(Error::invalid_audio(
            "the reference clip is silent after trimming",
        ));
    }
    let mut out = host.run(
        Component::VoiceEncoder,
        vec![(
            "wav",
            Value::from_f32(&[1, wav_16k_trimmed.len()], wav_16k_trimmed.to_vec())?,
        )],
    )?;
    take_all_f32(&mut out, "embedding")
}

/// S3 speech tokens (25 Hz) of a 16 kHz clip (graph `s3_tokenizer`), at most
/// `max_tokens` when given.
pub fn s3_tokens(host: &Host, wav_16k: &[f32], max_tokens: Option<usize>) -> Result<Vec<i64>> {
    if wav_16k.is_empty() {
        return Err(Error::invalid_audio("empty clip given to the S3 tokenizer"));
    }
    let mut out = host.run(
        Component::S3Tokenizer,
        vec![(
            "wav",
            Value::from_f32(&[1, wav_16k.len()], wav_16k.to_vec())?,
        )],
    )?;
    let v = out.take("tokens")?;
    let mut tokens: Vec<i64> = v.view_i64()?.iter().copied().collect();
    if let Some(m) = max_tokens {
        tokens.truncate(m);
    }
    Ok(tokens)
}

/// CAM++ x-vector [embed_size] of a 16 kHz clip (graph `campplus`).
pub fn xvector(host: &Host, wav_16k: &[f32]) -> Result<Vec<f32>> {
    let mut out = host.run(
        Component::CamPlus,
        vec![(
            "wav",
            Value::from_f32(&[1, wav_16k.len()], wav_16k.to_vec())?,
        )],
    )?;
    take_all_f32(&mut out, "embedding")
}

/// S3Gen prompt mel of a 24 kHz clip (graph `s3gen_mel`): `([frames, bins], frames)`.
pub fn prompt_mel(host: &Host, wav_24k: &[f32], mel_bins: usize) -> Result<(Vec<f32>, usize)> {
    let mut out = host.run(
        Component::S3GenMel,
        vec![(
            "wav",
            Value::from_f32(&[1, wav_24k.len()], wav_24k.to_vec())?,
        )],
    )?;
    let v = out.take("mel")?;
    let shape = v.shape();
    if shape.len() != 3 || shape[0] != 1 || shape[2] != mel_bins {
        return Err(Error::model_mismatch(
            "s3gen_mel",
            format!("output `mel` has shape {shape:?}, expected [1, frames, {mel_bins}]"),
        ));
    }
    let frames = shape[1];
    Ok((crate::t3::f32_vec(&v)?, frames))
}

/// Truncates as the reference `embed_ref`: when the mel is not `per_token x
/// tokens` frames long, the tokens are cut to `mel_frames / per_token`; the mel
/// is kept whole (an odd last frame stays, and the flow uses every prompt frame,
/// as the reference does). Returns the frame count.
pub fn align_prompt(tokens: &mut Vec<i64>, frames: usize, per_token: usize) -> usize {
    if frames != per_token * tokens.len() {
        tokens.truncate(frames / per_token);
    }
    frames
}

/// Checks reference samples: sample rate, length (at least
/// [`MIN_VOICE_SECONDS`], at most [`limits::MAX_VOICE_SECONDS`]) and values
/// (finite, within [`limits::MAX_SAMPLE_MAGNITUDE`]); see [`limits::check_clip`].
pub fn check_reference(samples: &[f32], sample_rate: u32) -> Result<()> {
    limits::check_clip(
        samples,
        sample_rate,
        MIN_VOICE_SECONDS,
        "the reference clip",
    )
}

/// Checks a reference clip against the family's rule: the original model takes
/// any clip of at least [`MIN_VOICE_SECONDS`]; Turbo asserts that the clip is
/// *longer* than `config.voice.min_seconds` (5 s).
pub fn check_reference_for(
    family: Family,
    config: &Config,
    samples: &[f32],
    sample_rate: u32,
) -> Result<()> {
    check_reference(samples, sample_rate)?;
    if family == Family::Turbo {
        let seconds = samples.len() as f64 / f64::from(sample_rate);
        let min = config.voice.min_seconds;
        if seconds <= min {
            return Err(Error::invalid_audio(format!(
                "the reference clip is {seconds:.2} s long; Turbo needs a clip longer than {min} s"
            )));
        }
    }
    Ok(())
}

/// Builds a voice from mono samples at any rate (see the module docs). A bundle
/// with `config.voice.loudness_lufs` (Turbo) first normalises the 24 kHz clip to that
/// integrated loudness, as the reference's `norm_loudness` does.
pub fn build_voice(
    host: &Host,
    family: Family,
    config: &Config,
    samples: &[f32],
    sample_rate: u32,
) -> Result<Voice> {
    check_reference_for(family, config, samples, sample_rate)?;
    let sr24 = config.s3gen.sample_rate;
    let sr16 = config.s3_tokenizer.sample_rate;
    let mut wav_24k = audio::resample(samples, sample_rate, sr24)?;
    if let Some(target) = config.voice.loudness_lufs {
        audio::loudness::normalise(&mut wav_24k, sr24, target, "the reference clip")?;
    }
    let wav_16k = audio::resample(&wav_24k, sr24, sr16)?;
    let gen = s3gen_reference(host, config, &wav_24k)?;

    // T3 prompt: the first 6 s of the whole 16 kHz clip.
    let enc_len = ((config.t3.prompt_seconds * f64::from(sr16)) as usize).min(wav_16k.len());
    let t3_tokens = s3_tokens(host, &wav_16k[..enc_len], Some(config.t3.prompt_max_tokens))?;

    // VoiceEncoder on the whole clip, silence-trimmed.
    let trimmed = audio::trim::trim(&wav_16k, config.voice_encoder.trim_top_db as f32);
    let speaker = voice_encoder_embedding(host, trimmed)?;

    let t3n = t3_tokens.len();
    let voice = Voice {
        speaker_emb: Array2::from_shape_vec((1, speaker.len()), speaker)
            .map_err(|e| Error::internal(e.to_string()))?,
        cond_prompt_speech_tokens: Array2::from_shape_vec((1, t3n), t3_tokens)
            .map_err(|e| Error::internal(e.to_string()))?,
        prompt_token: gen.prompt_token,
        prompt_feat: gen.prompt_feat,
        embedding: gen.embedding,
    };
    voice.validate(config)?;
    Ok(voice)
}

/// S3Gen's conditionals of a voice (reference `S3Gen.embed_ref`, the `gen` dict).
#[derive(Debug, Clone)]
pub struct S3GenReference {
    /// Prompt speech tokens `[1, N]`.
    pub prompt_token: Array2<i64>,
    /// Prompt mel `[1, frames, bins]` (frames = 2N or 2N + 1).
    pub prompt_feat: Array3<f32>,
    /// CAM++ x-vector `[1, 192]`.
    pub embedding: Array2<f32>,
}

impl S3GenReference {
    /// A borrowed view, as [`Voice::s3gen_reference`] gives one.
    pub fn view(&self) -> crate::bundle::voice::S3GenRefView<'_> {
        crate::bundle::voice::S3GenRefView {
            prompt_token: &self.prompt_token,
            prompt_feat: &self.prompt_feat,
            embedding: &self.embedding,
        }
    }
}

/// S3Gen's conditionals from a whole 24 kHz clip (reference `S3Gen.embed_ref` on
/// `wav_24k[:prompt_seconds]`, as `prepare_conditionals` and `ChatterboxVC.set_target_voice`
/// call it): the prompt mel of the crop; that crop resampled to 16 kHz with torchaudio's
/// sinc resampler (not librosa's) gives the S3 tokens and the CAM++ x-vector; tokens are
/// truncated to `mel_frames / 2`.
pub fn s3gen_reference(host: &Host, config: &Config, wav_24k: &[f32]) -> Result<S3GenReference> {
    let sr24 = config.s3gen.sample_rate;
    let sr16 = config.s3_tokenizer.sample_rate;
    let dec_len = ((config.s3gen.prompt_seconds * f64::from(sr24)) as usize).min(wav_24k.len());
    let crop_24k = &wav_24k[..dec_len];
    let crop_16k = audio::resample::resample_sinc(crop_24k, sr24, sr16)?;
    let bins = config.s3gen.mel_bins;
    let (mel, frames) = prompt_mel(host, crop_24k, bins)?;
    let mut prompt_tokens = s3_tokens(host, &crop_16k, None)?;
    let x = xvector(host, &crop_16k)?;
    let frames = align_prompt(
        &mut prompt_tokens,
        frames,
        config.s3gen.mel_frames_per_token,
    );
    let n = prompt_tokens.len();
    Ok(S3GenReference {
        prompt_token: Array2::from_shape_vec((1, n), prompt_tokens)
            .map_err(|e| Error::internal(e.to_string()))?,
        prompt_feat: Array3::from_shape_vec((1, frames, bins), mel)
            .map_err(|e| Error::internal(e.to_string()))?,
        embedding: Array2::from_shape_vec((1, x.len()), x)
            .map_err(|e| Error::internal(e.to_string()))?,
    })
}

/// The T3 conditioning `[cond_len, D]` for `voice` at `exaggeration` (graph
/// `t3_cond`; the prompt tokens are embedded as `speech_emb(t) +
/// speech_pos_emb(0..P)`, reference `T3.prepare_conditioning`).
pub fn t3_cond(host: &Host, dims: &T3Dims, voice: &Voice, exaggeration: f32) -> Result<Vec<f32>> {
    let tokens: Vec<i64> = voice.cond_prompt_speech_tokens.iter().copied().collect();
    let positions: Vec<i64> = (0..tokens.len() as i64).collect();
    let prompt = if tokens.is_empty() {
        Vec::new()
    } else {
        t3::speech_embeds(host, dims, &tokens, &positions)?
    };
    let speaker: Vec<f32> = voice.speaker_emb.iter().copied().collect();
    let mut out = host.run(
        Component::T3Cond,
        vec![
            (
                "speaker_emb",
                Value::from_f32(&[1, speaker.len()], speaker)?,
            ),
            (
                "prompt_embeds",
                Value::from_f32(&[1, tokens.len(), dims.hidden], prompt)?,
            ),
            (
                "exaggeration",
                Value::from_f32(&[1, 1, 1], vec![exaggeration])?,
            ),
        ],
    )?;
    t3::take_f32(&mut out, "t3_cond", "cond", dims.cond_len * dims.hidden)
}

fn take_all_f32(out: &mut crate::runtime::Outputs, name: &str) -> Result<Vec<f32>> {
    let v = out.take(name)?;
    let data = crate::t3::f32_vec(&v)?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_truncates_like_embed_ref() {
        // 7 frames, 4 tokens: tokens cut to 7 // 2 = 3, all 7 frames kept.
        let mut tokens = vec![1, 2, 3, 4];
        assert_eq!(align_prompt(&mut tokens, 7, 2), 7);
        assert_eq!(tokens, vec![1, 2, 3]);
        // Already aligned: nothing changes.
        let mut tokens = vec![1, 2, 3];
        assert_eq!(align_prompt(&mut tokens, 6, 2), 6);
        assert_eq!(tokens, vec![1, 2, 3]);
    }

    #[test]
    fn reference_checks() {
        assert!(check_reference(&[], 16000).is_err());
        assert!(check_reference(&vec![0.0; 7999], 16000).is_err());
        assert!(check_reference(&vec![0.0; 8000], 16000).is_ok());
        let mut v = vec![0.0; 16000];
        v[5] = f32::NAN;
        assert!(check_reference(&v, 16000).is_err());
    }
}
