#!/bin/sh
# build-peers.sh: build the peer engines that run.py times, CPU only, into PEERS_DIR (default
# /tmp/peers). Each step is skipped when its binary is already there.
#   llama.cpp  llama-bench (and llama-server with SERVER=1), from the llama.cpp source that the npm
#              package node-llama-cpp@3.21.1 ships (llama/gitRelease.bundle), or LLAMA_CPP_SRC
#   ggml       examples/gpt-2's gpt-2-backend, from GGML_SRC or a clone of github.com/ggml-org/ggml
#   llama2.c   run and runq (make runomp), from LLAMA2C_SRC or a clone of github.com/karpathy/llama2.c
# A *_SRC may be a work tree or a git directory (its HEAD is extracted). JOBS (default: all cores)
# is the parallelism of each build; the builds run one after another; SKIP_GGML=1 leaves ggml out.
# About 20 CPU-minutes, most of it llama.cpp; LLAMA_PREBUILT=1 instead compiles only llama-bench's
# two files from that source and links them to the CPU-only libraries that node-llama-cpp@3.21.1
# ships prebuilt for linux-x64 (@node-llama-cpp/linux-x64: the same llama.cpp, one libggml-cpu per
# x86 level, chosen at run time), into llama.cpp/build-prebuilt/bin: a minute, not half an hour.
set -e
P=${PEERS_DIR:-/tmp/peers}
JOBS=${JOBS:-$(nproc)}
mkdir -p "$P"
cd "$P"

# a work tree of $2 (work tree, git dir, or a URL to clone) at $1
tree() {
  [ -e "$1" ] && return 0
  if [ -d "$2/.git" ] || [ -f "$2/CMakeLists.txt" ] || [ -f "$2/run.c" ]; then cp -r "$2" "$1"
  elif [ -d "$2" ]; then mkdir -p "$1" && git --git-dir="$2" archive HEAD | tar -x -C "$1"
  else git clone -q --depth 1 "$2" "$1"; fi
}

# 1. llama.cpp (no GPU backend; GGML_NATIVE picks this CPU's instruction sets)
if [ -z "${LLAMA_CPP_SRC:-}" ] && [ ! -e llama.cpp ]; then
  [ -f package/llama/gitRelease.bundle ] || { npm pack node-llama-cpp@3.21.1 >/dev/null && tar xzf node-llama-cpp-3.21.1.tgz package/llama/gitRelease.bundle; }
  git clone -q package/llama/gitRelease.bundle llama.cpp
fi
tree llama.cpp "${LLAMA_CPP_SRC:-}"
if [ "${LLAMA_PREBUILT:-0}" = 1 ] && [ ! -x llama.cpp/build-prebuilt/bin/llama-bench ]; then
  [ -d nlc-x64 ] || { npm pack @node-llama-cpp/linux-x64@3.21.1 >/dev/null && mkdir nlc-x64 &&
    tar xzf node-llama-cpp-linux-x64-3.21.1.tgz -C nlc-x64; }
  L=$P/llama.cpp O=$P/llama.cpp/build-prebuilt/bin
  mkdir -p "$O" && cp nlc-x64/package/bins/linux-x64/*.so "$O"/
  c++ -O2 -std=c++17 -DNDEBUG -I"$L/include" -I"$L/ggml/include" -I"$L/common" -I"$L/tools/llama-bench" \
    "$L/tools/llama-bench/llama-bench.cpp" "$L/tools/llama-bench/main.cpp" -o "$O/llama-bench" -L"$O" \
    -l:libllama-common.so -l:libllama.v0.4.0.so -l:libggml.v0.4.0.so -l:libggml-base.so -pthread -Wl,-rpath,'$ORIGIN'
elif [ "${LLAMA_PREBUILT:-0}" != 1 ] && { [ ! -x llama.cpp/build/bin/llama-bench ] || { [ "${SERVER:-0}" = 1 ] && [ ! -x llama.cpp/build/bin/llama-server ]; }; }; then
  targets=llama-bench
  [ "${SERVER:-0}" = 1 ] && targets="llama-bench llama-server"
  (cd llama.cpp && cmake -B build -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=ON \
      -DGGML_OPENMP=OFF -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF -DLLAMA_CURL=OFF \
      -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >/dev/null &&
    for t in $targets; do cmake --build build -j "$JOBS" --target "$t"; done)
fi

# 2. llama2.c (gcc -Ofast -fopenmp -march=native)
if [ ! -x llama2.c/runq ]; then
  tree llama2.c "${LLAMA2C_SRC:-https://github.com/karpathy/llama2.c}"
  make -C llama2.c runomp
fi

# 3. ggml's gpt-2 example
if [ "${SKIP_GGML:-0}" != 1 ] && [ ! -x ggml/build/bin/gpt-2-backend ]; then
  tree ggml "${GGML_SRC:-https://github.com/ggml-org/ggml}"
  (cd ggml && cmake -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_BUILD_TESTS=OFF \
      -DGGML_BUILD_EXAMPLES=ON >/dev/null && cmake --build build -j "$JOBS" --target gpt-2-backend)
fi
echo "build-peers.sh: peers built in $P"
