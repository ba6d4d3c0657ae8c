//! Weight-only quantized T3 decoders (`export/quantize_bundle.py` defaults: every weight
//! matrix, speech head and Turbo's position table included, as `MatMulNBits` /
//! `GatherBlockQuantized`, int8 and int4, blocks of 32, accuracy level 4).
//! `onnx/tiny-quant/<family>-<precision>/` holds only the quantized `t3_decoder.onnx` and the
//! bundle's `manifest.json`; each test rebuilds the whole bundle in a scratch folder from
//! `onnx/tiny` or `onnx/tiny-turbo` and those two files.
//!
//! Bounds (teacher forcing on the fp32 goldens `tf_logits`, made by the PyTorch reference):
//! relative L2 error of all logits, and the share of (step, batch row) whose argmax is the
//! golden one (24 for the original model: 12 steps x 2 CFG rows; 10 for Turbo). Measured on
//! the committed graphs (CPU, accuracy level 4): original int8 1.09e-2 and 22/24, int4
//! 1.29e-1 and 21/24; Turbo int8 8.8e-3 and 10/10, int4 1.01e-1 and 6/10. The bounds are
//! about twice the error and a few steps below the agreement. The random tiny models'
//! logits are nearly flat, so their argmax is close to a tie and the agreement is a coarse
//! measure; the full-size figures are in export/README.md ("Quantized t3_decoder").

mod pipeline_support;

use std::path::Path;

use chatterbox_ort::{Engine, Family};
use pipeline_support::{
    files_bytes, goldens, info_line, original_tf_logits, read_json, rel_err, say_samples,
    test_engine, turbo_goldens, turbo_tf_logits, TinyVariant,
};

const BIN: &str = env!("CARGO_BIN_EXE_chatterbox-ort");

/// One committed quantized decoder and the bounds it must meet.
struct Case {
    family: &'static str,
    precision: &'static str,
    /// Relative L2 error of all teacher-forced logits against `tf_logits`.
    max_rel_err: f64,
    /// Least share of (step, row) whose argmax is the golden one.
    min_argmax_agreement: f64,
}

const CASES: [Case; 4] = [
    Case {
        family: "original",
        precision: "int8",
        max_rel_err: 2e-2,
        min_argmax_agreement: 0.8,
    },
    Case {
        family: "original",
        precision: "int4",
        max_rel_err: 2.5e-1,
        min_argmax_agreement: 0.7,
    },
    Case {
        family: "turbo",
        precision: "int8",
        max_rel_err: 2e-2,
        min_argmax_agreement: 0.8,
    },
    Case {
        family: "turbo",
        precision: "int4",
        max_rel_err: 2.5e-1,
        min_argmax_agreement: 0.5,
    },
];

fn case(family: &str, precision: &str) -> &'static Case {
    CASES
        .iter()
        .find(|c| c.family == family && c.precision == precision)
        .expect("a listed case")
}

impl Case {
    fn variant(&self) -> TinyVariant {
        TinyVariant {
            family: self.family,
            name: self.precision,
            files: &["t3_decoder.onnx"],
        }
    }
}

fn load(dir: &Path) -> Engine {
    test_engine(dir.to_path_buf())
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap()
}

/// Opens the rebuilt bundle, checks that the engine reads the quantized precision, runs
/// teacher forcing and holds the logits to the case's bounds.
fn teacher_forced_within_bounds(family: &str, precision: &str) {
    let c = case(family, precision);
    let dir = c.variant().bundle("tf");
    let e = load(&dir);
    let want_family = if family == "turbo" {
        Family::Turbo
    } else {
        Family::Original
    };
    assert_eq!(e.family(), want_family);
    let spec = e.bundle().component("t3_decoder").unwrap();
    assert_eq!(spec.precision, precision);
    let (got, want) = if family == "turbo" {
        (
            turbo_tf_logits(&e, turbo_goldens()),
            turbo_goldens().get("tf_logits"),
        )
    } else {
        (
            original_tf_logits(&e, goldens()),
            goldens().get("tf_logits"),
        )
    };
    let vocab = e.t3_dims().speech_vocab;
    assert_eq!(got.len(), want.f32.len());
    let err = rel_err(&got, &want.f32);
    let rows = got.len() / vocab;
    let same = got
        .chunks_exact(vocab)
        .zip(want.f32.chunks_exact(vocab))
        .filter(|(g, w)| argmax(g) == argmax(w))
        .count();
    let agreement = same as f64 / rows as f64;
    eprintln!(
        "{family} {precision}: teacher-forced logits rel err {err:.3e} (bound {:.1e}), \
         argmax agreement {same}/{rows} = {:.1} % (bound {:.0} %)",
        c.max_rel_err,
        100.0 * agreement,
        100.0 * c.min_argmax_agreement
    );
    assert!(
        err <= c.max_rel_err,
        "{family} {precision}: rel err {err:.3e}"
    );
    assert!(
        agreement >= c.min_argmax_agreement,
        "{family} {precision}: argmax agreement {agreement:.3}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn original_int8_teacher_forced() {
    teacher_forced_within_bounds("original", "int8");
}

#[test]
fn original_int4_teacher_forced() {
    teacher_forced_within_bounds("original", "int4");
}

#[test]
fn turbo_int8_teacher_forced() {
    teacher_forced_within_bounds("turbo", "int8");
}

#[test]
fn turbo_int4_teacher_forced() {
    teacher_forced_within_bounds("turbo", "int4");
}

/// The committed manifests (schema: tests/python/test_manifest_schema.py) say what was
/// quantized and how, and differ from their fp32 bundle's only in `model.id` and the
/// `t3_decoder` entry; the graphs use MatMulNBits.
#[test]
fn committed_manifests_describe_the_quantized_decoder() {
    for c in &CASES {
        let m = read_json(&c.variant().committed().join("manifest.json"));
        let dec = &m["components"]["t3_decoder"];
        assert_eq!(dec["precision"], c.precision);
        let bits = if c.precision == "int8" { 8 } else { 4 };
        assert_eq!(dec["quantization"]["bits"], bits);
        assert_eq!(dec["quantization"]["block_size"], 32);
        assert_eq!(dec["quantization"]["accuracy_level"], 4);
        assert_eq!(dec["quantization"]["fp32_weights"], serde_json::json!([]));
        assert!(dec["self_check"]["kl_mean"].as_f64().unwrap() >= 0.0);

        let mut fp32 = read_json(&c.variant().base().join("manifest.json"));
        let mut same = m.clone();
        for v in [&mut fp32, &mut same] {
            v["components"]
                .as_object_mut()
                .unwrap()
                .remove("t3_decoder");
            v["model"].as_object_mut().unwrap().remove("id");
        }
        assert_eq!(same, fp32, "{}-{}: manifest drifted", c.family, c.precision);
        assert_eq!(
            dec["quantization"]["fp32_sha256"],
            read_json(&c.variant().base().join("manifest.json"))["components"]["t3_decoder"]
                ["files"][0]["sha256"],
            "{}-{}: quantized from another fp32 decoder; re-run export/quantize_bundle.py",
            c.family,
            c.precision
        );
        // Op types as serialized (NodeProto field 4: tag 0x22, length, name).
        let graph = std::fs::read(c.variant().committed().join("t3_decoder.onnx")).unwrap();
        let uses = |op: &[u8]| graph.windows(op.len()).any(|w| w == op);
        assert!(uses(b"\x22\x0bMatMulNBits"));
        assert!(
            !uses(b"\x22\x04Gemm"),
            "Turbo's Gemm projections are rewritten"
        );
        assert_eq!(c.family == "turbo", uses(b"\x22\x14GatherBlockQuantized"));
    }
}

/// `onnx/tiny-quant` stays small: the repository carries it.
#[test]
fn committed_artifacts_stay_under_2_megabytes() {
    let total = files_bytes(CASES.iter().map(|c| c.variant().committed()));
    assert!(total < 2_000_000, "onnx/tiny-quant is {total} bytes");
}

/// `chatterbox-ort info` reports the precision and `say` synthesizes on every quantized bundle.
#[test]
fn info_and_say_on_each_quantized_bundle() {
    for c in &CASES {
        let dir = c.variant().bundle("cli");
        let line = info_line(BIN, &dir, "t3_decoder");
        assert!(line.contains(c.precision), "{line}");
        let what = format!("{}-{}", c.family, c.precision);
        let n = say_samples(BIN, &dir, "Quantized decoder.", "1", &what);
        assert!(n > 0 && n.is_multiple_of(960), "{n} samples");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
