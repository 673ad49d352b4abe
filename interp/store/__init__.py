"""``interp.store``: the only code that opens HDF5. Every layout the package writes lives here, each with its schema
name and version (:mod:`interp.store.schema`) and written through one atomic-write helper
(:mod:`interp.store.atomic`), which takes the output's lock first (:mod:`interp.store.lock`: one writer per
output); every reader refuses an unfinished file unless asked (``allow_partial``):

- :mod:`~interp.store.capture`: captures (``interp capture``), read as an :class:`ActivationCache` (torch tensors)
  or, without torch, as a :class:`~interp.store.capture_reader.CaptureReader` (numpy arrays, :func:`open_capture`);
- :mod:`~interp.store.results`: experiment results, their shards and the merge;
- :mod:`~interp.store.samples`: eval samples (``samples.h5``);
- :mod:`~interp.store.probes`: probe results (``probes.h5``);
- :mod:`~interp.store.lens`: the x0 lens' scores (``lens.h5``, ``interp lens``);
- :mod:`~interp.store.plain`: the plain layout (one dataset per site) of LM captures, comparisons and other tools.
"""

from interp.store.atomic import (
    AtomicH5,
    DiskFullError,
    atomic_h5,
    atomic_path,
    partial_path,
    publish_dir,
    staging_dir,
    write_atomic,
)
from interp.store.capture_reader import CaptureReader, open_capture, read_scores, token_coords
from interp.store.describe import describe
from interp.store.dtypes import read_site
from interp.store.lock import IncompleteFileError, OutputBusy, OutputLock
from interp.store.schema import (
    CAPTURE,
    LENS,
    PLAIN,
    PROBES,
    RESULTS,
    SAMPLES,
    Schema,
    SchemaError,
    file_schema,
    open_h5,
)

# the capture layout's torch reader (ActivationCache) and its writer import torch: they load on first use (PEP 562),
# so that `interp inspect`, `interp view` (CaptureReader) and the other readers that need neither start without it
_CAPTURE = ("LATENT_KEYS", "SCHEMA_VERSION", "TOKEN_AXES", "ActivationCache", "Pool", "RunWriter", "canonical_json",
            "config_hash", "load_cache", "pool_tokens", "put_video_scores", "score_step_arrays")  # fmt: skip
_LENS = ("read_lens", "write_lens")


def __getattr__(name: str):
    if name in _CAPTURE or name in _LENS:
        from interp.store import capture, lens  # torch: on first use

        value = getattr(capture if name in _CAPTURE else lens, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CAPTURE", "LATENT_KEYS", "LENS", "PLAIN", "PROBES", "RESULTS", "SAMPLES", "SCHEMA_VERSION", "TOKEN_AXES",
    "ActivationCache", "AtomicH5", "CaptureReader", "DiskFullError", "IncompleteFileError", "OutputBusy", "OutputLock",
    "Pool", "RunWriter", "Schema",
    "SchemaError", "atomic_h5", "atomic_path",
    "canonical_json", "config_hash", "describe", "open_capture", "file_schema", "load_cache", "open_h5", "partial_path",
    "pool_tokens", "publish_dir", "put_video_scores", "read_lens", "read_scores", "read_site", "score_step_arrays",
    "staging_dir",
    "token_coords", "write_atomic", "write_lens",
]  # fmt: skip
