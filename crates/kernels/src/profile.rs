//! Wall time spent inside petal's CPU kernels, per op kind and pass: `bench train-step
//! --profile-ops` turns it on to split a step by layer kind. Off (the default) it costs
//! one atomic load per kernel call.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static ON: AtomicBool = AtomicBool::new(false);
static TOTALS: Mutex<BTreeMap<String, (u64, Duration)>> = Mutex::new(BTreeMap::new());

/// Starts collecting (and clears what was collected).
pub fn start() {
    TOTALS.lock().expect("profile lock").clear();
    ON.store(true, Ordering::Relaxed);
}

/// Stops collecting and returns `(op, calls, total time)`, sorted by op name.
pub fn stop() -> Vec<(String, u64, Duration)> {
    ON.store(false, Ordering::Relaxed);
    std::mem::take(&mut *TOTALS.lock().expect("profile lock"))
        .into_iter()
        .map(|(k, (n, t))| (k, n, t))
        .collect()
}

/// Times `f` under the label `what()` (built only while collecting).
pub(crate) fn timed<R>(what: impl FnOnce() -> String, f: impl FnOnce() -> R) -> R {
    if !ON.load(Ordering::Relaxed) {
        return f();
    }
    let t = Instant::now();
    let r = f();
    let elapsed = t.elapsed();
    let mut totals = TOTALS.lock().expect("profile lock");
    let e = totals.entry(what()).or_default();
    e.0 += 1;
    e.1 += elapsed;
    r
}
