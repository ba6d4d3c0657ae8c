//! Accounting of a [`Host`](super::Host): per component and per stage, plus process and
//! device memory. Serializes to JSON.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Policy, Stage};
use crate::stats::DeviceMemoryReport;

/// Counters of one component.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentStats {
    /// Manifest key.
    pub name: String,
    /// Stage it belongs to.
    pub stage: Stage,
    /// Effective policy (after budget planning).
    pub policy: Policy,
    /// Execution target of its sessions (`cpu` or `cuda`).
    pub target: String,
    /// Whether a session exists now.
    pub loaded: bool,
    /// Sessions created so far.
    pub sessions_created: u64,
    /// Sessions destroyed so far.
    pub sessions_destroyed: u64,
    /// Of the created sessions, how many were created by prefetch.
    pub sessions_prefetched: u64,
    /// Total seconds spent creating sessions.
    pub create_seconds: f64,
    /// Seconds the latest creation took.
    pub last_create_seconds: f64,
    /// Completed runs.
    pub run_count: u64,
    /// Total seconds in runs.
    pub run_seconds: f64,
    /// Host <-> device copies (CUDA target only).
    pub transfers: u64,
    /// Bytes of those copies.
    pub transfer_bytes: u64,
    /// Weight bytes from the manifest (graph + external data).
    pub weight_bytes: u64,
}

/// Memory at the end of a stage (the last time its last guard ended).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StageStats {
    /// Times the stage was entered.
    pub entered: u64,
    /// RSS when the stage ended, before its swap sessions were destroyed.
    pub rss_at_end_bytes: Option<u64>,
    /// RSS after its swap sessions were destroyed and the heap trimmed.
    pub rss_after_release_bytes: Option<u64>,
    /// Device memory in use when the stage ended (NVML).
    pub device_used_at_end_bytes: Option<u64>,
}

/// Everything a [`Host`](super::Host) counted, plus memory now.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// `cpu`, `cuda:N` or `auto:N`.
    pub provider: String,
    /// The residency options in preset syntax.
    pub residency: String,
    /// Memory budget, if any.
    pub budget_bytes: Option<u64>,
    /// The planner's predicted peak (weights + largest swap stage + margin).
    pub predicted_peak_bytes: u64,
    /// Per component, in pipeline order.
    pub components: Vec<ComponentStats>,
    /// Per stage.
    pub stages: BTreeMap<Stage, StageStats>,
    /// Process RSS now (VmRSS).
    pub rss_bytes: Option<u64>,
    /// Process peak RSS (VmHWM).
    pub peak_rss_bytes: Option<u64>,
    /// Device memory now, or "n/a".
    pub device_memory: DeviceMemoryReport,
    /// Largest device memory in use seen at stage ends and session creations (NVML; None
    /// where NVML is not available).
    pub device_peak_bytes: Option<u64>,
}

impl Stats {
    /// Components kept off the accelerator (`Cpu` policy on a CUDA host).
    pub fn components_on_cpu_off_device(&self) -> u64 {
        if self.provider.starts_with("cpu") {
            return 0;
        }
        self.components
            .iter()
            .filter(|c| c.policy == Policy::Cpu)
            .count() as u64
    }

    /// Sum of sessions created over all components.
    pub fn sessions_created(&self) -> u64 {
        self.components.iter().map(|c| c.sessions_created).sum()
    }

    /// Sum of sessions destroyed over all components.
    pub fn sessions_destroyed(&self) -> u64 {
        self.components.iter().map(|c| c.sessions_destroyed).sum()
    }

    /// The counters of component `name`.
    pub fn component(&self, name: &str) -> Option<&ComponentStats> {
        self.components.iter().find(|c| c.name == name)
    }
}
