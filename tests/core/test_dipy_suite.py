"""DIPY's own RUMBA-SD model tests, run against :class:`rumba_bids.core.RumbaSDModel`.

The test module ``dipy/reconst/tests/test_rumba.py`` is read from the installed
DIPY at test time (never copied here); only its import of ``RumbaSDModel`` is
replaced by ours, then each model test runs as one case below.
"""

import importlib.util
import types
from pathlib import Path

import pytest

#: DIPY's model tests (DIPY 1.12's ``test_rumba.py``), each run against our model.
MODEL_TESTS = (
    "test_rumba",
    "test_predict",
    "test_recursive_rumba",
    "test_multishell_rumba",
    "test_mvoxel_rumba",
    "test_global_fit",
    "test_mvoxel_global_fit",
)
#: Tests of that module that are not about the model, with the reason they are left out.
EXCLUDED = {
    "test_generate_kernel": "tests DIPY's internal generate_kernel(), not RumbaSDModel",
}
DIPY_IMPORT = "from dipy.reconst.rumba import RumbaSDModel, generate_kernel\n"
OUR_IMPORT = (
    "from rumba_bids.core import RumbaSDModel\nfrom dipy.reconst.rumba import generate_kernel\n"
)


def _dipy_test_file() -> Path | None:
    spec = importlib.util.find_spec("dipy")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "reconst" / "tests" / "test_rumba.py"


def load_dipy_suite() -> types.ModuleType:
    """DIPY's test_rumba.py compiled as a module, with our RumbaSDModel imported."""
    path = _dipy_test_file()
    if path is None:
        pytest.skip("DIPY is not installed (pip install '.[test]'): DIPY's test suite not run")
    if not path.is_file():
        pytest.skip(f"this DIPY installation ships no test files ({path} is missing)")
    source = path.read_text()
    assert source.count(DIPY_IMPORT) == 1, f"DIPY's import line changed in {path}"
    module = types.ModuleType("dipy_test_rumba_on_rumba_bids")
    module.__file__ = str(path)
    exec(compile(source.replace(DIPY_IMPORT, OUR_IMPORT), str(path), "exec"), module.__dict__)
    return module


@pytest.fixture(scope="module")
def dipy_suite():
    return load_dipy_suite()


def test_the_suite_uses_our_model_and_lists_every_dipy_test(dipy_suite):
    from rumba_bids.core import RumbaSDModel

    assert dipy_suite.RumbaSDModel is RumbaSDModel
    found = {name for name in vars(dipy_suite) if name.startswith("test_")}
    assert found == set(MODEL_TESTS) | set(EXCLUDED), "DIPY's test_rumba.py gained or lost tests"


@pytest.mark.parametrize("name", MODEL_TESTS)
def test_dipy_model_test_passes_on_our_model(dipy_suite, name):
    getattr(dipy_suite, name)()
