"""The :class:`Experiment`: one YAML file -> validated data, and back.

Every field is checked before any model is loaded; an invalid file raises :class:`ExperimentError`, one line per
problem, naming the field and what is allowed.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import itertools
import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

import interp
from interp.budget import max_points
from interp.interventions import Intervention, kinds
from interp.interventions.base import SITE_HELP, SITE_RE
from interp.precision import Precision
from interp.store.dtypes import check_dtype
from interp.yamlio import load_yaml, read_yaml

MAZE_METRICS = ("solve_rate", "path_recall", "extra_cells", "wall_crossings", "goal_reached")
# the x0 lens (interp.lens): the maze score of x0 read after every block at every step, (points, samples, steps, blocks)
LENS_METRICS = {"lens_solve_rate": "solve_rate", "lens_path_recall": "path_recall"}
GENERIC_METRICS = ("mse", "cosine", "x0_distance", "mse_to_source")
Metric = Literal["solve_rate", "path_recall", "extra_cells", "wall_crossings", "goal_reached", "mse", "cosine",
                 "x0_distance", "mse_to_source", "lens_solve_rate", "lens_path_recall"]  # fmt: skip
VERIFY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)%\s*$")  # atp_verify as a fraction of the sweep points: "50%"
SWEEPABLE = ("interventions.<i>.<field>", "sampler.seed", "interventions.<i> (values: whole interventions)")


class ExperimentError(ValueError):
    """An invalid experiment: the message names each bad field and what is allowed."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Inputs(Strict):
    """``maze``: ``count`` mazes per size chosen by ``seed`` (the model needs maze task metadata); ``random``: the
    documented random inputs (N(0,1) text from ``seed``; latent ``frames`` x ``height`` x ``width``); ``prompts``
    (set by giving ``prompts``, ``images`` or ``samples``): a whole diffusers pipeline's own inputs, ``prompts``
    with an optional ``negative_prompt`` and ``images`` (image files, one per prompt: image-to-video), or
    ``samples``: a folder of VBVR-Bench-style samples (``<sample>/first_frame.png``, ``prompt.txt``, optional
    ``final_frame.png``, ``ground_truth.mp4``; :func:`interp.pipelines.samples.load_samples`). Relative image and
    samples paths of a YAML file are relative to its folder. With prompts, ``frames`` / ``height`` / ``width`` are the pipeline's ``num_frames`` /
    ``height`` / ``width`` in pixels and ``count`` is the number of prompts. Files are checked when the experiment
    is validated: one error lists each problem. The runner loads the whole pipeline
    (:func:`interp.experiments.runner.pipeline_group_inputs`): the prompts are encoded once, sample i's noise of
    seed s is the pipeline's own (``Generator().manual_seed(s + i)``), as ``interp capture``. ``max_sequence_length``
    and ``pipeline_kwargs`` (``LTX2Pipeline``'s guidance knobs, :data:`interp.pipelines.ltx2.KNOBS`) are
    ``interp capture``'s (None: the pipeline's own defaults).

    A task of the organism's suite (``loopmaze``, ``goalmaze``, ``permanence``, ``mirror``; :mod:`interp.tasks`):
    ``count`` held-out instances per level of ``levels`` (default: the task's easiest), each its prompt and first
    frame through the whole pipeline, at the suite's video size, scored by the task's own scorer; ``pairs``
    (goalmaze) adds the same images with the other prompt after them, so ``swap: {other: count}`` swaps the
    prompt."""

    task: str = "maze"  # maze, random, prompts, or a suite task (interp.tasks.suite.TASKS)
    sizes: list[Annotated[int, Field(ge=1)]] | None = None  # maze sizes; None: the model's default_size
    count: int = Field(4, ge=1)
    seed: int = Field(0, ge=0)
    frames: int | None = Field(None, ge=1)
    height: int | None = Field(None, ge=1)
    width: int | None = Field(None, ge=1)
    prompts: list[str] | None = None
    negative_prompt: str | None = None
    images: list[str] | None = None
    samples: str | None = None
    levels: list[int] | None = None  # suite tasks: the levels (one input group each); None: the easiest
    pairs: bool = False  # suite tasks whose prompt picks the answer: each image again with the other prompt
    max_sequence_length: int | None = Field(None, ge=1)  # pipeline inputs: the prompt's tokens (None: __call__'s)
    pipeline_kwargs: dict[str, Any] | None = None  # pipeline inputs: __call__ knobs (LTX-2's guidance terms)

    @property
    def is_suite(self) -> bool:
        """A task of the organism's suite (inputs from its held-out sets, through the whole pipeline)."""
        return self.task not in BUILTIN_INPUTS

    @property
    def uses_pipeline(self) -> bool:
        """The inputs are prompts and images, encoded by the whole pipeline's own methods."""
        return self.task == "prompts" or self.is_suite

    @property
    def group_size(self) -> int:
        """Inputs per group (per maze size, per suite level): ``count``, twice that with ``pairs``."""
        return self.count * (2 if self.pairs else 1)

    @model_validator(mode="before")
    @classmethod
    def _infer_task(cls, data: Any) -> Any:
        if isinstance(data, dict) and "task" not in data and any(data.get(k) is not None for k in PROMPT_FIELDS):
            data = {**data, "task": "prompts"}
        return data

    @model_validator(mode="after")
    def _check(self) -> Inputs:
        if self.task not in BUILTIN_INPUTS:
            return self._check_suite()
        if self.levels is not None or self.pairs:
            raise ValueError(f"levels and pairs are inputs of a suite task ({', '.join(suite_tasks())}), not task: "
                             f"{self.task}")  # fmt: skip
        if self.task == "random" and self.sizes is not None:
            raise ValueError("sizes is for task: maze; random inputs take frames / height / width")
        given = [k for k in (*PROMPT_FIELDS, *PIPELINE_FIELDS) if getattr(self, k) is not None]
        if self.task != "prompts":
            if given:
                raise ValueError(f"{', '.join(given)} are inputs of task: prompts (a whole pipeline), not task: "
                                 f"{self.task}")  # fmt: skip
            return self
        if self.sizes is not None:
            raise ValueError("sizes is for task: maze; prompts take frames / height / width (pixels)")
        if self.samples is not None:
            if self.prompts is not None or self.images is not None:
                raise ValueError("samples gives each sample's prompt and first frame: give samples, or prompts "
                                 "(and images), not both")  # fmt: skip
            from interp.pipelines.samples import SampleError, load_samples

            try:
                n = len(load_samples(self.samples))
            except SampleError as e:
                raise ValueError(str(e)) from None
        else:
            if not self.prompts:
                raise ValueError("task: prompts needs prompts (a non-empty list) or samples (a folder of VBVR-Bench "
                                 "samples)")  # fmt: skip
            if blank := [i for i, p in enumerate(self.prompts) if not str(p).strip()]:
                raise ValueError(f"prompts {blank} are empty")
            n = len(self.prompts)
            if self.images is not None:
                if len(self.images) != n:
                    raise ValueError(f"{n} prompt(s) and {len(self.images)} image(s): give one image per prompt")
                if missing := [str(p) for p in self.images if not Path(p).is_file()]:
                    raise ValueError(f"image file(s) not found: {', '.join(missing)}")
        if "count" in self.model_fields_set and self.count != n:
            raise ValueError(f"count {self.count} but {n} prompt(s): with prompts, count is the number of prompts "
                             "(leave it out)")  # fmt: skip
        self.count = n
        return self

    def _check_suite(self) -> Inputs:
        from interp.tasks import suite  # the task package imports torch: only for a suite task (fast validation)

        if self.task not in suite_tasks():
            near = difflib.get_close_matches(self.task, [*BUILTIN_INPUTS, *suite_tasks()], n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ValueError(f"unknown inputs.task {self.task!r}{hint}; valid: "
                             f"{', '.join([*BUILTIN_INPUTS, *suite_tasks()])}")  # fmt: skip
        given = [k for k in (*PROMPT_FIELDS, "negative_prompt", "sizes") if getattr(self, k) is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: a suite task ({self.task}) gives its own prompts, images and "
                             "levels (use levels)")  # fmt: skip
        task = suite.get_task(self.task)
        self.levels = list(self.levels or [task.levels[0]])
        if bad := [lv for lv in self.levels if lv not in task.levels]:
            raise ValueError(f"{self.task} has no level {bad}; levels: {list(task.levels)}")
        if self.pairs and self.task not in suite.pair_tasks():
            raise ValueError(f"pairs: {self.task} has one prompt per image; pairs is for {suite.pair_tasks()}")
        for k, v in (("frames", suite.FRAMES), ("height", suite.SIZE), ("width", suite.SIZE)):
            if getattr(self, k) not in (None, v):
                raise ValueError(f"{k}: the suite's videos are {suite.FRAMES} x {suite.SIZE} x {suite.SIZE}")
            setattr(self, k, v)
        return self

    def suite_instances(self, level: int) -> list[dict]:
        """The instances of one level's group, in input order (:func:`interp.tasks.suite.experiment_instances`)."""
        from interp.tasks import suite  # the task package imports torch: only for a suite task (fast validation)

        return suite.experiment_instances(suite.get_task(self.task), level, self.count, self.seed, self.pairs)

    def prompt_inputs(self, level: int | None = None) -> tuple[list[str], list | None, list[dict]]:
        """Prompts, images (files, or uint8 first frames of a suite task; None for text-to-video) and each
        sample's scorer metadata (:mod:`interp.scorers`) of task: prompts, or of one level of a suite task."""
        if self.is_suite:
            from interp.tasks import suite  # the task package imports torch: only for a suite task

            task = suite.get_task(self.task)
            insts = self.suite_instances(self.levels[0] if level is None else level)
            frames = [task.render(i)[0] for i in insts]
            metas = [{"index": i, "prompt": task.prompt(x), "instance": x, "level": x["level"]}
                     for i, x in enumerate(insts)]  # fmt: skip
            return [task.prompt(x) for x in insts], frames, metas
        if self.task != "prompts":
            raise ValueError(f"task: {self.task} has no prompts")
        if self.samples is not None:
            from interp.pipelines.samples import load_samples

            ss = load_samples(self.samples)
            return [s.prompt for s in ss], [str(s.first_frame) for s in ss], [s.meta(i) for i, s in enumerate(ss)]
        from interp.scorers import sample_meta

        metas = [{"index": i, "prompt": p, "negative_prompt": self.negative_prompt,
                  **({"image": self.images[i], **sample_meta(self.images[i])} if self.images else {})}
                 for i, p in enumerate(self.prompts)]  # fmt: skip
        return list(self.prompts), list(self.images) if self.images else None, metas


PROMPT_FIELDS = ("prompts", "images", "samples")
PIPELINE_FIELDS = ("negative_prompt", "max_sequence_length", "pipeline_kwargs")
"""Inputs of a whole pipeline besides its prompts and images (task: prompts; a suite task takes the last two)."""
BUILTIN_INPUTS = ("maze", "random", "prompts")


def suite_tasks() -> list[str]:
    """The organism's suite tasks an experiment can run (:data:`interp.tasks.suite.TASKS`)."""
    from interp.tasks import suite  # the task package imports torch: only when a suite task is named

    suite._load_all()
    return sorted(suite.TASKS)


class Sampler(Strict):
    """``None``: the model's task defaults (maze-wan: 50 steps, shift 5), else 20 steps, guidance 1. ``seed``: the
    base noise seed (sample i gets slice i of the batch noise drawn from it, as ``interp capture`` does).
    ``precision``: the forwards' arithmetic (:mod:`interp.precision`): float32 (exact), tf32 or bfloat16 (faster on a
    GPU, numbers slightly different)."""

    steps: int | None = Field(None, ge=1)
    shift: float | None = None
    guidance: float | None = None
    seed: int = Field(0, ge=0)
    precision: Precision = "float32"


class Capture(Strict):
    """What to keep per sweep point besides metrics: site values at every step, per-step x0."""

    sites: list[str] = []
    x0: bool = False
    dtype: str = "float32"  # a storage dtype of interp.store.codec (8-bit floats: codes plus a scale dataset)

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v: str) -> str:
        return check_dtype(v, "capture.dtype")

    @field_validator("sites")
    @classmethod
    def _sites(cls, v: list[str]) -> list[str]:
        bad = [s for s in v if "{layer}" in s or not SITE_RE.match(s)]
        if bad:
            raise ValueError(
                f"unknown site pattern(s) {bad}; valid: {SITE_HELP.replace(' or the placeholder {layer}', '')}"
            )
        return v


class Experiment(Strict):
    """model, inputs, sampler, capture, interventions (applied together), sweep (dotted path -> values; several
    axes make a grid, first axis slowest), metrics, max_batch (rows per forward), scorer (``module:function``: the
    scores of each final video, decoded by the pipeline's VAE or a pixel-space model's own, stored as metrics
    ``score_<name>`` beside the clean run's), method (``run``: every sweep point is run; ``atp``: a patch sweep's
    effects on ``mse_to_source`` are estimated by attribution patching, :mod:`interp.experiments.atp`, with
    ``atp_alphas`` integrated-gradients points), atp_verify (``method: atp`` only: how many of the estimated points
    are then run for real, an int or a fraction of the points like ``"50%"``; :meth:`verify_count`)."""

    name: str = "experiment"
    model: str
    inputs: Inputs = Inputs()
    sampler: Sampler = Sampler()
    capture: Capture = Capture()
    interventions: list[Intervention] = []
    sweep: dict[str, list[Any] | str] = {}
    metrics: list[Metric] = ["mse", "cosine"]
    max_batch: int = Field(16, ge=1)
    device: str = "cpu"
    scorer: str | None = None  # 'module:function' (interp.scorers): each final video's scores, as metrics score_<name>
    method: Literal["run", "atp"] = "run"
    atp_alphas: int = Field(1, ge=1)
    atp_verify: int | str = 0  # method atp: the points with the largest estimates run for real (verify_count)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        # the default output is runs/<name>: a name stays a relative path inside runs/
        parts = Path(v).parts
        if not v.strip() or Path(v).is_absolute() or ".." in parts or "\\" in v or "\0" in v:
            raise ValueError(f"name {v!r} is the default output folder runs/<name>: give a relative name without "
                             "'..' (e.g. skip-layers or maze/skip)")  # fmt: skip
        return v

    @field_validator("atp_verify", mode="before")
    @classmethod
    def _atp_verify(cls, v: int | str) -> int | str:
        if isinstance(v, bool) or (isinstance(v, int) and v < 0) or (
            isinstance(v, str) and not ((m := VERIFY_RE.match(v)) and float(m.group(1)) <= 100)
        ):  # fmt: skip
            raise ValueError(f"atp_verify is a number of sweep points (an int >= 0) or a fraction of them like "
                             f"'50%' (0% to 100%), got {v!r}")  # fmt: skip
        return v

    @field_validator("scorer")
    @classmethod
    def _scorer(cls, v: str | None) -> str | None:
        if v is not None:
            from interp.scorers import ScorerError, resolve

            try:
                resolve(v)
            except ScorerError as e:
                raise ValueError(str(e)) from None
        return v

    @model_validator(mode="after")
    def _check(self) -> Experiment:
        if self.inputs.is_suite and self.scorer is None:
            self.scorer = "interp.scorers:suite"  # a suite task is scored by its own pixel scorer
        if self.method == "atp":
            if len(self.interventions) != 1 or self.interventions[0].kind != "patch":
                raise ValueError("method atp estimates a patch sweep: give exactly one intervention, of kind patch")
            if self.metrics != ["mse_to_source"]:
                raise ValueError(f"method atp estimates metric mse_to_source only: metrics: [mse_to_source], got "
                                 f"{self.metrics}")  # fmt: skip
            if self.scorer is not None or self.capture.sites or self.capture.x0:
                raise ValueError("method atp stores estimates only: leave out scorer and capture")
            if "sampler.seed" in self.sweep:  # every point is estimated from the runs of the one base seed
                raise ValueError("method atp runs one noise seed (sampler.seed): do not sweep it; run one "
                                 "experiment per seed")  # fmt: skip
        elif self.atp_alphas != 1:
            raise ValueError("atp_alphas is an option of method: atp")
        elif self.verify_count():
            raise ValueError("atp_verify is an option of method: atp")
        if self.inputs.task != "maze" and (bad := [m for m in self.metrics if m in MAZE_METRICS or m in LENS_METRICS]):
            raise ValueError(
                f"metrics {bad} score mazes: they need inputs.task: maze (generic: {list(GENERIC_METRICS)})"
            )
        if "mse_to_source" in self.metrics and not any(i.source_metric for i in self.interventions):
            raise ValueError("metric mse_to_source needs a patch or swap intervention")
        if sum(i.member_seeds(0) is not None for i in self.interventions) > 1:
            raise ValueError("at most one ensemble intervention per experiment")
        for path, values in self.sweep.items():
            if not (re.fullmatch(r"interventions\.\d+(\.\w+)*", path) or path == "sampler.seed"):
                raise ValueError(f"sweep axis {path!r} cannot be swept; sweepable: {', '.join(SWEEPABLE)}")
            if isinstance(values, str) and not re.fullmatch(r"-?\d+:-?\d+", values):
                raise ValueError(f"sweep axis {path!r}: values are a list or a range 'start:stop', got {values!r}")
            if not axis_len(values):
                raise ValueError(f"sweep axis {path!r} has no values ({values!r}); give at least one, or leave the "
                                 "axis out")  # fmt: skip
        points = self.n_points()
        if points > max_points():
            raise ValueError(f"the sweep has {points:,} points > {max_points():,} (INTERP_MAX_POINTS); sweep fewer "
                             "values, or raise the cap")  # fmt: skip
        if isinstance(self.atp_verify, int) and self.atp_verify > points:
            raise ValueError(f"atp_verify={self.atp_verify} > the sweep's {points} points; verify at most all of "
                             "them ('100%')")  # fmt: skip
        return self

    def n_points(self) -> int:
        """The sweep's points: the product of its axes' lengths (1 with no sweep), without building them."""
        return math.prod(axis_len(v) for v in self.sweep.values())

    def verify_count(self) -> int:
        """How many sweep points ``method: atp`` runs for real after its estimate (``atp_verify``): the int itself,
        or a fraction ``"p%"`` of the points rounded up (``"50%"`` of 96 points: 48; ``"10%"``: 10)."""
        if isinstance(self.atp_verify, int):
            return self.atp_verify
        points = self.n_points()
        return min(points, math.ceil(float(VERIFY_RE.match(self.atp_verify).group(1)) / 100 * points - 1e-9))

    # ---- YAML ------------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | None = None) -> Experiment:
        """Read a YAML file, apply ``key=value`` overrides (dotted keys, YAML values), validate."""
        path = Path(path)
        if not path.exists():
            raise ExperimentError(f"{path}: no such experiment file")
        data = read_yaml(path) or {}
        if not isinstance(data, dict):
            raise ExperimentError(f"{path}: an experiment is a mapping of fields, got {type(data).__name__}")
        for item in overrides or []:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ExperimentError(f"--set {item!r}: expected key=value (e.g. sampler.steps=4)")
            set_path(data, key.strip(), load_yaml(value, f"--set {key.strip()}"))
        _resolve_input_paths(data, path.parent)
        return cls.validate_data(data, str(path))

    @classmethod
    def validate_data(cls, data: dict, where: str = "experiment") -> Experiment:
        try:
            exp = cls.model_validate(data)
        except ValidationError as e:
            raise ExperimentError(format_errors(e, where)) from None
        sweep_points(exp)  # every sweep point must validate too
        return exp

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude_defaults=False), sort_keys=False)

    def dump(self, path: str | Path) -> Path:
        Path(path).write_text(self.to_yaml())
        return Path(path)

    # ---- identity ----------------------------------------------------------------------------------------------
    def canonical(self) -> str:
        data = self.model_dump(mode="json")
        for k in (*PROMPT_FIELDS, *PIPELINE_FIELDS, "levels"):  # added later: left out while unset (older keys hold)
            if data["inputs"].get(k) is None:
                data["inputs"].pop(k, None)
        if not data["inputs"].get("pairs"):
            data["inputs"].pop("pairs", None)
        if data.get("scorer") is None:
            data.pop("scorer", None)
        if data["sampler"].get("precision") == "float32":  # added later: left out at its default (older keys hold)
            data["sampler"].pop("precision", None)
        if data.get("method") == "run":  # added later: left out at its default, so older keys still hold
            data.pop("method", None)
            data.pop("atp_alphas", None)
        data["atp_verify"] = self.verify_count()  # "50%" of 96 points is the experiment of 48
        if not data["atp_verify"]:  # added later: left out at its default, so older keys still hold
            data.pop("atp_verify")
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    def key(self, model_hash: str) -> str:
        """The cache key: sha256 of (canonical experiment, model weights hash, package version)."""
        blob = json.dumps([self.canonical(), model_hash, interp.__version__])
        return hashlib.sha256(blob.encode()).hexdigest()


def _resolve_input_paths(data: dict, base: Path) -> None:
    """Relative ``inputs.samples`` / ``inputs.images`` of a YAML file name files beside it (as steer direction
    files do)."""
    inputs = data.get("inputs")
    if not isinstance(inputs, dict):
        return
    fix = lambda p: str(base / p) if isinstance(p, str) and not Path(p).is_absolute() else p  # noqa: E731
    if "samples" in inputs:
        inputs["samples"] = fix(inputs["samples"])
    if isinstance(inputs.get("images"), list):
        inputs["images"] = [fix(p) for p in inputs["images"]]


def format_errors(err: ValidationError, where: str) -> str:
    lines = [f"{where}: invalid experiment"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not _kind_tag(p))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc += ".kind"
        if e["type"] == "extra_forbidden":
            allowed = _allowed_fields(err, e)
            msg = f"unknown field{f'; allowed: {allowed}' if allowed else ''}"
        lines.append(f"  {loc or '<top>'}: {msg}")
    return "\n".join(lines)


def _kind_tag(part: Any) -> type[BaseModel] | None:
    """The intervention class a location part names: a kind's tag, or the validator wrapping a kind with a model
    validator (``function-after[_check(), Ensemble]``)."""
    if not isinstance(part, str):
        return None
    if (m := re.fullmatch(r"function-(?:after|before|wrap|plain)\[.*, (\w+)\]", part)) is not None:
        return next((c for c in kinds().values() if c.__name__ == m.group(1)), None)
    return kinds().get(part)


def _allowed_fields(err: ValidationError, e: dict) -> str:
    """Field names allowed beside an unknown one (walks the schema along the error's location)."""
    model: Any = Experiment
    for part in e["loc"][:-1]:
        if isinstance(part, int):
            continue
        if (kind := _kind_tag(part)) is not None:
            model = kind
            continue
        field = getattr(model, "model_fields", {}).get(part)
        ann = getattr(field, "annotation", None)
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else model
    fields = getattr(model, "model_fields", None)
    return ", ".join(fields) if fields else ""


# ---- dotted paths and sweeps ---------------------------------------------------------------------------------------
def set_path(data: dict, path: str, value: Any) -> None:
    """``data[a][b][0][c] = value`` for ``a.b.0.c`` (list indices must exist; mapping keys may be new)."""
    parts = path.split(".")
    if parts[0] == "sweep" and len(parts) > 1:  # sweep keys are dotted paths themselves
        parts = ["sweep", ".".join(parts[1:])]
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ExperimentError(f"{path}: {'.'.join(parts[:i]) or '<top>'} has {len(node)} entries, no {part!r}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise ExperimentError(f"{path}: {'.'.join(parts[:i])} is a value, not a mapping or list")


def axis_len(values: list | str) -> int:
    """The number of values of a sweep axis (a range 'start:stop' is not built)."""
    if isinstance(values, str):
        a, b = (int(v) for v in values.split(":"))
        return max(0, b - a)
    return len(values)


def axis_values(values: list | str) -> list:
    if isinstance(values, str):
        a, b = (int(v) for v in values.split(":"))
        return list(range(a, b))
    return list(values)


def sweep_points(exp: Experiment) -> list[dict[str, Any]]:
    """Every sweep point's coordinates ({axis: value}), first axis slowest; one empty point without a sweep.
    Each point's experiment is validated here (before any model is loaded)."""
    axes = {k: axis_values(v) for k, v in exp.sweep.items()}
    points = [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]
    for p in points:
        point_experiment(exp, p)
    return points


def point_experiment(exp: Experiment, coords: dict[str, Any]) -> Experiment:
    """The experiment of one sweep point (sweep values set, sweep emptied)."""
    data = exp.model_dump(mode="json")
    data["sweep"] = {}
    data["atp_verify"] = 0  # a count of the sweep's points: one point's experiment verifies nothing itself
    for path, value in coords.items():
        parts = path.split(".")
        if parts[0] == "interventions" and int(parts[1]) >= len(data["interventions"]):
            raise ExperimentError(f"sweep axis {path!r}: there are {len(data['interventions'])} interventions")
        node = data
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node.get(part)
            if not isinstance(node, (dict, list)):
                raise ExperimentError(f"sweep axis {path!r}: {part!r} is not a field with subfields")
        if isinstance(node, dict) and parts[-1] not in node:
            raise ExperimentError(f"sweep axis {path!r}: no field {parts[-1]!r}; fields there: {', '.join(node)}")
        set_path(data, path, copy.deepcopy(value))
    try:
        return Experiment.model_validate(data)
    except ValidationError as e:
        raise ExperimentError(format_errors(e, f"sweep point {coords}")) from None
