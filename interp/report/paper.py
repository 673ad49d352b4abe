"""The paper report: verdict rules (pure functions of the measured numbers), figures and ``REPORT.md``.

Every claim's verdict is computed from our numbers by a stated rule (the rule's text goes into the report beside
the verdict); nothing is hard-coded. :func:`claims` turns the analyses' numbers (plain dicts, see
:mod:`interp.apps.reproduce`) into rows; :func:`write_report` writes the markdown with the table and the figures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from interp.report import stats as st
from interp.store.atomic import write_atomic

HOLDS, PARTLY, NOT, NA = "holds", "partly", "does not hold", "not measured"
MIN_N = 20  # fewer samples than this: "not enough samples", whatever the estimates


@dataclass
class Claim:
    key: str
    analysis: str
    claim: str
    paper: str  # the paper's figure, with its numbers (FIELD-NOTES)
    verdict: str
    ours: str  # our numbers
    rule: str  # how the verdict follows from the numbers
    figures: list[str] = field(default_factory=list)  # paths relative to the report
    task: str | None = None  # a suite analysis's task (one row per task)


def _f(x, nd: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{nd}f}"


# ---- point rules (the thresholds on point estimates; numbers in, (verdict, our numbers as text) out) ---------------------------------------------------
def level_chain(d: dict) -> tuple[str, str]:
    """explore = share of runs whose x0 lit >= 2 trail blocks beyond the final path at some step before the answer
    was fixed; converge = mean such blocks over the last fifth of the steps <= a quarter of the per-step peak."""
    explore, peak, late = d["explore_share"], d["peak_alt"], d["late_alt"]
    converge = late <= 0.25 * peak if peak > 0 else True
    if explore >= 0.5 and converge:
        v = HOLDS
    elif (explore >= 0.2 and converge) or (explore >= 0.5 and not converge):
        v = PARTLY
    else:
        v = NOT
    ours = (f"runs exploring >=2 off-path blocks before committing: {_f(explore)}; mean candidate paths per step peak "
            f"{_f(d['peak_candidates'])} (step {d['peak_step']}) -> {_f(d['late_candidates'])} in the last fifth; "
            f"off-path lit blocks peak {_f(peak)} -> {_f(late)}; answer fixed at step {_f(d['commit_median'], 1)} of "
            f"{d['steps']} (median)")  # fmt: skip
    return v, ours


_POINT_CHAIN = ("holds: >= 50% of runs light >= 2 blocks beyond the final path before the answer is fixed and the "
              "off-path count falls to <= 1/4 of its peak in the last fifth of the steps; partly: >= 20% explore "
              "(and converge), or >= 50% explore without converging; else does not hold")  # fmt: skip


def level_noise_drop(d: dict) -> tuple[str, str]:
    clean, worst = d["clean"], d["step_min"]
    ratio = worst / clean if clean > 0 else float("nan")
    v = NA if clean <= 0 else HOLDS if ratio <= 0.5 else PARTLY if ratio <= 0.8 else NOT
    return (
        v,
        f"clean {_f(clean)} -> {_f(worst)} at the most sensitive step ({d['step_argmin']} of {d['steps']}); ratio {_f(ratio)}",
    )


_POINT_NOISE_DROP = (
    "ratio = (worst single-step solve rate) / clean; holds <= 0.5 (paper: 0.3/0.685 = 0.44); partly <= 0.8"
)


def level_noise_peak(d: dict) -> tuple[str, str]:
    curve, at = np.asarray(d["step_curve"], float), np.asarray(d["step_at"], float)
    lo = curve.min()
    where = np.flatnonzero(curve <= lo + 1e-9)
    pos = float(at[where].mean() / max(d["steps"] - 1, 1))
    interior = 0.25 <= pos <= 0.75
    peak = curve[0] >= lo + 0.1 and curve[-1] >= lo + 0.1
    v = (
        NA
        if d["clean"] <= 0
        else NOT
        if d["clean"] - lo < 0.1
        else HOLDS
        if interior and peak
        else PARTLY
        if interior
        else NOT
    )
    where_text = (
        "no swept step costs >= 0.1" if d["clean"] - lo < 0.1 else f"most damaging step at {_f(pos)} of the trajectory"
    )
    return v, (
        f"{d.get('mode', 'replace')}: {where_text}; solve rate at the first "
        f"/ worst / last swept step ({int(at[0])} / {d['step_argmin']} / {int(at[-1])} of {d['steps']}) "
        f"{_f(curve[0])} / {_f(lo)} / {_f(curve[-1])} (clean {_f(d['clean'])}); curve "
        + " ".join(_f(c) for c in curve)
        + (
            ""
            if d.get("change_curve") is None
            else "; output MSE to the unintervened video per swept step "
            + " ".join(f"{c:.1e}" for c in d["change_curve"])
        )
    )


_POINT_NOISE_PEAK = (
    "pos = mean step index of the worst swept steps / (steps - 1); holds: 0.25 <= pos <= 0.75 and the "
    "first and last swept steps both >= 0.1 above the minimum (an interior peak); partly: interior "
    "minimum without that margin; does not hold: the minimum elsewhere, or no step costs >= 0.1"
)


def level_noise_frame(d: dict) -> tuple[str, str]:
    clean = d["clean"]
    step_drop = clean - d["step_min"]
    mids = d["frame_mid"]
    frame_drop = clean - float(np.mean(mids)) if mids else float("nan")
    if not mids or step_drop <= 0:
        v = NA
    else:
        r = frame_drop / step_drop
        v = HOLDS if r <= 0.5 else PARTLY if r <= 0.8 else NOT
    fr = ", ".join(f"{k}: {_f(x)}" for k, x in d["frame_rates"].items())
    return v, (
        f"drop from noising an intermediate frame at every step {_f(frame_drop)} vs worst single step "
        f"{_f(step_drop)}; solve rate per noised frame ({fr}; the last frame is the answer itself)"
    )


_POINT_NOISE_FRAME = (
    "r = mean drop over intermediate frames (neither the first nor the last, which is the answer) / "
    "drop at the worst step; holds r <= 0.5; partly r <= 0.8; else not"
)


def level_swap_answer(d: dict) -> tuple[str, str]:
    flips = {float(k): v for k, v in d["answer_flip"].items()}  # {depth fraction: rate}; JSON keys are strings
    if not flips:
        return NA, "no layers"
    best = max(flips, key=flips.get)
    top = flips[best]
    middle = 0.25 <= best < 0.75
    v = HOLDS if middle and top >= 0.5 else PARTLY if middle and top >= 0.1 else NOT
    return v, (
        f"output follows B's path at most {_f(top)} (swap centred at depth {_f(best)}, blocks {d['best_layer']}, "
        f"swapped at steps {d.get('steps')}); "
        f"mean early / middle / late {_f(d['band_answer'][0])} / {_f(d['band_answer'][1])} / {_f(d['band_answer'][2])}"
    )


_POINT_SWAP_ANSWER = (
    "flip = share of A-runs whose trail is closer (Jaccard) to B's solution than to A's, in the swept "
    "step range where it is largest; holds: the most-flipping layer lies in the middle band (25-75% "
    "depth) with flip >= 0.5; partly: there with >= 0.1"
)


def level_swap_structure(d: dict) -> tuple[str, str]:
    early, mid, late = d["band_structure"]
    v = HOLDS if early >= 0.5 and early > late else PARTLY if early >= 0.1 and early > late else NOT
    return (
        v,
        f"share of outputs whose walls follow B: early / middle / late layers {_f(early)} / {_f(mid)} / {_f(late)}",
    )


_POINT_SWAP_STRUCTURE = (
    "early (< 25% depth) mean wall-follow rate; holds >= 0.5 and above the late layers' (>= 75%); "
    "partly >= 0.1 and above the late layers'"
)


def level_skip(d: dict) -> tuple[str, str]:
    early, mid, late = d["band_drop"]
    v = HOLDS if mid >= 0.1 and mid >= 1.5 * late else PARTLY if mid > late and mid > 0 else NOT
    sd = d["step_drop"]
    return v, (f"mean solve-rate drop when skipping one block, early / middle / late layers {_f(early)} / {_f(mid)} / "
               f"{_f(late)}; per step range {', '.join(_f(x) for x in sd)}; worst: block {d['worst'][1]} at steps {d['worst'][0]} "
               f"(drop {_f(d['worst'][2])})")  # fmt: skip


_POINT_SKIP = (
    "band drops over depth fractions < 25% / 25-75% / >= 75%; holds: middle >= 0.1 and >= 1.5x late; partly: "
    "middle above late"
)


def level_memory(d: dict) -> tuple[str, str]:
    fin, later = d["layout_final"], d["layout_min_late"]
    v = HOLDS if fin >= 0.98 and later >= 0.95 else PARTLY if fin >= 0.9 else NOT
    return v, (
        f"layout (walls, start, goal) kept in the last frame: {_f(fin, 3)} of blocks at the end, >= {_f(later, 3)} "
        f"at every step of the second half; first step with >= 0.95: {d['layout_first_step']}"
    )


_POINT_MEMORY = "holds: last-frame layout fidelity >= 0.98 at the end and >= 0.95 at every step of the second half; partly >= 0.9 at the end"


def level_selfcorrect(d: dict) -> tuple[str, str]:
    fix, brk = d["wrong_then_right"], d["right_then_wrong"]
    v = HOLDS if fix > 0 and fix >= brk else PARTLY if fix > 0 else NOT
    return v, (
        f"wrong complete path mid-way, right at the end: {_f(fix)} of runs ({d['n_fix']}/{d['n']}); right mid-way, "
        f"wrong at the end: {_f(brk)} ({d['n_break']}/{d['n']}); final solve rate {_f(d['final'])}"
    )


_POINT_SELFCORRECT = (
    "wrong = x0 at an intermediate step draws a start-to-goal trail that is not the solution; holds: "
    "such runs end right at least as often as right runs end wrong (and some do); partly: some do"
)


def level_perception(d: dict) -> tuple[str, str]:
    tw, tp = d["t_layout"], d["t_path"]
    dw, dp = d.get("depth_layout"), d.get("depth_path")
    if tw is None:
        v = NOT
    elif tp is None or tw < tp:
        v = HOLDS
    elif tw == tp and dw is not None and dp is not None and dw < dp:
        v = PARTLY
    else:
        v = NOT
    return v, (
        f"first step with probe accuracy >= {d['threshold']}: layout (wall) {tw}, path {tp} of {d['steps']} "
        f"(first decoded at {d.get('site_layout')} / {d.get('site_path')}); accuracy at step 0: wall "
        f"{_f(d['acc0_wall'])}, path {_f(d['acc0_path'])}"
    )


_POINT_PERCEPTION = (
    "t = first step where the best probed site reaches the threshold; holds: layout at an earlier step "
    "than the path; partly: same step, but at a shallower block; else does not hold"
)


def level_ensemble(d: dict) -> tuple[str, str]:
    single, ens, best3 = d["single"], d["paper_config"], d["best_of_3"]
    gain = ens - single
    v = HOLDS if gain >= 0.02 and ens >= best3 else PARTLY if gain > 0 else NOT
    return v, (
        f"one seed {_f(single)}; K=3 ensemble, {d['paper_config_name']}: {_f(ens)} (gain {gain:+.3f}); "
        f"best-of-3 (scorer-free: medoid) {_f(best3)}; oracle best-of-3 {_f(d['oracle'])}; best swept config "
        f"{d['best_config_name']}: {_f(d['best_config'])} (chosen on the same mazes); n = {d['n']}"
    )


_POINT_ENSEMBLE = (
    "gain = ensemble (middle band 25-50% depth, first step) - one seed; holds: gain >= +0.02 and not below "
    "best-of-3 at matched compute; partly: gain > 0; else does not hold"
)


# ---- verdict rules ---------------------------------------------------------------------------------------------------
# Each claim has a *point rule* (``level_*``: the thresholds on the point estimates, numbers in, (verdict, text) out)
# and a *rule* (``rule_*``) that gates it with intervals over samples (:mod:`interp.report.stats`): "holds" and
# "partly" need the interval of the claim's test statistic to exclude the claim's null; fewer than MIN_N samples,
# or an interval that holds both the null and the effect the paper reports, gives "not enough samples"; numbers
# without per-sample values (older numbers.json files) give "no per-sample data: rerun" and the point rule's
# verdict only as text.
NES = "not enough samples"
NO_SAMPLES = "no per-sample data: rerun"


def _no_samples(level: tuple[str, str]) -> tuple[str, str]:
    return NO_SAMPLES, f"{level[1]} (point estimates alone: {level[0]}; no intervals)"


def _gate(level: str, n: int, test: st.Interval, null: float = 0.0, target: float | None = None,
          partly: st.Interval | None = None) -> str:  # fmt: skip
    """``level`` (the point rule's verdict) kept only when ``test``'s interval lies above ``null``; a "holds" whose
    test fails but whose ``partly`` interval lies above the null is "partly". Fewer than MIN_N samples: "not enough
    samples" whatever the level. A point estimate that passes with an interval holding the null: "not enough
    samples", unless the interval also excludes ``target`` (the paper's effect), which rules the claim out: "does
    not hold"."""
    if level == NA:
        return NA
    if n < MIN_N:
        return f"{NES} (n={n})"
    if level in (HOLDS, PARTLY) and test.above(null):
        return level
    if level == HOLDS and partly is not None and partly.above(null):
        return PARTLY
    if level == NOT:
        return NOT
    if target is not None and not test.contains(target):
        return NOT
    return NES


def _both(a: st.Interval, b: st.Interval) -> st.Interval:
    """Two tests that must both pass: above a null only when both lower bounds are."""
    return st.Interval(min(a.est, b.est), min(a.lo, b.lo), max(a.hi, b.hi), min(a.n, b.n))


def _stack(*cols) -> np.ndarray:
    return np.stack([np.asarray(c, float) for c in cols], 1)


def rule_chain(d: dict) -> tuple[str, str]:
    """Candidates are sharp connected routes in x0 (:mod:`interp.tasks.candidates`). explore = the run shows >= 2
    candidates at some step before the last fifth; converge = its candidates in the last fifth (mean) fall below
    that peak."""
    if "samples" not in d:
        return _no_samples(level_chain(d))
    s = d["samples"]
    explore = np.asarray(s["explore"], bool)
    peak, late = np.asarray(s["peak_candidates"], float), np.asarray(s["late_candidates"], float)
    n = len(explore)
    share = st.proportion(explore)
    drop = st.paired_diff(peak, late)
    converge = drop.est > 0 and late.mean() <= 0.25 * max(peak.mean(), 1e-9) + 1.0  # one route left on average
    lvl = (
        HOLDS if share.est >= 0.5 and converge else PARTLY if share.est >= 0.2 and converge or share.est >= 0.5 else NOT
    )
    # holds needs both parts to beat their nulls (no run explores: share 0; no convergence: drop 0)
    v = _gate(lvl, n, _both(share, drop) if lvl == HOLDS else share, 0.0, partly=share if share.est >= 0.5 else None)
    ours = (f"runs with >= 2 sharp candidate routes before the last fifth: {share} (Wilson); sharp candidates per "
            f"run, peak before the last fifth -> last fifth {_f(peak.mean())} -> {_f(late.mean())}, drop {drop.text(2, True)}; "
            f"thresholds: contrast {s.get('contrast')}, >= {s.get('min_len')} blocks; n = {n}; (older blur-sensitive "
            f"measure: off-path lit blocks peak {_f(d['peak_alt'])} -> {_f(d['late_alt'])})")  # fmt: skip
    return v, ours


RULE_CHAIN = ("candidate = a sharp, connected route in x0's last frame (ring colour >= 60% of the way from open to "
              "trail, within 0.35 of that colour axis; >= 2 blocks; maximal simple paths from the start, detached "
              "pieces one each). explore share (Wilson 95%) = runs with >= 2 candidates at a step before the last "
              "fifth; drop = per-run peak count before the last fifth - mean count in the last fifth (paired "
              "bootstrap). Null: no run explores (share 0) and no convergence (drop 0). holds: share >= 0.5, the "
              "last fifth at <= 1/4 of the peak + 1, both intervals above 0; partly: share >= 0.2 and converging, "
              "or share >= 0.5 without converging, the share's interval above 0")  # fmt: skip


def _noise_samples(d):
    s = d["samples"]
    clean = np.asarray(s["clean"], float)
    step = np.asarray(s["step"], float)  # (points, n), in step_at order
    return s, clean, step


def rule_noise_drop(d: dict) -> tuple[str, str]:
    if "samples" not in d:
        return _no_samples(level_noise_drop(d))
    s, clean, step = _noise_samples(d)
    n = len(clean)
    w = int(np.argmin(step.mean(1)))
    drop = st.paired_diff(clean, step[w])
    ratio = st.bootstrap(
        _stack(clean, step[w]), lambda m: m[:, 1].mean() / m[:, 0].mean() if m[:, 0].mean() > 0 else np.nan
    )
    lvl = level_noise_drop(d)[0]
    v = _gate(lvl, n, drop, 0.0, target=None)
    return v, (
        f"clean {_f(clean.mean())} -> {_f(step[w].mean())} at the most sensitive step ({d['step_argmin']} of "
        f"{d['steps']}); drop {drop.text(2, True)}; ratio {ratio}; n = {n}"
    )


RULE_NOISE_DROP = (
    "ratio = (worst single-step solve rate) / clean, drop = clean - worst (paired bootstrap over mazes; "
    "the worst step is chosen on the same mazes, which favours the claim); null: no drop; holds: "
    "ratio <= 0.5 (paper: 0.3/0.685 = 0.44), partly <= 0.8, the drop's interval above 0"
)


def _peak_stats(m: np.ndarray, at: np.ndarray, steps: int):
    curve = m.mean(0)
    lo = curve.min()
    pos = float(at[np.flatnonzero(curve <= lo + 1e-9)].mean() / max(steps - 1, 1))
    return curve, lo, pos


def rule_noise_peak(d: dict) -> tuple[str, str]:
    lvl, text = level_noise_peak(d)
    if "samples" not in d:
        return _no_samples((lvl, text))
    s, clean, step = _noise_samples(d)
    n = len(clean)
    at = np.asarray(d["step_at"], float)
    m = step.T  # (n, points)

    def margin(mm):  # how far the worst swept step sits below both ends of the sweep (re-chosen per resample)
        curve = mm.mean(0)
        return float(min(curve[0], curve[-1]) - curve.min())

    iv = st.bootstrap(m, margin)
    pos = st.bootstrap(m, lambda mm: _peak_stats(mm, at, d["steps"])[2])
    v = _gate(lvl, n, iv, 0.0, partly=None)
    if lvl == PARTLY:  # an interior minimum without the margin: the worst step must at least cost something
        v = _gate(lvl, n, st.paired_diff(clean, step[int(np.argmin(step.mean(1)))]), 0.0)
    return v, f"{text}; margin of the worst step below both ends {iv.text(2, True)}; its position {pos}; n = {n}"


RULE_NOISE_PEAK = ("pos = mean step index of the worst swept steps / (steps - 1); margin = min(first, last swept "
                   "step) - worst (bootstrap over mazes, the worst step re-chosen in each resample); null: no "
                   "interior peak (margin 0); holds: 0.25 <= pos <= 0.75, both ends >= 0.1 above the minimum, the "
                   "margin's interval above 0; partly: interior minimum without that margin, its drop from clean "
                   "above 0; does not hold: the minimum elsewhere, or no step costs >= 0.1")  # fmt: skip


def rule_noise_frame(d: dict) -> tuple[str, str]:
    lvl, text = level_noise_frame(d)
    if "samples" not in d:
        return _no_samples((lvl, text))
    s, clean, step = _noise_samples(d)
    n = len(clean)
    mids = [np.asarray(s["frame"][k], float) for k in s.get("frame_mid_keys", [])]
    if not mids:
        return NA, text
    w = int(np.argmin(step.mean(1)))
    frame_mean = np.mean(mids, 0)  # per maze: solve rate over the intermediate frames noised
    gap = st.paired_diff(frame_mean, step[w])  # frame noise leaves more solved than step noise
    ratio = st.bootstrap(_stack(clean, frame_mean, step[w]),
                         lambda m: (m[:, 0].mean() - m[:, 1].mean()) / (m[:, 0].mean() - m[:, 2].mean())
                         if m[:, 0].mean() > m[:, 2].mean() else np.nan)  # fmt: skip
    v = _gate(lvl, n, gap, 0.0)
    return v, f"{text}; r {ratio}; solve rate frame-noised - step-noised {gap.text(2, True)}; n = {n}"


RULE_NOISE_FRAME = (
    "r = mean drop over intermediate frames (neither the first nor the last, which is the answer) / "
    "drop at the worst step; gap = per-maze solve rate with a frame noised - with the worst step "
    "noised (paired bootstrap); null: frame noise costs as much as step noise (gap 0); holds r <= "
    "0.5, partly r <= 0.8, the gap's interval above 0"
)


def _by_frac(x: dict) -> dict[float, np.ndarray]:
    return {float(k): np.asarray(v, float) for k, v in x.items()}


def _band_mean(per: dict[float, np.ndarray], band: int) -> np.ndarray | None:
    rows = [v for f, v in per.items() if _band(f) == band]
    return np.mean(rows, 0) if rows else None


def _band(frac: float) -> int:
    return 0 if frac < 0.25 else 1 if frac < 0.75 else 2


def rule_swap_answer(d: dict) -> tuple[str, str]:
    lvl, text = level_swap_answer(d)
    if "samples" not in d:
        return _no_samples((lvl, text))
    flip = _by_frac(d["samples"]["flip"])
    best = max(flip, key=lambda f: flip[f].mean())
    n = len(flip[best])
    top = st.proportion(flip[best] > 0.5)
    mid = _band_mean(flip, 1)
    others = [b for b in (_band_mean(flip, 0), _band_mean(flip, 2)) if b is not None]
    if mid is None or not others:
        return _gate(lvl, n, top, 0.0), f"{text}; best layer's flip {top} (Wilson); n = {n}"
    sep = st.paired_diff(mid, np.mean(others, 0))
    v = _gate(lvl, n, _both(top, sep), 0.0)
    return v, f"{text}; best layer's flip {top} (Wilson); middle band - other bands {sep.text(2, True)}; n = {n}"


RULE_SWAP_ANSWER = (
    "flip = share of A-runs whose trail is closer (Jaccard) to B's solution than to A's, in the swept "
    "step range where it is largest (chosen on the same mazes); null: no flip (the best layer's "
    "Wilson interval at 0) and no middle-band specificity (per-maze middle-band flip - mean of the "
    "other bands, paired bootstrap, at 0); holds: the most-flipping layer lies in the middle band "
    "(25-75% depth) with flip >= 0.5, partly: there with >= 0.1; both intervals above 0"
)


def rule_prompt_swap(d: dict) -> tuple[str, str]:
    """The prompt swap (goalmaze pairs) read by :func:`rule_swap_answer`'s rule: a flip is a run reaching the other
    prompt's goal and not its own (scored from pixels), the clean runs' rate of that reported beside it."""
    return _band_swap(d, "runs reach B's goal", "clean runs reach the other goal")


def _band_swap(d: dict, flip: str, clean: str) -> tuple[str, str]:
    """:func:`rule_swap_answer` of a swap over bands of blocks, its flip named ``flip`` and the clean runs' rate of
    it (``clean_flip``) named ``clean``."""
    v, text = rule_swap_answer(d)
    text = text.replace("output follows B's path", flip).replace("layer at depth", "band centred at")
    text = text.replace(f"block {d['best_layer']}", f"blocks {d['best_layer']}")
    return v, f"{text}; {clean} {_f(d.get('clean_flip'))}"


RULE_PROMPT_SWAP = (
    "A = a goalmaze run with one prompt, B = the same first frame with the other prompt (same noise); B's "
    "hook_resid_post over a quarter band of blocks put into A's run; flip = A's run reaches B's goal and not "
    "its own (pixel scorer), in the swept step range where it is largest (chosen on the same runs); null: no "
    "flip (the best band's Wilson interval at 0) and no middle-band specificity (per-run flip of the middle "
    "bands - mean of the first and last band, paired bootstrap, at 0); holds: the most-flipping band is a "
    "middle one (centre at 25-75% depth) with flip >= 0.5, partly: >= 0.1; both intervals above 0"
)


def rule_swap_structure(d: dict) -> tuple[str, str]:
    lvl, text = level_swap_structure(d)
    if "samples" not in d:
        return _no_samples((lvl, text))
    struct = _by_frac(d["samples"]["structure"])
    early, late = _band_mean(struct, 0), _band_mean(struct, 2)
    n = len(next(iter(struct.values())))
    if early is None or late is None:
        return NA, text + "; no early or no late layer swept"
    diff = st.paired_diff(early, late)
    v = _gate(lvl, n, diff, 0.0)
    return v, f"{text}; early {st.mean(early)} - late {st.mean(late)} = {diff.text(2, True)} (paired); n = {n}"


RULE_SWAP_STRUCTURE = (
    "early (< 25% depth) mean wall-follow rate; null: early = late (>= 75%) layers (per-maze "
    "paired difference, bootstrap); holds >= 0.5 and partly >= 0.1, with the difference's "
    "interval above 0"
)


def rule_skip(d: dict) -> tuple[str, str]:
    lvl, text = level_skip(d)
    if "samples" not in d:
        return _no_samples((lvl, text))
    s = d["samples"]
    clean = np.asarray(s["clean"], float)
    solved = np.asarray(s["solved"], float)  # (step ranges, layers, n)
    fr = [float(f) for f in s["fracs"]]
    n = len(clean)
    drop = clean[None, None] - solved  # per maze
    bands = [np.mean([drop[:, k].mean(0) for k, f in enumerate(fr) if _band(f) == b], 0) if any(_band(f) == b for f in fr)
             else None for b in range(3)]  # fmt: skip
    if any(b is None for b in bands):
        return NA, text + "; a band has no swept layer"
    e, m, l = bands
    me, ml, el = st.paired_diff(m, e), st.paired_diff(m, l), st.paired_diff(e, l)
    v = _gate(lvl, n, ml, 0.0)
    if v == HOLDS and me.below(0.0):  # the early band costs clearly more: the middle is not where it concentrates
        v = PARTLY
    return v, (
        f"{text}; per band (bootstrap) early {st.mean(e)}, middle {st.mean(m)}, late {st.mean(l)}; "
        f"pairwise (paired): middle - early {me.text(2, True)}, middle - late {ml.text(2, True)}, "
        f"early - late {el.text(2, True)}; n = {n}"
    )


RULE_SKIP = (
    "band drop = per-maze solve-rate drop averaged over the band's swept blocks and step ranges (depth < "
    "25% / 25-75% / >= 75%), each pair's paired difference with a bootstrap interval; null: equal bands; "
    "holds: middle >= 0.1 and >= 1.5x late, middle - late above 0, and early - middle not above 0 (if "
    "early costs clearly more: partly); partly: middle above late with middle - late above 0"
)


def rule_memory(d: dict) -> tuple[str, str]:
    lvl, text = level_memory(d)
    if "samples" not in d:
        return _no_samples((lvl, text))
    s = d["samples"]
    fin, later = np.asarray(s["layout_final"], float), np.asarray(s["layout_min_late"], float)
    n = len(fin)
    f_iv, l_iv = st.mean(fin), st.mean(later)
    # null: the layout is not kept (final fidelity at the partly threshold, 0.9)
    v = _gate(lvl, n, f_iv, 0.9)
    if v == HOLDS and not l_iv.above(0.9):
        v = PARTLY
    return v, f"{text}; per-run final fidelity {f_iv.text(3)}, min over the second half {l_iv.text(3)}; n = {n}"


RULE_MEMORY = (
    "fidelity = share of layout blocks (walls, start, goal) kept in x0's last frame, per run; null: the "
    "layout not kept (mean fidelity <= 0.9); holds: >= 0.98 at the end and >= 0.95 at every step of the "
    "second half (means), the end's interval above 0.9 and the second half's too; partly >= 0.9 at the "
    "end with its interval above 0.9"
)


def rule_selfcorrect(d: dict) -> tuple[str, str]:
    lvl, text = level_selfcorrect(d)
    if "samples" not in d:
        return _no_samples((lvl, text))
    s = d["samples"]
    fix, brk = np.asarray(s["fix"], bool), np.asarray(s["break"], bool)
    n = len(fix)
    p_fix = st.bootstrap(fix.astype(float))
    net = st.paired_diff(fix, brk)
    lvl = HOLDS if fix.mean() > 0 and fix.mean() >= brk.mean() else PARTLY if fix.mean() > 0 else NOT
    v = _gate(lvl, n, net if lvl == HOLDS else p_fix, 0.0, partly=p_fix)
    return v, (
        f"sharp complete wrong route mid-way, right at the end: {p_fix} ({int(fix.sum())}/{n}, Wilson "
        f"{st.proportion(fix)}); right mid-way, wrong at the end: {_f(brk.mean())} ({int(brk.sum())}/{n}); "
        f"fix - break {net.text(2, True)} (paired); final solve rate {_f(d['final'])}"
    )


RULE_SELFCORRECT = (
    "wrong mid-way = x0 at a step before the last draws a sharp complete start-to-goal route "
    "(:mod:`interp.tasks.candidates`) that is not the solution (blur and partial trails are not "
    "wrong answers); right mid-way = its only sharp complete route is the solution; fix = wrong "
    "mid-way and solved at the end, break = right mid-way and failed at the end. Null: no self-"
    "correction (fix share 0; fix = break). holds: fix - break's paired bootstrap interval above 0; "
    "partly: the fix share's bootstrap interval above 0 (a percentile bootstrap: one run out of "
    "many is not enough)"
)


def rule_perception(d: dict) -> tuple[str, str]:
    lvl, text = level_perception(d)
    if "wall_lo" not in d:
        return _no_samples((lvl, text))
    thr, n = d["threshold"], d["n"]
    wl, ph = np.asarray(d["wall_lo"], float), np.asarray(d["path_hi"], float)
    t_wall = next((i for i, a in enumerate(wl) if a >= thr), None)  # layout surely decodable
    t_path = next((i for i, a in enumerate(ph) if a >= thr), None)  # path possibly decodable
    ever = np.asarray(d["path_lo"], float).max() >= thr if len(d.get("path_lo", [])) else False
    if n < MIN_N:
        v = f"{NES} (n={n})"
    elif t_wall is None:
        v = NOT
    elif t_path is None:
        v = NOT  # the path is never decodable: no ordering is measured, nothing supports "before"
    elif t_wall < t_path and ever:
        v = HOLDS
    elif t_wall < t_path:
        v = PARTLY  # layout first, but the path never surely decodable
    else:
        v = NOT
    return v, (
        f"{text}; with the probes' cluster-bootstrap intervals (over mazes): layout's lower bound first >= "
        f"{thr} at step {t_wall}, path's upper bound first >= {thr} at step {t_path}; path surely decodable "
        f"at some step: {ever}; n = {n} mazes"
    )


RULE_PERCEPTION = (
    "probe accuracy per step at the best probed site, with the probes' cluster-bootstrap 95% intervals "
    "over mazes; null: layout and path decodable from the same step; holds: the layout's lower bound "
    "reaches the threshold at a step where the path's upper bound has not, and the path's lower bound "
    "reaches it at some step; partly: the same, the path never surely decodable; does not hold: the "
    "path never even possibly decodable (no ordering measured), or the layout not first"
)


def rule_perception_control(d: dict) -> tuple[str, str]:
    """:func:`rule_perception` on the probed steps, and the layout must beat its control task: at the layout's first
    decodable step the best block's selectivity (accuracy - control accuracy) has its lower bound above 0 (numbers
    of a run without a control task are read by :func:`rule_perception` alone)."""
    v, text = rule_perception(d)
    at = d.get("probed_steps", list(range(d.get("steps", 0))))
    thr = d["threshold"]
    t = next((i for i, a in enumerate(d.get("wall_lo", [])) if a >= thr), None)
    sel = d.get("selectivity_wall_lo")
    if v in (HOLDS, PARTLY) and sel is not None and t is not None and not sel[t] > 0:
        v = NOT  # the layout probe is no better than a probe that memorises positions
    ctrl = ", ".join(f"{s}: {_f(a)} / {_f(c)}" for s, a, c in zip(at, d.get("control_wall_curve", []),
                                                                   d.get("control_path_curve", [])))  # fmt: skip
    labels = d.get("labels", {})
    return v, (
        f"{text}; probed steps {at} (the step indices above index this list); labels: layout = "
        f"{labels.get('layout')}, answer (the path above) = {labels.get('answer')}; control-task accuracy at the "
        f"best block per probed step (layout / answer): {ctrl}"
    )


RULE_PERCEPTION_CONTROL = (
    RULE_PERCEPTION.replace("best probed site", "best block (every block probed)")
    + "; and the layout probe must beat its control task (each token position a random label, Hewitt and Liang): "
    "at the layout's first surely decodable step the best block's selectivity (accuracy - control accuracy) has its "
    "lower bound above 0, else does not hold"
)


ENSEMBLE_TARGET = 0.02  # the paper's gain: +2-3 points on VBVR-Bench


def rule_ensemble(d: dict) -> tuple[str, str]:
    lvl, text = level_ensemble(d)
    if "samples" not in d:
        return _no_samples((lvl, text))
    s = d["samples"]
    single, ens, best3 = (np.asarray(s[k], float) for k in ("single", "paper_config", "best_of_3"))
    n = len(single)
    gain = st.paired_diff(ens, single)
    vs3 = st.paired_diff(ens, best3)
    lvl = HOLDS if gain.est >= ENSEMBLE_TARGET and not vs3.below(0) else PARTLY if gain.est > 0 else NOT
    v = _gate(lvl, n, gain, 0.0, target=ENSEMBLE_TARGET)
    return v, (f"one seed {st.proportion(single > 0.5)}; K=3 ensemble, {d['paper_config_name']}: "
               f"{st.proportion(ens > 0.5)} (gain {gain.est:+.3f} [{gain.lo:+.3f}, {gain.hi:+.3f}], paired); best-of-3 "
               f"(scorer-free: medoid) {_f(best3.mean())}, ensemble - best-of-3 {vs3.text(3, True)}; oracle best-of-3 "
               f"{_f(d['oracle'])}; best swept config {d['best_config_name']}: {_f(d['best_config'])} (chosen on the "
               f"same mazes); n = {n}")  # fmt: skip


RULE_ENSEMBLE = (
    "gain = ensemble (middle band 25-50% depth, first step) - one seed, per maze (paired bootstrap); null: "
    "zero gain; holds: gain >= +0.02 (the paper's) with its interval above 0, and ensemble - best-of-3 "
    "at matched compute not below 0; partly: gain > 0 with its interval above 0; not enough samples: "
    "the interval holds both 0 and +0.02; else does not hold"
)


@dataclass
class Spec:
    key: str
    analysis: str
    claim: str
    paper: str
    rule: Callable[[dict], tuple[str, str]]
    rule_text: str
    part: str  # which entry of the analysis numbers the rule reads
    figure: str = ""  # the claim's figure: the analysis's first figure whose name contains this


def suite_spec(s: Spec, analysis: str) -> Spec:
    """A maze claim measured on the organism's task suite: the same rule, read per task (a row per task)."""
    return Spec(f"suite_{s.key}", analysis, f"{s.claim} (task suite)", s.paper, s.rule,
                s.rule_text.replace("per maze", "per instance").replace("per-maze", "per-instance").replace(
                    "over mazes", "over instances").replace("same mazes", "same instances")
                + "; success = the task's own pixel scorer", s.part, s.figure)  # fmt: skip


SPECS = [
    Spec("chain", "chain_of_steps", "Chain-of-Steps: early steps explore several candidate paths, then converge",
         "qualitative (x0 filmstrips: several paths early, one late)", rule_chain, RULE_CHAIN, "chain"),
    Spec("noise_drop", "noise_step_vs_frame", "Noise at one step is very damaging at the sensitive steps",
         "0.685 -> below 0.3 at the most sensitive steps", rule_noise_drop, RULE_NOISE_DROP, "noise"),
    Spec("noise_peak", "noise_step_vs_frame",
         "Sensitivity to step noise peaks in the middle of the trajectory (replace: latent := N(0, 1), the paper's protocol)",
         "most sensitive around steps 20-30 of 50", rule_noise_peak, RULE_NOISE_PEAK, "noise"),
    Spec("noise_peak_renoise", "noise_step_vs_frame",
         "Sensitivity to step noise peaks in the middle of the trajectory (renoise: noise resampled at the step's level)",
         "most sensitive around steps 20-30 of 50 (measured with replacement)", rule_noise_peak, RULE_NOISE_PEAK,
         "noise_renoise"),
    Spec("noise_frame", "noise_step_vs_frame", "Noising one frame at every step costs far less than one step",
         "frame noise costs far less than step noise", rule_noise_frame, RULE_NOISE_FRAME, "noise"),
    Spec("swap_answer", "layer_swap", "A middle band of layers decides the answer (band swap)",
         "swapping layers ~10-21 of 40 flips the answer", rule_swap_answer, RULE_SWAP_ANSWER, "swap"),
    Spec("prompt_swap", "prompt_swap", "A middle band of layers decides the answer (prompt swap, same image)",
         "swapping layers ~10-21 of 40 flips the answer", rule_prompt_swap, RULE_PROMPT_SWAP, "prompt_swap"),
    Spec("swap_structure", "layer_swap", "Early layers carry global structure",
         "layers ~0-9 of 40 carry global structure", rule_swap_structure, RULE_SWAP_STRUCTURE, "swap"),
    Spec("skip", "layer_skip", "Middle layers carry the reasoning: skipping one costs more than a late one",
         "functional specialization: early perception, middle reasoning, late consolidation", rule_skip, RULE_SKIP, "skip"),
    Spec("memory", "working_memory", "Working memory: the layout persists across steps and frames",
         "qualitative (persistent reference, object permanence)", rule_memory, RULE_MEMORY, "memory"),
    Spec("selfcorrect", "working_memory", "Self-correction: wrong intermediate answers are revised",
         "qualitative (recovery from wrong intermediate solutions)", rule_selfcorrect, RULE_SELFCORRECT, "memory"),
    Spec("perception", "working_memory", "Perception before action: layout decodable before the path",
         "qualitative (early steps ground, later steps manipulate)", rule_perception_control, RULE_PERCEPTION_CONTROL,
         "probes",
         "probes_per_step"),
    Spec("ensemble", "seed_ensemble", "A 3-seed hidden-state ensemble (middle band, early steps) helps",
         "+2-3 points on VBVR-Bench (base 0.685)", rule_ensemble, RULE_ENSEMBLE, "ensemble"),
]  # fmt: skip


def rule_suite_swap_answer(d: dict) -> tuple[str, str]:
    """The band swap on a suite task read by :func:`rule_swap_answer`'s rule: a flip is an output the task's scorer
    accepts for B and not for A; the clean runs' rate of that beside it."""
    return _band_swap(d, "outputs solve B", "clean runs solve B")


RULE_SUITE_SWAP_ANSWER = (
    "A = a run of one instance, B = the next instance of the same task and level (same noise); B's hook_resid_post "
    "over a quarter band of blocks put into A's run; flip = A's output solves B and not A (the task's pixel "
    "scorer), in the swept step range where it is largest (chosen on the same instances); null: no flip (the best "
    "band's Wilson interval at 0) and no middle-band specificity (per-instance flip of the middle bands - mean of "
    "the first and last band, paired bootstrap, at 0); holds: the most-flipping band is a middle one (centre at "
    "25-75% depth) with flip >= 0.5, partly: >= 0.1; both intervals above 0"
)
RULE_SUITE_SWAP_STRUCTURE = (
    "structure = the layout blocks (the same class in every frame of the solution) where A and B differ follow B "
    "in A's output's last frame (majority), per instance; early band (centre < 25% depth) vs late band (>= 75%); "
    "null: early = late (paired bootstrap); holds: early >= 0.5, partly >= 0.1, above the late band's, with the "
    "difference's interval above 0"
)


RULE_SUITE_MEMORY = RULE_MEMORY.replace(
    "layout blocks (walls, start, goal)", "layout blocks (the same class in every frame of the solution video)"
)
RULE_SUITE_SELFCORRECT = RULE_SELFCORRECT.replace(
    "a sharp complete start-to-goal route (:mod:`interp.tasks.candidates`) that is not the solution",
    "a sharp complete answer (:mod:`interp.tasks.answers`: route tasks, a sharp start-to-goal route; mirror, every "
    "block of the mirror region sharp and one coloured) that is not correct",
)
# the maze claims the organism's suite analyses measure (interp.apps.reproduce.SUITE_TASKS: one row per task)
SUITE_OF = {"layer_skip": "suite_layer_skip", "noise_step_vs_frame": "suite_noise_step_vs_frame",
            "seed_ensemble": "suite_seed_ensemble", "chain_of_steps": "suite_chain_of_steps",
            "layer_swap": "suite_layer_swap", "working_memory": "suite_working_memory"}  # fmt: skip
# a suite claim whose protocol differs from the maze's: its own rule (and text)
SUITE_RULES = {"swap_answer": (rule_suite_swap_answer, RULE_SUITE_SWAP_ANSWER),
               "swap_structure": (rule_swap_structure, RULE_SUITE_SWAP_STRUCTURE),
               "memory": (rule_memory, RULE_SUITE_MEMORY),
               "selfcorrect": (rule_selfcorrect, RULE_SUITE_SELFCORRECT)}  # fmt: skip


def _suite_of(s: Spec) -> Spec:
    out = suite_spec(s, SUITE_OF[s.analysis])
    if s.key in SUITE_RULES:
        out.rule, out.rule_text = (
            SUITE_RULES[s.key][0],
            SUITE_RULES[s.key][1] + "; success = the task's own pixel scorer",
        )
    if s.key == "swap_answer":
        out.claim = "A middle band of layers decides the answer (band swap with another instance) (task suite)"
    return out


SPECS += [_suite_of(s) for s in list(SPECS) if s.analysis in SUITE_OF]


def claims(numbers: dict[str, dict], figures: dict[str, list[str]] | None = None) -> list[Claim]:
    """One row per paper claim whose analysis ran: ``numbers[analysis][part]`` feeds the claim's rule; a suite
    analysis (``numbers[analysis]["tasks"][task][part]``) gives one row per task, the tasks side by side."""
    out = []
    for s in SPECS:
        nums = numbers.get(s.analysis, {})
        per = nums["tasks"] if "tasks" in nums else {None: nums}
        for task, tn in per.items():
            d = tn.get(s.part)
            if d is None:
                continue
            verdict, ours = s.rule(d)  # the rule itself says "not enough samples" below MIN_N
            figs = [f for f in (figures or {}).get(s.analysis, []) if task is None or f"/{task}/" in f]
            figs = [f for f in figs if s.figure in Path(f).name] + [f for f in figs if s.figure not in Path(f).name]
            claim = s.claim if task is None else f"{s.claim}: {tn.get('inputs', task)}"
            out.append(Claim(s.key, s.analysis, claim, s.paper, verdict, ours, s.rule_text, figs, task))
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write_report(out: str | Path, numbers: dict[str, dict], figures: dict[str, list[str]], *, header: dict,
                 notes: dict[str, str] | None = None) -> Path:  # fmt: skip
    """``DIR/REPORT.md``: what ran, the claims table, then one section per analysis with its figures."""
    out = Path(out)
    rows = claims(numbers, figures)
    lines = [f"# {header.get('title', 'Paper reproduction')}", ""]
    for k, v in header.items():
        if k != "title":
            lines.append(f"- **{k}**: {v}")
    lines += ["", "## Claims", "", "| claim | paper | ours (figure) | verdict | our numbers |", "|---|---|---|---|---|"]
    for c in rows:
        fig = f"[{Path(c.figures[0]).name}]({c.figures[0]})" if c.figures else "-"
        lines.append(f"| {_cell(c.claim)} | {_cell(c.paper)} | {fig} | **{c.verdict}** | {_cell(c.ours)} |")
    lines += [
        "",
        "Verdict rules (applied to the numbers above, never set by hand). Every rate carries a 95% "
        f"interval over samples (percentile bootstrap, {st.N_BOOT} resamples, seed {st.SEED}; paired over "
        "mazes for differences; Wilson for plain proportions where stated); 'holds' and 'partly' need the "
        "interval of the claim's test to exclude the claim's null; fewer than "
        f"{MIN_N} samples, or an interval holding both the null and the paper's effect, gives '{NES}'; "
        f"numbers without per-sample values give '{NO_SAMPLES}'. Each rule and its null:",
        "",
    ]
    for key, rule in dict.fromkeys((c.key, c.rule) for c in rows):  # a suite claim's rule once for its tasks
        lines.append(f"- *{key}*: {rule}")
    for analysis in dict.fromkeys(s.analysis for s in SPECS):
        if analysis not in numbers:
            continue
        lines += ["", f"## {analysis}", ""]
        tasks = numbers[analysis].get("tasks")
        note = (notes or {}).get(analysis) or (
            "\n\n".join(f"{t}: {v.get('setup', '')}" for t, v in tasks.items())  # a paragraph per task
            if tasks
            else numbers[analysis].get("setup")
        )
        if note:
            lines += [note, ""]
        for c in (r for r in rows if r.analysis == analysis):
            lines.append(f"- {c.claim}: **{c.verdict}** -- {c.ours}")
        lines.append("")
        for fig in figures.get(analysis, []):
            lines.append(f"![{Path(fig).stem}]({fig})")
    path = out / "REPORT.md"
    write_atomic(path, "\n".join(lines) + "\n")
    return path
