//! Wall time spent in each custom CPU operation, forward and backward, for `cedm bench … --profile`
//! (off unless switched on; a switched-off scope costs one relaxed atomic load).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static ON: AtomicBool = AtomicBool::new(false);
static TIMES: Mutex<BTreeMap<&'static str, (Duration, u64)>> = Mutex::new(BTreeMap::new());

/// A running measurement; recorded when dropped.
pub(crate) struct Scope(Option<(&'static str, Instant)>);

/// Start timing `name` (a no-op unless profiling is on).
pub(crate) fn scope(name: &'static str) -> Scope {
    Scope(ON.load(Ordering::Relaxed).then(|| (name, Instant::now())))
}

impl Drop for Scope {
    fn drop(&mut self) {
        if let Some((name, t)) = self.0.take() {
            let dt = t.elapsed();
            let mut m = TIMES.lock().unwrap_or_else(|e| e.into_inner());
            let e = m.entry(name).or_default();
            e.0 += dt;
            e.1 += 1;
        }
    }
}

/// Switch profiling on or off (clearing what was measured).
pub fn set_profiling(on: bool) {
    TIMES.lock().unwrap_or_else(|e| e.into_inner()).clear();
    ON.store(on, Ordering::Relaxed);
}

/// What was measured since profiling was switched on: (operation, seconds, calls), by name.
pub fn profile() -> Vec<(String, f64, u64)> {
    TIMES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(k, (d, n))| ((*k).to_string(), d.as_secs_f64(), *n))
        .collect()
}
