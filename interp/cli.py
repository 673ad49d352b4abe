"""The `interp` command line: thin verbs over the verbs' modules (:mod:`interp.apps`) and the library.

The one place where imports stay inside functions, by design: each verb imports its module when it runs, so
``interp --help`` and ``interp models`` start in 0.1 s instead of the ~6 s that torch, diffusers, nnsight and
matplotlib take to import. ``interp bench`` imports ``benchmarks.capture`` from a source checkout (not in the wheel).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import typer

FORCE_HELP = "run even when the estimated memory, disk or row-forwards exceed what is free (or a cap: interp.budget)"
SET_HELP = "set any config field: key=value (dotted keys for nested fields, YAML values); repeatable"

app = typer.Typer(
    name="interp",
    help="Mechanistic interpretability for video diffusion transformers.",
    no_args_is_help=True,
    add_completion=False,
)

DEBUG_ENV = "INTERP_DEBUG"  # set to 1 (or pass --debug) for full tracebacks of user errors


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"interp {version('interp')}")
        except PackageNotFoundError:  # a source checkout without an install
            from interp import __version__

            typer.echo(f"interp {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_version, help="print the version"),
    debug: bool = typer.Option(False, "--debug", help=f"full tracebacks for errors (or {DEBUG_ENV}=1)"),
) -> None:
    """Mechanistic interpretability for video diffusion transformers."""
    if debug:
        import os

        os.environ[DEBUG_ENV] = "1"


# ---- models, capture, inspect (issue 3) ---------------------------------------------------------------------------
@app.command("models")
def models_cmd() -> None:
    """List the diffusers video transformers interp traces (exact or generic adapter, sites, pipelines) and the
    built-in models.

    Example: interp models
    """
    from rich.console import Console
    from rich.table import Table

    from interp.adapters.coverage import coverage_rows

    fams = Table(title="video transformers", show_lines=True)
    fams.add_column("family", overflow="fold")
    fams.add_column("diffusers class", overflow="fold")
    fams.add_column("adapter", no_wrap=True)
    fams.add_column("block sites", overflow="fold", max_width=26)
    fams.add_column("pipelines", overflow="fold")
    for r in coverage_rows():
        hooks = ", ".join([*(h.removeprefix("hook_") for h in r.hooks), *(f"{n}.q/k/v/z" for n in r.heads)])
        fams.add_row(r.family, r.class_name, r.kind, hooks, ", ".join(r.pipelines) or "-")
    fams.caption = (
        "sites: hook_embed, blocks.{i}.hook_<block site>, hook_out; per head (attn.q/k/v/z): "
        "blocks.{i}.attn.hook_q ... hook_z; skip: blocks.{i} (exact: sublayers too). "
        "exact = copied block forwards with every sublayer site; generic = diffusers' own forwards, block level"
    )
    Console().print(fams)
    from interp.builtins import FAMILIES, data_path, list_models

    built = Table(title=f"built-in models (families: {', '.join(FAMILIES)}; any diffusers video DiT directory or "
                  "hub id loads too)")  # fmt: skip
    for col in ("name", "family", "parameters", "task"):
        built.add_column(col, no_wrap=True)
    built.caption = f"card: the model card under {data_path()}"
    built.add_column("card", overflow="fold")
    built.add_column("description", ratio=1)
    for b in list_models():
        n = b.parameters
        size = "tiny" if b.path is None else "not trained" if not b.available else f"{n / 1e6:.1f}M"
        card = "-" if b.card is None else str(b.card.relative_to(data_path()))
        built.add_row(b.name, b.family, size, b.task, card, b.description)
    Console().print(built)


@app.command("twin")
def twin_cmd(
    model: str = typer.Argument(..., help="built-in name (interp models), model or pipeline directory, or hub id"),
    out: Path = typer.Option(..., "--out", help="output model directory (must not exist)"),
    seed: int = typer.Option(0, help="seed of the re-initialised weights"),
) -> None:
    """Write the random-weights twin of a model: same config, weights re-initialised from --seed (safetensors).

    Capture the twin on the same inputs as the model and give that capture to `interp probe --baseline`: what a
    probe finds in an untrained network of the same shape.

    Example: interp twin maze-wan --out maze-wan-random && interp capture maze-wan-random --out random.h5
    """
    from interp.apps.twin import make_twin

    try:
        path = make_twin(model, out, seed)
    except (FileNotFoundError, FileExistsError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {path} (random twin of {model}, seed {seed})")


@app.command("capture")
def capture_cmd(
    model: str = typer.Argument(..., help="built-in name (interp models), local diffusers dir, or hub id"),
    out: Path = typer.Option(None, "--out", help="output .h5 file (required unless --plan)"),
    steps: int = typer.Option(None, help="denoising steps (default: the task's, else 20)"),
    sites: str = typer.Option(None, help="site names or globs, comma-separated (default: blocks.*.hook_resid_post)"),
    seed: int = typer.Option(None, help="picks the inputs (task instances or random text) (default: 0)"),
    noise_seed: int = typer.Option(None, help="seed of the initial noise (default: 0)"),
    batch: int = typer.Option(None, help="samples per run (default: 1)"),
    dtype: str = typer.Option(
        None,
        help="stored activation dtype: float32 | float16 | bfloat16 | float8_e4m3:token | float8_e4m3:channel "
        '(default: float32; per site group: --set \'dtype={"blocks.*": "bfloat16", "*": "float16"}\')',
    ),
    pool: str = typer.Option(None, help="token pooling: none | mean | frame (default: none)"),
    guidance: float = typer.Option(
        None,
        help="classifier-free guidance scale (>1 adds an uncond branch; HunyuanVideo: "
        "the embedded guidance; default with --prompt: the pipeline's own)",
    ),
    shift: float = typer.Option(None, help="flow-matching timestep shift (default: the scheduler's)"),
    frames: int = typer.Option(
        None, help="with --prompt: the pipeline's num_frames (pixels' frames, default 81); random inputs: latent frames"
    ),
    height: int = typer.Option(None, help="with --prompt: video height in pixels (default 480); else latent height"),
    width: int = typer.Option(None, help="with --prompt: video width in pixels (default 832); else latent width"),
    prompt: list[str] = typer.Option(
        None,
        "--prompt",
        help="a prompt (repeat for a batch): encodes it through the "
        "pipeline's own text encoder; needs a whole pipeline directory or hub id",
    ),
    negative_prompt: str = typer.Option(None, "--negative-prompt", help="the unconditional branch's prompt (CFG)"),
    image: list[str] = typer.Option(None, "--image", help="image file for image-to-video, one per --prompt"),
    x0_steps: str = typer.Option(
        None,
        "--x0-steps",
        help="the step lens: decode x0 through the VAE at 'all', 'every:K' or '0,5,9' steps (stored as x0_video)",
    ),
    x0_downscale: int = typer.Option(
        None, "--x0-downscale", help="integer downscale of the decoded x0 frames (default 1)"
    ),
    max_sequence_length: int = typer.Option(
        None, help="text tokens (the pipeline's max_sequence_length; default: the pipeline's own)"
    ),
    true_cfg_scale: float = typer.Option(
        None, "--true-cfg-scale", help="HunyuanVideo: true classifier-free guidance with --negative-prompt"
    ),
    model_dtype: str = typer.Option(None, help="transformer dtype (float32 | bfloat16 | float16)"),
    text_encoder_offload: str = typer.Option(
        None, help="after encoding: none (default) | cpu | release the text/image encoders"
    ),
    device: str = typer.Option(None, help="torch device (default: cpu)"),
    scorer: str = typer.Option(
        None,
        help="score each decoded step and the final video: 'module:function' or a "
        "built-in (final_frame, maze, suite, ...; interp.scorers), stored under scores/",
    ),
    samples: str = typer.Option(
        None,
        help="a folder of VBVR-Bench samples (<sample>/first_frame.png, prompt.txt, "
        "optional final_frame.png): their prompts and images, instead of --prompt/--image",
    ),
    set_: list[str] = typer.Option(
        [], "--set", help=SET_HELP + " (any CaptureConfig field, e.g. text_len, component_dtypes)"
    ),
    overwrite: bool = typer.Option(False, help="replace an existing complete file"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    plan: bool = typer.Option(
        False,
        "--plan",
        "--dry-run",
        help="print rows, forwards, bytes to be written (as stored: dtype, tokens, step stride) and the time "
        "estimated from the first steps, then exit without writing anything",
    ),  # fmt: skip
) -> None:
    """Run a denoising trajectory and store the chosen sites at every step in one HDF5 file.

    An interrupted capture resumes when run again with the same arguments. With --prompt (and --image for
    image-to-video) a whole diffusers pipeline encodes the inputs with its own methods; --seed S is then the noise
    generator (sample i: torch.Generator().manual_seed(S + i)), the file stores the final decoded video as `video`,
    and --x0-steps adds the decoded x0 of those steps as `x0_video`. Every field of the capture's config also has a --set key.

    Example: interp capture tiny-wan --steps 10 --sites 'blocks.*.hook_resid_post' --seed 0 --out run.h5

    Example: interp capture maze-wan --batch 8 --plan   (what it would cost; writes nothing)

    Example: interp capture maze-wan --dtype float8_e4m3:token --set step_stride=5 --set 'tokens={rows: [2, 6]}'
    --dry-run   (8-bit storage of every 5th step and rows 2..5 of the token grid: its bytes, nothing written)

    Example: interp capture ./Wan2.2-I2V --prompt "the ball rolls left" --image first.png --steps 30 --guidance 5
    --seed 0 --frames 81 --height 480 --width 832 --x0-steps every:5 --out run.h5
    """
    from interp.adapters.generic import GenericCallError
    from interp.apps.capture import CaptureConfig, capture
    from interp.pipelines.components import PipelineError

    given = dict(
        model=model, steps=steps, sites=_csv(sites), seed=seed, noise_seed=noise_seed, batch=batch, dtype=dtype,
        pool=pool, guidance=guidance, shift=shift, frames=frames, height=height, width=width, device=device,
        model_dtype=model_dtype, prompts=prompt or None, negative_prompt=negative_prompt, images=image or None,
        x0_steps=x0_steps, x0_downscale=x0_downscale, max_sequence_length=max_sequence_length,
        text_encoder_offload=text_encoder_offload, true_cfg_scale=true_cfg_scale, scorer=scorer, samples=samples,
    )  # fmt: skip
    cfg = _config(CaptureConfig, given, set_)
    from interp.scorers import ScorerError

    if plan:
        from interp.apps.capture import plan_capture

        try:
            cost = plan_capture(cfg)
        except (PipelineError, ValueError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        typer.echo(f"capture {cfg.model}: plan (nothing written)\n" + "\n".join(cost.lines()))
        return
    if out is None:
        raise typer.BadParameter("give --out FILE.h5 (or --plan to see the cost first)", param_hint="--out")
    try:
        path = capture(cfg, out, overwrite=overwrite, progress=True, force=force)
    except (PipelineError, ScorerError, FileExistsError, GenericCallError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {path}")


def _csv(text: str | None) -> list[str] | None:
    """A comma-separated option as a list (None: not given)."""
    return None if text is None else [s.strip() for s in text.split(",") if s.strip()]


def _config(cls, given: dict, sets: list[str]):
    """The verb's config from its options (None: not given) and ``--set``; a bad key exits 2 before anything runs."""
    from interp.apps.options import OptionError, config_from

    try:
        return config_from(cls, given, sets)
    except OptionError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None


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
        ...,
        "--label",
        "-l",
        help="maze label (wall open path agent start goal trail block size path_length first_move) "
        "or a user array FILE.npy / FILE.npz[:KEY]; repeat for several",
    ),
    out: Path = typer.Option(..., "--out", help="output directory (probes.h5, weights/, heatmaps/)"),
    sites: str = typer.Option(None, help="globs, comma-separated; '' = all (default: blocks.*.hook_resid_post)"),
    steps: str = typer.Option("", help="positions on the steps axis: '0,5,9' or '0-9'; '' = all"),
    branch: str = typer.Option(None, help="branch group (cond / uncond) when the capture has several"),
    baseline: Path = typer.Option(None, exists=True, help="capture of a randomly initialised copy (same inputs)"),
    control: str = typer.Option(None, help="control task types: position | token | sample | none (default: position)"),
    tokens_per_sample: int = typer.Option(None, help="token examples per sample (0 = all) (default: 64)"),
    balance: str = typer.Option(None, help="token draw: class (equal share per class) | uniform (default: class)"),
    frames: str = typer.Option("", help="only tokens of these frames, e.g. '0' or '0,4'; '' = all"),
    lambdas: str = typer.Option("", help="regularization grid, comma-separated (default per probe kind)"),
    bootstrap: int = typer.Option(None, help="bootstrap replicates over test samples for the CIs (default: 200)"),
    seed: int = typer.Option(None, help="seed of the split, token draw and control task (default: 0)"),
    device: str = typer.Option(None, help="torch device for the solves (default: cpu)"),
    set_: list[str] = typer.Option(
        [], "--set", help=SET_HELP + " (ProbeConfig: e.g. memory_gb, split, max_iter, precision)"
    ),  # fmt: skip
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Train linear probes for every (step, site) of a capture: metrics, control tasks, heatmaps, directions.

    Every field of the probe config has a --set key (e.g. --set memory_gb=4 --set precision=float32).

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

    given = dict(labels=label, sites=_csv(sites), steps=ints(steps), branch=branch, tokens_per_sample=tokens_per_sample,
                 balance=balance, frames=ints(frames), control=control, bootstrap=bootstrap, seed=seed, device=device,
                 lambdas=[float(x) for x in lambdas.split(",")] if lambdas.strip() else None)  # fmt: skip
    cfg = _config(ProbeConfig, given, set_)
    try:
        results = run_probes(cache, cfg, out=out, baseline=baseline, force=force)
    except (ValueError, KeyError, FileNotFoundError) as e:
        raise typer.BadParameter(str(e)) from e
    Console(width=160).print(summary_table(results))
    typer.echo(f"wrote {out / 'probes.h5'}, {out / 'weights'}, {out / 'heatmaps'}")


# ---- train, eval, demo (issue 4) ----------------------------------------------------------------------------------
@app.command("train")
def train_cmd(
    config: Path = typer.Argument(..., exists=True, dir_okay=False, help="training YAML (experiments/train/)"),
    set_: list[str] = typer.Option([], "--set", help="override a config field: key=value (dotted keys)"),
) -> None:
    """Train an embedded task model (rectified flow, data generated on the fly); resumable via resume_from.

    Example: interp train experiments/train/maze-wan.yaml --set max_minutes=25 --set out=runs/maze
    """
    from interp.apps.train import main as train_main

    state = train_main(str(config), set_)
    typer.echo(f"trained to step {state['step']} ({state['samples']} samples)")


@app.command("eval")
def eval_cmd(
    model: str = typer.Argument("maze-wan", help="built-in name or model directory with task metadata"),
    task: str = typer.Option(None, help="maze models: 'maze'; suite models: a task, a comma list or 'all' (default)"),
    size: str = typer.Option(None, help="maze size(s): '5' (default), '3-8' or '4,6'"),
    level: str = typer.Option(None, help="suite models: level(s) as a comma list or 'all' (default)"),
    n: int = typer.Option(16, min=1, help="held-out instances per size / (task, level)"),
    steps: int = typer.Option(None, min=1, help="denoising steps (default: the model's interp.json sampler)"),
    seed: int = typer.Option(0, min=0, help="picks the held-out instances (suite models: and the noise, seed + i)"),
    noise_seed: int = typer.Option(0, min=0, help="maze models: seed of the initial noise (per sample)"),
    shift: float = typer.Option(None, help="timestep shift (default: the model's, 5)"),
    guidance: float = typer.Option(None, help="suite models: CFG scale (default: the model's interp.json sampler)"),
    batch: int = typer.Option(32, min=1, help="samples per forward"),
    device: str = typer.Option("cpu", help="torch device"),
    out: Path = typer.Option(None, "--out", help="output dir: eval.json, samples.h5 (maze, several sizes: size{N}/)"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    samples: Path = typer.Option(
        None, "--samples", help="any pipeline: a folder of VBVR-Bench samples to run and score"
    ),
    scorer: str = typer.Option(None, help="with --samples: module:function (default: interp.scorers:final_frame)"),
) -> None:
    """Sample held-out task instances, score the videos from pixels, print the success rate with its 95% CI; or run
    any pipeline on a folder of VBVR-Bench samples (--samples) and print each score's mean with its 95% CI.

    Example: interp eval maze-wan --task maze --size 5 --n 16 --steps 20 --seed 0 --out eval-out

    Example: interp eval organism --task loopmaze --level 3 --n 16 --steps 20 --seed 0 --out eval-organism

    Example: interp eval path/to/Wan2.2-I2V --samples vbvr/ --steps 40 --out eval-vbvr
    """
    import json

    if samples is not None:
        _eval_samples(model, samples, scorer, steps, guidance, seed, device, out, force, task, size, level)
        return
    if scorer is not None:
        raise typer.BadParameter("--scorer scores a --samples folder's videos; task models use their own scorer")

    from rich.console import Console
    from rich.table import Table

    from interp.apps.evaluate import eval_maze, is_suite, model_meta, parse_sizes, write_samples
    from interp.store.atomic import write_atomic

    try:
        _, meta = model_meta(model)
    except Exception:  # noqa: BLE001 -- a hub id offline, a missing model: load_model below says which
        meta = None
    if is_suite(meta):
        _eval_suite(model, meta, task, level, size, n, steps, seed, noise_seed, shift, guidance, batch, device, out,
                    force)  # fmt: skip
        return
    if level is not None or guidance is not None:
        raise typer.BadParameter(f"--level and --guidance are for task-suite models; {model!r} is a maze model")
    task = task or "maze"
    if task != "maze":
        raise typer.BadParameter(f"unknown task {task!r}; known: maze")
    try:
        sizes = parse_sizes(size or "5")
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    from interp.lm import is_lm_path

    if is_lm_path(model):  # the maze language model: exact solution accuracy of greedy answers
        from interp.lm.model import load_lm
        from interp.lm.run import eval_lm

        rows = eval_lm(load_lm(model, device), sizes, n, seed, batch)
        table = Table("size", "n", "exact", "95% CI", "first move", "goal reached", title=f"{model}: maze (LM)")
        for r in rows:
            table.add_row(str(r["size"]), str(r["n"]), f"{r['exact']:.3f}", f"[{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]",
                          f"{r['first_move']:.3f}", f"{r['goal_reached']:.3f}")  # fmt: skip
        Console().print(table)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            write_atomic(out / "eval.json", json.dumps(rows, indent=2))
        return
    from interp.models import load_model

    loaded = load_model(model, device)
    table = Table("size", "n", "steps", "solve rate", "95% CI", "path recall", "extra cells", title=f"{model}: maze")
    rows = []
    for s in sizes:
        res = eval_maze(loaded, s, n, steps, seed, noise_seed, shift, batch, progress=True, force=force)
        summ = res.summary()
        rows.append(summ)
        lo, hi = summ["ci95"]
        table.add_row(str(s), str(n), str(res.steps), f"{summ['solve_rate']:.3f}", f"[{lo:.3f}, {hi:.3f}]",
                      f"{summ['path_recall']:.3f}", f"{summ['extra_cells']:.2f}")  # fmt: skip
        if out is not None:
            path = out / "samples.h5" if len(sizes) == 1 else out / f"size{s}" / "samples.h5"
            write_samples(res, path, {"model": model, "weight_hash": loaded.weight_hash, "seed": seed,
                                      "noise_seed": noise_seed})  # fmt: skip
    Console().print(table)
    if out is not None:
        write_atomic(out / "eval.json", json.dumps(rows, indent=2))
        typer.echo(f"wrote {out}")


def _eval_samples(model, samples, scorer, steps, guidance, seed, device, out, force, task, size, level) -> None:
    """``interp eval MODEL --samples DIR``: the pipeline on every sample, scored (:func:`interp.apps.evaluate.eval_samples`)."""
    from rich.console import Console
    from rich.table import Table

    from interp.apps.evaluate import eval_samples

    if task is not None or size is not None or level is not None:
        raise typer.BadParameter("--samples gives the inputs: leave out --task, --size and --level")
    if out is None:
        raise typer.BadParameter("--samples needs --out (the videos go to OUT/samples.h5, the scores to eval.json)")
    res = eval_samples(model, samples, out, scorer=scorer, steps=steps, guidance=guidance, seed=seed, device=device,
                       force=force)  # fmt: skip
    table = Table("score", "n", "mean", "95% CI", title=f"{model}: {res['n']} samples of {samples} ({res['scorer']})")
    for k, v in res["scores"].items():
        table.add_row(k, str(v["n"]), f"{v['mean']:.4g}", f"[{v['ci95'][0]:.4g}, {v['ci95'][1]:.4g}]")
    Console().print(table)
    typer.echo(f"wrote {out / 'eval.json'} and {out / 'samples.h5'}")


def _eval_suite(model, meta, task, level, size, n, steps, seed, noise_seed, shift, guidance, batch, device, out,
                force=False):  # fmt: skip
    """``interp eval`` of a task-suite model (interp.json ``"task": "suite"``): every input checked before any work."""
    from rich.console import Console

    from interp.apps.evaluate import eval_suite, suite_table, write_suite_eval
    from interp.apps.tasks import SelectionError, parse_selection

    if size is not None:
        raise typer.BadParameter(f"--size is for maze models; {model!r} is a task-suite model: use --task and --level")
    if noise_seed != 0:
        raise typer.BadParameter("--noise-seed is for maze models; a suite model's sample i draws noise from seed + i")
    if n < 1 or batch < 1 or (steps is not None and steps < 1):
        raise typer.BadParameter("--n, --batch and --steps must be at least 1")
    try:
        selection = parse_selection(task, level, meta.get("tasks"))
    except SelectionError as e:
        raise typer.BadParameter(str(e)) from e
    console = Console(stderr=True)
    res = eval_suite(model, selection, n=n, steps=steps, guidance=guidance, shift=shift, seed=seed, batch=batch,
                     device=device, keep_samples=out is not None, log=lambda m: console.print(m),
                     force=force)  # fmt: skip
    s = res.sampler
    title = f"{model}: held-out, {s['steps']} steps, guidance {s['guidance']:g}"
    Console(width=120).print(suite_table(res.rows, title))
    if out is not None:
        write_suite_eval(res, out, model, n)
        typer.echo(f"wrote {out}")


@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("demo-out"), "--out", help="output directory"),
    model: str = typer.Option("maze-wan", help="built-in name or model directory (organism: the task suite)"),
    n: int = typer.Option(None, min=1, help="mazes to sample (default 4); suite models: samples per task (default 2)"),
    size: int = typer.Option(
        None, min=1, help="maze size (default 7: the x0 goes from wrong to solved within the steps)"
    ),
    steps: int = typer.Option(None, min=1, help="denoising steps (default: maze 16, suite models 20)"),
    seed: int = typer.Option(0, min=0, help="picks the held-out instances"),
    task: str = typer.Option(None, help="suite models: task(s), comma list or 'all' (default)"),
    level: str = typer.Option(None, help="suite models: level of every task (default: each task's easiest)"),
    x0_steps: int = typer.Option(6, "--x0-steps", min=1, help="suite models: steps whose x0 each filmstrip shows"),
) -> None:
    """Sample a few held-out instances on CPU, print the success rate, write per-step x0 filmstrips (PNG and GIF).

    Example: interp demo --out demo-out

    Example: interp demo --model organism --out demo-organism   (about 4 minutes on 2 busy CPU cores)
    """
    from interp.apps.demo import run_demo, run_suite_demo
    from interp.apps.evaluate import is_suite, model_meta

    try:
        _, meta = model_meta(model)
    except Exception:  # noqa: BLE001 -- run_demo names the problem
        meta = None
    if is_suite(meta):
        from interp.apps.tasks import SelectionError, parse_selection

        try:
            selection = parse_selection(task, level, meta.get("tasks"))
        except SelectionError as e:
            raise typer.BadParameter(str(e)) from e
        if level is None:
            selection = {t: levels[:1] for t, levels in selection.items()}
        run_suite_demo(out, model=model, selection=selection, n=n or 2, steps=steps or 20, seed=seed, x0_rows=x0_steps)
        return
    if task is not None or level is not None:
        raise typer.BadParameter(f"--task and --level are for task-suite models; {model!r} is a maze model (--size)")
    from interp.apps.demo import DEMO_N, DEMO_SIZE, DEMO_STEPS

    run_demo(out, model=model, n=n or DEMO_N, size=size or DEMO_SIZE, steps=steps or DEMO_STEPS, seed=seed)


# ---- tasks (the organism's task suite) ----------------------------------------------------------------------------
tasks_app = typer.Typer(help="The task suite: tasks, levels, prompts; held-out samples in the VBVR-Bench layout.",
                        invoke_without_command=True, no_args_is_help=False)  # fmt: skip
app.add_typer(tasks_app, name="tasks")


@tasks_app.callback()
def tasks_cmd(ctx: typer.Context) -> None:
    """List the suite's tasks with their levels and prompts (or: interp tasks export DIR ...).

    Example: interp tasks
    """
    if ctx.invoked_subcommand is None:
        from interp.apps.tasks import print_tasks

        print_tasks()


@tasks_app.command("export")
def tasks_export_cmd(
    out: Path = typer.Argument(..., help="output directory: one folder <task>_<level>_<i>/ per sample"),
    task: str = typer.Option(..., help="task, comma list or 'all'"),
    level: str = typer.Option("all", help="level(s): comma list or 'all'"),
    n: int = typer.Option(8, min=1, help="held-out samples per (task, level)"),
    seed: int = typer.Option(0, min=0, help="picks the held-out instances (the same as interp eval's)"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Write held-out samples in the VBVR-Bench layout: first_frame.png, prompt.txt, final_frame.png,
    ground_truth.mp4 (and instance.json).

    Example: interp tasks export vbvr/ --task mirror --level 2 --n 8
    """
    from interp.apps.tasks import SelectionError, export

    try:
        written = export(out, task, level, n, seed, force=force)
    except SelectionError as e:
        raise typer.BadParameter(str(e)) from e
    typer.echo(f"wrote {len(written)} samples to {out}")


# ---- view (issue 11) ----------------------------------------------------------------------------------------------
@app.command("view")
def view_cmd(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="a capture .h5 or an experiment's results.h5"),
    out: Path = typer.Option(..., "--out", help="output directory (writes index.html)"),
    budget_mb: float = typer.Option(
        20.0, "--budget-mb", min=0.01, help="page size budget in MB (images are downsampled to fit)"
    ),
    branch: str = typer.Option(None, help="branch of a capture (cond / uncond); default: the first"),
    sites: str = typer.Option("", help="per-token sites to map, names or globs, comma-separated; '' = all"),
    samples: str = typer.Option("", help="batch indices to show, e.g. '0,2'; '' = all (thinned to fit the budget)"),
    channels: int = typer.Option(3, min=1, help="top-variance channel maps per layer"),
    point: int = typer.Option(
        None, min=0, help="results: the sweep point whose x0 and token maps are shown (default 0)"
    ),
    group: int = typer.Option(None, min=0, help="results: the input group (maze size) shown (default 0)"),
    pngs: bool = typer.Option(
        False, "--pngs", help="captures: also write token-map PNG grids (layer x frame, step x frame)"
    ),
) -> None:
    """Write one self-contained HTML page (no network needed) to look inside a run: step and layer sliders, x0
    frames beside token maps, the task scorer's verdict per step, metric heatmaps of experiment results.

    Example: interp view run.h5 --out view/ --budget-mb 10
    """
    from interp.report.viewer import write_view

    opts: dict = {}
    if branch:
        opts["branch"] = branch
    if sites.strip():
        opts["sites"] = [s.strip() for s in sites.split(",") if s.strip()]
    if samples.strip():
        opts["samples"] = [int(s) for s in samples.split(",")]
    if channels != 3:
        opts["k"] = channels
    if point is not None:
        opts["point"] = point
    if group is not None:
        opts["group"] = group
    try:
        page = write_view(file, out, budget_mb=budget_mb, **opts)
    except (ValueError, KeyError) as e:
        raise typer.BadParameter(str(e)) from e
    typer.echo(f"wrote {page} ({page.stat().st_size / 2**20:.2f} MB)")
    if pngs:
        from interp.report.tokenmaps import save_token_map_pngs
        from interp.report.viewer import is_capture

        if not is_capture(file):
            raise typer.BadParameter("--pngs draws the token maps of a capture; this file is not one")

        written = save_token_map_pngs(file, out / "tokenmaps", sites=opts.get("sites"), branch=branch, k=channels)
        typer.echo(f"wrote {len(written)} PNGs to {out / 'tokenmaps'}")


# ---- run (issue 5) ------------------------------------------------------------------------------------------------
@app.command("run")
def run_cmd(
    experiment: Path = typer.Argument(None, help="experiment YAML (see experiments/examples/)"),
    set_: list[str] = typer.Option([], "--set", help="override a field: dotted.key=value (YAML value); repeatable"),
    out: Path = typer.Option(None, "--out", help="output directory (default: runs/<experiment name>)"),
    wandb: str = typer.Option(
        None, "--wandb", help="W&B mode: offline | online | disabled (default: WANDB_MODE, else offline)"
    ),
    launcher: str = typer.Option("none", "--launcher", help="shard the batches over ranks: none | torchrun | ray"),
    nproc: int = typer.Option(
        None,
        "--nproc",
        min=1,
        help="ranks (default: visible GPUs for a CUDA experiment, else 2; ray: the cluster's GPUs or CPUs)",
    ),  # fmt: skip
    address: str = typer.Option(None, "--address", help="Ray cluster address (default: start a local cluster)"),
    merge: Path = typer.Option(
        None, "--merge", help="merge DIR/shards into DIR/results.h5 (+ summary, figures) and exit"
    ),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    plan: bool = typer.Option(
        False,
        "--plan",
        help="validate, then print rows, forwards, bytes to be written and the time estimated "
        "from the first batch's first steps; exit without writing anything",
    ),  # fmt: skip
) -> None:
    """Run an experiment: interventions x sweep, batched; writes results.h5, summary.json and figures/.

    Running it again is a cache hit; an interrupted run resumes where it stopped. Under torchrun the batches are
    sharded over the ranks (one HDF5 shard each) and rank 0 merges them; a rerun finishes what a dead rank left.

    Example: interp run experiments/examples/noise.yaml --set inputs.count=4 --out runs/noise

    Example: interp run experiments/examples/skip.yaml --plan   (validate and estimate; writes nothing)

    Example: torchrun --nproc-per-node 8 -m interp run EXP.yaml   (or: interp run EXP.yaml --launcher torchrun)
    """
    from interp.experiments import Experiment, ExperimentError
    from interp.experiments.shard import ShardError
    from interp.tracking import resolve_mode

    try:
        wandb = resolve_mode(wandb)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    if launcher not in ("none", "torchrun", "ray"):
        raise typer.BadParameter(f"--launcher must be none, torchrun or ray, got {launcher!r}")
    try:
        if merge is not None:
            from interp.apps.launch import finalize

            res = finalize(merge, wandb=wandb)
            typer.echo(f"merged: {res.results}")
            return
        if experiment is None:
            raise typer.BadParameter("give an experiment YAML (or --merge DIR)")
        exp = Experiment.load(experiment, set_)
        if plan:
            _print_run_plan(exp, out, experiment)
            return
        from interp.lm import is_lm_path

        if is_lm_path(exp.model):  # a maze language model: interp.lm's parallel runner (writes summary.json)
            from interp.lm.run import run_lm_experiment

            run_lm_experiment(exp, out or Path("runs") / exp.name)
            typer.echo(f"ran (language model): {(out or Path('runs') / exp.name) / 'summary.json'}")
            return
        out = out or Path("runs") / exp.name
        if launcher == "torchrun":
            from interp.apps.launch import default_nproc, launch_torchrun

            args = [
                str(experiment),
                "--out",
                str(out),
                "--wandb",
                wandb,
                *[a for s in set_ for a in ("--set", s)],
                *(["--force"] if force else []),
            ]
            raise typer.Exit(launch_torchrun(args, nproc or default_nproc(exp.device)))
        if launcher == "ray":
            from interp.apps.launch import run_ray

            res = run_ray(exp, out, nproc=nproc, address=address, wandb=wandb, base_dir=experiment.parent, force=force)
        elif _under_torchrun():
            from interp.apps.launch import run_distributed

            res = run_distributed(exp, out, wandb=wandb, base_dir=experiment.parent, force=force)
        else:
            from interp.experiments import run_experiment  # the engine (model code): after the file is valid

            res = run_experiment(exp, out, wandb=wandb, base_dir=experiment.parent, force=force)
    except (ExperimentError, FileExistsError, ShardError) as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{'cache hit' if res.cache_hit else 'ran'}: {res.results}")


def _print_run_plan(exp, out: Path | None, experiment: Path) -> None:
    """``interp run --plan``: the experiment is valid (it loaded); its cost, from the first batch's first steps."""
    from interp.lm import is_lm_path

    if is_lm_path(exp.model):
        typer.echo(f"{experiment}: valid (a language-model experiment; --plan estimates DiT experiments only)")
        return
    from interp.experiments.verb import plan_experiment

    out = out or Path("runs") / exp.name
    cost = plan_experiment(exp, out, base_dir=experiment.parent)
    typer.echo(f"{experiment}: valid; plan of {exp.name} into {out} (nothing written)\n" + "\n".join(cost.lines()))


def _under_torchrun() -> bool:
    import os

    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


# ---- compare (issue 7) --------------------------------------------------------------------------------------------
@app.command("compare")
def compare_cmd(
    models: list[str] = typer.Argument(
        ...,
        help="models to compare: maze DiTs (built-in, dir), maze LMs (maze-lm, dir), suite models (organism: one "
        "profile per task of --set tasks)",
    ),  # fmt: skip
    out: Path = typer.Option(..., "--out", help="output directory: profiles.csv/.json/.md, cka.json, compare.png"),
    size: int = typer.Option(None, help="maze size (default: 5)"),
    n: int = typer.Option(None, help="held-out mazes (the same for every model) (default: 32)"),
    seed: int = typer.Option(None, help="picks the held-out mazes (default: 0)"),
    steps: int = typer.Option(None, help="denoising steps of the DiTs (default: 20)"),
    measures: str = typer.Option(None, help="profiles to compute, comma-separated (default: skip,swap,probe,cka)"),
    device: str = typer.Option(None, help="torch device (default: cpu)"),
    set_: list[str] = typer.Option(
        [],
        "--set",
        help=SET_HELP + " (CompareConfig: e.g. probe_step, cka_frame, swap_site, swap_steps, noise_seed, "
        "layers, layer_stride, tasks, levels)",
    ),  # fmt: skip
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Layer-specialization profiles on a normalized depth axis (0 = first block, 1 = last): skip damage, swap flip
    rate and swap damage, wall- and path-probe accuracy, CKA between layers and across models; one figure and a table.

    Every field of the comparison's config has a --set key: probe_step (the DiT step probed and compared, 0),
    cka_frame (the DiT frame aligned with the LM's grid tokens, -1: last), swap_site (hook_attn_out), swap_steps
    (the first fraction of the steps swapped, 0.5), noise_seed, probe_bootstrap, tokens_per_sample.

    Example: interp compare maze-wan maze-cogvideox maze-lm --size 5 --n 32 --out compare/

    Example: interp compare maze-wan maze-lm --set swap_site=hook_resid_post --set probe_step=4 --out compare/

    Example: interp compare organism maze-wan maze-cogvideox maze-lm --device cuda --out compare/   (the organism per
    task: --set tasks=[loopmaze,mirror] and levels; the output says whether the specialization is task-agnostic:
    the rank correlation of the tasks' per-depth skip-damage profiles, with its interval)
    """
    from interp.apps.compare import CompareConfig, compare

    given = dict(models=models, size=size, n=n, seed=seed, steps=steps, measures=_csv(measures), device=device)
    cfg = _config(CompareConfig, given, set_)
    try:
        res = compare(cfg, out, force=force)
    except (ValueError, FileNotFoundError) as e:
        raise typer.BadParameter(str(e)) from e
    typer.echo(res.markdown)
    typer.echo(f"wrote {out}")


# ---- lens (issue 21) ----------------------------------------------------------------------------------------------
@app.command("lens")
def lens_cmd(
    model: str = typer.Argument(..., help="built-in name (interp models), local diffusers dir, or hub id"),
    out: Path = typer.Option(..., "--out", help="output directory: lens.h5, lens.png, lens.json"),
    capture: Path = typer.Option(
        None, "--capture", exists=True, help="read this capture (all blocks.*.hook_resid_post) instead of running"
    ),
    n: int = typer.Option(None, help="task instances of a live run (default: 8)"),
    size: int = typer.Option(None, help="maze size (default: the model's)"),
    seed: int = typer.Option(None, help="picks the instances (default: 0)"),
    steps: int = typer.Option(None, help="denoising steps (default: the task's, else 20)"),
    lens_steps: str = typer.Option(None, "--lens-steps", help="steps scored: all (default), every:K or 0,5,9"),
    scorer: str = typer.Option(None, help="'module:function' or a built-in (default: the task's own, maze for mazes)"),
    tuned: bool = typer.Option(False, "--tuned", help="also fit and score a tuned lens (one affine map per block)"),
    device: str = typer.Option(None, help="torch device (default: cpu)"),
    set_: list[str] = typer.Option(
        [], "--set", help=SET_HELP + " (LensConfig: e.g. fit_n, fit_seed, ridge, threshold)"
    ),
) -> None:
    """The x0 lens: every block's residual stream at every step read out through the model's own final norm,
    modulation and output projection, as x0 and frames, scored by the task's scorer; a step x block figure.

    The last block's lens is the model's own x0 exactly (checked and recorded). With --tuned, a tuned lens (a ridge
    affine map per block to the last block's stream, fitted on fit_n other instances) is scored beside it.

    Example: interp lens maze-wan --n 32 --size 5 --lens-steps every:5 --out lens-out

    Example: interp lens tiny-wan --capture run.h5 --out lens-out
    """
    from interp.apps.lens import LensConfig, lens

    given = dict(model=model, capture=None if capture is None else str(capture), n=n, size=size, seed=seed,
                 steps=steps, lens_steps=lens_steps, scorer=scorer, tuned=tuned or None, device=device)  # fmt: skip
    cfg = _config(LensConfig, given, set_)
    res = lens(cfg, out, progress=True)
    for variant in ("plain", "tuned"):
        for name, v in (res.get(variant) or {}).items():
            if "first_readable_block" in v:
                typer.echo(f"{variant} {name}: first block with mean >= {res['threshold']} per step "
                           f"{dict(zip(res['steps'], v['first_readable_block']))}")  # fmt: skip
    typer.echo(f"last block's lens == the model's x0 at every step: {res['exact']}")
    typer.echo(f"wrote {out}")


# ---- bench (issue 8) ----------------------------------------------------------------------------------------------
def _benchmarks_capture():
    """``benchmarks.capture``: the benchmarks live in the source checkout, outside the package (not in the wheel),
    so the verb finds them on the path or in the working directory, else says where they are."""
    if importlib.util.find_spec("benchmarks") is None and (Path.cwd() / "benchmarks" / "capture.py").is_file():
        sys.path.insert(0, str(Path.cwd()))  # run from the checkout's root through the console script
    try:
        return importlib.import_module("benchmarks.capture")
    except ModuleNotFoundError as e:
        if e.name not in ("benchmarks", "benchmarks.capture"):
            raise
        typer.echo("interp bench runs from a source checkout: the benchmarks (benchmarks/) are not part of the "
                   "installed package; run it in the checkout's root directory", err=True)  # fmt: skip
        raise typer.Exit(2) from None


@app.command("bench")
def bench_cmd(
    config: str = typer.Option("tiny", help="model config: tiny (CPU figure) | wan1.3b (GPU figure) | micro (tests)"),
    device: str = typer.Option("cpu", help="torch device: cpu | cuda"),
    steps: int = typer.Option(4, min=1, help="denoising steps of the sampling and memory measurements"),
    frames: int = typer.Option(None, help="latent frames (default: the config's; wan1.3b: 21)"),
    height: int = typer.Option(None, help="latent height (wan1.3b: 60)"),
    width: int = typer.Option(None, help="latent width (wan1.3b: 104)"),
    batch: int = typer.Option(1, min=1, help="samples per forward in sampling, tracing and memory"),
    sweep_latent: str = typer.Option("", help="latent F,H,W of the sweep (default: the same as sampling)"),
    sweep_rows: int = typer.Option(None, help="rows per batched sweep forward, 1 clean + skips (default: layers + 1)"),
    repeats: int = typer.Option(5, min=1, help="timed rounds (interleaved; medians)"),
    warmup: int = typer.Option(1, min=0, help="untimed rounds first"),
    threads: int = typer.Option(None, help="CPU torch threads (default: torch's)"),
    scratch: Path = typer.Option(None, help="directory for the capture files (default: the system temp dir)"),
    store_mb: float = typer.Option(64.0, "--store-mb", help="MiB per run of the store measurement (at most 50 steps)"),
    only: str = typer.Option("", help="measurements to run, comma-separated: sampling,sweep,tracing,store,memory"),
    sites: str = typer.Option("blocks.*.hook_resid_post", help="the sampling measurement's captured sites (globs)"),
    capture_dtype: str = typer.Option(
        "float16", "--capture-dtype", help="storage dtypes of the captures, comma-separated: one variant each"
    ),
    out: Path = typer.Option(None, "--out", help="write every figure (and per-round times) to this JSON file"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Measure what capture, tracing and interventions cost beyond the bare forward, side by side, with ratios.

    Example: interp bench --config tiny --device cpu --threads 1 --out bench-cpu.json   (from a source checkout)
    """
    bench = _benchmarks_capture()

    latent = (frames, height, width)
    if any(v is not None for v in latent) and not all(v is not None for v in latent):
        raise typer.BadParameter("give --frames, --height and --width together")
    try:
        sweep = tuple(int(v) for v in sweep_latent.split(",")) if sweep_latent.strip() else None
        if sweep is not None and len(sweep) != 3:
            raise ValueError("--sweep-latent is F,H,W")
        opts = bench.BenchOptions(
            config=config, device=device, steps=steps, latent=latent if frames is not None else None, batch=batch,
            sweep_latent=sweep, sweep_rows=sweep_rows, repeats=repeats, warmup=warmup, threads=threads,
            scratch=str(scratch) if scratch else None, store_mb=store_mb,
            only=tuple(s.strip() for s in only.split(",") if s.strip()) or bench.ITEMS, sites=sites,
            capture_dtypes=tuple(d.strip() for d in capture_dtype.split(",") if d.strip()) or ("float16",),
        )  # fmt: skip
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e

    def done(name: str, result: dict) -> None:  # figures as each measurement ends (a lease may end first)
        typer.echo(bench.report({k: v for k, v in result.items() if k in ("env", "options", name)}).split("\n", 1)[1])
        if out is not None:
            bench.save(result, out)

    bench.estimate(opts).check(force)  # before the model is built
    result = bench.run_bench(opts, log=lambda m: typer.echo(m, err=True), on_item=done)
    typer.echo(bench.report(result))
    if out is not None:
        typer.echo(f"wrote {bench.save(result, out)}")


# ---- reproduce (issue 10) -----------------------------------------------------------------------------------------
@app.command("reproduce")
def reproduce_cmd(
    out: Path = typer.Option(
        Path("paper-report"), "--out", help="output directory (DIR/REPORT.md, one folder per analysis)"
    ),
    quick: bool = typer.Option(False, "--quick", help="small counts, 8 steps, small mazes: ~10 min on 2 CPU cores"),
    device: str = typer.Option("cpu", "--device", help="torch device: cpu | cuda"),
    model: str = typer.Option(None, "--model", help="run every analysis on this model instead of the files' model"),
    only: str = typer.Option("", "--only", help="comma-separated analyses (default: all)"),
    set_: list[str] = typer.Option([], "--set", help="override a field of every file: dotted.key=value; repeatable"),
    threads: int = typer.Option(
        0, "--threads", min=0, help="torch CPU threads (0: torch's default; 1 on a busy machine)"
    ),
    plan: bool = typer.Option(False, "--plan", help="print the planned size per analysis (row-forwards) and stop"),
) -> None:
    """Reproduce the paper's analyses (experiments/paper/*.yaml) and write DIR/REPORT.md: claims, the paper's
    numbers, our figures and verdicts computed from our numbers by stated rules.

    Example: interp reproduce --quick --out paper-quick

    Example: interp reproduce --plan   (the full run's size, nothing run)

    Example: interp reproduce --model maze-wan --out experiments/paper/maze-wan --device cuda

    Example: interp reproduce --quick --model organism --only suite_layer_skip,suite_noise_step_vs_frame
    (the organism's suite analyses: each on two tasks, side by side per claim)
    """
    from interp.apps.reproduce import plan_sizes, plan_table, reproduce
    from interp.experiments import ExperimentError

    chosen = [s.strip() for s in only.split(",") if s.strip()] or None
    try:
        if plan:
            typer.echo(plan_table(plan_sizes(quick=quick, model=model, only=chosen, overrides=list(set_))))
            return
        report = reproduce(
            out, quick=quick, device=device, model=model, overrides=list(set_), threads=threads or None, only=chosen
        )
    except (ExperimentError, ValueError, FileExistsError) as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {report}")


# errors a user's input causes (a missing file, a bad value, an existing output, a YAML syntax error): one line and
# exit code 2 instead of a traceback; --debug or INTERP_DEBUG=1 shows the traceback
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, KeyError)


def main() -> None:
    """The console entry point: the typer app, with user errors reported in one line."""
    import os

    try:
        app(standalone_mode=True)
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001
        user = isinstance(e, USER_ERRORS) or type(e).__module__.startswith("yaml")
        if not user or os.environ.get(DEBUG_ENV) or "--debug" in sys.argv:
            raise
        msg = str(e).strip() or type(e).__name__
        if isinstance(e, KeyError):
            msg = f"unknown key {msg}"
        typer.echo(f"error: {msg}", err=True)
        typer.echo(f"(run with --debug or {DEBUG_ENV}=1 for the traceback)", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
