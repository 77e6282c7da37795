"Fuzz-style checks of the command line: random bytes, truncated and damaged images and videos, and random mutations of a run folder's model.json and model.pth end in a message (exit status 1 or 2), never a traceback, and every good input of the same call is still processed"
import io, json, os, random, shutil, subprocess, sys, zlib, struct
from pathlib import Path
import numpy as np, pandas as pd, pytest
from PIL import Image

EXE = str(Path(sys.executable).parent/'fer_fastai')
ENV = dict(os.environ, MPLBACKEND='Agg', OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')

def _png_bomb() -> bytes:
    "A valid PNG header that declares 60000 x 60000 pixels (3.6 gigapixels), with almost no data"
    def chunk(kind, data): return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 60000, 60000, 8, 0, 0, 0, 0)) + chunk(b'IDAT', zlib.compress(b'\0' * 100)) + chunk(b'IEND', b'')

def _bad_files(rng, good_png:bytes, good_jpg:bytes, video:bytes) -> dict:
    "File name -> bytes of every kind of broken input a careless user or a hostile one might pass"
    flipped = bytearray(good_png)
    for i in rng.sample(range(40, len(flipped)), 30): flipped[i] ^= 0xFF
    return {
        'random.png': rng.randbytes(3000), 'random.jpg': rng.randbytes(3000), 'random.bmp': b'BM' + rng.randbytes(500),
        'empty.png': b'', 'text.jpg': b'holiday photos\n' * 20, 'html.png': b'<html><body>not an image</body></html>',
        'cut_half.png': good_png[:len(good_png) // 2], 'cut_header.png': good_png[:20],
        'cut_30.jpg': good_jpg[:int(len(good_jpg) * .3)], 'cut_70.jpg': good_jpg[:int(len(good_jpg) * .7)],
        'flipped.png': bytes(flipped), 'bomb.png': _png_bomb(),
        'random.mp4': rng.randbytes(5000), 'empty.avi': b'', 'cut.avi': video[:len(video) // 3],
    }

@pytest.fixture(scope='module')
def inputs(fer_path, tmp_path_factory):
    "A folder of 6 good FER2013 faces and the broken files above, mixed; (folder, good paths, bad paths)"
    rng = random.Random(26)
    d = tmp_path_factory.mktemp('fuzz')/'inputs'; d.mkdir()
    faces = sorted((fer_path/'test'/'happy').glob('PublicTest_*'))[:3] + sorted((fer_path/'test'/'sad').glob('PublicTest_*'))[:3]
    good = []
    for k, f in enumerate(faces):
        dest = d/(f'good_{k}.png' if k % 2 else f'good_{k}.jpg')
        Image.open(f).convert('L' if k % 2 else 'RGB').save(dest); good.append(dest)
    buf = io.BytesIO(); Image.open(faces[0]).convert('RGB').resize((240, 240)).save(buf, 'JPEG', quality=90)
    import cv2
    wr = cv2.VideoWriter(str(d.parent/'clip.avi'), cv2.VideoWriter_fourcc(*'MJPG'), 10, (48, 48))
    for f in faces: wr.write(cv2.cvtColor(np.asarray(Image.open(f).convert('RGB')), cv2.COLOR_RGB2BGR))
    wr.release()
    bad = []
    for name, data in _bad_files(rng, good[1].read_bytes(), buf.getvalue(), (d.parent/'clip.avi').read_bytes()).items():
        (d/name).write_bytes(data); bad.append(d/name)
    return d, good, bad

def _run(*args, timeout=300):
    r = subprocess.run([EXE, *map(str, args)], capture_output=True, encoding='utf-8', errors='replace',  # a decoder library may print bytes of a broken file to stderr
                        env=ENV, timeout=timeout)
    assert 'Traceback' not in r.stdout + r.stderr, (r.stdout + r.stderr)[-4000:]
    return r

def test_predict_broken_files_given_directly_and_in_a_folder(inputs, tmp_path):
    "Each broken file is a row with its error; the good faces around them are predicted; exit status 1"
    d, good, bad = inputs
    order = [p for k, b in enumerate(bad) for p in (good[k % len(good)], b)]  # good and broken interleaved
    r = _run('predict', *order, d, '--no-detect', '--out', tmp_path)
    assert r.returncode == 1, (r.stdout + r.stderr)[-3000:]
    t = pd.read_csv(tmp_path/'images.csv', keep_default_na=False)
    images = [p for p in order if p.suffix not in ('.mp4', '.avi')]
    assert t.file.tolist() == [str(p) for p in images]  # every image given has one row, in order (one face each: --no-detect)
    ok = t[t.file.isin([str(p) for p in good])]
    assert (ok.error == '').all() and ok.emotion.isin(['happy', 'sad', 'angry', 'fear', 'disgust', 'surprise', 'neutral']).all()
    assert np.allclose(ok.filter(like='p_').astype(float).sum(axis=1), 1, atol=1e-4)
    failed = set(t.file[t.error != ''])
    assert {str(d/n) for n in ['random.png', 'random.jpg', 'empty.png', 'text.jpg', 'html.png', 'cut_header.png', 'bomb.png']} <= failed
    for v in ['random.mp4', 'empty.avi']: assert f'{v}: FAILED' in r.stdout
    folder = pd.read_csv(tmp_path/'inputs.csv', keep_default_na=False)  # the folder: every image file in it has a row
    assert sorted(set(folder.file)) == sorted(p.name for p in d.iterdir() if p.suffix in ('.png', '.jpg', '.bmp'))
    assert (folder[folder.file.str.startswith('good_')].error == '').all()

def test_predict_with_face_detection_and_cam_on_broken_files(inputs, tmp_path):
    "The same folder with the face detector, and Grad-CAM overlays: the good images are done, the broken ones listed"
    d, good, bad = inputs
    r = _run('predict', d, '--out', tmp_path/'pred')
    assert r.returncode == 1 and 'failed' in r.stdout, (r.stdout + r.stderr)[-3000:]
    assert set(pd.read_csv(tmp_path/'pred'/'inputs.csv').file) >= {p.name for p in good}
    r = _run('cam', d, '--out', tmp_path/'cams', '--device', 'cpu')
    assert r.returncode == 1 and 'could not be read' in r.stderr, (r.stdout + r.stderr)[-3000:]
    made = {p.name.rsplit('_', 1)[0] for p in (tmp_path/'cams').glob('*.png')}
    assert {p.stem for p in good} <= made and 'random' not in made

@pytest.mark.parametrize('content', [b'', b'not a network', bytes(range(256)) * 20, None])
def test_a_broken_detector_file_is_a_message(inputs, tmp_path, content):
    "--detector with an .onnx file that is empty, text, random bytes or a valid ONNX network that is not YuNet (None): one error line, status 2"
    d, good, bad = inputs
    if content is None:
        import torch, warnings
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            torch.onnx.export(torch.nn.Conv2d(3, 2, 3), torch.zeros(1, 3, 32, 32), str(tmp_path/'yunet.onnx'), dynamo=False)
    else: (tmp_path/'yunet.onnx').write_bytes(content)
    r = _run('predict', good[0], '--detector', tmp_path/'yunet.onnx', '--out', tmp_path/'pred')
    assert r.returncode == 2 and r.stderr.startswith('error: ') and 'yunet.onnx' in r.stderr, r.stderr[-2000:]

def _mutations(rng, config:dict, n:int):
    "`n` (name, model.json text or None, model.pth bytes or None): keys dropped, values of the wrong type or range, broken JSON, broken weights"
    bad_values = [None, -1, 0, 7, 100000, 1e308, 'x', '', [], {}, [1, 2, 3], True, 'ñ' * 300, [0.5, 0.5, 0.5], [0.0], ['happy'] * 7]
    keys = ['arch', 'vocab', 'size', 'n_channels', 'head', 'ps', 'normalize', 'mean', 'std', 'native']
    out = []
    for k in keys:
        c = dict(config); c.pop(k); out.append((f'no {k}', json.dumps(c), None))
    while len(out) < n:
        c, k = json.loads(json.dumps(config)), rng.choice(keys)
        c[k] = rng.choice(bad_values)
        out.append((f'{k}={str(c[k])[:20]}', json.dumps(c), None))
    text = json.dumps(config)
    out += [('truncated json', text[:len(text) // 2], None), ('a list', '[1, 2]', None), ('null', 'null', None), ('binary json', None, None),
            ('empty model.pth', text, b''), ('random model.pth', text, rng.randbytes(4096)), ('json as model.pth', text, text.encode())]
    return out

def test_predict_with_random_mutations_of_a_run_folder(tmp_path):
    "30 damaged copies of the shipped model's folder: each predict call works or ends in one `error:` line (status 2), never a traceback"
    from fer_fastai.runs import pretrained_path
    from fer_fastai.cli import main
    src = pretrained_path('fer2013')
    config = json.loads((src/'model.json').read_text())
    face = tmp_path/'face.png'
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 48), dtype=np.uint8)).save(face)
    rng, codes = random.Random(2026), {}
    for i, (name, text, weights) in enumerate(_mutations(rng, config, 30)):
        run = tmp_path/f'run_{i}'; shutil.copytree(src, run)
        if text is None: (run/'model.json').write_bytes(rng.randbytes(300))
        else: (run/'model.json').write_text(text)
        if weights is not None: (run/'model.pth').write_bytes(weights)
        err = io.StringIO()
        from contextlib import redirect_stderr, redirect_stdout
        with redirect_stderr(err), redirect_stdout(io.StringIO()):
            rc = main(['predict', str(face), '--model', str(run), '--no-detect', '--out', str(tmp_path/f'out_{i}'), '--device', 'cpu'])
        codes[name] = rc
        if rc == 2: assert err.getvalue().startswith('error: ') and err.getvalue().count('\n') == 1 and 'model' in err.getvalue(), (name, err.getvalue())  # one line, naming the file
        else:
            assert rc == 0, (name, rc, err.getvalue())
            t = pd.read_csv(tmp_path/f'out_{i}'/'images.csv')
            assert len(t) == 1 and np.isclose(t.filter(like='p_').sum(axis=1).iloc[0], 1, atol=1e-4), name  # a harmless change: a real prediction
    assert sum(rc == 2 for rc in codes.values()) >= 25, codes  # almost every mutation is refused
