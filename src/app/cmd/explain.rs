//! `catdog explain`: Grad-CAM maps of images, as overlays or JSON lines.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::app::cli::ExplainArgs;
use crate::data::decode::{self, DecodeLimits};
use crate::data::folder::collect_inputs;
use crate::explain::{gradcam, overlay};
use crate::kernels::PrecisionChoice;
use crate::model::classifier::Classifier;
use crate::model::vgg16::layer_index;

/// Images per Grad-CAM pass.
const BATCH: usize = 8;

pub fn run(a: ExplainArgs, quiet: bool) -> Result<i32> {
    let layer = layer_index(&a.layer)?;
    let inputs = collect_inputs(&a.inputs)?;
    let model = super::evaluate::open_checkpoint(&a.checkpoint, &a.device, a.kernels, PrecisionChoice::Fp32, true)?;
    let class = match &a.class {
        Some(name) => Some(model.meta.classes.iter().position(|c| c == name).ok_or_else(|| {
            crate::app::UsageError(format!(
                "--class {name}: the checkpoint's classes are {}",
                model.meta.classes.join(", ")
            ))
        })?),
        None => None,
    };
    if !a.json {
        std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    }
    let bar = crate::progress::bar(inputs.files.len() as u64, "explain", "images", quiet);
    let mut cells = Vec::new();
    for chunk in inputs.files.chunks(BATCH) {
        for (path, result) in explain_batch(&model, chunk, layer, class) {
            match result {
                Ok((_, cam)) if a.json => println!("{}", json_line(&model, &path, &a.layer, &cam)),
                Ok((image, cam)) => cells.push(write_overlay(&model, &a, &path, &image, &cam)?),
                Err(e) => eprintln!("{}: {e}", path.display()),
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    if cells.len() > 1 {
        let title = format!("Grad-CAM at {} ({})", a.layer, a.checkpoint.display());
        crate::plot::save_png(&a.out.join("grid.png"), &overlay::grid(cells, 4, &title)?)?;
    }
    if !a.json {
        eprintln!(
            "wrote {} (one overlay per image{})",
            a.out.display(),
            if inputs.files.len() > 1 { ", grid.png" } else { "" }
        );
    }
    Ok(0)
}

type Explained = (PathBuf, Result<(image::RgbImage, gradcam::Cam)>);

/// The resized images of `files` and their maps; an image that cannot be read is an error of its own.
fn explain_batch(model: &Classifier, files: &[PathBuf], layer: usize, class: Option<usize>) -> Vec<Explained> {
    let meta = &model.meta;
    let size = (meta.size, meta.size);
    let decoded: Vec<_> = files
        .iter()
        .map(|p| decode::load_resized(p, size, meta.interpolation, &DecodeLimits::default()))
        .collect();
    let good: Vec<&image::RgbImage> = decoded.iter().filter_map(|r| r.as_ref().ok()).collect();
    let cams = (|| -> Result<Vec<gradcam::Cam>> {
        if good.is_empty() {
            return Ok(Vec::new());
        }
        let x = crate::data::preprocess::batch_tensor(&good, &meta.preprocess, model.base.device())?;
        Ok(gradcam::gradcam(model, &x, layer, class)?)
    })();
    let mut cams = match cams {
        Ok(c) => c.into_iter(),
        Err(e) => {
            return files
                .iter()
                .map(|p| (p.clone(), Err(anyhow::anyhow!("{e:#}"))))
                .collect()
        }
    };
    files
        .iter()
        .zip(decoded)
        .map(|(p, d)| {
            let r = match d {
                Ok(img) => Ok((img, cams.next().expect("one map per readable image"))),
                Err(e) => Err(anyhow::anyhow!("{}", decode::decode_error_reason(&e))),
            };
            (p.clone(), r)
        })
        .collect()
}

fn json_line(model: &Classifier, path: &Path, layer: &str, cam: &gradcam::Cam) -> String {
    serde_json::json!({
        "path": path, "class": model.meta.classes[cam.class], "probability": cam.probability, "layer": layer,
        "cam": cam.map,
    })
    .to_string()
}

/// Writes `OUT/<file stem>.png` and returns its cell for the grid.
fn write_overlay(
    model: &Classifier,
    a: &ExplainArgs,
    path: &Path,
    image: &image::RgbImage,
    cam: &gradcam::Cam,
) -> Result<(image::RgbImage, Vec<String>)> {
    let picture = overlay::overlay(image, &cam.map);
    let caption = format!("{} {:.3}", model.meta.classes[cam.class], cam.probability);
    let stem = path
        .file_stem()
        .map_or("image".into(), |s| s.to_string_lossy().into_owned());
    let single = overlay::grid(vec![(picture.clone(), vec![caption.clone()])], 1, &a.layer)?;
    crate::plot::save_png(&a.out.join(format!("{stem}.png")), &single)?;
    let name = path
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    Ok((picture, vec![name, caption]))
}
