"""Training speed on the CPU in float32 and in bfloat16 (the `CPUMixedPrecision` path of `fer_learner`), with and without
channels-last memory: one training step (forward, loss, backward, Adam step) on a batch of 48x48 gray faces, for each
architecture. Data loading is not included (fastai's FER2013 loader gives about 3,000 augmented faces/s on one core).

    python benchmarks/cpu_precision.py [ARCH ...] [--bs 64] [--steps 8]    # writes benchmarks/cpu_precision.json

Run it on an idle machine: it uses every torch thread.
"""
import argparse, json, platform, time, warnings
from pathlib import Path
import torch, torch.nn as nn
from fer_fastai.archs import create_fer_model
from fer_fastai.learner import cpu_bf16_supported

def step_rate(model, bs, bf16, channels_last, steps):
    "Median faces/s of `steps` training steps after 2 warm-up steps"
    model.train()
    if channels_last: model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(bs, 1, 48, 48, generator=g), torch.randint(0, 7, (bs,), generator=g)
    if channels_last: x = x.contiguous(memory_format=torch.channels_last)
    times = []
    for i in range(steps + 2):
        t = time.perf_counter()
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16): loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
        if i >= 2: times.append(time.perf_counter() - t)
    return bs / sorted(times)[len(times) // 2]

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('archs', nargs='*', default=['resnet18', 'vgg16_bn', 'fer_vgg', 'fer_vgg_m', 'fer_vgg_s'])
    p.add_argument('--bs', type=int, default=64); p.add_argument('--steps', type=int, default=8)
    p.add_argument('--out', default='benchmarks/cpu_precision.json')
    a = p.parse_args()
    warnings.filterwarnings('ignore')
    rows = []
    print(f'CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, bf16 instructions: {cpu_bf16_supported()}')
    print(f"{'arch':10} {'fp32':>8} {'fp32 CL':>8} {'bf16':>8} {'bf16 CL':>8}  faces/s (bs {a.bs})")
    for arch in a.archs:
        r = {}
        for bf16 in (False, True):
            for cl in (False, True):
                torch.manual_seed(0)
                m = create_fer_model(arch, 7, 1, pretrained=False, native=True, head='linear')
                r[('bf16' if bf16 else 'fp32') + (' CL' if cl else '')] = round(step_rate(m, a.bs, bf16, cl, a.steps), 1)
        rows.append(dict(arch=arch, **r))
        print(f"{arch:10} " + ' '.join(f'{v:8.0f}' for v in r.values()) + f"   bf16 CL / fp32 = {r['bf16 CL'] / r['fp32']:.2f}x", flush=True)
    Path(a.out).write_text(json.dumps(dict(threads=torch.get_num_threads(), bs=a.bs, steps=a.steps, torch=torch.__version__,
                                           cpu_bf16=cpu_bf16_supported(), rows=rows), indent=1))
