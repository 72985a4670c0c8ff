#!/usr/bin/env bash
# Installs the Debian packages jambench builds with, if any is missing. Needs root for apt-get;
# otherwise prints the command to run. The CUDA toolkit is expected under /usr/local/cuda (the
# build works without it: CUDA is then off and the GPU parts are not compiled).
set -euo pipefail
pkgs=(cmake g++ libeigen3-dev libhdf5-dev nlohmann-json3-dev libgtest-dev libgmock-dev
      libbenchmark-dev python3)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all Debian packages present"
  exit 0
fi
echo "install_deps: missing: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "install_deps: not root; run: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
