//! Text front-end of the multilingual model: a port of the reference `MTLTokenizer`
//! (`models/tokenizers/tokenizer.py`) and of `punc_norm` of `mtl_tts.py`
//! (chatterbox-tts 0.1.7).
//!
//! `generate(text, language_id)` of the reference runs `punc_norm(text)` ([`MtlTokenizer::punc_norm`]),
//! then `MTLTokenizer.encode(text, language_id.lower())`:
//!
//! 1. `str.lower()` and NFKD;
//! 2. the language step: zh -> Cangjie codes ([`cangjie`], after word segmentation),
//!    ja -> kanji to hiragana ([`japanese`], cargo feature `japanese`), ko ->
//!    `korean_normalize` ([`korean`]); he and ru get diacritics / stress marks in the
//!    reference only when `dicta_onnx` / `russian_text_stresser` are installed, which
//!    chatterbox-tts does not require: without them (the reference's fallback, and what
//!    this front-end does) the text is unchanged;
//! 3. the language tag `[xx]` in front ([`MtlTokenizer::prepare`] returns the text up to here);
//! 4. every space becomes `[SPACE]` and the bundle's `tokenizer.json` encodes the result
//!    (the English [`TextTokenizer`]; characters outside the vocabulary become `[UNK]`).
//!
//! Chinese word segmentation: the reference uses pkuseg when it is installed with its
//! model, joining the words with spaces. This front-end uses jieba in its place
//! ([`MtlTokenizer::set_chinese_segmentation`], on by default); off gives the
//! reference's output without pkuseg exactly.

pub mod cangjie;
#[cfg(feature = "japanese")]
pub mod japanese;
pub mod korean;
pub mod python;

use std::path::Path;
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::text::TextTokenizer;

pub use cangjie::CangjieTable;

/// The languages of the multilingual model: (id, English name), in the order of the
/// reference's `SUPPORTED_LANGUAGES`.
pub const LANGUAGES: [(&str, &str); 23] = [
    ("ar", "Arabic"),
    ("da", "Danish"),
    ("de", "German"),
    ("el", "Greek"),
    ("en", "English"),
    ("es", "Spanish"),
    ("fi", "Finnish"),
    ("fr", "French"),
    ("he", "Hebrew"),
    ("hi", "Hindi"),
    ("it", "Italian"),
    ("ja", "Japanese"),
    ("ko", "Korean"),
    ("ms", "Malay"),
    ("nl", "Dutch"),
    ("no", "Norwegian"),
    ("pl", "Polish"),
    ("pt", "Portuguese"),
    ("ru", "Russian"),
    ("sv", "Swedish"),
    ("sw", "Swahili"),
    ("tr", "Turkish"),
    ("zh", "Chinese"),
];

/// Size of the multilingual T3 text vocabulary (`T3Config.multilingual()`).
pub const TEXT_VOCAB_SIZE: usize = 2454;

/// Characters after which the multilingual `punc_norm` appends no period: the English set
/// plus `、，。？！`.
pub const SENTENCE_ENDERS: [char; 10] = [
    '.', '!', '?', '-', ',', '\u{3001}', '\u{ff0c}', '\u{3002}', '\u{ff1f}', '\u{ff01}',
];

/// The longest language id echoed back in an error message.
const MAX_ECHOED_LANGUAGE: usize = 32;

/// The multilingual text tokenizer of a bundle: `tokenizer.json` + `Cangjie5_TC.json`.
pub struct MtlTokenizer {
    tokenizer: TextTokenizer,
    cangjie: CangjieTable,
    chinese_segmentation: bool,
    jieba: OnceLock<jieba_rs::Jieba>,
}

impl std::fmt::Debug for MtlTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtlTokenizer")
            .field("tokenizer", &self.tokenizer)
            .field("cangjie_glyphs", &self.cangjie.len())
            .field("chinese_segmentation", &self.chinese_segmentation)
            .finish()
    }
}

impl MtlTokenizer {
    /// Loads the tokenizer and the Cangjie table of a bundle. `vocab_size` is the
    /// manifest's text vocabulary size, which must be [`TEXT_VOCAB_SIZE`]; every id the
    /// tokenizer produces is checked against it.
    ///
    /// Errors: `Io` for unreadable files, `Bundle` (naming the file) for a malformed
    /// tokenizer or table, a tokenizer without `[START]`, `[STOP]`, `[SPACE]` or one of
    /// the 23 language tags, or a `vocab_size` other than 2454.
    pub fn from_files(
        tokenizer_json: &Path,
        cangjie_json: &Path,
        vocab_size: usize,
    ) -> Result<MtlTokenizer> {
        if vocab_size != TEXT_VOCAB_SIZE {
            return Err(Error::bundle(
                tokenizer_json,
                format!(
                    "the multilingual text vocabulary has {TEXT_VOCAB_SIZE} tokens, the manifest says {vocab_size}"
                ),
            ));
        }
        let tokenizer = TextTokenizer::from_file(tokenizer_json, vocab_size)?;
        let cangjie = CangjieTable::from_file(cangjie_json)?;
        MtlTokenizer::from_parts(tokenizer, cangjie)
    }

    /// Builds the tokenizer from loaded parts (checks the tokens the front-end emits).
    pub fn from_parts(tokenizer: TextTokenizer, cangjie: CangjieTable) -> Result<MtlTokenizer> {
        let required = std::iter::once(crate::text::tokenizer::SPACE_TOKEN.to_string())
            .chain(LANGUAGES.iter().map(|(id, _)| format!("[{id}]")));
        for token in required {
            if tokenizer.token_id(&token).is_none() {
                return Err(Error::bundle(
                    tokenizer.path(),
                    format!("the multilingual tokenizer has no `{token}` token"),
                ));
            }
        }
        Ok(MtlTokenizer {
            tokenizer,
            cangjie,
            chinese_segmentation: true,
            jieba: OnceLock::new(),
        })
    }

    /// Chinese word segmentation before the Cangjie step (jieba standing in for the
    /// reference's pkuseg): on by default, as in a full reference installation; off gives
    /// the reference's output without pkuseg (no spaces added) exactly. The jieba
    /// dictionary is loaded at the first Chinese text that needs it.
    pub fn set_chinese_segmentation(&mut self, on: bool) {
        self.chinese_segmentation = on;
    }

    /// Whether Chinese text is segmented into words.
    pub fn chinese_segmentation(&self) -> bool {
        self.chinese_segmentation
    }

    /// The underlying `tokenizer.json` tokenizer.
    pub fn text_tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// The Cangjie table.
    pub fn cangjie(&self) -> &CangjieTable {
        &self.cangjie
    }

    /// The id of `[START]`.
    pub fn start_id(&self) -> i64 {
        self.tokenizer.start_id()
    }

    /// The id of `[STOP]`.
    pub fn stop_id(&self) -> i64 {
        self.tokenizer.stop_id()
    }

    /// Validates a language id, case-insensitively like the reference (`.lower()`), and
    /// returns it lowercased. An unknown id is `InvalidArgument` for parameter `language`.
    pub fn check_language(&self, language: &str) -> Result<String> {
        check_language(language)
    }

    /// The multilingual `punc_norm` (`mtl_tts.punc_norm`): the English rules with
    /// `、，。？！` as sentence enders too.
    pub fn punc_norm(text: &str) -> String {
        crate::text::punc_norm_with_enders(
            text,
            &crate::text::normalize::PUNCTUATION_REPLACEMENTS,
            &SENTENCE_ENDERS,
        )
    }

    /// What the reference hands to the HF tokenizer for `text` (already `punc_norm`'ed):
    /// lowercase, NFKD, the language step and the `[xx]` tag, before spaces become
    /// `[SPACE]`.
    pub fn prepare(&self, text: &str, language: &str) -> Result<String> {
        let language = check_language(language)?;
        let text = python::nfkd(&python::lower(text));
        let text = match language.as_str() {
            "zh" => {
                let segmenter = self
                    .chinese_segmentation
                    .then(|| self.jieba.get_or_init(jieba_rs::Jieba::new));
                self.cangjie.convert(&text, segmenter)
            }
            "ja" => japanese_step(&text)?,
            "ko" => korean::korean_normalize(&text),
            _ => text,
        };
        Ok(format!("[{language}]{text}"))
    }

    /// Token ids of `text` (already `punc_norm`'ed), without `[START]` / `[STOP]`.
    pub fn encode(&self, text: &str, language: &str) -> Result<Vec<i64>> {
        let prepared = self.prepare(text, language)?;
        self.tokenizer.encode(&prepared)
    }

    /// `[START] + encode(text, language) + [STOP]`.
    pub fn encode_with_start_stop(&self, text: &str, language: &str) -> Result<Vec<i64>> {
        let prepared = self.prepare(text, language)?;
        self.tokenizer.encode_with_start_stop(&prepared)
    }

    /// The number of ids [`MtlTokenizer::encode`] gives (for chunking long text).
    pub fn count_tokens(&self, text: &str, language: &str) -> Result<usize> {
        let prepared = self.prepare(text, language)?;
        self.tokenizer.count_tokens(&prepared)
    }
}

/// [`MtlTokenizer::check_language`] without a tokenizer.
pub fn check_language(language: &str) -> Result<String> {
    let lower = python::lower(language);
    if LANGUAGES.iter().any(|(id, _)| *id == lower) {
        return Ok(lower);
    }
    let mut shown: String = language.chars().take(MAX_ECHOED_LANGUAGE).collect();
    if shown.len() < language.len() {
        shown.push_str("...");
    }
    let supported: Vec<&str> = LANGUAGES.iter().map(|(id, _)| *id).collect();
    Err(Error::invalid_argument(
        "language",
        format!(
            "unsupported language '{}'; supported: {}",
            shown.escape_debug(),
            supported.join(", ")
        ),
    ))
}

#[cfg(feature = "japanese")]
fn japanese_step(text: &str) -> Result<String> {
    Ok(japanese::hiragana_normalize(text))
}

#[cfg(not(feature = "japanese"))]
fn japanese_step(_text: &str) -> Result<String> {
    Err(Error::invalid_argument(
        "language",
        "this build has no Japanese support (chatterbox-ort was built without the cargo feature `japanese`, whose kakasi dependency is GPL-3.0)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_sorted_and_unique() {
        let ids: Vec<&str> = LANGUAGES.iter().map(|(id, _)| *id).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(ids, sorted);
    }

    #[test]
    fn language_check() {
        assert_eq!(check_language("ZH").unwrap(), "zh");
        assert_eq!(check_language("ja").unwrap(), "ja");
        for bad in ["", "xx", "zh ", "english", "İt"] {
            let e = check_language(bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
            let msg = e.to_string();
            assert!(msg.contains("language"), "{msg}");
            assert!(msg.contains("supported: ar, da, de"), "{msg}");
        }
        let long = "x".repeat(10_000);
        assert!(check_language(&long).unwrap_err().to_string().len() < 400);
    }

    #[test]
    fn punc_norm_enders() {
        assert_eq!(MtlTokenizer::punc_norm("你好，"), "你好，");
        assert_eq!(MtlTokenizer::punc_norm("すごい！"), "すごい！");
        assert_eq!(MtlTokenizer::punc_norm("hello"), "Hello.");
        // the English punc_norm appends a period after 。
        assert_eq!(crate::text::punc_norm("你好。"), "你好。.");
        assert_eq!(MtlTokenizer::punc_norm("你好。"), "你好。");
    }
}
