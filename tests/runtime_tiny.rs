//! The committed tiny bundle (onnx/tiny, random weights): every component's session is
//! created and checked against the manifest; residency counts over a whole request.

mod runtime_common;

use std::path::PathBuf;
use std::sync::Arc;

use chatterbox_ort::bundle::Bundle;
use chatterbox_ort::residency::{Component, Host, Stage};
use chatterbox_ort::runtime::{Provider, Session, SessionOptions, Value};

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

#[test]
fn t3_decoder_prefill_and_step_with_kv_feedback() {
    let b = tiny();
    let cfg = b.config().clone();
    let (d, layers, heads, hd) = (
        cfg.t3.hidden_size,
        cfg.t3.num_layers,
        cfg.t3.num_kv_heads,
        cfg.t3.head_dim,
    );
    let spec = b.component("t3_decoder").unwrap();
    let mut s = Session::create(b.dir(), "t3_decoder", spec, &opts()).unwrap();
    let batch = 2;
    let mut past: Vec<(String, Value)> = Vec::new();
    for i in 0..layers {
        for kind in ["key", "value"] {
            past.push((
                format!("past_{kind}_{i}"),
                Value::from_f32(&[batch, heads, 0, hd], Vec::new()).unwrap(),
            ));
        }
    }
    let mut total = 0;
    for seq in [5usize, 1, 1] {
        let embeds: Vec<f32> = (0..batch * seq * d).map(|i| (i % 7) as f32 * 0.1).collect();
        let mut inputs: Vec<(&str, Value)> = vec![(
            "inputs_embeds",
            Value::from_f32(&[batch, seq, d], embeds).unwrap(),
        )];
        let names: Vec<String> = past.iter().map(|(n, _)| n.clone()).collect();
        for ((_, v), n) in past.drain(..).zip(&names) {
            inputs.push((n.as_str(), v));
        }
        let mut out = s.run(inputs).unwrap();
        total += seq;
        let logits = out.take("logits").unwrap();
        assert_eq!(logits.shape(), vec![batch, seq, cfg.speech.vocab_size]);
        assert!(logits.view_f32().unwrap().iter().all(|v| v.is_finite()));
        for n in names {
            let present = out.take(&n.replace("past_", "present_")).unwrap();
            assert_eq!(present.shape(), vec![batch, heads, total, hd], "{n}");
            past.push((n, present));
        }
    }
    assert_eq!(s.timings().runs, 3);
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
