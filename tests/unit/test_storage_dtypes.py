"""Storage dtypes (interp.store.codec) and what a capture keeps (interp.store.keep), without a model: round trips,
bytes on disk, float32 readers, per-group dtype resolution, token boxes and step strides, and their errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from interp.report.tokenmaps import _read_step
from interp.store import RunWriter, describe, load_cache, token_coords
from interp.store.codec import STORAGE_DTYPES, check_spec, decode, encode, nbytes, site_dtype
from interp.store.keep import TokenBox, stored_steps, token_index
from interp.trajectory import StepRecord


def _spread(shape, axis: int, seed: int = 0) -> torch.Tensor:
    """Gaussian values whose magnitude spans 6 decades along ``axis`` (one factor per index of that axis): one scale
    for all of them would flush the small ones to zero."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    f = 10 ** torch.empty(shape[axis]).uniform_(-3, 3, generator=g)
    return x * f.reshape([-1 if i == axis else 1 for i in range(len(shape))])


def _roundtrip(x: torch.Tensor, dtype: str) -> np.ndarray:
    codes, scale = encode(x, dtype)
    return decode(codes.numpy(), dtype, None if scale is None else scale.numpy())


def test_bfloat16_is_2_bytes_and_equals_torchs_cast_exactly():
    x = torch.randn(3, 50, 16) * 7
    codes, scale = encode(x, "bfloat16")
    assert codes.dtype == torch.int16 and codes.element_size() == 2 and scale is None
    back = _roundtrip(x, "bfloat16")
    assert back.dtype == np.float32 and np.array_equal(back, x.to(torch.bfloat16).float().numpy())
    assert not np.array_equal(back, x.numpy())  # it is a real bf16 rounding, not a float32 copy


def test_e4m3_per_token_scale_bounds_every_tokens_error():
    x = _spread((2, 64, 128), axis=1)  # token magnitudes over 6 decades
    back = torch.from_numpy(_roundtrip(x, "float8_e4m3:token"))
    rel = (back - x).norm(dim=-1) / x.norm(dim=-1)  # per token
    assert rel.max() < 0.07 and rel.mean() > 0.005  # bounded, and really 8-bit
    # one scale for the whole tensor fails the bound on the small tokens
    codes, _ = encode(x.reshape(1, 1, -1), "float8_e4m3:token")
    flat = torch.from_numpy(_roundtrip(x.reshape(1, 1, -1), "float8_e4m3:token")).reshape(x.shape)
    assert codes.shape == (1, 1, x.numel()) and ((flat - x).norm(dim=-1) / x.norm(dim=-1)).max() > 0.5


def test_e4m3_per_channel_scale_bounds_every_channels_error():
    x = _spread((2, 64, 128), axis=2, seed=1)  # channel magnitudes over 6 decades
    codes, scale = encode(x, "float8_e4m3:channel")
    assert codes.dtype == torch.uint8 and scale.shape == (2, 1, 128) and scale.dtype == torch.float32
    back = torch.from_numpy(_roundtrip(x, "float8_e4m3:channel"))
    rel = (back - x).norm(dim=1) / x.norm(dim=1)  # per (row, channel)
    assert rel.max() < 0.07
    tok = torch.from_numpy(_roundtrip(x, "float8_e4m3:token"))  # per-token scales on channel-spread data: worse
    assert ((tok - x).norm(dim=1) / x.norm(dim=1)).max() > 0.5


def test_e4m3_scale_is_amax_over_448_and_zeros_stay_zero():
    x = torch.zeros(1, 3, 4)
    x[0, 0] = torch.tensor([1.0, -896.0, 3.0, 0.5])
    codes, scale = encode(x, "float8_e4m3:token")
    assert scale[0, :, 0].tolist() == [2.0, 1.0, 1.0]  # 896 / 448; all-zero tokens: scale 1
    back = _roundtrip(x, "float8_e4m3:token")
    assert back[0, 0, 1] == -896.0 and np.array_equal(back[0, 1:], np.zeros((2, 4)))


@pytest.mark.parametrize("dtype", STORAGE_DTYPES)
def test_nbytes_counts_codes_and_scales(dtype):
    x = torch.randn(2, 12, 8)
    codes, scale = encode(x, dtype)
    want = codes.numel() * codes.element_size() + (0 if scale is None else scale.numel() * 4)
    assert nbytes(x.shape, dtype) == want
    assert {"float32": 768, "float16": 384, "bfloat16": 384}.get(dtype, want) == want
    assert nbytes((2, 12, 8), "float8_e4m3:token") == 192 + 4 * 24
    assert nbytes((2, 12, 8), "float8_e4m3:channel") == 192 + 4 * 16


def test_dtype_per_site_group_most_specific_glob_wins_in_any_order():
    pairs = [("*", "float16"), ("blocks.*.hook_resid_post", "float8_e4m3:token"), ("blocks.1.hook_resid_post",
             "bfloat16"), ("blocks.1.*", "float32")]  # fmt: skip
    for spec in (dict(pairs), dict(pairs[::-1])):
        spec = check_spec(spec)
        assert site_dtype(spec, "blocks.1.hook_resid_post") == "bfloat16"  # the exact name
        assert site_dtype(spec, "blocks.3.hook_resid_post") == "float8_e4m3:token"
        assert site_dtype(spec, "blocks.1.hook_attn_out") == "float32"
        assert site_dtype(spec, "hook_out") == "float16"
    with pytest.raises(ValueError, match=r"'blocks.1.hook_resid_post' matches \['\*esid_post', 'blocks.1.\*'\]"):
        site_dtype({"blocks.1.*": "bfloat16", "*esid_post": "float16"}, "blocks.1.hook_resid_post")  # 9 and 9
    assert site_dtype({"blocks.1.*": "float16", "*esid_post": "float16"}, "blocks.1.hook_resid_post") == "float16"
    assert site_dtype({"blocks.*": "float16"}, "hook_out") == "float32"  # matched by none: float32
    assert site_dtype("bfloat16", "anything") == "bfloat16"
    with pytest.raises(ValueError, match=r"dtype\['\*'\]: unknown storage dtype 'int8'; valid: float32, float16, "
                                         r"bfloat16, float8_e4m3:token, float8_e4m3:channel"):  # fmt: skip
        check_spec({"*": "int8"})
    with pytest.raises(ValueError, match="empty mapping"):
        check_spec({})


STEPS, SITES = 4, ("blocks.0.hook_resid_post", "blocks.1.hook_resid_post")


def _records(tokens: int = 24, d: int = 32) -> list[StepRecord]:
    g = torch.Generator().manual_seed(0)
    lat = (2, 4, 2, 3, 4)
    out = []
    for s in range(STEPS):
        acts = {k: _spread((2, tokens, d), 1, seed=10 * s + i) for i, k in enumerate(SITES)}
        x = torch.randn(lat, generator=g)
        out.append(StepRecord(s, 1000.0 - s, 1.0 - s / STEPS, "transformer", x, x, x, x, {"cond": acts}))
    return out


def _write(path, dtype, **kw):
    w = RunWriter(path, config={"t": str(dtype), **{k: str(v) for k, v in kw.items()}}, model_hash="h", family="wan",
                  timesteps=torch.linspace(1000, 0, STEPS), sigmas=torch.linspace(1, 0, STEPS),
                  branch_steps=kw.pop("branch_steps", {"cond": list(range(STEPS))}), sites=list(SITES),
                  grid=(2, 3, 4), dtype=dtype, **kw)  # fmt: skip
    for r in _records():
        w.on_step(r)
    return w.finish()


def test_e4m3_on_disk_is_one_byte_an_element_and_reads_back_as_float32(tmp_path):
    path = _write(tmp_path / "q.h5", {"blocks.0.*": "float8_e4m3:token", "*": "bfloat16"})
    recs = _records()
    with h5py.File(path) as f:
        ds = f["cond/blocks.0.hook_resid_post"]
        assert ds.dtype == np.uint8 and ds.id.get_storage_size() == ds.size == STEPS * 2 * 24 * 32
        assert (
            ds.attrs["storage_dtype"] == "float8_e4m3:token" and ds.attrs["scale"] == "blocks.0.hook_resid_post.scale"
        )
        sc = f["cond/blocks.0.hook_resid_post.scale"]
        assert sc.dtype == np.float32 and sc.shape == (STEPS, 2, 24, 1)
        b16 = f["cond/blocks.1.hook_resid_post"]
        assert b16.dtype == np.uint16 and b16.id.get_storage_size() == 2 * b16.size
        assert f.attrs["dtype"] == '{"blocks.0.*": "float8_e4m3:token", "*": "bfloat16"}'
    with load_cache(path) as c:
        assert c.keys() == list(SITES)  # the scale datasets are not sites
        q, b = c["blocks.0.hook_resid_post"], c["blocks.1.hook_resid_post"]
        assert q.dtype == b.dtype == torch.float32
        x = torch.stack([r.branches["cond"]["blocks.0.hook_resid_post"] for r in recs])
        assert ((q - x).norm(dim=-1) / x.norm(dim=-1)).max() < 0.07
        xb = torch.stack([r.branches["cond"]["blocks.1.hook_resid_post"] for r in recs])
        assert torch.equal(b, xb.to(torch.bfloat16).float())
        assert torch.equal(c.select(2)["blocks.0.hook_resid_post"], q[2:3])  # a step view decodes the same rows
        tok = _read_step(c, "blocks.0.hook_resid_post", 1, None)  # the token maps read the same float32 values
        assert tok.dtype == np.float32 and np.array_equal(tok, q[1].numpy())
    kinds = {d["name"]: d["dtype"] for d in describe(path)["datasets"]}
    assert kinds["cond/blocks.0.hook_resid_post"] == "uint8 (float8_e4m3:token)"
    assert kinds["cond/blocks.1.hook_resid_post"] == "uint16 (bfloat16)" and kinds["latents"] == "float32"


def test_writer_keeps_the_chosen_tokens_and_steps(tmp_path):
    idx, box = token_index(TokenBox(frames=[1], rows=(1, 3), cols=(0, 2)), (2, 3, 4))
    path = _write(tmp_path / "k.h5", "float32", tokens=idx, token_box=box, branch_steps={"cond": [0, 2]})
    recs = _records()
    with load_cache(path) as c:
        x = c["blocks.1.hook_resid_post"]
        full = torch.stack([recs[s].branches["cond"]["blocks.1.hook_resid_post"] for s in (0, 2)])
        assert c.steps.tolist() == [0, 2] and torch.equal(x, full[:, :, torch.as_tensor(idx)])
        assert c.stored_tokens.tolist() == [[1, 1, 0], [1, 1, 1], [1, 2, 0], [1, 2, 1]]
        assert c.to_grid(x).shape == (2, 2, 1, 2, 2, 32)
        assert c.latents.shape[0] == 2 and c.file["latents"].shape[0] == STEPS + 1  # latents: every step


def test_token_box_and_list_resolve_to_grid_indices_and_refuse_what_is_outside():
    grid = (3, 4, 5)
    idx, box = token_index(TokenBox(frames=[2, 0], rows=(1, 3), cols=(4, 5)), grid)
    coords = token_coords(grid)[idx]
    assert box == (2, 2, 1) and coords.tolist() == [[2, 1, 4], [2, 2, 4], [0, 1, 4], [0, 2, 4]]
    assert token_index(TokenBox(rows=(0, 1)), grid)[0].tolist() == [0, 1, 2, 3, 4, 20, 21, 22, 23, 24, 40, 41, 42,
                                                                      43, 44]  # fmt: skip
    assert token_index([7, 3], grid) == (pytest.approx([7, 3]), None) and token_index(None, grid) == (None, None)
    for spec, msg in [(TokenBox(rows=(2, 5)), r"tokens.rows \[2, 5\) is outside the token grid .* \(3, 4, 5\)"),
                      (TokenBox(cols=(3, 3)), r"tokens.cols \[3, 3\)"), (TokenBox(frames=[3]), "tokens.frames"),
                      (TokenBox(frames=[1, 1]), "distinct frames"), ([60], "token indices in 0..59"),
                      ([1, 1], "repeated")]:  # fmt: skip
        with pytest.raises(ValueError, match=msg):
            token_index(spec, grid)


def test_step_stride_and_list():
    assert stored_steps(10, 3, None) == [0, 3, 6, 9] and stored_steps(10, None, [9, 0]) == [0, 9]
    assert stored_steps(4, None, None) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match=r"store_steps \[10\]: give steps in 0..9"):
        stored_steps(10, None, [0, 10])
    with pytest.raises(ValueError, match="not both"):
        stored_steps(10, 2, [0])


def test_the_torch_free_e4m3_table_is_torchs():
    import numpy as np
    import torch

    from interp.store.dtypes import _FP8_TABLE

    ref = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn).float().numpy()
    assert np.array_equal(_FP8_TABLE, ref, equal_nan=True) and np.isnan(_FP8_TABLE[[0x7F, 0xFF]]).all()
