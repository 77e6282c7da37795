"""A GPU session: the default recipe's runs and a distilled student with the `fer_fastai` commands themselves, several
at a time, inside a fixed wall-clock budget; then every run and ensemble scored with `fer_fastai evaluate --tta`.

    python benchmarks/gpu_session.py --data /tmp/fer2013 --out OUT --deadline 540
    python benchmarks/gpu_session.py --quick --out /tmp/gpu_quick                      # the same steps on a tiny subset, any device
    python benchmarks/gpu_session.py ... --epochs 8 --student-epochs 1 --first-seed 6  # fixed epochs, no calibration
    python benchmarks/gpu_session.py ... --bs 256 --lr 4e-3                            # 4x fewer batches per epoch
    python benchmarks/gpu_session.py ... --concurrent 2 --epochs 36 --student-epochs 30 --student-arch fer_mobile
                                         # two accurate models, then the small fast one distilled from both

Steps: (1) calibration: `--concurrent` runs of 2 epochs, to measure the seconds per epoch with that many runs sharing
the GPU and the CPU cores, and the fixed cost of one command (start, data, evaluation); (2) teachers: `--concurrent`
runs with random erasing and seeds 1, 2, 3..., their epochs chosen from (1) so that the phase fits its half of the
time left; (3) a student distilled from the teachers (`--teacher`) beside more runs like (2); (4) `fer_fastai evaluate`
of each run with TTA, and of the ensembles (teachers; every plain run; everything), on PublicTest and PrivateTest,
into `RUNS/eval_*` folders that `python -m benchmarks.results add-eval` turns into rows (each run folder: `add`).
`OUT/results.json` is rewritten after every phase; the run and evaluation folders' small files come back in
`OUT/runs.tgz`, and the weights of the student and the best other runs (by PublicTest) as `OUT/NAME.pth`.
"""
import argparse, json, os, platform, shutil, subprocess, sys, tarfile, time
from pathlib import Path
T0 = time.time()
REPO = Path(__file__).resolve().parents[1]

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
p.add_argument('--student-arch', default=None, help="the student's architecture (default: the recipe's, fer_vgg_m), e.g. fer_mobile")
p.add_argument('--quick', action='store_true', help='`fer_fastai train --quick`, 1 epoch per run: checks the script itself')
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
         (['--quick'] if args.quick else [])

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
student = args.student_arch or 'fer_vgg_m'
if tnames: jobs.append((f'{student}_kd{len(tnames)}', ['--epochs', str(eb), '--seed', str(S + k), '--teacher', *[str(RUNS/n) for n in tnames]] +
                        (['--arch', args.student_arch] if args.student_arch else [])))
if args.student_epochs is None: jobs += [(f'fer_vgg_m_er_s{S + i}', ['--epochs', str(eb), '--erasing', str(args.erasing), '--seed', str(S + i)]) for i in range(k, 2 * k - len(jobs))]
say(f'student + more runs: {len(jobs)} runs of {eb} epochs ({left() - args.reserve:.0f}s)')
more = run_group(jobs, hard_limit=args.deadline - 25)
R['phases']['student_and_more'] = dict(runs=more, epochs=eb, seconds=round(now() - t_b, 1)); save()

# (4) TTA and ensembles with `fer_fastai evaluate`, a few at a time
t_c = now()
names = ok(teach) + ok(more)
groups = {f'eval_tta_{n}': [n] for n in names}
for g, members in {'teachers': ok(teach), 'plain': [n for n in names if '_kd' not in n], 'all': names}.items():
    if len(members) > 1: groups[f'eval_ensemble_{g}'] = members
evals = {}
for split in ('PublicTest', 'PrivateTest'):
    jobs = list(groups.items())
    for i in range(0, len(jobs), k):
        procs = []
        for g, members in jobs[i:i + k]:
            cmd = ['evaluate', '--model', *[str(RUNS/m) for m in members], '--tta', '--split', split, '--out', str(RUNS/g)] + \
                  (['--data', args.data] if args.data else [])
            procs.append((g, subprocess.Popen(CLI + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)))
        for g, pr in procs:
            _, err = pr.communicate()
            evals.setdefault(g, {})[split] = 'ok' if pr.returncode == 0 else err[-800:]
        say(f'evaluated {", ".join(g for g, _ in procs)} on {split}')
R['phases']['evaluation'] = dict(groups=groups, results=evals, seconds=round(now() - t_c, 1)); save()

# what comes back: the small files of every run, the weights of a few
with tarfile.open(OUT/'runs.tgz', 'w:gz') as tf:
    for f in sorted(RUNS.rglob('*')):
        if f.is_file() and f.suffix not in ('.pth', '.png'): tf.add(f, arcname=f.relative_to(RUNS))
kd = [n for n in names if '_kd' in n]
rest = sorted((n for n in names if n not in kd), key=lambda n: -(teach.get(n) or more.get(n))['PublicTest_acc'])
sent = (kd + rest)[:args.weights]
for n in sent:
    if (RUNS/n/'model.pth').is_file(): shutil.copy(RUNS/n/'model.pth', OUT/f'{n}.pth')
R['weights_sent'] = sent; R['total_s'] = round(now(), 1); save()
say('done', json.dumps(evals, default=str)[:1500])
