import subprocess
import sys


def test_core_imports_no_io_or_pipeline_packages():
    code = (
        "import sys, rumba_bids.core, rumba_bids.core.phantoms;"
        "bad = [m for m in ('nipype', 'nibabel', 'bids', 'matplotlib') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
