//! Sessions on the committed fixture graphs: creation, I/O checks against the manifest,
//! run-time input validation, KV-style output feedback, external data, optimized-model cache.

mod runtime_common;

use chatterbox_ort::bundle::{Bundle, ComponentSpec};
use chatterbox_ort::error::ErrorKind;
use chatterbox_ort::runtime::{self, Session, SessionOptions, Value};
use runtime_common::*;

fn opts() -> SessionOptions {
    SessionOptions {
        threads: 1,
        ..SessionOptions::default()
    }
}

fn spec_of(bundle: &Bundle, name: &str) -> ComponentSpec {
    bundle.component(name).unwrap().clone()
}

#[test]
fn version_and_providers() {
    init_runtime();
    let v = runtime::onnxruntime_version().unwrap();
    assert!(v.starts_with("1."), "{v}");
    let providers = runtime::available_providers().unwrap();
    assert!(
        providers.iter().any(|p| p == "CPUExecutionProvider"),
        "{providers:?}"
    );
    // A second init resolving to the same library is fine.
    init_runtime();
}

#[test]
fn step_graph_runs_and_feeds_back_present() {
    init_runtime();
    let dir = Scratch::new("step");
    write_bundle(dir.path(), &[("step", "toy_step")]);
    let bundle = Bundle::open(dir.path()).unwrap();
    let spec = spec_of(&bundle, "step");
    let mut s = Session::create(bundle.dir(), "step", &spec, &opts()).unwrap();

    // Prefill with an empty past [2, 0, 3].
    let x = Value::from_f32(
        &[2, 2, 3],
        vec![1., 0., 0., 0., 1., 0., 0., 0., 1., 1., 1., 1.],
    )
    .unwrap();
    let past = Value::from_f32(&[2, 0, 3], vec![]).unwrap();
    let mut out = s.run(vec![("x", x), ("past", past)]).unwrap();
    let y = out.take("y").unwrap();
    assert_eq!(y.shape(), vec![2, 2, 4]);
    let yv = y.view_f32().unwrap();
    // y = x @ W, W[i][j] = i + 0.5 j. Row [1,0,0] -> W[0] = [0, .5, 1, 1.5].
    assert_eq!(yv[[0, 0, 3]], 1.5);
    // Row [0,0,1] -> W[2] = [2, 2.5, 3, 3.5]; row [1,1,1] -> column sums [3, 4.5, 6, 7.5].
    assert_eq!(yv[[1, 0, 1]], 2.5);
    assert_eq!(yv[[1, 1, 3]], 7.5);
    let present = out.take("present").unwrap();
    assert_eq!(present.shape(), vec![2, 2, 3]);
    assert!(out.take("present").is_err(), "an output can be taken once");

    // Decode step: feed present back as past, without copying.
    let x1 = Value::from_f32(&[2, 1, 3], vec![5.; 6]).unwrap();
    let mut out = s.run(vec![("past", present), ("x", x1)]).unwrap();
    let present = out.take("present").unwrap();
    assert_eq!(present.shape(), vec![2, 3, 3]);
    let pv = present.view_f32().unwrap();
    assert_eq!(pv[[0, 0, 0]], 1.0);
    assert_eq!(pv[[1, 2, 2]], 5.0);
    let t = s.timings();
    assert_eq!(t.runs, 2);
    assert!(t.create.as_nanos() > 0);
    // Outputs outlive the session.
    drop(s);
    assert_eq!(present.view_f32().unwrap()[[0, 2, 1]], 5.0);
}

#[test]
fn i64_and_external_data_graphs() {
    init_runtime();
    let dir = Scratch::new("ext");
    write_bundle(dir.path(), &[("embed", "toy_embed"), ("ext", "toy_ext")]);
    let bundle = Bundle::open(dir.path()).unwrap();
    bundle.verify_component("ext").unwrap();
    let mut e =
        Session::create(bundle.dir(), "embed", &spec_of(&bundle, "embed"), &opts()).unwrap();
    let mut out = e
        .run(vec![(
            "tokens",
            Value::from_i64(&[1, 3], vec![2, 0, 9]).unwrap(),
        )])
        .unwrap();
    let v = out.take("embeds").unwrap().to_array_f32().unwrap();
    assert_eq!(v.shape(), &[1, 3, 3]);
    assert_eq!(
        v.iter().copied().collect::<Vec<_>>(),
        vec![2., 20., 200., 0., 0., 0., 9., 90., 900.]
    );

    let mut x = Session::create(bundle.dir(), "ext", &spec_of(&bundle, "ext"), &opts()).unwrap();
    let mut out = x
        .run(vec![("x", Value::from_f32(&[1, 8], vec![1.0; 8]).unwrap())])
        .unwrap();
    let y = out.take("y").unwrap().to_array_f32().unwrap();
    assert_eq!(
        y.iter().copied().collect::<Vec<_>>(),
        vec![2., 3., 4., 5., 6., 7., 8., 9.]
    );
}

#[test]
fn run_input_validation_names_the_tensor() {
    init_runtime();
    let dir = Scratch::new("val");
    write_bundle(dir.path(), &[("step", "toy_step"), ("embed", "toy_embed")]);
    let bundle = Bundle::open(dir.path()).unwrap();
    let mut s = Session::create(bundle.dir(), "step", &spec_of(&bundle, "step"), &opts()).unwrap();
    let f = |shape: &[usize]| Value::from_f32(shape, vec![0.0; shape.iter().product()]).unwrap();

    let cases: Vec<(Vec<(&str, Value)>, &str)> = vec![
        (vec![("x", f(&[1, 1, 3]))], "missing input `past`"),
        (
            vec![
                ("x", f(&[1, 1, 3])),
                ("past", f(&[1, 0, 3])),
                ("bogus", f(&[1])),
            ],
            "unknown input `bogus`",
        ),
        (
            vec![("x", f(&[1, 1, 4])), ("past", f(&[1, 0, 3]))],
            "input `x`: dim 2 is 4, expected 3",
        ),
        (
            vec![("x", f(&[1, 3])), ("past", f(&[1, 0, 3]))],
            "input `x`: rank 2",
        ),
        (vec![("x", f(&[1, 1, 3])), ("past", f(&[2, 0, 3]))], "\"B\""),
        (
            vec![
                ("x", Value::from_i64(&[1, 1, 3], vec![0; 3]).unwrap()),
                ("past", f(&[1, 0, 3])),
            ],
            "input `x`: dtype int64",
        ),
        (
            vec![("x", f(&[1, 1, 3])), ("x", f(&[1, 1, 3]))],
            "input `x` given twice",
        ),
    ];
    for (inputs, needle) in cases {
        let err = s.run(inputs).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ModelMismatch, "{err}");
        let msg = err.to_string();
        assert!(msg.contains(needle), "`{msg}` should contain `{needle}`");
        assert!(msg.contains("`step`"), "{msg}");
    }
    // The session still works after rejected calls.
    s.run(vec![("x", f(&[1, 1, 3])), ("past", f(&[1, 0, 3]))])
        .unwrap();
    assert_eq!(s.timings().runs, 1);

    // Data length must match the shape.
    let err = Value::from_f32(&[2, 3], vec![0.0; 5]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    // Views check the dtype.
    assert!(f(&[1]).view_i64().is_err());
}

/// Creating a session whose manifest signature differs from the graph fails at load.
#[test]
fn signature_mismatch_detected_at_creation() {
    init_runtime();
    let dir = Scratch::new("sig");
    write_bundle(dir.path(), &[("step", "toy_step")]);
    let bundle = Bundle::open(dir.path()).unwrap();
    let good = spec_of(&bundle, "step");

    let mutate = |f: &dyn Fn(&mut ComponentSpec)| {
        let mut s = good.clone();
        f(&mut s);
        s
    };
    use chatterbox_ort::bundle::{DType, Dim};
    let cases: Vec<(ComponentSpec, &str)> = vec![
        (
            mutate(&|s| s.inputs[0].name = "inputs_embeds".into()),
            "input `inputs_embeds` is in the manifest but not in the graph",
        ),
        (
            mutate(&|s| s.inputs[1].dtype = DType::Int64),
            "input `past`: dtype differs",
        ),
        (
            mutate(&|s| s.outputs[0].shape[2] = Dim::Fixed(5)),
            "output `y`: dim 2 differs",
        ),
        (
            mutate(&|s| {
                s.outputs[1].shape.pop();
            }),
            "output `present`: rank differs",
        ),
        (
            mutate(&|s| s.inputs[0].shape[2] = Dim::Symbolic("d".into())),
            "fixed in the graph but dynamic",
        ),
        (
            mutate(&|s| {
                s.outputs.pop();
            }),
            "graph output `present` is not in the manifest",
        ),
    ];
    for (spec, needle) in cases {
        let err = Session::create(bundle.dir(), "step", &spec, &opts()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ModelMismatch, "{err}");
        let msg = err.to_string();
        assert!(msg.contains(needle), "`{msg}` should contain `{needle}`");
        assert!(msg.contains("component `step`"), "{msg}");
    }
    // The error shows both sides.
    let err =
        Session::create(bundle.dir(), "step", &cases_first_dtype(&good), &opts()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("manifest int64") && msg.contains("graph f32"),
        "{msg}"
    );
}

fn cases_first_dtype(good: &ComponentSpec) -> ComponentSpec {
    let mut s = good.clone();
    s.inputs[0].dtype = chatterbox_ort::bundle::DType::Int64;
    s
}

#[test]
fn optimized_model_cache_is_written_then_used() {
    init_runtime();
    let dir = Scratch::new("cache");
    write_bundle(dir.path(), &[("step", "toy_step"), ("ext", "toy_ext")]);
    let bundle = Bundle::open(dir.path()).unwrap();
    let cache = dir.path().join("optcache");
    let o = SessionOptions {
        optimized_model_cache: Some(cache.clone()),
        ..opts()
    };
    for name in ["step", "ext"] {
        let s1 = Session::create(bundle.dir(), name, &spec_of(&bundle, name), &o).unwrap();
        assert!(!s1.timings().from_optimized_cache);
        let mut s2 = Session::create(bundle.dir(), name, &spec_of(&bundle, name), &o).unwrap();
        assert!(
            s2.timings().from_optimized_cache,
            "{name}: second creation should use the cache"
        );
        if name == "ext" {
            let mut out = s2
                .run(vec![("x", Value::from_f32(&[1, 8], vec![0.5; 8]).unwrap())])
                .unwrap();
            let y = out.take("y").unwrap().to_array_f32().unwrap();
            assert_eq!(y[[0, 7]], 8.0);
        }
    }
    let entries: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        entries.len(),
        2,
        "one entry folder per component: {entries:?}"
    );
    assert!(!entries.iter().any(|f| f.contains(".tmp")), "{entries:?}");
    for e in &entries {
        assert!(cache.join(e).join("model.onnx").is_file(), "{e}");
    }
}

#[test]
fn unwritable_cache_folder_still_creates_the_session() {
    init_runtime();
    let dir = Scratch::new("cache-ro");
    write_bundle(dir.path(), &[("ext", "toy_ext")]);
    let bundle = Bundle::open(dir.path()).unwrap();
    let blocked = dir.path().join("blocked");
    std::fs::write(&blocked, b"a file where the folder should be").unwrap();
    let o = SessionOptions {
        optimized_model_cache: Some(blocked.join("cache")),
        ..opts()
    };
    let mut s = Session::create(bundle.dir(), "ext", &spec_of(&bundle, "ext"), &o).unwrap();
    assert!(!s.timings().from_optimized_cache);
    let mut out = s
        .run(vec![("x", Value::from_f32(&[1, 8], vec![0.5; 8]).unwrap())])
        .unwrap();
    assert_eq!(out.take("y").unwrap().to_array_f32().unwrap()[[0, 7]], 8.0);
}

#[test]
fn arena_shrinkage_option_runs() {
    init_runtime();
    let dir = Scratch::new("shrink");
    write_bundle(dir.path(), &[("ext", "toy_ext")]);
    let bundle = Bundle::open(dir.path()).unwrap();
    let o = SessionOptions {
        arena_shrinkage: true,
        ..opts()
    };
    let mut s = Session::create(bundle.dir(), "ext", &spec_of(&bundle, "ext"), &o).unwrap();
    for _ in 0..3 {
        s.run(vec![("x", Value::from_f32(&[1, 8], vec![1.0; 8]).unwrap())])
            .unwrap();
    }
}

#[test]
fn cuda_target_without_cuda_build_is_provider_unavailable() {
    init_runtime();
    if runtime::available_providers()
        .unwrap()
        .iter()
        .any(|p| p == "CUDAExecutionProvider")
    {
        return; // the CUDA flavour: nothing to check here
    }
    let dir = Scratch::new("cuda");
    write_bundle(dir.path(), &[("ext", "toy_ext")]);
    let bundle = Bundle::open(dir.path()).unwrap();
    let o = SessionOptions {
        target: runtime::Target::Cuda(runtime::CudaOptions::default()),
        ..opts()
    };
    let err = Session::create(bundle.dir(), "ext", &spec_of(&bundle, "ext"), &o).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ProviderUnavailable, "{err}");
}
