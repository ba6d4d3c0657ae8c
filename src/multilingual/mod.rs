//! The multilingual Chatterbox model (`ChatterboxMultilingualTTS`, 23 languages): what
//! differs from the English model. [`text`] is its text front-end (the reference
//! `MTLTokenizer` and the multilingual `punc_norm`); [`alignment`] the online alignment
//! checks of its T3. Everything else it shares with the original model (Llama T3 with
//! CFG, S3Gen, voices).

pub mod alignment;
pub mod text;

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use crate::error::{Error, Result};

/// A language id of a multilingual bundle (`fr`, `zh`, ...), as the reference's
/// `language_id` (compared lowercase). Two or three ASCII letters, held inline so a
/// [`crate::Request`] stays `Copy`; which ids a bundle supports is in its manifest
/// (`config.text.languages`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Language {
    bytes: [u8; 3],
    len: u8,
}

impl Language {
    /// Parses `id` case-insensitively (`"FR"` is `fr`).
    ///
    /// Errors: `InvalidArgument` naming `language` unless `id` is 2 or 3 ASCII letters.
    pub fn parse(id: &str) -> Result<Language> {
        let b = id.as_bytes();
        if !(2..=3).contains(&b.len()) || !b.iter().all(u8::is_ascii_alphabetic) {
            return Err(Error::invalid_argument(
                "language",
                format!("{id:?} is not a language id (two or three letters, e.g. fr)"),
            ));
        }
        let mut bytes = [0u8; 3];
        for (d, s) in bytes.iter_mut().zip(b) {
            *d = s.to_ascii_lowercase();
        }
        Ok(Language {
            bytes,
            len: b.len() as u8,
        })
    }

    /// The lowercase id.
    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl FromStr for Language {
    type Err = Error;
    fn from_str(s: &str) -> Result<Language> {
        Language::parse(s)
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Language({})", self.as_str())
    }
}

impl Serialize for Language {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_ids_parse_case_insensitively() {
        assert_eq!(Language::parse("FR").unwrap().as_str(), "fr");
        assert_eq!(Language::parse("yue").unwrap().to_string(), "yue");
        for bad in ["", "f", "fren", "f1", "../", "zh-CN", "é"] {
            let e = Language::parse(bad).unwrap_err();
            assert!(e.to_string().contains("language"), "{bad:?}: {e}");
        }
    }
}
