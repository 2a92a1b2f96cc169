# The step runner of the device checks (scripts/gpu_check.sh, scripts/amx_check.sh), sourced by both: a lent
# machine's lease is short, so one run should tell everything. `step NAME CMD…` prints the command, runs it with
# its output also in "$out/NAME.log", and on failure says so and adds NAME to `failed` instead of stopping; the
# script reports `failed` at its end. Needs `out` set and `set -o pipefail` (so that tee does not hide the
# command's status).
failed=()
step() {
  local name=$1
  shift
  echo "== $name: $*"
  if ! "$@" 2>&1 | tee "$out/$name.log"; then
    echo "== $name FAILED"
    failed+=("$name")
  fi
}
