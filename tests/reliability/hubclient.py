"""Run ``clipdyn.hub.client`` in a fresh interpreter against a Hub on 127.0.0.1 (clipdyn.fixtures.hubserver):
``huggingface_hub`` reads the endpoint at import, so an online client runs in a subprocess with
``HF_ENDPOINT=<url>``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CLIENT = r"""
import json, sys, time, types
from clipdyn.hub import client as hub
delays, hf_delays = [], []
hub.time = types.SimpleNamespace(sleep=delays.append)  # record clipdyn's backoff instead of waiting
time.sleep = hf_delays.append  # and huggingface_hub's own
call = json.loads(sys.argv[1])
try:
    fn = getattr(hub, call.pop("fn"))
    out = fn(**call)
    res = {"ok": True, "result": [str(x) for x in out] if isinstance(out, tuple) else str(out)}
except Exception as err:
    res = {"ok": False, "type": type(err).__name__, "message": str(err),
           "cause": type(err.__cause__).__name__ if err.__cause__ is not None else None}
res["delays"], res["hf_delays"] = delays, hf_delays
print("RESULT " + json.dumps(res))
"""


def call_hub(server, cache: Path, fn: str, token: str = "", **kwargs) -> dict:
    """Run ``clipdyn.hub.client.<fn>(**kwargs)`` in a fresh interpreter pointed at ``server``
    (with ``HF_TOKEN=token`` if given)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_ENDPOINT=server.url, HF_HUB_CACHE=str(cache), HF_HOME=str(cache.parent / "hf-home"),
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_XET="1", NO_PROXY="127.0.0.1,localhost",
               no_proxy="127.0.0.1,localhost", HF_HUB_ETAG_TIMEOUT="5", HF_HUB_DOWNLOAD_TIMEOUT="5")
    if token:
        env["HF_TOKEN"] = token
    proc = subprocess.run([sys.executable, "-c", CLIENT, json.dumps(dict(fn=fn, **kwargs))], env=env,
                          capture_output=True, text=True, timeout=120)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            out = json.loads(line[len("RESULT "):])
            out["stdout"] = proc.stdout
            return out
    raise AssertionError(f"client crashed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
