"""Pack FER2013's image-folder layout into a few lossless WebP mosaics (and back): 55 MiB to copy to a GPU machine
that has no copy of the dataset, checksum-verified when unpacked. Pixels round-trip exactly.

    python benchmarks/pack_fer2013.py pack ../shared/data/fer2013 .devdata/fer2013_packed
    python benchmarks/pack_fer2013.py unpack .devdata/fer2013_packed /tmp/fer2013
"""
import gzip, hashlib, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import numpy as np, cv2

TILE = 64  # faces per mosaic side: 64x64 faces of 48x48 = 3072x3072 px, inside WebP's 16383 px limit

def _digest(arr): return hashlib.sha256(arr.tobytes()).hexdigest()

def pack(src, dst):
    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in src.rglob('*') if p.suffix.lower() in ('.png', '.jpg', '.jpeg'))
    arr = np.stack([cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files])
    if arr.shape[1:] != (48, 48): raise SystemExit(f'expected 48x48 gray faces, got {arr.shape[1:]}')
    n, per = len(arr), TILE * TILE
    for t, i in enumerate(range(0, n, per)):
        chunk = np.zeros((per, 48, 48), np.uint8); chunk[:min(per, n - i)] = arr[i:i + per]
        m = chunk.reshape(TILE, TILE, 48, 48).transpose(0, 2, 1, 3).reshape(TILE * 48, TILE * 48)
        ok, buf = cv2.imencode('.webp', m, [cv2.IMWRITE_WEBP_QUALITY, 101])  # quality > 100: lossless
        if not ok: raise SystemExit('WebP encoding failed')
        (dst/f'tile_{t:03d}.webp').write_bytes(buf.tobytes())
    names = '\n'.join(f.relative_to(src).as_posix() for f in files)
    (dst/'names.txt.gz').write_bytes(gzip.compress(names.encode()))
    (dst/'sha256.txt').write_text(_digest(arr))
    print(f'packed {n} faces into {t + 1} tiles, {sum(p.stat().st_size for p in dst.iterdir()) / 2**20:.1f} MiB')

def unpack(src, dst, n_workers=8):
    src, dst = Path(src), Path(dst)
    names = gzip.decompress((src/'names.txt.gz').read_bytes()).decode().split('\n')
    tiles = sorted(src.glob('tile_*.webp'))
    faces = []
    for t in tiles:
        m = cv2.imdecode(np.frombuffer(t.read_bytes(), np.uint8), cv2.IMREAD_GRAYSCALE)
        faces.append(m.reshape(TILE, 48, TILE, 48).transpose(0, 2, 1, 3).reshape(-1, 48, 48))
    arr = np.concatenate(faces)[:len(names)]
    if _digest(arr) != (src/'sha256.txt').read_text().strip(): raise SystemExit('checksum mismatch: the packed data is damaged')
    for d in {str(Path(n).parent) for n in names}: (dst/d).mkdir(parents=True, exist_ok=True)
    def _write(i): cv2.imwrite(str(dst/names[i]), arr[i])
    with ThreadPoolExecutor(n_workers) as ex: list(ex.map(_write, range(len(names))))
    print(f'unpacked {len(names)} faces into {dst} (checksum ok)')

if __name__ == '__main__':
    t = time.time()
    {'pack': pack, 'unpack': unpack}[sys.argv[1]](*sys.argv[2:4])
    print(f'{time.time() - t:.1f}s')
