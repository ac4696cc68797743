//! GPU slots of one machine for the local executor: a pool of device indices (`--gpus 0,1,2,3`),
//! each a slot, and the one decision of where a GPU node runs ([`GpuPool::place`]).
//!
//! A node holds its devices alone unless its device memory is known — declared by its kind
//! ([`crate::Resources::gpu_mem_mb`]), given in the YAML (`resources: {gpu_mem: 6G}`) or measured
//! on its last run — and the pool knows how much each device has (`--gpu-mem 80G`): then it
//! shares a device with other such nodes while their needs fit.

/// What a node asks of the GPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuNeed {
    /// Devices (0: none).
    pub gpus: u32,
    /// Device memory it needs, in MiB, when known.
    pub mem_mb: Option<u64>,
}

/// Where a node runs: slot indices into the pool, and whether it shares them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Slots held (the node's device is the first one's).
    pub slots: Vec<usize>,
    /// MiB reserved on a shared device; `None` when the slots are held alone.
    pub shared_mb: Option<u64>,
}

/// The pool: per slot, its device index and what holds it.
#[derive(Clone, Debug)]
pub struct GpuPool {
    devices: Vec<usize>,
    capacity_mb: Option<u64>,
    alone: Vec<bool>,
    shared_mb: Vec<u64>,
    sharers: Vec<u32>,
}

impl GpuPool {
    /// Slots for these device indices, each with `capacity_mb` of memory when known.
    pub fn new(devices: Vec<usize>, capacity_mb: Option<u64>) -> GpuPool {
        let n = devices.len();
        GpuPool {
            devices,
            capacity_mb,
            alone: vec![false; n],
            shared_mb: vec![0; n],
            sharers: vec![0; n],
        }
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// Whether the pool has no slots.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// The device index of a slot.
    pub fn device(&self, slot: usize) -> usize {
        self.devices[slot]
    }

    fn free(&self, s: usize) -> bool {
        !self.alone[s] && self.sharers[s] == 0
    }

    /// Where a node with `need` can run now, or `None` while it must wait.
    ///
    /// The decision: a one-device node whose memory is known and fits beside what already
    /// shares a device joins the lowest such device that already has sharers, else the lowest
    /// free one (so small nodes pack together and leave whole devices for trainings); any other
    /// node takes `gpus` free devices, the lowest first. A node asking for more devices than
    /// the pool has (data parallel over devices named in its params) runs when the whole pool
    /// is free, holding all of it.
    pub fn place(&self, need: GpuNeed) -> Option<Placement> {
        let n = self.devices.len();
        if need.gpus == 0 || n == 0 {
            return Some(Placement {
                slots: Vec::new(),
                shared_mb: None,
            });
        }
        if let (1, Some(m), Some(cap)) = (need.gpus, need.mem_mb, self.capacity_mb)
            && m <= cap
        {
            let fits = |s: usize| !self.alone[s] && self.shared_mb[s] + m <= cap;
            let slot = (0..n)
                .find(|&s| self.sharers[s] > 0 && fits(s))
                .or_else(|| (0..n).find(|&s| fits(s)));
            return slot.map(|s| Placement {
                slots: vec![s],
                shared_mb: Some(m),
            });
        }
        let want = (need.gpus as usize).min(n);
        let free: Vec<usize> = (0..n).filter(|&s| self.free(s)).take(want).collect();
        (free.len() == want).then_some(Placement {
            slots: free,
            shared_mb: None,
        })
    }

    /// Mark a placement's slots as held.
    pub fn take(&mut self, p: &Placement) {
        for &s in &p.slots {
            match p.shared_mb {
                Some(m) => {
                    self.shared_mb[s] += m;
                    self.sharers[s] += 1;
                }
                None => self.alone[s] = true,
            }
        }
    }

    /// Give a placement's slots back.
    pub fn release(&mut self, p: &Placement) {
        for &s in &p.slots {
            match p.shared_mb {
                Some(m) => {
                    self.shared_mb[s] = self.shared_mb[s].saturating_sub(m);
                    self.sharers[s] = self.sharers[s].saturating_sub(1);
                }
                None => self.alone[s] = false,
            }
        }
    }
}

/// MiB a node asks for on its next run, from the peak its last run measured (`gpu_peak_mb` in
/// the record's stats): the peak and a quarter more, at least 256 MiB more, so that
/// fragmentation and a slightly larger input still fit.
pub fn right_sized_mb(peak_mb: f64) -> u64 {
    let p = peak_mb.max(0.0);
    (p + (p * 0.25).max(256.0)).ceil() as u64
}

/// Parse a memory size as Slurm writes it (`512M`, `6G`, `1.5T`; a bare number is MiB) into MiB.
///
/// # Errors
/// A message naming what was expected.
pub fn parse_mem_mb(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1.0 / 1024.0,
                'M' => 1.0,
                'G' => 1024.0,
                'T' => 1024.0 * 1024.0,
                _ => return Err(format!("`{s}`: expected a size such as 512M, 6G or 1.5T")),
            };
            (&t[..i], m)
        }
        _ => (t, 1.0),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}`: expected a size such as 512M, 6G or 1.5T"))?;
    if !(v.is_finite() && v > 0.0) || v * mult > 1e12 {
        return Err(format!("`{s}`: expected a positive size such as 6G"));
    }
    Ok((v * mult).ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(gpus: u32, mem: Option<u64>) -> GpuNeed {
        GpuNeed { gpus, mem_mb: mem }
    }

    #[test]
    fn trainings_take_whole_devices_and_small_nodes_pack() {
        let mut pool = GpuPool::new(vec![0, 1, 2], Some(10_000));
        let a = pool.place(need(1, None)).unwrap();
        assert_eq!(a.slots, vec![0]);
        pool.take(&a);
        // Small nodes pack onto one device while they fit.
        let s1 = pool.place(need(1, Some(4000))).unwrap();
        assert_eq!((s1.slots.clone(), s1.shared_mb), (vec![1], Some(4000)));
        pool.take(&s1);
        let s2 = pool.place(need(1, Some(6000))).unwrap();
        assert_eq!(s2.slots, vec![1]);
        pool.take(&s2);
        let s3 = pool.place(need(1, Some(1000))).unwrap();
        assert_eq!(s3.slots, vec![2], "device 1 is full");
        pool.take(&s3);
        // No device is free for a training now; nor for a node too big to share.
        assert_eq!(pool.place(need(1, None)), None);
        assert_eq!(pool.place(need(1, Some(9500))), None);
        pool.release(&a);
        assert_eq!(pool.place(need(1, None)).unwrap().slots, vec![0]);
        // A need larger than a device holds it alone.
        assert_eq!(pool.place(need(1, Some(20_000))).unwrap().shared_mb, None);
        pool.release(&s1);
        pool.release(&s2);
        pool.release(&s3);
        // Two devices for a two-device node, then the whole pool for a bigger one.
        let two = pool.place(need(2, None)).unwrap();
        assert_eq!(two.slots, vec![0, 1]);
        pool.take(&two);
        assert_eq!(pool.place(need(4, None)), None);
        pool.release(&two);
        assert_eq!(pool.place(need(4, None)).unwrap().slots, vec![0, 1, 2]);
    }

    #[test]
    fn without_a_known_capacity_nothing_shares() {
        let mut pool = GpuPool::new(vec![3], None);
        let a = pool.place(need(1, Some(100))).unwrap();
        assert_eq!((a.slots.clone(), a.shared_mb), (vec![0], None));
        assert_eq!(pool.device(0), 3);
        pool.take(&a);
        assert_eq!(pool.place(need(1, Some(100))), None);
        assert!(pool.place(need(0, None)).unwrap().slots.is_empty());
    }

    #[test]
    fn sizes_parse_and_right_size() {
        assert_eq!(parse_mem_mb("6G"), Ok(6144));
        assert_eq!(parse_mem_mb("512M"), Ok(512));
        assert_eq!(parse_mem_mb("1.5g"), Ok(1536));
        assert_eq!(parse_mem_mb("300"), Ok(300));
        assert!(parse_mem_mb("lots").is_err());
        assert!(parse_mem_mb("-1G").is_err());
        assert!(parse_mem_mb("6X").is_err());
        assert_eq!(right_sized_mb(100.0), 356);
        assert_eq!(right_sized_mb(4000.0), 5000);
    }
}
