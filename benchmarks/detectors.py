"""Face detectors compared on photos with known faces: misses, false detections and time per 640x480 photo.

The photo set is made here, reproducibly (seed 0): FER2013 PublicTest faces (never PrivateTest) composited at
48-200 px, one to three per photo, onto 640x480 crops of scikit-image's face-free photos (coffee, a cat, a rocket,
coins, a horse, bricks, grass, gravel, a page of text, the moon...), plus the same backgrounds with no face. A face
counts as found when a detection's centre lies inside its box and the two sides differ by less than a factor 2;
any other detection is a false one. Each candidate detector runs through `fer_fastai.faces.detect_faces` with its
settings, on one thread.

    python -m benchmarks.detectors        # -> benchmarks/detectors.json and a printed table
"""
import json, os, time
from pathlib import Path
import numpy as np, cv2
from PIL import Image

HERE = Path(__file__).resolve().parent
BACKGROUNDS = ['coffee', 'chelsea', 'rocket', 'coins', 'horse', 'brick', 'grass', 'gravel', 'page', 'moon', 'hubble_deep_field',
               'immunohistochemistry', 'colorwheel', 'logo', 'retina', 'text']

def _backgrounds():
    import skimage.data
    out = []
    for name in BACKGROUNDS:
        a = getattr(skimage.data, name)()
        if a.dtype != np.uint8: a = (255 * (a.astype(float) / max(1, a.max()))).astype(np.uint8)
        if a.ndim == 2: a = np.repeat(a[..., None], 3, axis=2)
        out.append(np.asarray(Image.fromarray(a[..., :3]).resize((640, 480))))
    return out

def photo_set(n:int=240, seed:int=0, data=None):
    "`(photos, boxes)`: `n` 640x480 photos with 1-3 FER2013 PublicTest faces each (their boxes), then the face-free backgrounds"
    from fer_fastai.data import read_fer2013_folder
    from fer_fastai.core import fer_data_path
    rng = np.random.default_rng(seed)
    items = read_fer2013_folder(fer_data_path(data))
    faces = items[items.split == 'PublicTest'].image.tolist()
    bgs = _backgrounds()
    photos, boxes = [], []
    for i in range(n):
        img, placed = bgs[i % len(bgs)].copy(), []
        for _ in range(rng.integers(1, 4)):
            s = int(rng.choice([48, 64, 80, 100, 128, 160, 200]))
            for _try in range(20):
                x, y = int(rng.integers(0, 640 - s)), int(rng.integers(0, 480 - s))
                if all(x + s <= bx or bx + bs <= x or y + s <= by or by + bs <= y for bx, by, bs, _ in placed): break
            else: continue
            face = Image.open(faces[int(rng.integers(len(faces)))]).convert('RGB').resize((s, s), Image.BICUBIC)
            img[y:y + s, x:x + s] = np.asarray(face); placed.append((x, y, s, s))
        photos.append(img); boxes.append(placed)
    return photos + bgs, boxes + [[] for _ in bgs]

def _matches(det, gt):
    x, y, w, h = det; cx, cy = x + w / 2, y + h / 2
    gx, gy, gw, gh = gt
    return gx <= cx <= gx + gw and gy <= cy <= gy + gh and 0.5 < w / gw < 2

def score(detect, photos, boxes):
    "Misses, false detections and median ms per photo of `detect` (a photo -> boxes function)"
    detect(photos[0])
    misses = false = n_faces = 0; ts = []
    for img, gt in zip(photos, boxes):
        t0 = time.perf_counter(); det = detect(img); ts.append(time.perf_counter() - t0)
        used = set()
        for g in gt:
            j = next((k for k, d in enumerate(det) if k not in used and _matches(d, g)), None)
            if j is None: misses += 1
            else: used.add(j)
        false += len(det) - len(used); n_faces += len(gt)
    return dict(n_photos=len(photos), n_faces=n_faces, missed=misses, missed_frac=misses / n_faces, false=false,
                false_per_photo=false / len(photos), ms_per_photo=1e3 * float(np.median(ts)))

CANDIDATES = {  # name -> (detector name, detector settings, detect_faces settings)
    'haar default (scale 1.1, 5 neighbours)': ('haar', {}, {}),
    'haar default, scale 1.2': ('haar', dict(scale_factor=1.2), {}),
    'haar default, scale 1.2, 4 neighbours': ('haar', dict(scale_factor=1.2, min_neighbors=4), {}),
    'haar default, detect at 320 px': ('haar', {}, dict(max_side=320)),
    'haar alt2 (scale 1.1, 5 neighbours)': ('haar', dict(cascade='haarcascade_frontalface_alt2.xml'), {}),
    'haar alt2, scale 1.2, 3 neighbours': ('haar', dict(cascade='haarcascade_frontalface_alt2.xml', scale_factor=1.2, min_neighbors=3), {}),
    'haar alt2, detect at 320 px': ('haar', dict(cascade='haarcascade_frontalface_alt2.xml'), dict(max_side=320)),
}

def main():
    cv2.setNumThreads(1)
    from fer_fastai.faces import detect_faces, get_detector
    photos, boxes = photo_set()
    rows = []
    for name, (det, kw, dkw) in CANDIDATES.items():
        d = get_detector(det, **kw)
        r = score(lambda img: detect_faces(img, d, **dkw)[0].tolist(), photos, boxes)
        rows.append(dict(candidate=name, detector=det, settings=kw, detect_settings=dkw, **r)); print(rows[-1], flush=True)
    out = dict(command='python -m benchmarks.detectors', rows=rows, cpu=os.cpu_count(),
               photo_set='240 photos 640x480 with 1-3 FER2013 PublicTest faces (48-200 px) on scikit-image backgrounds + 16 face-free backgrounds, seed 0')
    (HERE/'detectors.json').write_text(json.dumps(out, indent=1))
    print(f"| candidate | missed | false per photo | ms per photo |\n|---|---|---|---|")
    for r in rows: print(f"| {r['candidate']} | {r['missed']}/{r['n_faces']} ({r['missed_frac']:.1%}) | {r['false_per_photo']:.2f} | {r['ms_per_photo']:.1f} |")

if __name__ == '__main__': main()
