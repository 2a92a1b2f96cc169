use crate::data::decode::DecodeLimits;
use crate::data::folder::collect_inputs;
use crate::extract::{self, ExtractOptions};
use crate::model::vgg16::layer_index;
use anyhow::{bail, Context, Result};

use crate::app::cli::ExtractArgs;

pub fn run(a: ExtractArgs, quiet: bool) -> Result<i32> {
    super::usage_check(crate::limits::check_size(a.size))?;
    super::usage_check(crate::limits::check_batch(a.batch_size))?;
    let layer = layer_index(&a.layer)?;
    let all = collect_inputs(&a.inputs)?;
    let inputs = match a.shard {
        Some(shard) => {
            let part = shard.of(&all);
            if part.files.is_empty() {
                bail!(crate::app::UsageError(format!(
                    "--shard {shard}: the {} images leave slice {} of {} empty; use at most {} shards",
                    all.files.len(),
                    shard.k,
                    shard.n,
                    all.files.len()
                )));
            }
            part
        }
        None => all,
    };
    let loaded = super::load_weights(&a.w, quiet)?;
    let opts = ExtractOptions {
        layer,
        size: a.size,
        interpolation: a.interpolation,
        preprocess: loaded.preprocess,
        batch_size: a.batch_size.max(1),
        limits: DecodeLimits::default(),
        strict: a.strict,
        precision: loaded.model.precision(),
    };
    super::check_forward_memory("extract", &loaded.model, a.size, opts.batch_size)?;
    let bar = crate::progress::bar(inputs.files.len() as u64, "extract", "images", quiet);
    let provenance = extract::Provenance {
        classes: inputs.classes.as_deref(),
        weights: &loaded.spec.describe(),
        shard: a.shard,
    };
    let ex = extract::extract(&loaded.model, &inputs, &opts, &bar, &a.out, &provenance)
        .with_context(|| format!("writing {}", a.out.display()))?;
    bar.finish_and_clear();
    let dims = ex.shape;
    eprintln!(
        "wrote {}: features {:?} ({} images{}, layer {}, {})",
        a.out.display(),
        dims,
        ex.files.len(),
        a.shard.map_or(String::new(), |s| format!(", shard {s}")),
        a.layer,
        opts.preprocess.describe()
    );
    super::report_skipped(&inputs.skipped);
    if !ex.bad.is_empty() {
        eprintln!(
            "skipped {} unreadable images (listed in the file's metadata under 'skipped'):",
            ex.bad.len()
        );
        for (p, r) in ex.bad.iter().take(10) {
            eprintln!("  {}: {r}", p.display());
        }
        if ex.bad.len() > 10 {
            eprintln!("  … and {} more", ex.bad.len() - 10);
        }
    }
    Ok(0)
}
