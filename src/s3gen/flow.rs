//! S3Gen token-to-mel: the flow encoder, then the Euler flow-matching loop with
//! classifier-free guidance (reference `CausalMaskedDiffWithXvec.inference` and
//! `CausalConditionalCFM.solve_euler`).

use crate::error::{Error, Result};
use crate::residency::{Component, Host};
use crate::rng::EngineRng;
use crate::runtime::Value;

/// Mel bins of S3Gen (fixed by the architecture).
pub const MEL_BINS: usize = 80;

/// The cosine time schedule of the reference: `t = 1 - cos(s * pi / 2)` for
/// `s = linspace(0, 1, steps + 1)`, computed in `f32` like the reference.
pub fn cosine_t_span(steps: usize) -> Vec<f32> {
    (0..=steps)
        .map(|k| {
            let s = if steps == 0 {
                0.0
            } else {
                k as f32 / steps as f32
            };
            1.0 - (s * 0.5 * std::f32::consts::PI).cos()
        })
        .collect()
}

/// Output of the flow encoder for the prompt tokens followed by the new tokens.
pub struct FlowEncoded {
    /// `mu`, [80, frames] row-major (frames = 2 x all tokens).
    pub mu: Vec<f32>,
    /// Projected speaker embedding, [80].
    pub spks: Vec<f32>,
    /// Number of mel frames.
    pub frames: usize,
}

/// Runs `flow_encoder` on `tokens` (prompt tokens then new tokens) with the
/// raw CAM++ x-vector.
pub fn encode(host: &Host, tokens: &[i64], xvector: &[f32]) -> Result<FlowEncoded> {
    let n = tokens.len();
    let mut out = host.run(
        Component::FlowEncoder,
        vec![
            ("tokens", Value::from_i64(&[1, n], tokens.to_vec())?),
            (
                "speaker_emb",
                Value::from_f32(&[1, xvector.len()], xvector.to_vec())?,
            ),
        ],
    )?;
    let mu = out.take("mu")?;
    let shape = mu.shape();
    if shape.len() != 3 || shape[0] != 1 || shape[1] != MEL_BINS {
        return Err(Error::model_mismatch(
            "flow_encoder",
            format!("output `mu` has shape {shape:?}, expected [1, {MEL_BINS}, frames]"),
        ));
    }
    let frames = shape[2];
    let mu = crate::t3::f32_vec(&mu)?;
    let spks = out.take("spks")?;
    let spks = crate::t3::f32_vec(&spks)?;
    if spks.len() != MEL_BINS {
        return Err(Error::model_mismatch(
            "flow_encoder",
            format!(
                "output `spks` has {} values, expected {MEL_BINS}",
                spks.len()
            ),
        ));
    }
    Ok(FlowEncoded { mu, spks, frames })
}

/// Standard-normal noise `[80, frames]` for the Euler start, drawn from `rng`.
pub fn draw_noise(rng: &mut EngineRng, frames: usize) -> Vec<f32> {
    rng.normal_vec(MEL_BINS * frames)
}

/// The Euler loop with CFG, as the reference `solve_euler`.
///
/// `mu` and `noise` are [80, frames]; `prompt_feat` is the prompt mel
/// [prompt_frames, 80] (frame-major, as stored in a voice). Returns the mel of
/// the frames after the prompt, [80, frames - prompt_frames].
#[allow(clippy::too_many_arguments)]
pub fn solve_euler(
    host: &Host,
    enc: &FlowEncoded,
    noise: Vec<f32>,
    prompt_feat: &[f32],
    prompt_frames: usize,
    steps: usize,
    cfg_rate: f32,
    mut on_step: impl FnMut(usize),
) -> Result<Vec<f32>> {
    let frames = enc.frames;
    let plane = MEL_BINS * frames;
    if noise.len() != plane {
        return Err(Error::internal(format!(
            "flow noise has {} values, expected {plane}",
            noise.len()
        )));
    }
    if prompt_frames > frames || prompt_feat.len() != prompt_frames * MEL_BINS {
        return Err(Error::internal(format!(
            "prompt mel of {prompt_frames} frames does not fit {frames} flow frames"
        )));
    }
    // cond: the prompt mel transposed to [80, frames] in the first prompt frames, zeros after.
    let mut cond = vec![0f32; plane];
    for f in 0..prompt_frames {
        for c in 0..MEL_BINS {
            cond[c * frames + f] = prompt_feat[f * MEL_BINS + c];
        }
    }
    // Batch-2 inputs that do not change across steps: [mu, 0], [spks, 0], [cond, 0], mask ones.
    let mut mu_in = Vec::with_capacity(2 * plane);
    mu_in.extend_from_slice(&enc.mu);
    mu_in.resize(2 * plane, 0.0);
    let mut spks_in = Vec::with_capacity(2 * MEL_BINS);
    spks_in.extend_from_slice(&enc.spks);
    spks_in.resize(2 * MEL_BINS, 0.0);
    let mut cond_in = cond;
    cond_in.resize(2 * plane, 0.0);
    let mask_in = vec![1f32; 2 * frames];

    let t_span = cosine_t_span(steps);
    let mut x = noise;
    for (step, w) in t_span.windows(2).enumerate() {
        let (t, r) = (w[0], w[1]);
        let mut x_in = Vec::with_capacity(2 * plane);
        x_in.extend_from_slice(&x);
        x_in.extend_from_slice(&x);
        let mut out = host.run(
            Component::FlowEstimator,
            vec![
                ("x", Value::from_f32(&[2, MEL_BINS, frames], x_in)?),
                ("mask", Value::from_f32(&[2, 1, frames], mask_in.clone())?),
                (
                    "mu",
                    Value::from_f32(&[2, MEL_BINS, frames], mu_in.clone())?,
                ),
                ("t", Value::from_f32(&[2], vec![t, t])?),
                ("spks", Value::from_f32(&[2, MEL_BINS], spks_in.clone())?),
                (
                    "cond",
                    Value::from_f32(&[2, MEL_BINS, frames], cond_in.clone())?,
                ),
            ],
        )?;
        let v = out.take("velocity")?;
        let v = v.view_f32()?;
        let v = v
            .as_slice()
            .ok_or_else(|| Error::internal("velocity is not contiguous"))?;
        if v.len() != 2 * plane {
            return Err(Error::model_mismatch(
                "flow_estimator",
                format!(
                    "output `velocity` has {} values, expected {}",
                    v.len(),
                    2 * plane
                ),
            ));
        }
        let (vc, vu) = v.split_at(plane);
        let dt = r - t;
        for i in 0..plane {
            let vel = (1.0 + cfg_rate) * vc[i] - cfg_rate * vu[i];
            x[i] += dt * vel;
        }
        on_step(step);
    }
    // Keep the frames after the prompt.
    let keep = frames - prompt_frames;
    let mut mel = Vec::with_capacity(MEL_BINS * keep);
    for c in 0..MEL_BINS {
        mel.extend_from_slice(&x[c * frames + prompt_frames..(c + 1) * frames]);
    }
    Ok(mel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_schedule_endpoints() {
        let t = cosine_t_span(10);
        assert_eq!(t.len(), 11);
        assert_eq!(t[0], 0.0);
        assert!((t[10] - 1.0).abs() < 1e-6);
        assert!(t.windows(2).all(|w| w[1] > w[0]));
    }
}
