"""Verdict rules with intervals, on synthetic per-sample numbers: an effect whose interval excludes the null holds;
the same mean on 3 samples is "not enough samples"; the ensemble's +0.005 on 200 mazes (one more success) does not
hold; numbers without per-sample values say "rerun"; the skip rule compares the three bands pairwise."""

from __future__ import annotations

import numpy as np

from interp.report import paper as P
from interp.report import stats as st


def _ones(n, k):
    x = np.zeros(n)
    x[:k] = 1
    return x.tolist()


def _ens(single, ens, best3=None):
    n = len(single)
    best3 = single if best3 is None else best3
    return {
        "single": float(np.mean(single)),
        "paper_config": float(np.mean(ens)),
        "best_of_3": float(np.mean(best3)),
        "oracle": 0.9,
        "paper_config_name": "layers 25%:50%, steps 0",
        "best_config": float(np.mean(ens)),
        "best_config_name": "mid",
        "n": n,
        "samples": {"single": single, "paper_config": ens, "best_of_3": best3},
    }


def test_stats_intervals():
    iv = st.paired_diff([1] * 30, [0] * 30)
    assert iv.est == 1 and iv.lo == 1 and iv.above(0)
    w = st.wilson(0, 10)
    assert w.lo == 0 and 0.2 < w.hi < 0.35
    a = st.mean(np.arange(100) % 2)
    assert a.contains(0.5) and a.lo > 0.35 and a.hi < 0.65
    assert st.mean(np.arange(100) % 2) == a  # seeded: the same interval again


def test_effect_whose_interval_excludes_the_null_holds():
    d = _ens(_ones(200, 120), _ones(200, 134))  # +0.07, every gain a maze the single seed missed
    v, ours = P.rule_ensemble(d)
    assert v == P.HOLDS and "gain +0.070 [" in ours


def test_same_mean_on_three_samples_is_not_enough():
    d = _ens([0.0, 0.0, 1.0], [0.0, 1.0, 1.0])  # gain +0.33 on 3 mazes
    v, _ = P.rule_ensemble(d)
    assert v.startswith(P.NES) and v != P.HOLDS


def test_ensemble_plus_half_a_point_on_200_does_not_hold():
    d = _ens(_ones(200, 128), _ones(200, 129))  # 0.640 -> 0.645: one success in 200 more
    assert P.level_ensemble(d)[0] == P.PARTLY  # the old rule said partly for any gain above zero
    v, ours = P.rule_ensemble(d)
    assert v == P.NOT and "gain +0.005" in ours


def test_ensemble_noisy_gain_that_cannot_exclude_either_is_not_enough():
    single = _ones(200, 128)
    ens = list(single)
    for i in range(10):  # 10 mazes gained, 8 lost: +0.01, interval holding both 0 and +0.02
        ens[128 + i] = 1.0
    for i in range(8):
        ens[i] = 0.0
    assert P.rule_ensemble(_ens(single, ens))[0] == P.NES


def test_old_numbers_without_samples_say_rerun():
    old = _ens(_ones(200, 120), _ones(200, 134))
    del old["samples"]
    v, ours = P.rule_ensemble(old)
    assert v == P.NO_SAMPLES and "point estimates alone: holds" in ours
    skip = {"band_drop": [0.1, 0.4, 0.1], "step_drop": [0.3], "worst": ["0%:20%", 7, 0.6]}
    assert P.rule_skip(skip)[0] == P.NO_SAMPLES


def _skip(early, mid, late, n=100):
    """clean solves every maze; skipping a layer of a band fails that band's share of mazes."""
    clean = [1.0] * n
    solved = [[[1.0 - x for x in _ones(n, int(r * n))] for r in (early, mid, late)]]
    return {
        "clean": 1.0,
        "band_drop": [early, mid, late],
        "step_drop": [0.3],
        "worst": ["0%:50%", 1, max(early, mid)],
        "n": n,
        "samples": {"clean": clean, "solved": solved, "fracs": [0.0, 0.5, 0.9]},
    }


def test_skip_compares_the_three_bands_pairwise():
    v, ours = P.rule_skip(_skip(0.05, 0.4, 0.1))
    assert v == P.HOLDS
    assert "middle - early +0.35 [" in ours and "middle - late +0.30 [" in ours and "early - late -0.05 [" in ours
    # the early band hurts most: middle layers above late, but not where the damage concentrates
    assert P.rule_skip(_skip(0.51, 0.32, 0.1))[0] == P.PARTLY
    # equal bands: the point rule's partly does not survive the interval
    assert P.rule_skip(_skip(0.2, 0.21, 0.2))[0] == P.NES


def test_selfcorrect_one_run_is_not_enough():
    n = 48
    one = {
        "wrong_then_right": 1 / n,
        "right_then_wrong": 0.0,
        "n_fix": 1,
        "n_break": 0,
        "n": n,
        "final": 0.5,
        "samples": {"fix": _ones(n, 1), "break": [0.0] * n},
    }
    assert P.level_selfcorrect(one)[0] == P.HOLDS  # the old rule: one wrong-then-right run held
    assert P.rule_selfcorrect(one)[0] not in (P.HOLDS, P.PARTLY)
    many = dict(one, samples={"fix": _ones(n, 10), "break": _ones(n, 1)}, wrong_then_right=10 / n, n_fix=10)
    assert P.rule_selfcorrect(many)[0] == P.HOLDS


def _noise(curve, clean=0.7, n=100, mids=(0.65, 0.7)):
    at = list(range(len(curve)))
    return {"clean": clean, "n": n, "steps": len(curve), "step_at": at, "step_curve": list(curve), "step_min": min(curve),
            "step_argmin": int(np.argmin(curve)), "frame_mid": list(mids), "frame_rates": {"frame 1": mids[0]},
            "samples": {"clean": _ones(n, round(clean * n)), "step": [_ones(n, round(c * n)) for c in curve],
                        "frame": {f"frame {i + 1}": _ones(n, round(m * n)) for i, m in enumerate(mids)},
                        "frame_mid_keys": [f"frame {i + 1}" for i in range(len(mids))]}}  # fmt: skip


def test_noise_rules_with_intervals():
    assert P.rule_noise_drop(_noise([0.7, 0.2, 0.6]))[0] == P.HOLDS
    assert P.rule_noise_drop(_noise([0.7, 0.2, 0.6], n=5))[0].startswith(P.NES)
    assert P.rule_noise_peak(_noise([0.7, 0.6, 0.2, 0.5, 0.7]))[0] == P.HOLDS
    assert P.rule_noise_peak(_noise([0.7, 0.6, 0.5, 0.3, 0.0]))[0] == P.NOT
    assert P.rule_noise_frame(_noise([0.7, 0.1]))[0] == P.HOLDS


def test_chain_rule_reads_sharp_candidates():
    n = 40
    explore = [True] * 30 + [False] * 10
    d = {"explore_share": 0.0, "peak_alt": 0.0, "late_alt": 0.0, "peak_candidates": 0.0, "peak_step": 0,
         "late_candidates": 0.0, "commit_median": 0.0, "steps": 8, "n": n,
         "samples": {"explore": explore, "peak_candidates": [2.0] * 30 + [1.0] * 10, "late_candidates": [1.0] * n,
                     "contrast": 0.6, "min_len": 2}}  # fmt: skip
    assert P.rule_chain(d)[0] == P.HOLDS
    never = dict(d, samples=dict(d["samples"], explore=[False] * n, peak_candidates=[1.0] * n))
    assert P.rule_chain(never)[0] == P.NOT


def test_report_states_each_rule_and_its_null(tmp_path):
    numbers = {"seed_ensemble": {"ensemble": _ens(_ones(200, 128), _ones(200, 129))}}
    text = P.write_report(tmp_path, numbers, {"seed_ensemble": []}, header={"title": "T"}).read_text()
    assert "null: zero gain" in text and "**does not hold**" in text and "95% interval" in text
