"The fer_fastai console script end to end, in a temporary folder"
import json, os, subprocess, sys
from pathlib import Path
import pytest

EXE = str(Path(sys.executable).parent/'fer_fastai')

def _run(*args, cwd=None, show_warnings=False):
    env = dict(os.environ, MPLBACKEND='Agg', OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '1'))
    if show_warnings: env.pop('PYTHONWARNINGS', None)
    else: env['PYTHONWARNINGS'] = 'ignore'
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=900)

def _fresh(*args):
    "`fer_fastai ARGS` in a fresh interpreter: (exit status, output, the heavy modules it imported)"
    code = ('import sys; from fer_fastai.cli import main\ntry: rc = main(sys.argv[1:])\nexcept SystemExit as e: rc = e.code\n'
            "print('HEAVY', sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'fastai', 'torchvision', 'sklearn') "
            "or m in ('fer_fastai.core', 'fer_fastai.recipes', 'fer_fastai.data'))); sys.exit(rc)")
    r = subprocess.run([sys.executable, '-c', code, *args], capture_output=True, text=True, timeout=120)
    out, _, heavy = r.stdout.partition('HEAVY')
    return r.returncode, out + r.stderr, heavy.strip()

@pytest.fixture(scope='module')
def tiny_data(fer_tiny): return fer_tiny

@pytest.fixture(scope='module')
def trained_run(tmp_path_factory, fer_path):
    base = tmp_path_factory.mktemp('cli'); out = base/'runs'/'tiny'
    # a relative --out, as users type it; a fixed lr (no lr_find) and the small fer_vgg_s keep it short
    r = _run('train', '--arch', 'fer_vgg_s', '--epochs', '1', '--lr', '2e-3', '--max-per-class', '60', '--out', 'runs/tiny', '--no-plots',
             '--aug', 'heavy', '--erasing', '0.5', cwd=base)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out, r

def test_help_lists_every_command_without_importing_torch():
    rc, out, heavy = _fresh('--help')
    assert rc == 0 and heavy == '[]', heavy
    for name in ['train', 'evaluate', 'predict', 'cam', 'demo', 'summary', 'recipes']:
        line = next(l for l in out.splitlines() if l.strip().startswith(name + ' '))
        assert len(line.split()) > 2, line  # the command and its one-line description
    rc, out, heavy = _fresh('train', '--help')
    assert rc == 0 and heavy == '[]' and '--freeze-epochs' in out and '--label-smoothing' in out and '{default,heavy,none}' in out

def test_version():
    from fer_fastai import __version__
    rc, out, heavy = _fresh('--version')
    assert rc == 0 and out.strip() == f'fer_fastai {__version__}' and heavy == '[]'

@pytest.mark.parametrize('args,msg', [
    (['train', '--aug', 'strong'], "argument --aug: invalid choice: 'strong'"),
    (['train', '--native', 'maybe'], "argument --native: invalid choice: 'maybe'"),
    (['train', '--recipe', 'resnet9000'], "argument --recipe: invalid choice: 'resnet9000'"),
    (['train', '--erasing', '2'], 'argument --erasing: 2.0 is not a probability per face'),
    (['cam', 'face.png', '--model', 'runs/x', '--method', 'smoothgrad'], "argument --method: invalid choice: 'smoothgrad'"),
    (['predict', '--model', 'fer2013'], 'the following arguments are required: PATH'),
    (['predict', 'face.png', '--fmt', 'xml'], "argument --fmt: invalid choice: 'xml'"),
    (['predict', 'clip.mp4', '--every', '0'], 'argument --every: 0 is not 1 or more'),
    (['bogus'], "invalid choice: 'bogus'"),
])
def test_a_bad_choice_fails_before_any_heavy_import(args, msg):
    rc, out, heavy = _fresh(*args)
    assert rc == 2 and msg in out and heavy == '[]', (out, heavy)

def test_the_parser_choices_are_the_registries():
    from fer_fastai import cli
    from fer_fastai.recipes import RECIPES
    from fer_fastai.archs import HEADS
    from fer_fastai.data import AUG_PRESETS
    from fer_fastai.cam import CAM_METHODS
    assert cli.RECIPE_NAMES == tuple(RECIPES) and set(cli.HEAD_NAMES) == {'auto', *HEADS} and cli.AUG_NAMES == tuple(AUG_PRESETS)
    assert set(cli.CAM_METHOD_NAMES) == {'cam', 'occlusion', *CAM_METHODS}
    from fer_fastai.core import DEFAULT_MODEL
    assert cli.DEFAULT_MODEL == DEFAULT_MODEL

def test_options_override_the_recipe_and_quick(tiny_data, tmp_path):
    "`train --recipe scn_resnet18 --epochs 3 --quick`: 3 epochs (the recipe says 40, QUICK 4); what was not given stays the recipe's"
    out = tmp_path/'scn'
    r = _run('train', '--recipe', 'scn_resnet18', '--epochs', '3', '--quick', '--max-per-class', '10', '--lr', '1e-3', '--data', tiny_data, '--out', out)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    hist = (out/'history.csv').read_text().splitlines()
    assert len(hist) == 1 + 3 and 'fit_one_cycle(3, lr=0.001)' in r.stdout
    meta = json.loads((out/'model.json').read_text())
    tr = meta['training']
    assert (tr['epochs'], tr['max_per_class'], tr['lr'], tr['quick']) == (3, 10, 0.001, True)  # given
    assert (tr['arch'], tr['head'], tr['protocol'], tr['scn']['beta'], tr['label_smoothing']) == ('resnet18', 'scn', 'scn', 0.7, 0.)  # the recipe's
    assert (tr['size'], tr['lr_find_iters']) == (48, 50)  # QUICK's
    assert meta['head'] == 'scn' and meta['extra']['recipe'] == 'scn_resnet18' and (out/'scn_relabelled.csv').is_file()
    assert meta['metrics']['PrivateTest']['n'] == 12 * 7 and meta['metrics']['PublicTest']['n'] == 10 * 7

def test_set_and_members(tiny_data, trained_run, tmp_path):
    "--set KEY=VALUE reaches the recipe; --members gives the ensemble recipe its run folders"
    run, _ = trained_run
    r = _run('train', '--recipe', 'ensemble_tta', '--members', run, run, '--crops', '0', '--data', tiny_data, '--out', tmp_path/'ens')
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads((tmp_path/'ens'/'results.json').read_text())
    assert res['settings']['members'] == [str(run)] * 2 and res['settings']['tta_crops'] == 0 and res['settings']['tta'] is True
    assert res['reports']['PrivateTest']['n'] == 12 * 7
    r = _run('train', '--set', 'epochs=1', 'lr=0.002', 'freeze_epochs=0', '--arch', 'fer_vgg_s', '--max-per-class', '10', '--data', tiny_data,
             '--out', tmp_path/'set', '--no-plots')
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    tr = json.loads((tmp_path/'set'/'model.json').read_text())['training']
    assert (tr['epochs'], tr['lr'], tr['arch']) == (1, 0.002, 'fer_vgg_s') and len((tmp_path/'set'/'history.csv').read_text().splitlines()) == 2

def test_train_writes_a_complete_run(trained_run):
    out, r = trained_run
    for f in ['model.pth', 'model.json', 'history.csv', 'data_report.txt', 'confusion_PrivateTest.png', 'confusion_PublicTest.png', 'PrivateTest_per_class.csv']:
        assert (out/f).is_file(), f
    meta = json.loads((out/'model.json').read_text())
    assert meta['arch'] == 'fer_vgg_s' and meta['size'] == 48 and meta['n_channels'] == 1 and len(meta['mean']) == 1
    assert meta['metrics']['PrivateTest']['n'] == 3589 and meta['metrics']['PublicTest']['n'] == 60 * 6 + 56  # disgust has 56 PublicTest faces
    assert 'Body randomly initialised: no frozen stage' in r.stdout and 'PrivateTest' in r.stdout
    from fer_fastai.learner import cpu_bf16_supported
    assert meta['training']['precision'] == ('bf16' if cpu_bf16_supported() else 'float32')
    assert f"{meta['training']['precision']} training" in r.stdout
    assert (meta['training']['aug'], meta['training']['erasing']) == ('heavy', 0.5)
    assert (meta['training']['epochs'], meta['training']['label_smoothing'], meta['training']['bs']) == (1, 0.1, 64)  # the default recipe's
    from fer_fastai.recipes import hardware
    assert meta['training']['hardware'] == hardware()

def test_evaluate_reproduces_the_training_metrics(trained_run):
    out, _ = trained_run
    r = _run('evaluate', '--model', out, '--split', 'PrivateTest', '--out', out/'eval')
    assert r.returncode == 0, r.stderr[-3000:]
    acc = json.loads((out/'model.json').read_text())['metrics']['PrivateTest']['accuracy']
    assert f'accuracy {acc:.4f}' in r.stdout and (out/'eval'/'confusion_PrivateTest.png').is_file()

def test_evaluate_ensemble_and_tta(trained_run, tiny_data, tmp_path):
    "Ensembles and TTA through the command, on the small FER2013 folder (12 faces per emotion and split): the mechanics; the notebooks run them on the whole split"
    out, _ = trained_run
    meta = json.loads((out/'model.json').read_text())
    n = 7 * 12
    r = _run('evaluate', '--model', out, '--data', tiny_data, '--out', tmp_path/'one')
    assert r.returncode == 0, r.stderr[-3000:]
    one = json.loads((tmp_path/'one'/'PrivateTest_evaluation.json').read_text())
    assert one['n'] == n and one['members'] == [str(out)] and one['data'] == str(tiny_data)
    acc = one['accuracy']
    # an ensemble of two copies of one run is that run
    r = _run('evaluate', '--model', out, out, '--data', tiny_data, '--out', tmp_path/'ens')
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'an ensemble of 2 runs' in r.stdout and f'accuracy {acc:.4f}' in r.stdout
    rec = json.loads((tmp_path/'ens'/'PrivateTest_evaluation.json').read_text())
    assert rec['members'] == [str(out)] * 2 and rec['tta'] is False and abs(rec['accuracy'] - acc) < 1e-6
    # TTA: its own report beside the run's plain one, over every PrivateTest face given
    r = _run('evaluate', '--model', out, '--tta', '--crops', '2', '--data', tiny_data)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'with TTA (flip + 2 crops)' in r.stdout and f'PrivateTest_tta: {n} faces' in r.stdout
    rec = json.loads((out/'PrivateTest_tta_evaluation.json').read_text())
    assert rec['tta'] is True and rec['crops'] == 2 and rec['n'] == n and rec['wall_time_s'] > 0
    conf = (out/'PrivateTest_tta_confusion.csv').read_text().splitlines()
    assert sum(int(v) for line in conf[1:] for v in line.split(',')[1:]) == n
    # runs that know different emotions cannot be averaged
    other = tmp_path/'other'; other.mkdir()
    (other/'model.json').write_text(json.dumps(dict(meta, vocab=meta['vocab'][::-1])))
    r = _run('evaluate', '--model', out, other)
    assert r.returncode == 2 and 'know different emotions' in r.stderr and 'Traceback' not in r.stderr

def test_train_distilled_from_a_run(trained_run, tiny_data, tmp_path):
    "--teacher: the student gets the teachers' soft targets on its training faces, and the run folder records them"
    teacher, _ = trained_run
    r = _run('train', '--arch', 'fer_vgg_s', '--epochs', '1', '--max-per-class', '12', '--lr', '2e-3', '--no-plots', '--data', tiny_data,
             '--teacher', teacher, '--distill-alpha', '0.7', '--out', tmp_path/'student')
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert 'Soft targets: 1 teacher(s) on 84 training faces with flip TTA' in r.stdout and 'distilled from 1 run(s)' in r.stdout
    tr = json.loads((tmp_path/'student'/'model.json').read_text())['training']
    assert tr['teachers'] == [str(teacher)] and tr['distill']['alpha'] == 0.7 and tr['distill']['T'] == 4.
    assert 0 <= tr['distill']['agreement'] <= 1
    # the soft targets are computed in bfloat16 exactly where the CPU computes it natively (bf16='auto')
    from fer_fastai.learner import cpu_bf16_supported
    assert tr['distill']['bf16'] == cpu_bf16_supported() == ('with flip TTA, bfloat16...' in r.stdout)

def test_errors_come_without_import_noise():
    "fastai's torch.jit.script FutureWarnings (torch 2.14) are silenced on import: an error is one line on stderr"
    r = _run('evaluate', '--model', '/no/such/run', show_warnings=True)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == ["error: '/no/such/run' has no model.json: pass a run folder written by `fer_fastai train`."]

def test_refuses_an_existing_run_without_overwrite(trained_run):
    out, _ = trained_run
    r = _run('train', '--out', out, '--epochs', '1')
    assert r.returncode == 2 and '--overwrite' in r.stderr and 'Traceback' not in r.stderr

@pytest.mark.parametrize('args,msg', [
    (['train', '--arch', 'resnet19'], 'Unknown architecture'),
    (['train', '--data', '/no/such/dir'], 'does not exist'),
    (['evaluate', '--model', '/no/such/run'], 'no model.json'),
    (['train', '--arch', 'fer_vgg_m', '--pretrained'], 'no ImageNet weights'),
    (['train', '--teacher', '/no/such/run'], "--teacher '/no/such/run' has no model.json"),
    (['train', '--recipe', 'ensemble_tta', '--epochs', '3'], '--recipe ensemble_tta cannot take --epochs: it averages trained runs'),
    (['train', '--members', 'runs/a', 'runs/b'], '--recipe default cannot take --members: only an ensemble recipe'),
    (['train', '--recipe', 'scn_resnet18', '--distill-alpha', '0.5'], 'cannot take --distill-alpha: a Self-Cure Network'),
    (['train', '--set', 'epoch=3'], "['epoch'] are not recipe settings"),
])
def test_bad_input_is_one_clear_line(tmp_path, args, msg):
    r = _run(*args, '--out', tmp_path/'x') if args[0] == 'train' else _run(*args)
    assert r.returncode == 2 and msg in r.stderr and 'Traceback' not in r.stderr, r.stderr[-2000:]
    assert r.stderr.strip().startswith('error: ') and not (tmp_path/'x').exists()

def test_summary_and_recipes():
    r = _run('summary')
    assert r.returncode == 0 and 'PrivateTest' in r.stdout and 'Exact-duplicate groups' in r.stdout
    r = _run('recipes')
    assert r.returncode == 0 and all(n in r.stdout for n in ['default', 'scn_resnet18', 'ensemble_tta'])
