"""Inference: the one Predictor built from a saved model folder (PyTorch, ONNX Runtime or
OpenVINO; fp32, bf16 or int8), request batching, the CPU budget per worker, and the BentoML
model store the service reads. Used by evaluate, the registry, the service and the tests.
Uses network, data and core; imports no MLflow and no training code, so a Bento carries
core, data, network and inference only."""
