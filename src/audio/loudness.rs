//! Integrated loudness (ITU-R BS.1770-4 / EBU R128, LUFS) and the loudness
//! normalisation Turbo applies to a reference clip (reference
//! `ChatterboxTurboTTS.norm_loudness`: `pyloudnorm.Meter(sr).integrated_loudness`,
//! then a gain to the target).
//!
//! The meter is the `ebur128` crate (a port of libebur128): K-weighting, 400 ms
//! blocks with 75 % overlap, the -70 LUFS absolute gate and the -10 LU relative
//! gate, as pyloudnorm. The two differ in how the K-weighting filters are derived
//! at a given rate and in how a partial last block is counted, which moves the
//! result by a few hundredths of a dB; `tests/text_audio.rs` states the measured
//! bound against pyloudnorm on the committed clips.

use ebur128::{EbuR128, Mode};

use crate::error::{Error, Result};

/// Integrated loudness of mono `samples` at `sample_rate`, in LUFS. Silence (and a
/// clip whose every block falls under the absolute gate) gives `-inf`.
pub fn integrated_loudness(samples: &[f32], sample_rate: u32) -> Result<f64> {
    let mut meter = EbuR128::new(1, sample_rate, Mode::I)
        .map_err(|e| Error::invalid_audio(format!("loudness meter at {sample_rate} Hz: {e}")))?;
    // Feed in pieces so the meter never needs more than its own block buffers.
    for piece in samples.chunks(1 << 16) {
        meter
            .add_frames_f32(piece)
            .map_err(|e| Error::internal(format!("loudness meter: {e}")))?;
    }
    meter
        .loudness_global()
        .map_err(|e| Error::internal(format!("loudness meter: {e}")))
}

/// The linear gain that takes a clip of `loudness` LUFS to `target` LUFS, as the
/// reference computes it (`10 ** ((target - loudness) / 20)`); `None` where the
/// reference skips the gain (it is not finite or not positive, e.g. for silence).
pub fn normalising_gain(loudness: f64, target: f64) -> Option<f64> {
    let gain = 10f64.powf((target - loudness) / 20.0);
    (gain.is_finite() && gain > 0.0).then_some(gain)
}

/// Normalises `samples` in place to `target` LUFS and returns the measured loudness.
/// Errors (`InvalidAudio`, naming `what`) when the clip is silent (loudness `-inf`):
/// the reference would then skip the gain and build a voice from silence.
pub fn normalise(samples: &mut [f32], sample_rate: u32, target: f64, what: &str) -> Result<f64> {
    let loudness = integrated_loudness(samples, sample_rate)?;
    let gain = normalising_gain(loudness, target).ok_or_else(|| {
        Error::invalid_audio(format!(
            "{what} is silent (integrated loudness {loudness} LUFS); it cannot be normalised to {target} LUFS"
        ))
    })?;
    // numpy: float32 samples times a Python float stay float32.
    let g = gain as f32;
    for s in samples.iter_mut() {
        *s *= g;
    }
    Ok(loudness)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sine_at_known_level() {
        // A 997 Hz full-scale sine reads about -3.01 LUFS (BS.1770 reference signal).
        let sr = 48000;
        let x: Vec<f32> = (0..sr * 5)
            .map(|i| (2.0 * std::f64::consts::PI * 997.0 * i as f64 / sr as f64).sin() as f32)
            .collect();
        let l = integrated_loudness(&x, sr as u32).unwrap();
        assert!((l - -3.01).abs() < 0.05, "{l}");
    }

    #[test]
    fn silence_is_minus_infinity_and_refused() {
        let mut z = vec![0f32; 24000 * 6];
        assert_eq!(integrated_loudness(&z, 24000).unwrap(), f64::NEG_INFINITY);
        assert!(normalising_gain(f64::NEG_INFINITY, -27.0).is_none());
        let e = normalise(&mut z, 24000, -27.0, "the reference clip").unwrap_err();
        assert!(e.to_string().contains("silent"), "{e}");
    }

    #[test]
    fn normalise_reaches_target() {
        let sr = 24000u32;
        let mut x: Vec<f32> = (0..sr * 6)
            .map(|i| 0.05 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / sr as f32).sin())
            .collect();
        normalise(&mut x, sr, -27.0, "clip").unwrap();
        let after = integrated_loudness(&x, sr).unwrap();
        assert!((after - -27.0).abs() < 0.01, "{after}");
    }
}
