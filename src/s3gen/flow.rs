//! S3Gen token-to-mel: the flow encoder, then the Euler flow-matching loop
//! (reference `CausalMaskedDiffWithXvec.inference`; `CausalConditionalCFM.solve_euler`
//! for the original model: cosine schedule, CFG as a batch of two;
//! `CausalConditionalCFM.basic_euler` for Turbo's meanflow: linear schedule, no CFG,
//! the step's end time `r` given to the estimator).

use crate::bundle::{Config, FlowSchedule, GenerationDefaults};
use crate::error::{Error, Result};
use crate::residency::{Component, Host};
use crate::runtime::Value;

/// Mel bins of S3Gen (fixed by the architecture).
pub const MEL_BINS: usize = 80;

/// Tokens the flow encoder looks ahead (`PreLookaheadLayer(pre_lookahead_len=3)` in the
/// reference `UpsampleConformerEncoder`, both families): the frames of the last this many
/// tokens are not final until the tokens after them are known.
pub const PRE_LOOKAHEAD_TOKENS: usize = 3;

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

/// The time points `t_0 = 0 < ... < t_steps = 1` of `schedule`.
pub fn t_span(schedule: FlowSchedule, steps: usize) -> Vec<f32> {
    match schedule {
        FlowSchedule::Cosine => cosine_t_span(steps),
        // torch.linspace(0, 1, steps + 1) in f32.
        FlowSchedule::Linear => (0..=steps)
            .map(|k| {
                if steps == 0 {
                    0.0
                } else {
                    k as f32 / steps as f32
                }
            })
            .collect(),
    }
}

/// How the Euler loop runs, from the bundle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlowParams {
    /// Number of Euler steps.
    pub steps: usize,
    /// CFG rate; 0 runs the conditional row alone (batch 1).
    pub cfg_rate: f32,
    /// Time schedule.
    pub schedule: FlowSchedule,
    /// The estimator takes the step's end time `r` (meanflow).
    pub meanflow: bool,
}

impl FlowParams {
    /// The bundle's flow with `steps` Euler steps.
    pub fn new(config: &Config, generation: &GenerationDefaults, steps: usize) -> FlowParams {
        FlowParams {
            steps,
            cfg_rate: generation.flow_cfg_rate,
            schedule: generation.flow_schedule,
            meanflow: config.s3gen.meanflow,
        }
    }
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

impl FlowEncoded {
    /// Keeps the first `frames` frames of `mu` (no-op when there are fewer).
    pub fn truncate(&mut self, frames: usize) {
        if frames >= self.frames {
            return;
        }
        let mut mu = Vec::with_capacity(MEL_BINS * frames);
        for c in 0..MEL_BINS {
            mu.extend_from_slice(&self.mu[c * self.frames..c * self.frames + frames]);
        }
        self.mu = mu;
        self.frames = frames;
    }
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

/// The Euler loop, as the reference `solve_euler` (CFG) or `basic_euler` (meanflow).
///
/// `mu` and `noise` are [80, frames]; `prompt_feat` is the prompt mel
/// [prompt_frames, 80] (frame-major, as stored in a voice). Returns the mel of
/// the frames after the prompt, [80, frames - prompt_frames].
pub fn solve_euler(
    host: &Host,
    enc: &FlowEncoded,
    noise: Vec<f32>,
    prompt_feat: &[f32],
    prompt_frames: usize,
    params: &FlowParams,
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
    // With CFG the batch is [conditional, unconditional]: the second row has mu, spks and
    // cond zeroed. Inputs that do not change across steps are built once.
    let cfg = params.cfg_rate != 0.0;
    let batch = if cfg { 2 } else { 1 };
    let mut mu_in = enc.mu.clone();
    mu_in.resize(batch * plane, 0.0);
    let mut spks_in = enc.spks.clone();
    spks_in.resize(batch * MEL_BINS, 0.0);
    let mut cond_in = cond;
    cond_in.resize(batch * plane, 0.0);
    let mask_in = vec![1f32; batch * frames];

    let t_span = t_span(params.schedule, params.steps);
    let mut x = noise;
    for (step, w) in t_span.windows(2).enumerate() {
        let (t, r) = (w[0], w[1]);
        let mut x_in = Vec::with_capacity(batch * plane);
        for _ in 0..batch {
            x_in.extend_from_slice(&x);
        }
        let mut inputs = vec![
            ("x", Value::from_f32(&[batch, MEL_BINS, frames], x_in)?),
            (
                "mask",
                Value::from_f32(&[batch, 1, frames], mask_in.clone())?,
            ),
            (
                "mu",
                Value::from_f32(&[batch, MEL_BINS, frames], mu_in.clone())?,
            ),
            ("t", Value::from_f32(&[batch], vec![t; batch])?),
            (
                "spks",
                Value::from_f32(&[batch, MEL_BINS], spks_in.clone())?,
            ),
            (
                "cond",
                Value::from_f32(&[batch, MEL_BINS, frames], cond_in.clone())?,
            ),
        ];
        if params.meanflow {
            inputs.push(("r", Value::from_f32(&[batch], vec![r; batch])?));
        }
        let mut out = host.run(Component::FlowEstimator, inputs)?;
        let v = out.take("velocity")?;
        let v = v.view_f32()?;
        let v = v
            .as_slice()
            .ok_or_else(|| Error::internal("velocity is not contiguous"))?;
        if v.len() != batch * plane {
            return Err(Error::model_mismatch(
                "flow_estimator",
                format!(
                    "output `velocity` has {} values, expected {}",
                    v.len(),
                    batch * plane
                ),
            ));
        }
        let dt = r - t;
        if cfg {
            let (vc, vu) = v.split_at(plane);
            let rate = params.cfg_rate;
            for i in 0..plane {
                let vel = (1.0 + rate) * vc[i] - rate * vu[i];
                x[i] += dt * vel;
            }
        } else {
            for (xi, vi) in x.iter_mut().zip(v) {
                *xi += dt * vi;
            }
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

    #[test]
    fn truncate_keeps_leading_frames_per_bin() {
        let frames = 5;
        let mut enc = FlowEncoded {
            mu: (0..MEL_BINS * frames).map(|i| i as f32).collect(),
            spks: vec![0.0; MEL_BINS],
            frames,
        };
        enc.truncate(3);
        assert_eq!(enc.frames, 3);
        assert_eq!(enc.mu.len(), MEL_BINS * 3);
        assert_eq!(&enc.mu[..3], &[0.0, 1.0, 2.0]);
        assert_eq!(&enc.mu[3..6], &[5.0, 6.0, 7.0]);
        enc.truncate(9);
        assert_eq!(enc.frames, 3);
    }

    #[test]
    fn linear_schedule_is_linspace() {
        assert_eq!(t_span(FlowSchedule::Linear, 2), vec![0.0, 0.5, 1.0]);
        assert_eq!(t_span(FlowSchedule::Cosine, 3), cosine_t_span(3));
    }
}
