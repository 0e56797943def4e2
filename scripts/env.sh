# Sourced by the other scripts: installs (once, idempotently) and exports the toolchain luna
# builds against. Everything heavy lives outside the clone, under $LUNA_HOME
# (default ~/.cache/luna): the Python venv (torch from PyPI, cmake, oracle packages) and the
# cargo target dir, so a second run is fast and a fresh machine still works from nothing.
set -euo pipefail

LUNA_HOME="${LUNA_HOME:-$HOME/.cache/luna}"
LUNA_VENV="${LUNA_VENV:-$LUNA_HOME/venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$LUNA_HOME/target}"
mkdir -p "$LUNA_HOME"

# Bump when the package set changes so existing venvs are upgraded.
LUNA_VENV_STAMP="v6"
PY="${PYTHON:-python3}"

if [ ! -f "$LUNA_VENV/.luna-$LUNA_VENV_STAMP" ]; then
  echo "luna: setting up the Python environment in $LUNA_VENV (one time, ~2-3 GB download)" >&2
  [ -x "$LUNA_VENV/bin/python" ] || "$PY" -m venv "$LUNA_VENV"
  pip() { "$LUNA_VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
  # torch 2.11.0 (pinned by tch 0.24): the PyPI wheel is the CUDA 13 build. The full install
  # (with its NVIDIA wheels) lets luna use a GPU where one exists and lets the oracle tests
  # `import torch`; on a CPU machine luna falls back to CPU.
  pip install torch==2.11.0
  pip install --no-deps nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
  # cmake >= 3.26 for the static HDF5 build; oracle packages for the tests.
  pip install "cmake>=3.26" numpy SimpleITK h5py hdf5plugin pyarrow scipy scikit-learn tensorboard diskcache
  # the report's browser test drives Debian's chromium through Playwright (no browser download)
  pip install playwright==1.65.2
  # the cache-remote tests start moto's S3 server on loopback (a real S3 HTTP API; boto3 too)
  pip install "moto[server]==5.2.5"
  touch "$LUNA_VENV/.luna-$LUNA_VENV_STAMP"
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
