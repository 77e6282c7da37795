"Faults during a run: Ctrl-C and SIGTERM keep a loadable best model, a second Ctrl-C stops at once, a full disk leaves the old files whole"
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest

EXE = str(Path(sys.executable).parent/'fer_fastai')

def _train(data, out, *args):
    "`fer_fastai train` as a user starts it, its output unbuffered so that the test can follow it"
    env = dict(os.environ, MPLBACKEND='Agg', OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore', PYTHONUNBUFFERED='1')
    return subprocess.Popen([EXE, 'train', '--data', str(data), '--arch', 'fer_vgg_s', '--lr', '2e-3', '--bs', '16', '--no-plots', '--out', str(out), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

def _wait_for(p, text):
    "Read `p`'s output until a line holds `text`; the lines read"
    lines = []
    for line in p.stdout:
        lines.append(line)
        if text in line: return lines
    pytest.fail(f'the run ended before printing {text!r}: {"".join(lines)[-2000:]} {p.stderr.read()[-2000:]}')

@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_a_signal_after_the_first_epoch_keeps_a_loadable_best_model(fer_tiny, tmp_path, sig):
    out = tmp_path/'run'
    p = _train(fer_tiny, out, '--epochs', '300')
    try:
        _wait_for(p, 'Better model found at epoch 0')  # the first epoch is done and checkpointed
        p.send_signal(sig)
        rest, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None: p.kill()
    assert p.returncode == 130, (p.returncode, rest[-2000:], err[-2000:])
    assert 'Traceback' not in err, err[-3000:]
    assert 'Interrupted' in rest and str(out) in rest, rest[-2000:]
    cfg = json.loads((out/'model.json').read_text())
    i = cfg['training']['interrupted']
    assert i['signal'] == sig.name and i['stage'] == 'all layers' and 1 <= i['epochs_completed'] < 300, i
    assert cfg['training']['stopped'] == f'interrupted ({sig.name})'
    assert json.loads((out/'results.json').read_text())['interrupted'] == i
    # the folder is a complete run: it loads and scores what its record says
    from fer_fastai.learner import load_fer_learner
    from fer_fastai.evaluate import evaluate
    rep = evaluate(load_fer_learner(out, data=fer_tiny, verbose=False), 'PublicTest')
    assert abs(rep.accuracy - cfg['metrics']['PublicTest']['accuracy']) < 1e-6

def test_a_second_ctrl_c_stops_at_once(fer_tiny, tmp_path):
    out = tmp_path/'run'
    p = _train(fer_tiny, out, '--epochs', '300')
    try:
        _wait_for(p, 'Better model found at epoch 0')
        p.send_signal(signal.SIGINT); time.sleep(0.2); p.send_signal(signal.SIGINT)
        rest, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None: p.kill()
    assert p.returncode == 130 and 'interrupted' in err and 'Traceback' not in err, (p.returncode, err[-3000:])
    assert not (out/'model.json').exists()  # stopped before writing: no half-written run folder

def test_a_full_disk_leaves_the_previous_model_whole(tmp_path, monkeypatch):
    "save_run writes through temporary files: a write that fails half-way leaves the old model.pth and model.json, and says what happened"
    import torch
    from fer_fastai.core import FERDataError
    from fer_fastai.runs import save_run, read_run, load_run_model, RunConfig
    from fer_fastai.archs import create_fer_model
    model = create_fer_model('fer_vgg_s', 7, 1, False, True, 'linear')
    cfg = RunConfig(arch='fer_vgg_s', vocab=['angry', 'disgust', 'fear', 'happy', 'sad', 'surprise', 'neutral'], size=48, n_channels=1, native=True,
                    head='linear', mean=[0.5], std=[0.25])
    save_run(tmp_path, model, cfg)
    before = {f: (tmp_path/f).read_bytes() for f in ('model.pth', 'model.json')}
    real_save = torch.save
    def full_disk(obj, f, *a, **k):
        Path(f).write_bytes(b'PK\x03\x04 half a checkpoint')
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(torch, 'save', full_disk)
    with torch.no_grad(): next(model.parameters()).add_(1.)
    with pytest.raises(FERDataError, match='No space left on device'): save_run(tmp_path, model, cfg)
    monkeypatch.setattr(torch, 'save', real_save)
    assert {f: (tmp_path/f).read_bytes() for f in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ['model.json', 'model.pth']  # no temporary file left behind
    load_run_model(tmp_path)  # still loads

def _cli(*args):
    env = dict(os.environ, MPLBACKEND='Agg', OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, env=env, timeout=600)

def test_overwrite_removes_only_what_fer_fastai_wrote(fer_tiny, tmp_path):
    out = tmp_path/'run'
    tiny = ['train', '--data', fer_tiny, '--arch', 'fer_vgg_s', '--epochs', '1', '--lr', '2e-3', '--no-plots', '--out', out]
    r = _cli(*tiny); assert r.returncode == 0, r.stderr[-2000:]
    r = _cli('evaluate', '--model', out, '--data', fer_tiny, '--split', 'PublicTest', '--tta'); assert r.returncode == 0, r.stderr[-2000:]
    assert (out/'PublicTest_tta_evaluation.json').exists()
    mine = {'notes.txt': 'my notes', 'lr_find_mine.png': 'named like a run file', 'models/best.pth': 'my checkpoint'}
    for k, v in mine.items(): (out/k).parent.mkdir(exist_ok=True); (out/k).write_text(v)
    r = _cli(*tiny, '--overwrite'); assert r.returncode == 0, r.stderr[-2000:]
    assert {k: (out/k).read_text() for k in mine} == mine  # the user's files stay
    assert not (out/'PublicTest_tta_evaluation.json').exists()  # the previous model's evaluation went with it
    listed = json.loads((out/'.fer_fastai_files.json').read_text())['written']
    assert {'model.pth', 'model.json', 'history.csv', 'results.json'} <= set(listed) and not {'notes.txt', 'models', 'lr_find_mine.png'} & set(listed)

def test_overwrite_leaves_a_run_of_an_older_version_alone(fer_tiny, tmp_path):
    out = tmp_path/'old'; out.mkdir()
    (out/'model.json').write_text('{"arch": "fer_vgg_s"}'); (out/'history.csv').write_text('epoch\n')  # no manifest: written before it existed
    r = _cli('train', '--data', fer_tiny, '--arch', 'fer_vgg_s', '--epochs', '1', '--lr', '2e-3', '--out', out, '--overwrite')
    assert r.returncode == 2 and 'older version' in r.stderr and 'Traceback' not in r.stderr, r.stderr[-2000:]
    assert (out/'model.json').read_text() == '{"arch": "fer_vgg_s"}'

def test_outputs_with_one_stem_get_their_own_files(fer_path, tmp_path):
    "Two images named alike (same.png, same.jpg) give two overlays; two predict calls into one folder at the same time give two tables"
    from PIL import Image
    from fer_fastai.cam import save_cams
    src = sorted((fer_path/'test'/'happy').glob('PublicTest_*'))[:2]
    imgs = tmp_path/'imgs'; imgs.mkdir()
    Image.open(src[0]).save(imgs/'same.png'); Image.open(src[1]).convert('RGB').save(imgs/'same.jpg')
    written, failed = save_cams('fer2013', imgs, out=tmp_path/'cams', device='cpu')
    assert not failed and len(written) == 2 and len(set(written)) == 2 and all(Path(w).stat().st_size > 0 for w in written)
    env = dict(os.environ, MPLBACKEND='Agg', OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    calls = [subprocess.Popen([EXE, 'predict', str(imgs/'same.png'), '--no-detect', '--out', str(tmp_path/'pred')], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    for p in calls: p.communicate(timeout=300); assert p.returncode == 0
    tables = sorted(f.name for f in (tmp_path/'pred').glob('images*.csv'))
    assert tables == ['images.csv', 'images_1.csv'], tables
    import pandas as pd
    assert all(len(pd.read_csv(tmp_path/'pred'/t)) == 1 for t in tables)

def test_an_interrupted_predict_keeps_the_rows_done(fer_path, tmp_path):
    "Ctrl-C in the middle of a long predict call: the table holds a row for every image predicted before it"
    imgs = sorted((fer_path/'test'/'happy').glob('PublicTest_*'))[:600]
    out = tmp_path/'pred'
    env = dict(os.environ, MPLBACKEND='Agg', OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore', PYTHONUNBUFFERED='1')
    p = subprocess.Popen([EXE, 'predict', *map(str, imgs), '--no-detect', '--out', str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _wait_for(p, imgs[0].name + ':')  # the first image is done
        p.send_signal(signal.SIGINT)
        rest, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None: p.kill()
    assert p.returncode == 130 and 'Traceback' not in err, (p.returncode, err[-2000:])
    import pandas as pd
    df = pd.read_csv(out/'images.csv')
    assert 1 <= len(df) < len(imgs) and 'image row(s) done so far' in err, (len(df), err[-500:])
    assert list(df.file) == [str(f) for f in imgs[:len(df)]]  # in order, none lost

def test_a_killed_predict_keeps_whole_rows_of_the_images_done(fer_path, tmp_path):
    "SIGKILL (no handler runs) in the middle of a long predict call: the table, rewritten atomically as it grows, holds whole rows of the images done, in order"
    import pandas as pd
    imgs = sorted((fer_path/'test').glob('*/PublicTest_*'))[:1500]
    out, table = tmp_path/'pred', tmp_path/'pred'/'images.csv'
    env = dict(os.environ, MPLBACKEND='Agg', OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    p = subprocess.Popen([EXE, 'predict', *map(str, imgs), '--no-detect', '--out', str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        t0 = time.time()
        while not (table.is_file() and table.stat().st_size > 0) and p.poll() is None and time.time() - t0 < 120: time.sleep(0.1)
        time.sleep(1.5)  # a few more rewrites
        assert p.poll() is None, 'predict ended before it could be killed'
        p.kill(); p.wait(30)
    finally:
        if p.poll() is None: p.kill()
    df = pd.read_csv(table)
    assert 1 <= len(df) < len(imgs), len(df)
    assert list(df.file) == [str(f) for f in imgs[:len(df)]] and df.filter(like='p_').notna().all().all() and df.emotion.notna().all()

def test_names_too_long_for_the_file_system_are_shortened(fer_path, tmp_path):
    "An input whose name is as long as allowed: its annotated image, overlay and table rows are still written, under a shortened name"
    import shutil, pandas as pd
    src = sorted((fer_path/'test'/'happy').glob('PublicTest_*'))[0]
    d = tmp_path/'faces'; d.mkdir()
    long = d/('face_' + 'x' * 245 + '.png')  # 254 bytes: allowed, but not with _annotated.jpg or _gradcam.png added
    shutil.copy(src, long)
    r = _cli('predict', long, '--no-detect', '--out', tmp_path/'pred')
    assert r.returncode == 0 and 'Traceback' not in r.stderr, r.stderr[-2000:]
    assert pd.read_csv(tmp_path/'pred'/'images.csv').file.tolist() == [str(long)]
    ann = list((tmp_path/'pred').glob('face_x*_annotated.jpg'))
    assert len(ann) == 1 and len(ann[0].name.encode()) <= 255 and ann[0].stat().st_size > 0
    r = _cli('cam', d, '--out', tmp_path/'cams', '--device', 'cpu')
    assert r.returncode == 0 and 'Traceback' not in r.stderr, r.stderr[-2000:]
    assert [len(f.name.encode()) <= 255 and f.stat().st_size > 0 for f in (tmp_path/'cams').glob('face_x*.png')] == [True]

def test_a_planted_pickle_does_not_run_when_a_training_diverges(fer_tiny, tmp_path):
    "A pickle planted as OUT/models/best.pth, then `fer_fastai train --out OUT --lr 1e30`: the NaN message, status 2, and the pickle's code never runs"
    import pickle
    marker, out = tmp_path/'PWNED', tmp_path/'run'
    class Evil:
        def __reduce__(self): return (open, (str(marker), 'w'))
    (out/'models').mkdir(parents=True); (out/'models'/'best.pth').write_bytes(pickle.dumps(Evil()))
    r = _cli('train', '--data', fer_tiny, '--arch', 'fer_vgg_s', '--epochs', '1', '--lr', '1e30', '--no-plots', '--out', out)
    assert r.returncode == 2 and 'NaN' in r.stderr and 'Traceback' not in r.stderr, (r.returncode, r.stderr[-2000:])
    assert not marker.exists() and (out/'models'/'best.pth').read_bytes() == pickle.dumps(Evil())  # the user's file left as it was

def test_a_run_that_diverges_after_a_good_epoch_keeps_it(fer_tiny, tmp_path, monkeypatch, capsys):
    "The loss turns NaN in the second epoch (inputs poisoned, as a too-high lr would): status 2 and a message, and the run folder holds epoch 0's model, loadable, its record saying `diverged`"
    import torch
    from fer_fastai import train as T
    from fer_fastai.cli import main
    from fer_fastai.runs import load_run_model
    def poison(self):
        if self.training and self.epoch == 1: self.learn.xb = (self.xb[0] * float('nan'),)
    monkeypatch.setattr(T._NaNWatch, 'before_batch', poison, raising=False)
    out = tmp_path/'run'
    rc = main(['train', '--data', str(fer_tiny), '--arch', 'fer_vgg_s', '--epochs', '3', '--lr', '2e-3', '--bs', '16', '--no-plots', '--out', str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and 'NaN in training' in err and 'holds the best model before it' in err, err[-2000:]
    rec = json.loads((out/'model.json').read_text())
    assert rec['training']['diverged'] == dict(where='in training', stage='all layers', lr='0.002', epochs_completed=1), rec['training'].get('diverged')
    assert json.loads((out/'results.json').read_text())['diverged']['epochs_completed'] == 1
    model, config = load_run_model(out, 'cpu')
    assert all(torch.isfinite(p).all() for p in model.state_dict().values())
    assert main(['evaluate', '--model', str(out), '--data', str(fer_tiny), '--split', 'PublicTest']) == 0

def _read_only(ro:Path):
    "Make folder `ro`; a function that turns a command into one that runs with `ro` read-only: mode 0555 for a user; for root, whom modes do not stop, a read-only tmpfs mounted there in a private mount namespace"
    ro.mkdir()
    if os.geteuid() != 0:
        ro.chmod(0o555); return lambda args: args
    if subprocess.run(['unshare', '-m', 'true'], capture_output=True).returncode != 0: pytest.skip('root without mount namespaces: no read-only folder to test with')
    return lambda args: ['unshare', '-m', 'sh', '-c', f'mount -t tmpfs -o ro tmpfs "{ro}" && exec "$@"', 'sh', *args]

@pytest.mark.parametrize('cmd', ['train', 'predict', 'cam', 'export'])
def test_an_output_folder_that_cannot_be_written_is_one_error(fer_tiny, fer_path, tmp_path, cmd):
    "--out inside a read-only folder, or the read-only folder itself: one `error:` line and status 2, for every command that writes"
    faces = [str(f) for f in sorted((fer_path/'test'/'happy').glob('PublicTest_*'))[:2]]
    args = {'train': ['--data', str(fer_tiny), '--arch', 'fer_vgg_s', '--epochs', '1', '--bs', '16', '--no-plots'],
            'predict': [faces[0], '--no-detect'], 'cam': faces, 'export': []}[cmd]  # cam: two inputs, so --out is a folder
    ro = tmp_path/'ro'; wrap = _read_only(ro)
    env = dict(os.environ, MPLBACKEND='Agg', OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    for out, msg in [(ro/'sub', f"Cannot make"), (ro, 'is not writable')]:
        r = subprocess.run(wrap([EXE, cmd, *args, '--out', str(out)]), capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 2 and r.stderr.startswith('error: ') and msg in r.stderr and str(out) in r.stderr, (r.stdout + r.stderr)[-2000:]
        assert 'Traceback' not in r.stderr and 'choose a writable folder' in r.stderr
