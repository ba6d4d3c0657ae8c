//! Bundle opening and verification, and voice files. No ONNX Runtime needed.

mod runtime_common;

use std::path::Path;

use chatterbox_ort::bundle::{Bundle, Voice};
use chatterbox_ort::error::ErrorKind;
use runtime_common::*;

fn edit_manifest(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut m);
    std::fs::write(&p, serde_json::to_string(&m).unwrap()).unwrap();
}

fn bundle_dir() -> Scratch {
    let dir = Scratch::new("bundle");
    write_bundle(
        dir.path(),
        &[("t3_decoder", "toy_step"), ("hift", "toy_ext")],
    );
    dir
}

fn open_err(dir: &Path) -> chatterbox_ort::error::Error {
    Bundle::open(dir).unwrap_err()
}

#[test]
fn opens_and_exposes_config_and_specs() {
    let dir = bundle_dir();
    let b = Bundle::open(dir.path()).unwrap();
    assert_eq!(b.manifest().schema_version, 1);
    assert_eq!(b.config().speech.stop_token, 6562);
    assert_eq!(b.config().s3gen.samples_per_mel_frame, 480);
    assert_eq!(b.generation().flow_steps, 10);
    let spec = b.component("t3_decoder").unwrap();
    assert_eq!(spec.inputs[0].name, "x");
    assert_eq!(spec.files.len(), 1);
    let hift = b.component("hift").unwrap();
    assert_eq!(hift.files.len(), 2, "graph + external data");
    let on_disk: u64 = ["toy_ext.onnx", "toy_ext.onnx.data"]
        .iter()
        .map(|f| std::fs::metadata(dir.path().join(f)).unwrap().len())
        .sum();
    assert_eq!(hift.weight_bytes(), on_disk);
    let e = b.component("perth").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Bundle);
    assert!(e.to_string().contains("perth"));
    assert_eq!(b.default_voice().unwrap(), sample_voice());
}

#[test]
fn schema_version_must_be_1() {
    let dir = bundle_dir();
    edit_manifest(dir.path(), |m| m["schema_version"] = 2.into());
    let e = open_err(dir.path());
    assert_eq!(e.kind(), ErrorKind::Bundle);
    assert!(
        e.to_string().contains("unsupported schema_version 2"),
        "{e}"
    );
    edit_manifest(dir.path(), |m| {
        m.as_object_mut().unwrap().remove("schema_version");
    });
    assert!(open_err(dir.path()).to_string().contains("schema_version"));
}

#[test]
fn malformed_manifest_names_the_problem() {
    let dir = bundle_dir();
    edit_manifest(dir.path(), |m| {
        m["config"]["t3"]
            .as_object_mut()
            .unwrap()
            .remove("hidden_size");
    });
    let e = open_err(dir.path());
    assert_eq!(e.kind(), ErrorKind::Bundle);
    assert!(
        e.to_string().contains("hidden_size") && e.to_string().contains("manifest.json"),
        "{e}"
    );

    let dir = bundle_dir();
    std::fs::write(dir.path().join("manifest.json"), "{ not json").unwrap();
    assert!(open_err(dir.path()).to_string().contains("not valid JSON"));

    let dir = bundle_dir();
    edit_manifest(dir.path(), |m| {
        m["components"]["hift"]["files"][0]["path"] = "../escape.onnx".into()
    });
    assert!(open_err(dir.path())
        .to_string()
        .contains("inside the bundle"));

    let missing = Scratch::new("nomanifest");
    let e = open_err(missing.path());
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(e.to_string().contains("manifest.json"));
    assert_eq!(
        open_err(&missing.path().join("nope")).kind(),
        ErrorKind::Bundle
    );
}

#[test]
fn missing_or_resized_component_file_fails_at_open() {
    let dir = bundle_dir();
    std::fs::remove_file(dir.path().join("toy_ext.onnx.data")).unwrap();
    let e = open_err(dir.path());
    assert_eq!(e.kind(), ErrorKind::Bundle);
    assert!(
        e.to_string().contains("toy_ext.onnx.data") && e.to_string().contains("missing"),
        "{e}"
    );

    let dir = bundle_dir();
    std::fs::write(dir.path().join("t3_decoder.onnx"), b"short").unwrap();
    let e = open_err(dir.path());
    assert!(
        e.to_string().contains("t3_decoder.onnx") && e.to_string().contains("wrong size"),
        "{e}"
    );
}

#[test]
fn top_level_sha_mismatch_fails_at_open() {
    let dir = bundle_dir();
    let p = dir.path().join("tokenizer.json");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[2] ^= 1; // same size, other content
    std::fs::write(&p, bytes).unwrap();
    let e = open_err(dir.path());
    assert_eq!(e.kind(), ErrorKind::Bundle);
    assert!(
        e.to_string().contains("tokenizer.json") && e.to_string().contains("wrong sha256"),
        "{e}"
    );
}

#[test]
fn component_sha_is_checked_lazily_and_cached() {
    let dir = bundle_dir();
    let p = dir.path().join("toy_ext.onnx.data");
    let good = std::fs::read(&p).unwrap();
    let mut bad = good.clone();
    bad[0] ^= 0xff;
    std::fs::write(&p, &bad).unwrap();

    // Same size: open does not hash component files.
    let b = Bundle::open(dir.path()).unwrap();
    assert!(!b.is_verified("hift"));
    let e = b.verify_component("hift").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Bundle);
    assert!(
        e.to_string().contains("toy_ext.onnx.data") && e.to_string().contains("wrong sha256"),
        "{e}"
    );
    assert!(!b.is_verified("hift"), "a failure is not cached");

    std::fs::write(&p, &good).unwrap();
    b.verify_component("hift").unwrap();
    assert!(b.is_verified("hift"));
    // Cached: not hashed again (a later corruption goes unnoticed by design).
    std::fs::write(&p, &bad).unwrap();
    b.verify_component("hift").unwrap();
    assert!(b.verify_component("nope").is_err());
}

#[test]
fn verification_stamps_skip_unchanged_files_and_catch_changed_ones() {
    let dir = bundle_dir();
    let stamps = dir.path().join("stamps");
    let p = dir.path().join("toy_ext.onnx.data");
    let good = std::fs::read(&p).unwrap();

    let mut b = Bundle::open(dir.path()).unwrap();
    b.set_verification_stamps(Some(stamps.clone()));
    b.verify_component("hift").unwrap();
    let written = std::fs::read_dir(&stamps).unwrap().count();
    assert_eq!(written, 2, "one stamp per component file (graph and data)");

    // A new process (bundle) with the same unchanged files: verified from the stamps.
    let mut again = Bundle::open(dir.path()).unwrap();
    again.set_verification_stamps(Some(stamps.clone()));
    again.verify_component("hift").unwrap();

    // Rewriting the file (same size, one byte changed) changes its change time, so its
    // stamp no longer matches and the hash catches the corruption.
    let mut bad = good.clone();
    bad[3] ^= 0x55;
    std::fs::write(&p, &bad).unwrap();
    let mut after = Bundle::open(dir.path()).unwrap();
    after.set_verification_stamps(Some(stamps.clone()));
    let e = after.verify_component("hift").unwrap_err();
    assert!(e.to_string().contains("wrong sha256"), "{e}");

    // Restored content: hashed again, passes, and the stamp is renewed.
    std::fs::write(&p, &good).unwrap();
    let mut restored = Bundle::open(dir.path()).unwrap();
    restored.set_verification_stamps(Some(stamps.clone()));
    restored.verify_component("hift").unwrap();

    // A stamp folder that cannot be written (a file in its place) only costs the hash.
    let blocked = dir.path().join("blocked");
    std::fs::write(&blocked, b"not a folder").unwrap();
    let mut no_stamps = Bundle::open(dir.path()).unwrap();
    no_stamps.set_verification_stamps(Some(blocked.join("stamps")));
    no_stamps.verify_component("hift").unwrap();
}

#[test]
fn voice_round_trip_through_a_file() {
    let dir = Scratch::new("voice");
    let p = dir.path().join("v.safetensors");
    let v = sample_voice();
    v.save(&p).unwrap();
    assert_eq!(Voice::load(&p).unwrap(), v);
    // Overwrite atomically, no temp files left.
    v.save(&p).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");

    let cfg: chatterbox_ort::bundle::Config = serde_json::from_str(CONFIG_JSON).unwrap();
    v.validate(&cfg).unwrap();
    let mut bad = v.clone();
    bad.embedding = ndarray::Array2::zeros((1, 191));
    let e = bad.validate(&cfg).unwrap_err();
    assert!(e.to_string().contains("gen.embedding"), "{e}");
    let mut bad = v.clone();
    bad.prompt_token[[0, 0]] = 7000;
    assert!(bad
        .validate(&cfg)
        .unwrap_err()
        .to_string()
        .contains("gen.prompt_token"));
}

fn write_st(
    path: &Path,
    tensors: Vec<(&str, safetensors::Dtype, Vec<usize>, Vec<u8>)>,
    meta: Option<(&str, &str)>,
) {
    let views: Vec<(&str, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                *n,
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let meta = meta.map(|(f, v)| {
        std::collections::HashMap::from([
            ("format".to_string(), f.to_string()),
            ("version".to_string(), v.to_string()),
        ])
    });
    std::fs::write(path, safetensors::serialize(views, meta).unwrap()).unwrap();
}

#[test]
fn voice_file_errors_name_the_tensor() {
    use safetensors::Dtype::{F32, I64};
    let dir = Scratch::new("badvoice");
    let p = dir.path().join("v.safetensors");
    let f32s = |n: usize| vec![0u8; n * 4];
    let i64s = |n: usize| vec![0u8; n * 8];
    let full = |skip: &str, dtype_of_emb: safetensors::Dtype| {
        let mut t = vec![
            ("t3.speaker_emb", F32, vec![1, 256], f32s(256)),
            ("t3.cond_prompt_speech_tokens", I64, vec![1, 3], i64s(3)),
            ("gen.prompt_token", I64, vec![1, 2], i64s(2)),
            ("gen.prompt_feat", F32, vec![1, 4, 80], f32s(320)),
        ];
        if dtype_of_emb == F32 {
            t.push(("gen.embedding", F32, vec![1, 192], f32s(192)));
        } else {
            t.push(("gen.embedding", I64, vec![1, 192], i64s(192)));
        }
        t.retain(|x| x.0 != skip);
        t
    };

    write_st(&p, full("", F32), Some(("chatterbox-ort-voice", "1")));
    Voice::load(&p).unwrap();

    type Meta<'a> = Option<(&'a str, &'a str)>;
    let cases: Vec<(Vec<_>, Meta, &str)> = vec![
        (
            full("gen.prompt_feat", F32),
            Some(("chatterbox-ort-voice", "1")),
            "missing tensor `gen.prompt_feat`",
        ),
        (
            full("", I64),
            Some(("chatterbox-ort-voice", "1")),
            "`gen.embedding` has dtype I64",
        ),
        (full("", F32), None, "metadata `format`"),
        (
            full("", F32),
            Some(("something-else", "1")),
            "metadata `format`",
        ),
        (
            full("", F32),
            Some(("chatterbox-ort-voice", "2")),
            "metadata `version`",
        ),
    ];
    for (tensors, meta, needle) in cases {
        write_st(&p, tensors, meta);
        let e = Voice::load(&p).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Bundle, "{e}");
        assert!(
            e.to_string().contains(needle) && e.to_string().contains("v.safetensors"),
            "`{e}` lacks `{needle}`"
        );
    }
    // Wrong rank.
    let mut t = full("t3.speaker_emb", F32);
    t.push(("t3.speaker_emb", F32, vec![256], f32s(256)));
    write_st(&p, t, Some(("chatterbox-ort-voice", "1")));
    assert!(Voice::load(&p)
        .unwrap_err()
        .to_string()
        .contains("expected rank 2"));
    // Not a safetensors file at all; missing file.
    std::fs::write(&p, b"garbage").unwrap();
    assert_eq!(Voice::load(&p).unwrap_err().kind(), ErrorKind::Bundle);
    assert_eq!(
        Voice::load(&dir.path().join("none")).unwrap_err().kind(),
        ErrorKind::Io
    );
}
