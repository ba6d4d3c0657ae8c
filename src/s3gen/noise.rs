//! S3Gen's random draws, laid out so that a value belongs to a position, not to a length.
//!
//! The flow's start noise is drawn frame by frame (80 values per mel frame) and HiFT's sine
//! noise sample by sample (one value per harmonic), each from its own ChaCha stream of the
//! request's seed. Asking for more frames or samples only appends draws: frame `f` gets the
//! same noise whether the flow runs over 40 frames or 400. That is what lets a streaming
//! synthesis recompute the flow over a growing token sequence and agree with the
//! non-streamed synthesis of the same seed on every frame they share (`docs/STREAMING.md`).
//! T3's sampling keeps the text chunk's own stream, so streaming cannot change the tokens.

use super::flow::MEL_BINS;
use super::vocoder::HiftDraws;
use crate::rng::EngineRng;

/// ChaCha stream ids: T3 of text chunk `k` uses stream `k`; the flow noise and HiFT's draws
/// of that chunk use `k` with these tags in the high bits.
const FLOW_STREAM_TAG: u64 = 1 << 48;
const HIFT_STREAM_TAG: u64 = 2 << 48;

/// The position-stable draws of one S3Gen run (one text chunk, or one voice-conversion piece).
#[derive(Debug, Clone)]
pub struct S3GenNoise {
    flow_rng: EngineRng,
    /// Frame-major: frame `f`, bin `c` at `f * 80 + c`.
    flow: Vec<f32>,
    hift_rng: EngineRng,
    phase_init: Vec<f32>,
    /// Sample-major: sample `s`, harmonic `h` at `s * harmonics + h`.
    sine: Vec<f32>,
    harmonics: usize,
}

impl S3GenNoise {
    /// The draws of `seed`'s stream `stream` for a HiFT with `harmonics` sine harmonics.
    pub fn new(seed: u64, stream: u64, harmonics: usize) -> S3GenNoise {
        let mut hift_rng = EngineRng::with_stream(seed, HIFT_STREAM_TAG | stream);
        let pi = std::f32::consts::PI;
        let mut phase_init = hift_rng.uniform_vec(harmonics, -pi, pi);
        if let Some(p) = phase_init.first_mut() {
            *p = 0.0;
        }
        S3GenNoise {
            flow_rng: EngineRng::with_stream(seed, FLOW_STREAM_TAG | stream),
            flow: Vec::new(),
            hift_rng,
            phase_init,
            sine: Vec::new(),
            harmonics,
        }
    }

    /// The flow's start noise for `frames` frames, `[80, frames]` (bin-major, as the graph
    /// takes it). Frame `f` always gets the same 80 values.
    pub fn flow_noise(&mut self, frames: usize) -> Vec<f32> {
        draw_up_to(&mut self.flow_rng, &mut self.flow, frames * MEL_BINS);
        transpose(&self.flow, frames, MEL_BINS)
    }

    /// HiFT's draws for `samples` output samples: the initial phases (one set per run) and
    /// the sine noise `[harmonics, samples]`. Sample `s` always gets the same values.
    pub fn hift_draws(&mut self, samples: usize) -> HiftDraws {
        draw_up_to(&mut self.hift_rng, &mut self.sine, samples * self.harmonics);
        HiftDraws {
            phase_init: self.phase_init.clone(),
            sine_noise: transpose(&self.sine, samples, self.harmonics),
        }
    }
}

/// Appends normal draws from `rng` to `drawn` until it holds `n` values.
fn draw_up_to(rng: &mut EngineRng, drawn: &mut Vec<f32>, n: usize) {
    if drawn.len() < n {
        let more = rng.normal_vec(n - drawn.len());
        drawn.extend_from_slice(&more);
    }
}

/// The first `rows x cols` values of row-major `m` ([rows, cols]), transposed: [cols, rows].
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = m[r * cols + c];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_noise_is_stable_per_frame() {
        let mut a = S3GenNoise::new(7, 0, 9);
        let mut b = S3GenNoise::new(7, 0, 9);
        let short = a.flow_noise(5);
        let long = b.flow_noise(12);
        for c in 0..MEL_BINS {
            for f in 0..5 {
                assert_eq!(short[c * 5 + f], long[c * 12 + f]);
            }
        }
        // Asking again (shorter or longer) gives the same values.
        assert_eq!(a.flow_noise(5), short);
        assert_eq!(a.flow_noise(12), long);
    }

    #[test]
    fn hift_draws_are_stable_per_sample() {
        let mut a = S3GenNoise::new(3, 1, 4);
        let mut b = S3GenNoise::new(3, 1, 4);
        let short = a.hift_draws(100);
        let long = b.hift_draws(1000);
        assert_eq!(short.phase_init, long.phase_init);
        assert_eq!(short.phase_init[0], 0.0);
        for k in 0..4 {
            assert_eq!(
                short.sine_noise[k * 100..(k + 1) * 100],
                long.sine_noise[k * 1000..k * 1000 + 100]
            );
        }
    }

    #[test]
    fn streams_and_seeds_differ() {
        let x = S3GenNoise::new(3, 0, 4).flow_noise(3);
        assert_ne!(x, S3GenNoise::new(3, 1, 4).flow_noise(3));
        assert_ne!(x, S3GenNoise::new(4, 0, 4).flow_noise(3));
        // The flow and HiFT streams are not the T3 stream of the same chunk.
        let t3 = EngineRng::with_stream(3, 0).normal_vec(3 * MEL_BINS);
        let mut n = S3GenNoise::new(3, 0, 4);
        n.flow_noise(3);
        assert_ne!(n.flow, t3);
    }
}
