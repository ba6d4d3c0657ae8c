//! The audio encoders (`chatterbox_ort::audio::encode`), checked by decoding what they write
//! with independent decoders: symphonia for WAV, FLAC and MP3; the `ogg` crate's page reader
//! and libopus's decoder for Ogg Opus.
#![cfg(feature = "codecs")]

use chatterbox_ort::audio::encode::{encode, AudioEncoder, AudioFormat};
use chatterbox_ort::audio::wav::{encode_wav, pcm16_le, to_i16, wav_header};
use chatterbox_ort::ErrorKind;

#[path = "support/audio_decode.rs"]
mod audio_decode;
use audio_decode::{decode_opus, decode_symphonia as decode, snr_at};

const SR: u32 = 24_000;

/// 1.3 s at 24 kHz: a 440 Hz sine plus a linear chirp from 100 Hz to 4 kHz, peak 0.5.
fn signal() -> Vec<f32> {
    let n = (1.3 * SR as f64) as usize;
    let dur = n as f64 / SR as f64;
    (0..n)
        .map(|i| {
            let t = i as f64 / SR as f64;
            let (f0, f1) = (100.0, 4000.0);
            let chirp =
                (2.0 * std::f64::consts::PI * (f0 * t + (f1 - f0) * t * t / (2.0 * dur))).sin();
            let sine = (2.0 * std::f64::consts::PI * 440.0 * t).sin();
            (0.25 * sine + 0.25 * chirp) as f32
        })
        .collect()
}

/// What a 16-bit encoder sees of `x`.
fn quantized(x: &[f32]) -> Vec<i16> {
    x.iter().map(|&s| to_i16(s)).collect()
}

/// Pieces of odd sizes, cycling, covering `x`.
fn pieces(x: &[f32]) -> Vec<&[f32]> {
    let sizes = [1usize, 7, 480, 3000, 13, 4096, 999, 0, 2];
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < x.len() {
        let n = sizes[i % sizes.len()].min(x.len() - at);
        out.push(&x[at..at + n]);
        at += n;
        i += 1;
    }
    out
}

/// Pushes `x` in [`pieces`]; returns each push's bytes and finish's bytes.
fn stream(format: AudioFormat, x: &[f32]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut enc = AudioEncoder::new(format, SR).unwrap();
    let pushed = pieces(x)
        .into_iter()
        .map(|p| enc.push(p).unwrap())
        .collect();
    (pushed, enc.finish().unwrap())
}

fn concat(pushed: &[Vec<u8>], last: &[u8]) -> Vec<u8> {
    let mut all: Vec<u8> = pushed.concat();
    all.extend_from_slice(last);
    all
}

/// The lag in `lags` with the best SNR, and that SNR.
fn best_lag(x: &[f32], y: &[f32], lags: std::ops::RangeInclusive<isize>) -> (isize, f64) {
    lags.map(|l| (l, snr_at(x, y, l)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap()
}

// ---------------------------------------------------------------- names and parameters

#[test]
fn names_types_and_extensions() {
    for f in AudioFormat::ALL {
        assert_eq!(AudioFormat::from_name(f.name()).unwrap(), f);
        let path = format!("out.{}", f.extension());
        assert_eq!(AudioFormat::from_extension(path.as_ref()), Some(f));
    }
    let names: Vec<_> = AudioFormat::ALL.iter().map(|f| f.name()).collect();
    assert_eq!(names, ["wav", "pcm", "flac", "mp3", "opus"]);
    let types: Vec<_> = AudioFormat::ALL.iter().map(|f| f.content_type()).collect();
    assert_eq!(
        types,
        [
            "audio/wav",
            "audio/pcm",
            "audio/flac",
            "audio/mpeg",
            "audio/ogg"
        ]
    );
    let ext = |p: &str| AudioFormat::from_extension(p.as_ref());
    assert_eq!(ext("a/b.OGG"), Some(AudioFormat::Opus));
    assert_eq!(ext("x.raw"), Some(AudioFormat::Pcm));
    assert_eq!(ext("x.Mp3"), Some(AudioFormat::Mp3));
    assert_eq!(ext("x.aac"), None);
    assert_eq!(ext("x"), None);
    assert_eq!(ext("-"), None);
}

#[test]
fn bad_names_and_rates_are_invalid_arguments_naming_the_parameter() {
    for (name, extra) in [
        ("aac", "not supported"),
        ("WAV", "lowercase"),
        ("", "not supported"),
    ] {
        let e = AudioFormat::from_name(name).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let msg = e.to_string();
        assert!(msg.contains("`response_format`"), "{msg}");
        assert!(msg.contains(extra), "{msg}");
        assert!(msg.contains("wav, pcm, flac, mp3, opus"), "{msg}");
    }
    let bad_rates = [
        (AudioFormat::Wav, 0),
        (AudioFormat::Pcm, 0),
        (AudioFormat::Flac, 0),
        (AudioFormat::Flac, 96_001),
        (AudioFormat::Mp3, 0),
        (AudioFormat::Mp3, 23_000),
        (AudioFormat::Opus, 0),
        (AudioFormat::Opus, 44_100),
    ];
    for (f, sr) in bad_rates {
        for e in [
            AudioEncoder::new(f, sr).unwrap_err(),
            encode(f, sr, &[0.0]).unwrap_err(),
        ] {
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{f} {sr}");
            let msg = e.to_string();
            assert!(msg.contains("`sample_rate`"), "{msg}");
            assert!(msg.contains(&format!("{sr} Hz")), "{msg}");
        }
    }
    for (f, sr) in [
        (AudioFormat::Flac, 96_000),
        (AudioFormat::Flac, 8_000),
        (AudioFormat::Mp3, 44_100),
        (AudioFormat::Mp3, 8_000),
        (AudioFormat::Opus, 48_000),
        (AudioFormat::Opus, 8_000),
        (AudioFormat::Wav, 1),
    ] {
        assert!(encode(f, sr, &[0.1; 100]).is_ok(), "{f} {sr}");
    }
}

#[test]
fn encoder_is_send() {
    fn send<T: Send>(_: &T) {}
    for f in AudioFormat::ALL {
        let enc = AudioEncoder::new(f, SR).unwrap();
        send(&enc);
        assert_eq!(enc.format(), f);
        assert_eq!(enc.sample_rate(), SR);
    }
}

// ---------------------------------------------------------------- lossless

#[test]
fn wav_and_pcm_round_trip_exactly() {
    let x = signal();
    let q = quantized(&x);
    let wav = encode(AudioFormat::Wav, SR, &x).unwrap();
    assert_eq!(wav, encode_wav(&x, SR).unwrap());
    let d = decode::<i16>(&wav, "wav");
    assert_eq!(d.rate, SR);
    assert_eq!(d.samples, q);

    // Streamed: the unknown-length header, then the samples as pushed.
    let (pushed, last) = stream(AudioFormat::Wav, &x);
    assert_eq!(&pushed[0][..44], &wav_header(SR, None));
    assert!(last.is_empty());
    let all = concat(&pushed, &last);
    assert_eq!(all.len(), 44 + 2 * x.len());
    assert_eq!(&all[44..], &pcm16_le(&x)[..]);
    // symphonia reads it up to its last whole packet (it drops a short last one of a
    // stream of unknown length): a prefix of the input, at most one packet short.
    let d = decode::<i16>(&all, "wav");
    eprintln!(
        "streamed wav: symphonia decoded {} of {}",
        d.samples.len(),
        q.len()
    );
    assert!(d.samples.len() + 4096 >= q.len(), "{}", d.samples.len());
    assert_eq!(d.samples, q[..d.samples.len()]);

    let pcm = encode(AudioFormat::Pcm, SR, &x).unwrap();
    let back: Vec<i16> = pcm
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    assert_eq!(back, q);
    let (pushed, last) = stream(AudioFormat::Pcm, &x);
    assert_eq!(concat(&pushed, &last), pcm);
    // Every push returns its own samples at once.
    for (p, bytes) in pieces(&x).iter().zip(&pushed) {
        assert_eq!(bytes.len(), 2 * p.len());
    }
}

/// The 34-byte STREAMINFO after `fLaC` and the block header: (total samples, MD5).
fn flac_streaminfo(bytes: &[u8]) -> (u64, [u8; 16]) {
    assert_eq!(&bytes[..4], b"fLaC");
    assert_eq!(bytes[4], 0x80, "STREAMINFO, the last metadata block");
    assert_eq!(&bytes[5..8], &[0, 0, 34]);
    let info = &bytes[8..42];
    let block = u16::from_be_bytes([info[0], info[1]]);
    assert_eq!(block, 4096, "min block size");
    let rate =
        (u32::from(info[10]) << 12) | (u32::from(info[11]) << 4) | (u32::from(info[12]) >> 4);
    assert_eq!(rate, SR);
    assert_eq!((info[12] >> 1) & 7, 0, "one channel");
    assert_eq!(((info[12] & 1) << 4) | (info[13] >> 4), 15, "16 bits");
    let total = (u64::from(info[13] & 0x0f) << 32)
        | u64::from(u32::from_be_bytes([info[14], info[15], info[16], info[17]]));
    (total, info[18..34].try_into().unwrap())
}

#[test]
fn flac_is_lossless_with_length_and_md5() {
    let x = signal();
    let q = quantized(&x);
    let flac = encode(AudioFormat::Flac, SR, &x).unwrap();
    let (total, md5) = flac_streaminfo(&flac);
    assert_eq!(total, x.len() as u64);
    assert_ne!(md5, [0; 16]);
    let d = decode::<i16>(&flac, "flac");
    assert_eq!(d.rate, SR);
    assert_eq!(d.stated_frames, Some(x.len() as u64));
    assert_eq!(d.samples, q, "lossless: exactly the 16-bit input");
    assert_eq!(d.verified, Some(true), "symphonia's MD5 check");
    // Compressed: a tonal signal takes well under half of 16-bit PCM.
    assert!(flac.len() < x.len(), "{} bytes", flac.len());

    // Streamed: the same frames; a STREAMINFO of unknown length and no MD5.
    let (pushed, last) = stream(AudioFormat::Flac, &x);
    let all = concat(&pushed, &last);
    assert_eq!(flac_streaminfo(&all), (0, [0; 16]));
    assert_eq!(all.len(), flac.len());
    assert_eq!(&all[42..], &flac[42..]);
    assert_eq!(decode::<i16>(&all, "flac").samples, q);
    // Frames go out as blocks fill: everything but the last partial block before finish.
    let before: usize = pushed.iter().map(Vec::len).sum();
    assert!(before > all.len() * 3 / 4, "{before} of {}", all.len());
}

// ---------------------------------------------------------------- lossy

/// LAME's delay before the first input sample in the decoded audio, without an Info tag:
/// 576 samples of encoder delay plus the 529 of an MPEG decoder's synthesis filter bank.
const MP3_DELAY: usize = 576 + 529;
/// Samples per MPEG-2 Layer III frame (24 kHz).
const MP3_FRAME: usize = 576;

/// Measured on [`signal`] (LAME 3.100 as `mp3lame-sys` 0.1.11 vendors it, CBR 64 kbit/s,
/// -q 2; decoded by symphonia 0.6.1): the file decodes to exactly the input length at lag 0
/// with an SNR of 25.97 dB; the stream (no Info tag) to 32832 samples (57 frames) at lag 1105,
/// the same SNR; its first bytes come after 3488 samples were pushed, 9908 of its 10944 bytes
/// before `finish`.
#[test]
fn mp3_decodes_to_the_input() {
    let x = signal();
    let mp3 = encode(AudioFormat::Mp3, SR, &x).unwrap();
    // CBR 64 kbit/s at 24 kHz: 192-byte frames of 576 samples (no padding slots at 24 kHz).
    assert_eq!(mp3.len() % 192, 0, "{}", mp3.len());
    let d = decode::<f32>(&mp3, "mp3");
    assert_eq!(d.rate, SR);
    // The Info tag's delay and padding let the decoder return exactly the input.
    assert_eq!(d.samples.len(), x.len());
    let (lag, snr) = best_lag(&x, &d.samples, -2000..=2000);
    assert_eq!(lag, 0, "aligned by the Info tag");
    assert!(snr >= 20.0, "SNR {snr:.2} dB (measured 25.97)");

    // Streamed: LAME's frames as made, the same audio without the Info tag frame.
    let (pushed, last) = stream(AudioFormat::Mp3, &x);
    let all = concat(&pushed, &last);
    assert_eq!(
        &mp3[192..],
        &all[..],
        "the file is the Info frame + the stream"
    );
    let mut one = AudioEncoder::new(AudioFormat::Mp3, SR).unwrap();
    let mut whole = one.push(&x).unwrap();
    whole.extend(one.finish().unwrap());
    assert_eq!(whole, all, "the pieces' sizes do not change LAME's output");
    let s = decode::<f32>(&all, "mp3");
    assert_eq!(s.rate, SR);
    // Without the tag the decoder keeps LAME's delay and pads to whole frames.
    assert_eq!(s.samples.len() % MP3_FRAME, 0);
    assert!(
        (x.len() + MP3_DELAY..=x.len() + MP3_DELAY + MP3_FRAME).contains(&s.samples.len()),
        "{} samples",
        s.samples.len()
    );
    let (slag, ssnr) = best_lag(&x, &s.samples, -2000..=2000);
    assert_eq!(slag, MP3_DELAY as isize);
    assert!(ssnr >= 20.0, "SNR {ssnr:.2} dB (measured 25.97)");
    // Frames are sent as LAME makes them: from the first 200 ms on, most before finish.
    let mut fed = 0;
    let mut first = None;
    for (p, b) in pieces(&x).iter().zip(&pushed) {
        fed += p.len();
        if !b.is_empty() && first.is_none() {
            first = Some(fed);
        }
    }
    assert!(
        first.is_some_and(|n| n <= 4800),
        "first bytes after {first:?} samples"
    );
    let before: usize = pushed.iter().map(Vec::len).sum();
    assert!(
        before * 10 >= all.len() * 8,
        "{before} of {} bytes",
        all.len()
    );
}

/// Measured on [`signal`] (libopus 1.3.1 as unsafe-libopus 0.2.0, 48 kbit/s VBR, 20 ms,
/// all packets CELT): 66 packets, pages ending at granules 48000, 62400 and 62712 (EOS),
/// decoded at 24 kHz and trimmed by pre-skip and the last granule to exactly the input, lag
/// 0, SNR 33.27 dB. (At 32 kbit/s the encoder codes the first 46 packets in hybrid mode and
/// the SNR is 10.19 dB, hence the 48 kbit/s default.)
#[test]
fn ogg_opus_decodes_to_the_input() {
    let x = signal();
    let n = x.len() as u64;
    let opus = encode(AudioFormat::Opus, SR, &x).unwrap();
    let d = decode_opus(&opus, 24_000);
    assert_eq!(d.input_rate, SR);
    // Pre-skip: the encoder's lookahead at 24 kHz (2.5 ms + 4 ms delay compensation = 156
    // samples), in 48 kHz samples.
    assert_eq!(d.pre_skip, 312);
    assert!(d.vendor.starts_with("unsafe-libopus"), "{}", d.vendor);
    // One 20 ms packet (960 samples at 48 kHz) per 480 input samples, enough to cover the
    // input after the pre-skip, and not one more.
    let packets = (n + 156).div_ceil(480);
    assert_eq!(d.packets.len() as u64, packets);
    // Granule positions: 960 per packet so far, but the last: pre-skip + the input length,
    // which trims the padding of the last packet.
    let (last, rest) = d.pages.split_last().unwrap();
    assert_eq!(*last, (312 + 2 * n, true, packets as usize));
    let mut before = 0;
    for &(granule, eos, so_far) in rest {
        assert!(!eos);
        assert_eq!(granule, 960 * so_far as u64);
        assert!(so_far - before <= 50, "at most 50 packets (1 s) per page");
        before = so_far;
    }
    assert_eq!(
        rest.len(),
        2,
        "65 packets from one push: pages of 50 and 15"
    );
    assert_eq!(d.decoded as u64, 480 * packets);
    assert_eq!(d.samples.len(), x.len(), "trimmed to the input length");
    let (lag, snr) = best_lag(&x, &d.samples, -500..=500);
    assert_eq!(lag, 0, "aligned by the pre-skip");
    assert!(snr >= 28.0, "SNR {snr:.2} dB (measured 33.27)");
    // At the 48 kHz of the granule positions: the same, twice as many samples.
    assert_eq!(decode_opus(&opus, 48_000).samples.len(), 2 * x.len());

    // Streamed: the same packets; each push that completes a frame ends a page at once.
    let (pushed, last) = stream(AudioFormat::Opus, &x);
    let all = concat(&pushed, &last);
    let s = decode_opus(&all, 24_000);
    assert_eq!(s.packets, d.packets);
    assert_eq!(s.samples, d.samples);
    let mut fed = 0;
    for (i, (p, b)) in pieces(&x).iter().zip(&pushed).enumerate() {
        let frames_before = fed / 480;
        fed += p.len();
        let completes = fed / 480 > frames_before;
        // The first push carries the two header pages.
        assert_eq!(
            !b.is_empty(),
            completes || i == 0,
            "push {i}: {} bytes",
            b.len()
        );
        // Whole pages: each push's bytes start at a page.
        assert!(b.is_empty() || b.starts_with(b"OggS"), "push {i}");
    }
    // What finish adds: the last partial frame and the padding, one page.
    assert_eq!(s.pages.last().unwrap().2 - s.pages[s.pages.len() - 2].2, 1);
}

// ---------------------------------------------------------------- edge cases

#[test]
fn empty_input_gives_valid_files() {
    for f in AudioFormat::ALL {
        let streamed = AudioEncoder::new(f, SR).unwrap().finish().unwrap();
        let file = encode(f, SR, &[]).unwrap();
        match f {
            AudioFormat::Wav => {
                assert_eq!(streamed, wav_header(SR, None));
                assert_eq!(file, wav_header(SR, Some(0)));
                for b in [&streamed, &file] {
                    let d = decode::<i16>(b, "wav");
                    assert_eq!((d.samples.len(), d.rate), (0, SR));
                }
            }
            AudioFormat::Pcm => {
                assert!(streamed.is_empty() && file.is_empty());
            }
            AudioFormat::Flac => {
                // fLaC and STREAMINFO, no frames (ffmpeg 6 decodes these to 0 samples;
                // symphonia 0.6.1 cannot open a FLAC stream without a frame).
                assert_eq!(streamed.len(), 42);
                assert_eq!(flac_streaminfo(&streamed), (0, [0; 16]));
                assert_eq!(file.len(), 42);
                let md5_of_nothing = [
                    0xd4, 0x1d, 0x8c, 0xd9, 0x8f, 0x00, 0xb2, 0x04, 0xe9, 0x80, 0x09, 0x98, 0xec,
                    0xf8, 0x42, 0x7e,
                ];
                assert_eq!(flac_streaminfo(&file), (0, md5_of_nothing));
            }
            AudioFormat::Mp3 => {
                // The file: the Info frame and two frames of silence, trimmed to nothing.
                assert_eq!(decode::<f32>(&file, "mp3").samples.len(), 0);
                // The stream: LAME's two frames of silence (its delay and padding).
                let d = decode::<f32>(&streamed, "mp3");
                assert_eq!(d.samples.len(), 2 * MP3_FRAME);
                assert!(d.samples.iter().all(|s| s.abs() < 1e-3));
            }
            AudioFormat::Opus => {
                assert_eq!(streamed, file);
                let d = decode_opus(&file, 24_000);
                // One packet to cover the pre-skip; the only audio page ends the stream at
                // the pre-skip: no samples.
                assert_eq!(d.packets.len(), 1);
                assert_eq!(d.pages, [(312, true, 1)]);
                assert!(d.samples.is_empty());
            }
        }
    }
}

/// NaN, infinities and samples beyond +-1 are encoded as `to_i16` says (NaN as 0, the rest
/// clamped) by every format, without a panic.
#[test]
fn non_finite_and_out_of_range_samples_are_clamped() {
    let odd = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1e30,
        -1e30,
        2.0,
        -2.0,
        0.5,
    ];
    let x: Vec<f32> = odd.iter().copied().cycle().take(4000).collect();
    let q = quantized(&x);
    assert_eq!(
        &q[..8],
        &[0, 32767, -32767, 32767, -32767, 32767, -32767, 16384]
    );
    for f in AudioFormat::ALL {
        let file = encode(f, SR, &x).unwrap();
        let (pushed, last) = stream(f, &x);
        let all = concat(&pushed, &last);
        match f {
            AudioFormat::Wav => assert_eq!(decode::<i16>(&file, "wav").samples, q),
            AudioFormat::Pcm => assert_eq!(file, pcm16_le(&x)),
            AudioFormat::Flac => {
                assert_eq!(decode::<i16>(&file, "flac").samples, q);
                assert_eq!(decode::<i16>(&all, "flac").samples, q);
            }
            AudioFormat::Mp3 => {
                let d = decode::<f32>(&file, "mp3");
                assert_eq!(d.samples.len(), x.len());
                assert!(d.samples.iter().all(|s| s.is_finite()));
            }
            AudioFormat::Opus => {
                let d = decode_opus(&file, 24_000);
                assert_eq!(d.samples.len(), x.len());
                assert_eq!(decode_opus(&all, 24_000).samples, d.samples);
            }
        }
    }
}
