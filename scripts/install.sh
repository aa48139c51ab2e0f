#!/usr/bin/env bash
# Installs everything radwatch needs on a fresh Debian machine: system packages (servers used
# by the tests and the pilot) and a Python virtual environment with the project in it.
# Idempotent: a second run only checks. Usage: scripts/install.sh [--no-system]
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

if [[ "${1:-}" != "--no-system" ]]; then
  # Prometheus, Alertmanager (promtool, amtool), Orthanc + DICOMweb, dcmtk, Chromium.
  need=()
  command -v prometheus >/dev/null || need+=(prometheus)
  command -v alertmanager >/dev/null || command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
  command -v Orthanc >/dev/null || need+=(orthanc)
  [[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ]] || need+=(orthanc-dicomweb)
  command -v dcmdump >/dev/null || need+=(dcmtk)
  command -v chromium >/dev/null || need+=(chromium)
  if ((${#need[@]})); then
    echo "installing system packages: ${need[*]}"
    SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi

if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
# torch is pinned (pyproject) to the CPU wheel these machines carry; never a CUDA download.
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'
