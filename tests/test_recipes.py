"Recipes: the k-fold protocol, cross-validation and quick end-to-end runs"
import os, re
import numpy as np, pandas as pd, pytest, torch
from fer_fastai.core import FERModelError
from fer_fastai.recipes import RECIPES, run_recipe, cv_splits, cross_validate, get_recipe
from fixtures import synthetic_items

def test_cv_splits():
    items = synthetic_items(200).assign(split=['Training'] * 180 + ['PrivateTest'] * 20)
    items['subject'] = [f's{i % 30}' for i in range(len(items))]
    pool = np.arange(180)
    for by_subject in (False, True):
        folds = cv_splits(items, 5, by_subject=by_subject)
        assert sorted(np.concatenate([va for _, va in folds])) == list(pool)  # disjoint, cover the non-test items
        for tr, va in folds:
            assert not set(tr) & set(va) and len(tr) + len(va) == 180
            if by_subject: assert not set(items.subject.iloc[tr]) & set(items.subject.iloc[va])
            else:
                share = items.label.iloc[va].value_counts(normalize=True).sort_index().values
                assert np.abs(share - items.label.iloc[pool].value_counts(normalize=True).sort_index().values).max() < 0.1

def test_cross_validate():
    items = synthetic_items(120).assign(split='Training')
    df, stats = cross_validate(lambda dls, k: dict(n=float(dls.fer['n_valid'])), items, n_folds=3, size=24, aug=None, bs=16)
    assert len(df) == 3 and df.n.sum() == 120 and stats['n'][0] == pytest.approx(40)

def test_unknown_recipe():
    with pytest.raises(FERModelError, match='Recipes: default, fastai_resnet18'): run_recipe('nope')
    with pytest.raises(FERModelError, match='not recipe settings'): get_recipe('fastai_resnet18', epoch=2)

# one recipe per protocol by default (about 2 minutes); every recipe with FER_FASTAI_SLOW=1
QUICK_RECIPES = list(RECIPES) if os.environ.get('FER_FASTAI_SLOW') else ['fastai_resnet18', 'vgg16_dropout_cw', 'sfew_resnet18', 'scn_resnet18']

@pytest.mark.parametrize('name', QUICK_RECIPES)
def test_recipe_quick(name, fer_tiny, tmp_path):
    res = run_recipe(name, data=fer_tiny, out=tmp_path/name, quick=True, max_per_class=6, epochs=1, bs=16, lr_find_iters=5)
    assert res['quick'] is True and res['hardware'] and (res['settings']['max_per_class'], res['settings']['epochs'], res['settings']['size']) == (6, 1, 48)
    assert (tmp_path/name/'results.json').is_file()
    if RECIPES[name].pretrained: assert res['weights'] in ('imagenet', 'random (ImageNet weights not in the torch hub cache)')


@pytest.mark.parametrize('setting,msg', [
    (dict(epochs=-1), 'epochs must be a whole number of epochs, 0 or more, not -1'),
    (dict(epochs=0), 'nothing would be trained'),
    (dict(lr=-1.), 'lr must be a positive learning rate'),
    (dict(lr=float('nan')), 'lr must be a positive learning rate'),
    (dict(lr_mult=0.5), 'lr-mult must be a number of 1 or more'),
    (dict(max_per_class=0), 'max-per-class must be a number of faces of 1 or more'),
    (dict(bs=0), 'bs must be a batch size of 1 or more'),
    (dict(size=7), 'size must be an input size from 8 to 1024'),
    (dict(splitter='kfold', fold=99), 'fold must be a fold from 0 to 4'),
    (dict(seed=-1), 'seed must be a whole number'),
    (dict(label_smoothing=5.), 'label-smoothing must be from 0 (none) to below 1'),
    (dict(device='gpu0'), 'Unknown device'),
])
def test_absurd_settings_are_refused_before_any_data_is_read(setting, msg, tmp_path):
    "Nothing is read or written: the error names the option and what it may be"
    from fer_fastai.core import FERSettingError
    with pytest.raises(FERSettingError, match=re.escape(msg)): run_recipe('default', data=tmp_path/'no_data_here', out=tmp_path/'run', **setting)
    assert not (tmp_path/'run').exists()


def test_no_cuda_and_too_large_a_batch_and_one_emotion(fer_tiny, tmp_path):
    import torch
    from fer_fastai.core import FERSettingError, FERDataError
    from fer_fastai.data import read_fer_items
    if not torch.cuda.is_available():
        with pytest.raises(FERSettingError, match='no CUDA GPU'): run_recipe('default', data=fer_tiny, out=tmp_path/'a', device='cuda')
    with pytest.raises(FERSettingError, match='not one batch to train on'):
        run_recipe('default', data=fer_tiny, out=tmp_path/'b', bs=100000, epochs=1, lr=1e-3)
    items = read_fer_items(fer_tiny)
    with pytest.raises(FERDataError, match='a classifier needs at least two'):
        run_recipe('default', data=items[items.label == 'happy'], out=tmp_path/'c', epochs=1, lr=1e-3)


def test_an_out_that_is_a_file_or_not_writable(tmp_path):
    from fer_fastai.core import FERSettingError
    from fer_fastai.recipes import prepare_run_folder
    (tmp_path/'afile').write_text('mine')
    with pytest.raises(FERSettingError, match='is a file'): prepare_run_folder(tmp_path/'afile')
    assert (tmp_path/'afile').read_text() == 'mine'
    with pytest.raises(FERSettingError, match='Cannot make the run folder'): prepare_run_folder(tmp_path/'afile'/'run')
