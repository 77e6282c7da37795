"""One prepared GPU session: the CUDA-only checks and timed FER2013 training runs, inside a fixed wall-clock budget.

Written for a lent GPU machine that holds the session only for minutes (see the README, "On a GPU"): every phase
writes its numbers to `OUT/results.json` as soon as it has them, so a run stopped at its limit still reports.

    python benchmarks/gpu_session.py --data /tmp/fer2013 --out $OUT --deadline 540
    python benchmarks/gpu_session.py --quick --out /tmp/gpu_quick      # the same steps on a small subset, any device

Phases: (1) environment; (2) CUDA checks: bf16 mixed precision and channels_last set by `fer_learner` (ResNet-18 and
`fer_vgg_m`, one training batch each), the CUDA
out-of-memory message of `train_fer` (made real by capping the process's GPU memory), a timm architecture;
(3) models trained with the library recipe (`fer_dataloaders` -> `fer_learner` -> lr_find -> `train_fer`), the epochs
chosen from the lr_find speed so that each fits its share of the time left; each evaluated on PublicTest and
PrivateTest, plain and with flip + 2-crop TTA; (4) their ensemble; (5) CAM / Grad-CAM timings.
Test-set probabilities are saved (`probs.npz`) so ensembles with models trained elsewhere can be computed later.
"""
import argparse, json, math, os, platform, shutil, sys, time, traceback
from pathlib import Path
T0 = time.time()
import numpy as np, torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fer_fastai.data import read_fer_items, load_items, fer_dataloaders
from fer_fastai.learner import fer_learner, save_model
from fer_fastai.train import train_fer, _lr_find, FERTrainingError
from fer_fastai.evaluate import evaluate, EvalReport
from fer_fastai.models import evaluate_ensemble

p = argparse.ArgumentParser()
p.add_argument('--data', default=None, help='FER2013 folder (default: the library default)')
p.add_argument('--out', default='gpu_out')
p.add_argument('--runs', default=None, help='where the run folders (with the weights) go; default OUT/runs')
p.add_argument('--deadline', type=float, default=540, help='seconds from start by which everything must be done')
p.add_argument('--models', default='resnet18:0.6,vgg16_bn:0.4', help='arch:share of the training time, comma separated')
p.add_argument('--bs', type=int, default=256)
p.add_argument('--reserve', type=float, default=60, help='seconds kept after training for the ensemble, probabilities and CAM timings')
p.add_argument('--workers', type=int, default=None, help='DataLoader worker processes (default: fer_dataloaders, 8 on CUDA)')
p.add_argument('--quick', action='store_true', help='small subset, 2 epochs each: checks the script itself')
args = p.parse_args()
OUT = Path(args.out); OUT.mkdir(parents=True, exist_ok=True)
RUNS = Path(args.runs or OUT/'runs')
import fastprogress.fastprogress as _fp; _fp.NO_BAR = True  # keep the log readable: numbers go to results.json
R = dict(started=time.strftime('%Y-%m-%d %H:%M:%S'), argv=sys.argv, phases={})
def left(): return args.deadline - (time.time() - T0)
def save(): (OUT/'results.json').write_text(json.dumps(R, indent=1, default=str))
def phase(name):
    def deco(f):
        t = time.time(); print(f'\n=== {name} (t={t - T0:.0f}s, {left():.0f}s left)', flush=True)
        try: R['phases'][name] = dict(ok=True, **(f() or {}))
        except Exception as e:
            traceback.print_exc(); R['phases'][name] = dict(ok=False, error=f'{type(e).__name__}: {e}')
        R['phases'][name]['seconds'] = round(time.time() - t, 1); save()
        shown = {k: v for k, v in R['phases'][name].items() if k != 'history'}
        print(f'--- {name}: {json.dumps(shown, default=str)[:900]}', flush=True)
    return deco

cuda = torch.cuda.is_available()
@phase('environment')
def _():
    import fastai, fastcore, cv2
    env = dict(python=platform.python_version(), torch=torch.__version__, fastai=fastai.__version__, fastcore=fastcore.__version__,
               cuda=cuda, cpus=os.cpu_count())
    if cuda:
        env.update(gpu=torch.cuda.get_device_name(0), bf16=torch.cuda.is_bf16_supported(),
                   gpu_mem_gb=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
    st = os.statvfs('/dev/shm') if os.path.exists('/dev/shm') else None
    if st: env['dev_shm_gb'] = round(st.f_bavail * st.f_frsize / 2**30, 1)
    return env

ITEMS = {}
@phase('data')
def _():
    t = time.time()
    items = read_fer_items(args.data)
    items = load_items(items, 1, n_workers=min(8, os.cpu_count() or 1))
    ITEMS['all'] = items
    return dict(n=len(items), per_split=items.split.value_counts().to_dict(), load_s=round(time.time() - t, 1))

def make_dls(bs, max_per_class=None, num_workers=None):
    num_workers = args.workers if num_workers is None else num_workers
    return fer_dataloaders(ITEMS['all'], bs=bs, max_per_class=max_per_class or (200 if args.quick else None),
                           check=False, verbose=False, num_workers=num_workers)

DLS = {}
@phase('dataloaders')
def _():
    t = time.time(); dls = make_dls(args.bs)
    try: xb, yb = dls.train.one_batch(); workers = dls.train.fake_l.num_workers
    except Exception as e:  # worker processes may fail where shared memory is small: fall back to the main process
        print(f'one_batch with workers failed ({type(e).__name__}: {e}); using num_workers=0')
        dls = make_dls(args.bs, num_workers=0); xb, yb = dls.train.one_batch(); workers = 0
    DLS['main'] = dls
    # the item pipeline's own speed: one pass over the training set with the model left out
    t1 = time.time(); n = 0
    for xb, yb in dls.train: n += len(xb)
    if cuda: torch.cuda.synchronize()
    return dict(build_s=round(t1 - t, 1), num_workers=workers, batch=list(xb.shape), device=str(xb.device),
                loader_img_per_s=round(n / (time.time() - t1)), n_train=dls.fer['n_train'], n_valid=dls.fer['n_valid'])

from fastai.callback.core import Callback, CancelFitException
class _OneBatch(Callback):
    "Stop a fit after one training batch"
    def after_batch(self):
        if self.training: self.seen_loss = float(self.learn.loss); raise CancelFitException()

@phase('cuda_checks')
def _():
    if not cuda: return dict(skipped='no CUDA device')
    from fastai.callback.fp16 import MixedPrecision
    out = {}
    R['amp'] = False  # stays False if the bf16/channels_last batch below fails: training then runs in fp32
    for arch in ('resnet18', 'fer_vgg_m'):  # a torchvision body and this library's own VGG
        learn = fer_learner(DLS['main'], arch, pretrained=False, label_smoothing=0.1)
        mp = [c for c in learn.cbs if isinstance(c, MixedPrecision)]
        conv = next(m for m in learn.model.modules() if isinstance(m, torch.nn.Conv2d))
        o = out[arch] = {}
        o['mixed_precision'] = str(getattr(mp[0], 'amp_mode', mp[0]) if mp else None)
        o['channels_last_weights'] = bool(conv.weight.is_contiguous(memory_format=torch.channels_last))
        o['model_device'] = str(conv.weight.device)
        # one training batch: what dtype does the forward run in?
        h = conv.register_forward_hook(lambda m, i, x: o.update(out_dtype=str(x.dtype), in_channels_last=bool(i[0].is_contiguous(memory_format=torch.channels_last))))
        ob = _OneBatch(); learn.fit(1, 1e-3, cbs=[ob])
        h.remove(); o['loss'] = round(ob.seen_loss, 3)
        del learn; torch.cuda.empty_cache()
    R['amp'] = True
    # CUDA out of memory -> FERTrainingError telling to lower the batch size (memory capped to make it real)
    total = torch.cuda.get_device_properties(0).total_memory
    dls_big = make_dls(4096, max_per_class=1000)
    learn = fer_learner(dls_big, 'resnet18', pretrained=False)
    torch.cuda.set_per_process_memory_fraction(min(1.0, 1.0 * 2**30 / total))
    try:
        train_fer(learn, epochs=1, lr=1e-3, show_plot=False); out['oom'] = 'no error raised (cap too high?)'
    except FERTrainingError as e: out['oom'] = f'FERTrainingError: {e}'
    except Exception as e: out['oom'] = f'other error {type(e).__name__}: {str(e)[:300]}'
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0); del learn, dls_big; torch.cuda.empty_cache()
    # a timm architecture through fer_learner (timm is installed on the GPU image, not in the project)
    try:
        import timm
        learn = fer_learner(DLS['main'], 'convnext_atto', pretrained=False)
        ob = _OneBatch(); learn.fit(1, 1e-3, cbs=[ob])
        out['timm'] = f'timm {timm.__version__}: convnext_atto trained one batch, loss {ob.seen_loss:.3f}'
        del learn
    except Exception as e: out['timm'] = f'{type(e).__name__}: {str(e)[:300]}'
    torch.cuda.empty_cache()
    return out

MODELS, REPORTS = {}, {}
def train_model(arch, share, budget_total):
    dls = DLS['main']
    name = f'{arch}_gpu' if cuda else f'{arch}_quick'
    out = RUNS/name
    amp = 'auto' if R.get('amp', True) else False
    learn = fer_learner(dls, arch, pretrained=False, label_smoothing=0.1, mixed_precision=amp, channels_last=amp)
    budget = budget_total * share
    t = time.time()
    iters = 20 if args.quick else 100
    lr = _lr_find(learn, iters, 'all layers', out, False, (1e-3, 1e-2))
    t_lrf = time.time() - t
    n_batches = math.ceil(dls.fer['n_train'] / dls.bs)
    sec_per_epoch = t_lrf / iters * n_batches * 1.15  # + validation
    epochs = 2 if args.quick else max(2, int((budget - t_lrf - 15) / sec_per_epoch))
    print(f'{arch}: lr_find {t_lrf:.1f}s for {iters} batches -> about {sec_per_epoch:.1f}s per epoch -> {epochs} epochs in {budget:.0f}s')
    rec = train_fer(learn, epochs=epochs, lr=lr, out=out, show_plot=False)
    res = dict(arch=arch, mixed_precision=str(amp), bs=dls.bs, lr=lr, lr_find_s=round(t_lrf, 1), est_epoch_s=round(sec_per_epoch, 2), epochs=epochs,
               train_s=round(rec.wall_time_s, 1), epoch_s=round(rec.wall_time_s / epochs, 2),
               train_img_per_s=round(dls.fer['n_train'] * epochs / rec.wall_time_s), best_epoch=rec.get('best_epoch'),
               history=rec.history[['epoch', 'train_loss', 'valid_loss', 'accuracy']].round(4).values.tolist())
    t = time.time()
    reports = {}  # kept: the ensemble and probs.npz reuse their probabilities instead of predicting again
    for split in ('PublicTest', 'PrivateTest'):
        reports[split] = evaluate(learn, split)
        reports[split + '_tta'] = evaluate_ensemble([learn], split, flip=True, crops=2)
    res.update({k: dict(accuracy=round(r.accuracy, 4), macro_f1=round(r.macro_f1, 4)) for k, r in reports.items()})
    res['eval_s'] = round(time.time() - t, 1)
    save_model(learn, out, metrics=res, hardware=R['phases']['environment'].get('gpu', 'cpu'))
    shutil.copy(out/'history.csv', OUT/f'history_{name}.csv')
    MODELS[name], REPORTS[name] = learn, reports
    return res

def _train_all():
    specs = [(a, float(s)) for a, s in (m.split(':') for m in args.models.split(','))]
    reserve = args.reserve  # ensemble, probabilities, CAM timings
    for i, (arch, share) in enumerate(specs):
        rest = sum(s for _, s in specs[i:])
        b = max(30., left() - reserve)
        phase(f'train_{arch}')(lambda: train_model(arch, share / rest, b))
_train_all()

@phase('ensemble')
def _():
    if len(REPORTS) < 2: return dict(skipped=f'{len(REPORTS)} model(s) trained')
    res = {}
    for key in ('PublicTest', 'PublicTest_tta', 'PrivateTest', 'PrivateTest_tta'):  # the members' probabilities, averaged
        rs = [reps[key] for reps in REPORTS.values()]
        r = EvalReport(key, rs[0].vocab, rs[0].targets, np.mean([x.probs for x in rs], 0))
        res[key] = dict(accuracy=round(r.accuracy, 4), macro_f1=round(r.macro_f1, 4))
    return dict(members=list(REPORTS), **res)

@phase('probs')
def _():
    arrays = {}
    for name, reps in REPORTS.items():
        for key, r in reps.items():
            arrays[f'{name}__{key.replace("_tta", "__tta")}'] = r.probs.astype(np.float32)
            arrays[f'targets__{key.split("_")[0]}'] = r.targets
    np.savez_compressed(OUT/'probs.npz', **arrays)
    return dict(arrays=len(arrays))

@phase('cam_timings')
def _():
    if not MODELS: return dict(skipped='no model')
    from fer_fastai.cam import cam_maps
    learn = next(iter(MODELS.values()))
    items = learn.dls.test_items.iloc[:64]
    xb = learn.dls.test_dl(items).one_batch()[0]
    out = {}
    for m in ('cam', 'gradcam', 'gradcam++', 'occlusion'):
        cam_maps(learn, xb[:4], method=m)  # warm-up
        if cuda: torch.cuda.synchronize()
        t = time.time(); maps = cam_maps(learn, xb, method=m)
        if cuda: torch.cuda.synchronize()
        out[m] = dict(faces=len(xb), s=round(time.time() - t, 3), ms_per_face=round(1000 * (time.time() - t) / len(xb), 2), shape=list(maps.shape))
    return out

R['total_s'] = round(time.time() - T0, 1); save()
print(f'\nall done in {R["total_s"]}s')
