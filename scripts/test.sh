#!/usr/bin/env bash
# Runs every test of bootstorm: formatting and lints, unit and property tests, loom models,
# and the end-to-end tests against real peers (dhclient, udhcpc, dhcpcd, perfdhcp, kea-dhcp4,
# dnsmasq, tshark, tftp-hpa, atftp, curl, qemu with iPXE, headless Chromium for the dashboard).
# Installs the peers it needs when they are missing (apt-get; needs root, as do the namespace
# tests, which skip with a printed reason when not run as root).
set -euo pipefail
cd "$(dirname "$0")/.."

# tool:package pairs of the peers the tests use, and of what the build needs: the XDP program
# (clang, libbpf-dev) and xsk-rs's C part, libxdp (clang, llvm for llc, make, m4, libelf-dev, zlib1g-dev).
peers="clang:clang llc:llvm make:make m4:m4 /usr/include/bpf/bpf_helpers.h:libbpf-dev /usr/include/libelf.h:libelf-dev /usr/include/zlib.h:zlib1g-dev pkg-config:pkg-config dhclient:isc-dhcp-client udhcpc:udhcpc dhcpcd:dhcpcd-base perfdhcp:kea-admin kea-dhcp4:kea-dhcp4-server dnsmasq:dnsmasq-base tshark:tshark ip:iproute2 tftp:tftp-hpa atftp:atftp curl:curl ping:iputils-ping nft:nftables qemu-system-x86_64:qemu-system-x86 /usr/lib/ipxe/qemu/pxe-e1000.rom:ipxe-qemu iscsi-inq:libiscsi-bin /usr/lib/python3/dist-packages/prometheus_client/__init__.py:python3-prometheus-client chromium:chromium node:nodejs"
missing=()
for pair in $peers; do
  tool=${pair%%:*}; pkg=${pair#*:}
  case "$tool" in
    /*) [ -e "$tool" ] || missing+=("$pkg") ;;   # a file the package ships (an iPXE ROM)
    *) PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 || missing+=("$pkg") ;;
  esac
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing test peers: ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  else
    echo "== missing test peers (not root, cannot install): ${missing[*]}"
  fi
fi

# qemu's iSCSI driver (qemu-io and qemu-img on iscsi:// URLs) is in qemu-block-extra, whose
# version must be qemu-utils' own: take both from Debian 12's suite (7.2), replacing a newer
# qemu-utils backport that has no matching qemu-block-extra.
qemu_iscsi=/usr/lib/x86_64-linux-gnu/qemu/block-iscsi.so
if [ ! -e "$qemu_iscsi" ] || ! qemu-io --version 2>/dev/null | grep -q "version 7\.2"; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing qemu-utils and qemu-block-extra 7.2 (Debian 12) for qemu's iSCSI driver"
    [ ${#missing[@]} -gt 0 ] || apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends --allow-downgrades \
      qemu-utils/bookworm qemu-block-extra/bookworm
    [ -e "$qemu_iscsi" ] || { echo "qemu-block-extra did not install $qemu_iscsi" >&2; exit 1; }
  else
    echo "== qemu's iSCSI driver is missing (not root, cannot install qemu-block-extra)"
  fi
fi

# The dashboard's packages (Vite, React, uPlot, and playwright-core, which drives Debian's
# chromium in the browser test) from the npm registry, as package-lock.json pins them.
echo "== npm ci (dashboard/)"
npm ci --prefix dashboard --no-audit --no-fund --loglevel=error

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets -q -- -D warnings

echo "== build binaries (the end-to-end tests run them)"
cargo build --workspace --bins -q

echo "== cargo test"
cargo test --workspace

echo "== loom models of the lease table"
RUSTFLAGS="--cfg loom" cargo test -p bootstorm-lease --release --target-dir target/loom -q

echo "== all tests passed"
