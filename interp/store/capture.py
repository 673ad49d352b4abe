"""HDF5 activation store: one file per run, one dataset per site, written by a background thread, resumable.

Layout (schema 1)::

    /                      attrs: schema_version, interp_version, config (JSON), config_hash, model_hash, family,
                                  steps, pool, dtype, grid (f,h,w), sites (JSON), branches (JSON), complete
    /timesteps, /sigmas    (steps,)
    /latents               (steps+1, B, C, F, H, W): x_s entering step s; latents[steps] is the final latent
    /v, /x0                (steps, B, C, F, H, W): guided prediction and x0 prediction of step s
    /stream_<name>         (steps, B, ...): a stream denoised beside the video after step s (LTX-2's packed audio)
    /step_done             (steps,) uint8: 1 once everything of step s is on disk (written last for that step)
    /<branch>/steps        global step numbers of this branch (``cond``, ``uncond``, ``transformer_2/cond``, ...)
    /<branch>/<site>       (n_branch_steps, B, tokens, d_model), one chunk per step; attrs axes, pool
                           pool=mean: (n, B, d_model); pool=frame: (n, B, frames, d_model); hook_out: latent layout;
                           modulation sites (hook_mod_*): (n, B, 1, d_model), never pooled (one value for all tokens)
                           attrs storage_dtype (interp.store.codec: float32, float16, bfloat16 as uint16 bits,
                           float8_e4m3:token / :channel as uint8 codes), source_dtype, and for 8-bit floats scale
    /<branch>/<site>.scale (n, B, ...) float32: the 8-bit codes' scales (the site's shape, reduced axes kept as 1)

What a capture keeps (:mod:`interp.store.keep`): ``<branch>/steps`` lists the steps stored (``step_stride`` /
``store_steps``: latents, v and x0 stay at every step); a capture that kept some tokens has ``/stored_token_index``
(n,) int64 and ``/stored_tokens`` (n, 3) int32 (their flat index and frame, row, col), per-token sites hold those
tokens in that order (attr ``tokens``), and ``stored_token_box`` (JSON sizes) when they form a box. Readers
(:class:`ActivationCache`, :func:`read_site`) return float32 whatever the storage dtype.

The capture describes itself (written at its start, when the capture gives them), so readers need neither the
model directory nor the task generators::

    /                      attrs: schema ("interp.capture"), sampler (JSON: steps, shift, guidance, seed, scheduler)
    /token_grid            (tokens, 3) int32: frame, row, col of each token (the grid attribute, spelled out)
    /task                  attrs meta (JSON: the model's interp.json)
    /task/instances        (B,) JSON strings of the task instances
    /task/condition_frames (B, H, W, 3) uint8: the given first frames
    /prompts               (B,) strings, attrs image_digests (JSON), negative_prompt, when prompts / images were given
    /images                (B, H, W, 3) uint8: the given images, resized to the video's height x width
    /video                 (B, F, H, W, 3) uint8: the final video decoded by the pipeline's VAE (pipeline captures)
    /x0_video              (n, B, F, H, W, 3) uint8: the step lens, x0 of the steps in its attrs ``steps`` (JSON)
                           decoded by the VAE (one chunk per decoded step, written with that step)
    /scores/x0/<name>      (n, B) float64: a scorer's score ``name`` of each decoded step (attrs scorer, steps JSON:
                           the step lens' steps, or every step of a pixel-space model); NaN where not yet written
    /scores/video/<name>   (B,) float64: the same score of the final video (attrs scorer)

Writes go to ``FILE.h5.partial`` and are moved to ``FILE.h5`` by ``os.replace`` after ``complete`` is set, so a
file under the final name is always whole. An interrupted run resumes from the first step not marked done.

One writer thread writes the chunks through h5py's ``write_direct_chunk``; a pool of ``os.pwrite`` chunk writers was
tried and measured slower on H100 (0.87-0.92x) and on the 2-core CPU (0.52-0.75x), so it was removed. A thread of
its own starts the written pages' writeback (:class:`Writeback`), so the writer never waits on it: done in the writer
after each step, the advice took 62% of the writer's time and it ran at 1.18x its disk floor, 0.97x with
the thread (``python -m benchmarks.writer``, 4 GB on the 2-core CPU: benchmarks/results/writer_cpu.txt).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import queue
import threading
import time
import warnings
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import h5py
import numpy as np
import torch
from einops import reduce
from pydantic import BaseModel
from torch import Tensor

from interp.store.atomic import AtomicH5, partial_path
from interp.store.capture_reader import SCORE_GROUP, CaptureReader, read_scores, token_coords  # noqa: F401 -- re-exported
from interp.store.codec import SCALE_SUFFIX, DtypeSpec, check_spec, encode, site_dtype, spec_attr, to_disk
from interp.store.describe import describe  # noqa: F401 -- re-exported: it lives where no torch is imported
from interp.store.dtypes import read_site  # noqa: F401 -- re-exported
from interp.store.schema import CAPTURE

SCHEMA_VERSION = CAPTURE.version
Pool = Literal["none", "mean", "frame"]
LATENT_KEYS = ("latents", "v", "x0")
STREAM_PREFIX = "stream_"
"""``stream_<name>`` (steps, B, ...): a stream denoised beside the video (LTX-2: ``stream_audio_hidden_states``, the
packed audio latents) after each step, so a partial capture resumes exactly."""


def canonical_json(config: BaseModel | dict) -> str:
    """Sorted-key, compact JSON: the form that is hashed.

    Fields a config class names in ``HASH_OMIT_IF_DEFAULT`` are left out while they hold their default, so adding an
    optional field to a config keeps the hashes (and the resumability) of files written before it existed."""
    if isinstance(config, BaseModel):
        obj = config.model_dump(mode="json")
        fields = type(config).model_fields
        for name in getattr(type(config), "HASH_OMIT_IF_DEFAULT", ()):
            if name in obj and getattr(config, name) == fields[name].get_default(call_default_factory=True):
                del obj[name]
    else:
        obj = config
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def config_hash(config: BaseModel | dict) -> str:
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()


class StoredSite(NamedTuple):
    """One site of one step as stored (:func:`step_values`)."""

    branch: str
    site: str
    codes: Tensor  # in the dataset's dtype (interp.store.codec)
    axes: str
    pool: str
    storage_dtype: str
    scale: Tensor | None  # 8-bit floats: float32, the value's shape with the reduced axes kept as 1
    source_dtype: str  # the value's dtype before it was encoded


def is_token_site(site: str, value: Tensor, grid: tuple[int, int, int]) -> bool:
    """A site with one vector per video token, (B, tokens, d_model): what ``pool`` averages."""
    return site != "hook_out" and value.ndim == 3 and value.shape[1] == math.prod(grid)


class TokenPool:
    """A read's ``reduce`` (:class:`interp.trace.ForwardPlan`): pools each per-token site's value inside the forward,
    as :func:`step_values` would at the step's end, so that a pooled capture never holds a step's full activations;
    ``pooled`` names the sites it pooled (for :func:`step_values`)."""

    def __init__(self, pool: Pool, grid: tuple[int, int, int]):
        self.pool, self.grid, self.pooled = pool, tuple(grid), set()

    def __call__(self, site: str, value: Tensor) -> Tensor:
        if self.pool == "none" or not is_token_site(site, value, self.grid):
            return value
        self.pooled.add(site)
        return pool_tokens(value, self.pool, self.grid)


def step_values(rec: Any, pool: Pool, grid: tuple[int, int, int], dtype: DtypeSpec,
                tokens: np.ndarray | None = None, pooled: Collection[str] = ()) -> tuple[list, list]:  # fmt: skip
    """What a capture stores of one step record, as stored: ``(latents, sites)``, latents ``(name, row, value)``
    (x at step 0, x_next, v, x0), sites :class:`StoredSite`: pooled, the
    ``tokens`` (flat indices, :mod:`interp.store.keep`) of a per-token site kept, and encoded in the site's storage
    dtype (:mod:`interp.store.codec`; ``scale`` None but for 8-bit floats), all on the value's device. ``pooled``:
    sites whose values were already pooled in the forward (:class:`TokenPool`)."""
    s = rec.step
    latents = [("latents", 0, rec.x)] if s == 0 else []
    latents += [("latents", s + 1, rec.x_next), ("v", s, rec.v), ("x0", s, rec.x0)]
    latents += [(STREAM_PREFIX + k, s, v) for k, v in getattr(rec, "streams", {}).items()]
    sites = []
    index: dict[torch.device, Tensor] = {}
    for branch, acts in rec.branches.items():
        for site, value in acts.items():
            done = pool != "none" and site in pooled and not is_token_site(site, value, grid)  # pooled in the forward
            per_token = done or (site != "hook_out" and value.ndim == 3)  # (B, tokens, d_model)
            # a modulation site's token axis is 1 when every token gets the same value: nothing to pool
            is_pooled = done or is_token_site(site, value, grid)
            if is_pooled and not done:
                value = pool_tokens(value, pool, grid)
                if tokens is not None and pool == "none":
                    if value.device not in index:
                        index[value.device] = torch.as_tensor(tokens, device=value.device)
                    value = value.index_select(1, index[value.device])
            sd = site_dtype(dtype, site)
            codes, scale = encode(value, sd)
            axes = (TOKEN_AXES[pool if is_pooled else "none"] if per_token else HEAD_AXES if value.ndim == 4
                    else "step,batch,channel,frame,height,width")  # fmt: skip
            sites.append(StoredSite(branch, site, codes, axes, pool if is_pooled else "none", sd, scale,
                                    str(value.dtype).removeprefix("torch.")))  # fmt: skip
    return latents, sites


def step_nbytes(latents: list, sites: list) -> int:
    """Bytes of one step's :func:`step_values` (codes and scales)."""
    n = sum(v.numel() * v.element_size() for _, _, v in latents)
    for item in sites:
        n += item.codes.numel() * item.codes.element_size()
        if item.scale is not None:
            n += item.scale.numel() * item.scale.element_size()
    return n


def pool_tokens(x: Tensor, pool: Pool, grid: tuple[int, int, int]) -> Tensor:
    """Pool a (B, tokens, d) site value: ``mean`` over all tokens -> (B, d); ``frame`` per frame -> (B, f, d)."""
    if pool == "none" or x.ndim != 3:
        return x
    if pool == "mean":
        return x.mean(dim=1)
    f, h, w = grid
    return reduce(x, "b (f hw) d -> b f d", "mean", f=f, hw=h * w)


TOKEN_AXES = {"none": "step,batch,token,d_model", "mean": "step,batch,d_model", "frame": "step,batch,frame,d_model"}
HEAD_AXES = "step,batch,pos,head,d_head"  # per-head attention sites (interp.adapters.attention), stored unpooled


def _np(t: Tensor) -> np.ndarray:
    if t.dtype == torch.bfloat16:  # numpy/HDF5 have no bfloat16: widen exactly
        t = t.float()
    return t.numpy()


_COPY_STREAMS: dict[torch.device, torch.cuda.Stream] = {}


def _copy_stream(device: torch.device) -> torch.cuda.Stream:
    """One side stream per GPU for device->host copies, so they overlap the next forward instead of queueing in
    front of it on the compute stream."""
    if device not in _COPY_STREAMS:
        _COPY_STREAMS[device] = torch.cuda.Stream(device)
    return _COPY_STREAMS[device]


class _HostCopy:
    """A device->host copy: pinned and non-blocking on CUDA, on a side stream (the writer waits on the event), a
    view on CPU."""

    def __init__(self, t: Tensor):
        t = t.detach()
        self.event = None
        if t.is_cuda:
            self.tensor = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
            stream = _copy_stream(t.device)
            stream.wait_stream(torch.cuda.current_stream(t.device))  # the value is computed before it is copied
            with torch.cuda.stream(stream):
                self.tensor.copy_(t, non_blocking=True)
                self.event = torch.cuda.Event()
                self.event.record(stream)
            t.record_stream(stream)  # the allocator must not reuse t's memory before the copy has read it
        else:
            self.tensor = t

    def numpy(self) -> np.ndarray:
        if self.event is not None:
            self.event.synchronize()
        return _np(self.tensor)


def write_description(file: h5py.File, d: dict) -> None:
    """The self-description of a capture (keys of ``d``, each optional): ``sampler`` (dict), ``task_meta`` (dict),
    ``instances`` (JSON strings), ``condition_frames`` (uint8 array), ``prompts`` (strings), ``image_digests``."""
    if d.get("sampler") is not None:
        file.attrs["sampler"] = json.dumps(d["sampler"], sort_keys=True)
    if "grid" in file.attrs:
        file.create_dataset("token_grid", data=token_coords(file.attrs["grid"]))
    if d.get("task_meta") is not None:
        g = file.require_group("task")
        g.attrs["meta"] = json.dumps(d["task_meta"], sort_keys=True)
        if d.get("instances") is not None:
            g.create_dataset("instances", data=list(d["instances"]), dtype=h5py.string_dtype())
        if d.get("condition_frames") is not None:
            g.create_dataset("condition_frames", data=np.asarray(d["condition_frames"], np.uint8))
    if d.get("prompts") is not None:
        ds = file.create_dataset("prompts", data=list(d["prompts"]), dtype=h5py.string_dtype())
        ds.attrs["image_digests"] = json.dumps(d.get("image_digests") or [])
        if d.get("negative_prompt") is not None:
            ds.attrs["negative_prompt"] = str(d["negative_prompt"])
    if d.get("images") is not None:
        file.create_dataset("images", data=np.asarray(d["images"], np.uint8))


def score_step_arrays(index: int, rows: int, scores: Sequence[dict], scorer: str, steps: Sequence[int]) -> list[tuple]:
    """The rows one decoded step's scores add to :meth:`RunWriter.on_step` (its ``arrays``): row ``index`` of
    ``scores/x0/<name>`` ((rows, B) float64) for every score name, ``scores[i]`` being sample i's dict."""
    attrs = {"scorer": scorer, "steps": json.dumps([int(s) for s in steps]), "axes": "step,batch"}
    return [(f"{SCORE_GROUP}/x0/{name}", index, np.array([sc[name] for sc in scores], np.float64), rows, attrs)
            for name in sorted(scores[0])]  # fmt: skip


def put_video_scores(writer: RunWriter, scores: Sequence[dict], scorer: str) -> None:
    """The final video's scores: ``scores/video/<name>`` (B,) float64, one dataset per score name."""
    for name in sorted(scores[0]):
        writer.put_array(f"{SCORE_GROUP}/video/{name}", np.array([sc[name] for sc in scores], np.float64),
                         {"scorer": scorer, "axes": "batch"})  # fmt: skip


WritebackMode = Literal["thread", "inline", "off"]
ADVISE_BYTES = 256 << 20
"""``thread`` writeback: bytes written between two advices (and at least one advice per step)."""


class Writeback:
    """Starts the writeback of a file's written pages to the disk while it is being written, so that the fsync that
    completes it (:mod:`interp.store.atomic`) finds little left to write and a file larger than the page cache does
    not stall on it (Linux: ``posix_fadvise`` DONTNEED over the whole file starts the writeback of its dirty pages
    and drops its clean ones; it changes no byte of the file).

    ``thread`` (the default): a thread of its own advises once every :data:`ADVISE_BYTES` the writer wrote
    (:meth:`wrote`) and at the end of each step (calls made while it advises are coalesced into one more), so the
    writer keeps issuing writes while the kernel takes the pages (the call blocks while the disk's queue is full).
    Each wake is a GIL handoff from the forward: on an H200, beside a stand-in forward holding the GIL, the thread
    woken after every 12.6 MiB chunk slowed the forward 1.23x where one advice per step did not (``benchmarks.writer``).
    ``inline``: the writer advises after each step (:meth:`step_written`), in its own thread. ``off``: the kernel's
    own writeback and the final fsync. Where ``posix_fadvise`` is missing, every mode is ``off``. A failing advice
    warns once and stops advising (the final fsync still makes the file durable)."""

    def __init__(self, path: str | os.PathLike, mode: WritebackMode = "thread", advise_bytes: int | None = None):
        self.check(mode)
        self.path, self.mode = Path(path), mode if hasattr(os, "posix_fadvise") else "off"
        self.advise_bytes = ADVISE_BYTES if advise_bytes is None else advise_bytes
        self._fd: int | None = None
        self._unadvised = 0  # bytes written since the thread was last woken
        self._dirty = self._stop = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        if self.mode == "thread":
            self._thread = threading.Thread(target=self._loop, name="interp-store-writeback", daemon=True)
            self._thread.start()

    @staticmethod
    def check(mode: str) -> None:
        if mode not in ("thread", "inline", "off"):
            raise ValueError(f"writeback {mode!r}: valid are 'thread', 'inline' and 'off'")

    def wrote(self, nbytes: int = 0) -> None:
        """The writer wrote a chunk of ``nbytes`` (its own thread): the thread is woken once ``advise_bytes`` have
        gathered."""
        if self._thread is not None:
            self._unadvised += nbytes
            if self._unadvised >= self.advise_bytes:
                self._wake()

    def _wake(self) -> None:
        self._unadvised = 0
        with self._cond:
            self._dirty = True
            self._cond.notify()

    def step_written(self) -> None:
        """The writer wrote a whole step (its own thread)."""
        if self.mode == "inline":
            self._advise()
        elif self._thread is not None and self._unadvised:
            self._wake()

    def _advise(self) -> None:
        if self.mode == "off":
            return
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY)
            os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError as e:
            warnings.warn(f"could not start the writeback of {self.path} ({e}); the final fsync writes it",
                          stacklevel=2)  # fmt: skip
            self.mode = "off"

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._dirty and not self._stop:
                    self._cond.wait()
                if not self._dirty:
                    return
                self._dirty = False
            self._advise()

    def close(self) -> None:
        """Stop the thread (after a last advice of what was written) and close the handle; idempotent."""
        if self._thread is not None:
            with self._cond:
                self._stop = True
                self._cond.notify()
            self._thread.join()
            self._thread = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class RunWriter:
    """Streams :class:`~interp.trajectory.StepRecord` s into one HDF5 file from a background thread.

    Use as ``on_step`` of :func:`~interp.trajectory.run_trajectory`; call :meth:`finish` at the end. If a partial
    file of the same config and model exists, :attr:`start_step` / :meth:`start_latents` say where to resume.
    ``writeback``: who starts the written pages' writeback to the disk (:class:`Writeback`; the bytes written are
    the same whichever); ``advise_bytes``: how often its thread is woken (default :data:`ADVISE_BYTES`).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        config: BaseModel | dict,
        model_hash: str,
        family: str,
        timesteps: Tensor,
        sigmas: Tensor,
        branch_steps: dict[str, list[int]],
        sites: Sequence[str],
        grid: tuple[int, int, int],
        dtype: DtypeSpec = "float32",
        pool: Pool = "none",
        tokens: np.ndarray | None = None,
        token_box: tuple[int, int, int] | None = None,
        overwrite: bool = False,
        queue_size: int = 64,
        max_pending_bytes: int = 8 << 30,
        flush_seconds: float = 1.0,
        description: dict | None = None,
        writeback: WritebackMode = "thread",
        advise_bytes: int | None = None,
    ):
        Writeback.check(writeback)
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self.steps = len(timesteps)
        self.dtype, self.pool, self.grid = check_spec(dtype), pool, tuple(grid)
        self.reducer = TokenPool(pool, self.grid)  # the reads' ``reduce``: pooled in the forward
        self.tokens = None if tokens is None else np.asarray(tokens, np.int64)
        self.n_tokens = int(np.prod(self.grid))
        self.branch_pos = {b: {s: i for i, s in enumerate(st)} for b, st in branch_steps.items()}
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path} exists (a complete capture); pass overwrite to replace it")
        chash = config_hash(config)

        def resume(f: h5py.File) -> bool:
            if f.attrs.get("config_hash") != chash or f.attrs.get("model_hash") != model_hash:
                raise ValueError(f"{self.partial} holds an interrupted capture of a different config or model; "
                                 "delete it to start over")  # fmt: skip
            return True

        attrs = dict(
            config=canonical_json(config), config_hash=chash, model_hash=model_hash, family=family, steps=self.steps,
            pool=pool, dtype=spec_attr(self.dtype), grid=np.asarray(grid), sites=json.dumps(list(sites)),
            branches=json.dumps(list(branch_steps)),
        )  # fmt: skip
        self._atomic = AtomicH5(self.path, CAPTURE, attrs=attrs, resume=resume, overwrite=overwrite)
        self.file = self._atomic.file
        if not self._atomic.resumed:
            self.file.create_dataset("timesteps", data=_np(timesteps.float()))
            self.file.create_dataset("sigmas", data=_np(sigmas.float()))
            self.file.create_dataset("step_done", data=np.zeros(self.steps, np.uint8))
            for branch, st in branch_steps.items():
                self.file.require_group(branch).create_dataset("steps", data=np.asarray(st, np.int64))
            if description is not None:
                write_description(self.file, description)
            if self.tokens is not None:
                self.file.create_dataset("stored_token_index", data=self.tokens)
                self.file.create_dataset("stored_tokens", data=token_coords(self.grid)[self.tokens])
                if token_box is not None:
                    self.file.attrs["stored_token_box"] = json.dumps([int(n) for n in token_box])
            self.file.flush()
        done = self.file["step_done"][:]
        self._marks = done.copy()  # step_done as written; goes to the file at each flush
        self.start_step = int(np.argmin(done)) if not done.all() else self.steps
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)  # steps waiting to be written
        self._datasets: dict[str, tuple[h5py.Dataset, np.dtype | None, tuple]] = {}
        # host memory (pinned, on a GPU) held by copies not yet written: on_step waits while it is over the budget
        self._budget, self._pending, self._room = max_pending_bytes, 0, threading.Condition()
        # HDF5 metadata (the step_done marks with it) goes to the file at most this often and at the last step: a
        # flush per step cost as much as writing the data of a small model's step
        self._flush_seconds, self._flushed = flush_seconds, time.monotonic()
        self._error: BaseException | None = None
        self._writeback = Writeback(self.partial, writeback, advise_bytes)
        self._thread = threading.Thread(target=self._work, name="interp-store-writer", daemon=True)
        self._thread.start()

    def start_latents(self) -> Tensor | None:
        """x at :attr:`start_step` read back from the file (None when starting fresh)."""
        if self.start_step == 0:
            return None
        ds = self.file["latents"]
        x = torch.from_numpy(ds[self.start_step])
        return x.to(getattr(torch, ds.attrs["source_dtype"]))

    def start_streams(self, names) -> dict[str, Tensor]:
        """The streams ``names`` after the step before :attr:`start_step` (all steps done: the final ones), read back
        from the file ({} when starting fresh); a name the file lacks is a ValueError."""
        if self.start_step == 0:
            return {}
        out = {}
        for k in names:
            if STREAM_PREFIX + k not in self.file:
                raise ValueError(f"{self.file.filename} holds no {STREAM_PREFIX + k} per step: it cannot resume")
            ds = self.file[STREAM_PREFIX + k]
            out[k] = torch.from_numpy(ds[self.start_step - 1]).to(getattr(torch, ds.attrs["source_dtype"]))
        return out

    # ---- writing (main thread enqueues; the writer thread owns the file) ---------------------------------------
    def _put(self, item: tuple) -> None:
        if self._error is not None:
            raise RuntimeError("store writer failed") from self._error
        self._queue.put(item)

    def _reserve(self, nbytes: int) -> None:
        """Wait until ``nbytes`` more fit the pending-bytes budget (always fits when nothing is pending)."""
        with self._room:
            while self._pending and self._pending + nbytes > self._budget and self._error is None:
                self._room.wait(0.1)
            self._pending += nbytes

    def on_step(self, rec: Any, arrays: Sequence[tuple] = (), *, done: bool = True) -> None:
        """Queue everything of one step (one queue item); the writer marks the step done after writing it.

        ``arrays``: more per-step rows written with the step, each ``(name, index, value, rows, attrs)``: row
        ``index`` of dataset ``name`` of ``rows`` rows (created on its first write with ``attrs``), e.g. the step
        lens' decoded ``x0_video``. ``done=False``: the step's rows come later (:meth:`put_rows`, which then marks
        it done), so its values go now and a resumed file never holds the step without its rows.

        Values are converted (pooled, float16) where they are; device->host copies start here and overlap the next
        forward. While more than ``max_pending_bytes`` await the disk, this waits (a capture then runs at the
        disk's pace instead of filling the host memory).
        """
        s = rec.step
        latents, stored = step_values(rec, self.pool, self.grid, self.dtype, self.tokens, self.reducer.pooled)
        stored = [v for v in stored if s in self.branch_pos[v[0]]]  # steps outside the stored ones: latents only
        sites = []
        for branch, site, codes, axes, pool, sd, scale, source in stored:
            pos, n, name = self.branch_pos[branch][s], len(self.branch_pos[branch]), f"{branch}/{site}"
            attrs = {"axes": axes, "pool": pool, "storage_dtype": sd, "source_dtype": source}
            if self.tokens is not None and axes == TOKEN_AXES["none"]:
                attrs["tokens"] = "stored_token_index"
            if scale is not None:
                attrs["scale"] = site + SCALE_SUFFIX
            sites.append((name, pos, codes, attrs, n))
            if scale is not None:  # beside the codes: (n, B, ...) with the reduced axes kept as 1
                sites.append((name + SCALE_SUFFIX, pos, scale, {"axes": axes, "scale_of": site}, n))
        nbytes = step_nbytes(latents, stored)
        rows = [(name, index, torch.as_tensor(value), n, attrs) for name, index, value, n, attrs in arrays]
        nbytes += sum(v.numel() * v.element_size() for _, _, v, _, _ in rows)
        if self._error is not None:
            raise RuntimeError("store writer failed") from self._error
        self._reserve(nbytes)
        writes = [("latent", name, i, _HostCopy(v)) for name, i, v in latents]
        writes += [("site", name, pos, _HostCopy(v), attrs, n) for name, pos, v, attrs, n in sites]
        writes += [("rows", name, index, _HostCopy(v), n, attrs) for name, index, v, n, attrs in rows]
        self._put(("step", s, writes, nbytes, done))

    def put_rows(self, step: int, arrays: Sequence[tuple]) -> None:
        """Queue the rows of a step queued with ``on_step(..., done=False)`` (same form as its ``arrays``); the
        writer marks the step done after writing them."""
        if self._error is not None:
            raise RuntimeError("store writer failed") from self._error
        rows = [(name, index, torch.as_tensor(value), n, attrs) for name, index, value, n, attrs in arrays]
        nbytes = sum(v.numel() * v.element_size() for _, _, v, _, _ in rows)
        self._reserve(nbytes)
        writes = [("rows", name, index, _HostCopy(v), n, attrs) for name, index, v, n, attrs in rows]
        self._put(("step", step, writes, nbytes, True))

    def put_array(self, name: str, value, attrs: dict | None = None) -> None:
        """Queue one whole dataset (e.g. the final decoded ``video``); kept as it is when resuming a file that has
        it already."""
        value = np.asarray(value)
        self._put(("array", name, value, attrs or {}, value.nbytes))

    def _work(self) -> None:
        """Write each step's items, then mark the step done."""
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None and item[0] == "array":
                    if item[1] not in self.file:
                        self.file.create_dataset(item[1], data=item[2]).attrs.update(item[3])
                elif self._error is None:
                    for write in item[2]:
                        self._writeback.wrote(self._write(write))
                    if item[4]:
                        self._mark_done(item[1])
                    self._writeback.step_written()
            except BaseException as e:  # noqa: BLE001 - surfaced on the next put / finish
                self._error = e
            finally:
                if item is not None:
                    with self._room:
                        self._pending -= item[-1] if item[0] == "array" else item[3]
                        self._room.notify_all()
                self._queue.task_done()

    def _mark_done(self, step: int) -> None:
        self._marks[step] = 1
        # the last step, or the last mark (a step lens marks its steps done after later ones)
        if step == self.steps - 1 or self._marks.all() or time.monotonic() - self._flushed >= self._flush_seconds:
            self._flush_marks()

    def _write(self, item: tuple) -> int:
        """One array to its dataset (created on its first write): its bytes as the step's chunk when the dataset has
        one uncompressed chunk per step of this shape and dtype, else through ``ds[index] = arr``; returns its
        bytes."""
        kind, name, index, host = item[:4]
        arr = host.numpy()
        if kind == "site":
            arr = to_disk(arr, item[4].get("storage_dtype", ""))
        entry = self._datasets.get(name)
        if entry is None:
            f = self.file
            if name not in f:
                if kind == "latent":
                    n = self.steps + 1 if name == "latents" else self.steps
                else:  # site: its branch's step count; rows: the rows asked for
                    n = item[5] if kind == "site" else item[4]
                fill = np.nan if kind == "rows" and arr.dtype.kind == "f" else None  # unwritten score rows: NaN
                ds = f.create_dataset(name, shape=(n, *arr.shape), dtype=arr.dtype, chunks=(1, *arr.shape),
                                      fillvalue=fill)  # fmt: skip
                ds.attrs["source_dtype"] = str(host.tensor.dtype).removeprefix("torch.")
                if kind == "site":
                    ds.attrs.update(item[4])
                if kind == "rows":
                    ds.attrs.update(item[5])
            ds = f[name]
            # one uncompressed chunk per step: HDF5 can take the bytes as they are (4-5x faster than ds[i] = arr)
            direct = ds.chunks == (1, *ds.shape[1:]) and not ds.compression and not ds.shuffle and not ds.fletcher32
            entry = self._datasets[name] = (ds, ds.dtype if direct else None, ds.shape[1:])  # h5py properties are slow
        ds, direct_dtype, chunk_shape = entry
        if direct_dtype == arr.dtype and chunk_shape == arr.shape and arr.flags.c_contiguous:
            ds.id.write_direct_chunk((index,) + (0,) * arr.ndim, arr)
        else:
            ds[index] = arr
        return arr.nbytes

    def _flush_marks(self) -> None:
        """Write the step_done marks with the HDF5 metadata they rely on (the writer thread, or after it stopped)."""
        self.file["step_done"][:] = self._marks
        self.file.flush()
        self._flushed = time.monotonic()

    def flush(self) -> None:
        """Wait until everything queued is on disk."""
        self._queue.join()
        if self._error is not None:
            raise RuntimeError("store writer failed") from self._error

    def close_writer(self) -> None:
        """Stop the writer thread and write the marks of the steps written since the last flush."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._writeback.close()
        if self.file:
            try:
                if self.file.mode == "r+" and not (self.file["step_done"][:] == self._marks).all():
                    self._flush_marks()  # steps written since the last flush stay resumable
            except Exception as e:  # noqa: BLE001 - closing must not hide the error that stopped the run
                warnings.warn(f"could not mark the last written steps of {self.partial} ({e})", stacklevel=2)

    def close(self) -> None:
        """Stop the writer and close the partial file (steps written so far stay resumable)."""
        self.close_writer()
        self._atomic.close()

    def finish(self) -> Path:
        """Drain the queue, set ``complete`` last, and move the file to its final name."""
        self.flush()
        if not self.file["step_done"][:].all():
            raise RuntimeError(f"finish() with steps missing: {np.flatnonzero(self.file['step_done'][:] == 0)}")
        self.close_writer()
        return self._atomic.finish()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ActivationCache(CaptureReader):
    """Read a capture like TransformerLens' ``ActivationCache``: ``cache["blocks.3.hook_resid_post"]``.

    A view of one branch (default: the first, ``cond`` when CFG ran) and a step selection (default: all). Values
    come back as torch tensors shaped (steps, batch, tokens, d_model) (or as the site's ``axes`` attribute says);
    :class:`~interp.store.capture_reader.CaptureReader` is the same reader returning numpy arrays, without torch.

    An unfinished capture (a ``.partial``, ``complete`` = False, or a path of which only the ``.partial`` exists)
    is refused (:class:`~interp.store.lock.IncompleteFileError`: how far it got, how to resume); with
    ``allow_partial=True`` it is read, and every view holds only the steps marked done (never unwritten zeros).
    """

    _wrap = staticmethod(torch.from_numpy)


def load_cache(path: str | os.PathLike, branch: str | None = None, *,
               allow_partial: bool = False) -> ActivationCache:  # fmt: skip
    """Open a finished capture for reading; an unfinished one is refused unless ``allow_partial`` (then only its
    finished steps are read; ``cache.complete`` and ``cache.steps_done`` tell how far it got)."""
    return ActivationCache(path, branch, allow_partial=allow_partial)
