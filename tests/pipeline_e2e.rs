//! End to end on the tiny bundle: format, length, determinism, streaming,
//! cancellation, voices. Random weights never stop on their own, so every
//! request fixes `max_new_tokens`.

mod pipeline_support;

use chatterbox_ort::{ErrorKind, Request};
use pipeline_support::{engine, tone};

fn small_request(seed: u64) -> Request {
    Request {
        seed,
        max_new_tokens: 6,
        flow_steps: 2,
        ..engine().default_request()
    }
}

#[test]
fn synthesizes_24k_mono_of_960_samples_per_token() {
    let e = engine();
    let audio = e
        .synthesize("Hello there.", e.default_voice(), &small_request(1))
        .unwrap();
    assert_eq!(audio.sample_rate, 24_000);
    assert_eq!(audio.stages.chunks, 1);
    assert!(audio.stages.speech_tokens > 0, "no speech tokens kept");
    assert_eq!(audio.samples.len(), 960 * audio.stages.speech_tokens);
    assert!(audio.samples.iter().all(|s| s.is_finite()));
    assert!(audio.stages.total_s > 0.0 && audio.stages.rtf > 0.0);

    // Without the watermark: HiFT's clamp holds and the trim-fade's first 20 ms are silent.
    let req = Request {
        watermark: false,
        ..small_request(1)
    };
    let audio = e
        .synthesize("Hello there.", e.default_voice(), &req)
        .unwrap();
    assert_eq!(audio.samples.len(), 960 * audio.stages.speech_tokens);
    assert!(audio.samples.iter().all(|s| s.abs() <= 0.99));
    assert!(audio.samples[..480].iter().all(|&s| s == 0.0));
}

#[test]
fn same_seed_is_bit_identical_and_seeds_differ() {
    let e = engine();
    let v = e.default_voice();
    let a = e
        .synthesize("Determinism check.", v, &small_request(7))
        .unwrap();
    let b = e
        .synthesize("Determinism check.", v, &small_request(7))
        .unwrap();
    assert_eq!(a.samples, b.samples);
    let c = e
        .synthesize("Determinism check.", v, &small_request(8))
        .unwrap();
    assert_ne!(a.samples, c.samples);
}

#[test]
fn cfg_zero_and_no_watermark_work() {
    let e = engine();
    let req = Request {
        cfg_weight: 0.0,
        watermark: false,
        ..small_request(3)
    };
    let audio = e
        .synthesize("No guidance.", e.default_voice(), &req)
        .unwrap();
    assert_eq!(audio.samples.len(), 960 * audio.stages.speech_tokens);
    assert_eq!(audio.stages.watermark_s, 0.0);
}

#[test]
fn streaming_calls_back_per_chunk_and_can_cancel() {
    let e = engine();
    let text = "First sentence here. Second one follows! And a third?";
    let chunks = e.text_chunks(text, None).unwrap();
    let mut calls = Vec::new();
    let audio = e
        .synthesize_streaming(text, e.default_voice(), &small_request(2), &mut |s| {
            calls.push(s.len());
            true
        })
        .unwrap();
    assert!(calls.len() >= chunks.len());
    assert_eq!(calls.iter().sum::<usize>(), audio.samples.len());

    let err = e
        .synthesize_streaming(text, e.default_voice(), &small_request(2), &mut |_| false)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
}

#[test]
fn long_text_is_chunked_in_order() {
    let e = engine();
    let sentence = "This is a sentence that keeps going for a while to fill the chunk. ";
    let text = sentence.repeat(12);
    let chunks = e.text_chunks(&text, None).unwrap();
    assert!(chunks.len() > 1, "expected several chunks");
    let req = Request {
        max_new_tokens: 2,
        flow_steps: 1,
        ..small_request(4)
    };
    let audio = e.synthesize(&text, e.default_voice(), &req).unwrap();
    assert_eq!(audio.stages.chunks, chunks.len());
    let gap = (chatterbox_ort::engine::CHUNK_GAP_SECONDS * 24_000.0) as usize;
    assert_eq!(
        audio.samples.len(),
        960 * audio.stages.speech_tokens + gap * (chunks.len() - 1)
    );
}

#[test]
fn bad_requests_and_text_are_rejected() {
    let e = engine();
    let v = e.default_voice();
    for text in ["", "   \n\t "] {
        let err = e.synthesize(text, v, &small_request(0)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidText, "{err}");
    }
    let bad = Request {
        temperature: -1.0,
        ..small_request(0)
    };
    let err = e.synthesize("Hi.", v, &bad).unwrap_err();
    assert!(err.to_string().contains("temperature"), "{err}");
    let too_many = Request {
        max_new_tokens: 100_000,
        ..small_request(0)
    };
    let err = e.synthesize("Hi.", v, &too_many).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("max_new_tokens"), "{err}");
}

#[test]
fn voice_from_samples_any_rate_and_bad_input() {
    let e = engine();
    for sr in [8_000u32, 22_050, 44_100] {
        let voice = e.voice_from_samples(&tone(2.0, sr), sr).unwrap();
        let cfg = e.bundle().config();
        assert_eq!(voice.speaker_emb.len(), cfg.t3.speaker_embed_size);
        assert_eq!(voice.prompt_feat.shape()[1], 2 * voice.prompt_token.len());
        assert!(voice.cond_prompt_speech_tokens.len() <= cfg.t3.prompt_max_tokens);
    }
    assert_eq!(
        e.voice_from_samples(&[], 16_000).unwrap_err().kind(),
        ErrorKind::InvalidAudio
    );
    assert_eq!(
        e.voice_from_samples(&tone(0.3, 16_000), 16_000)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidAudio
    );
    let mut nan = tone(1.0, 16_000);
    nan[10] = f32::NAN;
    assert_eq!(
        e.voice_from_samples(&nan, 16_000).unwrap_err().kind(),
        ErrorKind::InvalidAudio
    );
    let mut inf = tone(1.0, 16_000);
    inf[10] = f32::INFINITY;
    assert_eq!(
        e.voice_from_samples(&inf, 16_000).unwrap_err().kind(),
        ErrorKind::InvalidAudio
    );
}

#[test]
fn voice_from_golden_reference_equals_the_reference_voice() {
    // The reference's resamplers (soxr for librosa.load / librosa.resample, torchaudio's
    // sinc for the S3Gen prompt): `ChatterboxTTS.prepare_conditionals(ref.wav)`'s tokens
    // exactly, its embeddings to float rounding.
    let e = engine();
    let path = pipeline_support::bundle_dir().join("goldens/ref.wav");
    let voice = e.voice_from_wav(&path).unwrap();
    let g = pipeline_support::goldens();
    let same = |a: &[i64], b: &[i64]| a.iter().zip(b).filter(|(x, y)| x == y).count();
    let t3: Vec<i64> = voice.cond_prompt_speech_tokens.iter().copied().collect();
    let s3: Vec<i64> = voice.prompt_token.iter().copied().collect();
    let x = pipeline_support::rel_err(voice.embedding.as_slice().unwrap(), g.f32("xvector"));
    let ve =
        pipeline_support::rel_err(voice.speaker_emb.as_slice().unwrap(), g.f32("ve_embedding"));
    let feat = voice.prompt_feat.as_slice().unwrap();
    let mel = pipeline_support::rel_err(feat, &g.f32("prompt_mel")[..feat.len()]);
    eprintln!(
        "voice from ref.wav: T3 prompt tokens {}/{}, S3Gen prompt tokens {}/{}, \
         x-vector rel {x:.2e}, VE rel {ve:.2e}, prompt mel rel {mel:.2e}",
        same(&t3, g.i64("t3_prompt_tokens")),
        g.i64("t3_prompt_tokens").len(),
        same(&s3, g.i64("s3gen_prompt_tokens")),
        g.i64("s3gen_prompt_tokens").len()
    );
    assert_eq!(t3, g.i64("t3_prompt_tokens"));
    assert_eq!(s3, g.i64("s3gen_prompt_tokens"));
    assert!(x < 1e-4, "x-vector rel err {x}");
    assert!(ve < 1e-4, "VoiceEncoder rel err {ve}");
    assert!(mel < 1e-4, "prompt mel rel err {mel}");
}

#[test]
fn voice_round_trips_through_a_file() {
    let e = engine();
    let dir = pipeline_support::scratch("voice-rt");
    let voice = e.voice_from_samples(&tone(1.5, 24_000), 24_000).unwrap();
    let path = dir.join("v.safetensors");
    voice.save(&path).unwrap();
    let back = chatterbox_ort::Voice::load(&path).unwrap();
    assert_eq!(voice, back);
}
