//! HiFT vocoder (mel -> 24 kHz wav) with its random draws made by the engine,
//! then the reference's 40 ms trim-fade.

use crate::error::{Error, Result};
use crate::residency::{Component, Host};
use crate::runtime::Value;

use super::flow::MEL_BINS;

/// The random inputs of HiFT's sine source (reference `SineGen.forward`); the engine
/// draws them with [`super::noise::S3GenNoise::hift_draws`].
pub struct HiftDraws {
    /// Initial phases [harmonics], uniform in [-pi, pi), harmonic 0 set to 0.
    pub phase_init: Vec<f32>,
    /// Standard-normal noise [harmonics, samples] (row-major).
    pub sine_noise: Vec<f32>,
}

/// Runs `hift` on `mel` [80, frames] with the given draws; returns the
/// waveform (480 samples per frame at 24 kHz, before the trim-fade).
pub fn hift(host: &Host, mel: &[f32], frames: usize, draws: HiftDraws) -> Result<Vec<f32>> {
    let harmonics = draws.phase_init.len();
    if mel.len() != MEL_BINS * frames
        || harmonics == 0
        || !draws.sine_noise.len().is_multiple_of(harmonics)
    {
        return Err(Error::internal("hift inputs have inconsistent sizes"));
    }
    let samples = draws.sine_noise.len() / harmonics;
    let mut out = host.run(
        Component::Hift,
        vec![
            (
                "mel",
                Value::from_f32(&[1, MEL_BINS, frames], mel.to_vec())?,
            ),
            (
                "phase_init",
                Value::from_f32(&[1, harmonics, 1], draws.phase_init)?,
            ),
            (
                "sine_noise",
                Value::from_f32(&[1, harmonics, samples], draws.sine_noise)?,
            ),
        ],
    )?;
    let wav = out.take("wav")?;
    let wav: Vec<f32> = crate::t3::f32_vec(&wav)?;
    if wav.len() != samples {
        return Err(Error::model_mismatch(
            "hift",
            format!("output `wav` has {} samples, expected {samples}", wav.len()),
        ));
    }
    Ok(wav)
}

/// The reference's trim-fade window: `zeros` zero samples, then `fade`
/// samples of `(cos(linspace(pi, 0, fade)) + 1) / 2`.
pub fn trim_fade_window(zeros: usize, fade: usize) -> Vec<f32> {
    let mut w = vec![0f32; zeros + fade];
    let pi = std::f32::consts::PI;
    for k in 0..fade {
        let x = if fade > 1 {
            pi - pi * k as f32 / (fade - 1) as f32
        } else {
            pi
        };
        w[zeros + k] = (x.cos() + 1.0) / 2.0;
    }
    w
}

/// Multiplies the start of `wav` by the trim-fade window (reference
/// `output_wavs[:, :len(trim_fade)] *= trim_fade`).
pub fn apply_trim_fade(wav: &mut [f32], window: &[f32]) {
    for (s, w) in wav.iter_mut().zip(window) {
        *s *= w;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_fade_shape() {
        let w = trim_fade_window(480, 480);
        assert_eq!(w.len(), 960);
        assert!(w[..480].iter().all(|&v| v == 0.0));
        assert!(w[480].abs() < 1e-7);
        assert!((w[959] - 1.0).abs() < 1e-7);
        let mut x = vec![1.0f32; 1000];
        apply_trim_fade(&mut x, &w);
        assert_eq!(x[999], 1.0);
        assert_eq!(x[100], 0.0);
    }
}
