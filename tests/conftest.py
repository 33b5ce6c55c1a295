import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Fusion tuned for the packaged encoder (`vfr tune`) lives in ~/.cache/vfr/fusion: tests see an empty folder,
# so a developer's own tuning never changes what they measure.
os.environ["VFR_FUSION_DIR"] = tempfile.mkdtemp(prefix="vfr-test-fusion-")
atexit.register(shutil.rmtree, os.environ["VFR_FUSION_DIR"], True)

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("VFR_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (DATA / "README.md").exists():
        pytest.fail(f"shared data not found at {DATA}; set VFR_DATA")  # never a silent skip
    return DATA


from tests.live_helpers import template_store  # noqa: E402,F401  (session fixture for live-index tests)
from tests.server_helpers import api, served_store  # noqa: E402,F401  (session fixtures for the HTTP service)
