"""Projections of stacked parameter vectors (one row per snapshot) onto the plane.

PCA is the default: exact, fast and deterministic (numpy's SVD of the centred matrix). An SVD
fixes each component only up to its sign, and which sign LAPACK returns may change between
builds; so the sign is fixed here: each component's largest loading (by absolute value; the
first of equal ones) is positive. t-SNE comes from scikit-learn, an optional extra."""

from __future__ import annotations

import numpy as np

from testbed.errors import UserError

TSNE_INSTALL = "pip install 'testbed[maps]' (or pip install scikit-learn)"
EXACT_TSNE_POINTS = 1000  # up to this many points, exact t-SNE: more accurate, and faster than Barnes-Hut there


def fix_signs(components: np.ndarray) -> np.ndarray:
    """(k, D) components with each row's largest |loading| made positive."""
    rows = np.arange(components.shape[0])
    largest = np.argmax(np.abs(components), axis=1)
    signs = np.where(components[rows, largest] < 0, -1.0, 1.0)
    return components * signs[:, None]


def pca(points: np.ndarray, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(n, D) points -> their coordinates (n, k) on the top `k` principal components (centred,
    signs fixed by `fix_signs`) and the share of the variance each explains (k,). Components
    beyond the rank of the data are zero, and so are their coordinates."""
    x = np.asarray(points, dtype=np.float64)
    centred = x - x.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    components = np.zeros((k, x.shape[1]))
    m = min(k, vt.shape[0])
    components[:m] = fix_signs(vt[:m])
    variance = singular**2
    total = variance.sum()
    explained = np.zeros(k)
    if total > 0:
        explained[:m] = variance[:m] / total
    return centred @ components.T, explained


def tsne(points: np.ndarray, perplexity: float = 30.0, random_state: int = 0) -> np.ndarray:
    """(n, D) points -> t-SNE coordinates (n, 2), initialised from the PCA and seeded, so the
    same points give the same map: exact up to `EXACT_TSNE_POINTS` points (its O(n^2) cost is
    below Barnes-Hut's overhead there: 18 points 0.3 s against 1.6 s, 500 points 15 s against
    49 s on two busy cores), Barnes-Hut above. Needs scikit-learn (`testbed[maps]`)."""
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        raise UserError(f"--method tsne needs scikit-learn, which is not installed: {TSNE_INSTALL}") from None
    x = np.asarray(points, dtype=np.float64)
    n = x.shape[0]
    if not 0 < perplexity < n:
        raise UserError(f"--perplexity {perplexity:g}: must be above 0 and below the number of points ({n})")
    init = pca(x)[0]
    scale = init[:, 0].std()
    if scale > 0:  # scikit-learn's own PCA initialisation: first coordinate's sd 1e-4
        init = init / scale * 1e-4
    method = "exact" if n <= EXACT_TSNE_POINTS else "barnes_hut"
    return TSNE(n_components=2, perplexity=perplexity, init=init, method=method, random_state=random_state).fit_transform(x)  # type: ignore[arg-type]  # scikit-learn annotates init as str; it takes an array too (documented)
