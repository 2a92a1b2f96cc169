//! One function per subcommand.

mod bench;
mod extract;
mod weights;

use anyhow::Result;

use crate::cli::{BenchCmd, Cli, Command};

/// Runs the parsed command; returns the exit code.
pub fn run(cli: Cli) -> Result<i32> {
    let quiet = cli.quiet;
    match cli.command {
        Command::Weights(c) => weights::run(c, quiet),
        Command::Extract(a) => extract::run(a, quiet),
        Command::Bench(BenchCmd::Forward(a)) => bench::forward(a, quiet),
    }
}

/// Loads the weights named by the common flags, with the preprocessing resolved (flag over the weights' own).
pub fn load_weights(w: &crate::cli::WeightsFlag, quiet: bool) -> Result<catdog::model::weights::LoadedWeights> {
    use anyhow::Context;
    use catdog::data::preprocess::Preprocess;
    use catdog::model::weights::{self, HubOptions, WeightsSpec};
    let device = catdog::device::parse_device(&w.device)?;
    let spec = WeightsSpec::parse(&w.weights, w.seed)?;
    let opts = HubOptions {
        progress: !quiet && HubOptions::default().progress,
        ..HubOptions::default()
    };
    let mut loaded =
        weights::load(&spec, &device, &opts).with_context(|| format!("loading weights {}", spec.describe()))?;
    if let Some(mode) = w.preprocess {
        loaded.preprocess = Preprocess::from_mode(mode);
    }
    Ok(loaded)
}
