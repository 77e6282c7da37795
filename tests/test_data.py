"Data layer: readers, bad input, splits, weights, dataloaders; unit tests on made data and integration on FER2013"
import re, warnings, os
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from PIL import Image
from fer_fastai.core import *
from fer_fastai.data import *
from fer_fastai.data import _write_fer2013_csv

def _faces(n, seed=0):
    "Face-like 48x48 gray images: an oval, two eyes and a mouth whose curvature depends on the class, plus noise"
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:48, :48]
    out = []
    for i in range(n):
        img = 60 + 20 * rng.standard_normal((48, 48))
        img[((xx - 24) / 17) ** 2 + ((yy - 24) / 21) ** 2 < 1] += 90
        for ex in (16, 32): img[(xx - ex) ** 2 + (yy - 19) ** 2 < 6] -= 80
        out.append(img.clip(0, 255).astype(np.uint8))
    return out

def test_aliases_and_unknown_label():
    assert normalize_emotion('Sadness') == 'sad' and normalize_emotion('CO') == 'contempt'
    with pytest.raises(UnknownEmotionError, match='add_emotion_alias'): normalize_emotion('boredom')

def test_csv_reader_good_and_bad(tmp_path):
    imgs = _faces(6)
    csv = _write_fer2013_csv(tmp_path/'f.csv', imgs, [0, 1, 2, 3, 4, 5], ['Training', 'Training', 'PublicTest', 'PublicTest', 'PrivateTest', 'PrivateTest'])
    items = read_fer2013_csv(csv)
    assert items.label.tolist() == ['angry', 'disgust', 'fear', 'happy', 'sad', 'surprise']
    assert all(isinstance(a, np.ndarray) and a.shape == (48, 48) and a.dtype == np.uint8 for a in items.image)
    np.testing.assert_array_equal(items.image[3], imgs[3])
    lines = csv.read_text().splitlines()
    bad = tmp_path/'bad.csv'
    bad.write_text('\n'.join([lines[0], lines[1], '7,' + lines[2].split(',', 1)[1], '1,"1 2 x",Training', lines[3].replace('PublicTest', 'Public')]) + '\n')
    with pytest.raises(FERDataError, match='row 3 of bad.csv: unknown emotion code'): read_fer2013_csv(bad)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        ok = read_fer2013_csv(bad, on_bad='skip')
    assert len(ok) == 1 and len(ok.attrs['skipped']) == 3 and 'skipped 3 item(s)' in str(w[0].message)
    assert {why.split(' ')[0] for _, why in ok.attrs['skipped']} >= {'unknown', 'pixels'}

def test_csv_without_emotion_and_missing_columns(tmp_path):
    imgs = _faces(3)
    items = read_fer2013_csv(_write_fer2013_csv(tmp_path/'t.csv', imgs, [0] * 3, ['PrivateTest'] * 3, with_emotion=False))
    assert items.label.isna().all() and len(items) == 3
    (tmp_path/'x.csv').write_text('a,b\n1,2\n')
    with pytest.raises(FERDataError, match='needs `pixels`'): read_fer2013_csv(tmp_path/'x.csv')

def test_image_folder_with_broken_files_and_empty_class(tmp_path):
    root = tmp_path/'ds'
    for cls, imgs in [('happiness', _faces(4, 1)), ('anger', _faces(4, 2))]:
        (root/cls).mkdir(parents=True)
        for i, a in enumerate(imgs): Image.fromarray(a).save(root/cls/f'{i}.jpg' if i % 2 else root/cls/f'{i}.png')
    (root/'fear').mkdir()
    (root/'happiness'/'cut.png').write_bytes((root/'happiness'/'0.png').read_bytes()[:100])
    (root/'anger'/'notes.txt').write_text('hello')
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        items = read_image_folder(root)
        loaded = load_items(items)
    assert len(items) == 9 and len(items.attrs['skipped']) == 1            # notes.txt
    assert len(loaded) == 8 and [Path(p).name for p, _ in loaded.attrs['unreadable']] == ['cut.png']
    rep = check_dataset(loaded)
    assert any('unreadable' in x for x in rep.warnings)
    # an empty class folder is reported by the FER2013-layout reader
    fer = tmp_path/'fer'; (fer/'train'/'happy').mkdir(parents=True); (fer/'train'/'sad').mkdir(); (fer/'test'/'happy').mkdir(parents=True)
    Image.fromarray(_faces(1)[0]).save(fer/'train'/'happy'/'Training_1.png'); Image.fromarray(_faces(1)[0]).save(fer/'test'/'happy'/'PrivateTest_1.png')
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        f = read_fer2013_folder(fer)
    assert f.attrs['empty_folders'] == [str(fer/'train'/'sad')] and any('empty class folder' in str(x.message) for x in w)

def test_label_from_file_name_and_subject(tmp_path):
    for i, a in enumerate(_faces(8)):
        Image.fromarray(a).save(tmp_path/f'S{i % 4}.{["AN", "HA"][i % 2]}{i}.{i}.tiff')
    items = read_image_folder(tmp_path, label_pattern=r'^S\d\.([A-Z]{2})\d', subject_pattern=r'^(S\d)\.')
    assert sorted(set(items.label)) == ['angry', 'happy'] and sorted(set(items.subject)) == ['S0', 'S1', 'S2', 'S3']
    for k in range(2):
        tr, va, _ = split_items(items, 'kfold', n_folds=2, fold=k)
        assert not set(items.subject.iloc[tr]) & set(items.subject.iloc[va])

def test_missing_data_path_says_where(monkeypatch):
    monkeypatch.setenv('FER_FASTAI_DATA', '/no/such/place')
    with pytest.raises(FERDataError, match='FER_FASTAI_DATA is set to'): fer_data_path()

def test_kfold_covers_disjoint_stratified():
    items = pd.DataFrame(dict(image=_faces(60), label=['happy'] * 40 + ['sad'] * 20, split=None, subject=None))
    folds = kfold_splits(items, 5, seed=0)
    va = np.concatenate([v for _, v in folds])
    assert sorted(va) == list(range(60))
    for tr, v in folds:
        assert not set(tr) & set(v) and (items.label.iloc[v] == 'happy').sum() == 8
    assert [list(v) for _, v in kfold_splits(items, 5, seed=0)] == [list(v) for _, v in folds]

def test_holdout_gives_the_fraction_asked_for_stratified():
    labels = ['happy'] * 60 + ['sad'] * 30 + ['angry'] * 10
    items = pd.DataFrame(dict(image=_faces(100), label=labels, split=None, subject=None))
    for pct in (0.1, 0.2, 0.25, 0.4, 0.5):  # 0.4 gave 50% when the hold-out was fold 0 of round(1/pct) folds
        tr, va, te = split_items(items, 'holdout', valid_pct=pct, seed=0)
        assert len(va) == round(pct * 100) and len(tr) + len(va) == 100 and not set(tr) & set(va) and len(te) == 0
        share = items.label.iloc[va].value_counts(normalize=True)
        assert abs(share['happy'] - 0.6) <= 0.06 and abs(share['angry'] - 0.1) <= 0.06, (pct, share)
    assert list(split_items(items, 'holdout', valid_pct=0.3, seed=3)[1]) == list(split_items(items, 'holdout', valid_pct=0.3, seed=3)[1])
    with pytest.raises(ValueError, match='valid_pct'): split_items(items, 'holdout', valid_pct=1.2)

def test_holdout_by_subject_keeps_subjects_apart():
    items = pd.DataFrame(dict(image=_faces(40), label=['happy', 'sad'] * 20, split=None, subject=[f'S{i % 10}' for i in range(40)]))
    tr, va, _ = split_items(items, 'holdout', valid_pct=0.4, seed=0)
    assert not set(items.subject.iloc[tr]) & set(items.subject.iloc[va]) and len(va) == 16  # 4 of 10 subjects

def test_class_weights_variants():
    labels = ['happy'] * 90 + ['sad'] * 10
    w = class_weights(labels, ['happy', 'sad']); assert torch.allclose(w.mean(), torch.tensor(1.)) and w[1] / w[0] == pytest.approx(9)
    e = class_weights(labels, ['happy', 'sad'], 'effective', beta=0.9); assert e[1] > e[0] and e[1] / e[0] < 9
    with pytest.raises(FERDataError, match='absent'): class_weights(labels, ['happy', 'sad', 'fear'])

def test_class_missing_from_validation_is_stated():
    imgs = _faces(30)
    items = pd.DataFrame(dict(image=imgs, label=['happy', 'sad', 'fear'] * 10, split=['Training'] * 24 + ['PublicTest'] * 6, subject=None))
    items.loc[24:, 'label'] = 'happy'
    with pytest.warns(UserWarning, match=r"no items of \['sad', 'fear'\]|no items of \['fear', 'sad'\]"):
        fer_dataloaders(items, bs=4, verbose=False)

def test_fer2013_integration(fer_items):
    items = fer_items
    assert items.split.value_counts().to_dict() == {'Training': 28709, 'PublicTest': 3589, 'PrivateTest': 3589}
    tr = items[items.split == 'Training'].label.value_counts().to_dict()
    assert tr == dict(angry=3995, disgust=436, fear=4097, happy=7215, neutral=4965, sad=4830, surprise=3171)
    te = items[items.split != 'Training'].label.value_counts().to_dict()
    assert te == dict(angry=958, disgust=111, fear=1024, happy=1774, neutral=1233, sad=1247, surprise=831)

def test_fer2013_batch(fer_items):
    dls = fer_dataloaders(fer_items, max_per_class=50, bs=32, verbose=False)
    xb, yb = dls.one_batch()
    assert xb.shape == (32, 1, 48, 48) and xb.dtype == torch.float32 and yb.dtype == torch.int64
    assert -4 < float(xb.min()) < -1 and 1 < float(xb.max()) < 4 and abs(float(xb.mean())) < 0.6   # dataset-normalised
    assert int(yb.max()) < 7 and len(dls.test_items) == 3589 and set(dls.test_items.split) == {'PrivateTest'}


def test_bad_file_name_patterns_are_explained(tmp_path):
    "A label or subject pattern that is not a regular expression, or has no group, is one clear error, not a traceback from re"
    from PIL import Image
    from fer_fastai.core import FERDataError
    from fer_fastai.data import read_image_folder
    Image.new('L', (48, 48)).save(tmp_path/'KA.AN1.39.png')
    for kw, msg in [(dict(label_pattern='(['), 'is not a regular expression'), (dict(label_pattern=r'[A-Z]{2}\d'), 'has no group'),
                    (dict(label_pattern=r'\.([A-Z]{2})\d', subject_pattern='^[A-Z]+'), 'subject_pattern')]:
        with pytest.raises(FERDataError, match=re.escape(msg)): read_image_folder(tmp_path, **kw)
    items = read_image_folder(tmp_path, label_pattern=r'\.([A-Z]{2})\d', subject_pattern=r'^([A-Z]+)\.')
    assert (items.label.tolist(), items.subject.tolist()) == (['angry'], ['KA'])

def test_file_name_patterns_on_data_whose_labels_are_elsewhere(fer_path, tmp_path):
    "A label pattern given with FER2013 (folder layout or CSV), whose labels are not in file names, is refused, not silently ignored; a bad one before any file is read"
    _write_fer2013_csv(tmp_path/'fer.csv', _faces(14), [k % 7 for k in range(14)], ['Training'] * 14)
    for src in [fer_path, tmp_path/'fer.csv']:
        with pytest.raises(FERDataError, match='applies to labelled image folders only'): read_fer_items(src, label_pattern=r'\.([A-Z]{2})\d')
    with pytest.raises(FERDataError, match='not a regular expression'): read_fer_items(tmp_path/'nowhere', label_pattern='(')


def test_empty_or_binary_csv_is_explained(tmp_path):
    from fer_fastai.core import FERDataError
    (tmp_path/'empty.csv').write_text('')
    (tmp_path/'binary.csv').write_bytes(bytes(range(256)) * 40)
    for f in ('empty.csv', 'binary.csv'):
        with pytest.raises(FERDataError, match='a FER2013 CSV'): read_fer2013_csv(tmp_path/f)

def test_16_bit_faces_read_the_same_everywhere(fer_path, tmp_path):
    "A folder of 16-bit PNGs trains, evaluates, is explained and predicted on as its 8-bit originals (one reader), not as white squares"
    import numpy as np
    from PIL import Image
    from fer_fastai.data import read_fer_items, load_items
    from fer_fastai.runs import read_run
    from fer_fastai.faces import read_image
    from fer_fastai.cam import _face_input
    originals = {}
    for emo in ('happy', 'sad'):
        for f in sorted((fer_path/'train'/emo).glob('*.png'))[:5]:
            a = np.asarray(Image.open(f)); dst = tmp_path/emo/f.name; dst.parent.mkdir(exist_ok=True)
            Image.fromarray(a.astype(np.uint16) * 257).save(dst); originals[dst.name] = a
    assert Image.open(dst).mode == 'I;16'
    items = load_items(read_fer_items(tmp_path), 1, progress=False)  # what train, summary and evaluate decode
    assert len(items) == 10
    for p, img in zip(items.path, items.image): assert (img == originals[Path(p).name]).all(), p
    cfg = read_run('fer2013')
    for p in items.path:  # predict's and cam's input
        ref = cfg.preprocess([originals[Path(p).name]])
        assert (cfg.preprocess([read_image(p)]) == ref).all() and (_face_input(p, cfg) == ref[0]).all()
