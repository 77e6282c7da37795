"""Which test-time augmentation suits a trained run? Accuracy of each TTA setting `predict_tta` offers, on PublicTest
(to choose) and PrivateTest (to report), from one pass that keeps the probabilities of every view.

Views: the face, 8 crops shifted by `max(1, size // 16)` px (3 px at 48; `predict_tta`'s `_shifts` order), and the
mirror image of each. `--tta --crops N` in `fer_fastai evaluate` averages the face, its mirror and the first N crops;
the "x mirror" rows also mirror the crops (not a `predict_tta` option today).

    python benchmarks/tta_views.py runs/fer2013_fer_vgg_m     # 18 views x 2 splits: about 12 min on 2 CPU cores
    -> prints the table; writes RUN/tta_views.json
"""
import argparse, json, time
from pathlib import Path
import torch, torch.nn.functional as F
from fer_fastai.data import read_fer_items, load_items
from fer_fastai.learner import load_fer_learner, read_run
from fer_fastai.models import _shift, _shifts

def view_probs(learn, items, bs=256):
    "`(probs, targets)`: probs is (n, 18, n_classes), the views [face, 8 crops, mirror of each of those 9]"
    model, dev = learn.model.eval(), next(learn.model.parameters()).device
    P, Y = [], []
    with torch.no_grad():
        for xb, yb in learn.dls.test_dl(items, with_labels=True, bs=bs):
            xb = xb.as_subclass(torch.Tensor).to(dev).float()
            views = [xb] + [_shift(xb, dy, dx) for dy, dx in _shifts(8, max(1, xb.shape[-1] // 16))]
            views += [v.flip(-1) for v in views]
            P.append(torch.stack([F.softmax(model(v).float(), -1) for v in views], 1).cpu()); Y.append(yb.as_subclass(torch.Tensor).cpu())
    return torch.cat(P), torch.cat(Y)

def settings():
    "name -> view indices (0 face, 1-8 crops, 9 mirror, 10-17 mirrored crops)"
    s = {'no TTA': [0], 'mirror (--crops 0)': [0, 9]}
    for n in (2, 4, 8): s[f'mirror + {n} crops (--crops {n})'] = [0, 9] + list(range(1, n + 1))
    for n in (2, 4, 8): s[f'(face + {n} crops) x mirror'] = [0, 9] + list(range(1, n + 1)) + list(range(10, 10 + n))
    return s

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('run', help='a run folder written by `fer_fastai train`')
    ap.add_argument('--data', default=None, help='dataset (default: FER2013)')
    ap.add_argument('--splits', nargs='+', default=['PublicTest', 'PrivateTest'])
    a = ap.parse_args()
    t0 = time.time()
    items = load_items(read_fer_items(a.data), read_run(a.run)['n_channels'])  # decoded once: for the dataloaders and the splits
    learn = load_fer_learner(a.run, data=items, bs=256)
    acc = {}
    for split in a.splits:
        t = time.time()
        P, Y = view_probs(learn, items[(items.split.astype(str) == split) & items.label.isin(list(learn.dls.vocab))])
        acc[split] = {k: round((P[:, v].mean(1).argmax(1) == Y).float().mean().item(), 4) for k, v in settings().items()}
        print(f'{split}: {len(Y)} faces, {time.time() - t:.0f} s', flush=True)
    print(f"\n| TTA | views | {' | '.join(a.splits)} |\n|---|---|" + '---|' * len(a.splits))
    for k, v in settings().items(): print(f"| {k} | {len(v)} | " + ' | '.join(f'{acc[s][k]:.2%}' for s in a.splits) + ' |')
    rec = dict(run=str(a.run), data=a.data or 'FER2013', accuracy=acc, wall_time_s=round(time.time() - t0, 1), torch_threads=torch.get_num_threads())
    (Path(a.run)/'tta_views.json').write_text(json.dumps(rec, indent=1))
    print(f'\nwritten {Path(a.run)/"tta_views.json"} ({rec["wall_time_s"]:.0f} s)')
