"""Run named recipes (fer_fastai.recipes) and append one row per run to benchmarks/results.csv.

    python benchmarks/run_recipes.py                      # every recipe, full (a GPU is needed)
    python benchmarks/run_recipes.py --quick              # every recipe, quick (CPU, about a minute each)
    python benchmarks/run_recipes.py fastai_resnet18 scn_resnet18 --data PATH --out runs/recipes
"""
import argparse, sys, time, traceback
from pathlib import Path
from fer_fastai.recipes import RECIPES, run_recipe, append_results

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('names', nargs='*', help=f'recipes (default: all): {", ".join(RECIPES)}')
    p.add_argument('--quick', action='store_true', help='tiny subset, 1 epoch, 48 px: checks the pipeline, not the accuracy')
    p.add_argument('--data', default=None, help='dataset (default: FER2013 at its default location)')
    p.add_argument('--out', default='runs/recipes', help='folder for the run folders')
    p.add_argument('--results', default=str(Path(__file__).parent/'results.csv'), help='results table to append to')
    a = p.parse_args(argv)
    names = a.names or list(RECIPES)
    unknown = [n for n in names if n not in RECIPES]
    if unknown: sys.exit(f'Unknown recipe(s) {unknown}. Recipes: {", ".join(RECIPES)}')
    failed = []
    for n in names:
        t0 = time.time()
        try:
            res = run_recipe(n, data=a.data, out=Path(a.out)/(n + ('_quick' if a.quick else '')), quick=a.quick, overwrite=True)
            append_results(res, a.results)
        except Exception as e:
            traceback.print_exc(); failed.append(n); print(f'{n} FAILED after {time.time() - t0:.0f}s: {e}')
    if failed: sys.exit(f'Failed: {failed}')

if __name__ == '__main__': main()
