//! Helpers shared by the runtime_*.rs tests: scratch folders and fixture bundles built from
//! the committed graphs in tests/fixtures/ (made by tests/fixtures/make_fixtures.py).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use chatterbox_ort::bundle::sha256_file;

/// The committed fixture folder.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A fresh empty folder under the target dir's tmp (removed on drop).
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cbx-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub const CONFIG_JSON: &str = r#"{
    "text": {"vocab_size": 704, "start_token": 255, "stop_token": 0, "space_token": 2, "unk_token": 1, "max_positions": 2050},
    "speech": {"vocab_size": 8194, "num_codes": 6561, "start_token": 6561, "stop_token": 6562, "max_positions": 4100, "token_rate_hz": 25},
    "t3": {"hidden_size": 3, "num_layers": 1, "num_heads": 1, "num_kv_heads": 1, "head_dim": 3, "cond_len": 34, "speaker_embed_size": 256, "prompt_max_tokens": 150, "prompt_seconds": 6.0},
    "voice_encoder": {"sample_rate": 16000, "trim_top_db": 20.0, "embed_size": 256},
    "s3_tokenizer": {"sample_rate": 16000, "max_seconds": 30.0},
    "campplus": {"sample_rate": 16000, "embed_size": 192},
    "s3gen": {"sample_rate": 24000, "prompt_seconds": 10.0, "mel_bins": 80, "mel_frames_per_token": 2,
              "samples_per_mel_frame": 480, "max_tokens": 2500, "hift_harmonics": 9, "fade_zeros_seconds": 0.02, "fade_in_seconds": 0.02},
    "perth": {"sample_rate": 32000}
}"#;

pub const GENERATION_JSON: &str = r#"{"exaggeration": 0.5, "cfg_weight": 0.5, "temperature": 0.8, "min_p": 0.05, "top_p": 1.0,
    "repetition_penalty": 1.2, "flow_steps": 10, "flow_cfg_rate": 0.7, "max_new_tokens": 1000}"#;

/// The manifest I/O of each fixture graph.
pub fn fixture_io(graph: &str) -> (serde_json::Value, serde_json::Value) {
    use serde_json::json;
    match graph {
        "toy_step" => (
            json!([{"name": "x", "dtype": "float32", "shape": ["B", "seq", 3]},
                   {"name": "past", "dtype": "float32", "shape": ["B", "past", 3]}]),
            json!([{"name": "y", "dtype": "float32", "shape": ["B", "seq", 4]},
                   {"name": "present", "dtype": "float32", "shape": ["B", "total", 3]}]),
        ),
        "toy_embed" => (
            json!([{"name": "tokens", "dtype": "int64", "shape": [1, "n"]}]),
            json!([{"name": "embeds", "dtype": "float32", "shape": [1, "n", 3]}]),
        ),
        "toy_ext" => (
            json!([{"name": "x", "dtype": "float32", "shape": [1, 8]}]),
            json!([{"name": "y", "dtype": "float32", "shape": [1, 8]}]),
        ),
        "toy_state" => (
            json!([{"name": "x", "dtype": "float32", "shape": [1, "n"]},
                   {"name": "state", "dtype": "float32", "shape": [1, "n"]}]),
            json!([{"name": "y", "dtype": "float32", "shape": [1, "n"]},
                   {"name": "state_out", "dtype": "float32", "shape": [1, "n"]}]),
        ),
        other => panic!("no fixture {other}"),
    }
}

fn entry(dir: &Path, rel: &str) -> serde_json::Value {
    let p = dir.join(rel);
    serde_json::json!({
        "path": rel,
        "bytes": std::fs::metadata(&p).unwrap().len(),
        "sha256": sha256_file(&p).unwrap(),
    })
}

/// Writes a bundle into `dir` with one component per `(component name, fixture graph)`.
/// The graph files are copied as `<component>.onnx` (+ `.onnx.data` renamed consistently for
/// toy_ext: its data location is fixed, so it is copied under its own name).
pub fn write_bundle(dir: &Path, components: &[(&str, &str)]) -> serde_json::Value {
    let mut comps = serde_json::Map::new();
    for (name, graph) in components {
        let mut files = Vec::new();
        if *graph == "toy_ext" {
            // External data is referenced by file name inside the graph: keep the names.
            std::fs::copy(fixtures().join("toy_ext.onnx"), dir.join("toy_ext.onnx")).unwrap();
            std::fs::copy(
                fixtures().join("toy_ext.onnx.data"),
                dir.join("toy_ext.onnx.data"),
            )
            .unwrap();
            files.push(entry(dir, "toy_ext.onnx"));
            files.push(entry(dir, "toy_ext.onnx.data"));
        } else {
            let rel = format!("{name}.onnx");
            std::fs::copy(fixtures().join(format!("{graph}.onnx")), dir.join(&rel)).unwrap();
            files.push(entry(dir, &rel));
        }
        let (inputs, outputs) = fixture_io(graph);
        comps.insert(
            name.to_string(),
            serde_json::json!({"files": files, "precision": "fp32", "opset": 17,
                               "inputs": inputs, "outputs": outputs}),
        );
    }
    std::fs::write(dir.join("tokenizer.json"), b"{\"dummy\": true}").unwrap();
    write_voice(&dir.join("voice.safetensors"));
    let manifest = serde_json::json!({
        "schema_version": 1,
        "model": {"id": "fixture", "config": "fixture", "origin": {"kind": "random", "seed": 0}},
        "exporter": {},
        "config": serde_json::from_str::<serde_json::Value>(CONFIG_JSON).unwrap(),
        "generation": serde_json::from_str::<serde_json::Value>(GENERATION_JSON).unwrap(),
        "components": comps,
        "files": [entry(dir, "tokenizer.json"), entry(dir, "voice.safetensors")],
    });
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_string_pretty(&manifest).unwrap(),
    )
    .unwrap();
    manifest
}

/// A small valid voice.
pub fn sample_voice() -> chatterbox_ort::bundle::Voice {
    use ndarray::{Array2, Array3};
    chatterbox_ort::bundle::Voice {
        speaker_emb: Array2::from_shape_fn((1, 256), |(_, j)| j as f32 / 256.0),
        cond_prompt_speech_tokens: Array2::from_shape_fn((1, 12), |(_, j)| (j * 7) as i64),
        prompt_token: Array2::from_shape_fn((1, 6), |(_, j)| (j * 11) as i64),
        prompt_feat: Array3::from_shape_fn((1, 12, 80), |(_, i, j)| (i as f32) - (j as f32) / 80.0),
        embedding: Array2::from_shape_fn((1, 192), |(_, j)| (j as f32).sin()),
    }
}

pub fn write_voice(path: &Path) {
    sample_voice().save(path).unwrap();
}

/// Initialises ONNX Runtime from the build-time default (or ORT_DYLIB_PATH).
pub fn init_runtime() {
    chatterbox_ort::runtime::init(&chatterbox_ort::runtime::RuntimeOptions::default())
        .expect("ONNX Runtime init (build.rs should have provisioned the library)");
}
