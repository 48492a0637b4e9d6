// Safetensors file format: reader and writer (no tensor-engine dependency).
