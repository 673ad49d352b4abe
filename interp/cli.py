"""The `interp` command line: thin verbs over library functions."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    name="interp",
    help="Mechanistic interpretability for video diffusion transformers.",
    no_args_is_help=True,
    add_completion=False,
)


# ---- models, capture, inspect (issue 3) ---------------------------------------------------------------------------
@app.command("models")
def models_cmd() -> None:
    """List the supported DiT families and the built-in models.

    Example: interp models
    """
    from rich.console import Console
    from rich.table import Table

    from interp.adapters import ADAPTERS
    from interp.models import list_models

    fams = Table("family", "diffusers class", "block lists", title="families")
    for a in ADAPTERS.values():
        fams.add_row(a.family, a.class_name, " + ".join(a.block_lists))
    built = Table("name", "family", "status", "description", title="built-in models")
    for b in list_models():
        status = "ready" if b.available else f"not trained yet ({b.path} missing)"
        built.add_row(b.name, b.family, status, b.description)
    Console().print(fams, built)


@app.command("capture")
def capture_cmd(
    model: str = typer.Argument(..., help="built-in name (interp models), local diffusers dir, or hub id"),
    out: Path = typer.Option(..., "--out", help="output .h5 file"),
    steps: int = typer.Option(None, help="denoising steps (default: the task's, else 20)"),
    sites: str = typer.Option("blocks.*.hook_resid_post", help="site names or globs, comma-separated"),
    seed: int = typer.Option(0, help="picks the inputs (task instances or random text)"),
    noise_seed: int = typer.Option(0, help="seed of the initial noise"),
    batch: int = typer.Option(1, help="samples per run"),
    dtype: str = typer.Option("float32", help="stored activation dtype: float32 | float16"),
    pool: str = typer.Option("none", help="token pooling: none | mean | frame"),
    guidance: float = typer.Option(None, help="classifier-free guidance scale (>1 adds an uncond branch)"),
    shift: float = typer.Option(None, help="flow-matching timestep shift (default: the scheduler's)"),
    frames: int = typer.Option(None, help="latent frames (random inputs only)"),
    height: int = typer.Option(None, help="latent height (random inputs only)"),
    width: int = typer.Option(None, help="latent width (random inputs only)"),
    device: str = typer.Option("cpu", help="torch device"),
    overwrite: bool = typer.Option(False, help="replace an existing complete file"),
) -> None:
    """Run a denoising trajectory and store the chosen sites at every step in one HDF5 file.

    An interrupted capture resumes when run again with the same arguments.

    Example: interp capture tiny-wan --steps 10 --sites 'blocks.*.hook_resid_post' --seed 0 --out run.h5
    """
    from interp.capture import CaptureConfig, capture

    cfg = CaptureConfig(
        model=model, steps=steps, sites=[s.strip() for s in sites.split(",") if s.strip()], seed=seed,
        noise_seed=noise_seed, batch=batch, dtype=dtype, pool=pool, guidance=guidance, shift=shift, frames=frames,
        height=height, width=width, device=device,
    )  # fmt: skip
    path = capture(cfg, out, overwrite=overwrite, progress=True)
    typer.echo(f"wrote {path}")


@app.command("inspect")
def inspect_cmd(file: Path = typer.Argument(..., exists=True, help="a capture .h5 file")) -> None:
    """Print what a capture holds: run attributes and every dataset (shape, dtype, axes).

    Example: interp inspect run.h5
    """
    import json

    from rich.console import Console
    from rich.table import Table

    from interp.store import describe

    d = describe(file)
    attrs = Table("attribute", "value", title=str(file))
    for k, v in d["attrs"].items():
        if k == "config":
            v = json.dumps(json.loads(v))
        attrs.add_row(k, str(v))
    data = Table("dataset", "shape", "dtype", "axes")
    for ds in d["datasets"]:
        data.add_row(ds["name"], str(ds["shape"]), ds["dtype"], ds["axes"])
    Console(width=160).print(attrs, data)


# ---- probe (issue 6) ----------------------------------------------------------------------------------------------
@app.command("probe")
def probe_cmd(
    cache: Path = typer.Argument(..., exists=True, dir_okay=False, help="a capture .h5 file"),
    label: list[str] = typer.Option(
        ..., "--label", "-l",
        help="maze label (wall open path agent start goal trail block size path_length first_move) "
        "or a user array FILE.npy / FILE.npz[:KEY]; repeat for several",
    ),
    out: Path = typer.Option(..., "--out", help="output directory (probes.h5, weights/, heatmaps/)"),
    sites: str = typer.Option("blocks.*.hook_resid_post", help="site names or globs, comma-separated; '' = all"),
    steps: str = typer.Option("", help="positions on the steps axis: '0,5,9' or '0-9'; '' = all"),
    branch: str = typer.Option(None, help="branch group (cond / uncond) when the capture has several"),
    baseline: Path = typer.Option(None, exists=True, help="capture of a randomly initialised copy (same inputs)"),
    control: str = typer.Option("position", help="control task types: position | token | sample | none"),
    tokens_per_sample: int = typer.Option(64, help="token examples per sample (0 = all)"),
    balance: str = typer.Option("class", help="token draw: class (equal share per class) | uniform"),
    frames: str = typer.Option("", help="only tokens of these frames, e.g. '0' or '0,4'; '' = all"),
    lambdas: str = typer.Option("", help="regularization grid, comma-separated (default per probe kind)"),
    bootstrap: int = typer.Option(200, help="bootstrap replicates over test samples for the CIs"),
    seed: int = typer.Option(0, help="seed of the split, token draw and control task"),
    device: str = typer.Option("cpu", help="torch device for the solves"),
    memory_gb: float = typer.Option(1.0, help="feature memory per chunk of sites"),
) -> None:
    """Train linear probes for every (step, site) of a capture: metrics, control tasks, heatmaps, directions.

    Example: interp probe run.h5 --label wall --label path --sites 'blocks.*.hook_resid_post' --out probes/
    """
    from rich.console import Console

    from probes import ProbeConfig, run_probes
    from probes.results import summary_table

    def ints(text: str) -> list[int] | None:
        if not text.strip():
            return None
        vals: list[int] = []
        for part in text.split(","):
            a, _, b = part.strip().partition("-")
            vals.extend(range(int(a), int(b) + 1) if b else [int(a)])
        return vals

    try:
        cfg = ProbeConfig(
            labels=label, sites=[s.strip() for s in sites.split(",") if s.strip()], steps=ints(steps),
            branch=branch, tokens_per_sample=tokens_per_sample, balance=balance, frames=ints(frames),
            lambdas=[float(x) for x in lambdas.split(",")] if lambdas.strip() else None, control=control,
            bootstrap=bootstrap, seed=seed, device=device, memory_gb=memory_gb,
        )  # fmt: skip
        results = run_probes(cache, cfg, out=out, baseline=baseline)
    except (ValueError, KeyError, FileNotFoundError) as e:
        raise typer.BadParameter(str(e)) from e
    Console(width=160).print(summary_table(results))
    typer.echo(f"wrote {out / 'probes.h5'}, {out / 'weights'}, {out / 'heatmaps'}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
