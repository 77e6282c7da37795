"Recipes: the k-fold protocol, cross-validation and quick end-to-end runs"
import os
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
