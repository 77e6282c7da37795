"fer_fastai.inference: same predictions as fastai, video round trip, bad inputs, safe loading and the predict CLI"
import json, os, subprocess, sys, warnings
from pathlib import Path
import cv2, numpy as np, pandas as pd, pytest, torch
from PIL import Image
import fastai.callback.schedule, fastai.callback.progress  # noqa: learn.fit_one_cycle, learn.no_bar
from fer_fastai.core import fer_data_path, FERDataError
from fer_fastai.data import fer_dataloaders
from fer_fastai.learner import fer_learner
from fer_fastai.faces import FaceImageError
from fer_fastai.inference import *

REPO = Path(__file__).resolve().parents[1]

try: fer_data_path(); HAVE_FER = True
except FERDataError: HAVE_FER = False
pytestmark = pytest.mark.skipif(not HAVE_FER, reason='FER2013 is not available')

@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    "A ResNet-18 trained for one epoch on 40 faces per emotion, saved as a run folder"
    n_threads = torch.get_num_threads()
    if not torch.cuda.is_available(): torch.set_num_threads(1)  # small batches on a shared CPU: one thread is much faster
    try:
        dls = fer_dataloaders(max_per_class=40, bs=64, verbose=False)
        learn = fer_learner(dls, 'resnet18', pretrained=False, head='linear', mixed_precision=False, channels_last=False)
        with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(1, 3e-3)
        run = learn.save_run(tmp_path_factory.mktemp('run'))
        yield learn, dls, run
    finally: torch.set_num_threads(n_threads)

@pytest.fixture(scope='module')
def rec(trained): return FERRecognizer.from_run(trained[2])

def test_predictions_match_fastai(trained, rec):
    learn, dls, run = trained
    items = dls.test_items.groupby('label').head(40).reset_index(drop=True)  # a few hundred PrivateTest faces
    assert len(items) >= 200 and set(items.split) == {'PrivateTest'}
    ours = rec.predict_many(items.path, detect=False)
    assert all(len(r) == 1 for r in ours)
    our_p = np.array([[r[0]['probs'][e] for e in rec.vocab] for r in ours])
    p, y = learn.get_preds(dl=dls.test_dl(items, with_labels=True))
    assert rec.vocab == list(dls.vocab)
    disagree = int((our_p.argmax(1) != p.numpy().argmax(1)).sum())
    assert disagree <= 1, disagree
    np.testing.assert_allclose(our_p, p.numpy(), atol=1e-3)
    labels = np.array([rec.vocab.index(l) for l in items.label])
    test_acc, fastai_acc = (our_p.argmax(1) == labels).mean(), (p.numpy().argmax(1) == labels).mean()
    assert abs(test_acc - fastai_acc) <= 1 / len(items)
    # one at a time gives the same as batched, and the result has every field
    r = rec.predict(items.path[0], detect=False)[0]
    assert set(r) == {'face', 'box', 'score', 'emotion', 'prob', 'probs'} and r['box'] == (0, 0, 48, 48)
    np.testing.assert_allclose([r['probs'][e] for e in rec.vocab], our_p[0], atol=1e-5)
    assert r['emotion'] == max(r['probs'], key=r['probs'].get)

def _write_video(path, files, size=96, fourcc='MJPG', fps=10):
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (size, size))
    assert wr.isOpened()
    for f in files: wr.write(cv2.cvtColor(np.asarray(Image.open(f).convert('RGB').resize((size, size))), cv2.COLOR_RGB2BGR))
    wr.release()
    return path

def _count_frames(path):
    cap = cv2.VideoCapture(str(path)); assert cap.isOpened(); n = 0
    while cap.read()[0]: n += 1
    cap.release(); return n

def test_video_round_trip(trained, rec, tmp_path):
    vid = _write_video(tmp_path/'faces.avi', trained[1].test_items.path[:12])
    df = predict_video(rec, vid, every=1, out_csv=tmp_path/'faces.csv', out_video=tmp_path/'faces_annotated.mp4', detect=False)
    csv = pd.read_csv(tmp_path/'faces.csv')
    assert len(csv) == 12 and list(csv.frame) == list(range(12)) and len(df) == 12
    assert csv.emotion.isin(rec.vocab).all()
    assert _count_frames(tmp_path/'faces_annotated.mp4') == 12
    df3 = predict_video(rec, vid, every=5, out_video=tmp_path/'every5.avi', detect=False)
    assert list(df3.frame) == [0, 5, 10] and _count_frames(tmp_path/'every5.avi') == 12
    # with detection, frames without a face get a row without a face
    dd = predict_video(rec, vid, every=4, detect=True, verbose=False)
    assert sorted(dd.frame.unique()) == [0, 4, 8]

def test_bad_inputs(rec, tmp_path):
    import skimage.data
    Image.fromarray(skimage.data.astronaut()).save(tmp_path/'astronaut.jpg')
    b = (tmp_path/'astronaut.jpg').read_bytes()
    (tmp_path/'cut.jpg').write_bytes(b[:len(b) // 3])
    (tmp_path/'notes.jpg').write_text('text, not an image')
    for f, msg in [('missing.png', 'does not exist'), ('cut.jpg', 'truncated'), ('notes.jpg', 'not an image')]:
        with pytest.raises(FaceImageError, match=msg): rec.predict(tmp_path/f)
    assert rec.predict(np.full((120, 160, 3), 255, np.uint8)) == []  # no face: empty, not an error
    res = rec.predict(tmp_path/'astronaut.jpg')
    assert len(res) == 1 and abs(sum(res[0]['probs'].values()) - 1) < 1e-4
    im = annotate(tmp_path/'astronaut.jpg', res)
    assert im.size == (512, 512) and np.asarray(im).astype(int).sum() != np.asarray(Image.open(tmp_path/'astronaut.jpg')).astype(int).sum()
    # videos
    with pytest.raises(FERVideoError, match='does not exist'): predict_video(rec, tmp_path/'missing.mp4')
    (tmp_path/'fake.mp4').write_text('not a video')
    with pytest.raises(FERVideoError, match='cannot open'): predict_video(rec, tmp_path/'fake.mp4')
    with pytest.raises(ValueError, match='every'): predict_video(rec, tmp_path/'fake.mp4', every=0)
    # a folder batch goes on past bad files and reports them
    Image.new('RGB', (80, 60), 'white').save(tmp_path/'blank.png')
    (tmp_path/'readme.txt').write_text('ignored: not an image extension')
    df = predict_folder(rec, tmp_path, out=tmp_path/'out/all.json')
    assert len(df.attrs['failures']) == 2 and df.attrs['n_images'] == 4
    assert set(df.file[df.error != '']) == {'cut.jpg', 'notes.jpg'}
    assert df.loc[df.file == 'blank.png', 'face'].isna().all()
    assert df.loc[df.file == 'astronaut.jpg', 'emotion'].notna().all()
    j = json.loads((tmp_path/'out/all.json').read_text())
    assert j['n_failed'] == 2 and {f['file'] for f in j['failures']} == {'cut.jpg', 'notes.jpg'}
    df2 = predict_folder(rec, tmp_path, out=tmp_path/'out/all.csv', chunk=1, verbose=False)
    assert len(pd.read_csv(tmp_path/'out/all.csv')) == len(df2) == len(df)
    with pytest.raises(FileNotFoundError): predict_folder(rec, tmp_path/'nope')

def test_load_exported_learner_needs_trust(trained, tmp_path):
    learn = trained[0]
    with pytest.raises(UntrustedModelError, match='unpickling runs arbitrary code'): load_exported_learner(tmp_path/'export.pkl')
    with pytest.raises(FileNotFoundError): load_exported_learner(tmp_path/'missing.pkl', trust=True)
    learn.export(tmp_path/'export.pkl')  # needs plum-dispatch<2.10 (2.10.1 breaks pickling: beartype/plum#322), pinned in settings.ini
    with pytest.raises(UntrustedModelError): load_exported_learner(tmp_path/'export.pkl')
    assert list(load_exported_learner(tmp_path/'export.pkl', trust=True).dls.vocab) == list(learn.dls.vocab)

def test_predict_cli(trained, tmp_path):
    import skimage.data
    run, items = trained[2], trained[1].test_items
    Image.fromarray(skimage.data.astronaut()).save(tmp_path/'astronaut.jpg')
    folder = tmp_path/'faces'; folder.mkdir()
    for f in items.path[:5]: Image.open(f).save(folder/Path(f).name)
    (folder/'broken.png').write_text('broken')
    vid = _write_video(tmp_path/'clip.avi', items.path[:6])
    out = tmp_path/'out'
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get('PYTHONPATH', ''), OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    cmd = [str(Path(sys.executable).parent/'fer_fastai'), 'predict', str(tmp_path/'astronaut.jpg'), str(folder), str(vid), str(tmp_path/'missing.jpg'),
           '--model', str(run), '--out', str(out), '--every', '2', '--device', 'cpu']
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert p.returncode == 1 and 'Traceback' not in p.stderr, p.stdout + p.stderr  # missing.jpg and faces/broken.png failed; the others were done
    assert 'astronaut.jpg:' in p.stdout and 'missing.jpg' in p.stdout and 'failed' in p.stdout
    assert sorted(f.name for f in out.iterdir()) == ['astronaut_annotated.jpg', 'clip.csv', 'clip_annotated.mp4', 'clip_summary.csv', 'clip_timeline.png', 'faces.csv', 'images.csv']
    assert len(pd.read_csv(out/'clip.csv')) >= 3  # frames 0, 2, 4 (one row per face, or one row without a face)
    assert (pd.read_csv(out/'faces.csv').error.fillna('') != '').sum() == 1
    assert _count_frames(out/'clip_annotated.mp4') == 6
    assert pd.read_csv(out/'images.csv').file.map(lambda f: Path(f).name).tolist() == ['astronaut.jpg', 'missing.jpg']  # every image given has a row
    # in process: --no-detect and json, then a failed input -> exit status 1, and a folder that is not a run -> 2
    from fer_fastai.cli import main, predict
    with pytest.raises(SystemExit, match='1'): predict([folder], model=run, out=tmp_path/'out2', detect=False, fmt='json')  # broken.png
    j = json.loads((tmp_path/'out2/faces.json').read_text())
    assert j['n_failed'] == 1 and sum(r['face'] == 0 for r in j['results']) == 5
    assert main(['predict', str(tmp_path/'missing.jpg'), '--model', str(run), '--out', str(tmp_path/'out3')]) == 1
    assert main(['predict', str(folder), '--model', str(tmp_path/'no_run'), '--out', str(tmp_path/'out4')]) == 2
    assert main(['predict', str(folder), str(tmp_path/'astronaut.jpg'), '--model', str(run), '--out', str(tmp_path/'out5'), '--no-detect', '--fmt', 'json']) == 1  # faces/broken.png
    assert (tmp_path/'out5/faces.json').is_file() and (tmp_path/'out5/images.json').is_file()
    good = [f for f in sorted(folder.glob('*.png')) if f.name != 'broken.png'][:4]
    assert main(['predict', *map(str, good[:2]), str(folder/'broken.png'), *map(str, good[2:]), '--model', str(run), '--out', str(tmp_path/'out6'), '--no-detect', '--fmt', 'json']) == 1
    j = json.loads((tmp_path/'out6/images.json').read_text())
    assert [Path(r['file']).name for r in j['results']] == [f.name for f in good[:2]] + ['broken.png'] + [f.name for f in good[2:]] and j['n_failed'] == 1
    assert main(['predict', *map(str, good), '--model', str(run), '--out', str(tmp_path/'out6'), '--no-detect']) == 0

def test_export_onnx_cli_then_predict(tmp_path):
    "`fer_fastai export` writes model.onnx + model.json; `fer_fastai predict --model` on that folder runs onnxruntime and agrees with PyTorch"
    pytest.importorskip('onnxruntime')
    import skimage.data
    from fer_fastai.cli import main
    Image.fromarray(skimage.data.astronaut()).save(tmp_path/'astronaut.jpg')
    assert main(['export', '--model', 'fer2013', '--format', 'onnx', '--out', str(tmp_path/'exp')]) == 0
    assert sorted(f.name for f in (tmp_path/'exp').iterdir()) == ['model.json', 'model.onnx']
    rec, ref = FERRecognizer(tmp_path/'exp'), FERRecognizer('fer2013', device='cpu')
    assert type(rec.model).__name__ == 'OnnxModel' and rec.config.vocab == ref.config.vocab
    got, want = rec.predict(tmp_path/'astronaut.jpg'), ref.predict(tmp_path/'astronaut.jpg')
    assert len(got) == len(want) == 1 and got[0]['box'] == want[0]['box']
    assert max(abs(got[0]['probs'][e] - p) for e, p in want[0]['probs'].items()) < 1e-4
    assert main(['predict', str(tmp_path/'astronaut.jpg'), '--model', str(tmp_path/'exp'), '--out', str(tmp_path/'pred')]) == 0
    df = pd.read_csv(tmp_path/'pred/images.csv')
    assert len(df) == 1 and df.emotion[0] == want[0]['emotion'] and abs(df.prob[0] - want[0]['prob']) < 1e-4
    assert main(['export', '--model', str(tmp_path/'nowhere')]) == 2  # not a run folder: one error line, status 2
