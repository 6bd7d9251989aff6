"""Bench reports as JSON with known figures, for the tests that read them (bench, compare, the device check)."""

from __future__ import annotations


def bench_row(model, batch, threads, mean, cv=0.01) -> dict:
    """A row's JSON, every call `mean` ms."""
    lat = {"mean": mean, "std": 0.0, "min": mean, "p50": mean, "p90": mean, "p99": mean, "max": mean}
    return {"model": model, "batch_size": batch, "threads": threads, "runs": 10, "latency_ms": lat,
            "throughput_ips": batch * 1000 / mean,
            "spread": {"rounds": 2, "round_means_ms": [mean, mean], "round_p50s_ms": [mean, mean], "round_cv": cv,
                       "p90_over_p50": 1.0}}


def bench_report(rows, labels=("fp32", "int8"), cpu="Test CPU", created="2024-01-01T00:00:00+00:00") -> dict:
    """A bench report's JSON (lenet-edge-bench version 1) around `rows`."""
    models = [{"label": label, "kind": "onnxruntime", "file": f"{label}.onnx", "sha256": "0" * 64, "bytes": 2048,
               "variant": "lenet5-modern", "precision": label, "check": {"images": 1000, "accuracy": 0.99}}
              for label in labels]
    env = {"cpu": {"model": cpu, "architecture": "x86_64", "flags": ["avx2"], "int8_dot_product": [],
                   "logical_cores": 4, "usable_cores": 4, "physical_cores": 2},
           "os": {"system": "Linux", "release": "6"}, "versions": {"onnxruntime": "1.0"},
           "load_average": {"start": [0.1, 0.1, 0.1], "end": [0.1, 0.1, 0.1]}}
    settings = {"batch_sizes": [1], "threads": [1], "runs": 10, "warmup": 2, "rounds": 2,
                "inputs": {"source": "MNIST", "images": 1}}
    return {"schema": "lenet-edge-bench", "version": 1, "created": created, "duration_s": 1.0,
            "settings": settings, "environment": env, "models": models, "rows": rows}
