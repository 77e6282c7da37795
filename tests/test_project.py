"The nbdev project itself: modules match notebooks, README matches nbs/index.ipynb"
import shutil, subprocess, sys, filecmp
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]

def test_nbdev_export_changes_nothing(tmp_path):
    work = tmp_path/'repo'
    shutil.copytree(ROOT, work, ignore=shutil.ignore_patterns('.venv', '.git', 'runs', '__pycache__', '*.egg-info', '_proc', '_docs'))
    exe = Path(sys.executable).parent/'nbdev_export'
    subprocess.run([str(exe)], cwd=work, check=True, capture_output=True)
    cmp = filecmp.dircmp(ROOT/'fer_fastai', work/'fer_fastai', ignore=['__pycache__'])
    assert not cmp.diff_files and not cmp.left_only and not cmp.right_only, (cmp.diff_files, cmp.left_only, cmp.right_only)

def test_readme_is_generated_from_index():
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'make_readme.py'), '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr

def test_learner_import_path():
    from fer_fastai.learner import fer_learner
    assert callable(fer_learner)
