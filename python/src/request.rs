//! Synthesis keywords to a [`Request`], and Ctrl-C during a synthesis.

use std::time::{Duration, Instant};

use pyo3::prelude::*;

use chatterbox_ort::{Engine, Language, Request};

use crate::errors::{invalid_argument, ResultExt};

/// A count keyword: `None` stays `None`; a negative value is `InvalidArgumentError` naming it.
pub(crate) fn count(py: Python<'_>, name: &str, value: Option<i64>) -> PyResult<Option<usize>> {
    value
        .map(|v| {
            usize::try_from(v)
                .map_err(|_| invalid_argument(py, name, format!("must be >= 0, got {v}")))
        })
        .transpose()
}

/// The request keywords of `Engine.synthesize` and `Engine.stream`; `None` keeps the bundle's
/// default.
pub(crate) struct RequestArgs {
    pub seed: i128,
    pub exaggeration: Option<f32>,
    pub cfg_weight: Option<f32>,
    pub temperature: Option<f32>,
    pub min_p: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub repetition_penalty: Option<f32>,
    pub max_new_tokens: Option<i64>,
    pub min_new_tokens: Option<i64>,
    pub flow_steps: Option<i64>,
    pub watermark: bool,
    pub language: Option<String>,
}

impl RequestArgs {
    /// The engine's default request with the given keywords, checked (the error names the
    /// keyword).
    pub(crate) fn build(self, py: Python<'_>, engine: &Engine) -> PyResult<Request> {
        let mut r = engine.default_request();
        r.seed = u64::try_from(self.seed).map_err(|_| {
            invalid_argument(
                py,
                "seed",
                format!("must be in 0..={}, got {}", u64::MAX, self.seed),
            )
        })?;
        let floats = [
            (self.exaggeration, &mut r.exaggeration),
            (self.cfg_weight, &mut r.cfg_weight),
            (self.temperature, &mut r.temperature),
            (self.min_p, &mut r.min_p),
            (self.top_p, &mut r.top_p),
            (self.repetition_penalty, &mut r.repetition_penalty),
        ];
        for (given, field) in floats {
            if let Some(v) = given {
                *field = v;
            }
        }
        let counts = [
            ("top_k", self.top_k, &mut r.top_k),
            ("max_new_tokens", self.max_new_tokens, &mut r.max_new_tokens),
            ("min_new_tokens", self.min_new_tokens, &mut r.min_new_tokens),
            ("flow_steps", self.flow_steps, &mut r.flow_steps),
        ];
        for (name, given, field) in counts {
            if let Some(v) = count(py, name, given)? {
                *field = v;
            }
        }
        r.watermark = self.watermark;
        r.language = self
            .language
            .as_deref()
            .map(Language::parse)
            .transpose()
            .to_py(py)?;
        r.validate().to_py(py)?;
        engine.check_language(r.language).to_py(py)?;
        Ok(r)
    }
}

/// How often a synthesis on Python's main thread looks for a pending signal (Ctrl-C).
const SIGNAL_POLL: Duration = Duration::from_millis(100);

/// Lets Ctrl-C stop a synthesis that runs with the GIL released: on the main thread,
/// [`Interrupt::poll`] (the engine's progress callback) runs Python's signal handlers at most
/// every [`SIGNAL_POLL`] and stops the synthesis when one raises (KeyboardInterrupt);
/// [`Interrupt::raise`] then raises it instead of the engine's `Cancelled` error.
pub(crate) struct Interrupt {
    main_thread: bool,
    last_poll: Instant,
    raised: Option<PyErr>,
}

impl Interrupt {
    pub(crate) fn new(py: Python<'_>) -> PyResult<Interrupt> {
        let threading = py.import("threading")?;
        let main_thread = threading
            .call_method0("current_thread")?
            .is(&threading.call_method0("main_thread")?);
        Ok(Interrupt {
            main_thread,
            last_poll: Instant::now(),
            raised: None,
        })
    }

    /// Whether the synthesis goes on. Called without the GIL.
    pub(crate) fn poll(&mut self) -> bool {
        if !self.main_thread || self.last_poll.elapsed() < SIGNAL_POLL {
            return true;
        }
        self.last_poll = Instant::now();
        match Python::attach(|py| py.check_signals()) {
            Ok(()) => true,
            Err(e) => {
                self.raised = Some(e);
                false
            }
        }
    }

    /// The exception a signal handler raised, if any.
    pub(crate) fn raise(self) -> PyResult<()> {
        self.raised.map_or(Ok(()), Err)
    }
}
