//! The HTTP routes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt as _;

use super::queue::{Refused, Slot};
use super::AppState;
use crate::openai::{self, ApiError, Delivery};

type St = State<Arc<AppState>>;

const SPEECH: &str = "/v1/audio/speech";
const VOICES: &str = "/v1/audio/voices";

pub(crate) fn router(state: Arc<AppState>) -> Router {
    // The speech body: the input (4 bytes a character at most) and the other fields.
    let speech_limit = state.config.limits.max_input_chars * 4 + (64 << 10);
    let upload_limit = state.config.max_upload_bytes + (64 << 10);
    Router::new()
        .route(
            SPEECH,
            post(speech).layer(DefaultBodyLimit::max(speech_limit)),
        )
        .route(
            VOICES,
            get(list_voices)
                .post(upload_voice)
                .layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/v1/audio/voices/{name}", delete(delete_voice))
        .route("/v1/models", get(models))
        .route("/metrics", get(metrics))
        .route("/admin/unload", post(unload))
        .route("/health", get(health))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state)
}

/// An [`ApiError`] as a response.
struct Failure(ApiError);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = (status, self.0.body()).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.0.status == 429 {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

fn json(status: StatusCode, value: serde_json::Value) -> Response {
    let mut r = (status, value.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Counts a request once: with the status it was given, or 499 when dropped before
/// (its client went away).
struct Tracker {
    state: Arc<AppState>,
    route: &'static str,
    status: Option<u16>,
}

impl Tracker {
    fn new(state: &Arc<AppState>, route: &'static str) -> Tracker {
        Tracker {
            state: state.clone(),
            route,
            status: None,
        }
    }

    fn finish(mut self, status: u16) {
        self.status = Some(status);
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.state
            .metrics
            .count(self.route, self.status.unwrap_or(499));
    }
}

/// Sets a cancel flag when dropped (the handler's future or the response body went away).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Constant-time comparison of the presented key with the configured one.
fn same_key(given: &[u8], expected: &[u8]) -> bool {
    if given.len() != expected.len() {
        return false;
    }
    given
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

async fn authorize(State(st): St, req: Request, next: Next) -> Response {
    let Some(key) = &st.config.api_key else {
        return next.run(req).await;
    };
    if req.uri().path() == "/health" {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(k) if same_key(k.as_bytes(), key.as_bytes()) => next.run(req).await,
        Some(_) => {
            st.metrics.count("auth", 401);
            Failure(ApiError::unauthorized("incorrect API key provided")).into_response()
        }
        None => {
            st.metrics.count("auth", 401);
            Failure(ApiError::unauthorized(
                "missing API key: send `Authorization: Bearer KEY`",
            ))
            .into_response()
        }
    }
}

async fn admit(st: &Arc<AppState>) -> Result<Slot, ApiError> {
    if st.shutting_down.load(Ordering::SeqCst) {
        return Err(ApiError::unavailable("the server is shutting down"));
    }
    st.admission.admit().await.map_err(|r| match r {
        Refused::QueueFull => ApiError::queue_full(format!(
            "the queue is full ({} running, {} waiting); retry later",
            st.config.concurrency, st.config.max_queue
        )),
        Refused::Closed => ApiError::unavailable("the server is shutting down"),
    })
}

fn body_bytes(body: Result<Bytes, BytesRejection>, limit_what: &str) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(format!("the request body is larger than {limit_what}"))
        } else {
            ApiError::bad_request(format!("cannot read the request body: {e}"))
        }
    })
}

type Piece = Result<Bytes, ApiError>;

async fn speech(State(st): St, body: Result<Bytes, BytesRejection>) -> Response {
    let start = Instant::now();
    let tracker = Tracker::new(&st, SPEECH);
    match speech_inner(&st, body, start, tracker).await {
        Ok(r) => r,
        Err((e, tracker)) => {
            tracker.finish(e.status);
            Failure(e).into_response()
        }
    }
}

async fn speech_inner(
    st: &Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
    start: Instant,
    tracker: Tracker,
) -> Result<Response, (ApiError, Tracker)> {
    let limit = format!("{} characters of input", st.config.limits.max_input_chars);
    let body = match body_bytes(body, &limit) {
        Ok(b) => b,
        Err(e) => return Err((e, tracker)),
    };
    let job = match openai::parse_speech(&body, &st.engine, &st.config.limits) {
        Ok(j) => j,
        Err(e) => return Err((e, tracker)),
    };
    let slot = match admit(st).await {
        Ok(s) => s,
        Err(e) => return Err((e, tracker)),
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let guard = CancelOnDrop(cancel.clone());
    let (tx, mut rx) = mpsc::channel::<Piece>(64);
    let delivery = job.delivery;
    let content_type = job.content_type();
    let timeout = st.config.request_timeout;
    let timer = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            cancel.store(true, Ordering::SeqCst);
        })
    };
    let timed_out = {
        let timer = timer.abort_handle();
        move || timer.is_finished()
    };
    let worker = {
        let st = st.clone();
        let cancel = cancel.clone();
        move || {
            let _slot = slot;
            let _entry = st.in_flight.register(cancel.clone());
            let outcome = st.voices.get(&job.voice, &st.engine).and_then(|voice| {
                let mut first = true;
                openai::run_speech(&st.engine, &job, &voice, &cancel, &mut |piece| {
                    if first {
                        first = false;
                        st.metrics
                            .first_audio
                            .observe(start.elapsed().as_secs_f64());
                    }
                    tx.blocking_send(Ok(Bytes::copy_from_slice(piece))).is_ok()
                })
                .map_err(|e| {
                    if e.kind() == crate::ErrorKind::Cancelled && timer.is_finished() {
                        ApiError::timeout(format!(
                            "the synthesis ran past the request timeout ({} s)",
                            timeout.as_secs_f64()
                        ))
                    } else {
                        ApiError::from_engine(&e)
                    }
                })
            });
            timer.abort();
            match outcome {
                Ok(o) => {
                    let m = &st.metrics;
                    m.latency.observe(start.elapsed().as_secs_f64());
                    if o.audio_s > 0.0 {
                        m.rtf.observe(o.stages.total_s / o.audio_s);
                    }
                    m.audio_seconds.inc_by(o.audio_s);
                    tracker.finish(200);
                }
                Err(e) => {
                    if e.status >= 500 && e.status != 503 && e.status != 504 {
                        tracing::error!("speech request failed: {}", e.message);
                    }
                    tracker.finish(e.status);
                    let _ = tx.blocking_send(Err(e));
                }
            }
        }
    };
    tokio::task::spawn_blocking(worker);
    // Headers leave with the first bytes (or the error, as a proper status).
    let first = rx.recv().await;
    let first = match first {
        Some(Ok(b)) => b,
        Some(Err(e)) => return Ok(Failure(e).into_response()),
        None => {
            let e = if timed_out() {
                ApiError::timeout("the synthesis ran past the request timeout")
            } else {
                ApiError::internal("the synthesis ended without output")
            };
            return Ok(Failure(e).into_response());
        }
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if delivery == Delivery::Whole {
        // The file is all there; the worker's bookkeeping ends with the channel.
        while let Some(more) = rx.recv().await {
            if let Err(e) = more {
                return Ok(Failure(e).into_response());
            }
        }
        drop(guard);
        return Ok((StatusCode::OK, headers, first).into_response());
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // The rest as it comes; an error after the headers aborts the body (the client sees a
    // truncated response, never a clean end). Dropping the body cancels the synthesis.
    let rest = ReceiverStream::new(rx).map(move |piece| {
        let _keep = &guard;
        piece.map_err(|e| std::io::Error::other(e.message))
    });
    let stream = tokio_stream::once(Ok::<Bytes, std::io::Error>(first)).chain(rest);
    Ok((StatusCode::OK, headers, Body::from_stream(stream)).into_response())
}

async fn list_voices(State(st): St) -> Response {
    let tracker = Tracker::new(&st, VOICES);
    match st.voices.list() {
        Ok(list) => {
            tracker.finish(200);
            let data: Vec<_> = list.into_iter().map(|v| v.to_json()).collect();
            json(
                StatusCode::OK,
                serde_json::json!({"object": "list", "data": data}),
            )
        }
        Err(e) => {
            tracker.finish(e.status);
            Failure(e).into_response()
        }
    }
}

#[derive(serde::Deserialize)]
struct UploadQuery {
    name: Option<String>,
    overwrite: Option<bool>,
}

/// `POST /v1/audio/voices`: multipart (`name`, `file`, optional `overwrite`), or a WAV body
/// with `?name=NAME[&overwrite=true]`.
async fn upload_voice(State(st): St, query: Query<UploadQuery>, req: Request) -> Response {
    let tracker = Tracker::new(&st, VOICES);
    let result = upload_inner(&st, query.0, req).await;
    let (status, r) = match result {
        Ok(info) => (201, json(StatusCode::CREATED, info.to_json())),
        Err(e) => (e.status, Failure(e).into_response()),
    };
    tracker.finish(status);
    r
}

async fn upload_inner(
    st: &Arc<AppState>,
    query: UploadQuery,
    req: Request,
) -> Result<openai::VoiceInfo, ApiError> {
    let limit = format!("{} bytes", st.config.max_upload_bytes);
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let (mut name, mut overwrite, mut file) = (query.name, query.overwrite.unwrap_or(false), None);
    if is_multipart {
        let mut form = Multipart::from_request(req, &())
            .await
            .map_err(|e| ApiError::bad_request(format!("bad multipart body: {e}")))?;
        loop {
            let field = form.next_field().await.map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::too_large(format!("the upload is larger than {limit}"))
                } else {
                    ApiError::bad_request(format!("bad multipart body: {e}"))
                }
            })?;
            let Some(field) = field else { break };
            let field_name = field.name().unwrap_or_default().to_string();
            let data = field.bytes().await.map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::too_large(format!("the upload is larger than {limit}"))
                } else {
                    ApiError::bad_request(format!("bad multipart field `{field_name}`: {e}"))
                }
            })?;
            match field_name.as_str() {
                "file" => file = Some(data),
                "name" => name = Some(String::from_utf8_lossy(&data).trim().to_string()),
                "overwrite" => {
                    overwrite = matches!(String::from_utf8_lossy(&data).trim(), "true" | "1")
                }
                other => {
                    return Err(ApiError::invalid(
                        other,
                        format!("unknown form field `{other}` (expected name, file, overwrite)"),
                    ))
                }
            }
        }
    } else {
        let body = Bytes::from_request(req, &()).await;
        file = Some(body_bytes(body, &limit)?);
    }
    let name = name.ok_or_else(|| ApiError::invalid("name", "missing the voice `name`"))?;
    openai::voices::check_name(&name).map_err(|e| ApiError {
        param: Some("name".into()),
        ..e
    })?;
    let file = file.ok_or_else(|| ApiError::invalid("file", "missing the WAV `file`"))?;
    if file.len() > st.config.max_upload_bytes {
        return Err(ApiError::too_large(format!(
            "the upload is larger than {limit}"
        )));
    }
    let slot = admit(st).await?;
    let st2 = st.clone();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        st2.voices.add(&st2.engine, &name, &file, overwrite)
    })
    .await
    .map_err(|e| ApiError::internal(format!("voice upload task: {e}")))?
}

async fn delete_voice(State(st): St, Path(name): Path<String>) -> Response {
    let tracker = Tracker::new(&st, VOICES);
    match st.voices.remove(&name) {
        Ok(()) => {
            tracker.finish(200);
            json(
                StatusCode::OK,
                serde_json::json!({"id": name, "object": "voice", "deleted": true}),
            )
        }
        Err(e) => {
            tracker.finish(e.status);
            Failure(e).into_response()
        }
    }
}

async fn models(State(st): St) -> Response {
    st.metrics.count("/v1/models", 200);
    let data: Vec<_> = openai::model_names(st.engine.family())
        .into_iter()
        .map(|id| serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": "chatterbox-ort"}))
        .collect();
    json(
        StatusCode::OK,
        serde_json::json!({"object": "list", "data": data}),
    )
}

async fn metrics(State(st): St) -> Response {
    st.metrics.count("/metrics", 200);
    let mut r = st.metrics.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

async fn unload(State(st): St) -> Response {
    st.metrics.count("/admin/unload", 200);
    let before = st.engine.host().stats().sessions_destroyed();
    let st2 = st.clone();
    let _ = tokio::task::spawn_blocking(move || st2.engine.host().release_idle()).await;
    let host = st.engine.host();
    let loaded: Vec<&str> = crate::residency::Component::ALL
        .into_iter()
        .filter(|c| host.is_loaded(*c))
        .map(|c| c.name())
        .collect();
    json(
        StatusCode::OK,
        serde_json::json!({
            "sessions_destroyed": host.stats().sessions_destroyed() - before,
            "loaded": loaded,
            "note": if loaded.is_empty() { "every session is unloaded" } else { "resident components (or those in use) stay loaded" },
        }),
    )
}

async fn health(State(st): St) -> Response {
    let down = st.shutting_down.load(Ordering::SeqCst);
    let status = if down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    st.metrics.count("/health", status.as_u16());
    json(
        status,
        serde_json::json!({
            "status": if down { "shutting_down" } else { "ok" },
            "model": openai::model_id(st.engine.family()),
            "queue_depth": st.admission.waiting(),
            "running": st.admission.running(),
            "voices_cached": st.voices.cached(),
        }),
    )
}

async fn not_found(State(st): St, req: Request) -> Response {
    st.metrics.count("other", 404);
    Failure(ApiError::not_found(
        "not_found",
        format!("no route {} {}", req.method(), req.uri().path()),
    ))
    .into_response()
}
