"""Run LAION CLIP_benchmark's own CLI (``clip_benchmark eval``) with two additions, for
``versus_clip_benchmark.py``; it runs in CLIP_benchmark's venv and imports nothing of clipdyn.

Usage: python clip_benchmark_wrapper.py MODEL_CONFIG_DIR TIMING_JSON eval [clip_benchmark eval args]

1. ``open_clip.add_model_config(MODEL_CONFIG_DIR)`` before ``main()``, so that the workflow's
   custom architectures (``clipdyn-demo-s`` ...) are known to open_clip: the one deviation from
   calling ``clip_benchmark eval`` directly.
2. Timers around CLIP_benchmark's own functions, written to TIMING_JSON: the process's start
   (from /proc) to the end of its imports, ``load_clip`` (model creation and checkpoint load),
   ``zero_shot_classifier`` (the text tower over classes x templates), the image tower
   (``model.encode_image``) and the rest of ``run_classification`` (waiting on the data loader:
   webdataset reading and PNG/WebP decoding and the transform, plus the loader's worker start-up).
   The timers only read the clock; the computation is CLIP_benchmark's, unchanged.
"""

import json
import os
import sys
import time


def _process_start() -> float:
    """This process's start, in epoch seconds (from /proc; 10 ms resolution)."""
    fields = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
    ticks = int(fields[19])  # field 22 of stat(5), counted after the name
    btime = next(int(line.split()[1]) for line in open("/proc/stat") if line.startswith("btime"))
    return btime + ticks / os.sysconf("SC_CLK_TCK")


T_START = _process_start()

import open_clip  # noqa: E402
import torch  # noqa: E402
from clip_benchmark import cli  # noqa: E402
from clip_benchmark.metrics import zeroshot_classification as zsc  # noqa: E402

T_IMPORTED = time.time()
timing = {"start_imports_s": T_IMPORTED - T_START, "model_load_s": 0.0, "text_tower_s": 0.0,
          "image_tower_s": 0.0, "data_wait_s": 0.0}


def _timed(fn, key):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            timing[key] += time.perf_counter() - t0
    return wrapper


def _load_clip(*args, **kwargs):
    model, transform, tokenizer = _orig_load_clip(*args, **kwargs)
    encode_image = model.encode_image

    def timed_encode_image(*a, **k):
        t0 = time.perf_counter()
        out = encode_image(*a, **k)
        timing["image_tower_s"] += time.perf_counter() - t0
        return out

    model.encode_image = timed_encode_image
    return model, transform, tokenizer


def _run_classification(*args, **kwargs):
    t0 = time.perf_counter()
    tower0 = timing["image_tower_s"]
    try:
        return _orig_run_classification(*args, **kwargs)
    finally:
        timing["data_wait_s"] += (time.perf_counter() - t0) - (timing["image_tower_s"] - tower0)


_orig_load_clip = cli.load_clip
_orig_run_classification = zsc.run_classification
cli.load_clip = _timed(_load_clip, "model_load_s")
zsc.zero_shot_classifier = _timed(zsc.zero_shot_classifier, "text_tower_s")
zsc.run_classification = _run_classification

if __name__ == "__main__":
    config_dir, timing_out = sys.argv[1], sys.argv[2]
    open_clip.add_model_config(config_dir)
    sys.argv = ["clip_benchmark"] + sys.argv[3:]
    try:
        rc = cli.main()
    finally:
        timing["torch_threads"] = torch.get_num_threads()
        timing["total_in_process_s"] = time.time() - T_START
        with open(timing_out, "w") as f:
            json.dump(timing, f)
    sys.exit(rc)
