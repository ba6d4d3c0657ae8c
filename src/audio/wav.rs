//! WAV input and output (`hound`).
//!
//! Reading accepts PCM 8/16/24/32-bit integer and 32-bit float WAV (plain or
//! `WAVE_FORMAT_EXTENSIBLE`), any channel count (downmixed to mono by averaging the
//! channels), sample rates of 4 to 384 kHz and clips up to 300 s (voice-conversion sources
//! read with [`read_wav_as`]: up to an hour; see [`crate::limits`]; the header's sizes
//! never drive an allocation beyond what the file holds). Integers are scaled by `2^(bits-1)` like libsndfile
//! (so 16-bit `-32768` is `-1.0`). 64-bit float WAV is not supported by `hound` and is
//! reported as such. A file whose data chunk is cut short is read up to the cut (as
//! libsndfile does, with a warning). Every failure is one `InvalidAudio` line naming the
//! file: missing or unreadable file, not a WAV / corrupt header, unsupported encoding, no
//! samples, NaN or infinite samples, shorter than the caller's minimum or too long.
//!
//! Writing produces 16-bit PCM mono. (The reference's example saves the float32 tensor with
//! `torchaudio.save`, i.e. 32-bit float WAV; 16-bit PCM is half the size, plays everywhere,
//! and its -96 dB quantisation noise is far below the model's own noise.) Samples are
//! clamped to `[-1, 1]` (NaN becomes 0) and scaled by 32767 with rounding, so `+-1.0` map
//! to `+-32767` without overflow.
//!
//! [`write_wav_atomic`] goes through [`crate::output`]: a regular file is replaced
//! atomically (readers never see a half-written file), a device or FIFO is written in place.
//!
//! Audio written while it is produced (`say --stream`) starts with [`wav_header`] of an
//! unknown length ([`WAV_UNKNOWN_SIZE`] as both RIFF sizes, which ffmpeg, sox and aplay read
//! as "up to the end of the stream"), followed by [`pcm16_le`] pieces; a file gets its real
//! sizes written over the header at the end. `hound` cannot do this (its writer needs to seek
//! back), so the 44-byte header is written here; it is byte for byte the header
//! [`encode_wav`] writes for the same length.

use std::io::{Cursor, Read, Write};
use std::path::Path;

use crate::error::{Error, Result};
use crate::limits;

/// Decoded audio: mono samples and their rate.
#[derive(Debug, Clone, PartialEq)]
pub struct WavData {
    /// Mono samples (channels averaged), nominally in `[-1, 1]`.
    pub samples: Vec<f32>,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Channel count of the file before downmixing.
    pub channels: u16,
}

impl WavData {
    /// Duration in seconds.
    pub fn duration_seconds(&self) -> f64 {
        self.samples.len() as f64 / self.sample_rate.max(1) as f64
    }
}

/// Reads a WAV file; `min_seconds` is the shortest accepted duration (0 accepts any
/// non-empty file). Clips longer than [`limits::MAX_VOICE_SECONDS`] and sample rates
/// outside [`limits::MIN_SAMPLE_RATE`]`..=`[`limits::MAX_SAMPLE_RATE`] are refused; the
/// sizes in the header are never trusted for allocation beyond what the file holds.
pub fn read_wav(path: &Path, min_seconds: f32) -> Result<WavData> {
    read_wav_as(
        path,
        limits::ClipKind::Voice {
            min_seconds: f64::from(min_seconds),
        },
    )
}

/// Reads a WAV file held to the length bounds of `kind` (e.g. a voice-conversion
/// source: up to [`limits::MAX_SOURCE_SECONDS`]). Reading stops one frame past the
/// longest accepted length, so an over-long file is refused without being loaded.
pub fn read_wav_as(path: &Path, kind: limits::ClipKind) -> Result<WavData> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return Err(Error::invalid_audio(format!(
            "`{name}` is a folder, not a WAV file"
        )));
    }
    // A regular file's length bounds what it can hold; a device or pipe has none.
    let available = meta.is_file().then_some(meta.len());
    decode(std::io::BufReader::new(file), available, &name, kind)
}

/// Reads a WAV file held in memory; `name` identifies it in error messages.
pub fn read_wav_bytes(bytes: &[u8], name: &str, min_seconds: f32) -> Result<WavData> {
    decode(
        Cursor::new(bytes),
        Some(bytes.len() as u64),
        name,
        limits::ClipKind::Voice {
            min_seconds: f64::from(min_seconds),
        },
    )
}

fn decode<R: Read>(
    reader: R,
    available: Option<u64>,
    name: &str,
    kind: limits::ClipKind,
) -> Result<WavData> {
    let mut wav = hound::WavReader::new(reader).map_err(|e| header_error(name, e))?;
    let spec = wav.spec();
    let what = format!("`{name}`");
    limits::check_sample_rate(spec.sample_rate, &what)?;
    if spec.sample_format == hound::SampleFormat::Float && spec.bits_per_sample != 32 {
        return Err(Error::invalid_audio(format!(
            "{what}: {}-bit float WAV is not supported; use 32-bit float or 16/24-bit PCM",
            spec.bits_per_sample
        )));
    }
    let channels = usize::from(spec.channels.max(1));
    // Frames to read at most: one past the longest clip accepted, so an over-long clip
    // is recognised without reading (or allocating) the rest of it.
    let max_frames = kind.max_frames(spec.sample_rate).saturating_add(1);
    let bytes_per_frame = u64::from(spec.bits_per_sample.div_ceil(8).max(1)) * channels as u64;
    let mut capacity = u64::from(wav.duration()).min(max_frames);
    if let Some(bytes) = available {
        capacity = capacity.min(bytes / bytes_per_frame);
    }
    let mut samples: Vec<f32> = Vec::new();
    samples.try_reserve_exact(capacity as usize).map_err(|_| {
        Error::invalid_audio(format!("{what}: not enough memory for {capacity} samples"))
    })?;
    let mut mixer = Downmix::new(channels, max_frames, &mut samples);
    let truncated = match spec.sample_format {
        hound::SampleFormat::Float => {
            let mut truncated = false;
            for (i, s) in wav.samples::<f32>().enumerate() {
                match s {
                    // Bounded before mixing: the float32 channel sum of huge finite
                    // samples would overflow to infinity.
                    Ok(x) if x.is_finite() && x.abs() <= limits::MAX_SAMPLE_MAGNITUDE => {
                        if !mixer.push(x) {
                            break;
                        }
                    }
                    Ok(x) => {
                        let frame = i / channels;
                        let at = frame as f64 / f64::from(spec.sample_rate);
                        return Err(Error::invalid_audio(if x.is_finite() {
                            format!(
                                "{what}: sample {frame} ({at:.3} s) is {x:e}; samples must lie within +-{} (float audio is nominally within +-1)",
                                limits::MAX_SAMPLE_MAGNITUDE
                            )
                        } else {
                            format!(
                                "{what}: sample {frame} ({at:.3} s) is {x}; audio must be finite"
                            )
                        }));
                    }
                    Err(e) => {
                        truncated = stop_reading(name, e)?;
                        break;
                    }
                }
            }
            truncated
        }
        hound::SampleFormat::Int => {
            let bits = spec.bits_per_sample;
            if !(1..=32).contains(&bits) {
                return Err(Error::invalid_audio(format!(
                    "{what}: unsupported {bits}-bit integer samples"
                )));
            }
            let scale = 1.0 / (1u64 << (bits - 1)) as f64;
            let mut truncated = false;
            for s in wav.samples::<i32>() {
                match s {
                    Ok(x) => {
                        if !mixer.push((f64::from(x) * scale) as f32) {
                            break;
                        }
                    }
                    Err(e) => {
                        truncated = stop_reading(name, e)?;
                        break;
                    }
                }
            }
            truncated
        }
    };
    if truncated {
        tracing::warn!(
            file = name,
            "WAV data chunk is truncated; using the {} samples before the cut",
            samples.len()
        );
    }
    if samples.is_empty() {
        return Err(Error::invalid_audio(format!(
            "{what} contains no audio samples"
        )));
    }
    kind.check_frames(samples.len() as u64, spec.sample_rate, &what)?;
    Ok(WavData {
        samples,
        sample_rate: spec.sample_rate,
        channels: spec.channels,
    })
}

/// Averages interleaved samples into mono frames as they are read, up to a frame limit.
struct Downmix<'a> {
    channels: usize,
    max_frames: u64,
    out: &'a mut Vec<f32>,
    frame: Vec<f32>,
}

impl<'a> Downmix<'a> {
    fn new(channels: usize, max_frames: u64, out: &'a mut Vec<f32>) -> Downmix<'a> {
        Downmix {
            channels,
            max_frames,
            out,
            frame: Vec::with_capacity(channels),
        }
    }

    /// Adds one sample; `false` once the frame limit is reached (stop reading).
    fn push(&mut self, x: f32) -> bool {
        if self.channels == 1 {
            self.out.push(x);
        } else {
            self.frame.push(x);
            if self.frame.len() == self.channels {
                // librosa's `to_mono`: `np.mean` over the channels in float32.
                self.out
                    .push(numpy_sum_f32(&self.frame) / self.channels as f32);
                self.frame.clear();
            }
        }
        (self.out.len() as u64) < self.max_frames
    }
}

/// The float32 sum of `x` in numpy's order (its pairwise summation: sequential below 8
/// values, eight interleaved partial sums up to 128, halves above), so that the downmix
/// equals `np.mean(y, axis=0)` bit for bit.
fn numpy_sum_f32(x: &[f32]) -> f32 {
    let n = x.len();
    if n < 8 {
        return x.iter().copied().reduce(|a, b| a + b).unwrap_or(0.0);
    }
    if n <= 128 {
        let mut r = [0.0f32; 8];
        r.copy_from_slice(&x[..8]);
        let whole = n - n % 8;
        for block in x[8..whole].chunks_exact(8) {
            for (acc, &v) in r.iter_mut().zip(block) {
                *acc += v;
            }
        }
        let mut sum = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &v in &x[whole..] {
            sum += v;
        }
        return sum;
    }
    let half = n / 2 - (n / 2) % 8;
    numpy_sum_f32(&x[..half]) + numpy_sum_f32(&x[half..])
}

/// Whether a read error ends the data early (truncated file: keep what was read) or is a
/// real failure.
fn stop_reading(name: &str, e: hound::Error) -> Result<bool> {
    match e {
        hound::Error::IoError(ref io) if is_short_read(io) => Ok(true),
        hound::Error::TooWide => Err(Error::invalid_audio(format!(
            "`{name}`: samples wider than 32 bits (64-bit float?) are not supported"
        ))),
        other => Err(Error::invalid_audio(format!(
            "`{name}`: cannot read samples: {other}"
        ))),
    }
}

/// An end-of-file in the middle of a read (hound reports its own short reads as `Other`).
fn is_short_read(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::UnexpectedEof
        || (e.kind() == std::io::ErrorKind::Other && e.to_string().contains("enough bytes"))
}

fn header_error(name: &str, e: hound::Error) -> Error {
    let what = match e {
        hound::Error::IoError(ref io) if is_short_read(io) => "truncated WAV header".to_string(),
        hound::Error::FormatError("bits per sample is not 32") => {
            "64-bit float WAV is not supported; use 32-bit float or 16/24-bit PCM".to_string()
        }
        hound::Error::FormatError(msg) => format!("not a valid WAV file ({msg})"),
        hound::Error::Unsupported => {
            "unsupported WAV encoding (only PCM integer and 32-bit float are read)".to_string()
        }
        other => format!("cannot read WAV header: {other}"),
    };
    Error::invalid_audio(format!("`{name}`: {what}"))
}

/// Encodes mono samples as a 16-bit PCM WAV file in memory.
pub fn encode_wav(samples: &[f32], sample_rate: u32) -> Result<Vec<u8>> {
    if sample_rate == 0 {
        return Err(Error::invalid_argument("sample_rate", "must be > 0"));
    }
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut buf = Cursor::new(Vec::with_capacity(44 + 2 * samples.len()));
    let enc_err = |e: hound::Error| Error::internal(format!("WAV encoding failed: {e}"));
    {
        let mut w = hound::WavWriter::new(&mut buf, spec).map_err(enc_err)?;
        let mut w16 = w.get_i16_writer(samples.len() as u32);
        for &x in samples {
            w16.write_sample(to_i16(x));
        }
        w16.flush().map_err(enc_err)?;
        w.finalize().map_err(enc_err)?;
    }
    Ok(buf.into_inner())
}

/// One sample as 16-bit PCM: clamped to `[-1, 1]`, NaN as 0, scaled by 32767, rounded.
pub fn to_i16(x: f32) -> i16 {
    let x = if x.is_nan() { 0.0 } else { x.clamp(-1.0, 1.0) };
    (x * 32767.0).round() as i16
}

/// Writes `samples` as a 16-bit PCM mono WAV to `writer` (e.g. stdout; the file is built
/// in memory first because the WAV header needs the final length).
pub fn write_wav_to<W: Write>(writer: &mut W, samples: &[f32], sample_rate: u32) -> Result<()> {
    let bytes = encode_wav(samples, sample_rate)?;
    let stream = Path::new("<output stream>");
    writer.write_all(&bytes).map_err(|e| Error::io(stream, e))?;
    writer.flush().map_err(|e| Error::io(stream, e))
}

/// Writes `samples` as a 16-bit PCM mono WAV file at `path` with
/// [`crate::output::write_output`]: a regular file (or a link's target) is replaced
/// atomically (temporary file in the same folder, synced, renamed over it, permission bits
/// kept); a character device or FIFO is written in place; a directory is refused.
pub fn write_wav_atomic(path: &Path, samples: &[f32], sample_rate: u32) -> Result<()> {
    write_wav_file(path, samples, sample_rate, &[])
}

/// [`write_wav_atomic`], refusing (`InvalidArgument`) a `path` that is one of `inputs`.
pub fn write_wav_file(
    path: &Path,
    samples: &[f32],
    sample_rate: u32,
    inputs: &[&Path],
) -> Result<()> {
    let bytes = encode_wav(samples, sample_rate)?;
    crate::output::write_output(path, &bytes, inputs)
}

/// Bytes of [`wav_header`].
pub const WAV_HEADER_BYTES: usize = 44;

/// The RIFF and `data` chunk size of a WAV stream whose length is not known when the header
/// is written (read as "to the end of the stream" by ffmpeg, sox, aplay).
pub const WAV_UNKNOWN_SIZE: u32 = u32::MAX;

/// The 44-byte header of a 16-bit PCM mono WAV at `sample_rate` holding `data_bytes` bytes
/// of samples, or of unknown length (`None`, or more than a RIFF size can say): then both
/// sizes are [`WAV_UNKNOWN_SIZE`]. With a length it equals the header of [`encode_wav`].
pub fn wav_header(sample_rate: u32, data_bytes: Option<u64>) -> [u8; WAV_HEADER_BYTES] {
    const HEADER_REST: u64 = (WAV_HEADER_BYTES - 8) as u64;
    let (riff, data) = match data_bytes {
        Some(n) if n + HEADER_REST <= u64::from(u32::MAX - 1) => {
            ((n + HEADER_REST) as u32, n as u32)
        }
        _ => (WAV_UNKNOWN_SIZE, WAV_UNKNOWN_SIZE),
    };
    let mut h = [0u8; WAV_HEADER_BYTES];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        h[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(b"RIFF");
    put(&riff.to_le_bytes());
    put(b"WAVE");
    put(b"fmt ");
    put(&16u32.to_le_bytes()); // fmt chunk size
    put(&1u16.to_le_bytes()); // WAVE_FORMAT_PCM
    put(&1u16.to_le_bytes()); // channels
    put(&sample_rate.to_le_bytes());
    put(&(sample_rate.wrapping_mul(2)).to_le_bytes()); // bytes per second
    put(&2u16.to_le_bytes()); // block align
    put(&16u16.to_le_bytes()); // bits per sample
    put(b"data");
    put(&data.to_le_bytes());
    h
}

/// `samples` as little-endian 16-bit PCM ([`to_i16`]), the data of [`encode_wav`] and of
/// raw PCM output.
pub fn pcm16_le(samples: &[f32]) -> Vec<u8> {
    samples
        .iter()
        .flat_map(|&x| to_i16(x).to_le_bytes())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn streaming_header_and_pcm_equal_encode_wav() {
        let samples: Vec<f32> = (0..1000)
            .map(|i| ((i as f32) * 0.05).sin() * 1.2)
            .chain([f32::NAN, -1.0, 1.0])
            .collect();
        let whole = encode_wav(&samples, 24_000).unwrap();
        let pcm = pcm16_le(&samples);
        assert_eq!(pcm.len(), 2 * samples.len());
        let header = wav_header(24_000, Some(pcm.len() as u64));
        assert_eq!(&whole[..WAV_HEADER_BYTES], &header[..]);
        assert_eq!(&whole[WAV_HEADER_BYTES..], &pcm[..]);
        // Unknown length: both sizes all ones, the rest the same.
        let open = wav_header(24_000, None);
        assert_eq!(&open[4..8], &[0xff; 4]);
        assert_eq!(&open[40..44], &[0xff; 4]);
        assert_eq!(&open[8..40], &header[8..40]);
        assert_eq!(wav_header(24_000, Some(u64::from(u32::MAX))), open);
    }

    /// `np.mean(frame[:, None], axis=0)` bits (numpy 1.26) for frames where a float64
    /// mean rounds differently: the downmix follows numpy's float32 summation order.
    #[test]
    fn downmix_equals_numpy_mean() {
        let cases: [(&[f32], u32); 3] = [
            (&[-0.1657942, -0.2354341, 0.22462372], 3178307527),
            (
                &[
                    -0.18878643,
                    -0.14640175,
                    -0.21399401,
                    0.16601354,
                    -0.018925792,
                    -0.17682938,
                    0.12289135,
                    0.2489566,
                    -0.49290702,
                ],
                3181332725,
            ),
            (
                &[
                    -0.59652895,
                    -0.070026755,
                    -0.07673701,
                    0.28860015,
                    -0.35443404,
                    0.22141257,
                    -0.32969183,
                    -0.099387266,
                    -0.25214195,
                    0.4346194,
                    0.17046393,
                    0.7295197,
                    0.19257492,
                    0.2534978,
                    0.25220487,
                    -0.18198346,
                    -0.021008534,
                    0.40511665,
                    -0.11896523,
                    0.056639858,
                ],
                1027151424,
            ),
        ];
        for (frame, bits) in cases {
            let mut out = Vec::new();
            let mut mix = Downmix::new(frame.len(), 10, &mut out);
            for &x in frame {
                mix.push(x);
            }
            assert_eq!(out[0].to_bits(), bits, "{} channels", frame.len());
        }
    }

    fn wav_bytes<S: hound::Sample + Copy>(spec: hound::WavSpec, samples: &[S]) -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
        {
            let mut w = hound::WavWriter::new(&mut buf, spec).unwrap();
            for &s in samples {
                w.write_sample(s).unwrap();
            }
            w.finalize().unwrap();
        }
        buf.into_inner()
    }

    fn spec(channels: u16, bits: u16, float: bool, sr: u32) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate: sr,
            bits_per_sample: bits,
            sample_format: if float {
                hound::SampleFormat::Float
            } else {
                hound::SampleFormat::Int
            },
        }
    }

    #[test]
    fn reads_every_integer_depth() {
        let b = wav_bytes(spec(1, 8, false, 8000), &[-128i8, 0, 64, 127]);
        let w = read_wav_bytes(&b, "a.wav", 0.0).unwrap();
        assert_eq!(w.samples, vec![-1.0, 0.0, 0.5, 127.0 / 128.0]);
        assert_eq!(w.sample_rate, 8000);

        let b = wav_bytes(spec(1, 16, false, 16000), &[-32768i16, 16384, 32767]);
        let w = read_wav_bytes(&b, "a.wav", 0.0).unwrap();
        assert_eq!(w.samples, vec![-1.0, 0.5, 32767.0 / 32768.0]);

        let b = wav_bytes(spec(1, 24, false, 44100), &[-8_388_608i32, 4_194_304, 0]);
        let w = read_wav_bytes(&b, "a.wav", 0.0).unwrap();
        assert_eq!(w.samples, vec![-1.0, 0.5, 0.0]);

        let b = wav_bytes(spec(1, 32, false, 48000), &[i32::MIN, 1 << 30]);
        let w = read_wav_bytes(&b, "a.wav", 0.0).unwrap();
        assert_eq!(w.samples, vec![-1.0, 0.5]);
    }

    #[test]
    fn reads_float_and_downmixes() {
        let b = wav_bytes(
            spec(2, 32, true, 22050),
            &[0.5f32, -0.5, 1.0, 0.0, 0.25, 0.75],
        );
        let w = read_wav_bytes(&b, "s.wav", 0.0).unwrap();
        assert_eq!(w.samples, vec![0.0, 0.5, 0.5]);
        assert_eq!(w.channels, 2);
        let b = wav_bytes(spec(3, 16, false, 16000), &[3000i16, 6000, 9000]);
        let w = read_wav_bytes(&b, "s.wav", 0.0).unwrap();
        assert!((w.samples[0] - 6000.0 / 32768.0).abs() < 1e-7);
    }

    #[test]
    fn errors_are_one_line_and_name_the_file() {
        let check = |r: Result<WavData>, what: &str| {
            let e = r.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidAudio);
            let msg = e.to_string();
            assert!(msg.contains("voice.wav"), "{msg}");
            assert!(msg.contains(what), "{msg} lacks {what:?}");
            assert!(!msg.contains('\n'));
        };
        // A file that cannot be opened is an I/O error naming it, not bad audio.
        let e = read_wav(Path::new("/nonexistent/voice.wav"), 0.0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.to_string().contains("voice.wav"), "{e}");
        check(
            read_wav_bytes(b"RIFF", "voice.wav", 0.0),
            "truncated WAV header",
        );
        check(
            read_wav_bytes(b"hello, this is not a wav file at all", "voice.wav", 0.0),
            "not a valid WAV",
        );
        let empty = wav_bytes::<i16>(spec(1, 16, false, 16000), &[]);
        check(read_wav_bytes(&empty, "voice.wav", 0.0), "no audio samples");
        let nan = wav_bytes(spec(1, 32, true, 16000), &[0.0f32, f32::NAN]);
        check(read_wav_bytes(&nan, "voice.wav", 0.0), "NaN");
        let inf = wav_bytes(spec(1, 32, true, 16000), &[f32::INFINITY]);
        check(read_wav_bytes(&inf, "voice.wav", 0.0), "inf");
        let short = wav_bytes(spec(1, 16, false, 16000), &vec![0i16; 4000]);
        check(read_wav_bytes(&short, "voice.wav", 0.5), "0.250 s long");
        assert!(read_wav_bytes(&short, "voice.wav", 0.25).is_ok());

        // 64-bit float (WAVE_FORMAT_IEEE_FLOAT, 16-byte fmt chunk), written by hand.
        let mut f64wav = Vec::new();
        f64wav.extend_from_slice(b"RIFF");
        f64wav.extend_from_slice(&(4u32 + 24 + 8 + 16).to_le_bytes());
        f64wav.extend_from_slice(b"WAVEfmt ");
        f64wav.extend_from_slice(&16u32.to_le_bytes());
        f64wav.extend_from_slice(&3u16.to_le_bytes());
        f64wav.extend_from_slice(&1u16.to_le_bytes());
        f64wav.extend_from_slice(&16_000u32.to_le_bytes());
        f64wav.extend_from_slice(&(16_000u32 * 8).to_le_bytes());
        f64wav.extend_from_slice(&8u16.to_le_bytes());
        f64wav.extend_from_slice(&64u16.to_le_bytes());
        f64wav.extend_from_slice(b"data");
        f64wav.extend_from_slice(&16u32.to_le_bytes());
        f64wav.extend_from_slice(&[0u8; 16]);
        check(read_wav_bytes(&f64wav, "voice.wav", 0.0), "64-bit float");
    }

    #[test]
    fn truncated_data_keeps_what_was_read() {
        let b = wav_bytes(spec(1, 16, false, 16000), &[1000i16; 100]);
        let cut = &b[..b.len() - 51];
        let w = read_wav_bytes(cut, "cut.wav", 0.0).unwrap();
        assert_eq!(w.samples.len(), 74);
    }

    #[test]
    fn write_roundtrip_and_clamping() {
        let dir = std::env::temp_dir().join(format!("cbx-wav-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.wav");
        let samples = [0.0f32, 0.5, -0.5, 1.0, -1.0, 2.0, -3.0, f32::NAN];
        write_wav_atomic(&path, &samples, 24_000).unwrap();
        let mut r = hound::WavReader::open(&path).unwrap();
        assert_eq!(r.spec(), spec(1, 16, false, 24_000));
        let got: Vec<i16> = r.samples::<i16>().map(|s| s.unwrap()).collect();
        assert_eq!(got, vec![0, 16384, -16384, 32767, -32767, 32767, -32767, 0]);
        // Overwrite in place; no temporary file is left behind.
        write_wav_atomic(&path, &[0.25], 16_000).unwrap();
        let w = read_wav(&path, 0.0).unwrap();
        assert_eq!(w.sample_rate, 16_000);
        let leftovers = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(leftovers, 1);
        // Missing folder: an Io error naming the file asked for.
        let e = write_wav_atomic(&dir.join("missing/x.wav"), &[0.0], 16_000).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.to_string().contains("missing/x.wav"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();

        let mut out = Vec::new();
        write_wav_to(&mut out, &[0.5, -0.5], 8000).unwrap();
        let w = read_wav_bytes(&out, "mem", 0.0).unwrap();
        assert_eq!(w.samples.len(), 2);
        assert!((w.samples[0] - 16384.0 / 32768.0).abs() < 1e-6);
        assert!(encode_wav(&[0.0], 0).is_err());
    }

    /// A 16-bit PCM WAV whose header claims `claimed_frames` frames but which holds
    /// only `data` (a header that lies about the data size).
    fn lying_wav(rate: u32, channels: u16, claimed_frames: u64, data: &[u8]) -> Vec<u8> {
        let block = 2 * u32::from(channels);
        let max_frames = u64::from((u32::MAX - 36) / block);
        let data_len = (claimed_frames.min(max_frames) * u64::from(block)) as u32;
        let mut b = Vec::new();
        b.extend_from_slice(b"RIFF");
        b.extend_from_slice(&(36 + data_len).to_le_bytes());
        b.extend_from_slice(b"WAVEfmt ");
        b.extend_from_slice(&16u32.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&channels.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&(rate * block).to_le_bytes());
        b.extend_from_slice(&(block as u16).to_le_bytes());
        b.extend_from_slice(&16u16.to_le_bytes());
        b.extend_from_slice(b"data");
        b.extend_from_slice(&data_len.to_le_bytes());
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn header_sizes_are_not_trusted() {
        // 400 KB at 1 Hz claiming 55 hours: refused for its rate before any sample is read.
        let bytes = lying_wav(1, 1, 55 * 3600, &vec![0u8; 400_000]);
        let e = read_wav_bytes(&bytes, "slow.wav", 0.5).unwrap_err();
        assert!(e.to_string().contains("sample rate 1 Hz"), "{e}");
        // 7 KB claiming one hour at 16 kHz: only what the file holds is read (0.22 s).
        let bytes = lying_wav(16_000, 1, 3600 * 16_000, &vec![0u8; 7_000]);
        let e = read_wav_bytes(&bytes, "short.wav", 0.5).unwrap_err();
        assert!(e.to_string().contains("0.219 s long"), "{e}");
        let w = read_wav_bytes(&bytes, "short.wav", 0.0).unwrap();
        assert_eq!(w.samples.len(), 3_500);
        // A claim of 4 GB over 8 channels allocates by what is there.
        let bytes = lying_wav(48_000, 8, u64::from(u32::MAX), &vec![0u8; 16 * 48_000]);
        assert_eq!(
            read_wav_bytes(&bytes, "wide.wav", 0.5)
                .unwrap()
                .samples
                .len(),
            48_000
        );
    }

    #[test]
    fn huge_float_samples_are_refused_before_mixing() {
        // Three channels near f32::MAX: their float32 sum would be infinite.
        let big = f32::MAX / 2.0;
        let bytes = wav_bytes(spec(3, 32, true, 16_000), &vec![big; 3 * 16_000]);
        let e = read_wav_bytes(&bytes, "loud.wav", 0.5).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::InvalidAudio);
        assert!(e.to_string().contains("within +-1000"), "{e}");
        let ok = wav_bytes(spec(3, 32, true, 16_000), &vec![1000.0f32; 3 * 16_000]);
        let w = read_wav_bytes(&ok, "loud.wav", 0.5).unwrap();
        assert!(w.samples.iter().all(|&s| s == 1000.0));
    }

    #[test]
    fn clips_longer_than_the_bound_are_refused_without_reading_them_whole() {
        let rate = limits::MIN_SAMPLE_RATE;
        let frames = limits::max_clip_frames(rate);
        let ok = lying_wav(rate, 1, frames, &vec![0u8; 2 * frames as usize]);
        assert_eq!(
            read_wav_bytes(&ok, "max.wav", 0.5).unwrap().samples.len() as u64,
            frames
        );
        let long = lying_wav(rate, 1, frames + 1, &vec![0u8; 2 * (frames as usize + 1)]);
        let e = read_wav_bytes(&long, "long.wav", 0.5).unwrap_err();
        assert!(e.to_string().contains("at most 300 s"), "{e}");
    }

    #[test]
    fn sources_are_read_up_to_an_hour() {
        let rate = limits::MIN_SAMPLE_RATE;
        let kind = limits::ClipKind::Source;
        let frames = kind.max_frames(rate);
        assert_eq!(frames, 3600 * u64::from(rate));
        let dir = std::env::temp_dir().join(format!("cbx-wav-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ok = dir.join("hour.wav");
        std::fs::write(
            &ok,
            lying_wav(rate, 1, frames, &vec![0u8; 2 * frames as usize]),
        )
        .unwrap();
        assert_eq!(read_wav_as(&ok, kind).unwrap().samples.len() as u64, frames);
        // A voice clip is held to 300 s.
        let e = read_wav(&ok, 0.5).unwrap_err();
        assert!(e.to_string().contains("at most 300 s"), "{e}");
        let long = dir.join("long.wav");
        std::fs::write(
            &long,
            lying_wav(rate, 1, frames + 1, &vec![0u8; 2 * (frames as usize + 1)]),
        )
        .unwrap();
        let e = read_wav_as(&long, kind).unwrap_err();
        assert!(e.to_string().contains("at most 3600 s"), "{e}");
        assert!(e.to_string().contains("long.wav"), "{e}");
        let short = dir.join("short.wav");
        std::fs::write(&short, lying_wav(16_000, 1, 639, &vec![1u8; 2 * 639])).unwrap();
        let e = read_wav_as(&short, kind).unwrap_err();
        assert!(e.to_string().contains("at least 0.04 s"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
