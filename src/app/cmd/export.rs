//! `catdog export`.

use anyhow::{Context, Result};

use crate::app::cli::{ExportArgs, ExportFormat};

pub fn run(a: ExportArgs) -> Result<i32> {
    let (exported, json) = export(&a)?;
    if a.json {
        println!("{json}");
    } else {
        eprintln!(
            "wrote {} (ONNX opset {}: {} nodes, {} parameters, {:.1} MB); input `pixels` float32 N×3×size×size RGB \
             0–255, output `probabilities`",
            a.out.display(),
            crate::export::onnx::OPSET,
            exported.nodes,
            exported.parameters,
            exported.bytes as f64 / 1e6
        );
    }
    Ok(0)
}

/// Writes the export; what `--json` prints.
pub fn export(a: &ExportArgs) -> Result<(crate::export::onnx::Exported, serde_json::Value)> {
    let ExportFormat::Onnx = a.format;
    let exported = crate::export::onnx::export(&a.checkpoint, &a.out)
        .with_context(|| format!("exporting {} to {}", a.checkpoint.display(), a.out.display()))?;
    let json = serde_json::json!({
        "out": a.out, "format": "onnx", "opset": crate::export::onnx::OPSET,
        "nodes": exported.nodes, "parameters": exported.parameters, "bytes": exported.bytes,
    });
    Ok((exported, json))
}
