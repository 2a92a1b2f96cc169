//! Per-epoch metrics, written as `history.csv` and `history.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// One epoch. `loss`/`val_loss` include the L1/L2 penalty as Keras reports them; `data_loss`/`val_data_loss`
/// are the cross-entropy alone and `penalty` the regularization term.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    pub loss: f64,
    pub data_loss: f64,
    pub penalty: f64,
    pub accuracy: f64,
    pub val_loss: Option<f64>,
    pub val_data_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub lr: f64,
    pub seconds: f64,
    pub images_per_s: f64,
}

/// Named figures of one epoch, for TensorBoard.
pub type Figures = Vec<(&'static str, f64)>;

impl EpochRecord {
    /// The epoch's figures as TensorBoard shows them for a Keras run (`epoch_<name>`): the training side
    /// (`loss`, `accuracy`, `learning_rate`, and the other history columns) and the validation side (`loss`,
    /// `accuracy`, `data_loss`, without their `val_` prefix).
    pub fn board_figures(&self) -> (Figures, Figures) {
        let train = vec![
            ("loss", self.loss),
            ("accuracy", self.accuracy),
            ("learning_rate", self.lr),
            ("data_loss", self.data_loss),
            ("penalty", self.penalty),
            ("seconds", self.seconds),
            ("images_per_s", self.images_per_s),
        ];
        let validation = [
            ("loss", self.val_loss),
            ("accuracy", self.val_accuracy),
            ("data_loss", self.val_data_loss),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.map(|v| (name, v)))
        .collect();
        (train, validation)
    }

    /// A metric by its Keras name.
    pub fn metric(&self, name: &str) -> Option<f64> {
        match name {
            "loss" => Some(self.loss),
            "data_loss" => Some(self.data_loss),
            "accuracy" | "acc" => Some(self.accuracy),
            "val_loss" => self.val_loss,
            "val_data_loss" => self.val_data_loss,
            "val_accuracy" | "val_acc" => self.val_accuracy,
            "penalty" => Some(self.penalty),
            _ => None,
        }
    }
}

/// Metric names that `--monitor` accepts.
pub const MONITORABLE: [&str; 6] = [
    "val_loss",
    "val_accuracy",
    "loss",
    "accuracy",
    "val_data_loss",
    "data_loss",
];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub epochs: Vec<EpochRecord>,
}

impl History {
    pub fn csv(&self) -> String {
        let mut s = String::from(
            "epoch,loss,data_loss,penalty,accuracy,val_loss,val_data_loss,val_accuracy,lr,seconds,images_per_s\n",
        );
        let o = |v: Option<f64>| v.map(|v| format!("{v:.6}")).unwrap_or_default();
        for e in &self.epochs {
            s.push_str(&format!(
                "{},{:.6},{:.6},{:.6},{:.6},{},{},{},{:e},{:.3},{:.2}\n",
                e.epoch,
                e.loss,
                e.data_loss,
                e.penalty,
                e.accuracy,
                o(e.val_loss),
                o(e.val_data_loss),
                o(e.val_accuracy),
                e.lr,
                e.seconds,
                e.images_per_s
            ));
        }
        s
    }

    /// Writes `history.csv` and `history.json` into `dir` (atomically).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let paths = crate::run::RunPaths::new(dir);
        crate::io::atomic_write(&paths.history_csv(), self.csv().as_bytes())?;
        crate::io::write_json(&paths.history_json(), self)
    }

    pub fn read(dir: &Path) -> Result<Self> {
        let p = crate::run::RunPaths::new(dir).history_json();
        let s = std::fs::read_to_string(&p).map_err(|e| crate::Error::io(&p, e))?;
        Ok(serde_json::from_str(&s)?)
    }
}
