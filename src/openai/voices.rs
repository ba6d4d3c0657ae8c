//! The voice library of a server: voices by name, stored as voice files in one folder
//! (made once from an uploaded WAV), with an LRU-bounded cache of loaded voices so memory
//! does not grow with the number of voices used.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;
use serde::Serialize;

use super::error::ApiError;
use super::request::OPENAI_VOICES;
use crate::audio;
use crate::bundle::Voice;
use crate::conditioning::MIN_VOICE_SECONDS;
use crate::engine::Engine;

/// The name of the bundle's own voice.
pub const DEFAULT_VOICE: &str = "default";
/// Extension of the voice files in the folder.
pub const VOICE_EXTENSION: &str = "safetensors";
/// Longest voice name.
pub const MAX_NAME_CHARS: usize = 64;

/// Checks a voice name: 1 to [`MAX_NAME_CHARS`] ASCII letters, digits, `-` and `_`, not
/// starting with `-` (so a name is a plain file name in the voices folder: no path, no
/// `..`, no hidden file).
pub fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_CHARS
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        let shown: String = name.chars().take(80).collect();
        Err(ApiError::invalid(
            "voice",
            format!(
                "invalid voice name {shown:?}: use 1 to {MAX_NAME_CHARS} ASCII letters, digits, '-' or '_' (not starting with '-')"
            ),
        ))
    }
}

/// One entry of `GET /v1/audio/voices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VoiceInfo {
    /// The name requests use.
    pub name: String,
    /// `bundle` (the default voice and its OpenAI aliases) or `library` (a voice file).
    pub source: &'static str,
}

impl VoiceInfo {
    /// The voice as the API lists it: `{"id", "name", "object": "voice", "source"}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"id": self.name, "name": self.name, "object": "voice", "source": self.source})
    }
}

/// Voices by name: `default` (and OpenAI's built-in names, unless a voice file takes them)
/// is the bundle's voice; other names are voice files in the folder.
pub struct VoiceLibrary {
    dir: Option<PathBuf>,
    default: Arc<Voice>,
    cache: Mutex<LruCache<String, Arc<Voice>>>,
    /// Held while a voice file is created or removed (check-then-write is not racy).
    files: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl VoiceLibrary {
    /// A library over the folder `dir` (created when missing; `None`: only the bundle's
    /// voice, uploads refused) keeping at most `cache_capacity` (>= 1) loaded voices.
    pub fn new(
        dir: Option<PathBuf>,
        cache_capacity: usize,
        default: Voice,
    ) -> crate::Result<VoiceLibrary> {
        let capacity = NonZeroUsize::new(cache_capacity)
            .ok_or_else(|| crate::Error::invalid_argument("voice_cache", "must be at least 1"))?;
        if let Some(d) = &dir {
            std::fs::create_dir_all(d).map_err(|e| crate::Error::io(d, e))?;
            if !d.is_dir() {
                return Err(crate::Error::invalid_argument(
                    "voices",
                    format!("`{}` is not a folder", d.display()),
                ));
            }
        }
        Ok(VoiceLibrary {
            dir,
            default: Arc::new(default),
            cache: Mutex::new(LruCache::new(capacity)),
            files: Mutex::new(()),
        })
    }

    /// The voices folder, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Loaded voices held in the cache now.
    pub fn cached(&self) -> usize {
        lock(&self.cache).len()
    }

    /// The cache's bound.
    pub fn capacity(&self) -> usize {
        lock(&self.cache).cap().get()
    }

    fn file(&self, name: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{name}.{VOICE_EXTENSION}")))
    }

    /// The voice called `name`, loaded (and checked against the engine's bundle) on first
    /// use and kept in the LRU cache.
    pub fn get(&self, name: &str, engine: &Engine) -> Result<Arc<Voice>, ApiError> {
        check_name(name)?;
        if let Some(v) = lock(&self.cache).get(name) {
            return Ok(v.clone());
        }
        let file = self.file(name).filter(|f| f.is_file());
        let Some(file) = file else {
            if name == DEFAULT_VOICE || OPENAI_VOICES.contains(&name) {
                return Ok(self.default.clone());
            }
            return Err(ApiError::not_found(
                "voice_not_found",
                format!("no voice named `{name}` (GET /v1/audio/voices lists them)"),
            )
            .with_param("voice"));
        };
        let voice = Voice::load(&file).map_err(|e| ApiError::internal(e.to_string()))?;
        voice
            .validate(engine.bundle().config())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let voice = Arc::new(voice);
        lock(&self.cache).put(name.to_string(), voice.clone());
        Ok(voice)
    }

    /// Every voice: the bundle's (with its aliases) and the folder's, sorted by name.
    pub fn list(&self) -> Result<Vec<VoiceInfo>, ApiError> {
        let mut files = Vec::new();
        if let Some(dir) = &self.dir {
            let entries = std::fs::read_dir(dir)
                .map_err(|e| ApiError::internal(format!("voices folder: {e}")))?;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) != Some(VOICE_EXTENSION) {
                    continue;
                }
                let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                    continue;
                };
                if check_name(stem).is_ok() && path.is_file() {
                    files.push(stem.to_string());
                }
            }
        }
        let bundle: Vec<VoiceInfo> = std::iter::once(DEFAULT_VOICE)
            .chain(OPENAI_VOICES)
            .filter(|n| !files.iter().any(|f| f == n))
            .map(|n| VoiceInfo {
                name: n.to_string(),
                source: "bundle",
            })
            .collect();
        let mut out = bundle;
        out.extend(files.into_iter().map(|name| VoiceInfo {
            name,
            source: "library",
        }));
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Makes the voice `name` from a WAV file's bytes (any rate, channels averaged) and
    /// stores it; an existing voice of that name is an error (409) unless `overwrite`.
    pub fn add(
        &self,
        engine: &Engine,
        name: &str,
        wav: &[u8],
        overwrite: bool,
    ) -> Result<VoiceInfo, ApiError> {
        check_name(name)?;
        let Some(file) = self.file(name) else {
            return Err(ApiError::bad_request(
                "this server has no voices folder (start it with --voices DIR to upload voices)",
            ));
        };
        let clip = audio::read_wav_bytes(wav, "the uploaded file", MIN_VOICE_SECONDS as f32)
            .map_err(|e| ApiError::invalid("file", e.to_string()))?;
        let _files = lock(&self.files);
        if file.exists() && !overwrite {
            return Err(ApiError::conflict(
                "voice_exists",
                format!("a voice named `{name}` exists (DELETE it first, or upload with overwrite=true)"),
            )
            .with_param("name"));
        }
        let voice = engine
            .voice_from_samples(&clip.samples, clip.sample_rate)
            .map_err(|e| ApiError::from_engine(&e).with_param("file"))?;
        voice
            .save(&file)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        lock(&self.cache).pop(name);
        Ok(VoiceInfo {
            name: name.to_string(),
            source: "library",
        })
    }

    /// Removes the voice file `name` (the bundle's voice cannot be removed).
    pub fn remove(&self, name: &str) -> Result<(), ApiError> {
        check_name(name)?;
        let _files = lock(&self.files);
        let file = self.file(name).filter(|f| f.is_file());
        let Some(file) = file else {
            let why = if name == DEFAULT_VOICE || OPENAI_VOICES.contains(&name) {
                format!("`{name}` is the bundle's voice and cannot be deleted")
            } else {
                format!("no voice named `{name}`")
            };
            return Err(ApiError::not_found("voice_not_found", why).with_param("voice"));
        };
        std::fs::remove_file(&file)
            .map_err(|e| ApiError::internal(format!("deleting voice `{name}`: {e}")))?;
        lock(&self.cache).pop(name);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_file_names() {
        for ok in ["default", "a", "Bob_2", "x-y", &"v".repeat(MAX_NAME_CHARS)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "..",
            "../etc/passwd",
            "a/b",
            "a\\b",
            ".hidden",
            "-rf",
            "a b",
            "é",
            "a\0",
            &"v".repeat(MAX_NAME_CHARS + 1),
            "x.safetensors",
        ] {
            let e = check_name(bad).unwrap_err();
            assert_eq!(
                (e.status, e.param.as_deref()),
                (400, Some("voice")),
                "{bad:?}"
            );
        }
    }
}
