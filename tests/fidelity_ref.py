"""torch-fidelity as a reference implementation, without torchvision.

`import torch_fidelity` runs its package __init__, which imports torchvision (not installable
here: it pulls a CUDA build of torch). The modules we compare against (the FID Inception,
TF1-compatible resizing, the FID and KID formulas) do not need torchvision, so they are
imported under a bare stand-in package. Install the reference with
`pip install --no-deps torch-fidelity==0.4.0`; without it these tests skip.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

import pytest

INSTALL = "pip install --no-deps torch-fidelity==0.4.0"


def reference(module: str) -> types.ModuleType:
    """torch_fidelity.<module>, imported without the package's __init__."""
    if "torch_fidelity" not in sys.modules:
        spec = importlib.util.find_spec("torch_fidelity")
        if spec is None or not spec.submodule_search_locations:
            pytest.skip(f"reference torch-fidelity not installed ({INSTALL})")
        pkg = types.ModuleType("torch_fidelity")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["torch_fidelity"] = pkg
        # metric_fid / metric_kid import helpers from utils, which imports torchvision;
        # the functions we call do not use them.
        utils = types.ModuleType("torch_fidelity.utils")
        for name in ("create_feature_extractor", "extract_featuresdict_from_input_id_cached",
                     "resolve_feature_extractor", "resolve_feature_layer_for_metric",
                     "get_cacheable_input_name", "cache_lookup_one_recompute_on_miss"):
            setattr(utils, name, None)
        sys.modules["torch_fidelity.utils"] = utils
    try:
        return importlib.import_module(f"torch_fidelity.{module}")
    except ImportError as e:  # a newer torch-fidelity that imports torchvision there too
        pytest.skip(f"torch_fidelity.{module} cannot be imported without torchvision: {e}")
