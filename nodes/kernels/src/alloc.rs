//! A global allocator that keeps freed large blocks for reuse.
//!
//! Training allocates and frees the same tensor sizes every step. glibc's malloc serves every
//! block above its mmap threshold (at most 32 MiB, usually much less) with a fresh `mmap`, and
//! gives it back with `munmap` on free, so every step pays one page fault and a page clear per
//! 4 KiB of every large tensor: on 2 cores that was 15–20% of a SongUNet or TEMI step
//! (600 000 faults in 20 quickstart steps). This allocator rounds blocks of 256 KiB and more up to
//! one of eight sizes per power of two (at most 12.5% slack), and on free keeps up to
//! [`SLOTS`] blocks per size — at most [`limit`] bytes in all (default 4 GiB, see
//! [`set_limit`]) — to hand out again. Smaller blocks go straight to the system allocator.
//!
//! The binary installs it (`#[global_allocator]` in `src/main.rs`); nothing else depends on it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Blocks at least this large are cached.
pub const MIN: usize = 256 << 10;
/// Cached blocks per size class.
pub const SLOTS: usize = 64;
/// Alignment of every large block (a page; requests asking for more go to the system).
const ALIGN: usize = 4096;
/// Size classes: 8 per octave from 2^18 (256 KiB) to 2^48 (256 TiB).
const FIRST_SHIFT: u32 = 15;
const CLASSES: usize = 8 * 31;

struct Cache {
    /// Free blocks per class (addresses; 0 = empty slot).
    slots: [[usize; SLOTS]; CLASSES],
    /// Used slots per class.
    len: [usize; CLASSES],
    /// Bytes held.
    bytes: usize,
}

static CACHE: Mutex<Cache> = Mutex::new(Cache {
    slots: [[0; SLOTS]; CLASSES],
    len: [0; CLASSES],
    bytes: 0,
});
static LIMIT: AtomicUsize = AtomicUsize::new(4 << 30);

/// The caching allocator (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct Caching;

/// Set the most bytes kept in free blocks (0 turns caching off; held blocks above the new
/// limit are released).
pub fn set_limit(bytes: usize) {
    LIMIT.store(bytes, Ordering::Relaxed);
    release_above(bytes);
}

/// The most bytes kept in free blocks.
pub fn limit() -> usize {
    LIMIT.load(Ordering::Relaxed)
}

/// Bytes held in free blocks now.
pub fn cached() -> usize {
    lock().bytes
}

/// Give every held block back to the system.
pub fn trim() {
    release_above(0);
}

fn lock() -> std::sync::MutexGuard<'static, Cache> {
    CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

fn release_above(keep: usize) {
    let mut c = lock();
    for class in (0..CLASSES).rev() {
        while c.bytes > keep && c.len[class] > 0 {
            c.len[class] -= 1;
            let l = c.len[class];
            let p = std::mem::take(&mut c.slots[class][l]);
            let size = class_size(class);
            c.bytes -= size;
            // SAFETY: p came from System.alloc with exactly this layout (see `Caching::alloc`)
            // and is owned by the cache, which no longer lists it.
            unsafe { System.dealloc(p as *mut u8, Layout::from_size_align_unchecked(size, ALIGN)) };
        }
    }
}

/// The class of a large size and its rounded size, or None for small (or huge) blocks.
fn class_of(size: usize) -> Option<(usize, usize)> {
    if size < MIN {
        return None;
    }
    let shift = usize::BITS - 1 - size.leading_zeros() - 3;
    let q = size.div_ceil(1 << shift); // 8..=16
    let (shift, q) = if q == 16 { (shift + 1, 8) } else { (shift, q) };
    let class = (shift - FIRST_SHIFT) as usize * 8 + (q - 8);
    (class < CLASSES).then_some((class, q << shift))
}

fn class_size(class: usize) -> usize {
    (8 + class % 8) << (FIRST_SHIFT as usize + class / 8)
}

/// A large block's class, rounded size and layout, when this allocator caches it.
fn large(layout: Layout) -> Option<(usize, Layout)> {
    if layout.align() > ALIGN {
        return None;
    }
    let (class, size) = class_of(layout.size())?;
    Layout::from_size_align(size, ALIGN)
        .ok()
        .map(|l| (class, l))
}

// SAFETY: small blocks and over-aligned ones are the system allocator's, untouched. A large
// block is always allocated from System with its class's rounded size and page alignment, which
// `large` recomputes from the caller's layout on free and realloc (the same size gives the same
// class), so System.dealloc always gets the layout System.alloc was given; a cached block is
// handed to one caller at a time (the mutex), is at least as large and as aligned as asked,
// and is zeroed before alloc_zeroed returns it.
unsafe impl GlobalAlloc for Caching {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match large(layout) {
            None => {
                // SAFETY: forwarded as is; the caller upholds alloc's contract.
                unsafe { System.alloc(layout) }
            }
            Some((class, l)) => {
                if let Some(p) = take(class, l.size()) {
                    return p;
                }
                // SAFETY: l has a non-zero size (≥ MIN) and a valid alignment.
                unsafe { System.alloc(l) }
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match large(layout) {
            None => {
                // SAFETY: forwarded as is.
                unsafe { System.alloc_zeroed(layout) }
            }
            Some((class, l)) => {
                if let Some(p) = take(class, l.size()) {
                    // SAFETY: p is a live block of l.size() ≥ layout.size() bytes we own now.
                    unsafe { p.write_bytes(0, layout.size()) };
                    return p;
                }
                // SAFETY: as in alloc.
                unsafe { System.alloc_zeroed(l) }
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match large(layout) {
            None => {
                // SAFETY: a small block came from System with this layout.
                unsafe { System.dealloc(ptr, layout) }
            }
            Some((class, l)) => {
                if !keep(class, l.size(), ptr) {
                    // SAFETY: a large block came from System with layout l (see alloc).
                    unsafe { System.dealloc(ptr, l) }
                }
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        match (large(layout), large(new_layout)) {
            (None, None) => {
                // SAFETY: both small: System's block, System's realloc.
                unsafe { System.realloc(ptr, layout, new_size) }
            }
            (Some((a, _)), Some((b, _))) if a == b => ptr,
            _ => {
                // SAFETY: a fresh block of the new layout, the old one's bytes copied (the
                // smaller of the two sizes), then the old one freed through this allocator.
                unsafe {
                    let new = self.alloc(new_layout);
                    if !new.is_null() {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    new
                }
            }
        }
    }
}

fn take(class: usize, size: usize) -> Option<*mut u8> {
    let mut c = lock();
    if c.len[class] == 0 {
        return None;
    }
    c.len[class] -= 1;
    let l = c.len[class];
    let p = std::mem::take(&mut c.slots[class][l]);
    c.bytes -= size;
    Some(p as *mut u8)
}

fn keep(class: usize, size: usize, ptr: *mut u8) -> bool {
    let mut c = lock();
    if c.len[class] == SLOTS || c.bytes + size > LIMIT.load(Ordering::Relaxed) {
        return false;
    }
    let l = c.len[class];
    c.slots[class][l] = ptr as usize;
    c.len[class] += 1;
    c.bytes += size;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_up_by_at_most_an_eighth() {
        assert_eq!(class_of(MIN - 1), None);
        let mut s = MIN;
        while s < (1 << 36) {
            let (class, size) = class_of(s).unwrap();
            assert!(size >= s && size - s <= s / 8, "{s} → {size}");
            assert_eq!(class_size(class), size);
            assert_eq!(class_of(size).unwrap(), (class, size));
            s += s / 7 + 4093;
        }
    }

    #[test]
    fn freed_blocks_are_reused_zeroed_and_resized() {
        // Not the global allocator here: the methods are called directly.
        let a = Caching;
        let l = Layout::from_size_align((3 << 20) - 100_000, 64).unwrap();
        // SAFETY: each block is used within its layout and freed once with the layout it was
        // allocated with.
        unsafe {
            let p = a.alloc(l);
            assert!(!p.is_null() && (p as usize).is_multiple_of(4096));
            p.write_bytes(7, l.size());
            a.dealloc(p, l);
            let q = a.alloc_zeroed(l);
            assert!(!q.is_null());
            assert!(
                std::slice::from_raw_parts(q, l.size())
                    .iter()
                    .all(|&b| b == 0)
            );
            // Growing within the class keeps the block; across classes copies.
            q.write_bytes(5, 16);
            let r = a.realloc(q, l, 3 << 20);
            assert_eq!(r, q);
            let l2 = Layout::from_size_align(3 << 20, 64).unwrap();
            let big = a.realloc(r, l2, 40 << 20);
            assert!(std::slice::from_raw_parts(big, 16).iter().all(|&b| b == 5));
            let l3 = Layout::from_size_align(40 << 20, 64).unwrap();
            let small = a.realloc(big, l3, 100);
            assert!(
                std::slice::from_raw_parts(small, 16)
                    .iter()
                    .all(|&b| b == 5)
            );
            a.dealloc(small, Layout::from_size_align(100, 64).unwrap());
        }
        trim();
        assert_eq!(cached(), 0);
    }
}
