"The light runtime installed as its documentation says, in a virtualenv that has no PyTorch, fastai or pandas"
import json, os, subprocess, sys, venv
from pathlib import Path
import numpy as np, pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
LIGHT_PACKAGES = ['numpy', 'opencv-python-headless<5', 'pillow', 'onnxruntime']  # what nbs/10a_runtime.ipynb and the README list

def _fail_or_skip(msg):
    if os.environ.get('CI', '').lower() == 'true': pytest.fail(msg)
    pytest.skip(msg)

@pytest.fixture(scope='module')
def light_python(tmp_path_factory):
    "A virtualenv with the four runtime packages and fer_fastai installed --no-deps"
    env = tmp_path_factory.mktemp('light')/'venv'
    venv.create(env, with_pip=True)
    py = env/'bin'/'python'
    for args in (LIGHT_PACKAGES, ['--no-deps', str(REPO)]):
        r = subprocess.run([str(py), '-m', 'pip', 'install', '-q', '--disable-pip-version-check', *args], capture_output=True, text=True)
        if r.returncode: _fail_or_skip(f'pip install {" ".join(args)} failed in a fresh virtualenv: {r.stderr[-600:]}')
    return py

def test_runtime_predicts_in_a_virtualenv_without_torch(light_python, tmp_path, fer_items):
    "`python -m fer_fastai.runtime` (and `fer_fastai_onnx`) on an export: PyTorch's boxes and probabilities, without PyTorch installed"
    pytest.importorskip('onnxruntime')
    import skimage.data
    from fer_fastai.inference import FERRecognizer, export_onnx
    missing = subprocess.run([str(light_python), '-c', "import importlib.util as u; print([m for m in ('torch', 'fastai', 'fastcore', 'pandas', "
                              "'sklearn', 'matplotlib') if u.find_spec(m)])"], capture_output=True, text=True)
    assert missing.stdout.strip() == '[]', missing.stdout + missing.stderr  # really none of the training stack
    exp = export_onnx('fer2013', tmp_path/'exp')
    (tmp_path/'photos').mkdir()
    Image.fromarray(skimage.data.astronaut()).save(tmp_path/'photos'/'astronaut.png')
    faces = fer_items[fer_items.split == 'PrivateTest'].image.iloc[::300].tolist()  # 12 pre-cropped faces
    r = subprocess.run([str(light_python), '-m', 'fer_fastai.runtime', str(exp), str(tmp_path/'photos'), '--threads', '1'],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (line,) = [json.loads(l) for l in r.stdout.splitlines()]
    want = FERRecognizer('fer2013', device='cpu').predict(tmp_path/'photos'/'astronaut.png')
    assert len(line['faces']) == len(want) == 1 and tuple(line['faces'][0]['box']) == want[0]['box']
    assert max(abs(line['faces'][0]['probs'][e] - p) for e, p in want[0]['probs'].items()) < 1e-4
    script = light_python.parent/'fer_fastai_onnx'
    r = subprocess.run([str(script), str(exp), *faces, '--no-detect'], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = np.array([[l['faces'][0]['probs'][e] for e in want[0]['probs']] for l in map(json.loads, r.stdout.splitlines())])
    ref = FERRecognizer('fer2013', device='cpu').predict_faces(faces)
    assert got.shape == (12, 7) and np.abs(got - ref).max() < 1e-4
    r = subprocess.run([str(script), str(tmp_path/'photos'), *faces[:1]], capture_output=True, text=True)
    assert r.returncode == 2 and 'has no model.onnx' in r.stderr and 'Traceback' not in r.stderr

def test_the_light_modules_import_no_training_stack():
    "core, images, faces and runtime import neither PyTorch, fastai, fastcore, pandas, scikit-learn nor matplotlib"
    heavy = ('torch', 'torchvision', 'fastai', 'fastcore', 'fastprogress', 'pandas', 'sklearn', 'matplotlib', 'scipy')
    r = subprocess.run([sys.executable, '-c', 'import sys, fer_fastai.core, fer_fastai.images, fer_fastai.faces, fer_fastai.runtime\n'
                        f'print(sorted(m for m in {heavy!r} if m in sys.modules))'], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == '[]', r.stdout + r.stderr
