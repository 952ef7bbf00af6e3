#!/usr/bin/env bash
# Real ROS 2 for the tests, from PyPI's ros-<distro>-* wheels (test/ros_wheels; never a robot's
# install path: robots use a real ROS 2, see docs/ros.md). Per distribution (ROS_WHEEL_DISTROS,
# default "jazzy kilted"):
#   $MICKEY_ROS_WHEELS/venv-ros-<distro>  (default ~/.cache/mickey_ros) the wheels + colcon +
#                                torch (CPU) + the library's dependencies; outside the source tree
#                                because CMake refuses exported include paths (numpy's) inside it
#   build-ros/<distro>/install   colcon build of this package (rosidl generates RelativePose) and of
#                                tf2_msgs from its definition (no wheel has it)
#   build-ros/<distro>/STATUS    "ok", or "unavailable: <reason>" (the tests skip with it)
#   build-ros/<distro>/VENV      the venv's path, for the tests
# Progress goes to stderr; install_distro's stdout is the reason of a failure.
# Called by scripts/install.sh --test. Never fails the install: a distribution whose wheels cannot
# be installed or built is reported and skipped. Re-running reuses the venv (it is made again only
# when this script changed) and colcon rebuilds incrementally.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# What CMake asked for, one missing package at a time (the wheels' metadata is incomplete).
# Jazzy also needs python-cmake-module, Kilted ament-cmake-ros-core.
ros_pkgs="rclpy[fastrtps] sensor-msgs geometry-msgs std-msgs diagnostic-msgs std-srvs
  lifecycle-msgs rcl-interfaces ament-cmake ament-cmake-python ament-package
  ament-cmake-include-directories ament-cmake-libraries ament-cmake-export-targets
  ament-cmake-gen-version-h ament-cmake-ros ament-cmake-gmock ament-cmake-gtest ament-cmake-pytest
  rosidl-default-generators rosidl-core-generators rosidl-generator-c rosidl-generator-cpp
  rosidl-generator-py rosidl-generator-type-description rosidl-typesupport-c
  rosidl-typesupport-cpp rosidl-typesupport-fastrtps-c rosidl-typesupport-fastrtps-cpp
  rosidl-typesupport-introspection-c rosidl-typesupport-introspection-cpp"
# numpy comes with the wheels (their rosidl C code is built against numpy 2); torch must agree.
py_pkgs="colcon-common-extensions pytest<9 ${TORCH_SPEC:-torch==2.13.0} opencv-python-headless
  PyYAML tqdm rosbags rosbags-image"
stamp_of_script=$(sha1sum "$0" | cut -c1-12)
venvs=${MICKEY_ROS_WHEELS:-$HOME/.cache/mickey_ros}

install_distro() {
  local distro=$1 venv=$venvs/venv-ros-$1 out=$root/build-ros/$1
  local extra="" pkgs="" p
  [[ $distro == jazzy ]] && extra="python-cmake-module"
  [[ $distro == kilted ]] && extra="ament-cmake-ros-core"
  for p in $ros_pkgs $extra; do pkgs="$pkgs ros-$distro-$p"; done
  mkdir -p "$out"
  if [[ "$(cat "$venv/.mickey-stamp" 2>/dev/null)" != "$stamp_of_script" ]]; then
    echo "ros-wheels[$distro]: pip install into $venv (about 130 wheels)" >&2
    rm -rf "$venv"  # a fresh venv: a changed package list must not meet an old one
    python3 -m venv "$venv" || return 1
    "$venv/bin/python" -m pip install -q $pkgs $py_pkgs >"$out/pip.log" 2>&1 \
      || { tail -3 "$out/pip.log" >&2; echo "pip install failed (see $out/pip.log)"; return 1; }
    echo "$stamp_of_script" >"$venv/.mickey-stamp"
  fi
  echo "$venv" >"$out/VENV"
  # Trap: the wheels' exported CMake targets name two include paths of the machine that built
  # them, and CMake refuses a missing one (rewriting them to this venv fails too: CMake refuses
  # include paths inside the source tree). So make those paths exist, pointing at this venv.
  local trap=/opt/python/cp311-cp311 py_inc np_inc
  py_inc=$("$venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
  np_inc=$("$venv/bin/python" -c "import numpy; print(numpy.get_include())")
  { mkdir -p "$trap/include" "$trap/lib/python3.11/site-packages/numpy/_core" \
      && ln -sfn "$py_inc" "$trap/include/python3.11" \
      && ln -sfn "$np_inc" "$trap/lib/python3.11/site-packages/numpy/_core/include"; } \
    2>/dev/null || { echo "cannot create $trap (the wheels' CMake include paths): run as root"
                     return 1; }
  echo "ros-wheels[$distro]: colcon build mickey_ros + tf2_msgs into $out/install" >&2
  (
    # shellcheck disable=SC1091
    source "$venv/bin/activate"
    export CMAKE_PREFIX_PATH=$venv AMENT_PREFIX_PATH=$venv
    colcon --log-base "$out/log" build --base-paths . test/ros_wheels/tf2_msgs \
      --build-base "$out/build" --install-base "$out/install" --merge-install \
      --event-handlers console_direct- \
      --cmake-args -DBUILD_TESTING=OFF "-DPython3_EXECUTABLE=$venv/bin/python" \
      >"$out/colcon.log" 2>&1
  ) || { tail -5 "$out/colcon.log" >&2; echo "colcon build failed (see $out/colcon.log)"; return 1; }
}

for distro in ${ROS_WHEEL_DISTROS:-jazzy kilted}; do
  start=$SECONDS
  if reason=$(install_distro "$distro"); then
    echo ok >"build-ros/$distro/STATUS"
    echo "ros-wheels[$distro]: ready in $((SECONDS - start)) s"
  else
    mkdir -p "build-ros/$distro"
    echo "unavailable: ${reason##*$'\n'}" >"build-ros/$distro/STATUS"
    echo "warning: ROS 2 $distro wheels unavailable (${reason##*$'\n'}); its tests will skip" >&2
  fi
done
exit 0
