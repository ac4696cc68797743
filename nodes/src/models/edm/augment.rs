//! EDM's augmentation pipe as its CIFAR-10 and FFHQ configurations use it (NVlabs/edm
//! `training/augment.py`, `AugmentPipe(p, xflip=1e8, yflip=1, scale=1, rotate_frac=1, aniso=1,
//! translate_frac=1)`), on the CPU, one image at a time.
//!
//! Per image: x-flip with probability ½ (xflip's multiplier 1e8 makes it always eligible),
//! y-flip with probability p/2; then, each with probability p, an isotropic scale 2^(0.2·N(0,1)),
//! a rotation U(−π, π), an anisotropic scale 2^(0.2·N(0,1)) (about a random axis half of the
//! time), and a translation N(0, 0.125)·size. The geometric part pads by reflection, upsamples
//! 2× with the sym6 wavelet, samples bilinearly (zeros outside), and downsamples with sym6 —
//! exactly EDM's construction; for an image with no geometric transform that chain is the
//! identity (sym6 is orthonormal), so such images skip it. The 9-d augment label the network is
//! conditioned on is [xflip, yflip, scale, cos θ − 1, sin θ, aniso·cos r, aniso·sin r, tx, ty].
//!
//! Port difference: random draws come from cedm's seeded generator, not torch's; their
//! distributions are EDM's.

use cedm_kernels::rng::Rng;

/// sym6 scaling filter (from PyWavelets, as EDM lists it).
const SYM6: [f64; 12] = [
    0.015404109327027373,
    0.0034907120842174702,
    -0.11799011114819057,
    -0.048311742585633,
    0.4910559419267466,
    0.787641141030194,
    0.3379294217276218,
    -0.07263752278646252,
    -0.021060292512300564,
    0.04472490177066578,
    0.0017677118642428036,
    -0.007800708325034148,
];

/// Augmentation settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AugmentConfig {
    /// Overall probability multiplier p.
    pub p: f64,
}

/// Label dimension of the pipe.
pub const AUGMENT_DIM: usize = 9;

type Mat = [[f64; 3]; 3];

fn mul(a: &Mat, b: &Mat) -> Mat {
    let mut c = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            c[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    c
}

fn translate(tx: f64, ty: f64) -> Mat {
    [[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]]
}

fn scale(sx: f64, sy: f64) -> Mat {
    [[sx, 0.0, 0.0], [0.0, sy, 0.0], [0.0, 0.0, 1.0]]
}

fn rotate(t: f64) -> Mat {
    [
        [t.cos(), -t.sin(), 0.0],
        [t.sin(), t.cos(), 0.0],
        [0.0, 0.0, 1.0],
    ]
}

const I3: Mat = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

/// Reflect-pad one plane (PyTorch's `mode='reflect'`, edge not repeated).
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let mut m = i.rem_euclid(period);
    if m >= n {
        m = period - m;
    }
    m as usize
}

/// Apply the inverse transform `g_inv` (EDM's G_inv, in pixel units about the image centre) to
/// one image of `c` planes `h × w` with EDM's wavelet-resampled construction.
pub fn geometric(img: &[f32], c: usize, h: usize, w: usize, g_inv: &Mat) -> Vec<f32> {
    let hz_pad = SYM6.len() / 4; // 3
    let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
    // Margins: transformed corners, plus the filter's reach, clamped to the image.
    let corners = [[-cx, -cy], [cx, -cy], [cx, cy], [-cx, cy]];
    let mut m = [f64::MIN; 4];
    for [x, y] in corners {
        let tx = g_inv[0][0] * x + g_inv[0][1] * y + g_inv[0][2];
        let ty = g_inv[1][0] * x + g_inv[1][1] * y + g_inv[1][2];
        m[0] = m[0].max(-tx);
        m[1] = m[1].max(-ty);
        m[2] = m[2].max(tx);
        m[3] = m[3].max(ty);
    }
    let add = [
        hz_pad as f64 * 2.0 - cx,
        hz_pad as f64 * 2.0 - cy,
        hz_pad as f64 * 2.0 - cx,
        hz_pad as f64 * 2.0 - cy,
    ];
    let lim = [
        w as f64 - 1.0,
        h as f64 - 1.0,
        w as f64 - 1.0,
        h as f64 - 1.0,
    ];
    let mg: Vec<usize> = (0..4)
        .map(|i| (m[i] + add[i]).max(0.0).min(lim[i]).ceil() as usize)
        .collect();
    let (mx0, my0, mx1, my1) = (mg[0], mg[1], mg[2], mg[3]);
    let (pw, ph) = (w + mx0 + mx1, h + my0 + my1);
    let g = mul(
        &translate(
            (mx0 as f64 - mx1 as f64) / 2.0,
            (my0 as f64 - my1 as f64) / 2.0,
        ),
        g_inv,
    );
    // Upsample 2×: zero-insertion (2n−1 samples) then the reversed sym6 filter with padding 6,
    // separably; the output has 2n samples.
    let hz: Vec<f64> = SYM6.to_vec();
    let hr: Vec<f64> = hz.iter().rev().copied().collect();
    let up_pad = hz.len().div_ceil(2); // 6
    let (uw, uh) = (2 * pw, 2 * ph);
    let (g, out_w, out_h) = {
        let g = mul(&scale(2.0, 2.0), &mul(&g, &scale(0.5, 0.5)));
        let g = mul(&translate(-0.5, -0.5), &mul(&g, &translate(0.5, 0.5)));
        (g, (w + hz_pad * 2) * 2, (h + hz_pad * 2) * 2)
    };
    let mut out = Vec::with_capacity(c * h * w);
    for ch in 0..c {
        let plane = &img[ch * h * w..(ch + 1) * h * w];
        // Padded plane.
        let mut p = vec![0f64; ph * pw];
        for y in 0..ph {
            for x in 0..pw {
                p[y * pw + x] = f64::from(
                    plane[reflect(y as isize - my0 as isize, h) * w
                        + reflect(x as isize - mx0 as isize, w)],
                );
            }
        }
        // Horizontal upsample: conv of the zero-stuffed row (length 2pw−1) with hr, padding up_pad.
        let mut a = vec![0f64; ph * uw];
        for y in 0..ph {
            for ox in 0..uw {
                let mut s = 0.0;
                for (k, &f) in hr.iter().enumerate() {
                    let ix = ox as isize + k as isize - up_pad as isize;
                    if ix >= 0 && (ix as usize) < 2 * pw - 1 && ix % 2 == 0 {
                        s += f * p[y * pw + ix as usize / 2];
                    }
                }
                a[y * uw + ox] = s;
            }
        }
        // Vertical upsample.
        let mut u = vec![0f64; uh * uw];
        for oy in 0..uh {
            for x in 0..uw {
                let mut s = 0.0;
                for (k, &f) in hr.iter().enumerate() {
                    let iy = oy as isize + k as isize - up_pad as isize;
                    if iy >= 0 && (iy as usize) < 2 * ph - 1 && iy % 2 == 0 {
                        s += f * a[(iy as usize / 2) * uw + x];
                    }
                }
                u[oy * uw + x] = s;
            }
        }
        // grid_sample (bilinear, zeros, align_corners=False) into out_h × out_w. EDM normalises
        // G by the input and output sizes; in pixel terms the source position of output pixel
        // (i, j) is G applied to its centre, both frames centred.
        let mut s = vec![0f64; out_h * out_w];
        let (icx, icy) = (uw as f64 / 2.0, uh as f64 / 2.0);
        let (ocx, ocy) = (out_w as f64 / 2.0, out_h as f64 / 2.0);
        for oy in 0..out_h {
            for ox in 0..out_w {
                let x = ox as f64 + 0.5 - ocx;
                let y = oy as f64 + 0.5 - ocy;
                let sx = g[0][0] * x + g[0][1] * y + g[0][2] + icx - 0.5;
                let sy = g[1][0] * x + g[1][1] * y + g[1][2] + icy - 0.5;
                let (x0, y0) = (sx.floor(), sy.floor());
                let (fx, fy) = (sx - x0, sy - y0);
                let mut v = 0.0;
                for (dy, wy) in [(0.0, 1.0 - fy), (1.0, fy)] {
                    for (dx, wx) in [(0.0, 1.0 - fx), (1.0, fx)] {
                        let (xi, yi) = (x0 + dx, y0 + dy);
                        if xi >= 0.0 && yi >= 0.0 && (xi as usize) < uw && (yi as usize) < uh {
                            v += wy * wx * u[yi as usize * uw + xi as usize];
                        }
                    }
                }
                s[oy * out_w + ox] = v;
            }
        }
        // Downsample 2× with sym6 (stride 2, padding 5) and crop hz_pad on each side.
        let dpad = (hz.len() - 1) / 2; // 5
        let dw = (out_w + 2 * dpad - hz.len()) / 2 + 1;
        let mut d1 = vec![0f64; out_h * dw];
        for y in 0..out_h {
            for ox in 0..dw {
                let mut acc = 0.0;
                for (k, &f) in hz.iter().enumerate() {
                    let ix = (2 * ox + k) as isize - dpad as isize;
                    if ix >= 0 && (ix as usize) < out_w {
                        acc += f * s[y * out_w + ix as usize];
                    }
                }
                d1[y * dw + ox] = acc;
            }
        }
        let dh = (out_h + 2 * dpad - hz.len()) / 2 + 1;
        for oy in hz_pad..dh - hz_pad {
            for ox in hz_pad..dw - hz_pad {
                let mut acc = 0.0;
                for (k, &f) in hz.iter().enumerate() {
                    let iy = (2 * oy + k) as isize - dpad as isize;
                    if iy >= 0 && (iy as usize) < out_h {
                        acc += f * d1[iy as usize * dw + ox];
                    }
                }
                out.push(acc as f32);
            }
        }
    }
    out
}

/// Draw the augmentation of one image and apply it. Returns (image, 9-d label).
pub fn augment(
    img: &[f32],
    c: usize,
    h: usize,
    w: usize,
    cfg: &AugmentConfig,
    rng: &mut Rng,
) -> (Vec<f32>, [f32; AUGMENT_DIM]) {
    let p = cfg.p;
    let mut label = [0f32; AUGMENT_DIM];
    let mut x = img.to_vec();
    // x-flip: probability multiplier 1e8 → always eligible, flipped half of the time.
    let xf = rng.below(2);
    let xf = if rng.uniform() < 1e8 * p { xf } else { 0 };
    if xf == 1 {
        for ch in 0..c {
            for y in 0..h {
                x[ch * h * w + y * w..ch * h * w + (y + 1) * w].reverse();
            }
        }
    }
    label[0] = xf as f32;
    let yf = rng.below(2);
    let yf = if rng.uniform() < p { yf } else { 0 };
    if yf == 1 {
        for ch in 0..c {
            for y in 0..h / 2 {
                for xx in 0..w {
                    x.swap(ch * h * w + y * w + xx, ch * h * w + (h - 1 - y) * w + xx);
                }
            }
        }
    }
    label[1] = yf as f32;
    let mut g = I3;
    // Isotropic scale.
    let ws = rng.normal();
    let ws = if rng.uniform() < p { ws } else { 0.0 };
    let s = 2f64.powf(ws * 0.2);
    g = mul(&g, &scale(1.0 / s, 1.0 / s));
    label[2] = ws as f32;
    // Rotation.
    let wr = (rng.uniform() * 2.0 - 1.0) * std::f64::consts::PI;
    let wr = if rng.uniform() < p { wr } else { 0.0 };
    g = mul(&g, &rotate(wr)); // rotate2d_inv(−w) = rotate2d(w)
    label[3] = (wr.cos() - 1.0) as f32;
    label[4] = wr.sin() as f32;
    // Anisotropic scale.
    let wa = rng.normal();
    let r = (rng.uniform() * 2.0 - 1.0) * std::f64::consts::PI;
    let wa = if rng.uniform() < p { wa } else { 0.0 };
    let r = if rng.uniform() < 0.5 { r } else { 0.0 };
    let sa = 2f64.powf(wa * 0.2);
    g = mul(
        &g,
        &mul(&rotate(-r), &mul(&scale(1.0 / sa, sa), &rotate(r))),
    );
    label[5] = (wa * r.cos()) as f32;
    label[6] = (wa * r.sin()) as f32;
    // Translation.
    let (tx, ty) = (rng.normal(), rng.normal());
    let (tx, ty) = if rng.uniform() < p {
        (tx, ty)
    } else {
        (0.0, 0.0)
    };
    g = mul(
        &g,
        &translate(-tx * w as f64 * 0.125, -ty * h as f64 * 0.125),
    );
    label[7] = tx as f32;
    label[8] = ty as f32;
    let identity = g
        .iter()
        .flatten()
        .zip(I3.iter().flatten())
        .all(|(a, b)| (a - b).abs() < 1e-12);
    if !identity {
        x = geometric(&x, c, h, w, &g);
    }
    (x, label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_transform_reproduces_the_image() {
        let (c, h, w) = (2, 9, 7);
        let mut r = Rng::new(0);
        let img: Vec<f32> = (0..c * h * w).map(|_| r.normal() as f32).collect();
        let out = geometric(&img, c, h, w, &I3);
        let d = img
            .iter()
            .zip(&out)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(d < 1e-4, "sym6 up/down must be the identity, max |Δ| {d}");
    }

    #[test]
    fn integer_translation_shifts_pixels() {
        let (c, h, w) = (1, 12, 12);
        let img: Vec<f32> = (0..h * w)
            .map(|i| ((i % w) as f32 * 0.3).sin() + (i / w) as f32 * 0.1)
            .collect();
        // G_inv = translate(−2, 0): output(x) = input(x − 2).
        let out = geometric(&img, c, h, w, &translate(-2.0, 0.0));
        for y in 3..9 {
            for x in 4..10 {
                assert!(
                    (out[y * w + x] - img[y * w + x - 2]).abs() < 2e-3,
                    "({x},{y})"
                );
            }
        }
    }

    #[test]
    fn tiny_p_is_x_flip_only() {
        // x-flip's multiplier 1e8 keeps it eligible at any p > 1e-8; the rest practically never.
        let (c, h, w) = (1, 4, 4);
        let img: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let mut r = Rng::new(1);
        let mut flips = 0;
        for _ in 0..200 {
            let (x, l) = augment(&img, c, h, w, &AugmentConfig { p: 1e-7 }, &mut r);
            assert!(l[1..].iter().all(|&v| v == 0.0));
            if l[0] == 1.0 {
                flips += 1;
                assert_eq!(x[0], 3.0);
            } else {
                assert_eq!(x, img);
            }
        }
        assert!((70..130).contains(&flips), "{flips}");
    }
}
