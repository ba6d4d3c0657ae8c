//! Turbo's per-step sampling, identical to `T3.inference_turbo`
//! (`chatterbox/models/t3/t3.py`): the transformers logits processors in the
//! reference's order, each only when the reference adds it:
//!
//! 1. `TemperatureLogitsWarper` (when `temperature != 1`): `l / temperature`;
//! 2. `TopKLogitsWarper` (when `top_k > 0`): logits below the k-th largest become
//!    `-inf` (ties with the k-th are kept);
//! 3. `TopPLogitsWarper` (when `top_p < 1`): as the original model's top-p;
//! 4. `RepetitionPenaltyLogitsProcessor` (when `!= 1`), *after* the filters: over the
//!    ids the reference passes, which are the start-of-speech token at the first step
//!    and the generated tokens (without the start token) after it ([`penalised_ids`]);
//! 5. softmax and one categorical draw.
//!
//! No CFG, no min-p: the reference ignores `cfg_weight`, `min_p` and `exaggeration`
//! for Turbo (with a warning, as the engine does).

use crate::error::{Error, Result};
use crate::rng::EngineRng;
use crate::t3::sampler::{apply_repetition_penalty, apply_top_p, softmax};

/// Turbo's sampling parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TurboSamplerParams {
    /// Softmax temperature, `> 0`.
    pub temperature: f32,
    /// top-k, 0 disables it.
    pub top_k: usize,
    /// Nucleus mass in `(0, 1]` (1 disables it).
    pub top_p: f32,
    /// Repetition penalty, `> 0` (1 disables it).
    pub repetition_penalty: f32,
}

/// The ids `inference_turbo` gives the processors when `history` holds the
/// start-of-speech token followed by the tokens generated so far: the start token
/// alone at the first step, the generated tokens after.
pub fn penalised_ids(history: &[i64]) -> &[i64] {
    if history.len() <= 1 {
        history
    } else {
        &history[1..]
    }
}

/// Processes one row of logits (see the module docs); `ids` are the ids the
/// repetition penalty applies to. Returns the processed logits, `-inf` where removed.
pub fn process(logits: &[f32], ids: &[i64], p: &TurboSamplerParams) -> Result<Vec<f32>> {
    let vocab = logits.len();
    if vocab == 0 {
        return Err(Error::invalid_argument("logits", "empty logits row"));
    }
    if let Some(i) = logits.iter().position(|x| !x.is_finite()) {
        return Err(Error::runtime(format!(
            "T3 logits are not finite: logit {i} is {}",
            logits[i]
        )));
    }
    let mut l = logits.to_vec();
    if p.temperature != 1.0 {
        for x in l.iter_mut() {
            *x /= p.temperature;
        }
    }
    if p.top_k > 0 {
        apply_top_k(&mut l, p.top_k);
    }
    if p.top_p < 1.0 {
        apply_top_p(&mut l, p.top_p);
    }
    if p.repetition_penalty != 1.0 {
        apply_repetition_penalty(&mut l, ids, p.repetition_penalty)?;
    }
    if l.iter().all(|x| *x == f32::NEG_INFINITY) {
        return Err(Error::runtime("every T3 logit was filtered out"));
    }
    Ok(l)
}

/// Processes the logits and draws one token.
pub fn sample(
    logits: &[f32],
    ids: &[i64],
    p: &TurboSamplerParams,
    rng: &mut EngineRng,
) -> Result<i64> {
    let processed = process(logits, ids, p)?;
    let probs = softmax(&processed);
    let idx = rng.categorical(&probs)?;
    i64::try_from(idx).map_err(|_| Error::internal(format!("token index {idx} overflows i64")))
}

/// `TopKLogitsWarper(top_k)`: every logit below the k-th largest becomes `-inf`.
fn apply_top_k(l: &mut [f32], top_k: usize) {
    let k = top_k.min(l.len());
    if k == 0 || k == l.len() {
        return;
    }
    let mut sorted = l.to_vec();
    let (_, kth, _) = sorted.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    let threshold = *kth;
    for x in l.iter_mut() {
        if *x < threshold {
            *x = f32::NEG_INFINITY;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NI: f32 = f32::NEG_INFINITY;

    #[test]
    fn top_k_keeps_ties() {
        let mut l = vec![1.0, 3.0, 2.0, 3.0, 0.5];
        apply_top_k(&mut l, 2);
        assert_eq!(l, vec![NI, 3.0, NI, 3.0, NI]);
        let mut l = vec![1.0, 3.0, 2.0];
        apply_top_k(&mut l, 2);
        assert_eq!(l, vec![NI, 3.0, 2.0]);
        let mut l = vec![1.0, 3.0];
        apply_top_k(&mut l, 1000);
        assert_eq!(l, vec![1.0, 3.0]);
    }

    #[test]
    fn penalty_comes_after_the_filters() {
        // Token 0 is penalised after top-k kept it: 2.0 / 2 = 1.0, token 2 stays removed.
        let p = TurboSamplerParams {
            temperature: 1.0,
            top_k: 2,
            top_p: 1.0,
            repetition_penalty: 2.0,
        };
        let out = process(&[2.0, 1.5, -1.0], &[0, 2], &p).unwrap();
        assert_eq!(out, vec![1.0, 1.5, NI]);
    }

    #[test]
    fn first_step_penalises_the_start_token() {
        assert_eq!(penalised_ids(&[6561]), &[6561]);
        assert_eq!(penalised_ids(&[6561, 5, 7]), &[5, 7]);
    }
}
