//! Decoders independent of the encoders under test: hound (WAV), symphonia (FLAC, MP3),
//! the `ogg` reader with libopus' decoder (Ogg Opus, trimmed by pre-skip and the last
//! granule position), raw s16le (PCM at 24 kHz).
#![allow(dead_code)]

use std::io::Cursor;

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::codecs::CodecParameters;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

/// Decoded mono audio.
pub struct Decoded {
    pub sample_rate: u32,
    /// In `[-1, 1]`.
    pub samples: Vec<f32>,
}

impl Decoded {
    /// The samples as 16-bit PCM (exact for 16-bit sources).
    pub fn samples_i16(&self) -> Vec<i16> {
        self.samples
            .iter()
            .map(|&x| (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
            .collect()
    }

    /// SNR in dB against `want` at the best lag within +-3000 samples (codec delay).
    pub fn snr_against(&self, want: &[i16]) -> f64 {
        let want: Vec<f32> = want.iter().map(|&x| f32::from(x) / 32768.0).collect();
        (-3000isize..=3000)
            .step_by(1)
            .map(|lag| snr_at(&want, &self.samples, lag))
            .fold(f64::NEG_INFINITY, f64::max)
    }
}

/// SNR in dB of `y` against `x` with `y[i + lag] ~ x[i]`, over `x`'s length.
pub fn snr_at(x: &[f32], y: &[f32], lag: isize) -> f64 {
    let (mut sig, mut err) = (0.0f64, 0.0f64);
    for (i, &a) in x.iter().enumerate() {
        let j = i as isize + lag;
        let b = if j >= 0 && (j as usize) < y.len() {
            y[j as usize]
        } else {
            0.0
        };
        sig += f64::from(a) * f64::from(a);
        err += f64::from(a - b) * f64::from(a - b);
    }
    10.0 * (sig / err.max(1e-20)).log10()
}

/// Decodes `bytes` of `format` (`wav`, `pcm`, `flac`, `mp3`, `opus`).
pub fn decode(format: &str, bytes: &[u8]) -> Decoded {
    match format {
        "pcm" => Decoded {
            sample_rate: 24_000,
            samples: bytes
                .chunks_exact(2)
                .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
                .collect(),
        },
        "wav" => {
            // A streamed WAV states unknown sizes (0xFFFFFFFF, "to the end"): hound wants
            // the real ones.
            let mut bytes = bytes.to_vec();
            if bytes.len() >= 44 && bytes[40..44] == [0xff; 4] {
                let data = (bytes.len() - 44) as u32;
                bytes[4..8].copy_from_slice(&(data + 36).to_le_bytes());
                bytes[40..44].copy_from_slice(&data.to_le_bytes());
            }
            let mut r = hound::WavReader::new(Cursor::new(bytes)).expect("a WAV");
            let spec = r.spec();
            assert_eq!((spec.channels, spec.bits_per_sample), (1, 16));
            Decoded {
                sample_rate: spec.sample_rate,
                samples: r
                    .samples::<i16>()
                    .map(|x| f32::from(x.expect("a sample")) / 32768.0)
                    .collect(),
            }
        }
        "flac" | "mp3" => symphonia_decode(bytes, format),
        "opus" => opus_decode(bytes),
        other => panic!("no decoder for {other}"),
    }
}

fn symphonia_decode(bytes: &[u8], ext: &str) -> Decoded {
    let mss = MediaSourceStream::new(Box::new(Cursor::new(bytes.to_vec())), Default::default());
    let mut hint = Hint::new();
    hint.with_extension(ext);
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{ext}: not recognised: {e}"));
    let track = format.default_track(TrackType::Audio).unwrap().clone();
    let Some(CodecParameters::Audio(params)) = &track.codec_params else {
        panic!("{ext}: no audio codec parameters");
    };
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .unwrap();
    let mut samples = Vec::new();
    let mut piece: Vec<f32> = Vec::new();
    while let Some(packet) = format.next_packet().unwrap() {
        let buf = decoder.decode(&packet).unwrap();
        assert_eq!(buf.spec().channels().count(), 1, "{ext}: mono");
        buf.copy_to_vec_interleaved::<f32>(&mut piece);
        samples.extend_from_slice(&piece);
    }
    Decoded {
        sample_rate: params.sample_rate.unwrap(),
        samples,
    }
}

/// Ogg Opus at 24 kHz: OpusHead and OpusTags checked, packets decoded by libopus, the
/// pre-skip dropped and the end trimmed at the last page's granule position.
fn opus_decode(bytes: &[u8]) -> Decoded {
    const RATE: u32 = 24_000;
    let mut reader = ogg::reading::PacketReader::new(Cursor::new(bytes.to_vec()));
    let head = reader.read_packet_expected().expect("OpusHead");
    assert_eq!(&head.data[..8], b"OpusHead");
    assert_eq!(head.data[9], 1, "mono");
    let pre_skip = u64::from(u16::from_le_bytes([head.data[10], head.data[11]]));
    let tags = reader.read_packet_expected().expect("OpusTags");
    assert_eq!(&tags.data[..8], b"OpusTags");
    let mut packets = Vec::new();
    let mut last_granule = 0;
    let mut ended = false;
    while let Some(p) = reader.read_packet().expect("an Ogg page") {
        if p.last_in_page() {
            last_granule = p.absgp_page();
        }
        ended = p.last_in_stream();
        packets.push(p.data);
    }
    assert!(ended, "the last page has the end-of-stream flag");
    let mut code = 0;
    // SAFETY: a decoder made here, used with buffers of the stated sizes, freed below.
    let dec = unsafe { unsafe_libopus::opus_decoder_create(RATE as i32, 1, &mut code) };
    assert_eq!(code, 0);
    let mut out = Vec::new();
    let mut pcm = vec![0i16; 5760];
    for p in &packets {
        // SAFETY: `p` and `pcm` are live buffers of the lengths passed.
        let n = unsafe {
            unsafe_libopus::opus_decode(dec, p.as_ptr(), p.len() as i32, pcm.as_mut_ptr(), 5760, 0)
        };
        assert!(n > 0, "a packet decodes: {n}");
        out.extend_from_slice(&pcm[..n as usize]);
    }
    // SAFETY: made above, not used after.
    unsafe { unsafe_libopus::opus_decoder_destroy(dec) };
    let per48 = u64::from(48_000 / RATE);
    let start = (pre_skip / per48) as usize;
    let end = ((last_granule / per48) as usize).min(out.len());
    Decoded {
        sample_rate: RATE,
        samples: out[start..end]
            .iter()
            .map(|&x| f32::from(x) / 32768.0)
            .collect(),
    }
}
