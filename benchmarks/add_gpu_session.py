"""Append the models of a `benchmarks/gpu_session.py` run to benchmarks/results.csv, from its results.json, and
average test-set probabilities across runs (device runs' `probs.npz` and local run folders) into ensemble rows.

    python benchmarks/add_gpu_session.py rows benchmarks/gpu/h200_run1 --note "..."
    python benchmarks/add_gpu_session.py ensemble benchmarks/gpu/h200_run1/probs.npz:resnet18_gpu \\
        benchmarks/gpu/h200_run1/probs.npz:vgg16_bn_gpu runs/fer2013_resnet18_e16 --tta --name r18+vgg+cpu_e16
    python benchmarks/add_gpu_session.py probs runs/NAME1 runs/NAME2 --out runs/probs.npz   # predicted once, then
    python benchmarks/add_gpu_session.py ensemble runs/probs.npz:NAME1 runs/probs.npz:NAME2 --tta  # ensembles in seconds

Every number comes from the session's results.json or is computed here from saved probabilities; nothing is typed in.
"""
import argparse, functools, json, sys
from pathlib import Path
import numpy as np, pandas as pd
from sklearn.metrics import accuracy_score, f1_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fer_fastai.recipes import RESULT_COLUMNS

def _append(rows, results):
    r = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    r['epochs'] = r['epochs'].astype('Int64')
    path = Path(results)
    r.to_csv(path, mode='a', header=not path.is_file(), index=False)
    print(r.to_string(index=False))

def rows(folder, note=''):
    res = json.loads((Path(folder)/'results.json').read_text())
    env = res['phases']['environment']
    hw = f"{env.get('gpu', 'CPU')} ({env['cpus']} CPU cores), torch {env['torch']}"
    out = []
    for name, ph in res['phases'].items():
        if not (name.startswith('train_') and ph.get('ok')): continue
        notes = [f"benchmarks/gpu_session.py ({Path(folder).name})", f"bs {ph['bs']}", f"lr {ph['lr']:.2g}",
                 'bf16 + channels_last' if ph['mixed_precision'] == 'auto' else 'fp32', 'label smoothing 0.1',
                 f"epochs from the time budget, best epoch {ph['best_epoch']}", f"{ph['train_img_per_s']} img/s"] + ([note] if note else [])
        base = dict(arch=ph['arch'], weights='random', input_size=48, epochs=ph['epochs'], hardware=hw, wall_time_s=ph['train_s'], quick=False)
        out.append(dict(base, recipe='default (GPU session)', public_test_acc=ph['PublicTest']['accuracy'],
                        private_test_acc=ph['PrivateTest']['accuracy'], macro_f1=ph['PrivateTest']['macro_f1'], notes='; '.join(notes)))
        out.append(dict(base, recipe='ensemble_tta (flip + 2 crops)', public_test_acc=ph['PublicTest_tta']['accuracy'],
                        private_test_acc=ph['PrivateTest_tta']['accuracy'], macro_f1=ph['PrivateTest_tta']['macro_f1'],
                        notes='; '.join(notes[:1] + [f"TTA of the {ph['arch']} row above"])))
    ens = res['phases'].get('ensemble', {})
    if ens.get('ok') and 'members' in ens:
        total = sum(res['phases'][f"train_{m.rsplit('_', 1)[0]}"]['train_s'] for m in ens['members'])
        for tta in (False, True):
            k = '_tta' if tta else ''
            out.append(dict(recipe='ensemble_tta (flip + 2 crops)' if tta else 'ensemble', arch='+'.join(ens['members']), weights='random',
                            input_size=48, epochs=None, hardware=hw, wall_time_s=round(total, 1), quick=False,
                            public_test_acc=ens[f'PublicTest{k}']['accuracy'], private_test_acc=ens[f'PrivateTest{k}']['accuracy'],
                            macro_f1=ens[f'PrivateTest{k}']['macro_f1'], notes=f"benchmarks/gpu_session.py ({Path(folder).name}); probability average"))
    return out

def _probs(source, split, tta):
    "(probs, targets) of one member: `file.npz:model_name` from a GPU session, or a local run folder (predicted here)"
    if ':' in source and source.split(':')[0].endswith('.npz'):
        f, name = source.split(':')
        z = np.load(f)
        return z[f"{name}__{split}{'__tta' if tta else ''}"], z[f'targets__{split}']
    from fer_fastai.models import ensemble_probs
    p, t = ensemble_probs([_local_learner(source)], split, flip=tta, crops=2 if tta else 0)
    return p.numpy(), t.numpy()

@functools.lru_cache(maxsize=None)
def _local_learner(run):
    "A learner on FER2013 for a local run folder, built once for both splits"
    from fer_fastai.data import fer_dataloaders
    from fer_fastai.learner import load_fer_learner
    meta = json.loads((Path(run)/'model.json').read_text())
    dls = fer_dataloaders(bs=256, check=False, verbose=False, vocab=meta['vocab'], stats=(meta['mean'], meta['std']))
    return load_fer_learner(run, dls)

def save_probs(runs, out):
    "PublicTest / PrivateTest probabilities of local run folders, plain and with flip + 2-crop TTA, in a gpu_session probs.npz layout"
    arrays = dict(np.load(out)) if Path(out).is_file() else {}
    for run in runs:
        for split in ('PublicTest', 'PrivateTest'):
            for tta in (False, True):
                p, t = _probs(run, split, tta)
                arrays[f"{Path(run).name}__{split}{'__tta' if tta else ''}"], arrays[f'targets__{split}'] = p.astype(np.float32), t
        np.savez_compressed(out, **arrays)  # after each run: an interrupted job keeps what it computed
        print(f'{run}: saved to {out}', flush=True)

def ensemble(sources, tta=False, name=None):
    res = {}
    for split in ('PublicTest', 'PrivateTest'):
        got = [_probs(s, split, tta) for s in sources]
        t0 = got[0][1]
        for _, t in got[1:]:
            if not np.array_equal(t, t0): sys.exit(f'The members saw {split} in different orders or with different labels: cannot average.')
        p = np.mean([g[0] for g in got], 0)
        res[split] = (accuracy_score(t0, p.argmax(1)), f1_score(t0, p.argmax(1), average='macro'))
    row = dict(recipe='ensemble_tta (flip + 2 crops)' if tta else 'ensemble', arch=name or '+'.join(Path(s).name for s in sources),
               weights='random', input_size=48, epochs=None, hardware='mixed: see members', wall_time_s=None, quick=False,
               public_test_acc=round(res['PublicTest'][0], 4), private_test_acc=round(res['PrivateTest'][0], 4),
               macro_f1=round(res['PrivateTest'][1], 4), notes='benchmarks/add_gpu_session.py ensemble ' + ' '.join(sources))
    return [row]

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('what', choices=['rows', 'ensemble', 'probs'])
    p.add_argument('sources', nargs='+', help='rows: a gpu_session output folder; ensemble: members (file.npz:model or run folder); probs: run folders')
    p.add_argument('--out', default=None, help='probs: the .npz file to write (members already in it are kept)')
    p.add_argument('--note', default='')
    p.add_argument('--tta', action='store_true')
    p.add_argument('--name', default=None)
    p.add_argument('--dry-run', action='store_true', help='print the rows, do not append them')
    p.add_argument('--results', default=str(Path(__file__).parent/'results.csv'))
    a = p.parse_args(argv)
    if a.what == 'probs':
        if not a.out: p.error('probs needs --out FILE.npz')
        return save_probs(a.sources, a.out)
    out = rows(a.sources[0], a.note) if a.what == 'rows' else ensemble(a.sources, a.tta, a.name)
    if a.dry_run: print(pd.DataFrame(out, columns=RESULT_COLUMNS).to_string(index=False))
    else: _append(out, a.results)

if __name__ == '__main__': main()
