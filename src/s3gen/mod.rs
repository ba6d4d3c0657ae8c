//! S3Gen: speech tokens -> mel ([`flow`]: flow encoder and the Euler
//! flow-matching loop with CFG) -> 24 kHz waveform ([`vocoder`]: HiFT and the
//! trim-fade). Every random draw comes from the engine's seeded RNG.

pub mod flow;
pub mod noise;
pub mod vocoder;
