//! Panics inside a node are node failures with one line of cause; their location and backtrace
//! go to the node's log, not the terminal (issue 16).
//!
//! [`install`] (the binary calls it once) sets a panic hook that, while a node runs
//! ([`Capture`]), records the panic — message, location, backtrace — instead of printing it.
//! The task that caught the panic takes the records ([`Capture::finish`]) into the node's log.
//! Outside a node the default hook prints as usual.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Nodes running with capture on.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
/// Panics recorded while a node ran.
static CAUGHT: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Install the hook (once per process; later calls do nothing).
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if RUNNING.load(Ordering::SeqCst) == 0 {
                default(info);
                return;
            }
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            let at = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                .unwrap_or_default();
            let thread = std::thread::current();
            let bt = std::backtrace::Backtrace::force_capture();
            let text = format!(
                "panic in thread '{}' at {at}: {msg}\nbacktrace:\n{bt}",
                thread.name().unwrap_or("<unnamed>")
            );
            if let Ok(mut c) = CAUGHT.lock() {
                c.push(text);
            }
        }));
    });
}

/// Capture is on while this lives (one per running node).
pub struct Capture(());

impl Capture {
    /// Start capturing panics (for the node about to run).
    pub fn start() -> Capture {
        RUNNING.fetch_add(1, Ordering::SeqCst);
        Capture(())
    }

    /// Stop, and take the panics recorded meanwhile (all of them when nodes run
    /// concurrently: a panic does not know its node).
    pub fn finish(self) -> Vec<String> {
        drop(self);
        CAUGHT
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}
