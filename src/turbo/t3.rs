//! Turbo's T3: a GPT-2 backbone whose learned absolute positions live inside the
//! `t3_decoder` graph (no text/speech position tables, no perceiver, no emotion
//! input, no CFG row). Reference: `T3.prepare_conditioning`, `T3.prepare_input_embeds`
//! and `T3.inference_turbo`.
//!
//! - conditioning: `cond = [spkr_enc(speaker) | speech_emb(prompt tokens)]`, `[1 + P, D]`;
//! - prefill: `cond | text_emb(ids) | speech_emb(start)`;
//! - each step: `speech_emb(token)`; the graph numbers positions from its cache length.
//!
//! The KV-cache decoder and the sampling loop are the original model's
//! ([`crate::t3::decode`]), with a batch of one.

use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::residency::{Component, Host};
use crate::runtime::Value;
use crate::t3::decode::{self, KvDecoder, KvPrefix, StepLogits};
use crate::t3::{take_f32, T3Dims};

/// `speech_emb(tokens)` (graph `t3_speech_embed`), `[len, D]`.
pub fn speech_embeds(host: &Host, dims: &T3Dims, tokens: &[i64]) -> Result<Vec<f32>> {
    let len = tokens.len();
    let mut out = host.run(
        Component::T3SpeechEmbed,
        vec![("tokens", Value::from_i64(&[1, len], tokens.to_vec())?)],
    )?;
    take_f32(&mut out, "t3_speech_embed", "embeds", len * dims.hidden)
}

/// `text_emb(ids)` (graph `t3_text_embed`), `[len, D]`.
pub fn text_embeds(host: &Host, dims: &T3Dims, ids: &[i64]) -> Result<Vec<f32>> {
    let len = ids.len();
    if len == 0 {
        return Err(Error::invalid_text("no text tokens"));
    }
    let mut out = host.run(
        Component::T3TextEmbed,
        vec![("tokens", Value::from_i64(&[1, len], ids.to_vec())?)],
    )?;
    take_f32(&mut out, "t3_text_embed", "token_embeds", len * dims.hidden)
}

/// The T3 conditioning `[1 + P, D]` of a voice with speaker embedding `speaker` and
/// T3 prompt tokens `prompt` (graph `t3_cond`).
pub fn cond(host: &Host, dims: &T3Dims, speaker: &[f32], prompt: &[i64]) -> Result<Vec<f32>> {
    let embeds = if prompt.is_empty() {
        Vec::new()
    } else {
        speech_embeds(host, dims, prompt)?
    };
    let mut out = host.run(
        Component::T3Cond,
        vec![
            (
                "speaker_emb",
                Value::from_f32(&[1, speaker.len()], speaker.to_vec())?,
            ),
            (
                "prompt_embeds",
                Value::from_f32(&[1, prompt.len(), dims.hidden], embeds)?,
            ),
        ],
    )?;
    take_f32(
        &mut out,
        "t3_cond",
        "cond",
        (1 + prompt.len()) * dims.hidden,
    )
}

/// Checks that a synthesis fits the backbone's `max_positions`: the prefill
/// (`cond_rows + text + 1`) plus one position per sampled token after the first.
pub fn check_positions(
    max_positions: usize,
    cond_rows: usize,
    text_len: usize,
    max_new_tokens: usize,
) -> Result<()> {
    let needed = cond_rows + text_len + max_new_tokens;
    if needed > max_positions {
        return Err(Error::invalid_argument(
            "max_new_tokens",
            format!(
                "{max_new_tokens} speech tokens after {cond_rows} conditioning and {text_len} text positions need {needed} positions; T3 has {max_positions}"
            ),
        ));
    }
    Ok(())
}

/// The KV cache of the conditioning prefix of the last voice, reused while the
/// voice stays the same: a causal backbone's keys and values for the first
/// `1 + P` positions depend on the conditioning alone, so every synthesis (and
/// every text chunk) with that voice starts from a copy instead of running the
/// conditioning (376 of the about 400 prefill positions of a typical sentence)
/// through GPT-2 again. One entry: `2 x layers x (1 + P) x D` floats (74 MB for
/// the full model with a 375-token prompt), kept compact and copied into each new
/// decoder's cache. The prefill always runs as these two forwards, conditioning
/// then text, cached or not, so a cache hit gives the same output bit for bit.
#[derive(Debug, Default)]
pub struct CondPrefixCache {
    slot: Mutex<Option<(Vec<f32>, KvPrefix)>>,
}

impl CondPrefixCache {
    /// A decoder of `capacity` positions whose cache holds the KV of `cond`: a copy of
    /// the cached one when `cond` is the cached conditioning, else computed (and cached).
    fn decoder<'h>(
        &self,
        host: &'h Host,
        dims: &T3Dims,
        cond: &[f32],
        capacity: usize,
    ) -> Result<KvDecoder<'h>> {
        {
            let slot = self
                .slot
                .lock()
                .map_err(|_| Error::internal("T3 prefix cache poisoned"))?;
            if let Some((c, prefix)) = slot.as_ref() {
                if c.as_slice() == cond {
                    return KvDecoder::from_prefix(host, dims, prefix, capacity);
                }
            }
        }
        let dec = prefix_decoder(host, dims, cond, capacity)?;
        let prefix = dec.prefix()?;
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some((cond.to_vec(), prefix));
        }
        Ok(dec)
    }

    /// Drops the cached prefix (its memory is freed).
    pub fn clear(&self) {
        if let Ok(mut slot) = self.slot.lock() {
            *slot = None;
        }
    }
}

/// A decoder of `capacity` positions that has run the conditioning rows alone.
fn prefix_decoder<'h>(
    host: &'h Host,
    dims: &T3Dims,
    cond: &[f32],
    capacity: usize,
) -> Result<KvDecoder<'h>> {
    let rows = cond.len() / dims.hidden;
    let mut dec = KvDecoder::new(host, dims, 1, capacity)?;
    dec.forward(cond.to_vec(), rows)?;
    Ok(dec)
}

/// Generates speech tokens for one text as `inference_turbo`: `cond` is
/// [`cond`]'s output, `ids` the text ids. The prefill runs the conditioning
/// (from `prefix` when it holds this conditioning), then `text | start` on it.
/// `pick` and `on_token` as in [`decode::decode_loop`]. Returns the sampled
/// tokens (the stop token included when it was drawn).
#[allow(clippy::too_many_arguments)]
pub fn generate(
    host: &Host,
    dims: &T3Dims,
    max_positions: usize,
    prefix: Option<&CondPrefixCache>,
    cond: &[f32],
    ids: &[i64],
    max_new_tokens: usize,
    pick: impl FnMut(StepLogits<'_>) -> Result<i64>,
    on_token: impl FnMut(usize, i64) -> bool,
) -> Result<Vec<i64>> {
    if cond.is_empty() || !cond.len().is_multiple_of(dims.hidden) {
        return Err(Error::internal("T3 conditioning has the wrong size"));
    }
    let cond_rows = cond.len() / dims.hidden;
    check_positions(max_positions, cond_rows, ids.len(), max_new_tokens)?;
    let text = text_embeds(host, dims, ids)?;
    let bos = speech_embeds(host, dims, &[dims.speech_start])?;
    let seq = ids.len() + 1;
    let mut x = Vec::with_capacity(seq * dims.hidden);
    x.extend_from_slice(&text);
    x.extend_from_slice(&bos);
    drop(text);
    // The prefill, then one position per step after the first token (one spare).
    let capacity = cond_rows + seq + max_new_tokens;
    let mut dec = match prefix {
        Some(cache) => cache.decoder(host, dims, cond, capacity)?,
        None => prefix_decoder(host, dims, cond, capacity)?,
    };
    let logits = dec.forward(x, seq)?;
    decode::decode_loop(
        &mut dec,
        logits,
        max_new_tokens,
        |token, _| speech_embeds(host, dims, &[token]),
        pick,
        on_token,
    )
}

/// The reference's token post-processing: every token `>= num_codes` is dropped
/// (a start token drawn mid-sequence included; the stop token ended generation),
/// then `silence_tokens` copies of `silence_token` are appended.
pub fn speech_tokens_for_s3gen(
    sampled: &[i64],
    num_codes: i64,
    silence_token: Option<i64>,
    silence_tokens: usize,
) -> Vec<i64> {
    let mut out: Vec<i64> = sampled
        .iter()
        .copied()
        .filter(|&t| (0..num_codes).contains(&t))
        .collect();
    if let Some(s) = silence_token {
        out.extend(std::iter::repeat_n(s, silence_tokens));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_then_silence() {
        assert_eq!(
            speech_tokens_for_s3gen(&[5, 6561, 7, 6562], 6561, Some(4299), 3),
            vec![5, 7, 4299, 4299, 4299]
        );
        assert_eq!(
            speech_tokens_for_s3gen(&[6562], 6561, None, 0),
            Vec::<i64>::new()
        );
    }

    #[test]
    fn positions_bound() {
        assert!(check_positions(8196, 376, 100, 1001).is_ok());
        let e = check_positions(8196, 376, 7000, 1001).unwrap_err();
        assert!(e.to_string().contains("positions"), "{e}");
    }
}
