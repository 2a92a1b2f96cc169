//! What the Python API calls: a command line, parsed by the same flags as the binary's, run in this process, its
//! result as the JSON its `--json` output has (or, for commands that write files, where they went). Flags, errors
//! and behaviour are the command line's; only the printing of results is left to the caller.

use std::ffi::OsString;

use serde_json::{json, Value};

use super::cli::Command;
use super::{cmd, parse, setup, UsageError};

/// Runs `args` (the program name first, e.g. `["catdog", "evaluate", "--checkpoint", …]`) and returns its result:
/// - `finetune`: `{"run_dir": …}` (a stopped run is the error `Interrupted`, after `last.safetensors` is written);
/// - `evaluate`: what `evaluate --json` prints; `predict`: the list of `predict --json` lines;
/// - `lab`: `{"results": [results.json of each lab]}`; `info`: what `info --json` prints;
/// - `export`: what `export --json` prints; `lr-find`: what `lr-find --json` prints; `course`: `{"out": …, "recipes": [report.json's rows]}`;
/// - any other command: `{"code": exit code}`.
pub fn call(args: Vec<OsString>) -> anyhow::Result<Value> {
    let (cli, explicit) = parse(args).map_err(|e| UsageError(e.render().to_string().trim_end().to_string()))?;
    setup(&cli)?;
    let quiet = cli.quiet;
    Ok(match cli.command {
        Command::Finetune(a) => {
            let (code, dir) = cmd::finetune::train(*a, quiet, &explicit)?;
            if code >= 128 {
                return Err(crate::Error::Interrupted.into());
            }
            json!({ "run_dir": dir })
        }
        Command::Evaluate(a) => serde_json::to_value(cmd::evaluate::compute(&a, quiet)?)?,
        Command::Predict(a) => Value::Array(cmd::evaluate::predictions(&a, quiet)?.0),
        Command::Lab(a) => {
            let results: Vec<_> = cmd::lab::result_dirs(&a)
                .iter()
                .map(|d| d.join("results.json"))
                .collect();
            cmd::lab::run_printing(*a, quiet, false)?;
            json!({ "results": results })
        }
        Command::Info { .. } => serde_json::to_value(crate::info::gather())?,
        Command::Export(a) => cmd::export::export(&a)?.1,
        Command::LrFind(a) => serde_json::to_value(cmd::lr_find::find_and_plot(&a, quiet, &explicit)?)?,
        Command::Course(a) => {
            let rows = cmd::course::run_recipes(&a, quiet)?;
            json!({ "out": a.out, "recipes": rows })
        }
        command => {
            let code = cmd::run(super::cli::Cli { command, ..cli }, &explicit)?;
            json!({ "code": code })
        }
    })
}
