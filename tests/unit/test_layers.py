"""The package's layers: no import runs from a lower layer to a higher one (or between two
packages of one layer), and no import circle (tests/helpers/layers.py holds the table)."""
from pathlib import Path

import ssimae
from tests.helpers.layers import LAYERS, package_of, read_sources, violations

PACKAGE = Path(ssimae.__file__).parent


def test_no_import_runs_up_a_layer_and_there_is_no_circle():
    assert violations(read_sources(PACKAGE)) == []


def test_every_subpackage_has_a_row_and_the_reserved_ones_are_there():
    subpackages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert subpackages <= set(LAYERS)
    assert {"serve", "cluster"} <= set(LAYERS) and LAYERS["serve"][0] < LAYERS["commands"][0]


def test_the_check_fails_on_a_back_import_and_on_a_circle():
    sources = read_sources(PACKAGE)
    back = dict(sources, **{"ssimae.core.bad": "def f():\n    from ssimae.cli.main import main\n"})
    assert violations(back) == ["ssimae.core.bad:2 imports ssimae.cli.main (cli, layer 10) from core (layer 2)"]
    sibling = dict(sources, **{"ssimae.training.bad": "from ssimae.inference.detector import Detector\n"})
    assert "from training (layer 6)" in violations(sibling)[0]
    serve = dict(sources, **{"ssimae.serve": "", "ssimae.serve.app": "from ssimae.training import loop\n"
                                                                     "from ssimae.inference import detector\n"})
    assert violations(serve) == ["ssimae.serve.app:1 imports ssimae.training.loop (training, layer 6) "
                                 "from serve (layer 8)"]
    circle = dict(sources, **{"ssimae.core.a": "from ssimae.core import b\n", "ssimae.core.b": "import ssimae.core.a\n"})
    assert violations(circle) == ["import circle: ssimae.core.a -> ssimae.core.b -> ssimae.core.a"]
    unknown = dict(sources, **{"ssimae.extras": "", "ssimae.extras.x": ""})
    assert violations(unknown)[0].startswith("ssimae.extras: package 'extras' is not in the layer table")


def test_package_of_names_the_layer_rows():
    assert package_of("ssimae.core.ssim") == "core" and package_of("ssimae.errors") == "base"
    assert package_of("ssimae") == "facade" and package_of("ssimae.runtime") == "facade"
