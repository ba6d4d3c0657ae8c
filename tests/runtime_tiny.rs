//! The committed tiny bundle (onnx/tiny, random weights): every component's session is
//! created and checked against the manifest; residency counts over a whole request.

mod runtime_common;

use std::path::PathBuf;
use std::sync::Arc;

use chatterbox_ort::bundle::Bundle;
use chatterbox_ort::residency::{Component, Host, Stage};
use chatterbox_ort::runtime::{Provider, Session, SessionOptions, StateTensor, Value};

fn tiny() -> Arc<Bundle> {
    runtime_common::init_runtime();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("onnx/tiny");
    assert!(
        dir.join("manifest.json").is_file(),
        "the committed tiny bundle is missing at {}",
        dir.display()
    );
    Arc::new(Bundle::open(&dir).expect("tiny bundle opens and its top-level files verify"))
}

fn opts() -> SessionOptions {
    SessionOptions {
        threads: 1,
        ..SessionOptions::default()
    }
}

#[test]
fn every_component_session_matches_the_manifest() {
    let b = tiny();
    assert_eq!(b.manifest().components.len(), 12);
    for c in Component::ALL {
        b.verify_component(c.name()).unwrap();
        let spec = b.component(c.name()).unwrap();
        let s = Session::create(b.dir(), c.name(), spec, &opts())
            .unwrap_or_else(|e| panic!("{c}: {e}"));
        assert_eq!(s.name(), c.name());
    }
    let voice = b.default_voice().unwrap();
    voice.validate(b.config()).unwrap();
}

/// The in-place KV cache: capacity-sized buffers bound as `past_*` and `present_*`, a
/// prefill of 5 then two single steps. Each run writes its positions into the buffers and
/// leaves the earlier ones as they were; the steps agree with one 7-position prefill.
#[test]
fn t3_decoder_updates_its_kv_cache_in_place() {
    let b = tiny();
    let cfg = b.config().clone();
    let (d, layers, heads, hd, vocab) = (
        cfg.t3.hidden_size,
        cfg.t3.num_layers,
        cfg.t3.num_kv_heads,
        cfg.t3.head_dim,
        cfg.speech.vocab_size,
    );
    let spec = b.component("t3_decoder").unwrap();
    let mut s = Session::create(b.dir(), "t3_decoder", spec, &opts()).unwrap();
    let (batch, capacity, total) = (2usize, 9usize, 7usize);
    let embeds: Vec<f32> = (0..batch * total * d)
        .map(|i| ((i * 7919) % 13) as f32 * 0.05 - 0.3)
        .collect();
    // Rows `from..to` of `[batch, total, d]` embeds.
    let rows = |from: usize, to: usize| -> Value {
        let mut x = Vec::new();
        for r in 0..batch {
            x.extend_from_slice(&embeds[(r * total + from) * d..(r * total + to) * d]);
        }
        Value::from_f32(&[batch, to - from, d], x).unwrap()
    };
    let state = |s: &Session| -> Vec<StateTensor> {
        (0..layers)
            .flat_map(|i| ["key", "value"].map(|k| (i, k)))
            .map(|(i, kind)| StateTensor {
                input: format!("past_{kind}_{i}"),
                output: format!("present_{kind}_{i}"),
                value: s.alloc_f32(&[batch, heads, capacity, hd]).unwrap(),
            })
            .collect()
    };
    // Positions `0..n` of every (row, head) slab of a cache buffer.
    let prefix = |v: &Value, n: usize| -> Vec<f32> {
        v.f32_slice()
            .unwrap()
            .chunks_exact(capacity * hd)
            .flat_map(|slab| slab[..n * hd].to_vec())
            .collect()
    };
    let run = |s: &mut Session, st: &mut [StateTensor], x: Value, past: usize| -> Vec<f32> {
        let seq = x.shape()[1];
        let mut out = s
            .run_in_place(
                vec![
                    ("inputs_embeds", x),
                    (
                        "past_len",
                        Value::from_i64(&[1], vec![past as i64]).unwrap(),
                    ),
                ],
                st,
            )
            .unwrap();
        assert_eq!(out.names(), vec!["logits".to_string()]);
        let logits = out.take("logits").unwrap();
        assert_eq!(logits.shape(), vec![batch, seq, vocab]);
        let l = logits.f32_slice().unwrap();
        assert!(l.iter().all(|v| v.is_finite()));
        // The last position of each row.
        (0..batch)
            .flat_map(|r| l[((r + 1) * seq - 1) * vocab..(r + 1) * seq * vocab].to_vec())
            .collect()
    };

    let mut stepped = state(&s);
    run(&mut s, &mut stepped, rows(0, 5), 0);
    let after_prefill = prefix(&stepped[0].value, 5);
    assert!(after_prefill.iter().all(|v| v.is_finite()));
    run(&mut s, &mut stepped, rows(5, 6), 5);
    let last_step = run(&mut s, &mut stepped, rows(6, 7), 6);
    assert_eq!(
        prefix(&stepped[0].value, 7)
            .chunks_exact(7 * hd)
            .flat_map(|slab| slab[..5 * hd].to_vec())
            .collect::<Vec<_>>(),
        after_prefill,
        "later steps left the prefill's positions as they were"
    );

    let mut whole = state(&s);
    let one_pass = run(&mut s, &mut whole, rows(0, 7), 0);
    assert_eq!(s.timings().runs, 4);
    let close = |a: &[f32], b: &[f32], what: &str| {
        assert_eq!(a.len(), b.len(), "{what}");
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-4, "{what}: max abs difference {worst}");
    };
    close(
        &last_step,
        &one_pass,
        "last-position logits, steps vs one pass",
    );
    for (a, b) in stepped.iter().zip(&whole) {
        close(&prefix(&a.value, 7), &prefix(&b.value, 7), &a.output);
    }
}

#[test]
fn swap_host_creates_and_destroys_each_component_once_per_request() {
    let b = tiny();
    let h = Host::new(
        Arc::clone(&b),
        Provider::Cpu,
        Some(1),
        "swap".parse().unwrap(),
    )
    .unwrap();
    assert_eq!(h.stats().sessions_created(), 0);
    for request in 1..=2u64 {
        for s in Stage::ALL {
            let _g = h.stage(s).unwrap();
            for c in s.components() {
                h.with_session(c, |_| Ok(())).unwrap();
                assert!(h.is_loaded(c));
            }
        }
        let st = h.stats();
        assert_eq!(st.sessions_created(), 12 * request);
        assert_eq!(st.sessions_destroyed(), 12 * request);
        assert!(st
            .components
            .iter()
            .all(|c| !c.loaded && c.sessions_created == request));
        assert!(st.components.iter().all(|c| c.weight_bytes > 0));
    }
    let resident = Host::new(
        Arc::clone(&b),
        Provider::Cpu,
        Some(1),
        "resident".parse().unwrap(),
    )
    .unwrap();
    assert_eq!(resident.stats().sessions_created(), 12);
}
