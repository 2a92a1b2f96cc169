//! "Fast feature extraction": run the conv base once over a set of images and keep a layer's output.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use crate::data::decode::{self, DecodeLimits, Interpolation};
use crate::data::folder::Inputs;
use crate::data::preprocess::{self, Preprocess};
use crate::error::{Error, Result};
use crate::model::vgg16::{Vgg16, LAYERS};

/// What to extract and how to read the images.
#[derive(Debug, Clone)]
pub struct ExtractOptions {
    /// Layer index into [`LAYERS`].
    pub layer: usize,
    /// Square input size in pixels.
    pub size: u32,
    pub interpolation: Interpolation,
    pub preprocess: Preprocess,
    pub batch_size: usize,
    pub limits: DecodeLimits,
    /// Fail on the first bad image instead of skipping it.
    pub strict: bool,
    /// The precision the base ran in (recorded in the metadata; the model carries it).
    pub precision: crate::kernels::Precision,
}

/// Features of the images that decoded, in input order.
#[derive(Debug)]
pub struct Extracted {
    /// `N × C × H × W`, on the CPU.
    pub features: Tensor,
    pub files: Vec<PathBuf>,
    pub labels: Option<Vec<usize>>,
    /// Files that could not be read, with the reason.
    pub bad: Vec<(PathBuf, String)>,
}

/// Runs the base up to `opts.layer` over `inputs`, batch by batch (decoding in parallel).
pub fn extract(
    model: &Vgg16,
    inputs: &Inputs,
    opts: &ExtractOptions,
    bar: &crate::progress::Progress,
) -> Result<Extracted> {
    let device = model.device().clone();
    let mut feats: Vec<Tensor> = Vec::new();
    let mut files = Vec::new();
    let mut labels = inputs.labels.as_ref().map(|_| Vec::new());
    let mut bad = Vec::new();
    let idx: Vec<usize> = (0..inputs.files.len()).collect();
    for chunk in idx.chunks(opts.batch_size.max(1)) {
        let decoded: Vec<(usize, Result<image::RgbImage>)> = chunk
            .par_iter()
            .map(|&i| {
                (
                    i,
                    decode::load_resized(
                        &inputs.files[i],
                        (opts.size, opts.size),
                        opts.interpolation,
                        &opts.limits,
                    ),
                )
            })
            .collect();
        let mut good = Vec::new();
        for (i, r) in decoded {
            match r {
                Ok(img) => good.push((i, img)),
                Err(e) => {
                    if opts.strict {
                        return Err(e);
                    }
                    bad.push((inputs.files[i].clone(), decode::decode_error_reason(&e)));
                }
            }
        }
        bar.inc(chunk.len() as u64);
        if good.is_empty() {
            continue;
        }
        let imgs: Vec<&image::RgbImage> = good.iter().map(|(_, im)| im).collect();
        let x = preprocess::batch_tensor(&imgs, &opts.preprocess, &device)?;
        let y = model.forward_collect(&x, &[opts.layer])?.remove(0);
        feats.push(y.to_device(&Device::Cpu)?);
        for (i, _) in &good {
            files.push(inputs.files[*i].clone());
            if let (Some(l), Some(src)) = (labels.as_mut(), inputs.labels.as_ref()) {
                l.push(src[*i]);
            }
        }
    }
    if feats.is_empty() {
        return Err(Error::Data(format!(
            "none of the {} images could be read ({} bad); first: {}",
            inputs.files.len(),
            bad.len(),
            bad.first()
                .map(|(p, r)| format!("{}: {r}", p.display()))
                .unwrap_or_default()
        )));
    }
    Ok(Extracted {
        features: Tensor::cat(&feats, 0)?,
        files,
        labels,
        bad,
    })
}

/// Writes the features as `features` (f32, NCHW) with the file list, labels, classes and settings in the
/// safetensors metadata (JSON strings).
pub fn save(
    path: &Path,
    ex: &Extracted,
    classes: Option<&[String]>,
    opts: &ExtractOptions,
    weights: &str,
) -> Result<()> {
    let mut meta = HashMap::new();
    let files: Vec<String> = ex.files.iter().map(|p| p.display().to_string()).collect();
    meta.insert("files".into(), serde_json::to_string(&files)?);
    if let Some(l) = &ex.labels {
        meta.insert("labels".into(), serde_json::to_string(l)?);
    }
    if let Some(c) = classes {
        meta.insert("classes".into(), serde_json::to_string(c)?);
    }
    meta.insert("layer".into(), LAYERS[opts.layer].name.to_string());
    meta.insert("size".into(), opts.size.to_string());
    meta.insert("interpolation".into(), serde_json::to_string(&opts.interpolation)?);
    meta.insert("preprocess".into(), serde_json::to_string(&opts.preprocess)?);
    meta.insert("precision".into(), opts.precision.name().into());
    meta.insert("weights".into(), weights.to_string());
    let bad: Vec<(String, String)> = ex
        .bad
        .iter()
        .map(|(p, r)| (p.display().to_string(), r.clone()))
        .collect();
    meta.insert("skipped".into(), serde_json::to_string(&bad)?);
    meta.insert("catdog_version".into(), env!("CARGO_PKG_VERSION").into());
    crate::io::write_safetensors(path, &[("features".to_string(), ex.features.clone())], meta)
}
