"""The default recipe's long runs and distillation with the `fer_fastai train` command itself, on a lent GPU, inside a
fixed wall-clock budget; then TTA and ensembles of what it trained.

    python benchmarks/gpu_cli_session.py --data /tmp/fer2013 --out $OUT --deadline 540
    python benchmarks/gpu_cli_session.py --quick --out /tmp/gpu_cli_quick      # the same steps on a tiny subset, any device
    python benchmarks/gpu_cli_session.py ... --epochs 8 --student-epochs 1 --first-seed 6   # fixed epochs, no calibration

Where `benchmarks/gpu_session.py` calls the library's functions, this script runs the user's commands, unchanged
(`fer_fastai train` with `fer_vgg_m`, bs 64, lr 2e-3: the CPU rows' settings), several at a time:
(1) calibration: `--concurrent` runs of 2 epochs, to measure the seconds per epoch with that many runs sharing
    the GPU and the CPU cores, and the fixed cost of one command (start, data, evaluation);
(2) teachers: `--concurrent` runs with random erasing 0.5 and seeds 1, 2, 3..., their epochs chosen from (1) so that
    the phase fits its half of the time left;
(3) a student distilled from the teachers (`--teacher`) beside more runs like (2) (seeds after the teachers');
(4) in this process: every run's PublicTest / PrivateTest probabilities, plain and with flip + 2-crop TTA, and the
    ensembles (teachers; all plain runs; everything), saved to `OUT/probs.npz` in the layout of
    `benchmarks/add_gpu_session.py ensemble FILE.npz:NAME`; a check that a CUDA learner trains in bf16 and
    channels-last.
`OUT/results.json` is rewritten after every phase; the run folders' small files come back in `OUT/runs.tgz` and the
weights of the student and the best other runs (by PublicTest, the validation split) as `OUT/NAME.pth`.
"""
import argparse, json, os, platform, shutil, subprocess, sys, tarfile, time
from pathlib import Path
T0 = time.time()
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this process imports fer_fastai too (step 4)

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument('--data', default=None, help='FER2013 folder (default: the library default)')
p.add_argument('--out', default='gpu_cli_out')
p.add_argument('--runs', default=None, help='where the run folders go (default OUT/runs)')
p.add_argument('--deadline', type=float, default=540, help='seconds from start by which everything must be done')
p.add_argument('--concurrent', type=int, default=3, help='runs trained at the same time')
p.add_argument('--lr', type=float, default=2e-3)
p.add_argument('--bs', type=int, default=64)
p.add_argument('--erasing', type=float, default=0.5)
p.add_argument('--reserve', type=float, default=45, help='seconds kept at the end for TTA, ensembles and packing')
p.add_argument('--max-epochs', type=int, default=100)
p.add_argument('--weights', type=int, default=4, help='how many runs send their model.pth back (the student first)')
p.add_argument('--first-seed', type=int, default=1, help='seed of the first run (then +1 per run); the run names carry it')
p.add_argument('--epochs', type=int, default=None, help='teachers: this many epochs (no calibration)')
p.add_argument('--student-epochs', type=int, default=None, help='step 3 trains the student alone, this many epochs')
p.add_argument('--quick', action='store_true', help='30 faces per emotion, 1 epoch per run: checks the script itself')
args = p.parse_args()
OUT = Path(args.out); OUT.mkdir(parents=True, exist_ok=True)
RUNS = Path(args.runs or OUT/'runs'); RUNS.mkdir(parents=True, exist_ok=True)
R = dict(started=time.strftime('%Y-%m-%d %H:%M:%S'), argv=sys.argv, phases={})
def now(): return time.time() - T0
def left(): return args.deadline - now()
def save(): (OUT/'results.json').write_text(json.dumps(R, indent=1, default=str))
def say(*a): print(f'[{now():5.0f}s]', *a, flush=True)

import torch
cuda = torch.cuda.is_available()
R['environment'] = dict(python=platform.python_version(), torch=torch.__version__, cuda=cuda, cpus=os.cpu_count(),
                        gpu=torch.cuda.get_device_name(0) if cuda else None)
save()

ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO)] + [p for p in [os.environ.get('PYTHONPATH')] if p]), PYTHONUNBUFFERED='1')
CLI = [sys.executable, '-c', 'import sys; from fer_fastai.cli import main; sys.exit(main())']
COMMON = ['--lr', str(args.lr), '--bs', str(args.bs), '--no-plots', '--overwrite'] + (['--data', args.data] if args.data else []) + \
         (['--max-per-class', '30'] if args.quick else [])

def run_group(jobs, hard_limit):
    "Start `jobs` [(name, [fer_fastai train options])] at once; wait until all end or `hard_limit` (seconds from start) passes"
    procs = {}
    for name, opts in jobs:
        log = open(RUNS/f'{name}.log', 'w')
        cmd = ['train', *opts, *COMMON, '--out', str(RUNS/name)]
        procs[name] = (subprocess.Popen(CLI + cmd, stdout=log, stderr=subprocess.STDOUT, env=ENV), time.time(), log, cmd)
        say('started', 'fer_fastai ' + ' '.join(cmd))
    ends, rcs = {}, {}
    while len(ends) < len(procs) and now() < hard_limit:  # each run's own end time, whatever order they finish in
        for name, (pr, *_) in procs.items():
            if name not in ends and pr.poll() is not None: ends[name], rcs[name] = time.time(), pr.returncode
        time.sleep(0.5)
    res = {}
    for name, (pr, t, log, cmd) in procs.items():
        if name not in ends: pr.kill(); pr.wait(); ends[name], rcs[name] = time.time(), 'killed at the time limit'
        rc = rcs[name]
        log.close()
        meta_f = RUNS/name/'model.json'
        r = dict(command='fer_fastai ' + ' '.join(cmd), rc=rc, process_s=round(ends[name] - t, 1))
        if rc == 0 and meta_f.is_file():
            m = json.loads(meta_f.read_text()); tr = m['training']
            r.update(epochs=tr['epochs'], fit_s=round(tr['wall_time_s'], 1), total_s=round(tr['total_time_s'], 1), device=tr['device'],
                     precision=tr.get('precision'), best_epoch=tr.get('best_epoch'), distill=tr.get('distill'),
                     **{f'{k}_acc': round(v['accuracy'], 4) for k, v in m['metrics'].items() if k in ('PublicTest', 'PrivateTest')})
        else: r['log_tail'] = (RUNS/f'{name}.log').read_text()[-1500:]
        soft = [l.strip() for l in (RUNS/f'{name}.log').read_text().replace('\r', '\n').splitlines() if 'teachers agree' in l]
        if soft: r['soft_targets'] = soft[-1]  # distill's "done in Ns; the teachers agree with ..." line
        say(name, json.dumps(r, default=str)[:400])
        res[name] = r
    return res

def ok(res): return [n for n, r in res.items() if r.get('rc') == 0 and 'PrivateTest_acc' in r]

# (1) calibration
k = args.concurrent
if args.epochs is None:
    say(f'calibration: {k} runs of 2 epochs at once')
    cal = run_group([(f'cal{i}', ['--epochs', '1' if args.quick else '2', '--erasing', str(args.erasing), '--seed', str(100 + i)]) for i in range(k)],
                    hard_limit=min(args.deadline, 150))
    good = ok(cal)
    if not good: R['phases']['calibration'] = dict(runs=cal, error='no calibration run finished'); save(); sys.exit('calibration failed')
    epoch_s = max(cal[n]['fit_s'] / cal[n]['epochs'] for n in good) * 1.05  # includes the first epoch's warm-up: errs long
    fixed_s = max(cal[n]['process_s'] - cal[n]['fit_s'] for n in good)
    R['phases']['calibration'] = dict(runs=cal, epoch_s=round(epoch_s, 2), fixed_s=round(fixed_s, 1), seconds=round(now(), 1)); save()
    say(f'calibration: {epoch_s:.1f}s per epoch with {k} at once, {fixed_s:.0f}s fixed per command')

def plan(budget, extra=0.):
    e = int((budget - fixed_s - extra - 5) / epoch_s)
    return 1 if args.quick else max(2, min(args.max_epochs, e))

# (2) teachers, (3) student + more runs: the time left before the reserve, halved
avail = left() - args.reserve
ea = args.epochs or plan(avail / 2)
t_a = now()
say(f'teachers: {k} runs of {ea} epochs ({avail / 2:.0f}s)')
S = args.first_seed
teach = run_group([(f'fer_vgg_m_er_s{S + i}', ['--epochs', str(ea), '--erasing', str(args.erasing), '--seed', str(S + i)]) for i in range(k)],
                  hard_limit=args.deadline - args.reserve - 20)
R['phases']['teachers'] = dict(runs=teach, epochs=ea, seconds=round(now() - t_a, 1)); save()
tnames = ok(teach)

t_b = now()
eb = args.student_epochs or plan(left() - args.reserve, extra=15)  # + the teachers' soft targets
jobs = []
if tnames: jobs.append((f'fer_vgg_m_kd{len(tnames)}', ['--epochs', str(eb), '--seed', str(S + k), '--teacher', *[str(RUNS/n) for n in tnames]]))
if args.student_epochs is None: jobs += [(f'fer_vgg_m_er_s{S + i}', ['--epochs', str(eb), '--erasing', str(args.erasing), '--seed', str(S + i)]) for i in range(k, 2 * k - len(jobs))]
say(f'student + more runs: {len(jobs)} runs of {eb} epochs ({left() - args.reserve:.0f}s)')
more = run_group(jobs, hard_limit=args.deadline - 25)
R['phases']['student_and_more'] = dict(runs=more, epochs=eb, seconds=round(now() - t_b, 1)); save()

# (4) probabilities, TTA and ensembles, in this process
t_c = now()
import numpy as np
import fastprogress.fastprogress as _fp; _fp.NO_BAR = True  # keep the log readable
from fer_fastai.data import read_fer_items, load_items
from fer_fastai.learner import load_fer_learner, fer_learner
from fer_fastai.models import ensemble_probs
from fer_fastai.evaluate import EvalReport
names = ok(teach) + ok(more)
items = load_items(read_fer_items(args.data), 1)
splits = {}
for s in ('PublicTest', 'PrivateTest'):
    sel = items[items.split.astype(str) == s].reset_index(drop=True)
    splits[s] = sel.groupby('label', group_keys=False).head(15).reset_index(drop=True) if args.quick else sel
arrays, ens = {}, {}
try:
    timing = {}
    for n in names:
        t = time.time()
        learn = load_fer_learner(RUNS/n, data=items, bs=256, verbose=False)
        timing[n] = dict(model_device=str(next(learn.model.parameters()).device))
        for s, sel in splits.items():
            for tta in (False, True):
                pr, tg = ensemble_probs([learn], sel, flip=tta, crops=2 if tta else 0)
                arrays[f"{n}__{s}{'__tta' if tta else ''}"] = pr.numpy().astype(np.float32); arrays[f'targets__{s}'] = tg.numpy()
        timing[n]['load_and_predict_s'] = round(time.time() - t, 1)  # both splits, plain and with TTA (4 views)
        if n == names[-1]:  # a fresh CUDA learner: the precision and memory format it trains in
            from fastai.callback.core import Callback, CancelFitException
            class _OneBatch(Callback):
                def after_batch(self):
                    if self.training: raise CancelFitException()
            fresh = fer_learner(learn.dls, 'fer_vgg_m', pretrained=False)
            conv = next(m for m in fresh.model.modules() if isinstance(m, torch.nn.Conv2d))
            seen = {}
            h = conv.register_forward_hook(lambda m, i, o: seen.update(out_dtype=str(o.dtype), in_channels_last=bool(i[0].is_contiguous(memory_format=torch.channels_last))))
            fresh.fit(1, 1e-4, cbs=[_OneBatch()]); h.remove()
            R['cuda_check'] = dict(precision=fresh.fer.get('precision'), channels_last_weights=bool(conv.weight.is_contiguous(memory_format=torch.channels_last)),
                                   device=str(conv.weight.device), **seen)
        del learn
    vocab = list(json.loads((RUNS/names[0]/'model.json').read_text())['vocab'])
    groups = {'teachers': ok(teach), 'plain': [n for n in names if '_kd' not in n], 'all': names}
    for g, members in groups.items():
        if len(members) < 2: continue
        for s in splits:
            for tta in (False, True):
                key = f"{s}{'__tta' if tta else ''}"
                r = EvalReport(s, vocab, arrays[f'targets__{s}'], np.mean([arrays[f'{m}__{key}'] for m in members], 0))
                ens.setdefault(g, dict(members=members))[key] = dict(accuracy=round(r.accuracy, 4), macro_f1=round(r.macro_f1, 4))
    single = {}
    for n in names:
        single[n] = {}
        for key in ('PublicTest', 'PublicTest__tta', 'PrivateTest', 'PrivateTest__tta'):
            s = key.split('__')[0]
            r = EvalReport(s, vocab, arrays[f'targets__{s}'], arrays[f'{n}__{key}'])
            single[n][key] = dict(accuracy=round(r.accuracy, 4), macro_f1=round(r.macro_f1, 4))
    np.savez_compressed(OUT/'probs.npz', **arrays)
    R['phases']['evaluation'] = dict(single=single, ensembles=ens, timing=timing, seconds=round(now() - t_c, 1))
except Exception as e:
    import traceback; traceback.print_exc(); R['phases']['evaluation'] = dict(error=f'{type(e).__name__}: {e}')
save()

# what comes back: the small files of every run, the weights of a few
with tarfile.open(OUT/'runs.tgz', 'w:gz') as tf:
    for f in sorted(RUNS.rglob('*')):
        if f.is_file() and f.suffix != '.pth' and not f.name.startswith('lr_find'): tf.add(f, arcname=f.relative_to(RUNS))
kd = [n for n in names if '_kd' in n]
rest = sorted((n for n in names if n not in kd), key=lambda n: -(teach.get(n) or more.get(n))['PublicTest_acc'])
sent = (kd + rest)[:args.weights]
for n in sent:
    if (RUNS/n/'model.pth').is_file(): shutil.copy(RUNS/n/'model.pth', OUT/f'{n}.pth')
R['weights_sent'] = sent; R['total_s'] = round(now(), 1); save()
say('done', json.dumps(R['phases'].get('evaluation', {}).get('ensembles', {}), default=str)[:1500])
