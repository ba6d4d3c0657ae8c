//! The text and audio front-ends through the public API, as the engine chains them.

use std::path::{Path, PathBuf};

use chatterbox_ort::audio::{self, fade, resample::resampled_len, trim};
use chatterbox_ort::error::ErrorKind;
use chatterbox_ort::rng::EngineRng;
use chatterbox_ort::t3::sampler::{self, SamplerParams};
use chatterbox_ort::text::{self, ChunkLimits, TextTokenizer};

/// A scratch folder removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("cbx-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A character-level tokenizer in the Chatterbox layout: `[STOP]` 0, `[UNK]` 1, `[SPACE]` 2,
/// letters and punctuation from 3, `[START]` 255.
fn write_tokenizer(dir: &Path) -> PathBuf {
    let mut vocab = vec![
        r#""[STOP]":0"#.to_string(),
        r#""[UNK]":1"#.to_string(),
        r#""[SPACE]":2"#.to_string(),
        r#""[START]":255"#.to_string(),
    ];
    let chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-";
    for (i, c) in chars.chars().enumerate() {
        vocab.push(format!(
            "{}:{}",
            serde_json::to_string(&c.to_string()).unwrap(),
            3 + i
        ));
    }
    let added: Vec<String> = [("[STOP]", 0), ("[UNK]", 1), ("[SPACE]", 2), ("[START]", 255)]
        .iter()
        .map(|(t, i)| format!(r#"{{"id":{i},"content":"{t}","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}}"#))
        .collect();
    let json = format!(
        r#"{{"version":"1.0","truncation":null,"padding":null,"added_tokens":[{}],"normalizer":null,"pre_tokenizer":{{"type":"Whitespace"}},"post_processor":null,"decoder":null,"model":{{"type":"BPE","dropout":null,"unk_token":"[UNK]","continuing_subword_prefix":null,"end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":false,"ignore_merges":false,"vocab":{{{}}},"merges":[]}}}}"#,
        added.join(","),
        vocab.join(",")
    );
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, json).unwrap();
    path
}

#[test]
fn text_front_end() {
    let dir = TempDir::new("text");
    let tok = TextTokenizer::from_file(&write_tokenizer(&dir.0), 704).unwrap();

    let long: String = "this is a sentence: with a colon... and more; ".repeat(40);
    let limits = ChunkLimits {
        max_tokens: 120,
        max_chars: 150,
    };
    let chunks = text::chunk_text(&long, &limits, |s| tok.count_tokens(s)).unwrap();
    assert!(chunks.len() > 10);
    let words: Vec<&str> = long.split_whitespace().collect();
    let joined = chunks.join(" ");
    assert_eq!(joined.split_whitespace().collect::<Vec<_>>(), words);
    for c in &chunks {
        let normalized = text::punc_norm(c);
        let ids = tok.encode_with_start_stop(&normalized).unwrap();
        assert_eq!(ids[0], 255);
        assert_eq!(*ids.last().unwrap(), 0);
        assert!(ids.len() - 2 <= 120 + 8, "{} tokens", ids.len());
        assert!(ids.iter().all(|&i| (0..704).contains(&i)));
    }

    // 100 KB of text chunks in linear time with the real tokenizer.
    let big = "Short one. A longer sentence, with a comma, and some more words! Why? "
        .repeat(100 * 1024 / 70);
    let t0 = std::time::Instant::now();
    let chunks = text::chunk_text(&big, &ChunkLimits::default(), |s| tok.count_tokens(s)).unwrap();
    let elapsed = t0.elapsed().as_secs_f64();
    assert!(elapsed < 10.0, "{elapsed} s");
    assert!(chunks.iter().all(|c| c.chars().count() <= 300));
    assert_eq!(
        chunks.join(" ").split_whitespace().count(),
        big.split_whitespace().count()
    );

    // Characters outside the vocabulary become [UNK]; nothing fails.
    let ids = tok
        .encode(&text::punc_norm("emoji \u{1f600} and \u{4e2d}"))
        .unwrap();
    assert_eq!(ids.iter().filter(|&&i| i == 1).count(), 2);

    let e = TextTokenizer::from_file(&dir.0.join("missing.json"), 704).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    std::fs::write(dir.0.join("bad.json"), "{").unwrap();
    let e = TextTokenizer::from_file(&dir.0.join("bad.json"), 704).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Bundle);
    assert!(e.to_string().contains("bad.json"));
}

#[test]
fn audio_front_end() {
    let dir = TempDir::new("audio");
    // 1 s of a 22.05 kHz tone between silences, written and read back.
    let sr = 22_050u32;
    let mut x = vec![0.0f32; 11_025];
    x.extend(
        (0..22_050)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 330.0 * i as f32 / sr as f32).sin()),
    );
    x.extend(vec![0.0f32; 11_025]);
    let path = dir.0.join("ref.wav");
    audio::write_wav_atomic(&path, &x, sr).unwrap();
    let wav = audio::read_wav(&path, 0.5).unwrap();
    assert_eq!(wav.sample_rate, sr);
    assert_eq!(wav.samples.len(), x.len());

    let at24 = audio::resample(&wav.samples, sr, 24_000).unwrap();
    assert_eq!(at24.len(), resampled_len(x.len(), sr, 24_000));
    let at16 = audio::resample(&at24, 24_000, 16_000).unwrap();
    let trimmed = trim::trim(&at16, 20.0);
    // The tone is 0.5 s .. 1.5 s: trimming keeps about a second (frame granularity).
    let secs = trimmed.len() as f64 / 16_000.0;
    assert!((1.0..1.15).contains(&secs), "{secs} s");
    assert_eq!(audio::trim(&at16, 20.0).len(), trimmed.len());

    let mut out = at24.clone();
    fade::apply_trim_fade(&mut out, 24_000);
    assert!(out[..480].iter().all(|&v| v == 0.0));

    let e = audio::read_wav(&path, 5.0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidAudio);
    assert!(e.to_string().contains("ref.wav"));
}

#[test]
fn seeded_sampling_is_reproducible() {
    let cond: Vec<f32> = (0..64)
        .map(|i| ((i * 37 % 64) as f32 / 16.0).sin())
        .collect();
    let uncond: Vec<f32> = (0..64)
        .map(|i| ((i * 11 % 64) as f32 / 16.0).cos())
        .collect();
    let params = SamplerParams::default();
    let run = |seed| {
        let mut rng = EngineRng::new(seed);
        let mut history = vec![0i64];
        for _ in 0..50 {
            let t = sampler::sample(&cond, Some(&uncond), &history, &params, &mut rng).unwrap();
            history.push(t);
        }
        history
    };
    assert_eq!(run(7), run(7));
    let bad = SamplerParams {
        temperature: 0.0,
        ..SamplerParams::default()
    };
    let e = sampler::process(&cond, Some(&uncond), &[], &bad).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("temperature"));
}
