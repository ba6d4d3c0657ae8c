//! Leading/trailing silence removal, `librosa.effects.trim` exactly.
//!
//! librosa (0.11) computes the frame RMS with `frame_length` 2048 and `hop_length` 512 on the
//! signal zero-padded by `frame_length / 2` on both sides (`center=True`,
//! `pad_mode="constant"`), so there are `1 + len / hop` frames. Each frame's level is
//! `10 log10(max(1e-10, rms^2)) - 10 log10(max(1e-10, max_rms^2))` dB (`amplitude_to_db` with
//! `ref=np.max`, `amin=1e-5`); frames above `-top_db` are non-silent. The kept interval runs
//! from `first * hop` to `min(len, (last + 1) * hop)`; with no non-silent frame it is empty.

/// librosa's default analysis frame length (samples).
pub const FRAME_LENGTH: usize = 2048;
/// librosa's default hop length (samples).
pub const HOP_LENGTH: usize = 512;

/// The `[start, end)` sample interval `librosa.effects.trim(y, top_db)` keeps (default
/// frame and hop lengths).
pub fn trim_interval(samples: &[f32], top_db: f32) -> (usize, usize) {
    trim_interval_with(samples, top_db, FRAME_LENGTH, HOP_LENGTH)
}

/// The trimmed slice of `samples` (see [`trim_interval`]).
pub fn trim(samples: &[f32], top_db: f32) -> &[f32] {
    let (start, end) = trim_interval(samples, top_db);
    &samples[start..end]
}

/// [`trim_interval`] with explicit frame and hop lengths (both >= 1).
pub fn trim_interval_with(
    samples: &[f32],
    top_db: f32,
    frame_length: usize,
    hop_length: usize,
) -> (usize, usize) {
    let frame_length = frame_length.max(1);
    let hop = hop_length.max(1);
    let n = samples.len();
    let half = frame_length / 2;
    let padded_len = n + 2 * half;
    if padded_len < frame_length {
        return (0, 0);
    }
    let frames = 1 + (padded_len - frame_length) / hop;

    // Mean square per frame, with a running prefix sum of squares over the padded signal.
    let mut prefix = Vec::with_capacity(n + 1);
    prefix.push(0.0f64);
    let mut acc = 0.0f64;
    for &x in samples {
        acc += x as f64 * x as f64;
        prefix.push(acc);
    }
    // Sum of squares of padded[a..b] = samples[a - half .. b - half] clipped to the signal.
    let sum_sq = |a: usize, b: usize| -> f64 {
        let lo = a.saturating_sub(half).min(n);
        let hi = b.saturating_sub(half).min(n);
        if hi > lo {
            prefix[hi] - prefix[lo]
        } else {
            0.0
        }
    };
    let power: Vec<f64> = (0..frames)
        .map(|f| {
            let a = f * hop;
            sum_sq(a, a + frame_length).max(0.0) / frame_length as f64
        })
        .collect();

    let amin = 1e-10f64;
    let max_power = power.iter().copied().fold(0.0f64, f64::max);
    let ref_db = 10.0 * max_power.max(amin).log10();
    let threshold = -(top_db as f64);
    let is_loud = |p: f64| 10.0 * p.max(amin).log10() - ref_db > threshold;

    let first = power.iter().position(|&p| is_loud(p));
    let last = power.iter().rposition(|&p| is_loud(p));
    match (first, last) {
        (Some(a), Some(b)) => (a * hop, n.min((b + 1) * hop)),
        _ => (0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn tone(n: usize, freq: f64, amp: f64) -> Vec<f32> {
        (0..n)
            .map(|i| (amp * (2.0 * PI * freq * i as f64 / 16_000.0).sin()) as f32)
            .collect()
    }

    const TRIM_A: (usize, usize) = (4096, 14336);
    const TRIM_B: (usize, usize) = (2048, 14336);
    const TRIM_C: (usize, usize) = (0, 1000);
    // All-zero input: every frame is 0 dB relative to a zero maximum, so librosa keeps all.
    const TRIM_D: (usize, usize) = (0, 4000);
    const TRIM_E: (usize, usize) = (9216, 11264);
    const TRIM_B40: (usize, usize) = (512, 16001);

    #[test]
    fn matches_librosa() {
        // Expected intervals from librosa 0.11 `effects.trim(y, top_db=20)[1]` in the venv
        // on the same synthetic signals (built identically with numpy, float32).
        let mut a = vec![0.0f32; 5000];
        a.extend(tone(8000, 440.0, 0.5));
        a.extend(vec![0.0f32; 7000]);
        assert_eq!(trim_interval(&a, 20.0), TRIM_A);

        let mut b = tone(3000, 220.0, 0.01);
        b.extend(tone(10_000, 220.0, 0.8));
        b.extend(tone(3001, 220.0, 0.05));
        assert_eq!(trim_interval(&b, 20.0), TRIM_B);

        let c = tone(1000, 300.0, 0.3);
        assert_eq!(trim_interval(&c, 20.0), TRIM_C);

        let d = vec![0.0f32; 4000];
        assert_eq!(trim_interval(&d, 20.0), TRIM_D);

        let mut e = vec![0.0f32; 20_000];
        e[10_000] = 1.0;
        assert_eq!(trim_interval(&e, 20.0), TRIM_E);
        assert_eq!(trim_interval(&b, 40.0), TRIM_B40);
    }

    #[test]
    fn edge_cases() {
        assert_eq!(trim_interval(&[], 20.0), (0, 0));
        assert_eq!(trim(&[0.5], 20.0), &[0.5]);
    }
}
