#!/usr/bin/env bash
# A kit for a GPU machine that has no Node (the lent NVIDIA H200, gpu.md §2): everything fopeify's webgpu
# backend needs, under the 64 MiB that travels with the working tree.
#
#   bash scripts/gpu-kit.sh build [DIR]     here: DIR (default .gpu-kit, ignored by git) gets
#                                            node.xz          this Node binary, xz-compressed
#                                            node_modules.tar.xz  the production dependency tree, pruned
#                                                             (linux-x64 dawn.node, tfjs's Node bundles only)
#                                            libvulkan1*.deb  Debian's Vulkan loader (the GPU machine may lack it)
#   bash scripts/gpu-kit.sh run [DIR] -- CMD...   there, in the repository root (dist/ carried too):
#                                            unpacks Node and node_modules, puts the loader and NVIDIA's ICD
#                                            in place, then runs CMD with that node first on PATH, e.g.
#                                            bash scripts/gpu-kit.sh run -- node bench/webgpu.mjs --full
# With the device tool: carry [".gpu-kit", "dist"].
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=${1:-}
shift || true
KIT=.gpu-kit
if [ $# -gt 0 ] && [ "$1" != "--" ]; then KIT=$1; shift; fi
[ "${1:-}" = "--" ] && shift

build() {
  rm -rf "$KIT"
  mkdir -p "$KIT"
  local stage
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' RETURN
  echo "gpu-kit: node $(node --version) -> $KIT/node.xz"
  xz -T0 -6 -c "$(readlink -f "$(command -v node)")" > "$KIT/node.xz"

  # The dependency closure of package.json's dependencies plus the two webgpu packages, found with Node's
  # own resolution (so symlinked trees work), copied to where each package sits under node_modules.
  node --input-type=module - "$stage/node_modules" <<'EOF'
import { cpSync, existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
const out = process.argv[2];
const root = JSON.parse(readFileSync('package.json', 'utf8'));
const seen = new Set();
const skip = new Set(['@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu']);
/** Node's node_modules lookup from `from` upwards (packages whose "exports" hide package.json included). */
function dirOf(name, from) {
  for (let d = from; ; d = path.dirname(d)) {
    const candidate = path.join(d, 'node_modules', name, 'package.json');
    if (existsSync(candidate)) return path.dirname(realpathSync(candidate));
    if (path.dirname(d) === d) return null; // an optional dependency that is not installed
  }
}
function visit(name, from) {
  if (skip.has(name)) return;
  const dir = dirOf(name, from);
  if (!dir || seen.has(dir)) return;
  seen.add(dir);
  const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
  for (const dep of Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies })) visit(dep, dir);
}
for (const dep of [...Object.keys(root.dependencies), 'webgpu', '@tensorflow/tfjs-backend-webgpu']) visit(dep, process.cwd());
const keep = (dir, pkg) => {
  const name = pkg.name;
  if (name === 'webgpu') return (src) => !/\/dist\/(?!linux-x64)[^/]+/.test(src) && !src.includes('/build/');
  if (name.startsWith('@tensorflow/')) {
    // The Node bundle only (and the wasm binaries): not the ESM tree, browser bundles, sources or maps.
    const main = path.join(dir, pkg.main);
    return (src) => !src.startsWith(path.join(dir, 'dist') + '/') || src === main || src.endsWith('.wasm') || statSync(src).isDirectory();
  }
  return () => true;
};
let n = 0;
for (const dir of seen) {
  const rel = dir.slice(dir.indexOf('/node_modules/') + '/node_modules/'.length);
  const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
  const k = keep(dir, pkg);
  cpSync(dir, path.join(out, rel), {
    recursive: true,
    dereference: true,
    filter: (src) => src === dir || (!/\.(map|d\.ts|md|ts)$/.test(src) && !src.slice(dir.length).includes('/node_modules/') && k(src)),
  });
  n++;
}
if (!existsSync(path.join(out, 'webgpu/dist/linux-x64/dawn.node'))) throw new Error('webgpu is not installed: npm ci (it is an optional dependency)');
console.log(`gpu-kit: ${n} packages`);
EOF
  tar -C "$stage" -cf - node_modules | xz -T0 -6 > "$KIT/node_modules.tar.xz"
  if command -v apt-get >/dev/null 2>&1; then
    (cd "$KIT" && apt-get download libvulkan1 >/dev/null 2>&1) || echo "gpu-kit: could not download libvulkan1 (apt-get update first); the GPU machine must have a Vulkan loader"
  fi
  echo "gpu-kit: $(du -sh "$KIT" | cut -f1) in $KIT; with dist/: $(du -shc "$KIT" dist | tail -1 | cut -f1) (limit 64 MiB)"
  ls -la "$KIT"
}

run() {
  local home=${GPU_KIT_HOME:-/tmp/fopeify-gpu-kit}
  mkdir -p "$home/bin" "$home/vulkan"
  [ -x "$home/bin/node" ] || xz -dc "$KIT/node.xz" > "$home/bin/node"
  chmod +x "$home/bin/node"
  [ -d node_modules/webgpu ] || tar -xJf "$KIT/node_modules.tar.xz"
  local deb
  deb=$(ls "$KIT"/libvulkan1*.deb 2>/dev/null | head -1 || true)
  if [ -n "$deb" ] && ! ldconfig -p 2>/dev/null | grep -q libvulkan.so.1; then
    dpkg-deb -x "$deb" "$home/vulkan"
    export LD_LIBRARY_PATH="$home/vulkan/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
  # NVIDIA's ICD as the container runtime mounts it (gpu.md §2), unless one is set already.
  for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
    if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] && [ -f "$icd" ]; then export VK_DRIVER_FILES=$icd VK_ICD_FILENAMES=$icd; fi
  done
  export PATH="$home/bin:$PATH" XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp} FOPEIFY_DAWN_BACKEND=${FOPEIFY_DAWN_BACKEND:-vulkan}
  echo "gpu-kit: node $(node --version), VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}" >&2
  "$@"
}

case "$cmd" in
  build) build ;;
  run) [ $# -gt 0 ] || { echo "usage: $0 run [DIR] -- CMD..." >&2; exit 2; }; run "$@" ;;
  *) echo "usage: $0 build [DIR] | run [DIR] -- CMD..." >&2; exit 2 ;;
esac
