"""The maze language model: a TransformerLens 4.3 ``TransformerBridge`` over a TL-native transformer
(``TransformerBridge.boot_native``; ``HookedTransformer`` is gone in 4.x), saved as one safetensors file.

A model directory: ``model.safetensors`` (bf16 by default), ``lm.json`` (the architecture and task metadata),
``train_state.json``, ``train_config.yaml``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from pydantic import BaseModel, ConfigDict
from safetensors.torch import load_file, save_file

from interp.lm import tokens as T
from interp.store.atomic import publish_dir, staging_dir
from interp.models import SHIPPED_LMS
from interp.tasks import maze as mz


class LMSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_layers: int = 12
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    n_ctx: int = T.max_len(max(mz.SIZES))
    act_fn: str = "gelu"
    seed: int = 0

    def bridge_config(self):
        from transformer_lens.config import TransformerBridgeConfig  # optional dependency: the [lm] extra

        return TransformerBridgeConfig(
            d_model=self.d_model, d_head=self.d_model // self.n_heads, n_heads=self.n_heads, n_layers=self.n_layers,
            n_ctx=self.n_ctx, d_vocab=len(T.VOCAB), d_mlp=self.d_mlp, act_fn=self.act_fn, seed=self.seed,
            normalization_type="LN", attention_dir="causal", model_name="maze-lm",
        )  # fmt: skip


def build_lm(spec: LMSpec, device: str | torch.device = "cpu"):
    """A randomly initialised bridge (seeded by ``spec.seed``)."""
    from transformer_lens.model_bridge import TransformerBridge  # optional dependency: the [lm] extra

    logging.getLogger("transformer_lens").setLevel(logging.ERROR)
    return TransformerBridge.boot_native(spec.bridge_config(), device=device)


def _unique_state(bridge) -> dict[str, torch.Tensor]:
    """The bridge's state dict without aliases (the bridge exposes some parameters under two names)."""
    seen, out = set(), {}
    for k, v in bridge.state_dict().items():
        key = (v.data_ptr(), tuple(v.shape), v.dtype)
        if key in seen:
            continue
        seen.add(key)
        out[k] = v
    return out


def state_hash(bridge) -> str:
    h = hashlib.sha256()
    for k, v in sorted(_unique_state(bridge).items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def lm_meta(spec: LMSpec) -> dict:
    return {"kind": "lm", "task": "maze", "backend": "transformer_lens.TransformerBridge.boot_native",
            "architecture": spec.model_dump(), "vocab": list(T.VOCAB), "grid_offset": T.GRID_OFFSET,
            "sizes": list(mz.SIZES), "default_size": 5}  # fmt: skip


def save_lm(bridge, spec: LMSpec, out: str | Path, state: dict | None = None, config: dict | None = None,
            dtype: torch.dtype = torch.bfloat16) -> Path:  # fmt: skip
    """Atomically write a model directory (weights as ``dtype`` safetensors)."""
    out = Path(out)
    tmp = staging_dir(out)
    weights = {k: v.detach().to(dtype).cpu().contiguous() for k, v in _unique_state(bridge).items()}
    save_file(weights, tmp / "model.safetensors", metadata={"format": "pt", "backend": "transformer_lens-4.3"})
    (tmp / T.LM_MARKER).write_text(json.dumps(lm_meta(spec), indent=2))
    if state is not None:
        (tmp / "train_state.json").write_text(json.dumps(state, indent=2))
    if config is not None:
        (tmp / "train_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return publish_dir(tmp, out)


def load_weights(bridge, path: str | Path) -> dict:
    path = Path(path)
    weights = load_file(path / "model.safetensors")
    ref = _unique_state(bridge)
    missing = set(ref) - set(weights)
    if missing:
        raise ValueError(f"{path}: weights lack {sorted(missing)[:3]}... (a different architecture?)")
    with torch.no_grad():
        for k, v in ref.items():
            v.copy_(weights[k].to(v.dtype))
    state_file = path / "train_state.json"
    return json.loads(state_file.read_text()) if state_file.exists() else {}


@dataclass
class LoadedLM:
    name: str
    bridge: object
    spec: LMSpec
    meta: dict
    source: str | None = None
    extra: dict = field(default_factory=dict)

    family = "lm"

    @property
    def n_layers(self) -> int:
        return self.spec.n_layers

    @property
    def weight_hash(self) -> str:
        if "hash" not in self.extra:
            self.extra["hash"] = state_hash(self.bridge)
        return self.extra["hash"]


def load_lm(name_or_path: str | Path, device: str | torch.device = "cpu") -> LoadedLM:
    """``maze-lm`` (shipped: ``interp/data/maze-lm``) or a directory written by :func:`save_lm`; float32 on
    ``device``."""
    path = SHIPPED_LMS.get(str(name_or_path)) or Path(name_or_path)
    if not (path / T.LM_MARKER).exists():
        raise FileNotFoundError(f"{path}: no {T.LM_MARKER} (not a maze language model directory)")
    meta = json.loads((path / T.LM_MARKER).read_text())
    spec = LMSpec(**meta["architecture"])
    bridge = build_lm(spec, device)
    load_weights(bridge, path)
    bridge.eval()
    return LoadedLM(str(name_or_path), bridge, spec, meta, str(path))
