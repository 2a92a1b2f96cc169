//! `--precision bf16`: the kernels against scalar references, the network against fp32, and what the commands
//! record. Every kernel this CPU has is run; the ones it lacks are named as skipped (development machines differ:
//! AMD Zen 4 has AVX512-BF16 and no AMX; older CPUs have neither, and bf16 runs as fp32 there).

mod common;

use candle_core::{Device, Tensor};
use catdog::kernels::bf16::{self, pack_b, reference_gemm, PackedA};
use catdog::kernels::conv::{self, ConvGeom, Epilogue, WeightCache};
use catdog::kernels::{winograd_f2, Compute, Kernels, Precision};
use catdog::model::vgg16::layer_index;
use catdog::model::weights::{self, read_safetensors, HubOptions, WeightsSpec};
use common::{fixtures, rel_diff, POOLS};

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

#[test]
fn every_available_bf16_gemm_equals_the_scalar_reference_at_odd_sizes() {
    let (mut kernels, skipped) = bf16::available();
    // The AMX path's layouts and edges, with the tile instructions modelled in Rust: on every machine.
    kernels.push(bf16::Bf16Kernel::AmxEmulated);
    let names: Vec<&str> = kernels.iter().map(|k| k.name()).collect();
    eprintln!("running {names:?}; skipped: {skipped:?}");
    for kernel in kernels {
        gemm_equals_the_reference(kernel);
    }
}

#[test]
fn a_kernel_this_cpu_cannot_run_is_refused_with_a_panic_not_an_illegal_instruction() {
    // A Bf16Kernel is a plain enum any caller can name; the safe entry points must check it, or naming Amx on a
    // CPU without AMX kills the process with SIGILL instead of a message.
    let (have, _) = bf16::available();
    let m = 5;
    let a = PackedA::pack(&values(m * 4, 1), m, 4);
    let mut b = Vec::new();
    pack_b(&values(4 * 8, 2), 4, 8, 8, &mut b);
    for kernel in [bf16::Bf16Kernel::Avx512Bf16, bf16::Bf16Kernel::Amx] {
        assert_eq!(kernel.is_runnable(), have.contains(&kernel), "{}", kernel.name());
        if kernel.is_runnable() {
            eprintln!("skipped the refusal of {}: this CPU runs it", kernel.name());
            continue;
        }
        let mut c = vec![0f32; m * 8];
        let gemm = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            bf16::gemm(kernel, &a, &b, 8, &mut c, 8)
        }));
        let why = gemm.expect_err("gemm ran a kernel this CPU lacks");
        let text = why.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            text.contains(kernel.name()) && text.contains("bf16::kernel()"),
            "{text}"
        );
        let mut tile = [0f32; bf16::MR * bf16::NR];
        let t = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            bf16::gemm_tile(kernel, &a, 0, &b, 0, 8, &mut tile)
        }));
        assert!(t.is_err(), "gemm_tile ran a kernel this CPU lacks");
    }
    assert!(bf16::Bf16Kernel::AmxEmulated.is_runnable());
}

fn gemm_equals_the_reference(kernel: bf16::Bf16Kernel) {
    // k = 37 and 576 leave an AMX tail (19 and 288 pairs: 16 + 3, 18 × 16); m = 13 and 9 a short panel.
    // m = 64, n = 96: whole 32 × 32 AMX blocks, stored straight into C.
    for (m, k, n) in [(1, 1, 1), (8, 2, 32), (13, 37, 45), (64, 128, 96), (9, 576, 33)] {
        let a = values(m * k, 1 + m as u64);
        let b = values(k * n, 2 + n as u64);
        let mut want = vec![0f32; m * n];
        reference_gemm(&a, &b, &mut want, (m, k, n));
        // Where rounding of the sum can land: Σ|a||b| of the bf16 inputs, times a few f32 ulps.
        let scale: Vec<f32> = (0..m * n)
            .map(|ij| {
                let (i, j) = (ij / n, ij % n);
                (0..k)
                    .map(|t| (bf16::round(a[i * k + t]) * bf16::round(b[t * n + j])).abs())
                    .sum()
            })
            .collect();
        let packed = PackedA::pack(&a, m, k);
        let mut buf = Vec::new();
        let len = pack_b(&b, k, n, n, &mut buf);
        // A C with a wider row stride: the columns beyond n must stay untouched.
        let ldc = n + 3;
        let mut c = vec![f32::NAN; m * ldc];
        if m % 2 == 0 {
            bf16::gemm(kernel, &packed, &buf[..len], n, &mut c, ldc);
        } else {
            bf16::gemm_parallel(kernel, &packed, &buf[..len], n, &mut c, ldc);
        }
        for i in 0..m {
            for j in 0..n {
                let (got, w) = (c[i * ldc + j], want[i * n + j]);
                let tol = 4.0 * f32::EPSILON * scale[i * n + j].max(f32::MIN_POSITIVE);
                assert!(
                    (got - w).abs() <= tol,
                    "{}: {m}×{k}×{n} at ({i}, {j}): {got} vs {w} (tol {tol:e})",
                    kernel.name()
                );
            }
            assert!(
                c[i * ldc + n..(i + 1) * ldc].iter().all(|v| v.is_nan()),
                "wrote past column {n}"
            );
        }
        // Adding the product to what C holds (the weight gradients sum their chunks so): twice the sums.
        bf16::gemm_into(kernel, &packed, &buf[..len], n, &mut c, ldc, true);
        for (ij, (&w, &s)) in want.iter().zip(&scale).enumerate() {
            let got = c[(ij / n) * ldc + ij % n];
            let tol = 8.0 * f32::EPSILON * s.max(f32::MIN_POSITIVE);
            assert!(
                (got - 2.0 * w).abs() <= tol,
                "{}: {m}×{k}×{n} accumulated: {got} vs 2 × {w}",
                kernel.name()
            );
        }
    }
}

#[test]
fn the_one_pass_bf16_weight_packing_equals_transforming_then_packing() {
    for (o, c) in [(8, 3), (13, 7), (40, 24), (9, 33)] {
        let w = values(o * c * 9, 4);
        let u = winograd_f2::transform_weights(&w, o, c);
        let packed = winograd_f2::pack_weights_bf16(&w, o, c);
        assert_eq!(packed.len(), 16);
        for (k, uk) in u.chunks(o * c).enumerate() {
            assert!(PackedA::pack(uk, o, c) == packed[k], "{o}×{c}, block {k}");
        }
    }
}

/// ‖a − b‖₂ / ‖b‖₂.
fn l2_rel_diff(a: &Tensor, b: &Tensor) -> f32 {
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let diff: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
    let norm: f32 = b.iter().map(|y| y * y).sum();
    (diff / norm.max(f32::MIN_POSITIVE)).sqrt()
}

/// The kernel, or a line saying what is skipped.
fn kernel_or_skip(what: &str) -> Option<bf16::Bf16Kernel> {
    let k = bf16::kernel();
    let (_, skipped) = bf16::available();
    match k {
        Some(k) => eprintln!("{what}: running the {} kernel; skipped: {skipped:?}", k.name()),
        None => eprintln!("{what}: skipped: {skipped:?}"),
    }
    k
}

#[test]
fn the_bf16_winograd_convolution_is_within_bf16_rounding_of_fp32_and_its_cache_follows_the_weights() {
    let Some(kernel) = kernel_or_skip("winograd bf16") else {
        return;
    };
    let g = ConvGeom::new(2, 24, 13, 11, 40, 3, 1);
    let x: Vec<f32> = values(2 * 24 * 13 * 11, 5).iter().map(|v| v.max(0.0)).collect();
    let w = values(40 * 24 * 9, 6);
    let b = values(40, 7);
    let mut want = vec![0f32; 2 * 40 * 13 * 11];
    winograd_f2::forward(&x, &g, &w, Epilogue::new(Some(&b), false, false), &mut want);
    let mut got = vec![0f32; want.len()];
    winograd_f2::forward_bf16(kernel, &x, &g, &w, Epilogue::new(Some(&b), false, false), &mut got);
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
    eprintln!("bf16 vs fp32 Winograd: {err:.2e} relative");
    assert!(err > 0.0 && err < 1e-2, "{err}");

    // Through the op with the weight cache: equal to the uncached bf16 op, and new weights are used at once.
    let dev = Device::Cpu;
    let xt = Tensor::from_vec(x.clone(), (2, 24, 13, 11), &dev).unwrap();
    let bt = Tensor::from_vec(b.clone(), 40, &dev).unwrap();
    let bf16 = Compute {
        kernels: Kernels::Fast,
        precision: Precision::Bf16,
    };
    let cache = std::sync::Arc::new(WeightCache::default());
    for seed in [6, 8] {
        let wt = Tensor::from_vec(values(40 * 24 * 9, seed), (40, 24, 3, 3), &dev).unwrap();
        let plain = conv::conv2d_relu_pool(&xt, &wt, &bt, 1, bf16).unwrap();
        for _ in 0..2 {
            let cached = conv::conv2d_relu_pool_cached(&xt, &wt, &bt, 1, bf16, Some(&cache)).unwrap();
            assert_eq!(rel_diff(&cached, &plain), 0.0, "weights of seed {seed}");
        }
    }
}

#[test]
fn bf16_vgg_features_are_within_1e_2_of_fp32_on_the_vgg_tiny_fixture_on_every_path() {
    let kernel = kernel_or_skip("vgg bf16");
    let dir = fixtures().join("vgg_tiny");
    let spec = WeightsSpec::parse(dir.join("weights.safetensors").to_str().unwrap(), 0).unwrap();
    let (golden, _) = read_safetensors(&dir.join("outputs.safetensors")).unwrap();
    let wanted: Vec<usize> = POOLS.iter().map(|p| layer_index(p).unwrap()).collect();
    // The fast path (AVX512-BF16 where the CPU has it) and the portable twin on CATDOG_TEST_DEVICE (cpu by
    // default: bf16 rounding with f32 sums; cuda in scripts/gpu_check.sh: candle's bf16 convolution).
    let test_device = std::env::var("CATDOG_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    let portable_device = catdog::device::parse_device(&test_device).expect("CATDOG_TEST_DEVICE opens");
    let mut paths = vec![(Kernels::Portable, "portable".to_string(), portable_device)];
    if let Some(kernel) = kernel {
        paths.push((Kernels::Fast, format!("fast ({})", kernel.name()), Device::Cpu));
    }
    for (kernels, name, device) in paths {
        let loaded = weights::load(&spec, &device, &HubOptions::default()).unwrap();
        let input = golden["input"].to_device(&device).unwrap();
        let mut model = loaded.model.clone();
        model.set_kernels(kernels);
        model.set_precision(Precision::Bf16);
        let to_cpu =
            |ts: Vec<Tensor>| -> Vec<Tensor> { ts.into_iter().map(|t| t.to_device(&Device::Cpu).unwrap()).collect() };
        let outs = to_cpu(model.forward_collect(&input, &wanted).unwrap());
        model.set_precision(Precision::Fp32);
        let fp32 = to_cpu(model.forward_collect(&input, &wanted).unwrap());
        // bf16 really ran: its output is not catdog's fp32 one.
        assert!(
            l2_rel_diff(&outs[4], &fp32[4]) > 1e-4,
            "{name}: the bf16 output equals the fp32 one"
        );
        for (pool, out) in POOLS.iter().zip(&outs) {
            let (l2, max) = (l2_rel_diff(out, &golden[*pool]), rel_diff(out, &golden[*pool]));
            eprintln!("{name} {pool}: {l2:.2e} (L2), {max:.2e} (largest) relative to PyTorch fp32");
            // bf16 keeps 8 bits of mantissa: 13 layers of it stay within 1e-2 in norm. The largest single
            // difference at block5_pool reaches 1.0e-2 even with autocast's exact arithmetic (the portable path).
            // On a GPU, candle's bf16 convolution (cuDNN) also rounds every layer's output to bf16, as PyTorch's
            // CUDA autocast does: one rounding more per layer, 1.00e-2 at block4_pool on an H200 (2026-11-25).
            let bound = if device.is_cpu() { 1e-2 } else { 1.5e-2 };
            assert!(l2 > 0.0 && l2 < bound, "{name} {pool}: {l2} (L2)");
            assert!(max < 2e-2, "{name} {pool}: {max} (largest)");
        }
    }
}

#[test]
fn precision_is_recorded_and_a_cpu_without_bf16_kernels_says_it_runs_fp32() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::make_dataset(&data.join("train"), 6, 1);
    common::make_dataset(&data.join("test"), 2, 2);
    let run = |name: &str, vars: &[(&str, &str)]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_catdog"));
        // The CPU's kernels are the subject: on a machine with a GPU, catdog would pick it.
        c.args([
            "finetune",
            "--device",
            "cpu",
            "--data",
            data.to_str().unwrap(),
            "--weights",
            "random:4,4,8,8,8",
            "--size",
            "32",
            "--epochs",
            "1",
            "--precision",
            "bf16",
            "--runs-dir",
            tmp.path().join("runs").to_str().unwrap(),
            "--name",
            name,
        ])
        .env("HF_HOME", tmp.path())
        .env_remove("CATDOG_KERNELS");
        for (k, v) in vars {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", common::stderr(&o));
        let config: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(tmp.path().join("runs").join(name).join("config.json")).unwrap(),
        )
        .unwrap();
        let (_, meta) = read_safetensors(&tmp.path().join("runs").join(name).join("last.safetensors")).unwrap();
        (
            common::stderr(&o),
            config["precision"].as_str().unwrap().to_string(),
            meta["precision"].clone(),
        )
    };
    let (err, config, meta) = run("off", &[("CATDOG_BF16", "off")]);
    assert!(err.contains("no AVX512-BF16") && err.contains("fp32"), "{err}");
    assert_eq!((config.as_str(), meta.as_str()), ("fp32", "fp32"));
    if let Some(kernel) = kernel_or_skip("finetune bf16") {
        let (err, config, meta) = run("on", &[]);
        assert!(
            err.contains(&format!("precision bf16 on the {} kernel", kernel.name())) && !err.contains("no AVX512-BF16"),
            "{err}"
        );
        assert_eq!((config.as_str(), meta.as_str()), ("bf16", "bf16"));
        // extract records it in the features file.
        let out = tmp.path().join("features.safetensors");
        let weights = fixtures().join("vgg_tiny/weights.safetensors");
        let image = fixtures().join("vgg_tiny/image0.png");
        let o = common::catdog(
            &[
                "extract",
                "--weights",
                weights.to_str().unwrap(),
                "--precision",
                "bf16",
                "--size",
                "64",
                "--out",
                out.to_str().unwrap(),
                image.to_str().unwrap(),
            ],
            tmp.path(),
        );
        assert!(o.status.success(), "{}", common::stderr(&o));
        assert_eq!(read_safetensors(&out).unwrap().1["precision"], "bf16");
    }
}

#[test]
fn the_bf16_weight_gradient_is_within_bf16_rounding_of_fp32() {
    let Some(kernel) = kernel_or_skip("weight gradient bf16") else {
        return;
    };
    let g = ConvGeom::new(2, 37, 9, 7, 45, 3, 1);
    let x = values(2 * 37 * 9 * 7, 11);
    let dy = values(2 * 45 * 9 * 7, 12);
    let (mut want, mut want_b) = (vec![0f32; 45 * 37 * 9], vec![0f32; 45]);
    winograd_f2::weight_grad(&x, &g, &dy, &mut want, &mut want_b);
    let (mut got, mut got_b) = (vec![0f32; want.len()], vec![0f32; 45]);
    winograd_f2::weight_grad_bf16(kernel, &x, &g, &dy, &mut got, &mut got_b);
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
    eprintln!("bf16 vs fp32 weight gradient: {err:.2e} relative");
    assert!(err > 0.0 && err < 1e-2, "{err}");
    assert_eq!(got_b, want_b, "the bias gradient is a plain f32 sum either way");
}

#[test]
fn the_channel_vectorised_weight_gradient_equals_the_one_along_tiles_on_every_kernel() {
    // Channel counts in multiples of 16 take the channel-vectorised transforms (winograd_weight_grad); the form along
    // tiles makes the same rounded products, so only the order of the f32 sums differs. The AMX kernel runs here
    // where the CPU has it (the unit tests in winograd_weight_grad cover chunking and edges on amx-emulated).
    let (mut kernels, skipped) = bf16::available();
    kernels.push(bf16::Bf16Kernel::AmxEmulated);
    let names: Vec<&str> = kernels.iter().map(|k| k.name()).collect();
    eprintln!("running {names:?}; skipped: {skipped:?}");
    for kernel in kernels {
        for g in [
            ConvGeom::new(3, 32, 9, 9, 48, 3, 1),
            ConvGeom::new(1, 16, 18, 17, 64, 3, 1),
        ] {
            let x = values(g.n * g.c * g.h * g.w, 41);
            let dy = values(g.n * g.o * g.p(), 42);
            let (mut want, mut want_b) = (vec![0f32; g.o * g.c * 9], vec![0f32; g.o]);
            winograd_f2::weight_grad_bf16_along_tiles(kernel, &x, &g, &dy, &mut want, &mut want_b);
            let (mut got, mut got_b) = (vec![0f32; want.len()], vec![0f32; g.o]);
            winograd_f2::weight_grad_bf16(kernel, &x, &g, &dy, &mut got, &mut got_b);
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            let err = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
            assert!(err < 1e-5, "{} {g:?}: {err:.2e} relative", kernel.name());
            assert_eq!(got_b, want_b);
        }
    }
}

/// Direct convolution (stride 1, zero padding) with every input and weight rounded to bf16 and the products summed
/// in f64: what autocast computes, up to the order of the f32 sums.
fn reference_bf16_conv(x: &[f32], g: &ConvGeom, w: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; g.n * g.o * g.p()];
    for (n, oc, oy, ox) in output_positions(g) {
        let mut s = 0f64;
        for c in 0..g.c {
            for ky in 0..g.k {
                for kx in 0..g.k {
                    let (iy, ix) = ((oy + ky) as isize - g.pad as isize, (ox + kx) as isize - g.pad as isize);
                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                        continue;
                    }
                    let xv = x[((n * g.c + c) * g.h + iy as usize) * g.w + ix as usize];
                    let wv = w[((oc * g.c + c) * g.k + ky) * g.k + kx];
                    s += f64::from(bf16::round(xv)) * f64::from(bf16::round(wv));
                }
            }
        }
        out[((n * g.o + oc) * g.ho + oy) * g.wo + ox] = s as f32;
    }
    out
}

fn output_positions(g: &ConvGeom) -> impl Iterator<Item = (usize, usize, usize, usize)> + '_ {
    (0..g.n).flat_map(move |n| {
        (0..g.o).flat_map(move |oc| (0..g.ho).flat_map(move |oy| (0..g.wo).map(move |ox| (n, oc, oy, ox))))
    })
}

#[test]
fn the_first_convolution_runs_in_bf16_too_as_autocast_does() {
    let Some(kernel) = kernel_or_skip("im2col bf16") else {
        return;
    };
    // block1_conv1's shape (3 input channels, too few for Winograd), at 17×13: the im2col path.
    let g = ConvGeom::new(2, 3, 17, 13, 20, 3, 1);
    let x = values(2 * 3 * 17 * 13, 11);
    let w = values(20 * 3 * 9, 12);
    let want = reference_bf16_conv(&x, &g, &w);
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let max_diff = |got: &[f32]| got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
    let mut got = vec![0f32; want.len()];
    conv::conv_forward_with(conv::Algo::Bf16(kernel), &x, &g, &w, None, false, &mut got);
    let mut fp32 = vec![0f32; want.len()];
    conv::conv_forward_with(conv::Algo::Fp32, &x, &g, &w, None, false, &mut fp32);
    eprintln!(
        "im2col bf16 vs the bf16 reference: {:.1e}; fp32 vs it: {:.1e}",
        max_diff(&got),
        max_diff(&fp32)
    );
    assert!(max_diff(&got) < 1e-6, "bf16 im2col is not the bf16 arithmetic");
    assert!(max_diff(&fp32) > 1e-4, "the test cannot tell bf16 from fp32");
}

#[test]
fn the_narrow_weight_gradient_rounds_its_factors_to_bf16() {
    let Some(kernel) = kernel_or_skip("im2col bf16 weight gradient") else {
        return;
    };
    // block1_conv1's shape: 3 input channels, the im2col weight gradient (the bf16 Winograd one needs multiples of 16).
    let g = ConvGeom::new(2, 3, 9, 7, 6, 3, 1);
    let x = values(2 * 3 * 9 * 7, 13);
    let dy = values(2 * 6 * 9 * 7, 14);
    // dw[o, c, ky, kx] = Σ dy[n, o, y, x] · x[n, c, y + ky − 1, x + kx − 1], from the bf16-rounded factors.
    let mut want = vec![0f32; 6 * 3 * 9];
    for (n, oc, oy, ox) in output_positions(&g) {
        let d = f64::from(bf16::round(dy[((n * 6 + oc) * 9 + oy) * 7 + ox]));
        for c in 0..3 {
            for (ky, kx) in (0..3).flat_map(|ky| (0..3).map(move |kx| (ky, kx))) {
                let (iy, ix) = ((oy + ky) as isize - 1, (ox + kx) as isize - 1);
                if (0..9).contains(&iy) && (0..7).contains(&ix) {
                    let xv = f64::from(bf16::round(x[((n * 3 + c) * 9 + iy as usize) * 7 + ix as usize]));
                    want[((oc * 3 + c) * 3 + ky) * 3 + kx] += (d * xv) as f32;
                }
            }
        }
    }
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let max_diff = |got: &[f32]| got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
    let (mut got, mut db) = (vec![0f32; want.len()], vec![0f32; 6]);
    conv::conv_weight_grad_with(conv::Algo::Bf16(kernel), &x, &g, &dy, &mut got, &mut db);
    let mut fp32 = vec![0f32; want.len()];
    conv::conv_weight_grad_with(conv::Algo::Fp32, &x, &g, &dy, &mut fp32, &mut db);
    eprintln!(
        "bf16 weight gradient vs the bf16 reference: {:.1e}; fp32 vs it: {:.1e}",
        max_diff(&got),
        max_diff(&fp32)
    );
    assert!(
        max_diff(&got) < 1e-5,
        "the narrow weight gradient is not the bf16 arithmetic"
    );
    assert!(max_diff(&fp32) > 1e-4, "the test cannot tell bf16 from fp32");
}

/// `Σ_t bf16(a[i, t]) · bf16(b[t, j])` in f64, for row-major a (m × k) read through `a_at` and b through `b_at`.
fn reference_bf16_product(
    (m, k, n): (usize, usize, usize),
    a_at: impl Fn(usize, usize) -> f32,
    b_at: impl Fn(usize, usize) -> f32,
) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k)
                .map(|t| f64::from(bf16::round(a_at(i, t))) * f64::from(bf16::round(b_at(t, j))))
                .sum();
            c[i * n + j] = s as f32;
        }
    }
    c
}

#[test]
fn the_dense_layers_run_in_bf16_forward_and_backward_on_every_path() {
    use candle_core::Var;
    use catdog::kernels::linear::linear;
    let kernel = kernel_or_skip("dense bf16");
    let (n, k, o) = (5, 37, 19);
    let (x, w, dy) = (values(n * k, 21), values(o * k, 22), values(n * o, 23));
    let want_y = reference_bf16_product((n, k, o), |i, t| x[i * k + t], |t, j| w[j * k + t]);
    let want_dx = reference_bf16_product((n, o, k), |i, j| dy[i * o + j], |j, t| w[j * k + t]);
    let want_dw = reference_bf16_product((o, n, k), |j, i| dy[i * o + j], |i, t| x[i * k + t]);
    let test_device = std::env::var("CATDOG_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    let portable_device = catdog::device::parse_device(&test_device).expect("CATDOG_TEST_DEVICE opens");
    let mut paths = vec![(Kernels::Portable, portable_device)];
    if kernel.is_some() {
        paths.push((Kernels::Fast, Device::Cpu));
    }
    for (kernels, device) in paths {
        let exact = kernels == Kernels::Fast;
        for precision in [Precision::Bf16, Precision::Fp32] {
            let xv = Var::from_vec(x.clone(), (n, k), &device).unwrap();
            let wv = Var::from_vec(w.clone(), (o, k), &device).unwrap();
            let y = linear(xv.as_tensor(), wv.as_tensor(), Compute { kernels, precision }).unwrap();
            let g = Tensor::from_vec(dy.clone(), (n, o), &device).unwrap();
            let grads = (&y * &g).unwrap().sum_all().unwrap().backward().unwrap();
            let flat = |t: &Tensor| {
                t.flatten_all()
                    .unwrap()
                    .to_device(&Device::Cpu)
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            };
            let diff = |got: &[f32], want: &[f32]| {
                let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
                got.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale
            };
            let (dy_, dx_, dw_) = (
                diff(&flat(&y), &want_y),
                diff(&flat(grads.get(&xv).unwrap()), &want_dx),
                diff(&flat(grads.get(&wv).unwrap()), &want_dw),
            );
            eprintln!("{kernels:?} {precision:?} dense vs bf16 references: y {dy_:.1e}, dx {dx_:.1e}, dw {dw_:.1e}");
            match precision {
                // The fast path is autocast's arithmetic exactly; the portable one rounds the forward's factors
                // and leaves the gradients to candle's backward of the rounding (bf16 again, so within 1e-2).
                Precision::Bf16 if exact => assert!(dy_ < 1e-6 && dx_ < 1e-6 && dw_ < 1e-6, "{kernels:?}"),
                Precision::Bf16 => assert!(dy_ < 1e-2 && dx_ < 1e-2 && dw_ < 1e-2, "{kernels:?}"),
                Precision::Fp32 => assert!(dy_ > 1e-4, "the test cannot tell bf16 from fp32"),
                Precision::Fp16 => unreachable!("not in this loop"),
            }
        }
    }
}

#[test]
fn the_amx_self_check_turns_a_crashing_or_wrong_kernel_away() {
    use catdog::kernels::amx;
    eprintln!("AMX on this CPU: {:?}", amx::status());
    // A right kernel (the Rust model of the tile instructions) passes.
    assert_eq!(amx::self_check(amx::emulated_tile), Ok(()));
    // A kernel that computes something else, and one that crashes, are refused; the test process lives on.
    unsafe fn off_by_one(kp: usize, a: *const u32, lda: usize, b: *const u32, out: *mut f32, ldc: usize, acc: bool) {
        // SAFETY: as emulated_tile's contract; then the first value is changed.
        unsafe {
            amx::emulated_tile(kp, a, lda, b, out, ldc, acc);
            *out += 1.0;
        }
    }
    // A kernel that forgets what C held (accumulate ignored) is wrong too.
    unsafe fn overwrites(kp: usize, a: *const u32, lda: usize, b: *const u32, out: *mut f32, ldc: usize, _: bool) {
        // SAFETY: as emulated_tile's contract.
        unsafe { amx::emulated_tile(kp, a, lda, b, out, ldc, false) }
    }
    unsafe fn crashes(_: usize, _: *const u32, _: usize, _: *const u32, _: *mut f32, _: usize, _: bool) {
        std::process::abort()
    }
    for wrong_kernel in [off_by_one as amx::TileFn, overwrites] {
        let wrong = amx::self_check(wrong_kernel).unwrap_err();
        assert!(wrong.contains("wrong values"), "{wrong}");
    }
    let crashed = amx::self_check(crashes).unwrap_err();
    assert!(crashed.contains("crashed (signal 6)"), "{crashed}");
}

#[test]
fn the_direct_convolutions_self_check_turns_a_crashing_or_wrong_kernel_away() {
    use catdog::kernels::amx::{self, ConvCall};
    eprintln!("direct AMX convolution on this CPU: {:?}", amx::conv_status());
    assert_eq!(amx::conv_self_check(amx::emulated_conv_tile), Ok(()));
    // One tap read from the wrong place (the tap offsets are what the direct layout adds to the tile kernel).
    unsafe fn shifted_tap(call: &ConvCall) {
        let mut moved = ConvCall::new();
        moved.b = call.b;
        moved.b[4] = call.b[4].wrapping_add(1);
        (moved.steps, moved.ldb, moved.out) = (call.steps, call.ldb, call.out);
        (moved.ldc_bytes, moved.a, moved.lda_bytes, moved.blocks) =
            (call.ldc_bytes, call.a, call.lda_bytes, call.blocks);
        // SAFETY: the self-check's planes hold 80 positions, of which tap 4 reads 4..68, moved by one.
        unsafe { amx::emulated_conv_tile(&moved) }
    }
    unsafe fn crashes(_: &ConvCall) {
        std::process::abort()
    }
    let wrong = amx::conv_self_check(shifted_tap).unwrap_err();
    assert!(wrong.contains("wrong values"), "{wrong}");
    let crashed = amx::conv_self_check(crashes).unwrap_err();
    assert!(crashed.contains("crashed (signal 6)"), "{crashed}");
}

#[test]
fn the_amx_layouts_run_the_winograd_convolution_and_its_weight_gradient() {
    // The AMX path (tile instructions modelled in Rust) inside the fused Winograd products and the weight
    // gradient, against the fp32 convolution: within bf16 rounding, as the AVX512-BF16 kernel.
    let kernel = bf16::Bf16Kernel::AmxEmulated;
    let g = ConvGeom::new(2, 24, 9, 11, 40, 3, 1);
    let x: Vec<f32> = values(2 * 24 * 9 * 11, 31).iter().map(|v| v.max(0.0)).collect();
    let w = values(40 * 24 * 9, 32);
    let mut want = vec![0f32; 2 * 40 * 9 * 11];
    winograd_f2::forward(&x, &g, &w, Epilogue::NONE, &mut want);
    let mut got = vec![0f32; want.len()];
    winograd_f2::forward_bf16(kernel, &x, &g, &w, Epilogue::NONE, &mut got);
    let rel = |got: &[f32], want: &[f32]| {
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        got.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale
    };
    let forward_err = rel(&got, &want);
    let g = ConvGeom::new(2, 256, 5, 5, 256, 3, 1);
    let (x, dy) = (values(2 * 256 * 25, 33), values(2 * 256 * 25, 34));
    let (mut want_dw, mut db) = (vec![0f32; 256 * 256 * 9], vec![0f32; 256]);
    winograd_f2::weight_grad(&x, &g, &dy, &mut want_dw, &mut db);
    let mut got_dw = vec![0f32; want_dw.len()];
    winograd_f2::weight_grad_bf16(kernel, &x, &g, &dy, &mut got_dw, &mut db);
    let grad_err = rel(&got_dw, &want_dw);
    eprintln!("amx-emulated vs fp32: forward {forward_err:.2e}, weight gradient {grad_err:.2e}");
    assert!(forward_err > 0.0 && forward_err < 1e-2, "forward {forward_err}");
    assert!(grad_err > 0.0 && grad_err < 1e-2, "weight gradient {grad_err}");
}

#[test]
fn the_input_gradient_packs_the_flipped_weights_straight_and_computes_what_the_flipped_copy_did() {
    // Packing the flipped transpose from the forward's weights equals packing an explicit flipped copy.
    for (o, c) in [(8, 3), (13, 24), (40, 9)] {
        let w = values(o * c * 9, 41);
        let mut flipped = vec![0f32; w.len()];
        for (oc, ci) in (0..o).flat_map(|oc| (0..c).map(move |ci| (oc, ci))) {
            for j in 0..9 {
                flipped[(ci * o + oc) * 9 + j] = w[(oc * c + ci) * 9 + 8 - j];
            }
        }
        let direct = winograd_f2::pack_weights_bf16_flipped(&w, o, c);
        let copied = winograd_f2::pack_weights_bf16(&flipped, c, o);
        assert!(direct == copied, "{o}×{c}");
    }
    let Some(kernel) = kernel_or_skip("bf16 input gradient") else {
        return;
    };
    // And the input gradient in bf16 stays within bf16 rounding of fp32's.
    let g = ConvGeom::new(2, 24, 9, 11, 40, 3, 1);
    let (w, dy) = (values(40 * 24 * 9, 42), values(2 * 40 * 9 * 11, 43));
    let (mut want, mut got) = (vec![0f32; 2 * 24 * 9 * 11], vec![0f32; 2 * 24 * 9 * 11]);
    conv::conv_input_grad_with(conv::Algo::Fp32, &dy, &g, &w, &mut want);
    conv::conv_input_grad_with(conv::Algo::Bf16(kernel), &dy, &g, &w, &mut got);
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
    eprintln!("bf16 vs fp32 input gradient: {err:.2e} relative");
    assert!(err > 0.0 && err < 1e-2, "{err}");
}

/// `act(bias + conv)` and, with `pool`, its 2×2/2 max-pool, from a convolution without bias (N × O × ho × wo).
fn bias_relu_pool(conv: &[f32], g: &ConvGeom, bias: &[f32], pool: bool) -> Vec<f32> {
    let act: Vec<f32> = conv
        .iter()
        .enumerate()
        .map(|(i, v)| (v + bias[i / g.p() % g.o]).max(0.0))
        .collect();
    if !pool {
        return act;
    }
    let (ph, pw) = (g.ho / 2, g.wo / 2);
    let mut out = vec![0f32; g.n * g.o * ph * pw];
    for (i, v) in out.iter_mut().enumerate() {
        let (plane, py, px) = (i / (ph * pw), i / pw % ph, i % pw);
        let at = |dy: usize, dx: usize| act[plane * g.p() + (2 * py + dy) * g.wo + 2 * px + dx];
        *v = at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1));
    }
    out
}

#[test]
fn the_direct_bf16_convolution_equals_the_bf16_reference_on_every_kernel() {
    use catdog::kernels::direct;
    let (mut kernels, skipped) = bf16::available();
    // The AMX layouts with the tile instructions modelled in Rust: on every machine.
    kernels.push(bf16::Bf16Kernel::AmxEmulated);
    eprintln!(
        "direct conv on {:?}; skipped: {skipped:?}",
        kernels.iter().map(|k| k.name()).collect::<Vec<_>>()
    );
    // Odd sizes, an odd row count under the pool, a width that fills whole bf16 panels (no spill past a row),
    // a 1-row image (nothing to pool), and images of several bands.
    let shapes = [
        (2, 32, 7, 9, 64),
        (1, 64, 5, 32, 32),
        (2, 32, 1, 3, 32),
        (1, 32, 23, 41, 32),
    ];
    for (n, c, h, w, o) in shapes {
        let g = ConvGeom::new(n, c, h, w, o, 3, 1);
        assert!(direct::applicable(&g));
        let x = values(n * c * h * w, 51);
        let wt = values(o * c * 9, 52);
        let bias = values(o, 53);
        let conv = reference_bf16_conv(&x, &g, &wt);
        for pool in [false, true] {
            let want = bias_relu_pool(&conv, &g, &bias, pool);
            let scale = want.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
            for &kernel in &kernels {
                let packed = direct::DirectWeights::pack(kernel, &wt, o, c);
                let mut got = vec![f32::NAN; want.len()];
                direct::forward(
                    kernel,
                    &x,
                    &g,
                    &packed,
                    Epilogue::new(Some(&bias), true, pool),
                    &mut got,
                );
                assert!(
                    got.iter().all(|v| v.is_finite()),
                    "{}: an output was not written",
                    kernel.name()
                );
                let err = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
                assert!(
                    err < 1e-5,
                    "{} on {n}×{c}×{h}×{w} → {o}, pool {pool}: {err:.2e} from the bf16 reference",
                    kernel.name()
                );
            }
        }
    }
}

/// A 64-byte aligned buffer of `len` u32 from `values` (a Vec may start anywhere 4-aligned).
fn aligned_u32(len: usize, seed: u64) -> (Vec<u32>, usize) {
    let mut data = vec![0u32; len + 16];
    let start = data.as_ptr().align_offset(64).min(16);
    for (d, v) in data[start..].iter_mut().zip(values(2 * len, seed).chunks_exact(2)) {
        *d = u32::from(bf16::to_bf16(v[0])) | (u32::from(bf16::to_bf16(v[1])) << 16);
    }
    (data, start)
}

#[test]
#[ignore = "a timing, not a test; needs AMX"]
fn direct_amx_layout_speed() {
    use catdog::kernels::amx::{self, ConvCall};
    if *amx::conv_status() != amx::Amx::Ready {
        eprintln!("skipped: AMX is {:?}", amx::conv_status());
        return;
    }
    // One thread, one image per layer shape: the direct kernel's loop over (32 channels, 32 positions) blocks
    // with (a) the pair planes as `direct` lays them out, (b) the same with every B row 64-byte aligned (tap
    // offsets rounded down: wrong values, the same work), (c) NHWC input (each A row one pixel's 32 channels, one
    // cache line) through the gemm tile kernel, C through memory once per tap.
    for (c, o, h, reps) in [
        (64usize, 64usize, 150usize, 60),
        (128, 128, 75, 120),
        (256, 256, 37, 240),
        (512, 512, 18, 500),
    ] {
        let wp = h + 2;
        let positions = h * wp;
        let blocks = positions.div_ceil(32);
        let flops = (o / 32 * blocks) as f64 * 32.0 * 32.0 * 9.0 * c as f64 * 2.0 * reps as f64;
        let mut out = vec![0f32; 32 * blocks * 32];
        let ldc = blocks * 32;
        let kp = 9 * c / 2;
        let (a, a0) = aligned_u32(o * kp, 61);
        let mut rates = Vec::new();
        for aligned in [false, true] {
            let wpa = if aligned { wp.div_ceil(16) * 16 } else { wp };
            let plane = ((h + 2) * wpa + 96 + 2 * wpa).div_ceil(16) * 16 + 16;
            let (planes, p0) = aligned_u32(c / 2 * plane, 62);
            let off = |t: usize| {
                let q = t / 3 * wpa + t % 3;
                if aligned {
                    q / 16 * 16
                } else {
                    q
                }
            };
            let t0 = std::time::Instant::now();
            for _ in 0..reps {
                for ob in 0..o / 32 {
                    for i in 0..blocks {
                        let mut call = ConvCall::new();
                        call.b = std::array::from_fn(|t| planes[p0 + i * 32 + off(t)..].as_ptr());
                        (call.steps, call.ldb) = (c / 32, 4 * plane);
                        (call.out, call.ldc_bytes) = (out[i * 32..].as_mut_ptr(), 4 * ldc);
                        (call.a, call.lda_bytes) = (a[a0 + ob * 32 * kp..].as_ptr(), 4 * kp);
                        // SAFETY: AMX passed its self-checks; each tap reads c/2 planes of plane u32 from
                        // position i·32 + off(t) < (h + 2)·wpa + 2·wpa + 32, inside the plane; A holds o rows of
                        // kp; out holds 32 rows of ldc ≥ (i + 1)·32.
                        unsafe { amx::conv_tile(&call) };
                    }
                }
            }
            rates.push(flops / t0.elapsed().as_secs_f64() / 1e9);
        }
        // NHWC: positions × c/2 pairs; the weights per (32 outputs, tap) as a gemm B panel of c/2 pair rows.
        let (nhwc, n0) = aligned_u32(((h + 2) * wp + 96) * c / 2, 63);
        let (wb, w0) = aligned_u32(o / 32 * 9 * c / 2 * 32, 64);
        let t0 = std::time::Instant::now();
        for _ in 0..reps {
            for ob in 0..o / 32 {
                for i in 0..blocks {
                    for t in 0..9 {
                        let q = i * 32 + t / 3 * wp + t % 3;
                        let a = nhwc[n0 + q * c / 2..].as_ptr();
                        let b = wb[w0 + (ob * 9 + t) * c / 2 * 32..].as_ptr();
                        // SAFETY: AMX passed its self-check; A is 32 positions of c/2 pairs from position q (inside
                        // the (h + 2)·wp + 96 positions), B a c/2 × 32 panel, out 32 rows of ldc.
                        unsafe { amx::tile(c / 2, a, c / 2, b, out[i * 32..].as_mut_ptr(), ldc, t > 0) };
                    }
                }
            }
        }
        rates.push(flops / t0.elapsed().as_secs_f64() / 1e9);
        eprintln!(
            "{c:>3} → {o:>3} at {h:>3}×{h:<3} one thread, GFLOP/s: planes {:.0}, planes aligned {:.0}, NHWC {:.0}",
            rates[0], rates[1], rates[2]
        );
    }
}

#[test]
fn the_direct_input_gradient_is_the_direct_convolution_with_the_flipped_transposed_weights() {
    use catdog::kernels::direct;
    let (mut kernels, _) = bf16::available();
    kernels.push(bf16::Bf16Kernel::AmxEmulated);
    // Forward 64 → 32 channels at 7 × 10: the gradient runs 32 → 64.
    let g = ConvGeom::new(2, 64, 7, 10, 32, 3, 1);
    let w = values(32 * 64 * 9, 71);
    let dy = values(2 * 32 * 7 * 10, 72);
    let gt = ConvGeom::new(2, 32, 7, 10, 64, 3, 1);
    let flipped: Vec<f32> = (0..64 * 32 * 9)
        .map(|i| {
            let (ci, oc, t) = (i / (32 * 9), i / 9 % 32, i % 9);
            w[(oc * 64 + ci) * 9 + 8 - t]
        })
        .collect();
    let want = reference_bf16_conv(&dy, &gt, &flipped);
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    for kernel in kernels {
        let mut dx = vec![f32::NAN; want.len()];
        direct::input_grad(kernel, &dy, &g, &w, &mut dx);
        assert!(
            dx.iter().all(|v| v.is_finite()),
            "{}: a value was not written",
            kernel.name()
        );
        let err = dx.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
        assert!(err < 1e-5, "{}: {err:.2e} from the bf16 reference", kernel.name());
    }
}

#[test]
fn the_first_layers_direct_kernel_equals_the_references_in_both_precisions() {
    use catdog::kernels::first_conv;
    // 3 input channels, odd sizes (a row that ends inside a register), an odd row count under the pool.
    let g = ConvGeom::new(2, 3, 7, 21, 64, 3, 1);
    if !first_conv::applicable(&g) {
        eprintln!("skipped: the first-layer kernel needs AVX-512");
        return;
    }
    let x = values(2 * 3 * 7 * 21, 81);
    let w = values(64 * 3 * 9, 82);
    let bias = values(64, 83);
    let bf16_conv = reference_bf16_conv(&x, &g, &w);
    let mut fp32_conv = vec![0f32; bf16_conv.len()];
    conv::conv_forward_with(conv::Algo::Im2col, &x, &g, &w, None, false, &mut fp32_conv);
    for (bf16, conv) in [(true, &bf16_conv), (false, &fp32_conv)] {
        for pool in [false, true] {
            let want = bias_relu_pool(conv, &g, &bias, pool);
            let scale = want.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
            let mut got = vec![f32::NAN; want.len()];
            first_conv::forward(&x, &g, &w, Epilogue::new(Some(&bias), true, pool), bf16, &mut got);
            assert!(got.iter().all(|v| v.is_finite()), "an output was not written");
            let err = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
            assert!(err < 1e-5, "bf16 {bf16}, pool {pool}: {err:.2e} from the reference");
        }
    }
}

#[test]
fn an_empty_batch_gives_zero_weight_gradients_in_bf16_even_after_a_full_one() {
    let Some(kernel) = kernel_or_skip("empty batch bf16") else {
        return;
    };
    // A full batch first, so that the kernels' kept scratch holds sums an empty batch must not reuse.
    for n in [2usize, 0] {
        let g = conv::ConvGeom::new(n, 16, 9, 9, 16, 3, 1);
        let x = vec![1.0f32; n * 16 * 81];
        let dy = vec![1.0f32; n * 16 * 81];
        let (mut dw, mut db) = (vec![f32::NAN; 16 * 16 * 9], vec![f32::NAN; 16]);
        conv::conv_weight_grad_with(conv::Algo::Bf16(kernel), &x, &g, &dy, &mut dw, &mut db);
        assert!(
            dw.iter().chain(&db).all(|v| v.is_finite()),
            "batch of {n}: gradients not written"
        );
        if n == 0 {
            assert!(
                dw.iter().chain(&db).all(|&v| v == 0.0),
                "an empty batch: gradients not zero"
            );
        }
    }
}
