//! The body of every fuzz target: what each one feeds to the library and the
//! invariants it checks, beyond "no panic, no abort, no huge allocation".
//!
//! Shared by the fuzz binaries (`fuzz/fuzz_targets/*.rs`, through the fuzz crate's
//! library) and by `tests/fuzz_regressions.rs` (through `#[path]`), so a saved crash
//! replays through exactly the code path that found it. Depends on nothing but
//! `chatterbox_ort` and std, so both crates can compile it.
//!
//! The tiny bundle's manifest, voice and tokenizer are embedded with `include_*!`
//! (paths relative to this file); the C ABI target loads an engine from `onnx/tiny`
//! once per process.

#![allow(dead_code)]

use std::ffi::{c_char, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chatterbox_ort::audio::read_wav_bytes;
use chatterbox_ort::bundle::manifest::Manifest;
use chatterbox_ort::ffi::*;
use chatterbox_ort::multilingual::text::{MtlTokenizer, LANGUAGES, TEXT_VOCAB_SIZE};
use chatterbox_ort::t3::T3Dims;
use chatterbox_ort::text::{chunk_text, punc_norm, ChunkLimits, TextTokenizer};
use chatterbox_ort::{ErrorKind, Request, Voice};

/// The fuzz targets, by name (the folder names under `fuzz/corpus/` and
/// `fuzz/regressions/`).
pub const TARGETS: [&str; 5] = ["wav", "voice_file", "manifest", "text", "capi_args"];

/// Runs the target called `name` on `data`; panics on an unknown name.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "wav" => wav(data),
        "voice_file" => voice_file(data),
        "manifest" => manifest(data),
        "text" => text(data),
        "capi_args" => capi_args(data),
        other => panic!("unknown fuzz target `{other}`"),
    }
}

// ---------------------------------------------------------------------------
// The tiny bundle, embedded.

const TINY_MANIFEST: &str = include_str!("../../onnx/tiny/manifest.json");
const TINY_VOICE: &[u8] = include_bytes!("../../onnx/tiny/voice.safetensors");
const TINY_TOKENIZER: &[u8] = include_bytes!("../../onnx/tiny/tokenizer.json");

/// The tiny bundle's parsed manifest.
pub fn tiny_manifest() -> &'static Manifest {
    static M: OnceLock<Manifest> = OnceLock::new();
    M.get_or_init(|| {
        Manifest::from_json(TINY_MANIFEST, Path::new("onnx/tiny/manifest.json"))
            .expect("the tiny manifest parses")
    })
}

/// The tiny bundle's default voice.
pub fn tiny_voice() -> &'static Voice {
    static V: OnceLock<Voice> = OnceLock::new();
    V.get_or_init(|| {
        Voice::from_bytes(TINY_VOICE, Path::new("onnx/tiny/voice.safetensors"))
            .expect("the tiny voice parses")
    })
}

/// The tiny bundle's text tokenizer.
pub fn tiny_tokenizer() -> &'static TextTokenizer {
    static T: OnceLock<TextTokenizer> = OnceLock::new();
    T.get_or_init(|| {
        TextTokenizer::from_bytes(
            TINY_TOKENIZER,
            Path::new("onnx/tiny/tokenizer.json"),
            tiny_manifest().config.text.vocab_size,
        )
        .expect("the tiny tokenizer loads")
    })
}

/// The tiny multilingual bundle's front-end (`onnx/tiny-multilingual`), all 23 languages.
pub fn tiny_mtl_tokenizer() -> &'static MtlTokenizer {
    static T: OnceLock<MtlTokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let dir = tiny_bundle_dir().with_file_name("tiny-multilingual");
        MtlTokenizer::from_files(
            &dir.join("tokenizer.json"),
            &dir.join("Cangjie5_TC.json"),
            TEXT_VOCAB_SIZE,
        )
        .expect("the tiny multilingual tokenizer loads")
    })
}

/// `onnx/tiny` of this checkout, from either crate (`fuzz/` or the repository root).
pub fn tiny_bundle_dir() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    for root in [here, here.parent().unwrap_or(here)] {
        let dir = root.join("onnx/tiny");
        if dir.join("manifest.json").is_file() {
            return dir;
        }
    }
    panic!("onnx/tiny not found next to {}", here.display());
}

// ---------------------------------------------------------------------------
// Reading structured values from fuzz bytes (zeros once the bytes run out).

/// A cursor over fuzz bytes.
pub struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data }
    }

    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        head
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let head = self.take(N);
        out[..head.len()].copy_from_slice(head);
        out
    }

    pub fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    pub fn i32(&mut self) -> i32 {
        i32::from_le_bytes(self.array())
    }

    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }

    /// Any bit pattern: NaN, infinities, subnormals included.
    pub fn f32(&mut self) -> f32 {
        f32::from_bits(self.u32())
    }

    /// A length-prefixed byte string (at most 255 bytes).
    pub fn bytes(&mut self) -> &'a [u8] {
        let n = usize::from(self.u8());
        self.take(n)
    }

    pub fn rest(&mut self) -> &'a [u8] {
        let n = self.data.len();
        self.take(n)
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

// ---------------------------------------------------------------------------
// Target `wav`: `audio::read_wav_bytes`.

/// Any bytes as a WAV file: either a clean `InvalidAudio` error or finite, non-empty
/// samples at a non-zero rate, at least as long as asked for.
pub fn wav(data: &[u8]) {
    for min_seconds in [0.0f32, 0.5] {
        match read_wav_bytes(data, "fuzz.wav", min_seconds) {
            Ok(w) => {
                assert!(!w.samples.is_empty(), "a WAV with no samples was accepted");
                assert!(w.sample_rate > 0, "a WAV with sample rate 0 was accepted");
                assert!(w.channels >= 1, "a WAV with 0 channels was accepted");
                assert!(
                    w.samples.iter().all(|s| s.is_finite()),
                    "non-finite samples were accepted"
                );
                assert!(
                    w.duration_seconds() + 1e-6 >= f64::from(min_seconds),
                    "a {} s clip passed a {min_seconds} s minimum",
                    w.duration_seconds()
                );
            }
            Err(e) => {
                assert_eq!(
                    e.kind(),
                    ErrorKind::InvalidAudio,
                    "unexpected error kind: {e}"
                );
                assert!(!e.to_string().is_empty());
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Target `voice_file`: `Voice::from_bytes` and `Voice::validate`.

/// Any bytes as a voice file: parse, validate against the tiny config; a voice that
/// parses must serialise and parse again to the same shapes.
pub fn voice_file(data: &[u8]) {
    let path = Path::new("fuzz.voice.safetensors");
    let voice = match Voice::from_bytes(data, path) {
        Ok(v) => v,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let _ = voice.validate(&tiny_manifest().config);
    let bytes = voice.to_bytes().expect("a parsed voice serialises");
    let again = Voice::from_bytes(&bytes, path).expect("a serialised voice parses again");
    assert_eq!(again.speaker_emb.shape(), voice.speaker_emb.shape());
    assert_eq!(again.prompt_token, voice.prompt_token);
    assert_eq!(
        again.cond_prompt_speech_tokens,
        voice.cond_prompt_speech_tokens
    );
    assert_eq!(again.prompt_feat.shape(), voice.prompt_feat.shape());
    assert_eq!(again.embedding.shape(), voice.embedding.shape());
}

// ---------------------------------------------------------------------------
// Target `manifest`: `Manifest::from_json` and what the engine derives from it at load.

/// Any text as `manifest.json`: a clean `Bundle` error, or a manifest whose config
/// the load-time code can digest and that survives a serialise/parse round trip.
pub fn manifest(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("fuzz/manifest.json");
    let m = match Manifest::from_json(&text, path) {
        Ok(m) => m,
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Bundle, "unexpected error kind: {e}");
            return;
        }
    };
    // What `Engine::load` and the residency planner derive from a parsed manifest.
    let _dims = T3Dims::from_config(&m.config);
    let _ = tiny_voice().validate(&m.config);
    let _ = Request::from_generation(&m.generation).validate();
    for (name, spec) in &m.components {
        let _ = m.component(name);
        // The residency planner adds these up: a sum that wraps would plan with a tiny
        // size (caught here in release builds too, where overflow does not panic).
        let largest = spec.files.iter().map(|f| f.bytes).max().unwrap_or(0);
        assert!(
            spec.weight_bytes() >= largest,
            "component `{name}`: weight_bytes() wrapped around"
        );
        for t in spec.inputs.iter().chain(&spec.outputs) {
            let _ = t.to_string();
            let _ = t.dtype.size();
            for d in &t.shape {
                let _ = d.fixed();
            }
        }
    }
    let json = serde_json_roundtrip(&m);
    let again = Manifest::from_json(&json, path).expect("a serialised manifest parses again");
    assert_eq!(again.components.len(), m.components.len());
    assert_eq!(again.files, m.files);
}

fn serde_json_roundtrip(m: &Manifest) -> String {
    serde_json::to_string(m).expect("a parsed manifest serialises")
}

// ---------------------------------------------------------------------------
// Target `text`: `punc_norm`, `chunk_text` and the tiny tokenizer.

/// Any text through the front end: normalisation, chunking under small limits with
/// a character counter, a byte counter and the real tokenizer, and encoding.
pub fn text(data: &[u8]) {
    let mut b = Bytes::new(data);
    let limits = ChunkLimits {
        max_tokens: 1 + usize::from(b.u8() % 64),
        max_chars: 1 + usize::from(b.u8() % 128),
    };
    let text = String::from_utf8_lossy(b.rest()).into_owned();

    let normed = punc_norm(&text);
    assert!(!normed.is_empty(), "punc_norm returned empty text");

    // One token per character: a single character always fits, so this never fails.
    let chunks = chunk_text(&text, &limits, |s| Ok(s.chars().count()))
        .expect("chunking with a character counter cannot fail");
    check_chunks(&text, &chunks, &limits, |s| s.chars().count());

    // One token per byte: a character of more bytes than max_tokens is `InvalidText`.
    match chunk_text(&text, &limits, |s| Ok(s.len())) {
        Ok(chunks) => check_chunks(&text, &chunks, &limits, str::len),
        Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidText, "unexpected error: {e}"),
    }

    // The real tokenizer.
    let tok = tiny_tokenizer();
    let vocab = tiny_manifest().config.text.vocab_size as i64;
    let ids = tok.encode(&normed).expect("encoding normalised text");
    assert!(ids.iter().all(|&id| (0..vocab).contains(&id)));
    assert_eq!(tok.count_tokens(&normed).expect("counting"), ids.len());
    let framed = tok.encode_with_start_stop(&normed).expect("encoding");
    assert_eq!(framed.len(), ids.len() + 2);

    let limits = ChunkLimits {
        max_tokens: limits.max_tokens.max(8),
        ..limits
    };
    let count = |s: &str| tok.count_tokens(s).expect("counting");
    match chunk_text(&text, &limits, |s| tok.count_tokens(s)) {
        Ok(chunks) => {
            check_chunks(&text, &chunks, &limits, count);
            for c in &chunks {
                let _ = tok.encode_with_start_stop(&punc_norm(c)).expect("encoding");
            }
        }
        Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidText, "unexpected error: {e}"),
    }

    // The multilingual front-end, in a language picked by the input's length: ids inside
    // the vocabulary, framed by start and stop, counted as encoded.
    let mtl = tiny_mtl_tokenizer();
    let (language, _) = LANGUAGES[text.len() % LANGUAGES.len()];
    let normed = MtlTokenizer::punc_norm(&text);
    assert!(
        !normed.is_empty(),
        "the multilingual punc_norm returned empty text"
    );
    match mtl.encode_with_start_stop(&normed, language) {
        Ok(framed) => {
            let vocab = TEXT_VOCAB_SIZE as i64;
            assert!(
                framed.iter().all(|&id| (0..vocab).contains(&id)),
                "{framed:?}"
            );
            assert_eq!(framed.first(), Some(&mtl.start_id()));
            assert_eq!(framed.last(), Some(&mtl.stop_id()));
            let counted = mtl.count_tokens(&normed, language).expect("counting");
            assert_eq!(counted + 2, framed.len(), "{language}: {normed:?}");
        }
        // A build without the `japanese` feature refuses `ja`; nothing else may fail.
        Err(e) => assert!(
            language == "ja" && e.kind() == ErrorKind::InvalidArgument,
            "{language}: unexpected error: {e}"
        ),
    }
}

/// The documented contract of `chunk_text`: chunks are non-empty and trimmed, within
/// both limits, and hold every non-whitespace character of the input in order.
fn check_chunks(
    text: &str,
    chunks: &[String],
    limits: &ChunkLimits,
    count: impl Fn(&str) -> usize,
) {
    for c in chunks {
        assert!(!c.is_empty(), "empty chunk in {chunks:?}");
        assert_eq!(c.trim(), c, "chunk not trimmed");
        let chars = c.chars().count();
        assert!(
            chars <= limits.max_chars,
            "chunk of {chars} chars over {limits:?}: {c:?}"
        );
        let tokens = count(c);
        assert!(
            tokens <= limits.max_tokens,
            "chunk of {tokens} tokens over {limits:?}: {c:?}"
        );
    }
    let solid = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    let joined: String = chunks.iter().map(|c| solid(c)).collect();
    assert_eq!(joined, solid(text), "chunks lost or reordered text");
}

// ---------------------------------------------------------------------------
// Target `capi_args`: the C ABI's argument handling.

/// A directory that does not exist: every fuzzed path is put under it, so no fuzzed
/// path can reach a real file (Linux resolves `..` only through existing folders).
const NO_SUCH_DIR: &str = "/nonexistent-chatterbox-ort-fuzz";

/// The engine of the C ABI target: the tiny bundle on the CPU, one thread, loaded once
/// through `cbx_engine_create`.
pub fn capi_engine() -> *const CbxEngine {
    struct Handle(*mut CbxEngine);
    // SAFETY: the C ABI documents engines as usable from any thread.
    unsafe impl Send for Handle {}
    unsafe impl Sync for Handle {}
    static ENGINE: OnceLock<Handle> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let dir = tiny_bundle_dir();
            let dir = CString::new(dir.to_str().expect("UTF-8 bundle path")).unwrap();
            let mut opts = CbxEngineOptions::default();
            // SAFETY: valid pointers to live values.
            assert_eq!(
                unsafe { cbx_engine_options_default(&mut opts) },
                CbxStatus::CBX_OK
            );
            opts.bundle_dir = dir.as_ptr();
            opts.threads = 1;
            let mut engine = std::ptr::null_mut();
            let status = unsafe { cbx_engine_create(&opts, &mut engine) };
            assert_eq!(
                status,
                CbxStatus::CBX_OK,
                "loading the tiny bundle through the C ABI: {}",
                last_error()
            );
            Handle(engine)
        })
        .0
}

fn last_error() -> String {
    let p = cbx_last_error_message();
    if p.is_null() {
        return String::new();
    }
    // SAFETY: the library returns NUL-terminated strings it keeps alive.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// A fuzzed C string (NUL bytes dropped; any other bytes, invalid UTF-8 included).
fn c_string(raw: &[u8]) -> CString {
    CString::new(raw.iter().copied().filter(|&b| b != 0).collect::<Vec<u8>>()).unwrap()
}

/// A fuzzed path under [`NO_SUCH_DIR`].
fn c_path(raw: &[u8]) -> CString {
    let mut p = format!("{NO_SUCH_DIR}/").into_bytes();
    p.extend(raw.iter().copied().filter(|&b| b != 0));
    CString::new(p).unwrap()
}

/// A fuzzed C string, or NULL (when the selector says so).
fn maybe_null(s: &Option<CString>) -> *const c_char {
    s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr())
}

/// Every failing call must leave a clean error: never `CBX_INTERNAL` (a caught panic or
/// a broken invariant), and a message to read.
fn check_status(what: &str, status: CbxStatus) {
    assert_ne!(
        status,
        CbxStatus::CBX_INTERNAL,
        "{what}: CBX_INTERNAL: {}",
        last_error()
    );
    if status != CbxStatus::CBX_OK {
        assert!(
            !last_error().is_empty(),
            "{what}: {status:?} without a message"
        );
    }
}

/// Out-pointer contract: filled on success, NULL on failure.
fn check_out<T>(what: &str, status: CbxStatus, out: *const T) {
    check_status(what, status);
    assert_eq!(
        status == CbxStatus::CBX_OK,
        !out.is_null(),
        "{what}: {status:?} with out = {out:?}"
    );
}

/// C ABI calls built from fuzz bytes: engine options (struct sizes, providers,
/// residency presets, paths, NULLs), request structs through `cbx_synthesize` on
/// whitespace-only text (every request check runs; synthesis never starts), voices
/// from fuzzed samples and rates, voice and WAV loading from fuzzed bytes and paths,
/// status names and frees of NULL.
pub fn capi_args(data: &[u8]) {
    let mut b = Bytes::new(data);
    // SAFETY (all calls below): every pointer passed is NULL or points to a live value
    // of the type the function expects (structs always full size, whatever their
    // `struct_size` says), strings are NUL-terminated.
    unsafe {
        // Calls that need no engine.
        let name = cbx_status_name(b.i32());
        assert!(!name.is_null());
        let _ = CStr::from_ptr(name);
        assert!(!cbx_version().is_null());
        let _ = cbx_abi_version();
        cbx_engine_free(std::ptr::null_mut());
        cbx_voice_free(std::ptr::null_mut());
        cbx_audio_free(std::ptr::null_mut());
        cbx_string_free(std::ptr::null_mut());
        check_status(
            "cbx_engine_options_default(NULL)",
            cbx_engine_options_default(std::ptr::null_mut()),
        );

        let engine = capi_engine();
        while !b.is_empty() {
            match b.u8() % 8 {
                0 => engine_options(&mut b),
                1 | 2 => request(&mut b, engine),
                3 => voice_from_samples(&mut b, engine),
                4 => voice_load(&mut b, engine),
                5 => wav_file(&mut b, engine),
                6 => residency(&mut b, engine),
                _ => misc(&mut b, engine),
            }
        }
    }
}

/// `cbx_engine_create` with fuzzed options. The bundle path never exists, so loading
/// stops at the bundle after every argument check has run.
unsafe fn engine_options(b: &mut Bytes<'_>) {
    let mut opts = CbxEngineOptions::default();
    check_status(
        "cbx_engine_options_default",
        cbx_engine_options_default(&mut opts),
    );
    let select = b.u8();
    if select & 1 != 0 {
        opts.struct_size = b.u32();
    }
    if select & 2 != 0 {
        opts.provider = b.u32();
    }
    opts.threads = b.u32();
    opts.cuda_device = b.u32();
    let bundle = (select & 4 != 0).then(|| c_path(b.bytes()));
    let residency = (select & 8 != 0).then(|| c_string(b.bytes()));
    let library = (select & 16 != 0).then(|| c_path(b.bytes()));
    opts.bundle_dir = maybe_null(&bundle);
    opts.residency = maybe_null(&residency);
    opts.onnxruntime_library = maybe_null(&library);
    let options: *const CbxEngineOptions = if select & 32 != 0 {
        std::ptr::null()
    } else {
        &opts
    };
    let mut engine = std::ptr::null_mut();
    let out: *mut *mut CbxEngine = if select & 64 != 0 {
        std::ptr::null_mut()
    } else {
        &mut engine
    };
    let status = cbx_engine_create(options, out);
    check_status("cbx_engine_create", status);
    assert_ne!(
        status,
        CbxStatus::CBX_OK,
        "an engine loaded from {NO_SUCH_DIR}"
    );
    assert!(engine.is_null());
}

/// A fuzzed request through the validation of `cbx_synthesize` and
/// `cbx_synthesize_streaming`. The text is empty or whitespace only, so every call
/// fails at the latest when the text is chunked, before any graph runs.
unsafe fn request(b: &mut Bytes<'_>, engine: *const CbxEngine) {
    let mut req = std::mem::zeroed::<CbxRequest>();
    check_status(
        "cbx_request_default(NULL)",
        cbx_request_default(std::ptr::null(), &mut req),
    );
    check_status(
        "cbx_request_default(_, NULL)",
        cbx_request_default(engine, std::ptr::null_mut()),
    );
    check_status("cbx_request_default", cbx_request_default(engine, &mut req));
    let select = b.u16();
    if select & 1 != 0 {
        req.struct_size = b.u32();
    }
    if select & 2 != 0 {
        req.exaggeration = b.f32();
    }
    if select & 4 != 0 {
        req.cfg_weight = b.f32();
    }
    if select & 8 != 0 {
        req.temperature = b.f32();
    }
    if select & 16 != 0 {
        req.min_p = b.f32();
    }
    if select & 32 != 0 {
        req.top_p = b.f32();
    }
    if select & 64 != 0 {
        req.repetition_penalty = b.f32();
    }
    if select & 128 != 0 {
        req.max_new_tokens = b.u32();
    }
    if select & 256 != 0 {
        req.min_new_tokens = b.u32();
    }
    if select & 512 != 0 {
        req.flow_steps = b.u32();
    }
    if select & 1024 != 0 {
        req.seed = b.u64();
        req.watermark = b.i32();
    }
    const BLANKS: [&str; 6] = [" ", "\t", "\n", "\r\n", "\u{3000}", "\u{a0}"];
    let mut text = String::new();
    for _ in 0..b.u8() % 8 {
        text.push_str(BLANKS[usize::from(b.u8()) % BLANKS.len()]);
    }
    let text = CString::new(text).unwrap();
    let request: *const CbxRequest = if select & 2048 != 0 {
        std::ptr::null()
    } else {
        &req
    };
    let mut audio = std::ptr::null_mut();
    let status = cbx_synthesize(engine, text.as_ptr(), std::ptr::null(), request, &mut audio);
    check_out("cbx_synthesize", status, audio);
    assert!(
        matches!(
            status,
            CbxStatus::CBX_INVALID_ARGUMENT | CbxStatus::CBX_INVALID_TEXT
        ),
        "cbx_synthesize on blank text: {status:?}: {}",
        last_error()
    );
    if select & 4096 != 0 {
        let status = cbx_synthesize_streaming(
            engine,
            text.as_ptr(),
            std::ptr::null(),
            request,
            None,
            std::ptr::null_mut(),
        );
        check_status("cbx_synthesize_streaming", status);
        assert_ne!(status, CbxStatus::CBX_OK);
    }
    if select & 8192 != 0 {
        // Text that is not UTF-8.
        let bad = CString::new(vec![b'a', 0xff, 0xfe]).unwrap();
        let status = cbx_synthesize(engine, bad.as_ptr(), std::ptr::null(), request, &mut audio);
        check_out("cbx_synthesize(not UTF-8)", status, audio);
        assert_eq!(status, CbxStatus::CBX_INVALID_TEXT);
    }
}

/// `cbx_voice_from_samples` with fuzzed samples (any bit patterns) and rates. Most
/// clips are too short or invalid; some are repeated to a usable length (at most
/// 1.5 s), which runs the conditioning graphs on the tiny bundle.
unsafe fn voice_from_samples(b: &mut Bytes<'_>, engine: *const CbxEngine) {
    let select = b.u8();
    let rate = match select >> 5 {
        0 => b.u32(),
        1 => 4_000,
        2 => 8_000,
        3 => 16_000,
        4 => 22_050,
        5 => 24_000,
        6 => 44_100,
        _ => 48_000,
    };
    let raw = b.bytes();
    let pattern: Vec<f32> = raw
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let samples: Vec<f32> = if select & 1 != 0 && !pattern.is_empty() {
        let max = (f64::from(rate) * 1.5) as usize;
        let count = (usize::from(b.u16()) * 4).min(max).min(72_000);
        pattern.iter().copied().cycle().take(count).collect()
    } else {
        pattern
    };
    let ptr = if select & 2 != 0 {
        std::ptr::null()
    } else {
        samples.as_ptr()
    };
    let count = if select & 4 != 0 {
        usize::from(b.u8())
    } else {
        samples.len()
    };
    let count = if ptr.is_null() {
        count
    } else {
        count.min(samples.len())
    };
    let engine = if select & 8 != 0 {
        std::ptr::null()
    } else {
        engine
    };
    let mut voice = std::ptr::null_mut();
    let out: *mut *mut CbxVoice = if select & 16 != 0 {
        std::ptr::null_mut()
    } else {
        &mut voice
    };
    let status = cbx_voice_from_samples(engine, ptr, count, rate, out);
    check_out(
        "cbx_voice_from_samples",
        status,
        if out.is_null() {
            std::ptr::null()
        } else {
            voice
        },
    );
    if status == CbxStatus::CBX_OK {
        use_voice(b, engine, voice);
    }
}

/// A voice just made: saving it under a missing folder fails cleanly, and synthesis
/// with it on blank text checks the voice, then stops at the text.
unsafe fn use_voice(b: &mut Bytes<'_>, engine: *const CbxEngine, voice: *mut CbxVoice) {
    let path = c_path(b.bytes());
    let status = cbx_voice_save(voice, path.as_ptr());
    check_status("cbx_voice_save", status);
    assert_ne!(status, CbxStatus::CBX_OK);
    let text = CString::new(" ").unwrap();
    let mut audio = std::ptr::null_mut();
    let status = cbx_synthesize(engine, text.as_ptr(), voice, std::ptr::null(), &mut audio);
    check_out("cbx_synthesize(voice)", status, audio);
    assert_eq!(status, CbxStatus::CBX_INVALID_TEXT, "{}", last_error());
    cbx_voice_free(voice);
}

/// A scratch file of this process holding fuzzed bytes, for the calls that read a path;
/// removed when dropped, so fuzzing leaves nothing in the temp folder.
struct Scratch(PathBuf);

impl Scratch {
    fn write(ext: &str, contents: &[u8]) -> Scratch {
        let p =
            std::env::temp_dir().join(format!("chatterbox-ort-fuzz-{}.{ext}", std::process::id()));
        std::fs::write(&p, contents).expect("writing the scratch file");
        Scratch(p)
    }

    fn c_path(&self) -> CString {
        CString::new(self.0.to_str().unwrap()).unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `cbx_voice_load`: fuzzed bytes written to a scratch file, a missing path, or NULL.
unsafe fn voice_load(b: &mut Bytes<'_>, engine: *const CbxEngine) {
    let select = b.u8();
    let contents = b.bytes();
    let mut _file = None;
    let path = match select % 3 {
        0 => {
            let f = Scratch::write("safetensors", contents);
            let c = f.c_path();
            _file = Some(f);
            Some(c)
        }
        1 => Some(c_path(contents)),
        _ => None,
    };
    let mut voice = std::ptr::null_mut();
    let out: *mut *mut CbxVoice = if select & 4 != 0 {
        std::ptr::null_mut()
    } else {
        &mut voice
    };
    let status = cbx_voice_load(maybe_null(&path), out);
    check_out(
        "cbx_voice_load",
        status,
        if out.is_null() {
            std::ptr::null()
        } else {
            voice
        },
    );
    if status == CbxStatus::CBX_OK {
        use_voice(b, engine, voice);
    }
}

/// `cbx_voice_from_wav_file`: fuzzed bytes written to a scratch WAV, a missing path, or
/// NULL. A valid WAV of 0.5 s or more runs the conditioning graphs.
unsafe fn wav_file(b: &mut Bytes<'_>, engine: *const CbxEngine) {
    let select = b.u8();
    let len = usize::from(b.u16()) % 4096;
    let contents = b.take(len);
    let mut _file = None;
    let path = match select % 3 {
        0 => {
            let f = Scratch::write("wav", contents);
            let c = f.c_path();
            _file = Some(f);
            Some(c)
        }
        1 => Some(c_path(contents)),
        _ => None,
    };
    let mut voice = std::ptr::null_mut();
    let status = cbx_voice_from_wav_file(engine, maybe_null(&path), &mut voice);
    check_out("cbx_voice_from_wav_file", status, voice);
    if status == CbxStatus::CBX_OK {
        use_voice(b, engine, voice);
    }
}

/// `cbx_engine_set_residency` with a fuzzed preset, then back to `resident` before the
/// next stage boundary, so no session is ever created or dropped.
unsafe fn residency(b: &mut Bytes<'_>, engine: *const CbxEngine) {
    let preset = c_string(b.bytes());
    let status = cbx_engine_set_residency(engine, preset.as_ptr());
    check_status("cbx_engine_set_residency", status);
    let resident = CString::new("resident").unwrap();
    assert_eq!(
        cbx_engine_set_residency(engine, resident.as_ptr()),
        CbxStatus::CBX_OK,
        "{}",
        last_error()
    );
    check_status(
        "cbx_engine_set_residency(NULL)",
        cbx_engine_set_residency(engine, std::ptr::null()),
    );
}

/// Stats, status names, NULL handles and NULL out-pointers.
unsafe fn misc(b: &mut Bytes<'_>, engine: *const CbxEngine) {
    let name = cbx_status_name(b.i32());
    assert!(!name.is_null());
    let mut json = std::ptr::null_mut();
    let status = cbx_engine_stats_json(engine, &mut json);
    check_out("cbx_engine_stats_json", status, json);
    cbx_string_free(json);
    check_status(
        "cbx_engine_stats_json(NULL)",
        cbx_engine_stats_json(std::ptr::null(), &mut json),
    );
    let mut samples = std::ptr::null();
    let mut count = 0usize;
    let mut rate = 0u32;
    check_status(
        "cbx_audio_samples(NULL)",
        cbx_audio_samples(std::ptr::null(), &mut samples, &mut count, &mut rate),
    );
    let mut voice = std::ptr::null_mut();
    check_status(
        "cbx_voice_from_wav_file(NULL engine)",
        cbx_voice_from_wav_file(std::ptr::null(), std::ptr::null(), &mut voice),
    );
    check_status(
        "cbx_voice_save(NULL)",
        cbx_voice_save(std::ptr::null(), std::ptr::null()),
    );
    let text = c_string(b.bytes());
    let mut audio = std::ptr::null_mut();
    check_status(
        "cbx_synthesize(NULL engine)",
        cbx_synthesize(
            std::ptr::null(),
            text.as_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            &mut audio,
        ),
    );
    check_status(
        "cbx_synthesize(NULL out)",
        cbx_synthesize(
            engine,
            text.as_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            std::ptr::null_mut(),
        ),
    );
}
