//! Running a CPU step on rayon's pool.
//!
//! Flex's ops and petal's CPU kernels split their loops with rayon. Called from a thread
//! outside the pool (the program's main thread), every parallel loop is handed to the
//! pool's workers and the caller sleeps until they finish: a wake-up and a hand-off per
//! op, thousands per training step, while one core's worth of thread sits idle. Called
//! from a worker, the caller runs its share of each loop itself. [`on_cpu_pool`] moves a
//! whole step there.

use crate::conv::{cpu_kernels_enabled, set_cpu_kernels};
use burn::backend::DispatchDevice;
use burn::tensor::Device;
use std::sync::atomic::{AtomicBool, Ordering};

static ON_POOL: AtomicBool = AtomicBool::new(true);

/// Turns [`on_cpu_pool`]'s move onto the pool on or off for the process (on by default;
/// `bench train-step --compare-pool` alternates the two). Off, `f` runs on the caller.
pub fn set_on_pool(enabled: bool) {
    ON_POOL.store(enabled, Ordering::Relaxed);
}

/// Runs `f` on a rayon worker thread — the calling thread waits — carrying this thread's
/// [`set_cpu_kernels`] switch along, when `device` is the CPU (Flex, with or without
/// autodiff). Runs `f` right here for other devices (their work is not on rayon's pool),
/// when the caller is a worker already, when the pool has a single thread, or when
/// [`set_on_pool`] turned it off.
pub fn on_cpu_pool<R: Send>(device: &Device, f: impl FnOnce() -> R + Send) -> R {
    let flex = matches!(
        device.clone().inner().as_dispatch(),
        DispatchDevice::Flex(_)
    );
    if !flex
        || rayon::current_thread_index().is_some()
        || rayon::current_num_threads() < 2
        || !ON_POOL.load(Ordering::Relaxed)
    {
        return f();
    }
    let enabled = cpu_kernels_enabled();
    rayon::scope(|_| {
        set_cpu_kernels(enabled);
        f()
    })
}
