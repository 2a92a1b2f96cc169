//! The `catdog` binary: the command-line layer lives in `catdog::app` (shared with the Python extension).

fn main() {
    catdog::app::main()
}
