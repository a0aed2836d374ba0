import subprocess
import sys

from conftest import ROOT


def test_core_imports_without_gradio():
    code = ("import sys, prompt_lab, prompt_lab.cli, prompt_lab.compare, prompt_lab.runlog.store, prompt_lab.answers.scoring, "
            "prompt_lab.models.hf, prompt_lab.models.registry; "
            "print('gradio' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    gradio_loaded, torch_loaded = out.stdout.split()
    assert gradio_loaded == "False"
    # torch is only imported when a model is loaded, so the CLI's `templates` and `runs` start fast
    assert torch_loaded == "False"


def test_only_ui_imports_gradio():
    offenders = [p for p in (ROOT / "prompt_lab").rglob("*.py")
                 if "ui" not in p.relative_to(ROOT / "prompt_lab").parts[:1] and "import gradio" in p.read_text()]
    assert offenders == []
