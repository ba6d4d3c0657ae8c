//! The only module that talks to ONNX Runtime (through the `ort` crate).
//!
//! [`init`] loads `libonnxruntime` once per process (see [`provision`] for the search order)
//! and must succeed before anything else here is used: every other function returns a
//! `Runtime` error until it has. [`Session`] is one component's session, checked against the
//! manifest at creation; [`Value`] is an owned tensor. [`Session::run_in_place`] binds state
//! (a KV cache, [`StateTensor`]) as both input and output so the graph updates it in place.

pub mod provision;
mod session;
mod value;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

pub use provision::LibrarySource;
pub use session::{
    ConvAlgoSearch, CudaOptions, ModelBytes, Outputs, Session, SessionOptions, SessionTimings,
    StateTensor, Target,
};
pub use value::Value;

use crate::error::{Error, Result};

/// The oldest ONNX Runtime minor version (`1.x`) that `ort` 2.0.0-rc.15 accepts.
pub const MIN_ORT_MINOR: u32 = 31;

/// Process-wide ONNX Runtime options, given to [`init`].
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// Explicit `libonnxruntime` path (highest priority in the search order).
    pub library_path: Option<PathBuf>,
    /// Allow ONNX Runtime's telemetry. Off by default: `ORT_DISABLE_TELEMETRY=1` is set in the
    /// process environment before the library is loaded.
    pub telemetry: bool,
}

/// Which execution provider runs the graphs (engine-level choice; the residency host turns it
/// into a [`Target`] per component).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// ONNX Runtime's CPU provider.
    #[default]
    Cpu,
    /// CUDA on the given device; an error if it cannot be used.
    Cuda {
        /// CUDA device ordinal.
        device: u32,
    },
    /// CUDA on the given device when it can be used, else the CPU.
    Auto {
        /// CUDA device ordinal.
        device: u32,
    },
}

impl std::str::FromStr for Provider {
    type Err = Error;

    /// `cpu`, `cuda`, `cuda:N`, `auto`, `auto:N`.
    fn from_str(s: &str) -> Result<Provider> {
        let (name, device) = match s.split_once(':') {
            Some((n, d)) => {
                let d = d.parse::<u32>().map_err(|_| {
                    Error::invalid_argument("provider", format!("bad device ordinal in `{s}`"))
                })?;
                (n, d)
            }
            None => (s, 0),
        };
        match name.to_ascii_lowercase().as_str() {
            "cpu" => Ok(Provider::Cpu),
            "cuda" => Ok(Provider::Cuda { device }),
            "auto" => Ok(Provider::Auto { device }),
            _ => Err(Error::invalid_argument(
                "provider",
                format!("`{s}` is not one of cpu, cuda[:N], auto[:N]"),
            )),
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Provider::Cpu => f.write_str("cpu"),
            Provider::Cuda { device } => write!(f, "cuda:{device}"),
            Provider::Auto { device } => write!(f, "auto:{device}"),
        }
    }
}

/// What [`init`] loaded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuntimeInfo {
    /// The library file.
    pub library_path: PathBuf,
    /// How it was found.
    pub source: LibrarySource,
    /// Its version string (e.g. `1.32.0`).
    pub version: String,
}

struct RuntimeState {
    info: RuntimeInfo,
    env: ort::environment::Environment,
    _probe: libloading::Library,
}

static STATE: OnceLock<RuntimeState> = OnceLock::new();
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// Loads ONNX Runtime and creates the process's environment. Call once per process; a second
/// call with the same resolved library is a no-op, with another library an error.
///
/// Errors (never panics): the library is missing, is not ONNX Runtime, or is older than 1.31.
pub fn init(opts: &RuntimeOptions) -> Result<()> {
    let _guard = INIT_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let (path, source) = provision::find_library(opts.library_path.as_deref())?;
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    if let Some(state) = STATE.get() {
        if state.info.library_path == path {
            return Ok(());
        }
        return Err(Error::runtime(format!(
            "already initialised with `{}`; cannot switch to `{}` in the same process",
            state.info.library_path.display(),
            path.display()
        )));
    }
    if !opts.telemetry && std::env::var_os("ORT_DISABLE_TELEMETRY").is_none() {
        // Setting the variable before the library is loaded is what stops the PyPI build's
        // telemetry (see docs RUNTIME.md). Done under INIT_LOCK, before any ORT thread exists.
        std::env::set_var("ORT_DISABLE_TELEMETRY", "1");
    }
    let (probe, version) = provision::library_version(&path)?;
    match provision::parse_major_minor(&version) {
        Some((1, minor)) if minor >= MIN_ORT_MINOR => {}
        _ => {
            return Err(Error::runtime(format!(
                "`{}` is ONNX Runtime {version}; this engine needs >= 1.{MIN_ORT_MINOR}",
                path.display()
            )))
        }
    }
    let builder = ort::init_from(&path)
        .map_err(|e| Error::runtime(format!("loading `{}`: {e}", path.display())))?;
    let env = builder
        .with_name("chatterbox-ort")
        .with_telemetry(opts.telemetry)
        .build()
        .map_err(|e| Error::runtime(format!("creating the environment: {e}")))?;
    tracing::info!(path = %path.display(), %version, ?source, "ONNX Runtime loaded");
    let state = RuntimeState {
        info: RuntimeInfo {
            library_path: path,
            source,
            version,
        },
        env,
        _probe: probe,
    };
    // Cannot fail: INIT_LOCK is held and STATE was empty above.
    let _ = STATE.set(state);
    Ok(())
}

/// The environment variable naming the session cache folder (`off` disables it).
pub const SESSION_CACHE_ENV: &str = "CHATTERBOX_ORT_SESSION_CACHE";

/// The default folder of the session cache ([`SessionOptions::optimized_model_cache`]):
/// `$CHATTERBOX_ORT_SESSION_CACHE` (`off`, `none`, `0` or empty: no cache), else
/// `$XDG_CACHE_HOME/chatterbox-ort/sessions`, else `$HOME/.cache/chatterbox-ort/sessions`.
pub fn default_session_cache_dir() -> Option<PathBuf> {
    if let Some(v) = std::env::var_os(SESSION_CACHE_ENV) {
        let s = v.to_string_lossy();
        return match s.trim().to_ascii_lowercase().as_str() {
            "" | "off" | "none" | "0" => None,
            _ => Some(PathBuf::from(v)),
        };
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("chatterbox-ort").join("sessions"))
}

/// Whether [`init`] has succeeded in this process.
pub fn is_initialized() -> bool {
    STATE.get().is_some()
}

/// What was loaded, once [`init`] succeeded.
pub fn info() -> Result<RuntimeInfo> {
    state().map(|s| s.info.clone())
}

fn state() -> Result<&'static RuntimeState> {
    STATE
        .get()
        .ok_or_else(|| Error::runtime("ONNX Runtime is not initialised: call runtime::init first"))
}

pub(crate) fn environment() -> Result<&'static ort::environment::Environment> {
    state().map(|s| &s.env)
}

/// The loaded ONNX Runtime's version string (e.g. `1.32.0`).
pub fn onnxruntime_version() -> Result<String> {
    state().map(|s| s.info.version.clone())
}

/// The execution providers compiled into the loaded ONNX Runtime
/// (e.g. `["CPUExecutionProvider"]`, plus `CUDAExecutionProvider` for the CUDA flavour).
pub fn available_providers() -> Result<Vec<String>> {
    state()?;
    let api = ort::api();
    let mut list: *mut *mut std::ffi::c_char = std::ptr::null_mut();
    let mut len: std::ffi::c_int = 0;
    // SAFETY: the library is loaded (checked above); the out-pointers are valid.
    let status = unsafe { (api.GetAvailableProviders)(&mut list, &mut len) };
    status_to_result(status, "GetAvailableProviders")?;
    if list.is_null() || len <= 0 {
        return Ok(Vec::new());
    }
    let mut out = Vec::with_capacity(len as usize);
    for i in 0..len as usize {
        // SAFETY: ORT returned `len` valid NUL-terminated strings.
        let s = unsafe { *list.add(i) };
        if !s.is_null() {
            // SAFETY: non-null, NUL-terminated, owned by ORT until released below.
            out.push(
                unsafe { std::ffi::CStr::from_ptr(s) }
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    // SAFETY: releasing exactly what GetAvailableProviders returned.
    let status = unsafe { (api.ReleaseAvailableProviders)(list, len) };
    status_to_result(status, "ReleaseAvailableProviders")?;
    Ok(out)
}

fn status_to_result(status: ort::sys::OrtStatusPtr, what: &str) -> Result<()> {
    if status.0.is_null() {
        return Ok(());
    }
    let api = ort::api();
    // SAFETY: a non-null status from ORT; its message is valid until ReleaseStatus.
    let msg = unsafe {
        let m = (api.GetErrorMessage)(status.0);
        let text = if m.is_null() {
            String::from("(no message)")
        } else {
            std::ffi::CStr::from_ptr(m).to_string_lossy().into_owned()
        };
        (api.ReleaseStatus)(status.0);
        text
    };
    Err(Error::runtime(format!("{what}: {msg}")))
}

/// Returns the directory where `build.rs` put the library, if it did (for `info` output).
pub fn build_default_library() -> Option<&'static Path> {
    provision::BUILD_DEFAULT_DYLIB.map(Path::new)
}
