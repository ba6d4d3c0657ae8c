//! `Engine.stream`: token-level streaming as a Python iterator.
//!
//! The synthesis runs on a thread of its own ([`Engine::synthesize_stream`]) and sends each
//! delivered piece through a bounded channel; `__next__` waits for the next piece with the
//! GIL released. Closing the iterator, or dropping it, sets the cancel flag (checked by the
//! engine after every speech token and every piece) and drops the receiver (so a send
//! fails), then joins the thread. The engine's error, if any, is raised by `__next__` once
//! the pieces before it have been taken.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
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

/// The receiving end of a synthesis running on its own thread: pieces of type `T`, then the
/// thread's result (error type `E`). Shared by [`Stream`] (samples) and the OpenAI route's
/// byte stream (`crate::openai`).
pub(crate) struct Pieces<T: Send, E: Send> {
    inner: Mutex<Inner<T, E>>,
    cancel: Arc<AtomicBool>,
}

/// `None` once the stream ended, failed or was closed.
struct Inner<T: Send, E: Send> {
    rx: Option<Receiver<T>>,
    worker: Option<JoinHandle<Result<(), E>>>,
}

/// What one wait for the next piece gave.
pub(crate) enum Step<T, E> {
    Piece(T),
    Pending,
    End(Result<(), E>),
}

impl<T: Send, E: Send + From<Error>> Inner<T, E> {
    fn step(&mut self) -> Step<T, E> {
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
    fn join(&mut self) -> Result<(), E> {
        match self.worker.take().map(JoinHandle::join) {
            None => Ok(()),
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(Error::internal("the synthesis thread panicked").into()),
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

impl<T: Send + 'static, E: Send + From<Error> + 'static> Pieces<T, E> {
    /// Runs `work` on a thread of its own; it sends pieces through the sender it is given
    /// (a send fails once the receiver is closed) and checks the cancel flag.
    pub(crate) fn spawn(
        name: &str,
        work: impl FnOnce(SyncSender<T>, Arc<AtomicBool>) -> Result<(), E> + Send + 'static,
    ) -> chatterbox_ort::Result<Pieces<T, E>> {
        let cancel = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::sync_channel::<T>(QUEUE_PIECES);
        let stop = Arc::clone(&cancel);
        let worker = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || work(tx, stop))
            .map_err(|e| Error::internal(format!("starting the synthesis thread: {e}")))?;
        Ok(Pieces {
            inner: Mutex::new(Inner {
                rx: Some(rx),
                worker: Some(worker),
            }),
            cancel,
        })
    }

    /// The next piece, waiting without the GIL (and without holding the lock while the GIL
    /// is taken, so two threads iterating one stream cannot deadlock); a pending signal
    /// (Ctrl-C) closes the stream and is raised. `None` at the end; the thread's error as
    /// `Err(Ok(e))`, a Python error as `Err(Err(e))`.
    pub(crate) fn next(&self, py: Python<'_>) -> Result<Option<T>, Result<E, PyErr>> {
        loop {
            let step = py.detach(|| self.lock().step());
            match step {
                Step::Piece(p) => return Ok(Some(p)),
                Step::Pending => {
                    if let Err(e) = py.check_signals() {
                        self.close(py);
                        return Err(Err(e));
                    }
                }
                Step::End(Ok(())) => return Ok(None),
                Step::End(Err(e)) => return Err(Ok(e)),
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T, E>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops the synthesis (if it still runs) and waits for its thread. Idempotent.
    pub(crate) fn close(&self, py: Python<'_>) {
        let cancel = &*self.cancel;
        py.detach(|| self.lock().close(cancel));
    }
}

impl<T: Send, E: Send> Drop for Pieces<T, E> {
    fn drop(&mut self) {
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        self.cancel.store(true, Ordering::SeqCst);
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

/// An iterator of float32 arrays: the pieces of a streaming synthesis, in order.
/// Joined, they are the whole audio. Also a context manager (leaving it closes).
#[pyclass(frozen, module = "chatterbox_ort")]
pub struct Stream {
    pieces: Pieces<Vec<f32>, Error>,
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
        let pieces = Pieces::spawn("chatterbox-stream", move |tx, stop| {
            let go_on = || !stop.load(Ordering::SeqCst);
            let mut on_progress = |_: &_| go_on();
            let mut on_chunk = |chunk: &StreamChunk<'_>| {
                go_on() && (chunk.samples.is_empty() || tx.send(chunk.samples.to_vec()).is_ok())
            };
            engine
                .synthesize_stream(&text, &voice, &req, &opts, &mut on_progress, &mut on_chunk)
                .map(drop)
        })
        .to_py(py)?;
        Ok(Stream { pieces })
    }
}

#[pymethods]
impl Stream {
    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        match self.pieces.next(py) {
            Ok(Some(samples)) => arrays::to_array(py, &samples).map(Some),
            Ok(None) => Ok(None),
            Err(Ok(e)) => Err(to_py(py, &e)),
            Err(Err(e)) => Err(e),
        }
    }

    /// Stops the synthesis (if it still runs) and waits for its thread. Idempotent; the
    /// iterator then ends.
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
