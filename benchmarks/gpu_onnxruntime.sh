#!/usr/bin/env bash
# onnxruntime-gpu on a lent GPU: resnet50 fp32 and fp16 files through the CUDA provider, and the
# spec side by side with torch eager and torch.compile on CUDA. Needs onnxruntime-gpu.
# Not run yet (no GPU was available when it was written). Output: benchmarks/results/gpu_onnxruntime.*
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results
tmp=$(mktemp -d)
python -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())" | tee "$out/gpu_onnxruntime.txt"
resnet-compile spec/resnet50.yaml --emit onnx -o "$tmp/fp32.onnx"
resnet-compile spec/resnet50.yaml --emit onnx --dtype fp16 -o "$tmp/fp16.onnx"
resnet-compile spec/resnet50.yaml --verify --device cuda --dtype fp16 --batch 8 | tee -a "$out/gpu_onnxruntime.txt"
for f in fp32 fp16; do
  resnet-compile bench "$tmp/$f.onnx" --provider cuda --batch 1,8,32 --runs 50 --warmup 10 \
    --json "$out/gpu_onnxruntime_$f.json" | tee -a "$out/gpu_onnxruntime.txt"
done
resnet-compile bench spec/resnet50.yaml --provider cuda --batch 1,8,32 --compile --runs 50 \
  --warmup 10 --json "$out/gpu_onnxruntime_spec.json" | tee -a "$out/gpu_onnxruntime.txt"
rm -rf "$tmp"
