"""The capture layout's reader (:mod:`interp.store.capture` has the layout and the writer), without torch: values as
numpy arrays, so that reading a capture (``interp view``) starts without model code."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from interp.store.dtypes import read_site
from interp.store.schema import CAPTURE, open_h5

SCORE_GROUP = "scores"


def token_coords(grid: Sequence[int]) -> np.ndarray:
    """(tokens, 3) int32: the (frame, row, col) of every token of a (f, h, w) grid, in token order."""
    f, h, w = (int(g) for g in grid)
    return (
        np.stack(np.meshgrid(np.arange(f), np.arange(h), np.arange(w), indexing="ij"), -1)
        .reshape(-1, 3)
        .astype(np.int32)
    )


def read_scores(file: h5py.File) -> dict | None:
    """``{"scorer", "steps", "x0": {name: (n, B)}, "video": {name: (B,)}}`` of a capture, None without scores."""
    if SCORE_GROUP not in file:
        return None
    g = file[SCORE_GROUP]
    out: dict = {"scorer": None, "steps": [], "x0": {}, "video": {}}
    for part in ("x0", "video"):
        for name, ds in g[part].items() if part in g else ():
            out[part][name] = ds[()]
            out["scorer"] = out["scorer"] or str(ds.attrs.get("scorer"))
            if part == "x0":
                out["steps"] = _json_attr(ds, "steps")
    return out


def _json_attr(obj, name: str):
    raw = obj.attrs.get(name)
    return None if raw is None else json.loads(raw if isinstance(raw, str) else bytes(raw).decode())


class CaptureReader:
    """A capture read like TransformerLens' ``ActivationCache``, in numpy: ``reader["blocks.3.hook_resid_post"]``.

    A view of one branch (default: the first, ``cond`` when CFG ran) and a step selection (default: all). Values
    come back as numpy arrays shaped (steps, batch, tokens, d_model) (or as the site's ``axes`` attribute says).
    It needs no torch (``interp view`` reads captures with it); :class:`~interp.store.ActivationCache` is the same
    reader returning torch tensors.

    An unfinished capture (a ``.partial``, ``complete`` = False, or a path of which only the ``.partial`` exists)
    is refused (:class:`~interp.store.lock.IncompleteFileError`: how far it got, how to resume); with
    ``allow_partial=True`` it is read, and every view holds only the steps marked done (never unwritten zeros).
    """

    def __init__(self, path: str | os.PathLike, branch: str | None = None, steps: Any = None, *, _file=None,
                 allow_partial: bool = False):  # fmt: skip
        self.path = Path(path)
        self.file = _file or open_h5(self.path, CAPTURE, allow_partial=allow_partial)
        self.branches: list[str] = json.loads(self.file.attrs["branches"])
        if branch is None:
            branch = self.branches[0]
        if branch not in self.branches:
            raise KeyError(f"no branch {branch!r}; branches: {self.branches}")
        self.branch_name = branch
        all_steps = self._done_steps(branch)
        self._pos = np.flatnonzero(self._done_mask(branch)) if steps is None else self._positions(all_steps, steps)
        self.steps: np.ndarray = self.file[branch]["steps"][:][self._pos]

    def _done(self) -> np.ndarray | None:
        """step_done of an unfinished capture (None when complete: every step counts)."""
        if bool(self.file.attrs.get("complete", True)) or "step_done" not in self.file:
            return None
        return self.file["step_done"][:].astype(bool)

    def _done_mask(self, branch: str) -> np.ndarray:
        """Per position of ``branch``'s steps: whether that step is on disk."""
        st = self.file[branch]["steps"][:]
        done = self._done()
        return np.ones(len(st), bool) if done is None else done[st]

    def _done_steps(self, branch: str) -> np.ndarray:
        """The branch's step numbers with the unfinished ones marked -1 (they never match a selection)."""
        st = self.file[branch]["steps"][:]
        return np.where(self._done_mask(branch), st, -1)

    @staticmethod
    def _positions(all_steps: np.ndarray, steps: Any) -> np.ndarray:
        if isinstance(steps, slice):
            wanted = np.arange(*steps.indices(int(all_steps.max(initial=-1)) + 1))
        else:
            wanted = np.atleast_1d(np.asarray(steps))
        pos = [int(np.flatnonzero(all_steps == s)[0]) for s in wanted if s in all_steps]
        missing = [int(s) for s in wanted if s not in all_steps]
        if missing and not isinstance(steps, slice):
            raise KeyError(f"steps {missing} are not in this branch (its steps: {all_steps.tolist()})")
        return np.unique(np.asarray(pos, dtype=np.int64))

    # ---- views --------------------------------------------------------------------------------------------
    def branch(self, name: str) -> CaptureReader:
        return type(self)(self.path, name, _file=self.file)

    def select(self, steps: int | Sequence[int] | slice) -> CaptureReader:
        """A view of the given global step numbers (int, list, or slice over step numbers)."""
        view = type(self)(self.path, self.branch_name, _file=self.file)
        view._pos = self._pos[CaptureReader._positions(self.steps, steps)]
        view.steps = view.file[view.branch_name]["steps"][:][view._pos]
        return view

    @property
    def steps_done(self) -> tuple[int, int]:
        """(steps written, steps in all) of the run (equal when complete)."""
        done = self._done()
        n = int(self.file.attrs.get("steps", len(self.file["timesteps"])))
        return (n, n) if done is None else (int(done.sum()), n)

    # ---- mapping ------------------------------------------------------------------------------------------
    def keys(self) -> list[str]:
        order = json.loads(self.file.attrs["sites"])
        present = set(self.file[self.branch_name]) - {"steps"}
        return [s for s in order if s in present]

    def __contains__(self, site: str) -> bool:
        return site in self.keys()

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    @staticmethod
    def _wrap(x: np.ndarray):
        """What the values are returned as (numpy arrays here; :class:`~interp.store.ActivationCache`: torch)."""
        return x

    def read(self, site: str) -> np.ndarray:
        """The site's values at the selected steps, as a numpy array."""
        if site not in self:
            raise KeyError(f"no site {site!r} in branch {self.branch_name!r}; stored: {self.keys()}")
        ds = self.file[self.branch_name][site]
        return read_site(ds, self._pos.tolist() if len(self._pos) else slice(0, 0))  # float32, whatever is stored

    def __getitem__(self, site: str):
        return self._wrap(self.read(site))

    def items(self):
        return ((k, self[k]) for k in self.keys())

    def axes(self, site: str) -> str:
        return self.file[self.branch_name][site].attrs["axes"]

    def stack(self, hook: str = "hook_resid_post"):
        """``blocks.{i}.{hook}`` of every stored block, stacked on a new leading layer axis."""
        names = [k for k in self.keys() if k.startswith("blocks.") and k.endswith("." + hook)]
        if not names:
            raise KeyError(f"no blocks.*.{hook} stored; stored: {self.keys()}")
        names.sort(key=lambda k: int(k.split(".")[1]))
        self.stack_labels = names
        return self._wrap(np.stack([self.read(n) for n in names]))

    def to_grid(self, x):
        """Tokens (second-to-last axis) -> (frame, row, col); a site name reads it first.

        A capture that kept a box of tokens (:mod:`interp.store.keep`) gives the box ((frames, rows, cols) of
        :attr:`stored_tokens`); one that kept a list of tokens gives the whole grid, NaN where nothing is stored."""
        if isinstance(x, str):
            if self.axes(x) != "step,batch,token,d_model":
                raise ValueError(f"{x} is stored as {self.axes(x)}, not per token")
            x = self[x]
        index, n_grid = self.stored_token_index, math.prod(self.grid)
        # the layout of interp.adapters.tokens_to_grid, on numpy or torch alike
        if index is None or x.shape[-2] == n_grid:
            return x.reshape(*x.shape[:-2], *self.grid, x.shape[-1])
        if x.shape[-2] != len(index):
            raise ValueError(f"{x.shape[-2]} tokens: this capture stores {len(index)} of its grid {self.grid}")
        box = _json_attr(self.file, "stored_token_box")
        if box is not None:
            return x.reshape(*x.shape[:-2], *(int(n) for n in box), x.shape[-1])
        shape = (*x.shape[:-2], n_grid, x.shape[-1])
        full = x.new_full(shape, float("nan")) if hasattr(x, "new_full") else np.full(shape, np.nan, x.dtype)
        full[..., index.tolist(), :] = x
        return full.reshape(*x.shape[:-2], *self.grid, x.shape[-1])

    @property
    def stored_token_index(self) -> np.ndarray | None:
        """Flat indices (in the full token grid) of the tokens per-token sites hold; None: every token."""
        return self.file["stored_token_index"][()] if "stored_token_index" in self.file else None

    @property
    def stored_tokens(self) -> np.ndarray:
        """(tokens stored, 3): frame, row, col of each token per-token sites hold, in their order."""
        return self.file["stored_tokens"][()] if "stored_tokens" in self.file else self.token_grid

    # ---- run-level data -----------------------------------------------------------------------------------
    @property
    def grid(self) -> tuple[int, int, int]:
        return tuple(int(g) for g in self.file.attrs["grid"])

    @property
    def config(self) -> dict:
        return json.loads(self.file.attrs["config"])

    @property
    def attrs(self) -> dict:
        return dict(self.file.attrs)

    @property
    def complete(self) -> bool:
        return bool(self.file.attrs["complete"])

    # ---- the capture's self-description (None where an older capture did not record it) ---------------------
    @property
    def task_meta(self) -> dict | None:
        """The model's task metadata (its ``interp.json``) as captured."""
        return _json_attr(self.file["task"], "meta") if "task" in self.file else None

    @property
    def sampler(self) -> dict | None:
        """The resolved sampler: steps, shift, guidance, seed, scheduler class."""
        return _json_attr(self.file, "sampler")

    def instances_json(self) -> list[str] | None:
        """The task instances as JSON strings."""
        if "task/instances" not in self.file:
            return None
        return [r.decode() if isinstance(r, bytes) else str(r) for r in self.file["task/instances"][()]]

    @property
    def condition_frames(self) -> np.ndarray | None:
        """(B, H, W, 3) uint8: the given first frames of the task instances."""
        return self.file["task/condition_frames"][()] if "task/condition_frames" in self.file else None

    @property
    def token_grid(self) -> np.ndarray:
        """(tokens, 3): frame, row, col of every token."""
        return self.file["token_grid"][()] if "token_grid" in self.file else token_coords(self.grid)

    @property
    def prompts(self) -> list[str] | None:
        if "prompts" not in self.file:
            return None
        return [r.decode() if isinstance(r, bytes) else str(r) for r in self.file["prompts"][()]]

    @property
    def image_digests(self) -> list[str] | None:
        """sha256 of each given image's pixels (:func:`interp.pipelines.inputs.image_digest`)."""
        return _json_attr(self.file["prompts"], "image_digests") if "prompts" in self.file else None

    @property
    def negative_prompt(self) -> str | None:
        return self.file["prompts"].attrs.get("negative_prompt") if "prompts" in self.file else None

    @property
    def images(self) -> np.ndarray | None:
        """(B, H, W, 3) uint8: the given images at the video's size."""
        return self.file["images"][()] if "images" in self.file else None

    @property
    def video(self) -> np.ndarray | None:
        """(B, F, H, W, 3) uint8: the final video decoded by the pipeline's VAE (pipeline captures)."""
        return self.file["video"][()] if "video" in self.file else None

    @property
    def audio(self) -> np.ndarray | None:
        """(B, channels, samples) float32: the final audio waveform of an audio-video pipeline (LTX-2: its audio VAE
        and vocoder; the sample rate is ``audio_sample_rate``); None for video-only pipelines."""
        return self.file["audio"][()] if "audio" in self.file else None

    @property
    def audio_sample_rate(self) -> int | None:
        return int(self.file["audio"].attrs["sample_rate"]) if "audio" in self.file else None

    @property
    def audio_latents(self) -> np.ndarray | None:
        """(B, C, audio frames, mel bins) float32: the final audio latents, de-normalised, as the pipeline's
        ``__call__(output_type="latent")`` returns them (LTX-2); None for video-only pipelines."""
        return self.file["audio_latents"][()] if "audio_latents" in self.file else None

    def _x0_rows(self) -> tuple[list[int], list[int]] | None:
        """(rows, steps) of the decoded x0 steps on disk (all of them when the capture is complete)."""
        if "x0_video" not in self.file:
            return None
        steps = _json_attr(self.file["x0_video"], "steps") or list(range(len(self.file["x0_video"])))
        done = self._done()
        rows = [i for i, s in enumerate(steps) if done is None or (s < len(done) and done[s])]
        return rows, [steps[i] for i in rows]

    @property
    def x0_video(self) -> np.ndarray | None:
        """(n, B, F, H, W, 3) uint8: x0 of :attr:`x0_video_steps` decoded by the VAE (the step lens)."""
        got = self._x0_rows()
        if got is None:
            return None
        return self.file["x0_video"][()] if self._done() is None else self.file["x0_video"][got[0]]

    @property
    def x0_video_steps(self) -> list[int] | None:
        got = self._x0_rows()
        return None if got is None else (_json_attr(self.file["x0_video"], "steps") if self._done() is None else got[1])

    @property
    def scores(self) -> dict | None:
        """A scorer's scores (``interp capture --scorer``): ``{"scorer": "module:function", "steps": [...],
        "x0": {name: (n, B) per decoded step}, "video": {name: (B,) of the final video}}``; None without."""
        return read_scores(self.file)

    def _run(self, name: str):
        return self._wrap(self.file[name][self.steps.tolist()])

    @property
    def timesteps(self):
        return self._run("timesteps")

    @property
    def sigmas(self):
        return self._run("sigmas")

    @property
    def latents(self):
        """x_s entering each selected step."""
        return self._run("latents")

    @property
    def final(self):
        done = self._done()
        if done is not None and not done.all():
            raise ValueError(f"{self.path}: the final latent is not written yet ({int(done.sum())} of {len(done)} "
                             "steps written)")  # fmt: skip
        return self._wrap(self.file["latents"][-1])

    @property
    def v(self):
        return self._run("v")

    @property
    def x0(self):
        return self._run("x0")

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.path.name}, branch={self.branch_name!r}, steps={len(self.steps)}, "
                f"sites={len(self)})")  # fmt: skip


def open_capture(path: str | os.PathLike, branch: str | None = None, *, allow_partial: bool = False) -> CaptureReader:
    """:func:`~interp.store.load_cache` without torch: the same reader, values as numpy arrays."""
    return CaptureReader(path, branch, allow_partial=allow_partial)
