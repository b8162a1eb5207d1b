import pytest
import torch

from scenegraph_diff.linkpred.metrics import auc, average_precision, evaluate_scores, hits_at_k, mrr

POS = torch.tensor([0.9, 0.8, 0.3, 0.1])
NEG = torch.tensor([0.85, 0.5, 0.2])


def test_hits_hand_computed():
    # K=1: kth negative = 0.85 -> positives above: 0.9 only.
    assert hits_at_k(POS, NEG, 1) == pytest.approx(1 / 4)
    # K=2: kth = 0.5 -> 0.9, 0.8.
    assert hits_at_k(POS, NEG, 2) == pytest.approx(2 / 4)
    # K=3: kth = 0.2 -> 0.9, 0.8, 0.3.
    assert hits_at_k(POS, NEG, 3) == pytest.approx(3 / 4)
    # Fewer negatives than K: OGB returns 1.
    assert hits_at_k(POS, NEG, 4) == 1.0


def test_hits_strict_inequality_on_ties():
    assert hits_at_k(torch.tensor([0.5, 0.6]), torch.tensor([0.5, 0.1]), 1) == pytest.approx(0.5)


def test_mrr_shared_and_per_positive_negatives():
    # Shared negatives: ranks of 0.9, 0.8, 0.3, 0.1 among NEG are 1, 2, 3, 4.
    assert mrr(POS, NEG) == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    # Per-positive negatives with a tie: rank = 1 + 0.5 -> 2/3.
    pos = torch.tensor([0.5, 0.9])
    neg = torch.tensor([[0.5, 0.1], [0.95, 0.99]])
    assert mrr(pos, neg) == pytest.approx((1 / 1.5 + 1 / 3) / 2)


def test_auc_hand_computed():
    # pairs (pos > neg): 0.9>all 3, 0.8>0.5,0.2 (2), 0.3>0.2 (1), 0.1>none -> 6/12.
    assert auc(POS, NEG) == pytest.approx(6 / 12)
    assert auc(torch.tensor([0.5]), torch.tensor([0.5])) == pytest.approx(0.5)  # tie counts half


def test_average_precision_hand_computed():
    # Ranking: .9(+) .85(-) .8(+) .5(-) .3(+) .2(-) .1(+): precisions at the positives 1, 2/3, 3/5, 4/7.
    expected = (1 + 2 / 3 + 3 / 5 + 4 / 7) / 4
    assert average_precision(POS, NEG) == pytest.approx(expected)


def test_average_precision_ties_form_one_threshold():
    # All scores tied: one threshold with precision 1/2 and recall 1 -> AP = 0.5 (scikit-learn's value).
    assert average_precision(torch.tensor([1.0]), torch.tensor([1.0])) == pytest.approx(0.5)


def test_evaluate_scores_keys_and_scale():
    out = evaluate_scores(POS, NEG, ks=(1, 3))
    assert set(out) == {"auc", "ap", "mrr", "hits@1", "hits@3"}
    assert out["hits@3"] == pytest.approx(75.0)


def test_errors_name_the_value():
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        hits_at_k(POS, NEG, 0)
    with pytest.raises(ValueError, match="non-empty"):
        auc(torch.tensor([]), NEG)


def test_auc_ap_agree_with_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(0)
    pos = torch.randint(0, 20, (50,), generator=g).float()  # many ties on purpose
    neg = torch.randint(0, 15, (70,), generator=g).float()
    y = [1] * 50 + [0] * 70
    s = torch.cat([pos, neg]).tolist()
    assert auc(pos, neg) == pytest.approx(metrics.roc_auc_score(y, s))
    assert average_precision(pos, neg) == pytest.approx(metrics.average_precision_score(y, s))
