"""A conflict's two sides: the blocked run's transcript beside the lease holder's.

Each side opens where the lines in question are: the waiting run at the tool call that is
blocked, the holder at the tool call that grew its lease over those paths (Claim.grown). A
holder with no transcript (an agent that claimed by itself, or a run whose transcript is not
there) shows its lease and its last progress notes instead. The request can end while the
screen is open (a lease ends, another operator answers): the header says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from ...attach.files import Files, RuntimeFile
from ...core.claims import Claim, Overlap
from ...core.state import State
from ...core.steering import Request, blocked_line
from ...core.text import ago, printable
from ..conflict import holder_grown, holders
from ..transcript.widget import FOLLOW_EVERY, TranscriptLog

#: progress notes a holder with no transcript shows
NOTES_SHOWN = 5


class ConflictScreen(Screen[None]):
    """Both agents of a conflict, side by side, each at the lines in question."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Back", id="conflict.close"),
        Binding("a", "answer", "Answer", id="conflict.answer"),
        Binding("tab", "switch", "Other side", id="conflict.switch"),
        Binding("n", "next_holder", "Next holder", id="conflict.next_holder"),
    ]

    def __init__(self, request: Request, state: State, clock: Callable[[], float], *,
                 answer: Callable[[], None] | None = None,
                 poll_every: float = FOLLOW_EVERY) -> None:
        super().__init__()
        self.request_id = request.id
        self._request = request
        self.state = state
        self.clock = clock
        #: opens the answer dialog once this screen is closed (None: a dialog is below it)
        self.answer = answer
        self.poll_every = poll_every
        #: every lease in the way; the right side shows one at a time (`n`: the next)
        self.holders: list[Overlap] = holders(request)
        self.shown = 0
        #: the transcripts open here (closed with the screen, or the holder's when `n`
        #: shows the next)
        self.opened: list[RuntimeFile] = []

    @property
    def holder(self) -> Overlap | None:
        return self.holders[self.shown] if self.holders else None

    @property
    def request(self) -> Request:
        """The request as the state has it now (it may have ended)."""
        return self.state.steering.get(self.request_id) or self._request

    @property
    def files(self) -> Files:
        """Where transcripts are read: where the runtime keeps them, or a copy."""
        return self.app.files  # type: ignore[attr-defined,no-any-return]

    # ---- layout -----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static("", id="conflict-title")
        with Horizontal(id="conflict-sides"):
            with Vertical(id="side-waiting", classes="side"):
                yield Static(self._waiting_head(), classes="side-title")
                yield self._transcript_or(self.request.session, "waiting-transcript",
                                          Text("(this run has no transcript)", style="dim"))
            with Vertical(id="side-holder", classes="side"):
                yield from self._holder_side()
        yield Footer(compact=True)

    def _holder_side(self) -> list[Static | TranscriptLog | VerticalScroll]:
        holder = self.holder
        return [Static(self._holder_head(), classes="side-title"),
                self._transcript_or(holder.session if holder else "", "holder-transcript",
                                    self._lease_text())]

    def _transcript_or(self, session_id: str, widget_id: str,
                       instead: Text) -> TranscriptLog | VerticalScroll:
        """The run's transcript, live; else `instead` (a run with none, or no run)."""
        session = self.state.sessions.by_id.get(session_id) if session_id else None
        if session is None or not session.transcript:
            return VerticalScroll(Static(instead), id=widget_id, classes="instead")
        file = RuntimeFile(session.transcript, run=session.id, stream="transcript")
        self.opened.append(file)
        return TranscriptLog(self.files.open(file), poll_every=self.poll_every, id=widget_id)

    def on_mount(self) -> None:
        facts = self.request.conflict or {}
        waiting = self._log("#waiting-transcript")
        if waiting is not None and facts.get("tool_call_id"):
            waiting.go_to_call(str(facts["tool_call_id"]))
        self._holder_at_its_call()
        self.query_one("#waiting-transcript").focus()
        self._refresh_title()
        self.set_interval(1.0, self._refresh_title)

    def _holder_at_its_call(self) -> None:
        held = self._log("#holder-transcript")
        call = holder_grown(self.holder, self.state.claims) if self.holder else {}
        if held is not None and call:
            held.go_to_call(str(call["tool_call_id"]))

    def on_unmount(self) -> None:
        for file in self.opened:
            self.files.close(file)

    def _log(self, selector: str) -> TranscriptLog | None:
        found = self.query(selector).first()
        return found if isinstance(found, TranscriptLog) else None

    # ---- what each part says ----------------------------------------------------------------

    def title_text(self) -> Text:
        request = self.request
        text = Text.assemble((f" {printable(request.id)} ", "bold"), ("· ", "dim"),
                             printable(blocked_line(request.conflict or {})))
        now = self.clock()
        if request.open:
            waited = f"  waiting {ago(now - request.created)}"
            if request.waiting_by:
                waited += f" (Wait chosen by {request.waiting_by})"
            text.append(printable(waited), style="bold magenta")
        else:
            how = request.state.replace("_", " ")
            answer = f": {request.answer}" if request.answer else ""
            by = f" by {request.answered_by}" if request.answered_by else ""
            text.append(printable(f"  {how}{answer}{by}"), style="green")
        return text

    def _refresh_title(self) -> None:
        self.query_one("#conflict-title", Static).update(self.title_text())

    def _waiting_head(self) -> Text:
        facts = self.request.conflict or {}
        call = facts.get("title") or facts.get("tool_call_id") or "?"
        return Text.assemble((printable(self.request.asker), "bold"),
                             printable(f" · waits at {call}"), style="")

    def _holder_head(self) -> Text:
        holder = self.holder
        if holder is None:
            return Text("(no lease in the way any more)", style="dim")
        text = Text.assemble((printable(holder.owner), "bold"),
                             printable(f" · {holder.task_id} for "
                                       f"{ago(self.clock() - holder.since)}"))
        call = holder_grown(holder, self.state.claims)
        if call.get("title"):
            text.append(printable(f" · grew by {call['title']}"))
        if len(self.holders) > 1:
            text.append(f" ({self.shown + 1} of {len(self.holders)} leases · n: next)",
                        style="dim")
        return text

    def _lease_text(self) -> Text:
        """A holder with no transcript: its lease and its last progress notes."""
        holder = self.holder
        if holder is None:
            return Text("(no lease in the way any more)", style="dim")
        claim = self.state.claims.get(holder.task_id)
        text = Text()
        text.append(f"Lease {printable(holder.task_id)} of {printable(holder.owner)}\n",
                    style="bold")
        if claim is not None:
            text.append(printable(_lease_lines(claim, self.clock())) + "\n")
        else:
            text.append("(the lease has ended)\n", style="dim")
        notes = self.state.board.progress.for_task(holder.task_id)[-NOTES_SHOWN:]
        text.append("\nLast progress notes\n", style="bold")
        for note in notes:
            text.append(printable(f"{note.get('author', '?')} ({note.get('kind', 'note')}): "
                                  f"{note.get('text', '')}", lines=True) + "\n")
        if not notes:
            text.append("(none)\n", style="dim")
        text.rstrip()
        return text

    # ---- keys -------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "answer":
            return self.request.open
        if action == "next_holder":
            return len(self.holders) > 1
        return True

    def action_close(self) -> None:
        self.dismiss(None)

    def action_answer(self) -> None:
        """Back to the dialog below, or close and open it."""
        answer = self.answer
        self.dismiss(None)
        if answer is not None and self.request.open:
            answer()

    async def action_next_holder(self) -> None:
        """The right side shows the next lease in the way (its transcript, or its lease)."""
        if len(self.holders) < 2:
            return
        holder = self.holder
        session = self.state.sessions.by_id.get(holder.session) if holder else None
        for file in [f for f in self.opened if session is not None and f.run == session.id]:
            self.files.close(file)
            self.opened.remove(file)
        self.shown = (self.shown + 1) % len(self.holders)
        side = self.query_one("#side-holder", Vertical)
        had_focus = self.query_one("#holder-transcript").has_focus
        await side.remove_children()
        await side.mount_all(self._holder_side())
        self._holder_at_its_call()
        if had_focus:
            self.query_one("#holder-transcript").focus()

    def action_switch(self) -> None:
        waiting = self.query_one("#waiting-transcript")
        (self.query_one("#holder-transcript") if waiting.has_focus else waiting).focus()


def _lease_lines(claim: Claim, now: float) -> str:
    paths = ", ".join(claim.paths) or "(the whole worktree)"
    lines = [f"paths     {paths}", f"worktree  {claim.worktree or '(default)'}",
             f"claimed   {ago(now - claim.claimed_at)} ago",
             f"expires   in {ago(claim.lease_expires_at - now)}"]
    if claim.note:
        lines.append(f"note      {claim.note}")
    if claim.checkpoint:
        lines.append(f"checkpoint {claim.checkpoint}")
    return "\n".join(lines)
