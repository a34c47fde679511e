#!/usr/bin/env bash
# One-time setup on a fresh machine: system libraries (OpenBLAS for the CPU backend; Mesa's Vulkan
# driver so WebGPU runs without a GPU), then the npm packages (Bun itself comes from npm).
# Safe to re-run; skips what is already there. GPTQ_SKIP_SYSTEM=1 skips the system packages.
set -euo pipefail
cd "$(dirname "$0")"

have_lib() { ldconfig -p 2>/dev/null | grep -q "$1"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else echo "setup: need root for: $*" >&2; return 1; fi; }

if [ -z "${GPTQ_SKIP_SYSTEM:-}" ]; then
  case "$(uname -s)" in
    Linux)
      if command -v apt-get >/dev/null; then
        need=()
        have_lib libopenblas.so.0 || need+=(libopenblas0-pthread)
        if [ ${#need[@]} -gt 0 ]; then
          echo "setup: installing ${need[*]}" >&2
          as_root apt-get update -q
          DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q "${need[@]}"
        fi
        # Dawn needs Mesa >= 23 for lavapipe (software Vulkan); Debian bookworm's Mesa 22 is rejected.
        if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || ! dpkg -l mesa-vulkan-drivers 2>/dev/null | grep -q 'bpo\|^ii  mesa-vulkan-drivers:[a-z0-9]* *2[3-9]'; then
          if grep -q bookworm /etc/os-release 2>/dev/null; then
            echo "setup: installing mesa-vulkan-drivers from bookworm-backports (software Vulkan for WebGPU)" >&2
            echo 'deb http://deb.debian.org/debian bookworm-backports main' | as_root tee /etc/apt/sources.list.d/gptq-backports.list >/dev/null
            as_root apt-get update -q
            DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q -t bookworm-backports mesa-vulkan-drivers
          else
            DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q mesa-vulkan-drivers || echo "setup: no mesa-vulkan-drivers; WebGPU needs a Vulkan driver" >&2
          fi
        fi
      else
        have_lib libopenblas.so.0 || echo "setup: install OpenBLAS (libopenblas) with your package manager for the CPU backend" >&2
      fi
      ;;
    Darwin) ;; # Accelerate and Metal come with macOS
  esac
fi

if [ ! -x node_modules/.bin/bun ] || [ package.json -nt node_modules/.package-lock.json ]; then
  npm install --no-audit --no-fund
fi
