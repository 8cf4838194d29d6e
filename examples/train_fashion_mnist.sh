#!/usr/bin/env bash
# The seed chapter's run: ResNet-18 on Fashion-MNIST resized to 96x96, SGD lr 0.05, batch 128,
# 10 epochs. Fetches the four IDX files into data/fashion-mnist on first use (or copy them there).
# Writes runs/resnet18_fashion_mnist/{checkpoint.pt,model.safetensors,metrics.csv,curves.png},
# then exports the trained weights to ONNX.
#
#   examples/train_fashion_mnist.sh                 # one GPU (or the CPU: slow, hours)
#   NPROC=4 examples/train_fashion_mnist.sh         # 4 GPUs with DistributedDataParallel
#   OFFLINE=1 examples/train_fashion_mnist.sh       # scikit-learn's digits instead (no download)
set -euo pipefail
cd "$(dirname "$0")/.."
SPEC=spec/resnet18_fashion_mnist.yaml
OUT=${OUT:-runs/resnet18_fashion_mnist}
if [ -n "${OFFLINE:-}" ]; then
  DATA=(--dataset digits --batch-size 32)
else
  DATA=(--dataset fashion-mnist --data-dir "${DATA_DIR:-data/fashion-mnist}" --download)
fi
if [ "${NPROC:-1}" -gt 1 ]; then
  RUN=(torchrun --standalone --nproc_per_node="$NPROC" "$(command -v resnet-compile)")
else
  RUN=(resnet-compile)
fi
"${RUN[@]}" train "$SPEC" "${DATA[@]}" --epochs 10 --lr 0.05 --out "$OUT" --overwrite
resnet-compile "$SPEC" --emit onnx --weights "$OUT/checkpoint.pt" -o "$OUT/model.onnx"
column -s, -t < "$OUT/metrics.csv"
echo "curves: $OUT/curves.png   onnx: $OUT/model.onnx"
