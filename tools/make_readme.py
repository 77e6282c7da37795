"""Write README.md from nbs/index.ipynb with nbconvert's markdown exporter (no Quarto needed, which `nbdev_readme`
requires), minus hidden cells and nbdev directives. `python tools/make_readme.py --check` exits 1 if README.md is stale."""
import sys, re
from pathlib import Path
import nbformat
from nbconvert import MarkdownExporter

ROOT = Path(__file__).resolve().parent.parent

def readme_text(nb_path=ROOT/'nbs'/'index.ipynb') -> str:
    nb = nbformat.read(nb_path, as_version=4)
    cells = []
    for c in nb.cells:
        src = c.source
        if c.cell_type == 'code':
            if re.search(r'^#\|\s*(hide|exporti?|default_exp)\b', src, re.M): continue
            c.source = '\n'.join(l for l in src.splitlines() if not l.startswith('#|')).strip()
            c.outputs = [o for o in c.get('outputs', []) if o.get('output_type') in ('stream', 'execute_result') and 'text/plain' in o.get('data', {'text/plain': 1})]
        cells.append(c)
    nb.cells = cells
    body, _ = MarkdownExporter().from_notebook_node(nb)
    body = re.sub(r'\n{3,}', '\n\n', body).strip() + '\n'
    return '<!-- Generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file. -->\n\n' + body

if __name__ == '__main__':
    txt = readme_text()
    if '--check' in sys.argv:
        ok = (ROOT/'README.md').read_text() == txt
        print('README.md is up to date' if ok else 'README.md differs from nbs/index.ipynb: run python tools/make_readme.py')
        sys.exit(0 if ok else 1)
    (ROOT/'README.md').write_text(txt); print('wrote README.md')
