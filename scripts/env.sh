# shellcheck shell=bash
# Environment for intradp_ros (bash). Source it: `source scripts/env.sh` (the ./intradp CLI does).
#   - activates .venv/;
#   - without a sourced ROS 2, makes the venv prefix the ROS underlay (AMENT_PREFIX_PATH,
#     CMAKE_PREFIX_PATH), since the ROS 2 wheels bring no setup script of their own;
#   - sources the colcon install of this package (.colcon/install/local_setup.bash);
#   - points Fast DDS at config/fastdds.xml (large-message transports) unless
#     FASTRTPS_DEFAULT_PROFILES_FILE is already set. RMW_IMPLEMENTATION is left alone.
# The caller's set -e / set -u are restored afterwards (pipefail is not touched): ROS setup scripts
# read unset variables, so they run with nounset off.

# $- is read directly: inside $(...) bash would report errexit as off.
_intradp_saved_opts="$-"
set +eu
_intradp_restore_opts() {
  [[ "$_intradp_saved_opts" == *e* ]] && set -e
  [[ "$_intradp_saved_opts" == *u* ]] && set -u
  unset _intradp_saved_opts _intradp_root
  unset -f _intradp_prepend _intradp_restore_opts
}

_intradp_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

_intradp_prepend() {  # _intradp_prepend VAR DIR: put DIR first in a colon list, once
  local current="${!1}"
  case ":$current:" in
    *":$2:"*) ;;
    *) export "$1=$2${current:+:$current}" ;;
  esac
}

if [[ ! -x "$_intradp_root/.venv/bin/python" || ! -f "$_intradp_root/.colcon/install/local_setup.bash" ]]; then
  echo "intradp env.sh: no build found under $_intradp_root; run ./intradp setup first" >&2
  _intradp_restore_opts
  return 1
fi

if [[ -z "${ROS_DISTRO:-}" ]]; then
  _intradp_prepend AMENT_PREFIX_PATH "$_intradp_root/.venv"
  _intradp_prepend CMAKE_PREFIX_PATH "$_intradp_root/.venv"
fi

# shellcheck disable=SC1091
source "$_intradp_root/.venv/bin/activate"
# shellcheck disable=SC1091
source "$_intradp_root/.colcon/install/local_setup.bash"

export FASTRTPS_DEFAULT_PROFILES_FILE="${FASTRTPS_DEFAULT_PROFILES_FILE:-$_intradp_root/config/fastdds.xml}"
export INTRADP_ROOT="$_intradp_root"

_intradp_restore_opts
