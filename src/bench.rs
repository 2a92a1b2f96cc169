//! Benchmarks behind `catdog bench …`: speed is measured here, in the same run as its baseline, never asserted
//! in tests.

use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use serde::Serialize;

use crate::error::Result;
use crate::kernels::conv::{self, ConvGeom};
use crate::kernels::{Compute, Kernels, Precision};
use crate::model::vgg16::{Vgg16, LAYERS};

/// Best (minimum) wall time of `iters` runs after one warm-up run, in seconds.
pub fn best_of<F: FnMut() -> Result<()>>(iters: usize, mut f: F) -> Result<f64> {
    f()?;
    let mut best = f64::INFINITY;
    for _ in 0..iters.max(1) {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Deterministic pseudo-random tensor in [-1, 1).
pub fn pseudo_random(shape: &[usize], seed: u64, device: &Device) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let mut s = seed ^ 0x9E37_79B9_7F4A_7C15;
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Ok(Tensor::from_vec(v, shape, device)?)
}

/// gemm's f32 throughput on a square product, GFLOP per second (the "peak" that layer figures are compared with).
pub fn gemm_peak(n: usize, iters: usize) -> Result<f64> {
    let a = vec![1.0f32; n * n];
    let b = vec![0.5f32; n * n];
    let mut c = vec![0f32; n * n];
    let threads = rayon::current_num_threads();
    let secs = best_of(iters, || {
        crate::kernels::raw::matmul(&a, &b, &mut c, (n, n, n), threads);
        Ok(())
    })?;
    Ok(2.0 * (n as f64).powi(3) / secs / 1e9)
}

/// One conv layer's figures.
#[derive(Debug, Clone, Serialize)]
pub struct LayerFigures {
    pub layer: String,
    /// `[batch, in_channels, height, width, out_channels]`.
    pub shape: [usize; 5],
    pub gflop: f64,
    pub fast_gflops: f64,
    pub candle_gflops: f64,
    pub speedup: f64,
    /// Fast forward as a fraction of the gemm peak measured in the same run.
    pub fraction_of_peak: f64,
    /// Fast backward: input gradient and weight gradient, GFLOP per second each (when measured).
    pub fast_input_grad_gflops: Option<f64>,
    pub fast_weight_grad_gflops: Option<f64>,
    /// candle's backward (input and weight gradients through autograd), GFLOP per second for both together.
    pub candle_backward_gflops: Option<f64>,
    /// What catdog's forward ran: algorithm, precision, SIMD level, and why (`kernels::plan`).
    pub plan: String,
}

/// The CPU's model name (Linux `/proc/cpuinfo`), else the architecture: benchmark figures name the machine they
/// were measured on.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The report of `catdog bench forward`.
#[derive(Debug, Clone, Serialize)]
pub struct ForwardReport {
    /// `cpu` or `cuda`.
    pub device: String,
    /// The CPU's model name ([`cpu_model`]).
    pub cpu: String,
    pub batch: usize,
    pub size: usize,
    pub threads: usize,
    pub widths: [usize; 5],
    pub gflop_per_image: f64,
    pub fast_seconds: f64,
    pub candle_seconds: Option<f64>,
    pub fast_images_per_s: f64,
    pub candle_images_per_s: Option<f64>,
    pub fast_gflops: f64,
    pub candle_gflops: Option<f64>,
    /// fast / candle images per second.
    pub speedup: Option<f64>,
    pub gemm_peak_gflops: f64,
    pub layers: Vec<LayerFigures>,
    /// Largest relative difference between the two implementations' block5_pool outputs.
    pub max_relative_difference: Option<f32>,
    /// The precision of catdog's timed run (`fp32`, or `bf16` where a kernel for it ran).
    pub precision: String,
    /// The kernel of its products: `fp32`, `avx512-bf16`, `candle bf16`.
    pub precision_kernel: String,
    /// With bf16: catdog's fp32 forward in the same run, images per second.
    pub fp32_images_per_s: Option<f64>,
    /// With bf16: its block5_pool output against fp32's, max |a − b| / max |b|.
    pub bf16_vs_fp32_difference: Option<f32>,
}

/// Options of the forward benchmark.
#[derive(Debug, Clone)]
pub struct ForwardOptions {
    pub batch: usize,
    pub size: usize,
    pub iters: usize,
    pub compare: bool,
    pub layers: bool,
    pub backward: bool,
    /// The precision asked for (`--precision`).
    pub precision: crate::kernels::PrecisionChoice,
}

/// Times the whole base forward with the fast convolution and with candle's, then (optionally) each conv layer.
pub fn forward(model: &Vgg16, opts: &ForwardOptions, mut log: impl FnMut(&str)) -> Result<ForwardReport> {
    let device = model.device().clone();
    let x = pseudo_random(&[opts.batch, 3, opts.size, opts.size], 1, &device)?;
    let flops = model.flops_per_image(opts.size);
    log("measuring the gemm peak (2048² f32)…");
    let peak = gemm_peak(2048, 5)?;
    let mut fast_model = model.clone();
    fast_model.set_kernels(Kernels::Fast);
    let resolved = opts.precision.resolve(&device, Kernels::Fast);
    fast_model.set_precision(resolved.precision);
    let compute = Compute {
        kernels: Kernels::Fast,
        precision: resolved.precision,
    };
    log(&format!(
        "timing the whole base with the fast convolution ({}, {})…",
        resolved.precision.name(),
        resolved.kernel
    ));
    let (fast_s, out_fast) = time_whole(&fast_model, &x, opts.iters)?;
    let (mut fp32_s, mut bf16_diff) = (None, None);
    if resolved.precision != Precision::Fp32 {
        let mut fp32_model = fast_model.clone();
        fp32_model.set_precision(Precision::Fp32);
        log("timing the whole base with the fast convolution in fp32, for comparison…");
        let (t, out) = time_whole(&fp32_model, &x, opts.iters)?;
        fp32_s = Some(t);
        bf16_diff = Some(max_rel_diff(&out_fast, &out)?);
    }
    let (mut candle_s, mut diff) = (None, None);
    if opts.compare {
        let mut stock = model.clone();
        stock.set_kernels(Kernels::Portable);
        log("timing the whole base with candle's conv2d…");
        let (t, out) = time_whole(&stock, &x, opts.iters)?;
        candle_s = Some(t);
        diff = Some(max_rel_diff(&out_fast, &out)?);
    }
    let layers = if opts.layers {
        layer_figures(model, opts, compute, peak, &mut log)?
    } else {
        Vec::new()
    };
    let imgs = opts.batch as f64;
    Ok(ForwardReport {
        device: crate::device::device_name(&device),
        batch: opts.batch,
        size: opts.size,
        threads: rayon::current_num_threads(),
        widths: model.widths(),
        gflop_per_image: flops / 1e9,
        fast_seconds: fast_s,
        candle_seconds: candle_s,
        fast_images_per_s: imgs / fast_s,
        candle_images_per_s: candle_s.map(|t| imgs / t),
        fast_gflops: flops * imgs / fast_s / 1e9,
        candle_gflops: candle_s.map(|t| flops * imgs / t / 1e9),
        speedup: candle_s.map(|t| t / fast_s),
        gemm_peak_gflops: peak,
        layers,
        max_relative_difference: diff,
        cpu: cpu_model(),
        precision: resolved.precision.name().to_string(),
        precision_kernel: resolved.kernel.to_string(),
        fp32_images_per_s: fp32_s.map(|t| opts.batch as f64 / t),
        bf16_vs_fp32_difference: bf16_diff,
    })
}

/// The best of `iters` whole forwards of `model` on `x` (seconds), and its output.
fn time_whole(model: &Vgg16, x: &Tensor, iters: usize) -> Result<(f64, Tensor)> {
    let mut out = None;
    let seconds = best_of(iters, || {
        out = Some(model.forward(x)?);
        model.device().synchronize()?;
        Ok(())
    })?;
    Ok((seconds, out.expect("best_of runs at least once")))
}

/// Each conv layer of `model` timed alone on its own input shape (forward, and with `opts.backward` the input
/// and weight gradients), against candle's with `opts.compare`.
fn layer_figures(
    model: &Vgg16,
    opts: &ForwardOptions,
    compute: Compute,
    peak: f64,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<LayerFigures>> {
    let device = model.device().clone();
    let named = model.named_tensors();
    let tensor = |name: String| {
        named
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.clone())
            .expect("every conv has a weight and a bias")
    };
    let (mut s, mut c) = (opts.size, 3);
    let mut layers = Vec::new();
    for spec in LAYERS.iter() {
        if !spec.is_conv {
            s /= 2;
            continue;
        }
        let w = tensor(format!("features.{}.weight", spec.index));
        let b = tensor(format!("features.{}.bias", spec.index));
        let o = w.dim(0)?;
        log(&format!("timing {} ({c}→{o}, {s}×{s})…", spec.name));
        let xin = pseudo_random(&[opts.batch, c, s, s], 2, &device)?.relu()?;
        let g = ConvGeom::new(opts.batch, c, s, s, o, 3, 1);
        let gflop = g.flops() / 1e9;
        let tf = best_of(opts.iters, || {
            conv::conv2d(&xin, &w, &b, 1, true, compute)?;
            Ok(())
        })?;
        let tc = if opts.compare {
            best_of(opts.iters.min(2), || {
                conv::conv2d(&xin, &w, &b, 1, true, Kernels::Portable)?;
                Ok(())
            })?
        } else {
            f64::NAN
        };
        let (dxg, dwg, cb) = if opts.backward {
            backward_figures(&xin, &w, &b, &g, opts, compute)?
        } else {
            (None, None, None)
        };
        layers.push(LayerFigures {
            layer: spec.name.to_string(),
            shape: [opts.batch, c, s, s, o],
            gflop,
            fast_gflops: gflop / tf,
            candle_gflops: gflop / tc,
            speedup: tc / tf,
            fraction_of_peak: gflop / tf / peak,
            fast_input_grad_gflops: dxg,
            fast_weight_grad_gflops: dwg,
            candle_backward_gflops: cb,
            plan: conv::plan(compute, &g).map_or("candle's conv2d".into(), |p| p.describe()),
        });
        c = o;
    }
    Ok(layers)
}

/// GFLOP/s of one layer's input gradient and weight gradient with catdog's kernels (in the precision's algorithm),
/// and of candle's whole backward with `opts.compare`.
fn backward_figures(
    xin: &Tensor,
    w: &Tensor,
    b: &Tensor,
    g: &ConvGeom,
    opts: &ForwardOptions,
    compute: Compute,
) -> Result<(Option<f64>, Option<f64>, Option<f64>)> {
    // The backward timings follow the precision too (bf16 products where a kernel for them runs).
    let algo = compute.bf16_kernel().map_or(conv::Algo::Fp32, conv::Algo::Bf16);
    let gflop = g.flops() / 1e9;
    let xs = xin.flatten_all()?.to_vec1::<f32>()?;
    let ws = w.flatten_all()?.to_vec1::<f32>()?;
    let dy = pseudo_random(&[g.n, g.o, g.ho, g.wo], 3, xin.device())?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let mut dx = vec![0f32; xs.len()];
    let mut dw = vec![0f32; ws.len()];
    let mut db = vec![0f32; g.o];
    let t_dx = best_of(opts.iters, || {
        conv::conv_input_grad_with(algo, &dy, g, &ws, &mut dx);
        Ok(())
    })?;
    let t_dw = best_of(opts.iters, || {
        conv::conv_weight_grad_with(algo, &xs, g, &dy, &mut dw, &mut db);
        Ok(())
    })?;
    let mut candle = None;
    if opts.compare {
        let xv = Var::from_tensor(xin)?;
        let wv = Var::from_tensor(w)?;
        let loss = conv::conv2d(&xv, &wv, b, 1, false, Kernels::Portable)?.sum_all()?;
        let t_cb = best_of(1, || {
            loss.backward()?;
            Ok(())
        })?;
        candle = Some(2.0 * gflop / t_cb);
    }
    Ok((Some(gflop / t_dx), Some(gflop / t_dw), candle))
}

fn max_rel_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    let a = a.flatten_all()?.to_vec1::<f32>()?;
    let b = b.flatten_all()?.to_vec1::<f32>()?;
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    Ok(a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale)
}

/// One pass of the loader benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct LoaderPass {
    pub name: String,
    pub images: usize,
    pub seconds: f64,
    pub images_per_s: f64,
}

/// Times the loader over `batches` batches (or one epoch): decode + resize (+ augment) with no cache, then the
/// same with the decoded images cached in memory (a second epoch), then decode + resize alone.
pub fn loader(
    samples: Vec<crate::data::folder::Sample>,
    cfg: crate::data::loader::LoaderConfig,
    batches: Option<usize>,
    mut log: impl FnMut(&str),
) -> Result<Vec<LoaderPass>> {
    use crate::data::loader::Loader;
    let run = |l: &Loader, epoch: usize, name: &str| -> Result<LoaderPass> {
        let t = Instant::now();
        let mut images = 0;
        for (i, b) in l.epoch(epoch).enumerate() {
            if batches.is_some_and(|n| i >= n) {
                break;
            }
            images += b?.labels.len();
        }
        let seconds = t.elapsed().as_secs_f64();
        Ok(LoaderPass {
            name: name.to_string(),
            images,
            seconds,
            images_per_s: images as f64 / seconds,
        })
    };
    let mut passes = Vec::new();
    let aug = cfg.augment.filter(|a| !a.is_identity());
    let with_aug = aug.is_some();
    log("decode + resize + augment, no cache…");
    let l = Loader::new(
        samples.clone(),
        crate::data::loader::LoaderConfig {
            cache_bytes: 0,
            ..cfg.clone()
        },
    )?;
    passes.push(run(
        &l,
        0,
        if with_aug {
            "decode+resize+augment"
        } else {
            "decode+resize"
        },
    )?);
    log("the same from the in-memory image cache (epochs after the first)…");
    let l = Loader::new(
        samples.clone(),
        crate::data::loader::LoaderConfig {
            cache_bytes: usize::MAX / 2,
            ..cfg.clone()
        },
    )?;
    run(&l, 0, "fill cache")?;
    passes.push(run(&l, 1, if with_aug { "cached+augment" } else { "cached" })?);
    if with_aug {
        log("decode + resize alone…");
        let l = Loader::new(
            samples,
            crate::data::loader::LoaderConfig {
                augment: None,
                cache_bytes: 0,
                ..cfg
            },
        )?;
        passes.push(run(&l, 0, "decode+resize")?);
    }
    Ok(passes)
}

/// One configuration of the training-step benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct TrainPass {
    pub name: String,
    pub seconds_per_step: f64,
    pub images_per_s: f64,
}

/// What the training-step benchmark times.
#[derive(Debug, Clone)]
pub struct TrainStepOptions {
    /// The first trainable layer (an index into [`LAYERS`]; `LAYERS.len()` for the head alone).
    pub split: usize,
    pub batch: usize,
    pub size: usize,
    pub steps: usize,
    /// Steps that run the frozen prefix on images.
    pub from_images: bool,
    /// Steps that start from the frozen prefix's output, computed once (the feature cache).
    pub from_cache: bool,
    /// Also fp32 beside bf16, and candle's convolution.
    pub compare: bool,
}

/// Seconds per training step (forward, loss, backward, RMSprop update) of `base` with a 256-unit head, in the
/// passes `opts` asks for: catdog's kernels from images and from the cached frozen output, in the base's
/// precision (and fp32 beside bf16 with `compare`), and candle's stock conv2d with `compare`.
pub fn train_step(base: &Vgg16, opts: &TrainStepOptions, mut log: impl FnMut(&str)) -> Result<Vec<TrainPass>> {
    let precision = base.precision();
    let bf16 = opts.compare && precision != Precision::Fp32;
    let plan: [(&str, Kernels, Precision, bool, bool); 5] = [
        (
            "step from images (catdog conv)",
            Kernels::Fast,
            precision,
            false,
            opts.from_images,
        ),
        (
            "step from images (catdog conv, fp32)",
            Kernels::Fast,
            Precision::Fp32,
            false,
            opts.from_images && bf16,
        ),
        (
            "step from the cached frozen output",
            Kernels::Fast,
            precision,
            true,
            opts.from_cache,
        ),
        (
            "step from the cached frozen output (fp32)",
            Kernels::Fast,
            Precision::Fp32,
            true,
            opts.from_cache && bf16,
        ),
        (
            "step from images (candle's stock conv2d)",
            Kernels::Portable,
            Precision::Fp32,
            false,
            opts.compare && opts.from_images,
        ),
    ];
    let bench = StepBench::new(base, opts)?;
    let mut passes = Vec::new();
    for (name, kernels, precision, cached, wanted) in plan {
        if wanted {
            log(&format!("timing {name}…"));
            // candle's stock path is slow: one timed step is enough for a comparison.
            let steps = if kernels == Kernels::Portable { 1 } else { opts.steps };
            let secs = bench.seconds_per_step(kernels, precision, cached, steps)?;
            passes.push(TrainPass {
                name: name.to_string(),
                seconds_per_step: secs,
                images_per_s: opts.batch as f64 / secs,
            });
        }
    }
    Ok(passes)
}

/// One batch of pseudo-random images and labels, and the base they train.
struct StepBench<'a> {
    base: &'a Vgg16,
    split: usize,
    size: usize,
    x: Tensor,
    labels: Vec<u32>,
}

impl<'a> StepBench<'a> {
    fn new(base: &'a Vgg16, opts: &TrainStepOptions) -> Result<Self> {
        Ok(StepBench {
            base,
            split: opts.split,
            size: opts.size,
            x: pseudo_random(&[opts.batch, 3, opts.size, opts.size], 5, base.device())?,
            labels: (0..opts.batch as u32).map(|i| i % 2).collect(),
        })
    }

    /// The best of `steps` training steps with these kernels and precision, from the cached frozen output when
    /// `cached`.
    fn seconds_per_step(&self, kernels: Kernels, precision: Precision, cached: bool, steps: usize) -> Result<f64> {
        use crate::model::head::{Head, HeadConfig, HeadKind};
        use crate::train::loss_scale::{LossScaler, LossScaling};
        use crate::train::optim::{OptimConfig, Optimizer, OptimizerKind};
        let device = self.base.device().clone();
        let mut m = self.base.clone();
        m.set_kernels(kernels);
        m.set_precision(precision);
        m.set_trainable_from(self.split)?;
        let (c, h, w) = m.output_shape(LAYERS.len() - 1, self.size);
        let head_cfg = HeadConfig {
            kind: HeadKind::Flatten,
            in_shape: [c, h, w],
            hidden: 256,
            dropout: 0.5,
            n_out: 1,
        };
        let head = Head::new(head_cfg, 0, &device)?;
        let mut params = head.vars();
        params.extend(m.trainable_vars());
        let mut opt = Optimizer::new(OptimConfig::new(OptimizerKind::Rmsprop, 1e-5), params)?;
        let cache = if cached { Some(m.forward_frozen(&self.x)?) } else { None };
        // fp16 steps pay for the loss scaler's work too, as torch.cuda.amp's do.
        let mut scaler = (precision == Precision::Fp16).then(|| LossScaler::new(LossScaling::default()));
        let mut k = 0u64;
        best_of(steps, || {
            let h = match &cache {
                Some(h) => h.clone(),
                None => m.forward_frozen(&self.x)?,
            };
            let f = m.forward_trainable(&h)?;
            k += 1;
            let logits = head.forward(&f, Some(k), m.compute())?;
            let loss = crate::train::loss::data_loss(&logits, &self.labels)?;
            crate::train::loss_scale::backward_and_step(scaler.as_mut(), &loss, &mut opt)?;
            device.synchronize()?;
            Ok(())
        })
    }
}

/// The labs' speed reference: an 11-64-32-1 MLP with dropout 0.2 and L2 1e-4, Adam, batch 32, 20 epochs on
/// 10,000 × 11 rows (y = [x₀ + x₁·x₂ > 0]); returns the seconds of the whole fit.
pub fn mlp(epochs: usize) -> Result<f64> {
    use crate::nn::{Activation, Init, Norm, NormDefaults};
    use crate::tabular::dataset::{Table, Task};
    use crate::tabular::fit::{fit, FitConfig, Tensors};
    use crate::tabular::mlp::{Mlp, MlpConfig};
    use crate::train::optim::{OptimConfig, OptimizerKind};
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let (n, d) = (10_000, 11);
    let x: Vec<f32> = (0..n * d).map(|_| StandardNormal.sample(&mut rng)).collect();
    let y: Vec<f32> = (0..n)
        .map(|i| f32::from(x[i * d] + x[i * d + 1] * x[i * d + 2] > 0.0))
        .collect();
    let t = Table {
        x,
        features: (0..d).map(|j| format!("x{j}")).collect(),
        task: Task::Classification,
        y,
        classes: vec!["0".into(), "1".into()],
        name: "bench".into(),
    };
    let dev = Device::Cpu;
    let data = Tensors::new(&t, &dev)?;
    let val = Tensors::new(&t.select(&(0..500).collect::<Vec<_>>()), &dev)?;
    let model = Mlp::new(
        MlpConfig {
            inputs: d,
            layers: vec![64, 32],
            outputs: 1,
            activation: Activation::Relu,
            dropout: 0.2,
            norm: Norm::None,
            norm_defaults: NormDefaults::Keras,
            init: Init::Glorot,
        },
        0,
        &dev,
    )?;
    let cfg = FitConfig {
        epochs,
        batch_size: 32,
        optimizer: OptimConfig::new(OptimizerKind::Adam, 1e-3),
        l1: 0.0,
        l2: 1e-4,
        // Every layer, as the PyTorch twin in scripts/bench_torch.py regularizes all its weights.
        regularize: crate::tabular::fit::Regularize::All,
        early_stopping: None,
        seed: 0,
    };
    let start = Instant::now();
    fit(model, &data, &val, &cfg)?;
    Ok(start.elapsed().as_secs_f64())
}
