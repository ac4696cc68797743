//! Parity with PyTorch: fixtures written by the scripts in `tests/parity/` (see each script's
//! header for its command). Models use the real checkpoints from `assets/` (scripts/fetch_assets.sh).

use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use cedm_nodes::artifacts::safetensors::Tensors;
use cedm_nodes::kernels::imageops::{self, Filter};
use cedm_nodes::models::mobilenet_v2::{MobileNetV2, MobileNetV2Config};
use cedm_nodes::models::weights::Weights;

fn fixture(name: &str) -> Tensors {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/parity")
        .join(name);
    Tensors::open(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

fn asset(rel: &str) -> PathBuf {
    let root = std::env::var_os("CEDM_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets"));
    let p = root.join(rel);
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch_assets.sh",
        p.display()
    );
    p
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn resize_matches_torch_interpolate_antialias() {
    let t = fixture("resize.safetensors");
    let src = t.f32("src").unwrap().data;
    for (name, filter) in [("bilinear", Filter::Bilinear), ("bicubic", Filter::Bicubic)] {
        for (dir, (oh, ow)) in [("up", (96, 80)), ("down", (16, 11))] {
            let want = t.f32(&format!("{name}_{dir}")).unwrap().data;
            let mut got = vec![0f32; oh * ow];
            imageops::resize_plane(&src, 37, 29, oh, ow, filter, &mut got);
            let d = max_abs_diff(&got, &want);
            assert!(d < 2e-3, "{name} {dir}: max |Δ| = {d}");
        }
    }
    let want = t.f32("tf_bilinear_299").unwrap().data;
    let mut got = vec![0f32; 299 * 299];
    imageops::resize_tf_bilinear(&src, 37, 29, 299, 299, &mut got);
    let d = max_abs_diff(&got, &want);
    assert!(d < 2e-3, "tf bilinear: max |Δ| = {d}");
}

#[test]
fn mobilenet_v2_matches_torchvision_on_real_images() {
    let t = fixture("mobilenet_v2.safetensors");
    let images = t.u8("images").unwrap();
    let want_input = t.f32("input").unwrap();
    let want = t.f32("features").unwrap();
    let [n, c, h, w] = images.shape[..] else {
        panic!()
    };
    let (scale, offset) = imageops::imagenet_norm();
    let input = imageops::preprocess(
        &images.data,
        n,
        c,
        h,
        w,
        96,
        imageops::Resample::Filter(Filter::Bilinear),
        scale,
        offset,
    );
    let d_in = max_abs_diff(&input, &want_input.data);
    assert!(d_in < 1e-4, "preprocessing: max |Δ| = {d_in}");

    let device = Device::flex();
    let weights = Weights::load(&asset("weights/mobilenet_v2-b0353104.pth")).unwrap();
    let model = MobileNetV2::load(&MobileNetV2Config::imagenet(), &weights, &device).unwrap();
    let x: Tensor<4> = Tensor::from_data(
        TensorData::new(want_input.data.clone(), [n, 3, 96, 96]),
        &device,
    );
    let got: Vec<f32> = model.forward_features(x).into_data().try_to_vec().unwrap();
    let d = max_abs_diff(&got, &want.data);
    assert!(d < 1e-4, "features: max |Δ| = {d}");
}

#[test]
fn mobilenet_v2_cpu_kernels_match_torchvision() {
    use cedm_nodes::models::mobilenet_v2::MobileNetV2Cpu;
    let t = fixture("mobilenet_v2.safetensors");
    let input = t.f32("input").unwrap();
    let want = t.f32("features").unwrap();
    let weights = Weights::load(&asset("weights/mobilenet_v2-b0353104.pth")).unwrap();
    let model = MobileNetV2Cpu::load(&MobileNetV2Config::imagenet(), &weights).unwrap();
    let got = model.forward_features(&input.data, 4, 96, 96);
    let d = max_abs_diff(&got, &want.data);
    assert!(d < 1e-4, "features: max |Δ| = {d}");
}

fn vit_case(file: &str, config: cedm_nodes::models::vit::VitConfig, sizes: &[usize]) {
    use cedm_nodes::models::vit::Vit;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/parity")
        .join(file);
    let mut w = Weights::load(&path).unwrap();
    let device = Device::flex();
    let model = Vit::load(&config, &mut w, &device).unwrap();
    let t = fixture(file);
    for s in sizes {
        let x = t.f32(&format!("input_{s}")).unwrap();
        let want = t.f32(&format!("cls_{s}")).unwrap();
        let xt: Tensor<4> =
            Tensor::from_data(TensorData::new(x.data.clone(), [2, 3, *s, *s]), &device);
        let got: Vec<f32> = model
            .forward_features(xt)
            .unwrap()
            .into_data()
            .try_to_vec()
            .unwrap();
        let d = max_abs_diff(&got, &want.data);
        assert!(d < 1e-4, "{file} at {s}px: max |Δ| = {d}");
    }
}

/// A tiny DINO-style ViT (the iBOT / MoCo-v3 fixtures' architecture).
fn tiny_dino() -> cedm_nodes::models::vit::VitConfig {
    use cedm_nodes::models::vit::{Ffn, VitConfig};
    VitConfig {
        patch: 8,
        dim: 32,
        depth: 2,
        heads: 4,
        mlp_ratio: 4.0,
        grid: 4,
        layer_scale: false,
        registers: 0,
        ffn: Ffn::Mlp,
        image_size: 32,
    }
}

/// An official checkpoint layout (`.pth`, as iBOT and MoCo-v3 release them) reduced to the
/// backbone by `Vit::select` with the preset's prefix (or `prefix`), against the reference CLS.
fn checkpoint_case(name: &str, preset: &str, prefix: Option<&str>, tag: &str) {
    use cedm_nodes::models::vit::{Vit, VitConfig};
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/parity");
    let mut w = Weights::load(&dir.join(format!("{name}.pth"))).unwrap();
    Vit::select(&mut w, prefix.or(VitConfig::checkpoint_prefix(preset)));
    let device = Device::flex();
    let model = Vit::load(&tiny_dino(), &mut w, &device).unwrap();
    let t = fixture(&format!("{name}.safetensors"));
    for s in [32usize, 40] {
        let x = t.f32(&format!("input_{s}")).unwrap();
        let want = t.f32(&format!("cls_{tag}_{s}")).unwrap();
        let xt: Tensor<4> =
            Tensor::from_data(TensorData::new(x.data.clone(), [2, 3, s, s]), &device);
        let got: Vec<f32> = model
            .forward_features(xt)
            .unwrap()
            .into_data()
            .try_to_vec()
            .unwrap();
        let d = max_abs_diff(&got, &want.data);
        assert!(d < 1e-4, "{name} ({tag}) at {s}px: max |Δ| = {d}");
    }
}

#[test]
fn ibot_teacher_checkpoint_loads_and_matches_reference() {
    checkpoint_case("vit_ibot_tiny", "ibot_vitl16", None, "teacher");
}

#[test]
fn mocov3_checkpoint_loads_the_momentum_encoder_as_temi_or_the_base_encoder() {
    checkpoint_case("vit_mocov3_tiny", "mocov3_vitb16", None, "momentum");
    checkpoint_case(
        "vit_mocov3_tiny",
        "mocov3_vitb16",
        Some("base_encoder."),
        "base",
    );
}

#[test]
fn ibot_and_mocov3_presets_have_their_official_shapes() {
    use cedm_nodes::models::vit::VitConfig;
    let l = VitConfig::preset("ibot_vitl16").unwrap();
    assert_eq!(
        (l.patch, l.dim, l.depth, l.heads, l.layer_scale),
        (16, 1024, 24, 16, false)
    );
    let b = VitConfig::preset("mocov3_vitb16").unwrap();
    assert_eq!((b.patch, b.dim, b.depth, b.heads), (16, 768, 12, 12));
    assert_eq!(VitConfig::preset("mocov3_vits16").unwrap().heads, 12);
    assert_eq!(
        VitConfig::checkpoint_prefix("mocov3_vitb16"),
        Some("momentum_encoder.")
    );
    assert_eq!(VitConfig::checkpoint_prefix("ibot_vitl16"), None);
}

#[test]
fn vit_dino_matches_reference_with_pos_embed_interpolation() {
    use cedm_nodes::models::vit::{Ffn, VitConfig};
    let c = VitConfig {
        patch: 8,
        dim: 32,
        depth: 2,
        heads: 4,
        mlp_ratio: 4.0,
        grid: 4,
        layer_scale: false,
        registers: 0,
        ffn: Ffn::Mlp,
        image_size: 32,
    };
    vit_case("vit_dino_tiny.safetensors", c, &[32, 40]);
}

#[test]
fn vit_dinov2_matches_reference_with_layer_scale() {
    use cedm_nodes::models::vit::{Ffn, VitConfig};
    let c = VitConfig {
        patch: 7,
        dim: 32,
        depth: 2,
        heads: 4,
        mlp_ratio: 4.0,
        grid: 6,
        layer_scale: true,
        registers: 0,
        ffn: Ffn::Mlp,
        image_size: 42,
    };
    vit_case("vit_dinov2_tiny.safetensors", c, &[42, 28]);
}

#[test]
fn vit_dinov2_registers_and_swiglu_match_reference() {
    use cedm_nodes::models::vit::{Ffn, VitConfig};
    let c = VitConfig {
        patch: 7,
        dim: 48,
        depth: 2,
        heads: 4,
        mlp_ratio: 4.0,
        grid: 5,
        layer_scale: true,
        registers: 2,
        ffn: Ffn::SwiGlu,
        image_size: 35,
    };
    vit_case("vit_dinov2_tiny_reg_swiglu.safetensors", c, &[35, 21]);
}

#[test]
fn temi_six_steps_with_every_schedule_match_pytorch() {
    // Uncleared kernel outputs start as NaN here: an element a kernel forgot would show.
    cedm_nodes::kernels::cpu::poison_outputs(true);
    use cedm_nodes::kinds::cluster::temi::{Params, step_config};
    use cedm_nodes::models::temi_heads::{HeadsConfig, TemiState, from_torch, to_torch};
    use std::collections::HashMap;
    let t = fixture("temi.safetensors");
    let names = t.names();
    let meta = t.metadata();
    let device = Device::flex();
    // The kind's params from the generator's values (its metadata), through serde as a YAML
    // would give them; the rest at their defaults.
    let num = |k: &str| -> serde_json::Value {
        let v: f64 = meta[k].parse().unwrap();
        if v.fract() == 0.0 && !meta[k].contains('.') && !meta[k].contains('e') {
            serde_json::json!(v as u64)
        } else {
            serde_json::json!(v)
        }
    };
    let mut pj = serde_json::json!({
        "clusters": 5, "heads": 2, "gamma": 0.6, "hidden_dim": 16, "bottleneck_dim": 8, "nlayers": 2,
    });
    for k in [
        "lr",
        "min_lr",
        "warmup_epochs",
        "weight_decay",
        "weight_decay_end",
        "momentum_teacher",
        "max_momentum_teacher",
        "student_temp",
        "teacher_temp",
        "warmup_teacher_temp",
        "warmup_teacher_temp_epochs",
        "prior_momentum",
        "freeze_last_layer",
        "epochs",
    ] {
        pj[k] = num(k);
    }
    pj["batch_size"] = num("batch");
    let p: Params = serde_json::from_value(pj).unwrap();
    let iters: usize = meta["iters"].parse().unwrap();
    let cfg = HeadsConfig {
        heads: 2,
        input: 8,
        hidden: 16,
        hidden_layers: p.nlayers.get() - 1,
        bottleneck: 8,
        clusters: 5,
    };
    let prefixed = |p: &str| -> HashMap<String, Vec<f32>> {
        names
            .iter()
            .filter_map(|n| {
                n.strip_prefix(p)
                    .map(|k| (k.to_string(), t.f32(n).unwrap().data))
            })
            .collect()
    };
    let init = prefixed("init.");
    // TEMI's nlayers = 2 head: mlp.0 and mlp.2 only.
    assert!(
        init.contains_key("heads.0.mlp.2.weight") && !init.contains_key("heads.0.mlp.4.weight")
    );
    let init = from_torch(&cfg, &init, &device).unwrap();
    let mut st = TemiState::new(init);
    let mut step = 0;
    for epoch in 0..p.epochs.get() {
        for it in 0..iters {
            let sc = step_config(&p, iters, epoch, it);
            let want = t
                .get::<f64>(
                    &format!("step{step}.schedule"),
                    cedm_nodes::artifacts::safetensors::DType::F64,
                )
                .unwrap()
                .data;
            for (name, got, w) in [
                ("lr", sc.lr, want[0]),
                ("weight decay", sc.weight_decay, want[1]),
                ("teacher momentum", sc.teacher_momentum, want[2]),
                ("teacher temperature", sc.teacher_temp, want[3]),
            ] {
                assert!(
                    (got - w).abs() <= 1e-12 * w.abs().max(1.0),
                    "step {step} {name}: {got} vs {w}"
                );
            }
            assert_eq!(sc.freeze_last, epoch < p.freeze_last_layer);
            let x = t.f32(&format!("step{step}.x")).unwrap();
            let xn = t.f32(&format!("step{step}.x_nn")).unwrap();
            let xt: Tensor<2> = Tensor::from_data(TensorData::new(x.data, [6, 8]), &device);
            let xnt: Tensor<2> = Tensor::from_data(TensorData::new(xn.data, [6, 8]), &device);
            let out = st.step(xt, xnt, &sc).unwrap();
            let want_loss = t.f32(&format!("step{step}.loss")).unwrap().data[0];
            assert!(
                (out.loss - want_loss).abs() < 1e-5,
                "step {step}: loss {} vs {want_loss}",
                out.loss
            );
            assert!(
                max_abs_diff(
                    &out.head_losses,
                    &t.f32(&format!("step{step}.head_losses")).unwrap().data
                ) < 1e-5
            );
            assert!(
                max_abs_diff(
                    &out.weight,
                    &t.f32(&format!("step{step}.weight")).unwrap().data
                ) < 1e-5
            );
            let prior: Vec<f32> = st.prior.clone().into_data().try_into_vec().unwrap();
            assert!(
                max_abs_diff(&prior, &t.f32(&format!("step{step}.prior")).unwrap().data) < 1e-6
            );
            for (who, heads) in [("student", &st.student), ("teacher", &st.teacher)] {
                let want = prefixed(&format!("step{step}.{who}."));
                let got = to_torch(heads).unwrap();
                assert_eq!(got.len(), want.len());
                for (k, v) in &want {
                    let d = max_abs_diff(&got[k], v);
                    assert!(d < 2e-5, "step {step} {who} {k}: max |Δ| = {d}");
                }
            }
            step += 1;
        }
    }
    assert_eq!(step, 6);
}

#[test]
fn cluster_metrics_match_sklearn_and_scipy() {
    use cedm_nodes::algorithms::scores::scores;
    let t = fixture("cluster_metrics.safetensors");
    for case in [
        "random",
        "overclustering",
        "noncontiguous",
        "underclustering",
        "large",
    ] {
        let truth = t.i64(&format!("{case}.truth")).unwrap().data;
        let pred = t.i64(&format!("{case}.pred")).unwrap().data;
        let want = t
            .get::<f64>(
                &format!("{case}.scores"),
                cedm_nodes::artifacts::safetensors::DType::F64,
            )
            .unwrap()
            .data;
        let s = scores(&truth, &pred);
        for (name, got, w) in [
            ("acc", s.acc, want[0]),
            ("nmi", s.nmi, want[1]),
            ("ami", s.ami, want[2]),
            ("ari", s.ari, want[3]),
        ] {
            assert!(
                (got - w).abs() < 1e-9,
                "{case} {name}: {got} vs sklearn {w}"
            );
        }
    }
}

#[test]
fn songunet_and_edm_preconditioning_match_pytorch() {
    // Uncleared kernel outputs start as NaN here: an element a kernel forgot would show.
    cedm_nodes::kernels::cpu::poison_outputs(true);
    use cedm_nodes::models::edm::precond::denoise;
    use cedm_nodes::models::edm::songunet::SongUNetConfig;
    use std::collections::BTreeMap;
    let t = fixture("songunet.safetensors");
    let device = Device::flex();
    let cfg = SongUNetConfig {
        img_resolution: 8,
        in_channels: 2,
        label_dim: 3,
        augment_dim: 9,
        model_channels: 16,
        channel_mult: vec![1, 2],
        channel_mult_emb: 2,
        num_blocks: 1,
        attn_resolutions: vec![4],
        dropout: 0.0,
    };
    let params: BTreeMap<String, (Vec<usize>, Vec<f32>)> = t
        .names()
        .into_iter()
        .filter(|n| !n.starts_with("input.") && !n.starts_with("output."))
        .map(|n| {
            let v = t.f32(&n).unwrap();
            (n, (v.shape, v.data))
        })
        .collect();
    let net = cfg.init(0, &device).load_named(&params, &device).unwrap();
    // Every fixture parameter is used and nothing else exists.
    assert_eq!(
        net.named_params().unwrap().keys().collect::<Vec<_>>(),
        params.keys().collect::<Vec<_>>()
    );
    let x = t.f32("input.x").unwrap();
    let sigma: Vec<f64> = t
        .f32("input.sigma")
        .unwrap()
        .data
        .iter()
        .map(|&v| f64::from(v))
        .collect();
    let labels = t.f32("input.labels").unwrap();
    let aug = t.f32("input.aug").unwrap();
    let xt: Tensor<4> = Tensor::from_data(TensorData::new(x.data.clone(), [3, 2, 8, 8]), &device);
    let lt: Tensor<2> = Tensor::from_data(TensorData::new(labels.data.clone(), [3, 3]), &device);
    let at: Tensor<2> = Tensor::from_data(TensorData::new(aug.data.clone(), [3, 9]), &device);
    let cnoise: Vec<f32> = sigma.iter().map(|s| (s.ln() / 4.0) as f32).collect();
    let f: Vec<f32> = net
        .forward(
            xt.clone(),
            Tensor::from_data(TensorData::new(cnoise, [3]), &device),
            Some(lt.clone()),
            Some(at.clone()),
            false,
        )
        .into_data()
        .try_to_vec()
        .unwrap();
    let d = max_abs_diff(&f, &t.f32("output.F").unwrap().data);
    assert!(d < 1e-4, "F: max |Δ| = {d}");
    let den: Vec<f32> = denoise(&net, xt, &sigma, Some(lt), Some(at), false)
        .into_data()
        .try_to_vec()
        .unwrap();
    let d = max_abs_diff(&den, &t.f32("output.D").unwrap().data);
    assert!(d < 1e-4, "D: max |Δ| = {d}");
}

#[test]
fn edm_geometric_augmentation_matches_pytorch_ops() {
    let t = fixture("augment.safetensors");
    let img = t.f32("image").unwrap().data;
    let g = t
        .get::<f64>("g_inv", cedm_nodes::artifacts::safetensors::DType::F64)
        .unwrap()
        .data;
    let m = [[g[0], g[1], g[2]], [g[3], g[4], g[5]], [g[6], g[7], g[8]]];
    let got = cedm_nodes::models::edm::augment::geometric(&img, 2, 10, 12, &m);
    let d = max_abs_diff(&got, &t.f32("out").unwrap().data);
    assert!(d < 1e-4, "max |Δ| = {d}");
}

fn fid_embed(images: &cedm_nodes::artifacts::safetensors::TensorIn<u8>) -> Vec<f32> {
    let [n, c, h, w] = images.shape[..] else {
        panic!("images must be NCHW")
    };
    use cedm_nodes::encoders::Encoder;
    use cedm_nodes::encoders::inception::{FidResize, Inception};
    let comp = cedm_nodes::device::compute(cedm_engine::DeviceSpec::Cpu).unwrap();
    let enc = Inception::load(
        &asset("weights/inception-2015-12-05.safetensors"),
        &comp,
        FidResize::TfBilinear,
    )
    .unwrap();
    enc.embed(&images.data, n, [c, h, w]).unwrap()
}

#[test]
fn fid_inception_features_match_the_torchscript_network() {
    let t = fixture("fid.safetensors");
    let a = t.u8("images_a").unwrap();
    let want = t.f32("features_a8").unwrap();
    let eight = cedm_nodes::artifacts::safetensors::TensorIn {
        shape: vec![8, 1, 28, 28],
        data: a.data[..8 * 28 * 28].to_vec(),
    };
    let got = fid_embed(&eight);
    let d = max_abs_diff(&got, &want.data);
    assert!(d < 1e-3, "CPU kernels: max |Δ| = {d}");
    eprintln!("Inception CPU kernels: max |Δ| = {d}");

    // The burn executor (the GPU path), on the CPU backend, two images.
    let w = Weights::load(&asset("weights/inception-2015-12-05.safetensors")).unwrap();
    let dev = Device::flex();
    let net = cedm_nodes::models::inception::InceptionBurn::load(&w, &dev).unwrap();
    let x = imageops::preprocess(
        &a.data[..2 * 28 * 28],
        2,
        1,
        28,
        28,
        299,
        imageops::Resample::TfBilinear,
        [1.0 / 128.0; 3],
        [-1.0; 3],
    );
    let y = net
        .forward(Tensor::from_data(
            TensorData::new(x, [2, 3, 299, 299]),
            &dev,
        ))
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let d = max_abs_diff(&y, &want.data[..2 * 2048]);
    assert!(d < 1e-3, "burn executor: max |Δ| = {d}");
}

/// `cedm fid --dims`: the features at pytorch-fid's lower blocks, on both executors.
#[test]
fn fid_inception_taps_match_the_torchscript_layers() {
    use cedm_nodes::encoders::Encoder;
    use cedm_nodes::encoders::inception::{FidResize, Inception};
    use cedm_nodes::models::inception::{InceptionBurn, Tap};
    let t = fixture("fid_dims.safetensors");
    let images = t.u8("images").unwrap();
    let comp = cedm_nodes::device::compute(cedm_engine::DeviceSpec::Cpu).unwrap();
    let weights = asset("weights/inception-2015-12-05.safetensors");
    let w = Weights::load(&weights).unwrap();
    let dev = Device::flex();
    let net = InceptionBurn::load(&w, &dev).unwrap();
    for dims in [64, 192, 768, 2048] {
        let tap = Tap::from_dims(dims).unwrap();
        assert_eq!(tap.dims(), dims);
        let want = t.f32(&format!("features_{dims}")).unwrap();
        assert_eq!(want.shape, vec![4, dims]);
        let enc = Inception::load_tap(&weights, &comp, FidResize::TfBilinear, tap).unwrap();
        assert_eq!(enc.dim(), dims);
        let got = enc.embed(&images.data, 4, [1, 28, 28]).unwrap();
        let scale = want.data.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = max_abs_diff(&got, &want.data);
        assert!(
            d < 1e-4 * scale.max(1.0),
            "{dims}-d, CPU kernels: max |Δ| = {d} (scale {scale})"
        );
        eprintln!("{dims}-d: CPU kernels max |Δ| = {d:.2e} (largest value {scale:.2})");
        // The burn executor (the GPU path), on the CPU backend, one image.
        let x = enc.preprocess(&images.data[..28 * 28], 1, [1, 28, 28]);
        let y = net
            .forward_tap(
                Tensor::from_data(TensorData::new(x, [1, 3, 299, 299]), &dev),
                tap,
            )
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let d = max_abs_diff(&y, &want.data[..dims]);
        assert!(
            d < 1e-4 * scale.max(1.0),
            "{dims}-d, burn executor: max |Δ| = {d}"
        );
    }
    assert_eq!(Tap::from_dims(100), None);
}

#[test]
fn fid_of_two_real_image_sets_matches_pytorch_and_scipy() {
    use cedm_nodes::algorithms::frechet::frechet_distance;
    use cedm_nodes::artifacts::stats::Stats;
    let t = fixture("fid.safetensors");
    let fa = fid_embed(&t.u8("images_a").unwrap());
    let fb = fid_embed(&t.u8("images_b").unwrap());
    let sa = Stats::from_features(&fa, 48, 2048).unwrap();
    let sb = Stats::from_features(&fb, 48, 2048).unwrap();
    let got = frechet_distance(&sa, &sb).unwrap();
    let want = t
        .get::<f64>("fid", cedm_nodes::artifacts::safetensors::DType::F64)
        .unwrap()
        .data[0];
    let rel = (got - want).abs() / want;
    assert!(
        rel < 1e-3,
        "FID {got} vs PyTorch + scipy {want} (rel {rel:e})"
    );
    eprintln!("FID {got} vs PyTorch + scipy {want} (rel {rel:e})");
}

#[test]
fn frechet_distance_of_random_gaussians_matches_scipy() {
    use cedm_nodes::algorithms::frechet::frechet_distance;
    use cedm_nodes::artifacts::safetensors::DType;
    use cedm_nodes::artifacts::stats::Stats;
    let t = fixture("fid.safetensors");
    let g = |k: &str| t.get::<f64>(k, DType::F64).unwrap().data;
    let d = 128;
    let a = Stats {
        n: 1000,
        d,
        mu: g("g_mu1"),
        sigma: g("g_sigma1"),
    };
    let b = Stats {
        n: 1000,
        d,
        mu: g("g_mu2"),
        sigma: g("g_sigma2"),
    };
    let want = g("g_fd")[0];
    let got = frechet_distance(&a, &b).unwrap();
    let rel = (got - want).abs() / want;
    assert!(rel < 1e-6, "FD {got} vs scipy {want} (rel {rel:e})");
    eprintln!("FD {got} vs scipy {want} (rel {rel:e})");
    // Symmetric in its arguments, zero against itself.
    let back = frechet_distance(&b, &a).unwrap();
    assert!((back - got).abs() / got < 1e-9);
    assert!(frechet_distance(&a, &a).unwrap().abs() < 1e-9);
}

#[test]
fn one_to_one_mapping_matches_scipy_linear_sum_assignment() {
    use cedm_nodes::algorithms::scores::one_to_one;
    let t = fixture("mapping.safetensors");
    for case in ["square", "over", "under"] {
        let truth = t.i64(&format!("{case}.truth")).unwrap().data;
        let pred = t.i64(&format!("{case}.pred")).unwrap().data;
        let shape = t.i64(&format!("{case}.shape")).unwrap().data;
        let want = t.i64(&format!("{case}.mapping")).unwrap().data;
        let matched = t.i64(&format!("{case}.matched")).unwrap().data[0];
        let (got, m) = one_to_one(&truth, &pred, shape[0] as usize, shape[1] as usize);
        let got: Vec<i64> = got.iter().map(|k| k.map_or(-1, |k| k as i64)).collect();
        assert_eq!(got, want, "{case}");
        assert_eq!(m, matched, "{case}");
    }
}

fn tiny_clip() -> cedm_nodes::models::clip::ClipConfig {
    use cedm_nodes::models::clip::{ClipConfig, TowerConfig};
    ClipConfig {
        embed_dim: 12,
        image_size: 32,
        patch: 8,
        vision: TowerConfig {
            width: 32,
            layers: 2,
            heads: 4,
            mlp: 128,
        },
        text: TowerConfig {
            width: 8,
            layers: 2,
            heads: 2,
            mlp: 32,
        },
        context: 77,
        vocab: 49408,
        quick_gelu: false,
    }
}

#[test]
fn clip_tokenizer_matches_open_clip_on_unicode_and_punctuation() {
    use cedm_nodes::models::clip::ClipTokenizer;
    let tok = ClipTokenizer::load(&asset("clip/bpe_simple_vocab_16e6.txt.gz"), 77).unwrap();
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/parity/clip_tokenizer.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
    for case in v["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(tok.tokenize(text), want, "{text:?}");
    }
}

#[test]
fn clip_towers_and_zero_shot_labels_match_open_clip() {
    use cedm_nodes::models::clip::{Clip, ClipTokenizer, normalize_rows, zero_shot_classifier};
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/parity");
    let mut w = Weights::load(&dir.join("clip_tiny.safetensors")).unwrap();
    let device = Device::flex();
    let cfg = tiny_clip();
    let model = Clip::load(&cfg, &mut w, &device).unwrap();
    let t = fixture("clip_tiny_io.safetensors");
    let x = t.f32("images").unwrap();
    let xt: Tensor<4> = Tensor::from_data(TensorData::new(x.data.clone(), [4, 3, 32, 32]), &device);
    let mut img: Vec<f32> = model.encode_image(xt).into_data().try_to_vec().unwrap();
    let d = max_abs_diff(&img, &t.f32("image_embeddings").unwrap().data);
    assert!(d < 1e-4, "image embeddings: max |Δ| = {d}");
    // The prompts tokenised here equal open_clip's tokens, and embed as open_clip does.
    let meta = t.metadata();
    let classes: Vec<String> = serde_json::from_str(&meta["classes"]).unwrap();
    let prompts: Vec<String> = serde_json::from_str(&meta["prompts"]).unwrap();
    let tok = ClipTokenizer::load(&asset("clip/bpe_simple_vocab_16e6.txt.gz"), 77).unwrap();
    let ids: Vec<Vec<u32>> = classes
        .iter()
        .flat_map(|c| prompts.iter().map(move |p| p.replace("{}", c)))
        .map(|s| tok.tokenize(&s))
        .collect();
    let want_ids: Vec<u32> = t
        .i64("tokens")
        .unwrap()
        .data
        .iter()
        .map(|&v| v as u32)
        .collect();
    assert_eq!(ids.concat(), want_ids);
    let txt: Vec<f32> = model.encode_text(&ids).into_data().try_to_vec().unwrap();
    let d = max_abs_diff(&txt, &t.f32("text_embeddings").unwrap().data);
    assert!(d < 1e-4, "text embeddings: max |Δ| = {d}");
    let zs = zero_shot_classifier(&txt, classes.len(), prompts.len(), 12);
    // open_clip's classifier is [d, classes].
    let want = t.f32("classifier").unwrap().data;
    for c in 0..classes.len() {
        for k in 0..12 {
            assert!((zs[c * 12 + k] - want[k * classes.len() + c]).abs() < 1e-5);
        }
    }
    normalize_rows(&mut img, 12);
    let labels: Vec<i64> = img
        .chunks(12)
        .map(|r| {
            let s: Vec<f32> = (0..classes.len())
                .map(|c| {
                    r.iter()
                        .zip(&zs[c * 12..(c + 1) * 12])
                        .map(|(a, b)| a * b)
                        .sum()
                })
                .collect();
            (0..s.len()).max_by(|&a, &b| s[a].total_cmp(&s[b])).unwrap() as i64
        })
        .collect();
    assert_eq!(labels, t.i64("labels").unwrap().data);
}

#[test]
fn kid_and_prdc_match_torch_fidelity_and_prdc() {
    use cedm_nodes::algorithms::kid::{PolyKernel, mean_std_population, mmd2_unbiased};
    use cedm_nodes::algorithms::prdc::prdc;
    let t = fixture("kid_prdc.safetensors");
    let real = t.f32("real").unwrap();
    let fake = t.f32("fake").unwrap();
    let d = real.shape[1];
    let rows = |v: &[f32], idx: &[i64]| -> Vec<f32> {
        idx.iter()
            .flat_map(|&i| v[i as usize * d..(i as usize + 1) * d].to_vec())
            .collect()
    };
    let (sf, sr) = (
        t.i64("subsets_fake").unwrap(),
        t.i64("subsets_real").unwrap(),
    );
    let size = sf.shape[1];
    let want: Vec<f64> = t
        .get::<f64>("mmd", cedm_nodes::artifacts::safetensors::DType::F64)
        .unwrap()
        .data;
    let k = PolyKernel {
        degree: 3,
        gamma: None,
        coef0: 1.0,
    };
    let got: Vec<f64> = (0..sf.shape[0])
        .map(|s| {
            let a = rows(&fake.data, &sf.data[s * size..(s + 1) * size]);
            let b = rows(&real.data, &sr.data[s * size..(s + 1) * size]);
            mmd2_unbiased(&a, &b, d, k)
        })
        .collect();
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-5 * w.abs().max(1.0), "mmd {g} vs {w}");
    }
    let kid: Vec<f64> = t
        .get::<f64>("kid", cedm_nodes::artifacts::safetensors::DType::F64)
        .unwrap()
        .data;
    let (m, s) = mean_std_population(&got);
    assert!((m - kid[0]).abs() < 1e-5 * kid[0] && (s - kid[1]).abs() < 1e-5 * kid[1].max(1e-3));
    for (k, name) in [(3, "prdc_k3"), (5, "prdc_k5")] {
        let w: Vec<f64> = t
            .get::<f64>(name, cedm_nodes::artifacts::safetensors::DType::F64)
            .unwrap()
            .data;
        let p = prdc(&real.data, &fake.data, d, k);
        let g = [p.precision, p.recall, p.density, p.coverage];
        for (a, b) in g.iter().zip(&w) {
            assert!((a - b).abs() < 1e-12, "k = {k}: {g:?} vs {w:?}");
        }
    }
}

#[test]
fn fd_kid_and_fd_infinity_match_clean_fid() {
    use cedm_nodes::algorithms::frechet::{PreparedReference, linear_fit};
    use cedm_nodes::algorithms::kid::{PolyKernel, mmd2_unbiased};
    use cedm_nodes::artifacts::safetensors::DType;
    use cedm_nodes::artifacts::stats::Stats;
    let t = fixture("fd_cleanfid.safetensors");
    let f64s = |name: &str| t.get::<f64>(name, DType::F64).unwrap().data;
    let real = t.f32("real").unwrap();
    let fake = t.f32("fake").unwrap();
    let small = t.f32("fake_small").unwrap();
    let d = real.shape[1];
    let reference = Stats::from_features(&real.data, real.shape[0], d).unwrap();
    let prep = PreparedReference::new(&reference);
    let all = |n: usize| (0..n).map(|i| (i, 1u32)).collect::<Vec<_>>();
    let want = f64s("fd");
    // Fewer samples than dimensions (the low-rank path, where scipy's sqrtm of a singular
    // product is itself only good to ~1e-8), then more.
    for (x, w, tol) in [(&small, want[0], 1e-7), (&fake, want[1], 1e-9)] {
        let got = prep.distance(&x.data, &all(x.shape[0])).unwrap();
        assert!(
            (got - w).abs() < tol * w.abs().max(1.0),
            "FD {got} vs clean-fid {w}"
        );
    }
    // KID per subset (clean-fid computes the kernel in float32, hence the tolerance).
    let (kf, kr) = (t.i64("kid_fake").unwrap(), t.i64("kid_real").unwrap());
    let m = kf.shape[1];
    let rows = |v: &[f32], idx: &[i64]| -> Vec<f32> {
        idx.iter()
            .flat_map(|&i| v[i as usize * d..(i as usize + 1) * d].to_vec())
            .collect()
    };
    let kernel = PolyKernel {
        degree: 3,
        gamma: None,
        coef0: 1.0,
    };
    for (s, w) in f64s("kid").into_iter().enumerate() {
        let x = rows(&fake.data, &kf.data[s * m..(s + 1) * m]);
        let y = rows(&real.data, &kr.data[s * m..(s + 1) * m]);
        let got = mmd2_unbiased(&x, &y, d, kernel);
        assert!(
            (got - w).abs() < 2e-4,
            "KID subset {s}: {got} vs clean-fid {w}"
        );
    }
    // FD∞ on the same subsets: every point, then the intercept.
    let sizes = t.i64("inf_sizes").unwrap().data;
    let subsets = t.i64("inf_subsets").unwrap();
    let n = subsets.shape[1];
    let want_pts = f64s("inf_fd");
    let mut pts = Vec::new();
    for (k, &size) in sizes.iter().enumerate() {
        let idx: Vec<(usize, u32)> = subsets.data[k * n..k * n + size as usize]
            .iter()
            .map(|&i| (i as usize, 1))
            .collect();
        let got = prep.distance(&fake.data, &idx).unwrap();
        let tol = if (size as usize) <= d { 1e-7 } else { 1e-9 };
        let w = want_pts[k];
        assert!(
            (got - w).abs() < tol * w.max(1.0),
            "N = {size}: {got} vs {w}"
        );
        pts.push(got);
    }
    let x: Vec<f64> = sizes.iter().map(|&s| 1.0 / s as f64).collect();
    let (intercept, _) = linear_fit(&x, &pts);
    let w = f64s("fd_infinity")[0];
    assert!(
        (intercept - w).abs() < 1e-7 * w.abs().max(1.0),
        "FD∞ {intercept} vs {w}"
    );
}

#[test]
fn logistic_probe_matches_scikit_learn() {
    use cedm_nodes::algorithms::probe::Logistic;
    let t = fixture("probe.safetensors");
    let train = t.f32("train").unwrap();
    let labels = t.i64("labels").unwrap().data;
    let q = t.f32("queries").unwrap();
    let d = train.shape[1];
    for (name, c) in [("c1", 1.0), ("c001", 0.01)] {
        let m = Logistic::fit(&train.data, &labels, d, 4, c, 1e-9, 10_000);
        let coef: Vec<f64> = t
            .f32(&format!("lr_{name}_coef"))
            .unwrap()
            .data
            .iter()
            .map(|&v| v as f64)
            .collect();
        let scale = coef.iter().fold(0f64, |a, v| a.max(v.abs()));
        let worst = m
            .coef()
            .iter()
            .zip(&coef)
            .fold(0f64, |a, (x, y)| a.max((x - y).abs()));
        assert!(
            worst < 1e-4 * scale,
            "C = {c}: coef differs by {worst} (largest {scale}) after {} iterations",
            m.iterations
        );
        let proba: Vec<f64> = t
            .f32(&format!("lr_{name}_proba"))
            .unwrap()
            .data
            .iter()
            .map(|&v| v as f64)
            .collect();
        let got = m.proba(&q.data);
        let worst = got
            .iter()
            .zip(&proba)
            .fold(0f64, |a, (x, y)| a.max((x - y).abs()));
        assert!(worst < 1e-5, "C = {c}: predict_proba differs by {worst}");
        assert_eq!(
            m.predict(&q.data),
            t.i64(&format!("lr_{name}_pred")).unwrap().data,
            "C = {c}"
        );
    }
}

#[test]
fn knn_probe_matches_scikit_learn() {
    use cedm_nodes::algorithms::probe::knn_predict;
    let t = fixture("probe.safetensors");
    let train = t.f32("train").unwrap();
    let labels = t.i64("labels").unwrap().data;
    let q = t.f32("queries").unwrap();
    let d = train.shape[1];
    for k in [1, 5, 10] {
        let want = t.i64(&format!("pred_k{k}")).unwrap().data;
        let got = knn_predict(&train.data, &labels, &q.data, d, k, 4);
        let diff = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(
            diff,
            0,
            "k = {k}: {diff} of {} predictions differ",
            want.len()
        );
    }
}

/// The probe's CNN (`models::classifier`) against torch.nn (`tests/parity/classifier.py`): logits,
/// the loss and every gradient with a dropout mask at two shapes (one with odd sides), and three
/// Adam steps — on cedm's CPU kernels.
#[test]
fn classifier_matches_torch_forward_gradients_and_adam_steps() {
    use cedm_nodes::models::classifier::{Classifier, ClassifierConfig, Trainer, predict};
    use std::collections::BTreeMap;
    let t = fixture("classifier.safetensors");
    let dev = Device::default();
    let rel = |what: &str, got: &[f32], want: &[f32], tol: f32| {
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = max_abs_diff(got, want);
        assert!(
            d <= tol * (1.0 + scale),
            "{what}: max |Δ| {d} (max |want| {scale})"
        );
    };
    for (prefix, steps) in [("a", 3), ("b", 0)] {
        let c = t.i64(&format!("{prefix}.config")).unwrap().data;
        let cfg = ClassifierConfig {
            channels: c[0] as usize,
            height: c[1] as usize,
            width: c[2] as usize,
            filters: c[3] as usize,
            hidden: c[4] as usize,
            classes: c[5] as usize,
        };
        let n = c[6] as usize;
        let get = |k: &str| t.f32(&format!("{prefix}.{k}")).unwrap().data;
        let values: BTreeMap<String, Vec<f32>> = cfg
            .params()
            .into_iter()
            .map(|(k, _)| (k.to_string(), get(k)))
            .collect();
        let net = Classifier::from_torch(&cfg, &values, &dev).unwrap();
        assert_eq!(net.to_torch().unwrap(), values, "{prefix}: round trip");
        let shape = [n, cfg.channels, cfg.height, cfg.width];
        let x = Tensor::<4>::from_data(TensorData::new(get("x"), shape), &dev);
        let logits: Vec<f32> = net.forward(x, None).into_data().try_into_vec().unwrap();
        rel(&format!("{prefix}.logits"), &logits, &get("logits"), 1e-5);

        // Loss and gradients with the mask, on an autodiff device.
        let ad = dev.clone().autodiff();
        let anet = Classifier::from_torch(&cfg, &values, &ad).unwrap();
        let anet = cedm_nodes::models::params::assign(
            anet.clone(),
            cedm_nodes::models::params::flat(&anet),
            true,
        );
        let y = t.i64(&format!("{prefix}.y")).unwrap().data;
        let mut onehot = vec![0f32; n * cfg.classes];
        for (i, &k) in y.iter().enumerate() {
            onehot[i * cfg.classes + k as usize] = 1.0;
        }
        let xt = Tensor::<4>::from_data(TensorData::new(get("x"), shape), &ad);
        let keep = Tensor::<2>::from_data(TensorData::new(get("keep"), [n, cfg.hidden]), &ad);
        let lg = anet.forward(xt, Some(keep));
        let oh = Tensor::<2>::from_data(TensorData::new(onehot, [n, cfg.classes]), &ad);
        let loss = (burn::tensor::activation::log_softmax(lg, 1) * oh).sum() * (-1.0 / n as f64);
        let g = loss.backward();
        let lv: Vec<f32> = loss.inner().into_data().try_into_vec().unwrap();
        rel(&format!("{prefix}.loss"), &lv, &get("loss"), 1e-5);
        let grads = cedm_nodes::models::params::grads(&anet, &g);
        // Visit order is the torch order; burn keeps linear weights as [in, out].
        for ((name, shape), gr) in cfg.params().into_iter().zip(grads) {
            let gv: Vec<f32> = gr.unwrap().into_data().try_into_vec().unwrap();
            let gv = if name.starts_with('f') && name.ends_with("weight") {
                let (o, i) = (shape[0], shape[1]);
                (0..o * i).map(|j| gv[(j % i) * o + j / i]).collect()
            } else {
                gv
            };
            rel(
                &format!("{prefix}.grad.{name}"),
                &gv,
                &get(&format!("grad.{name}")),
                1e-4,
            );
        }

        if steps > 0 {
            let mut tr = Trainer::new(cfg, &values, &dev).unwrap();
            let want = get("step_losses");
            for (s, &w) in want.iter().enumerate().take(steps) {
                let x = get(&format!("step{s}.x"));
                let y = t.i64(&format!("{prefix}.step{s}.y")).unwrap().data;
                let l = tr
                    .step(x, &y, Some(get(&format!("step{s}.keep"))), 1e-3)
                    .unwrap();
                rel(&format!("{prefix}.step{s} loss"), &[l], &[w], 1e-5);
            }
            let after = tr.to_torch().unwrap();
            for (name, _) in cfg.params() {
                rel(
                    &format!("{prefix}.after.{name}"),
                    &after[name],
                    &get(&format!("after.{name}")),
                    1e-5,
                );
            }
            // Prediction: torch's argmax of the logits (images as uint8 mapped to [-1, 1]).
            let pixels: Vec<u8> = (0..n * cfg.channels * cfg.height * cfg.width)
                .map(|i| (i * 37 % 256) as u8)
                .collect();
            let pred = predict(&net, &cfg, &pixels, n, 2, &dev).unwrap();
            let xs = cedm_nodes::models::classifier::normalize(&pixels);
            let lg: Vec<f32> = net
                .forward(
                    Tensor::<4>::from_data(TensorData::new(xs, shape), &dev),
                    None,
                )
                .into_data()
                .try_into_vec()
                .unwrap();
            for (i, row) in lg.chunks(cfg.classes).enumerate() {
                let best = row
                    .iter()
                    .enumerate()
                    .fold(0, |b, (j, &v)| if v > row[b] { j } else { b });
                assert_eq!(pred[i], best as i64, "{prefix}: prediction {i}");
            }
        }
    }
}
