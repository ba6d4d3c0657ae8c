//! The multilingual model (`ChatterboxMultilingualTTS`): stage parity with the reference
//! goldens of the tiny multilingual bundle (`onnx/tiny-multilingual/goldens`, made by the
//! reference code with the bundle's weights), the alignment checks of its T3, the
//! language rules of the engine, end-to-end determinism, streaming, and the CLI.
//! (The text front-end of all 23 languages is `tests/mtl_frontend.rs`.)
//!
//! Tolerances: fp32 graphs 1e-4 relative L2 (the exporter's self-check bound); the
//! `alignment` output 1e-4 relative L2 per row; token ids and the analyzer's decisions
//! exactly; logits the analyzer leaves alone bit-exact (it only writes +-2^15); sampler
//! filters exactly (which tokens survive) and 1e-5 on the surviving logits.

mod pipeline_support;

use std::process::Command;

use chatterbox_ort::multilingual::alignment::AlignmentAnalyzer;
use chatterbox_ort::t3::sampler;
use chatterbox_ort::{Engine, ErrorKind, Family, Language, Request, StreamOptions};
use pipeline_support::{
    check_close, engine as original_engine, mtl_bundle_dir, mtl_engine, mtl_goldens, original_tf,
    rel_err, scratch, Goldens,
};

const FP32_TOL: f64 = 1e-4;

fn e() -> &'static Engine {
    mtl_engine()
}

fn lang(id: &str) -> Option<Language> {
    Some(Language::parse(id).unwrap())
}

/// The goldens' `t3.alignment` facts.
fn alignment_meta(g: &Goldens) -> &serde_json::Value {
    &g.meta["t3"]["alignment"]
}

fn usizes(v: &serde_json::Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn bools(v: &serde_json::Value) -> Vec<bool> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_bool().unwrap())
        .collect()
}

#[test]
fn bundle_is_multilingual() {
    let e = e();
    assert_eq!(e.family(), Family::Multilingual);
    let c = e.bundle().config();
    assert_eq!(c.text.vocab_size, 2454);
    assert_eq!(
        (c.text.start_token, c.text.stop_token),
        (Some(255), Some(0))
    );
    let ids: Vec<&str> = e.languages().iter().map(|l| l.id.as_str()).collect();
    assert_eq!(
        ids.join(" "),
        "ar da de el en es fi fr he hi it ja ko ms nl no pl pt ru sv sw tr zh"
    );
    assert_eq!(c.t3.alignment_heads.len(), 3);
    // ChatterboxMultilingualTTS.generate's defaults.
    let g = e.bundle().generation();
    assert_eq!(g.repetition_penalty, 2.0);
    assert_eq!((g.cfg_weight, g.temperature, g.min_p), (0.5, 0.8, 0.05));
    assert_eq!(e.default_request().language, None);
}

#[test]
fn text_ids_match_the_reference() {
    let g = mtl_goldens();
    let text = g.meta["text"].as_str().unwrap();
    let language = g.meta["language"].as_str().unwrap();
    let ids = e().text_ids(text, lang(language)).unwrap();
    assert_eq!(ids, g.i64("text_tokens"), "text {text:?} ({language})");
}

#[test]
fn decoder_logits_and_alignment_match_the_reference() {
    let g = mtl_goldens();
    let run = original_tf(e(), g);
    assert_eq!(
        run.capacity,
        alignment_meta(g)["steps_capacity"].as_u64().unwrap() as usize
    );
    check_close("tf_logits", &run.logits, g.f32("tf_logits"), FP32_TOL);
    let prefill = run.prefill_alignment.expect("an alignment output");
    let steps = run.step_alignments;

    // The prefill's speech rows (after the text), over the prefill's positions; the
    // positions after them hold nothing yet.
    let want = g.get("tf_alignment_prefill");
    let (rows, t0) = (want.shape[0], want.shape[1]);
    let capacity = run.capacity;
    let [_, j] = usizes(&alignment_meta(g)["text_slice"])[..] else {
        panic!("text_slice")
    };
    for r in 0..rows {
        let got = &prefill[(j + r) * capacity..(j + r + 1) * capacity];
        let e = rel_err(&got[..t0], &want.f32[r * t0..(r + 1) * t0]);
        assert!(e <= FP32_TOL, "prefill alignment row {r}: {e:.3e}");
        assert!(
            got[t0..].iter().all(|&v| v == 0.0),
            "prefill row {r} sees the future"
        );
    }
    let want = g.get("tf_alignment_steps");
    assert_eq!(want.shape, vec![steps.len(), capacity]);
    for (k, got) in steps.iter().enumerate() {
        let e = rel_err(got, &want.f32[k * capacity..(k + 1) * capacity]);
        assert!(e <= FP32_TOL, "step {} alignment: {e:.3e}", k + 1);
    }
}

/// Replays the analyzer over golden attention rows (`prefill` rows over `capacity`
/// positions, then one row per step) and golden CFG logits; checks its output logits,
/// accumulated alignment and decisions against the reference analyzer's.
struct Replay<'a> {
    /// The prefill's `seq` rows over `capacity` positions.
    prefill: &'a [f32],
    seq: usize,
    /// One row per later step.
    steps: Vec<&'a [f32]>,
    capacity: usize,
    /// `next_token` of each step.
    tokens: &'a [i64],
    /// Golden names: the analyzer's input and output logits, its final alignment.
    logits_in: &'a str,
    logits_out: &'a str,
    alignment: &'a str,
}

fn replay(
    g: &Goldens,
    r: Replay<'_>,
) -> Vec<chatterbox_ort::multilingual::alignment::AlignmentStep> {
    let Replay {
        prefill,
        seq,
        steps,
        capacity,
        tokens,
        logits_in,
        logits_out,
        alignment,
    } = r;
    let [i, j] = usizes(&alignment_meta(g)["text_slice"])[..] else {
        panic!("text_slice")
    };
    let stop = e().t3_dims().speech_stop as usize;
    let mut a = AlignmentAnalyzer::new(i, j, stop).unwrap();
    let input = g.get(logits_in);
    let output = g.f32(logits_out);
    let v = input.shape[1];
    let mut decisions = Vec::new();
    for k in 0..input.shape[0] {
        let mut l = input.f32[k * v..(k + 1) * v].to_vec();
        let (attn, rows) = if k == 0 {
            (prefill, seq)
        } else {
            (steps[k - 1], 1)
        };
        decisions.push(
            a.step(attn, rows, capacity, Some(tokens[k]), &mut l)
                .unwrap(),
        );
        let want = &output[k * v..(k + 1) * v];
        for (n, (&got, &want)) in l.iter().zip(want).enumerate() {
            assert_eq!(got, want, "{logits_out} step {k}: logit {n}");
        }
    }
    check_close(alignment, a.alignment(), g.f32(alignment), 1e-6);
    decisions
}

/// The prefill's alignment rows of the goldens, at `capacity` positions, as the decoder
/// gives them: `T0` rows of which the goldens hold the speech rows (j..).
fn golden_prefill(g: &Goldens, capacity: usize) -> (Vec<f32>, usize) {
    let want = g.get("tf_alignment_prefill");
    let t0 = want.shape[1];
    let [_, j] = usizes(&alignment_meta(g)["text_slice"])[..] else {
        panic!("text_slice")
    };
    let mut rows = vec![0.0; t0 * capacity];
    for r in 0..want.shape[0] {
        rows[(j + r) * capacity..(j + r) * capacity + t0]
            .copy_from_slice(&want.f32[r * t0..(r + 1) * t0]);
    }
    (rows, t0)
}

#[test]
fn alignment_analyzer_matches_the_reference_under_teacher_forcing() {
    let g = mtl_goldens();
    let meta = &alignment_meta(g)["analyzer_tf"];
    let steps_t = g.get("tf_alignment_steps");
    let capacity = steps_t.shape[1];
    let (prefill, t0) = golden_prefill(g, capacity);
    let steps: Vec<&[f32]> = steps_t.f32.chunks(capacity).collect();
    let tokens: Vec<i64> = meta["next_token"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap())
        .collect();
    let d = replay(
        g,
        Replay {
            prefill: &prefill,
            seq: t0,
            steps,
            capacity,
            tokens: &tokens,
            logits_in: "analyzer_tf_in",
            logits_out: "analyzer_tf_out",
            alignment: "analyzer_tf_alignment",
        },
    );
    let positions: Vec<usize> = d.iter().map(|s| s.position).collect();
    assert_eq!(positions, usizes(&meta["cur_text_posn"]));
    let text_positions: Vec<usize> = d.iter().map(|s| s.text_position).collect();
    assert_eq!(text_positions, usizes(&meta["text_position"]));
    let started: Vec<bool> = d.iter().map(|s| s.started).collect();
    assert_eq!(started, bools(&meta["started"]));
    let complete: Vec<bool> = d.iter().map(|s| s.complete).collect();
    assert_eq!(complete, bools(&meta["complete"]));
    let forced: Vec<bool> = d.iter().map(|s| s.eos_forced).collect();
    assert_eq!(forced, bools(&meta["eos_forced"]));
    // The case the goldens were made to contain: a repeated token forces the stop token,
    // and the stop token is suppressed while the text is not done.
    assert!(forced.iter().any(|&f| f), "no forced stop in the goldens");
    assert!(d.iter().any(|s| s.eos_suppressed && !s.eos_forced));
}

#[test]
fn sampled_run_analyzer_and_sampler_match_the_reference() {
    let g = mtl_goldens();
    let steps_t = g.get("analyzer_sampled_attn_steps");
    let capacity = steps_t.shape[1];
    let (prefill, t0) = golden_prefill(g, capacity);
    let steps: Vec<&[f32]> = steps_t.f32.chunks(capacity).collect();
    // next_token: BOS at step 0, then the token sampled before.
    let mut tokens = vec![e().t3_dims().speech_start];
    tokens.extend_from_slice(g.i64("t3_sampled_tokens"));
    replay(
        g,
        Replay {
            prefill: &prefill,
            seq: t0,
            steps,
            capacity,
            tokens: &tokens,
            logits_in: "analyzer_sampled_in",
            logits_out: "analyzer_sampled_out",
            alignment: "analyzer_sampled_alignment",
        },
    );
    // The sampler chain after the analyzer (repetition penalty 2.0 ...).
    let params = e().default_request().sampler_params();
    let out = g.get("analyzer_sampled_out");
    let v = out.shape[1];
    for k in usizes(&g.meta["t3"]["sampler_steps"]) {
        let history = g.i64(&format!("sampler_history_{k}"));
        let want = g.f32(&format!("sampler_processed_{k}"));
        let got = sampler::process_guided(out.f32[k * v..(k + 1) * v].to_vec(), history, &params)
            .unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for (n, (&x, &y)) in got.iter().zip(want).enumerate() {
            assert_eq!(
                x.is_finite(),
                y.is_finite(),
                "step {k}: token {n} kept/removed"
            );
            if y.is_finite() {
                a.push(x);
                b.push(y);
            }
        }
        check_close(&format!("sampler step {k}"), &a, &b, 1e-5);
        // The guided row of the same step: CFG of the raw rows is the analyzer's input.
        let raw = g.get(&format!("sampler_logits_{k}"));
        let guided = sampler::guide(&raw.f32[..v], Some(&raw.f32[v..]), &params).unwrap();
        check_close(
            &format!("CFG step {k}"),
            &guided,
            &g.f32("analyzer_sampled_in")[k * v..(k + 1) * v],
            1e-6,
        );
    }
}

fn small_request(seed: u64) -> Request {
    Request {
        seed,
        max_new_tokens: 30,
        flow_steps: 2,
        watermark: false,
        language: lang("fr"),
        ..e().default_request()
    }
}

#[test]
fn synthesis_is_deterministic_per_seed() {
    let e = e();
    let voice = e.default_voice();
    let text = "Bonjour, ça va? Très bien, merci.";
    let a = e.synthesize(text, voice, &small_request(3)).unwrap();
    let b = e.synthesize(text, voice, &small_request(3)).unwrap();
    assert!(!a.samples.is_empty());
    assert_eq!(a.samples, b.samples, "same seed, different audio");
    let c = e.synthesize(text, voice, &small_request(4)).unwrap();
    assert_ne!(a.samples, c.samples, "another seed, the same audio");
    assert!(a.samples.iter().all(|s| s.is_finite() && s.abs() <= 1.0));
    // Every language of the bundle runs (the front-end's special scripts included).
    for (id, text) in [
        ("ja", "今日は良い天気ですね。"),
        ("zh", "你好，世界。"),
        ("ko", "안녕하세요."),
        ("ar", "مرحبا بالعالم."),
        ("hi", "नमस्ते दुनिया।"),
    ] {
        let req = Request {
            language: lang(id),
            max_new_tokens: 5,
            ..small_request(1)
        };
        let audio = e
            .synthesize(text, voice, &req)
            .unwrap_or_else(|err| panic!("{id}: {err}"));
        assert!(!audio.samples.is_empty(), "{id}");
    }
}

#[test]
fn the_language_is_checked() {
    let e = e();
    let voice = e.default_voice();
    let text = "Bonjour.";
    let missing = Request {
        language: None,
        ..small_request(0)
    };
    let err = e.synthesize(text, voice, &missing).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    let msg = err.to_string();
    assert!(
        msg.contains("language") && msg.contains("fr") && !msg.contains('\n'),
        "{msg}"
    );

    let unknown = Request {
        language: lang("xx"),
        ..small_request(0)
    };
    let msg = e.synthesize(text, voice, &unknown).unwrap_err().to_string();
    assert!(
        msg.contains("unsupported language 'xx'") && msg.contains("zh"),
        "{msg}"
    );

    // A bundle without languages refuses one.
    let o = original_engine();
    let req = Request {
        language: lang("fr"),
        ..o.default_request()
    };
    let err = o.synthesize(text, o.default_voice(), &req).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("no languages"), "{err}");
}

#[test]
fn streaming_gives_the_tokens_of_the_plain_synthesis() {
    let e = e();
    let voice = e.default_voice();
    let text = "Le petit chat dort sur le canapé.";
    let req = Request {
        min_new_tokens: 40,
        max_new_tokens: 40,
        ..small_request(5)
    };
    let plain = e.synthesize(text, voice, &req).unwrap();
    let mut chunks = 0;
    let mut tokens = 0;
    let streamed = e
        .synthesize_stream(
            text,
            voice,
            &req,
            &StreamOptions::default(),
            &mut |_| true,
            &mut |c| {
                chunks += 1;
                tokens = c.tokens;
                true
            },
        )
        .unwrap();
    assert!(chunks >= 2, "{chunks} deliveries");
    assert_eq!(tokens, 40);
    assert_eq!(streamed.samples.len(), plain.samples.len());
    // The last pass is the plain computation: the end of the audio is the same.
    let tail = plain.samples.len() - 4800;
    assert_eq!(streamed.samples[tail..], plain.samples[tail..]);
}

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chatterbox-ort"))
}

#[test]
fn cli_says_a_language_and_names_a_missing_one() {
    let dir = scratch("mtl_cli");
    let out = dir.join("fr.wav");
    let bundle = mtl_bundle_dir();
    let ok = cli()
        .args([
            "say",
            "Bonjour tout le monde.",
            "--language",
            "FR",
            "--max-new-tokens",
            "8",
        ])
        .args(["--flow-steps", "1", "--threads", "1", "--bundle"])
        .arg(&bundle)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(std::fs::metadata(&out).unwrap().len() > 44);

    let missing = dir.join("none.wav");
    let bad = cli()
        .args(["say", "Bonjour.", "--threads", "1", "--bundle"])
        .arg(&bundle)
        .arg("-o")
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("language"), "{err}");
    assert!(!missing.exists(), "an output file after an error");

    let bad = cli()
        .args(["say", "Bonjour.", "--language", "f1", "--bundle"])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("language"));

    let info = cli()
        .arg("info")
        .arg("--bundle")
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(info.status.success());
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(text.contains("multilingual"), "{text}");
    assert!(
        text.contains("languages   23") && text.contains("zh (Chinese)"),
        "{text}"
    );
}
