"""The engine's all-local pass against eager PyTorch, for every zoo model: `./intradp engine-speed`.

On one thread by default (the capped robot's setting): the median wall time of ``model(x)`` (eager), of the
captured graph run op by op (``OpGraph.run``: the executor's whole-tensor path, one fx node at a time) and of
``RobotWorker.run_frame`` under the all-local plan (what robot_node computes, outputs encoded), each in
``torch.inference_mode``, the three interleaved so that drift of the machine's speed hits them alike.

    ./intradp engine-speed                         # every model, 1 thread, 21 repeats (~90 s)
    ./intradp engine-speed --models resnet18,vgg19_bn --threads 2 --repeats 11
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def measure(name: str, repeats: int) -> dict[str, float]:
    from intradp_ros.engine.executor import RobotWorker
    from intradp_ros.engine.plan import Plan
    from intradp_ros.runtime import ModelConfig, ModelRuntime
    m = ModelRuntime(ModelConfig(model=name))
    x = torch.rand(1, 3, m.size, m.size, generator=torch.Generator().manual_seed(0))
    worker, plan = RobotWorker(m.graph), Plan.local(m.graph, name)
    runs = {"eager": lambda: m.module(x), "graph": lambda: m.graph.run(x),
            "run_frame": lambda: worker.run_frame(0, plan, x, lambda p: None)}
    times: dict[str, list[float]] = {k: [] for k in runs}
    with torch.inference_mode():
        for fn in runs.values():          # warm-up: allocator, kernels' first-call costs
            fn()
        for _ in range(repeats):
            for k, fn in runs.items():
                times[k].append(_time(fn))
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None) -> int:
    from intradp_ros.models import model_names
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(model_names()), help="comma separated (default: the zoo)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--repeats", type=int, default=21,
                    help="timed runs of each, interleaved (with 7, a shared host's noise moved ratios by up to 8 %%)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    print(f"# torch {torch.__version__}, {a.threads} thread(s), median of {a.repeats} interleaved runs, ms")
    print("| model | eager model(x) | engine graph.run | engine / eager | run_frame (all-local) | run_frame / eager |")
    print("|---|---:|---:|---:|---:|---:|")
    worst = 0.0
    for name in [n for n in a.models.split(",") if n]:
        t = measure(name, a.repeats)
        worst = max(worst, t["run_frame"] / t["eager"])
        print(f"| {name} | {t['eager']:.1f} | {t['graph']:.1f} | {t['graph'] / t['eager']:.3f} | "
              f"{t['run_frame']:.1f} | {t['run_frame'] / t['eager']:.3f} |", flush=True)
    print(f"# worst run_frame / eager: {worst:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
