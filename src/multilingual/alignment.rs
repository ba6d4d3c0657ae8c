//! The multilingual model's online alignment checks (reference
//! `AlignmentStreamAnalyzer`, `chatterbox/models/t3/inference/alignment_stream_analyzer.py`).
//!
//! The multilingual T3 attends from speech to text along a roughly monotonic path in a
//! few heads (`config.t3.alignment_heads`). The bundle's `t3_decoder` outputs the mean of
//! those heads' attention probabilities for the conditional row (`alignment`,
//! `[seq, capacity]`); this analyzer reads the text columns of it once per sampled token
//! and edits the CFG-combined logits before the repetition penalty, as
//! `T3.inference` does:
//!
//! - while the attended text position is more than 3 tokens before the end (and the text
//!   has more than 5 tokens), the stop token is suppressed (`-2^15`);
//! - once the end was reached, a long tail on the last text tokens or attention going back
//!   to earlier text forces the stop token; so does the same token drawn twice in a row.
//!
//! The reference's heuristics are reproduced as written, including their quirks (the
//! `curr_frame_pos + 1` column mask, the token-repetition test on the last two tokens).

use crate::error::{Error, Result};

/// The value the reference writes into suppressed / forced logits (`2**15`).
const FORCE: f32 = 32768.0;

/// What one [`AlignmentAnalyzer::step`] decided (the reference's `AlignmentAnalysisResult`
/// fields that steer generation, for tests and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlignmentStep {
    /// Attended text position (argmax of the last alignment row), within the text slice.
    pub position: usize,
    /// The analyzer's running text position (moves unless the step was a discontinuity).
    pub text_position: usize,
    /// Whether the start of speech has been accepted (no false start).
    pub started: bool,
    /// Whether the attended position has reached the last three text tokens.
    pub complete: bool,
    /// Whether the stop token was suppressed this step.
    pub eos_suppressed: bool,
    /// Whether the stop token was forced this step (long tail, alignment repetition or
    /// token repetition).
    pub eos_forced: bool,
}

/// One synthesis's alignment state (reference `AlignmentStreamAnalyzer`).
#[derive(Debug, Clone)]
pub struct AlignmentAnalyzer {
    /// Text slice `[i, j)` in prefill positions: the text tokens (start and stop included).
    text_start: usize,
    text_end: usize,
    eos: usize,
    /// The alignment so far, `T` rows of `S = j - i` columns, row-major.
    rows: Vec<f32>,
    frame: usize,
    text_position: usize,
    started: bool,
    complete: bool,
    completed_at: Option<usize>,
    recent_tokens: Vec<i64>,
}

impl AlignmentAnalyzer {
    /// An analyzer for a prefill whose text tokens sit at positions
    /// `text_start..text_end`; `eos` is the stop-speech token's logit index.
    pub fn new(text_start: usize, text_end: usize, eos: usize) -> Result<AlignmentAnalyzer> {
        if text_end <= text_start {
            return Err(Error::internal(format!(
                "alignment text slice {text_start}..{text_end} is empty"
            )));
        }
        Ok(AlignmentAnalyzer {
            text_start,
            text_end,
            eos,
            rows: Vec::new(),
            frame: 0,
            text_position: 0,
            started: false,
            complete: false,
            completed_at: None,
            recent_tokens: Vec::new(),
        })
    }

    fn width(&self) -> usize {
        self.text_end - self.text_start
    }

    /// Rows of the alignment so far.
    pub fn frames(&self) -> usize {
        self.rows.len() / self.width()
    }

    /// The alignment so far, `frames() x S` row-major (after the reference's column mask).
    pub fn alignment(&self) -> &[f32] {
        &self.rows
    }

    /// One step: `attention` is the decoder's `alignment` output of the last call,
    /// `seq` rows of `capacity` values; the first step (after the prefill) takes the rows
    /// after the text, later steps their single row. `last_token` is the token the
    /// reference passes as `next_token` (the start-of-speech token at the first step,
    /// then the last sampled token). Edits `logits` (CFG-combined, one row) in place.
    pub fn step(
        &mut self,
        attention: &[f32],
        seq: usize,
        capacity: usize,
        last_token: Option<i64>,
        logits: &mut [f32],
    ) -> Result<AlignmentStep> {
        let (i, j, s) = (self.text_start, self.text_end, self.width());
        if seq == 0 || attention.len() != seq * capacity || capacity < j {
            return Err(Error::model_mismatch(
                "t3_decoder",
                format!(
                    "output `alignment` has {} values for {seq} rows of {capacity} positions; \
                     the text ends at position {j}",
                    attention.len()
                ),
            ));
        }
        if self.eos >= logits.len() {
            return Err(Error::internal(format!(
                "stop token {} outside {} logits",
                self.eos,
                logits.len()
            )));
        }
        let first_row = if self.frame == 0 {
            if seq <= j {
                return Err(Error::internal(format!(
                    "prefill of {seq} positions has no speech rows after the text (ends at {j})"
                )));
            }
            j
        } else {
            seq - 1
        };
        let keep = (self.frame + 1).min(s);
        for r in first_row..seq {
            let row = &attention[r * capacity + i..r * capacity + j];
            self.rows.extend_from_slice(&row[..keep]);
            self.rows.extend(std::iter::repeat_n(0.0, s - keep));
        }
        let t = self.frames();
        let at = |r: usize, c: usize| self.rows[r * s + c];

        // Position: argmax of the last row (the first maximum, as torch.argmax).
        let last = &self.rows[(t - 1) * s..];
        let position = argmax(last);
        let jump = position as i64 - self.text_position as i64;
        if -4 < jump && jump < 7 {
            self.text_position = position;
        }

        // False start: activations far off-diagonal in the last two rows, or none yet
        // strong in the first text tokens.
        let tail_max = (t.saturating_sub(2)..t)
            .flat_map(|r| (s.saturating_sub(2)..s).map(move |c| (r, c)))
            .map(|(r, c)| at(r, c))
            .fold(f32::NEG_INFINITY, f32::max);
        let head_max = (0..t)
            .flat_map(|r| (0..s.min(4)).map(move |c| (r, c)))
            .map(|(r, c)| at(r, c))
            .fold(f32::NEG_INFINITY, f32::max);
        let false_start = !self.started && (tail_max > 0.1 || head_max < 0.5);
        self.started = !false_start;

        self.complete = self.complete || self.text_position + 3 >= s;
        if self.complete && self.completed_at.is_none() {
            self.completed_at = Some(t);
        }

        let (long_tail, alignment_repetition) = match self.completed_at {
            Some(from) if self.complete => {
                // Activations on the last 3 text tokens summed over the frames since
                // completion (>= 5 frames: 200 ms).
                let long_tail = (s.saturating_sub(3)..s)
                    .map(|c| (from..t).map(|r| at(r, c)).sum::<f32>())
                    .fold(f32::NEG_INFINITY, f32::max)
                    >= 5.0;
                // Attention back on earlier text after completion. The reference's
                // `A[completed_at:, :-5].max(dim=1)` fails on an empty slice (texts of 5
                // tokens or fewer); it counts as no repetition here.
                let early = s.saturating_sub(5);
                let repetition = early > 0
                    && (from..t)
                        .map(|r| {
                            (0..early)
                                .map(|c| at(r, c))
                                .fold(f32::NEG_INFINITY, f32::max)
                        })
                        .sum::<f32>()
                        > 5.0;
                (long_tail, repetition)
            }
            _ => (false, false),
        };

        if let Some(token) = last_token {
            self.recent_tokens.push(token);
            if self.recent_tokens.len() > 8 {
                self.recent_tokens.remove(0);
            }
        }
        let n = self.recent_tokens.len();
        let token_repetition = n >= 3 && self.recent_tokens[n - 1] == self.recent_tokens[n - 2];
        if token_repetition {
            tracing::debug!(
                "alignment: token {} drawn twice in a row; forcing the stop token",
                self.recent_tokens[n - 1]
            );
        }

        let eos_suppressed = position + 3 < s && s > 5;
        if eos_suppressed {
            logits[self.eos] = -FORCE;
        }
        let eos_forced = long_tail || alignment_repetition || token_repetition;
        if eos_forced {
            tracing::debug!(
                "alignment: forcing the stop token (long tail {long_tail}, alignment repetition \
                 {alignment_repetition}, token repetition {token_repetition})"
            );
            logits.fill(-FORCE);
            logits[self.eos] = FORCE;
        }
        self.frame += 1;
        Ok(AlignmentStep {
            position,
            text_position: self.text_position,
            started: self.started,
            complete: self.complete,
            eos_suppressed,
            eos_forced,
        })
    }
}

/// Index of the first maximum (NaN never wins).
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (k, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = k;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A prefill of `seq` rows over `capacity` positions with the text at `i..j`, where
    /// the speech rows attend to text column `col` with weight `w`.
    fn rows(seq: usize, capacity: usize, i: usize, cols: &[(usize, usize, f32)]) -> Vec<f32> {
        let mut a = vec![0.0; seq * capacity];
        for &(r, c, w) in cols {
            a[r * capacity + i + c] = w;
        }
        a
    }

    #[test]
    fn suppresses_stop_until_the_end_of_the_text() {
        // text of 10 tokens at positions 2..12, prefill of 14 rows (2 speech rows).
        let (i, j, cap) = (2, 12, 40);
        let mut a = AlignmentAnalyzer::new(i, j, 5).unwrap();
        let prefill = rows(14, cap, i, &[(12, 0, 0.9), (13, 0, 0.9)]);
        let mut logits = vec![0.0; 8];
        let st = a.step(&prefill, 14, cap, Some(7), &mut logits).unwrap();
        assert_eq!(a.frames(), 2);
        assert_eq!(st.position, 0);
        assert!(st.started && st.eos_suppressed && !st.eos_forced);
        assert_eq!(logits[5], -FORCE);
        // Walk along the text one column per frame; the mask allows column <= frame.
        for f in 1..10 {
            let row = rows(1, cap, i, &[(0, f, 0.8)]);
            let mut logits = vec![0.0; 8];
            let st = a
                .step(&row, 1, cap, Some(100 + f as i64), &mut logits)
                .unwrap();
            assert_eq!(st.position, f, "frame {f}");
            assert_eq!(st.eos_suppressed, f + 3 < 10, "frame {f}");
            assert_eq!(st.complete, f >= 7, "frame {f}");
            assert!(!st.eos_forced, "frame {f}");
        }
    }

    #[test]
    fn column_mask_follows_the_frame_count() {
        let (i, j, cap) = (0, 10, 20);
        let mut a = AlignmentAnalyzer::new(i, j, 0).unwrap();
        // The prefill row attends to column 6, but at frame 0 only column 0 is kept.
        let prefill = rows(12, cap, i, &[(10, 6, 0.9), (11, 6, 0.9)]);
        let st = a.step(&prefill, 12, cap, None, &mut [0.0; 4]).unwrap();
        assert_eq!(st.position, 0);
        assert!(a.alignment().iter().all(|&v| v == 0.0));
        assert!(!st.started, "no strong early activation: a false start");
    }

    #[test]
    fn a_token_drawn_twice_forces_the_stop_token() {
        let (i, j, cap) = (0, 12, 30);
        let mut a = AlignmentAnalyzer::new(i, j, 3).unwrap();
        let prefill = rows(14, cap, i, &[(12, 0, 1.0), (13, 0, 1.0)]);
        let mut l = vec![1.0; 6];
        assert!(
            !a.step(&prefill, 14, cap, Some(50), &mut l)
                .unwrap()
                .eos_forced
        );
        let step = rows(1, cap, i, &[(0, 1, 1.0)]);
        assert!(!a.step(&step, 1, cap, Some(9), &mut l).unwrap().eos_forced);
        let mut l = vec![1.0; 6];
        let st = a.step(&step, 1, cap, Some(9), &mut l).unwrap();
        assert!(st.eos_forced);
        assert_eq!(l, vec![-FORCE, -FORCE, -FORCE, FORCE, -FORCE, -FORCE]);
    }

    #[test]
    fn long_tail_after_completion_forces_the_stop_token() {
        // 6 text tokens: complete once the position is >= 3.
        let (i, j, cap) = (0, 6, 40);
        let mut a = AlignmentAnalyzer::new(i, j, 0).unwrap();
        let prefill = rows(8, cap, i, &[(6, 0, 1.0), (7, 0, 1.0)]);
        a.step(&prefill, 8, cap, None, &mut [0.0; 2]).unwrap();
        let mut forced_at = None;
        for f in 1..20 {
            let col = f.min(5);
            let row = rows(1, cap, i, &[(0, col, 1.0)]);
            let st = a.step(&row, 1, cap, None, &mut [0.0; 2]).unwrap();
            if st.eos_forced {
                forced_at = Some(f);
                break;
            }
        }
        // Complete at frame 3 (position 3 = S - 3), counted from the next row on (the
        // reference's `completed_at = T`). The threshold is on the largest per-column sum
        // of the last three columns: column 4 gets frame 4, column 5 frames 5..=9.
        assert_eq!(forced_at, Some(9));
    }

    #[test]
    fn refuses_a_short_attention_output() {
        let mut a = AlignmentAnalyzer::new(2, 12, 0).unwrap();
        let e = a.step(&[0.0; 10], 1, 10, None, &mut [0.0; 2]).unwrap_err();
        assert!(e.to_string().contains("alignment"), "{e}");
        assert!(AlignmentAnalyzer::new(3, 3, 0).is_err());
    }
}
