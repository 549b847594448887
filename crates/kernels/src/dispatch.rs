//! Counting the GPU kernel dispatches a piece of work issues.
//!
//! On a real GPU every dispatch costs host time (wgpu validation and the Vulkan/Metal/DX12
//! submit, several µs each) whatever the batch, so a step's dispatch count is a cost that a
//! software adapter (lavapipe) measures as well as a GPU does. [`count_dispatches`] installs
//! CubeCL's launch observer ([`burn::cubecl::logging::LaunchObserver`]: called on the
//! issuing thread for every kernel launch, before it is submitted) around a closure, and
//! returns the launches by kernel name; [`kernel_kind`] sorts the names into the kinds
//! `bench train-step` reports.
//!
//! Counted are launches **issued** by CubeCL: every WGSL kernel (Burn's, CubeCL's fused
//! ones, petal's), including the copies CubeCL runs as kernels. Buffer uploads and reads
//! are not launches. Flex (CPU) issues none. The closure should end with a device sync, so
//! that work Burn's fusion still holds is flushed inside the count.

use burn::cubecl::logging::{
    Duration, LaunchObservation, LaunchObserver, TimingMethod, TimingRequest,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Launches counted by [`count_dispatches`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DispatchCount {
    /// Launches by kernel name (as the kernel names itself, shortened by
    /// [`short_kernel_name`]).
    pub by_kernel: BTreeMap<String, u64>,
    /// Device time by kernel name (ms), from a [`DispatchWatch::start_timed`] watch; empty
    /// otherwise.
    pub ms_by_kernel: BTreeMap<String, f64>,
}

impl DispatchCount {
    /// All launches.
    pub fn total(&self) -> u64 {
        self.by_kernel.values().sum()
    }

    /// Launches by [`kernel_kind`].
    pub fn by_kind(&self) -> BTreeMap<&'static str, u64> {
        let mut kinds = BTreeMap::new();
        for (name, n) in &self.by_kernel {
            *kinds.entry(kernel_kind(name)).or_default() += n;
        }
        kinds
    }

    /// The launches counted here and not in `earlier` (a snapshot taken before).
    pub fn since(&self, earlier: &DispatchCount) -> DispatchCount {
        let by_kernel = self
            .by_kernel
            .iter()
            .map(|(name, n)| {
                (
                    name.clone(),
                    n - earlier.by_kernel.get(name).copied().unwrap_or(0).min(*n),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        let ms_by_kernel = self
            .ms_by_kernel
            .iter()
            .map(|(name, ms)| {
                (
                    name.clone(),
                    ms - earlier.ms_by_kernel.get(name).unwrap_or(&0.0),
                )
            })
            .filter(|(_, ms)| *ms > 0.0)
            .collect();
        DispatchCount {
            by_kernel,
            ms_by_kernel,
        }
    }

    /// Launches of the kernels whose name contains `part`.
    pub fn of(&self, part: &str) -> u64 {
        self.by_kernel
            .iter()
            .filter(|(name, _)| name.contains(part))
            .map(|(_, n)| n)
            .sum()
    }
}

#[derive(Default)]
struct Counter {
    counts: Mutex<BTreeMap<&'static str, u64>>,
    /// Time each launch (the kernels then run one at a time).
    timed: bool,

    ms: Mutex<BTreeMap<&'static str, f64>>,
}

impl LaunchObserver for Counter {
    fn launched(&self, kernel: &'static str) {
        *self
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(kernel)
            .or_default() += 1;
    }

    fn timing(&self) -> TimingRequest {
        if self.timed {
            TimingRequest::Resolved
        } else {
            TimingRequest::None
        }
    }

    fn timed(&self, kernel: &'static str, duration: Duration, _method: TimingMethod) {
        *self
            .ms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(kernel)
            .or_default() += duration.as_secs_f64() * 1e3;
    }
}

/// Set while a watch runs: CubeCL's observer slot is process-wide, one watch at a time.
static COUNTING: AtomicBool = AtomicBool::new(false);

/// Counts launches from [`DispatchWatch::start`] until it is dropped; read at any point
/// with [`DispatchWatch::snapshot`]. Launches by any thread count (CubeCL's observer is
/// process-wide), so run nothing else on the GPU meanwhile; watches wait for each other.
pub struct DispatchWatch {
    counter: Arc<Counter>,
    watching: Option<LaunchObservation>,
}

impl DispatchWatch {
    /// Starts counting (waits while another watch is running).
    pub fn start() -> Self {
        Self::with(false)
    }

    /// Starts counting and timing each launch on the device ([`DispatchCount::ms_by_kernel`]).
    /// Each launch then waits for its kernel, so the kernels run one at a time: right for
    /// each kernel's own cost, not for the step's time.
    pub fn start_timed() -> Self {
        Self::with(true)
    }

    fn with(timed: bool) -> Self {
        while COUNTING
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let counter = Arc::new(Counter {
            timed,
            ..Counter::default()
        });
        let watching = Some(LaunchObservation::new(counter.clone()));
        Self { counter, watching }
    }

    /// The launches counted so far. Sync the device first, so that fused work still
    /// queued has been launched.
    pub fn snapshot(&self) -> DispatchCount {
        let mut count = DispatchCount::default();
        let counts = self
            .counter
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (name, n) in counts.iter() {
            *count.by_kernel.entry(short_kernel_name(name)).or_default() += n;
        }
        let ms = self
            .counter
            .ms
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (name, t) in ms.iter() {
            *count
                .ms_by_kernel
                .entry(short_kernel_name(name))
                .or_default() += t;
        }
        count
    }
}

impl Drop for DispatchWatch {
    fn drop(&mut self) {
        drop(self.watching.take());
        COUNTING.store(false, Ordering::Release);
    }
}

/// Runs `f` and counts the kernel launches issued meanwhile ([`DispatchWatch`]; by any
/// thread: a sync on one thread may launch work another queued). End `f` with a device
/// sync so that fused work still queued is launched inside the count.
pub fn count_dispatches<R>(f: impl FnOnce() -> R) -> (R, DispatchCount) {
    let watch = DispatchWatch::start();
    let out = f();
    let count = watch.snapshot();
    (out, count)
}

/// A kernel's type name without module paths (`a::b::Kernel<c::D>` → `Kernel<D>`).
pub fn short_kernel_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut word = String::new();
    for c in name.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            out.push_str(word.rsplit("::").next().unwrap_or(&word));
            word.clear();
            out.push(c);
        }
    }
    out.push_str(word.rsplit("::").next().unwrap_or(&word));
    out
}

/// The kind of a kernel, from its (short) name: `petal` (petal's own WGSL kernels), `fused`
/// (Burn's fusion: element-wise chains, with reductions or matmuls where it fused them),
/// `reduce`, `matmul`, `conv`, `pool`, `elementwise` (an unfused binary, scalar or unary
/// op), `slice_assign`, `copy` (layout changes: pack, into-contiguous, gather, scatter),
/// `fill` (constants, random numbers) or `other`.
pub fn kernel_kind(name: &str) -> &'static str {
    let lower = name.to_ascii_lowercase();
    // Hand-written WGSL runs as `SourceKernel<ItsKernel>`.
    let base = match lower.strip_prefix("sourcekernel<") {
        Some(inner) => inner,
        None => lower.split('<').next().unwrap_or(&lower),
    };
    let has = |parts: &[&str]| parts.iter().any(|p| base.contains(p));
    if lower.starts_with("sourcekernel<") || has(&["petal"]) {
        "petal"
    } else if has(&["fuse", "elemwise", "trace"]) {
        "fused"
    } else if has(&["reduce", "argmax", "argmin"]) {
        "reduce"
    } else if has(&["matmul", "gemm"]) {
        "matmul"
    } else if has(&["pool"]) {
        "pool"
    } else if has(&["conv", "im2col", "col2im"]) {
        "conv"
    } else if has(&["sliceassign", "slice_assign"]) {
        "slice_assign"
    } else if has(&[
        "copy",
        "contiguous",
        "slice",
        "gather",
        "scatter",
        "select",
        "cat",
    ]) {
        "copy"
    } else if has(&["fill", "full", "prng", "random", "arange"]) {
        "fill"
    } else if has(&["binop", "unary", "cmp", "mask", "clamp", "cast", "where"]) {
        "elementwise"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_drop_module_paths_inside_generics() {
        assert_eq!(
            short_kernel_name("burn_cubecl::kernel::Foo<cubecl_wgpu::WgpuRuntime, f32>"),
            "Foo<WgpuRuntime, f32>"
        );
        assert_eq!(short_kernel_name("Plain"), "Plain");
    }

    #[test]
    fn kinds_sort_names() {
        // Names as CubeCL 0.11 reports them (densenet121 on lavapipe).
        for (name, kind) in [
            ("SourceKernel<ConcatPoolKernel>", "petal"),
            ("ElemwiseFuse", "fused"),
            ("ReduceKernel<TensorArgs>", "reduce"),
            ("MatmulEntry<TensorArgs, DynamicScalar<__Lhs>>", "matmul"),
            ("Pool2dDirect<AvgPoolStrategy>", "pool"),
            ("DirectConv2dKernel", "conv"),
            ("Col2imKernel", "conv"),
            ("SliceAssignKernel", "slice_assign"),
            ("CopyKernelPack", "copy"),
            ("FullKernel", "fill"),
            ("PrngKernel<BernoulliFamily>", "fill"),
            ("KernelBinop<AddOp>", "elementwise"),
            ("KernelScalarBinop<MulOp>", "elementwise"),
            ("UnaryFloat<BasicFloatUnary>", "elementwise"),
            ("Weird", "other"),
        ] {
            assert_eq!(kernel_kind(name), kind, "{name}");
        }
    }
}
