//! Property test of synthesis on the tiny bundle: for random valid requests (every
//! sampling parameter anywhere in its documented range, CFG on and off, the watermark on
//! and off), synthesis never fails, and the audio is exactly the speech tokens times the
//! samples per token, finite and within [-1, 1].
//!
//! `min_new_tokens == max_new_tokens` fixes the token count (random weights never stop
//! on their own). Bounded: 24 cases of at most 4 tokens and 3 flow steps, from a fixed
//! seed (set `PROPTEST_CASES` for more; the seed stays fixed so CI is reproducible).

mod pipeline_support;

use chatterbox_ort::Request;
use pipeline_support::engine;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

/// Short texts that are one chunk each (the length property below assumes one chunk:
/// several chunks are joined with pauses).
const TEXTS: [&str; 4] = [
    "Hello there.",
    "a",
    "Numbers 1 2 3, and punctuation: fine!",
    "\u{c9}t\u{e9} \u{2014} caf\u{e9}?",
];

/// A value in `(0, max]`: mostly ordinary, sometimes tiny (down to the smallest normal
/// float), sometimes exactly `max`.
fn positive_up_to(max: f32) -> impl Strategy<Value = f32> {
    prop_oneof![
        6 => 1e-3f32..=max,
        2 => f32::MIN_POSITIVE..=1e-3f32,
        1 => Just(max),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    (
        any::<u64>(),
        positive_up_to(2.0),
        positive_up_to(1.0),
        0.0f32..=0.5,
        1.0f32..=2.0,
        prop_oneof![Just(0.0f32), 0.0f32..=1.0],
        0.0f32..=2.0,
        1usize..=3,
        1usize..=4,
        any::<bool>(),
    )
        .prop_map(
            |(
                seed,
                temperature,
                top_p,
                min_p,
                repetition_penalty,
                cfg_weight,
                exaggeration,
                flow_steps,
                tokens,
                watermark,
            )| Request {
                exaggeration,
                cfg_weight,
                temperature,
                min_p,
                top_p,
                top_k: 0,
                repetition_penalty,
                seed,
                max_new_tokens: tokens,
                min_new_tokens: tokens,
                flow_steps,
                watermark,
                language: None,
            },
        )
}

#[test]
fn random_valid_requests_give_exact_length_finite_bounded_audio() {
    let e = engine();
    let s3 = &e.bundle().config().s3gen;
    let samples_per_token = s3.mel_frames_per_token * s3.samples_per_mel_frame;
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let config = Config {
        cases,
        max_shrink_iters: 32,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let result = runner.run(&(request(), 0..TEXTS.len()), |(req, text_index)| {
        let text = TEXTS[text_index];
        prop_assert!(
            req.validate().is_ok(),
            "the strategy made an invalid request"
        );
        let audio = e
            .synthesize(text, e.default_voice(), &req)
            .map_err(|err| TestCaseError::fail(format!("synthesis failed: {err}")))?;
        prop_assert_eq!(audio.stages.chunks, 1);
        prop_assert_eq!(audio.stages.speech_tokens, req.max_new_tokens);
        prop_assert_eq!(
            audio.samples.len(),
            audio.stages.speech_tokens * samples_per_token
        );
        prop_assert_eq!(audio.sample_rate, s3.sample_rate);
        if let Some((i, s)) = audio
            .samples
            .iter()
            .enumerate()
            .find(|(_, s)| !(s.is_finite() && s.abs() <= 1.0))
        {
            return Err(TestCaseError::fail(format!(
                "sample {i} of {} is {s}",
                audio.samples.len()
            )));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
