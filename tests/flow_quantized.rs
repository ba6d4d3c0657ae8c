//! Quantized flow estimators (`export/quantize_bundle.py --components flow_estimator=int8`,
//! its defaults: every MatMul of the estimator with a constant weight quantized dynamically,
//! int8 weights with one scale per output column, activations quantized per tensor at run
//! time: `DynamicQuantizeLinear` + `MatMulInteger`). `onnx/tiny-quant/<family>-flow-int8/` holds only the quantized
//! `flow_estimator.onnx` and the bundle's `manifest.json`; each test rebuilds the whole
//! bundle in a scratch folder from `onnx/tiny` or `onnx/tiny-turbo` and those two files.
//!
//! The error is measured against the fp32 tiny bundle run by the same engine on the same
//! inputs (the goldens' flow `mu`, noise and prompt mel): the Euler loop's mel (10 cosine
//! steps with CFG for the original model, 2 meanflow steps for Turbo) and HiFT's wav on
//! that mel with the goldens' draws. Measured on the committed graphs (CPU, 1 thread):
//! see `CASES`; the bounds are about twice the measurement. The wav error is ~4-5x the mel
//! error on these inputs (HiFT amplifies it). The full-size figures are in benches/results/flow-quant/.

mod pipeline_support;

use std::path::Path;

use chatterbox_ort::Engine;
use pipeline_support::{
    engine, files_bytes, goldens, goldens_s3gen, info_line, read_json, rel_err, say_samples,
    test_engine, turbo_engine, turbo_goldens, TinyVariant,
};

const BIN: &str = env!("CARGO_BIN_EXE_chatterbox-ort");

/// One committed quantized flow estimator and the bounds it must meet.
struct Case {
    family: &'static str,
    /// Relative L2 error of the Euler loop's mel against the fp32 bundle's.
    max_mel_err: f64,
    /// Relative L2 error of HiFT's wav on that mel against the wav on the fp32 mel.
    max_wav_err: f64,
}

/// Measured (CPU, 1 thread, 7-bit weights, AVX2-only EPYC; 7-bit weights cannot saturate the
/// int16 pair sums of the non-VNNI kernel, so VNNI CPUs compute the same integers): original
/// mel 1.2e-2, wav 5.4e-2; Turbo mel 6.7e-3, wav 3.1e-2. (With full 8-bit weights the same
/// AVX2 CPU gave 5.2e-2 / 2.4e-1 and 4.4e-2 / 2.3e-1.)
const CASES: [Case; 2] = [
    Case {
        family: "original",
        max_mel_err: 2.5e-2,
        max_wav_err: 1.1e-1,
    },
    Case {
        family: "turbo",
        max_mel_err: 1.4e-2,
        max_wav_err: 6e-2,
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
            name: "flow-int8",
            files: &["flow_estimator.onnx"],
        }
    }
}

fn load(dir: &Path) -> Engine {
    test_engine(dir.to_path_buf())
}

/// Opens the rebuilt bundle, checks that the engine reads the quantized precision (and
/// only there), runs the flow and HiFT and holds them to the case's bounds against the
/// fp32 bundle.
fn flow_within_bounds(family: &str) {
    let c = case(family);
    let turbo = family == "turbo";
    let dir = c.variant().bundle("mel");
    let q = load(&dir);
    let spec = |e: &Engine, name: &str| e.bundle().component(name).unwrap().precision.clone();
    assert_eq!(spec(&q, "flow_estimator"), "int8");
    for other in ["t3_decoder", "flow_encoder", "hift"] {
        assert_eq!(spec(&q, other), "fp32", "{other}");
    }
    let (fp32, g) = if turbo {
        (turbo_engine(), turbo_goldens())
    } else {
        (engine(), goldens())
    };
    assert_eq!(spec(fp32, "flow_estimator"), "fp32");
    let (_, mel32, wav32) = goldens_s3gen(fp32, g, turbo, true);
    let (_, mel8, wav8) = goldens_s3gen(&q, g, turbo, true);
    let mel_err = rel_err(&mel8, &mel32);
    let wav_err = rel_err(&wav8, &wav32);
    eprintln!(
        "{family} flow int8: mel rel err {mel_err:.3e} (bound {:.1e}; vs golden {:.3e}), \
         wav rel err {wav_err:.3e} (bound {:.1e})",
        c.max_mel_err,
        rel_err(&mel8, g.f32("flow_mel")),
        c.max_wav_err
    );
    assert!(
        mel_err > 0.0,
        "{family}: the quantized flow gave the fp32 mel exactly"
    );
    assert!(
        mel_err <= c.max_mel_err,
        "{family}: mel rel err {mel_err:.3e}"
    );
    assert!(
        wav_err <= c.max_wav_err,
        "{family}: wav rel err {wav_err:.3e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn original_flow_int8_mel_and_wav() {
    flow_within_bounds("original");
}

#[test]
fn turbo_flow_int8_mel_and_wav() {
    flow_within_bounds("turbo");
}

/// The committed manifests (schema: tests/python/test_manifest_schema.py) say what was
/// quantized, how and with which errors, and differ from their fp32 bundle's only in
/// `model.id` and the `flow_estimator` entry; the graphs use MatMulInteger with
/// DynamicQuantizeLinear.
#[test]
fn committed_manifests_describe_the_quantized_flow() {
    for c in &CASES {
        let m = read_json(&c.variant().committed().join("manifest.json"));
        let est = &m["components"]["flow_estimator"];
        assert_eq!(est["precision"], "int8");
        let q = &est["quantization"];
        assert_eq!(q["bits"], 8);
        assert!(q["method"].as_str().unwrap().starts_with("dynamic"));
        assert_eq!(q["per_channel"], true);
        assert_eq!(q["fp32_weights"], serde_json::json!([]));
        let check = &est["self_check"];
        for k in [
            "max_rel_error",
            "mel_rel_error",
            "wav_rel_error",
            "log_mel_l1",
        ] {
            assert!(
                check[k].as_f64().unwrap() > 0.0,
                "{}: self_check.{k}",
                c.family
            );
        }

        let fp32_manifest = read_json(&c.variant().base().join("manifest.json"));
        let mut fp32 = fp32_manifest.clone();
        let mut same = m.clone();
        for v in [&mut fp32, &mut same] {
            v["components"]
                .as_object_mut()
                .unwrap()
                .remove("flow_estimator");
            v["model"].as_object_mut().unwrap().remove("id");
        }
        assert_eq!(same, fp32, "{}: manifest drifted", c.family);
        assert_eq!(
            m["model"]["id"],
            format!(
                "{}-flow-int8",
                fp32_manifest["model"]["id"].as_str().unwrap()
            )
        );
        assert_eq!(
            q["fp32_sha256"], fp32_manifest["components"]["flow_estimator"]["files"][0]["sha256"],
            "{}: quantized from another fp32 estimator; re-run export/quantize_bundle.py",
            c.family
        );
        // Op types as serialized (NodeProto field 4: tag 0x22, length, name).
        let graph = std::fs::read(c.variant().committed().join("flow_estimator.onnx")).unwrap();
        let uses = |op: &[u8]| graph.windows(op.len()).any(|w| w == op);
        assert!(uses(b"\x22\x0dMatMulInteger"));
        assert!(uses(b"\x22\x15DynamicQuantizeLinear"));
    }
}

/// The committed flow estimators stay small: the repository carries them.
#[test]
fn committed_artifacts_stay_under_2_megabytes() {
    let total = files_bytes(CASES.iter().map(|c| c.variant().committed()));
    assert!(total < 2_000_000, "the flow bundles are {total} bytes");
}

/// `chatterbox-ort info` reports the precision and `say` synthesizes on each bundle.
#[test]
fn info_and_say_on_each_quantized_flow() {
    for c in &CASES {
        let dir = c.variant().bundle("cli");
        let line = info_line(BIN, &dir, "flow_estimator");
        assert!(line.contains("int8"), "{line}");
        let n = say_samples(BIN, &dir, "Quantized flow.", "2", c.family);
        assert!(n > 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
