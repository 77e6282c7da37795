"The results tool (benchmarks/results.py) and the tool that carries FER2013 to a GPU machine"
import json, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest, cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks/ is a folder of the repository, not part of the package

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

def _model_json(run, quick=False, private=0.6826, teachers=None, **training):
    "A run folder holding the model.json that `fer_fastai train` writes (weights are not needed for a row)"
    run.mkdir(parents=True)
    meta = dict(arch='fer_vgg_m', native=True, n_in=1, head='linear', vocab=['angry', 'disgust', 'fear', 'happy', 'sad', 'surprise', 'neutral'],
                size=48, n_channels=1, normalize='dataset', mean=[0.5064], std=[0.2548], fer_fastai_version='0.1.0',
                metrics={'PublicTest': dict(n=3589, accuracy=0.66648, macro_f1=0.62, balanced_accuracy=0.61, excluded=0),
                         'PrivateTest': dict(n=3589, accuracy=private, macro_f1=0.649123, balanced_accuracy=0.63, excluded=0)},
                training=dict(epochs=14, bs=64, quick=quick, lrs={'all layers': 0.002}, wall_time_s=2600.0, total_time_s=2664.61, device='cpu',
                              label_smoothing=0.1, erasing=0.0, seed=42, pretrained=False, weights=None, precision='bf16', hardware='2-core CPU',
                              teachers=teachers, distill=dict(alpha=0.9, T=4.0) if teachers else None, **training))
    (run/'model.json').write_text(json.dumps(meta, indent=2))
    return meta

def _results(*args):
    return subprocess.run([sys.executable, '-m', 'benchmarks.results', *map(str, args)], capture_output=True, text=True, cwd=ROOT)

def test_add_a_run_folder(tmp_path):
    "`add` appends the run's own numbers, numeric, mean and std apart; a second run appends below it"
    from benchmarks.results import COLUMNS, read
    _model_json(tmp_path/'fer2013_fer_vgg_m')
    csv = tmp_path/'results.csv'
    r = _results('add', tmp_path/'fer2013_fer_vgg_m', '--notes', 'the default recipe', '--results', csv, '--smoke', tmp_path/'smoke.csv')
    assert r.returncode == 0, r.stderr
    df = read(csv)
    assert list(df.columns) == COLUMNS and len(df) == 1
    row = df.iloc[0]
    assert (row['name'], row.recipe, row.evaluation, row.arch, row.n_models, row.epochs, row.hardware, row.device) == \
           ('fer2013_fer_vgg_m', 'default', 'single', 'fer_vgg_m', 1, 14, '2-core CPU', 'cpu')
    assert row.private_test_acc == 0.6826 and row.public_test_acc == 0.6665 and row.private_test_macro_f1 == 0.6491 and row.wall_time_s == 2664.6
    for c in ('public_test_acc', 'private_test_acc', 'private_test_macro_f1', 'wall_time_s', 'private_test_acc_std'):
        assert pd.api.types.is_float_dtype(df[c]), c
    assert df.private_test_acc_std.isna().all() and row.notes == 'the default recipe'
    _model_json(tmp_path/'kd', teachers=['runs/fer2013_fer_vgg_m'], private=0.6882)
    assert _results('add', tmp_path/'kd', '--results', csv).returncode == 0
    df = read(csv)
    assert len(df) == 2 and df.recipe.tolist() == ['default', 'distilled'] and 'distilled from 1 run(s) (alpha 0.9, T 4.0)' in df.notes[1]

def test_quick_runs_stay_out_of_the_results_table(tmp_path):
    from benchmarks.results import read
    _model_json(tmp_path/'quick', quick=True, private=0.4070)
    r = _results('add', tmp_path/'quick', '--results', tmp_path/'results.csv', '--smoke', tmp_path/'smoke.csv')
    assert r.returncode == 0, r.stderr
    assert not (tmp_path/'results.csv').exists() and read(tmp_path/'smoke.csv').private_test_acc.tolist() == [0.407]

def test_cross_validated_recipe_has_mean_and_std(tmp_path):
    "A k-fold recipe's results.json gives mean and std in their own columns, not a 'm ± s' string"
    from benchmarks.results import train_row
    _model_json(tmp_path/'cv')
    (tmp_path/'cv'/'results.json').write_text(json.dumps(dict(cv=dict(valid_acc=[0.5512, 0.0206], test_acc=[0.5468, 0.0069], test_macro_f1=[0.51, 0.01]))))
    row = train_row(tmp_path/'cv')
    assert (row['private_test_acc'], row['private_test_acc_std'], row['public_test_acc_std']) == (0.5468, 0.0069, 0.0206)

def test_add_eval_an_ensemble(tmp_path):
    "`add-eval` reads the two evaluation files of `fer_fastai evaluate --out` and the members' model.json"
    from benchmarks.results import read
    for m in ('a', 'b'): _model_json(tmp_path/m)
    ev = tmp_path/'ensemble_ab'; ev.mkdir()
    for split, acc in (('PublicTest', 0.70331), ('PrivateTest', 0.72637)):
        (ev/f'{split}_tta_evaluation.json').write_text(json.dumps(dict(split=split, accuracy=acc, macro_f1=0.7172, members=[str(tmp_path/'a'), str(tmp_path/'b')],
                                                                       tta=True, crops=2, wall_time_s=90.0)))
    r = _results('add-eval', ev, '--results', tmp_path/'results.csv', '--hardware', '2-core CPU')
    assert r.returncode == 0, r.stderr
    row = read(tmp_path/'results.csv').iloc[0]
    assert (row.evaluation, row.n_models, row.arch, row.epochs, row.private_test_acc, row.wall_time_s) == ('ensemble + tta', 2, 'fer_vgg_m+fer_vgg_m', '14+14', 0.7264, 180.0)

@pytest.mark.parametrize('damage,msg', [
    (lambda m: m.pop('metrics'), 'no metrics for PublicTest'),
    (lambda m: m['metrics']['PrivateTest'].update(accuracy='0.6826 ± 0.01'), 'a number between 0 and 1'),
    (lambda m: m['metrics']['PrivateTest'].update(accuracy=68.26), 'a fraction between 0 and 1'),
    (lambda m: m.pop('arch'), 'names no architecture'),
])
def test_refuses_a_malformed_run(tmp_path, damage, msg):
    meta = _model_json(tmp_path/'run'); damage(meta); (tmp_path/'run'/'model.json').write_text(json.dumps(meta))
    r = _results('add', tmp_path/'run', '--results', tmp_path/'results.csv')
    assert r.returncode == 2 and msg in r.stderr and 'Traceback' not in r.stderr
    assert not (tmp_path/'results.csv').exists()

def test_refuses_a_folder_without_model_json(tmp_path):
    r = _results('add', tmp_path, '--results', tmp_path/'results.csv')
    assert r.returncode == 2 and 'has no model.json' in r.stderr

def test_results_table_is_numeric_and_has_no_smoke_rows():
    "The committed table: every accuracy a fraction, every row a real run (quick runs live in smoke.csv)"
    from benchmarks.results import COLUMNS, EVALUATIONS, read
    df = read(ROOT/'benchmarks'/'results.csv')
    assert list(df.columns) == COLUMNS and not df.quick.any() and df.evaluation.isin(EVALUATIONS).all() and df.name.is_unique
    assert df.private_test_acc.between(0.3, 1).all() and df.public_test_acc.between(0.3, 1).all()
    assert list(read(ROOT/'benchmarks'/'smoke.csv').columns) == COLUMNS

def test_h100_rows_match_their_run_records(tmp_path):
    "The rows of the H100 `fer_fastai train` runs are what `add` reads from the model.json files those runs wrote"
    from benchmarks.results import read, train_row
    df = read(ROOT/'benchmarks'/'results.csv').set_index('name')
    files = sorted((ROOT/'benchmarks'/'gpu').glob('h100_run*/model_fer_vgg_m_er_s*.json'))  # each run's model.json, beside its session log
    for f in files:
        run = tmp_path/f.stem.replace('model_', 'h100_'); run.mkdir(); (run/'model.json').write_text(f.read_text())
        t = json.loads(f.read_text())['training']
        assert (t['device'], t['precision'], t['bs'], t['erasing']) == ('cuda', 'bf16', 64, 0.5)
        want, got = train_row(run), df.loc[run.name]
        for c in ('arch', 'epochs', 'device', 'wall_time_s', 'public_test_acc', 'private_test_acc', 'private_test_macro_f1'):
            assert str(got[c]) == str(want[c]), (run.name, c)  # epochs is text in the table: ensembles list theirs (14+14)
        assert got.hardware.startswith('NVIDIA H100')
    assert len(files) == 8
