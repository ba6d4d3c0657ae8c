//! `chatterbox_ort._native`: the Python bindings of the engine.
//!
//! The public API is re-exported by `chatterbox_ort/__init__.py`; `_native.pyi` types it.
//! Every call that runs the models releases the GIL. Errors become the exceptions of
//! `chatterbox_ort/_errors.py` (one class per [`ErrorKind`]).

mod arrays;
mod errors;
mod openai;
mod request;
mod stream;

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use chatterbox_ort::residency::ResidencyOptions;
use chatterbox_ort::runtime::{self, RuntimeOptions};
use chatterbox_ort::{EngineOptions, Error, Provider, StreamOptions};

use crate::errors::{invalid_argument, to_py, ResultExt};
use crate::request::{Interrupt, RequestArgs};
use crate::stream::Stream;

/// A voice: the conditioning computed from a reference clip. Immutable; shared freely.
#[pyclass(frozen, eq, module = "chatterbox_ort")]
#[derive(PartialEq)]
pub struct Voice {
    pub(crate) inner: Arc<chatterbox_ort::Voice>,
}

#[pymethods]
impl Voice {
    /// Reads a voice file written by `Voice.save` (or `chatterbox-ort voice`).
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Voice> {
        let voice = py.detach(|| chatterbox_ort::Voice::load(&path)).to_py(py)?;
        Ok(Voice {
            inner: Arc::new(voice),
        })
    }

    /// Writes the voice to `path` (safetensors; replaced atomically).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| self.inner.save(&path)).to_py(py)
    }

    /// Speech tokens of the voice's S3Gen prompt (40 ms each).
    #[getter]
    fn prompt_tokens(&self) -> usize {
        self.inner.prompt_token.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "<chatterbox_ort.Voice prompt_tokens={}>",
            self.prompt_tokens()
        )
    }
}

/// A loaded model bundle, ready to synthesize. Thread-safe: calls from several Python
/// threads run concurrently (the GIL is released while the models run).
#[pyclass(frozen, module = "chatterbox_ort")]
pub struct Engine {
    pub(crate) engine: Arc<chatterbox_ort::Engine>,
    default_voice: Py<Voice>,
    provider: Provider,
}

/// The ONNX Runtime library for an engine: `explicit`, else (when `ORT_DYLIB_PATH` is unset)
/// the one the `onnxruntime` Python package ships, else the library's own search.
fn onnxruntime_library(py: Python<'_>, explicit: Option<PathBuf>) -> PyResult<Option<PathBuf>> {
    if explicit.is_some() {
        return Ok(explicit);
    }
    py.import("chatterbox_ort._runtime")?
        .getattr("default_library")?
        .call0()?
        .extract()
}

#[pymethods]
impl Engine {
    /// Loads the bundle in `bundle` (a folder holding `manifest.json`).
    #[new]
    #[pyo3(signature = (bundle, *, provider = "cpu", threads = None, residency = None, onnxruntime_library = None))]
    fn new(
        py: Python<'_>,
        bundle: PathBuf,
        provider: &str,
        threads: Option<i64>,
        residency: Option<&str>,
        onnxruntime_library: Option<PathBuf>,
    ) -> PyResult<Engine> {
        let provider: Provider = provider.parse().to_py(py)?;
        let threads = threads
            .map(|t| {
                usize::try_from(t)
                    .map_err(|_| invalid_argument(py, "threads", format!("must be >= 1, got {t}")))
            })
            .transpose()?;
        let residency: ResidencyOptions = match residency {
            Some(s) => s.parse().to_py(py)?,
            None => ResidencyOptions::default(),
        };
        let library = self::onnxruntime_library(py, onnxruntime_library)?;
        // Loading ONNX Runtime sets ORT_DISABLE_TELEMETRY in the environment: done with the
        // GIL held, so no Python thread runs meanwhile. A no-op once it is loaded.
        runtime::init(&RuntimeOptions {
            library_path: library.clone(),
            ..RuntimeOptions::default()
        })
        .to_py(py)?;
        let opts = EngineOptions {
            provider,
            threads,
            residency,
            onnxruntime: library,
            ..EngineOptions::new(bundle)
        };
        let engine = py.detach(|| chatterbox_ort::Engine::load(opts)).to_py(py)?;
        let default_voice = Py::new(
            py,
            Voice {
                inner: Arc::new(engine.default_voice().clone()),
            },
        )?;
        Ok(Engine {
            engine: Arc::new(engine),
            default_voice,
            provider,
        })
    }

    /// Samples per second of the audio (24000).
    #[getter]
    fn sample_rate(&self) -> u32 {
        self.engine.bundle().config().s3gen.sample_rate
    }

    /// The model family: "original", "turbo" or "multilingual".
    #[getter]
    fn family(&self) -> &'static str {
        self.engine.family().name()
    }

    /// Language ids of a multilingual bundle (empty for the others).
    #[getter]
    fn languages(&self) -> Vec<String> {
        self.engine
            .languages()
            .iter()
            .map(|l| l.id.clone())
            .collect()
    }

    /// The bundle folder.
    #[getter]
    fn bundle(&self) -> PathBuf {
        self.engine.bundle().dir().to_path_buf()
    }

    /// The execution provider ("cpu", "cuda:N" or "auto:N").
    #[getter]
    fn provider(&self) -> String {
        self.provider.to_string()
    }

    /// The bundle's default voice.
    #[getter]
    fn default_voice(&self, py: Python<'_>) -> Py<Voice> {
        self.default_voice.clone_ref(py)
    }

    /// The settings a synthesis uses for every keyword not given (the bundle's generation
    /// defaults, seed 0, watermark on).
    #[getter]
    fn defaults<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &self.engine.default_request())
    }

    /// Builds a voice from a WAV file (any common format, rate and channel count; at
    /// least 0.5 s).
    fn voice_from_wav(&self, py: Python<'_>, path: PathBuf) -> PyResult<Voice> {
        let voice = py.detach(|| self.engine.voice_from_wav(&path)).to_py(py)?;
        Ok(Voice {
            inner: Arc::new(voice),
        })
    }

    /// Builds a voice from mono samples (a 1-D array-like, converted to float32) at
    /// `sample_rate` Hz.
    fn voice_from_samples(
        &self,
        py: Python<'_>,
        samples: &Bound<'_, PyAny>,
        sample_rate: i64,
    ) -> PyResult<Voice> {
        let data = arrays::from_array(py, "samples", samples)?;
        let rate = u32::try_from(sample_rate).map_err(|_| {
            invalid_argument(
                py,
                "sample_rate",
                format!("must be a positive number of Hz, got {sample_rate}"),
            )
        })?;
        let voice = py
            .detach(|| self.engine.voice_from_samples(&data, rate))
            .to_py(py)?;
        Ok(Voice {
            inner: Arc::new(voice),
        })
    }

    /// Synthesizes `text` with `voice` (None: the bundle's default voice). Returns mono
    /// float32 samples in [-1, 1] at `sample_rate`. Keywords not given take the bundle's
    /// defaults (`defaults`).
    #[pyo3(signature = (
        text, voice = None, *, seed = 0, exaggeration = None, cfg_weight = None,
        temperature = None, min_p = None, top_p = None, top_k = None,
        repetition_penalty = None, max_new_tokens = None, min_new_tokens = None,
        flow_steps = None, watermark = true, language = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn synthesize<'py>(
        &self,
        py: Python<'py>,
        text: String,
        voice: Option<PyRef<'py, Voice>>,
        seed: i128,
        exaggeration: Option<f32>,
        cfg_weight: Option<f32>,
        temperature: Option<f32>,
        min_p: Option<f32>,
        top_p: Option<f32>,
        top_k: Option<i64>,
        repetition_penalty: Option<f32>,
        max_new_tokens: Option<i64>,
        min_new_tokens: Option<i64>,
        flow_steps: Option<i64>,
        watermark: bool,
        language: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let req = RequestArgs {
            seed,
            exaggeration,
            cfg_weight,
            temperature,
            min_p,
            top_p,
            top_k,
            repetition_penalty,
            max_new_tokens,
            min_new_tokens,
            flow_steps,
            watermark,
            language,
        }
        .build(py, &self.engine)?;
        let voice = self.voice_or_default(voice);
        let mut interrupt = Interrupt::new(py)?;
        let result = py.detach(|| {
            self.engine.synthesize_with_progress(
                &text,
                &voice,
                &req,
                &mut |_| interrupt.poll(),
                &mut |_| true,
            )
        });
        interrupt.raise()?;
        let audio = result.to_py(py)?;
        arrays::to_array(py, &audio.samples)
    }

    /// Synthesizes `text` piece by piece while T3 is still decoding: an iterator of
    /// float32 arrays whose concatenation is the whole audio. The synthesis runs on its
    /// own thread from this call on; closing the iterator (or dropping it) cancels it.
    #[pyo3(signature = (
        text, voice = None, *, first_chunk_tokens = None, chunk_tokens = None, overlap = false,
        seed = 0, exaggeration = None, cfg_weight = None, temperature = None, min_p = None,
        top_p = None, top_k = None, repetition_penalty = None, max_new_tokens = None,
        min_new_tokens = None, flow_steps = None, watermark = true, language = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn stream<'py>(
        &self,
        py: Python<'py>,
        text: String,
        voice: Option<PyRef<'py, Voice>>,
        first_chunk_tokens: Option<i64>,
        chunk_tokens: Option<i64>,
        overlap: bool,
        seed: i128,
        exaggeration: Option<f32>,
        cfg_weight: Option<f32>,
        temperature: Option<f32>,
        min_p: Option<f32>,
        top_p: Option<f32>,
        top_k: Option<i64>,
        repetition_penalty: Option<f32>,
        max_new_tokens: Option<i64>,
        min_new_tokens: Option<i64>,
        flow_steps: Option<i64>,
        watermark: bool,
        language: Option<String>,
    ) -> PyResult<Stream> {
        let req = RequestArgs {
            seed,
            exaggeration,
            cfg_weight,
            temperature,
            min_p,
            top_p,
            top_k,
            repetition_penalty,
            max_new_tokens,
            min_new_tokens,
            flow_steps,
            watermark,
            language,
        }
        .build(py, &self.engine)?;
        let defaults = StreamOptions::default();
        let opts = StreamOptions {
            first_chunk_tokens: request::count(py, "first_chunk_tokens", first_chunk_tokens)?
                .unwrap_or(defaults.first_chunk_tokens),
            chunk_tokens: request::count(py, "chunk_tokens", chunk_tokens)?
                .unwrap_or(defaults.chunk_tokens),
            overlap,
        };
        opts.validate().to_py(py)?;
        let voice = self.voice_or_default(voice);
        Stream::start(py, Arc::clone(&self.engine), text, voice, req, opts)
    }

    /// Changes the residency policy: the same presets as the CLI's `--residency`
    /// (e.g. "resident", "swap", "idle=30", "swap,t3_decoder=resident", "budget=2GiB").
    fn set_residency(&self, py: Python<'_>, residency: &str) -> PyResult<()> {
        let opts: ResidencyOptions = residency.parse().to_py(py)?;
        py.detach(|| self.engine.set_residency(opts)).to_py(py)
    }

    /// Destroys now every session the residency policy does not keep resident and no
    /// synthesis is using (e.g. `idle=SECS` sessions before their time is up).
    fn release_idle(&self, py: Python<'_>) {
        py.detach(|| self.engine.host().release_idle());
    }

    /// Residency accounting: per-component sessions, runs and memory, process RSS.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let json = self.engine.stats_json().to_py(py)?;
        py.import("json")?.call_method1("loads", (json,))
    }

    fn __repr__(&self) -> String {
        format!(
            "<chatterbox_ort.Engine bundle={:?} family={} provider={}>",
            self.engine.bundle().dir().display().to_string(),
            self.family(),
            self.provider
        )
    }
}

impl Engine {
    fn voice_or_default(&self, voice: Option<PyRef<'_, Voice>>) -> Arc<chatterbox_ort::Voice> {
        match voice {
            Some(v) => Arc::clone(&v.inner),
            None => Arc::clone(&self.default_voice.get().inner),
        }
    }
}

/// A serializable value as Python objects (through `json`).
fn json_to_py<'py>(py: Python<'py>, value: &impl serde::Serialize) -> PyResult<Bound<'py, PyAny>> {
    let json = serde_json::to_string(value)
        .map_err(|e| to_py(py, &Error::internal(format!("serializing: {e}"))))?;
    py.import("json")?.call_method1("loads", (json,))
}

/// The ONNX Runtime this process loaded: `{"library_path", "source", "version"}`, or None
/// before the first engine.
#[pyfunction]
fn runtime_info(py: Python<'_>) -> PyResult<Option<Bound<'_, PyAny>>> {
    if !runtime::is_initialized() {
        return Ok(None);
    }
    let info = runtime::info().to_py(py)?;
    json_to_py(py, &info).map(Some)
}

/// The execution providers of the loaded ONNX Runtime (empty before the first engine).
#[pyfunction]
fn available_providers(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let list = if runtime::is_initialized() {
        runtime::available_providers().to_py(py)?
    } else {
        Vec::new()
    };
    PyList::new(py, list)
}

#[pymodule]
mod _native {
    use super::*;

    #[pymodule_export]
    use super::{available_providers, runtime_info, Engine, Stream, Voice};
    #[pymodule_export]
    use crate::openai::{OpenAISpeech, SpeechBytes, SpeechJob};

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        // numpy is imported now, not by the first array a synthesis returns.
        arrays::numpy(m.py())?;
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        let kinds = PyDict::new(m.py());
        for kind in chatterbox_ort::ErrorKind::ALL {
            kinds.set_item(kind.name(), kind.code())?;
        }
        m.add("ERROR_KINDS", kinds)?;
        Ok(())
    }
}
