"""CPU benchmark of the shipped organism: 8 held-out samples x 20 steps through ``sample_i2v``, VAE decode included.

The sampler is the model's (interp.json): guidance 3, so classifier-free guidance runs two forwards per step
(the conditional and unconditional batches, as the pipeline's ``__call__`` does; ``--batch-cfg`` stacks them into
one forward of 2B). The samples are the first n/4 held-out instances of each task's easiest level. Printed side by
side: the wall time, its split into prompt encoding, image conditioning, denoising and decoding, and the target
(<= 60 s); then the pipeline's own ``__call__`` for one sample, for comparison.

Run: python -m benchmarks.organism_cpu [--threads 2] [--n 8] [--steps 20] [--batch-cfg] [--no-call]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

TARGET_S = 60.0
PARTS = ("prompt_encoding", "conditioning", "denoising", "decode")


def _inputs(n: int):
    from interp.tasks import suite

    suite._load_all()
    names = ["loopmaze", "goalmaze", "permanence", "mirror"]
    per = [n // len(names) + (1 if i < n % len(names) else 0) for i in range(len(names))]
    images, prompts = [], []
    for name, k in zip(names, per):
        task = suite.get_task(name)
        for inst in suite.heldout(task, task.levels[0], k):
            images.append(task.render(inst)[0])
            prompts.append(task.prompt(inst))
    return images, prompts


def run(n: int = 8, steps: int = 20, threads: int = 2, batch_cfg: bool = False, call: bool = True) -> dict:
    import json

    import torch

    torch.set_num_threads(threads)
    from interp.models import data_path
    from interp.pipelines.organism import load_pipeline
    from interp.pipelines.sampling import sample_i2v

    path = data_path("organism")
    sampler = json.loads((path / "interp.json").read_text())["sampler"]
    t0 = time.perf_counter()
    pipe = load_pipeline(path)
    pipe.set_progress_bar_config(disable=True)
    load_s = time.perf_counter() - t0
    images, prompts = _inputs(n)
    parts: dict[str, float] = {}
    t1 = time.perf_counter()
    video = sample_i2v(pipe, images, prompts, num_inference_steps=steps, guidance_scale=sampler["guidance"], seed=0,
                       batch_cfg=batch_cfg, timings=parts)  # fmt: skip
    wall = time.perf_counter() - t1
    out = {
        "n": n, "steps": steps, "threads": torch.get_num_threads(), "guidance": sampler["guidance"],
        "batch_cfg": batch_cfg, "forwards": steps * (1 if batch_cfg else 2), "load_s": load_s, "wall_s": wall,
        "parts": {k: parts.get(k, 0.0) for k in PARTS}, "video_shape": list(video.shape),
        "cpu": platform.processor() or platform.machine(), "cores_visible": os.cpu_count(),
        "load_avg": os.getloadavg(),
    }  # fmt: skip
    if call:
        from PIL import Image

        t2 = time.perf_counter()
        pipe(image=Image.fromarray(images[0]), prompt=prompts[0], height=96, width=96, num_frames=9,
             num_inference_steps=steps, guidance_scale=sampler["guidance"], generator=torch.Generator().manual_seed(0),
             output_type="np")  # fmt: skip
        out["call_one_s"] = time.perf_counter() - t2
    return out


def report(r: dict) -> str:
    cfg = "one forward of 2B per step (--batch-cfg)" if r["batch_cfg"] else "two forwards of B per step, as __call__"
    lines = [
        f"cpu: {r['cpu']}, {r['cores_visible']} cores visible, torch threads {r['threads']}; "
        f"load average at the end {', '.join(f'{x:.1f}' for x in r['load_avg'])}",
        f"organism load: {r['load_s']:.1f} s",
        f"sample_i2v: {r['n']} samples x {r['steps']} steps, guidance {r['guidance']:g} ({cfg}), VAE decode included",
        "",
        f"{'part':<18}{'seconds':>10}{'share':>8}",
    ]
    for k in PARTS:
        v = r["parts"][k]
        lines.append(f"{k:<18}{v:>10.1f}{v / max(r['wall_s'], 1e-9):>8.0%}")
    per_step = r["parts"]["denoising"] / max(r["steps"], 1)
    lines += [
        f"{'wall':<18}{r['wall_s']:>10.1f}",
        f"{'target':<18}{TARGET_S:>10.1f}   {'met' if r['wall_s'] <= TARGET_S else 'NOT met'} "
        f"(wall / target = {r['wall_s'] / TARGET_S:.1f}x)",
        f"denoising: {per_step:.2f} s per step ({per_step / (1 if r['batch_cfg'] else 2):.2f} s per forward of "
        f"{r['n'] if not r['batch_cfg'] else 2 * r['n']} samples)",
    ]
    if "call_one_s" in r:
        c = r["call_one_s"]
        lines.append(f"pipeline __call__, 1 sample x {r['steps']} steps: {c:.1f} s "
                     f"(x{r['n']} = {c * r['n']:.1f} s one by one, vs {r['wall_s']:.1f} s batched)")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-cfg", action="store_true", help="stack the two CFG branches into one forward")
    p.add_argument("--no-call", action="store_true", help="skip timing the pipeline's own __call__")
    a = p.parse_args()
    print(report(run(a.n, a.steps, a.threads, a.batch_cfg, call=not a.no_call)), flush=True)


if __name__ == "__main__":
    main()
