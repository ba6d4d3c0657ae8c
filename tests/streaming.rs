//! Token-level streaming on the tiny bundles (`docs/STREAMING.md`): the stream's length and
//! determinism, overlap giving the same stream, joins without clicks, the distance to the
//! non-streamed audio of the same seed, cancellation, residency while streaming.

mod pipeline_support;

use std::sync::OnceLock;

use chatterbox_ort::residency::{Component, ResidencyOptions};
use chatterbox_ort::stream::{StreamChunk, StreamOptions};
use chatterbox_ort::{Audio, Engine, EngineOptions, ErrorKind, Request};
use pipeline_support::engine;

const TEXT: &str = "Streaming speech arrives while the model is still talking.";

/// Every request fixes the token count (random weights never stop on their own).
fn request(e: &Engine, seed: u64, tokens: usize) -> Request {
    Request {
        seed,
        max_new_tokens: tokens,
        min_new_tokens: tokens,
        flow_steps: 2,
        ..e.default_request()
    }
}

fn options(first: usize, chunk: usize, overlap: bool) -> StreamOptions {
    StreamOptions {
        first_chunk_tokens: first,
        chunk_tokens: chunk,
        overlap,
    }
}

/// A delivered chunk, owned.
#[derive(Debug, Clone, PartialEq)]
struct Got {
    samples: Vec<f32>,
    offset: usize,
    index: usize,
    text_chunk: usize,
    tokens: usize,
    last: bool,
}

fn stream(e: &Engine, text: &str, req: &Request, opts: &StreamOptions) -> (Audio, Vec<Got>) {
    let mut got = Vec::new();
    let audio = e
        .synthesize_stream(
            text,
            e.default_voice(),
            req,
            opts,
            &mut |_| true,
            &mut |c: &StreamChunk<'_>| {
                got.push(Got {
                    samples: c.samples.to_vec(),
                    offset: c.offset,
                    index: c.index,
                    text_chunk: c.text_chunk,
                    tokens: c.tokens,
                    last: c.last,
                });
                true
            },
        )
        .unwrap();
    (audio, got)
}

/// The reference log-mel (the bundle's `s3gen_mel` graph: 80 bins, 20 ms hop) of `wav`,
/// frame-major.
fn log_mel(e: &Engine, wav: &[f32]) -> (Vec<f32>, usize) {
    chatterbox_ort::conditioning::prompt_mel(e.host(), wav, 80).unwrap()
}

/// Mean absolute log-mel difference per 20 ms frame of `a` against `b` (same length).
fn log_mel_frame_distance(e: &Engine, a: &[f32], b: &[f32]) -> Vec<f32> {
    let (ma, fa) = log_mel(e, a);
    let (mb, fb) = log_mel(e, b);
    assert_eq!(fa, fb);
    (0..fa)
        .map(|f| {
            ma[f * 80..(f + 1) * 80]
                .iter()
                .zip(&mb[f * 80..(f + 1) * 80])
                .map(|(x, y)| (x - y).abs())
                .sum::<f32>()
                / 80.0
        })
        .collect()
}

#[test]
fn stream_is_contiguous_deterministic_and_as_long_as_the_synthesis() {
    let e = engine();
    let req = request(e, 5, 70);
    let opts = options(12, 20, false);
    let (audio, got) = stream(e, TEXT, &req, &opts);
    let full = e.synthesize(TEXT, e.default_voice(), &req).unwrap();

    // 70 tokens: passes at 12, 32, 52 tokens and the final one.
    assert_eq!(
        got.len(),
        4,
        "deliveries: {:?}",
        got.iter().map(|g| g.samples.len()).collect::<Vec<_>>()
    );
    assert_eq!(audio.stages.s3gen_passes, 4);
    assert_eq!(audio.stages.audio_chunks, 4);
    assert_eq!(audio.stages.chunk_latency_s.len(), 4);
    assert!(audio.stages.first_audio_s > 0.0 && audio.stages.first_audio_s < audio.stages.total_s);
    let mut offset = 0;
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g.index, i);
        assert_eq!(g.offset, offset, "chunk {i} offset");
        assert_eq!(g.text_chunk, 0);
        assert_eq!(g.last, i + 1 == got.len());
        assert!(!g.samples.is_empty());
        offset += g.samples.len();
    }
    assert_eq!(
        [got[0].tokens, got[1].tokens, got[2].tokens, got[3].tokens],
        [12, 32, 52, 70]
    );
    // The concatenation is the returned audio, as long as the non-streamed synthesis
    // (960 samples per token), in range.
    let cat: Vec<f32> = got.iter().flat_map(|g| g.samples.iter().copied()).collect();
    assert_eq!(cat, audio.samples);
    assert_eq!(cat.len(), 960 * 70);
    assert_eq!(cat.len(), full.samples.len());
    assert!(cat.iter().all(|s| s.is_finite() && s.abs() <= 1.0));

    // Same seed, same stream; with T3 on its own thread too.
    let (_, again) = stream(e, TEXT, &req, &opts);
    assert_eq!(again, got, "the same seed gave another stream");
    let (_, overlapped) = stream(e, TEXT, &req, &options(12, 20, true));
    assert_eq!(overlapped, got, "overlap changed the stream");
    // T3 reaching max_new_tokens at a pass's token count: that pass is left to the last.
    let (short, got52) = stream(e, TEXT, &request(e, 5, 52), &opts);
    assert_eq!(short.stages.s3gen_passes, 3);
    assert_eq!(
        got52.iter().map(|g| g.tokens).collect::<Vec<_>>(),
        [12, 32, 52]
    );
    // Another seed, another stream.
    let (_, other) = stream(e, TEXT, &request(e, 6, 70), &opts);
    assert_ne!(other[0].samples, got[0].samples);
}

#[test]
fn streamed_audio_is_close_to_the_synthesis_and_joins_are_smooth() {
    let e = engine();
    for watermark in [false, true] {
        let req = Request {
            watermark,
            ..request(e, 9, 90)
        };
        let (audio, got) = stream(e, TEXT, &req, &options(12, 20, false));
        let full = e.synthesize(TEXT, e.default_voice(), &req).unwrap();
        let a = &audio.samples;
        let b = &full.samples;
        assert_eq!(a.len(), b.len());

        // The last pass computes exactly the non-streamed chunk: everything it delivered
        // after its cross-fade is equal before the watermark (and nearly so after it).
        let last = got.last().unwrap();
        let from = last.offset + 960;
        let tail_diff = a[from..]
            .iter()
            .zip(&b[from..])
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        println!("watermark {watermark}: max |streamed - synthesized| in the last delivery {tail_diff:e}");
        if watermark {
            assert!(tail_diff < 2e-2, "{tail_diff}");
        } else {
            assert_eq!(tail_diff, 0.0);
        }

        // Log-mel distance per 20 ms frame; where the differences sit.
        let d = log_mel_frame_distance(e, a, b);
        let mean = d.iter().sum::<f32>() / d.len() as f32;
        let max = d.iter().copied().fold(0f32, f32::max);
        let argmax = d.iter().position(|&x| x == max).unwrap();
        println!(
            "watermark {watermark}: log-mel distance mean {mean:.4} max {max:.4} at frame {argmax} of {}; joins at frames {:?}",
            d.len(),
            got.iter().map(|g| g.offset / 480).collect::<Vec<_>>()
        );
        assert!(mean < 0.15, "mean log-mel distance {mean}");

        // No click at a join: the step across each join is no larger than the largest
        // sample-to-sample step within 20 ms (480 samples) around it.
        for g in &got[1..] {
            let o = g.offset;
            let step = (a[o] - a[o - 1]).abs();
            let local = (o - 480..o + 480)
                .filter(|&i| i != o)
                .map(|i| (a[i] - a[i - 1]).abs())
                .fold(0f32, f32::max);
            println!("join at {o}: step {step:e}, largest step within 20 ms {local:e}");
            assert!(step <= local, "join at {o}: step {step} > {local}");
        }
        // For scale: the distance between the synthesis and another seed's.
        let other = e
            .synthesize(TEXT, e.default_voice(), &Request { seed: 10, ..req })
            .unwrap();
        let ds = log_mel_frame_distance(e, &other.samples, b);
        let seed_mean = ds.iter().sum::<f32>() / ds.len() as f32;
        println!("watermark {watermark}: log-mel distance to another seed: mean {seed_mean:.4}");
        assert!(
            mean < 0.5 * seed_mean,
            "{mean} vs another seed's {seed_mean}"
        );
        // Where the differences sit: the frames the last pass delivered (after its
        // cross-fade) are (nearly) those of the synthesis.
        let last_frames = &d[(from / 480 + 2).min(d.len())..];
        let last_mean = last_frames.iter().sum::<f32>() / last_frames.len().max(1) as f32;
        println!("watermark {watermark}: mean distance over the last delivery {last_mean:.5}");
        assert!(last_mean < 0.02, "{last_mean}");
    }
}

#[test]
fn text_chunks_stream_in_order_with_their_gap() {
    let e = engine();
    let text = "First sentence is here. ".repeat(40) + "And the second group follows it.";
    let req = request(e, 3, 30);
    let (audio, got) = stream(e, &text, &req, &options(9, 10, false));
    let full = e.synthesize(&text, e.default_voice(), &req).unwrap();
    assert!(full.stages.chunks >= 2, "the text did not split");
    assert_eq!(audio.stages.chunks, full.stages.chunks);
    assert_eq!(audio.samples.len(), full.samples.len());
    let chunks: Vec<usize> = got.iter().map(|g| g.text_chunk).collect();
    assert!(chunks.windows(2).all(|w| w[1] >= w[0]));
    assert_eq!(*chunks.last().unwrap() + 1, full.stages.chunks);
    // More than one delivery per text chunk.
    for c in 0..full.stages.chunks {
        assert!(
            chunks.iter().filter(|&&x| x == c).count() > 1,
            "text chunk {c}"
        );
    }
}

#[test]
fn cancel_between_chunks_and_between_tokens() {
    let e = engine();
    let req = request(e, 1, 60);
    let mut seen = 0;
    let err = e
        .synthesize_stream(
            TEXT,
            e.default_voice(),
            &req,
            &options(9, 8, false),
            &mut |_| true,
            &mut |_| {
                seen += 1;
                false
            },
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    assert_eq!(seen, 1, "a chunk was delivered after the cancel");

    for overlap in [false, true] {
        let mut tokens = 0;
        let err = e
            .synthesize_stream(
                TEXT,
                e.default_voice(),
                &req,
                &options(30, 8, overlap),
                &mut |p| {
                    tokens = p.tokens;
                    p.tokens < 5
                },
                &mut |_| panic!("no chunk before 30 tokens"),
            )
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Cancelled);
        assert_eq!(tokens, 5);
    }
}

#[test]
fn stream_options_are_validated() {
    let e = engine();
    let req = request(e, 1, 10);
    for (opts, field) in [
        (options(8, 10, false), "first_chunk_tokens"),
        (options(0, 10, false), "first_chunk_tokens"),
        (options(10_000, 10, false), "first_chunk_tokens"),
        (options(10, 0, false), "chunk_tokens"),
        (options(10, 5000, false), "chunk_tokens"),
    ] {
        let err = e
            .synthesize_stream(
                TEXT,
                e.default_voice(),
                &req,
                &opts,
                &mut |_| true,
                &mut |_| true,
            )
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.to_string().contains(field), "{err}");
    }
    assert!(StreamOptions::default().validate().is_ok());
}

/// An engine of its own (its residency changes).
fn swap_engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let mut opts = EngineOptions::new(pipeline_support::bundle_dir());
        opts.threads = Some(1);
        opts.residency = "swap".parse::<ResidencyOptions>().unwrap();
        Engine::load(opts).unwrap()
    })
}

#[test]
fn swap_creates_each_session_once_per_stream() {
    let e = swap_engine();
    let req = request(e, 2, 60);
    let before = e.host().stats();
    let (_, got) = stream(e, TEXT, &req, &options(9, 8, false));
    assert!(got.len() >= 6);
    let after = e.host().stats();
    for c in [
        Component::T3Decoder,
        Component::FlowEstimator,
        Component::Hift,
        Component::Perth,
    ] {
        let created = |s: &chatterbox_ort::residency::Stats| {
            s.components
                .iter()
                .find(|x| x.name == c.name())
                .map_or(0, |x| x.sessions_created)
        };
        assert_eq!(
            created(&after) - created(&before),
            1,
            "{c:?} sessions created during one stream"
        );
    }
    // Afterwards the swap sessions are gone again.
    assert!(!e.host().is_loaded(Component::FlowEstimator));
    assert!(!e.host().is_loaded(Component::T3Decoder));

    // A budget the streaming stage set does not fit is refused before any work.
    let plan = e.host().plan();
    assert!(plan.streaming_peak_bytes > plan.predicted_peak_bytes);
    let mut tight: ResidencyOptions = "swap".parse().unwrap();
    tight.budget = Some(plan.predicted_peak_bytes);
    e.set_residency(tight).unwrap();
    let err = e
        .synthesize_stream(
            TEXT,
            e.default_voice(),
            &req,
            &options(9, 8, false),
            &mut |_| true,
            &mut |_| true,
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Budget);
    assert!(err.to_string().contains("streaming"), "{err}");
    // Non-streamed synthesis still fits that budget.
    e.synthesize(TEXT, e.default_voice(), &request(e, 2, 10))
        .unwrap();
    e.set_residency("swap".parse().unwrap()).unwrap();
}

/// The tiny Turbo bundle (GPT-2 T3, meanflow S3Gen without CFG).
fn turbo_engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("onnx/tiny-turbo");
        let mut opts = EngineOptions::new(dir);
        opts.threads = Some(1);
        Engine::load(opts).unwrap()
    })
}

#[test]
fn turbo_streams_like_its_synthesis() {
    let e = turbo_engine();
    let req = request(e, 4, 50);
    let (audio, got) = stream(e, TEXT, &req, &options(10, 15, false));
    let full = e.synthesize(TEXT, e.default_voice(), &req).unwrap();
    assert!(got.len() >= 3, "{} deliveries", got.len());
    // Turbo appends its S3GEN_SIL tokens at the end only: same length as the synthesis.
    assert_eq!(audio.samples.len(), full.samples.len());
    let from = got.last().unwrap().offset + 960;
    let diff = audio.samples[from..]
        .iter()
        .zip(&full.samples[from..])
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(
        diff < 2e-2,
        "last delivery differs from the synthesis by {diff}"
    );
    let (_, again) = stream(e, TEXT, &req, &options(10, 15, true));
    assert_eq!(again, got);
}

#[test]
fn every_delivery_carries_the_watermark() {
    let e = engine();
    let marked_req = request(e, 11, 70);
    let plain_req = Request {
        watermark: false,
        ..marked_req
    };
    let opts = options(12, 20, false);
    let (_, marked) = stream(e, TEXT, &marked_req, &opts);
    let (_, plain) = stream(e, TEXT, &plain_req, &opts);
    assert_eq!(marked.len(), plain.len());
    for (m, p) in marked.iter().zip(&plain) {
        assert_eq!((m.offset, m.samples.len()), (p.offset, p.samples.len()));
        // Perth's residual: present in every delivery (not only the last), and small.
        let rms = |x: &[f32]| (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt();
        let residual: Vec<f32> = m
            .samples
            .iter()
            .zip(&p.samples)
            .map(|(a, b)| a - b)
            .collect();
        let (r, s) = (rms(&residual), rms(&p.samples));
        println!("delivery {}: residual rms {r:e}, signal rms {s:e}", m.index);
        assert!(r > 1e-4 * s, "delivery {} is not watermarked", m.index);
        assert!(
            r < 0.5 * s,
            "delivery {}: residual {r} vs signal {s}",
            m.index
        );
    }
}
