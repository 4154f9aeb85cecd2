#!/usr/bin/env bash
# Installs the Debian 12 packages mpmux needs to build, test, fuzz, lint and benchmark; only the missing
# ones, so a second run changes nothing.
set -euo pipefail

packages=(
  g++ cmake make pkg-config git ccache
  openmpi-bin libopenmpi-dev
  libboost-mpi-dev libboost-serialization-dev
  libhdf5-dev hdf5-tools
  libgtest-dev libgmock-dev
  libcli11-dev nlohmann-json3-dev
  libcurl4-openssl-dev libssl-dev
  python3-h5py python3-numpy python3-mpi4py python3-pandas
  parallel libtbb-dev python3-distributed  # contenders in bench/ (GNU parallel, oneTBB, dask.distributed)
  chromium  # headless, loads `mpmux report` pages in tests/integration/test_report.py
  clang libfuzzer-14-dev clang-tidy
  clang-16 libclang-rt-16-dev
  slurmctld slurmd slurm-client munge libpmix-dev
  libslurm-dev  # slurm/spank.h, for plugins/slurm (the SPANK plugin)
  tmux
  snakemake cwltool  # run the example workflows of plugins/workflows in tests/integration/test_workflows.py
)

# Node.js and npm run Azurite (scripts/start-azurite.sh) for the az:// tests; a machine with a
# node of its own (another distribution's package) keeps it.
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
echo "install-deps: installing ${missing[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
