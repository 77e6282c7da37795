"The nbdev project itself: modules match notebooks, README matches nbs/index.ipynb"
import shutil, subprocess, sys, filecmp
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]

def test_nbdev_export_changes_nothing(tmp_path):
    work = tmp_path/'repo'
    shutil.copytree(ROOT, work, ignore=shutil.ignore_patterns('.venv', '.git', 'runs', '__pycache__', '*.egg-info', '_proc', '_docs'))
    exe = Path(sys.executable).parent/'nbdev_export'
    subprocess.run([str(exe)], cwd=work, check=True, capture_output=True)
    cmp = filecmp.dircmp(ROOT/'fer_fastai', work/'fer_fastai', ignore=['__pycache__'])
    assert not cmp.diff_files and not cmp.left_only and not cmp.right_only, (cmp.diff_files, cmp.left_only, cmp.right_only)

def test_readme_is_generated_from_index():
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'make_readme.py'), '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr

def test_learner_import_path():
    from fer_fastai.learner import fer_learner
    assert callable(fer_learner)

def _imports():
    "{module: {imported fer_fastai module: [names imported]}} for every module of the package, imports inside functions included"
    import ast
    graph = {}
    for f in sorted((ROOT/'fer_fastai').glob('*.py')):
        if f.name == '_modidx.py': continue
        mod, deps = f.stem, {}
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                name = ('fer_fastai.' + node.module if node.module else 'fer_fastai') if node.level else (node.module or '')
                if name.startswith('fer_fastai.'): deps.setdefault(name.split('.')[1], []).extend(a.name for a in node.names)
                elif name == 'fer_fastai':  # `from fer_fastai import data` imports a module; `... import __version__` an attribute of the package
                    for a in node.names:
                        if (ROOT/'fer_fastai'/f'{a.name}.py').is_file(): deps.setdefault(a.name, [])
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith('fer_fastai.'): deps.setdefault(a.name.split('.')[1], [])
        deps.pop(mod, None); deps.pop('__init__', None)
        graph[mod] = deps
    return graph

def test_no_import_cycles_and_no_private_imports():
    "The modules form layers: no cycle (not even through imports inside functions), and no module imports another's _names"
    graph = _imports()
    private = [(m, d, n) for m, deps in graph.items() for d, names in deps.items() for n in names if n.startswith('_')]
    assert not private, f'cross-module imports of private names: {private}'
    state = {}
    def visit(m, path):
        if state.get(m) == 'done': return
        assert state.get(m) != 'open', 'import cycle: ' + ' -> '.join(path + [m])
        state[m] = 'open'
        for d in graph.get(m, {}): visit(d, path + [m])
        state[m] = 'done'
    for m in graph: visit(m, [])

def test_lower_notebooks_never_import_higher_ones():
    "A module exported from notebook NN (or NNa, between NN and NN+1) imports only modules of earlier notebooks"
    import re
    num = {}
    for f in (ROOT/'fer_fastai').glob('*.py'):
        m = re.search(r'File to edit: \.\./nbs/(\d+)([a-z]?)_', f.read_text()[:3000])
        if m: num[f.stem] = (int(m.group(1)), m.group(2))
    assert set(num) == {f.stem for f in (ROOT/'fer_fastai').glob('*.py') if not f.stem.startswith('_')}, num  # every module from a numbered notebook
    assert num['distributed'] < num['train'], num
    bad = [(m, d) for m, deps in _imports().items() for d in deps if m in num and d in num and num[d] >= num[m]]
    assert not bad, f'modules importing a module of a later notebook: {bad}'
