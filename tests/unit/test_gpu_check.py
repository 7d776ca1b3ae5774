"""benchmarks/gpu_check.py in its reduced mode (--cpu: tiny models on the CPU), so the GPU check cannot rot:
every check it makes on a GPU runs here too (the memory cap simulated), and its JSON holds the figures."""
import importlib.util
import json
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_check_runs_on_the_cpu(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    out = tmp_path / "gpu_check_cpu.json"
    rc = gpu_check.main(["--cpu", "--out", str(out), "--workdir", str(tmp_path / "work")])
    report = json.loads(out.read_text())
    assert rc == 0, report["failed"]
    assert report["mode"] == "cpu" and report["failed"] == []
    checks = report["checks"]
    assert len(checks) >= 11 and all(c["ok"] for c in checks.values())
    for name in ("peak RSS of a load", "embeddings in image order", "batch-size invariance",
                 "out of memory: the batch is halved", "out of memory at batch size 1", "compile: the cache",
                 "text classifier"):
        assert any(name in k for k in checks), name
    tiny = report["archs"]["clipdyn-tiny"]
    assert tiny["half_vs_fp32"]["precision"] == "bf16" and tiny["half_vs_fp32"]["cosine_distance_max_abs"] > 0
    assert report["oom"]["halvings"] == 2 and report["oom"]["effective_batch_size"] == 2
    assert report["compile"]["alive_while_cached"] == [False, False, True]
    assert report["e2e"]["e2e_images_per_s"] > 0 and report["text_classifier"]["seconds"] > 0
    assert not [t for t in threading.enumerate() if t.name == "clipdyn-prefetch"]
