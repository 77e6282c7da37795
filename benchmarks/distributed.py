"""Data-parallel training speed: one process against N processes (torchrun, gloo on CPUs, NCCL on GPUs).

The same short training runs in each setting: `fer_vgg_s` from scratch at a fixed learning rate (no lr_find), the
same per-process batch size, on a class-balanced FER2013 subset. Images per second are the training faces of all
epochs over the wall time of the training stage (`training.wall_time_s`, validation included), so the setting with
N processes does the same work per epoch with an N-times larger global batch. On a CPU each process gets
cores/N threads.

    python -m benchmarks.distributed                      # 1 and 2 processes -> benchmarks/distributed.json
    python -m benchmarks.distributed --procs 1 2 4 8 --per-class 2000 --epochs 2 --out benchmarks/distributed_gpu.json
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent

def run(n_procs:int, per_class:int, epochs:int, bs:int, data=None, threads:int=None) -> dict:
    "One training with `n_procs` processes; its measured speed and accuracy"
    import torch
    cores = os.cpu_count()
    threads = threads or (max(1, cores // n_procs) if not torch.cuda.is_available() else 1)
    out = Path(tempfile.mkdtemp(prefix='fer_dist_'))/'run'
    train = ['train', '--arch', 'fer_vgg_s', '--lr', '2e-3', '--epochs', str(epochs), '--max-per-class', str(per_class), '--bs', str(bs),
             '--no-plots', '--seed', '0', '--out', str(out)] + (['--data', str(data)] if data else [])
    cmd = ([str(BIN/'fer_fastai')] if n_procs == 1 else [str(BIN/'torchrun'), '--nproc-per-node', str(n_procs), '-m', 'fer_fastai.cli']) + train
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONWARNINGS='ignore', MPLBACKEND='Agg')
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode: sys.exit(f'{" ".join(cmd)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}')
    cfg = json.loads((out/'model.json').read_text())
    t = cfg['training']
    n_train = t['faces_per_epoch']  # all processes together, less each one's last partial batch
    return dict(processes=n_procs, threads_per_process=threads, bs_per_process=bs, global_bs=bs * n_procs, epochs=epochs,
                train_faces_per_epoch=n_train, train_s=round(t['wall_time_s'], 1), total_s=round(time.time() - t0, 1),
                images_per_s=round(n_train * epochs / t['wall_time_s'], 1),
                public_test_acc=round(cfg['metrics']['PublicTest']['accuracy'], 4), device=t['device'], hardware=t['hardware'],
                command=' '.join(['OMP_NUM_THREADS=' + str(threads)] + [Path(cmd[0]).name] + cmd[1:]).replace(str(out), 'OUT'))

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--procs', type=int, nargs='+', default=[1, 2])
    p.add_argument('--per-class', type=int, default=300, help='faces per emotion in train and valid (default: %(default)s)')
    p.add_argument('--epochs', type=int, default=2)
    p.add_argument('--bs', type=int, default=64, help='batch size per process (default: %(default)s)')
    p.add_argument('--data', help='FER2013 (default: its default location)')
    p.add_argument('--out', default=str(HERE/'distributed.json'))
    a = p.parse_args(argv)
    rows = []
    for n in a.procs:
        rows.append(run(n, a.per_class, a.epochs, a.bs, a.data)); print(json.dumps(rows[-1]), flush=True)
    base = rows[0]['images_per_s']
    for r in rows: r['speedup'] = round(r['images_per_s'] / base, 2) if base and r['images_per_s'] else None
    Path(a.out).write_text(json.dumps(dict(what=__doc__.split('\n')[0], rows=rows), indent=1) + '\n')
    print(f"{'processes':>9} {'threads':>7} {'global bs':>9} {'images/s':>9} {'speedup':>7} {'PublicTest':>10}")
    for r in rows: print(f"{r['processes']:>9} {r['threads_per_process']:>7} {r['global_bs']:>9} {r['images_per_s']:>9} {r['speedup']:>7} {r['public_test_acc']:>10}")

if __name__ == '__main__': main()
