"The papers' heads, the Self-Cure Network, test-time augmentation, ensembles and distillation, on synthetic faces"
import copy
import numpy as np, pandas as pd, pytest, torch
from fastai.learner import Learner
from fer_fastai.core import FERModelError
from fer_fastai.data import fer_dataloaders
from fer_fastai.archs import *
from fer_fastai.scn import *
from fer_fastai.tta import predict_tta
from fer_fastai.evaluate import ensemble_probs, evaluate_ensemble
from fer_fastai.distill import *
from fixtures import synthetic_items, tiny_body, tiny_learner

@pytest.fixture(scope='module')
def scn_run():
    "An SCN trained on two separable synthetic classes with 20% of the training labels flipped"
    torch.manual_seed(0)
    items = synthetic_items(300)
    dls = fer_dataloaders(items, size=24, aug=None, bs=32, check=False, verbose=False, vocab=['happy', 'sad'], device='cpu')
    learn = scn_learner(dls, body=tiny_body(), warmup=3)
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(6, 3e-3)
    return learn, dls

def test_scn_finds_noisy_labels(scn_run):
    learn, dls = scn_run
    rel = learn.cbs.filter(lambda c: isinstance(c, SCNRelabel))[0]
    rec = learn.cbs.filter(lambda c: isinstance(c, SCNAlphaRecorder))[0]
    train = dls.items.iloc[:dls.fer['n_train']].reset_index(drop=True)
    alpha = pd.Series(rec.alpha)
    flipped = train.flipped[alpha.index].values
    assert alpha[flipped].mean() < alpha[~flipped].mean()
    ch = rel.relabelled
    assert len(ch) > 0 and (ch.new.values == train.true[ch.item].values).mean() > 0.5
    assert sum(h['relabelled'] for h in rel.history) == len(ch)
    assert all(h['relabelled'] == 0 for h in rel.history[:3])  # nothing before the warm-up ends

def test_scn_resnet18_forward_backward():
    m = create_fer_model('resnet18', 7, 1, pretrained=False, native=True, head='scn')
    loss = SCNLoss(m[1])(m(torch.randn(6, 1, 48, 48)), torch.randint(0, 7, (6,)))
    loss.backward()
    assert m[0][0].weight.grad.abs().sum() > 0 and m[1].attention.weight.grad.abs().sum() > 0

def test_rank_loss():
    assert float(rank_loss(torch.full((10,), .5))) == pytest.approx(0.15)
    assert float(rank_loss(torch.tensor([.9] * 7 + [.1] * 3))) == 0

@pytest.mark.parametrize('arch', ['resnet18', 'resnet50'])
def test_attention_head(arch):
    m = create_fer_model(arch, 7, 1, pretrained=False, native=True, head='attention')
    out = m(torch.randn(3, 1, 48, 48)); out.sum().backward()
    a = m[1].attn
    assert (a >= 0).all() and torch.allclose(a.flatten(1).sum(1), torch.ones(3), atol=1e-5)
    assert m[0][0].weight.grad.abs().sum() > 0

def test_dropout_head():
    m = create_fer_model('resnet18', 7, 1, pretrained=False, native=True, head='dropout')
    assert m(torch.randn(2, 1, 48, 48)).shape == (2, 7)
    assert [l.out_features for l in m[1] if isinstance(l, torch.nn.Linear)] == [1024, 512, 7]

def test_tta_and_ensemble(scn_run):
    learn, dls = scn_run
    probs, targs = learn.get_preds(dl=dls.valid)
    p, t = predict_tta(learn, dls.valid, flip=False, crops=0)
    assert torch.allclose(p, probs, atol=1e-5) and t.tolist() == targs.tolist()
    twin = Learner(dls, copy.deepcopy(learn.model), loss_func=learn.loss_func)
    pe, _ = ensemble_probs([learn, twin], 'valid')
    assert torch.allclose(pe, probs, atol=1e-5)
    pt, _ = predict_tta(learn, dls.valid, flip=True, crops=4)
    assert torch.allclose(pt.sum(1), torch.ones(len(pt)), atol=1e-5)
    rep = evaluate_ensemble([learn, twin], dls.items.iloc[dls.fer['n_train']:], flip=True)
    assert rep.n == dls.fer['n_valid'] and 0 <= rep.accuracy <= 1

def test_distillation_targets_reach_their_faces():
    "A student whose training labels are random learns the task from a good teacher's soft targets alone, and only from them"
    clean = synthetic_items(flip=0., seed=1)
    kw = dict(size=24, aug=None, bs=32, check=False, verbose=False, vocab=['happy', 'sad'], device='cpu')
    teacher = tiny_learner(fer_dataloaders(clean, **kw))
    with teacher.no_bar(), teacher.no_logging(): teacher.fit_one_cycle(5, 3e-3)
    assert teacher.validate()[1] > 0.9
    rng = np.random.default_rng(0)
    noisy = clean.assign(label=np.where(clean.split == 'Training', rng.choice(['happy', 'sad'], len(clean)), clean.label))
    accs = {}
    for a in (None, 1.):
        student = tiny_learner(fer_dataloaders(noisy, **kw), seed=1)
        if a: distill(student, teacher, alpha=a)
        with student.no_bar(), student.no_logging(): student.fit_one_cycle(5, 3e-3)
        accs[a] = student.validate()[1]
    assert accs[None] < 0.75 and accs[1.] > 0.9
    cb = student.cbs.filter(lambda c: isinstance(c, DistillCallback))[0]
    assert 0.3 < cb.agreement < 0.7  # the teacher's predictions agree with random labels about half the time
    assert student.fer['distill']['n_teachers'] == 1

def test_distillation_refuses_mismatched_targets():
    items = synthetic_items(seed=2)
    dls = fer_dataloaders(items, size=24, aug=None, bs=32, check=False, verbose=False, vocab=['happy', 'sad'], device='cpu')
    learn = tiny_learner(dls)
    with learn.no_bar(), learn.no_logging(), pytest.raises(FERModelError, match='soft targets for 240 training faces'):
        learn.fit(1, cbs=DistillCallback(torch.full((10, 2), .5)))
    with pytest.raises(ValueError, match='rows summing to 1'): DistillCallback(torch.ones(10, 2))
    with pytest.raises(ValueError, match='alpha'): DistillCallback(torch.full((10, 2), .5), alpha=0)
    other = fer_dataloaders(items.assign(label=items.label.map({'happy': 'angry', 'sad': 'sad'})), size=24, aug=None, bs=32,
                            check=False, verbose=False, vocab=['angry', 'sad'], device='cpu')
    with pytest.raises(FERModelError, match='same emotions'): distill(learn, tiny_learner(other))

