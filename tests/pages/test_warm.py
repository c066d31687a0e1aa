"""What the app's server warms after its first page (components.state.warm_up, store.warmup.warm_up_app): every
module a page or component imports, so the first visit of a page pays for no import."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_page_imports_are_warmed_including_lazy_ones():
    code = (
        "import sys\n"
        "from components.state import page_sources\n"
        "from store.warmup import import_modules_of\n"
        "before = {m for m in ('store.io.samples', 'components.item_view') if m in sys.modules}\n"
        "names = import_modules_of(page_sources())\n"
        "after = {m for m in ('store.io.samples', 'components.item_view') if m in sys.modules}\n"
        "import json; print(json.dumps([sorted(before), sorted(after), 'pandas' in names]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    before, after, pandas = json.loads(out.stdout.strip().splitlines()[-1])
    assert before == []  # importing components.state loads none of them
    assert after == ["components.item_view", "store.io.samples"]
    assert pandas
