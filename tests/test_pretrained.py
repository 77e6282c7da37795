"""The models shipped in the package: they load offline, their hash is checked, they score what their card says,
`fer_fastai predict` uses one when given no model, and the transfer recipe starts from one."""
import hashlib, json, shutil, subprocess, sys, zipfile
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from PIL import Image
from skimage import data as skimage_data
from fer_fastai.core import DEFAULT_MODEL, FERModelError
import fer_fastai.runs as runs
from fer_fastai.runs import list_pretrained, pretrained_card, pretrained_path, load_run_model, PRETRAINED_DIR

ROOT = Path(__file__).resolve().parents[1]
JAFFE = ROOT.parent/'shared'/'data'/'jaffe'
JAFFE_READ = dict(label_pattern=r'^[A-Z]+\.([A-Z]{2})\d', subject_pattern=r'^([A-Z]+)\.')
sys.path.insert(0, str(ROOT))
from benchmarks.ship_model import check_items


def test_the_default_model_ships():
    assert DEFAULT_MODEL in list_pretrained()

@pytest.mark.parametrize('name', list_pretrained())
def test_every_shipped_model_has_its_hash_and_card(name):
    card = pretrained_card(name)
    f = PRETRAINED_DIR/name/'model.pth'
    assert hashlib.sha256(f.read_bytes()).hexdigest() == card['sha256']
    assert f.stat().st_size == card['weights']['bytes'] <= 10e6
    sd = torch.load(f, weights_only=True)  # a plain state dict: nothing in it runs
    assert {v.dtype for v in sd.values() if v.is_floating_point()} == {torch.float16}
    model, cfg = load_run_model(name, 'cpu')
    assert (cfg.arch, cfg.vocab) == (card['arch'], card['vocab'])
    for k in ('command', 'data', 'protocol', 'seed', 'hardware', 'train_time_s', 'metrics', 'per_class_recall', 'limits', 'check'):
        assert card.get(k) not in (None, '', [], {}), k
    for split in ('PublicTest', 'PrivateTest'):
        assert set(card['metrics'][split]) >= {'accuracy', 'macro_f1', 'tta_accuracy', 'tta_macro_f1'}


def test_a_changed_byte_is_refused(tmp_path, monkeypatch):
    shutil.copytree(PRETRAINED_DIR/DEFAULT_MODEL, tmp_path/DEFAULT_MODEL)
    f = tmp_path/DEFAULT_MODEL/'model.pth'
    b = bytearray(f.read_bytes()); b[len(b) // 3] ^= 0x10; f.write_bytes(bytes(b))
    monkeypatch.setattr(runs, 'PRETRAINED_DIR', tmp_path)
    want = pretrained_card(DEFAULT_MODEL)['sha256']
    with pytest.raises(FERModelError) as e: load_run_model(DEFAULT_MODEL)
    assert str(f) in str(e.value) and want in str(e.value)
    with pytest.raises(FERModelError, match='Shipped models: '): pretrained_path('no_such_model')


@pytest.mark.parametrize('name', list_pretrained())
def test_it_scores_what_its_card_says(fer_items, name):
    "On the card's fixed 500 PrivateTest faces, the shipped weights reproduce the card's accuracy within 2 points"
    from fer_fastai.learner import load_fer_learner
    from fer_fastai.evaluate import evaluate
    card = pretrained_card(name)
    chk = card['check']
    sel = check_items(fer_items, chk['split'], chk['every'], chk['n'])
    assert len(sel) == chk['n'] == 500
    learn = load_fer_learner(name, data=fer_items, verbose=False)
    acc = evaluate(learn, sel).accuracy
    assert abs(acc - chk['accuracy']) <= 0.02, (acc, chk)
    assert abs(acc - card['metrics']['PrivateTest']['accuracy']) <= 0.06  # the subset is a fair sample of the whole split


def test_predict_a_photo_with_no_model(tmp_path):
    "`fer_fastai predict photo.jpg` with no --model: one face, probabilities summing to 1"
    from fer_fastai.cli import main
    photo = tmp_path/'astronaut.jpg'; Image.fromarray(skimage_data.astronaut()).save(photo)
    assert main(['predict', str(photo), '--out', str(tmp_path/'out')]) == 0
    df = pd.read_csv(tmp_path/'out'/'images.csv')
    assert len(df) == 1 and df.face.iloc[0] == 0
    probs = df[[c for c in df if c.startswith('p_')]].iloc[0]
    assert len(probs) == 7 and abs(probs.sum() - 1) < 1e-4 and df.emotion.iloc[0] == probs.idxmax()[2:]
    assert (tmp_path/'out'/'astronaut_annotated.jpg').is_file()
    from fer_fastai.inference import FERRecognizer
    res = FERRecognizer().predict(photo)
    assert len(res) == 1 and res[0]['emotion'] == df.emotion.iloc[0]


def test_cam_of_a_photo_with_no_model(tmp_path):
    from fer_fastai.cli import main
    photo = tmp_path/'face.png'; Image.fromarray(skimage_data.astronaut()[66:161, 177:272]).save(photo)
    assert main(['cam', str(photo), '--out', str(tmp_path/'cam.png')]) == 0
    assert Image.open(tmp_path/'cam.png').size[0] > 0


def test_fer_learner_from_the_shipped_body():
    from fer_fastai.data import fer_dataloaders
    from fer_fastai.learner import fer_learner
    card = pretrained_card(DEFAULT_MODEL)
    dls = fer_dataloaders(max_per_class=4, bs=8, seed=0, verbose=False)
    learn = fer_learner(dls, pretrained=DEFAULT_MODEL)
    sd = torch.load(PRETRAINED_DIR/DEFAULT_MODEL/'model.pth', weights_only=True)
    assert learn.fer['arch'] == card['arch'] and learn.fer['pretrained'] == DEFAULT_MODEL
    k = next(k for k in learn.model[0].state_dict() if k.endswith('weight'))
    assert torch.equal(learn.model[0].state_dict()[k], sd['0.' + k].float())
    assert fer_learner(dls, pretrained=card['arch']).fer['pretrained'] == DEFAULT_MODEL  # an arch that has a shipped model
    with pytest.raises(FERModelError, match='neither a shipped model'): fer_learner(dls, pretrained='nothing')


@pytest.fixture(scope='module')
def jaffe():
    if not JAFFE.is_dir(): pytest.skip(f'JAFFE not at {JAFFE}')
    return JAFFE


def test_the_frozen_stage_leaves_the_body_alone(jaffe):
    "Transfer to JAFFE: the frozen stage trains the head (and batch norm, as fastai does) and leaves every body convolution as shipped"
    from fer_fastai.data import read_fer_items, fer_dataloaders
    from fer_fastai.learner import fer_learner
    from fer_fastai.train import train_fer
    items = read_fer_items(jaffe, **JAFFE_READ)
    assert len(items) == 213 and items.subject.nunique() == 10
    dls = fer_dataloaders(items, splitter='kfold', n_folds=5, fold=0, bs=32, seed=0, verbose=False, check=False)
    assert not set(dls.items.subject.iloc[:dls.fer['n_train']]) & set(dls.items.subject.iloc[dls.fer['n_train']:])  # no subject on both sides
    learn = fer_learner(dls, pretrained=DEFAULT_MODEL)
    convs = lambda m: {n: p.detach().clone() for n, p in m.named_parameters() if p.ndim > 1}
    body0, head0 = convs(learn.model[0]), convs(learn.model[1])
    with learn.no_bar(), learn.no_logging(): train_fer(learn, epochs=0, freeze_epochs=1, lr=1e-3)
    assert all(torch.equal(p, body0[n]) for n, p in convs(learn.model[0]).items())
    assert any(not torch.equal(p, head0[n]) for n, p in convs(learn.model[1]).items())


def test_transfer_from_the_command_line(jaffe, tmp_path):
    "fer_fastai train --data JAFFE --pretrained fer2013 ... --splitter kfold --by-subject: a few epochs end to end"
    from fer_fastai.cli import main
    out = tmp_path/'jaffe'
    rc = main(['train', '--data', str(jaffe), '--pretrained', DEFAULT_MODEL, '--label-pattern', JAFFE_READ['label_pattern'],
               '--subject-pattern', JAFFE_READ['subject_pattern'], '--splitter', 'kfold', '--by-subject', '--epochs', '2',
               '--freeze-epochs', '1', '--lr', '1e-3', '--lr-mult', '10', '--bs', '32', '--out', str(out), '--no-plots'])
    assert rc == 0
    meta = json.loads((out/'model.json').read_text())
    assert meta['training']['weights'] == DEFAULT_MODEL and meta['arch'] == pretrained_card(DEFAULT_MODEL)['arch']
    assert [s['stage'] for s in meta['training']['stages']][:2] == ['lr_find frozen', 'frozen']
    # unfrozen at lr/2 = 5e-4, the first layers --lr-mult 10 times slower
    assert meta['training']['lr_mult'] == 10 and meta['training']['stages'][-1] == dict(stage='unfrozen', epochs=2, lr=str(slice(5e-5, 5e-4)))
    assert meta['mean'] == json.loads((PRETRAINED_DIR/DEFAULT_MODEL/'model.json').read_text())['mean']  # fed as the body learnt
    assert 0 <= meta['metrics']['valid']['accuracy'] <= 1



def test_a_short_body_from_the_command_line(jaffe, tmp_path):
    "--stages 3 --head pool2: the shipped body's first three stages under a new head; the run saves and loads back as it was trained"
    from fer_fastai.cli import main
    from fer_fastai.archs import create_fer_model
    from fer_fastai.data import read_fer_items, load_items
    from fer_fastai.images import preprocess_faces
    out = tmp_path/'short'
    rc = main(['train', '--data', str(jaffe), '--pretrained', DEFAULT_MODEL, '--stages', '3', '--head', 'pool2',
               '--label-pattern', JAFFE_READ['label_pattern'], '--subject-pattern', JAFFE_READ['subject_pattern'], '--splitter', 'kfold',
               '--by-subject', '--epochs', '1', '--freeze-epochs', '1', '--lr', '1e-2', '--lr-mult', '5', '--bs', '32', '--out', str(out), '--no-plots'])
    assert rc == 0
    meta = json.loads((out/'model.json').read_text())
    assert meta['stages'] == 3 and meta['head'] == 'pool2' and meta['training']['stages'][-1]['lr'] == str(slice(1e-3, 5e-3))
    model, cfg = load_run_model(out, device='cpu')
    shipped, _ = load_run_model(DEFAULT_MODEL, device='cpu')
    pools = [i for i, l in enumerate(shipped[0][0]) if isinstance(l, torch.nn.MaxPool2d)]
    assert len(model[0][0]) == pools[2] + 1  # up to the third max-pool
    items = load_items(read_fer_items(jaffe, **JAFFE_READ).iloc[:16], 1)
    x = torch.tensor(preprocess_faces(list(items.image), cfg.size, cfg.n_channels, cfg.mean, cfg.std))
    with torch.no_grad(): feats, p = model[0](x), model(x).softmax(1)
    assert feats.shape[-2:] == (6, 6) and model[1][-1].in_features == 4 * feats.shape[1]  # a 2x2 grid of the stage's channels
    assert p.shape == (16, 7) and torch.allclose(p.sum(1), torch.ones(16))
    with pytest.raises(FERModelError, match='from 1 to 4'): create_fer_model(cfg.arch, stages=5)

def test_the_wheel_carries_the_models(tmp_path):
    "The weights and cards are package data: a built wheel holds them"
    r = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(tmp_path), str(ROOT)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    names = zipfile.ZipFile(next(tmp_path.glob('fer_fastai-*.whl'))).namelist()
    for name in list_pretrained():
        for f in ('model.pth', 'model.json', 'card.json'): assert f'fer_fastai/pretrained/{name}/{f}' in names


def test_every_image_given_has_a_row_and_csv_cells_are_not_formulas(tmp_path, monkeypatch):
    "Failed inputs are in the table with their error; a cell a spreadsheet would run (=, +, -, @) is quoted"
    from fer_fastai.inference import FERRecognizer, predict_paths
    monkeypatch.chdir(tmp_path)  # relative names, as typed: the first one starts with '='
    good = Path('=HYPERLINK(1).jpg'); Image.fromarray(skimage_data.astronaut()).save(good)
    text = Path('notes.jpg'); text.write_text('not an image')
    res = predict_paths(FERRecognizer(), [good, text, Path('missing.png')], out='out')
    assert (res['n_inputs'], res['n_done'], len(res['failures'])) == (3, 1, 2)
    df = pd.read_csv(tmp_path/'out'/'images.csv')
    assert len(df) == 3 and list(df.file) == ["'=HYPERLINK(1).jpg", 'notes.jpg', 'missing.png']
    assert df.error.isna().tolist() == [True, False, False] and df.face.tolist()[0] == 0
    predict_paths(FERRecognizer(), [good, text], out='json', fmt='json')
    j = json.loads((tmp_path/'json'/'images.json').read_text())
    assert j['n_failed'] == 1 and len(j['results']) == 2 and j['results'][0]['file'] == str(good)  # JSON keeps the name as it is
