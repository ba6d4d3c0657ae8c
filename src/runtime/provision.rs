//! Finding the ONNX Runtime shared library.
//!
//! Search order (first hit wins):
//! 1. the path given in [`RuntimeOptions::library_path`](super::RuntimeOptions::library_path);
//! 2. the `ORT_DYLIB_PATH` environment variable;
//! 3. next to the current executable, then next to the shared library this crate is built
//!    into (the cdylib), by file name ([`DYLIB_NAME`], then `libonnxruntime.so`);
//! 4. the path `build.rs` downloaded the library to ([`BUILD_DEFAULT_DYLIB`]).
//!
//! An explicit path (1 or 2) that does not exist is an error rather than a fall-through:
//! the user asked for that file.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The library file name `build.rs` provisioned (`libonnxruntime.so.1.32.0` by default).
pub const DYLIB_NAME: &str = match option_env!("CHATTERBOX_ORT_DYLIB_NAME") {
    Some(name) => name,
    None => "libonnxruntime.so",
};

/// The absolute path `build.rs` provisioned the library to, if it did.
pub const BUILD_DEFAULT_DYLIB: Option<&str> = option_env!("CHATTERBOX_ORT_DEFAULT_DYLIB");

/// How the library path was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LibrarySource {
    /// Given in the runtime options.
    Explicit,
    /// From `ORT_DYLIB_PATH`.
    EnvVar,
    /// Next to the running executable.
    BesideExecutable,
    /// Next to the shared library containing this crate.
    BesideLibrary,
    /// The path `build.rs` downloaded to.
    BuildDefault,
}

/// Resolves the ONNX Runtime library path per the module's search order.
pub fn find_library(explicit: Option<&Path>) -> Result<(PathBuf, LibrarySource)> {
    if let Some(p) = explicit {
        return existing(p, "the library path given in the options")
            .map(|p| (p, LibrarySource::Explicit));
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) {
        return existing(Path::new(&p), "ORT_DYLIB_PATH").map(|p| (p, LibrarySource::EnvVar));
    }
    let mut looked = Vec::new();
    let names: &[&str] = if DYLIB_NAME == "libonnxruntime.so" {
        &["libonnxruntime.so"]
    } else {
        &[DYLIB_NAME, "libonnxruntime.so"]
    };
    let dirs = [
        (exe_dir(), LibrarySource::BesideExecutable),
        (own_library_dir(), LibrarySource::BesideLibrary),
    ];
    for (dir, source) in dirs {
        let Some(dir) = dir else { continue };
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok((candidate, source));
            }
            looked.push(candidate);
        }
    }
    if let Some(p) = BUILD_DEFAULT_DYLIB {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok((p, LibrarySource::BuildDefault));
        }
        looked.push(p);
    }
    let list: Vec<String> = looked.iter().map(|p| p.display().to_string()).collect();
    Err(Error::runtime(format!(
        "ONNX Runtime library not found (looked at: {}); set ORT_DYLIB_PATH to a libonnxruntime.so >= 1.31, \
         or rebuild with network access so build.rs can download it",
        if list.is_empty() { "nothing".to_string() } else { list.join(", ") }
    )))
}

fn existing(p: &Path, what: &str) -> Result<PathBuf> {
    if p.is_file() {
        Ok(std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()))
    } else {
        Err(Error::runtime(format!(
            "ONNX Runtime library `{}` ({what}) does not exist or is not a file",
            p.display()
        )))
    }
}

fn exe_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
}

/// Folder of the shared object containing this function (the cdylib when loaded from C or
/// Python; the executable itself otherwise).
#[cfg(unix)]
fn own_library_dir() -> Option<PathBuf> {
    use std::ffi::CStr;
    use std::os::unix::ffi::OsStrExt;
    let mut info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    let addr = own_library_dir as *const libc::c_void;
    // SAFETY: dladdr only reads the address and fills `info`; dli_fname is a NUL-terminated
    // string owned by the loader that stays valid while the object is loaded.
    let ok = unsafe { libc::dladdr(addr, &mut info) };
    if ok == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: checked non-null above; the loader guarantees NUL termination.
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes()));
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    path.parent().map(Path::to_path_buf)
}

#[cfg(not(unix))]
fn own_library_dir() -> Option<PathBuf> {
    None
}

/// Reads the version string of an ONNX Runtime library without handing it to `ort`.
///
/// The library is opened and `OrtGetApiBase()->GetVersionString()` is called. The handle is
/// returned with the version: keep it while `ort` opens the same file, so the library is not
/// unloaded and reloaded in between.
pub fn library_version(path: &Path) -> Result<(libloading::Library, String)> {
    // SAFETY: loading a shared library runs its initialisers; the caller chose this path as
    // an ONNX Runtime library. We only call the documented C entry point.
    let lib = unsafe { libloading::Library::new(path) }
        .map_err(|e| Error::runtime(format!("cannot load `{}`: {e}", path.display())))?;
    type GetApiBase = unsafe extern "C" fn() -> *const ort::sys::OrtApiBase;
    // SAFETY: the symbol, when present, has this signature in every ONNX Runtime release.
    let get: libloading::Symbol<GetApiBase> =
        unsafe { lib.get(b"OrtGetApiBase\0") }.map_err(|_| {
            Error::runtime(format!(
                "`{}` is not an ONNX Runtime library (no OrtGetApiBase symbol)",
                path.display()
            ))
        })?;
    // SAFETY: OrtGetApiBase takes no arguments and returns a pointer to a static struct.
    let base = unsafe { get() };
    if base.is_null() {
        return Err(Error::runtime(format!(
            "`{}`: OrtGetApiBase returned null",
            path.display()
        )));
    }
    // SAFETY: `base` is non-null and points to the library's static OrtApiBase; the returned
    // string is static and NUL-terminated.
    let version = unsafe {
        let s = ((*base).GetVersionString)();
        if s.is_null() {
            return Err(Error::runtime(format!(
                "`{}`: GetVersionString returned null",
                path.display()
            )));
        }
        std::ffi::CStr::from_ptr(s).to_string_lossy().into_owned()
    };
    Ok((lib, version))
}

/// Parses `major.minor` from a version string like `1.32.0`.
pub fn parse_major_minor(version: &str) -> Option<(u32, u32)> {
    let mut it = version.split('.');
    let major = it.next()?.trim().parse().ok()?;
    let minor = it.next()?.trim().parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_parsing() {
        assert_eq!(parse_major_minor("1.32.0"), Some((1, 32)));
        assert_eq!(parse_major_minor("1.31.1"), Some((1, 31)));
        assert_eq!(parse_major_minor("garbage"), None);
    }
}
