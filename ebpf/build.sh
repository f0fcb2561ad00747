#!/usr/bin/env bash
# Rebuilds the committed XDP object (ebpf/steer.o) from steer.c with the flags build.rs uses.
# Needs clang and libbpf-dev (apt-get install clang libbpf-dev).
set -euo pipefail
cd "$(dirname "$0")"
clang -O2 -g -target bpf -Wall -Werror -I/usr/include/x86_64-linux-gnu \
  -fdebug-prefix-map="$PWD"=. -fdebug-compilation-dir=. -c steer.c -o steer.o
echo "ebpf/steer.o rebuilt"
