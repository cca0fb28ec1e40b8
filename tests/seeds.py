"""The seed that statistical tests draw their data, inits and batch orders from.

A statistical assertion (a detector fires on a broken run, stays quiet on a healthy one, a lab
effect shows) must hold on any seed and any CPU, not only on the one it was written on. Such
tests take their seed from ``TEST_SEED`` and carry ``@pytest.mark.statistical``;
``make test-seeds`` reruns every one of them on seeds 0-9 (``NNRECIPE_TEST_SEED=N pytest -m
statistical`` runs one seed). Each such test records the worst seed's margin in a comment.
"""

from __future__ import annotations

import os

TEST_SEED = int(os.environ.get("NNRECIPE_TEST_SEED", os.environ.get("NNRECIPE_LAB_SEED", "0")))
