"""One seed ceiling (ssimae.core.seeds.MAX_SEED), torch-free, and every seed checked against it
as before: 2^63 - 1 (numpy's int64 maximum) accepted, one more refused with one line naming the option."""
import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ssimae
from ssimae.errors import SsimaeError
from ssimae.models.inpaint import InpaintParams
from ssimae.runs.inference_settings import InferenceSettings
from ssimae.runs.settings import TrainSettings, check_data
from tests.helpers.layers import read_sources

CEILING = int(np.iinfo(np.int64).max)  # the reference: numpy's and torch's seeds are int64


def test_max_seed_is_defined_in_one_module_only():
    owners = [module for module, source in read_sources(Path(ssimae.__file__).parent).items()
              for node in ast.walk(ast.parse(source))
              if isinstance(node, (ast.Assign, ast.AnnAssign))
              and any(isinstance(t, ast.Name) and t.id == "MAX_SEED"
                      for t in (node.targets if isinstance(node, ast.Assign) else [node.target]))]
    assert owners == ["ssimae.core.seeds"]


def test_the_ceiling_imports_without_torch():
    code = ("import sys; from ssimae.core.seeds import MAX_SEED; import ssimae.runs.inference_settings; "
            "print(MAX_SEED, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == [str(CEILING), "False"]


@pytest.mark.parametrize("make, message", [
    (lambda seed: TrainSettings(seed=seed), "--seed must be at most"),
    (lambda seed: check_data({"seed": seed}), "train.data.seed must be at most"),
    (lambda seed: InferenceSettings(seed=seed), "--seed must be at most"),
    (lambda seed: InpaintParams(mask_seed=seed), "inpaint mask_seed must be between 0 and"),
])
def test_every_seed_takes_the_ceiling_and_refuses_one_more(make, message):
    make(CEILING)
    with pytest.raises(SsimaeError, match=message) as error:
        make(CEILING + 1)
    assert "\n" not in str(error.value)
