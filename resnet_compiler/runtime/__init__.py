"""What runs a compiled network: weights, verify, inference, int8 quantization, benchmarks,
devices, image decoding and fine-tuning."""
