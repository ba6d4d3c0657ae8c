//! Splitting long text into chunks that T3 can speak one at a time.
//!
//! T3 has 2050 learned text positions (start and stop tokens included) and generates at
//! most `max_new_tokens` speech tokens (1000 = 40 s) per call, so long text is cut into
//! chunks, each under a token limit (hard) and a character limit (keeps the speech of one
//! chunk well under the speech-token budget).
//!
//! Boundaries, from preferred to last resort:
//! 1. sentence ends: a run of `. ! ? ; …` (plus closing quotes/brackets) followed by
//!    whitespace or the end of the text, and every newline;
//! 2. inside a sentence that is too long: after commas (`,` followed by whitespace);
//! 3. between words;
//! 4. inside a word that alone exceeds the limits (split by characters).
//!
//! Units (sentences, or the clauses, words or word pieces of an over-long sentence) are
//! packed greedily into chunks joined by single spaces; when a chunk is full it is cut at
//! the strongest boundary it contains (sentence > clause > word) and the rest starts the
//! next chunk. Chunks are trimmed and never empty; whitespace inside a sentence is kept as
//! written. Joining the chunks with spaces gives back every word of the input in order (a
//! word longer than the limits is the one exception: it is cut into pieces).
//!
//! Cost is linear in the text length (each step looks at one chunk's worth of units):
//! each unit and each final chunk is tokenised once. The token count of a chunk is
//! estimated as the sum of its units' counts plus one `[SPACE]` per join, which is exact
//! for the Chatterbox tokenizer (its pre-tokenizer splits at `[SPACE]`); a chunk whose real
//! count is higher anyway is split again.

use crate::error::{Error, Result};

/// Limits for one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Most text tokens per chunk, as counted by the caller's tokenizer (without the
    /// start/stop tokens): `2050 - 2` for Chatterbox, less any margin the caller wants
    /// for later normalisation.
    pub max_tokens: usize,
    /// Most characters (Unicode scalar values) per chunk.
    pub max_chars: usize,
}

impl Default for ChunkLimits {
    /// 2048 tokens and 300 characters (about 20 s of speech at a normal pace).
    fn default() -> Self {
        ChunkLimits {
            max_tokens: 2048,
            max_chars: 300,
        }
    }
}

/// A piece of text that is never split further at this stage.
#[derive(Debug)]
struct Unit<'a> {
    text: &'a str,
    tokens: usize,
    chars: usize,
    /// How good a place to break the boundary before this unit is.
    boundary: Level,
    /// Whether whitespace precedes the unit in the text (a space joins it to the unit
    /// before it in a chunk; otherwise they are glued, as in CJK text or a split word).
    spaced: bool,
}

/// Splits `text` into chunks under `limits`; `count_tokens` returns the token count of a
/// piece of text (e.g. [`crate::text::tokenizer::TextTokenizer::count_tokens`]).
///
/// When a chunk is full, it is cut at the best boundary it contains (sentence, then
/// clause, then word), and what follows that boundary starts the next chunk.
///
/// Returns no chunks for text that is empty or only whitespace. Errors: `InvalidArgument`
/// for a zero limit, `InvalidText` if a single character exceeds `max_tokens`, and any error
/// of `count_tokens`.
pub fn chunk_text<F>(text: &str, limits: &ChunkLimits, mut count_tokens: F) -> Result<Vec<String>>
where
    F: FnMut(&str) -> Result<usize>,
{
    if limits.max_tokens == 0 {
        return Err(Error::invalid_argument("max_tokens", "must be at least 1"));
    }
    if limits.max_chars == 0 {
        return Err(Error::invalid_argument("max_chars", "must be at least 1"));
    }

    let mut units: Vec<Unit<'_>> = Vec::new();
    for sentence in split_sentences(text) {
        let sentence = sentence.trim();
        if sentence.is_empty() {
            continue;
        }
        push_units(
            sentence,
            limits,
            &mut count_tokens,
            &mut units,
            Level::Sentence,
            Level::Sentence,
        )?;
    }

    // Every unit is a slice of `text`: look at what precedes it there.
    for u in &mut units {
        let at = u.text.as_ptr() as usize - text.as_ptr() as usize;
        u.spaced = text[..at]
            .chars()
            .next_back()
            .is_some_and(char::is_whitespace);
    }

    let mut chunks = Vec::new();
    // Unit indices of the chunk being filled, start..end.
    let mut start = 0usize;
    for end in 0..units.len() {
        if end == start {
            continue;
        }
        if fits(&units[start..=end], limits) {
            continue;
        }
        // units[start..end] fits, adding units[end] does not: cut at the strongest boundary
        // in start+1..=end (the latest one among equals), until the rest fits with it.
        while !fits(&units[start..=end], limits) {
            let mut cut = end;
            for k in (start + 1..end).rev() {
                if units[k].boundary > units[cut].boundary {
                    cut = k;
                }
            }
            emit(&units[start..cut], limits, &mut count_tokens, &mut chunks)?;
            start = cut;
        }
    }
    if start < units.len() {
        emit(&units[start..], limits, &mut count_tokens, &mut chunks)?;
    }
    Ok(chunks)
}

/// Whether `units` joined as [`join`] does stay within the limits (token estimate: the
/// units' counts plus one per joining space).
fn fits(units: &[Unit<'_>], limits: &ChunkLimits) -> bool {
    let gaps = units.iter().skip(1).filter(|u| u.spaced).count();
    let tokens: usize = units.iter().map(|u| u.tokens).sum::<usize>() + gaps;
    let chars: usize = units.iter().map(|u| u.chars).sum::<usize>() + gaps;
    tokens <= limits.max_tokens && chars <= limits.max_chars
}

/// Joins a run of units and checks its real token count; splits the run in two
/// (recursively) when the tokenizer counts more tokens than the units added up to.
fn emit<F>(
    units: &[Unit<'_>],
    limits: &ChunkLimits,
    count_tokens: &mut F,
    out: &mut Vec<String>,
) -> Result<()>
where
    F: FnMut(&str) -> Result<usize>,
{
    if units.is_empty() {
        return Ok(());
    }
    let joined = join(units);
    if units.len() > 1 && count_tokens(&joined)? > limits.max_tokens {
        let (a, b) = units.split_at(units.len() / 2);
        emit(a, limits, count_tokens, out)?;
        emit(b, limits, count_tokens, out)?;
    } else {
        out.push(joined);
    }
    Ok(())
}

/// The text of a run of units: one space where the text had whitespace, none elsewhere.
fn join(units: &[Unit<'_>]) -> String {
    let mut out = String::new();
    for (k, u) in units.iter().enumerate() {
        if k > 0 && u.spaced {
            out.push(' ');
        }
        out.push_str(u.text);
    }
    out
}

/// Boundary strength, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    /// Inside a word (over-long words only).
    Char,
    /// Between words.
    Word,
    /// After a comma.
    Clause,
    /// Between sentences.
    Sentence,
}

/// Appends `piece` as one unit if it fits, else its parts at the next finer level.
/// `boundary` is the strength of the boundary before `piece`.
fn push_units<'a, F>(
    piece: &'a str,
    limits: &ChunkLimits,
    count_tokens: &mut F,
    units: &mut Vec<Unit<'a>>,
    level: Level,
    boundary: Level,
) -> Result<()>
where
    F: FnMut(&str) -> Result<usize>,
{
    let chars = piece.chars().count();
    // Counting tokens of a piece far over the character limit is wasted work: it is
    // split anyway (its parts are counted instead).
    if chars <= limits.max_chars {
        let tokens = count_tokens(piece)?;
        if tokens <= limits.max_tokens {
            units.push(Unit {
                text: piece,
                tokens,
                chars,
                boundary,
                spaced: true,
            });
            return Ok(());
        }
    }
    match level {
        Level::Sentence => {
            for (i, clause) in split_after_commas(piece).into_iter().enumerate() {
                let b = if i == 0 { boundary } else { Level::Clause };
                push_units(clause, limits, count_tokens, units, Level::Clause, b)?;
            }
        }
        Level::Clause => {
            for (i, word) in piece.split_whitespace().enumerate() {
                let b = if i == 0 { boundary } else { Level::Word };
                push_units(word, limits, count_tokens, units, Level::Word, b)?;
            }
        }
        Level::Word | Level::Char => split_word(piece, limits, count_tokens, units, boundary)?,
    }
    Ok(())
}

/// Cuts one over-long word into the longest pieces (at most `max_chars` characters) whose
/// token count fits.
fn split_word<'a, F>(
    word: &'a str,
    limits: &ChunkLimits,
    count_tokens: &mut F,
    units: &mut Vec<Unit<'a>>,
    boundary: Level,
) -> Result<()>
where
    F: FnMut(&str) -> Result<usize>,
{
    let bounds: Vec<usize> = word
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(word.len()))
        .collect();
    let nchars = bounds.len() - 1;
    let mut start = 0;
    let mut b = boundary;
    while start < nchars {
        let piece_tokens = |end: usize, count: &mut F| count(&word[bounds[start]..bounds[end]]);
        let mut end = (start + limits.max_chars).min(nchars);
        let mut tokens = piece_tokens(end, count_tokens)?;
        if tokens > limits.max_tokens {
            // Largest end in start+1..end that fits (binary search; counts grow with length).
            let (mut lo, mut hi) = (start, end);
            let mut best = None;
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                let t = piece_tokens(mid, count_tokens)?;
                if t <= limits.max_tokens {
                    lo = mid;
                    best = Some(t);
                } else {
                    hi = mid;
                }
            }
            match best {
                Some(t) => {
                    end = lo;
                    tokens = t;
                }
                None => {
                    let t = piece_tokens(start + 1, count_tokens)?;
                    if t > limits.max_tokens {
                        return Err(Error::invalid_text(format!(
                            "the character {:?} alone is {t} tokens, over the limit of {}",
                            &word[bounds[start]..bounds[start + 1]],
                            limits.max_tokens
                        )));
                    }
                    end = start + 1;
                    tokens = t;
                }
            }
        }
        units.push(Unit {
            text: &word[bounds[start]..bounds[end]],
            tokens,
            chars: end - start,
            boundary: b,
            spaced: true,
        });
        b = Level::Char;
        start = end;
    }
    Ok(())
}

/// Characters that end a sentence.
fn is_terminator(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | ';' | '\u{2026}') || ends_without_space(c)
}

/// Sentence ends of scripts that put no space after them: the CJK full stop, full-width
/// `!` `?` `.`, the Devanagari danda and double danda, the Arabic question mark and full
/// stop. A sentence ends there even when no whitespace follows.
fn ends_without_space(c: char) -> bool {
    matches!(
        c,
        '\u{3002}'
            | '\u{ff01}'
            | '\u{ff1f}'
            | '\u{ff0e}'
            | '\u{0964}'
            | '\u{0965}'
            | '\u{061f}'
            | '\u{06d4}'
    )
}

/// Characters that may follow a terminator and still belong to the sentence (ASCII and
/// typographic quotes and brackets, CJK corner brackets and full-width parentheses).
fn is_closer(c: char) -> bool {
    matches!(
        c,
        '"' | '\''
            | ')'
            | ']'
            | '}'
            | '\u{201d}'
            | '\u{2019}'
            | '\u{bb}'
            | '\u{300d}'
            | '\u{300f}'
            | '\u{ff09}'
            | '\u{3011}'
            | '\u{300b}'
            | '\u{3009}'
    )
}

/// Sentences of `text` (untrimmed slices that cover the text in order).
fn split_sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut iter = text.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        if c == '\n' {
            out.push(&text[start..i]);
            start = i + 1;
            continue;
        }
        if !is_terminator(c) {
            continue;
        }
        let mut end = i + c.len_utf8();
        let mut spaceless = ends_without_space(c);
        while let Some(&(j, d)) = iter.peek() {
            if is_terminator(d) || is_closer(d) {
                end = j + d.len_utf8();
                spaceless |= ends_without_space(d);
                iter.next();
            } else {
                break;
            }
        }
        match iter.peek() {
            None => {}
            Some(&(_, d)) if d.is_whitespace() || spaceless => {
                out.push(&text[start..end]);
                start = end;
            }
            Some(_) => {}
        }
    }
    out.push(&text[start..]);
    out
}

/// Clauses of a sentence: cut after each comma that is followed by whitespace, and after
/// each CJK comma (`，` `、`) or full-width semicolon, which take no space after them.
fn split_after_commas(sentence: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut prev_comma = false;
    for (i, c) in sentence.char_indices() {
        if prev_comma && c.is_whitespace() {
            let piece = sentence[start..i].trim();
            if !piece.is_empty() {
                out.push(piece);
            }
            start = i;
        }
        if matches!(c, '\u{ff0c}' | '\u{3001}' | '\u{ff1b}') {
            let end = i + c.len_utf8();
            let piece = sentence[start..end].trim();
            if !piece.is_empty() {
                out.push(piece);
            }
            start = end;
        }
        prev_comma = c == ',';
    }
    let piece = sentence[start..].trim();
    if !piece.is_empty() {
        out.push(piece);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_without_spaces_split_at_their_own_sentence_ends() {
        let zh = "今天天气很好。我们去公园吧！你来吗？「好的。」";
        assert_eq!(
            split_sentences(zh),
            vec!["今天天气很好。", "我们去公园吧！", "你来吗？", "「好的。」"]
        );
        let hi = "नमस्ते। आप कैसे हैं?";
        assert_eq!(split_sentences(hi), vec!["नमस्ते।", " आप कैसे हैं?"]);
        // Latin sentence ends still need whitespace after them.
        assert_eq!(split_sentences("3.14 is pi.x"), vec!["3.14 is pi.x"]);
        assert_eq!(
            split_after_commas("一、二，三；四"),
            vec!["一、", "二，", "三；", "四"]
        );
        // A long Chinese text becomes sentence chunks, not 300-character slices.
        let long: String = (0..40)
            .map(|k| format!("这是第{k}个句子，它有一些字。"))
            .collect();
        let limits = ChunkLimits::default();
        let chunks = chunk_text(&long, &limits, char_count).unwrap();
        assert!(chunks.len() > 1);
        for c in &chunks {
            assert!(c.ends_with('。'), "{c:?}");
            assert!(c.chars().count() <= limits.max_chars);
        }
        assert_eq!(chunks.concat(), long);
    }

    fn words(s: &str) -> Vec<&str> {
        s.split_whitespace().collect()
    }

    /// One token per character; spaces count as one token each.
    fn char_count(s: &str) -> Result<usize> {
        Ok(s.chars().count())
    }

    fn check_invariants(text: &str, chunks: &[String], limits: &ChunkLimits) {
        for c in chunks {
            assert!(!c.trim().is_empty());
            assert_eq!(c.trim(), c.as_str());
            assert!(c.chars().count() <= limits.max_chars, "{c:?}");
        }
        let joined = chunks.join(" ");
        assert_eq!(words(&joined), words(text));
    }

    #[test]
    fn sentences_are_packed() {
        let limits = ChunkLimits {
            max_tokens: 1000,
            max_chars: 40,
        };
        let text = "First sentence here. Second one! Third? Fourth; fifth.\nSixth line";
        let chunks = chunk_text(text, &limits, char_count).unwrap();
        assert_eq!(
            chunks,
            vec![
                "First sentence here. Second one! Third?",
                "Fourth; fifth. Sixth line"
            ]
        );
        check_invariants(text, &chunks, &limits);
    }

    #[test]
    fn no_split_inside_numbers_or_before_quotes() {
        let limits = ChunkLimits {
            max_tokens: 1000,
            max_chars: 12,
        };
        let text = "Pi is 3.14 ok. He said \"Stop.\" Then left.";
        let chunks = chunk_text(text, &limits, char_count).unwrap();
        assert_eq!(
            chunks,
            vec!["Pi is 3.14", "ok.", "He said", "\"Stop.\"", "Then left."]
        );
        check_invariants(text, &chunks, &limits);
    }

    #[test]
    fn long_sentence_falls_back_to_commas_then_words() {
        let limits = ChunkLimits {
            max_tokens: 1000,
            max_chars: 20,
        };
        let text = "one two three, four five six, seven eight nine ten eleven twelve";
        let chunks = chunk_text(text, &limits, char_count).unwrap();
        assert_eq!(
            chunks,
            vec![
                "one two three,",
                "four five six,",
                "seven eight nine ten",
                "eleven twelve"
            ]
        );
        check_invariants(text, &chunks, &limits);
    }

    #[test]
    fn token_limit_is_hard() {
        // Two tokens per character: the token limit binds before the character limit.
        let limits = ChunkLimits {
            max_tokens: 10,
            max_chars: 100,
        };
        let two = |s: &str| Ok(2 * s.chars().count());
        let text = "ab cd ef gh. abcdefghijkl";
        let chunks = chunk_text(text, &limits, two).unwrap();
        for c in &chunks {
            assert!(2 * c.chars().count() <= 10, "{c:?}");
        }
        assert_eq!(chunks, vec!["ab cd", "ef", "gh.", "abcde", "fghij", "kl"]);
    }

    #[test]
    fn giant_word_is_cut_by_characters() {
        let limits = ChunkLimits {
            max_tokens: 1000,
            max_chars: 4,
        };
        let text = "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}";
        let chunks = chunk_text(text, &limits, char_count).unwrap();
        assert_eq!(chunks.concat(), text);
        assert!(chunks.iter().all(|c| c.chars().count() <= 4));
    }

    #[test]
    fn empty_and_whitespace() {
        let limits = ChunkLimits::default();
        assert!(chunk_text("", &limits, char_count).unwrap().is_empty());
        assert!(chunk_text(" \n\t\n ", &limits, char_count)
            .unwrap()
            .is_empty());
        assert_eq!(
            chunk_text("  hi  ", &limits, char_count).unwrap(),
            vec!["hi"]
        );
        let zero = ChunkLimits {
            max_tokens: 0,
            max_chars: 10,
        };
        assert!(chunk_text("hi", &zero, char_count).is_err());
    }

    #[test]
    fn errors_propagate() {
        let e = chunk_text("a b", &ChunkLimits::default(), |_| {
            Err(Error::internal("boom"))
        })
        .unwrap_err();
        assert!(e.to_string().contains("boom"));
    }

    #[test]
    fn large_text_is_linear() {
        let sentence = "The quick brown fox jumps over the lazy dog, again and again. ";
        let text: String = sentence.repeat(100 * 1024 / sentence.len() + 1);
        let limits = ChunkLimits::default();
        let mut calls = 0usize;
        let mut counted = 0usize;
        let start = std::time::Instant::now();
        let chunks = chunk_text(&text, &limits, |s| {
            calls += 1;
            counted += s.len();
            char_count(s)
        })
        .unwrap();
        // Each byte is tokenised about twice: once in its unit, once in its chunk.
        assert!(counted <= 3 * text.len(), "{counted} bytes counted");
        assert!(start.elapsed().as_secs_f64() < 2.0);
        check_invariants(&text, &chunks, &limits);
        assert!(chunks.len() > 300);
        assert!(calls > 0);
    }
}
