"""What every DiT family adapter knows: blocks, call signature, block outputs, patch geometry, hook points.

Sites that are not module outputs in diffusers (a gated attention output, the residual stream between sublayers)
become module outputs here, TransformerLens-style: each adapter swaps its family's block class for a subclass whose
``forward`` is a line-for-line copy of diffusers' with identity :class:`HookPoint` modules around the quantities we
name. A hook point returns its input unchanged, so the hooked model computes bit-identical outputs (tested per
family), and nnsight sees every site as a module with an ``.output`` it can read, set or skip.

Each adapter also knows its family's final layers (:meth:`Adapter.readout`): the final norm, its timestep
modulation, the output projection and the unpatchify that turn the last block's residual stream into the model's
prediction. Applied to any block's stream, they are the x0 lens (:mod:`interp.lens`).
"""

from __future__ import annotations

import hashlib
import inspect
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
from einops import rearrange
from jaxtyping import Float
from torch import Tensor, nn

# Sublayer sites a block may offer, in execution order inside the block.
BLOCK_HOOKS: tuple[str, ...] = (
    "hook_resid_pre",
    "hook_attn_out",
    "hook_cross_attn_out",
    "hook_mlp_out",
    "hook_resid_post",
)


class HookPoint(nn.Module):
    """Identity module marking a site (as in TransformerLens): nnsight reads and writes its ``.output``."""

    def forward(self, x: Tensor) -> Tensor:
        return x


def source_sha(fn: Any) -> str:
    """Short hash of a function's source, to notice when diffusers changes a forward we copied."""
    return hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()[:16]


def stale_copy(hooked: type[nn.Module]) -> str | None:
    """Why a hooked class's copied forward no longer matches the installed diffusers (None while it matches, or
    when nothing was copied): names the diffusers class and the file holding the copy."""
    expected = getattr(hooked, "COPIED_FROM_SHA", None)
    base = hooked.__mro__[1]
    if expected is None or source_sha(base.forward) == expected:
        return None
    return (
        f"diffusers' {base.__module__}.{base.__qualname__}.forward (source hash {source_sha(base.forward)}) differs "
        f"from the copy in {inspect.getsourcefile(hooked)} (COPIED_FROM_SHA {expected}); re-copy the forward, keep "
        "the hook points and update COPIED_FROM_SHA"
    )


def adopt_base_identity(hooked: type[nn.Module]) -> None:
    """Make diffusers' lookups find a hooked block as its base class (idempotent).

    diffusers finds blocks by class name (``_repeated_blocks`` for ``compile_repeated_blocks``,
    ``_no_split_modules`` for device maps; accelerate's ``no_split_module_classes``) and by class in its
    ``TransformerBlockRegistry`` (FirstBlockCache, LayerSkip / skip-layer guidance). The hooked class takes its
    base's ``__name__`` / ``__qualname__`` (``__module__`` stays ours, so ``type(block)`` still tells them apart) and
    is registered with a copy of the base's block metadata.
    """
    base = hooked.__mro__[1]
    hooked.__name__, hooked.__qualname__ = base.__name__, base.__qualname__
    from diffusers.hooks._helpers import TransformerBlockRegistry  # diffusers: when a block is hooked, not at import

    if hooked in TransformerBlockRegistry._registry:
        return
    try:
        meta = TransformerBlockRegistry.get(base)
    except ValueError:  # diffusers does not register this block: nothing to keep
        return
    # a copy: register() sets its _cls (whose forward signature it reads); the hooked forward has the same one
    TransformerBlockRegistry.register(hooked, replace(meta, _cls=None, _cached_parameter_indices=None))


def install_hooked_class(block: nn.Module, hooked: type[nn.Module]) -> None:
    """Turn ``block`` into an instance of ``hooked`` (a subclass of its class) and add its hook points.

    Idempotent. Parameters and buffers are untouched; hook points have no state, so ``state_dict`` and
    ``save_pretrained`` are unchanged. diffusers' class-name and registry lookups see the base class
    (:func:`adopt_base_identity`). A copied forward that no longer matches the installed diffusers
    (:func:`stale_copy`) warns and installs anyway: the exactness tests tell whether its sites are still right.
    """
    if type(block) is hooked:
        return
    base = hooked.__mro__[1]
    if type(block) is not base:
        raise TypeError(f"cannot hook {type(block).__name__}: expected {base.__name__}")
    stale = stale_copy(hooked)
    if stale:
        warnings.warn(f"{stale}; sites in this block may be stale (the exactness tests will tell)", stacklevel=3)
    adopt_base_identity(hooked)
    for cls, sha in getattr(hooked, "INLINED_SHAS", {}).items():  # norms whose forward the copy inlines
        if source_sha(cls.forward) != sha:
            warnings.warn(f"diffusers' {cls.__name__}.forward differs from its copy inlined in {hooked.__name__}; "
                          "the modulation sites may be stale (the exactness tests will tell)",
                          stacklevel=3)  # fmt: skip
    block.__class__ = hooked
    for name in hooked.HOOKS:  # type: ignore[attr-defined]
        block.add_module(name, HookPoint())


@dataclass
class TextConditioning:
    """Everything besides latents and timestep one forward needs: text embeddings and family extras.

    ``extras`` are keyword arguments passed through to the transformer (``encoder_attention_mask``,
    ``pooled_projections``, ``guidance``, ``encoder_hidden_states_image``, ...).
    """

    encoder_hidden_states: Float[Tensor, "batch text dim"]
    extras: dict[str, Tensor] = field(default_factory=dict)

    @property
    def batch(self) -> int:
        return self.encoder_hidden_states.shape[0]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> TextConditioning:
        def move(t):
            if not isinstance(t, Tensor):  # a non-tensor keyword (LTX's rope_interpolation_scale) passes as is
                return t
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None)

        return replace(
            self,
            encoder_hidden_states=move(self.encoder_hidden_states),
            extras={k: move(v) for k, v in self.extras.items()},
        )


LENS_FAMILIES_HINT = "wan, cogvideox, ltx, hunyuan, ltx2"  # the adapters with a readout (the x0 lens)


class Adapter(ABC):
    """One diffusers video DiT family. Stateless: every method takes the transformer it works on.

    Canonical latent layout everywhere outside the adapter: (batch, channels, frames, height, width). Tokens of a
    site are ordered (frame, row, col) on the patch grid returned by :meth:`token_grid`.
    """

    family: ClassVar[str]
    class_name: ClassVar[str]
    exact: ClassVar[bool] = True  # every site (sublayers too) from a line-for-line copy of the block forward
    block_lists: ClassVar[tuple[str, ...]]  # attribute names of the block containers, in execution order
    text_len: ClassVar[int] = 8  # default length of random text embeddings

    # ---- construction ----------------------------------------------------------------------------------------
    @property
    @abstractmethod
    def model_class(self) -> type[nn.Module]: ...

    @abstractmethod
    def tiny_config(self) -> dict[str, Any]:
        """A small random config (a few blocks, d_model 16) for tests and the ``tiny-*`` built-in models."""

    def tiny(self, seed: int = 0) -> nn.Module:
        """The tiny model with weights drawn from ``torch.manual_seed(seed)`` (restores the global RNG)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self.model_class(**self.tiny_config())
        return model.eval()

    def default_latent_size(self, transformer: nn.Module) -> tuple[int, int, int]:
        """(frames, height, width) of the latent used when no task says otherwise: small, patch-aligned."""
        pt, ph, pw = self.patch_size(transformer)
        return (3 * pt, 4 * ph, 4 * pw)

    # ---- blocks and sites ------------------------------------------------------------------------------------
    def blocks(self, transformer: nn.Module) -> list[tuple[str, nn.Module]]:
        """All blocks on one axis, in execution order, as (module path, block)."""
        return [
            (f"{attr}.{j}", block) for attr in self.block_lists for j, block in enumerate(getattr(transformer, attr))
        ]

    @abstractmethod
    def hooked_class(self, block: nn.Module) -> type[nn.Module]:
        """The hooked subclass replacing this block's class."""

    def install_hooks(self, transformer: nn.Module) -> nn.Module:
        """Add hook points to every block (in place, idempotent); returns the transformer."""
        for _, block in self.blocks(transformer):
            install_hooked_class(block, self.hooked_class(block))
        return transformer

    def block_hooks(self, block: nn.Module) -> tuple[str, ...]:
        """Site suffixes this block offers (``hook_resid_pre``, ...), in execution order."""
        return self.hooked_class(block).HOOKS  # type: ignore[attr-defined]

    def branch_sites(self, transformer: nn.Module) -> list[tuple[str, str]]:
        """Named sites off the block axis that run before block 0, in execution order: (site name, module path under
        the transformer). WanVACE: its control branch's ``vace_blocks.{j}.hook_*``. Empty for most families."""
        return []

    def stream_injections(self, transformer: nn.Module) -> tuple[int, ...]:
        """Blocks after which the model adds to the stream outside any block (WanVACE's control hints): there
        ``blocks.{i}.hook_resid_post`` is not ``blocks.{i+1}.hook_resid_pre``. Empty for most families."""
        return ()

    @abstractmethod
    def passthrough(self, args: tuple, kwargs: dict) -> Any:
        """What a block returns when it is the identity, given the arguments it was called with."""

    def block_passthrough(self, block: nn.Module, args: tuple, kwargs: dict) -> Any:
        """:meth:`passthrough` for one block (the generic adapter's depends on the block's class)."""
        return self.passthrough(args, kwargs)

    # ---- readout: the model's final layers, on any block's stream (the x0 lens) ---------------------------------
    readout_reads_text: ClassVar[bool] = False  # the final modulation depends on more than the timestep

    def readout_conditioning(
        self, transformer: nn.Module, timestep: Tensor, text: TextConditioning | None = None
    ) -> dict[str, Tensor]:
        """What the final norm's modulation takes at ``timestep`` (as the forward is given it: (B,) or per token),
        computed as the model's forward computes it, with the transformer's own embedders. ``text`` is needed where
        :attr:`readout_reads_text` (HunyuanVideo: pooled projections and guidance)."""
        raise NotImplementedError(f"{self.family}: no x0 lens readout yet (families with one: {LENS_FAMILIES_HINT})")

    def readout(
        self,
        transformer: nn.Module,
        resid: Float[Tensor, "batch tokens d_model"],
        conditioning: dict[str, Tensor],
        latent_shape: tuple[int, ...],
    ) -> Float[Tensor, "batch channels frames height width"]:
        """A residual stream (B, tokens, d_model) through the model's final norm, modulation, output projection and
        unpatchify, as the forward applies them to the last block's output: the model's prediction (v, eps or x0,
        whatever it predicts) in the canonical layout, for a latent of ``latent_shape`` (..., C, F, H, W). On the
        last block's ``hook_resid_post`` it equals the forward's output exactly."""
        raise NotImplementedError(f"{self.family}: no x0 lens readout yet (families with one: {LENS_FAMILIES_HINT})")

    def model_dtype(self, transformer: nn.Module) -> torch.dtype:
        return next(transformer.parameters()).dtype

    # ---- geometry ----------------------------------------------------------------------------------------------
    @abstractmethod
    def patch_size(self, transformer: nn.Module) -> tuple[int, int, int]:
        """(t, h, w) patch of the latent grid: one token per patch."""

    def d_model(self, transformer: nn.Module) -> int:
        c = transformer.config
        return c.num_attention_heads * c.attention_head_dim

    def latent_channels(self, transformer: nn.Module) -> int:
        """Channels of the denoised latent (the model's output channels)."""
        c = transformer.config
        return c.out_channels or c.in_channels

    def condition_channels(self, transformer: nn.Module) -> int:
        """Channels the model expects concatenated to the latent (image-to-video); 0 for text-to-video."""
        return self.model_in_channels(transformer) - self.latent_channels(transformer)

    def model_in_channels(self, transformer: nn.Module) -> int:
        return transformer.config.in_channels

    def token_grid(self, transformer: nn.Module, latent_shape: tuple[int, ...]) -> tuple[int, int, int]:
        """(frames, rows, cols) of the token grid for a latent of shape (..., C, F, H, W)."""
        f, h, w = latent_shape[-3:]
        pt, ph, pw = self.patch_size(transformer)
        if f % pt or h % ph or w % pw:
            raise ValueError(f"latent (F,H,W)=({f},{h},{w}) is not divisible by the patch size {(pt, ph, pw)}")
        return (f // pt, h // ph, w // pw)

    def token_to_fhw(self, transformer: nn.Module, latent_shape: tuple[int, ...], index: int) -> tuple[int, int, int]:
        """Token index -> (frame, row, col) on the token grid."""
        f, h, w = self.token_grid(transformer, latent_shape)
        if not 0 <= index < f * h * w:
            raise IndexError(f"token {index} outside 0..{f * h * w - 1}")
        return (index // (h * w), (index // w) % h, index % w)

    def fhw_to_token(self, transformer: nn.Module, latent_shape: tuple[int, ...], fhw: tuple[int, int, int]) -> int:
        """(frame, row, col) on the token grid -> token index (tokens are ordered frame-major, then row, col)."""
        f, h, w = self.token_grid(transformer, latent_shape)
        if not all(0 <= v < n for v, n in zip(fhw, (f, h, w))):
            raise IndexError(f"{fhw} outside the token grid {(f, h, w)}")
        return (fhw[0] * h + fhw[1]) * w + fhw[2]

    # ---- calling -----------------------------------------------------------------------------------------------
    @abstractmethod
    def forward(
        self,
        transformer: nn.Module,
        latents: Float[Tensor, "batch channels frames height width"],
        timestep: Float[Tensor, " batch"],
        text: TextConditioning,
        condition: Float[Tensor, "batch cond_channels frames height width"] | None = None,
    ) -> Float[Tensor, "batch channels frames height width"]:
        """One model prediction in the canonical latent layout (``condition`` is concatenated on channels)."""

    def forward_streams(
        self,
        transformer: nn.Module,
        latents: Float[Tensor, "batch channels frames height width"],
        timestep: Float[Tensor, " batch"],
        text: TextConditioning,
        condition: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """(:meth:`forward`'s prediction, the predictions for the model's other denoised streams by the extras key
        their latents come in): a model that denoises more than the video (LTX-2's audio, ``audio_hidden_states``)
        returns them here, so the loop can step them too. Empty for video-only families."""
        return self.forward(transformer, latents, timestep, text, condition), {}

    def random_text(
        self, transformer: nn.Module, batch: int, generator: torch.Generator, text_len: int | None = None
    ) -> TextConditioning:
        """Documented random inputs: N(0,1) text embeddings of ``text_len`` tokens (+ family extras)."""
        text_len = text_len or self.text_len
        ehs = torch.randn(batch, text_len, self.text_dim(transformer), generator=generator)
        return TextConditioning(ehs, self.default_extras(transformer, batch, text_len, generator))

    def null_text(self, text: TextConditioning) -> TextConditioning:
        """The unconditional branch's inputs when none are given: zero embeddings, same masks."""
        return TextConditioning(
            torch.zeros_like(text.encoder_hidden_states),
            {k: (torch.zeros_like(v) if k in self.nullable_extras else v) for k, v in text.extras.items()},
        )

    nullable_extras: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def text_dim(self, transformer: nn.Module) -> int: ...

    def default_extras(
        self, transformer: nn.Module, batch: int, text_len: int, generator: torch.Generator
    ) -> dict[str, Tensor]:
        return {}

    @staticmethod
    def concat_condition(latents: Tensor, condition: Tensor | None) -> Tensor:
        """Wan I2V convention: model input = cat([x_t, condition], dim=1)."""
        if condition is None:
            return latents
        if condition.shape[0] != latents.shape[0] or condition.shape[2:] != latents.shape[2:]:
            raise ValueError(
                f"condition {tuple(condition.shape)} does not match latents {tuple(latents.shape)} "
                "outside the channel axis"
            )
        return torch.cat([latents, condition.to(latents.dtype)], dim=1)

    def check_channels(self, transformer: nn.Module, latents: Tensor, condition: Tensor | None) -> None:
        got = latents.shape[1] + (0 if condition is None else condition.shape[1])
        want = self.model_in_channels(transformer)
        if got != want:
            raise ValueError(
                f"{self.family}: latents ({latents.shape[1]} ch) + condition "
                f"({0 if condition is None else condition.shape[1]} ch) = {got} channels, model takes {want} "
                f"({self.latent_channels(transformer)} latent + {self.condition_channels(transformer)} condition)"
            )


def tokens_to_grid(
    x: Float[Tensor, "*lead tokens d"], grid: tuple[int, int, int]
) -> Float[Tensor, "*lead frames rows cols d"]:
    """Reshape a token axis (second to last) to (frame, row, col) for a (f, h, w) grid."""
    f, h, w = grid
    return rearrange(x, "... (f h w) d -> ... f h w d", f=f, h=h, w=w)
