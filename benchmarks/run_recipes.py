"""Run named recipes (fer_fastai.recipes) and append one row per run to benchmarks/results.csv.

    python benchmarks/run_recipes.py                      # every recipe, full (a GPU is needed)
    python benchmarks/run_recipes.py --quick              # every recipe, quick (CPU, about a minute each)
    python benchmarks/run_recipes.py fastai_resnet18 scn_resnet18 --data PATH --out runs/recipes
    python benchmarks/run_recipes.py ensemble_tta --members runs/fer2013_resnet18 runs/fer2013_resnet18_e16 --name r18_e8_e16
                                                          # an ensemble (+TTA) of run folders already trained
    python benchmarks/run_recipes.py scn_resnet18 --set epochs=8 'scn={"beta":0.7,"delta1":0.15,"delta2":0.2,"warmup":4}' --name e8
                                                          # a recipe with some settings changed (values are JSON)
"""
import argparse, json, sys, time, traceback
from pathlib import Path
from fer_fastai.recipes import RECIPES, run_recipe, append_results

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('names', nargs='*', help=f'recipes (default: all): {", ".join(RECIPES)}')
    p.add_argument('--quick', action='store_true', help='tiny subset, 1 epoch, 48 px: checks the pipeline, not the accuracy')
    p.add_argument('--data', default=None, help='dataset (default: FER2013 at its default location)')
    p.add_argument('--out', default='runs/recipes', help='folder for the run folders')
    p.add_argument('--results', default=str(Path(__file__).parent/'results.csv'), help='results table to append to')
    p.add_argument('--members', nargs='+', default=None, help='ensemble recipes: run folders (or recipe names) to average')
    p.add_argument('--set', nargs='+', default=[], metavar='KEY=VALUE', help='override recipe settings (VALUE as JSON, else a string)')
    p.add_argument('--name', default=None, help='suffix for the run folder (e.g. to keep several ensembles apart)')
    a = p.parse_args(argv)
    names = a.names or list(RECIPES)
    unknown = [n for n in names if n not in RECIPES]
    if unknown: sys.exit(f'Unknown recipe(s) {unknown}. Recipes: {", ".join(RECIPES)}')
    kw = {}
    for kv in a.set:
        k, _, v = kv.partition('=')
        try: kw[k] = json.loads(v)
        except json.JSONDecodeError: kw[k] = v
    if a.members:
        kw['members'] = tuple(a.members)
        # the epochs column: each member's own (read from its model.json when it is a run folder)
        ep = [json.loads((Path(m)/'model.json').read_text())['training']['epochs'] if (Path(m)/'model.json').is_file() else '?' for m in a.members]
        kw['epochs'] = '+'.join(map(str, ep))
    failed = []
    for n in names:
        t0 = time.time()
        try:
            name = n + (f'_{a.name}' if a.name else '') + ('_quick' if a.quick else '')
            res = run_recipe(n, data=a.data, out=Path(a.out)/name, quick=a.quick, overwrite=True, **kw)
            append_results(res, a.results)
        except Exception as e:
            traceback.print_exc(); failed.append(n); print(f'{n} FAILED after {time.time() - t0:.0f}s: {e}')
    if failed: sys.exit(f'Failed: {failed}')

if __name__ == '__main__': main()
