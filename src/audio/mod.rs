//! Audio plumbing around the graphs: WAV input/output ([`wav`]), resampling
//! ([`mod@resample`]), librosa-compatible silence trimming ([`mod@trim`]), fades
//! ([`fade`]), BS.1770 loudness ([`loudness`]) and, with the `codecs` feature, encoders of
//! WAV, raw PCM, FLAC, MP3 and Ogg Opus (`encode`).

#[cfg(feature = "codecs")]
pub mod encode;
pub mod fade;
pub mod loudness;
pub mod resample;
pub mod trim;
pub mod wav;

pub use resample::resample;
pub use trim::trim;
pub use wav::{encode_wav, read_wav, read_wav_bytes, write_wav_atomic, write_wav_to, WavData};
