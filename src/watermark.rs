//! Perth implicit watermark (reference `PerthImplicitWatermarker.apply_watermark`):
//! resample 24 kHz -> 32 kHz (librosa's soxr "HQ", as the reference:
//! [`audio::resample`]), run the `perth` graph (STFT, energy mask, encoder
//! residual, iSTFT), resample the graph's output back the same way and keep the
//! input's length.

use crate::audio;
use crate::error::{Error, Result};
use crate::residency::{Component, Host};
use crate::runtime::Value;

/// Shortest 32 kHz input given to the graph: its STFT (n_fft 2048, centred,
/// reflect padding) needs more than `n_fft / 2` samples; shorter signals are
/// zero-padded to this length and cut back afterwards.
pub const MIN_GRAPH_SAMPLES: usize = 2049;

/// Runs the `perth` graph on a 32 kHz signal. Like the reference, the output
/// covers whole STFT hops only (`320 x floor(n / 320)` samples), never more
/// than the input.
pub fn perth_32k(host: &Host, wav_32k: &[f32]) -> Result<Vec<f32>> {
    let n = wav_32k.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut input = wav_32k.to_vec();
    if input.len() < MIN_GRAPH_SAMPLES {
        input.resize(MIN_GRAPH_SAMPLES, 0.0);
    }
    let len = input.len();
    let mut out = host.run(
        Component::Perth,
        vec![("wav", Value::from_f32(&[1, len], input)?)],
    )?;
    let v = out.take("wav_out")?;
    let mut wav: Vec<f32> = crate::t3::f32_vec(&v)?;
    if wav.len() > len {
        return Err(Error::model_mismatch(
            "perth",
            format!(
                "output `wav_out` has {} samples for an input of {len}",
                wav.len()
            ),
        ));
    }
    wav.truncate(n);
    Ok(wav)
}

/// Watermarks a signal at `sample_rate` through the graph's rate `perth_rate`.
/// The result has exactly the input's length: the few tail samples the graph
/// does not cover (less than one 10 ms hop) keep their original values.
pub fn apply(host: &Host, wav: &[f32], sample_rate: u32, perth_rate: u32) -> Result<Vec<f32>> {
    if wav.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = if sample_rate == perth_rate {
        perth_32k(host, wav)?
    } else {
        let up = audio::resample(wav, sample_rate, perth_rate)?;
        let marked = perth_32k(host, &up)?;
        drop(up);
        audio::resample(&marked, perth_rate, sample_rate)?
    };
    out.truncate(wav.len());
    let covered = out.len();
    out.extend_from_slice(&wav[covered..]);
    Ok(out)
}
