"Tests of fer_fastai.cam: map shapes and ranges, a localisation sanity check that can fail, and the `cam` command."
import numpy as np, pandas as pd, pytest, torch, torch.nn as nn
from torchvision.models.resnet import BasicBlock
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.metrics import accuracy
from pathlib import Path
from PIL import Image
from fastai.torch_core import set_seed
import fastai.callback.progress, fastai.callback.schedule  # learn.no_bar(), learn.fit_one_cycle
from fer_fastai.data import fer_dataloaders
from fer_fastai.learner import fer_learner
from fer_fastai.cam import cam_maps, save_cams, FERCamError
from fer_fastai.cli import main, cam

S = 48
QUADRANTS = {'happy': (slice(0, S//2), slice(0, S//2)), 'sad': (slice(S//2, S), slice(S//2, S))}

def _blob_face(rng, label, size=S):
    """Noise with a bright object in a known quadrant: a round blob top-left (happy) or a bar bottom-right (sad).
    With the same blob in both quadrants a global-average-pooling network can only tell them apart by the
    image borders, and its maps rightly point there; different shapes make the object itself the evidence."""
    img = rng.normal(90, 25, (size, size))
    rows, cols = QUADRANTS[label]
    cy, cx = rng.integers(rows.start + 6, rows.stop - 6), rng.integers(cols.start + 6, cols.stop - 6)
    yy, xx = np.mgrid[:size, :size]
    if label == 'happy': img += 150 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0 ** 2))
    else: img[cy - 1:cy + 2, cx - 5:cx + 6] += 150
    return np.clip(img, 0, 255).astype(np.uint8)

def _tiny_resnet(n_out=2):
    """A small ResNet shaped like `fer_learner`'s models: `Sequential(body, linear head)`, the body ending in a stage of
    torchvision `BasicBlock`s (so `find_target_layer` treats it as a ResNet). A real ResNet-18 trains at seconds per
    batch on a busy 2-core machine; this one trains the blob task in a few seconds."""
    def stage(ni, nf, s): return nn.Sequential(BasicBlock(ni, nf, stride=s, downsample=nn.Sequential(nn.Conv2d(ni, nf, 1, s, bias=False), nn.BatchNorm2d(nf))))
    body = nn.Sequential(nn.Conv2d(1, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), stage(16, 32, 2), stage(32, 32, 1))  # 48 -> 12x12
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.), nn.Linear(32, n_out))
    return nn.Sequential(body, head)

@pytest.fixture(scope='module')
def blob():
    "A linear-head ResNet trained on the blob task, and the validation faces with their labels"
    set_seed(0); rng = np.random.default_rng(0)
    labels = ['happy', 'sad'] * 112
    splits = ['Training'] * 192 + ['PublicTest'] * 32
    items = pd.DataFrame(dict(image=[_blob_face(rng, l) for l in labels], label=labels, split=splits))
    dls = fer_dataloaders(items, size=S, aug=None, bs=32, check=False, verbose=False, vocab=['happy', 'sad'])
    learn = Learner(dls, _tiny_resnet(), loss_func=CrossEntropyLossFlat(), metrics=accuracy)
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(4, 1e-2)
    xv, yv = [], []
    for x, y in learn.dls.valid: xv.append(x); yv.append(y)
    return learn, torch.cat(xv), torch.cat(yv), dls

def test_blob_model_learned(blob):
    learn, x, y, _ = blob
    from fer_fastai.cam import predict_proba
    acc = (predict_proba(learn, x).argmax(1).cpu() == y.cpu()).float().mean().item()
    assert acc >= 0.95, f'the synthetic task was not learned (accuracy {acc:.2f}): the localisation test would be meaningless'

@pytest.mark.parametrize('method', ['cam', 'gradcam', 'gradcam++', 'eigencam', 'occlusion'])
def test_maps_shape_range(blob, method):
    learn, x, y, _ = blob
    m = cam_maps(learn, x[:8], y[:8], method=method)
    assert m.shape == (8, S, S) and m.device == x.device
    assert m.min() >= 0 and m.max() <= 1 and (m.flatten(1).std(1) > 0).all()

@pytest.mark.parametrize('method', ['cam', 'gradcam', 'occlusion'])
def test_maps_find_the_blob(blob, method):
    "More than half of each map's mass in the quadrant holding the object that decides the class"
    learn, x, y, dls = blob
    y = y.as_subclass(torch.Tensor).cpu()
    m = cam_maps(learn, x, y, method=method, **(dict(size=6, stride=3) if method == 'occlusion' else {})).cpu()
    vocab = list(dls.vocab)
    shares = torch.stack([m[i][QUADRANTS[vocab[int(c)]]].sum() / m[i].sum() for i, c in enumerate(y.cpu())])
    for c in y.unique():  # each class on average: twice the quadrant's area share (0.25)
        assert shares[y.cpu() == c].mean() > 0.5, f'{method}: {vocab[int(c)]} faces have {shares[y.cpu() == c].mean():.2f} of the map in the object quadrant'

@pytest.mark.parametrize('method', ['cam', 'gradcam', 'occlusion'])
def test_maps_inside_an_autocast_region(blob, method):
    "A learner trained in bf16 can leave autocast on (seen on CUDA): maps still come out in float32, as outside it"
    learn, x, y, _ = blob
    ref = cam_maps(learn, x[:4], y[:4], method=method)
    with torch.autocast(x.device.type, dtype=torch.bfloat16):
        m = cam_maps(learn, x[:4], y[:4], method=method)
    assert m.dtype == torch.float32 and torch.allclose(m, ref, atol=1e-5)

def test_cam_refuses_fastai_head(blob):
    _, x, _, dls = blob
    other = fer_learner(dls, 'resnet18', pretrained=False, head='fastai')
    with pytest.raises(FERCamError, match="method='gradcam'"): cam_maps(other, x[:2], method='cam')
    assert cam_maps(other, x[:2], method='gradcam').shape == (2, S, S)

def test_unknown_method(blob):
    learn, x, _, _ = blob
    with pytest.raises(FERCamError, match='Unknown method'): cam_maps(learn, x[:2], method='smoothgrad')

def test_cli(blob, tmp_path, capsys):
    _, _, _, dls = blob
    run = fer_learner(dls, 'resnet18', pretrained=False, head='linear').save_run(tmp_path/'run')  # the real thing, untrained
    faces = tmp_path/'faces'; faces.mkdir()
    rng = np.random.default_rng(1)
    for i, l in enumerate(['happy', 'sad']): Image.fromarray(_blob_face(rng, l)).save(faces/f'face{i}.png')
    Image.fromarray(_blob_face(rng, 'sad')).resize((64, 64)).convert('RGB').save(faces/'big.jpg')  # resized and made gray
    # one image, through the command line
    assert main(['cam', str(faces/'face0.png'), '--model', str(run), '--out', str(tmp_path/'one.png')]) == 0
    assert Image.open(tmp_path/'one.png').format == 'PNG'
    # a folder: one PNG per image
    out = cam(faces, model=run, out=tmp_path/'cams', method='gradcam++')
    assert sorted(p.name for p in (tmp_path/'cams').iterdir()) == ['big_gradcam++.png', 'face0_gradcam++.png', 'face1_gradcam++.png']
    assert len(out) == 3
    # several paths: a folder of PNGs
    assert save_cams(run, [faces/'face0.png', faces/'face1.png'], out=tmp_path/'two')[0] == [tmp_path/'two'/'face0_gradcam.png', tmp_path/'two'/'face1_gradcam.png']
    # an unreadable file: reported, the others still written, exit status 1, no traceback
    (faces/'broken.png').write_bytes(b'not a png')
    capsys.readouterr()
    assert main(['cam', str(faces), '--model', str(run), '--out', str(tmp_path/'cams2')]) == 1
    err = capsys.readouterr().err
    assert 'broken.png' in err and 'could not be read' in err
    assert len(list((tmp_path/'cams2').glob('*.png'))) == 3
    # a missing model folder: a clear message
    assert main(['cam', str(faces), '--model', str(tmp_path/'nope')]) == 2
    assert 'model.json' in capsys.readouterr().err
