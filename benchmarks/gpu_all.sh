#!/usr/bin/env bash
# One prepared GPU session (under 10 minutes): the machine, `--verify --device cuda` on resnet50,
# inference throughput (torch CUDA vs onnxruntime) and training throughput of the seed network
# (fp32 eager vs AMP + channels_last vs + torch.compile). Results land in $OUT.
# Pure-Python dependencies the GPU image may lack can be supplied in .devdeps/ (see README).
set -u
OUT=${OUT:-/tmp/gpu-results}
mkdir -p "$OUT"
pyver=$(python -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}:$PWD/.devdeps:$PWD/.devdeps/$pyver"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  python -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())" \
    || echo "onnxruntime: not installed on this machine"
  python -c "import onnx; print('onnx', onnx.__version__)" || echo "onnx: not installed"
  python -c "import pydantic, networkx, yaml; print('pydantic', pydantic.__version__)"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
timeout 120 python -m resnet_compiler spec/resnet50.yaml --verify --device cuda --batch 8 \
  > "$OUT/verify_resnet50_cuda.txt" 2>&1; echo "verify exit: $?" >> "$OUT/verify_resnet50_cuda.txt"
cat "$OUT/verify_resnet50_cuda.txt"
timeout 120 python benchmarks/gpu_inference.py --json "$OUT/inference.json" > "$OUT/inference.txt" 2>&1
tail -30 "$OUT/inference.txt"
timeout 240 python benchmarks/gpu_train.py "$OUT/train.json" > "$OUT/train.txt" 2>&1
tail -30 "$OUT/train.txt"
