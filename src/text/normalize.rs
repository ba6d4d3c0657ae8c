//! Punctuation normalisation, a port of the reference `punc_norm` (`chatterbox/tts.py`).
//!
//! The rules, in the reference's order:
//!
//! 1. empty input becomes the fixed sentence [`EMPTY_TEXT_SENTENCE`];
//! 2. a lowercase first character is upper-cased (before whitespace is collapsed, so text
//!    that starts with a space keeps its lowercase first letter, as in the reference);
//! 3. runs of whitespace (Python `str.split()` semantics, which also counts the ASCII
//!    separators U+001C..U+001F) become one space, leading/trailing whitespace is dropped;
//! 4. [`PUNCTUATION_REPLACEMENTS`] are applied one after another;
//! 5. trailing spaces are removed and a `.` is appended unless the text ends with one of
//!    `. ! ? - ,` ([`SENTENCE_ENDERS`]; the multilingual model's `punc_norm` has a longer
//!    set, see [`punc_norm_with_enders`]).

/// What the reference synthesises for empty text.
pub const EMPTY_TEXT_SENTENCE: &str = "You need to add some text for me to talk.";

/// The reference's replacements, applied in this order (each replaces every occurrence).
pub const PUNCTUATION_REPLACEMENTS: [(&str, &str); 12] = [
    ("...", ", "),
    ("\u{2026}", ", "),
    (":", ","),
    (" - ", ", "),
    (";", ", "),
    ("\u{2014}", "-"),
    ("\u{2013}", "-"),
    (" ,", ","),
    ("\u{201c}", "\""),
    ("\u{201d}", "\""),
    ("\u{2018}", "'"),
    ("\u{2019}", "'"),
];

/// Characters after which no period is appended.
pub const SENTENCE_ENDERS: [char; 5] = ['.', '!', '?', '-', ','];

/// Python's `str.isspace` for one character: Unicode `White_Space` plus U+001C..U+001F.
pub fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The reference `punc_norm`: the same output as the Python function for the same input.
pub fn punc_norm(text: &str) -> String {
    punc_norm_with(text, &PUNCTUATION_REPLACEMENTS)
}

/// `punc_norm` with another replacement table (Turbo's `punc_norm` differs only in its
/// table, see [`crate::turbo::text::PUNCTUATION_REPLACEMENTS`]).
pub fn punc_norm_with(text: &str, replacements: &[(&str, &str)]) -> String {
    punc_norm_with_enders(text, replacements, &SENTENCE_ENDERS)
}

/// `punc_norm` with another replacement table and another set of characters after which no
/// period is appended (the multilingual model's `punc_norm` adds `、，。？！`, see
/// [`crate::multilingual::text::SENTENCE_ENDERS`]).
pub fn punc_norm_with_enders(
    text: &str,
    replacements: &[(&str, &str)],
    sentence_enders: &[char],
) -> String {
    let mut chars = text.chars();
    let first = match chars.next() {
        None => return EMPTY_TEXT_SENTENCE.to_string(),
        Some(c) => c,
    };

    // Capitalise the first letter (Python `islower` / `upper`, full case mapping).
    let capitalised: String = if first.is_lowercase() {
        first.to_uppercase().chain(chars).collect()
    } else {
        text.to_string()
    };

    // " ".join(text.split())
    let mut text = String::with_capacity(capitalised.len());
    for word in capitalised.split(is_python_space).filter(|w| !w.is_empty()) {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(word);
    }

    for &(old, new) in replacements {
        if text.contains(old) {
            text = text.replace(old, new);
        }
    }

    let trimmed_len = text.trim_end_matches(' ').len();
    text.truncate(trimmed_len);
    if !text.ends_with(sentence_enders) {
        text.push('.');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (input, output of the reference `punc_norm` run in the export venv).
    const CASES: &[(&str, &str)] = &[
        ("", "You need to add some text for me to talk."),
        (" ", "."),
        ("hello world", "Hello world."),
        ("Hello world", "Hello world."),
        ("  hello   world  ", "hello world."),
        ("wait... what", "Wait,  what."),
        ("Ellipsis\u{2026} here", "Ellipsis,  here."),
        ("Time: 10:30", "Time, 10,30."),
        ("a - b", "A, b."),
        ("semi; colon;", "Semi,  colon,"),
        ("em\u{2014}dash and en\u{2013}dash", "Em-dash and en-dash."),
        ("space , comma", "Space, comma."),
        ("\u{201c}Quoted\u{201d} text", "\"Quoted\" text."),
        ("\u{2018}single\u{2019} quotes", "'single' quotes."),
        ("ends with comma,", "Ends with comma,"),
        ("Question?", "Question?"),
        ("Bang!", "Bang!"),
        ("trailing dash -", "Trailing dash -"),
        ("Hi...", "Hi,"),
        ("\tnew\nline\r\nand\u{b}tabs", "new line and tabs."),
        ("\u{df}tra\u{df}e", "SStra\u{df}e."),
        ("\u{e9}clair", "\u{c9}clair."),
        ("1 apple", "1 apple."),
        ("multi  space  .", "Multi space ."),
        ("already.", "Already."),
        ("x", "X."),
        ("Ends with ellipsis...", "Ends with ellipsis,"),
        ("file\u{1c}separator", "File separator."),
        ("nbsp\u{a0}space", "Nbsp space."),
        ("ideographic\u{3000}space", "Ideographic space."),
        ("\u{1c6}emal", "\u{1c4}emal."),
        ("a...b...c", "A, b, c."),
        ("wow ;", "Wow,"),
        ("\u{fb01}ne", "FIne."),
        ("- leading dash", "- leading dash."),
    ];

    #[test]
    fn matches_reference() {
        for (input, expected) in CASES {
            assert_eq!(punc_norm(input), *expected, "input {input:?}");
        }
    }

    #[test]
    fn whitespace_set_matches_python() {
        // Every code point for which Python's str.isspace() is true.
        const PY: [u32; 29] = [
            9, 10, 11, 12, 13, 28, 29, 30, 31, 32, 133, 160, 5760, 8192, 8193, 8194, 8195, 8196,
            8197, 8198, 8199, 8200, 8201, 8202, 8232, 8233, 8239, 8287, 12288,
        ];
        let ours: Vec<u32> = (0..=0x10FFFFu32)
            .filter_map(char::from_u32)
            .filter(|&c| is_python_space(c))
            .map(|c| c as u32)
            .collect();
        assert_eq!(ours, PY.to_vec());
    }
}
