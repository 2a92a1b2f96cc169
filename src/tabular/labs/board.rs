//! A lab's variants as TensorBoard runs (`lab --tensorboard DIR`): `DIR/<lab>/<variant>/train` and
//! `…/validation`, the first seed's epochs as Keras logs them, so that TensorBoard overlays the variants.

use std::path::Path;

use super::LabResult;
use crate::error::Result;
use crate::tensorboard::RunBoard;

/// A folder name for a variant ("λ = 0.1" → "λ_0.1"): letters, digits, `.`, `-`; any other run of characters
/// becomes one `_`; a name of dots alone (`..`) becomes `variant`.
fn folder_name(variant: &str) -> String {
    let mut out = String::new();
    for c in variant.chars() {
        if c.is_alphanumeric() || c == '.' || c == '-' {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let trimmed = out.trim_matches('_');
    if trimmed.chars().all(|c| c == '.') {
        "variant".into()
    } else {
        trimmed.to_string()
    }
}

/// Writes every variant of `r` under `dir/<lab>/`: per epoch `epoch_loss`, `epoch_<metric>` (accuracy or mse) and
/// `epoch_data_loss`, training and validation, at step = epoch from 0; the lab's table as text.
pub fn write(dir: &Path, r: &LabResult) -> Result<()> {
    let table = r.markdown();
    for v in &r.variants {
        let mut board = RunBoard::create(&dir.join(&r.lab).join(folder_name(&v.variant)))?;
        board.text("lab", 0, &table)?;
        for row in &v.history {
            let metric = r.metric.as_str();
            let train = [("loss", row.loss), (metric, row.metric), ("data_loss", row.data_loss)];
            let validation = [
                ("loss", row.val_loss),
                (metric, row.val_metric),
                ("data_loss", row.val_data_loss),
            ];
            board.epoch(row.epoch.saturating_sub(1), &train, &validation)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::folder_name;

    #[test]
    fn variant_names_become_plain_folder_names() {
        assert_eq!(folder_name("λ = 0.1"), "λ_0.1");
        assert_eq!(folder_name("dropout 0.5 (regression)"), "dropout_0.5_regression");
        assert_eq!(folder_name("../x"), ".._x");
        assert_eq!(folder_name(".."), "variant");
        assert_eq!(folder_name("///"), "variant");
    }
}
