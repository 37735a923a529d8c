#!/usr/bin/env bash
# One-step set-up on a fresh Debian machine, then run the demo or the tests.
# Usage: bash scripts/dev.sh demo | test
# Installs (as root, only when missing) the system packages the native build needs, then `npm ci`.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v g++ >/dev/null || need+=(g++)
command -v make >/dev/null || need+=(make)
command -v python3 >/dev/null || need+=(python3)
[ -e /usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so ] || need+=(libopenblas-openmp-dev)
[ -e /usr/include/oneapi/dnnl/dnnl.hpp ] || need+=(libdnnl-dev)
# Open MPI for data-parallel runs (mpirun; libmpi.so.40 is loaded at run time, never linked) and its tests
command -v mpirun >/dev/null || need+=(openmpi-bin)
[ -e /usr/lib/x86_64-linux-gnu/libmpi.so.40 ] || need+=(libopenmpi-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing system packages: ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
export npm_config_nodedir="${npm_config_nodedir:-/usr}"
if [ ! -e build/Release/preftune.node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
elif [ -n "$(find native binding.gyp -newer build/Release/preftune.node 2>/dev/null | head -1)" ]; then
  npm run --silent build:native >/dev/null
fi
case "${1:-test}" in
  demo) node bin/preftune.js demo ;;
  test) npm run --silent typecheck && node scripts/test.js ;;
  *) echo "usage: bash scripts/dev.sh demo|test" >&2; exit 2 ;;
esac
