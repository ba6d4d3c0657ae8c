//! Stage-by-stage parity with the reference goldens of the tiny bundle
//! (`onnx/tiny/goldens`, made by the PyTorch reference with the bundle's weights).
//!
//! Tolerances: fp32 graphs are held to a relative L2 error of 1e-4 (the
//! exporter's own self-check tolerance) unless stated otherwise; token outputs
//! must match exactly.

mod pipeline_support;

use chatterbox_ort::conditioning;
use chatterbox_ort::s3gen::{flow, vocoder};
use chatterbox_ort::t3::sampler;
use chatterbox_ort::watermark;
use ndarray::{Array2, Array3};
use pipeline_support::{check_close, engine, goldens, original_tf_logits};

const FP32_TOL: f64 = 1e-4;

/// The golden prompt mel cut to 2 x prompt tokens frames, as a bundle voice
/// stores it (embed_ref may leave one odd frame).
fn prompt_feat_2n() -> (Vec<f32>, usize) {
    let g = goldens();
    let frames = 2 * g.i64("s3gen_prompt_tokens").len();
    let mel = g.get("prompt_mel");
    assert!(mel.shape[1] >= frames && mel.shape[2] == 80);
    (mel.f32[..frames * 80].to_vec(), frames)
}

fn golden_voice() -> chatterbox_ort::Voice {
    let g = goldens();
    let n = g.i64("s3gen_prompt_tokens").len();
    let p = g.i64("t3_prompt_tokens").len();
    let (feat, frames) = prompt_feat_2n();
    chatterbox_ort::Voice {
        speaker_emb: Array2::from_shape_vec(
            (1, g.f32("ve_embedding").len()),
            g.f32("ve_embedding").to_vec(),
        )
        .unwrap(),
        cond_prompt_speech_tokens: Array2::from_shape_vec(
            (1, p),
            g.i64("t3_prompt_tokens").to_vec(),
        )
        .unwrap(),
        prompt_token: Array2::from_shape_vec((1, n), g.i64("s3gen_prompt_tokens").to_vec())
            .unwrap(),
        prompt_feat: Array3::from_shape_vec((1, frames, 80), feat).unwrap(),
        embedding: Array2::from_shape_vec((1, g.f32("xvector").len()), g.f32("xvector").to_vec())
            .unwrap(),
    }
}

#[test]
fn voice_encoder_matches_golden() {
    let e = engine();
    let g = goldens();
    let got = conditioning::voice_encoder_embedding(e.host(), g.f32("ve_trimmed")).unwrap();
    check_close("voice_encoder", &got, g.f32("ve_embedding"), FP32_TOL);
}

#[test]
fn trim_reproduces_golden_ve_input() {
    let g = goldens();
    let top_db = engine().bundle().config().voice_encoder.trim_top_db as f32;
    let trimmed = chatterbox_ort::audio::trim::trim(g.f32("ref_16k"), top_db);
    assert_eq!(trimmed.len(), g.f32("ve_trimmed").len(), "trimmed length");
    check_close("trim", trimmed, g.f32("ve_trimmed"), 0.0);
}

#[test]
fn s3_tokens_match_golden_exactly() {
    let e = engine();
    let g = goldens();
    let cfg = e.bundle().config();
    let enc_len = (cfg.t3.prompt_seconds * f64::from(cfg.s3_tokenizer.sample_rate)) as usize;
    let ref16 = g.f32("ref_16k");
    let crop = &ref16[..enc_len.min(ref16.len())];
    let t3_tokens =
        conditioning::s3_tokens(e.host(), crop, Some(cfg.t3.prompt_max_tokens)).unwrap();
    assert_eq!(
        t3_tokens,
        g.i64("t3_prompt_tokens"),
        "T3 prompt tokens (6 s crop)"
    );

    // S3Gen prompt: tokens of the 10 s crop, truncated to mel_frames / 2 like embed_ref.
    let mut tokens = conditioning::s3_tokens(e.host(), g.f32("s3gen_ref_16k"), None).unwrap();
    let mel_frames = g.get("prompt_mel").shape[1];
    let want = g.i64("s3gen_prompt_tokens");
    tokens.truncate(mel_frames / cfg.s3gen.mel_frames_per_token);
    tokens.truncate(want.len());
    assert_eq!(tokens, want, "S3Gen prompt tokens (10 s crop)");
}

#[test]
fn xvector_matches_golden() {
    let e = engine();
    let g = goldens();
    let got = conditioning::xvector(e.host(), g.f32("s3gen_ref_16k")).unwrap();
    check_close("campplus x-vector", &got, g.f32("xvector"), FP32_TOL);
}

#[test]
fn prompt_mel_matches_golden() {
    let e = engine();
    let g = goldens();
    let cfg = e.bundle().config();
    let dec_len = (cfg.s3gen.prompt_seconds * f64::from(cfg.s3gen.sample_rate)) as usize;
    let ref24 = g.f32("ref_24k");
    let crop = &ref24[..dec_len.min(ref24.len())];
    let (mut mel, frames) = conditioning::prompt_mel(e.host(), crop, cfg.s3gen.mel_bins).unwrap();
    let want = g.get("prompt_mel");
    assert!(
        frames >= want.shape[1],
        "{frames} mel frames < golden {}",
        want.shape[1]
    );
    mel.truncate(want.f32.len());
    check_close("s3gen prompt mel", &mel, &want.f32, FP32_TOL);
}

#[test]
fn t3_cond_matches_golden() {
    let e = engine();
    let g = goldens();
    let got = conditioning::t3_cond(e.host(), e.t3_dims(), &golden_voice(), 0.5).unwrap();
    check_close("t3_cond", &got, g.f32("t3_cond"), FP32_TOL);
}

/// Teacher forcing in the layout of `T3.inference` (as the goldens were
/// made): prefill `cond | text | bos | bos` (the engine's own prefill builder),
/// then one KV-cache decode step per remaining token `tf[j]` at speech position
/// `j`; the logits of all `S` steps, both CFG rows, must reproduce `tf_logits`.
#[test]
fn teacher_forced_logits_match_golden() {
    let e = engine();
    let g = goldens();
    let dims = e.t3_dims();
    let tf = g.i64("tf_speech_tokens");
    let want = g.get("tf_logits");
    assert_eq!(want.shape, vec![2, tf.len(), dims.speech_vocab]);
    assert_eq!(tf[0], dims.speech_start);
    let got = original_tf_logits(e, g);
    check_close(
        "t3 teacher-forced logits (both rows)",
        &got,
        &want.f32,
        FP32_TOL,
    );
}

#[test]
fn sampler_matches_golden() {
    let g = goldens();
    let mut names: Vec<&String> = g
        .tensors
        .keys()
        .filter(|k| k.starts_with("sampler_logits_"))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no sampler_logits_* goldens");
    let gen = &engine().bundle().manifest().generation;
    let params = sampler::SamplerParams {
        cfg_weight: gen.cfg_weight,
        repetition_penalty: gen.repetition_penalty,
        temperature: gen.temperature,
        min_p: gen.min_p,
        top_p: gen.top_p,
    };
    for name in names {
        let k = &name["sampler_logits_".len()..];
        let logits = g.get(name);
        let v = logits.shape[1];
        let history = g.i64(&format!("sampler_history_{k}"));
        let want = g.f32(&format!("sampler_processed_{k}"));
        let got =
            sampler::process(&logits.f32[..v], Some(&logits.f32[v..]), history, &params).unwrap();
        let mut kept_got = Vec::new();
        let mut kept_want = Vec::new();
        for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
            assert_eq!(
                a.is_finite(),
                b.is_finite(),
                "step {k}: token {i} kept/removed differs ({a} vs {b})"
            );
            if b.is_finite() {
                kept_got.push(a);
                kept_want.push(b);
            }
        }
        check_close(
            &format!("sampler step {k} ({} kept)", kept_want.len()),
            &kept_got,
            &kept_want,
            1e-5,
        );
    }
}

#[test]
fn flow_matches_golden() {
    let e = engine();
    let g = goldens();
    let host = e.host();
    let mut tokens = g.i64("s3gen_prompt_tokens").to_vec();
    let prompt_n = tokens.len();
    tokens.extend_from_slice(g.i64("flow_tokens"));
    let enc = flow::encode(host, &tokens, g.f32("xvector")).unwrap();
    assert_eq!(enc.frames, 2 * tokens.len());
    check_close("flow encoder mu", &enc.mu, g.f32("flow_mu"), FP32_TOL);

    // Euler loop on the golden mu and noise: isolates the host loop + estimator.
    let enc_golden = flow::FlowEncoded {
        mu: g.f32("flow_mu").to_vec(),
        spks: enc.spks.clone(),
        frames: enc.frames,
    };
    let (prompt_feat, prompt_frames) = prompt_feat_2n();
    let steps = e.bundle().generation().flow_steps;
    let mel = flow::solve_euler(
        host,
        &enc_golden,
        g.f32("flow_noise").to_vec(),
        &prompt_feat,
        prompt_frames,
        &flow::FlowParams::new(e.bundle().config(), e.bundle().generation(), steps),
        |_| {},
    )
    .unwrap();
    assert_eq!(prompt_frames, 2 * prompt_n);
    // Ten chained estimator calls (measured 3e-7): the fp32 tolerance still holds.
    check_close(
        "flow mel (10 Euler steps, CFG)",
        &mel,
        g.f32("flow_mel"),
        FP32_TOL,
    );
}

#[test]
fn hift_matches_golden() {
    let e = engine();
    let g = goldens();
    let mel = g.get("flow_mel");
    let frames = mel.shape[2];
    let draws = vocoder::HiftDraws {
        phase_init: g.f32("hift_phase_init").to_vec(),
        sine_noise: g.f32("hift_sine_noise").to_vec(),
    };
    let wav = vocoder::hift(e.host(), &mel.f32, frames, draws).unwrap();
    assert_eq!(wav.len(), 960 * frames / 2);
    check_close("hift wav", &wav, g.f32("hift_wav"), FP32_TOL);
}

#[test]
fn watermark_graph_matches_golden() {
    let e = engine();
    let g = goldens();
    let got = watermark::perth_32k(e.host(), g.f32("wm_input_32k")).unwrap();
    check_close(
        "perth graph (32 kHz)",
        &got,
        g.f32("wm_output_32k"),
        FP32_TOL,
    );
}

/// End to end at 24 kHz: 24 -> 32 kHz with soxr, the graph, 32 -> 24 kHz with
/// soxr, as `PerthImplicitWatermarker.apply_watermark`; the length exactly.
#[test]
fn watermark_24k_matches_reference() {
    let e = engine();
    let g = goldens();
    let cfg = e.bundle().config();
    let input = g.f32("wm_input_24k");
    let got = watermark::apply(
        e.host(),
        input,
        cfg.s3gen.sample_rate,
        cfg.perth.sample_rate,
    )
    .unwrap();
    assert_eq!(got.len(), input.len());
    check_close(
        "perth 24 kHz end to end",
        &got,
        g.f32("wm_output_24k"),
        FP32_TOL,
    );
}

#[test]
fn text_ids_match_golden() {
    let g = goldens();
    let text = g.meta["text"].as_str().expect("goldens.json `text`");
    let ids = engine().text_ids(text, None).unwrap();
    assert_eq!(ids, g.i64("text_tokens"));
}
