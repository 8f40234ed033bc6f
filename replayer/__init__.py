"""replayer: record, browse, rerun and cost every Claude API call an agent makes.

`from replayer import Recorder` stays cheap: the SDK is imported only when a client is wrapped,
and Textual only by the terminal app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Recorder", "__version__"]

if TYPE_CHECKING:
    from .recorder import Recorder


def __getattr__(name: str) -> Any:
    if name == "Recorder":
        from .recorder import Recorder

        return Recorder
    raise AttributeError(name)
