import os, warnings
from pathlib import Path
import pytest

os.environ.setdefault('MPLBACKEND', 'Agg')
SHARED = Path(__file__).resolve().parents[2]/'shared'/'data'/'fer2013'

@pytest.fixture(scope='session')
def fer_path():
    "The shared FER2013 folder; missing data fails loudly on CI (CI=true) and skips elsewhere"
    from fer_fastai.core import fer_data_path, FERDataError
    try: return fer_data_path()
    except FERDataError as e:
        if os.environ.get('CI', '').lower() == 'true': pytest.fail(f'CI=true but FER2013 is missing: {e}')
        pytest.skip(f'FER2013 not available: {e}')

@pytest.fixture(scope='session')
def fer_items(fer_path):
    from fer_fastai.data import read_fer2013_folder
    return read_fer2013_folder(fer_path)

@pytest.fixture(scope='session')
def fer_tiny(fer_path, tmp_path_factory):
    "A FER2013-layout folder of 12 faces per emotion and split (links to the shared images): trainings and evaluations in seconds"
    root = tmp_path_factory.mktemp('data')/'fer2013_tiny'
    for sub, prefixes in [('train', ['Training']), ('test', ['PublicTest', 'PrivateTest'])]:
        for d in sorted((fer_path/sub).iterdir()):
            (root/sub/d.name).mkdir(parents=True)
            for p in prefixes:
                for f in sorted(d.glob(f'{p}_*'))[:12]: (root/sub/d.name/f.name).symlink_to(f)
    return root
