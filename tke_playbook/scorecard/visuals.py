"""Glue for the notebook: per-model 2-D projections from a scorecard result. (What depends on the target - the
parity reference, the node type to price on - is the target's evaluation step's: ``pb.evaluation``.)"""

from __future__ import annotations

import numpy as np

from ..evaluate.similarity import project_2d


def projections(result, method: str = "pca") -> dict[str, np.ndarray]:
    """``{system: (documents, 2) points}`` for every dense system of a scorecard on the bilingual set."""
    return {name: project_2d(vectors, method) for name, vectors in result.doc_vectors.items()}
