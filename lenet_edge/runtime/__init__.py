"""Device side (numpy + onnxruntime only): sessions, predict, evaluate, bench, compare."""
