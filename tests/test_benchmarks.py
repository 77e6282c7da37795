"The benchmark tools that carry FER2013 to a GPU machine and turn its results into rows"
import json, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest, cv2

ROOT = Path(__file__).resolve().parents[1]

def _face_tree(root, n, seed=0):
    "A FER2013-style folder of `n` gray 48x48 PNGs; returns {relative path: pixels}"
    rng = np.random.default_rng(seed); faces = {}
    for i in range(n):
        split, prefix = [('train', 'Training'), ('test', 'PublicTest'), ('test', 'PrivateTest')][i % 3]
        rel = f"{split}/{['happy', 'sad', 'angry'][i % 7 % 3]}/{prefix}_{i:06d}.png"
        img = rng.integers(0, 256, (48, 48), dtype=np.uint8)
        (root/rel).parent.mkdir(parents=True, exist_ok=True); cv2.imwrite(str(root/rel), img); faces[rel] = img
    return faces

def _run(*args):
    r = subprocess.run([sys.executable, str(ROOT/'benchmarks'/'pack_fer2013.py'), *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r

def test_pack_unpack_round_trip(tmp_path):
    "Every pixel and every file name come back, across more than one mosaic (4,096 faces each)"
    faces = _face_tree(tmp_path/'src', 4100)
    _run('pack', tmp_path/'src', tmp_path/'packed')
    assert len(list((tmp_path/'packed').glob('tile_*.webp'))) == 2
    _run('unpack', tmp_path/'packed', tmp_path/'dst')
    got = sorted(p.relative_to(tmp_path/'dst').as_posix() for p in (tmp_path/'dst').rglob('*.png'))
    assert got == sorted(faces)
    for rel in list(faces)[::97] + [list(faces)[-1]]:
        assert np.array_equal(cv2.imread(str(tmp_path/'dst'/rel), cv2.IMREAD_GRAYSCALE), faces[rel]), rel

def test_unpack_refuses_damaged_data(tmp_path):
    _face_tree(tmp_path/'src', 10)
    _run('pack', tmp_path/'src', tmp_path/'packed')
    (tmp_path/'packed'/'sha256.txt').write_text('0' * 64)
    r = subprocess.run([sys.executable, str(ROOT/'benchmarks'/'pack_fer2013.py'), 'unpack', tmp_path/'packed', tmp_path/'dst'],
                       capture_output=True, text=True)
    assert r.returncode != 0 and 'checksum mismatch' in (r.stdout + r.stderr)

def test_gpu_session_rows_match_its_results():
    "The results.csv rows of the H200 session are the numbers in its results.json"
    sys.path.insert(0, str(ROOT/'benchmarks'))
    from add_gpu_session import rows
    folder = ROOT/'benchmarks'/'gpu'/'h200_run1'
    res = json.loads((folder/'results.json').read_text())['phases']
    got = pd.DataFrame(rows(folder))
    vgg = got[(got.recipe == 'default (GPU session)') & (got.arch == 'vgg16_bn')].iloc[0]
    assert vgg.private_test_acc == res['train_vgg16_bn']['PrivateTest']['accuracy'] and vgg.epochs == res['train_vgg16_bn']['epochs']
    csv = pd.read_csv(ROOT/'benchmarks'/'results.csv')
    mine = csv[csv.notes.astype(str).str.contains('h200_run1', regex=False)]
    assert set(pd.to_numeric(mine.private_test_acc).round(4)) == set(got.private_test_acc.round(4))  # k-fold rows hold "m ± s" strings

def test_tta_views_settings_are_predict_tta(fer_items, tmp_path):
    "Each '--crops N' row of benchmarks/tta_views.py averages the views that predict_tta(flip=True, crops=N) averages"
    import torch
    sys.path.insert(0, str(ROOT/'benchmarks'))
    from tta_views import view_probs, settings
    from fer_fastai.data import fer_dataloaders
    from fer_fastai.learner import fer_learner, save_model, load_fer_learner
    from fer_fastai.models import predict_tta
    dls = fer_dataloaders(fer_items, max_per_class=20, bs=32, seed=0, verbose=False)
    save_model(fer_learner(dls, 'fer_vgg_s', pretrained=False), tmp_path/'run')
    learn = load_fer_learner(tmp_path/'run', data=dls.items)
    faces = dls.test_items.groupby('label').head(5)
    P, Y = view_probs(learn, faces)
    assert P.shape == (len(faces), 18, 7) and torch.equal(Y, torch.tensor([list(dls.vocab).index(l) for l in faces.label]))
    for n in (0, 2, 4, 8):
        want, _ = predict_tta(learn, learn.dls.test_dl(faces, with_labels=True), flip=True, crops=n)
        assert torch.allclose(P[:, settings()[f'mirror + {n} crops (--crops {n})' if n else 'mirror (--crops 0)']].mean(1), want, atol=1e-5)

def test_h100_cli_rows_match_their_run_records():
    "The results.csv rows of the H100 `fer_fastai train` runs are the numbers in the model.json files those runs wrote"
    csv = pd.read_csv(ROOT/'benchmarks'/'results.csv')
    n = 0
    for session in ('h100_run3', 'h100_run4'):
        for f in sorted((ROOT/'benchmarks'/'gpu'/session).glob('model_fer_vgg_m_er_s*.json')):
            m = json.loads(f.read_text()); t = m['training']
            row = csv[csv.notes.astype(str).str.contains(f"--seed {t['seed']} --out runs/h100_fer_vgg_m_er_s{t['seed']} (benchmarks/gpu_cli_session.py, {session};", regex=False)]
            assert len(row) == 1, f.name
            row = row.iloc[0]
            assert (t['device'], t['precision'], t['bs'], t['erasing']) == ('cuda', 'bf16', 64, 0.5)
            assert int(row.epochs) == t['epochs'] and row.hardware.startswith('NVIDIA H100') and row.wall_time_s == round(t['total_time_s'], 1)
            assert float(row.private_test_acc) == round(m['metrics']['PrivateTest']['accuracy'], 4)
            assert float(row.public_test_acc) == round(m['metrics']['PublicTest']['accuracy'], 4)
            n += 1
    assert n == 8
