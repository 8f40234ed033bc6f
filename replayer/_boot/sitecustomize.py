"""Loaded by `replayer record -- CMD` (through PYTHONPATH) in the child Python process.

It makes every anthropic.Anthropic / AsyncAnthropic the program creates record, then hands over
to any other sitecustomize the environment had, so nothing the user set up is lost.
"""

import importlib
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))

try:
    from replayer.autorecord import install

    install()
except Exception as e:  # never stop the user's program
    print(f"replayer: recording is off in this process ({type(e).__name__}: {e})", file=sys.stderr)

# chain to the next sitecustomize on the path, if there is one
_saved = list(sys.path)
try:
    sys.path = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    del sys.modules["sitecustomize"]
    importlib.import_module("sitecustomize")
except ImportError:
    pass
finally:
    sys.path = _saved
