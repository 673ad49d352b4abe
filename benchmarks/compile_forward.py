"""Benchmark: one model's bare forward, eager against ``torch.compile``, in float32 and each other precision, in one
process: milliseconds per forward of one batch, and each output's largest difference from eager float32.

What fusing the elementwise kernels could give the reproduction (its float32 kernels bind it: docs/benchmarks.md).
The bare forward is the one an unedited step runs (no nnsight trace); the compiled model is the same module.

    python -m benchmarks.compile_forward --device cuda --rows 96 --size 6
"""

from __future__ import annotations

import time

import torch
import typer

from interp.inputs import model_inputs
from interp.models import load_model
from interp.precision import PRECISIONS
from interp.trajectory import precision_context, traced_experts

app = typer.Typer(add_completion=False)


@app.command()
def main(
    model: str = typer.Option("maze-wan"),
    device: str = typer.Option("cpu"),
    rows: int = typer.Option(96, help="batch rows"),
    size: int = typer.Option(6, help="maze size (the token count follows)"),
    repeats: int = typer.Option(10, help="timed forwards per variant"),
    precisions: list[str] = typer.Option(list(PRECISIONS), "--precision"),
    mode: str = typer.Option("default", help="torch.compile mode"),
) -> None:
    loaded = load_model(model, device)
    traced = next(iter(traced_experts(loaded).values()))
    mi = model_inputs(loaded, rows, 0, size=size)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(mi.latent_shape, generator=g).to(device)
    ts = torch.full((rows,), 500.0, device=device)
    text = mi.text.to(device, torch.float32)
    cond = None if mi.condition is None else mi.condition.to(device)
    dit = traced.dit
    compiled = torch.compile(dit, mode=mode)
    cuda = device.startswith("cuda")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def timed(fn, precision):
        with torch.no_grad(), precision_context(precision, device):
            for _ in range(3):  # warm-up (the compiled variant compiles here)
                out = fn(x, ts, text, cond)
            sync()
            t = time.perf_counter()
            for _ in range(repeats):
                out = fn(x, ts, text, cond)
            sync()
        return (time.perf_counter() - t) / repeats * 1e3, out.float()

    tokens = x.shape[2] * x.shape[3] * x.shape[4] // 16
    print(f"{model}: {rows} rows of a {size}x{size} maze (~{tokens} tokens a row), device {device}, "
          f"torch.compile mode {mode}")  # fmt: skip
    print(f"{'precision':<10}{'eager ms':>10}{'compiled ms':>13}{'speed-up':>10}{'eager diff':>12}{'compiled diff':>15}")
    ref = None
    for p in precisions:
        t0 = time.perf_counter()
        e_ms, e_out = timed(dit, p)
        if ref is None:
            ref = e_out
        c_ms, c_out = timed(compiled, p)
        took = time.perf_counter() - t0
        e_d, c_d = (float((o - ref).abs().max()) for o in (e_out, c_out))
        print(f"{p:<10}{e_ms:>10.1f}{c_ms:>13.1f}{e_ms / c_ms:>9.2f}x{e_d:>12.2e}{c_d:>15.2e}   ({took:.0f} s with compiling)",
              flush=True)  # fmt: skip
    print("diff: largest |output - eager float32 output| (the output's scale is ~1)")


if __name__ == "__main__":
    app()
