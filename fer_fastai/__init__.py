__version__ = "0.1.0"

import warnings as _warnings
# fastai 2.8 decorates a few layers with torch.jit.script at import time; torch 2.14 answers each with a FutureWarning the
# user can do nothing about (it is not about their code). Silence exactly that message, nothing else.
_warnings.filterwarnings('ignore', message=r'`torch\.jit\.script` is deprecated', category=FutureWarning)
