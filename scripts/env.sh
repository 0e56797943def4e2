# Sourced by the other scripts: installs (once, idempotently) and exports the toolchain luna
# builds against. Everything heavy lives outside the clone, under $LUNA_HOME
# (default ~/.cache/luna): the Python venv and the cargo target dir, so a second run is fast
# and a fresh machine still works from nothing.
#
# Two layers, each with its own stamp, so the demo pays only for what it runs:
# - base (always): libtorch as luna links it, cmake for the static HDF5 build. On a machine
#   without an NVIDIA GPU that is torch 2.11.0 without its dependencies plus the two small
#   NVIDIA wheels libtorch_cpu needs to load (~1.3 GB; luna runs on the CPU). Where
#   `nvidia-smi` works (or LUNA_CUDA=1) the full torch with its CUDA wheels (~4.7 GB), so
#   luna trains on the GPU.
# - test (LUNA_ENV=test, set by scripts/test.sh): what the tests' oracles and services need:
#   the full torch (`import torch` in the oracles needs every CUDA wheel), numpy, SimpleITK,
#   h5py, pyarrow, scipy, scikit-learn, tensorboard, pydicom, Playwright, moto.
set -euo pipefail

LUNA_HOME="${LUNA_HOME:-$HOME/.cache/luna}"
LUNA_VENV="${LUNA_VENV:-$LUNA_HOME/venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$LUNA_HOME/target}"
mkdir -p "$LUNA_HOME"

# Bump a stamp when its package set changes so existing venvs are upgraded.
LUNA_BASE_STAMP="base-v7"
LUNA_TEST_STAMP="test-v8"
PY="${PYTHON:-python3}"
luna_pip() { "$LUNA_VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }

# Whether this machine should get the CUDA build of torch's dependencies.
luna_wants_cuda() {
  [ "${LUNA_CUDA:-}" = 1 ] && return 0
  [ "${LUNA_CUDA:-}" = 0 ] && return 1
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1
}

if [ ! -f "$LUNA_VENV/.luna-$LUNA_BASE_STAMP" ]; then
  [ -x "$LUNA_VENV/bin/python" ] || "$PY" -m venv "$LUNA_VENV"
  # torch 2.11.0 (pinned by tch 0.24): the PyPI wheel is the CUDA 13 build.
  if luna_wants_cuda; then
    echo "luna: setting up $LUNA_VENV with CUDA torch (one time, ~2.6 GB download)" >&2
    luna_pip install torch==2.11.0
  else
    echo "luna: setting up $LUNA_VENV: CPU libtorch (one time, ~0.6 GB download; LUNA_CUDA=1 for the CUDA wheels)" >&2
    luna_pip install --no-deps torch==2.11.0
  fi
  # libtorch_cpu.so needs libcudart.so.13 and libcupti.so.13 to load, even on a CPU.
  luna_pip install --no-deps nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
  # cmake >= 3.26 for the static HDF5 build (Debian 12's 3.25 is too old).
  luna_pip install "cmake>=3.26"
  touch "$LUNA_VENV/.luna-$LUNA_BASE_STAMP"
fi

if [ "${LUNA_ENV:-}" = test ] && [ ! -f "$LUNA_VENV/.luna-$LUNA_TEST_STAMP" ]; then
  echo "luna: adding the test suite's Python packages to $LUNA_VENV (one time, ~2.5 GB download)" >&2
  # The oracles `import torch`, which loads every CUDA library libtorch names: the full set.
  luna_pip install torch==2.11.0
  luna_pip install numpy SimpleITK h5py hdf5plugin pyarrow scipy scikit-learn tensorboard diskcache
  # the report's browser test drives Debian's chromium through Playwright (no browser download)
  luna_pip install playwright==1.65.2
  # the cache-remote tests start moto's S3 server on loopback (a real S3 HTTP API; boto3 too)
  luna_pip install "moto[server]==5.2.5"
  # the DICOM reader's oracles write series with pydicom (JPEG 2000 through pylibjpeg's OpenJPEG)
  luna_pip install pydicom==3.0.2 pylibjpeg==2.1.0 pylibjpeg-openjpeg==2.6.0
  touch "$LUNA_VENV/.luna-$LUNA_TEST_STAMP"
fi

LUNA_SITE="$("$LUNA_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
export LIBTORCH="$LUNA_SITE/torch"
export PATH="$LUNA_VENV/bin:$PATH"
export LUNA_PYTHON="$LUNA_VENV/bin/python"

torch_version="$(sed -n "s/^__version__ = '\(.*\)'/\1/p" "$LIBTORCH/version.py")"
case "$torch_version" in
  2.11.0*) ;;
  *) echo "luna: expected torch 2.11.0 in $LIBTORCH, found '$torch_version' (delete $LUNA_VENV and re-run)" >&2; exit 2 ;;
esac
