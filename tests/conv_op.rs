//! The fast CPU convolution and max-pool against candle's own ops and against finite differences.

use candle_core::{Device, Tensor, Var};
use catdog::kernels::conv::{conv2d, Epilogue};
use catdog::kernels::pool::max_pool2d;
use catdog::kernels::Kernels;

fn rand(shape: &[usize], seed: u64) -> Tensor {
    // A small LCG so that the values do not depend on candle's RNG.
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) as f64 / (1u64 << 31) as f64 * 2.0 - 1.0) as f32
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn max_rel_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// (n, c, h, w, o, k, pad)
const CASES: &[(usize, usize, usize, usize, usize, usize, usize)] = &[
    (1, 3, 37, 37, 8, 3, 1),
    (3, 5, 37, 37, 7, 3, 1),
    (2, 16, 9, 9, 32, 3, 1),
    (1, 16, 9, 9, 24, 3, 1),
    (3, 4, 11, 13, 6, 3, 0),
    (2, 3, 10, 7, 5, 5, 2),
    (2, 6, 8, 8, 4, 1, 0),
    (40, 8, 5, 5, 16, 3, 1),
    // Winograd shapes: odd and even sizes, pad 0, 1, 2, ragged last tiles.
    (2, 8, 37, 37, 8, 3, 1),
    (3, 9, 10, 7, 8, 3, 2),
    (2, 12, 6, 5, 10, 3, 0),
    (1, 8, 1, 1, 8, 3, 1),
];

const IMPLS: [Kernels; 2] = [Kernels::Fast, Kernels::Im2col];

#[test]
fn forward_matches_candle_conv2d_with_bias_and_relu() {
    for (i, &(n, c, h, w, o, k, pad)) in CASES.iter().enumerate() {
        let x = rand(&[n, c, h, w], i as u64);
        let wt = rand(&[o, c, k, k], 100 + i as u64);
        let b = rand(&[o], 200 + i as u64);
        for relu in [false, true] {
            let stock = conv2d(&x, &wt, &b, pad, relu, Kernels::Portable).unwrap();
            for imp in IMPLS {
                let fast = conv2d(&x, &wt, &b, pad, relu, imp).unwrap();
                let d = max_rel_diff(&fast, &stock);
                assert!(d < 1e-5, "case {i} {imp:?} relu {relu}: max relative difference {d}");
            }
        }
    }
}

#[test]
fn gradients_match_candle_autograd() {
    for (i, &(n, c, h, w, o, k, pad)) in CASES.iter().enumerate() {
        let x = Var::from_tensor(&rand(&[n, c, h, w], i as u64)).unwrap();
        let wt = Var::from_tensor(&rand(&[o, c, k, k], 100 + i as u64)).unwrap();
        let b = Var::from_tensor(&rand(&[o], 200 + i as u64)).unwrap();
        let ho = h + 2 * pad + 1 - k;
        let wo = w + 2 * pad + 1 - k;
        let r = rand(&[n, o, ho, wo], 300 + i as u64);
        let grads = |imp| {
            let y = conv2d(&x, &wt, &b, pad, true, imp).unwrap();
            let loss = (y * &r).unwrap().sum_all().unwrap();
            let g = loss.backward().unwrap();
            (
                g.get(&x).unwrap().clone(),
                g.get(&wt).unwrap().clone(),
                g.get(&b).unwrap().clone(),
            )
        };
        let (fx, fw, fb) = grads(Kernels::Fast);
        let (sx, sw, sb) = grads(Kernels::Portable);
        for (name, a, b) in [("input", &fx, &sx), ("weight", &fw, &sw), ("bias", &fb, &sb)] {
            let d = max_rel_diff(a, b);
            assert!(
                d < 1e-4,
                "case {i}: {name} gradient differs by {d} (relative to its largest value)"
            );
        }
    }
}

#[test]
fn input_gradient_is_skipped_for_a_detached_input_but_weights_still_train() {
    let x = rand(&[2, 3, 9, 9], 1);
    let wt = Var::from_tensor(&rand(&[4, 3, 3, 3], 2)).unwrap();
    let b = Var::from_tensor(&rand(&[4], 3)).unwrap();
    let y = conv2d(&x, &wt, &b, 1, true, Kernels::Fast).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    assert!(g.get(&x).is_none());
    assert!(g.get(&wt).is_some());
    assert!(g.get(&b).is_some());
}

/// Central finite differences in f64 of `L = Σ r ⊙ relu(conv(x))` at a handful of coordinates.
#[test]
fn gradients_match_finite_differences_on_odd_sizes() {
    let (n, c, h, w, o) = (3usize, 2usize, 37usize, 37usize, 3usize);
    let x = rand(&[n, c, h, w], 11);
    let wt = rand(&[o, c, 3, 3], 12);
    let b = rand(&[o], 13);
    let r = rand(&[n, o, h, w], 14);
    let xv = Var::from_tensor(&x).unwrap();
    let wv = Var::from_tensor(&wt).unwrap();
    let y = conv2d(&xv, &wv, &b, 1, true, Kernels::Fast).unwrap();
    let g = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let gx = g.get(&xv).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let gw = g.get(&wv).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();

    let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let ws = wt.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let bs = b.to_vec1::<f32>().unwrap();
    let rs = r.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let loss = |xs: &[f64], ws: &[f64]| -> f64 {
        let mut l = 0.0;
        for img in 0..n {
            for oc in 0..o {
                for y in 0..h {
                    for xx in 0..w {
                        let mut s = bs[oc] as f64;
                        for ci in 0..c {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let (iy, ix) = (y as isize + ky as isize - 1, xx as isize + kx as isize - 1);
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                        continue;
                                    }
                                    s += ws[((oc * c + ci) * 3 + ky) * 3 + kx]
                                        * xs[((img * c + ci) * h + iy as usize) * w + ix as usize];
                                }
                            }
                        }
                        l += s.max(0.0) * rs[((img * o + oc) * h + y) * w + xx] as f64;
                    }
                }
            }
        }
        l
    };
    let x64: Vec<f64> = xs.iter().map(|&v| v as f64).collect();
    let w64: Vec<f64> = ws.iter().map(|&v| v as f64).collect();
    let eps = 1e-4;
    for &i in &[0usize, 37, 1368, 2 * 37 * 37 + 5, xs.len() - 1, xs.len() / 2 + 17] {
        let (mut a, mut b) = (x64.clone(), x64.clone());
        a[i] += eps;
        b[i] -= eps;
        let num = (loss(&a, &w64) - loss(&b, &w64)) / (2.0 * eps);
        assert!(
            (num - gx[i] as f64).abs() < 1e-3 * (1.0 + num.abs()),
            "dx[{i}]: numeric {num}, analytic {}",
            gx[i]
        );
    }
    for &i in &[0usize, 4, 8, 17, ws.len() - 1] {
        let (mut a, mut b) = (w64.clone(), w64.clone());
        a[i] += eps;
        b[i] -= eps;
        let num = (loss(&x64, &a) - loss(&x64, &b)) / (2.0 * eps);
        assert!(
            (num - gw[i] as f64).abs() < 1e-3 * (1.0 + num.abs()),
            "dw[{i}]: numeric {num}, analytic {}",
            gw[i]
        );
    }
}

#[test]
fn max_pool_forward_and_gradient_routing_are_right_on_both_paths_on_odd_and_even_sizes() {
    let x = rand(&[2, 3, 8, 8], 5);
    let a = max_pool2d(&x, 2, 2, Kernels::Fast).unwrap();
    let b = max_pool2d(&x, 2, 2, Kernels::Portable).unwrap();
    assert_eq!(max_rel_diff(&a, &b), 0.0);
    assert_eq!(max_rel_diff(&b, &x.max_pool2d(2).unwrap()), 0.0);

    // 37 → 18 (floor mode): the last row/column gets no gradient; each window's max gets the output's gradient,
    // whole (candle's own max-pool backward misroutes it at 37 and quarters it at 36).
    for (size, kernels) in [(37, Kernels::Fast), (37, Kernels::Portable), (36, Kernels::Portable)] {
        let half = size / 2;
        let x = Var::from_tensor(&rand(&[1, 2, size, size], 6)).unwrap();
        let y = max_pool2d(&x, 2, 2, kernels).unwrap();
        assert_eq!(y.dims(), &[1, 2, half, half]);
        let r = rand(&[1, 2, half, half], 7);
        let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gx = g.get(&x).unwrap();
        let gx4 = gx.squeeze(0).unwrap().to_vec3::<f32>().unwrap();
        let x4 = x.as_tensor().squeeze(0).unwrap().to_vec3::<f32>().unwrap();
        let r4 = r.squeeze(0).unwrap().to_vec3::<f32>().unwrap();
        for ch in 0..2 {
            for oy in 0..half {
                for ox in 0..half {
                    let mut best = (0, 0);
                    let mut m = f32::NEG_INFINITY;
                    for dy in 0..2 {
                        for dx in 0..2 {
                            let v = x4[ch][2 * oy + dy][2 * ox + dx];
                            if v > m {
                                m = v;
                                best = (2 * oy + dy, 2 * ox + dx);
                            }
                        }
                    }
                    assert_eq!(
                        gx4[ch][best.0][best.1], r4[ch][oy][ox],
                        "{kernels:?} at {size}: window ({oy}, {ox})"
                    );
                }
            }
            if size % 2 == 1 {
                assert!(gx4[ch][size - 1].iter().all(|&v| v == 0.0));
                assert!(gx4[ch].iter().all(|row| row[size - 1] == 0.0));
            }
        }
        // Total gradient mass is conserved.
        let total = gx.sum_all().unwrap().to_scalar::<f32>().unwrap();
        let expect = r.sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(
            (total - expect).abs() < 1e-4,
            "{kernels:?} at {size}: {total} vs {expect}"
        );
    }
}

#[test]
fn fused_conv_relu_pool_equals_conv_then_pool_on_odd_and_even_sizes() {
    use catdog::kernels::conv::conv2d_relu_pool;
    for (i, &(n, c, s, o)) in [
        (2usize, 8usize, 37usize, 8usize),
        (3, 16, 9, 12),
        (1, 3, 10, 4),
        (2, 9, 75, 5),
        (1, 8, 3, 8),
    ]
    .iter()
    .enumerate()
    {
        let x = rand(&[n, c, s, s], 40 + i as u64);
        let w = rand(&[o, c, 3, 3], 50 + i as u64);
        let b = rand(&[o], 60 + i as u64);
        let reference = max_pool2d(
            &conv2d(&x, &w, &b, 1, true, Kernels::Portable).unwrap(),
            2,
            2,
            Kernels::Portable,
        )
        .unwrap();
        for imp in IMPLS {
            let fused = conv2d_relu_pool(&x, &w, &b, 1, imp).unwrap();
            assert_eq!(fused.dims(), reference.dims());
            let d = max_rel_diff(&fused, &reference);
            assert!(d < 1e-5, "case {i} {imp:?}: {d}");
        }
    }
}

#[test]
fn winograd_weight_gradient_equals_im2col_on_odd_sizes_and_paddings() {
    use catdog::kernels::conv::{conv_weight_grad_with, Algo, ConvGeom};
    for (i, &(n, c, h, w, o, pad)) in [
        (2usize, 8usize, 9usize, 9usize, 12usize, 1usize),
        (3, 5, 10, 7, 6, 2),
        (1, 4, 6, 5, 3, 0),
        (2, 16, 37, 37, 8, 1),
    ]
    .iter()
    .enumerate()
    {
        let g = ConvGeom::new(n, c, h, w, o, 3, pad);
        let x = rand(&[n * c * h * w], 70 + i as u64).to_vec1::<f32>().unwrap();
        let dy = rand(&[n * o * g.ho * g.wo], 80 + i as u64).to_vec1::<f32>().unwrap();
        let (mut dw1, mut db1) = (vec![0f32; o * c * 9], vec![0f32; o]);
        let (mut dw2, mut db2) = (vec![0f32; o * c * 9], vec![0f32; o]);
        catdog::kernels::winograd_f2::weight_grad(&x, &g, &dy, &mut dw1, &mut db1);
        conv_weight_grad_with(Algo::Im2col, &x, &g, &dy, &mut dw2, &mut db2);
        let scale = dw2.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = dw1.iter().zip(&dw2).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
        assert!(err < 1e-5, "case {i}: {err}");
        assert_eq!(db1, db2);
    }
}

#[test]
fn winograd_refuses_buffers_that_do_not_fit_the_geometry_instead_of_writing_past_them() {
    use catdog::kernels::conv::ConvGeom;
    use catdog::kernels::winograd_f2;
    let g = ConvGeom::new(1, 8, 9, 9, 4, 3, 1);
    let x = vec![0.5f32; 8 * 81];
    let w = vec![0.1f32; 4 * 8 * 9];
    let cases: [(&str, usize, bool); 3] = [
        ("output one value short", 4 * 81 - 1, false),
        ("output sized for the unpooled result while pooling", 4 * 81, true),
        ("output sized for the pooled result without pooling", 4 * 16, false),
    ];
    for (what, len, pool) in cases {
        let r = std::panic::catch_unwind(|| {
            let mut out = vec![0f32; len];
            winograd_f2::forward(&x, &g, &w, Epilogue::new(None, true, pool), &mut out);
        });
        assert!(r.is_err(), "{what}: accepted");
    }
    let r = std::panic::catch_unwind(|| {
        let mut dw = vec![0f32; 4 * 8 * 9];
        let mut db = vec![0f32; 4];
        winograd_f2::weight_grad(&x, &g, &[1.0; 10], &mut dw, &mut db);
    });
    assert!(r.is_err(), "a short output gradient was accepted");
    let mut out = vec![0f32; 4 * 16];
    winograd_f2::forward(&x, &g, &w, Epilogue::new(None, true, true), &mut out);
    assert!(out.iter().all(|v| *v > 0.0));
}

#[test]
fn winograd_transforms_agree_with_candles_conv_at_every_simd_level_the_cpu_has() {
    use catdog::kernels::simd::{detected, Level};
    let tmp = tempfile::tempdir().unwrap();
    for (name, level) in [
        ("generic", Level::Generic),
        ("avx2", Level::Avx2),
        ("avx512", Level::Avx512),
    ] {
        if level > detected() {
            eprintln!("skipped CATDOG_SIMD={name}: this CPU lacks it");
            continue;
        }
        // Widths of 8+ channels take the Winograd path; the benchmark compares it with candle's conv2d. Below
        // avx512 the hand-written AVX-512 kernels stand aside too (F(4×4), F(3×3), the AVX-512 input transform),
        // so an AVX-512 CPU also checks the F(2×2) transforms an AVX2 or older CPU runs.
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_catdog"))
            .args([
                "bench",
                "forward",
                "--weights",
                "random:8,16,16,16,16",
                "--size",
                "37",
                "--batch-size",
                "2",
            ])
            .args(["--iters", "1", "--json"])
            .env("CATDOG_SIMD", name)
            .env("HF_HOME", tmp.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(
            j["cpu"].as_str().is_some_and(|c| !c.is_empty()),
            "the report names the CPU: {j}"
        );
        assert_eq!(j["precision"], "fp32");
        let d = j["max_relative_difference"].as_f64().unwrap();
        eprintln!("CATDOG_SIMD={name}: largest relative difference from candle's conv2d {d:.1e}");
        assert!(d < 1e-4, "{name}: {d}");
    }
}

#[test]
fn an_empty_batch_gives_zero_weight_gradients_on_every_path() {
    use catdog::kernels::conv::{conv_weight_grad_with, Algo, ConvGeom};
    let g = ConvGeom::new(0, 8, 9, 9, 12, 3, 1);
    type WeightGrad = fn(&[f32], &ConvGeom, &[f32], &mut [f32], &mut [f32]);
    let paths: [(&str, WeightGrad); 3] = [
        ("winograd F(2x2)", catdog::kernels::winograd_f2::weight_grad),
        ("winograd F(3x3)", catdog::kernels::winograd_f3::weight_grad),
        ("im2col", |x, g, dy, dw, db| {
            conv_weight_grad_with(Algo::Im2col, x, g, dy, dw, db)
        }),
    ];
    for (name, path) in paths {
        let (mut dw, mut db) = (vec![f32::NAN; 12 * 8 * 9], vec![f32::NAN; 12]);
        path(&[], &g, &[], &mut dw, &mut db);
        assert!(dw.iter().chain(&db).all(|&v| v == 0.0), "{name}: not all zero");
    }
}

/// The conv ops allocate each layer's output without zeroing it (`kernels::raw::Out`), which is sound only while
/// every forward path stores every value: here each path the CPU has writes into NaN and must leave none.
#[test]
fn every_forward_path_stores_every_output_value() {
    use catdog::kernels::bf16;
    use catdog::kernels::conv::{conv_forward_with, conv_relu_pool_forward_with, Algo, ConvGeom};
    let (kernels, skipped) = bf16::available();
    for why in skipped {
        eprintln!("skipped bf16 kernel: {why}");
    }
    let algos: Vec<Algo> = [Algo::Fp32, Algo::Im2col]
        .into_iter()
        .chain(
            kernels
                .into_iter()
                .chain([bf16::Bf16Kernel::AmxEmulated])
                .map(Algo::Bf16),
        )
        .collect();
    // (n, c, h, w, o, k, pad): a first layer (3 inputs, 32 outputs), F(2×2), F(3×3) (9–18 px) and F(4×4)
    // (≥ 16 px) sizes with ragged edges, padding 0 and 2, a 1×1 kernel, too few channels for Winograd, and
    // 32-channel multiples (the direct kernels' shape).
    let geometries = [
        (2, 3, 11, 13, 32, 3, 1),
        (2, 8, 7, 5, 12, 3, 1),
        (2, 16, 9, 11, 8, 3, 1),
        (1, 16, 20, 17, 8, 3, 1),
        (1, 12, 19, 21, 6, 3, 0),
        (1, 8, 10, 9, 4, 3, 2),
        (2, 6, 9, 9, 5, 3, 1),
        (1, 5, 6, 7, 3, 1, 0),
        (1, 32, 10, 14, 32, 3, 1),
    ];
    for (i, &(n, c, h, w, o, k, pad)) in geometries.iter().enumerate() {
        let g = ConvGeom::new(n, c, h, w, o, k, pad);
        let x = rand(&[n, c, h, w], 70 + i as u64)
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let wt = rand(&[o, c, k, k], 80 + i as u64)
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let b = rand(&[o], 90 + i as u64).to_vec1::<f32>().unwrap();
        for &algo in &algos {
            for relu in [false, true] {
                let mut out = vec![f32::NAN; g.output_len(false)];
                conv_forward_with(algo, &x, &g, &wt, Some(&b), relu, &mut out);
                let missed = out.iter().filter(|v| v.is_nan()).count();
                assert_eq!(missed, 0, "{g:?} {algo:?} relu {relu}: {missed} outputs not stored");
            }
            if k == 3 && pad == 1 {
                let mut out = vec![f32::NAN; g.output_len(true)];
                conv_relu_pool_forward_with(algo, &x, &g, &wt, &b, &mut out);
                let missed = out.iter().filter(|v| v.is_nan()).count();
                assert_eq!(missed, 0, "{g:?} {algo:?} pooled: {missed} outputs not stored");
            }
        }
    }
}
