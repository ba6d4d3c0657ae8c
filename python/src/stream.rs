//! `Engine.stream`: token-level streaming as a Python iterator.
//!
//! The synthesis runs on a thread of its own ([`Engine::synthesize_stream`]) and sends each
//! delivered piece through a bounded channel; `__next__` waits for the next piece with the
//! GIL released. Closing the iterator, or dropping it, sets the cancel flag (checked by the
//! engine after every speech token and every piece) and drops the receiver (so a send
//! fails), then joins the thread. The engine's error, if any, is raised by `__next__` once
//! the pieces before it have been taken.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use pyo3::prelude::*;

use chatterbox_ort::{Engine, Error, Request, StreamChunk, StreamOptions, Voice};

use crate::arrays;
use crate::errors::{to_py, ResultExt};

/// Pieces the synthesis may run ahead of the consumer before it waits (a piece is
/// `chunk_tokens` speech tokens, 1.6 s of audio by default).
const QUEUE_PIECES: usize = 8;
/// How long `__next__` waits for a piece before it looks for a pending signal (Ctrl-C).
const SIGNAL_POLL: Duration = Duration::from_millis(100);

type Worker = JoinHandle<chatterbox_ort::Result<()>>;

/// The receiving end: `None` once the stream ended, failed or was closed.
struct Inner {
    rx: Option<Receiver<Vec<f32>>>,
    worker: Option<Worker>,
}

/// What one wait for the next piece gave.
enum Step {
    Piece(Vec<f32>),
    Pending,
    End(chatterbox_ort::Result<()>),
}

impl Inner {
    fn step(&mut self) -> Step {
        let Some(rx) = &self.rx else {
            return Step::End(Ok(()));
        };
        match rx.recv_timeout(SIGNAL_POLL) {
            Ok(piece) => Step::Piece(piece),
            Err(RecvTimeoutError::Timeout) => Step::Pending,
            Err(RecvTimeoutError::Disconnected) => {
                self.rx = None;
                Step::End(self.join())
            }
        }
    }

    /// Waits for the thread and gives its result.
    fn join(&mut self) -> chatterbox_ort::Result<()> {
        match self.worker.take().map(JoinHandle::join) {
            None => Ok(()),
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(Error::internal("the streaming synthesis thread panicked")),
        }
    }

    /// Cancels a running synthesis and waits for its thread (at most one speech token or
    /// one S3Gen pass); its result is dropped.
    fn close(&mut self, cancel: &AtomicBool) {
        cancel.store(true, Ordering::SeqCst);
        self.rx = None;
        let _ = self.join();
    }
}

/// An iterator of float32 arrays: the pieces of a streaming synthesis, in order.
/// Joined, they are the whole audio. Also a context manager (leaving it closes).
#[pyclass(frozen, module = "chatterbox_ort")]
pub struct Stream {
    inner: Mutex<Inner>,
    cancel: Arc<AtomicBool>,
}

impl Stream {
    /// Starts the synthesis on its own thread.
    pub(crate) fn start(
        py: Python<'_>,
        engine: Arc<Engine>,
        text: String,
        voice: Arc<Voice>,
        req: Request,
        opts: StreamOptions,
    ) -> PyResult<Stream> {
        let cancel = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::sync_channel::<Vec<f32>>(QUEUE_PIECES);
        let stop = Arc::clone(&cancel);
        let worker = std::thread::Builder::new()
            .name("chatterbox-stream".into())
            .spawn(move || {
                let go_on = || !stop.load(Ordering::SeqCst);
                let mut on_progress = |_: &_| go_on();
                let mut on_chunk = |chunk: &StreamChunk<'_>| {
                    go_on() && (chunk.samples.is_empty() || tx.send(chunk.samples.to_vec()).is_ok())
                };
                engine
                    .synthesize_stream(&text, &voice, &req, &opts, &mut on_progress, &mut on_chunk)
                    .map(drop)
            })
            .map_err(|e| Error::internal(format!("starting the streaming thread: {e}")))
            .to_py(py)?;
        Ok(Stream {
            inner: Mutex::new(Inner {
                rx: Some(rx),
                worker: Some(worker),
            }),
            cancel,
        })
    }

    /// Runs `f` on the receiving end without the GIL (the lock is never held while the GIL
    /// is being taken, so two threads iterating one stream cannot deadlock).
    fn with_inner<T: Send>(&self, py: Python<'_>, f: impl FnOnce(&mut Inner) -> T + Send) -> T {
        py.detach(|| f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner)))
    }
}

#[pymethods]
impl Stream {
    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        loop {
            match self.with_inner(py, Inner::step) {
                Step::Piece(samples) => return arrays::to_array(py, &samples).map(Some),
                Step::Pending => {
                    if let Err(e) = py.check_signals() {
                        self.close(py);
                        return Err(e);
                    }
                }
                Step::End(Ok(())) => return Ok(None),
                Step::End(Err(e)) => return Err(to_py(py, &e)),
            }
        }
    }

    /// Stops the synthesis (if it still runs) and waits for its thread. Idempotent; the
    /// iterator then ends.
    fn close(&self, py: Python<'_>) {
        let cancel = &*self.cancel;
        self.with_inner(py, |inner| inner.close(cancel));
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

impl Drop for Stream {
    fn drop(&mut self) {
        let cancel = Arc::clone(&self.cancel);
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        cancel.store(true, Ordering::SeqCst);
        inner.rx = None;
        let Some(worker) = inner.worker.take() else {
            return;
        };
        if worker.is_finished() {
            let _ = worker.join();
            return;
        }
        // Dropped by Python (the GIL is held): wait for the thread without it. While the
        // interpreter shuts down, the thread is left to end on its own.
        let _ = Python::try_attach(|py| py.detach(|| worker.join()));
    }
}
