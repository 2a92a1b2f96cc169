use crate::data::augment::Transform;
use crate::data::decode::{self, DecodeLimits};
use crate::data::preview;
use anyhow::{Context, Result};

use crate::app::cli::{ApplyArgs, PreviewArgs};

pub fn preview(a: PreviewArgs, quiet: bool) -> Result<i32> {
    let aug = super::augment_config(&a.aug)?;
    super::usage_check(crate::limits::check_size(a.img.size))?;
    if a.n == 0 || a.n > super::MAX_PREVIEW_VERSIONS {
        return Err(crate::app::UsageError(format!(
            "--n {} is out of range: use 1..={} versions per image",
            a.n,
            super::MAX_PREVIEW_VERSIONS
        ))
        .into());
    }
    let sources = match &a.data {
        Some(dir) => preview::pick_sources(dir, a.samples.max(1), a.seed)?,
        None => a
            .image
            .iter()
            .map(|p| {
                let class = p
                    .parent()
                    .and_then(|d| d.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (p.clone(), class)
            })
            .collect(),
    };
    if aug.is_identity() && !quiet {
        eprintln!("note: no augmentation flag given, so every version equals the original; try --augment or --shear 10 --zoom 0.2");
    }
    let (grid, bad) = preview::preview(&sources, &aug, a.n, a.img.size, a.img.interpolation, a.seed)?;
    crate::plot::save_png(&a.out, &grid).with_context(|| format!("writing {}", a.out.display()))?;
    for (p, r) in &bad {
        eprintln!("skipped {}: {r}", p.display());
    }
    eprintln!(
        "wrote {} ({}×{}, {} images × {} versions)",
        a.out.display(),
        grid.width(),
        grid.height(),
        sources.len() - bad.len(),
        a.n
    );
    Ok(0)
}

pub fn apply(a: ApplyArgs) -> Result<i32> {
    let (zx, zy) = super::parse_pair(&a.zoom, "--zoom")?;
    if zx <= 0.0 || zy <= 0.0 {
        anyhow::bail!("--zoom {}: factors must be positive", a.zoom);
    }
    let (rows, cols) = super::parse_pair(&a.shift, "--shift")?;
    if !a.shift.contains(',') {
        anyhow::bail!("--shift {}: give ROWS,COLS (e.g. --shift -4,6)", a.shift);
    }
    let t = Transform {
        rotation: a.rotation,
        shift_rows: rows,
        shift_cols: cols,
        shear: a.shear,
        zx,
        zy,
        flip_horizontal: a.flip,
        flip_vertical: a.vflip,
        brightness: a.brightness,
        fill_mode: a.fill_mode,
        cval: a.cval,
        ..Default::default()
    };
    let mut img = decode::decode_rgb(&a.image, &DecodeLimits::default())?;
    if let Some(s) = a.size {
        super::usage_check(crate::limits::check_size(s))?;
        img = decode::resize(&img, s, s, a.interpolation);
    }
    let out = preview::apply_to_image(&img, &t);
    crate::plot::save_png(&a.out, &out).with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!(
        "wrote {} ({}×{}): {}",
        a.out.display(),
        out.width(),
        out.height(),
        t.label()
    );
    Ok(0)
}
