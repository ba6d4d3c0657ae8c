//! Fades: the S3Gen output trim-fade of the reference, and joins between chunks.
//!
//! The reference (`S3Token2Wav`, `models/s3gen/s3gen.py`) multiplies the first 40 ms of
//! every generated waveform by `trim_fade`: 20 ms (`sr / 50` samples, 480 at 24 kHz) of
//! zeros, then a 20 ms raised cosine `(cos(linspace(pi, 0, n)) + 1) / 2` that runs from
//! exactly 0 to exactly 1 (`torch.linspace` includes both ends). This removes "spill-over"
//! from the reference clip.
//!
//! Chunks of a long text are joined with [`crossfade_append`]: an equal-power (sine/cosine)
//! crossfade, 10 ms by default ([`DEFAULT_CROSSFADE_SECONDS`]). Each chunk already starts
//! with the 20 ms of trim-fade silence, so in practice the previous chunk's tail fades out
//! over the next chunk's leading zeros: no click, no doubled energy, and the join shortens
//! the audio by the overlap only.

/// The crossfade length used between chunks.
pub const DEFAULT_CROSSFADE_SECONDS: f32 = 0.01;

/// The reference `trim_fade` window for `n_trim` samples: `n_trim` zeros followed by an
/// `n_trim`-sample raised-cosine fade-in from 0 to 1 (`2 * n_trim` values).
pub fn trim_fade_window(n_trim: usize) -> Vec<f32> {
    let mut w = vec![0.0f32; 2 * n_trim];
    for (i, v) in w[n_trim..].iter_mut().enumerate() {
        let phase = linspace_point(std::f64::consts::PI, 0.0, n_trim, i);
        *v = ((phase.cos() + 1.0) / 2.0) as f32;
    }
    w
}

/// Applies the reference trim-fade in place: the first `sample_rate / 50` samples are
/// zeroed and the next `sample_rate / 50` fade in (20 ms each). Shorter audio gets the
/// part of the window that overlaps it.
pub fn apply_trim_fade(samples: &mut [f32], sample_rate: u32) {
    let w = trim_fade_window((sample_rate / 50) as usize);
    for (x, g) in samples.iter_mut().zip(w) {
        *x *= g;
    }
}

/// Appends `next` to `out` with an equal-power crossfade over `overlap` samples (clipped to
/// the shorter of the two): the tail of `out` is scaled by `cos(pi/2 * t)`, the head of
/// `next` by `sin(pi/2 * t)`, `t = (k + 0.5) / overlap`, and the two are summed.
/// `overlap = 0` concatenates.
pub fn crossfade_append(out: &mut Vec<f32>, next: &[f32], overlap: usize) {
    let overlap = overlap.min(out.len()).min(next.len());
    let start = out.len() - overlap;
    for k in 0..overlap {
        let t = (k as f64 + 0.5) / overlap as f64;
        let angle = std::f64::consts::FRAC_PI_2 * t;
        let a = angle.cos() as f32;
        let b = angle.sin() as f32;
        out[start + k] = out[start + k] * a + next[k] * b;
    }
    out.extend_from_slice(&next[overlap..]);
}

/// Fades the last `n` samples out with a half raised cosine (1 to 0).
pub fn fade_out(samples: &mut [f32], n: usize) {
    let n = n.min(samples.len());
    let start = samples.len() - n;
    for (k, x) in samples[start..].iter_mut().enumerate() {
        let t = (k as f64 + 1.0) / n as f64;
        *x *= ((1.0 + (std::f64::consts::PI * t).cos()) / 2.0) as f32;
    }
}

/// The raised-cosine cross-fade of `from` into `into` (equal lengths), written to `into`:
/// the first sample is (almost) `from`, the last (almost) `into`.
pub fn crossfade(from: &[f32], into: &mut [f32]) {
    let n = into.len();
    for (i, (y, &x)) in into.iter_mut().zip(from).enumerate() {
        let w = 0.5 - 0.5 * (std::f32::consts::PI * (i as f32 + 0.5) / n as f32).cos();
        *y = (1.0 - w) * x + w * *y;
    }
}

/// Point `i` of `torch.linspace(start, end, steps)`: both ends exact, computed from the
/// nearer end as torch does.
fn linspace_point(start: f64, end: f64, steps: usize, i: usize) -> f64 {
    if steps <= 1 {
        return start;
    }
    let step = (end - start) / (steps - 1) as f64;
    if i < steps / 2 {
        start + step * i as f64
    } else {
        end - step * (steps - 1 - i) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossfade_is_a_convex_join() {
        let mut into = vec![1.0f32; 960];
        let from = vec![-1.0f32; 960];
        crossfade(&from, &mut into);
        assert!(into[0] < -0.99 && into[959] > 0.99);
        assert!(into.windows(2).all(|p| p[1] >= p[0]));
        assert!(into.iter().all(|x| x.abs() <= 1.0));
        assert!((into[479] + into[480]).abs() < 1e-5);
    }

    #[test]
    fn trim_fade_matches_torch() {
        // (cos(torch.linspace(torch.pi, 0, 480)) + 1) / 2 in float32 (torch 2.6).
        let expected: [(usize, f32); 10] = [
            (0, 0.0),
            (1, 1.075_863_8e-5),
            (2, 4.300_475e-5),
            (100, 0.103_739_62),
            (239, 0.498_360_3),
            (240, 0.501_639_66),
            (241, 0.504_918_9),
            (400, 0.934_372_6),
            (478, 0.999_989_3),
            (479, 1.0),
        ];
        let w = trim_fade_window(480);
        assert_eq!(w.len(), 960);
        assert!(w[..480].iter().all(|&x| x == 0.0));
        for (i, e) in expected {
            assert!((w[480 + i] - e).abs() < 1e-6, "[{i}] {} vs {e}", w[480 + i]);
        }
    }

    #[test]
    fn apply_in_place() {
        let mut x = vec![1.0f32; 2000];
        apply_trim_fade(&mut x, 24_000);
        assert!(x[..480].iter().all(|&v| v == 0.0));
        assert_eq!(x[480], 0.0);
        assert_eq!(x[959], 1.0);
        assert!(x[960..].iter().all(|&v| v == 1.0));
        let mut short = vec![1.0f32; 500];
        apply_trim_fade(&mut short, 24_000);
        assert_eq!(short.len(), 500);
        assert_eq!(short[499], trim_fade_window(480)[499]);
    }

    #[test]
    fn crossfade_is_smooth_and_equal_power() {
        let mut a = vec![1.0f32; 1000];
        let b = vec![1.0f32; 1000];
        crossfade_append(&mut a, &b, 240);
        assert_eq!(a.len(), 1760);
        // Equal power: a^2 + b^2 = 1 at every point of the overlap.
        for k in 0..240 {
            let t = (k as f64 + 0.5) / 240.0;
            let (c, s) = (
                (std::f64::consts::FRAC_PI_2 * t).cos(),
                (std::f64::consts::FRAC_PI_2 * t).sin(),
            );
            assert!((c * c + s * s - 1.0).abs() < 1e-12);
        }
        // No jumps larger than the signal's own steps.
        let mut x: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.01).sin()).collect();
        let y: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.01 + 2.0).sin()).collect();
        crossfade_append(&mut x, &y, 240);
        let max_step = x
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0.0f32, f32::max);
        assert!(max_step < 0.03, "{max_step}");
        // Overlap is clipped; zero overlap concatenates.
        let mut e = vec![];
        crossfade_append(&mut e, &[1.0, 2.0], 10);
        assert_eq!(e, vec![1.0, 2.0]);
        crossfade_append(&mut e, &[3.0], 0);
        assert_eq!(e, vec![1.0, 2.0, 3.0]);
    }

    #[test]
    fn fade_out_ends_at_zero() {
        let mut x = vec![1.0f32; 100];
        fade_out(&mut x, 10);
        assert_eq!(x[89], 1.0);
        assert!(x[99].abs() < 1e-7);
        assert!(x[90] < 1.0 && x[90] > 0.9);
    }
}
