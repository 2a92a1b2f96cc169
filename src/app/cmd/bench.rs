use crate::bench::{self, ForwardOptions};
use crate::model::weights::{self, HubOptions, WeightsSpec};
use anyhow::Result;

use crate::app::cli::BenchForwardArgs;

pub fn forward(a: BenchForwardArgs, quiet: bool) -> Result<i32> {
    super::usage_check(crate::limits::check_size(u32::try_from(a.size).unwrap_or(u32::MAX)))?;
    super::usage_check(crate::limits::check_batch(a.batch_size))?;
    let spec = WeightsSpec::parse(&a.weights, 0)?;
    let device = crate::device::parse_device(&a.rt.device)?;
    let loaded = weights::load(&spec, &device, &HubOptions::from_env()?)?;
    super::check_forward_memory("bench forward", &loaded.model, a.size as u32, a.batch_size)?;
    let opts = ForwardOptions {
        batch: a.batch_size.max(1),
        size: a.size,
        iters: a.iters.max(1),
        compare: !a.no_compare,
        layers: a.layers,
        backward: a.backward,
        precision: a.rt.precision,
    };
    let r = bench::forward(&loaded.model, &opts, |m| {
        if !quiet {
            eprintln!("{m}")
        }
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(0);
    }
    println!(
        "VGG16 conv base forward on {} ({}), batch {}, {}×{}, {} threads, widths {:?} ({:.2} GFLOP/image)",
        r.device, r.cpu, r.batch, r.size, r.size, r.threads, r.widths, r.gflop_per_image
    );
    println!("gemm peak (2048² f32): {:.0} GFLOP/s", r.gemm_peak_gflops);
    println!(
        "catdog conv:   {:>7.2} images/s  {:>6.0} GFLOP/s  ({:.3} s/batch; {}, {})",
        r.fast_images_per_s, r.fast_gflops, r.fast_seconds, r.precision, r.precision_kernel
    );
    if let (Some(fp32), Some(d)) = (r.fp32_images_per_s, r.bf16_vs_fp32_difference) {
        println!(
            "catdog fp32:   {fp32:>7.2} images/s  (bf16 is {:.2}× fp32; outputs differ by {d:.2e} relative)",
            r.fast_images_per_s / fp32
        );
    }
    if let (Some(ips), Some(gf), Some(s), Some(x)) =
        (r.candle_images_per_s, r.candle_gflops, r.candle_seconds, r.speedup)
    {
        println!("candle conv2d: {ips:>7.2} images/s  {gf:>6.0} GFLOP/s  ({s:.3} s/batch)");
        println!("speed-up: {x:.2}×");
    }
    if let Some(d) = r.max_relative_difference {
        println!("largest relative difference of the outputs: {d:.2e}");
    }
    if !r.layers.is_empty() {
        println!();
        println!(
            "{:<13} {:>22} {:>7} {:>9} {:>9} {:>6} {:>6} {:>9} {:>9} {:>11}",
            "layer", "N,C,H,W→O", "GFLOP", "ours", "candle", "×", "%peak", "ours dx", "ours dW", "candle bwd"
        );
        for l in &r.layers {
            let f = |v: Option<f64>| v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into());
            // Without the baseline (--no-compare) its columns are NaN: shown as "-".
            let measured = |v: f64, digits: usize| {
                if v.is_finite() {
                    format!("{v:.digits$}")
                } else {
                    "-".into()
                }
            };
            println!(
                "{:<13} {:>22} {:>7.2} {:>9.0} {:>9} {:>6} {:>5.0}% {:>9} {:>9} {:>11}",
                l.layer,
                format!(
                    "{},{},{},{}→{}",
                    l.shape[0], l.shape[1], l.shape[2], l.shape[3], l.shape[4]
                ),
                l.gflop,
                l.fast_gflops,
                measured(l.candle_gflops, 0),
                measured(l.speedup, 2),
                100.0 * l.fraction_of_peak,
                f(l.fast_input_grad_gflops),
                f(l.fast_weight_grad_gflops),
                f(l.candle_backward_gflops)
            );
        }
        println!("(GFLOP/s; dx = input gradient, dW = weight gradient, candle bwd = both through candle's autograd)");
        println!();
        for l in &r.layers {
            println!("{:<13} {}", l.layer, l.plan);
        }
    }
    Ok(0)
}

pub fn loader(a: crate::app::cli::BenchLoaderArgs, quiet: bool) -> Result<i32> {
    super::usage_check(crate::limits::check_size(a.img.size))?;
    super::usage_check(crate::limits::check_batch(a.batch_size))?;
    use crate::data::folder::{split_dirs, ImageFolder};
    use crate::data::loader::LoaderConfig;
    use crate::data::preprocess::Preprocess;
    let root = split_dirs(&a.data)
        .into_iter()
        .find(|(n, _)| n == "train")
        .map(|(_, p)| p)
        .unwrap_or(a.data.clone());
    let folder = ImageFolder::scan_lenient(&root)?;
    let aug = super::augment_config(&a.aug)?;
    let mut cfg = LoaderConfig::new(a.batch_size.max(1), a.img.size, Preprocess::imagenet());
    cfg.interpolation = a.img.interpolation;
    cfg.augment = Some(aug);
    cfg.shuffle = true;
    let n = folder.samples.len();
    let passes = bench::loader(folder.samples, cfg, a.batches, |m| {
        if !quiet {
            eprintln!("{m}")
        }
    })?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "data": root, "images_in_folder": n, "batch": a.batch_size, "size": a.img.size,
                "threads": rayon::current_num_threads(),
                "augmentation": crate::data::preview::describe(&aug), "passes": passes,
            }))?
        );
        return Ok(0);
    }
    println!(
        "loader on {} ({} images), batch {}, {}×{}, {} threads, {}",
        root.display(),
        n,
        a.batch_size,
        a.img.size,
        a.img.size,
        rayon::current_num_threads(),
        crate::data::preview::describe(&aug)
    );
    for p in &passes {
        println!(
            "{:<24} {:>6} images in {:>6.2} s: {:>8.0} images/s",
            p.name, p.images, p.seconds, p.images_per_s
        );
    }
    Ok(0)
}

pub fn train(a: crate::app::cli::BenchTrainArgs, quiet: bool) -> Result<i32> {
    super::usage_check(crate::limits::check_size(u32::try_from(a.size).unwrap_or(u32::MAX)))?;
    super::usage_check(crate::limits::check_batch(a.batch_size))?;
    use crate::app::cli::BenchCache;
    use crate::model::classifier::TrainMode;
    use crate::model::vgg16::{layer_index, LAYERS};
    let spec = WeightsSpec::parse(&a.weights, 0)?;
    let device = crate::device::parse_device(&a.rt.device)?;
    let mut loaded = weights::load(&spec, &device, &HubOptions::from_env()?)?;
    super::check_forward_memory("bench train", &loaded.model, a.size as u32, a.batch_size)?;
    let precision = super::set_precision(&mut loaded.model, a.rt.precision, &device, quiet);
    let split = match a.mode {
        TrainMode::Extract => LAYERS.len(),
        TrainMode::Finetune => layer_index(&a.unfreeze_from)?,
    };
    let opts = bench::TrainStepOptions {
        split,
        batch: a.batch_size.max(1),
        size: a.size,
        steps: a.steps.max(1),
        from_images: a.cache != BenchCache::On,
        from_cache: a.cache != BenchCache::Off,
        compare: !a.no_compare,
    };
    let passes = bench::train_step(&loaded.model, &opts, |m| {
        if !quiet {
            eprintln!("{m}")
        }
    })?;
    let what = match a.mode {
        TrainMode::Extract => "extract (head only)".to_string(),
        TrainMode::Finetune => format!("finetune from {}", a.unfreeze_from),
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "mode": what, "device": crate::device::device_name(&device), "cpu": crate::bench::cpu_model(),
                "batch": a.batch_size, "size": a.size,
                "threads": rayon::current_num_threads(),
                "widths": loaded.model.widths(), "passes": passes,
                "precision": precision.precision.name(), "precision_kernel": precision.kernel,
            }))?
        );
        return Ok(0);
    }
    println!(
        "training step on {} ({}), {what}, batch {}, {}×{}, {} threads, widths {:?}, RMSprop, {} ({})",
        crate::device::device_name(&device),
        crate::bench::cpu_model(),
        a.batch_size,
        a.size,
        a.size,
        rayon::current_num_threads(),
        loaded.model.widths(),
        precision.precision.name(),
        precision.kernel
    );
    for p in &passes {
        println!(
            "{:<42} {:>8.3} s/step {:>9.1} images/s",
            p.name, p.seconds_per_step, p.images_per_s
        );
    }
    if let (Some(ours), Some(stock)) = (
        passes.iter().find(|p| p.name.contains("catdog conv")),
        passes.iter().find(|p| p.name.contains("stock")),
    ) {
        println!(
            "speed-up over candle's stock conv2d: {:.2}×",
            ours.images_per_s / stock.images_per_s
        );
    }
    Ok(0)
}

pub fn mlp(epochs: usize) -> Result<i32> {
    let s = bench::mlp(epochs.max(1))?;
    println!(
        "MLP 11-64-32-1, dropout 0.2, L2 1e-4, Adam, batch 32, {epochs} epochs on 10,000 rows, {} threads: {s:.2} s",
        rayon::current_num_threads()
    );
    Ok(0)
}

pub fn kernels(iters: usize, json: bool, quiet: bool) -> Result<i32> {
    let figures = crate::kernel_bench::kernels(iters.max(1), &mut |m| {
        if !quiet {
            eprintln!("{m}")
        }
    })?;
    if json {
        let report = serde_json::json!({
            "cpu": crate::bench::cpu_model(), "threads": rayon::current_num_threads(), "kernels": figures,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(0);
    }
    println!(
        "kernels on {} ({} threads; best of {iters})",
        crate::bench::cpu_model(),
        rayon::current_num_threads()
    );
    for f in &figures {
        let rate = f.gflops.map_or(String::new(), |g| format!("{g:>8.0} GFLOP/s"));
        println!(
            "{:<58} {:<12} {:>9.2} ms {rate}",
            f.kernel,
            f.precision,
            f.seconds * 1e3
        );
    }
    Ok(0)
}
