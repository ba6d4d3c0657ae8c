//! [`Host`]: owns every component's session and applies the residency policy.
//!
//! Locking: each component has a session mutex (held while the session is created, run or
//! destroyed) and a counters mutex (never held across ONNX Runtime calls, so [`Host::stats`]
//! does not wait for a running session). The host state mutex is only ever taken after a
//! session mutex or alone, never the other way round.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::policy::{plan, Plan, Policy, ResidencyOptions};
use super::stats::{ComponentStats, StageStats, Stats};
use super::{Component, Stage};
use crate::bundle::{Bundle, DType};
use crate::error::{Error, ErrorKind, Result};
use crate::runtime::{
    CudaOptions, ModelBytes, Outputs, Provider, Session, SessionOptions, StateTensor, Target, Value,
};
use crate::stats::{self as mem, DeviceMemoryReport};

/// Runs components for model code and decides which sessions exist. `Send + Sync`: calls
/// from several threads are safe; one component's session runs one call at a time.
pub struct Host {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    reaper_started: AtomicBool,
}

struct Inner {
    bundle: Arc<Bundle>,
    base: SessionOptions,
    provider: Provider,
    auto_fallback: bool,
    cuda_failed: AtomicBool,
    weights: [u64; 12],
    slots: Vec<Slot>,
    state: Mutex<State>,
    wake: Condvar,
    ram_cache: Mutex<HashMap<Component, ModelBytes>>,
    device_peak: AtomicU64,
}

struct State {
    opts: ResidencyOptions,
    plan: Plan,
    pending: Option<(ResidencyOptions, Plan)>,
    active: [usize; 4],
    prefetched: Option<Stage>,
    stages: [StageStats; 4],
    shutdown: bool,
}

#[derive(Default)]
struct Slot {
    session: Mutex<Option<Session>>,
    counters: Mutex<Counters>,
}

#[derive(Default)]
struct Counters {
    created: u64,
    destroyed: u64,
    prefetched: u64,
    create: Duration,
    last_create: Duration,
    runs: u64,
    run: Duration,
    transfers: u64,
    transfer_bytes: u64,
    last_used: Option<Instant>,
    loaded: bool,
    target: &'static str,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Ends a stage when dropped: swap sessions of stages without an active guard are destroyed
/// (except a stage being prefetched) and the heap is trimmed.
#[must_use = "the stage ends when the guard is dropped"]
pub struct StageGuard<'h> {
    host: &'h Host,
    stage: Stage,
}

impl StageGuard<'_> {
    /// The stage this guard holds.
    pub fn stage(&self) -> Stage {
        self.stage
    }
}

impl Drop for StageGuard<'_> {
    fn drop(&mut self) {
        self.host.inner.end_stage(self.stage);
    }
}

impl std::fmt::Debug for StageGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StageGuard({})", self.stage)
    }
}

impl Host {
    /// Builds a host for `bundle` on `provider` with `threads` intra-op threads per session
    /// (`None`: one per core), and creates the sessions the residency keeps resident.
    ///
    /// `Provider::Auto` uses CUDA and falls back to the CPU when CUDA cannot be used.
    /// Errors: `Budget` when the budget cannot be met, `ProviderUnavailable` for CUDA that
    /// cannot be used, session creation errors of resident components.
    pub fn new(
        bundle: Arc<Bundle>,
        provider: Provider,
        threads: Option<usize>,
        residency: ResidencyOptions,
    ) -> Result<Host> {
        let target = match provider {
            Provider::Cpu => Target::Cpu,
            Provider::Cuda { device } | Provider::Auto { device } => Target::Cuda(CudaOptions {
                device_id: device_id(device)?,
                ..CudaOptions::default()
            }),
        };
        let mut base = SessionOptions {
            target,
            ..SessionOptions::default()
        };
        crate::limits::check_threads(threads)?;
        if let Some(t) = threads {
            base.threads = t;
        }
        Host::build(bundle, provider, base, residency)
    }

    /// Like [`Host::new`] with full session options (CUDA options, arena shrinkage, ...).
    /// `session.target` is the target of every non-`Cpu` component; `auto_fallback` turns a
    /// CUDA target that cannot be used into the CPU instead of an error.
    pub fn with_session_options(
        bundle: Arc<Bundle>,
        session: SessionOptions,
        auto_fallback: bool,
        residency: ResidencyOptions,
    ) -> Result<Host> {
        crate::limits::check_threads(Some(session.threads))?;
        let provider = match (&session.target, auto_fallback) {
            (Target::Cpu, _) => Provider::Cpu,
            (Target::Cuda(c), false) => Provider::Cuda {
                device: c.device_id.max(0) as u32,
            },
            (Target::Cuda(c), true) => Provider::Auto {
                device: c.device_id.max(0) as u32,
            },
        };
        Host::build(bundle, provider, session, residency)
    }

    fn build(
        bundle: Arc<Bundle>,
        provider: Provider,
        base: SessionOptions,
        residency: ResidencyOptions,
    ) -> Result<Host> {
        let on_cpu = matches!(base.target, Target::Cpu);
        let mut weights = [0u64; 12];
        for c in Component::ALL {
            if let Some(spec) = bundle.manifest().component(c.name()) {
                // The CPU provider casts fp16 weights to fp32: twice the memory.
                let factor = if on_cpu && spec.precision == "fp16" {
                    2
                } else {
                    1
                };
                weights[c.index()] = spec.weight_bytes() * factor;
            }
        }
        let counts = counts_on_target(on_cpu);
        let plan = plan(&residency, &weights, counts)?;
        let inner = Arc::new(Inner {
            bundle,
            base,
            provider,
            auto_fallback: matches!(provider, Provider::Auto { .. }),
            cuda_failed: AtomicBool::new(false),
            weights,
            slots: (0..12).map(|_| Slot::default()).collect(),
            state: Mutex::new(State {
                opts: residency,
                plan,
                pending: None,
                active: [0; 4],
                prefetched: None,
                stages: [StageStats::default(); 4],
                shutdown: false,
            }),
            wake: Condvar::new(),
            ram_cache: Mutex::new(HashMap::new()),
            device_peak: AtomicU64::new(0),
        });
        let host = Host {
            inner,
            threads: Mutex::new(Vec::new()),
            reaper_started: AtomicBool::new(false),
        };
        let resident: Vec<Component> = {
            let st = lock(&host.inner.state);
            Component::ALL
                .into_iter()
                .filter(|c| st.plan.policy(*c).is_resident())
                .collect()
        };
        for c in resident {
            drop(host.inner.ensure(c, false)?);
        }
        host.start_reaper_if_needed();
        Ok(host)
    }

    /// The bundle this host runs.
    pub fn bundle(&self) -> &Arc<Bundle> {
        &self.inner.bundle
    }

    /// The provider this host was built for.
    pub fn provider(&self) -> Provider {
        self.inner.provider
    }

    /// The effective plan (policies after budget planning).
    pub fn plan(&self) -> Plan {
        lock(&self.inner.state).plan.clone()
    }

    /// Runs component `c` (creating its session if the policy has none now).
    pub fn run(&self, c: Component, inputs: Vec<(&str, Value)>) -> Result<Outputs> {
        self.with_session(c, |s| s.run(inputs))
    }

    /// Runs component `c` with `state` bound in place (see [`Session::run_in_place`]).
    pub fn run_in_place(
        &self,
        c: Component,
        inputs: Vec<(&str, Value)>,
        state: &mut [StateTensor],
    ) -> Result<Outputs> {
        self.with_session(c, |s| s.run_in_place(inputs, state))
    }

    /// An f32 tensor of `shape`, contents unspecified, in the memory component `c` runs in:
    /// state for [`Host::run_in_place`] (see [`Host::alloc`]).
    pub fn alloc_f32(&self, c: Component, shape: &[usize]) -> Result<Value> {
        self.alloc(c, DType::Float32, shape)
    }

    /// A tensor of element type `dtype` and `shape`, contents unspecified, in the memory
    /// component `c` runs in: state for [`Host::run_in_place`]. On the CPU no session is
    /// needed; for CUDA the session's device allocator is used (the session is created if
    /// needed).
    pub fn alloc(&self, c: Component, dtype: DType, shape: &[usize]) -> Result<Value> {
        let on_cpu = {
            let policy = lock(&self.inner.state).plan.policy(c);
            matches!(self.inner.options_for(policy).target, Target::Cpu)
        };
        if on_cpu {
            return Value::alloc(dtype, shape);
        }
        self.with_session(c, |s| s.alloc(dtype, shape))
    }

    /// Calls `f` with component `c`'s session (created if needed), holding it for the call.
    pub fn with_session<R>(
        &self,
        c: Component,
        f: impl FnOnce(&mut Session) -> Result<R>,
    ) -> Result<R> {
        let result = {
            let mut guard = self.inner.ensure(c, false)?;
            let session = guard
                .as_mut()
                .ok_or_else(|| Error::internal(format!("no session for `{c}` after creation")))?;
            let before = session.timings();
            let r = f(session);
            let after = session.timings();
            let mut k = lock(&self.inner.slots[c.index()].counters);
            k.runs += after.runs.saturating_sub(before.runs);
            k.run += after.run_total.saturating_sub(before.run_total);
            k.transfers += after.transfers.saturating_sub(before.transfers);
            k.transfer_bytes += after.transfer_bytes.saturating_sub(before.transfer_bytes);
            k.last_used = Some(Instant::now());
            r
        };
        self.inner.after_use(c);
        result
    }

    /// Enters stage `s`. Resident sessions exist already; swap sessions of the stage are
    /// created on first use (or were prefetched during the previous stage). When prefetch is
    /// on and the budget allows, the next stage's swap sessions are created on a background
    /// thread now. A pending [`Host::set_residency`] takes effect here.
    pub fn stage(&self, s: Stage) -> Result<StageGuard<'_>> {
        self.inner.apply_pending(s)?;
        self.start_reaper_if_needed();
        let prefetch = {
            let mut st = lock(&self.inner.state);
            st.active[s.index()] += 1;
            st.stages[s.index()].entered += 1;
            if st.prefetched.is_some() && st.prefetched != Some(s) && st.active[s.index()] == 1 {
                // A prefetch for another stage was not used; its sessions go at the next end.
                st.prefetched = None;
            } else if st.prefetched == Some(s) {
                st.prefetched = None;
            }
            match s.next() {
                Some(next) if st.plan.prefetch_into.get(&next).copied().unwrap_or(false) => {
                    st.prefetched = Some(next);
                    Some(next)
                }
                _ => None,
            }
        };
        let guard = StageGuard {
            host: self,
            stage: s,
        };
        if let Some(next) = prefetch {
            let inner = Arc::clone(&self.inner);
            let handle = std::thread::Builder::new()
                .name(format!("cbx-prefetch-{next}"))
                .spawn(move || inner.prefetch(next))
                .map_err(|e| Error::internal(format!("spawning the prefetch thread: {e}")))?;
            let mut threads = lock(&self.threads);
            threads.retain(|h| !h.is_finished());
            threads.push(handle);
        }
        Ok(guard)
    }

    /// Enters every stage of [`Stage::STREAMING`] for the whole of a streaming synthesis, so
    /// that `swap` sessions are created once (on first use) and destroyed when the returned
    /// guards drop, not once per audio chunk. Errors with `Budget` when a memory budget is
    /// set and the plan's [`Plan::streaming_peak_bytes`] exceeds it.
    pub fn streaming_stages(&self) -> Result<Vec<StageGuard<'_>>> {
        {
            let st = lock(&self.inner.state);
            let (opts, plan) = st
                .pending
                .as_ref()
                .map_or((&st.opts, &st.plan), |(o, p)| (o, p));
            if let Some(budget) = opts.budget {
                if plan.streaming_peak_bytes > budget {
                    return Err(Error::budget(format!(
                        "streaming keeps T3, S3Gen and the watermark loaded together: predicted peak {} \
                         exceeds the budget {}; raise the budget or synthesize without streaming",
                        super::policy::human(plan.streaming_peak_bytes),
                        super::policy::human(budget)
                    )));
                }
            }
        }
        Stage::STREAMING.iter().map(|&s| self.stage(s)).collect()
    }

    /// Replaces the residency options. The budget is checked now (a `Budget` error leaves
    /// the current options in place); the change takes effect when the next stage is entered:
    /// sessions that become resident are created then, sessions that stop being resident (or
    /// change target) are destroyed then.
    pub fn set_residency(&self, opts: ResidencyOptions) -> Result<()> {
        let on_cpu = matches!(self.inner.base.target, Target::Cpu);
        let new_plan = plan(&opts, &self.inner.weights, counts_on_target(on_cpu))?;
        lock(&self.inner.state).pending = Some((opts, new_plan));
        Ok(())
    }

    /// Counters and memory now.
    pub fn stats(&self) -> Stats {
        let (opts, plan, stages) = {
            let st = lock(&self.inner.state);
            (st.opts.clone(), st.plan.clone(), st.stages)
        };
        let components = Component::ALL
            .into_iter()
            .map(|c| {
                let k = lock(&self.inner.slots[c.index()].counters);
                let policy = plan.policy(c);
                ComponentStats {
                    name: c.name().to_string(),
                    stage: c.stage(),
                    policy,
                    target: if k.target.is_empty() {
                        self.inner.options_for(policy).target.name().to_string()
                    } else {
                        k.target.to_string()
                    },
                    loaded: k.loaded,
                    sessions_created: k.created,
                    sessions_destroyed: k.destroyed,
                    sessions_prefetched: k.prefetched,
                    create_seconds: k.create.as_secs_f64(),
                    last_create_seconds: k.last_create.as_secs_f64(),
                    run_count: k.runs,
                    run_seconds: k.run.as_secs_f64(),
                    transfers: k.transfers,
                    transfer_bytes: k.transfer_bytes,
                    weight_bytes: self.inner.weights[c.index()],
                }
            })
            .collect();
        let device = self.inner.sample_device();
        let peak = self.inner.device_peak.load(Ordering::Relaxed);
        Stats {
            provider: self.inner.provider.to_string(),
            residency: opts.to_string(),
            budget_bytes: opts.budget,
            predicted_peak_bytes: plan.predicted_peak_bytes,
            components,
            stages: Stage::ALL
                .into_iter()
                .map(|s| (s, stages[s.index()]))
                .collect(),
            rss_bytes: mem::rss_bytes(),
            peak_rss_bytes: mem::peak_rss_bytes(),
            device_memory: device,
            device_peak_bytes: (peak > 0).then_some(peak),
        }
    }

    /// Whether component `c` has a session now.
    pub fn is_loaded(&self, c: Component) -> bool {
        lock(&self.inner.slots[c.index()].counters).loaded
    }

    /// Destroys every session that is not resident under the current plan and not in use by
    /// an active stage (e.g. to free memory between requests), then trims the heap.
    pub fn release_idle(&self) {
        let victims: Vec<Component> = {
            let st = lock(&self.inner.state);
            Component::ALL
                .into_iter()
                .filter(|c| !st.plan.policy(*c).is_resident() && st.active[c.stage().index()] == 0)
                .collect()
        };
        let mut any = false;
        for c in victims {
            any |= self.inner.destroy(c);
        }
        if any {
            mem::trim_heap();
        }
    }

    fn start_reaper_if_needed(&self) {
        let needs = lock(&self.inner.state)
            .plan
            .policies
            .values()
            .any(|p| matches!(p, Policy::Idle(_)));
        if !needs || self.reaper_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let inner = Arc::clone(&self.inner);
        match std::thread::Builder::new()
            .name("cbx-idle-reaper".into())
            .spawn(move || inner.reap_loop())
        {
            Ok(h) => lock(&self.threads).push(h),
            Err(e) => {
                self.reaper_started.store(false, Ordering::SeqCst);
                tracing::warn!(error = %e, "could not start the idle reaper; idle sessions stay loaded");
            }
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        lock(&self.inner.state).shutdown = true;
        self.inner.wake.notify_all();
        let threads = std::mem::take(&mut *lock(&self.threads));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("bundle", &self.inner.bundle.dir())
            .field("provider", &self.inner.provider)
            .finish()
    }
}

fn device_id(device: u32) -> Result<i32> {
    i32::try_from(device)
        .map_err(|_| Error::invalid_argument("device", format!("{device} is out of range")))
}

/// Whether a component with policy `p` occupies the target's memory.
fn counts_on_target(on_cpu: bool) -> impl Fn(Policy) -> bool {
    move |p| on_cpu || p != Policy::Cpu
}

impl Inner {
    fn options_for(&self, policy: Policy) -> SessionOptions {
        let mut o = self.base.clone();
        if policy == Policy::Cpu || self.cuda_failed.load(Ordering::Relaxed) {
            o.target = Target::Cpu;
        }
        o
    }

    /// Locks `c`'s session, creating it if there is none.
    fn ensure(&self, c: Component, prefetch: bool) -> Result<MutexGuard<'_, Option<Session>>> {
        let slot = &self.slots[c.index()];
        let mut guard = lock(&slot.session);
        if guard.is_none() {
            let (policy, opts) = {
                let st = lock(&self.state);
                (st.plan.policy(c), st.opts.clone())
            };
            let start = Instant::now();
            let session = self.create(c, policy, &opts)?;
            let took = start.elapsed();
            {
                let mut k = lock(&slot.counters);
                k.created += 1;
                if prefetch {
                    k.prefetched += 1;
                }
                k.create += took;
                k.last_create = took;
                k.loaded = true;
                k.target = session.target().name();
                k.last_used = Some(Instant::now());
            }
            tracing::debug!(
                component = c.name(),
                ?policy,
                ms = took.as_millis() as u64,
                prefetch,
                "session created"
            );
            *guard = Some(session);
            self.sample_device();
        }
        Ok(guard)
    }

    fn create(&self, c: Component, policy: Policy, opts: &ResidencyOptions) -> Result<Session> {
        let name = c.name();
        self.bundle.verify_component(name)?;
        let spec = self.bundle.component(name)?;
        let mut session_opts = self.options_for(policy);
        if opts.optimized_cache_dir.is_some() {
            session_opts.optimized_model_cache = opts.optimized_cache_dir.clone();
        }
        let use_ram = opts.model_cache_in_ram && !policy.is_resident();
        let attempt = |so: &SessionOptions| -> Result<Session> {
            let cached = if use_ram {
                lock(&self.ram_cache).get(&c).cloned()
            } else {
                None
            };
            match cached {
                Some(bytes) => Session::create_from_memory(name, spec, &bytes, so),
                None => {
                    let s = Session::create(self.bundle.dir(), name, spec, so)?;
                    if use_ram {
                        let bytes = match &so.optimized_model_cache {
                            Some(dir) => Session::read_optimized_cache(dir, name, spec, &so.target)
                                .or_else(|_| Session::read_model(self.bundle.dir(), spec)),
                            None => Session::read_model(self.bundle.dir(), spec),
                        };
                        match bytes {
                            Ok(b) => {
                                lock(&self.ram_cache).insert(c, b);
                            }
                            Err(e) => {
                                tracing::warn!(component = name, error = %e, "not keeping the graph in RAM")
                            }
                        }
                    }
                    Ok(s)
                }
            }
        };
        match attempt(&session_opts) {
            Err(e)
                if e.kind() == ErrorKind::ProviderUnavailable
                    && self.auto_fallback
                    && matches!(session_opts.target, Target::Cuda(_)) =>
            {
                tracing::warn!(error = %e, "CUDA cannot be used; falling back to the CPU for every component");
                self.cuda_failed.store(true, Ordering::Relaxed);
                session_opts.target = Target::Cpu;
                attempt(&session_opts)
            }
            r => r,
        }
    }

    /// Destroys `c`'s session if it has one; returns whether it did.
    fn destroy(&self, c: Component) -> bool {
        let slot = &self.slots[c.index()];
        let mut guard = lock(&slot.session);
        let Some(session) = guard.take() else {
            return false;
        };
        drop(session);
        drop(guard);
        let mut k = lock(&slot.counters);
        k.destroyed += 1;
        k.loaded = false;
        tracing::debug!(component = c.name(), "session destroyed");
        true
    }

    /// Destroys a swap session used while no stage guard was active at all.
    fn after_use(&self, c: Component) {
        let drop_now = {
            let st = lock(&self.state);
            st.plan.policy(c) == Policy::Swap
                && st.active.iter().all(|&n| n == 0)
                && st.prefetched != Some(c.stage())
        };
        if drop_now && self.destroy(c) {
            mem::trim_heap();
        }
    }

    fn end_stage(&self, s: Stage) {
        let victims: Vec<Component> = {
            let mut st = lock(&self.state);
            st.active[s.index()] = st.active[s.index()].saturating_sub(1);
            if st.active[s.index()] > 0 {
                return;
            }
            Component::ALL
                .into_iter()
                .filter(|c| {
                    st.plan.policy(*c) == Policy::Swap
                        && st.active[c.stage().index()] == 0
                        && st.prefetched != Some(c.stage())
                })
                .collect()
        };
        let rss_at_end = mem::rss_bytes();
        let device_at_end = match self.sample_device() {
            DeviceMemoryReport::Available(m) => Some(m.used_bytes),
            DeviceMemoryReport::NotAvailable => None,
        };
        let mut any = false;
        for c in victims {
            // Re-check: another thread may have entered the stage since.
            let still = {
                let st = lock(&self.state);
                st.active[c.stage().index()] == 0 && st.prefetched != Some(c.stage())
            };
            if still {
                any |= self.destroy(c);
            }
        }
        if any {
            mem::trim_heap();
        }
        let rss_after = mem::rss_bytes();
        let mut st = lock(&self.state);
        let stats = &mut st.stages[s.index()];
        stats.rss_at_end_bytes = rss_at_end;
        stats.rss_after_release_bytes = rss_after;
        stats.device_used_at_end_bytes = device_at_end;
    }

    fn prefetch(&self, next: Stage) {
        let targets: Vec<Component> = {
            let st = lock(&self.state);
            next.components()
                .filter(|c| st.plan.policy(*c) == Policy::Swap)
                .collect()
        };
        for c in targets {
            {
                let st = lock(&self.state);
                if st.shutdown || st.prefetched != Some(next) && st.active[next.index()] == 0 {
                    return;
                }
            }
            if let Err(e) = self.ensure(c, true) {
                tracing::warn!(component = c.name(), error = %e, "prefetch failed; the stage will create it");
                return;
            }
        }
    }

    /// Applies a pending `set_residency` on entry to stage `entering` (whose sessions are
    /// kept: they are about to be used).
    fn apply_pending(&self, entering: Stage) -> Result<()> {
        let (old, new) = {
            let mut st = lock(&self.state);
            let Some((opts, plan)) = st.pending.take() else {
                return Ok(());
            };
            let old = std::mem::replace(&mut st.plan, plan.clone());
            st.opts = opts;
            if !plan.prefetch_into.values().any(|v| *v) {
                st.prefetched = None;
            }
            (old, plan)
        };
        let mut any = false;
        for c in Component::ALL {
            let (was, now) = (old.policy(c), new.policy(c));
            if was == now {
                continue;
            }
            let target_changed = (was == Policy::Cpu) != (now == Policy::Cpu);
            let active = c.stage() == entering || lock(&self.state).active[c.stage().index()] > 0;
            if target_changed || (!now.is_resident() && !active) {
                any |= self.destroy(c);
            }
        }
        if any {
            mem::trim_heap();
        }
        for c in Component::ALL {
            if new.policy(c).is_resident() {
                drop(self.ensure(c, false)?);
            }
        }
        lock(&self.ram_cache).retain(|c, _| !new.policy(*c).is_resident());
        Ok(())
    }

    fn reap_loop(&self) {
        let mut st = lock(&self.state);
        loop {
            if st.shutdown {
                return;
            }
            let idle: Vec<(Component, Duration)> = st
                .plan
                .policies
                .iter()
                .filter_map(|(c, p)| match p {
                    Policy::Idle(d) => Some((*c, *d)),
                    _ => None,
                })
                .collect();
            let interval = idle
                .iter()
                .map(|(_, d)| *d / 4)
                .min()
                .unwrap_or(Duration::from_secs(1))
                .clamp(Duration::from_millis(10), Duration::from_secs(1));
            st = self
                .wake
                .wait_timeout(st, interval)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
            if st.shutdown {
                return;
            }
            // A held stage keeps its sessions (a streaming synthesis holds T3, S3Gen and
            // the watermark for the whole call); they become reapable when it ends.
            let active = st.active;
            drop(st);
            let mut any = false;
            for (c, d) in idle {
                if active[c.stage().index()] > 0 {
                    continue;
                }
                let slot = &self.slots[c.index()];
                let expired = {
                    let k = lock(&slot.counters);
                    k.loaded && k.last_used.is_none_or(|t| t.elapsed() >= d)
                };
                if !expired {
                    continue;
                }
                // Never wait for a running session: try again next round.
                let Ok(mut guard) = slot.session.try_lock() else {
                    continue;
                };
                if let Some(session) = guard.take() {
                    drop(session);
                    drop(guard);
                    let mut k = lock(&slot.counters);
                    k.destroyed += 1;
                    k.loaded = false;
                    any = true;
                    tracing::debug!(component = c.name(), "idle session destroyed");
                }
            }
            if any {
                mem::trim_heap();
            }
            st = lock(&self.state);
        }
    }

    fn device_index(&self) -> u32 {
        match self.provider {
            Provider::Cpu => 0,
            Provider::Cuda { device } | Provider::Auto { device } => device,
        }
    }

    fn sample_device(&self) -> DeviceMemoryReport {
        let report = mem::device_memory(self.device_index());
        if let DeviceMemoryReport::Available(m) = report {
            self.device_peak.fetch_max(m.used_bytes, Ordering::Relaxed);
        }
        report
    }
}
