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

/// Signal-to-noise ratio in dB of `y` against `x` at lag `lag` (y[i + lag] ~ x[i]) over
/// `x`'s length.
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
    10.0 * (sig / err.max(1e-30)).log10()
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
        "flac" | "mp3" => {
            let d = decode_symphonia::<f32>(bytes, format);
            Decoded {
                sample_rate: d.rate,
                samples: d.samples,
            }
        }
        "opus" => Decoded {
            sample_rate: 24_000,
            samples: decode_opus(bytes, 24_000).samples,
        },
        other => panic!("no decoder for {other}"),
    }
}

/// Decoded by symphonia: samples (as `T`), sample rate, and the frame count the container
/// states (None when unknown), and the FLAC MD5 check's result.
pub struct SymphoniaDecoded<T> {
    pub samples: Vec<T>,
    pub rate: u32,
    pub stated_frames: Option<u64>,
    pub verified: Option<bool>,
}

pub fn decode_symphonia<T>(bytes: &[u8], ext: &str) -> SymphoniaDecoded<T>
where
    T: symphonia::core::audio::sample::Sample
        + symphonia::core::audio::conv::FromSample<u8>
        + symphonia::core::audio::conv::FromSample<u16>
        + symphonia::core::audio::conv::FromSample<symphonia::core::audio::sample::u24>
        + symphonia::core::audio::conv::FromSample<u32>
        + symphonia::core::audio::conv::FromSample<i8>
        + symphonia::core::audio::conv::FromSample<i16>
        + symphonia::core::audio::conv::FromSample<symphonia::core::audio::sample::i24>
        + symphonia::core::audio::conv::FromSample<i32>
        + symphonia::core::audio::conv::FromSample<f32>
        + symphonia::core::audio::conv::FromSample<f64>,
{
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
        .make_audio_decoder(params, &AudioDecoderOptions::default().verify(true))
        .unwrap();
    let mut samples = Vec::new();
    let mut piece = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            // A WAV of unknown length: symphonia reads whole packets and stops with an
            // end-of-file error at the end, dropping the samples of the last short packet.
            Err(symphonia::core::errors::Error::IoError(e))
                if ext == "wav" && e.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                break
            }
            Err(e) => panic!("{ext}: {e}"),
        };
        let buf = decoder.decode(&packet).unwrap();
        assert_eq!(buf.spec().channels().count(), 1, "{ext}: mono");
        buf.copy_to_vec_interleaved::<T>(&mut piece);
        samples.extend_from_slice(&piece);
    }
    SymphoniaDecoded {
        samples,
        rate: params.sample_rate.unwrap(),
        stated_frames: track.num_frames,
        verified: decoder.finalize().verify_ok,
    }
}

/// An Ogg Opus stream read with the `ogg` crate and decoded by libopus at `rate`.
pub struct OpusDecoded {
    pub pre_skip: u16,
    pub input_rate: u32,
    pub vendor: String,
    /// (granule position, end-of-stream, packets so far) of every audio page, in order.
    pub pages: Vec<(u64, bool, usize)>,
    pub packets: Vec<Vec<u8>>,
    /// Decoded samples, pre-skip removed and cut at the last granule position.
    pub samples: Vec<f32>,
    /// Samples decoded before trimming.
    pub decoded: usize,
}

pub fn decode_opus(bytes: &[u8], rate: u32) -> OpusDecoded {
    let mut reader = ogg::reading::PacketReader::new(Cursor::new(bytes.to_vec()));
    let head = reader.read_packet_expected().unwrap();
    assert!(
        head.first_in_stream() && head.last_in_page(),
        "OpusHead alone on page 1"
    );
    let h = &head.data;
    assert_eq!(h.len(), 19);
    assert_eq!(&h[..8], b"OpusHead");
    assert_eq!(h[8], 1, "version");
    assert_eq!(h[9], 1, "channels");
    let pre_skip = u16::from_le_bytes([h[10], h[11]]);
    let input_rate = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
    assert_eq!(&h[16..19], &[0, 0, 0], "gain 0, mapping family 0");
    let tags = reader.read_packet_expected().unwrap();
    assert!(tags.last_in_page(), "OpusTags ends its page");
    assert_eq!(tags.absgp_page(), 0);
    let t = &tags.data;
    assert_eq!(&t[..8], b"OpusTags");
    let vlen = u32::from_le_bytes([t[8], t[9], t[10], t[11]]) as usize;
    let vendor = String::from_utf8(t[12..12 + vlen].to_vec()).unwrap();
    assert_eq!(&t[12 + vlen..], &[0, 0, 0, 0], "no comments");

    let mut pages = Vec::new();
    let mut packets = Vec::new();
    let mut ended = false;
    while let Some(p) = reader.read_packet().unwrap() {
        assert!(!ended, "packets after the end of stream");
        ended = p.last_in_stream();
        packets.push(p.data.clone());
        if p.last_in_page() {
            pages.push((p.absgp_page(), p.last_in_stream(), packets.len()));
        }
    }
    assert!(ended, "the last page has the end-of-stream flag");

    let mut code = 0;
    // SAFETY: a decoder made here, used with buffers of the sizes passed, freed below.
    let dec = unsafe { unsafe_libopus::opus_decoder_create(rate as i32, 1, &mut code) };
    assert_eq!(code, 0);
    let mut out = Vec::new();
    let mut pcm = vec![0i16; 5760];
    for p in &packets {
        // SAFETY: as above.
        let n = unsafe {
            unsafe_libopus::opus_decode(dec, p.as_ptr(), p.len() as i32, pcm.as_mut_ptr(), 5760, 0)
        };
        assert!(n > 0, "packet decodes: {n}");
        out.extend_from_slice(&pcm[..n as usize]);
    }
    // SAFETY: made above, freed once.
    unsafe { unsafe_libopus::opus_decoder_destroy(dec) };
    let decoded = out.len();
    let per48 = u64::from(48_000 / rate);
    let skip = (u64::from(pre_skip) / per48) as usize;
    let end = (pages.last().unwrap().0 / per48) as usize;
    assert!(
        skip <= end && end <= decoded,
        "pre-skip {skip}, end {end}, decoded {decoded}"
    );
    OpusDecoded {
        pre_skip,
        input_rate,
        vendor,
        pages,
        packets,
        samples: i16_to_f32(&out[skip..end]),
        decoded,
    }
}

pub fn i16_to_f32(x: &[i16]) -> Vec<f32> {
    x.iter().map(|&s| f32::from(s) / 32767.0).collect()
}
