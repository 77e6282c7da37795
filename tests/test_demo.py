"The browser demo (`fer_fastai demo`), served by its command and driven in headless Chromium, and through its HTTP API"
import os, re, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path
from urllib.parse import urlparse
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CI = os.environ.get('CI', '').lower() in ('1', 'true', 'yes')

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    import skimage.data
    d = tmp_path_factory.mktemp('photos')
    Image.fromarray(skimage.data.astronaut()).save(d/'astronaut.jpg', quality=95)
    (d/'holiday.jpg').write_text('these are my notes, not a photo\n')  # a text file renamed .jpg
    return d

@pytest.fixture(scope='module')
def server(tmp_path_factory):
    "`fer_fastai demo` on a free port of 127.0.0.1, as a user starts it; its URL"
    pytest.importorskip('gradio')
    cwd, port = tmp_path_factory.mktemp('demo'), _free_port()
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore', PYTHONPATH=str(REPO) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    log = open(cwd/'server.log', 'w')
    p = subprocess.Popen([str(Path(sys.executable).parent/'fer_fastai'), 'demo', '--port', str(port), '--device', 'cpu'],
                         cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url, t0 = f'http://127.0.0.1:{port}/', time.time()
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200: break
        except OSError: pass
        if p.poll() is not None or time.time() - t0 > 180:
            p.kill(); log.close()
            pytest.fail(f'fer_fastai demo did not start (exit status {p.poll()}):\n' + (cwd/'server.log').read_text()[-3000:])
        time.sleep(1)
    yield url
    p.terminate()
    try: p.wait(timeout=20)
    except subprocess.TimeoutExpired: p.kill()
    log.close()

def _browser():
    "Headless Chromium from the system's packages (never downloaded), with every host but 127.0.0.1 unreachable"
    chromium = shutil.which('chromium') or shutil.which('chromium-browser')
    driver = shutil.which('chromedriver')
    if chromium is None or driver is None:
        msg = 'the browser test needs Chromium and its driver: apt-get install chromium chromium-driver'
        if CI: pytest.fail(msg)
        pytest.skip(msg)
    webdriver = pytest.importorskip('selenium.webdriver')
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--window-size=1280,1500',
              '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1', '--no-first-run', '--disable-background-networking'):
        opts.add_argument(a)
    opts.set_capability('goog:loggingPrefs', {'performance': 'ALL'})
    return webdriver.Chrome(service=Service(driver), options=opts)

def _requested_hosts(driver) -> set:
    import json
    hosts = set()
    for entry in driver.get_log('performance'):
        m = json.loads(entry['message'])['message']
        if m['method'] == 'Network.requestWillBeSent':
            u = urlparse(m['params']['request']['url'])
            if u.scheme in ('http', 'https', 'ws', 'wss'): hosts.add(u.hostname)
    return hosts

def _wait_text(driver, css, pattern, timeout=180):
    "The text of `css` once it matches the regular expression `pattern`"
    t0 = time.time()
    while time.time() - t0 < timeout:
        els = driver.find_elements('css selector', css)
        text = els[0].text if els else ''
        if re.search(pattern, text): return text
        time.sleep(0.5)
    raise AssertionError(f'{css} never showed {pattern!r}; it shows {text!r}')

def _upload(driver, path):
    t0 = time.time()
    while not driver.find_elements('css selector', '#fer-photo input[type=file]'):
        assert time.time() - t0 < 60, 'the photo upload never appeared'
        time.sleep(0.5)
    driver.find_element('css selector', '#fer-photo input[type=file]').send_keys(str(path))

def test_demo_in_chromium(server, photos, tmp_path):
    driver = _browser()
    try:
        driver.get(server)
        _upload(driver, photos/'astronaut.jpg')
        text = _wait_text(driver, '#fer-message', r'face found')
        m = re.search(r'^1 face found: face 1: (\w+) (0\.\d\d|1\.00)$', text.strip())
        assert m, text  # one face, an emotion label and its probability
        assert m.group(1) in ('angry', 'disgust', 'fear', 'happy', 'sad', 'surprise', 'neutral')
        t0 = time.time()  # the Grad-CAM image and the annotated photo are shown, decoded by the browser
        shown = lambda css: driver.execute_script(f"return [...document.querySelectorAll('{css} img')].filter(i => i.complete && i.naturalWidth > 0).length")
        while (shown('#fer-cams') < 1 or shown('#fer-annotated') < 1) and time.time() - t0 < 60: time.sleep(0.5)
        assert shown('#fer-cams') >= 1 and shown('#fer-annotated') == 1
        time.sleep(1)  # the probability plot renders after the images
        driver.save_screenshot(str(tmp_path/'demo.png'))
        assert Image.open(tmp_path/'demo.png').size[0] >= 1000
        if os.environ.get('FER_DEMO_SCREENSHOT'): shutil.copy(tmp_path/'demo.png', os.environ['FER_DEMO_SCREENSHOT'])
        # a text file renamed .jpg: a message in the page, not a traceback
        driver.get(server)
        _upload(driver, photos/'holiday.jpg')
        err = _wait_text(driver, '#fer-message', r'Error')
        assert 'holiday.jpg: not an image' in err and 'Traceback' not in driver.page_source, err
        hosts = _requested_hosts(driver)
        assert hosts == {'127.0.0.1'}, f'the page asked for other hosts: {sorted(hosts)}'  # no fonts, scripts or analytics from outside
    finally: driver.quit()

def test_demo_api_equals_recognizer(server, photos):
    "The page's HTTP API (gradio_client) gives FERRecognizer's probabilities for the same file, and the error message for a bad one"
    from gradio_client import Client, handle_file
    from fer_fastai.inference import FERRecognizer
    from fer_fastai.core import DEFAULT_MODEL
    client = Client(server, verbose=False)
    msg, _, _, _, got = client.predict(handle_file(str(photos/'astronaut.jpg')), None, DEFAULT_MODEL, 'Grad-CAM', api_name='/predict_photo')
    want = FERRecognizer(device='cpu').predict(photos/'astronaut.jpg')
    assert len(got) == len(want) == 1, msg
    assert tuple(got[0]['box']) == want[0]['box'] and got[0]['emotion'] == want[0]['emotion']
    for e, p in want[0]['probs'].items(): assert abs(got[0]['probs'][e] - p) < 1e-6, (e, got[0]['probs'][e], p)
    msg = client.predict(handle_file(str(photos/'holiday.jpg')), None, DEFAULT_MODEL, 'Occlusion', api_name='/predict_photo')[0]
    assert msg.startswith('**Error:** holiday.jpg: not an image'), msg

def test_demo_api_video(server, photos, tmp_path):
    "A short video through the page's API: the summary in words and the annotated video (VP8 WebM, which browsers play)"
    import cv2, numpy as np
    from gradio_client import Client, handle_file
    vid = tmp_path/'clip.avi'
    wr = cv2.VideoWriter(str(vid), cv2.VideoWriter_fourcc(*'MJPG'), 10, (256, 256))
    frame = cv2.cvtColor(np.asarray(Image.open(photos/'astronaut.jpg').resize((256, 256))), cv2.COLOR_RGB2BGR)
    for _ in range(12): wr.write(frame)
    wr.release()
    client = Client(server, verbose=False)
    msg, video, _ = client.predict(handle_file(str(vid)), 'fer2013', api_name='/predict_video')
    assert msg.startswith('clip.avi: ') and 'overall' in msg and '1 face track(s)' in msg, msg
    path = video['video'] if isinstance(video, dict) else video
    assert Path(path).suffix == '.webm'
    cap = cv2.VideoCapture(str(path)); n = 0
    while cap.read()[0]: n += 1
    cap.release()
    assert n == 12
    (tmp_path/'broken.mp4').write_bytes(b'\x00' * 1000)
    msg = client.predict(handle_file(str(tmp_path/'broken.mp4')), 'fer2013', api_name='/predict_video')[0]
    assert msg.startswith('**Error:** OpenCV cannot open'), msg
