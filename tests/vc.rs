//! Voice conversion (`Engine::convert`, reference `ChatterboxVC`) against the reference
//! goldens of the tiny bundle (`onnx/tiny/goldens/vc.safetensors` + `vc.json`, made by
//! `export/vc_goldens.py` from the reference code with the bundle's weights), and the
//! engine's own contract for long sources (pieces, joins), determinism and cancellation.
//!
//! Tolerances: tokens exactly; fp32 tensors (target prompt mel and x-vector, flow mel, HiFT
//! wav, watermarked output) within a relative L2 error of 1e-4 given the reference's random
//! draws; the engine against its own stage chain bit for bit.

mod pipeline_support;

use std::sync::OnceLock;

use chatterbox_ort::bundle::S3GenRefView;
use chatterbox_ort::conditioning;
use chatterbox_ort::s3gen::noise::S3GenNoise;
use chatterbox_ort::s3gen::{flow, vocoder};
use chatterbox_ort::{audio, watermark, ConvertRequest, ErrorKind, S3GenReference};
use ndarray::{Array2, Array3};
use pipeline_support::{bundle_dir, check_close, engine, load_goldens, max_abs, Goldens};

const FP32_TOL: f64 = 1e-4;

/// `goldens/vc.safetensors` and `goldens/vc.json`.
fn vc() -> &'static Goldens {
    static G: OnceLock<Goldens> = OnceLock::new();
    G.get_or_init(|| {
        let g = load_goldens(&bundle_dir().join("goldens"), "vc");
        assert!(!g.meta.is_null(), "goldens/vc.json missing or not JSON");
        g
    })
}

/// The reference's target (`ref_dict`) from the goldens.
fn golden_target() -> S3GenReference {
    let g = vc();
    let tok = g.get("vc_target_prompt_token");
    let feat = g.get("vc_target_prompt_feat");
    let emb = g.get("vc_target_embedding");
    S3GenReference {
        prompt_token: Array2::from_shape_vec((1, tok.shape[1]), tok.i64.clone()).unwrap(),
        prompt_feat: Array3::from_shape_vec((1, feat.shape[1], feat.shape[2]), feat.f32.clone())
            .unwrap(),
        embedding: Array2::from_shape_vec((1, emb.shape[1]), emb.f32.clone()).unwrap(),
    }
}

/// The stages of one piece with the given draws: flow (prompt + tokens, the bundle's
/// schedule and CFG), HiFT, trim-fade, and (with `watermark`) Perth. Returns the mel, the
/// wav before the watermark and the output before the engine's clamp to [-1, 1] (the
/// reference does not clamp: Perth adds its residual after HiFT's +-0.99).
fn chain(
    target: S3GenRefView<'_>,
    tokens: &[i64],
    steps: usize,
    noise: Vec<f32>,
    hift_draws: impl FnOnce(usize) -> vocoder::HiftDraws,
    watermark_on: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let e = engine();
    let host = e.host();
    let config = e.bundle().config();
    let mut all: Vec<i64> = target.prompt_token.iter().copied().collect();
    all.extend_from_slice(tokens);
    let xvec: Vec<f32> = target.embedding.iter().copied().collect();
    let enc = flow::encode(host, &all, &xvec).unwrap();
    let prompt_frames = target.prompt_feat.shape()[1];
    let feat: Vec<f32> = target.prompt_feat.iter().copied().collect();
    let params = flow::FlowParams::new(config, e.bundle().generation(), steps);
    let mel = flow::solve_euler(host, &enc, noise, &feat, prompt_frames, &params, |_| {}).unwrap();
    let frames = enc.frames - prompt_frames;
    let draws = hift_draws(frames * config.s3gen.samples_per_mel_frame);
    let mut wav = vocoder::hift(host, &mel, frames, draws).unwrap();
    let s3 = &config.s3gen;
    let sr = f64::from(s3.sample_rate);
    let window = vocoder::trim_fade_window(
        (s3.fade_zeros_seconds * sr).round() as usize,
        (s3.fade_in_seconds * sr).round() as usize,
    );
    vocoder::apply_trim_fade(&mut wav, &window);
    let out = if watermark_on {
        watermark::apply(host, &wav, s3.sample_rate, config.perth.sample_rate).unwrap()
    } else {
        wav.clone()
    };
    (mel, wav, out)
}

#[test]
fn target_voice_matches_reference() {
    let e = engine();
    let g = vc();
    let file = g.meta["target"]["file"]
        .as_str()
        .expect("vc.json target.file");
    let target = e.vc_target_from_wav(&bundle_dir().join(file)).unwrap();
    assert_eq!(
        target.prompt_token.iter().copied().collect::<Vec<_>>(),
        g.i64("vc_target_prompt_token"),
        "target prompt tokens"
    );
    assert_eq!(
        target.prompt_feat.shape(),
        &g.get("vc_target_prompt_feat").shape[..],
        "prompt mel shape"
    );
    check_close(
        "target prompt mel",
        target.prompt_feat.as_slice().unwrap(),
        g.f32("vc_target_prompt_feat"),
        FP32_TOL,
    );
    check_close(
        "target x-vector",
        target.embedding.as_slice().unwrap(),
        g.f32("vc_target_embedding"),
        FP32_TOL,
    );
}

#[test]
fn source_loading_and_tokens_match_reference() {
    let e = engine();
    let g = vc();
    let want = g.i64("vc_source_tokens");
    let src16 = g.f32("vc_source_16k");
    let tokens = conditioning::s3_tokens(e.host(), src16, None).unwrap();
    assert_eq!(tokens, want, "S3 tokens of the golden source");
    // librosa.load(sr=16000) of the committed clip: the same samples up to the rounding of
    // libsoxr's scalar vs SIMD engine, and the same tokens.
    let file = g.meta["source"]["file"]
        .as_str()
        .expect("vc.json source.file");
    let wav = audio::read_wav(&bundle_dir().join(file), 0.0).unwrap();
    let loaded = audio::resample(&wav.samples, wav.sample_rate, 16_000).unwrap();
    let cut = &loaded[..src16.len()];
    let d = max_abs(cut, src16);
    eprintln!("source at 16 kHz: max abs diff {d:.3e}");
    assert!(d <= 2e-6, "loaded source differs by {d:e}");
    assert_eq!(conditioning::s3_tokens(e.host(), cut, None).unwrap(), want);
    // The tokens the conversion uses for a one-piece source are the whole source's.
    let target = golden_target();
    assert_eq!(
        e.vc_source_tokens(src16, 16_000, target.view()).unwrap(),
        want
    );
}

#[test]
fn stages_match_reference_given_its_draws() {
    let e = engine();
    let g = vc();
    let target = golden_target();
    let steps = g.meta["flow"]["steps"].as_u64().unwrap() as usize;
    assert_eq!(steps, e.default_convert_request().flow_steps);
    let (mel, wav, out) = chain(
        target.view(),
        g.i64("vc_source_tokens"),
        steps,
        g.f32("vc_flow_noise").to_vec(),
        |samples| {
            assert_eq!(samples * 9, g.f32("vc_hift_sine_noise").len());
            vocoder::HiftDraws {
                phase_init: g.f32("vc_hift_phase_init").to_vec(),
                sine_noise: g.f32("vc_hift_sine_noise").to_vec(),
            }
        },
        true,
    );
    check_close("vc flow mel", &mel, g.f32("vc_mel"), FP32_TOL);
    // HiFT on our mel (not the golden one): the flow's rounding carries through.
    check_close("vc wav (HiFT + trim-fade)", &wav, g.f32("vc_wav"), FP32_TOL);
    check_close("vc output (Perth)", &out, g.f32("vc_output"), FP32_TOL);
    let clamped = |x: &[f32]| x.iter().map(|s| s.clamp(-1.0, 1.0)).collect::<Vec<f32>>();
    check_close(
        "vc output clamped to [-1, 1] as the engine returns it",
        &clamped(&out),
        &clamped(g.f32("vc_output")),
        FP32_TOL,
    );
}

/// A one-piece source converts exactly as the reference: the whole source's tokens through
/// the stage chain with random stream 0 of the seed (flow noise, then HiFT's draws), to the
/// reference's length.
#[test]
fn one_piece_conversion_is_the_reference_chain() {
    let e = engine();
    let g = vc();
    let target = golden_target();
    let req = ConvertRequest {
        seed: 1234,
        ..e.default_convert_request()
    };
    let audio = e
        .convert(g.f32("vc_source_16k"), 16_000, target.view(), &req)
        .unwrap();
    assert_eq!(audio.sample_rate, 24_000);
    assert_eq!(
        audio.samples.len(),
        g.f32("vc_output").len(),
        "output length"
    );
    assert_eq!(audio.stages.chunks, 1);
    assert_eq!(audio.stages.speech_tokens, g.i64("vc_source_tokens").len());
    assert!(audio.stages.s3gen_s > 0.0 && audio.stages.vocoder_s > 0.0);
    assert!(audio.stages.watermark_s > 0.0 && audio.stages.rtf > 0.0);

    let mut draws = S3GenNoise::new(req.seed, 0, 9);
    let tokens = g.i64("vc_source_tokens");
    let frames = 2 * (target.prompt_token.len() + tokens.len());
    let noise = draws.flow_noise(frames);
    let (_, _, out) = chain(
        target.view(),
        tokens,
        req.flow_steps,
        noise,
        |samples| draws.hift_draws(samples),
        true,
    );
    let out: Vec<f32> = out.into_iter().map(|s| s.clamp(-1.0, 1.0)).collect();
    assert_eq!(
        audio.samples, out,
        "convert vs the stage chain (bit for bit)"
    );
}

#[test]
fn conversion_is_deterministic_per_seed() {
    let e = engine();
    let g = vc();
    let target = golden_target();
    let req = ConvertRequest {
        seed: 7,
        flow_steps: 2,
        watermark: false,
    };
    let src = g.f32("vc_source_16k");
    let a = e.convert(src, 16_000, target.view(), &req).unwrap();
    let b = e.convert(src, 16_000, target.view(), &req).unwrap();
    assert_eq!(a.samples, b.samples, "same seed, same audio");
    let c = e
        .convert(
            src,
            16_000,
            target.view(),
            &ConvertRequest { seed: 8, ..req },
        )
        .unwrap();
    assert_ne!(a.samples, c.samples, "another seed, other audio");
}

/// A speech-like source: a pitch-gliding voiced tone with harmonics under a syllable-rate
/// envelope, a 120 ms near-silent pause every 1.3 s and a little noise throughout.
fn speechlike(seconds: f64, rate: u32) -> Vec<f32> {
    let n = (seconds * f64::from(rate)) as usize;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut phase = 0.0f64;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            let f0 = 140.0 + 30.0 * (2.0 * std::f64::consts::PI * 0.7 * t).sin();
            phase += 2.0 * std::f64::consts::PI * f0 / f64::from(rate);
            let voiced = phase.sin() + 0.5 * (2.0 * phase).sin() + 0.3 * (3.0 * phase).sin();
            let syllable = 0.55 + 0.45 * (2.0 * std::f64::consts::PI * 4.0 * t).sin();
            let pause = if t % 1.3 > 1.18 { 0.02 } else { 1.0 };
            (0.25 * pause * syllable * voiced + 0.004 * noise) as f32
        })
        .collect()
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

/// Level of the 10 ms window at `at` relative to the 400 ms around it, in dB.
fn level_db(out: &[f32], at: usize) -> f64 {
    let w = rms(&out[at..at + 240]);
    let around = rms(&out[at + 120 - 4800..at + 120 + 4800]);
    20.0 * (w / around).log10()
}

/// A 70 s source at 44.1 kHz: three pieces (the tokenizer's windows at 0, 26 and 52 s),
/// cut in the source's pauses, cross-faded. Asserts: the reference's output length
/// exactly; every sample finite and within [-1, 1]; each cut in a pause of the source; at
/// each join, every 10 ms window within 60 ms of the cross-fade has a level within
/// -10 dB / +6 dB of the 400 ms around it (the tiny bundle's output is full-band noise:
/// a misplaced trim-fade shows as a hole of -inf dB, a doubled overlap as +6 dB; away from
/// joins 10 ms windows measure -8.3 .. +4.3 dB); the streamed chunks are `convert`'s
/// samples bit for bit.
#[test]
fn long_source_is_converted_in_pieces_with_clean_joins() {
    let e = engine();
    let target = golden_target();
    let lag = 480; // the golden target's prompt mel has an odd last frame
    assert_eq!(
        target.prompt_feat.shape()[1],
        2 * target.prompt_token.len() + 1
    );
    let rate = 44_100;
    let seconds = 70.0;
    let src = speechlike(seconds, rate);
    let req = ConvertRequest {
        seed: 3,
        ..e.default_convert_request()
    };
    let t = std::time::Instant::now();
    let mut lens = Vec::new();
    let mut streamed = Vec::new();
    let stages = e
        .convert_streaming(&src, rate, target.view(), &req, &mut |c| {
            lens.push(c.len());
            streamed.extend_from_slice(c);
            true
        })
        .unwrap();
    eprintln!(
        "70 s source: {:.2} s, {} pieces of {lens:?} samples, {} tokens, RTF {:.3}",
        t.elapsed().as_secs_f64(),
        stages.chunks,
        stages.speech_tokens,
        stages.rtf
    );
    let n16 = audio::resample::resampled_len(src.len(), rate, 16_000);
    let tokens = (n16 / 160).div_ceil(2).div_ceil(2);
    assert_eq!(streamed.len(), 960 * tokens - lag, "output length");
    assert_eq!(stages.chunks, 3);
    assert_eq!(lens.len(), 3);
    assert!(
        (stages.audio_s - (seconds - 0.02)).abs() < 1e-9,
        "{}",
        stages.audio_s
    );
    assert!(stages.speech_tokens > tokens, "pieces overlap");
    assert!(streamed.iter().all(|x| x.is_finite() && x.abs() <= 1.0));

    let mut at = 0;
    let mut worst = (f64::INFINITY, f64::NEG_INFINITY);
    for len in &lens[..lens.len() - 1] {
        at += len;
        // The cut frame j starts at output sample 960 j - lag: in a pause of the source.
        let j = (at + lag) / 960;
        assert_eq!((at + lag) % 960, 0, "joins fall on token frames");
        let phase = (0.04 * j as f64) % 1.3;
        assert!(
            (1.18..1.3).contains(&phase) || phase < 0.0001,
            "cut frame {j} ({:.2} s) is not in a pause (phase {phase:.3})",
            0.04 * j as f64
        );
        for k in 0..(2 * 1440 + 960) / 240 {
            let db = level_db(&streamed, at - 1440 + 240 * k);
            worst = (worst.0.min(db), worst.1.max(db));
        }
    }
    eprintln!(
        "joins: 10 ms levels {:.2} .. {:.2} dB of the 400 ms around",
        worst.0, worst.1
    );
    assert!(
        worst.0 >= -10.0 && worst.1 <= 6.0,
        "join levels {worst:?} dB"
    );

    let whole = e.convert(&src, rate, target.view(), &req).unwrap();
    assert_eq!(whole.samples, streamed, "convert vs convert_streaming");
}

/// The tokens a long source is converted from, against the reference tokenizer's
/// long-audio path (windows of 30 s every 26 s, merged): at most 0.5% differ (each window
/// has its own log-mel floor and STFT edges here; measured 3 of 1500). At 53 s the
/// reference's merge leaves the last 2 s without tokens; here they are tokenized (50 more
/// tokens, the first 1275 compared).
#[test]
fn long_source_tokens_follow_the_reference() {
    let e = engine();
    let target = golden_target();
    let wav = audio::read_wav(&bundle_dir().join("goldens/ref.wav"), 0.0).unwrap();
    let base = audio::resample(&wav.samples, wav.sample_rate, 16_000).unwrap();
    let cases = vc().meta["long_sources"]["goldens"]
        .as_object()
        .expect("vc.json long_sources.goldens");
    assert!(!cases.is_empty());
    for (name, facts) in cases {
        let n = facts["samples"].as_u64().unwrap() as usize;
        let src: Vec<f32> = base.iter().copied().cycle().take(n).collect();
        let ours = e.vc_source_tokens(&src, 16_000, target.view()).unwrap();
        let want = vc().i64(name);
        assert_eq!(
            ours.len(),
            (n / 160).div_ceil(2).div_ceil(2),
            "{name}: count"
        );
        assert!(ours.len() >= want.len());
        let differ = want.iter().zip(&ours).filter(|(a, b)| a != b).count();
        eprintln!(
            "{name}: {} tokens ({} in the reference), {differ} of {} differ",
            ours.len(),
            want.len(),
            want.len()
        );
        assert!(
            differ * 200 <= want.len(),
            "{name}: {differ} of {} tokens differ",
            want.len()
        );
    }
}

/// `on_chunk` returning false stops the conversion: `Cancelled`, no further call.
#[test]
fn cancellation_stops_after_the_chunk() {
    let e = engine();
    let target = golden_target();
    let src = speechlike(40.0, 16_000);
    let req = ConvertRequest {
        seed: 1,
        flow_steps: 1,
        watermark: false,
    };
    for stop_at in [1usize, 2] {
        let mut calls = 0;
        let err = e
            .convert_streaming(&src, 16_000, target.view(), &req, &mut |_| {
                calls += 1;
                calls < stop_at
            })
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
        assert_eq!(calls, stop_at, "calls after cancelling");
    }
    let mut calls = 0;
    e.convert_streaming(&src, 16_000, target.view(), &req, &mut |_| {
        calls += 1;
        true
    })
    .unwrap();
    assert_eq!(calls, 2, "a 40 s source is two pieces");
}

/// Every bad input is one typed error naming the problem, before anything runs.
#[test]
fn bad_inputs_are_refused() {
    let e = engine();
    let target = golden_target();
    let req = e.default_convert_request();
    let ok = speechlike(1.0, 16_000);
    let check = |src: &[f32], rate: u32, req: &ConvertRequest, kind: ErrorKind, needle: &str| {
        let err = e.convert(src, rate, target.view(), req).unwrap_err();
        assert_eq!(err.kind(), kind, "{err}");
        assert!(err.to_string().contains(needle), "`{err}` lacks `{needle}`");
        assert!(!err.to_string().contains('\n'));
    };
    check(&[], 16_000, &req, ErrorKind::InvalidAudio, "empty");
    check(
        &vec![0.0; 16_000],
        16_000,
        &req,
        ErrorKind::InvalidAudio,
        "silent",
    );
    check(
        &vec![5e-5; 16_000],
        16_000,
        &req,
        ErrorKind::InvalidAudio,
        "silent",
    );
    check(
        &ok[..639],
        16_000,
        &req,
        ErrorKind::InvalidAudio,
        "speech token",
    );
    let mut nan = ok.clone();
    nan[100] = f32::NAN;
    check(&nan, 16_000, &req, ErrorKind::InvalidAudio, "sample 100");
    let mut inf = ok.clone();
    inf[7] = f32::NEG_INFINITY;
    check(&inf, 16_000, &req, ErrorKind::InvalidAudio, "finite");
    check(&ok, 0, &req, ErrorKind::InvalidArgument, "sample_rate");
    check(&ok, 3_999, &req, ErrorKind::InvalidAudio, "sample rate");
    check(&ok, 384_001, &req, ErrorKind::InvalidAudio, "sample rate");
    // One hour and one sample at 4 kHz: refused before any work.
    let long = vec![0.1f32; 4_000 * 3600 + 1];
    check(
        &long,
        4_000,
        &req,
        ErrorKind::InvalidAudio,
        "at most 3600 s",
    );
    for steps in [0, 101] {
        let bad = ConvertRequest {
            flow_steps: steps,
            ..req
        };
        check(&ok, 16_000, &bad, ErrorKind::InvalidArgument, "flow_steps");
    }
    // Target clips and malformed targets.
    let err = e
        .vc_target_from_samples(&speechlike(0.4, 16_000), 16_000)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidAudio, "{err}");
    assert!(err.to_string().contains("at least 0.5 s"), "{err}");
    let mut bad = golden_target();
    bad.prompt_token[[0, 3]] = 6561;
    let err = e.convert(&ok, 16_000, bad.view(), &req).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("target"), "{err}");
    let mut bad = golden_target();
    bad.embedding[[0, 0]] = f32::NAN;
    assert!(e.convert(&ok, 16_000, bad.view(), &req).is_err());
    // A source file over an hour is refused after reading one frame past the bound.
    let dir = pipeline_support::scratch("vc-long-file");
    let path = dir.join("hour.wav");
    pipeline_support::write_pcm16(&path, &vec![0.1; 4_000 * 3600 + 4], 4_000, 1);
    let err = chatterbox_ort::convert::read_source(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidAudio, "{err}");
    assert!(err.to_string().contains("hour.wav"), "{err}");
    assert!(err.to_string().contains("at most 3600 s"), "{err}");
    let silent = dir.join("silent.wav");
    pipeline_support::write_pcm16(&silent, &vec![0.0; 16_000], 16_000, 1);
    let err = chatterbox_ort::convert::read_source(&silent).unwrap_err();
    assert!(err.to_string().contains("silent.wav"), "{err}");
    assert!(err.to_string().contains("silent"), "{err}");
}

/// A saved or built voice carries the target reference too.
#[test]
fn a_voice_is_a_target() {
    let e = engine();
    let src = &vc().f32("vc_source_16k");
    let req = ConvertRequest {
        flow_steps: 1,
        ..e.default_convert_request()
    };
    let a = e
        .convert(src, 16_000, e.default_voice().s3gen_reference(), &req)
        .unwrap();
    assert_eq!(a.samples.len(), 960 * vc().i64("vc_source_tokens").len());
    assert!(a.samples.iter().all(|x| x.is_finite() && x.abs() <= 1.0));
}
