"Small synthetic faces and models shared by the tests and the notebooks' examples (nbs/ imports this file too)"
import numpy as np, pandas as pd, torch, torch.nn as nn
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.metrics import accuracy
import fastai.callback.schedule, fastai.callback.progress  # Learner.fit_one_cycle, no_bar

def synthetic_items(n=300, size=24, noise=0.2, flip=0.2, seed=0, classes=('happy', 'sad')):
    "Two separable synthetic classes (bright top or bottom half); `flip` of the training labels flipped (columns true, flipped)"
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    imgs = rng.normal(0.5, noise, (n, size, size))
    h = size // 2
    for i in range(n): imgs[i, :h] += 0.3 * y[i]; imgs[i, h:] += 0.3 * (1 - y[i])
    imgs = (imgs.clip(0, 1) * 255).astype(np.uint8)
    names, n_val = np.array(classes), n // 5
    flipped = np.zeros(n, bool); flipped[n_val:] = rng.random(n - n_val) < flip
    return pd.DataFrame(dict(image=list(imgs), label=names[np.where(flipped, 1 - y, y)], split=['PublicTest'] * n_val + ['Training'] * (n - n_val),
                             subject=None, true=names[y], flipped=flipped))

def tiny_body(n_in=1):
    "A three-convolution body for fast tests"
    return nn.Sequential(nn.Conv2d(n_in, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.Conv2d(32, 64, 3, 1, 1), nn.BatchNorm2d(64), nn.ReLU())

def tiny_learner(dls, seed=0):
    "A `Learner` on `tiny_body` with a pooled linear head, seeded"
    torch.manual_seed(seed)
    model = nn.Sequential(tiny_body(), nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, len(dls.vocab))))
    return Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=accuracy)
