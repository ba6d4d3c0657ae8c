//! The Python string semantics the reference front-end relies on.

use unicode_general_category::{get_general_category, GeneralCategory};
use unicode_normalization::UnicodeNormalization;

use crate::text::normalize::is_python_space;

/// Python's `str.lower()`: the full Unicode lowercase mapping, with the `Final_Sigma`
/// context for U+03A3 (`ΟΔΟΣ` -> `οδος`) and `İ` -> `i̇` (two characters). Rust's
/// `str::to_lowercase` implements the same rules.
pub fn lower(text: &str) -> String {
    text.to_lowercase()
}

/// `unicodedata.normalize("NFKD", text)`.
pub fn nfkd(text: &str) -> String {
    text.nfkd().collect()
}

/// `unicodedata.category(c) == "Lo"` (other letter: Han, kana, Hangul, Arabic, ...).
pub fn is_other_letter(c: char) -> bool {
    get_general_category(c) == GeneralCategory::OtherLetter
}

/// Python's `str.strip()` without arguments (the `str.isspace` set at both ends).
pub fn strip(text: &str) -> &str {
    text.trim_matches(is_python_space)
}

/// Python's `str.split()` without arguments: runs of `str.isspace` characters separate
/// the words, empty words are dropped.
pub fn split_whitespace(text: &str) -> impl Iterator<Item = &str> {
    text.split(is_python_space).filter(|w| !w.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_like_python() {
        // Outputs of Python 3.11 str.lower().
        assert_eq!(lower("ΟΔΥΣΣΕΑΣ ΣΟΦΟΣ"), "οδυσσεας σοφος");
        assert_eq!(lower("ΣΊΣΥΦΟΣ Σ ΑΣ"), "σίσυφος σ ας");
        assert_eq!(lower("ΑΣ."), "ας.");
        assert_eq!(lower("ΑΣΑ"), "ασα");
        assert_eq!(lower("İIıi"), "i\u{307}iıi");
        assert_eq!(lower("ẞ Ǆ ǅ Ⅻ"), "ß ǆ ǆ ⅻ");
    }

    #[test]
    fn strip_and_split_like_python() {
        assert_eq!(strip("\u{3000} a b \u{1c}\n"), "a b");
        assert_eq!(strip(" \t "), "");
        let words: Vec<&str> = split_whitespace(" a\u{a0}b\u{2028}c  ").collect();
        assert_eq!(words, ["a", "b", "c"]);
    }

    #[test]
    fn other_letter() {
        for c in ['中', 'あ', 'ア', '한', 'ﻻ', 'ש', 'क', '𡳾'] {
            assert!(is_other_letter(c), "{c}");
        }
        for c in ['a', '1', '，', 'ー', '\u{3099}', 'ि', 'Σ'] {
            assert!(!is_other_letter(c), "{c}");
        }
    }
}
