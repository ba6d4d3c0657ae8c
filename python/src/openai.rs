//! `OpenAISpeech`: the OpenAI speech route of `chatterbox-ort serve` for Python hosts (the
//! Ray Serve deployment in `chatterbox_ort/ray_serve.py`): the same request checks, errors,
//! voice library and encoders (`chatterbox_ort::openai`), without HTTP.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use chatterbox_ort::openai::{self, ApiError, ApiLimits, Delivery, VoiceLibrary};

use crate::errors::ResultExt;
use crate::json_to_py;
use crate::stream::Pieces;
use crate::Engine;

/// `chatterbox_ort.OpenAIError` for `e` (status, JSON body and fields).
fn api_error(py: Python<'_>, e: &ApiError) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let exc = py
            .import("chatterbox_ort._errors")?
            .getattr("_openai_error")?
            .call1((
                e.status,
                e.body(),
                &e.message,
                e.kind,
                e.param.as_deref(),
                e.code,
            ))?;
        Ok(PyErr::from_value(exc))
    };
    build().unwrap_or_else(|err| err)
}

/// The OpenAI speech API over an engine: `prepare` checks a request body, `run` gives its
/// response body as an iterator of bytes; voices by name from a voice library.
#[pyclass(frozen, module = "chatterbox_ort", name = "OpenAISpeech")]
pub struct OpenAISpeech {
    engine: Arc<chatterbox_ort::Engine>,
    voices: Arc<VoiceLibrary>,
    limits: ApiLimits,
}

/// A checked speech request (from `OpenAISpeech.prepare`).
#[pyclass(frozen, module = "chatterbox_ort")]
pub struct SpeechJob {
    job: openai::SpeechJob,
}

/// The response body of a speech request, piece by piece (`bytes`); closing it (or leaving
/// its `with` block, or dropping it) cancels the synthesis. A failure raises `OpenAIError`.
#[pyclass(frozen, module = "chatterbox_ort")]
pub struct SpeechBytes {
    pieces: Pieces<Vec<u8>, ApiError>,
}

#[pymethods]
impl OpenAISpeech {
    /// `voices`: the voice library folder (created when missing; None: only the bundle's
    /// voice), `voice_cache`: voices kept loaded, `max_input_chars`: the bound on `input`.
    #[new]
    #[pyo3(signature = (engine, *, voices = None, voice_cache = 16, max_input_chars = 4096))]
    fn new(
        py: Python<'_>,
        engine: PyRef<'_, Engine>,
        voices: Option<PathBuf>,
        voice_cache: usize,
        max_input_chars: usize,
    ) -> PyResult<OpenAISpeech> {
        let limits = ApiLimits { max_input_chars };
        limits.validate().to_py(py)?;
        let engine = Arc::clone(&engine.engine);
        let library =
            VoiceLibrary::new(voices, voice_cache, engine.default_voice().clone()).to_py(py)?;
        Ok(OpenAISpeech {
            engine,
            voices: Arc::new(library),
            limits,
        })
    }

    /// Checks a request body (JSON bytes); raises `OpenAIError` (status 4xx) when it is wrong.
    fn prepare(&self, py: Python<'_>, body: &[u8]) -> PyResult<SpeechJob> {
        let engine = &self.engine;
        let limits = &self.limits;
        py.detach(|| openai::parse_speech(body, engine, limits))
            .map(|job| SpeechJob { job })
            .map_err(|e| api_error(py, &e))
    }

    /// Starts the synthesis of `job` on its own thread.
    fn run(&self, py: Python<'_>, job: PyRef<'_, SpeechJob>) -> PyResult<SpeechBytes> {
        let engine = Arc::clone(&self.engine);
        let voices = Arc::clone(&self.voices);
        let job = job.job.clone();
        let pieces = Pieces::spawn("chatterbox-openai", move |tx, stop| {
            let voice = voices.get(&job.voice, &engine)?;
            openai::run_speech(&engine, &job, &voice, &stop, &mut |bytes| {
                !stop.load(Ordering::SeqCst) && tx.send(bytes.to_vec()).is_ok()
            })
            .map(drop)
            .map_err(ApiError::from)
        })
        .to_py(py)?;
        Ok(SpeechBytes { pieces })
    }

    /// The voices (`[{"id", "name", "object", "source"}]`).
    fn voices<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let list = self.voices.list().map_err(|e| api_error(py, &e))?;
        let data: Vec<_> = list.into_iter().map(|v| v.to_json()).collect();
        json_to_py(py, &data)
    }

    /// Makes the voice `name` from a WAV file's bytes and stores it in the library.
    #[pyo3(signature = (name, wav, overwrite = false))]
    fn add_voice<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        wav: &[u8],
        overwrite: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (engine, voices) = (&self.engine, &self.voices);
        let info = py
            .detach(|| voices.add(engine, name, wav, overwrite))
            .map_err(|e| api_error(py, &e))?;
        json_to_py(py, &info.to_json())
    }

    /// Removes the voice file `name`.
    fn remove_voice(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        self.voices.remove(name).map_err(|e| api_error(py, &e))
    }

    /// The model names requests may use (the bundle's id first).
    fn models(&self) -> Vec<&'static str> {
        openai::model_names(self.engine.family())
    }
}

#[pymethods]
impl SpeechJob {
    /// The response's Content-Type.
    #[getter]
    fn content_type(&self) -> &'static str {
        self.job.content_type()
    }

    /// Whether the body leaves as it is made (`stream_format` audio or sse).
    #[getter]
    fn streaming(&self) -> bool {
        self.job.delivery != Delivery::Whole
    }

    /// The voice name.
    #[getter]
    fn voice(&self) -> &str {
        &self.job.voice
    }

    fn __repr__(&self) -> String {
        format!(
            "SpeechJob(format={}, delivery={:?}, voice={:?}, chars={})",
            self.job.format,
            self.job.delivery,
            self.job.voice,
            self.job.input.chars().count()
        )
    }
}

#[pymethods]
impl SpeechBytes {
    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        match self.pieces.next(py) {
            Ok(piece) => Ok(piece.map(|b| PyBytes::new(py, &b))),
            Err(Ok(e)) => Err(api_error(py, &e)),
            Err(Err(e)) => Err(e),
        }
    }

    /// Stops the synthesis (if it still runs) and waits for its thread. Idempotent.
    fn close(&self, py: Python<'_>) {
        self.pieces.close(py);
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close(py);
        false
    }
}
