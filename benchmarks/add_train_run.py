"""Append a `fer_fastai train` run folder (the default recipe) to benchmarks/results.csv, from its model.json.

    python benchmarks/add_train_run.py runs/fer2013_resnet18_e16 --command "fer_fastai train --epochs 16 ..."

The hardware column is the run's own record (`training.hardware`, written by `fer_fastai train`), else --hardware, else
this machine's.

Every number comes from the run's own model.json (written by `fer_fastai train`); nothing is typed in.
"""
import json, sys
from pathlib import Path
from fer_fastai.recipes import hardware
from _add_row import add_row_main

def row(run, command='', hw=None):
    meta_f = Path(run)/'model.json'
    if not meta_f.is_file(): sys.exit(f'{run!r} has no model.json: pass a run folder written by `fer_fastai train`.')
    m = json.loads(meta_f.read_text()); t, met = m['training'], m['metrics']
    stem = 'made for 48 px' if m['arch'].startswith('fer_vgg') else 'native stem' if m.get('native') else 'ImageNet stem'
    notes = [f"head {m['head']}", stem, f"bs {t['bs']}", t['opt'], t['schedule']]
    if t.get('lrs'): notes.append('lr ' + ', '.join(f'{k} {float(v):.2g}' for k, v in t['lrs'].items()))
    if t.get('precision'): notes.append(f"{t['precision']} training")
    if t.get('label_smoothing'): notes.append(f"label smoothing {t['label_smoothing']}")
    if t.get('class_weights') not in (None, 'none'): notes.append(f"class weights {t['class_weights']}")
    if t.get('aug') not in (None, 'default'): notes.append(f"augmentation {t['aug']}")
    if t.get('erasing'): notes.append(f"random erasing {t['erasing']}")
    if t.get('teachers'):
        d = t.get('distill') or {}
        notes.append(f"distilled from {', '.join(t['teachers'])} (alpha {d.get('alpha')}, T {d.get('T')})")
    if command: notes.append(command)
    return dict(recipe='distilled (fer_fastai train --teacher)' if t.get('teachers') else 'default (fer_fastai train)', arch=m['arch'], weights=t.get('weights') or ('imagenet' if t.get('pretrained') else 'random'),
                input_size=m['size'], epochs=t['epochs'], hardware=f"{hw or t.get('hardware') or hardware()}, device {t['device']}",
                wall_time_s=round(t.get('total_time_s', t['wall_time_s']), 1),
                public_test_acc=round(met['PublicTest']['accuracy'], 4), private_test_acc=round(met['PrivateTest']['accuracy'], 4),
                macro_f1=round(met['PrivateTest']['macro_f1'], 4), quick=bool(t.get('quick')), notes='; '.join(notes))

def main(argv=None): add_row_main(row, __doc__, 'run folder written by `fer_fastai train`', 'the command that made the run, for the notes column', argv,
                                  hardware=True)

if __name__ == '__main__': main()
