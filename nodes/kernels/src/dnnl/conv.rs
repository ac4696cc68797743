//! oneDNN's convolution primitives (forward, backward data, backward weights) for
//! [`crate::nn::conv::Conv2d`]: on small feature maps they run about twice as fast as im2col +
//! GEMM (no 9× column copies), on large ones about 1.2× (docs/performance.md).
//!
//! Activations stay NCHW outside: each call reorders its operands into the blocked layouts the
//! primitive picked (`format_tag_any`) and its result back, which costs a copy of each tensor,
//! not nine. The images are split into [`CHUNKS`] fixed chunks (a split that depends on the
//! batch size only) spread over rayon's threads; each chunk runs single-threaded on its thread
//! with that thread's own primitives, stream and scratchpad, and the weight gradient's chunk
//! sums are added in order — results do not depend on the thread count. Primitives are created
//! once per shape and thread and kept. The weights are reordered once per call and read by every
//! chunk; the chunks' weight gradients stay in the blocked layout, are summed there (in chunk
//! order, blocks of elements in parallel) and reordered to OIHW once — per chunk, these copies
//! cost as much as a 4×4 map's convolution of two images.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_int;
use std::sync::OnceLock;

use rayon::prelude::*;

use super::api::{self, Api, ExecArg, Handle, check};
use crate::nn::conv::Conv2d;

/// Chunks of images a call is split into (fewer when there are fewer images).
pub const CHUNKS: usize = 8;

const F32: c_int = 3;
const ANY: c_int = 1;
const NCHW: c_int = 5;
const OIHW: c_int = 5;
const X: c_int = 2;
const FORWARD_TRAINING: c_int = 64;
const CONVOLUTION_DIRECT: c_int = 1;
const SCRATCHPAD_USER: c_int = 1;
const Q_SRC: c_int = 129;
const Q_DIFF_SRC: c_int = 130;
const Q_WEIGHTS: c_int = 131;
const Q_DIFF_WEIGHTS: c_int = 132;
const Q_DST: c_int = 133;
const Q_DIFF_DST: c_int = 134;
const Q_SCRATCHPAD: c_int = 136;
const ARG_SRC: c_int = 1;
const ARG_DST: c_int = 17;
const ARG_WEIGHTS: c_int = 33;
const ARG_BIAS: c_int = 41;
const ARG_SCRATCHPAD: c_int = 80;
const ARG_DIFF_SRC: c_int = 129;
const ARG_DIFF_DST: c_int = 145;
const ARG_DIFF_WEIGHTS: c_int = 161;
const ARG_DIFF_BIAS: c_int = 169;
const ARG_FROM: c_int = 1;
const ARG_TO: c_int = 17;

/// Which primitive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Dir {
    Forward { bias: bool },
    BackwardData,
    BackwardWeights,
}

/// A primitive for one shape on one thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    dir: Dir,
    mb: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    k: usize,
}

/// A float buffer aligned to 64 bytes (oneDNN's blocked tensors and scratchpads).
struct Buf {
    v: Vec<f32>,
    off: usize,
}

impl Buf {
    fn new(bytes: usize) -> Buf {
        let v = vec![0f32; bytes.div_ceil(4) + 16];
        let off = (16 - (v.as_ptr() as usize / 4) % 16) % 16;
        Buf { v, off }
    }
    fn ptr(&mut self) -> *mut std::ffi::c_void {
        self.v[self.off..].as_mut_ptr().cast()
    }
    fn slice(&self, len: usize) -> &[f32] {
        &self.v[self.off..self.off + len]
    }
    fn slice_mut(&mut self, len: usize) -> &mut [f32] {
        &mut self.v[self.off..self.off + len]
    }
}

/// A memory object over a user (NCHW / OIHW / x) buffer or an owned blocked buffer.
struct Mem {
    mem: Handle,
    own: Option<Buf>,
}

/// One tensor's user memory and, when the primitive wants another layout, the blocked copy and
/// the reorder between them (`to_blocked`: user → blocked; otherwise blocked → user).
struct Operand {
    user: Mem,
    blocked: Option<(Mem, Handle, Handle)>,
}

/// The primitive with its operands, in execution-argument order.
struct Entry {
    pd: Handle,
    prim: Handle,
    scratch: Mem,
    operands: Vec<(c_int, Operand, bool)>,
}

struct Thread {
    stream: Handle,
    entries: HashMap<Key, Option<Entry>>,
}

thread_local! {
    static THREAD: RefCell<Option<Thread>> = const { RefCell::new(None) };
}

struct Engine(Handle);
// SAFETY: a oneDNN engine may be used from any thread (engines are thread-safe objects).
unsafe impl Send for Engine {}
// SAFETY: as above.
unsafe impl Sync for Engine {}

static ENGINE: OnceLock<Option<Engine>> = OnceLock::new();

fn engine(a: &Api) -> Option<Handle> {
    ENGINE
        .get_or_init(|| {
            let mut e: Handle = std::ptr::null_mut();
            // SAFETY: creates the CPU engine 0 into `e`.
            check(unsafe { (a.engine_create)(&mut e, 1, 0) }).then_some(Engine(e))
        })
        .as_ref()
        .map(|e| e.0)
}

fn dims4(a: usize, b: usize, c: usize, d: usize) -> [i64; 12] {
    let mut x = [0i64; 12];
    x[..4].copy_from_slice(&[a as i64, b as i64, c as i64, d as i64]);
    x
}

fn dims2(a: usize, b: usize) -> [i64; 12] {
    let mut x = [0i64; 12];
    x[..2].copy_from_slice(&[a as i64, b as i64]);
    x
}

/// A memory descriptor (owned; destroyed by the guard).
struct Md<'a>(&'a Api, Handle);

impl Drop for Md<'_> {
    fn drop(&mut self) {
        if !self.1.is_null() {
            // SAFETY: created by memory_desc_create_with_tag and not destroyed before.
            unsafe { (self.0.md_destroy)(self.1) };
        }
    }
}

fn md<'a>(a: &'a Api, ndims: c_int, dims: &[i64; 12], tag: c_int) -> Option<Md<'a>> {
    let mut m: Handle = std::ptr::null_mut();
    // SAFETY: dims has ndims valid entries (12 in all, as dnnl_dims_t).
    check(unsafe { (a.md_create_with_tag)(&mut m, ndims, dims.as_ptr(), F32, tag) })
        .then_some(Md(a, m))
}

impl Entry {
    /// Build the primitive for `key` (None when oneDNN refuses the shape).
    fn new(a: &Api, eng: Handle, key: &Key) -> Option<Entry> {
        let (mb, cin, cout, h, w, k) = (key.mb, key.cin, key.cout, key.h, key.w, key.k);
        let pad = (k / 2) as i64;
        let strides = dims2(1, 1);
        let dil = dims2(0, 0);
        let padv = {
            let mut p = [0i64; 12];
            p[0] = pad;
            p[1] = pad;
            p
        };
        let src_any = md(a, 4, &dims4(mb, cin, h, w), ANY)?;
        let wei_any = md(a, 4, &dims4(cout, cin, k, k), ANY)?;
        let dst_any = md(a, 4, &dims4(mb, cout, h, w), ANY)?;
        let src_u = md(a, 4, &dims4(mb, cin, h, w), NCHW)?;
        let wei_u = md(a, 4, &dims4(cout, cin, k, k), OIHW)?;
        let dst_u = md(a, 4, &dims4(mb, cout, h, w), NCHW)?;
        let bias = md(
            a,
            1,
            &{
                let mut d = [0i64; 12];
                d[0] = cout as i64;
                d
            },
            X,
        )?;
        let mut attr: Handle = std::ptr::null_mut();
        // SAFETY: creates a default attribute set, then asks for a caller-owned scratchpad.
        if !check(unsafe { (a.attr_create)(&mut attr) }) {
            return None;
        }
        struct Attr<'a>(&'a Api, Handle);
        impl Drop for Attr<'_> {
            fn drop(&mut self) {
                // SAFETY: created above, destroyed once.
                unsafe { (self.0.attr_destroy)(self.1) };
            }
        }
        let attr = Attr(a, attr);
        // SAFETY: attr is a live attribute object.
        if !check(unsafe { (a.attr_set_scratchpad_mode)(attr.1, SCRATCHPAD_USER) }) {
            return None;
        }
        let has_bias = matches!(key.dir, Dir::Forward { bias: true });
        // The forward descriptor: the primitive itself, or the hint the backward ones need.
        let mut fwd: Handle = std::ptr::null_mut();
        // SAFETY: every descriptor is live; the dims arrays have 12 entries.
        let ok = check(unsafe {
            (a.conv_fwd_pd_create)(
                &mut fwd,
                eng,
                FORWARD_TRAINING,
                CONVOLUTION_DIRECT,
                src_any.1,
                wei_any.1,
                if has_bias {
                    bias.1
                } else {
                    std::ptr::null_mut()
                },
                dst_any.1,
                strides.as_ptr(),
                dil.as_ptr(),
                padv.as_ptr(),
                padv.as_ptr(),
                attr.1,
            )
        });
        if !ok {
            return None;
        }
        let pd = match key.dir {
            Dir::Forward { .. } => fwd,
            Dir::BackwardData => {
                let mut pd: Handle = std::ptr::null_mut();
                // SAFETY: as above; fwd is the live hint.
                let ok = check(unsafe {
                    (a.conv_bwd_data_pd_create)(
                        &mut pd,
                        eng,
                        CONVOLUTION_DIRECT,
                        src_any.1,
                        wei_any.1,
                        dst_any.1,
                        strides.as_ptr(),
                        dil.as_ptr(),
                        padv.as_ptr(),
                        padv.as_ptr(),
                        fwd,
                        attr.1,
                    )
                });
                // SAFETY: the hint is no longer needed (the backward descriptor keeps what it
                // uses).
                unsafe { (a.pd_destroy)(fwd) };
                if !ok {
                    return None;
                }
                pd
            }
            Dir::BackwardWeights => {
                let mut pd: Handle = std::ptr::null_mut();
                // SAFETY: as above.
                let ok = check(unsafe {
                    (a.conv_bwd_weights_pd_create)(
                        &mut pd,
                        eng,
                        CONVOLUTION_DIRECT,
                        src_any.1,
                        wei_any.1,
                        bias.1,
                        dst_any.1,
                        strides.as_ptr(),
                        dil.as_ptr(),
                        padv.as_ptr(),
                        padv.as_ptr(),
                        fwd,
                        attr.1,
                    )
                });
                // SAFETY: as above.
                unsafe { (a.pd_destroy)(fwd) };
                if !ok {
                    return None;
                }
                pd
            }
        };
        let mut e = Entry {
            pd,
            prim: std::ptr::null_mut(),
            scratch: Mem {
                mem: std::ptr::null_mut(),
                own: None,
            },
            operands: Vec::new(),
        };
        // SAFETY: pd is live; the primitive is destroyed by Entry's Drop.
        if !check(unsafe { (a.primitive_create)(&mut e.prim, pd) }) {
            return None;
        }
        // SAFETY: queries of a live descriptor return descriptors it owns.
        let q = |what: c_int| unsafe { (a.pd_query_md)(pd, what, 0) };
        e.scratch = Mem::owned(a, eng, q(Q_SCRATCHPAD))?;
        let specs: Vec<(c_int, c_int, Handle, bool)> = match key.dir {
            Dir::Forward { bias: b } => {
                let mut v = vec![
                    (ARG_SRC, Q_SRC, src_u.1, true),
                    (ARG_WEIGHTS, Q_WEIGHTS, wei_u.1, true),
                    (ARG_DST, Q_DST, dst_u.1, false),
                ];
                if b {
                    v.push((ARG_BIAS, 0, bias.1, true));
                }
                v
            }
            Dir::BackwardData => vec![
                (ARG_DIFF_DST, Q_DIFF_DST, dst_u.1, true),
                (ARG_WEIGHTS, Q_WEIGHTS, wei_u.1, true),
                (ARG_DIFF_SRC, Q_DIFF_SRC, src_u.1, false),
            ],
            Dir::BackwardWeights => vec![
                (ARG_SRC, Q_SRC, src_u.1, true),
                (ARG_DIFF_DST, Q_DIFF_DST, dst_u.1, true),
                (ARG_DIFF_WEIGHTS, Q_DIFF_WEIGHTS, wei_u.1, false),
                (ARG_DIFF_BIAS, 0, bias.1, false),
            ],
        };
        for (arg, query, user_md, input) in specs {
            let op = Operand::new(
                a,
                eng,
                user_md,
                if query == 0 { user_md } else { q(query) },
                input,
            )?;
            e.operands.push((arg, op, input));
        }
        Some(e)
    }

    /// The blocked layout this primitive wants for `arg` (None when it takes the user layout).
    fn blocked_md(&self, a: &Api, arg: c_int) -> Option<Handle> {
        let (_, op, _) = self.operands.iter().find(|(x, _, _)| *x == arg)?;
        op.blocked.as_ref()?;
        let query = match arg {
            ARG_WEIGHTS => Q_WEIGHTS,
            ARG_DIFF_WEIGHTS => Q_DIFF_WEIGHTS,
            _ => return None,
        };
        // SAFETY: a query of the live descriptor; the result is owned by it.
        Some(unsafe { (a.pd_query_md)(self.pd, query, 0) })
    }

    /// Run on this thread's stream with the user buffers in argument order. `laid_out`: one
    /// operand whose buffer is already in (input) or is to stay in (output) the blocked layout
    /// of `md`: its reorder is skipped; false when this primitive wants another layout.
    fn run(
        &mut self,
        a: &Api,
        stream: Handle,
        user: &[*mut std::ffi::c_void],
        laid_out: Option<LaidOut>,
    ) -> bool {
        if let Some(l) = laid_out {
            match self.blocked_md(a, l.arg) {
                // SAFETY: both descriptors are live.
                Some(md) if unsafe { (a.md_equal)(md, l.md) } != 0 => {}
                _ => return false,
            }
        }
        let mut args: Vec<ExecArg> = Vec::with_capacity(self.operands.len() + 1);
        for ((arg, op, input), &ptr) in self.operands.iter_mut().zip(user) {
            // SAFETY: the caller hands buffers of the user descriptor's size.
            if !check(unsafe { (a.memory_set_data_handle)(op.user.mem, ptr) }) {
                return false;
            }
            // The blocked buffer: the caller's for the laid-out operand, else this entry's own.
            if let Some((b, _, _)) = &mut op.blocked {
                let target = match laid_out {
                    Some(l) if l.arg == *arg => l.ptr,
                    _ => match b.own.as_mut() {
                        Some(buf) => buf.ptr(),
                        None => return false,
                    },
                };
                // SAFETY: a buffer of the blocked descriptor's size (the caller's, or owned).
                if !check(unsafe { (a.memory_set_data_handle)(b.mem, target) }) {
                    return false;
                }
            }
            let skip = laid_out.is_some_and(|l| l.arg == *arg);
            match &op.blocked {
                Some((b, _, _)) if skip => args.push(ExecArg {
                    arg: *arg,
                    memory: b.mem,
                }),
                Some((b, reorder, _)) if *input => {
                    let ra = [
                        ExecArg {
                            arg: ARG_FROM,
                            memory: op.user.mem,
                        },
                        ExecArg {
                            arg: ARG_TO,
                            memory: b.mem,
                        },
                    ];
                    // SAFETY: a reorder between two live memories of its descriptors.
                    if !check(unsafe { (a.primitive_execute)(*reorder, stream, 2, ra.as_ptr()) }) {
                        return false;
                    }
                    args.push(ExecArg {
                        arg: *arg,
                        memory: b.mem,
                    });
                }
                Some((b, _, _)) => args.push(ExecArg {
                    arg: *arg,
                    memory: b.mem,
                }),
                None => args.push(ExecArg {
                    arg: *arg,
                    memory: op.user.mem,
                }),
            }
        }
        args.push(ExecArg {
            arg: ARG_SCRATCHPAD,
            memory: self.scratch.mem,
        });
        // SAFETY: every argument is a live memory of the descriptor the primitive expects.
        if !check(unsafe {
            (a.primitive_execute)(self.prim, stream, args.len() as c_int, args.as_ptr())
        }) {
            return false;
        }
        for (arg, op, input) in &self.operands {
            if laid_out.is_some_and(|l| l.arg == *arg) {
                continue;
            }
            if let (Some((b, reorder, _)), false) = (&op.blocked, *input) {
                let ra = [
                    ExecArg {
                        arg: ARG_FROM,
                        memory: b.mem,
                    },
                    ExecArg {
                        arg: ARG_TO,
                        memory: op.user.mem,
                    },
                ];
                // SAFETY: as above.
                if !check(unsafe { (a.primitive_execute)(*reorder, stream, 2, ra.as_ptr()) }) {
                    return false;
                }
            }
        }
        // SAFETY: waits for the work submitted to this thread's stream.
        check(unsafe { (a.stream_wait)(stream) })
    }

    fn destroy(&mut self, a: &Api) {
        for (_, op, _) in self.operands.drain(..) {
            op.destroy(a);
        }
        std::mem::replace(
            &mut self.scratch,
            Mem {
                mem: std::ptr::null_mut(),
                own: None,
            },
        )
        .destroy(a);
        // SAFETY: created in `new`, destroyed once.
        unsafe {
            if !self.prim.is_null() {
                (a.primitive_destroy)(self.prim);
            }
            (a.pd_destroy)(self.pd);
        }
    }
}

impl Mem {
    /// A memory over a caller's buffer of the descriptor's size (not owned).
    fn over(a: &Api, eng: Handle, md: Handle, ptr: *mut std::ffi::c_void) -> Option<Mem> {
        let mut m: Handle = std::ptr::null_mut();
        // SAFETY: the caller's buffer is at least the descriptor's size and outlives the memory.
        check(unsafe { (a.memory_create)(&mut m, md, eng, ptr) })
            .then_some(Mem { mem: m, own: None })
    }

    /// A memory with no buffer yet (user memory; the handle is set per call).
    fn user(a: &Api, eng: Handle, md: Handle) -> Option<Mem> {
        let mut m: Handle = std::ptr::null_mut();
        // SAFETY: a null handle means "no buffer" (DNNL_MEMORY_NONE).
        check(unsafe { (a.memory_create)(&mut m, md, eng, std::ptr::null_mut()) })
            .then_some(Mem { mem: m, own: None })
    }

    /// A memory over its own buffer of the descriptor's size.
    fn owned(a: &Api, eng: Handle, md: Handle) -> Option<Mem> {
        // SAFETY: md is a live descriptor.
        let bytes = unsafe { (a.md_get_size)(md) };
        let mut buf = Buf::new(bytes.max(4));
        let mut m: Handle = std::ptr::null_mut();
        // SAFETY: the buffer is at least `bytes` long, 64-byte aligned, and lives as long as
        // the memory object (both owned by this Mem).
        check(unsafe { (a.memory_create)(&mut m, md, eng, buf.ptr()) }).then_some(Mem {
            mem: m,
            own: Some(buf),
        })
    }

    fn destroy(mut self, a: &Api) {
        if !self.mem.is_null() {
            // SAFETY: created by memory_create, destroyed once.
            unsafe { (a.memory_destroy)(self.mem) };
        }
        self.own.take();
    }
}

impl Operand {
    fn new(a: &Api, eng: Handle, user_md: Handle, want: Handle, input: bool) -> Option<Operand> {
        let user = Mem::user(a, eng, user_md)?;
        // SAFETY: both descriptors are live.
        if unsafe { (a.md_equal)(user_md, want) } != 0 {
            return Some(Operand {
                user,
                blocked: None,
            });
        }
        let blocked = Mem::owned(a, eng, want)?;
        let (from, to) = if input {
            (user_md, want)
        } else {
            (want, user_md)
        };
        let mut rpd: Handle = std::ptr::null_mut();
        // SAFETY: a reorder descriptor between two live descriptors on the same engine.
        if !check(unsafe {
            (a.reorder_pd_create)(&mut rpd, from, eng, to, eng, std::ptr::null_mut())
        }) {
            return None;
        }
        let mut r: Handle = std::ptr::null_mut();
        // SAFETY: rpd is live; kept alongside the primitive and destroyed with it.
        if !check(unsafe { (a.primitive_create)(&mut r, rpd) }) {
            // SAFETY: rpd was created above.
            unsafe { (a.pd_destroy)(rpd) };
            return None;
        }
        Some(Operand {
            user,
            blocked: Some((blocked, r, rpd)),
        })
    }

    fn destroy(self, a: &Api) {
        self.user.destroy(a);
        if let Some((b, r, rpd)) = self.blocked {
            b.destroy(a);
            // SAFETY: created in `new`, destroyed once.
            unsafe {
                (a.primitive_destroy)(r);
                (a.pd_destroy)(rpd);
            }
        }
    }
}

impl Drop for Thread {
    fn drop(&mut self) {
        if let Some(a) = api::get() {
            for (_, e) in self.entries.drain() {
                if let Some(mut e) = e {
                    e.destroy(a);
                }
            }
            // SAFETY: this thread's stream, destroyed once.
            unsafe { (a.stream_destroy)(self.stream) };
        }
    }
}

/// An operand already in the blocked layout `md` (see [`Entry::run`]).
#[derive(Clone, Copy)]
struct LaidOut {
    arg: c_int,
    ptr: *mut std::ffi::c_void,
    md: Handle,
}
// SAFETY: the buffer is only read (inputs) or written by one chunk (outputs); `md` is a
// descriptor owned by a primitive descriptor that lives as long as its thread.
unsafe impl Send for LaidOut {}
// SAFETY: as above.
unsafe impl Sync for LaidOut {}

/// Run `key`'s primitive on this thread with these user buffers; false when oneDNN is missing
/// or refuses.
fn run(key: Key, user: &[*mut std::ffi::c_void], laid_out: Option<LaidOut>) -> bool {
    with_entry(key, |a, stream, e| e.run(a, stream, user, laid_out)).unwrap_or(false)
}

/// Call `f` with this thread's primitive for `key` (built on first use); None when oneDNN is
/// missing or refuses the shape.
fn with_entry<R>(key: Key, f: impl FnOnce(&Api, Handle, &mut Entry) -> R) -> Option<R> {
    let a = api::get()?;
    let eng = engine(a)?;
    super::team(1);
    THREAD.with(|t| {
        let mut t = t.borrow_mut();
        if t.is_none() {
            let mut s: Handle = std::ptr::null_mut();
            // SAFETY: creates an in-order stream on the CPU engine.
            if !check(unsafe { (a.stream_create)(&mut s, eng, 1) }) {
                return None;
            }
            *t = Some(Thread {
                stream: s,
                entries: HashMap::new(),
            });
        }
        let t = t.as_mut()?;
        let stream = t.stream;
        let entry = t
            .entries
            .entry(key)
            .or_insert_with(|| Entry::new(a, eng, &key));
        entry.as_mut().map(|e| f(a, stream, e))
    })
}

/// A blocked copy of an operand, made once for every chunk of a call.
struct Shared {
    buf: Buf,
    md: Handle,
}

impl Shared {
    fn laid_out(&mut self, arg: c_int) -> LaidOut {
        LaidOut {
            arg,
            ptr: self.buf.ptr(),
            md: self.md,
        }
    }
}

/// Reorder the user buffer `ptr` of `key`'s operand `arg` (an input) into its blocked layout,
/// once, on this thread; None when that operand takes the user layout.
fn share_input(key: Key, arg: c_int, ptr: *mut std::ffi::c_void) -> Option<Shared> {
    with_entry(key, |a, stream, e| {
        let md = e.blocked_md(a, arg)?;
        let (_, op, _) = e.operands.iter().find(|(x, _, _)| *x == arg)?;
        let (_, reorder, _) = op.blocked.as_ref()?;
        // SAFETY: md is a live descriptor.
        let mut buf = Buf::new(unsafe { (a.md_get_size)(md) }.max(4));
        let mem = Mem::over(a, engine(a)?, md, buf.ptr())?;
        // SAFETY: the user buffer has the user descriptor's size.
        let ok = check(unsafe { (a.memory_set_data_handle)(op.user.mem, ptr) })
            && execute_reorder(a, *reorder, stream, op.user.mem, mem.mem);
        mem.destroy(a);
        ok.then_some(Shared { buf, md })
    })
    .flatten()
}

/// Reorder `blocked` (in `key`'s blocked layout of output `arg`) into the user buffer `ptr`.
fn unshare_output(key: Key, arg: c_int, blocked: &mut Buf, ptr: *mut std::ffi::c_void) -> bool {
    with_entry(key, |a, stream, e| {
        let Some(md) = e.blocked_md(a, arg) else {
            return false;
        };
        let Some((_, op, _)) = e.operands.iter().find(|(x, _, _)| *x == arg) else {
            return false;
        };
        let Some((_, reorder, _)) = op.blocked.as_ref() else {
            return false;
        };
        let Some(mem) = engine(a).and_then(|eng| Mem::over(a, eng, md, blocked.ptr())) else {
            return false;
        };
        // SAFETY: the user buffer has the user descriptor's size.
        let ok = check(unsafe { (a.memory_set_data_handle)(op.user.mem, ptr) })
            && execute_reorder(a, *reorder, stream, mem.mem, op.user.mem);
        mem.destroy(a);
        ok
    })
    .unwrap_or(false)
}

fn execute_reorder(a: &Api, reorder: Handle, stream: Handle, from: Handle, to: Handle) -> bool {
    let ra = [
        ExecArg {
            arg: ARG_FROM,
            memory: from,
        },
        ExecArg {
            arg: ARG_TO,
            memory: to,
        },
    ];
    // SAFETY: a reorder between two live memories of its descriptors; then wait for it.
    check(unsafe { (a.primitive_execute)(reorder, stream, 2, ra.as_ptr()) })
        && check(unsafe { (a.stream_wait)(stream) })
}

/// `(first, count)` of each chunk of `n` images.
fn chunks(n: usize) -> Vec<(usize, usize)> {
    let per = n.div_ceil(CHUNKS).max(1);
    (0..n.div_ceil(per))
        .map(|j| (j * per, per.min(n - j * per)))
        .collect()
}

static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Use oneDNN's convolutions when it is loaded (on by default; tests compare both paths).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, std::sync::atomic::Ordering::Relaxed);
}

fn ok(c: &Conv2d) -> bool {
    ENABLED.load(std::sync::atomic::Ordering::Relaxed)
        && c.n > 0
        && c.cin > 0
        && c.cout > 0
        && c.h > 0
        && c.w > 0
        && c.k % 2 == 1
        && c.cout * c.kk() < large_kernel()
        && api::get().is_some()
}

/// On Intel CPUs with AVX-512, kernels with this many weights or more go to im2col + GEMM
/// instead: measured on the `cifar` preset (128–256 channels) on a 2-core Intel Xeon (AVX-512,
/// AMX), oneDNN's per-call reorders and buffers made the step 12% slower and its peak memory
/// 1.7× (4.3 against 2.55 GiB) — the products are large enough there for the GEMM's AVX-512
/// kernels to run at full speed. (Measured before the weights were reordered once per call for
/// all chunks; not measured on Intel since.)
pub const LARGE_KERNEL: usize = 1 << 16;

/// The one decision of which convolutions oneDNN takes, by kernel size: below
/// [`LARGE_KERNEL`] weights on Intel CPUs with AVX-512, every size elsewhere. Measured on the
/// `cifar` step against PyTorch (docs/performance.md), median of three runs each: on a 2-core
/// AMD EPYC with AVX2 0.74× with the large kernels on im2col + GEMM against 0.97–1.04× with all
/// of them on oneDNN; on a 2-core AMD EPYC with AVX-512 (Zen 4) 0.98× against 1.09× (peak RSS
/// 2.7 and 3.1 GiB, PyTorch's 4.2–4.9). AMD's AVX-512 units do not give the GEMM the lead they
/// give it on the Intel Xeon.
///
/// `CEDM_CONV_LARGE=dnnl` (every size to oneDNN) or `=gemm` (the Intel split on any CPU)
/// overrides the detection, for measuring a new CPU.
pub fn large_kernel() -> usize {
    static LIMIT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        match std::env::var("CEDM_CONV_LARGE").as_deref() {
            Ok("dnnl") => return usize::MAX,
            Ok("gemm") => return LARGE_KERNEL,
            _ => {}
        }
        if intel_avx512() {
            LARGE_KERNEL
        } else {
            usize::MAX
        }
    })
}

/// Whether this is an Intel CPU (CPUID vendor `GenuineIntel`) with AVX-512F.
fn intel_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return false;
        }
        // SAFETY: CPUID leaf 0 exists on every x86-64 CPU.
        #[allow(unused_unsafe)]
        let r = unsafe { std::arch::x86_64::__cpuid(0) };
        let mut vendor = [0u8; 12];
        vendor[..4].copy_from_slice(&r.ebx.to_le_bytes());
        vendor[4..8].copy_from_slice(&r.edx.to_le_bytes());
        vendor[8..].copy_from_slice(&r.ecx.to_le_bytes());
        &vendor == b"GenuineIntel"
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// A pointer that may cross to rayon's threads (disjoint chunks of one buffer).
#[derive(Clone, Copy)]
struct P(*mut f32);
// SAFETY: each chunk is written by one thread; inputs are only read.
unsafe impl Send for P {}
// SAFETY: as above.
unsafe impl Sync for P {}
impl P {
    fn at(self, off: usize) -> *mut std::ffi::c_void {
        self.0.wrapping_add(off).cast()
    }
}

/// `y = conv(x, weight) + bias` through oneDNN; false (nothing written) when it cannot.
pub fn forward(c: &Conv2d, x: &[f32], weight: &[f32], bias: Option<&[f32]>, y: &mut [f32]) -> bool {
    if !ok(c) {
        return false;
    }
    let hw = c.hw();
    let (xp, wp, yp) = (
        P(x.as_ptr().cast_mut()),
        P(weight.as_ptr().cast_mut()),
        P(y.as_mut_ptr()),
    );
    let bp = bias.map(|b| P(b.as_ptr().cast_mut()));
    let key = |mb| Key {
        dir: Dir::Forward { bias: bp.is_some() },
        mb,
        cin: c.cin,
        cout: c.cout,
        h: c.h,
        w: c.w,
        k: c.k,
    };
    let parts = chunks(c.n);
    // The weights reordered once for every chunk, not once per chunk.
    let mut shared = share_input(key(parts[0].1), ARG_WEIGHTS, wp.at(0));
    let laid = shared.as_mut().map(|s| s.laid_out(ARG_WEIGHTS));
    parts.into_par_iter().all(|(first, count)| {
        let mut user = vec![
            xp.at(first * c.cin * hw),
            wp.at(0),
            yp.at(first * c.cout * hw),
        ];
        if let Some(b) = bp {
            user.push(b.at(0));
        }
        // A chunk of another size may want another layout: then its own reorder.
        run(key(count), &user, laid) || (laid.is_some() && run(key(count), &user, None))
    })
}

/// The input gradient through oneDNN; false when it cannot.
pub fn backward_data(c: &Conv2d, weight: &[f32], dy: &[f32], dx: &mut [f32]) -> bool {
    if !ok(c) {
        return false;
    }
    let hw = c.hw();
    let (wp, dyp, dxp) = (
        P(weight.as_ptr().cast_mut()),
        P(dy.as_ptr().cast_mut()),
        P(dx.as_mut_ptr()),
    );
    let key = |mb| Key {
        dir: Dir::BackwardData,
        mb,
        cin: c.cin,
        cout: c.cout,
        h: c.h,
        w: c.w,
        k: c.k,
    };
    let parts = chunks(c.n);
    let mut shared = share_input(key(parts[0].1), ARG_WEIGHTS, wp.at(0));
    let laid = shared.as_mut().map(|s| s.laid_out(ARG_WEIGHTS));
    parts.into_par_iter().all(|(first, count)| {
        let user = [
            dyp.at(first * c.cout * hw),
            wp.at(0),
            dxp.at(first * c.cin * hw),
        ];
        run(key(count), &user, laid) || (laid.is_some() && run(key(count), &user, None))
    })
}

/// The weight and bias gradients through oneDNN (chunk sums added in order); false when it
/// cannot.
pub fn backward_weight(
    c: &Conv2d,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) -> bool {
    if !ok(c) {
        return false;
    }
    let (hw, kk) = (c.hw(), c.kk());
    let (xp, dyp) = (P(x.as_ptr().cast_mut()), P(dy.as_ptr().cast_mut()));
    let key = |mb| Key {
        dir: Dir::BackwardWeights,
        mb,
        cin: c.cin,
        cout: c.cout,
        h: c.h,
        w: c.w,
        k: c.k,
    };
    let split = chunks(c.n);
    let per = split[0].1;
    // Chunks of one size keep their weight gradients in the primitive's blocked layout; their
    // sum is reordered to OIHW once (not once per chunk).
    let blocked = (split.iter().all(|&(_, n)| n == per))
        .then(|| {
            with_entry(key(per), |a, _, e| {
                e.blocked_md(a, ARG_DIFF_WEIGHTS).map(|md| {
                    let laid = LaidOut {
                        arg: ARG_DIFF_WEIGHTS,
                        ptr: std::ptr::null_mut(),
                        md,
                    };
                    // SAFETY: md is a live descriptor of the entry.
                    let size = unsafe { (a.md_get_size)(md) };
                    (laid, size)
                })
            })
            .flatten()
        })
        .flatten();
    let len = blocked.map_or(c.cout * kk, |(_, bytes)| bytes.div_ceil(4));
    let parts: Vec<Option<(Buf, Vec<f32>)>> = split
        .into_par_iter()
        .map(|(first, count)| {
            let (mut w, mut b) = (Buf::new(len * 4), vec![0f32; c.cout]);
            let user = [
                xp.at(first * c.cin * hw),
                dyp.at(first * c.cout * hw),
                w.ptr(),
                b.as_mut_ptr().cast(),
            ];
            let laid = blocked.map(|(l, _)| LaidOut { ptr: w.ptr(), ..l });
            run(key(count), &user, laid).then_some((w, b))
        })
        .collect();
    let Some(mut parts) = parts.into_iter().collect::<Option<Vec<_>>>() else {
        return false;
    };
    // The chunks' sums, added in chunk order for every element (the same bits whatever the
    // thread count), over blocks of elements in parallel.
    fn add_in_order(out: &mut [f32], parts: &[&[f32]]) {
        const BLOCK: usize = 1 << 14;
        out.par_chunks_mut(BLOCK).enumerate().for_each(|(j, o)| {
            let at = j * BLOCK;
            o.copy_from_slice(&parts[0][at..at + o.len()]);
            for p in &parts[1..] {
                for (d, s) in o.iter_mut().zip(&p[at..]) {
                    *d += s;
                }
            }
        });
    }
    if let Some(db) = db {
        let bs: Vec<&[f32]> = parts.iter().map(|p| p.1.as_slice()).collect();
        add_in_order(&mut db[..c.cout], &bs);
    }
    let ws: Vec<&[f32]> = parts.iter().map(|p| p.0.slice(len)).collect();
    match blocked {
        None => add_in_order(&mut dw[..c.cout * kk], &ws),
        Some(_) => {
            let mut sum = Buf::new(len * 4);
            add_in_order(sum.slice_mut(len), &ws);
            drop(ws);
            parts.clear();
            return unshare_output(key(per), ARG_DIFF_WEIGHTS, &mut sum, dw.as_mut_ptr().cast());
        }
    }
    true
}
