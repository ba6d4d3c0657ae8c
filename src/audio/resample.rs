//! Resampling, the two ways the reference resamples.
//!
//! - [`resample`] is `librosa.resample(x, orig_sr, target_sr)` with its default
//!   `res_type="soxr_hq"` (librosa 0.11 through python-soxr 1.1): libsoxr (built from the
//!   source vendored in the `soxr-sys` crate), float32 in and out, quality recipe `SOXR_HQ`
//!   (20-bit precision, linear phase, single-precision engine), flags 0, default runtime
//!   spec; the input fed in python-soxr's chunks of `48000 * from / to` frames, then one
//!   flush into an output buffer of `len * to / from + 1` frames; and the result cut or
//!   zero-padded to `ceil(len * to / from)` samples as librosa does (`fix_length`). The
//!   reference uses it for `librosa.load(path, sr=24000)`, the 24 -> 16 kHz T3 / VoiceEncoder
//!   path and Perth's 24 <-> 32 kHz round trip.
//! - [`resample_sinc`] is `torchaudio.functional.resample` with its defaults (what
//!   `torchaudio.transforms.Resample` runs; torchaudio 2.6): a Hann-windowed sinc of
//!   `lowpass_filter_width` 6 zero crossings at rolloff 0.99, its kernel computed in f64 and
//!   rounded to f32, applied as a strided convolution. The reference uses it in
//!   `S3Gen.embed_ref` for the 16 kHz copy of the 10 s prompt.
//!
//! Numerics: python-soxr's wheel picks libsoxr's SIMD single-precision engine (`cr32s`,
//! PFFFT) on x86; `soxr-sys` builds the scalar one (`cr32`, Ooura FFT). Same filter design
//! and algorithm, so the outputs differ by float rounding only: at most 6e-7 absolute,
//! relative L2 3e-7, on the golden clip's 22.05 -> 24, 24 -> 16 and 24 -> 32 kHz steps.
//! (python-soxr forced onto the scalar engine, `SOXR_USE_SIMD=0`, gives exactly the output
//! here, bit for bit.) [`resample_sinc`] has torchaudio's kernel bit for bit; it accumulates
//! each output in f64 and rounds once, where torch's f32 convolution rounds as it goes: at
//! most 1.2e-7 apart.

use std::ffi::CStr;
use std::os::raw::c_char;

use crate::error::{Error, Result};

/// The output length of [`resample`] for `len` input samples: `ceil(len * (to / from))`
/// in f64, exactly like librosa.
pub fn resampled_len(len: usize, from: u32, to: u32) -> usize {
    if from == to {
        return len;
    }
    let ratio = to as f64 / from as f64;
    (len as f64 * ratio).ceil() as usize
}

fn check_rates(from: u32, to: u32) -> Result<()> {
    if from == 0 {
        return Err(Error::invalid_argument(
            "sample_rate",
            "input sample rate is 0",
        ));
    }
    if to == 0 {
        return Err(Error::invalid_argument(
            "sample_rate",
            "output sample rate is 0",
        ));
    }
    Ok(())
}

/// `librosa.resample(samples, orig_sr=from, target_sr=to)` (soxr "HQ"; see the module
/// docs). Returns a copy when the rates are equal. Errors (`InvalidArgument`) for a zero
/// rate.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>> {
    check_rates(from, to)?;
    if from == to {
        return Ok(samples.to_vec());
    }
    let n_out = resampled_len(samples.len(), from, to);
    let mut out = soxr_hq(samples, f64::from(from), f64::from(to))?;
    out.resize(n_out, 0.0);
    Ok(out)
}

/// An owned libsoxr resampler.
struct Soxr(soxr_sys::soxr_t);

impl Drop for Soxr {
    fn drop(&mut self) {
        // SAFETY: created by soxr_create, deleted once.
        unsafe { soxr_sys::soxr_delete(self.0) }
    }
}

fn soxr_message(e: soxr_sys::soxr_error_t) -> String {
    if e.is_null() {
        return "unknown error".into();
    }
    // SAFETY: libsoxr's errors are static NUL-terminated strings.
    unsafe { CStr::from_ptr(e as *const c_char) }
        .to_string_lossy()
        .into_owned()
}

/// Serialises every use of libsoxr. Its FFT tables are a process-wide cache that a
/// resampler grows on demand, guarded by locks that are no-ops without OpenMP (how
/// `soxr-sys` builds it): two threads resampling at once could race on it.
static SOXR_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// python-soxr's `csoxr_divide_proc<float>` for one channel: what `soxr.resample(x, from,
/// to, "HQ")` returns (before librosa's length fix).
fn soxr_hq(x: &[f32], from: f64, to: f64) -> Result<Vec<f32>> {
    let _serial = SOXR_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let fail = |what: &str, e| {
        Error::internal(format!(
            "libsoxr {what} ({from} -> {to} Hz): {}",
            soxr_message(e)
        ))
    };
    // SAFETY: plain-data specs; the pointers passed live for the calls; every buffer length
    // given to soxr_process is the length of the memory behind the pointer.
    unsafe {
        let io = soxr_sys::soxr_io_spec(
            soxr_sys::soxr_datatype_t_SOXR_FLOAT32_I,
            soxr_sys::soxr_datatype_t_SOXR_FLOAT32_I,
        );
        let quality = soxr_sys::soxr_quality_spec(c_ulong_of(soxr_sys::SOXR_20_BITQ), 0);
        let mut err: soxr_sys::soxr_error_t = std::ptr::null();
        let handle = soxr_sys::soxr_create(from, to, 1, &mut err, &io, &quality, std::ptr::null());
        if !err.is_null() || handle.is_null() {
            if !handle.is_null() {
                soxr_sys::soxr_delete(handle);
            }
            return Err(fail("create", err));
        }
        let soxr = Soxr(handle);

        let ilen = x.len();
        // C++ `size_t(ilen * out_rate / in_rate + 1)` and `size_t(48000 * in_rate / out_rate)`.
        let olen = (ilen as f64 * to / from + 1.0) as usize;
        let chunk = ((48000.0 * from / to) as usize).max(1);
        let mut y = vec![0.0f32; olen];
        let mut pos = 0usize;
        let mut done = 0usize;
        let mut idx = 0usize;
        while idx < ilen {
            let n = chunk.min(ilen - idx);
            let e = soxr_sys::soxr_process(
                soxr.0,
                x.as_ptr().add(idx).cast(),
                n,
                std::ptr::null_mut(),
                y.as_mut_ptr().add(pos).cast(),
                olen - pos,
                &mut done,
            );
            if !e.is_null() {
                return Err(fail("process", e));
            }
            pos += done;
            idx += chunk;
        }
        let e = soxr_sys::soxr_process(
            soxr.0,
            std::ptr::null(),
            0,
            std::ptr::null_mut(),
            y.as_mut_ptr().add(pos).cast(),
            olen - pos,
            &mut done,
        );
        if !e.is_null() {
            return Err(fail("flush", e));
        }
        pos += done;
        y.truncate(pos);
        Ok(y)
    }
}

/// `unsigned long` from a recipe constant (the binding's constants are `u32`).
fn c_ulong_of(v: u32) -> std::os::raw::c_ulong {
    std::os::raw::c_ulong::from(v)
}

/// Zero crossings of the sinc on each side (`lowpass_filter_width`, torchaudio's default).
const SINC_ZERO_CROSSINGS: usize = 6;
/// Cutoff as a fraction of the lower Nyquist frequency (`rolloff`, torchaudio's default).
const SINC_ROLLOFF: f64 = 0.99;

/// The kernel of [`resample_sinc`] for rates reduced by their gcd to `orig` -> `new`:
/// `new` phases of `2 width + orig` taps each (row-major), and `width`. Computed as
/// torchaudio's `_get_sinc_resample_kernel` (f64, `sinc_interp_hann`), then rounded to f32.
pub fn sinc_kernel(orig: usize, new: usize) -> (Vec<f32>, usize) {
    let lpw = SINC_ZERO_CROSSINGS as f64;
    let base_freq = orig.min(new) as f64 * SINC_ROLLOFF;
    let width = (lpw * orig as f64 / base_freq).ceil() as usize;
    let taps = 2 * width + orig;
    let scale = base_freq / orig as f64;
    let mut kernel = Vec::with_capacity(new * taps);
    for j in 0..new {
        // `arange(0, -new, -1) / new` is an integer tensor divided in f32 (torch's default
        // float type), then promoted to f64 when added to the f64 `idx`.
        let phase = f64::from(-(j as f32) / new as f32);
        for i in 0..taps {
            let idx = (i as f64 - width as f64) / orig as f64;
            let mut t = (phase + idx) * base_freq;
            t = t.clamp(-lpw, lpw);
            let c = (t * std::f64::consts::PI / lpw / 2.0).cos();
            let window = c * c;
            let t = t * std::f64::consts::PI;
            let sinc = if t == 0.0 { 1.0 } else { t.sin() / t };
            kernel.push((sinc * (window * scale)) as f32);
        }
    }
    (kernel, width)
}

/// `torchaudio.functional.resample(samples, from, to)` with its defaults (see the module
/// docs): zero padding of `width` before and `width + orig` after, a stride-`orig`
/// convolution with each of the `new` phases, the phases interleaved, and the result cut
/// to `ceil(new * len / orig)` (that quotient taken in f32, as torch does). Returns a copy
/// when the rates are equal.
pub fn resample_sinc(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>> {
    check_rates(from, to)?;
    if from == to {
        return Ok(samples.to_vec());
    }
    let g = gcd(u64::from(from), u64::from(to));
    let orig = (u64::from(from) / g) as usize;
    let new = (u64::from(to) / g) as usize;
    let (kernel, width) = sinc_kernel(orig, new);
    let taps = 2 * width + orig;
    let len = samples.len();
    let target = ((new as f64 * len as f64 / orig as f64) as f32).ceil() as usize;
    // Conv1d output frames over the padded signal of `len + 2 width + orig` samples.
    let frames = len / orig + 1;
    let mut out = Vec::with_capacity(target.min(frames * new));
    // Input index of padded position p is p - width.
    'frames: for k in 0..frames {
        let start = (k * orig) as isize - width as isize;
        for phase in kernel.chunks_exact(taps) {
            if out.len() == target {
                break 'frames;
            }
            let mut acc = 0.0f64;
            for (i, &h) in phase.iter().enumerate() {
                let p = start + i as isize;
                if p >= 0 && (p as usize) < len {
                    acc += f64::from(h) * f64::from(samples[p as usize]);
                }
            }
            out.push(acc as f32);
        }
    }
    Ok(out)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn sine(freq: f64, sr: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (2.0 * PI * freq * i as f64 / sr as f64).sin() as f32)
            .collect()
    }

    /// Max abs difference against the analytic sine, away from the edges.
    fn max_err(y: &[f32], freq: f64, sr: u32, edge: usize) -> f64 {
        y.iter()
            .enumerate()
            .skip(edge)
            .take(y.len().saturating_sub(2 * edge))
            .map(|(i, &v)| (v as f64 - (2.0 * PI * freq * i as f64 / sr as f64).sin()).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn soxr_keeps_phase_and_amplitude() {
        for (f, from, to, n) in [
            (440.0, 44_100, 16_000, 11_025),
            (1_000.0, 8_000, 24_000, 8_001),
            (3_000.0, 192_000, 16_000, 24_007),
            (5_000.0, 22_050, 24_000, 22_050),
            (300.0, 11_025, 16_001, 5_000),
        ] {
            let x = sine(f, from, n);
            let y = resample(&x, from, to).unwrap();
            assert_eq!(y.len(), resampled_len(n, from, to));
            let e = max_err(&y, f, to, to as usize / 40);
            assert!(e < 1e-4, "{from} -> {to}: max error {e}");
        }
    }

    #[test]
    fn sinc_keeps_phase_and_amplitude() {
        for (f, from, to, n) in [
            (440.0, 24_000, 16_000, 12_000),
            (1_000.0, 16_000, 24_000, 8_001),
            (2_000.0, 44_100, 16_000, 22_050),
        ] {
            let x = sine(f, from, n);
            let y = resample_sinc(&x, from, to).unwrap();
            let want = ((to as f64 * n as f64) / from as f64).ceil() as usize;
            assert_eq!(y.len(), want);
            // Hann window, 6 zero crossings: about -40 dB of passband ripple.
            let e = max_err(&y, f, to, to as usize / 40);
            assert!(e < 2e-2, "{from} -> {to}: max error {e}");
        }
    }

    #[test]
    fn concurrent_calls_give_the_sequential_results() {
        let x = sine(700.0, 48_000, 48_000);
        let pairs = [
            (48_000, 16_000),
            (48_000, 44_100),
            (48_000, 8_000),
            (48_000, 96_000),
        ];
        let want: Vec<Vec<f32>> = pairs
            .iter()
            .map(|&(a, b)| resample(&x, a, b).unwrap())
            .collect();
        std::thread::scope(|s| {
            let handles: Vec<_> = pairs
                .iter()
                .map(|&(a, b)| {
                    let x = &x;
                    s.spawn(move || resample(x, a, b).unwrap())
                })
                .collect();
            for (h, w) in handles.into_iter().zip(&want) {
                assert_eq!(&h.join().unwrap(), w);
            }
        });
    }

    #[test]
    fn removes_content_above_the_new_nyquist() {
        // 10 kHz is above 8 kHz (16 kHz Nyquist): it must be filtered out, not aliased.
        let x = sine(10_000.0, 48_000, 12_000);
        let y = resample(&x, 48_000, 16_000).unwrap();
        let peak = y[400..y.len() - 400]
            .iter()
            .fold(0.0f32, |m, &v| m.max(v.abs()));
        assert!(peak < 1e-3, "alias peak {peak}");
    }

    #[test]
    fn length_rule_and_identity() {
        assert_eq!(resampled_len(3, 24_000, 16_000), 2);
        assert_eq!(resampled_len(5, 24_000, 16_000), 4);
        assert_eq!(resampled_len(22_050, 22_050, 24_000), 24_001);
        assert_eq!(resampled_len(24_000, 24_000, 16_000), 16_000);
        assert_eq!(resampled_len(1, 44_100, 16_000), 1);
        for n in [1usize, 5, 4097, 100_003] {
            let x = vec![0.25f32; n];
            for (a, b) in [
                (24_000, 16_000),
                (16_000, 24_000),
                (24_000, 32_000),
                (32_000, 24_000),
                (44_100, 16_000),
                (8_000, 24_000),
            ] {
                assert_eq!(resample(&x, a, b).unwrap().len(), resampled_len(n, a, b));
            }
        }
        let x = sine(100.0, 16_000, 100);
        assert_eq!(resample(&x, 16_000, 16_000).unwrap(), x);
        assert_eq!(resample_sinc(&x, 16_000, 16_000).unwrap(), x);
        assert!(resample(&[], 16_000, 24_000).unwrap().is_empty());
        assert!(resample_sinc(&[], 24_000, 16_000).unwrap().is_empty());
        assert!(resample(&x, 0, 16_000).is_err());
        assert!(resample(&x, 16_000, 0).is_err());
        assert!(resample_sinc(&x, 0, 16_000).is_err());
    }

    /// torchaudio 2.6 `_get_sinc_resample_kernel(24000, 16000, gcd=8000)`: 2 phases of 23
    /// taps (width 10), float32.
    const TORCHAUDIO_KERNEL_24K_TO_16K: [f32; 46] = [
        -0.0,
        -1.6350759e-06,
        -0.0010764474,
        0.0052825995,
        -0.0017229448,
        -0.02172334,
        0.04274801,
        -0.005026829,
        -0.11895987,
        0.2706918,
        0.66,
        0.2706918,
        -0.11895987,
        -0.005026829,
        0.04274801,
        -0.02172334,
        -0.0017229448,
        0.0052825995,
        -0.0010764474,
        -1.6350759e-06,
        -0.0,
        -0.0,
        -0.0,
        -0.0,
        -0.0,
        -0.0,
        -0.00036603498,
        0.00048918196,
        0.0072505213,
        -0.017954933,
        0.003380681,
        0.050903786,
        -0.09356203,
        0.006227747,
        0.5438856,
        0.5438856,
        0.006227747,
        -0.09356203,
        0.050903786,
        0.003380681,
        -0.017954933,
        0.0072505213,
        0.00048918196,
        -0.00036603498,
        -0.0,
        -0.0,
    ];

    #[test]
    fn sinc_kernel_equals_torchaudio() {
        let (k, width) = sinc_kernel(3, 2);
        assert_eq!(width, 10);
        assert_eq!(k, TORCHAUDIO_KERNEL_24K_TO_16K);
    }

    /// `librosa.resample(x, orig_sr=24000, target_sr=16000)` (librosa 0.11, soxr "HQ") of a
    /// 0.25 s linear chirp, 100 Hz -> 6 kHz, amplitude 0.5, samples 100, 150, .., 3850.
    const LIBROSA_CHIRP_24K_TO_16K: [f32; 76] = [
        0.25705135,
        -0.079429105,
        0.2777851,
        0.17420942,
        0.07336523,
        -0.43198636,
        -0.35355332,
        0.3979184,
        -0.40160376,
        0.34030056,
        0.41573477,
        -0.115529075,
        -0.12149006,
        -0.33120796,
        0.0,
        -0.3312079,
        -0.12149011,
        -0.11552896,
        0.41573483,
        0.3403005,
        -0.40160373,
        0.3979184,
        -0.35355335,
        -0.43198648,
        0.0733652,
        0.1742093,
        0.2777852,
        -0.07942913,
        0.25705138,
        0.21930811,
        0.0,
        -0.47280356,
        -0.4288643,
        0.29289907,
        -0.27778506,
        0.45458394,
        0.4945882,
        0.12743273,
        -0.35355353,
        -0.06729028,
        0.2978496,
        -0.018403769,
        -0.4157348,
        0.26229483,
        0.48501566,
        0.49905884,
        0.0,
        -0.030660339,
        -0.48501545,
        -0.42567766,
        -0.41573468,
        0.49966118,
        -0.29784954,
        -0.49545133,
        -0.35355335,
        0.4834882,
        -0.49458826,
        -0.20821477,
        -0.27778506,
        -0.4052286,
        0.42886427,
        0.16265513,
        0.0,
        0.4493372,
        -0.2570513,
        0.49365067,
        0.277785,
        0.4686694,
        -0.07336536,
        0.25176904,
        -0.3535534,
        -0.30275565,
        0.4016038,
        -0.36632705,
        0.41573477,
        0.48646992,
    ];

    #[test]
    fn matches_librosa_on_a_chirp() {
        let (sr, n) = (24_000.0f64, 6_000usize);
        let total = n as f64 / sr;
        let x: Vec<f32> = (0..n)
            .map(|i| {
                let t = i as f64 / sr;
                let phase = 2.0 * PI * (100.0 * t + (6_000.0 - 100.0) * t * t / (2.0 * total));
                (0.5 * phase.sin()) as f32
            })
            .collect();
        let y = resample(&x, 24_000, 16_000).unwrap();
        assert_eq!(y.len(), 4_000);
        let max = LIBROSA_CHIRP_24K_TO_16K
            .iter()
            .enumerate()
            .map(|(k, &r)| (y[100 + 50 * k] - r).abs())
            .fold(0.0f32, f32::max);
        assert!(max < 1e-6, "max abs difference to librosa {max}");
    }
}
