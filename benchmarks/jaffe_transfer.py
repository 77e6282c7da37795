"""Transfer to JAFFE from the shipped FER2013 body, against training from scratch: subject-grouped 5-fold CV.

    python -m benchmarks.jaffe_transfer [--model fer2013] [--folds 5] [--epochs 10] [--freeze-epochs 3] [--out runs/jaffe]
    python -m benchmarks.jaffe_transfer --only shipped_unfrozen_long shipped_unfrozen_long_heavy scratch_long   # into the existing JSON

Each number is the mean ± std over the same subject-grouped folds (no subject in two folds), every fold trained on
a schedule fixed in advance and scored once on its held-out subjects (no epoch chosen on them):

- `shipped_frozen`: the fastai recipe as the CLI runs it by default: the shipped body and its head (same seven
  emotions), body frozen for --freeze-epochs at --lr, then unfrozen for --epochs at `slice(lr/2/100, lr/2)`;
- `shipped_frozen_lr_mult10`: the same stages, the head at 10x --lr and the body's rates `slice(lr/2, 5 lr)`
  (`--lr-mult 10`): the first layers move ten times slower than the head instead of a hundred;
- `shipped_unfrozen`: the same start, all layers at --lr from the first epoch (--freeze-epochs + --epochs);
- `shipped_unfrozen_tta`: the same, each held-out face scored with its mirror image and two shifted crops (`--tta`);
- `scratch`: the same architecture from random weights, as many epochs;
- `shipped_stage3_pool2`: the shipped body cut after its third stage (`stages=3`, where the linear probe reads the
  most) under a new `pool2` head (2x2 average pool, batch norm, dropout, linear), the body frozen for --freeze-epochs
  at 10x --lr, then unfrozen for --epochs at `slice(lr, 5 lr)` (`--lr-mult 5`): the body at --lr, the head 5x faster;
- `shipped_unfrozen_long`, `shipped_unfrozen_long_heavy`, `scratch_long` (only with --only, or --long): `shipped_unfrozen`
  and `scratch` for --long-epochs (30: about 150 steps of 32 faces, where 13 epochs give 70), the second with the
  `heavy` augmentation (rotation to 20 degrees, zoom to 1.25, lighting 0.4, warp 0.1);
- `linear_probe`: no training of the network: a logistic regression on the body's features (each stage's output,
  average-pooled to 2x2, face and mirror image averaged), per stage: what the shipped body's features hold for JAFFE;
- `zero_shot`: the shipped model on all 213 faces as it is.

Writes `benchmarks/jaffe_transfer.json` (the settings, per-fold accuracies, means and stds, times).
"""
import argparse, json, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
JAFFE = HERE.parent.parent/'shared'/'data'/'jaffe'
READ = dict(label_pattern=r'^[A-Z]+\.([A-Z]{2})\d', subject_pattern=r'^([A-Z]+)\.')


def linear_probe(model, items, n_folds=5, seed=0, C=0.1):
    "{stage name: (mean, std, per-fold accuracies)} of a logistic regression on each body stage's pooled features, on the recipe's folds"
    import numpy as np, torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from fer_fastai.data import load_items
    from fer_fastai.images import preprocess_faces
    from fer_fastai.recipes import cv_splits
    from fer_fastai.runs import load_run_model
    items = load_items(items, 1)
    net, cfg = load_run_model(model, device='cpu')
    layers = list(net[0][0] if isinstance(net[0][0], torch.nn.Sequential) else net[0])
    ends = [i for i, l in enumerate(layers) if isinstance(l, torch.nn.MaxPool2d)] + [len(layers) - 1]  # a stage ends at a pooling, the body at its last layer
    x = torch.tensor(preprocess_faces(list(items.image), cfg.size, cfg.n_channels, cfg.mean, cfg.std))
    feats = {}
    with torch.no_grad():
        for xx in (x, x.flip(3)):
            h = xx
            for i, l in enumerate(layers):
                h = l(h)
                if i in ends:
                    k = f'stage {ends.index(i) + 1} ({h.shape[1]} channels)'
                    feats[k] = feats.get(k, 0) + torch.nn.functional.adaptive_avg_pool2d(h, 2).flatten(1).numpy() / 2
    y = items.label.values
    res = {}
    for k, F in feats.items():
        accs = [float((make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000)).fit(F[tr], y[tr]).predict(F[va]) == y[va]).mean())
                for tr, va in cv_splits(items, n_folds, seed=seed)]
        res[k] = (float(np.mean(accs)), float(np.std(accs, ddof=1)), accs)
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data', default=str(JAFFE))
    p.add_argument('--model', default='fer2013', help='the shipped model (or run folder) whose body starts the transfer')
    p.add_argument('--folds', type=int, default=5)
    p.add_argument('--epochs', type=int, default=10)
    p.add_argument('--freeze-epochs', type=int, default=3)
    p.add_argument('--lr', type=float, default=1e-3, help='learning rate from the shipped body (from scratch: 2e-3, the fer_vgg band)')
    p.add_argument('--bs', type=int, default=32)
    p.add_argument('--seed', type=int, default=0, help='draws the folds and the training order (another seed: a repeat of the whole cross-validation)')
    p.add_argument('--out', default='runs/jaffe')
    p.add_argument('--long-epochs', type=int, default=30, help='epochs of the *_long settings')
    p.add_argument('--long', action='store_true', help='also run the *_long settings')
    p.add_argument('--only', nargs='+', metavar='SETTING', help='run these settings only (no probe, no zero-shot) and update their rows in --json')
    p.add_argument('--json', default=str(HERE/'jaffe_transfer.json'))
    a = p.parse_args(argv)
    from fer_fastai.data import read_fer_items
    from fer_fastai.runs import read_run
    from fer_fastai.recipes import run_recipe, cross_dataset_eval
    items = read_fer_items(a.data, **READ)
    arch = read_run(a.model).arch
    common = dict(data=items, protocol='kfold', n_folds=a.folds, bs=a.bs, overwrite=True, seed=a.seed)
    settings = {
        'shipped_frozen': dict(pretrained=a.model, epochs=a.epochs, freeze_epochs=a.freeze_epochs, lr=a.lr),
        'shipped_frozen_lr_mult10': dict(pretrained=a.model, epochs=a.epochs, freeze_epochs=a.freeze_epochs, lr=10 * a.lr, lr_mult=10),
        'shipped_unfrozen': dict(pretrained=a.model, epochs=a.epochs + a.freeze_epochs, freeze_epochs=0, lr=a.lr),
        'shipped_unfrozen_tta': dict(pretrained=a.model, epochs=a.epochs + a.freeze_epochs, freeze_epochs=0, lr=a.lr, tta=True, tta_crops=2),
        'scratch': dict(arch=arch, epochs=a.epochs + a.freeze_epochs, lr=2e-3),
        'shipped_stage3_pool2': dict(pretrained=a.model, stages=3, head='pool2', epochs=a.epochs, freeze_epochs=a.freeze_epochs, lr=10 * a.lr, lr_mult=5),
    }
    longer = {
        'shipped_unfrozen_long': dict(pretrained=a.model, epochs=a.long_epochs, freeze_epochs=0, lr=a.lr),
        'shipped_unfrozen_long_heavy': dict(pretrained=a.model, epochs=a.long_epochs, freeze_epochs=0, lr=a.lr, aug='heavy'),
        'scratch_long': dict(arch=arch, epochs=a.long_epochs, lr=2e-3),
    }
    if a.only:
        every = settings | longer
        unknown = set(a.only) - set(every)
        if unknown: p.error(f'unknown setting(s) {", ".join(sorted(unknown))}: choose from {", ".join(every)}')
        settings = {k: v for k, v in every.items() if k in a.only}
    elif a.long: settings |= longer
    out = {'data': a.data, 'n_faces': len(items), 'n_subjects': int(items.subject.nunique()), 'model': a.model, 'arch': arch,
           'folds': a.folds, 'seed': a.seed, 'protocol': 'subject-grouped stratified k-fold; fixed schedule, last epoch scored on the held-out subjects', 'results': {}}
    if a.only and Path(a.json).exists():  # update these rows, keep the others
        saved = json.loads(Path(a.json).read_text())
        if (saved.get('model'), saved.get('folds'), saved.get('seed', 0)) != (a.model, a.folds, a.seed):
            p.error(f"{a.json} holds a run from --model {saved.get('model')} on {saved.get('folds')} folds with seed {saved.get('seed', 0)}, not {a.model} on {a.folds} with seed {a.seed}: "
                    'rerun every setting (no --only) or pass another --json.')
        out = saved
    for name, s in settings.items():
        t0 = time.time()
        res = run_recipe('default', out=Path(a.out)/name, **common, **s)
        folds = [f['valid_acc'] for f in res['folds']]
        m, sd = res['cv']['valid_acc']
        out['results'][name] = dict(settings=s, mean=round(m, 4), std=round(sd, 4), folds=[round(f, 4) for f in folds], time_s=round(time.time() - t0, 1))
        print(f'{name}: {100 * m:.1f}% ± {100 * sd:.1f} ({time.time() - t0:.0f}s)')
        if a.only: Path(a.json).write_text(json.dumps(out, indent=1))  # each row as soon as it is measured
    if a.only: print(f'-> {a.json}'); return
    t0 = time.time()
    probe = linear_probe(a.model, items, a.folds, seed=a.seed)
    out['results']['linear_probe'] = dict(stages={k: dict(mean=round(m, 4), std=round(sd, 4), folds=[round(f, 4) for f in fs]) for k, (m, sd, fs) in probe.items()},
                                          time_s=round(time.time() - t0, 1))
    for k, (m, sd, _) in probe.items(): print(f'linear_probe {k}: {100 * m:.1f}% ± {100 * sd:.1f}')
    rep = cross_dataset_eval(a.model, items)
    out['results']['zero_shot'] = dict(accuracy=round(rep.accuracy, 4), macro_f1=round(rep.macro_f1, 4), n=rep.n)
    print(f'zero_shot: {100 * rep.accuracy:.1f}% on {rep.n} faces')
    Path(a.json).write_text(json.dumps(out, indent=1))
    print(f'-> {a.json}')


if __name__ == '__main__': main()
