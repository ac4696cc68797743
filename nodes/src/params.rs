//! Small helpers for kinds' param types.

use std::num::NonZeroUsize;

/// A nonzero count as a constant (`const { nz(50) }` fails to compile for 0), for the defaults
/// of `NonZeroUsize` params.
pub const fn nz(n: usize) -> NonZeroUsize {
    match NonZeroUsize::new(n) {
        Some(v) => v,
        None => panic!("a nonzero count"),
    }
}
