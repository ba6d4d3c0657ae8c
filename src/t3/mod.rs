//! T3, the text-to-speech-token Llama: embeddings (`t3_text_embed`,
//! `t3_speech_embed`), the prefill input of the reference
//! `T3.prepare_input_embeds` + `T3.inference`, and the KV-cache decode loop
//! ([`decode`]) with the host-side sampler ([`sampler`]).

pub mod decode;
pub mod sampler;

use crate::bundle::Config;
use crate::error::{Error, Result};
use crate::residency::{Component, Host};
use crate::runtime::Value;

/// The T3 sizes and limits the engine needs, read from the manifest `config`.
#[derive(Debug, Clone)]
pub struct T3Dims {
    /// Hidden size `D`.
    pub hidden: usize,
    /// Decoder layers.
    pub layers: usize,
    /// KV heads `H`.
    pub kv_heads: usize,
    /// Head dim `hd`.
    pub head_dim: usize,
    /// Conditioning length (speaker + perceiver + emotion).
    pub cond_len: usize,
    /// Logits width (speech vocabulary).
    pub speech_vocab: usize,
    /// Real speech codes: tokens `>= num_codes` are special.
    pub num_codes: i64,
    /// Start-of-speech token (BOS).
    pub speech_start: i64,
    /// End-of-speech token.
    pub speech_stop: i64,
    /// Learned speech position table size.
    pub speech_max_positions: usize,
    /// Learned text position table size.
    pub text_max_positions: usize,
}

impl T3Dims {
    /// Reads the sizes from the bundle configuration.
    pub fn from_config(cfg: &Config) -> T3Dims {
        T3Dims {
            hidden: cfg.t3.hidden_size,
            layers: cfg.t3.num_layers,
            kv_heads: cfg.t3.num_kv_heads,
            head_dim: cfg.t3.head_dim,
            cond_len: cfg.t3.cond_len,
            speech_vocab: cfg.speech.vocab_size,
            num_codes: cfg.speech.num_codes,
            speech_start: cfg.speech.start_token,
            speech_stop: cfg.speech.stop_token,
            speech_max_positions: cfg.speech.max_positions,
            text_max_positions: cfg.text.max_positions,
        }
    }
}

/// Token embeddings and learned position embeddings of a text sequence, both
/// `[len, D]` row-major.
pub struct TextEmbeds {
    /// `text_emb(tokens)`.
    pub tokens: Vec<f32>,
    /// `text_pos_emb(0..len)`.
    pub positions: Vec<f32>,
    /// Sequence length.
    pub len: usize,
}

/// Runs `t3_text_embed` on one row of text ids (start and stop included).
pub fn text_embeds(host: &Host, dims: &T3Dims, ids: &[i64]) -> Result<TextEmbeds> {
    let len = ids.len();
    if len == 0 {
        return Err(Error::invalid_text("no text tokens"));
    }
    if len > dims.text_max_positions {
        return Err(Error::invalid_text(format!(
            "{len} text tokens (start/stop included) exceed T3's {} text positions",
            dims.text_max_positions
        )));
    }
    let mut out = host.run(
        Component::T3TextEmbed,
        vec![("tokens", Value::from_i64(&[1, len], ids.to_vec())?)],
    )?;
    let tokens = take_f32(&mut out, "t3_text_embed", "token_embeds", len * dims.hidden)?;
    let positions = take_f32(
        &mut out,
        "t3_text_embed",
        "position_embeds",
        len * dims.hidden,
    )?;
    Ok(TextEmbeds {
        tokens,
        positions,
        len,
    })
}

/// Runs `t3_speech_embed`: `speech_emb(tokens) + speech_pos_emb(positions)`,
/// one row, returned `[len, D]`.
pub fn speech_embeds(
    host: &Host,
    dims: &T3Dims,
    tokens: &[i64],
    positions: &[i64],
) -> Result<Vec<f32>> {
    let len = tokens.len();
    if positions.len() != len {
        return Err(Error::internal(
            "speech tokens and positions differ in length",
        ));
    }
    if let Some(&p) = positions
        .iter()
        .find(|&&p| p < 0 || p as usize >= dims.speech_max_positions)
    {
        return Err(Error::invalid_argument(
            "max_new_tokens",
            format!(
                "speech position {p} is beyond T3's {} learned speech positions",
                dims.speech_max_positions
            ),
        ));
    }
    let mut out = host.run(
        Component::T3SpeechEmbed,
        vec![
            ("tokens", Value::from_i64(&[1, len], tokens.to_vec())?),
            ("positions", Value::from_i64(&[1, len], positions.to_vec())?),
        ],
    )?;
    take_f32(&mut out, "t3_speech_embed", "embeds", len * dims.hidden)
}

/// The prefill input of the reference `T3.inference`, `[B, S, D]` row-major with
/// `S = cond_len + text_len + 2`:
/// `cond | text_emb + text_pos | bos | bos` where `bos = speech_emb(start) +
/// speech_pos(0)` (the reference appends the BOS embedding of
/// `prepare_input_embeds` and then its own `bos_embed`). With `cfg` the batch
/// has a second, unconditional row whose text token embeddings are zero (its
/// text position embeddings are kept).
pub fn prefill_embeds(cond: &[f32], text: &TextEmbeds, bos: &[f32], cfg: bool) -> Vec<f32> {
    let rows = if cfg { 2 } else { 1 };
    let mut x = Vec::with_capacity(rows * (cond.len() + text.tokens.len() + 2 * bos.len()));
    for row in 0..rows {
        x.extend_from_slice(cond);
        if row == 0 {
            x.extend(text.tokens.iter().zip(&text.positions).map(|(t, p)| t + p));
        } else {
            x.extend_from_slice(&text.positions);
        }
        x.extend_from_slice(bos);
        x.extend_from_slice(bos);
    }
    x
}

/// Takes output `name` of a component as an owned `f32` vector of `expected` values.
pub(crate) fn take_f32(
    out: &mut crate::runtime::Outputs,
    component: &str,
    name: &str,
    expected: usize,
) -> Result<Vec<f32>> {
    let v = out.take(name)?;
    let data = f32_vec(&v)?;
    if data.len() != expected {
        return Err(Error::model_mismatch(
            component,
            format!(
                "output `{name}` has shape {:?} ({} values), expected {expected} values",
                v.shape(),
                data.len()
            ),
        ));
    }
    Ok(data)
}

/// Copies an f32 tensor out (one `memcpy` when it is contiguous).
pub(crate) fn f32_vec(v: &Value) -> Result<Vec<f32>> {
    let view = v.view_f32()?;
    Ok(match view.as_slice() {
        Some(s) => s.to_vec(),
        None => view.iter().copied().collect(),
    })
}

/// The reference `drop_invalid_tokens` followed by `tokens[tokens < 6561]`:
/// keeps what follows the first start-of-speech token (if any) and precedes the
/// first stop token (if any), then drops every token `>= num_codes`.
pub fn drop_invalid_tokens(tokens: &[i64], dims: &T3Dims) -> Vec<i64> {
    let start = tokens
        .iter()
        .position(|&t| t == dims.speech_start)
        .map_or(0, |i| i + 1);
    let end = tokens
        .iter()
        .position(|&t| t == dims.speech_stop)
        .unwrap_or(tokens.len());
    if start >= end {
        return Vec::new();
    }
    tokens[start..end]
        .iter()
        .copied()
        .filter(|&t| (0..dims.num_codes).contains(&t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims() -> T3Dims {
        T3Dims {
            hidden: 2,
            layers: 1,
            kv_heads: 1,
            head_dim: 2,
            cond_len: 1,
            speech_vocab: 8194,
            num_codes: 6561,
            speech_start: 6561,
            speech_stop: 6562,
            speech_max_positions: 4100,
            text_max_positions: 2050,
        }
    }

    #[test]
    fn drop_invalid_like_reference() {
        let d = dims();
        assert_eq!(
            drop_invalid_tokens(&[1, 2, 7000, 3, 6562, 4], &d),
            vec![1, 2, 3]
        );
        assert_eq!(drop_invalid_tokens(&[1, 6561, 5, 6], &d), vec![5, 6]);
        assert_eq!(drop_invalid_tokens(&[6562], &d), Vec::<i64>::new());
        assert_eq!(drop_invalid_tokens(&[8, 9], &d), vec![8, 9]);
    }

    #[test]
    fn prefill_layout() {
        let text = TextEmbeds {
            tokens: vec![1.0, 1.0],
            positions: vec![10.0, 20.0],
            len: 1,
        };
        let x = prefill_embeds(&[5.0, 6.0], &text, &[7.0, 8.0], true);
        assert_eq!(
            x,
            vec![
                5.0, 6.0, 11.0, 21.0, 7.0, 8.0, 7.0, 8.0, 5.0, 6.0, 10.0, 20.0, 7.0, 8.0, 7.0, 8.0
            ]
        );
        assert_eq!(
            prefill_embeds(&[5.0, 6.0], &text, &[7.0, 8.0], false).len(),
            8
        );
    }
}
