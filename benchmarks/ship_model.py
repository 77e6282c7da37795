"""Ship a trained run folder inside the package, with a measured model card.

    python -m benchmarks.ship_model RUN_FOLDER --name fer2013 --command "fer_fastai train ..." [--summary TEXT]

Writes `fer_fastai/pretrained/NAME/` (half-precision `model.pth`, `model.json`, `card.json`) with
`fer_fastai.runs.ship_run`, then measures the *shipped* weights (not the float32 run) on FER2013's PublicTest and
PrivateTest, plain and with TTA (flip + 2 shifted crops), and writes every number into `card.json` and the
markdown page `nbs/model_card_NAME.md`. Checkpoints were chosen on PublicTest by `fer_fastai train`; PrivateTest is
measured here once. The card also records `check`: the accuracy on a fixed 500-face PrivateTest subset (every
7th face in file-name order), which `tests/test_pretrained.py` reproduces.
"""
import argparse, json, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIMITS = [
    'Trained on FER2013 only: 48x48 gray, mostly frontal faces cropped by the dataset. Use a face detector and crop '
    '(FERRecognizer does) before predicting; profile views, occlusions and very small faces are out of its range.',
    "FER2013's labels are noisy (human accuracy on it is estimated at about 65-68%) and it holds some non-faces and duplicates.",
    "FER2013's faces come from web searches: its demographics (age, ethnicity, posed vs. spontaneous) are not documented "
    'or balanced, and accuracy on other populations can be lower: on JAFFE (posed faces of 10 Japanese women) the shipped '
    'model scores {jaffe} as it is (zero-shot, labels through the alias table).',
    "'disgust' has 436 training faces of 28,709: its recall is the least reliable.",
    'Predicted emotions are what a face shows, not what a person feels: not for decisions about people.',
]
CHECK = dict(split='PrivateTest', every=7, n=500)  # the fixed subset tests/test_pretrained.py reproduces


def check_items(items, split='PrivateTest', every=7, n=500):
    "The fixed check subset: every `every`-th face of `split` in file-name order, the first `n`"
    sel = items[items.split.astype(str) == split].sort_values('image')
    return sel.iloc[::every].head(n).reset_index(drop=True)


def measure(name, data=None) -> dict:
    "Accuracy and macro-F1 of shipped model `name` on PublicTest and PrivateTest, plain and with TTA; per-class recall; the check subset"
    from fer_fastai.data import read_fer_items
    from fer_fastai.learner import load_fer_learner
    from fer_fastai.evaluate import evaluate, evaluate_ensemble
    items = read_fer_items(data)
    learn = load_fer_learner(name, data=items, bs=256, verbose=False)
    metrics, t0 = {}, time.time()
    for split in ('PublicTest', 'PrivateTest'):
        plain, tta = evaluate(learn, split), evaluate_ensemble([learn], split, flip=True, crops=2, name=split)
        metrics[split] = dict(n=plain.n, accuracy=round(plain.accuracy, 4), macro_f1=round(plain.macro_f1, 4),
                              tta_accuracy=round(tta.accuracy, 4), tta_macro_f1=round(tta.macro_f1, 4))
        if split == 'PrivateTest': recall = plain.per_class.recall.round(4).to_dict()
    check = evaluate(learn, check_items(items, **CHECK), name='check')
    return dict(metrics=metrics, per_class_recall=recall, recall_split='PrivateTest',
                check=dict(CHECK, selection='every 7th face of PrivateTest in file-name order, the first 500', accuracy=round(check.accuracy, 4)),
                eval_time_s=round(time.time() - t0, 1))


def jaffe_zero_shot(name) -> str:
    "The shipped model's accuracy on all of JAFFE as it is (labels through the alias table), for the card's limits"
    from fer_fastai.data import read_fer_items
    from fer_fastai.recipes import cross_dataset_eval
    from benchmarks.jaffe_transfer import JAFFE, READ
    if not JAFFE.exists(): return 'less (not measured: no JAFFE beside the repo)'
    return f'{cross_dataset_eval(name, read_fer_items(JAFFE, **READ)).accuracy:.1%}'


def main(argv=None):
    from fer_fastai.runs import read_run, ship_run, pretrained_card, card_markdown, PRETRAINED_DIR
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('run', help='the run folder written by `fer_fastai train`')
    p.add_argument('--name', required=True, help='the shipped model name')
    p.add_argument('--command', required=True, help='the exact command that trained the run')
    p.add_argument('--summary', default='', help='one paragraph on what the model is for')
    p.add_argument('--hardware', help='what it was trained on (default: the run record)')
    a = p.parse_args(argv)
    cfg = read_run(a.run)
    tr = cfg.training
    card = dict(summary=a.summary, command=a.command,
                data='FER2013: 28,709 Training faces; PublicTest (3,589) chose the kept epoch; PrivateTest (3,589) measured once, never tuned on',
                protocol='trained on Training; the epoch with the best PublicTest accuracy kept; PrivateTest reported as it came out',
                seed=tr.get('seed'), hardware=a.hardware or tr.get('hardware'), train_time_s=round(tr.get('total_time_s') or 0),
                epochs=tr.get('epochs'), best_epoch=tr.get('best_epoch'), limits=LIMITS)
    folder = ship_run(a.run, a.name, card)
    card = pretrained_card(a.name)
    card.update(measure(a.name))  # the shipped half-precision weights, measured; the weights and their sha256 stay as written
    jaffe = jaffe_zero_shot(a.name)
    card['limits'] = [l.replace('{jaffe}', jaffe) for l in card['limits']]
    (folder/'card.json').write_text(json.dumps(card, indent=2, default=str))
    page = HERE.parent/'nbs'/f'model_card_{a.name}.md'
    page.write_text('---\ntitle: "Model card: ' + a.name + '"\n---\n\n' + card_markdown(card).split('\n', 1)[1])
    print(json.dumps({k: card[k] for k in ('metrics', 'per_class_recall', 'check', 'sha256')}, indent=1))
    print(f'Shipped {a.name} in {folder} ({card["weights"]["bytes"] / 1e6:.1f} MB); model card page {page}')


if __name__ == '__main__': main()
