"""Every test starts from the same process-wide state, whatever ran before it.

huggingface_hub reads its settings (``HF_HUB_OFFLINE``, ``HF_ENDPOINT``, the cache folder) once, when
it is first imported: a test that sets ``HF_HUB_OFFLINE=1`` while it is imported the first time
would leave the whole session offline. So it is imported here, before any test, and after each
test its settings and the environment are put back as they were. So is torch's thread count, which
an in-process embedding step sets to its job's threads (1 in most tests), and which would otherwise
run every later test's torch code on one core.
"""

import os
import sys

import huggingface_hub.constants as hf_constants
import pytest

_HF_SETTINGS = ("HF_HUB_OFFLINE", "ENDPOINT", "HUGGINGFACE_CO_URL_TEMPLATE", "HF_HUB_CACHE", "HF_HOME",
                "HF_HUB_DISABLE_XET")


@pytest.fixture(autouse=True)
def _no_process_state_leaks():
    env = dict(os.environ)
    settings = {k: getattr(hf_constants, k) for k in _HF_SETTINGS if hasattr(hf_constants, k)}
    cwd = os.getcwd()
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch else None
    yield
    torch = sys.modules.get("torch")
    if torch is not None:
        if threads is None:  # first imported by this test: the default is the number of cores
            threads = len(os.sched_getaffinity(0))
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    for k in set(os.environ) - set(env):
        del os.environ[k]
    os.environ.update(env)
    for k, v in settings.items():
        setattr(hf_constants, k, v)
    if os.getcwd() != cwd:
        os.chdir(cwd)
