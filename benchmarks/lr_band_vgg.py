"""The learning-rate band check behind train_fer's narrower default for random VGG bodies (nbs/03_train.ipynb):
VGG16-BN from scratch, 500 faces per emotion, bs 128, one cycle of 4 epochs at lr 1e-2 and at 2e-3, on the CPU.

    python benchmarks/lr_band_vgg.py     # about 12 min on 2 CPU cores; writes benchmarks/lr_band_vgg_cpu.json
"""
import sys, time, json
from fer_fastai.data import fer_dataloaders
from fer_fastai.learner import fer_learner
from fer_fastai.train import train_fer
res = {}
for arch in ['vgg16_bn']:
    for lr in [1e-2, 2e-3]:
        dls = fer_dataloaders(bs=128, max_per_class=500, check=False, verbose=False, seed=42)
        learn = fer_learner(dls, arch, pretrained=False, label_smoothing=0.1)
        t = time.time()
        rec = train_fer(learn, epochs=4, lr=lr, show_plot=False)
        res[f'{arch} lr {lr}'] = dict(final=rec.final, train_loss=[round(x,3) for x in rec.history.train_loss], acc=[round(x,3) for x in rec.history.accuracy], s=round(time.time()-t))
        print(res, flush=True)
json.dump(res, open('benchmarks/lr_band_vgg_cpu.json','w'), indent=1)
