"""Loaded by `replayer record -- CMD` (through PYTHONPATH) in the child Python process.

It makes every anthropic client the program creates (any class) record, then hands over
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
    _problem = f"{type(e).__name__}: {e}"
    _told = False
    if os.environ.get("REPLAYER_REPORT_DIR"):  # the record command sums up; tell it (stdlib only here)
        _name = os.path.join(os.environ["REPLAYER_REPORT_DIR"], f"{os.getpid()}-{os.urandom(4).hex()}.json")
        try:
            import json

            with open(_name, "w", encoding="utf-8") as _f:
                json.dump({"pid": os.getpid(), "python": sys.executable, "error": _problem}, _f)
            _told = True
        except OSError:
            pass
    if not _told:
        print(f"replayer: recording is off in this process ({_problem})", file=sys.stderr)

# chain to the next sitecustomize on the path, if there is one
_saved = list(sys.path)
_me = sys.modules.pop("sitecustomize", None)
try:
    sys.path = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    importlib.import_module("sitecustomize")
except ImportError:
    if _me is not None:
        sys.modules["sitecustomize"] = _me
except Exception as e:  # someone else's sitecustomize failed: say so, as Python would, and go on
    print(f"Error in sitecustomize: {type(e).__name__}: {e}", file=sys.stderr)
finally:
    sys.path = _saved
