"Bad-input matrix and folder cropping of fer_fastai.faces"
import shutil, warnings
from pathlib import Path
import numpy as np, pandas as pd, pytest
from PIL import Image
skimage_data = pytest.importorskip('skimage.data')
from fer_fastai.faces import *

# the astronaut's face in skimage.data.astronaut() (512x512): about x 177-272, y 66-161
FACE = (177, 66, 95, 95)

@pytest.fixture(scope='module')
def astronaut(): return skimage_data.astronaut()

def _iou(a, b):
    ax, ay, aw, ah = a; bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx)); ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    return iw * ih / (aw * ah + bw * bh - iw * ih)

def _found(boxes, face=FACE, scale=1., min_iou=0.5):
    return any(_iou(np.asarray(b) / scale, face) > min_iou for b in boxes)

def test_astronaut_and_blank(astronaut):
    boxes, scores = detect_faces(astronaut)
    assert len(boxes) == 1 and _found(boxes), boxes
    assert scores[0] > 3
    for blank in (np.zeros((300, 400, 3), np.uint8), np.full((64, 64), 255, np.uint8)):
        b, s = detect_faces(blank)
        assert b.shape == (0, 4) and s.shape == (0,)

def test_unreadable_inputs(tmp_path, astronaut):
    with pytest.raises(FaceImageError, match='does not exist'): detect_faces(tmp_path/'missing.jpg')
    (tmp_path/'notes.jpg').write_text('this is text, renamed .jpg')
    with pytest.raises(FaceImageError, match='notes.jpg'): detect_faces(tmp_path/'notes.jpg')
    Image.fromarray(astronaut).save(tmp_path/'a.jpg'); b = (tmp_path/'a.jpg').read_bytes()
    (tmp_path/'cut.jpg').write_bytes(b[:len(b) // 2])
    with pytest.raises(FaceImageError, match='cut.jpg: truncated'): detect_faces(tmp_path/'cut.jpg')
    (tmp_path/'empty.png').write_bytes(b'')
    with pytest.raises(FaceImageError, match='empty.png'): detect_faces(tmp_path/'empty.png')
    with pytest.raises(FaceImageError): read_image(np.zeros((4, 4, 7), np.uint8))

def test_huge_image(astronaut):
    big = np.asarray(Image.fromarray(astronaut).resize((4000, 4000), Image.BILINEAR))
    boxes, _ = detect_faces(big, max_side=1024)
    assert _found(boxes, scale=4000 / 512), boxes  # found on a 1024 px copy, in the 4000 px image's coordinates
    assert boxes[0][2] > 500  # original pixels, not the copy's

@pytest.mark.parametrize('kind', ['gray', 'rgba', 'la', '16bit', 'cmyk', 'palette', 'bmp'])
def test_image_modes(tmp_path, astronaut, kind):
    im = Image.fromarray(astronaut)
    gray = np.asarray(im.convert('L'))
    if kind == 'gray': im, f = im.convert('L'), 'g.png'
    elif kind == 'rgba': a = im.convert('RGBA'); a.putalpha(200); im, f = a, 'a.png'
    elif kind == 'la': im, f = im.convert('LA'), 'la.png'
    elif kind == '16bit': im, f = Image.fromarray(gray.astype(np.uint16) * 257), 'g16.png'
    elif kind == 'cmyk': im, f = im.convert('CMYK'), 'c.jpg'
    elif kind == 'palette': im, f = im.convert('P'), 'p.png'
    else: im, f = im, 'b.bmp'
    im.save(tmp_path/f)
    if kind == '16bit':
        with Image.open(tmp_path/f) as check: assert check.mode.startswith('I'), check.mode
    rgb = read_image(tmp_path/f)
    assert rgb.dtype == np.uint8 and rgb.shape == (512, 512, 3)
    if kind == '16bit': assert abs(int(rgb[..., 0].max()) - int(gray.max())) <= 1  # scaled, not clipped to white
    boxes, _ = detect_faces(tmp_path/f)
    assert _found(boxes), (kind, boxes)

def test_exif_rotation(tmp_path, astronaut):
    # stored sideways (rotated 90 degrees counter-clockwise) with orientation 6: "rotate 90 clockwise to display"
    im = Image.fromarray(astronaut).rotate(90, expand=True)
    exif = Image.Exif(); exif[0x0112] = 6
    im.save(tmp_path/'phone.jpg', exif=exif, quality=95)
    assert np.asarray(Image.open(tmp_path/'phone.jpg')).shape[:2] == (512, 512)  # square: only the content is sideways
    rgb = read_image(tmp_path/'phone.jpg')
    assert rgb.shape == (512, 512, 3)
    assert np.abs(rgb.astype(int) - astronaut.astype(int)).mean() < 4  # upright again
    boxes, _ = detect_faces(tmp_path/'phone.jpg')
    assert _found(boxes), boxes  # in the displayed (transposed) coordinates

def test_crop_face(astronaut):
    f = crop_face(astronaut, FACE, margin=0.2, size=48, mode='L')
    assert f.size == (48, 48) and f.mode == 'L'
    assert crop_face(astronaut, FACE, size=(64, 32), mode='RGB').size == (64, 32)
    assert np.array_equal(np.asarray(crop_face(astronaut, (10, 20, 30, 40), margin=0, size=None, mode='RGB')), astronaut[20:60, 10:40])
    assert crop_face(astronaut, (490, 490, 50, 50), margin=0.2, size=None).size == (70, 70)  # padded past the edge
    a = crop_face(astronaut, FACE, align=True, size=48)  # works whether or not the eyes are found
    assert a.size == (48, 48)
    assert crop_face(np.zeros((100, 100, 3), np.uint8), (20, 20, 50, 50), align=True, size=None).size == (70, 70)  # no eyes: unaligned

def _dataset(root, astronaut):
    for d in ['train/happy', 'train/neutral', 'test/happy']: (root/d).mkdir(parents=True)
    Image.fromarray(astronaut).save(root/'train/happy/astronaut.jpg')
    two = np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)  # two faces side by side
    Image.fromarray(two).save(root/'test/happy/two.png')
    Image.new('RGB', (200, 150), 'gray').save(root/'train/neutral/blank.png')
    (root/'train/neutral/bad.jpg').write_text('not an image')
    return root

def test_crop_faces_report_and_resume(tmp_path, astronaut):
    src = _dataset(tmp_path/'src', astronaut)
    dst = tmp_path/'dst'
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        rep = crop_faces(src, dst, size=64, mode='L', no_face='skip', many_faces='largest')
    assert (dst/'crop_report.csv').is_file()
    r = rep.set_index('image')
    assert len(r) == 4
    assert r.loc['train/happy/astronaut.jpg', 'action'] == 'face' and r.loc['train/happy/astronaut.jpg', 'n_faces'] == 1
    assert r.loc['test/happy/two.png', 'n_faces'] >= 2 and r.loc['test/happy/two.png', 'action'] == 'largest face kept'
    assert r.loc['train/neutral/blank.png', 'action'] == 'skipped (no face)' and not (dst/'train/neutral/blank.png').exists()
    assert r.loc['train/neutral/bad.jpg', 'action'] == 'error' and 'bad.jpg' in r.loc['train/neutral/bad.jpg', 'error']
    assert r.loc['train/happy/astronaut.jpg', 'label'] == 'happy'
    assert Image.open(dst/'train/happy/astronaut.jpg').size == (64, 64)
    assert pd.read_csv(dst/'crop_report.csv').shape[0] == 4
    # resume: only the failed file is retried; a deleted output is redone
    (dst/'train/happy/astronaut.jpg').unlink()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        again = crop_faces(src, dst, size=64, mode='L')
    assert again.attrs['n_processed'] == 2 and len(again) == 4
    assert (dst/'train/happy/astronaut.jpg').is_file()
    # policies: keep the original when no face, skip images with many faces
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        rep2 = crop_faces(src, tmp_path/'dst2', no_face='keep', many_faces='skip', size=48, mode='L', n_workers=1).set_index('image')
    assert rep2.loc['train/neutral/blank.png', 'action'] == 'original kept (no face)'
    assert Image.open(tmp_path/'dst2/train/neutral/blank.png').size == (48, 48)
    assert rep2.loc['test/happy/two.png', 'action'] == 'skipped (many faces)'
    with pytest.raises(ValueError, match='no_face'): crop_faces(src, dst, no_face='drop')
    with pytest.raises(ValueError, match='inside'): crop_faces(src, src/'crops')

def test_detectors():
    assert isinstance(get_detector('haar'), HaarDetector)
    with pytest.raises(ValueError, match='Unknown detector'): get_detector('nope')
    with pytest.raises(FileNotFoundError, match='ONNX'): YuNetDetector('missing.onnx')
    try: import facenet_pytorch  # noqa
    except ImportError:
        with pytest.raises(ImportError, match='facenet-pytorch'): MTCNNDetector()
