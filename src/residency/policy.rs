//! Residency policies, options (with string presets) and the memory-budget planner.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::{Component, Stage};
use crate::error::{Error, Result};

/// Where a component's session lives and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Policy {
    /// Created at load, kept.
    #[default]
    Resident,
    /// Created per stage, destroyed at the end of the stage.
    Swap,
    /// Resident on the CPU execution provider, even when the host targets CUDA.
    Cpu,
    /// Created on first use, destroyed after this long unused.
    Idle(Duration),
}

impl Policy {
    /// Whether the session is created when the host is built.
    pub fn is_resident(self) -> bool {
        matches!(self, Policy::Resident | Policy::Cpu)
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::Resident => f.write_str("resident"),
            Policy::Swap => f.write_str("swap"),
            Policy::Cpu => f.write_str("cpu"),
            Policy::Idle(d) => write!(f, "idle:{}", fmt_secs(*d)),
        }
    }
}

impl serde::Serialize for Policy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn fmt_secs(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs.fract() == 0.0 {
        format!("{}", d.as_secs())
    } else {
        format!("{secs}")
    }
}

impl FromStr for Policy {
    type Err = Error;

    /// `resident`, `swap`, `cpu`, `idle:SECS` (or `idle=SECS`).
    fn from_str(s: &str) -> Result<Policy> {
        let s = s.trim();
        match s.to_ascii_lowercase().as_str() {
            "resident" => return Ok(Policy::Resident),
            "swap" => return Ok(Policy::Swap),
            "cpu" => return Ok(Policy::Cpu),
            _ => {}
        }
        let secs = s
            .strip_prefix("idle:")
            .or_else(|| s.strip_prefix("idle="))
            .ok_or_else(|| {
                Error::invalid_argument(
                    "residency",
                    format!("`{s}` is not a policy (resident, swap, cpu, idle:SECS)"),
                )
            })?;
        let secs: f64 = secs.trim().parse().map_err(|_| {
            Error::invalid_argument("residency", format!("`{s}`: idle time must be seconds"))
        })?;
        if !(0.0..1e9).contains(&secs) {
            return Err(Error::invalid_argument(
                "residency",
                format!("`{s}`: idle time must be in 0..1e9 seconds"),
            ));
        }
        Ok(Policy::Idle(Duration::from_secs_f64(secs)))
    }
}

/// Residency configuration of a [`Host`](super::Host).
///
/// Presets (`FromStr`): `resident`, `swap`, `cpu`, `idle=SECS`, `budget=SIZE` (e.g.
/// `budget=2GiB`), optionally followed by comma-separated items: `prefetch`,
/// `ram-cache`, `budget=SIZE`, `COMPONENT=POLICY` (e.g. `swap,prefetch,t3_decoder=resident`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResidencyOptions {
    /// Policy of components not listed in `per_component`.
    pub default: Policy,
    /// Per-component overrides.
    pub per_component: HashMap<Component, Policy>,
    /// Memory budget in bytes: the planner turns components without an override into
    /// `Resident` or `Swap` so the predicted peak stays below it.
    pub budget: Option<u64>,
    /// Create the next stage's swap sessions on a background thread during the current
    /// stage (where the budget allows).
    pub prefetch: bool,
    /// Keep the graph bytes of swap/idle components in RAM, so re-creating a session does not
    /// read the files again.
    pub model_cache_in_ram: bool,
    /// Folder for ONNX Runtime optimized-model caches (faster re-creation).
    pub optimized_cache_dir: Option<PathBuf>,
}

impl ResidencyOptions {
    /// The requested policy of `c` (override or default; before budget planning).
    pub fn policy(&self, c: Component) -> Policy {
        self.per_component.get(&c).copied().unwrap_or(self.default)
    }

    /// Sets an override for `c`.
    pub fn set_policy(&mut self, c: Component, p: Policy) {
        self.per_component.insert(c, p);
    }
}

impl FromStr for ResidencyOptions {
    type Err = Error;

    fn from_str(s: &str) -> Result<ResidencyOptions> {
        let mut opts = ResidencyOptions::default();
        for (i, item) in s.split(',').map(str::trim).enumerate() {
            if item.is_empty() {
                return Err(Error::invalid_argument(
                    "residency",
                    format!("empty item in `{s}`"),
                ));
            }
            let lower = item.to_ascii_lowercase();
            if lower == "prefetch" {
                opts.prefetch = true;
            } else if lower == "ram-cache" {
                opts.model_cache_in_ram = true;
            } else if let Some(size) = lower.strip_prefix("budget=") {
                opts.budget = Some(parse_size(size)?);
            } else if let Some((comp, policy)) = item
                .split_once('=')
                .filter(|(c, _)| Component::from_name(c.trim()).is_some())
            {
                let c: Component = comp.trim().parse()?;
                opts.per_component.insert(c, policy.parse()?);
            } else if i == 0 {
                opts.default = item.parse().map_err(|_| {
                    Error::invalid_argument(
                        "residency",
                        format!(
                            "`{item}` is not a preset (resident, swap, cpu, idle=SECS, budget=SIZE)"
                        ),
                    )
                })?;
            } else {
                return Err(Error::invalid_argument(
                    "residency",
                    format!(
                        "`{item}` in `{s}` is not prefetch, ram-cache, budget=SIZE or COMPONENT=POLICY"
                    ),
                ));
            }
        }
        Ok(opts)
    }
}

impl fmt::Display for ResidencyOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.default {
            Policy::Idle(d) => write!(f, "idle={}", fmt_secs(d))?,
            p => write!(f, "{p}")?,
        }
        if let Some(b) = self.budget {
            write!(f, ",budget={b}")?;
        }
        if self.prefetch {
            f.write_str(",prefetch")?;
        }
        if self.model_cache_in_ram {
            f.write_str(",ram-cache")?;
        }
        let sorted: BTreeMap<Component, Policy> =
            self.per_component.iter().map(|(c, p)| (*c, *p)).collect();
        for (c, p) in sorted {
            write!(f, ",{c}={p}")?;
        }
        Ok(())
    }
}

/// Parses a byte size: `123`, `512MiB`, `2GiB`, `1.5G`, `800MB`, `64k`. Binary units
/// (`KiB`, `MiB`, `GiB`, and the bare `K`, `M`, `G`) are powers of 1024; `KB`, `MB`, `GB`
/// are powers of 1000.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad =
        || Error::invalid_argument("budget", format!("`{s}` is not a size like 2GiB or 512MiB"));
    let n: f64 = num.parse().map_err(|_| bad())?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        _ => return Err(bad()),
    };
    let v = n * mult;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(v.round() as u64)
}

/// Memory kept free for activations, arenas and the runtime itself on top of the weights, in
/// the budget planner's prediction: 128 MiB plus 10% of the largest stage's weights.
pub const ACTIVATION_MARGIN_BYTES: u64 = 128 * 1024 * 1024;

/// The effective per-component policies and what they predict.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Plan {
    /// Effective policy per component.
    pub policies: BTreeMap<Component, Policy>,
    /// Predicted peak: resident (and idle) weights + the largest stage's swap weights +
    /// the activation margin, counting only memory of the host's target.
    pub predicted_peak_bytes: u64,
    /// The activation margin included in the prediction.
    pub margin_bytes: u64,
    /// Predicted peak of a streaming synthesis, which holds the swap sessions of T3, S3Gen
    /// and the watermark at once ([`Stage::STREAMING`]): resident weights + those stages'
    /// swap weights + the margin.
    pub streaming_peak_bytes: u64,
    /// For each stage, whether its swap sessions may be prefetched during the previous stage.
    pub prefetch_into: BTreeMap<Stage, bool>,
}

impl Plan {
    /// The effective policy of `c`.
    pub fn policy(&self, c: Component) -> Policy {
        self.policies.get(&c).copied().unwrap_or(Policy::Resident)
    }
}

/// Computes the effective policies.
///
/// `weights[c]` is the memory a session of `c` takes on the host's target (manifest bytes,
/// doubled for fp16 weights on the CPU); `counts_on_target(p)` says whether a component
/// with policy `p` occupies that memory (a `Cpu` component does not count against a GPU budget).
pub(crate) fn plan(
    opts: &ResidencyOptions,
    weights: &[u64; 12],
    counts_on_target: impl Fn(Policy) -> bool,
) -> Result<Plan> {
    let stage_total = |s: Stage| -> u64 { s.components().map(|c| weights[c.index()]).sum() };
    let largest_stage = Stage::ALL.into_iter().map(stage_total).max().unwrap_or(0);
    let margin = ACTIVATION_MARGIN_BYTES + largest_stage / 10;

    // (resident bytes, swap bytes per stage) on the target for a set of policies.
    let loads = |policies: &[Policy; 12]| -> (u64, [u64; 4]) {
        let mut resident = 0u64;
        let mut swap = [0u64; 4];
        for c in Component::ALL {
            let p = policies[c.index()];
            if !counts_on_target(p) {
                continue;
            }
            match p {
                Policy::Swap => swap[c.stage().index()] += weights[c.index()],
                _ => resident += weights[c.index()],
            }
        }
        (resident, swap)
    };
    let peak_of = |policies: &[Policy; 12]| -> u64 {
        let (resident, swap) = loads(policies);
        resident + swap.iter().max().copied().unwrap_or(0) + margin
    };

    let mut policies = [Policy::Resident; 12];
    for c in Component::ALL {
        policies[c.index()] = opts.policy(c);
    }

    if let Some(budget) = opts.budget {
        let free: Vec<Component> = Component::ALL
            .into_iter()
            .filter(|c| !opts.per_component.contains_key(c))
            .collect();
        let mut best: Option<([Policy; 12], u64, u64)> = None;
        for mask in 0u32..(1u32 << free.len()) {
            let mut candidate = policies;
            let mut swapped = 0u64;
            for (bit, c) in free.iter().enumerate() {
                candidate[c.index()] = if mask & (1 << bit) != 0 {
                    swapped += weights[c.index()];
                    Policy::Swap
                } else {
                    Policy::Resident
                };
            }
            let peak = peak_of(&candidate);
            if peak > budget {
                continue;
            }
            let better = match &best {
                None => true,
                Some((_, bs, bp)) => swapped < *bs || (swapped == *bs && peak < *bp),
            };
            if better {
                best = Some((candidate, swapped, peak));
            }
        }
        match best {
            Some((p, _, _)) => policies = p,
            None => {
                let mut all_swap = policies;
                for c in &free {
                    all_swap[c.index()] = Policy::Swap;
                }
                let min_peak = peak_of(&all_swap);
                return Err(Error::budget(format!(
                    "budget {} is below the smallest predicted peak {} (largest stage {} of weights + {} margin{}); \
                     raise the budget or run on a target with more memory",
                    human(budget),
                    human(min_peak),
                    human(largest_stage),
                    human(margin),
                    if opts.per_component.is_empty() {
                        String::new()
                    } else {
                        " + components fixed by per-component overrides".to_string()
                    }
                )));
            }
        }
    }

    let peak = peak_of(&policies);
    let (resident, swap) = loads(&policies);
    let mut prefetch_into = BTreeMap::new();
    for s in Stage::ALL {
        // Prefetching into `s` holds the previous stage's and `s`'s swap sessions at once.
        let allowed = opts.prefetch
            && s.index() > 0
            && swap[s.index()] > 0
            && opts
                .budget
                .is_none_or(|b| resident + swap[s.index() - 1] + swap[s.index()] + margin <= b);
        prefetch_into.insert(s, allowed);
    }
    let streaming_peak = resident
        + Stage::STREAMING
            .iter()
            .map(|s| swap[s.index()])
            .sum::<u64>()
        + margin;
    Ok(Plan {
        policies: Component::ALL
            .into_iter()
            .map(|c| (c, policies[c.index()]))
            .collect(),
        predicted_peak_bytes: peak,
        margin_bytes: margin,
        streaming_peak_bytes: streaming_peak,
        prefetch_into,
    })
}

/// `1.50 GiB`-style formatting for messages.
pub(crate) fn human(bytes: u64) -> String {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    const MIB: f64 = 1024.0 * 1024.0;
    let b = bytes as f64;
    if b >= GIB {
        format!("{:.2} GiB", b / GIB)
    } else {
        format!("{:.1} MiB", b / MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn weights() -> [u64; 12] {
        // conditioning: 4 x 10 MiB + t3_cond 10; t3: 5, 5, 1000 (decoder); s3gen: 100, 400, 80; perth 20.
        let mut w = [0u64; 12];
        for (c, mib) in [
            (Component::VoiceEncoder, 10),
            (Component::S3Tokenizer, 10),
            (Component::CamPlus, 10),
            (Component::S3GenMel, 10),
            (Component::T3Cond, 10),
            (Component::T3TextEmbed, 5),
            (Component::T3SpeechEmbed, 5),
            (Component::T3Decoder, 1000),
            (Component::FlowEncoder, 100),
            (Component::FlowEstimator, 400),
            (Component::Hift, 80),
            (Component::Perth, 20),
        ] {
            w[c.index()] = mib * MIB;
        }
        w
    }

    #[test]
    fn presets_parse() {
        let r: ResidencyOptions = "resident".parse().unwrap();
        assert_eq!(r, ResidencyOptions::default());
        assert_eq!(
            "swap".parse::<ResidencyOptions>().unwrap().default,
            Policy::Swap
        );
        assert_eq!(
            "cpu".parse::<ResidencyOptions>().unwrap().default,
            Policy::Cpu
        );
        assert_eq!(
            "idle=30".parse::<ResidencyOptions>().unwrap().default,
            Policy::Idle(Duration::from_secs(30))
        );
        let b: ResidencyOptions = "budget=2GiB".parse().unwrap();
        assert_eq!(b.budget, Some(2 * 1024 * MIB));
        assert_eq!(b.default, Policy::Resident);
        let c: ResidencyOptions = "swap,prefetch,ram-cache,t3_decoder=resident,hift=idle:2.5"
            .parse()
            .unwrap();
        assert!(c.prefetch && c.model_cache_in_ram);
        assert_eq!(c.policy(Component::T3Decoder), Policy::Resident);
        assert_eq!(
            c.policy(Component::Hift),
            Policy::Idle(Duration::from_millis(2500))
        );
        assert_eq!(c.policy(Component::Perth), Policy::Swap);
        // Display round-trips.
        let back: ResidencyOptions = c.to_string().parse().unwrap();
        assert_eq!(back, c);
        for bad in [
            "",
            "swapp",
            "idle=x",
            "budget=lots",
            "swap,nonsense",
            "swap,,prefetch",
            "idle=-1",
        ] {
            let e = bad.parse::<ResidencyOptions>().unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("123").unwrap(), 123);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("800MB").unwrap(), 800_000_000);
        assert_eq!(parse_size("64k").unwrap(), 65536);
        assert!(parse_size("2 parsecs").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn no_budget_keeps_requested_policies() {
        let opts: ResidencyOptions = "swap,t3_decoder=resident".parse().unwrap();
        let p = plan(&opts, &weights(), |_| true).unwrap();
        assert_eq!(p.policy(Component::T3Decoder), Policy::Resident);
        assert_eq!(p.policy(Component::Hift), Policy::Swap);
        // resident 1000 + largest swap stage (s3gen 580) + margin.
        let margin = ACTIVATION_MARGIN_BYTES + 1010 * MIB / 10;
        assert_eq!(p.margin_bytes, margin);
        assert_eq!(p.predicted_peak_bytes, 1000 * MIB + 580 * MIB + margin);
    }

    #[test]
    fn budget_picks_cheapest_fitting_plan() {
        let w = weights();
        let all: u64 = w.iter().sum();
        let margin = ACTIVATION_MARGIN_BYTES + 1010 * MIB / 10;
        // Everything fits: all resident.
        let opts = ResidencyOptions {
            budget: Some(all + margin),
            ..Default::default()
        };
        let p = plan(&opts, &w, |_| true).unwrap();
        assert!(p.policies.values().all(|p| *p == Policy::Resident));
        assert_eq!(p.predicted_peak_bytes, all + margin);

        // 100 MiB less. Swapping a set saves its total minus its largest stage, so two stages
        // with >= 100 MiB each must go: t3_decoder (1000) + flow_encoder (100) is the cheapest.
        let opts = ResidencyOptions {
            budget: Some(all + margin - 100 * MIB),
            ..Default::default()
        };
        let p = plan(&opts, &w, |_| true).unwrap();
        assert!(p.predicted_peak_bytes <= all + margin - 100 * MIB);
        let swapped: u64 = Component::ALL
            .iter()
            .filter(|c| p.policy(**c) == Policy::Swap)
            .map(|c| w[c.index()])
            .sum();
        assert_eq!(swapped, 1100 * MIB);
        assert_eq!(p.policy(Component::T3Decoder), Policy::Swap);
        assert_eq!(p.policy(Component::FlowEncoder), Policy::Swap);

        // Just the T3 stage + margin: everything else must be swapped out and T3 too.
        let opts = ResidencyOptions {
            budget: Some(1010 * MIB + margin),
            ..Default::default()
        };
        let p = plan(&opts, &w, |_| true).unwrap();
        assert!(p.predicted_peak_bytes <= 1010 * MIB + margin);

        // Below the largest stage: impossible, with a message naming the numbers.
        let opts = ResidencyOptions {
            budget: Some(900 * MIB),
            ..Default::default()
        };
        let e = plan(&opts, &w, |_| true).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::Budget);
        assert!(e.to_string().contains("largest stage"), "{e}");
    }

    #[test]
    fn cpu_components_do_not_count_on_device() {
        let mut opts: ResidencyOptions = "resident,t3_decoder=cpu".parse().unwrap();
        opts.budget = Some(700 * MIB + ACTIVATION_MARGIN_BYTES + 1010 * MIB / 10);
        let p = plan(&opts, &weights(), |p| p != Policy::Cpu).unwrap();
        assert_eq!(p.policy(Component::T3Decoder), Policy::Cpu);
        assert!(p.predicted_peak_bytes <= opts.budget.unwrap());
    }

    #[test]
    fn prefetch_only_where_budget_allows() {
        let w = weights();
        let margin = ACTIVATION_MARGIN_BYTES + 1010 * MIB / 10;
        let mut opts: ResidencyOptions = "swap,prefetch".parse().unwrap();
        let p = plan(&opts, &w, |_| true).unwrap();
        assert!(!p.prefetch_into[&Stage::Conditioning]);
        assert!(p.prefetch_into[&Stage::T3] && p.prefetch_into[&Stage::S3Gen]);
        assert!(
            !plan(&"swap".parse().unwrap(), &w, |_| true)
                .unwrap()
                .prefetch_into[&Stage::T3]
        );
        // A budget fitting T3 (1010) alone but not T3 + S3Gen (1590) together.
        opts.per_component = Component::ALL.iter().map(|c| (*c, Policy::Swap)).collect();
        opts.budget = Some(1200 * MIB + margin);
        let p = plan(&opts, &w, |_| true).unwrap();
        assert!(
            p.prefetch_into[&Stage::T3],
            "conditioning 50 + t3 1010 fits"
        );
        assert!(
            !p.prefetch_into[&Stage::S3Gen],
            "t3 1010 + s3gen 580 does not"
        );
    }
}
