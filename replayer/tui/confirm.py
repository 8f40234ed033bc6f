"""The question before a rerun is sent: the edits, the estimate and any problems."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Static

from .. import replay
from ..fmt import money, plural


class ConfirmScreen(ModalScreen[bool]):
    """The estimate and any problems, before anything is sent. Its own footer lists its keys:
    without one, the editor's footer showed through below it with the editor's keys (ctrl+o
    Variants), which do nothing here."""

    BINDINGS = [
        Binding("escape,n", "answer(False)", "Cancel", id="cancel"),
        Binding("y,ctrl+j,alt+enter,ctrl+s", "answer(True)", "Send", id="confirm"),
        Binding("y,ctrl+j,alt+enter,ctrl+s", "fork", "Fork", id="confirm-fork"),
    ]

    def __init__(
        self,
        edits: replay.Edits,
        samples: int,
        problems: list[replay.Problem],
        est: replay.Estimate,
        orig: replay.Original,
        *,
        fork: bool = False,
    ) -> None:
        super().__init__()
        self.edits, self.samples, self.problems, self.est, self.orig = edits, samples, problems, est, orig
        self.fork = fork
        """Asking before a fork (one live trajectory from this turn on), not samples."""

    def compose(self) -> ComposeResult:
        e = self.est
        text = Text()
        if self.fork:
            text.append(f"Fork the run at turn {self.orig.index}?\n\n", style="bold")
            text.append(f"edits (in every request from this turn on): {', '.join(self.edits.names())}\n")
            text.append(
                f"estimate for this turn: {e.input_tokens:,} prompt tokens ({e.source}) + ~{e.output_tokens:,} "
                f"output: {money(e.cost_usd)} (at most {money(e.max_cost_usd)}); each later turn about as much again\n"
                "the recorded command runs again; turns before this one are answered from the recording\n"
            )
        else:
            text.append(f"Send {plural(self.samples, 'sample')}?\n\n", style="bold")
            text.append(f"edits: {', '.join(self.edits.names())}\n")
            text.append(
                f"estimate: {e.input_tokens:,} prompt tokens ({e.source}) + ~{e.output_tokens:,} output each: "
                f"{money(e.cost_usd)} for {self.samples} (at most {money(e.max_cost_usd)})\n"
                f"the original cost {money(self.orig.cost_usd)}\n"
            )
        blocking = [p for p in self.problems if p.blocking]
        for p in self.problems:
            text.append(
                "\nproblem: " if p.blocking else "\nwarning: ", style="bold red" if p.blocking else "bold yellow"
            )
            text.append(p.message)
        with Vertical(id="rr-confirm"):
            yield Static(text)
            with Horizontal(id="rr-buttons"):
                verb = "Fork" if self.fork else "Send"
                yield Button(
                    f"{verb} anyway" if blocking else verb, id="rr-go", variant="error" if blocking else "primary"
                )
                yield Button("Cancel", id="rr-cancel")
        yield Footer()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The one confirming key's name in the footer: Send, or Fork before a fork."""
        if action == "answer" and parameters == (True,):
            return not self.fork
        if action == "fork":
            return self.fork
        return True

    @on(Button.Pressed, "#rr-go")
    def go(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#rr-cancel")
    def cancel(self) -> None:
        self.dismiss(False)

    def action_answer(self, go: bool) -> None:
        self.dismiss(go)

    def action_fork(self) -> None:
        self.dismiss(True)
