//! Provisions the ONNX Runtime shared library (the crate uses `ort` with `load-dynamic`, so
//! nothing is linked; the library is found at run time).
//!
//! Downloads the official PyPI wheel once (pinned URL, sha256-checked), extracts the
//! library into a cache folder and copies it next to the build outputs
//! (`target/<profile>/`). Passes the cached path to the crate as
//! `CHATTERBOX_ORT_DEFAULT_DYLIB` (the last fallback of `runtime::init`).
//!
//! Environment:
//! - `CHATTERBOX_ORT_FLAVOR`: `cpu` (default, onnxruntime 1.32.0) or `cuda`
//!   (onnxruntime-gpu 1.31.1, CUDA 13 / cuDNN 9).
//! - `CHATTERBOX_ORT_CACHE`: cache root (default `~/.cache/chatterbox-ort`); the library goes
//!   to `<root>/onnxruntime-<version>/` (or `onnxruntime-gpu-<version>/`).
//! - `CHATTERBOX_ORT_NO_DOWNLOAD=1`: never download; use the cache if it is already there.
//!
//! Never fails the build: on other platforms, offline, or on a checksum error it prints a
//! `cargo:warning` and the runtime reports a clear error at `init` (or uses `ORT_DYLIB_PATH`).

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

struct Flavor {
    dir_name: &'static str,
    url: &'static str,
    wheel_sha256: &'static str,
    /// Members of the wheel to extract; the first is the main library.
    members: &'static [&'static str],
}

const CPU: Flavor = Flavor {
    dir_name: "onnxruntime-1.32.0",
    url: "https://files.pythonhosted.org/packages/a3/81/55845186c20cba59f614991f4065dea148e48eeb9749893768c85ce64327/onnxruntime-1.32.0-cp312-cp312-manylinux_2_28_x86_64.whl",
    wheel_sha256: "99e1074c4b2197accd5073052a465361be17b89c093b8ffb6e6bd8f986c52df8",
    members: &["onnxruntime/capi/libonnxruntime.so.1.32.0"],
};

const CUDA: Flavor = Flavor {
    dir_name: "onnxruntime-gpu-1.31.1",
    url: "https://files.pythonhosted.org/packages/22/97/9531b4d9e566cf2a0f04b4b5c26a3bc0ef2e2e0b6bc943a02c0eead98cf7/onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl",
    wheel_sha256: "05d548956197b9d01f59b625de740e0d6be3593f874e241a12dc0362650ecdf7",
    members: &[
        "onnxruntime/capi/libonnxruntime.so.1.31.1",
        "onnxruntime/capi/libonnxruntime_providers_shared.so",
        "onnxruntime/capi/libonnxruntime_providers_cuda.so",
    ],
};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for var in [
        "CHATTERBOX_ORT_FLAVOR",
        "CHATTERBOX_ORT_CACHE",
        "CHATTERBOX_ORT_NO_DOWNLOAD",
        "HOME",
        "SSL_CERT_FILE",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let flavor = match std::env::var("CHATTERBOX_ORT_FLAVOR").as_deref() {
        Ok("cuda") => &CUDA,
        Ok("cpu") | Ok("") | Err(_) => &CPU,
        Ok(other) => {
            warn(&format!(
                "CHATTERBOX_ORT_FLAVOR={other} is not `cpu` or `cuda`; using the CPU build"
            ));
            &CPU
        }
    };
    let main_name = file_name(flavor.members[0]);
    println!("cargo:rustc-env=CHATTERBOX_ORT_DYLIB_NAME={main_name}");

    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if os != "linux" || arch != "x86_64" {
        warn(&format!(
            "no pinned ONNX Runtime download for {os}-{arch}; set ORT_DYLIB_PATH at run time to a libonnxruntime >= 1.31"
        ));
        return;
    }

    let Some(cache) = cache_dir(flavor) else {
        warn("no cache folder (HOME and CHATTERBOX_ORT_CACHE unset); ONNX Runtime not provisioned");
        return;
    };
    let no_download = std::env::var("CHATTERBOX_ORT_NO_DOWNLOAD").is_ok_and(|v| v == "1");
    match provision(flavor, &cache, no_download) {
        Ok(()) => {
            let lib = cache.join(main_name);
            println!("cargo:rustc-env=CHATTERBOX_ORT_DEFAULT_DYLIB={}", lib.display());
            // Deleting the cached copy provisions it again on the next build.
            println!("cargo:rerun-if-changed={}", lib.display());
            if let Some(profile_dir) = profile_dir() {
                for member in flavor.members {
                    let name = file_name(member);
                    if let Err(e) = copy_if_changed(&cache.join(name), &profile_dir.join(name)) {
                        warn(&format!("could not copy {name} to {}: {e}", profile_dir.display()));
                    }
                }
            }
        }
        Err(e) => warn(&format!(
            "ONNX Runtime not provisioned ({e}); set ORT_DYLIB_PATH at run time to a libonnxruntime >= 1.31"
        )),
    }
}

fn warn(msg: &str) {
    println!("cargo:warning={msg}");
}

fn file_name(member: &str) -> &str {
    member.rsplit('/').next().unwrap_or(member)
}

fn cache_dir(flavor: &Flavor) -> Option<PathBuf> {
    let root = match std::env::var_os("CHATTERBOX_ORT_CACHE").filter(|v| !v.is_empty()) {
        Some(r) => PathBuf::from(r),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/chatterbox-ort"),
    };
    Some(root.join(flavor.dir_name))
}

/// `target/<profile>`: three levels above OUT_DIR (`target/<profile>/build/<pkg>-<hash>/out`).
fn profile_dir() -> Option<PathBuf> {
    let out = PathBuf::from(std::env::var_os("OUT_DIR")?);
    out.ancestors().nth(3).map(Path::to_path_buf)
}

/// Makes sure every member is extracted and verified in `cache`.
fn provision(flavor: &Flavor, cache: &Path, no_download: bool) -> Result<(), String> {
    if cached_ok(flavor, cache) {
        return Ok(());
    }
    if no_download {
        return Err(format!(
            "CHATTERBOX_ORT_NO_DOWNLOAD=1 and {} has no verified copy",
            cache.display()
        ));
    }
    fs::create_dir_all(cache).map_err(|e| format!("creating {}: {e}", cache.display()))?;
    let wheel = cache.join(format!("download-{}.whl.part", std::process::id()));
    let result = download(flavor, &wheel).and_then(|()| extract(flavor, &wheel, cache));
    let _ = fs::remove_file(&wheel);
    result?;
    if cached_ok(flavor, cache) {
        Ok(())
    } else {
        Err(format!(
            "extracted files in {} failed verification",
            cache.display()
        ))
    }
}

/// Each member exists and matches the digest recorded when it was extracted from the
/// verified wheel (`<name>.sha256`).
fn cached_ok(flavor: &Flavor, cache: &Path) -> bool {
    flavor.members.iter().all(|m| {
        let path = cache.join(file_name(m));
        let Ok(recorded) = fs::read_to_string(digest_path(&path)) else {
            return false;
        };
        matches!(sha256_file(&path), Ok(d) if d == recorded.trim())
    })
}

fn digest_path(lib: &Path) -> PathBuf {
    let mut s = lib.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Root certificates of the system store (`SSL_CERT_FILE` or the usual bundle paths), so
/// downloads work behind TLS-inspecting proxies whose CA the system trusts; `None` falls back
/// to the bundled webpki roots.
fn system_roots() -> Option<ureq::tls::RootCerts> {
    let candidates = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
                "/etc/ssl/cert.pem",
            ]
            .map(PathBuf::from),
        );
    for path in candidates {
        let Ok(pem) = fs::read(&path) else { continue };
        let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if !certs.is_empty() {
            return Some(ureq::tls::RootCerts::new_with_certs(&certs));
        }
    }
    None
}

fn download(flavor: &Flavor, dest: &Path) -> Result<(), String> {
    let mut config = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_global(Some(Duration::from_secs(900)));
    if let Some(roots) = system_roots() {
        config = config.tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build());
    }
    let agent = config.build().new_agent();
    let resp = agent
        .get(flavor.url)
        .call()
        .map_err(|e| format!("downloading {}: {e}", flavor.url))?;
    let mut reader = resp.into_body().into_reader();
    let mut file =
        fs::File::create(dest).map_err(|e| format!("creating {}: {e}", dest.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| format!("downloading {}: {e}", flavor.url))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| format!("writing {}: {e}", dest.display()))?;
    }
    file.sync_all()
        .map_err(|e| format!("writing {}: {e}", dest.display()))?;
    let got = hex::encode(hasher.finalize());
    if got != flavor.wheel_sha256 {
        return Err(format!(
            "sha256 of {} is {got}, expected {}",
            flavor.url, flavor.wheel_sha256
        ));
    }
    Ok(())
}

fn extract(flavor: &Flavor, wheel: &Path, cache: &Path) -> Result<(), String> {
    let file = fs::File::open(wheel).map_err(|e| format!("opening {}: {e}", wheel.display()))?;
    let mut zip = zip::ZipArchive::new(io::BufReader::new(file))
        .map_err(|e| format!("reading wheel: {e}"))?;
    for member in flavor.members {
        let name = file_name(member);
        let mut entry = zip
            .by_name(member)
            .map_err(|e| format!("wheel has no {member}: {e}"))?;
        let final_path = cache.join(name);
        let tmp = cache.join(format!("{name}.tmp{}", std::process::id()));
        let mut out =
            fs::File::create(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| format!("extracting {member}: {e}"))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| format!("writing {}: {e}", tmp.display()))?;
        }
        out.sync_all()
            .map_err(|e| format!("writing {}: {e}", tmp.display()))?;
        drop(out);
        fs::rename(&tmp, &final_path)
            .map_err(|e| format!("renaming to {}: {e}", final_path.display()))?;
        fs::write(digest_path(&final_path), hex::encode(hasher.finalize()))
            .map_err(|e| format!("writing digest of {}: {e}", final_path.display()))?;
    }
    Ok(())
}

/// Copies `src` to `dst` unless `dst` already has the same size and is not older.
fn copy_if_changed(src: &Path, dst: &Path) -> io::Result<()> {
    let s = fs::metadata(src)?;
    if let Ok(d) = fs::metadata(dst) {
        let newer = match (s.modified(), d.modified()) {
            (Ok(sm), Ok(dm)) => sm > dm,
            _ => true,
        };
        if d.len() == s.len() && !newer {
            return Ok(());
        }
    }
    let tmp = dst.with_extension(format!("tmp{}", std::process::id()));
    fs::copy(src, &tmp)?;
    fs::rename(&tmp, dst)
}
