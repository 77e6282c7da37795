"""The command line shared by add_train_run.py and add_eval_run.py: read one folder, append its row to results.csv, print it."""
import argparse
from pathlib import Path
import pandas as pd
from fer_fastai.recipes import append_results

def add_row_main(row, doc, folder_help, command_help, argv=None, hardware=False):
    "Parse `folder [--command C] [--results CSV]`, append `row(folder, command)` to the results file and print the row"
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('folder', help=folder_help)
    p.add_argument('--command', default='', help=command_help)
    p.add_argument('--results', default=str(Path(__file__).parent/'results.csv'))
    if hardware: p.add_argument('--hardware', default=None, help="what the run trained on, where its model.json does not say (runs made elsewhere)")
    a = p.parse_args(argv)
    r = row(a.folder, a.command, a.hardware) if hardware else row(a.folder, a.command)
    append_results(r, a.results)
    print(pd.Series(r).to_string())
