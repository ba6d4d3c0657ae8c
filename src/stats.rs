//! Memory sampling: process RSS and peak from `/proc/self/status`, device memory through
//! NVML (`libnvidia-ml.so.1`, opened at run time; "n/a" where it does not load).

use std::path::Path;
use std::sync::OnceLock;

use serde::Serialize;

/// Current resident set size (VmRSS) in bytes, where the platform reports it.
pub fn rss_bytes() -> Option<u64> {
    status_kib("VmRSS:").map(|k| k * 1024)
}

/// Peak resident set size since start or the last [`reset_peak_rss`] (VmHWM), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    status_kib("VmHWM:").map(|k| k * 1024)
}

/// Resets the peak RSS to the current RSS (Linux: writes `5` to `/proc/self/clear_refs`).
/// Returns false where that is refused.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn status_kib(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(Path::new("/proc/self/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Returns freed heap memory to the system (glibc `malloc_trim(0)`; no-op elsewhere).
///
/// Dropping a session frees its memory, but glibc keeps freed small and medium blocks; this
/// hands them back so RSS reflects what is really in use.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory held by glibc's allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Memory of one GPU as NVML reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DeviceMemory {
    /// Device index.
    pub device: u32,
    /// Bytes in use (all processes).
    pub used_bytes: u64,
    /// Total bytes.
    pub total_bytes: u64,
}

/// Device memory, or "n/a" when NVML is not available; serializes as an object or `"n/a"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum DeviceMemoryReport {
    /// NVML answered.
    Available(DeviceMemory),
    /// No NVML (no NVIDIA driver) or no such device.
    #[serde(serialize_with = "serialize_na")]
    NotAvailable,
}

fn serialize_na<S: serde::Serializer>(s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str("n/a")
}

/// Samples device `device`'s memory through NVML.
pub fn device_memory(device: u32) -> DeviceMemoryReport {
    match nvml().and_then(|n| n.memory(device)) {
        Some(m) => DeviceMemoryReport::Available(m),
        None => DeviceMemoryReport::NotAvailable,
    }
}

#[repr(C)]
#[derive(Default)]
struct NvmlMemory {
    total: u64,
    free: u64,
    used: u64,
}

type NvmlDevice = *mut std::ffi::c_void;
type InitFn = unsafe extern "C" fn() -> i32;
type HandleFn = unsafe extern "C" fn(u32, *mut NvmlDevice) -> i32;
type MemFn = unsafe extern "C" fn(NvmlDevice, *mut NvmlMemory) -> i32;

struct Nvml {
    _lib: libloading::Library,
    handle: HandleFn,
    memory: MemFn,
}

impl Nvml {
    fn load() -> Option<Nvml> {
        // SAFETY: libnvidia-ml is the NVIDIA driver's management library; loading it runs no
        // user-visible initialisers, and the symbols below have these C signatures (nvml.h).
        unsafe {
            let lib = ["libnvidia-ml.so.1", "libnvidia-ml.so"]
                .iter()
                .find_map(|name| libloading::Library::new(*name).ok())?;
            let init: InitFn = *lib.get::<InitFn>(b"nvmlInit_v2\0").ok()?;
            let handle: HandleFn = *lib
                .get::<HandleFn>(b"nvmlDeviceGetHandleByIndex_v2\0")
                .ok()?;
            let memory: MemFn = *lib.get::<MemFn>(b"nvmlDeviceGetMemoryInfo\0").ok()?;
            if init() != 0 {
                return None;
            }
            Some(Nvml {
                _lib: lib,
                handle,
                memory,
            })
        }
    }

    fn memory(&self, device: u32) -> Option<DeviceMemory> {
        let mut dev: NvmlDevice = std::ptr::null_mut();
        let mut mem = NvmlMemory::default();
        // SAFETY: NVML was initialised in `load`; out-pointers are valid for the calls.
        unsafe {
            if (self.handle)(device, &mut dev) != 0 || dev.is_null() {
                return None;
            }
            if (self.memory)(dev, &mut mem) != 0 {
                return None;
            }
        }
        Some(DeviceMemory {
            device,
            used_bytes: mem.used,
            total_bytes: mem.total,
        })
    }
}

// SAFETY: NVML is thread-safe after nvmlInit; the struct only holds the library handle and
// plain function pointers.
unsafe impl Send for Nvml {}
// SAFETY: as above.
unsafe impl Sync for Nvml {}

fn nvml() -> Option<&'static Nvml> {
    static NVML: OnceLock<Option<Nvml>> = OnceLock::new();
    NVML.get_or_init(Nvml::load).as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_reported_on_linux() {
        if cfg!(target_os = "linux") {
            let rss = rss_bytes().unwrap();
            let peak = peak_rss_bytes().unwrap();
            assert!(rss > 0 && peak >= rss, "rss {rss} peak {peak}");
        }
    }

    #[test]
    fn device_report_serializes() {
        let na = serde_json::to_string(&DeviceMemoryReport::NotAvailable).unwrap();
        assert_eq!(na, "\"n/a\"");
        let m = DeviceMemoryReport::Available(DeviceMemory {
            device: 0,
            used_bytes: 1,
            total_bytes: 2,
        });
        assert!(serde_json::to_string(&m)
            .unwrap()
            .contains("\"used_bytes\":1"));
        // Must not panic without a driver.
        let _ = device_memory(0);
    }
}
