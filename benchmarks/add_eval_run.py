"""Append a `fer_fastai evaluate` result (one run with --tta, or an ensemble of runs) to benchmarks/results.csv, from the
`SPLIT[_tta]_evaluation.json` files that command wrote for PublicTest and PrivateTest.

    fer_fastai evaluate --model RUN... --tta --split PrivateTest --out DEST
    fer_fastai evaluate --model RUN... --tta --split PublicTest --out DEST
    python benchmarks/add_eval_run.py DEST --command "fer_fastai evaluate --model RUN... --tta"

Every number comes from those files and the members' model.json; nothing is typed in.
"""
import json, sys
from pathlib import Path
from fer_fastai.recipes import hardware
from _add_row import add_row_main

def _evaluation(dest, split):
    fs = sorted(Path(dest).glob(f'{split}*_evaluation.json'))
    if len(fs) != 1: sys.exit(f'{dest!r} should hold one {split}*_evaluation.json (fer_fastai evaluate --split {split} --out {dest}); found {[f.name for f in fs]}.')
    return json.loads(fs[0].read_text())

def row(dest, command=''):
    pub, priv = _evaluation(dest, 'PublicTest'), _evaluation(dest, 'PrivateTest')
    if pub['members'] != priv['members'] or pub['tta'] != priv['tta'] or pub['crops'] != priv['crops']:
        sys.exit('The PublicTest and PrivateTest evaluations were made with different runs or TTA settings.')
    metas = [json.loads((Path(m)/'model.json').read_text()) for m in priv['members']]
    tr = [m.get('training', {}) for m in metas]
    notes = [f"members: {', '.join(priv['members'])}"] + ([f"TTA flip + {priv['crops']} crops"] if priv['tta'] else [])
    notes.append('evaluation only: the members were trained separately (their rows above)')
    if command: notes.append(command)
    return dict(recipe=('ensemble' if len(metas) > 1 else 'tta') + ' (fer_fastai evaluate)', arch='+'.join(m['arch'] for m in metas),
                weights='+'.join(sorted({t.get('weights') or ('imagenet' if t.get('pretrained') else 'random') for t in tr})),
                input_size='+'.join(sorted({str(m['size']) for m in metas})), epochs='+'.join(str(t.get('epochs', '?')) for t in tr),
                hardware=hardware(), wall_time_s=round(pub['wall_time_s'] + priv['wall_time_s'], 1),
                public_test_acc=round(pub['accuracy'], 4), private_test_acc=round(priv['accuracy'], 4), macro_f1=round(priv['macro_f1'], 4),
                quick=any(t.get('quick') for t in tr), notes='; '.join(notes))

def main(argv=None): add_row_main(row, __doc__, 'the --out folder of the two fer_fastai evaluate calls', 'the command, for the notes column', argv)

if __name__ == '__main__': main()
