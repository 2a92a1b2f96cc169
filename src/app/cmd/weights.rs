use crate::model::vgg16::{layer_index, tensor_names, LAYERS};
use crate::model::weights::{self, HubOptions, RepoKind, WeightsSpec, CONFIG_FILE, WEIGHTS_FILE};
use anyhow::{Context, Result};

use crate::app::cli::WeightsCmd;

pub fn run(cmd: WeightsCmd, quiet: bool) -> Result<i32> {
    match cmd {
        WeightsCmd::Fetch { id } => fetch(&id, quiet),
        WeightsCmd::Inspect {
            weights,
            weights_flag,
            unfreeze_from,
            json,
        } => {
            let weights = weights
                .or(weights_flag)
                .unwrap_or_else(|| weights::DEFAULT_MODEL.to_string());
            inspect(&weights, unfreeze_from.as_deref(), json, quiet)
        }
    }
}

fn fetch(id: &str, quiet: bool) -> Result<i32> {
    let spec = WeightsSpec::parse(id, 0)?;
    let WeightsSpec::Hub { repo, revision } = spec else {
        anyhow::bail!(
            "`weights fetch` takes a hub model id such as {}, not '{id}'",
            weights::DEFAULT_MODEL
        );
    };
    let opts = HubOptions {
        progress: !quiet,
        ..HubOptions::from_env()?
    };
    let (path, commit) = weights::hub_file(RepoKind::Model, &repo, revision.as_deref(), WEIGHTS_FILE, &opts)?;
    // The config (mean/std) is optional: not every repository has one.
    let config = weights::hub_file(RepoKind::Model, &repo, revision.as_deref(), CONFIG_FILE, &opts).ok();
    // Check that the file really is a VGG16 conv base before saying it is ready.
    let conv = weights::read_safetensors_where(&path, |n| n.starts_with("features."))?;
    crate::model::vgg16::Vgg16::from_tensors(&conv.tensors, &path.display().to_string(), &candle_core::Device::Cpu)
        .context("the downloaded file is not a VGG16 conv base")?;
    println!("{}", path.display());
    if !quiet {
        eprintln!(
            "{repo}{}: weights in {}{}",
            commit.map(|c| format!(" (commit {c})")).unwrap_or_default(),
            path.display(),
            config
                .map(|(p, _)| format!(", config in {}", p.display()))
                .unwrap_or_default()
        );
    }
    Ok(0)
}

#[derive(serde::Serialize)]
struct LayerRow {
    layer: &'static str,
    tensor: Option<String>,
    shape: Vec<usize>,
    params: usize,
    trainable: bool,
}

fn inspect(w: &str, unfreeze_from: Option<&str>, json: bool, quiet: bool) -> Result<i32> {
    let spec = WeightsSpec::parse(w, 0)?;
    let opts = HubOptions {
        progress: !quiet,
        ..HubOptions::from_env()?
    };
    let mut loaded = weights::load(&spec, &candle_core::Device::Cpu, &opts)?;
    let split = match unfreeze_from {
        Some(name) => layer_index(name)?,
        None => LAYERS.len(),
    };
    loaded.model.set_trainable_from(split)?;
    let named: std::collections::HashMap<String, candle_core::Tensor> =
        loaded.model.named_tensors().into_iter().collect();
    let mut rows = Vec::new();
    for (i, spec_l) in LAYERS.iter().enumerate() {
        if spec_l.is_conv {
            let (wn, bn) = tensor_names(spec_l);
            let (wt, bt) = (&named[&wn], &named[&bn]);
            rows.push(LayerRow {
                layer: spec_l.name,
                tensor: Some(format!("features.{}", spec_l.index)),
                shape: wt.dims().to_vec(),
                params: wt.elem_count() + bt.elem_count(),
                trainable: i >= split,
            });
        } else {
            rows.push(LayerRow {
                layer: spec_l.name,
                tensor: None,
                shape: vec![],
                params: 0,
                trainable: false,
            });
        }
    }
    let blocks = loaded.model.param_counts();
    let total: usize = blocks.iter().map(|b| b.params).sum();
    let trainable: usize = blocks.iter().map(|b| b.trainable).sum();
    let ignored = &loaded.ignored;
    if json {
        let out = serde_json::json!({
            "weights": spec.describe(),
            "path": loaded.path.as_ref().map(|p| p.display().to_string()),
            "revision": loaded.revision,
            "preprocess": loaded.preprocess,
            "widths": loaded.model.widths(),
            "layers": rows,
            "blocks": blocks,
            "total_params": total,
            "trainable_params": trainable,
            "unfreeze_from": unfreeze_from,
            "ignored_tensors": ignored,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    println!("weights: {}", spec.describe());
    if let Some(p) = &loaded.path {
        println!("file:    {}", p.display());
    }
    println!("preprocessing: {}", loaded.preprocess.describe());
    println!();
    println!(
        "{:<14} {:<12} {:<18} {:>12}  trainable",
        "layer", "tensor", "shape", "params"
    );
    for r in &rows {
        let shape = if r.shape.is_empty() {
            "max-pool 2×2/2".to_string()
        } else {
            format!("{:?}", r.shape)
        };
        println!(
            "{:<14} {:<12} {:<18} {:>12}  {}",
            r.layer,
            r.tensor.as_deref().unwrap_or("-"),
            shape,
            group(r.params),
            if r.tensor.is_none() {
                ""
            } else if r.trainable {
                "yes"
            } else {
                "no"
            }
        );
    }
    println!();
    println!("{:<8} {:>12} {:>12}", "block", "params", "trainable");
    for b in &blocks {
        println!("block{:<3} {:>12} {:>12}", b.block, group(b.params), group(b.trainable));
    }
    println!("{:<8} {:>12} {:>12}", "total", group(total), group(trainable));
    if !ignored.is_empty() {
        println!("\nignored (not part of the conv base): {}", ignored.join(", "));
    }
    Ok(0)
}

/// 14714688 → "14,714,688".
pub fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
