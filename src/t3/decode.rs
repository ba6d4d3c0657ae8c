//! The T3 KV-cache decode loop (reference `T3.inference`).
//!
//! One graph, `t3_decoder`, serves the prefill (empty past) and every decode
//! step. The `present_*` outputs of a step are moved, not copied, into the
//! `past_*` inputs of the next one.

use crate::error::{Error, Result};
use crate::residency::{Component, Host};
use crate::runtime::Value;

use super::{prefill_embeds, speech_embeds, text_embeds, T3Dims};

/// A running `t3_decoder` with its KV cache, for a batch of 1 (no CFG) or 2
/// (conditional and unconditional rows).
pub struct KvDecoder<'h> {
    host: &'h Host,
    dims: T3Dims,
    batch: usize,
    /// `past_key_0, past_value_0, past_key_1, ...`
    past: Vec<Value>,
    past_len: usize,
    past_names: Vec<String>,
    present_names: Vec<String>,
}

impl<'h> KvDecoder<'h> {
    /// A decoder with an empty cache (`[B, H, 0, hd]` tensors).
    pub fn new(host: &'h Host, dims: &T3Dims, batch: usize) -> Result<KvDecoder<'h>> {
        let mut past_names = Vec::with_capacity(2 * dims.layers);
        let mut present_names = Vec::with_capacity(2 * dims.layers);
        let mut past = Vec::with_capacity(2 * dims.layers);
        for i in 0..dims.layers {
            for kind in ["key", "value"] {
                past_names.push(format!("past_{kind}_{i}"));
                present_names.push(format!("present_{kind}_{i}"));
                past.push(Value::from_f32(
                    &[batch, dims.kv_heads, 0, dims.head_dim],
                    Vec::new(),
                )?);
            }
        }
        Ok(KvDecoder {
            host,
            dims: dims.clone(),
            batch,
            past,
            past_len: 0,
            past_names,
            present_names,
        })
    }

    /// A decoder whose cache starts as `past` (`past_key_0, past_value_0, ...`, each
    /// `[B, H, past_len, hd]`), e.g. a copy of [`KvDecoder::copy_past`] of another.
    pub fn with_past(
        host: &'h Host,
        dims: &T3Dims,
        batch: usize,
        past: Vec<Value>,
        past_len: usize,
    ) -> Result<KvDecoder<'h>> {
        let mut dec = KvDecoder::new(host, dims, batch)?;
        if past.len() != dec.past.len() {
            return Err(Error::internal(format!(
                "{} KV tensors given, the decoder has {}",
                past.len(),
                dec.past.len()
            )));
        }
        let want = [batch, dims.kv_heads, past_len, dims.head_dim];
        if let Some(v) = past.iter().find(|v| v.shape() != want) {
            return Err(Error::internal(format!(
                "KV tensor of shape {:?}, expected {want:?}",
                v.shape()
            )));
        }
        dec.past = past;
        dec.past_len = past_len;
        Ok(dec)
    }

    /// A deep copy of the cache (to start other decoders from the same prefix).
    pub fn copy_past(&self) -> Result<Vec<Value>> {
        copy_values(&self.past)
    }

    /// Positions already in the cache.
    pub fn past_len(&self) -> usize {
        self.past_len
    }

    /// Runs `seq` new positions (`embeds` is `[B, seq, D]` row-major) and
    /// returns the logits `[B, seq, vocab]`; the cache grows by `seq`.
    pub fn forward(&mut self, embeds: Vec<f32>, seq: usize) -> Result<Value> {
        let d = &self.dims;
        if embeds.len() != self.batch * seq * d.hidden {
            return Err(Error::internal(format!(
                "T3 input embeds have {} values, expected {} x {seq} x {}",
                embeds.len(),
                self.batch,
                d.hidden
            )));
        }
        let mut inputs: Vec<(&str, Value)> = Vec::with_capacity(1 + self.past.len());
        inputs.push((
            "inputs_embeds",
            Value::from_f32(&[self.batch, seq, d.hidden], embeds)?,
        ));
        let past = std::mem::take(&mut self.past);
        for (name, v) in self.past_names.iter().zip(past) {
            inputs.push((name.as_str(), v));
        }
        let mut out = self.host.run(Component::T3Decoder, inputs)?;
        let mut present = Vec::with_capacity(self.present_names.len());
        for name in &self.present_names {
            present.push(out.take(name)?);
        }
        let total = self.past_len + seq;
        if let Some(shape) = present.first().map(Value::shape) {
            let want = [self.batch, d.kv_heads, total, d.head_dim];
            if shape != want {
                return Err(Error::model_mismatch(
                    "t3_decoder",
                    format!("output `present_key_0` has shape {shape:?}, expected {want:?}"),
                ));
            }
        }
        self.past = present;
        self.past_len = total;
        let logits = out.take("logits")?;
        let shape = logits.shape();
        if shape != [self.batch, seq, d.speech_vocab] {
            return Err(Error::model_mismatch(
                "t3_decoder",
                format!(
                    "output `logits` has shape {shape:?}, expected [{}, {seq}, {}]",
                    self.batch, d.speech_vocab
                ),
            ));
        }
        Ok(logits)
    }
}

/// Deep copies of f32 tensors (a KV cache kept to start other decoders from).
pub fn copy_values(values: &[Value]) -> Result<Vec<Value>> {
    values
        .iter()
        .map(|v| Value::from_f32(&v.shape(), super::f32_vec(v)?))
        .collect()
}

/// The last-position logits of each row of `logits` `[B, seq, V]`: `B` vectors.
pub fn last_logits(logits: &Value) -> Result<Vec<Vec<f32>>> {
    let view = logits.view_f32()?;
    let shape = view.shape().to_vec();
    if shape.len() != 3 || shape[1] == 0 {
        return Err(Error::model_mismatch(
            "t3_decoder",
            format!("logits have shape {shape:?}"),
        ));
    }
    let (b, s, v) = (shape[0], shape[1], shape[2]);
    let data = view
        .as_slice()
        .ok_or_else(|| Error::internal("T3 logits are not contiguous"))?;
    Ok((0..b)
        .map(|row| {
            let start = (row * s + s - 1) * v;
            data[start..start + v].to_vec()
        })
        .collect())
}

/// Options of [`generate`].
#[derive(Debug, Clone, Copy)]
pub struct GenerateOptions {
    /// CFG weight; `0` runs the conditional row alone.
    pub cfg_weight: f32,
    /// Most tokens to sample (the stop token included).
    pub max_new_tokens: usize,
}

/// What a sampler sees at each step.
pub struct StepLogits<'a> {
    /// Conditional-row logits `[V]`.
    pub cond: &'a [f32],
    /// Unconditional-row logits `[V]` (absent without CFG).
    pub uncond: Option<&'a [f32]>,
    /// Tokens so far, the start-of-speech token first.
    pub history: &'a [i64],
}

/// Checks that generating `max_new_tokens` fits T3's learned speech positions.
pub fn check_limits(dims: &T3Dims, max_new_tokens: usize) -> Result<()> {
    // Step i feeds position i + 1 for i < max_new_tokens - 1 (BOS is position 0).
    if max_new_tokens == 0 || max_new_tokens > dims.speech_max_positions {
        return Err(Error::invalid_argument(
            "max_new_tokens",
            format!(
                "must be in 1..={} (T3's learned speech positions), got {max_new_tokens}",
                dims.speech_max_positions
            ),
        ));
    }
    Ok(())
}

/// Generates speech tokens for one text (ids with start and stop tokens):
/// prefill `cond | text | bos | bos`, then one decode step per token, feeding
/// `speech_emb(t) + speech_pos_emb(i + 1)`. `pick` turns the step logits into
/// the next token; `on_token(i)` is called after token `i` and returning
/// `false` cancels. Returns the sampled tokens (the stop token included when
/// it was drawn).
pub fn generate(
    host: &Host,
    dims: &T3Dims,
    cond: &[f32],
    text_ids: &[i64],
    opts: GenerateOptions,
    pick: impl FnMut(StepLogits<'_>) -> Result<i64>,
    on_token: impl FnMut(usize) -> bool,
) -> Result<Vec<i64>> {
    check_limits(dims, opts.max_new_tokens)?;
    if cond.len() != dims.cond_len * dims.hidden {
        return Err(Error::internal("T3 conditioning has the wrong size"));
    }
    let cfg = opts.cfg_weight > 0.0;
    let batch = if cfg { 2 } else { 1 };
    let text = text_embeds(host, dims, text_ids)?;
    let bos = speech_embeds(host, dims, &[dims.speech_start], &[0])?;
    let seq = dims.cond_len + text.len + 2;
    let x = prefill_embeds(cond, &text, &bos, cfg);
    drop(text);
    let mut dec = KvDecoder::new(host, dims, batch)?;
    let logits = dec.forward(x, seq)?;
    decode_loop(
        &mut dec,
        logits,
        opts.max_new_tokens,
        |token, i| {
            let emb = speech_embeds(host, dims, &[token], &[i as i64 + 1])?;
            let mut x = Vec::with_capacity(batch * emb.len());
            for _ in 0..batch {
                x.extend_from_slice(&emb);
            }
            Ok(x)
        },
        pick,
        on_token,
    )
}

/// The sampling loop both T3 families share, after the prefill gave `logits`:
/// `pick` draws token `i` from the last-position logits (its `history` holds
/// the start-of-speech token, then the tokens so far); the loop ends at the
/// stop token or after `max_new_tokens` tokens; otherwise `embed(token, i)`
/// gives the next step's input embeds `[B, 1, D]` and the decoder runs one
/// step. `on_token(i)` returning `false` cancels. Returns the sampled tokens
/// (the stop token included when it was drawn).
pub fn decode_loop(
    dec: &mut KvDecoder<'_>,
    mut logits: Value,
    max_new_tokens: usize,
    mut embed: impl FnMut(i64, usize) -> Result<Vec<f32>>,
    mut pick: impl FnMut(StepLogits<'_>) -> Result<i64>,
    mut on_token: impl FnMut(usize) -> bool,
) -> Result<Vec<i64>> {
    let start = dec.dims.speech_start;
    let stop = dec.dims.speech_stop;
    let mut history = Vec::with_capacity(max_new_tokens + 1);
    history.push(start);
    for i in 0..max_new_tokens {
        let rows = last_logits(&logits)?;
        drop(logits);
        let token = pick(StepLogits {
            cond: &rows[0],
            uncond: rows.get(1).map(Vec::as_slice),
            history: &history,
        })?;
        history.push(token);
        if token == stop {
            break;
        }
        if !on_token(i) {
            return Err(Error::cancelled(
                "speech token generation stopped by the caller",
            ));
        }
        if i + 1 == max_new_tokens {
            break;
        }
        let x = embed(token, i)?;
        logits = dec.forward(x, 1)?;
    }
    history.remove(0);
    Ok(history)
}
