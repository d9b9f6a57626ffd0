import numpy as np
import pytest

from vfm_features.evaluation.synthetic import make_synthetic


@pytest.fixture(scope="session")
def small_data():
    """Three 96x96 synthetic images with instances, classes and semantic maps."""
    return make_synthetic(3, (96, 96), random_state=1)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
