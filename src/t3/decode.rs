//! The T3 KV-cache decode loop (reference `T3.inference`).
//!
//! One graph, `t3_decoder`, serves the prefill and every decode step. Its KV cache is one
//! fixed-capacity buffer per layer and kind, `[B, H, capacity, hd]`, allocated once and bound
//! (IoBinding) as both `past_{key,value}_i` and `present_{key,value}_i`: given `past_len`, the
//! graph reads positions `0..past_len` and writes the new ones `past_len..past_len + seq` into
//! the same buffer, so a step copies nothing and its cost does not grow with a cache copy.

use crate::bundle::DType;
use crate::error::{Error, Result};
use crate::residency::{Component, Host};
use crate::runtime::{StateTensor, Value};

use super::{prefill_embeds, speech_embeds, text_embeds, T3Dims};

/// The multilingual `t3_decoder`'s extra output (see [`KvDecoder::alignment`]).
const ALIGNMENT: &str = "alignment";

/// A running `t3_decoder` with its KV cache, for a batch of 1 (no CFG) or 2
/// (conditional and unconditional rows).
pub struct KvDecoder<'h> {
    host: &'h Host,
    dims: T3Dims,
    batch: usize,
    capacity: usize,
    /// Element type of the cache: what the manifest declares for `past_*` (float16 in an
    /// fp16-compute decoder, float32 otherwise).
    dtype: DType,
    /// `past_key_0`/`present_key_0`, `past_value_0`/`present_value_0`, ... each
    /// `[B, H, capacity, hd]`.
    state: Vec<StateTensor>,
    past_len: usize,
    /// Whether the graph has the multilingual `alignment` output.
    has_alignment: bool,
    /// `alignment` of the last [`KvDecoder::forward`], `[seq, capacity]`.
    alignment: Option<Value>,
}

impl<'h> KvDecoder<'h> {
    /// A decoder with an empty cache of `capacity` positions (the prefill and every step
    /// after it must fit). The buffers are allocated once, not zeroed.
    ///
    /// Errors: `ModelMismatch` when the bundle's `t3_decoder` predates the in-place cache
    /// (no `past_len` input).
    pub fn new(
        host: &'h Host,
        dims: &T3Dims,
        batch: usize,
        capacity: usize,
    ) -> Result<KvDecoder<'h>> {
        check_contract(host)?;
        let dtype = cache_dtype(host, dims)?;
        if batch == 0 || capacity == 0 {
            return Err(Error::internal(format!(
                "T3 KV cache of batch {batch} and capacity {capacity}"
            )));
        }
        let shape = [batch, dims.kv_heads, capacity, dims.head_dim];
        let mut state = Vec::with_capacity(2 * dims.layers);
        for i in 0..dims.layers {
            for kind in ["key", "value"] {
                state.push(StateTensor {
                    input: format!("past_{kind}_{i}"),
                    output: format!("present_{kind}_{i}"),
                    value: host.alloc(Component::T3Decoder, dtype, &shape)?,
                });
            }
        }
        let has_alignment = host
            .bundle()
            .component(Component::T3Decoder.name())?
            .output(ALIGNMENT)
            .is_some();
        Ok(KvDecoder {
            host,
            dims: dims.clone(),
            batch,
            capacity,
            dtype,
            state,
            past_len: 0,
            has_alignment,
            alignment: None,
        })
    }

    /// A decoder of `capacity` positions whose cache starts as `prefix` (from
    /// [`KvDecoder::prefix`] of another decoder of the same batch).
    pub fn from_prefix(
        host: &'h Host,
        dims: &T3Dims,
        prefix: &KvPrefix,
        capacity: usize,
    ) -> Result<KvDecoder<'h>> {
        if prefix.rows > capacity {
            return Err(Error::invalid_argument(
                "max_new_tokens",
                format!(
                    "the T3 KV cache holds {capacity} positions, fewer than the {} cached conditioning positions",
                    prefix.rows
                ),
            ));
        }
        let mut dec = KvDecoder::new(host, dims, prefix.batch, capacity)?;
        if prefix.dtype != dec.dtype {
            return Err(Error::internal(format!(
                "a {} KV prefix for a {} cache",
                prefix.dtype.name(),
                dec.dtype.name()
            )));
        }
        if prefix.tensors.len() != dec.state.len() {
            return Err(Error::internal(format!(
                "{} cached KV tensors, the decoder has {}",
                prefix.tensors.len(),
                dec.state.len()
            )));
        }
        let layout = dec.layout(prefix.rows);
        for (s, rows) in dec.state.iter_mut().zip(&prefix.tensors) {
            if s.value.is_on_host() {
                layout.scatter(s.value.bytes_mut()?, rows)?;
            } else {
                let mut staging = Value::alloc(dec.dtype, &s.value.shape())?;
                layout.scatter(staging.bytes_mut()?, rows)?;
                s.value.copy_from(&staging)?;
            }
        }
        dec.past_len = prefix.rows;
        Ok(dec)
    }

    /// A copy of the positions in the cache (`0..past_len`), compact.
    pub fn prefix(&self) -> Result<KvPrefix> {
        let layout = self.layout(self.past_len);
        let mut tensors = Vec::with_capacity(self.state.len());
        for s in &self.state {
            let rows = if s.value.is_on_host() {
                layout.gather(s.value.bytes()?)?
            } else {
                layout.gather(s.value.to_host()?.bytes()?)?
            };
            tensors.push(rows);
        }
        Ok(KvPrefix {
            batch: self.batch,
            rows: self.past_len,
            dtype: self.dtype,
            tensors,
        })
    }

    /// Element type of the KV cache (the manifest's dtype of `past_key_0`).
    pub fn cache_dtype(&self) -> DType {
        self.dtype
    }

    /// Positions already in the cache.
    pub fn past_len(&self) -> usize {
        self.past_len
    }

    /// Positions the cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The multilingual graph's `alignment` output of the last [`KvDecoder::forward`]:
    /// `[seq, capacity]` row-major (the mean attention of `config.t3.alignment_heads`,
    /// conditional row); `None` when the graph has no such output.
    pub fn alignment(&self) -> Result<Option<&[f32]>> {
        match &self.alignment {
            Some(v) => Ok(Some(v.f32_slice()?)),
            None => Ok(None),
        }
    }

    /// The layout of the cache in bytes (a position of a slab is `head_dim` elements).
    fn layout(&self, rows: usize) -> SlabLayout {
        SlabLayout {
            slabs: self.batch * self.dims.kv_heads,
            capacity: self.capacity,
            rows,
            head_dim: self.dims.head_dim * self.dtype.size(),
        }
    }

    /// Runs `seq` new positions (`embeds` is `[B, seq, D]` row-major) and
    /// returns the logits `[B, seq, vocab]`; the cache grows by `seq`, in place.
    pub fn forward(&mut self, embeds: Vec<f32>, seq: usize) -> Result<Value> {
        let d = &self.dims;
        if seq == 0 || embeds.len() != self.batch * seq * d.hidden {
            return Err(Error::internal(format!(
                "T3 input embeds have {} values, expected {} x {seq} x {}",
                embeds.len(),
                self.batch,
                d.hidden
            )));
        }
        check_step(self.past_len, seq, self.capacity, self.batch)?;
        let inputs = vec![
            (
                "inputs_embeds",
                Value::from_f32(&[self.batch, seq, d.hidden], embeds)?,
            ),
            (
                "past_len",
                Value::from_i64(&[1], vec![self.past_len as i64])?,
            ),
        ];
        let mut out = self
            .host
            .run_in_place(Component::T3Decoder, inputs, &mut self.state)?;
        self.past_len += seq;
        self.alignment = None;
        if self.has_alignment {
            let a = out.take(ALIGNMENT)?;
            if a.shape() != [seq, self.capacity] {
                return Err(Error::model_mismatch(
                    "t3_decoder",
                    format!(
                        "output `{ALIGNMENT}` has shape {:?}, expected [{seq}, {}]",
                        a.shape(),
                        self.capacity
                    ),
                ));
            }
            self.alignment = Some(a);
        }
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

/// The first `rows` positions of a KV cache, compact: one `[B, H, rows, hd]` array per
/// cache tensor (`key_0, value_0, key_1, ...`), the bytes of the cache's element type.
/// Starts other decoders from a shared prefix ([`KvDecoder::from_prefix`]).
#[derive(Debug, Clone)]
pub struct KvPrefix {
    batch: usize,
    rows: usize,
    dtype: DType,
    tensors: Vec<Vec<u8>>,
}

impl KvPrefix {
    /// Positions held.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

/// Checks that a step of `seq` positions after `past_len` fits the `t3_decoder` contract:
/// within the cache, and a batch of one when a multi-position step follows cached positions
/// (ONNX Runtime's GroupQueryAttention refuses it otherwise).
fn check_step(past_len: usize, seq: usize, capacity: usize, batch: usize) -> Result<()> {
    if past_len + seq > capacity {
        return Err(Error::invalid_argument(
            "max_new_tokens",
            format!(
                "T3 step needs positions {past_len}..{} but its KV cache holds {capacity} (prefill + max_new_tokens)",
                past_len + seq
            ),
        ));
    }
    if past_len > 0 && seq > 1 && batch != 1 {
        return Err(Error::internal(format!(
            "T3 step of {seq} positions after {past_len} cached ones with batch {batch}: \
             `t3_decoder` needs batch 1 for that"
        )));
    }
    Ok(())
}

/// The element type of the decoder's KV cache: the manifest's dtype of every `past_*` input
/// and `present_*` output, float32 or float16, the same for all (else `ModelMismatch`
/// naming the tensor).
fn cache_dtype(host: &Host, dims: &T3Dims) -> Result<DType> {
    let spec = host.bundle().component(Component::T3Decoder.name())?;
    let mut dtype = None;
    for i in 0..dims.layers {
        for kind in ["key", "value"] {
            for name in [format!("past_{kind}_{i}"), format!("present_{kind}_{i}")] {
                let t = spec
                    .input(&name)
                    .or_else(|| spec.output(&name))
                    .ok_or_else(|| {
                        Error::model_mismatch("t3_decoder", format!("no KV-cache tensor `{name}`"))
                    })?;
                if !matches!(t.dtype, DType::Float32 | DType::Float16) {
                    return Err(Error::model_mismatch(
                        "t3_decoder",
                        format!(
                            "KV-cache tensor `{name}` is {}; expected float32 or float16",
                            t.dtype.name()
                        ),
                    ));
                }
                match dtype {
                    None => dtype = Some(t.dtype),
                    Some(d) if d != t.dtype => {
                        return Err(Error::model_mismatch(
                            "t3_decoder",
                            format!(
                                "KV-cache tensor `{name}` is {}, `past_key_0` is {}: the cache has one element type",
                                t.dtype.name(),
                                d.name()
                            ),
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
    }
    dtype.ok_or_else(|| Error::model_mismatch("t3_decoder", "no KV-cache tensors"))
}

/// Errors unless the bundle's `t3_decoder` takes `past_len` (the in-place KV cache).
fn check_contract(host: &Host) -> Result<()> {
    let spec = host.bundle().component(Component::T3Decoder.name())?;
    if spec.input("past_len").is_none() {
        return Err(Error::model_mismatch(
            "t3_decoder",
            "t3_decoder has no `past_len` input: the bundle was made by an older export; \
             re-export it with export/export_bundle.py",
        ));
    }
    Ok(())
}

/// Where positions live in a cache tensor `[slabs, capacity, hd]` (`slabs = B * H`) and in
/// its compact prefix `[slabs, rows, hd]`, in units of `T` (`head_dim` units per position).
#[derive(Debug, Clone, Copy)]
struct SlabLayout {
    slabs: usize,
    capacity: usize,
    rows: usize,
    head_dim: usize,
}

impl SlabLayout {
    fn check(&self, buf: usize, compact: usize) -> Result<()> {
        let want_buf = self.slabs * self.capacity * self.head_dim;
        let want_compact = self.slabs * self.rows * self.head_dim;
        if self.capacity == 0
            || self.head_dim == 0
            || self.rows > self.capacity
            || buf != want_buf
            || compact != want_compact
        {
            return Err(Error::internal(format!(
                "KV prefix copy: {buf} cache values for {want_buf}, {compact} prefix values for \
                 {want_compact} ({} rows of {})",
                self.rows, self.capacity
            )));
        }
        Ok(())
    }

    /// Positions `0..rows` of every slab of `buf`, compact.
    fn gather<T: Copy>(&self, buf: &[T]) -> Result<Vec<T>> {
        let n = self.rows * self.head_dim;
        self.check(buf.len(), self.slabs * n)?;
        let mut out = Vec::with_capacity(self.slabs * n);
        for slab in buf.chunks_exact(self.capacity * self.head_dim) {
            out.extend_from_slice(&slab[..n]);
        }
        Ok(out)
    }

    /// Writes the compact `rows` into positions `0..rows` of every slab of `buf` (the
    /// other positions are left as they are).
    fn scatter<T: Copy>(&self, buf: &mut [T], rows: &[T]) -> Result<()> {
        let n = self.rows * self.head_dim;
        self.check(buf.len(), rows.len())?;
        if n == 0 {
            return Ok(());
        }
        for (slab, src) in buf
            .chunks_exact_mut(self.capacity * self.head_dim)
            .zip(rows.chunks_exact(n))
        {
            slab[..n].copy_from_slice(src);
        }
        Ok(())
    }
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
    /// The decoder's `alignment` output of the call that gave these logits (`rows` rows
    /// of `capacity` positions; multilingual bundles only).
    pub alignment: Option<AlignmentRows<'a>>,
}

/// Attention rows of [`StepLogits::alignment`].
#[derive(Debug, Clone, Copy)]
pub struct AlignmentRows<'a> {
    /// `rows x capacity` values, row-major.
    pub values: &'a [f32],
    /// Rows: the prefill's length, then 1 per step.
    pub rows: usize,
    /// Positions per row.
    pub capacity: usize,
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
/// the next token; `on_token(i, token)` is called after token `i` and returning
/// `false` cancels. Returns the sampled tokens (the stop token included when
/// it was drawn).
pub fn generate(
    host: &Host,
    dims: &T3Dims,
    cond: &[f32],
    text_ids: &[i64],
    opts: GenerateOptions,
    pick: impl FnMut(StepLogits<'_>) -> Result<i64>,
    on_token: impl FnMut(usize, i64) -> bool,
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
    let mut dec = KvDecoder::new(host, dims, batch, seq + opts.max_new_tokens)?;
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
/// step. `on_token(i, token)` returning `false` cancels. Returns the sampled tokens
/// (the stop token included when it was drawn).
pub fn decode_loop(
    dec: &mut KvDecoder<'_>,
    mut logits: Value,
    max_new_tokens: usize,
    mut embed: impl FnMut(i64, usize) -> Result<Vec<f32>>,
    mut pick: impl FnMut(StepLogits<'_>) -> Result<i64>,
    mut on_token: impl FnMut(usize, i64) -> bool,
) -> Result<Vec<i64>> {
    let start = dec.dims.speech_start;
    let stop = dec.dims.speech_stop;
    let mut history = Vec::with_capacity(max_new_tokens + 1);
    history.push(start);
    for i in 0..max_new_tokens {
        let rows = last_logits(&logits)?;
        let seq = logits.shape().get(1).copied().unwrap_or(0);
        drop(logits);
        let capacity = dec.capacity;
        let alignment = dec.alignment()?.map(|values| AlignmentRows {
            values,
            rows: seq,
            capacity,
        });
        let token = pick(StepLogits {
            cond: &rows[0],
            uncond: rows.get(1).map(Vec::as_slice),
            history: &history,
            alignment,
        })?;
        history.push(token);
        if token == stop {
            break;
        }
        if !on_token(i, token) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_gather_scatter_round_trip() {
        // 2 slabs (B * H), capacity 4, head dim 2: value = 100 * slab + 10 * pos + i.
        let l = SlabLayout {
            slabs: 2,
            capacity: 4,
            rows: 3,
            head_dim: 2,
        };
        let buf: Vec<f32> = (0..2)
            .flat_map(|s| {
                (0..4).flat_map(move |p| (0..2).map(move |i| (100 * s + 10 * p + i) as f32))
            })
            .collect();
        let rows = l.gather(&buf).unwrap();
        assert_eq!(
            rows,
            vec![0.0, 1.0, 10.0, 11.0, 20.0, 21.0, 100.0, 101.0, 110.0, 111.0, 120.0, 121.0]
        );
        let mut fresh = vec![-1.0; buf.len()];
        l.scatter(&mut fresh, &rows).unwrap();
        for s in 0..2 {
            for p in 0..4 {
                for i in 0..2 {
                    let at = (s * 4 + p) * 2 + i;
                    let want = if p < 3 { buf[at] } else { -1.0 };
                    assert_eq!(fresh[at], want, "slab {s} pos {p} dim {i}");
                }
            }
        }
    }

    #[test]
    fn prefix_copy_checks_sizes() {
        let l = SlabLayout {
            slabs: 2,
            capacity: 4,
            rows: 3,
            head_dim: 2,
        };
        assert!(l.gather(&[0.0; 15]).is_err());
        assert!(l.scatter(&mut [0.0; 16], &[0.0; 11]).is_err());
        let too_many = SlabLayout { rows: 5, ..l };
        assert!(too_many.gather(&[0.0; 16]).is_err());
        let empty = SlabLayout { rows: 0, ..l };
        assert_eq!(empty.gather(&[0.0; 16]).unwrap(), Vec::<f32>::new());
        assert!(empty.scatter(&mut [0.0; 16], &[]).is_ok());
    }

    #[test]
    fn step_bounds() {
        assert!(check_step(0, 10, 10, 2).is_ok());
        assert!(check_step(10, 1, 11, 2).is_ok());
        assert!(check_step(10, 5, 15, 1).is_ok());
        let e = check_step(10, 2, 11, 1).unwrap_err();
        assert!(e.to_string().contains("max_new_tokens"), "{e}");
        let e = check_step(10, 5, 20, 2).unwrap_err();
        assert!(e.to_string().contains("batch 1"), "{e}");
    }
}
