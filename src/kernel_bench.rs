//! `catdog bench kernels`: single kernels timed alone on VGG16 shapes — the bf16 gemm and its B packing, the
//! Winograd weight transform and bf16 packing, the Winograd weight gradient, block1_conv1's first-layer kernel and
//! block1_conv2's fused forward — each in
//! fp32 and, where the CPU has a bf16 kernel, in bf16. (These were ignored "tests" in tests/bf16.rs; speed is
//! measured here, never asserted.)

use serde::Serialize;

use crate::bench::best_of;
use crate::error::Result;
use crate::kernels::bf16::{self, pack_b, Bf16Kernel, PackedA};
use crate::kernels::conv::{ConvGeom, Epilogue};
use crate::kernels::sample_values as values;
use crate::kernels::winograd_f2;

/// One timed kernel.
#[derive(Debug, Clone, Serialize)]
pub struct KernelFigure {
    /// What ran, on which shape.
    pub kernel: String,
    /// `fp32`, or the bf16 kernel's name.
    pub precision: String,
    /// Best of the timed repetitions.
    pub seconds: f64,
    /// Multiply-adds × 2 per second, where the kernel has a FLOP count.
    pub gflops: Option<f64>,
}

/// The precisions to time: fp32, and the bf16 kernel where there is one.
fn precisions() -> Vec<Option<Bf16Kernel>> {
    std::iter::once(None).chain(bf16::kernel().map(Some)).collect()
}

fn name(kernel: Option<Bf16Kernel>) -> String {
    kernel.map_or("fp32".into(), |k| k.name().into())
}

/// Times every kernel, `iters` repetitions each after a warm-up; `log` hears what is being timed.
pub fn kernels(iters: usize, log: &mut dyn FnMut(&str)) -> Result<Vec<KernelFigure>> {
    let mut out = Vec::new();
    if let Some(kernel) = bf16::kernel() {
        log("timing the bf16 gemm and its B packing…");
        out.extend(gemm(kernel, iters)?);
        log("timing the Winograd weight transform and its bf16 packing…");
        out.extend(weight_transform(iters)?);
    } else {
        log("no bf16 kernel on this CPU: the bf16 gemm and packing are not timed");
    }
    log("timing the Winograd weight gradient…");
    out.extend(weight_gradient(iters)?);
    log("timing block1_conv1…");
    out.extend(block1_conv1(iters)?);
    log("timing block1_conv2 + ReLU + pool…");
    out.extend(block1_conv2(iters)?);
    Ok(out)
}

/// A 512 × 512 × 128 bf16 gemm on one thread, and packing its B.
fn gemm(kernel: Bf16Kernel, iters: usize) -> Result<Vec<KernelFigure>> {
    let (m, k, n) = (512, 512, 128);
    let a = PackedA::pack(&values(m * k, 1), m, k);
    let b = values(k * n, 2);
    let (mut buf, mut c) = (Vec::new(), vec![0f32; m * n]);
    let pack = best_of(iters, || {
        pack_b(&b, k, n, n, &mut buf);
        Ok(())
    })?;
    let product = best_of(iters, || {
        bf16::gemm(kernel, &a, &buf, n, &mut c, n);
        Ok(())
    })?;
    let flops = 2.0 * (m * k * n) as f64;
    Ok(vec![
        KernelFigure {
            kernel: format!("gemm {m}×{k}×{n}, one thread"),
            precision: kernel.name().into(),
            seconds: product,
            gflops: Some(flops / product / 1e9),
        },
        KernelFigure {
            kernel: format!("pack B {k}×{n}"),
            precision: kernel.name().into(),
            seconds: pack,
            gflops: None,
        },
    ])
}

/// 512 × 512 3×3 kernels to the Winograd domain (f32), and transformed + packed for bf16 in one pass.
fn weight_transform(iters: usize) -> Result<Vec<KernelFigure>> {
    let (o, c) = (512, 512);
    let w = values(o * c * 9, 3);
    let f32_s = best_of(iters, || {
        std::hint::black_box(winograd_f2::transform_weights(&w, o, c));
        Ok(())
    })?;
    let bf16_s = best_of(iters, || {
        std::hint::black_box(winograd_f2::pack_weights_bf16(&w, o, c));
        Ok(())
    })?;
    let figure = |what: &str, precision: &str, seconds| KernelFigure {
        kernel: format!("{what} 512×512×3×3"),
        precision: precision.into(),
        seconds,
        gflops: None,
    };
    Ok(vec![
        figure("winograd weight transform", "fp32", f32_s),
        figure("winograd weight transform + pack", "bf16", bf16_s),
    ])
}

/// The F(2×2) weight gradient at batch 32 on block5-, block4- and block3-like shapes.
fn weight_gradient(iters: usize) -> Result<Vec<KernelFigure>> {
    let mut out = Vec::new();
    for (c, size) in [(512, 9), (512, 18), (256, 37)] {
        let g = ConvGeom::new(32, c, size, size, c, 3, 1);
        let x = values(32 * c * size * size, 1);
        let dy = values(32 * c * size * size, 2);
        let (mut dw, mut db) = (vec![0f32; c * c * 9], vec![0f32; c]);
        for kernel in precisions() {
            let seconds = best_of(iters, || {
                match kernel {
                    Some(k) => winograd_f2::weight_grad_bf16(k, &x, &g, &dy, &mut dw, &mut db),
                    None => winograd_f2::weight_grad(&x, &g, &dy, &mut dw, &mut db),
                }
                Ok(())
            })?;
            out.push(KernelFigure {
                kernel: format!("weight gradient {c}→{c} at {size}×{size}, batch 32"),
                precision: name(kernel),
                seconds,
                gflops: Some(g.flops() / seconds / 1e9),
            });
        }
    }
    Ok(out)
}

/// VGG16's first layer (3 → 64 at 150 × 150, batch 32, ReLU): the first-layer kernel in both precisions (where the
/// CPU has AVX-512) against im2col + gemm in fp32.
fn block1_conv1(iters: usize) -> Result<Vec<KernelFigure>> {
    use crate::kernels::conv::{conv_forward_with, Algo};
    use crate::kernels::first_conv;
    let g = ConvGeom::new(32, 3, 150, 150, 64, 3, 1);
    let x = values(32 * 3 * 150 * 150, 1);
    let w = values(64 * 3 * 9, 2);
    let mut out = vec![0f32; g.output_len(false)];
    let mut figures = Vec::new();
    let mut time = |kernel: &str, precision: &str, f: &mut dyn FnMut(&mut [f32])| -> Result<()> {
        let seconds = best_of(iters, || {
            f(&mut out);
            Ok(())
        })?;
        figures.push(KernelFigure {
            kernel: format!("block1_conv1 {kernel}, batch 32"),
            precision: precision.into(),
            seconds,
            gflops: Some(g.flops() / seconds / 1e9),
        });
        Ok(())
    };
    if first_conv::applicable(&g) {
        time("first-layer kernel", "fp32", &mut |o| {
            first_conv::forward(&x, &g, &w, Epilogue::new(None, true, false), false, o)
        })?;
        time("first-layer kernel", "bf16", &mut |o| {
            first_conv::forward(&x, &g, &w, Epilogue::new(None, true, false), true, o)
        })?;
    }
    time("im2col + gemm", "fp32", &mut |o| {
        conv_forward_with(Algo::Im2col, &x, &g, &w, None, true, o)
    })?;
    Ok(figures)
}

/// block1_conv2 (64 → 64 at 150 × 150, batch 32) with ReLU and the 2×2 pool fused, on F(2×2).
fn block1_conv2(iters: usize) -> Result<Vec<KernelFigure>> {
    let g = ConvGeom::new(32, 64, 150, 150, 64, 3, 1);
    let x = values(32 * 64 * 150 * 150, 1);
    let w = values(64 * 64 * 9, 2);
    let mut out = vec![0f32; g.output_len(true)];
    let mut figures = Vec::new();
    for kernel in precisions() {
        let seconds = best_of(iters, || {
            match kernel {
                Some(k) => winograd_f2::forward_bf16(k, &x, &g, &w, Epilogue::new(None, true, true), &mut out),
                None => winograd_f2::forward(&x, &g, &w, Epilogue::new(None, true, true), &mut out),
            }
            Ok(())
        })?;
        figures.push(KernelFigure {
            kernel: "block1_conv2 + ReLU + pool, F(2×2), batch 32".into(),
            precision: name(kernel),
            seconds,
            gflops: Some(g.flops() / seconds / 1e9),
        });
    }
    Ok(figures)
}
