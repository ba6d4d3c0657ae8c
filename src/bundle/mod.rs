//! A model bundle on disk: `manifest.json`, one ONNX graph per component, `tokenizer.json`
//! and the default voice (see `docs/BUNDLE.md`).
//!
//! [`Bundle::open`] parses the manifest and verifies the small top-level files (size and
//! sha256). Component files can be gigabytes, so they are verified lazily by
//! [`Bundle::verify_component`], once per bundle: the result is cached, so destroying and
//! re-creating a session (swap residency) does not hash again. With
//! [`Bundle::set_verification_stamps`], a file that passed its hash leaves a stamp of its
//! identity (device, inode, size, modification and change times); a later process that finds
//! the same identity does not hash the unchanged file again.

pub mod manifest;
pub mod voice;

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

pub use manifest::{
    ComponentSpec, Config, DType, Dim, Family, FileEntry, FlowSchedule, GenerationDefaults,
    LanguageEntry, Manifest, TensorSpec, VoiceConfig,
};
pub use voice::{S3GenRefView, Voice};

use crate::error::{Error, Result};

/// The manifest file name inside a bundle.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The tokenizer file name inside a bundle.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// The default voice file name inside a bundle.
pub const VOICE_FILE: &str = "voice.safetensors";

/// An opened, (partly) verified bundle.
#[derive(Debug)]
pub struct Bundle {
    dir: PathBuf,
    manifest: Manifest,
    verified: Mutex<HashSet<String>>,
    stamps: Option<PathBuf>,
}

impl Bundle {
    /// Opens the bundle in `dir`: parses `manifest.json` (schema version 1) and verifies
    /// the size and sha256 of every top-level file (`tokenizer.json`, `voice.safetensors`).
    ///
    /// Component graphs are checked for presence and size here (cheap) and for their sha256
    /// at first use ([`Bundle::verify_component`]).
    pub fn open(dir: impl AsRef<Path>) -> Result<Bundle> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            return Err(Error::bundle(
                &dir,
                "not a folder (expected a bundle folder with manifest.json)",
            ));
        }
        let manifest_path = dir.join(MANIFEST_FILE);
        let bytes = crate::limits::read_capped(
            &manifest_path,
            crate::limits::MAX_MANIFEST_BYTES,
            "a manifest",
        )?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::bundle(&manifest_path, "not UTF-8 text"))?;
        let manifest = Manifest::from_json(&text, &manifest_path)?;
        let bundle = Bundle {
            dir,
            manifest,
            verified: Mutex::new(HashSet::new()),
            stamps: None,
        };
        for f in &bundle.manifest.files {
            verify_file(&bundle.dir, f, true)?;
        }
        for spec in bundle.manifest.components.values() {
            for f in &spec.files {
                verify_file(&bundle.dir, f, false)?;
            }
        }
        Ok(bundle)
    }

    /// The bundle folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The parsed manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Model hyper-parameters (`config`).
    pub fn config(&self) -> &Config {
        &self.manifest.config
    }

    /// Default generation parameters (`generation`).
    pub fn generation(&self) -> &GenerationDefaults {
        &self.manifest.generation
    }

    /// The spec of component `name` (manifest key), or a `Bundle` error if the manifest has none.
    pub fn component(&self, name: &str) -> Result<&ComponentSpec> {
        self.manifest.components.get(name).ok_or_else(|| {
            Error::bundle(
                self.dir.join(MANIFEST_FILE),
                format!("no component `{name}` in the manifest"),
            )
        })
    }

    /// Absolute path of a file given relative to the bundle.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    /// Path of `tokenizer.json`.
    pub fn tokenizer_path(&self) -> PathBuf {
        self.path(TOKENIZER_FILE)
    }

    /// Path of the Cangjie table of a multilingual bundle (`config.text.cangjie`).
    pub fn cangjie_path(&self) -> Option<PathBuf> {
        self.manifest
            .config
            .text
            .cangjie
            .as_deref()
            .map(|p| self.path(p))
    }

    /// Path of the default voice.
    pub fn voice_path(&self) -> PathBuf {
        self.path(VOICE_FILE)
    }

    /// Loads the bundle's default voice.
    pub fn default_voice(&self) -> Result<Voice> {
        Voice::load(&self.voice_path())
    }

    /// Verifies size and sha256 of every file of component `name`; cached after the first success.
    pub fn verify_component(&self, name: &str) -> Result<()> {
        if self.is_verified(name) {
            return Ok(());
        }
        let spec = self.component(name)?;
        for f in &spec.files {
            let stamp = self
                .stamps
                .as_deref()
                .and_then(|d| Stamp::of(d, &self.dir, f));
            match &stamp {
                Some(s) if s.matches() => verify_file(&self.dir, f, false)?,
                _ => {
                    verify_file(&self.dir, f, true)?;
                    if let Some(s) = stamp {
                        s.store();
                    }
                }
            }
        }
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string());
        Ok(())
    }

    /// Keeps verification stamps in `dir` (`None`: hash every component file at its first
    /// use in each process). A stamp is written after a file's sha256 matched the manifest;
    /// later, a file whose device, inode, size, modification and change times equal its
    /// stamp's is taken as verified (its size is still checked). Any write to the file
    /// changes its change time, which only the kernel sets. Unix only (elsewhere: no stamps).
    pub fn set_verification_stamps(&mut self, dir: Option<PathBuf>) {
        self.stamps = dir;
    }

    /// Whether component `name` has been fully verified already.
    pub fn is_verified(&self, name: &str) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(name)
    }
}

/// Checks that `entry` exists with the right size and, if `hash`, the right sha256.
pub fn verify_file(dir: &Path, entry: &FileEntry, hash: bool) -> Result<()> {
    let path = dir.join(&entry.path);
    let meta = std::fs::metadata(&path).map_err(|e| {
        Error::bundle(
            &path,
            format!("missing or unreadable file listed in the manifest: {e}"),
        )
    })?;
    if !meta.is_file() {
        return Err(Error::bundle(
            &path,
            "listed in the manifest but is not a file",
        ));
    }
    if meta.len() != entry.bytes {
        return Err(Error::bundle(
            &path,
            format!(
                "wrong size: {} bytes, the manifest says {}",
                meta.len(),
                entry.bytes
            ),
        ));
    }
    if hash {
        let got = sha256_file(&path)?;
        if !got.eq_ignore_ascii_case(&entry.sha256) {
            return Err(Error::bundle(
                &path,
                format!("wrong sha256: {got}, the manifest says {}", entry.sha256),
            ));
        }
    }
    Ok(())
}

/// A file's identity after it passed its sha256 (see [`Bundle::set_verification_stamps`]).
struct Stamp {
    path: PathBuf,
    line: String,
}

impl Stamp {
    /// The stamp `entry` would have now, or `None` where identities are unavailable.
    #[cfg(unix)]
    fn of(stamps: &Path, dir: &Path, entry: &FileEntry) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let file = std::fs::canonicalize(dir.join(&entry.path)).ok()?;
        let m = std::fs::metadata(&file).ok()?;
        let line = format!(
            "{} {} {} {}.{} {}.{} {} {}\n",
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
            entry.sha256.to_ascii_lowercase(),
            file.display()
        );
        // One stamp per (content, path): two copies of a bundle keep one each.
        let key = format!("{}\n{}", entry.sha256.to_ascii_lowercase(), file.display());
        let name = hex::encode(&Sha256::digest(key.as_bytes())[..16]);
        Some(Stamp {
            path: stamps.join(format!("{name}.stamp")),
            line,
        })
    }

    #[cfg(not(unix))]
    fn of(_stamps: &Path, _dir: &Path, _entry: &FileEntry) -> Option<Stamp> {
        None
    }

    /// Whether the stored stamp equals this one.
    fn matches(&self) -> bool {
        std::fs::read_to_string(&self.path).is_ok_and(|s| s == self.line)
    }

    /// Stores the stamp (best effort: a stamp that cannot be written only costs a hash).
    fn store(&self) {
        let Some(dir) = self.path.parent() else {
            return;
        };
        let tmp = self
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        let ok = std::fs::create_dir_all(dir).is_ok()
            && std::fs::write(&tmp, &self.line).is_ok()
            && std::fs::rename(&tmp, &self.path).is_ok();
        if !ok {
            let _ = std::fs::remove_file(&tmp);
            tracing::debug!(stamp = %self.path.display(), "could not store a verification stamp");
        }
    }
}

/// Lower-case hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
