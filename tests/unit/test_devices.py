"""GPU claiming: concurrent jobs get distinct devices; a held device is released on exit."""
import multiprocessing as mp
import time

from clipdyn.embed.devices import claim_slot, try_claim


def _hold(keys, lock_dir, q, hold_s):
    with claim_slot(keys, lock_dir, poll=0.05) as i:
        q.put(i)
        time.sleep(hold_s)


def test_two_jobs_get_distinct_slots(tmp_path):
    keys = ["gpu-A", "gpu-B"]
    q = mp.get_context("fork").Queue()
    procs = [mp.get_context("fork").Process(target=_hold, args=(keys, tmp_path, q, 1.0)) for _ in range(2)]
    for p in procs:
        p.start()
    got = sorted(q.get(timeout=10) for _ in procs)
    for p in procs:
        p.join()
    assert got == [0, 1]


def test_third_job_waits_until_one_is_free(tmp_path):
    keys = ["gpu-A", "gpu-B"]
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    holders = [ctx.Process(target=_hold, args=(keys, tmp_path, q, 1.5)) for _ in range(2)]
    for p in holders:
        p.start()
    first = {q.get(timeout=10) for _ in holders}
    assert try_claim(keys, tmp_path) is None  # all held
    t0 = time.time()
    late = ctx.Process(target=_hold, args=(keys, tmp_path, q, 0.0))
    late.start()
    idx = q.get(timeout=10)
    assert time.time() - t0 > 0.5 and idx in first
    for p in holders + [late]:
        p.join()


def test_lock_of_a_killed_job_is_released(tmp_path):
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_hold, args=(["gpu-A"], tmp_path, q, 60))
    p.start()
    assert q.get(timeout=10) == 0
    p.kill()
    p.join()
    got = try_claim(["gpu-A"], tmp_path)
    assert got is not None and got[0] == 0


# --- claim_device with a patched CUDA (no GPU here): which device each job gets ---------------

import types  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from clipdyn.embed.devices import claim_device, half_dtype, visible_gpus  # noqa: E402


def _fake_gpus(monkeypatch, n, capability=(9, 0)):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i: types.SimpleNamespace(uuid=f"GPU-fake-{i}", name="Fake H200"))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=None: "Fake H200")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: capability)
    selected = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: selected.append(i))
    return selected


def test_slurm_allocation_with_two_gpus_claims_one_each(monkeypatch, tmp_path):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    selected = _fake_gpus(monkeypatch, 2)
    msgs = []
    with claim_device(tmp_path, log=msgs.append) as a:
        with claim_device(tmp_path, log=msgs.append) as b:  # a second job while the first runs
            assert (a, b) == (torch.device("cuda", 0), torch.device("cuda", 1))
            assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu-GPU-fake-0.lock", "gpu-GPU-fake-1.lock"]
    assert selected == [0, 1]
    assert "claimed cuda:0 of 2 visible" in msgs[0]
    with claim_device(tmp_path, log=msgs.append) as c:  # both released
        assert c == torch.device("cuda", 0)


def test_a_job_gets_the_gpu_it_prefers_when_free(monkeypatch, tmp_path):
    _fake_gpus(monkeypatch, 3)
    with claim_device(tmp_path, log=lambda m: None, prefer=2) as a:
        assert a.index == 2
        with claim_device(tmp_path, log=lambda m: None, prefer=2) as b:  # held: the first free one
            assert b.index == 0


def test_one_visible_gpu_is_used_without_a_claim(monkeypatch, tmp_path):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    _fake_gpus(monkeypatch, 1)
    with claim_device(tmp_path, log=lambda m: None) as a, claim_device(tmp_path, log=lambda m: None) as b:
        assert a == b == torch.device("cuda", 0)
    assert list(tmp_path.iterdir()) == []


def test_no_cuda_means_the_cpu(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with claim_device(tmp_path, log=lambda m: None) as d:
        assert d == torch.device("cpu")


@pytest.mark.parametrize("capability, dtype", [((9, 0), torch.bfloat16), ((8, 0), torch.bfloat16),
                                               ((7, 5), torch.float16), ((7, 0), torch.float16)])
def test_bf16_only_where_the_gpu_has_it(monkeypatch, capability, dtype):
    _fake_gpus(monkeypatch, 1, capability)
    assert half_dtype(torch.device("cuda", 0)) == dtype
    assert half_dtype("cpu") == torch.bfloat16


@pytest.mark.parametrize("value, expected", [(None, None), ("", []), ("0", ["0"]), ("0,1", ["0", "1"]),
                                             ("GPU-ab, GPU-cd", ["GPU-ab", "GPU-cd"]), ("-1", [])])
def test_visible_gpus(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    assert visible_gpus() == expected
