//! Which component sessions exist when, and where: the [`Host`] that model code runs
//! components through, the per-component [`Policy`], and accounting ([`Stats`]).
//!
//! Model code only calls [`Host::run`], [`Host::with_session`] and [`Host::stage`]; the
//! residency policy can change without touching it.
//!
//! Policies:
//! - `Resident`: the session is created when the host is built and kept.
//! - `Swap`: created on first use inside a stage (or prefetched during the previous stage)
//!   and destroyed when the last guard of a stage ends (then `malloc_trim(0)` on Linux).
//! - `Cpu`: resident, but on the CPU execution provider even when the host targets CUDA.
//! - `Idle(d)`: created on first use, destroyed by a background reaper after `d` unused.

mod host;
mod policy;
mod stats;

use std::fmt;
use std::str::FromStr;

pub use host::{Host, StageGuard};
pub use policy::{parse_size, Plan, Policy, ResidencyOptions, ACTIVATION_MARGIN_BYTES};
pub use stats::{ComponentStats, StageStats, Stats};

use crate::error::Error;

/// The pipeline stages, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Voice conditioning (VoiceEncoder, S3 tokens, CAM++, prompt mel, T3 conditioning).
    Conditioning,
    /// T3 token generation.
    T3,
    /// S3Gen flow matching and the HiFT vocoder.
    S3Gen,
    /// Perth watermarking.
    Watermark,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 4] = [
        Stage::Conditioning,
        Stage::T3,
        Stage::S3Gen,
        Stage::Watermark,
    ];

    /// The stages a streaming synthesis holds at once: T3 keeps decoding while finished
    /// token chunks go through S3Gen and the watermark.
    pub const STREAMING: [Stage; 3] = [Stage::T3, Stage::S3Gen, Stage::Watermark];

    /// `conditioning`, `t3`, `s3gen`, `watermark`.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Conditioning => "conditioning",
            Stage::T3 => "t3",
            Stage::S3Gen => "s3gen",
            Stage::Watermark => "watermark",
        }
    }

    /// The stage after this one in pipeline order.
    pub fn next(self) -> Option<Stage> {
        match self {
            Stage::Conditioning => Some(Stage::T3),
            Stage::T3 => Some(Stage::S3Gen),
            Stage::S3Gen => Some(Stage::Watermark),
            Stage::Watermark => None,
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The components of this stage.
    pub fn components(self) -> impl Iterator<Item = Component> {
        Component::ALL
            .into_iter()
            .filter(move |c| c.stage() == self)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The twelve ONNX graphs of a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    /// `voice_encoder`.
    VoiceEncoder,
    /// `s3_tokenizer`.
    S3Tokenizer,
    /// `campplus`.
    CamPlus,
    /// `s3gen_mel`.
    S3GenMel,
    /// `t3_text_embed`.
    T3TextEmbed,
    /// `t3_speech_embed`.
    T3SpeechEmbed,
    /// `t3_cond`.
    T3Cond,
    /// `t3_decoder`.
    T3Decoder,
    /// `flow_encoder`.
    FlowEncoder,
    /// `flow_estimator`.
    FlowEstimator,
    /// `hift`.
    Hift,
    /// `perth`.
    Perth,
}

impl Component {
    /// Every component, in pipeline order.
    pub const ALL: [Component; 12] = [
        Component::VoiceEncoder,
        Component::S3Tokenizer,
        Component::CamPlus,
        Component::S3GenMel,
        Component::T3TextEmbed,
        Component::T3SpeechEmbed,
        Component::T3Cond,
        Component::T3Decoder,
        Component::FlowEncoder,
        Component::FlowEstimator,
        Component::Hift,
        Component::Perth,
    ];

    /// The manifest key (`t3_decoder`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Component::VoiceEncoder => "voice_encoder",
            Component::S3Tokenizer => "s3_tokenizer",
            Component::CamPlus => "campplus",
            Component::S3GenMel => "s3gen_mel",
            Component::T3TextEmbed => "t3_text_embed",
            Component::T3SpeechEmbed => "t3_speech_embed",
            Component::T3Cond => "t3_cond",
            Component::T3Decoder => "t3_decoder",
            Component::FlowEncoder => "flow_encoder",
            Component::FlowEstimator => "flow_estimator",
            Component::Hift => "hift",
            Component::Perth => "perth",
        }
    }

    /// The stage the component belongs to. `t3_cond` is conditioning (it turns a voice into
    /// T3's prefix); `t3_speech_embed` is T3 (used at every decoding step).
    pub fn stage(self) -> Stage {
        match self {
            Component::VoiceEncoder
            | Component::S3Tokenizer
            | Component::CamPlus
            | Component::S3GenMel
            | Component::T3Cond => Stage::Conditioning,
            Component::T3TextEmbed | Component::T3SpeechEmbed | Component::T3Decoder => Stage::T3,
            Component::FlowEncoder | Component::FlowEstimator | Component::Hift => Stage::S3Gen,
            Component::Perth => Stage::Watermark,
        }
    }

    /// The component with this manifest key.
    pub fn from_name(name: &str) -> Option<Component> {
        Component::ALL.into_iter().find(|c| c.name() == name)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Component {
    type Err = Error;

    fn from_str(s: &str) -> Result<Component, Error> {
        Component::from_name(s).ok_or_else(|| {
            let names: Vec<&str> = Component::ALL.iter().map(|c| c.name()).collect();
            Error::invalid_argument(
                "component",
                format!("`{s}` is not one of {}", names.join(", ")),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        for c in Component::ALL {
            assert_eq!(Component::from_name(c.name()), Some(c));
            assert_eq!(c.name().parse::<Component>().unwrap(), c);
            assert_eq!(Component::ALL[c.index()], c);
        }
        assert!("t3".parse::<Component>().is_err());
        for s in Stage::ALL {
            assert_eq!(Stage::ALL[s.index()], s);
            assert!(s.components().count() > 0, "{s} has no components");
        }
    }
}
