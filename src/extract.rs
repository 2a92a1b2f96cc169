//! "Fast feature extraction": run the conv base once over a set of images and keep a layer's output.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use rayon::prelude::*;

use crate::data::decode::{self, DecodeLimits, Interpolation};
use crate::data::folder::Inputs;
use crate::data::preprocess::{self, Preprocess};
use crate::error::{Error, Result};
use crate::model::vgg16::{Vgg16, LAYERS};

/// The K-th of N equal slices of an image list (`--shard K/N`, K from 1): contiguous, so that the shards of a
/// sorted list are sorted and their union is the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub k: usize,
    pub n: usize,
}

/// The most shards one image list may be cut into.
pub const MAX_SHARDS: usize = 100_000;

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let parsed = s
            .split_once('/')
            .and_then(|(k, n)| Some((k.trim().parse::<usize>().ok()?, n.trim().parse::<usize>().ok()?)));
        match parsed {
            Some((k, n)) if (1..=MAX_SHARDS).contains(&n) && (1..=n).contains(&k) => Ok(Shard { k, n }),
            _ => Err(format!(
                "expected K/N with 1 ≤ K ≤ N ≤ {MAX_SHARDS} (the K-th of N slices, e.g. 1/4 … 4/4; a Slurm array \
                 gives K as $SLURM_ARRAY_TASK_ID with --array=1-N, a Kubernetes Indexed Job as \
                 $((JOB_COMPLETION_INDEX+1)))"
            )),
        }
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

impl Shard {
    /// The indices of this shard in a list of `len` items: the sizes of the N slices differ by at most one.
    pub fn range(&self, len: usize) -> std::ops::Range<usize> {
        (self.k - 1) * len / self.n..self.k * len / self.n
    }

    /// This shard of `inputs` (files and labels; the class names and skipped files stay whole).
    pub fn of(&self, inputs: &Inputs) -> Inputs {
        let r = self.range(inputs.files.len());
        Inputs {
            files: inputs.files[r.clone()].to_vec(),
            labels: inputs.labels.as_ref().map(|l| l[r].to_vec()),
            classes: inputs.classes.clone(),
            skipped: inputs.skipped.clone(),
        }
    }
}

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

/// What an extraction wrote: the features' shape and which images they are, in input order.
#[derive(Debug)]
pub struct Extracted {
    /// `N × C × H × W` of the `features` tensor in the file.
    pub shape: [usize; 4],
    pub files: Vec<PathBuf>,
    pub labels: Option<Vec<usize>>,
    /// Files that could not be read, with the reason.
    pub bad: Vec<(PathBuf, String)>,
}

/// What the file records beside the features.
pub struct Provenance<'a> {
    /// The class names, when the inputs came from class folders.
    pub classes: Option<&'a [String]>,
    /// The weights, as `--weights` named them.
    pub weights: &'a str,
    /// The slice of the image list, when only one was extracted.
    pub shard: Option<Shard>,
}

/// Runs the base up to `opts.layer` over `inputs`, batch by batch (decoding in parallel), and writes the layer's
/// output to `path` as a safetensors file: `features` (f32, NCHW) with the file list, labels, classes and settings
/// in its metadata. The features go to a temporary file beside `path` batch by batch, so memory holds one batch
/// whatever the number of images; the file is then written atomically.
pub fn extract(
    model: &Vgg16,
    inputs: &Inputs,
    opts: &ExtractOptions,
    bar: &crate::progress::Progress,
    path: &Path,
    provenance: &Provenance,
) -> Result<Extracted> {
    let name = path
        .file_name()
        .map_or("features".into(), |n| n.to_string_lossy().into_owned());
    let spill = path.with_file_name(format!(".{name}.{}.values.tmp", std::process::id()));
    let result = extract_into(model, inputs, opts, bar, &spill).and_then(|ex| {
        let meta = metadata(&ex, opts, provenance)?;
        crate::io::write_f32_safetensors_from(path, "features", &ex.shape, meta, &spill)?;
        Ok(ex)
    });
    let _ = std::fs::remove_file(&spill);
    result
}

/// The extraction itself: features appended to `spill` as little-endian f32, batch by batch.
fn extract_into(
    model: &Vgg16,
    inputs: &Inputs,
    opts: &ExtractOptions,
    bar: &crate::progress::Progress,
    spill: &Path,
) -> Result<Extracted> {
    use std::io::Write;
    let device = model.device().clone();
    let mut out = std::io::BufWriter::new(std::fs::File::create(spill).map_err(|e| Error::io(spill, e))?);
    let mut shape: Option<[usize; 4]> = None;
    let mut files = Vec::new();
    let mut labels = inputs.labels.as_ref().map(|_| Vec::new());
    let mut bad = Vec::new();
    let idx: Vec<usize> = (0..inputs.files.len()).collect();
    for chunk in idx.chunks(opts.batch_size.max(1)) {
        let good = decode_batch(inputs, chunk, opts, &mut bad)?;
        bar.inc(chunk.len() as u64);
        if good.is_empty() {
            continue;
        }
        let imgs: Vec<&image::RgbImage> = good.iter().map(|(_, im)| im).collect();
        let x = preprocess::batch_tensor(&imgs, &opts.preprocess, &device)?;
        let y = model.forward_collect(&x, &[opts.layer])?.remove(0);
        let (n, c, h, w) = y.dims4()?;
        let s = shape.get_or_insert([0, c, h, w]);
        s[0] += n;
        let values = y
            .to_device(&Device::Cpu)?
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        out.write_all(&bytes).map_err(|e| Error::io(spill, e))?;
        for (i, _) in &good {
            files.push(inputs.files[*i].clone());
            if let (Some(l), Some(src)) = (labels.as_mut(), inputs.labels.as_ref()) {
                l.push(src[*i]);
            }
        }
    }
    out.flush().map_err(|e| Error::io(spill, e))?;
    let Some(shape) = shape else {
        return Err(Error::Data(format!(
            "none of the {} images could be read ({} bad); first: {}",
            inputs.files.len(),
            bad.len(),
            bad.first()
                .map(|(p, r)| format!("{}: {r}", p.display()))
                .unwrap_or_default()
        )));
    };
    Ok(Extracted {
        shape,
        files,
        labels,
        bad,
    })
}

/// Decodes the images `chunk` names (in parallel); the ones that fail go to `bad` (or end the run with `strict`).
fn decode_batch(
    inputs: &Inputs,
    chunk: &[usize],
    opts: &ExtractOptions,
    bad: &mut Vec<(PathBuf, String)>,
) -> Result<Vec<(usize, image::RgbImage)>> {
    let decoded: Vec<(usize, Result<image::RgbImage>)> = chunk
        .par_iter()
        .map(|&i| {
            let size = (opts.size, opts.size);
            (
                i,
                decode::load_resized(&inputs.files[i], size, opts.interpolation, &opts.limits),
            )
        })
        .collect();
    let mut good = Vec::new();
    for (i, r) in decoded {
        match r {
            Ok(img) => good.push((i, img)),
            Err(e) if opts.strict => return Err(e),
            Err(e) => bad.push((inputs.files[i].clone(), decode::decode_error_reason(&e))),
        }
    }
    Ok(good)
}

/// The safetensors metadata of an extraction (JSON strings).
fn metadata(ex: &Extracted, opts: &ExtractOptions, provenance: &Provenance) -> Result<HashMap<String, String>> {
    let mut meta = HashMap::new();
    let files: Vec<String> = ex.files.iter().map(|p| p.display().to_string()).collect();
    meta.insert("files".into(), serde_json::to_string(&files)?);
    if let Some(l) = &ex.labels {
        meta.insert("labels".into(), serde_json::to_string(l)?);
    }
    if let Some(c) = provenance.classes {
        meta.insert("classes".into(), serde_json::to_string(c)?);
    }
    meta.insert("layer".into(), LAYERS[opts.layer].name.to_string());
    meta.insert("size".into(), opts.size.to_string());
    meta.insert("interpolation".into(), serde_json::to_string(&opts.interpolation)?);
    meta.insert("preprocess".into(), serde_json::to_string(&opts.preprocess)?);
    meta.insert("precision".into(), opts.precision.name().into());
    meta.insert("weights".into(), provenance.weights.to_string());
    let bad: Vec<(String, String)> = ex
        .bad
        .iter()
        .map(|(p, r)| (p.display().to_string(), r.clone()))
        .collect();
    meta.insert("skipped".into(), serde_json::to_string(&bad)?);
    if let Some(shard) = provenance.shard {
        meta.insert("shard".into(), shard.to_string());
    }
    // Relative file names are relative to this folder; `finetune --features` resolves them against it.
    if let Ok(cwd) = std::env::current_dir() {
        meta.insert("cwd".into(), cwd.display().to_string());
    }
    meta.insert("catdog_version".into(), env!("CARGO_PKG_VERSION").into());
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::Shard;

    #[test]
    fn shards_cover_the_list_once_in_order_with_sizes_one_apart() {
        for len in [0, 1, 7, 100, 101] {
            for n in [1, 2, 3, 8] {
                let ranges: Vec<_> = (1..=n).map(|k| Shard { k, n }.range(len)).collect();
                let joined: Vec<usize> = ranges.iter().flat_map(|r| r.clone()).collect();
                assert_eq!(joined, (0..len).collect::<Vec<_>>(), "len {len}, n {n}");
                let sizes: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
                assert!(
                    sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
                    "{sizes:?}"
                );
            }
        }
    }

    #[test]
    fn a_shard_is_k_of_n_from_one() {
        assert_eq!("2/4".parse::<Shard>(), Ok(Shard { k: 2, n: 4 }));
        assert_eq!("1/1".parse::<Shard>().unwrap().to_string(), "1/1");
        for bad in ["0/4", "5/4", "1/0", "4", "a/b", "-1/3", "1/100001"] {
            let e = bad.parse::<Shard>().unwrap_err();
            assert!(e.contains("1 ≤ K ≤ N"), "{bad}: {e}");
        }
    }
}
