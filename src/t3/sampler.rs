//! Per-step speech-token sampling, identical to the reference T3 inference loop.
//!
//! For each decode step the reference (`chatterbox/models/t3/t3.py`, `T3.inference`) does,
//! in this order, on one row of logits:
//!
//! 1. classifier-free guidance: `l = cond + cfg_weight * (cond - uncond)`;
//! 2. repetition penalty (transformers' `RepetitionPenaltyLogitsProcessor`) over the *set*
//!    of ids generated so far, the start-of-speech token included: a penalised logit `x`
//!    becomes `x * p` when `x < 0`, else `x / p`;
//! 3. temperature: `l / temperature` (skipped at exactly 1.0, as the reference does);
//! 4. min-p (`MinPLogitsWarper`): tokens whose probability is below
//!    `min_p * max probability` are set to `-inf`; the most likely token is always kept;
//! 5. top-p (`TopPLogitsWarper`): tokens are sorted by ascending logit and those whose
//!    cumulative probability is `<= 1 - top_p` are removed (the most likely token is always
//!    kept); applied only when `top_p < 1`;
//! 6. softmax and one categorical draw.
//!
//! With `cfg_weight == 0` only the conditional row is needed (the reference crashes there
//! because its batch of two is hard-coded; this engine simply skips the unconditional row).
//! The reference applies its top-p warper even at `top_p == 1`; there it only removes
//! tokens whose probability is exactly zero, which never changes the draw, so it is skipped.
//! Softmax sums are accumulated in f64; results match the f32 PyTorch processors to within
//! rounding.

use crate::error::{Error, Result};
use crate::rng::EngineRng;

/// The sampling parameters of one synthesis request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerParams {
    /// Classifier-free guidance weight, `>= 0` (0 disables guidance).
    pub cfg_weight: f32,
    /// Repetition penalty, `> 0` (1 disables it).
    pub repetition_penalty: f32,
    /// Softmax temperature, `> 0`.
    pub temperature: f32,
    /// Min-p threshold relative to the most likely token, in `[0, 1)` (0 disables it).
    pub min_p: f32,
    /// Nucleus (top-p) mass, in `(0, 1]` (1 disables it).
    pub top_p: f32,
}

impl Default for SamplerParams {
    /// The reference defaults: cfg 0.5, repetition penalty 1.2, temperature 0.8,
    /// min_p 0.05, top_p 1.0.
    fn default() -> Self {
        SamplerParams {
            cfg_weight: 0.5,
            repetition_penalty: 1.2,
            temperature: 0.8,
            min_p: 0.05,
            top_p: 1.0,
        }
    }
}

impl SamplerParams {
    /// Checks every parameter's range; the error (`InvalidArgument`) names the parameter.
    pub fn validate(&self) -> Result<()> {
        let t = self.temperature;
        if !(t.is_finite() && t > 0.0) {
            return Err(Error::invalid_argument(
                "temperature",
                format!("must be finite and > 0, got {t}"),
            ));
        }
        let p = self.top_p;
        if !(p > 0.0 && p <= 1.0) {
            return Err(Error::invalid_argument(
                "top_p",
                format!("must be in (0, 1], got {p}"),
            ));
        }
        let m = self.min_p;
        if !((0.0..1.0).contains(&m)) {
            return Err(Error::invalid_argument(
                "min_p",
                format!("must be in [0, 1), got {m}"),
            ));
        }
        let r = self.repetition_penalty;
        if !(r.is_finite() && r > 0.0) {
            return Err(Error::invalid_argument(
                "repetition_penalty",
                format!("must be finite and > 0, got {r}"),
            ));
        }
        let c = self.cfg_weight;
        if !(c.is_finite() && c >= 0.0) {
            return Err(Error::invalid_argument(
                "cfg_weight",
                format!("must be finite and >= 0, got {c}"),
            ));
        }
        Ok(())
    }

    /// Whether the unconditional (CFG) row is needed at all.
    pub fn uses_cfg(&self) -> bool {
        self.cfg_weight != 0.0
    }
}

/// Processes one step's logits: CFG, repetition penalty, temperature, min-p, top-p.
///
/// `cond` and `uncond` are the two rows of the decoder's last-position logits (`uncond` is
/// ignored, and may be `None`, when `cfg_weight == 0`). `history` holds the ids generated so
/// far, start-of-speech token first. Returns the processed logits, `-inf` where a token was
/// removed.
///
/// Errors: `InvalidArgument` for bad parameters, mismatched row lengths, a missing `uncond`
/// row when guidance is on, or a history id outside the vocabulary; `Runtime` when the
/// logits are not finite (a broken model output).
pub fn process(
    cond: &[f32],
    uncond: Option<&[f32]>,
    history: &[i64],
    params: &SamplerParams,
) -> Result<Vec<f32>> {
    let guided = guide(cond, uncond, params)?;
    process_guided(guided, history, params)
}

/// Step 1 of [`process`]: classifier-free guidance, `cond + w * (cond - uncond)` (the
/// conditional row alone when `cfg_weight == 0`). The multilingual model's alignment
/// checks edit this row before [`process_guided`].
pub fn guide(cond: &[f32], uncond: Option<&[f32]>, params: &SamplerParams) -> Result<Vec<f32>> {
    params.validate()?;
    let vocab = cond.len();
    if vocab == 0 {
        return Err(Error::invalid_argument("logits", "empty logits row"));
    }
    check_finite(cond, "conditional")?;
    if !params.uses_cfg() {
        return Ok(cond.to_vec());
    }
    let uncond = uncond.ok_or_else(|| {
        Error::invalid_argument(
            "uncond",
            format!(
                "cfg_weight is {} but no unconditional logits were given",
                params.cfg_weight
            ),
        )
    })?;
    if uncond.len() != vocab {
        return Err(Error::invalid_argument(
            "uncond",
            format!(
                "unconditional row has {} logits, conditional row {vocab}",
                uncond.len()
            ),
        ));
    }
    check_finite(uncond, "unconditional")?;
    let w = params.cfg_weight;
    Ok(cond
        .iter()
        .zip(uncond)
        .map(|(&c, &u)| c + w * (c - u))
        .collect())
}

/// Steps 2-5 of [`process`] on a guided row: repetition penalty, temperature, min-p,
/// top-p.
pub fn process_guided(
    mut l: Vec<f32>,
    history: &[i64],
    params: &SamplerParams,
) -> Result<Vec<f32>> {
    params.validate()?;
    if l.is_empty() {
        return Err(Error::invalid_argument("logits", "empty logits row"));
    }
    // 2. Repetition penalty over the set of generated ids.
    apply_repetition_penalty(&mut l, history, params.repetition_penalty)?;

    // 3. Temperature.
    if params.temperature != 1.0 {
        let t = params.temperature;
        for x in l.iter_mut() {
            *x /= t;
        }
    }
    if let Some(i) = l.iter().position(|x| !x.is_finite()) {
        return Err(Error::runtime(format!(
            "T3 logit {i} overflowed to {} after guidance/penalty/temperature",
            l[i]
        )));
    }

    // 4. Min-p.
    if params.min_p > 0.0 {
        apply_min_p(&mut l, params.min_p);
    }

    // 5. Top-p.
    if params.top_p < 1.0 {
        apply_top_p(&mut l, params.top_p);
    }
    Ok(l)
}

/// Draws one token id from the softmax of processed logits.
pub fn draw(processed: &[f32], rng: &mut EngineRng) -> Result<i64> {
    let probs = softmax(processed);
    let idx = rng.categorical(&probs)?;
    i64::try_from(idx).map_err(|_| Error::internal(format!("token index {idx} overflows i64")))
}

/// Processes the logits (see [`process`]) and draws one token id from their softmax.
pub fn sample(
    cond: &[f32],
    uncond: Option<&[f32]>,
    history: &[i64],
    params: &SamplerParams,
    rng: &mut EngineRng,
) -> Result<i64> {
    draw(&process(cond, uncond, history, params)?, rng)
}

/// Softmax of a row of logits that may contain `-inf` (which map to probability 0).
/// At least one logit must be finite for the result to be a distribution.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return vec![0.0; logits.len()];
    }
    let exps: Vec<f32> = logits.iter().map(|&x| (x - max).exp()).collect();
    let sum: f64 = exps.iter().map(|&e| e as f64).sum();
    let sum = sum as f32;
    exps.into_iter().map(|e| e / sum).collect()
}

fn check_finite(row: &[f32], which: &str) -> Result<()> {
    match row.iter().position(|x| !x.is_finite()) {
        Some(i) => Err(Error::runtime(format!(
            "{which} T3 logits are not finite: logit {i} is {}",
            row[i]
        ))),
        None => Ok(()),
    }
}

/// `MinPLogitsWarper(min_p)`, min_tokens_to_keep = 1.
fn apply_min_p(l: &mut [f32], min_p: f32) {
    let probs = softmax(l);
    let (argmax, top) =
        probs
            .iter()
            .copied()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |(bi, bp), (i, p)| {
                if p > bp {
                    (i, p)
                } else {
                    (bi, bp)
                }
            });
    let threshold = min_p * top;
    for (i, (x, &p)) in l.iter_mut().zip(&probs).enumerate() {
        if p < threshold && i != argmax {
            *x = f32::NEG_INFINITY;
        }
    }
}

/// transformers' `RepetitionPenaltyLogitsProcessor(penalty)` over the *set* of `ids`:
/// a penalised logit `x` becomes `x * penalty` when `x < 0`, else `x / penalty`
/// (`-inf` stays `-inf`). Errors (`InvalidArgument`) on an id outside the row.
pub(crate) fn apply_repetition_penalty(l: &mut [f32], ids: &[i64], penalty: f32) -> Result<()> {
    let vocab = l.len();
    let mut seen = vec![false; vocab];
    for &id in ids {
        let idx = usize::try_from(id)
            .ok()
            .filter(|&i| i < vocab)
            .ok_or_else(|| {
                Error::invalid_argument(
                    "history",
                    format!("token id {id} is outside the vocabulary of {vocab}"),
                )
            })?;
        seen[idx] = true;
    }
    if penalty != 1.0 {
        for (x, _) in l.iter_mut().zip(&seen).filter(|(_, &s)| s) {
            *x = if *x < 0.0 { *x * penalty } else { *x / penalty };
        }
    }
    Ok(())
}

/// `TopPLogitsWarper(top_p)`, min_tokens_to_keep = 1.
pub(crate) fn apply_top_p(l: &mut [f32], top_p: f32) {
    let mut order: Vec<usize> = (0..l.len()).collect();
    // Ascending by logit; -inf first. Logits are never NaN here.
    order.sort_by(|&a, &b| l[a].total_cmp(&l[b]));
    let sorted: Vec<f32> = order.iter().map(|&i| l[i]).collect();
    let probs = softmax(&sorted);
    let threshold = 1.0f32 - top_p;
    let last = order.len() - 1;
    let mut cum = 0.0f64;
    for (k, (&idx, &p)) in order.iter().zip(&probs).enumerate() {
        cum += p as f64;
        if k != last && (cum as f32) <= threshold {
            l[idx] = f32::NEG_INFINITY;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    const NI: f32 = f32::NEG_INFINITY;

    // Made with torch 2.6 / transformers 5.2 in the export venv:
    //   torch.manual_seed(0); cond = randn(1, 24) * 0.8; uncond = randn(1, 24) * 0.8
    //   l = cond + cfg * (cond - uncond); RepetitionPenaltyLogitsProcessor(p)(hist, l);
    //   l / temperature (if != 1); MinPLogitsWarper(min_p); TopPLogitsWarper(top_p)
    const COND: [f32; 24] = [
        -0.900_671_9,
        -0.921_888_2,
        -0.200_462_86,
        -0.347_103_06,
        0.678_968_3,
        0.553_607_34,
        -0.252_810_2,
        -1.692_175_5,
        0.374_477_12,
        -0.126_169_96,
        1.154_928_1,
        0.212_839_53,
        0.133_164_27,
        0.699_505_5,
        -0.114_779_08,
        -0.089_287_47,
        0.745_461_3,
        1.007_207_4,
        1.603_984_5,
        0.042_989_522,
        0.494_445_32,
        -0.330_241_77,
        -0.672_851_86,
        -1.852_833_6,
    ];
    const UNCOND: [f32; 24] = [
        -0.172_690_62,
        -0.594_038_5,
        0.450_177_1,
        0.207_701_92,
        -0.139_168_8,
        -0.542_997,
        0.750_608_6,
        0.391_095_85,
        -0.455_398_47,
        0.735_977_1,
        0.888_652_9,
        1.031_899_3,
        -1.182_539_2,
        2.053_786_3,
        -0.378_495_84,
        0.268_440_6,
        -1.303_460_8,
        -0.439_794_93,
        -0.383_867_4,
        -0.399_745_23,
        -0.853_584_3,
        0.891_951_7,
        -0.112_537_146,
        0.644_602_9,
    ];
    const HIST: [i64; 6] = [9, 3, 5, 3, 17, 0];

    fn params(cfg: f32, rp: f32, t: f32, min_p: f32, top_p: f32) -> SamplerParams {
        SamplerParams {
            cfg_weight: cfg,
            repetition_penalty: rp,
            temperature: t,
            min_p,
            top_p,
        }
    }

    fn check(p: SamplerParams, expected: &[f32; 24]) {
        let got = process(&COND, Some(&UNCOND), &HIST, &p).unwrap();
        for (i, (g, e)) in got.iter().zip(expected).enumerate() {
            if e.is_finite() {
                assert!(
                    (g - e).abs() <= 1e-6 * e.abs().max(1.0),
                    "{p:?} [{i}] {g} vs {e}"
                );
            } else {
                assert_eq!(*g, NI, "{p:?} [{i}] should be removed, got {g}");
            }
        }
    }

    #[test]
    fn reference_defaults() {
        check(
            params(0.5, 1.2, 0.8, 0.05, 1.0),
            &[
                NI,
                NI,
                NI,
                NI,
                1.360_046_1,
                1.147_822_4,
                NI,
                NI,
                0.986_768_6,
                NI,
                1.610_082,
                NI,
                0.988_770_07,
                NI,
                NI,
                NI,
                2.212_402_8,
                1.802_821_4,
                3.247_388,
                0.330_446_12,
                1.460_575_1,
                NI,
                NI,
                NI,
            ],
        );
    }

    #[test]
    fn everything_off_is_identity() {
        let got = process(
            &COND,
            Some(&UNCOND),
            &HIST,
            &params(0.0, 1.0, 1.0, 0.0, 1.0),
        )
        .unwrap();
        assert_eq!(got, COND.to_vec());
        // Without guidance the unconditional row is not needed.
        let got = process(&COND, None, &HIST, &params(0.0, 1.0, 1.0, 0.0, 1.0)).unwrap();
        assert_eq!(got, COND.to_vec());
    }

    #[test]
    fn reference_top_p() {
        let mut e = [NI; 24];
        e[16] = 2.212_402_8;
        e[18] = 3.247_388;
        check(params(0.5, 1.2, 0.8, 0.05, 0.5), &e);

        check(
            params(0.3, 2.0, 1.5, 0.2, 0.9),
            &[
                NI,
                NI,
                NI,
                NI,
                0.616_273,
                0.294_196_22,
                NI,
                NI,
                0.415_626_53,
                NI,
                0.823_207,
                -0.021_918_943,
                0.351_916_9,
                0.195_480_84,
                NI,
                NI,
                0.906_758_6,
                0.480_436_06,
                1.466_893_3,
                0.117_206_63,
                0.599_236_2,
                NI,
                NI,
                NI,
            ],
        );

        let mut e = [NI; 24];
        e[18] = 7.183_673;
        check(params(1.0, 1.2, 0.5, 0.0, 0.3), &e);

        let mut e = [NI; 24];
        e[10] = 1.610_082;
        e[16] = 2.212_402_8;
        e[17] = 1.802_821_4;
        e[18] = 3.247_388;
        e[20] = 1.460_575_1;
        check(params(0.5, 1.2, 0.8, 0.1, 0.8), &e);
    }

    #[test]
    fn penalty_applies_once_per_id() {
        let cond = [2.0, -2.0, 1.0];
        let p = params(0.0, 2.0, 1.0, 0.0, 1.0);
        let got = process(&cond, None, &[0, 0, 0, 1], &p).unwrap();
        assert_eq!(got, vec![1.0, -4.0, 1.0]);
    }

    #[test]
    fn keeps_the_best_token() {
        // A very peaked row: min_p and top_p both keep exactly the argmax.
        let cond = [0.0, 50.0, 1.0];
        let got = process(&cond, None, &[], &params(0.0, 1.0, 1.0, 0.5, 0.01)).unwrap();
        assert_eq!(got, vec![NI, 50.0, NI]);
        let mut rng = EngineRng::new(0);
        for _ in 0..20 {
            let t = sample(
                &cond,
                None,
                &[],
                &params(0.0, 1.0, 1.0, 0.5, 0.01),
                &mut rng,
            )
            .unwrap();
            assert_eq!(t, 1);
        }
    }

    #[test]
    fn sampling_is_seeded() {
        let p = SamplerParams::default();
        let draw = |seed| {
            let mut rng = EngineRng::new(seed);
            (0..32)
                .map(|_| sample(&COND, Some(&UNCOND), &HIST, &p, &mut rng).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(11), draw(11));
        // Only tokens that survived min-p are ever drawn.
        let kept = process(&COND, Some(&UNCOND), &HIST, &p).unwrap();
        for t in draw(12) {
            assert!(kept[t as usize].is_finite());
        }
    }

    #[test]
    fn parameter_validation_names_the_parameter() {
        let bad = [
            (params(0.5, 1.2, 0.0, 0.05, 1.0), "temperature"),
            (params(0.5, 1.2, f32::INFINITY, 0.05, 1.0), "temperature"),
            (params(0.5, 1.2, 0.8, 0.05, 0.0), "top_p"),
            (params(0.5, 1.2, 0.8, 0.05, 1.5), "top_p"),
            (params(0.5, 1.2, 0.8, 1.0, 1.0), "min_p"),
            (params(0.5, 1.2, 0.8, -0.1, 1.0), "min_p"),
            (params(0.5, 0.0, 0.8, 0.05, 1.0), "repetition_penalty"),
            (params(-0.1, 1.2, 0.8, 0.05, 1.0), "cfg_weight"),
            (params(f32::NAN, 1.2, 0.8, 0.05, 1.0), "cfg_weight"),
        ];
        for (p, name) in bad {
            let e = p.validate().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
            assert!(e.to_string().contains(name), "{e}");
        }
        assert!(SamplerParams::default().validate().is_ok());
    }

    #[test]
    fn bad_inputs_are_errors() {
        let p = SamplerParams::default();
        assert!(process(&[], None, &[], &p).is_err());
        assert!(process(&COND, None, &HIST, &p).is_err()); // cfg on, no uncond
        assert!(process(&COND, Some(&UNCOND[..3]), &HIST, &p).is_err());
        assert!(process(&COND, Some(&UNCOND), &[24], &p).is_err());
        assert!(process(&COND, Some(&UNCOND), &[-1], &p).is_err());
        let mut nan = COND;
        nan[3] = f32::NAN;
        let e = process(&nan, Some(&UNCOND), &HIST, &p).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Runtime);
    }
}
