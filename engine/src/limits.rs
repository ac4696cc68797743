//! Caps on sizes that come from input — file headers, params, sweep grids — checked with
//! checked arithmetic before anything is allocated, so that an impossible request is a clear
//! error naming the file or the param, never an overflow panic, an out-of-memory abort or a
//! 40 TB allocation (issue 16). The caps are far above any real experiment.

/// Most elements (bytes for uint8 images, floats for tensors) one array may hold: 2³⁶
/// (64 GiB of uint8, 256 GiB of f32).
pub const MAX_ELEMENTS: usize = 1 << 36;

/// Most bytes a decompression (gzip, zip entry, npz member) may produce: 64 GiB.
pub const MAX_DECOMPRESSED: u64 = 64 << 30;

/// Largest image side in pixels (resolutions, decoded images, padded images).
pub const MAX_SIDE: usize = 1 << 14;

/// Most points one sweep may expand to.
pub const MAX_SWEEP_POINTS: usize = 100_000;

/// The product of `dims`, if it neither overflows nor exceeds `cap`.
pub fn product(dims: &[usize], cap: usize) -> Option<usize> {
    dims.iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= cap)
}

/// The product of `dims` (an array's element count), or an error naming `what` when it
/// overflows or exceeds [`MAX_ELEMENTS`].
///
/// # Errors
/// `"{what}: {d0} × {d1} × … elements exceeds the cap of …"`.
pub fn elements(dims: &[usize], what: &str) -> Result<usize, String> {
    product(dims, MAX_ELEMENTS).ok_or_else(|| {
        let shown: Vec<String> = dims.iter().map(ToString::to_string).collect();
        format!(
            "{what}: {} elements is more than cedm handles (at most 2^36 per array)",
            shown.join(" × ")
        )
    })
}

/// Read at most `cap` bytes from `r` into a vector; an error when more are available.
///
/// # Errors
/// Read errors, or `InvalidData` when the stream holds more than `cap` bytes.
pub fn read_capped(r: impl std::io::Read, cap: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    r.take(cap.saturating_add(1)).read_to_end(&mut out)?;
    if out.len() as u64 > cap {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("decompresses to more than {cap} bytes (the cap on one input)"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_overflow_and_caps_are_errors() {
        assert_eq!(product(&[3, 4, 5], 100), Some(60));
        assert_eq!(product(&[3, 4, 5], 59), None);
        assert_eq!(product(&[usize::MAX, 2], usize::MAX), None);
        assert_eq!(product(&[], 1), Some(1));
        assert!(elements(&[1 << 22, 1 << 21, 1 << 21], "x.idx").is_err());
        assert!(elements(&[60000, 28, 28], "x.idx").is_ok());
    }

    #[test]
    fn capped_reads_stop_at_the_cap() {
        assert_eq!(read_capped(&[1u8, 2, 3][..], 3).unwrap(), vec![1, 2, 3]);
        assert!(read_capped(&[1u8, 2, 3, 4][..], 3).is_err());
    }
}
