//! fp16-compute bundles (`export/quantize_bundle.py --precision fp16`): `t3_decoder`,
//! `flow_encoder`, `flow_estimator` and `hift` compute in float16 with fp32 islands (norms,
//! softmax, positions, phases), the decoder's KV cache is float16, every other input and
//! output float32. `onnx/tiny-quant/<family>-fp16/` holds only those four graphs and the
//! bundle's `manifest.json`; each test rebuilds the whole bundle in a scratch folder from
//! `onnx/tiny` or `onnx/tiny-turbo` and those files.
//!
//! On the CPU provider, ONNX Runtime casts around the float16 nodes it has no kernel for, so
//! these tests measure the error of float16 storage and arithmetic, not GPU speed. The error is
//! measured against the fp32 tiny bundle run by the same engine on the same inputs: the
//! teacher-forced logits (against the goldens' `tf_logits`), the flow encoder's `mu`, the
//! Euler loop's mel from the goldens' noise and HiFT's wav on it with the goldens' draws
//! (each fp16 stage after the fp16 stages before it). Measured on the committed graphs (CPU,
//! 1 thread): see `CASES`; the bounds are about twice the measurement.

mod pipeline_support;

use chatterbox_ort::bundle::DType;
use chatterbox_ort::t3::decode::KvDecoder;
use chatterbox_ort::{Engine, EngineOptions};
use pipeline_support::{
    engine, files_bytes, goldens, goldens_s3gen, info_line, original_tf_logits, rel_err,
    say_samples, test_engine, turbo_engine, turbo_goldens, turbo_tf_logits, Goldens, TinyVariant,
};

const BIN: &str = env!("CARGO_BIN_EXE_chatterbox-ort");

/// The graphs an fp16 bundle replaces.
const GRAPHS: [&str; 4] = [
    "t3_decoder.onnx",
    "flow_encoder.onnx",
    "flow_estimator.onnx",
    "hift.onnx",
];

/// One committed fp16 bundle and the bounds it must meet (relative L2 errors against the
/// fp32 bundle).
struct Case {
    family: &'static str,
    /// Teacher-forced logits against the goldens' `tf_logits`.
    max_logits_err: f64,
    /// The flow encoder's `mu`.
    max_mu_err: f64,
    /// The Euler loop's mel.
    max_mel_err: f64,
    /// HiFT's wav on that mel.
    max_wav_err: f64,
}

/// Measured (CPU, 1 thread): original logits 7.1e-4, mu 6.1e-4, mel 5.9e-3, wav 2.7e-2;
/// Turbo logits 3.1e-4, mu 6.1e-4, mel 3.7e-3, wav 1.6e-2.
const CASES: [Case; 2] = [
    Case {
        family: "original",
        max_logits_err: 1.5e-3,
        max_mu_err: 1.5e-3,
        max_mel_err: 1.2e-2,
        max_wav_err: 6e-2,
    },
    Case {
        family: "turbo",
        max_logits_err: 7e-4,
        max_mu_err: 1.5e-3,
        max_mel_err: 8e-3,
        max_wav_err: 3.5e-2,
    },
];

fn case(family: &str) -> &'static Case {
    CASES
        .iter()
        .find(|c| c.family == family)
        .expect("a listed case")
}

impl Case {
    fn variant(&self) -> TinyVariant {
        TinyVariant {
            family: self.family,
            name: "fp16",
            files: &GRAPHS,
        }
    }
}

fn fp32(c: &Case) -> (&'static Engine, &'static Goldens) {
    if c.family == "turbo" {
        (turbo_engine(), turbo_goldens())
    } else {
        (engine(), goldens())
    }
}

/// The engine reads fp16 for the four graphs (and only there), allocates a float16 KV cache,
/// and every stage stays within the case's bounds of the fp32 bundle.
fn within_bounds(family: &str) {
    let c = case(family);
    let turbo = family == "turbo";
    let dir = c.variant().bundle("err");
    let h = test_engine(dir.clone());
    let precision = |e: &Engine, name: &str| e.bundle().component(name).unwrap().precision.clone();
    for name in GRAPHS {
        let name = name.trim_end_matches(".onnx");
        assert_eq!(precision(&h, name), "fp16", "{name}");
    }
    for other in ["t3_cond", "s3gen_mel", "perth"] {
        assert_eq!(precision(&h, other), "fp32", "{other}");
    }
    let (f, g) = fp32(c);
    let batch = if turbo { 1 } else { 2 };
    let cache = |e: &Engine| {
        KvDecoder::new(e.host(), e.t3_dims(), batch, 8)
            .unwrap()
            .cache_dtype()
    };
    assert_eq!(cache(&h), DType::Float16);
    assert_eq!(cache(f), DType::Float32);

    let tf = |e: &Engine| {
        if turbo {
            turbo_tf_logits(e, g)
        } else {
            original_tf_logits(e, g)
        }
    };
    let logits_err = rel_err(&tf(&h), g.f32("tf_logits"));
    let (mu32, mel32, wav32) = goldens_s3gen(f, g, turbo, false);
    let (mu16, mel16, wav16) = goldens_s3gen(&h, g, turbo, false);
    let (mu_err, mel_err, wav_err) = (
        rel_err(&mu16, &mu32),
        rel_err(&mel16, &mel32),
        rel_err(&wav16, &wav32),
    );
    eprintln!(
        "{family} fp16: logits rel err {logits_err:.3e} (bound {:.1e}), mu {mu_err:.3e} ({:.1e}), \
         mel {mel_err:.3e} ({:.1e}), wav {wav_err:.3e} ({:.1e})",
        c.max_logits_err, c.max_mu_err, c.max_mel_err, c.max_wav_err
    );
    assert!(
        mel_err > 0.0,
        "{family}: the fp16 flow gave the fp32 mel exactly"
    );
    assert!(
        logits_err <= c.max_logits_err,
        "{family}: logits {logits_err:.3e}"
    );
    assert!(mu_err <= c.max_mu_err, "{family}: mu {mu_err:.3e}");
    assert!(mel_err <= c.max_mel_err, "{family}: mel {mel_err:.3e}");
    assert!(wav_err <= c.max_wav_err, "{family}: wav {wav_err:.3e}");
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn original_fp16_stages_within_bounds() {
    within_bounds("original");
}

#[test]
fn turbo_fp16_stages_within_bounds() {
    within_bounds("turbo");
}

/// `chatterbox-ort info` reports fp16 and `say` synthesizes on each fp16 bundle.
#[test]
fn info_and_say_on_each_fp16_bundle() {
    for c in &CASES {
        let dir = c.variant().bundle("cli");
        let line = info_line(BIN, &dir, "t3_decoder");
        assert!(line.contains("fp16"), "{line}");
        let what = format!("{}-fp16", c.family);
        let n = say_samples(BIN, &dir, "Half precision.", "1", &what);
        assert!(n > 0 && n.is_multiple_of(960), "{n} samples");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A manifest that declares a float32 cache for an fp16 decoder is refused at load with a
/// message naming the tensor.
#[test]
fn cache_dtype_mismatch_names_the_tensor() {
    let c = case("original");
    let dir = c.variant().bundle("mismatch");
    let path = dir.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for t in m["components"]["t3_decoder"]["inputs"]
        .as_array_mut()
        .unwrap()
    {
        if t["name"] == "past_value_1" {
            t["dtype"] = "float32".into();
        }
    }
    std::fs::write(&path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    let mut opts = EngineOptions::new(&dir);
    opts.threads = Some(1);
    let err = Engine::load(opts)
        .and_then(|e| KvDecoder::new(e.host(), e.t3_dims(), 2, 8).map(|_| ()))
        .expect_err("a float32 declaration of an fp16 cache tensor");
    let msg = err.to_string();
    assert!(msg.contains("past_value_1"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `onnx/tiny-quant/*-fp16` stays small: the repository carries it (the Turbo flow encoder
/// and HiFT are the original's, stored once by git).
#[test]
fn committed_fp16_graphs_stay_small() {
    let total = files_bytes(CASES.iter().map(|c| c.variant().committed()));
    assert!(total < 5_000_000, "onnx/tiny-quant/*-fp16 is {total} bytes");
}
