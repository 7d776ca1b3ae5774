"""The Example sections of the metric docstrings run and give what they show."""

import doctest
import importlib

import pytest

MODULES = ["zeroshot", "shape_bias", "noise_sensitivity", "low_level_alignment", "mid_level_alignment",
           "saliency_alignment", "calibration", "ood"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"clipdyn.metrics.{name}")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0 and result.failed == 0


def test_public_api_is_importable_from_the_package():
    import clipdyn.metrics as m
    for name in m.__all__:
        assert callable(getattr(m, name)), name
        assert getattr(m, name).__doc__, f"{name} has no docstring"
