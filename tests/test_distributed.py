"Data-parallel training on the CPU: two real processes on the gloo backend, started by torchrun or by hand as on several machines"
import json, os, signal, socket, subprocess, sys, time
from pathlib import Path
import pytest

BIN = Path(sys.executable).parent

def _env(**kw):
    "This environment without a launcher's variables, plus `kw`"
    env = {k: v for k, v in os.environ.items() if k not in ('WORLD_SIZE', 'RANK', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')}
    return dict(env, MPLBACKEND='Agg', OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore', **kw)

def _free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

@pytest.fixture(scope='module')
def small_fer(fer_path, tmp_path_factory):
    "A FER2013-layout folder: 64 training faces per emotion (448: two shards of 7 batches of 32), 421 PublicTest faces (odd: the last shard is padded), 20 PrivateTest per emotion"
    root = tmp_path_factory.mktemp('dist')/'fer2013_small'
    for sub, takes in [('train', [('Training', 64)]), ('test', [('PublicTest', 61), ('PrivateTest', 20)])]:
        for d in sorted((fer_path/sub).iterdir()):
            (root/sub/d.name).mkdir(parents=True)
            for p, n in takes:
                n = 55 if (p, d.name) == ('PublicTest', 'disgust') else n
                for f in sorted(d.glob(f'{p}_*'))[:n]: (root/sub/d.name/f.name).symlink_to(f)
    return root

TRAIN = ['-m', 'fer_fastai.cli', 'train', '--bs', '32', '--no-plots', '--set', 'lr_find_iters=10']

def test_torchrun_two_processes_train_one_model(small_fer, tmp_path):
    "lr_find, a frozen stage and an unfrozen one on two processes: one run folder, the weights of both ranks, every face once per epoch, metrics of the whole validation set"
    out = tmp_path/'run'
    r = subprocess.run([str(BIN/'torchrun'), '--nproc-per-node', '2', '--master-port', str(_free_port()), *TRAIN, '--data', small_fer,
                        '--pretrained', 'fer2013', '--epochs', '1', '--freeze-epochs', '1', '--out', out],
                       capture_output=True, text=True, env=_env(), timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count('Run folder:') == 1 and r.stdout.count('lr_find (frozen)') == 1, r.stdout[-2000:]  # rank 0 alone prints
    cfg = json.loads((out/'model.json').read_text())
    d, t = cfg['training']['distributed'], cfg['training']
    assert (d['world_size'], d['backend'], d['bs_per_process'], d['global_bs']) == (2, 'gloo', 32, 64)
    assert [s['stage'] for s in t['stages']] == ['lr_find frozen', 'frozen', 'unfreeze + lr_find', 'unfrozen']
    assert set(t['lrs']) == {'frozen', 'unfrozen'} and all(0 < v < 1 for v in t['lrs'].values())
    # each epoch the two shards are disjoint, cover the 448 training faces, and each rank trained on all of its 224
    assert len(d['epochs']) == 2
    for e in d['epochs']: assert e == dict(n_items=448, given=[224, 224], trained=[224, 224], padding=0, each_item_once=True), e
    # both ranks ended with the saved weights
    import torch
    from fer_fastai.distributed import weights_digest
    assert d['ranks_agree'] and weights_digest(torch.load(out/'model.pth', weights_only=True)) == d['weights_sha256']
    # written once: one history row per epoch (each stage starts with its header line)
    rows = [l.split(',') for l in (out/'history.csv').read_text().splitlines() if not l.startswith('epoch')]
    assert len(rows) == 2, rows
    accs = [float(r[3]) for r in rows]
    # the validation accuracy gathered over both ranks during training is what one process computes for the saved model
    from fer_fastai.learner import load_fer_learner
    from fer_fastai.evaluate import evaluate
    rep = evaluate(load_fer_learner(out, data=small_fer, verbose=False), 'PublicTest')
    assert rep.n == 421
    best = accs.index(max(accs))  # the best epoch's weights were kept
    assert abs(rep.accuracy - accs[best]) < 1e-6, (rep.accuracy, accs)
    assert abs(rep.macro_f1 - float(rows[best][4])) < 1e-6, (rep.macro_f1, rows[best])
    assert abs(rep.accuracy - cfg['metrics']['PublicTest']['accuracy']) < 1e-6

def _start(rank, port, small_fer, out, *args):
    env = _env(WORLD_SIZE='2', RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    return subprocess.Popen([sys.executable, *TRAIN, '--data', str(small_fer), '--arch', 'fer_vgg_s', '--out', str(out), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

def test_a_crashed_rank_stops_the_other_with_a_message(small_fer, tmp_path):
    "Two processes started by hand (as on two machines); one killed mid-training: the other stops at once with one error line, and writes no model"
    port, out = _free_port(), tmp_path/'run'
    p0, p1 = (_start(k, port, small_fer, out, '--epochs', '30', '--dist-timeout', '120') for k in (0, 1))
    try:
        lines = []
        for line in p0.stdout:  # rank 0 prints; wait until both train
            lines.append(line)
            if 'fit_one_cycle(' in line: break
        time.sleep(3); p1.send_signal(signal.SIGKILL); p1.wait(30)
        t0 = time.time(); rc = p0.wait(90); err = p0.stderr.read()
    finally:
        for p in (p0, p1):
            if p.poll() is None: p.kill()
    assert rc == 2, (rc, err[-3000:])
    assert time.time() - t0 < 60
    assert 'error: Another process of this data-parallel run stopped' in err and 'Traceback' not in err, err[-3000:]
    assert not (out/'model.json').exists()

def test_a_missing_rank_times_out(small_fer, tmp_path):
    "Rank 0 started alone: after --dist-timeout it says that the others did not join, instead of waiting for ever"
    t0 = time.time()
    p = _start(0, _free_port(), small_fer, tmp_path/'run', '--epochs', '1', '--dist-timeout', '5')
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2 and 'could not join' in err and 'Traceback' not in err, err[-3000:]
    assert time.time() - t0 < 60
