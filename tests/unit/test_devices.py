"""GPU claiming: concurrent jobs get distinct devices; a held device is released on exit."""
import multiprocessing as mp
import time

from clipdyn.devices import claim_slot, try_claim


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
