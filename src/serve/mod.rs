//! `chatterbox-ort serve`: the OpenAI-compatible speech server (feature `serve`).
//!
//! Routes: `POST /v1/audio/speech` (OpenAI's body; see [`crate::openai::request`]),
//! `GET|POST /v1/audio/voices`, `DELETE /v1/audio/voices/{name}`, `GET /v1/models`,
//! `GET /health`, `GET /metrics` (Prometheus text), `POST /admin/unload`.
//!
//! Work: at most [`ServeConfig::concurrency`] syntheses run at once (each on a blocking
//! thread), at most [`ServeConfig::max_queue`] more wait; beyond that a request gets 429 at
//! once. A client that goes away (connection closed, response body dropped) cancels its
//! synthesis at the next speech token or audio chunk; so does [`ServeConfig::request_timeout`]
//! (504 when no byte was sent yet). SIGINT/SIGTERM: no new connections or requests, work in
//! flight finishes for up to [`ServeConfig::shutdown_grace`], then is cancelled.

mod metrics;
mod queue;
mod routes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::openai::{ApiLimits, VoiceLibrary};

pub use metrics::Metrics;
pub use queue::Admission;

/// Most syntheses at once.
pub const MAX_CONCURRENCY: usize = 64;
/// Most waiting requests.
pub const MAX_QUEUE: usize = 10_000;
/// Most voices kept loaded.
pub const MAX_VOICE_CACHE: usize = 10_000;
/// Largest voice upload accepted by [`ServeConfig::validate`] (a 5-minute 48 kHz stereo
/// 32-bit WAV is about 110 MiB).
pub const MAX_UPLOAD_BYTES: usize = 256 << 20;
/// Longest request timeout and shutdown grace.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// How the server runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    /// Address to listen on (port 0: any free port, reported to `on_ready`).
    pub bind: SocketAddr,
    /// Required as `Authorization: Bearer KEY` on every route but `/health`, when set.
    pub api_key: Option<String>,
    /// Allow a non-loopback `bind` without an API key.
    pub allow_unauthenticated: bool,
    /// Voices folder (uploads are stored there); `None`: only the bundle's voice.
    pub voices: Option<PathBuf>,
    /// Voices kept loaded (LRU).
    pub voice_cache: usize,
    /// Syntheses at once.
    pub concurrency: usize,
    /// Requests waiting for a synthesis slot before 429.
    pub max_queue: usize,
    /// Per-request limits of the speech API.
    pub limits: ApiLimits,
    /// Largest voice upload, in bytes.
    pub max_upload_bytes: usize,
    /// A request's synthesis is cancelled after this long.
    pub request_timeout: Duration,
    /// How long work in flight may finish after SIGINT/SIGTERM.
    pub shutdown_grace: Duration,
}

impl Default for ServeConfig {
    fn default() -> ServeConfig {
        ServeConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8000)),
            api_key: None,
            allow_unauthenticated: false,
            voices: None,
            voice_cache: 16,
            concurrency: 1,
            max_queue: 16,
            limits: ApiLimits::default(),
            max_upload_bytes: 32 << 20,
            request_timeout: Duration::from_secs(600),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

impl ServeConfig {
    /// Checks every bound; the error names the setting.
    pub fn validate(&self) -> Result<()> {
        let range = |name: &str, v: usize, lo: usize, hi: usize| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(Error::invalid_argument(
                    name,
                    format!("must be in {lo}..={hi}, got {v}"),
                ))
            }
        };
        range("concurrency", self.concurrency, 1, MAX_CONCURRENCY)?;
        range("max_queue", self.max_queue, 0, MAX_QUEUE)?;
        range("voice_cache", self.voice_cache, 1, MAX_VOICE_CACHE)?;
        range(
            "max_upload_bytes",
            self.max_upload_bytes,
            1024,
            MAX_UPLOAD_BYTES,
        )?;
        self.limits.validate()?;
        for (name, d) in [
            ("request_timeout", self.request_timeout),
            ("shutdown_grace", self.shutdown_grace),
        ] {
            if d > MAX_TIMEOUT || (name == "request_timeout" && d.is_zero()) {
                return Err(Error::invalid_argument(
                    name,
                    format!(
                        "must be in 0..={} s (request_timeout > 0), got {} s",
                        MAX_TIMEOUT.as_secs(),
                        d.as_secs_f64()
                    ),
                ));
            }
        }
        if let Some(key) = &self.api_key {
            if key.len() < 8 || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(Error::invalid_argument(
                    "api_key",
                    "must be at least 8 characters, without spaces or control characters",
                ));
            }
        }
        if !self.bind.ip().is_loopback() && self.api_key.is_none() && !self.allow_unauthenticated {
            return Err(Error::invalid_argument(
                "bind",
                format!(
                    "{} is reachable from other machines: set an API key (--api-key or CHATTERBOX_ORT_API_KEY), or pass --allow-unauthenticated",
                    self.bind
                ),
            ));
        }
        Ok(())
    }
}

/// Cancel flags of the syntheses in flight (shutdown cancels them after the grace).
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    next: AtomicU64,
    flags: Mutex<std::collections::HashMap<u64, Arc<AtomicBool>>>,
}

impl InFlight {
    fn register(self: &Arc<Self>, flag: Arc<AtomicBool>) -> InFlightEntry {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.flags
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, flag);
        InFlightEntry {
            set: self.clone(),
            id,
        }
    }

    fn cancel_all(&self) -> usize {
        let flags = self.flags.lock().unwrap_or_else(|p| p.into_inner());
        for f in flags.values() {
            f.store(true, Ordering::SeqCst);
        }
        flags.len()
    }
}

/// Removes its flag from [`InFlight`] when the synthesis ends.
pub(crate) struct InFlightEntry {
    set: Arc<InFlight>,
    id: u64,
}

impl Drop for InFlightEntry {
    fn drop(&mut self) {
        self.set
            .flags
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// What every handler sees.
pub(crate) struct AppState {
    pub engine: Arc<Engine>,
    pub voices: VoiceLibrary,
    pub admission: Arc<Admission>,
    pub metrics: Metrics,
    pub config: ServeConfig,
    pub in_flight: Arc<InFlight>,
    pub shutting_down: AtomicBool,
}

/// Serves `engine` until SIGINT or SIGTERM, then shuts down gracefully. `on_ready` gets the
/// address actually bound (with port 0, the port chosen) once the server accepts
/// connections.
pub fn run(engine: Engine, config: ServeConfig, on_ready: impl FnOnce(SocketAddr)) -> Result<()> {
    config.validate()?;
    let workers = config.concurrency.clamp(2, 8);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .max_blocking_threads(config.concurrency + 4)
        .enable_all()
        .thread_name("cbx-serve")
        .build()
        .map_err(|e| Error::runtime(format!("starting the async runtime: {e}")))?;
    rt.block_on(serve(engine, config, on_ready))
}

async fn serve(
    engine: Engine,
    config: ServeConfig,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|e| {
            Error::invalid_argument("bind", format!("cannot listen on {}: {e}", config.bind))
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::internal(format!("listener address: {e}")))?;
    let engine = Arc::new(engine);
    let voices = VoiceLibrary::new(
        config.voices.clone(),
        config.voice_cache,
        engine.default_voice().clone(),
    )?;
    let admission = Arc::new(Admission::new(config.concurrency, config.max_queue));
    let metrics = Metrics::new(admission.clone(), engine.clone());
    let state = Arc::new(AppState {
        engine,
        voices,
        admission,
        metrics,
        config,
        in_flight: Arc::new(InFlight::default()),
        shutting_down: AtomicBool::new(false),
    });
    let app = routes::router(state.clone());
    on_ready(addr);
    let st = state.clone();
    let shutdown = async move {
        wait_for_signal().await;
        st.shutting_down.store(true, Ordering::SeqCst);
        st.admission.close();
        let grace = st.config.shutdown_grace;
        tracing::warn!(
            "shutting down: no new requests; work in flight has {} s to finish",
            grace.as_secs_f64()
        );
        let st2 = st.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let n = st2.in_flight.cancel_all();
            if n > 0 {
                tracing::warn!("shutdown grace over: cancelled {n} synthesis(es)");
            }
        });
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::runtime(format!("server: {e}")))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // No signal handling: run until killed.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}
