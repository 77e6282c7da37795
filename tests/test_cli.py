"The fer_fastai console script end to end, in a temporary folder"
import json, os, subprocess, sys
from pathlib import Path
import pytest

EXE = str(Path(sys.executable).parent/'fer_fastai')

def _run(*args, cwd=None, show_warnings=False):
    env = dict(os.environ, MPLBACKEND='Agg')
    if show_warnings: env.pop('PYTHONWARNINGS', None)
    else: env['PYTHONWARNINGS'] = 'ignore'
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=900)

@pytest.fixture(scope='module')
def trained_run(tmp_path_factory, fer_path):
    base = tmp_path_factory.mktemp('cli'); out = base/'runs'/'tiny'
    # a relative --out, as users type it
    r = _run('train', '--arch', 'resnet18', '--size', '48', '--epochs', '1', '--bs', '64', '--max-per-class', '60', '--out', 'runs/tiny', '--no-plots',
             '--aug', 'heavy', '--erasing', '0.5', cwd=base)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out, r

def test_train_writes_a_complete_run(trained_run):
    out, r = trained_run
    for f in ['model.pth', 'model.json', 'history.csv', 'data_report.txt', 'confusion_PrivateTest.png', 'confusion_PublicTest.png', 'PrivateTest_per_class.csv']:
        assert (out/f).is_file(), f
    meta = json.loads((out/'model.json').read_text())
    assert meta['arch'] == 'resnet18' and meta['size'] == 48 and meta['n_channels'] == 1 and len(meta['mean']) == 1
    assert meta['metrics']['PrivateTest']['n'] == 3589 and meta['metrics']['PublicTest']['n'] == 60 * 6 + 56  # disgust has 56 PublicTest faces
    assert 'Body randomly initialised: no frozen stage' in r.stdout and 'PrivateTest' in r.stdout
    from fer_fastai.learner import cpu_bf16_supported
    assert meta['training']['precision'] == ('bf16' if cpu_bf16_supported() else 'float32')
    assert f"{meta['training']['precision']} training" in r.stdout
    assert (meta['training']['aug'], meta['training']['erasing']) == ('heavy', 0.5)
    from fer_fastai.recipes import hardware
    assert meta['training']['hardware'] == hardware()  # the results table's hardware column reads it

def test_evaluate_reproduces_the_training_metrics(trained_run):
    out, _ = trained_run
    r = _run('evaluate', '--model', out, '--split', 'PrivateTest', '--out', out/'eval')
    assert r.returncode == 0, r.stderr[-3000:]
    acc = json.loads((out/'model.json').read_text())['metrics']['PrivateTest']['accuracy']
    assert f'accuracy {acc:.4f}' in r.stdout and (out/'eval'/'confusion_PrivateTest.png').is_file()

def test_evaluate_ensemble_and_tta(trained_run, tmp_path):
    out, _ = trained_run
    meta = json.loads((out/'model.json').read_text())
    acc = meta['metrics']['PrivateTest']['accuracy']
    # an ensemble of two copies of one run is that run
    r = _run('evaluate', '--model', out, out, '--out', tmp_path/'ens')
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'an ensemble of 2 runs' in r.stdout and f'accuracy {acc:.4f}' in r.stdout
    rec = json.loads((tmp_path/'ens'/'PrivateTest_evaluation.json').read_text())
    assert rec['members'] == [str(out)] * 2 and rec['tta'] is False and abs(rec['accuracy'] - acc) < 1e-6
    # TTA: its own report beside the run's plain one, over every PrivateTest face
    r = _run('evaluate', '--model', out, '--tta', '--crops', '2')
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'with TTA (flip + 2 crops)' in r.stdout and 'PrivateTest_tta: 3589 faces' in r.stdout
    assert f'each run alone without TTA (model.json): tiny {acc:.4f}' in r.stdout
    rec = json.loads((out/'PrivateTest_tta_evaluation.json').read_text())
    assert rec['tta'] is True and rec['crops'] == 2 and rec['n'] == 3589 and rec['wall_time_s'] > 0
    conf = (out/'PrivateTest_tta_confusion.csv').read_text().splitlines()
    assert sum(int(v) for line in conf[1:] for v in line.split(',')[1:]) == 3589
    # runs that know different emotions cannot be averaged
    other = tmp_path/'other'; other.mkdir()
    (other/'model.json').write_text(json.dumps(dict(meta, vocab=meta['vocab'][::-1])))
    r = _run('evaluate', '--model', out, other)
    assert r.returncode == 2 and 'know different emotions' in r.stderr and 'Traceback' not in r.stderr

def test_train_distilled_from_a_run(trained_run, tmp_path):
    "--teacher: the student gets the teachers' soft targets on its training faces, and the run folder records them"
    teacher, _ = trained_run
    r = _run('train', '--arch', 'fer_vgg_s', '--epochs', '1', '--max-per-class', '60', '--lr', '2e-3', '--no-plots',
             '--teacher', teacher, '--distill-alpha', '0.7', '--out', tmp_path/'student')
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert 'Soft targets: 1 teacher(s) on 420 training faces with flip TTA' in r.stdout and 'distilled from 1 run(s)' in r.stdout
    tr = json.loads((tmp_path/'student'/'model.json').read_text())['training']
    assert tr['teachers'] == [str(teacher)] and tr['distill']['alpha'] == 0.7 and tr['distill']['T'] == 4.
    assert 0 <= tr['distill']['agreement'] <= 1
    # the soft targets are computed in bfloat16 exactly where the CPU computes it natively (bf16='auto')
    from fer_fastai.learner import cpu_bf16_supported
    assert tr['distill']['bf16'] == cpu_bf16_supported() == ('with flip TTA, bfloat16...' in r.stdout)
    # benchmarks/add_train_run.py labels the row as distilled and names the teachers
    r = subprocess.run([sys.executable, Path(__file__).parents[1]/'benchmarks'/'add_train_run.py', tmp_path/'student', '--results', tmp_path/'r.csv'],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    row = (tmp_path/'r.csv').read_text().splitlines()[1]
    assert row.startswith('distilled (fer_fastai train --teacher),fer_vgg_s,') and f'distilled from {teacher} (alpha 0.7, T 4.0)' in row
    from fer_fastai.recipes import hardware
    import pandas as pd
    assert pd.read_csv(tmp_path/'r.csv').hardware[0] == f'{hardware()}, device cpu'  # from the run's model.json
    # a run made elsewhere whose model.json predates the hardware record: --hardware says what it trained on
    meta_f = tmp_path/'student'/'model.json'; m = json.loads(meta_f.read_text()); del m['training']['hardware']; meta_f.write_text(json.dumps(m))
    r = subprocess.run([sys.executable, Path(__file__).parents[1]/'benchmarks'/'add_train_run.py', tmp_path/'student', '--results', tmp_path/'r2.csv',
                        '--hardware', 'NVIDIA H100 80GB HBM3'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert pd.read_csv(tmp_path/'r2.csv').hardware[0] == 'NVIDIA H100 80GB HBM3, device cpu'

def test_errors_come_without_import_noise():
    "fastai's torch.jit.script FutureWarnings (torch 2.14) are silenced on import: an error is one line on stderr"
    r = _run('evaluate', '--model', '/no/such/run', show_warnings=True)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == ["error: '/no/such/run' has no model.json: pass a run folder written by `fer_fastai train`."]

def test_refuses_an_existing_run_without_overwrite(trained_run):
    out, _ = trained_run
    r = _run('train', '--out', out, '--epochs', '1')
    assert r.returncode == 2 and '--overwrite' in r.stderr and 'Traceback' not in r.stderr

@pytest.mark.parametrize('args,msg', [
    (['train', '--arch', 'resnet19'], 'Supported: resnet18'),
    (['train', '--data', '/no/such/dir'], 'does not exist'),
    (['evaluate', '--model', '/no/such/run'], 'no model.json'),
    (['train', '--native', 'maybe'], '--native must be'),
    (['train', '--precision', 'half'], '--precision must be'),
    (['train', '--aug', 'strong'], '--aug must be one of default, heavy, none'),
    (['train', '--erasing', '2'], '--erasing is a probability per face'),
    (['train', '--arch', 'fer_vgg_m', '--pretrained'], 'no ImageNet weights'),
    (['train', '--teacher', '/no/such/run'], "--teacher '/no/such/run' has no model.json"),
])
def test_bad_input_is_one_clear_line(tmp_path, args, msg):
    r = _run(*args, '--out', tmp_path/'x') if args[0] == 'train' else _run(*args)
    assert r.returncode == 2 and msg in r.stderr and 'Traceback' not in r.stderr, r.stderr[-2000:]

def test_summary_and_help():
    r = _run('summary')
    assert r.returncode == 0 and 'PrivateTest' in r.stdout and 'Exact-duplicate groups' in r.stdout
    assert _run('--help').returncode == 0 and 'train' in _run('--help').stdout
    assert _run('bogus').returncode == 2
