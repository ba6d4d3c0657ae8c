//! Bounds on every resource a request, an option or an input file can ask for.
//!
//! One validation layer: the Rust API ([`crate::Engine`], [`crate::Request`]), the
//! CLI and the C ABI all pass through the checks here, and every check runs before
//! anything is allocated or run. A value out of bounds is an `InvalidArgument`,
//! `InvalidText` or `InvalidAudio` error that names the parameter (or file) and the
//! bound. Each bound is derived from the model or the machine:
//!
//! | what | bound | why |
//! |---|---|---|
//! | `threads` | 1 ..= 4 x the machine's logical CPUs (at most 1024) | ONNX Runtime starts that many threads per session; more than the CPUs only adds contention |
//! | `flow_steps` | 1 ..= [`MAX_FLOW_STEPS`] | the reference runs 10 (2 for Turbo); each step is a full estimator call |
//! | `top_k` | 0 ..= [`MAX_TOP_K`] | Turbo's reference uses 1000 of 6563 speech tokens; 0 disables it |
//! | `max_new_tokens` | 1 ..= T3's learned speech positions and S3Gen's token limit (from the manifest) | the model cannot go further |
//! | text | at most [`MAX_TEXT_BYTES`] (128 KiB) of UTF-8 | bounds the output buffer (about 2.5 hours of audio, 0.9 GB as f32) |
//! | voice clip | [`crate::conditioning::MIN_VOICE_SECONDS`] ..= [`MAX_VOICE_SECONDS`] | the reference uses 10 s; longer clips only cost memory |
//! | voice-conversion source | [`MIN_SOURCE_SECONDS`] (one S3 token) ..= [`MAX_SOURCE_SECONDS`] (1 h), peak at least [`SILENT_PEAK`] | shorter gives no speech token; conversion runs in 30 s pieces with flat memory, so the bound only caps the input and output buffers (1 h at 24 kHz is 346 MB of f32) and the run time |
//! | sample rate | [`MIN_SAMPLE_RATE`] ..= [`MAX_SAMPLE_RATE`] Hz | below that there is no speech band; above, no real recording |
//! | sample values | finite, magnitude at most [`MAX_SAMPLE_MAGNITUDE`] | float audio is nominally within +-1; far beyond, the features overflow |
//! | voice file | at most [`MAX_VOICE_FILE_BYTES`] | a full-size voice is about 0.3 MB |
//! | `manifest.json` | at most [`MAX_MANIFEST_BYTES`] | a full-size manifest is about 30 KB |
//! | `tokenizer.json` | at most [`MAX_TOKENIZER_BYTES`] | a GPT-2 tokenizer is about 4 MB |
//!
//! Files are read through [`read_capped`], which never reads past its bound, so a
//! device such as `/dev/zero` or a file that grows while read is refused.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Most Euler steps of the flow matching per synthesis.
pub const MAX_FLOW_STEPS: usize = 100;
/// Largest streaming chunk, in speech tokens (`StreamOptions`).
pub const MAX_STREAM_CHUNK_TOKENS: usize = 4096;
/// Smallest first streaming chunk: the fewest tokens whose first pass delivers audio (the
/// flow's lookahead tokens and the held-back frames, plus one token).
pub const MIN_STREAM_FIRST_TOKENS: usize =
    crate::s3gen::flow::PRE_LOOKAHEAD_TOKENS + crate::stream::HOLDBACK_FRAMES / 2 + 1;
/// Most bytes of text in one synthesis request.
pub const MAX_TEXT_BYTES: usize = 128 * 1024;
/// Longest reference clip a voice is built from, in seconds.
pub const MAX_VOICE_SECONDS: f64 = 300.0;
/// Shortest voice-conversion source, in seconds: one S3 speech token (25 per second).
pub const MIN_SOURCE_SECONDS: f64 = 0.04;
/// Longest voice-conversion source, in seconds.
pub const MAX_SOURCE_SECONDS: f64 = 3600.0;
/// A voice-conversion source whose largest absolute sample is below this is silent
/// (-80 dBFS, about 3 steps of 16-bit PCM: no speech to convert) and refused.
pub const SILENT_PEAK: f32 = 1e-4;
/// Lowest sample rate of input audio, in Hz.
pub const MIN_SAMPLE_RATE: u32 = 4_000;
/// Highest sample rate of input audio, in Hz.
pub const MAX_SAMPLE_RATE: u32 = 384_000;
/// Largest magnitude of an input audio sample.
pub const MAX_SAMPLE_MAGNITUDE: f32 = 1000.0;
/// Largest voice file, in bytes.
pub const MAX_VOICE_FILE_BYTES: u64 = 16 << 20;
/// Largest `manifest.json`, in bytes.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Largest `tokenizer.json`, in bytes.
pub const MAX_TOKENIZER_BYTES: u64 = 64 << 20;
/// Threads allowed per logical CPU.
pub const THREADS_PER_CPU: usize = 4;
/// Most threads whatever the machine.
pub const MAX_THREADS_ABSOLUTE: usize = 1024;

/// The machine's logical CPUs (1 when unknown).
pub fn logical_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Most intra-op threads per session on this machine.
pub fn max_threads() -> usize {
    (THREADS_PER_CPU * logical_cpus()).min(MAX_THREADS_ABSOLUTE)
}

/// Checks a thread count (`None`: ONNX Runtime's default).
pub fn check_threads(threads: Option<usize>) -> Result<()> {
    let Some(n) = threads else { return Ok(()) };
    let max = max_threads();
    if n == 0 || n > max {
        return Err(Error::invalid_argument(
            "threads",
            format!(
                "must be in 1..={max} ({THREADS_PER_CPU} x the {} logical CPUs of this machine), got {n}",
                logical_cpus()
            ),
        ));
    }
    Ok(())
}

/// Checks a flow step count.
pub fn check_flow_steps(steps: usize) -> Result<()> {
    check_range("flow_steps", steps, 1, MAX_FLOW_STEPS)
}

/// Largest `top_k` accepted: above any speech vocabulary (Turbo's is 6563), so
/// every larger value means "no top-k" and is refused as a likely mistake.
pub const MAX_TOP_K: usize = 1 << 20;

/// Checks a top-k value (0 disables the filter).
pub fn check_top_k(top_k: usize) -> Result<()> {
    check_range("top_k", top_k, 0, MAX_TOP_K)
}

/// Checks that `value` of parameter `name` lies in `min..=max`.
pub fn check_range(name: &str, value: usize, min: usize, max: usize) -> Result<()> {
    if value < min || value > max {
        return Err(Error::invalid_argument(
            name,
            format!("must be in {min}..={max}, got {value}"),
        ));
    }
    Ok(())
}

/// Checks the size of a text to synthesize.
pub fn check_text_len(bytes: usize) -> Result<()> {
    if bytes > MAX_TEXT_BYTES {
        return Err(Error::invalid_text(format!(
            "the text is {bytes} bytes; at most {MAX_TEXT_BYTES} bytes per request (split it into several requests)"
        )));
    }
    Ok(())
}

/// Checks the sample rate of input audio; `what` names the input in the message.
pub fn check_sample_rate(sample_rate: u32, what: &str) -> Result<()> {
    if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&sample_rate) {
        return Err(Error::invalid_audio(format!(
            "{what}: sample rate {sample_rate} Hz is outside {MIN_SAMPLE_RATE}..={MAX_SAMPLE_RATE} Hz"
        )));
    }
    Ok(())
}

/// What an input clip is, for its length bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClipKind {
    /// A voice reference clip: `min_seconds ..= MAX_VOICE_SECONDS`.
    Voice {
        /// The shortest clip accepted, in seconds.
        min_seconds: f64,
    },
    /// A voice-conversion source: [`MIN_SOURCE_SECONDS`] `..=` [`MAX_SOURCE_SECONDS`].
    Source,
}

impl ClipKind {
    /// The shortest clip accepted, in seconds.
    pub fn min_seconds(self) -> f64 {
        match self {
            ClipKind::Voice { min_seconds } => min_seconds,
            ClipKind::Source => MIN_SOURCE_SECONDS,
        }
    }

    /// The longest clip accepted, in seconds.
    pub fn max_seconds(self) -> f64 {
        match self {
            ClipKind::Voice { .. } => MAX_VOICE_SECONDS,
            ClipKind::Source => MAX_SOURCE_SECONDS,
        }
    }

    /// Most frames at `sample_rate` that [`ClipKind::check_frames`] accepts.
    pub fn max_frames(self, sample_rate: u32) -> u64 {
        (self.max_seconds() * f64::from(sample_rate)) as u64
    }

    /// Checks a clip's length without looking at the samples (so it can run before
    /// they are read); `what` names the clip in the message.
    pub fn check_frames(self, frames: u64, sample_rate: u32, what: &str) -> Result<()> {
        let secs = frames as f64 / f64::from(sample_rate.max(1));
        let (min, max) = (self.min_seconds(), self.max_seconds());
        if secs < min {
            return Err(Error::invalid_audio(match self {
                ClipKind::Voice { .. } => {
                    format!("{what} is {secs:.3} s long; at least {min} s is needed")
                }
                ClipKind::Source => format!(
                    "{what} is {secs:.3} s long; at least {min} s (one speech token) is needed"
                ),
            }));
        }
        if secs > max {
            // A reader stops one frame past the bound: the real length is unknown then.
            let long = if frames > self.max_frames(sample_rate).saturating_add(1) {
                format!("{secs:.1} s long")
            } else {
                format!("longer than {max} s")
            };
            return Err(Error::invalid_audio(match self {
                ClipKind::Voice { .. } => format!(
                    "{what} is {long}; at most {max} s is accepted (trim the clip; 10 s is enough)"
                ),
                ClipKind::Source => format!(
                    "{what} is {long}; at most {max} s is accepted (split it into parts of at most an hour)"
                ),
            }));
        }
        Ok(())
    }
}

/// Checks a reference clip's length against `min_seconds..=MAX_VOICE_SECONDS`
/// without looking at the samples (so it can run before they are read).
pub fn check_clip_frames(
    frames: u64,
    sample_rate: u32,
    min_seconds: f64,
    what: &str,
) -> Result<()> {
    ClipKind::Voice { min_seconds }.check_frames(frames, sample_rate, what)
}

/// Most frames of a clip at `sample_rate` that [`check_clip_frames`] accepts.
pub fn max_clip_frames(sample_rate: u32) -> u64 {
    (MAX_VOICE_SECONDS * f64::from(sample_rate)) as u64
}

/// Checks reference samples: rate, length, and every value finite and within
/// [`MAX_SAMPLE_MAGNITUDE`].
pub fn check_clip(samples: &[f32], sample_rate: u32, min_seconds: f64, what: &str) -> Result<()> {
    check_audio(samples, sample_rate, ClipKind::Voice { min_seconds }, what)
}

/// Checks input samples of `kind`: the rate (`InvalidArgument` when 0, else within
/// [`MIN_SAMPLE_RATE`]`..=`[`MAX_SAMPLE_RATE`]), not empty, the length, and every value
/// finite and within [`MAX_SAMPLE_MAGNITUDE`] (`InvalidAudio`, naming the first bad sample).
pub fn check_audio(samples: &[f32], sample_rate: u32, kind: ClipKind, what: &str) -> Result<()> {
    if sample_rate == 0 {
        return Err(Error::invalid_argument("sample_rate", "must be > 0"));
    }
    check_sample_rate(sample_rate, what)?;
    if samples.is_empty() {
        return Err(Error::invalid_audio(format!("{what} is empty")));
    }
    kind.check_frames(samples.len() as u64, sample_rate, what)?;
    if let Some(i) = samples
        .iter()
        .position(|s| !s.is_finite() || s.abs() > MAX_SAMPLE_MAGNITUDE)
    {
        let s = samples[i];
        let at = i as f64 / f64::from(sample_rate);
        return Err(Error::invalid_audio(if s.is_finite() {
            format!(
                "{what}: sample {i} ({at:.3} s) is {s:e}; samples must lie within +-{MAX_SAMPLE_MAGNITUDE} (float audio is nominally within +-1)"
            )
        } else {
            format!("{what}: sample {i} ({at:.3} s) is {s}; audio must be finite")
        }));
    }
    Ok(())
}

/// Checks a voice-conversion source: [`check_audio`] for [`ClipKind::Source`], then
/// refuses a silent one (every sample below [`SILENT_PEAK`] in magnitude).
pub fn check_source(samples: &[f32], sample_rate: u32, what: &str) -> Result<()> {
    check_audio(samples, sample_rate, ClipKind::Source, what)?;
    let peak = samples.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    if peak < SILENT_PEAK {
        return Err(Error::invalid_audio(format!(
            "{what} is silent (peak {peak:.1e}, below {SILENT_PEAK:.0e} = -80 dBFS): there is no speech to convert"
        )));
    }
    Ok(())
}

/// Reads at most `max` bytes of the file at `path` (or of stdin when `path` is
/// `-` and `allow_stdin`); a larger input is an error naming `what` and the bound,
/// found without reading past it (safe on `/dev/zero`, pipes and growing files).
pub fn read_capped(path: &Path, max: u64, what: &str) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    if let Ok(meta) = file.metadata() {
        if meta.is_dir() {
            return Err(Error::io(
                path,
                std::io::Error::other("is a folder, not a file"),
            ));
        }
        if meta.is_file() && meta.len() > max {
            return Err(too_large(what, path, max));
        }
    }
    read_capped_from(file, max, what, path)
}

/// [`read_capped`] over any reader; `path` names the input in messages.
pub fn read_capped_from(reader: impl Read, max: u64, what: &str, path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > max {
        return Err(too_large(what, path, max));
    }
    Ok(bytes)
}

fn too_large(what: &str, path: &Path, max: u64) -> Error {
    let e = std::io::Error::other(format!("larger than the {max} bytes accepted for {what}"));
    Error::io(path, e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn threads_bounded_by_the_machine() {
        let max = max_threads();
        assert!(max >= THREADS_PER_CPU);
        assert!(check_threads(None).is_ok());
        assert!(check_threads(Some(1)).is_ok());
        assert!(check_threads(Some(max)).is_ok());
        for bad in [0, max + 1, 100_000, usize::MAX] {
            let e = check_threads(Some(bad)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
            assert!(e.to_string().contains("threads"), "{e}");
            assert!(e.to_string().contains(&format!("1..={max}")), "{e}");
        }
    }

    #[test]
    fn flow_steps_at_and_past_the_bound() {
        assert!(check_flow_steps(1).is_ok());
        assert!(check_flow_steps(MAX_FLOW_STEPS).is_ok());
        for bad in [0, MAX_FLOW_STEPS + 1, 100_000, 1_000_000_000, usize::MAX] {
            let e = check_flow_steps(bad).unwrap_err();
            assert!(e.to_string().contains("flow_steps"), "{e}");
        }
    }

    #[test]
    fn text_and_rates() {
        assert!(check_text_len(MAX_TEXT_BYTES).is_ok());
        assert_eq!(
            check_text_len(MAX_TEXT_BYTES + 1).unwrap_err().kind(),
            ErrorKind::InvalidText
        );
        assert!(check_sample_rate(MIN_SAMPLE_RATE, "x").is_ok());
        assert!(check_sample_rate(MAX_SAMPLE_RATE, "x").is_ok());
        assert!(check_sample_rate(MIN_SAMPLE_RATE - 1, "x").is_err());
        assert!(check_sample_rate(MAX_SAMPLE_RATE + 1, "x").is_err());
        assert!(check_sample_rate(1, "x").is_err());
    }

    #[test]
    fn clips() {
        let sr = 16_000;
        let ok = vec![0.1f32; sr as usize];
        assert!(check_clip(&ok, sr, 0.5, "clip").is_ok());
        assert!(check_clip(&ok[..7999], sr, 0.5, "clip").is_err());
        let mut loud = ok.clone();
        loud[5] = MAX_SAMPLE_MAGNITUDE;
        assert!(check_clip(&loud, sr, 0.5, "clip").is_ok());
        loud[5] = 1e30;
        let e = check_clip(&loud, sr, 0.5, "clip").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidAudio);
        assert!(e.to_string().contains("sample 5"), "{e}");
        loud[5] = f32::NAN;
        assert!(check_clip(&loud, sr, 0.5, "clip").is_err());
        assert!(check_clip_frames(max_clip_frames(sr), sr, 0.5, "clip").is_ok());
        assert!(check_clip_frames(max_clip_frames(sr) + 1, sr, 0.5, "clip").is_err());
    }

    #[test]
    fn sources() {
        let sr = 16_000;
        let what = "the source";
        let ok = vec![0.1f32; 640];
        assert!(check_source(&ok, sr, what).is_ok());
        let e = check_source(&ok[..639], sr, what).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidAudio);
        assert!(e.to_string().contains("speech token"), "{e}");
        assert!(check_source(&[], sr, what)
            .unwrap_err()
            .to_string()
            .contains("empty"));
        let quiet = vec![0.5 * SILENT_PEAK; 16_000];
        let e = check_source(&quiet, sr, what).unwrap_err();
        assert!(e.to_string().contains("silent"), "{e}");
        let mut barely = quiet.clone();
        barely[7] = -SILENT_PEAK;
        assert!(check_source(&barely, sr, what).is_ok());
        let mut bad = ok.clone();
        bad[3] = f32::INFINITY;
        assert!(check_source(&bad, sr, what)
            .unwrap_err()
            .to_string()
            .contains("sample 3"));
        assert_eq!(
            check_source(&ok, 0, what).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert!(check_source(&ok, MAX_SAMPLE_RATE + 1, what).is_err());
        let k = ClipKind::Source;
        assert!(k.check_frames(k.max_frames(sr), sr, what).is_ok());
        let e = k.check_frames(k.max_frames(sr) + 1, sr, what).unwrap_err();
        assert!(e.to_string().contains("at most 3600 s"), "{e}");
        // 44.1 kHz: 1764 samples are exactly 40 ms.
        assert!(k.check_frames(1764, 44_100, what).is_ok());
        assert!(k.check_frames(1763, 44_100, what).is_err());
    }

    #[test]
    fn capped_reads_stop_at_the_bound() {
        let e = read_capped(Path::new("/dev/zero"), 1000, "text").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.to_string().contains("/dev/zero"), "{e}");
        assert!(e.to_string().contains("1000 bytes"), "{e}");
        let data = read_capped_from(&b"hello"[..], 5, "text", Path::new("x")).unwrap();
        assert_eq!(data, b"hello");
        assert!(read_capped_from(&b"hello!"[..], 5, "text", Path::new("x")).is_err());
    }
}
