"fer_learner, pretrained weights offline, weights files, the recipe on real FER2013, save/reload"
import json, warnings
from pathlib import Path
import numpy as np, pytest, torch, torchvision
from fer_fastai.core import *
from fer_fastai.data import *
from fer_fastai.archs import *
from fer_fastai.runs import *
from fer_fastai.learner import *
from fer_fastai.train import *
from fer_fastai.evaluate import *

@pytest.fixture(scope='module')
def small_dls(fer_items):
    return fer_dataloaders(fer_items, max_per_class=40, bs=32, seed=0, verbose=False)

def test_unknown_arch_lists_supported(small_dls):
    with pytest.raises(FERModelError, match='Supported: fer_vgg, fer_vgg_m, fer_vgg_s, fer_mobile, resnet18'): fer_learner(small_dls, 'resnet1000')

@pytest.mark.parametrize('arch', ['resnet18', 'vgg16_bn'])
def test_pretrained_from_hub_cache(small_dls, arch, tmp_path, monkeypatch):
    "No download: a state dict placed where torchvision looks (the torch hub cache) must end up in the body"
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    with pytest.raises(FERModelError, match='hub cache'): fer_learner(small_dls, arch, pretrained=True)
    ref = getattr(torchvision.models, arch)(weights=None)
    f = pretrained_weights_file(arch)
    assert str(f).startswith(str(tmp_path)) and f.name == Path(torchvision.models.get_model_weights(arch).DEFAULT.url).name
    f.parent.mkdir(parents=True, exist_ok=True); torch.save(ref.state_dict(), f)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        learn = fer_learner(small_dls, arch, pretrained=True, native=False)
    body = learn.model[0].state_dict()
    own = {k: v for k, v in ref.state_dict().items() if not k.startswith(('fc.', 'classifier.'))}
    names = [n for n, _ in ref.named_children()]
    mapped = {str(names.index(k.split('.', 1)[0])) + '.' + k.split('.', 1)[1]: v for k, v in own.items()}
    first = next(k for k, v in mapped.items() if v.ndim == 4)
    assert set(mapped) == set(body)
    for k, v in mapped.items():
        if k == first: assert torch.equal(body[k], v.sum(1, keepdim=True))   # gray input: RGB filters summed
        else: assert torch.equal(body[k], v), k

def test_weights_of_another_arch_are_reported(small_dls, tmp_path):
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path/'r50.pth')
    with pytest.raises(FERModelError, match='do not fit the resnet18 body.*shape mismatches'):
        fer_learner(small_dls, 'resnet18', weights=tmp_path/'r50.pth', native=False)
    (tmp_path/'junk.pth').write_bytes(b'not a checkpoint')
    with pytest.raises(FERModelError, match='not a PyTorch state dict'): fer_learner(small_dls, 'resnet18', weights=tmp_path/'junk.pth')

def test_vocab_mismatch_and_reload_identical(small_dls, tmp_path):
    learn = fer_learner(small_dls, 'resnet18', pretrained=False)
    learn.fit(1, 1e-3)
    learn.save_run(tmp_path/'run')
    assert torch.load(tmp_path/'run'/'model.pth', weights_only=True)  # loads without unpickling code
    meta = json.loads((tmp_path/'run'/'model.json').read_text())
    assert meta['vocab'] == list(EMOTIONS) and meta['mean'] == small_dls.fer['mean'] and meta['config_version'] == CONFIG_VERSION
    reloaded = load_fer_learner(tmp_path/'run', small_dls)
    dl = small_dls.test_dl(small_dls.test_items.iloc[:64], with_labels=True)
    p1, _ = learn.get_preds(dl=dl); p2, _ = reloaded.get_preds(dl=dl)
    assert torch.allclose(p1, p2, atol=1e-6) and torch.equal(p1.argmax(1), p2.argmax(1))
    model, cfg = load_run_model(tmp_path/'run', 'cpu')
    with torch.no_grad(): p3 = model(dl.one_batch()[0].cpu()).softmax(1)
    assert torch.allclose(p3, p1[:p3.shape[0]], atol=1e-5)
    three = fer_dataloaders(small_dls.items[small_dls.items.label.isin(['happy', 'sad', 'angry'])], bs=16, verbose=False)
    with pytest.raises(FERModelError, match='The model knows'): load_fer_learner(tmp_path/'run', three)
    rebuilt = load_fer_learner(tmp_path/'run', data=small_dls.items)  # no dls: built from model.json
    assert list(rebuilt.dls.vocab) == list(small_dls.vocab) and rebuilt.dls.fer['mean'] == small_dls.fer['mean']
    p4, _ = rebuilt.get_preds(dl=rebuilt.dls.test_dl(small_dls.test_items.iloc[:64], with_labels=True))
    assert torch.allclose(p4, p1, atol=1e-6)

def test_rgb_run_reloads_with_its_own_preprocessing(fer_items, tmp_path, capsys):
    "A 3-channel 64 px run comes back as one, and faces of emotions it does not know are counted"
    dls = fer_dataloaders(fer_items[fer_items.label.isin(['angry', 'happy', 'sad'])], max_per_class=20, size=64, n_channels=3,
                          normalize='imagenet', bs=16, seed=0, verbose=False)
    learn = fer_learner(dls, 'resnet18', pretrained=False)
    learn.save_run(tmp_path/'rgb')
    some = fer_items[fer_items.split != 'PrivateTest'].groupby(['split', 'label']).head(10)  # 7 emotions x 10 faces, Training and PublicTest
    back = load_fer_learner(tmp_path/'rgb', data=some, bs=16)
    assert 'Left out 80 faces whose emotion the model does not know' in capsys.readouterr().out
    assert back.dls.fer['n_channels'] == 3 and back.dls.fer['size'] == 64 and back.dls.fer['mean'] == dls.fer['mean']
    assert list(back.dls.vocab) == ['angry', 'happy', 'sad'] and len(back.dls.items) == 60
    xb = back.dls.test_dl(dls.test_items.iloc[:8]).one_batch()[0]
    assert xb.shape[1:] == (3, 64, 64)
    learn.model.eval(); back.model.eval()
    with torch.no_grad(): assert torch.allclose(learn.model(xb), back.model(xb), atol=1e-5)

def test_short_training_beats_chance_and_runs_stages_in_order(fer_items):
    "A short seeded CPU run on a FER2013 subset is clearly above chance on a PrivateTest subset"
    dls = fer_dataloaders(fer_items, max_per_class=TRAIN_PER_CLASS, bs=64, seed=0, verbose=False)
    learn = fer_learner(dls, 'resnet18', pretrained=False, native=False)  # the ImageNet stem: twice as fast on CPU
    run = train_fer(learn, epochs=TRAIN_EPOCHS, lr_find_iters=40, show_plot=False)
    assert [s['stage'] for s in run.stages] == ['lr_find', 'all layers']
    test = dls.test_items.groupby('label', group_keys=False).head(100)   # a class-balanced PrivateTest subset
    rep = evaluate(learn, test)
    assert rep.n == len(test) and rep.accuracy >= 0.25, rep  # chance is 1/7 = 0.14; this run scores about 0.31

TRAIN_PER_CLASS, TRAIN_EPOCHS = 500, 2

def _precision_cbs(learn):
    from fastai.callback.channelslast import ChannelsLast
    from fastai.callback.fp16 import MixedPrecision
    return sorted(type(c).__name__ for c in learn.cbs if isinstance(c, (ChannelsLast, MixedPrecision, CPUMixedPrecision)))

def test_channels_last_and_mixed_precision_options(small_dls):
    "CPU default: bf16 autocast + channels-last where the CPU has bf16 instructions, neither elsewhere; each can be forced on or off"
    plain = fer_learner(small_dls, 'resnet18', pretrained=False)
    bf16 = cpu_bf16_supported()
    assert _precision_cbs(plain) == (['CPUMixedPrecision', 'ChannelsLast'] if bf16 else [])
    assert plain.fer['precision'] == ('bf16' if bf16 else 'float32')
    off = fer_learner(small_dls, 'resnet18', pretrained=False, mixed_precision=False, channels_last=False)
    assert _precision_cbs(off) == [] and off.fer['precision'] == 'float32'
    learn = fer_learner(small_dls, 'resnet18', pretrained=False, channels_last=True, mixed_precision=False)
    assert _precision_cbs(learn) == ['ChannelsLast']  # no reduced precision added behind our back
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)
    conv = next(m for m in learn.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and conv.weight.ndim == 4

def _fit_conv_dtypes(learn):
    "Fit one epoch; the (training?, dtype) pairs of the first conv's outputs seen on the way"
    seen = set()
    conv = next(m for m in learn.model.modules() if isinstance(m, torch.nn.Conv2d))
    h = conv.register_forward_hook(lambda m, i, o: seen.add((m.training, o.dtype)))
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)
    h.remove()
    return seen

def test_cpu_bf16_trains_in_bf16_and_validates_in_float32(small_dls):
    "mixed_precision=True on the CPU: training forward passes in bfloat16, validation and predictions in float32, no autocast left on"
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the emulation warning on CPUs without bf16 instructions
        learn = fer_learner(small_dls, 'fer_vgg_s', pretrained=False, mixed_precision=True, channels_last=False)
    assert _precision_cbs(learn) == ['CPUMixedPrecision'] and learn.fer['precision'] == 'bf16'
    seen = _fit_conv_dtypes(learn)
    assert seen == {(True, torch.bfloat16), (False, torch.float32)}, seen
    assert not torch.is_autocast_enabled('cpu')
    with learn.no_bar(): preds, _ = learn.get_preds()
    assert preds.dtype == torch.float32
    xb = small_dls.valid.one_batch()[0]
    with torch.no_grad(): ref = torch.softmax(learn.model.eval()(xb), 1)
    assert torch.allclose(preds[:len(xb)], ref, atol=1e-5)

def test_cpu_without_bf16_trains_in_float32(small_dls, monkeypatch):
    "On a CPU without bf16 instructions (simulated: no avx512_bf16/amx_bf16 flag): the default trains in float32, forcing bf16 warns"
    if small_dls.device.type == 'cuda': pytest.skip('the CPU precision choice; CUDA picks bf16/fp16 itself')
    import fer_fastai.learner as fl
    with monkeypatch.context() as m:  # the detection itself reads /proc/cpuinfo's flags
        m.setattr(fl.Path, 'read_text', lambda self, *a, **k: 'flags\t\t: fpu sse sse2 avx2 avx512f avx512_bf16\n')
        assert fl.cpu_bf16_supported() == torch.backends.mkldnn.is_available()
        m.setattr(fl.Path, 'read_text', lambda self, *a, **k: 'flags\t\t: fpu sse sse2 avx2 avx512f\n')
        assert not fl.cpu_bf16_supported()
    monkeypatch.setattr(fl, 'cpu_bf16_supported', lambda: False)
    learn = fer_learner(small_dls, 'fer_vgg_s', pretrained=False)
    assert _precision_cbs(learn) == [] and learn.fer['precision'] == 'float32'
    seen = _fit_conv_dtypes(learn)
    assert seen == {(True, torch.float32), (False, torch.float32)}, seen
    with pytest.warns(UserWarning, match='without bf16 instructions'):
        forced = fer_learner(small_dls, 'fer_vgg_s', pretrained=False, mixed_precision=True)
    assert forced.fer['precision'] == 'bf16'

def test_failed_batch_leaves_no_cpu_autocast_on(small_dls, tmp_path):
    "A batch that raises between the forward pass and the loss (autocast entered, not left) must not leave bf16 on for what follows"
    from fastai.callback.core import Callback
    class Boom(Callback):
        order = 20
        def after_pred(self):
            if self.training: raise RuntimeError('boom')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        learn = fer_learner(small_dls, 'fer_vgg_s', pretrained=False, mixed_precision=True, cbs=Boom())
    with pytest.raises(RuntimeError, match='boom'), learn.no_bar(), learn.no_logging():
        train_fer(learn, epochs=1, lr=1e-3, out=tmp_path, show_plot=False)
    assert not torch.is_autocast_enabled('cpu')

def test_cuda_options_need_no_other_import():
    "fastai adds Learner.to_channelslast / to_bf16 / to_fp16 only when their modules are imported: fer_fastai.learner must import them itself"
    import subprocess, sys
    code = ("import numpy as np, pandas as pd\n"
            "from fer_fastai.data import fer_dataloaders\nfrom fer_fastai.learner import fer_learner\n"
            "from fastai.learner import Learner\n"
            "print('methods', all(hasattr(Learner, m) for m in ('to_channelslast', 'to_bf16', 'to_fp16')))\n"
            "rng = np.random.default_rng(0)\n"
            "items = pd.DataFrame(dict(image=[rng.integers(0, 255, (48, 48), dtype=np.uint8) for _ in range(40)],\n"
            "                          label=['happy', 'sad'] * 20, split=['Training'] * 30 + ['PublicTest'] * 10))\n"
            "dls = fer_dataloaders(items, bs=8, check=False, verbose=False)\n"
            "learn = fer_learner(dls, 'resnet18', pretrained=False, channels_last=True, mixed_precision=False)\n"
            "print(sorted(type(c).__name__ for c in learn.cbs))\n")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'methods True' in r.stdout and "'ChannelsLast'" in r.stdout

@pytest.mark.parametrize('arch,width', [('fer_vgg_s', 256), ('fer_vgg_m', 384), ('fer_vgg', 512), ('fer_mobile', 256)])
def test_fer_vgg_archs(small_dls, arch, width, tmp_path):
    "The 48x48 bodies (the VGGs and the depthwise-separable fer_mobile): 6x6 last feature map, no ImageNet weights (a clear error), saved and reloaded like the others"
    learn = fer_learner(small_dls, arch, pretrained=False)
    xb = small_dls.one_batch()[0]
    assert learn.model[0](xb).shape == (len(xb), width, 6, 6) and learn.fer['head'] == 'linear'
    with pytest.raises(FERModelError, match='no ImageNet weights'): fer_learner(small_dls, arch, pretrained=True)
    learn.save_run(tmp_path/'run')
    model, cfg = load_run_model(tmp_path/'run', 'cpu')
    learn.model.eval()
    with torch.no_grad(): assert torch.allclose(model(xb), learn.model(xb), atol=1e-5)
    torch.save(torchvision.models.vgg16_bn(weights=None).state_dict(), tmp_path/'tv.pth')
    with pytest.raises(FERModelError, match='holds no body saved by fer_fastai'): fer_learner(small_dls, arch, weights=tmp_path/'tv.pth')


def test_fastai_keywords_pass_through(small_dls):
    "loss_func, opt_func, splitter and any Learner keyword override fer_learner's defaults (they used to raise 'got multiple values')"
    from fastai.losses import FocalLossFlat
    learn = fer_learner(small_dls, 'fer_vgg_s', loss_func=FocalLossFlat(), opt_func=partial_sgd, splitter=lambda m: [list(m.parameters())],
                        wd=0.02, metrics=[], cbs=[])
    assert isinstance(learn.loss_func, FocalLossFlat) and learn.opt_func is partial_sgd and learn.wd == 0.02 and learn.fer['opt'] == 'sgd'
    assert len(learn.splitter(learn.model)) == 1 and learn.metrics == []
    learn.fit(1, 1e-3)
    assert learn.opt.hypers[0]['mom'] == 0.9  # SGD with momentum really ran

def test_defaults_are_the_default_recipe(small_dls):
    "fer_learner's defaults are the default recipe's: fer_vgg_m from scratch, linear head, label smoothing 0.1"
    learn = fer_learner(small_dls)
    assert learn.fer['arch'] == 'fer_vgg_m' and not learn.fer['pretrained'] and learn.fer['head'] == 'linear'
    assert learn.loss_func.func.label_smoothing == 0.1

def test_hostile_run_configs_are_refused(small_dls, tmp_path):
    "Values from a run folder are checked before use: a huge size, wrong statistics or an unknown emotion never reach torch"
    learn = fer_learner(small_dls, 'fer_vgg_s')
    run = learn.save_run(tmp_path/'run')
    good = json.loads((run/'model.json').read_text())
    for bad, msg in [(dict(size=100000), 'size must be'), (dict(std=[0.0]), 'std must be positive'), (dict(mean=[0.1, 0.2, 0.3]), 'one per channel'),
                     (dict(vocab=['happy', 'bored']), 'unknown emotions'), (dict(n_channels=4), 'n_channels')]:
        (run/'model.json').write_text(json.dumps({**good, **bad}))
        with pytest.raises(FERModelError, match=msg): load_run_model(run)
    (run/'model.json').write_text('[1, 2]')
    with pytest.raises(FERModelError, match='JSON object'): read_run(run)


def test_a_planted_checkpoint_is_never_loaded(small_dls, tmp_path):
    "A pickle planted as OUT/models/best.pth does not run when training into OUT diverges (checkpoints live in a private folder)"
    import pickle
    marker = tmp_path/'PWNED'
    class Evil:
        def __reduce__(self): return (open, (str(marker), 'w'))
    (tmp_path/'out'/'models').mkdir(parents=True)
    (tmp_path/'out'/'models'/'best.pth').write_bytes(pickle.dumps(Evil()))
    learn = fer_learner(small_dls, 'fer_vgg_s')
    with learn.no_bar(), learn.no_logging(), pytest.raises(FERError, match='NaN'):
        train_fer(learn, epochs=1, lr=1e30, out=tmp_path/'out', show_plot=False)  # diverges at once: no checkpoint of its own is ever written
    assert not marker.exists()
    assert (tmp_path/'out'/'models'/'best.pth').is_file()  # the user's file is left where it was
