"""L2-regularised logistic regression (numpy, Newton's method) and question-grouped cross-validation folds.

The classifier of the embedding judge (:mod:`emguard.eval.judges.embedding`). Newton's method with a
backtracking (Armijo) line search on the mean log-loss plus ``l2/2 * |w|^2``, the bias not penalised (Hastie,
Tibshirani & Friedman, *The Elements of Statistical Learning*, 2nd ed., section 4.4.1; Nocedal & Wright,
*Numerical Optimization*, section 3.1). Cross-validation folds keep every group (question) in one fold, so
no question is both trained and tested on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float, max_iter: int = 50, tol: float = 1e-8
                 ) -> tuple[np.ndarray, float]:
    """Minimise ``mean log-loss + l2/2 * |w|^2`` (bias not penalised) by Newton's method; returns (w, b)."""
    n, d = x.shape
    xa = np.hstack([x, np.ones((n, 1))])
    theta = np.zeros(d + 1)
    reg = np.full(d + 1, l2)
    reg[-1] = 0.0

    def loss(t):
        z = xa @ t
        return float(np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * np.dot(t[:-1], t[:-1]))

    cur = loss(theta)
    for _ in range(max_iter):
        p = sigmoid(xa @ theta)
        grad = xa.T @ (p - y) / n + reg * theta
        hess = (xa * (p * (1 - p))[:, None]).T @ xa / n + np.diag(reg) + 1e-10 * np.eye(d + 1)
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while True:  # backtracking keeps every step a descent step
            new = loss(theta - t * step)
            if new <= cur - 1e-4 * t * float(grad @ step) or t < 1e-6:
                break
            t *= 0.5
        theta -= t * step
        done = cur - new < tol
        cur = new
        if done:
            break
    return theta[:-1].copy(), float(theta[-1])


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


@dataclass
class Classifier:
    """Standardise with the training mean/std, then the logistic regression of :func:`fit_logistic`."""

    w: np.ndarray
    b: float
    mu: np.ndarray
    sd: np.ndarray

    @classmethod
    def train(cls, x: np.ndarray, y: np.ndarray, l2: float) -> "Classifier":
        mu = x.mean(0)
        sd = x.std(0) + 1e-6
        w, b = fit_logistic((x - mu) / sd, y, l2=l2)
        return cls(w, b, mu, sd)

    def prob(self, x: np.ndarray) -> np.ndarray:
        return sigmoid(((x - self.mu) / self.sd) @ self.w + self.b)


def group_folds(groups: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """``k`` test masks over the rows; every group (question) lands in exactly one fold."""
    uniq = sorted(set(groups.tolist()))
    random.Random(seed).shuffle(uniq)
    k = max(2, min(k, len(uniq)))
    fold_of = {g: i % k for i, g in enumerate(uniq)}
    f = np.array([fold_of[g] for g in groups.tolist()])
    return [f == i for i in range(k)]


def accuracy(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((p >= 0.5) == (y >= 0.5))) if len(y) else float("nan")
