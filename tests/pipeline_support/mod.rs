//! Shared helpers of the pipeline and CLI tests: the tiny bundle, its goldens,
//! error measures and scratch folders.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chatterbox_ort::{Engine, EngineOptions};
use safetensors::tensor::{Dtype, SafeTensors};

/// `$VAR` when set and not empty, else the committed bundle `onnx/NAME`.
fn committed_bundle(var: &str, name: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("onnx")
            .join(name),
    }
}

/// An engine on `dir` (CPU, 1 thread), panicking with the bundle's path.
pub fn test_engine(dir: PathBuf) -> Engine {
    let mut opts = EngineOptions::new(&dir);
    opts.threads = Some(1);
    Engine::load(opts).unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()))
}

/// The committed tiny bundle (`$CHATTERBOX_ORT_BUNDLE` overrides it).
pub fn bundle_dir() -> PathBuf {
    committed_bundle("CHATTERBOX_ORT_BUNDLE", "tiny")
}

/// One engine per test binary (CPU, 1 thread).
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| test_engine(bundle_dir()))
}

/// A golden tensor: shape and values (integers widened to f64 for f32 tensors,
/// kept as i64 for integer tensors).
#[derive(Debug, Clone)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub f32: Vec<f32>,
    pub i64: Vec<i64>,
}

/// `goldens/goldens.safetensors` and `goldens/goldens.json` of the tiny bundle.
pub struct Goldens {
    pub tensors: HashMap<String, Tensor>,
    pub meta: serde_json::Value,
}

impl Goldens {
    pub fn get(&self, name: &str) -> &Tensor {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("golden tensor `{name}` missing"))
    }

    pub fn f32(&self, name: &str) -> &[f32] {
        &self.get(name).f32
    }

    pub fn i64(&self, name: &str) -> &[i64] {
        &self.get(name).i64
    }

    pub fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

pub fn goldens() -> &'static Goldens {
    static G: OnceLock<Goldens> = OnceLock::new();
    G.get_or_init(|| load_goldens(&bundle_dir().join("goldens"), "goldens"))
}

/// The committed tiny Turbo bundle (`$CHATTERBOX_ORT_TURBO_BUNDLE` overrides it).
pub fn turbo_bundle_dir() -> PathBuf {
    committed_bundle("CHATTERBOX_ORT_TURBO_BUNDLE", "tiny-turbo")
}

/// One Turbo engine per test binary (CPU, 1 thread).
pub fn turbo_engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| test_engine(turbo_bundle_dir()))
}

/// The committed tiny multilingual bundle (`$CHATTERBOX_ORT_MTL_BUNDLE` overrides it).
pub fn mtl_bundle_dir() -> PathBuf {
    committed_bundle("CHATTERBOX_ORT_MTL_BUNDLE", "tiny-multilingual")
}

/// One multilingual engine per test binary (CPU, 1 thread).
pub fn mtl_engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| test_engine(mtl_bundle_dir()))
}

/// The goldens of the tiny multilingual bundle.
pub fn mtl_goldens() -> &'static Goldens {
    static G: OnceLock<Goldens> = OnceLock::new();
    G.get_or_init(|| load_goldens(&mtl_bundle_dir().join("goldens"), "goldens"))
}

/// The goldens of the tiny Turbo bundle.
pub fn turbo_goldens() -> &'static Goldens {
    static G: OnceLock<Goldens> = OnceLock::new();
    G.get_or_init(|| load_goldens(&turbo_bundle_dir().join("goldens"), "goldens"))
}

/// `DIR/STEM.safetensors` (and `DIR/STEM.json` as `meta`, when present).
pub fn load_goldens(dir: &Path, stem: &str) -> Goldens {
    let bytes = std::fs::read(dir.join(format!("{stem}.safetensors")))
        .unwrap_or_else(|e| panic!("{}/{stem}.safetensors: {e}", dir.display()));
    let st = SafeTensors::deserialize(&bytes).expect("parse goldens");
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        let data = view.data();
        let shape = view.shape().to_vec();
        let (f, i) = match view.dtype() {
            Dtype::F32 => (
                data.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                Vec::new(),
            ),
            Dtype::F64 => (
                data.chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                    .collect(),
                Vec::new(),
            ),
            Dtype::I64 => (
                Vec::new(),
                data.chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            ),
            Dtype::I32 => (
                Vec::new(),
                data.chunks_exact(4)
                    .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64)
                    .collect(),
            ),
            other => panic!("golden `{name}` has unsupported dtype {other:?}"),
        };
        tensors.insert(
            name.to_string(),
            Tensor {
                shape,
                f32: f,
                i64: i,
            },
        );
    }
    let meta = std::fs::read_to_string(dir.join(format!("{stem}.json")))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    Goldens { tensors, meta }
}

/// `||got - want|| / ||want||` (L2).
pub fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(
        got.len(),
        want.len(),
        "length mismatch: got {}, want {}",
        got.len(),
        want.len()
    );
    let mut num = 0.0f64;
    let mut den = 0.0f64;
    for (&g, &w) in got.iter().zip(want) {
        num += (g as f64 - w as f64).powi(2);
        den += (w as f64).powi(2);
    }
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

/// Largest absolute difference.
pub fn max_abs(got: &[f32], want: &[f32]) -> f64 {
    got.iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w as f64).abs())
        .fold(0.0, f64::max)
}

/// Asserts `rel_err <= tol` and prints the measured error.
pub fn check_close(what: &str, got: &[f32], want: &[f32], tol: f64) {
    let e = rel_err(got, want);
    eprintln!(
        "{what}: rel err {e:.3e} (max abs {:.3e}, tol {tol:.0e})",
        max_abs(got, want)
    );
    assert!(e <= tol, "{what}: rel err {e:.3e} > {tol:.0e}");
}

/// A fresh scratch folder under the target's temp dir.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Writes a 16-bit PCM WAV with `channels` interleaved channels.
pub fn write_pcm16(path: &Path, samples: &[f32], sample_rate: u32, channels: u16) {
    let spec = hound::WavSpec {
        channels,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    for &s in samples {
        w.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16)
            .expect("write sample");
    }
    w.finalize().expect("finalize wav");
}

/// Writes a 32-bit float WAV (mono).
pub fn write_f32(path: &Path, samples: &[f32], sample_rate: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    for &s in samples {
        w.write_sample(s).expect("write sample");
    }
    w.finalize().expect("finalize wav");
}

/// A speech-like test tone: a few harmonics with a slow amplitude envelope.
pub fn tone(seconds: f64, sample_rate: u32) -> Vec<f32> {
    let n = (seconds * sample_rate as f64) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / sample_rate as f64;
            let env = 0.5 + 0.5 * (2.0 * std::f64::consts::PI * 3.0 * t).sin();
            let s = (2.0 * std::f64::consts::PI * 180.0 * t).sin()
                + 0.5 * (2.0 * std::f64::consts::PI * 360.0 * t).sin()
                + 0.25 * (2.0 * std::f64::consts::PI * 900.0 * t).sin();
            (0.3 * env * s) as f32
        })
        .collect()
}

/// A teacher-forced run of the original (or multilingual) T3, see [`original_tf`].
pub struct TfRun {
    /// Both CFG rows' last-position logits, `[row][step][vocab]` flattened.
    pub logits: Vec<f32>,
    /// The decoder's `alignment` output of the prefill (`[seq, capacity]`; multilingual).
    pub prefill_alignment: Option<Vec<f32>>,
    /// Its `alignment` output of each later step (`[capacity]` each; multilingual).
    pub step_alignments: Vec<Vec<f32>>,
    /// The KV cache's capacity: the prefill plus the steps.
    pub capacity: usize,
}

/// Teacher forcing in the layout of the goldens' `tf_logits` (`T3.inference`): prefill
/// `cond | text | bos | bos` (the engine's own builder), then one KV-cache step per
/// remaining token `tf[j]` at speech position `j`, both CFG rows, with a cache of exactly
/// the positions used.
pub fn original_tf(e: &Engine, g: &Goldens) -> TfRun {
    use chatterbox_ort::t3::{self, decode};
    let dims = e.t3_dims();
    let host = e.host();
    let text = t3::text_embeds(host, dims, g.i64("text_tokens")).unwrap();
    let tf = g.i64("tf_speech_tokens");
    let bos = t3::speech_embeds(host, dims, &[dims.speech_start], &[0]).unwrap();
    let x = t3::prefill_embeds(g.f32("t3_cond"), &text, &bos, true);
    let seq = dims.cond_len + text.len + 2;
    let capacity = seq + tf.len() - 1;
    let mut dec = decode::KvDecoder::new(host, dims, 2, capacity).unwrap();
    let mut rows: Vec<Vec<Vec<f32>>> = vec![Vec::new(), Vec::new()];
    let mut logits = dec.forward(x, seq).unwrap();
    let prefill_alignment = dec.alignment().unwrap().map(<[f32]>::to_vec);
    let mut step_alignments = Vec::new();
    for j in 0..tf.len() {
        for (r, l) in decode::last_logits(&logits)
            .unwrap()
            .into_iter()
            .enumerate()
        {
            rows[r].push(l);
        }
        if j + 1 < tf.len() {
            let emb = t3::speech_embeds(host, dims, &[tf[j + 1]], &[j as i64 + 1]).unwrap();
            logits = dec.forward([emb.clone(), emb].concat(), 1).unwrap();
            if let Some(a) = dec.alignment().unwrap() {
                step_alignments.push(a.to_vec());
            }
        }
    }
    assert_eq!(dec.past_len(), capacity);
    TfRun {
        logits: rows.into_iter().flatten().flatten().collect(),
        prefill_alignment,
        step_alignments,
        capacity,
    }
}

/// The logits of [`original_tf`].
pub fn original_tf_logits(e: &Engine, g: &Goldens) -> Vec<f32> {
    original_tf(e, g).logits
}

/// Teacher-forced logits of Turbo in the layout of its goldens' `tf_logits`
/// (`inference_turbo`): prefill `cond | text | speech_emb(tf[0])`, then one KV-cache step
/// per remaining token: `[step][vocab]` flattened.
pub fn turbo_tf_logits(e: &Engine, g: &Goldens) -> Vec<f32> {
    use chatterbox_ort::t3::decode;
    use chatterbox_ort::turbo;
    let dims = e.t3_dims();
    let host = e.host();
    let cond = g.f32("t3_cond");
    let ids = g.i64("text_tokens");
    let tf = g.i64("tf_speech_tokens");
    let mut x = cond.to_vec();
    x.extend(turbo::t3::text_embeds(host, dims, ids).unwrap());
    x.extend(turbo::t3::speech_embeds(host, dims, &[tf[0]]).unwrap());
    let seq = cond.len() / dims.hidden + ids.len() + 1;
    let mut dec = decode::KvDecoder::new(host, dims, 1, seq + tf.len()).unwrap();
    let mut got = Vec::new();
    let logits = dec.forward(x, seq).unwrap();
    got.extend(decode::last_logits(&logits).unwrap().remove(0));
    for &tok in &tf[1..] {
        let x = turbo::t3::speech_embeds(host, dims, &[tok]).unwrap();
        let logits = dec.forward(x, 1).unwrap();
        got.extend(decode::last_logits(&logits).unwrap().remove(0));
    }
    got
}

/// The repository root.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A committed folder of converted graphs, `onnx/tiny-quant/NAME` (e.g. `turbo-fp16`).
pub fn tiny_quant_dir(name: &str) -> PathBuf {
    repo_root().join("onnx/tiny-quant").join(name)
}

/// The fp32 tiny bundle of a family (`original` or `turbo`).
pub fn family_bundle_dir(family: &str) -> PathBuf {
    if family == "turbo" {
        turbo_bundle_dir()
    } else {
        bundle_dir()
    }
}

/// Copies the files directly in bundle folder `src` (not `goldens/`) into `dst` (created if
/// needed).
pub fn copy_bundle(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
        }
    }
}

/// Rewrites `dir/manifest.json` through `f`.
pub fn edit_manifest(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut m);
    std::fs::write(&p, serde_json::to_string_pretty(&m).unwrap()).unwrap();
}

/// A committed converted variant of a tiny bundle, `onnx/tiny-quant/<family>-<name>/`: the
/// graphs `files` and the `manifest.json` that replace those of the family's fp32 tiny bundle.
pub struct TinyVariant {
    pub family: &'static str,
    /// `int8`, `int4`, `flow-int8`, `fp16`.
    pub name: &'static str,
    pub files: &'static [&'static str],
}

impl TinyVariant {
    /// The committed folder.
    pub fn committed(&self) -> PathBuf {
        tiny_quant_dir(&format!("{}-{}", self.family, self.name))
    }

    /// The fp32 tiny bundle of the family.
    pub fn base(&self) -> PathBuf {
        family_bundle_dir(self.family)
    }

    /// The whole variant bundle in a scratch folder named after `test`: every file of the
    /// fp32 tiny bundle (goldens left out), then the committed `files` and `manifest.json`
    /// over them.
    pub fn bundle(&self, test: &str) -> PathBuf {
        let dir = scratch(&format!("{}-{}-{test}", self.family, self.name));
        copy_bundle(&self.base(), &dir);
        let committed = self.committed();
        for f in self.files.iter().copied().chain(["manifest.json"]) {
            std::fs::copy(committed.join(f), dir.join(f))
                .unwrap_or_else(|e| panic!("{}/{f}: {e}", committed.display()));
        }
        dir
    }
}

/// A JSON file, parsed (a panic naming the file otherwise).
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Total bytes of the files directly in `dirs`.
pub fn files_bytes(dirs: impl IntoIterator<Item = PathBuf>) -> u64 {
    let mut total = 0u64;
    for d in dirs {
        for f in std::fs::read_dir(d).unwrap() {
            total += f.unwrap().metadata().unwrap().len();
        }
    }
    total
}

/// `chatterbox-ort info --bundle dir`'s line for `component` (the run must succeed).
pub fn info_line(bin: &str, dir: &Path, component: &str) -> String {
    let info = std::process::Command::new(bin)
        .arg("info")
        .arg("--bundle")
        .arg(dir)
        .env_remove("CHATTERBOX_ORT_BUNDLE")
        .output()
        .unwrap();
    assert!(
        info.status.success(),
        "{}",
        String::from_utf8_lossy(&info.stderr)
    );
    let text = String::from_utf8_lossy(&info.stdout);
    text.lines()
        .find(|l| l.trim_start().starts_with(component))
        .unwrap_or_else(|| panic!("no {component} line in info:\n{text}"))
        .to_string()
}

/// `chatterbox-ort say TEXT --bundle dir` (seed 3, 4 tokens, `flow_steps` steps) into
/// `dir/out.wav`; panics naming `what` on failure. Returns the samples written.
pub fn say_samples(bin: &str, dir: &Path, text: &str, flow_steps: &str, what: &str) -> usize {
    let wav = dir.join("out.wav");
    let out = std::process::Command::new(bin)
        .args(["say", text, "--bundle"])
        .arg(dir)
        .arg("-o")
        .arg(&wav)
        .args([
            "--seed",
            "3",
            "--max-new-tokens",
            "4",
            "--flow-steps",
            flow_steps,
        ])
        .env_remove("CHATTERBOX_ORT_BUNDLE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = hound::WavReader::open(&wav).expect("say wrote a wav");
    assert_eq!(r.spec().sample_rate, 24_000);
    r.len() as usize
}

/// S3Gen of engine `e` on the goldens' inputs: the flow encoder on the goldens' prompt and
/// flow tokens (its own `mu`, or the goldens' `flow_mu` when `golden_mu`, to measure the
/// estimator alone), the Euler loop from the goldens' noise with the prompt mel as a voice
/// lays it out (the original's goldens cut it to 2 x prompt tokens frames, Turbo's keep all
/// of it), then HiFT on that mel with the goldens' draws: (mu, mel, wav).
pub fn goldens_s3gen(
    e: &Engine,
    g: &Goldens,
    turbo: bool,
    golden_mu: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    use chatterbox_ort::s3gen::{flow, vocoder};
    let host = e.host();
    let mut tokens = g.i64("s3gen_prompt_tokens").to_vec();
    let prompt_tokens = tokens.len();
    tokens.extend_from_slice(g.i64("flow_tokens"));
    let mut enc = flow::encode(host, &tokens, g.f32("xvector")).unwrap();
    if golden_mu {
        enc.mu = g.f32("flow_mu").to_vec();
    }
    let prompt = g.get("prompt_mel");
    let frames = if turbo {
        prompt.shape[1]
    } else {
        2 * prompt_tokens
    };
    let steps = e.bundle().generation().flow_steps;
    let params = flow::FlowParams::new(e.bundle().config(), e.bundle().generation(), steps);
    let mel = flow::solve_euler(
        host,
        &enc,
        g.f32("flow_noise").to_vec(),
        &prompt.f32[..frames * 80],
        frames,
        &params,
        |_| {},
    )
    .unwrap();
    let draws = vocoder::HiftDraws {
        phase_init: g.f32("hift_phase_init").to_vec(),
        sine_noise: g.f32("hift_sine_noise").to_vec(),
    };
    let mel_frames = mel.len() / 80;
    assert_eq!(mel_frames, g.get("flow_mel").shape[2], "mel frames");
    let wav = vocoder::hift(host, &mel, mel_frames, draws).unwrap();
    (enc.mu, mel, wav)
}
