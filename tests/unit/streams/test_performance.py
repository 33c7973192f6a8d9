"""Every performance figure against scikit-learn on the same data, and exact merges."""

from __future__ import annotations

import itertools
import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)

from streams.exact_sum import exact_add as _exact_add
from streams.exact_sum import exact_sum
from streams.performance import (
    OTHER,
    BinaryConfusion,
    BinaryPerformance,
    MulticlassAccuracy,
    MulticlassPerformance,
    RegressionErrors,
    RegressionPerformance,
    primary_metric,
)

NAN = math.nan


def nan_equal(a: float, b: float, rel: float = 1e-12) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=rel, abs=1e-12)


def sklearn_binary(y: np.ndarray, s: np.ndarray, threshold: float) -> dict[str, float]:
    """The reference figures; NaN where a ratio is undefined (``zero_division=np.nan``)."""
    pred = (s >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        both = 0 < y.sum() < y.size
        return {
            "labelled": float(y.size),
            "accuracy": accuracy_score(y, pred),
            "precision": precision_score(y, pred, zero_division=np.nan),
            "recall": recall_score(y, pred, zero_division=np.nan),
            "f1": f1_score(y, pred, zero_division=np.nan),
            "positive_rate": pred.mean(),
            "prevalence": y.mean(),
            "fpr": fp / (fp + tn) if fp + tn else NAN,
            "fnr": fn / (fn + tp) if fn + tp else NAN,
            "auc": roc_auc_score(y, s) if both else NAN,
            "log_loss": log_loss(y, np.clip(s, 0, 1), labels=[0, 1]),
            "tp": float(tp),
            "fp": float(fp),
            "tn": float(tn),
            "fn": float(fn),
        }


def scored(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=n) < 0.3).astype(int)
    s = rng.beta(2 + 3 * y, 5 - 3 * y)  # informative, continuous scores
    return y, s


# --- binary ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_binary_metrics_equal_sklearn(seed, threshold):
    y, s = scored(seed, 3000)
    c = BinaryPerformance(threshold)
    for chunk in np.array_split(np.arange(y.size), 7):
        c.update_many(s[chunk], y[chunk].astype(float))
    got, want = c.metrics(), sklearn_binary(y, s, threshold)
    assert got.keys() == want.keys()
    for k in want:
        if k != "auc":
            assert nan_equal(got[k], want[k]), k
    # Continuous scores: the binned AUC is within its own stated bound of the exact one.
    bound = c.auc_error_bound()
    assert abs(got["auc"] - want["auc"]) <= bound + 1e-12
    assert bound < 0.01  # 200 cells, scores spread over most of them


@pytest.mark.parametrize("score_bins", [200, 10, 7])
def test_auc_is_exact_when_scores_are_on_the_grid(score_bins):
    rng = np.random.default_rng(score_bins)
    y = (rng.uniform(size=5000) < 0.4).astype(int)
    k = np.clip(rng.binomial(score_bins, 0.4 + 0.2 * y), 0, score_bins)
    s = k / score_bins  # many ties, which sklearn counts as half a pair
    c = BinaryPerformance(score_bins=score_bins)
    c.update_many(s, y)
    assert c.auc() == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auc_error_bound_holds_and_is_tight_enough_on_coarse_bins():
    """With 10 cells the binned AUC is visibly off, and still inside the bound."""
    y, s = scored(11, 20_000)
    c = BinaryPerformance(score_bins=10)
    c.update_many(s, y)
    exact = roc_auc_score(y, s)
    assert abs(c.auc() - exact) <= c.auc_error_bound()
    assert abs(c.auc() - exact) > 1e-4  # the bin resolution really is what limits it


@pytest.mark.parametrize(
    ("y", "s"),
    [
        ([0, 0, 0, 0], [0.1, 0.7, 0.2, 0.9]),  # no positives: AUC, recall, FNR undefined
        ([1, 1, 1], [0.6, 0.2, 0.9]),  # no negatives: AUC, FPR undefined
        ([1, 0, 1, 0], [0.1, 0.2, 0.3, 0.4]),  # nothing predicted positive: precision NaN
        ([0, 0], [0.1, 0.2]),  # no positive anywhere: F1 NaN
        ([1, 0, 1], [0.0, 1.0, 1.0]),  # certain and wrong: log loss clipped like sklearn
    ],
)
def test_binary_degenerate_cases_are_nan_not_errors(y, s):
    y, s = np.array(y), np.array(s, dtype=float)
    c = BinaryPerformance()
    c.update_many(s, y)
    got, want = c.metrics(), sklearn_binary(y, s, 0.5)
    for k in want:
        assert nan_equal(got[k], want[k]), k


def test_binary_skips_missing_and_non_binary_rows():
    c = BinaryPerformance()
    c.update_many([0.9, None, NAN, 0.2, 0.4, math.inf], [1, 1, 0, 0.5, 0, 1])
    assert (c.tp, c.fp, c.tn, c.fn) == (1, 0, 1, 0)
    empty = BinaryPerformance().metrics()
    assert empty["labelled"] == 0 and all(
        math.isnan(v) for k, v in empty.items() if k not in ("labelled", "tp", "fp", "tn", "fn")
    )


def test_binary_scores_outside_unit_interval_go_to_the_end_cells():
    c = BinaryPerformance(score_bins=4)
    c.update_many(np.array([-0.5, 1.7, 0.5]), np.array([0, 1, 1]))
    assert c.negatives.tolist() == [1, 0, 0, 0, 0] and c.positives.tolist() == [0, 0, 1, 0, 1]
    assert c.auc() == 1.0


def test_binary_merge_refuses_other_settings():
    with pytest.raises(ValueError, match="thresholds or bins"):
        BinaryPerformance(0.5).merge(BinaryPerformance(0.6))
    with pytest.raises(ValueError, match="thresholds or bins"):
        BinaryPerformance(score_bins=100).merge(BinaryPerformance(score_bins=200))


# --- multiclass -----------------------------------------------------------------------------


def noisy_classes(seed: int, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    actual = rng.integers(0, k, n)
    wrong = rng.uniform(size=n) < 0.35
    predicted = np.where(wrong, rng.integers(0, k, n), actual)
    names = np.array([f"c{i}" for i in range(k)], dtype=object)
    return names[predicted], names[actual]


@pytest.mark.parametrize("seed", range(3))
def test_multiclass_equals_sklearn(seed):
    predicted, actual = noisy_classes(seed, 4000, 8)
    m = MulticlassPerformance()
    m.update_many(list(predicted[:1000]), list(actual[:1000]))
    m.update_many(list(predicted[1000:]), list(actual[1000:]))
    got = m.metrics()
    assert got["labelled"] == 4000 and m.pooled == 0
    assert got["accuracy"] == pytest.approx(accuracy_score(actual, predicted), rel=1e-12)
    assert got["macro_f1"] == pytest.approx(f1_score(actual, predicted, average="macro"))


def test_multiclass_caps_the_label_set_and_pools_the_rest():
    predicted, actual = noisy_classes(7, 5000, 30)
    m = MulticlassPerformance(max_classes=10)
    m.update_many(list(predicted), list(actual))
    assert len(m.labels) == 10 and m.matrix.shape == (11, 11) and m.pooled > 0
    # Accuracy counts real matches, pooled or not.
    assert m.metrics()["accuracy"] == pytest.approx(accuracy_score(actual, predicted))
    # Macro-F1 is sklearn's over the same label set: the kept labels plus OTHER.
    kept = set(m.labels)

    def pool(v: np.ndarray) -> np.ndarray:
        return np.array([x if x in kept else OTHER for x in v], dtype=object)

    labels = [*m.labels, OTHER]
    want = f1_score(pool(actual), pool(predicted), labels=labels, average="macro")
    assert m.macro_f1() == pytest.approx(want)


def test_multiclass_fixed_labels_and_unseen_classes():
    m = MulticlassPerformance(labels=["a", "b"])
    m.update_many(["a", "b", "z", "y", "a"], ["a", "a", "z", "b", 1])
    assert m.labels == ["a", "b"] and m.correct == 2 and m.pooled == 3
    pooled = lambda v: [x if x in ("a", "b") else OTHER for x in v]  # noqa: E731
    want = f1_score(
        pooled(["a", "a", "z", "b", "1"]), pooled(["a", "b", "z", "y", "a"]), average="macro"
    )
    assert m.macro_f1() == pytest.approx(want)


def test_multiclass_labels_compare_as_text_and_skip_missing():
    m = MulticlassPerformance()
    m.update_many([1, 2.0, "3", None, NAN], ["1", 2, 3.0, "x", "y"])
    assert m.metrics() == {"labelled": 3.0, "accuracy": 1.0, "macro_f1": 1.0}
    assert math.isnan(MulticlassPerformance().metrics()["macro_f1"])
    with pytest.raises(ValueError, match="distinct"):
        MulticlassPerformance(labels=["a", "a"])


# --- regression -----------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [0.0, 1e8])
def test_regression_equals_sklearn(offset):
    rng = np.random.default_rng(3)
    y = offset + rng.normal(0, 3, 5000)
    y[rng.choice(5000, 40, replace=False)] = 0.0  # zero targets: no percentage error
    p = y + rng.normal(0.2, 1.0, 5000)
    r = RegressionPerformance()
    for chunk in np.array_split(np.arange(y.size), 5):
        r.update_many(p[chunk], y[chunk])
    got = r.metrics()
    nz = y != 0
    assert got["labelled"] == 5000 and got["mape_skipped"] == 40
    assert got["mae"] == pytest.approx(mean_absolute_error(y, p), rel=1e-12)
    assert got["rmse"] == pytest.approx(math.sqrt(mean_squared_error(y, p)), rel=1e-12)
    assert got["mape"] == pytest.approx(mean_absolute_percentage_error(y[nz], p[nz]), rel=1e-12)
    # At an offset of 1e8, Σy² − (Σy)²/n in floats would have lost every digit of SS_tot.
    assert got["r2"] == pytest.approx(r2_score(y, p), rel=1e-9)


def test_regression_degenerate_cases():
    r = RegressionPerformance()
    r.update_many([1.0, 2.0, None, 5.0], [3.0, 3.0, 3.0, NAN])
    got = r.metrics()
    assert got["labelled"] == 2 and got["mae"] == 1.5
    assert math.isnan(got["r2"])  # constant targets: R² undefined (sklearn would say 0.0)
    # A subnormal target divides like sklearn's (by machine epsilon); a value whose square
    # would overflow is skipped: the state stays finite, hence JSON.
    extreme = RegressionPerformance()
    extreme.update_many([1.0, 1e200, 3.0], [2.2e-309, 1.0, -1e160])
    assert extreme.n == 1 and json.dumps(extreme.to_state(), allow_nan=False)
    want = mean_absolute_percentage_error([2.2e-309], [1.0])
    assert extreme.metrics()["mape"] == pytest.approx(want, rel=1e-12)
    zeros = RegressionPerformance()
    zeros.update_many([1.0, 2.0], [0.0, 0.0])
    assert math.isnan(zeros.metrics()["mape"]) and zeros.metrics()["mape_skipped"] == 2
    assert all(
        math.isnan(v)
        for k, v in RegressionPerformance().metrics().items()
        if k in ("mae", "rmse", "mape", "r2")
    )


# --- merging and state ----------------------------------------------------------------------

scores = st.floats(-0.2, 1.2) | st.just(NAN)
labels = st.sampled_from([0.0, 1.0, 1.0, NAN, 2.0])
rows = st.lists(st.tuples(scores, labels), max_size=60)
cuts = st.lists(st.integers(0, 60), max_size=4)


def split(items: list, at: list[int]) -> list[list]:
    edges = sorted({min(a, len(items)) for a in at})
    return [items[a:b] for a, b in zip([0, *edges], [*edges, len(items)], strict=True)]


def round_trip(state: dict) -> dict:
    return json.loads(json.dumps(state, allow_nan=False))


@settings(max_examples=150, deadline=None)
@given(rows, cuts, st.permutations(range(5)))
def test_binary_partials_merge_to_the_same_state(data, at, order):
    whole = BinaryPerformance(score_bins=20)
    whole.update_many([s for s, _ in data], [y for _, y in data])
    parts = split(data, at)
    merged = BinaryPerformance(score_bins=20)
    for i in order:
        if i < len(parts):
            part = BinaryPerformance(score_bins=20)
            part.update_many([s for s, _ in parts[i]], [y for _, y in parts[i]])
            merged += BinaryPerformance.from_state(round_trip(part.to_state()))
    assert merged.to_state() == whole.to_state()
    assert BinaryPerformance.from_state(round_trip(whole.to_state())).to_state() == (
        whole.to_state()
    )


classes = st.sampled_from(["a", "b", "c", "d", 1, None])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(classes, classes), max_size=60), cuts, st.permutations(range(5)))
def test_multiclass_partials_merge_to_the_same_state(data, at, order):
    whole = MulticlassPerformance(max_classes=5)
    whole.update_many([p for p, _ in data], [a for _, a in data])
    parts = split(data, at)
    merged = MulticlassPerformance(max_classes=5)
    for i in order:
        if i < len(parts):
            part = MulticlassPerformance(max_classes=5)
            part.update_many([p for p, _ in parts[i]], [a for _, a in parts[i]])
            merged += MulticlassPerformance.from_state(round_trip(part.to_state()))
    assert merged.to_state() == whole.to_state()
    assert MulticlassPerformance.from_state(round_trip(whole.to_state())).to_state() == (
        whole.to_state()
    )


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f"]), min_size=1, max_size=40),
    st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f"]), min_size=1, max_size=40),
)
def test_multiclass_overfull_merge_keeps_exact_accuracy(left, right):
    a, b, whole = (MulticlassPerformance(max_classes=3) for _ in range(3))
    a.update_many(left, left[::-1])
    b.update_many(right, right[::-1])
    whole.update_many(left + right, left[::-1] + right[::-1])
    a += b
    assert (a.n, a.correct) == (whole.n, whole.correct)
    assert a.pooled == int(a.matrix[-1, :].sum() + a.matrix[:-1, -1].sum())


targets = st.floats(-1e6, 1e6) | st.just(0.0) | st.just(NAN)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(targets, targets), max_size=60), cuts, st.permutations(range(5)))
def test_regression_partials_merge_to_the_same_state(data, at, order):
    whole = RegressionPerformance()
    whole.update_many([p for p, _ in data], [y for _, y in data])
    parts = split(data, at)
    merged = RegressionPerformance()
    for i in order:
        if i < len(parts):
            part = RegressionPerformance()
            part.update_many([p for p, _ in parts[i]], [y for _, y in parts[i]])
            merged += RegressionPerformance.from_state(round_trip(part.to_state()))
    assert merged.to_state() == whole.to_state()
    assert RegressionPerformance.from_state(round_trip(whole.to_state())).to_state() == (
        whole.to_state()
    )


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(256, 3000),
    st.sampled_from([0.0, 30.0, 300.0]),
    st.lists(st.floats(-1e6, 1e6), max_size=3),
)
def test_fast_exact_sum_is_exact_sum(seed, n, spread, earlier):
    """The bincount path for large batches gives `exact_sum`'s expansion, bit for bit."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n) * 10.0 ** rng.uniform(-spread, spread, n)
    x[rng.uniform(size=n) < 0.05] = 0.0
    terms = exact_sum(earlier)
    assert _exact_add(x, terms) == exact_sum(x.tolist(), terms)


@pytest.mark.parametrize("make", [BinaryPerformance, RegressionPerformance])
def test_large_batches_and_small_ones_give_the_same_state(make):
    rng = np.random.default_rng(4)
    n = 200_000  # above the block size, so blocks and the fast sum are exercised
    scores, labels = rng.uniform(-0.1, 1.1, n), (rng.uniform(size=n) < 0.3).astype(float)
    labels[rng.uniform(size=n) < 0.01] = np.nan
    whole, pieces = make(), make()
    whole.update_many(scores, labels)
    edges = [0, 7, 300, 1000, 70_000, 150_000, n]
    for a, b in itertools.pairwise(edges):
        pieces.update_many(scores[a:b], labels[a:b])
    assert pieces.to_state() == whole.to_state()


@pytest.mark.parametrize("make", [BinaryPerformance, RegressionPerformance])
def test_one_row_updates_give_the_update_many_state(make):
    rng = np.random.default_rng(8)
    scores = np.concatenate([rng.uniform(-0.1, 1.1, 3000), [0.0, 1.0, 0.5, 1e-300, NAN]])
    labels = np.concatenate([(rng.uniform(size=3000) < 0.3) * 1.0, [1.0, 0.0, 0.0, 0.0, 1.0]])
    labels[:30] = 0.0  # zero targets, for the regression counter
    labels[30:40] = 0.5  # not a binary label
    batch, rows = make(), make()
    batch.update_many(scores, labels)
    for score, label in zip(scores.tolist(), labels.tolist(), strict=True):
        rows.update(score, label)
    rows.update(None, 1.0)
    assert rows.to_state() == batch.to_state()


def test_states_are_compact():
    c = BinaryPerformance()
    c.update_many(np.array([0.1, 0.9]), np.array([0, 1]))
    state = c.to_state()
    assert state["pos"] == {"i": [180], "n": [1]} and len(json.dumps(state)) < 200


def test_state_rejects_counts_that_do_not_add_up():
    state = BinaryPerformance().to_state() | {"tp": 3}
    with pytest.raises(ValueError, match="do not add up"):
        BinaryPerformance.from_state(state)


# --- names and the primary metric -----------------------------------------------------------


def test_earlier_names_still_work():
    assert BinaryConfusion is BinaryPerformance
    assert MulticlassAccuracy is MulticlassPerformance
    assert RegressionErrors is RegressionPerformance


def test_primary_metric_per_task():
    acc = primary_metric("binary")
    assert primary_metric("multiclass") == acc and acc.name == "accuracy" and acc.higher_is_better
    assert acc.drop(0.90, 0.80) == pytest.approx(10.0)  # percentage points
    assert acc.drop(0.80, 0.90) == pytest.approx(-10.0)
    mae = primary_metric("regression")
    assert mae.name == "mae" and not mae.higher_is_better
    assert mae.drop(4.0, 5.0) == pytest.approx(25.0)  # percent of the baseline error
    assert math.isnan(mae.drop(NAN, 5.0)) and mae.drop(0.0, 1.0) == math.inf
    with pytest.raises(ValueError, match="unknown task"):
        primary_metric("ranking")  # type: ignore[arg-type]
