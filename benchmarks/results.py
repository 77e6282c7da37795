"""The results table, `benchmarks/results.csv`: one row per measured model, every number read from the files a run wrote.

    python -m benchmarks.results add RUN_FOLDER [--notes TEXT]       # a `fer_fastai train` run (its model.json)
    python -m benchmarks.results add-eval EVAL_FOLDER [--notes TEXT] # a `fer_fastai evaluate --tta` or ensemble result
    python -m benchmarks.results show                                # the table, readable

`add` reads `RUN_FOLDER/model.json` (and `results.json` of a cross-validated recipe: mean and std over the folds);
`add-eval` reads the `*_evaluation.json` files `fer_fastai evaluate --out EVAL_FOLDER` wrote for PublicTest and
PrivateTest. Nothing is typed in. A quick run (`--quick`: a small subset, chance-level or close) goes to
`benchmarks/smoke.csv`, never to the results table. Accuracies are fractions, each with its own `_std` column
(empty for a single run).
"""
import argparse, json, os, sys
from pathlib import Path
import pandas as pd

HERE = Path(__file__).resolve().parent
RESULTS, SMOKE = HERE/'results.csv', HERE/'smoke.csv'
COLUMNS = ['name', 'recipe', 'evaluation', 'arch', 'n_models', 'weights', 'input_size', 'epochs', 'hardware', 'device', 'wall_time_s',
           'public_test_acc', 'public_test_acc_std', 'private_test_acc', 'private_test_acc_std',
           'private_test_macro_f1', 'private_test_macro_f1_std', 'quick', 'command', 'notes']
NUMERIC = [c for c in COLUMNS if c.endswith(('_acc', '_std', '_f1', '_s'))]
EVALUATIONS = ('single', 'tta', 'ensemble', 'ensemble + tta')  # how the probabilities were made: one model or several, with TTA or not

class ResultsError(ValueError):
    "A run or evaluation folder that cannot become a row"

def _find(d, key):
    "The value of `key` in dict `d` or the dicts nested in it (breadth first): reads model.json's flat and nested layouts alike"
    todo = [d]
    while todo:
        x = todo.pop(0)
        if key in x and x[key] is not None: return x[key]
        todo += [v for v in x.values() if isinstance(v, dict)]
    return None

def _json(f, what):
    f = Path(f)
    if not f.is_file(): raise ResultsError(f'{str(f.parent)!r} has no {f.name}: pass {what}.')
    try: d = json.loads(f.read_text())
    except json.JSONDecodeError as e: raise ResultsError(f'{f} is not valid JSON ({e}).') from None
    if not isinstance(d, dict): raise ResultsError(f'{f} should hold a JSON object, not {type(d).__name__}.')
    return d

def _fraction(v, what):
    "An accuracy or F1 as a float in [0, 1], or an error that names it"
    try: x = float(v)
    except (TypeError, ValueError): raise ResultsError(f'{what} is {v!r}: a number between 0 and 1 was expected.') from None
    if not 0 <= x <= 1: raise ResultsError(f'{what} is {x}: a fraction between 0 and 1 was expected.')
    return round(x, 4)

def hardware() -> str:
    "This machine: the CUDA device's name, else its CPU core count (for evaluations, whose json does not say)"
    try:
        import torch
        if torch.cuda.is_available(): return torch.cuda.get_device_name(0)
    except ImportError: pass
    return f'{os.cpu_count()}-core CPU'

def _split_metrics(metrics, split, f):
    m = (metrics or {}).get(split)
    if not isinstance(m, dict): raise ResultsError(f'{f} has no metrics for {split}: was the run evaluated on FER2013 (PublicTest and PrivateTest)?')
    return m

def _weights(t):
    return t.get('weights') or t.get('weights_used') or ('imagenet' if t.get('pretrained') else 'random')

def train_row(run, name=None, command='', notes='', hardware_=None) -> dict:
    "The row of run folder `run` (written by `fer_fastai train` or `run_recipe`), from its model.json"
    run = Path(run); f = run/'model.json'
    meta = _json(f, 'a run folder written by `fer_fastai train`')
    arch = _find(meta, 'arch')
    if not arch: raise ResultsError(f'{f} names no architecture ("arch"): is it a model.json of fer_fastai?')
    t = _find(meta, 'training') or {}
    cv = _find(_json(run/'results.json', ''), 'cv') if (run/'results.json').is_file() else None
    row = dict(name=name or run.name, recipe=_find(meta, 'recipe') or 'default', arch=arch, n_models=1, weights=_weights(t),
               input_size=_find(meta, 'size') or _find(meta, 'input_size'), epochs=t.get('epochs'),
               hardware=hardware_ or t.get('hardware'), device=t.get('device'), quick=bool(t.get('quick') or _find(meta, 'quick')),
               wall_time_s=round(float(t.get('total_time_s') or t.get('wall_time_s')), 1) if (t.get('total_time_s') or t.get('wall_time_s')) else None,
               evaluation='single')
    if cv:  # k-fold cross-validation: mean and std over the folds; the validation folds stand in for PublicTest
        for col, key in [('public_test_acc', 'valid_acc'), ('private_test_acc', 'test_acc'), ('private_test_macro_f1', 'test_macro_f1')]:
            if key not in cv: continue
            m, s = cv[key]
            row[col], row[col + '_std'] = _fraction(m, f'{key} mean'), round(float(s), 4)
        notes = '; '.join(x for x in [f'cross-validation: public_test_acc is the mean validation-fold accuracy', notes] if x)
    else:
        metrics = _find(meta, 'metrics')
        pub, priv = _split_metrics(metrics, 'PublicTest', f), _split_metrics(metrics, 'PrivateTest', f)
        row.update(public_test_acc=_fraction(pub.get('accuracy'), f'{f}: PublicTest accuracy'),
                   private_test_acc=_fraction(priv.get('accuracy'), f'{f}: PrivateTest accuracy'),
                   private_test_macro_f1=_fraction(priv.get('macro_f1'), f'{f}: PrivateTest macro_f1'))
    if t.get('teachers'):
        row['recipe'] = 'distilled' if row['recipe'] == 'default' else row['recipe']
        d = t.get('distill') or {}
        notes = '; '.join(x for x in [f"distilled from {len(t['teachers'])} run(s) (alpha {d.get('alpha')}, T {d.get('T')})", notes] if x)
    return dict(row, command=command, notes=notes)

def _evaluations(folder):
    "{split: record} of the `*_evaluation.json` files in `folder`, one per split"
    recs = {}
    for f in sorted(Path(folder).glob('*_evaluation.json')):
        r = _json(f, ''); s = r.get('split') or f.name.split('_')[0]
        if s in recs: raise ResultsError(f'{folder} holds two evaluations of {s}: keep one per split (fer_fastai evaluate --out a fresh folder).')
        recs[s] = r
    for s in ('PublicTest', 'PrivateTest'):
        if s not in recs: raise ResultsError(f'{str(folder)!r} has no {s} evaluation: run fer_fastai evaluate --split {s} --out {folder}.')
    return recs

def eval_row(folder, name=None, command='', notes='', hardware_=None) -> dict:
    "The row of a `fer_fastai evaluate` result in `folder` (one run with TTA, or an ensemble), from its evaluation files and the members' model.json"
    folder = Path(folder)
    recs = _evaluations(folder); pub, priv = recs['PublicTest'], recs['PrivateTest']
    if (pub.get('members'), pub.get('tta'), pub.get('crops')) != (priv.get('members'), priv.get('tta'), priv.get('crops')):
        raise ResultsError('The PublicTest and PrivateTest evaluations were made with different runs or TTA settings.')
    members = priv.get('members') or []
    if not members: raise ResultsError(f'{folder}: the evaluation names no member runs ("members").')
    metas = [_json(Path(m)/'model.json', f'the member run folder {m}') for m in members]
    tr = [_find(m, 'training') or {} for m in metas]
    ens, tta = len(members) > 1, bool(priv.get('tta'))
    evaluation = ('ensemble + tta' if tta else 'ensemble') if ens else ('tta' if tta else 'single')
    if tta: notes = '; '.join(x for x in [f"TTA: flip + {priv.get('crops', 0)} crops", notes] if x)
    return dict(name=name or folder.name, recipe='+'.join(dict.fromkeys(_find(m, 'recipe') or ('distilled' if t.get('teachers') else 'default') for m, t in zip(metas, tr))),
                evaluation=evaluation, arch='+'.join(_find(m, 'arch') for m in metas), n_models=len(members),
                weights='+'.join(sorted({_weights(t) for t in tr})), input_size='+'.join(sorted({str(_find(m, 'size')) for m in metas})),
                epochs='+'.join(str(t.get('epochs', '?')) for t in tr), hardware=hardware_ or hardware(), device=priv.get('device'),
                wall_time_s=round(float(pub.get('wall_time_s', 0)) + float(priv.get('wall_time_s', 0)), 1),
                public_test_acc=_fraction(pub.get('accuracy'), 'PublicTest accuracy'), private_test_acc=_fraction(priv.get('accuracy'), 'PrivateTest accuracy'),
                private_test_macro_f1=_fraction(priv.get('macro_f1'), 'PrivateTest macro_f1'), quick=any(t.get('quick') for t in tr),
                command=command, notes='; '.join(x for x in ['members: ' + ', '.join(Path(m).name for m in members), notes] if x))

def append(row:dict, results=RESULTS, smoke=SMOKE) -> Path:
    "Append `row` to the results table, or to the smoke table when it is a quick run; returns the file written"
    if row.get('evaluation') not in EVALUATIONS: raise ResultsError(f"evaluation must be one of {EVALUATIONS}, not {row.get('evaluation')!r}")
    path = Path(smoke if row.get('quick') else results)
    new = pd.DataFrame([row]).reindex(columns=COLUMNS)
    old = read(path) if path.is_file() else None
    if old is not None and list(old.columns) != COLUMNS: raise ResultsError(f'{path} has columns {list(old.columns)}, not {COLUMNS}.')
    (new if old is None else pd.concat([old, new], ignore_index=True)).to_csv(path, index=False)
    return path

def read(path=RESULTS) -> pd.DataFrame:
    "The results table, its accuracy, F1 and time columns numeric"
    df = pd.read_csv(path)
    for c in NUMERIC:
        if c in df: df[c] = pd.to_numeric(df[c], errors='raise')
    return df

def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m benchmarks.results', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='cmd', required=True)
    for cmd, what in [('add', 'a run folder written by `fer_fastai train`'), ('add-eval', 'the --out folder of `fer_fastai evaluate` on both test splits')]:
        s = sub.add_parser(cmd, help=f'append the row of {what}')
        s.add_argument('folder', help=what)
        s.add_argument('--name', default=None, help='row name (default: the folder name)')
        s.add_argument('--command', default='', help='the command that made it')
        s.add_argument('--notes', default='', help='what the row shows, in a few words')
        s.add_argument('--hardware', default=None, help="what it ran on, where the files do not say (a run's own record wins otherwise)")
        s.add_argument('--results', default=str(RESULTS)); s.add_argument('--smoke', default=str(SMOKE))
        s.add_argument('--dry-run', action='store_true', help='print the row, do not append it')
    s = sub.add_parser('show', help='print the results table'); s.add_argument('--results', default=str(RESULTS))
    a = p.parse_args(argv)
    try:
        if a.cmd == 'show':
            df = read(a.results)
            print(df[['name', 'evaluation', 'arch', 'epochs', 'hardware', 'public_test_acc', 'private_test_acc', 'private_test_macro_f1']].to_string()); return 0
        row = (train_row if a.cmd == 'add' else eval_row)(a.folder, a.name, a.command, a.notes, a.hardware)
        if not a.dry_run:
            f = append(row, a.results, a.smoke)
            print(f"{'quick run: ' if row['quick'] else ''}appended to {f}")
        print(pd.Series(row).reindex(COLUMNS).to_string())
    except ResultsError as e:
        print(f'error: {e}', file=sys.stderr); return 2
    return 0

if __name__ == '__main__': sys.exit(main())
