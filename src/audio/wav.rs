//! WAV input and output (`hound`).
//!
//! Reading accepts PCM 8/16/24/32-bit integer and 32-bit float WAV (plain or
//! `WAVE_FORMAT_EXTENSIBLE`), any channel count (downmixed to mono by averaging the
//! channels) and any sample rate. Integers are scaled by `2^(bits-1)` like libsndfile
//! (so 16-bit `-32768` is `-1.0`). 64-bit float WAV is not supported by `hound` and is
//! reported as such. A file whose data chunk is cut short is read up to the cut (as
//! libsndfile does, with a warning). Every failure is one `InvalidAudio` line naming the
//! file: missing or unreadable file, not a WAV / corrupt header, unsupported encoding, no
//! samples, NaN or infinite samples, shorter than the caller's minimum.
//!
//! Writing produces 16-bit PCM mono. (The reference's example saves the float32 tensor with
//! `torchaudio.save`, i.e. 32-bit float WAV; 16-bit PCM is half the size, plays everywhere,
//! and its -96 dB quantisation noise is far below the model's own noise.) Samples are
//! clamped to `[-1, 1]` (NaN becomes 0) and scaled by 32767 with rounding, so `+-1.0` map
//! to `+-32767` without overflow.
//!
//! [`write_wav_atomic`] writes a temporary file in the destination's folder and renames it
//! over the destination, so readers never see a half-written file.

use std::io::{Cursor, Read, Write};
use std::path::Path;

use crate::error::{Error, Result};

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
/// non-empty file).
pub fn read_wav(path: &Path, min_seconds: f32) -> Result<WavData> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    decode(std::io::BufReader::new(file), &name, min_seconds)
}

/// Reads a WAV file held in memory; `name` identifies it in error messages.
pub fn read_wav_bytes(bytes: &[u8], name: &str, min_seconds: f32) -> Result<WavData> {
    decode(Cursor::new(bytes), name, min_seconds)
}

fn decode<R: Read>(reader: R, name: &str, min_seconds: f32) -> Result<WavData> {
    let mut wav = hound::WavReader::new(reader).map_err(|e| header_error(name, e))?;
    let spec = wav.spec();
    if spec.sample_rate == 0 {
        return Err(Error::invalid_audio(format!("`{name}`: sample rate is 0")));
    }
    if spec.sample_format == hound::SampleFormat::Float && spec.bits_per_sample != 32 {
        return Err(Error::invalid_audio(format!(
            "`{name}`: {}-bit float WAV is not supported; use 32-bit float or 16/24-bit PCM",
            spec.bits_per_sample
        )));
    }
    let channels = spec.channels.max(1) as usize;

    let mut interleaved: Vec<f32> = Vec::with_capacity(wav.len() as usize);
    let mut truncated = false;
    match spec.sample_format {
        hound::SampleFormat::Float => {
            for (i, s) in wav.samples::<f32>().enumerate() {
                match s {
                    Ok(x) if x.is_finite() => interleaved.push(x),
                    Ok(x) => {
                        let frame = i / channels;
                        return Err(Error::invalid_audio(format!(
                            "`{name}`: sample {frame} ({:.3} s) is {x}; audio must be finite",
                            frame as f64 / spec.sample_rate as f64
                        )));
                    }
                    Err(e) => {
                        truncated = stop_reading(name, e)?;
                        break;
                    }
                }
            }
        }
        hound::SampleFormat::Int => {
            let bits = spec.bits_per_sample;
            if !(1..=32).contains(&bits) {
                return Err(Error::invalid_audio(format!(
                    "`{name}`: unsupported {bits}-bit integer samples"
                )));
            }
            let scale = 1.0 / (1u64 << (bits - 1)) as f64;
            for s in wav.samples::<i32>() {
                match s {
                    Ok(x) => interleaved.push((x as f64 * scale) as f32),
                    Err(e) => {
                        truncated = stop_reading(name, e)?;
                        break;
                    }
                }
            }
        }
    }
    if truncated {
        tracing::warn!(
            file = name,
            "WAV data chunk is truncated; using the {} samples before the cut",
            interleaved.len()
        );
    }

    let samples: Vec<f32> = if channels == 1 {
        interleaved
    } else {
        interleaved
            .chunks_exact(channels)
            .map(|frame| (frame.iter().map(|&x| x as f64).sum::<f64>() / channels as f64) as f32)
            .collect()
    };
    if samples.is_empty() {
        return Err(Error::invalid_audio(format!(
            "`{name}` contains no audio samples"
        )));
    }
    let out = WavData {
        samples,
        sample_rate: spec.sample_rate,
        channels: spec.channels,
    };
    let dur = out.duration_seconds();
    if dur < min_seconds as f64 {
        return Err(Error::invalid_audio(format!(
            "`{name}` is {dur:.3} s long; at least {min_seconds} s is needed"
        )));
    }
    Ok(out)
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

/// Writes `samples` as a 16-bit PCM mono WAV file at `path`, atomically: the data goes to a
/// temporary file in the same folder, which is synced and then renamed over `path`.
pub fn write_wav_atomic(path: &Path, samples: &[f32], sample_rate: u32) -> Result<()> {
    let bytes = encode_wav(samples, sample_rate)?;
    let file_name = path.file_name().ok_or_else(|| {
        Error::invalid_argument("path", format!("`{}` is not a file path", path.display()))
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(
        ".{}.{}.{nanos}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

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
        // Missing folder: an Io error naming the temporary file's folder.
        let e = write_wav_atomic(&dir.join("missing/x.wav"), &[0.0], 16_000).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.to_string().contains("missing"));
        std::fs::remove_dir_all(&dir).unwrap();

        let mut out = Vec::new();
        write_wav_to(&mut out, &[0.5, -0.5], 8000).unwrap();
        let w = read_wav_bytes(&out, "mem", 0.0).unwrap();
        assert_eq!(w.samples.len(), 2);
        assert!((w.samples[0] - 16384.0 / 32768.0).abs() < 1e-6);
        assert!(encode_wav(&[0.0], 0).is_err());
    }
}
