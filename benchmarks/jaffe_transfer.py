"""Transfer to JAFFE from the shipped FER2013 body, against training from scratch: subject-grouped 5-fold CV.

    python -m benchmarks.jaffe_transfer [--model fer2013] [--folds 5] [--epochs 10] [--freeze-epochs 3] [--out runs/jaffe]

Four numbers, each the mean ± std over the same subject-grouped folds (no subject in two folds), every fold
trained on a schedule fixed in advance and scored once on its held-out subjects (no epoch chosen on them):

- `shipped_frozen`: the shipped body, its head (same seven emotions), body frozen for --freeze-epochs, then
  unfrozen with discriminative rates for --epochs;
- `shipped_unfrozen`: the same start, all layers trained from the first epoch (--freeze-epochs + --epochs);
- `scratch`: the same architecture from random weights, as many epochs;
- `zero_shot`: the shipped model on all 213 faces as it is.

Writes `benchmarks/jaffe_transfer.json` (the settings, per-fold accuracies, means and stds, times).
"""
import argparse, json, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
JAFFE = HERE.parent.parent/'shared'/'data'/'jaffe'
READ = dict(label_pattern=r'^[A-Z]+\.([A-Z]{2})\d', subject_pattern=r'^([A-Z]+)\.')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data', default=str(JAFFE))
    p.add_argument('--model', default='fer2013', help='the shipped model (or run folder) whose body starts the transfer')
    p.add_argument('--folds', type=int, default=5)
    p.add_argument('--epochs', type=int, default=10)
    p.add_argument('--freeze-epochs', type=int, default=3)
    p.add_argument('--lr', type=float, default=1e-3, help='learning rate from the shipped body (from scratch: 2e-3, the fer_vgg band)')
    p.add_argument('--bs', type=int, default=32)
    p.add_argument('--out', default='runs/jaffe')
    p.add_argument('--json', default=str(HERE/'jaffe_transfer.json'))
    a = p.parse_args(argv)
    from fer_fastai.data import read_fer_items
    from fer_fastai.runs import read_run
    from fer_fastai.recipes import run_recipe, cross_dataset_eval
    items = read_fer_items(a.data, **READ)
    arch = read_run(a.model).arch
    common = dict(data=items, protocol='kfold', n_folds=a.folds, bs=a.bs, overwrite=True, seed=0)
    settings = {
        'shipped_frozen': dict(pretrained=a.model, epochs=a.epochs, freeze_epochs=a.freeze_epochs, lr=a.lr),
        'shipped_unfrozen': dict(pretrained=a.model, epochs=a.epochs + a.freeze_epochs, freeze_epochs=0, lr=a.lr),
        'scratch': dict(arch=arch, epochs=a.epochs + a.freeze_epochs, lr=2e-3),
    }
    out = {'data': a.data, 'n_faces': len(items), 'n_subjects': int(items.subject.nunique()), 'model': a.model, 'arch': arch,
           'folds': a.folds, 'protocol': 'subject-grouped stratified k-fold; fixed schedule, last epoch scored on the held-out subjects', 'results': {}}
    for name, s in settings.items():
        t0 = time.time()
        res = run_recipe('default', out=Path(a.out)/name, **common, **s)
        folds = [f['valid_acc'] for f in res['folds']]
        m, sd = res['cv']['valid_acc']
        out['results'][name] = dict(settings=s, mean=round(m, 4), std=round(sd, 4), folds=[round(f, 4) for f in folds], time_s=round(time.time() - t0, 1))
        print(f'{name}: {100 * m:.1f}% ± {100 * sd:.1f} ({time.time() - t0:.0f}s)')
    rep = cross_dataset_eval(a.model, items)
    out['results']['zero_shot'] = dict(accuracy=round(rep.accuracy, 4), macro_f1=round(rep.macro_f1, 4), n=rep.n)
    print(f'zero_shot: {100 * rep.accuracy:.1f}% on {rep.n} faces')
    Path(a.json).write_text(json.dumps(out, indent=1))
    print(f'-> {a.json}')


if __name__ == '__main__': main()
