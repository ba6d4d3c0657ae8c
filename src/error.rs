//! The library's one error type.
//!
//! Every [`Error`] has an [`ErrorKind`], and every kind has a stable numeric code
//! ([`ErrorKind::code`]) that the C ABI returns as its status (0 is reserved for "OK").
//! Messages name the file, tensor or parameter that was wrong.

use std::fmt;
use std::path::{Path, PathBuf};

/// The category of an [`Error`]; maps 1:1 to the C ABI status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(i32)]
pub enum ErrorKind {
    /// A caller-supplied parameter is out of range or malformed.
    InvalidArgument = 1,
    /// The input text cannot be synthesized (empty, too long, not UTF-8).
    InvalidText = 2,
    /// Input audio is unusable (unreadable, empty, wrong format).
    InvalidAudio = 3,
    /// A file could not be read or written.
    Io = 4,
    /// The model bundle (or a voice file) is malformed, incomplete or corrupted.
    Bundle = 5,
    /// A graph's inputs/outputs (or a tensor given to it) do not match what is expected.
    ModelMismatch = 6,
    /// ONNX Runtime could not be loaded or failed.
    Runtime = 7,
    /// The requested execution provider (e.g. CUDA) is not available.
    ProviderUnavailable = 8,
    /// The memory budget cannot be met.
    Budget = 9,
    /// The operation was cancelled by the caller.
    Cancelled = 10,
    /// A bug: an invariant of the library was violated.
    Internal = 11,
}

impl ErrorKind {
    /// Every kind, in code order.
    pub const ALL: [ErrorKind; 11] = [
        ErrorKind::InvalidArgument,
        ErrorKind::InvalidText,
        ErrorKind::InvalidAudio,
        ErrorKind::Io,
        ErrorKind::Bundle,
        ErrorKind::ModelMismatch,
        ErrorKind::Runtime,
        ErrorKind::ProviderUnavailable,
        ErrorKind::Budget,
        ErrorKind::Cancelled,
        ErrorKind::Internal,
    ];

    /// The stable numeric code of this kind (1..=11; 0 means success in the C ABI).
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The kind with the given code, if any.
    pub fn from_code(code: i32) -> Option<ErrorKind> {
        Self::ALL.iter().copied().find(|k| k.code() == code)
    }

    /// A short stable name (`"invalid_argument"`, `"bundle"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::InvalidText => "invalid_text",
            ErrorKind::InvalidAudio => "invalid_audio",
            ErrorKind::Io => "io",
            ErrorKind::Bundle => "bundle",
            ErrorKind::ModelMismatch => "model_mismatch",
            ErrorKind::Runtime => "runtime",
            ErrorKind::ProviderUnavailable => "provider_unavailable",
            ErrorKind::Budget => "budget",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error type of the library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter is invalid.
    #[error("invalid argument `{name}`: {reason}")]
    InvalidArgument {
        /// The parameter's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The text cannot be synthesized.
    #[error("invalid text: {0}")]
    InvalidText(String),
    /// The audio is unusable.
    #[error("invalid audio: {0}")]
    InvalidAudio(String),
    /// Reading or writing a file failed.
    ///
    /// The message states the cause, so [`std::error::Error::source`] returns `None` for
    /// this variant: a chain printer (`anyhow`'s `{:#}`) then prints the cause once, not
    /// twice. The underlying error is in `cause` (see also [`Error::io_error`]).
    #[error("I/O error on `{}`: {cause}", path.display())]
    Io {
        /// The file or folder (the caller's path, never an internal temporary file).
        path: PathBuf,
        /// The underlying error.
        cause: std::io::Error,
    },
    /// The bundle is malformed, incomplete or corrupted (a voice file: [`Error::VoiceFile`]).
    #[error("bundle `{}`: {reason}", path.display())]
    Bundle {
        /// The offending file (or the bundle folder).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A voice file is malformed or does not fit the bundle (kind [`ErrorKind::Bundle`]:
    /// the C ABI reports it as `CBX_BUNDLE`).
    #[error("voice file `{}`: {reason}", path.display())]
    VoiceFile {
        /// The voice file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A graph's signature or a tensor handed to it does not match expectations.
    #[error("model mismatch in component `{component}`: {reason}")]
    ModelMismatch {
        /// The component (manifest key).
        component: String,
        /// Which tensor and how (expected vs. found).
        reason: String,
    },
    /// ONNX Runtime could not be loaded or failed.
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    /// An execution provider is not available.
    #[error("execution provider {provider} unavailable: {reason}")]
    ProviderUnavailable {
        /// The provider's name (e.g. `CUDA`).
        provider: String,
        /// Why.
        reason: String,
    },
    /// The memory budget cannot be met.
    #[error("memory budget: {0}")]
    Budget(String),
    /// Cancelled by the caller.
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// Internal invariant violated (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            Error::InvalidText(_) => ErrorKind::InvalidText,
            Error::InvalidAudio(_) => ErrorKind::InvalidAudio,
            Error::Io { .. } => ErrorKind::Io,
            Error::Bundle { .. } | Error::VoiceFile { .. } => ErrorKind::Bundle,
            Error::ModelMismatch { .. } => ErrorKind::ModelMismatch,
            Error::Runtime(_) => ErrorKind::Runtime,
            Error::ProviderUnavailable { .. } => ErrorKind::ProviderUnavailable,
            Error::Budget(_) => ErrorKind::Budget,
            Error::Cancelled(_) => ErrorKind::Cancelled,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// The stable numeric code of this error's kind (see [`ErrorKind::code`]).
    pub fn code(&self) -> i32 {
        self.kind().code()
    }

    /// `InvalidArgument` for parameter `name`.
    pub fn invalid_argument(name: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::InvalidArgument {
            name: name.into(),
            reason: reason.into(),
        }
    }

    /// `InvalidText`.
    pub fn invalid_text(reason: impl Into<String>) -> Error {
        Error::InvalidText(reason.into())
    }

    /// `InvalidAudio`.
    pub fn invalid_audio(reason: impl Into<String>) -> Error {
        Error::InvalidAudio(reason.into())
    }

    /// `Io` on `path`.
    pub fn io(path: impl AsRef<Path>, cause: std::io::Error) -> Error {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            cause,
        }
    }

    /// The underlying I/O error of an `Io` error.
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            Error::Io { cause, .. } => Some(cause),
            _ => None,
        }
    }

    /// `Bundle` error about `path`.
    pub fn bundle(path: impl AsRef<Path>, reason: impl Into<String>) -> Error {
        Error::Bundle {
            path: path.as_ref().to_path_buf(),
            reason: reason.into(),
        }
    }

    /// `VoiceFile` error about the voice file at `path`.
    pub fn voice_file(path: impl AsRef<Path>, reason: impl Into<String>) -> Error {
        Error::VoiceFile {
            path: path.as_ref().to_path_buf(),
            reason: reason.into(),
        }
    }

    /// `ModelMismatch` in `component`.
    pub fn model_mismatch(component: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::ModelMismatch {
            component: component.into(),
            reason: reason.into(),
        }
    }

    /// `Runtime`.
    pub fn runtime(reason: impl Into<String>) -> Error {
        Error::Runtime(reason.into())
    }

    /// `ProviderUnavailable` for `provider`.
    pub fn provider_unavailable(provider: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::ProviderUnavailable {
            provider: provider.into(),
            reason: reason.into(),
        }
    }

    /// `Budget`.
    pub fn budget(reason: impl Into<String>) -> Error {
        Error::Budget(reason.into())
    }

    /// `Cancelled`.
    pub fn cancelled(reason: impl Into<String>) -> Error {
        Error::Cancelled(reason.into())
    }

    /// `Internal`.
    pub fn internal(reason: impl Into<String>) -> Error {
        Error::Internal(reason.into())
    }
}

/// The library's result type.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        let expected = [
            (ErrorKind::InvalidArgument, 1),
            (ErrorKind::InvalidText, 2),
            (ErrorKind::InvalidAudio, 3),
            (ErrorKind::Io, 4),
            (ErrorKind::Bundle, 5),
            (ErrorKind::ModelMismatch, 6),
            (ErrorKind::Runtime, 7),
            (ErrorKind::ProviderUnavailable, 8),
            (ErrorKind::Budget, 9),
            (ErrorKind::Cancelled, 10),
            (ErrorKind::Internal, 11),
        ];
        for (kind, code) in expected {
            assert_eq!(kind.code(), code, "{kind}");
            assert_eq!(ErrorKind::from_code(code), Some(kind));
        }
        assert_eq!(ErrorKind::from_code(0), None);
        assert_eq!(ErrorKind::from_code(12), None);
    }

    #[test]
    fn messages_name_the_subject() {
        let e = Error::invalid_argument("temperature", "must be > 0, got -1");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert_eq!(e.code(), 1);
        assert_eq!(
            e.to_string(),
            "invalid argument `temperature`: must be > 0, got -1"
        );
        let e = Error::bundle("/b/t3_decoder.onnx", "sha256 mismatch");
        assert!(e.to_string().contains("/b/t3_decoder.onnx"));
        assert_eq!(e.kind(), ErrorKind::Bundle);
        let e = Error::io(
            "/x/y.wav",
            std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        );
        assert!(e.to_string().contains("/x/y.wav"));
        assert_eq!(e.kind(), ErrorKind::Io);
    }

    #[test]
    fn io_cause_is_printed_once() {
        let e = Error::io(
            "/x/y.wav",
            std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        );
        assert_eq!(
            e.io_error().map(|c| c.kind()),
            Some(std::io::ErrorKind::NotFound)
        );
        assert!(std::error::Error::source(&e).is_none());
        assert_eq!(e.to_string(), "I/O error on `/x/y.wav`: gone");
        let chained = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(chained, "I/O error on `/x/y.wav`: gone");
    }
}
