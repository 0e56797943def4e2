"""Oracle for luna's classification metrics: scikit-learn's roc_auc_score and
precision_recall_curve on the cases luna wrote (independent of luna's code).

Usage: metrics_sklearn.py <cases.json>   cases: [{"labels": [bool], "scores": [float32 values]}]
Prints one JSON line: [{"auc": float or null, "pr": [[recall, precision], ...] or null}, ...];
null where sklearn's value is undefined (one class) or the case holds non-finite scores.
"""
import json
import sys

import numpy as np

try:
    from sklearn.metrics import precision_recall_curve, roc_auc_score
except ImportError as e:  # fail loudly: the Rust test turns this into a failure
    print(f"ORACLE SETUP ERROR: scikit-learn not importable: {e}", file=sys.stderr)
    sys.exit(2)


def one(case):
    y = np.array(case["labels"], dtype=bool)
    s = np.array([float(v) for v in case["scores"]], dtype=np.float32)  # "nan", "inf" too
    if not np.all(np.isfinite(s)) or len(y) == 0:
        return {"auc": None, "pr": None}
    auc = float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else None
    pr = None
    if y.sum() > 0:
        p, r, _ = precision_recall_curve(y, s)
        pr = [[float(a), float(b)] for a, b in zip(r[:-1][::-1], p[:-1][::-1])]
    return {"auc": auc, "pr": pr}


def main():
    with open(sys.argv[1]) as fh:
        cases = json.load(fh)
    print(json.dumps([one(c) for c in cases]))


if __name__ == "__main__":
    main()
