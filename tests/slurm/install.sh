#!/usr/bin/env bash
# Installs what the SLURM tests (tests/slurm, pytest -m slurm) need:
#   - Debian packages: slurmctld slurmd slurm-client munge (needs root, apt)
#   - the Snakemake SLURM executor plugin, pinned in tests/slurm/requirements.txt,
#     into $PYTHON, else the project's .venv/bin/python if it exists (else skipped)
# The test fixture itself installs nothing and skips where these are missing.
# Nothing is configured or started here: the fixture writes its own slurm.conf and
# munge key into a temporary directory and runs its own daemons.
#
# Usage: tests/slurm/install.sh [--no-apt] [--no-pip]
# Measured on Debian 12 (SLURM 22.05.8): apt-get update + install ~15 s with a
# near mirror, plugin ~5 s.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
do_apt=1
do_pip=1
for arg in "$@"; do
  case "$arg" in
    --no-apt) do_apt=0 ;;
    --no-pip) do_pip=0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

have_all() {
  for tool in munged slurmctld slurmd sbatch srun squeue sinfo scontrol scancel; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || return 1
  done
}

if [ "$do_apt" = 1 ]; then
  if have_all; then
    echo "slurm: packages already installed (slurmd $(dpkg-query -W -f="\${Version}" slurmd 2>/dev/null || echo "?"))"
  elif [ "$(id -u)" != 0 ]; then
    echo "slurm: not root, cannot apt-get install; the slurm tests will skip" >&2
  else
    start=$(date +%s)
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # --no-install-recommends: the recommends are ~20 optional plugin and -dev
    # packages (hdf5, influxdb, ...) that the tests do not use.
    apt-get install -y -qq --no-install-recommends \
      slurmctld slurmd slurm-client munge >/dev/null
    echo "slurm: installed slurmd $(dpkg-query -W -f="\${Version}" slurmd) in $(( $(date +%s) - start ))s"
  fi
fi

if [ "$do_pip" = 1 ]; then
  py="${PYTHON:-}"
  if [ -z "$py" ] && [ -x "$repo/.venv/bin/python" ]; then py="$repo/.venv/bin/python"; fi
  if [ -z "$py" ]; then
    echo "slurm: no .venv yet and no \$PYTHON: executor plugin not installed" \
         "(pip install -r tests/slurm/requirements.txt); its tests will skip" >&2
  else
    "$py" -m pip install -q -r "$here/requirements.txt"
    "$py" -m pip show snakemake-executor-plugin-slurm | sed -n 's/^Version: /slurm: executor plugin /p'
  fi
fi
