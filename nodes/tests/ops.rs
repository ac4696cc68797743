//! The custom CPU operations (`cedm_nodes::ops`) against PyTorch: every forward output and every
//! gradient, on the fixture `tests/parity/ops.py` writes (odd sizes; for the convolution, shapes
//! that reach each code path), with oneDNN's convolutions and with the im2col fallback. Uncleared
//! kernel outputs start as NaN here, so an element a kernel forgot shows.
//!
//! A test binary of its own: it switches process-wide settings (oneDNN on and off).

use std::path::PathBuf;

use burn::module::Param;
use burn::nn::conv::Conv2dConfig;
use burn::nn::{GroupNormConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor, TensorData};
use cedm_nodes::artifacts::safetensors::Tensors;
use cedm_nodes::kernels::nn::optim::AdamStep;
use cedm_nodes::ops;

fn fixture() -> Tensors {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/parity/ops.safetensors");
    Tensors::open(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

/// A fixture tensor on `device`, tracked for gradients when `device` is an autodiff device.
fn load<const D: usize>(t: &Tensors, name: &str, device: &Device) -> Tensor<D> {
    let v = t.f32(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let x = Tensor::from_data(TensorData::new(v.data, v.shape), device);
    if device.is_autodiff() {
        x.require_grad()
    } else {
        x
    }
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec().unwrap()
}

/// max |got − want| ≤ tol·(1 + max |want|), with a message naming the tensor.
fn close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = got
        .iter()
        .zip(want)
        .map(|(a, b)| {
            if a.is_nan() {
                f32::INFINITY
            } else {
                (a - b).abs()
            }
        })
        .fold(0f32, f32::max);
    assert!(
        d <= tol * (1.0 + scale),
        "{what}: max |Δ| = {d} (max |want| = {scale})"
    );
}

/// `y = op(inputs)` on an autodiff device; checks y and the gradient of sum(y·dy) with respect
/// to every named input against the fixture.
fn check<const D: usize, const E: usize>(
    t: &Tensors,
    prefix: &str,
    names: &[&str],
    tol: f32,
    op: impl Fn(&[Tensor<E>]) -> Tensor<D>,
) {
    let device = Device::flex().autodiff();
    let inputs: Vec<Tensor<E>> = names
        .iter()
        .map(|n| load(t, &format!("{prefix}.{n}"), &device))
        .collect();
    let y = op(&inputs);
    let dy: Tensor<D> = load(t, &format!("{prefix}.dy"), &Device::flex());
    let dy = Tensor::from_data(dy.into_data(), &device);
    close(
        &format!("{prefix}.y"),
        &host(y.clone()),
        &t.f32(&format!("{prefix}.y")).unwrap().data,
        tol,
    );
    let grads = (y * dy).sum().backward();
    for (n, x) in names.iter().zip(&inputs) {
        let g = x
            .grad(&grads)
            .unwrap_or_else(|| panic!("{prefix}: no gradient for {n}"));
        close(
            &format!("{prefix}.d{n}"),
            &host(g),
            &t.f32(&format!("{prefix}.d{n}")).unwrap().data,
            tol,
        );
    }
}

fn convolutions(t: &Tensors) {
    for i in 0..5 {
        let p = format!("conv{i}");
        let shape = t.f32(&format!("{p}.w")).unwrap().shape;
        let [cout, cin, k, _] = shape[..] else {
            panic!("{p}.w: shape {shape:?}")
        };
        // Weight and bias as inputs of the op so their gradients come back through the module.
        check::<4, 4>(t, &p, &["x", "w"], 1e-4, |v| {
            let device = v[0].device();
            let mut conv = Conv2dConfig::new([cin, cout], [k, k])
                .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
                .init(&device);
            conv.weight = Param::from_tensor(v[1].clone());
            let b: Tensor<1> = load(t, &format!("{p}.b"), &Device::flex());
            conv.bias = Some(Param::from_tensor(Tensor::from_data(
                b.into_data(),
                &device,
            )));
            ops::conv2d(&conv, v[0].clone())
        });
        // The bias gradient, with the bias tracked.
        check::<4, 1>(t, &p, &["b"], 1e-4, |v| {
            let device = v[0].device();
            let mut conv = Conv2dConfig::new([cin, cout], [k, k])
                .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
                .init(&device);
            let w: Tensor<4> = load(t, &format!("{p}.w"), &Device::flex());
            conv.weight = Param::from_tensor(Tensor::from_data(w.into_data(), &device));
            conv.bias = Some(Param::from_tensor(v[0].clone()));
            let x: Tensor<4> = load(t, &format!("{p}.x"), &Device::flex());
            ops::conv2d(&conv, Tensor::from_data(x.into_data(), &device))
        });
    }
}

#[test]
fn custom_ops_match_pytorch_forward_and_gradients() {
    cedm_nodes::kernels::cpu::poison_outputs(true);
    assert!(ops::enabled(), "CEDM_CPU_OPS=burn: nothing to test");
    let t = fixture();

    // Convolutions through oneDNN (when scripts/fetch_assets.sh installed it) and im2col + GEMM.
    convolutions(&t);
    if cedm_nodes::kernels::dnnl::get().is_some() {
        cedm_nodes::kernels::dnnl::conv::set_enabled(false);
        convolutions(&t);
        cedm_nodes::kernels::dnnl::conv::set_enabled(true);
    }

    // Group norm + shift + SiLU.
    let gns = [
        (3, true, true),
        (5, false, false),
        (8, true, true),
        (2, true, false),
    ];
    let eps = [1e-6, 1e-5, 1e-6, 1e-6];
    for (i, (groups, shift, silu)) in gns.into_iter().enumerate() {
        let p = format!("gn{i}");
        // gamma and beta ([c]) are checked in a second pass with x and shift fixed.
        check::<4, 4>(&t, &p, &["x"], 1e-4, |v| {
            let device = v[0].device();
            let c = v[0].dims()[1];
            let mut norm = GroupNormConfig::new(groups, c)
                .with_epsilon(eps[i])
                .init(&device);
            let fixed = |n: &str| -> Tensor<1> {
                let x: Tensor<1> = load(&t, &format!("{p}.{n}"), &Device::flex());
                Tensor::from_data(x.into_data(), &device)
            };
            norm.gamma = Some(Param::from_tensor(fixed("gamma")));
            norm.beta = Some(Param::from_tensor(fixed("beta")));
            let s = shift.then(|| {
                let s: Tensor<2> = load(&t, &format!("{p}.shift"), &Device::flex());
                Tensor::from_data(s.into_data(), &device)
            });
            ops::group_norm(&norm, v[0].clone(), s, silu)
        });
        // gamma, beta ([c]) and shift ([n, c]) tracked; x fixed.
        let device = Device::flex().autodiff();
        let x: Tensor<4> = load(&t, &format!("{p}.x"), &Device::flex());
        let x = Tensor::from_data(x.into_data(), &device);
        let c = x.dims()[1];
        let gamma: Tensor<1> = load(&t, &format!("{p}.gamma"), &device);
        let beta: Tensor<1> = load(&t, &format!("{p}.beta"), &device);
        let s: Option<Tensor<2>> = shift.then(|| load(&t, &format!("{p}.shift"), &device));
        let mut norm = GroupNormConfig::new(groups, c)
            .with_epsilon(eps[i])
            .init(&device);
        norm.gamma = Some(Param::from_tensor(gamma.clone()));
        norm.beta = Some(Param::from_tensor(beta.clone()));
        let y = ops::group_norm(&norm, x, s.clone(), silu);
        let dy: Tensor<4> = load(&t, &format!("{p}.dy"), &Device::flex());
        let grads = (y * Tensor::from_data(dy.into_data(), &device))
            .sum()
            .backward();
        let want = |n: &str| t.f32(&format!("{p}.d{n}")).unwrap().data;
        close(
            &format!("{p}.dgamma"),
            &host(gamma.grad(&grads).unwrap()),
            &want("gamma"),
            1e-4,
        );
        close(
            &format!("{p}.dbeta"),
            &host(beta.grad(&grads).unwrap()),
            &want("beta"),
            1e-4,
        );
        if let Some(s) = s {
            close(
                &format!("{p}.dshift"),
                &host(s.grad(&grads).unwrap()),
                &want("shift"),
                1e-4,
            );
        }
    }

    // Layout operations.
    check::<4, 4>(&t, "cat", &["a", "b"], 1e-6, |v| {
        ops::cat_channels(v[0].clone(), v[1].clone())
    });
    check::<4, 4>(&t, "add_scale", &["a", "b"], 1e-6, |v| {
        ops::add_scale(v[0].clone(), v[1].clone(), 0.5f64.sqrt())
    });
    check::<4, 4>(&t, "up2", &["x"], 1e-6, |v| ops::up2(v[0].clone()));
    check::<4, 4>(&t, "down2", &["x"], 1e-6, |v| ops::down2(v[0].clone()));

    // TEMI head layers.
    {
        let device = Device::flex().autodiff();
        let x: Tensor<2> = load(&t, "heads_shared.x", &device);
        let w: Tensor<3> = load(&t, "heads_shared.w", &device);
        let b: Tensor<3> = load(&t, "heads_shared.b", &device);
        let y = ops::heads_linear_shared(x.clone(), w.clone(), b.clone(), 3, true);
        close(
            "heads_shared.y",
            &host(y.clone()),
            &t.f32("heads_shared.y").unwrap().data,
            1e-5,
        );
        let dy: Tensor<3> = load(&t, "heads_shared.dy", &Device::flex());
        let grads = (y * Tensor::from_data(dy.into_data(), &device))
            .sum()
            .backward();
        let want = |n: &str| t.f32(&format!("heads_shared.d{n}")).unwrap().data;
        close(
            "heads_shared.dx",
            &host(x.grad(&grads).unwrap()),
            &want("x"),
            1e-5,
        );
        close(
            "heads_shared.dw",
            &host(w.grad(&grads).unwrap()),
            &want("w"),
            1e-5,
        );
        close(
            "heads_shared.db",
            &host(b.grad(&grads).unwrap()),
            &want("b"),
            1e-5,
        );
    }
    for (p, gelu) in [("heads_gelu", true), ("heads_plain", false)] {
        check::<3, 3>(&t, p, &["x", "w", "b"], 1e-5, |v| {
            ops::heads_linear(v[0].clone(), v[1].clone(), v[2].clone(), gelu)
        });
    }
    check::<3, 3>(&t, "cosine", &["z", "v", "g"], 1e-5, |v| {
        ops::heads_cosine(v[0].clone(), v[1].clone(), v[2].clone())
    });

    // Adam and AdamW: three steps from zero state.
    let flex = Device::flex();
    for (name, lr, beta2, wd) in [("adam", 1e-3, 0.999, 0.0), ("adamw", 1e-2, 0.95, 0.05)] {
        let mut p: Tensor<2> = load(&t, &format!("{name}.p0"), &flex);
        let mut m = Tensor::zeros_like(&p);
        let mut v = Tensor::zeros_like(&p);
        for step in 1..=3u64 {
            let g: Tensor<2> = load(&t, &format!("{name}.g{step}"), &flex);
            let s = AdamStep {
                lr,
                beta1: 0.9,
                beta2,
                eps: 1e-8,
                step,
                weight_decay: wd,
            };
            (p, m, v) = ops::adam(p, g, m, v, s);
            for (what, x) in [("p", &p), ("m", &m), ("v", &v)] {
                let want = t.f32(&format!("{name}.{what}{step}")).unwrap().data;
                close(
                    &format!("{name}.{what}{step}"),
                    &host(x.clone()),
                    &want,
                    1e-6,
                );
            }
        }
    }
    let e: Tensor<2> = load(&t, "ema.e", &flex);
    let p: Tensor<2> = load(&t, "ema.p", &flex);
    close(
        "ema.y",
        &host(ops::ema(e, p, 0.99)),
        &t.f32("ema.y").unwrap().data,
        1e-6,
    );
}

/// SongUNet's attention computes its logits and softmax in f32 under f16 (NVlabs/edm's
/// AttentionOp): logits of ~8·10⁴ overflow f16 (max 65 504) but not f32, so the weights stay
/// finite and equal the f32 computation's; done in f16, they would be NaN.
#[test]
fn attention_softmax_runs_in_f32_under_f16() {
    use burn::tensor::FloatDType;
    use burn::tensor::activation::softmax;
    use cedm_nodes::models::edm::songunet::attention_weights;
    let dev = Device::flex();
    let (n, c, hw) = (1, 4, 3);
    // q·k/√c per position pair: Σ_c (200 · 200/2) = 8·10⁴ on the diagonal, less elsewhere.
    let q: Vec<f32> = (0..n * c * hw)
        .map(|i| 200.0 - (i % hw) as f32 * 10.0)
        .collect();
    let k = q.clone();
    let t = |v: Vec<f32>| Tensor::<3>::from_data(TensorData::new(v, [n, c, hw]), &dev);
    let want = host(attention_weights(t(q.clone()), t(k.clone())));
    let half = attention_weights(
        t(q.clone()).cast(FloatDType::F16),
        t(k.clone()).cast(FloatDType::F16),
    );
    assert_eq!(half.dtype(), burn::tensor::DType::F16);
    let got = host(half.cast(FloatDType::F32));
    assert!(got.iter().all(|v| v.is_finite()), "{got:?}");
    close("attention weights f16 vs f32", &got, &want, 2e-3);
    // The same in f16 throughout overflows: what the f32 path prevents.
    let kh = t(k).cast(FloatDType::F16) / (c as f64).sqrt();
    let naive = softmax(t(q).cast(FloatDType::F16).swap_dims(1, 2).matmul(kh), 2);
    assert!(
        host(naive.cast(FloatDType::F32))
            .iter()
            .any(|v| !v.is_finite())
    );
}
