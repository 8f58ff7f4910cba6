"""The Steering pane: questions agents wait on; answering, cancelling, finding the asker."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from rich.text import Text

from ...core.steering import Request
from ...core.text import ago
from ..actions import Hint
from ..conflict import edit_detail, held_text, meanings_text
from ..modals.answer import AnswerModal, ConflictShown
from ..modals.cancel_question import CancelChoice, CancelQuestionModal
from ..modals.confirm import ConfirmModal
from ..modals.detail import DetailModal
from ..screens.conflict import ConflictScreen
from .base import Console, TablePane, fields
from .sessions import session_key
from .table import KeyedTable

#: ended requests the Steering pane still lists (newest first, under the open ones)
STEERING_ENDED_SHOWN = 20


def steering_keys(request_id: str) -> tuple[str, str]:
    """A request's row key while open (oldest first, on top) and once ended (below)."""
    n = int(request_id.lstrip("S") or 0)
    return f"0|{n:012d}", f"1|{10**12 - n:012d}"


class SteeringTable(KeyedTable):
    """Questions agents wait on: the open ones first (the longest-waiting on top), then the
    recently ended ones."""

    COLUMNS = (("id", "Id"), ("asker", "Asks"), ("waited", "Waiting"), ("about", "About"),
               ("state", "State"), ("question", "Question"))
    TEXT = ("question", "about")
    MAX_WIDTH = 30

    def all_keys(self) -> Iterable[str]:
        book = self.state.steering
        for request in book.open.values():
            yield steering_keys(request.id)[0]
        for request in list(book.ended.values())[-STEERING_ENDED_SHOWN:]:
            yield steering_keys(request.id)[1]

    def identity(self, key: str) -> str:
        return self.request_id(key) or key

    @staticmethod
    def request_id(key: str | None) -> str | None:
        if key is None:
            return None
        open_, number = key.split("|", 1)
        n = int(number) if open_ == "0" else 10**12 - int(number)
        return f"S{n}"

    def cells(self, key: str) -> tuple[Any, ...] | None:
        request_id = self.request_id(key)
        book = self.state.steering
        request = book.get(request_id or "")
        if request is None or key.startswith("0|") != request.open:
            return None
        if not request.open:
            shown = list(book.ended)[-STEERING_ENDED_SHOWN:]
            if request.id not in shown:
                return None
        now = self.clock()
        waited = ago((request.ended or now) - request.created)
        if request.open and request.waiting_by:  # a conflict: it ends with the lease
            state = Text("waits for the lease", style="bold magenta")
        elif request.open:
            state = Text("waiting", style="bold magenta")
            if request.timeout_at is not None:
                state.append(f" {ago(request.timeout_at - now)} left", style="magenta")
        else:
            label = {"answered": "answered", "timed_out": "timed out",
                     "cancelled": "cancelled"}[request.state]
            state = Text(label, style="green" if request.state == "answered" else "yellow")
        question = " ".join(request.question.split())
        if request.choices:
            question += f"  [{' / '.join(request.choices)}]"
        return (request.id, request.asker, waited, request.task_id or "-", state, question)


class SteeringPane(TablePane):
    name = "steering"
    title = "Steering"
    table: SteeringTable

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.table = SteeringTable(self.state, console.runtime.clock, id="steering-table")

    def _request(self) -> Request | None:
        request_id = self.table.request_id(self.selected())
        return self.state.steering.get(request_id) if request_id else None

    def allows(self, action: str) -> bool:
        if action == "answer":
            return bool(self.state.steering.open)
        request = self._request()
        if action == "cancel_request":
            return request is not None and request.open
        if action == "show_both":
            return request is not None and request.kind == "conflict"
        return request is not None  # go_to_asker

    def hint(self) -> Hint:
        request = self._request()
        if request is None:
            return ()
        both = ("steering.sides",) if request.kind == "conflict" else ()
        if request.open:
            return ("steering.answer", "steering.cancel", "steering.goto", *both)
        return ("steering.goto", *both)

    def answer(self) -> None:
        """Answer the selected request, or (from any other pane) the longest-waiting one."""
        request = self._request()
        if request is None or not request.open:
            waiting = self.state.steering.waiting()
            if not waiting:
                return
            request = waiting[0]
        self.answer_request(request)

    def answer_request(self, request: Request) -> None:
        """The answer dialog for one request (from this pane, or a run's agent view)."""
        rid = request.id

        def answered(text: str | None) -> None:
            if text:
                self.send(type="steer_answer", id=rid, answer=text)

        self.console.app.push_screen(AnswerModal(
            request.asker, request.question, context=request.context, about=request.task_id,
            waited=ago(self.console.runtime.clock() - request.created),
            choices=request.choices, default=request.default,
            permission=request.kind == "permission",
            conflict=self._conflict_shown(request)), answered)

    def _conflict_shown(self, request: Request) -> ConflictShown | None:
        """What the answer dialog shows of a conflict: who holds what, what each choice
        does, the edit; `t` there opens both transcripts over it."""
        if request.kind != "conflict" or not request.conflict:
            return None
        now = self.console.runtime.clock()

        def side_by_side() -> None:
            self.console.app.push_screen(self._both(request, answer=None))

        return ConflictShown(held_text(request, self.state.claims, now), meanings_text(request),
                             edit_detail(request), side_by_side)

    def _both(self, request: Request,
              answer: Callable[[], None] | None) -> ConflictScreen:
        return ConflictScreen(request, self.state, self.console.runtime.clock, answer=answer)

    def show_both(self) -> None:
        """The selected conflict's two agents' transcripts side by side; `a` there answers."""
        request = self._request()
        if request is None or request.kind != "conflict":
            return
        rid = request.id

        def answer() -> None:  # the request as it is once the screen closes
            now = self.state.steering.get(rid)
            if now is not None and now.open:
                self.answer_request(now)

        self.console.app.push_screen(self._both(request, answer=answer))

    def cancel_request(self) -> None:
        request = self._request()
        if request is None or not request.open:
            return
        rid = request.id
        issue = self.state.issues.issue_asking(request)
        if issue is not None:
            self._cancel_issue_question(request, issue.identifier)
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.send(type="steer_cancel", id=rid)

        self.console.app.push_screen(ConfirmModal(
            f"Cancel {rid}?", f"{request.asker} stops waiting and is told the question was "
            "cancelled, with no answer.", "Cancel request", "Keep it"), confirmed)

    def _cancel_issue_question(self, request: Request, issue: str) -> None:
        """An issue's question: cancel it alone, or park the issue with it (the orchestrator
        cancels the question and stops the run, so the agent is not run again to ask again)."""
        rid = request.id

        def chosen(choice: CancelChoice) -> None:
            if choice == "park":
                self.send(type="issue_cancel", request=rid)
            elif choice == "cancel":
                self.send(type="steer_cancel", id=rid)

        self.console.app.push_screen(CancelQuestionModal(rid, request.asker, issue), chosen)

    def go_to_asker(self) -> None:
        """Show where the asker is working: its run, else the lease it asks about, else it."""
        request = self._request()
        if request is None:
            return
        state = self.state
        session = state.sessions.by_id.get(request.session)
        if session is not None:
            self.console.show_row("sessions",
                                  session_key(session.agent, session.started, session.id))
            return
        claim = state.claims.get(request.task_id) if request.task_id else None
        if claim is None:
            held = state.claims.owned_by(request.asker) or []
            claim = held[0] if held else None
        if claim is not None:
            self.console.show_row("claims", claim.task_id)
            return
        self.console.show_row("agents", request.asker)

    def open(self, key: str) -> None:
        request = self.state.steering.get(SteeringTable.request_id(key) or "")
        if request is None:
            return
        if request.open:
            self.answer()
            return
        body = fields((("asker", request.asker), ("about", request.task_id or "-"),
                       ("question", request.question), ("context", request.context or "-"),
                       ("state", request.state), ("answer", request.answer or "-"),
                       ("by", request.answered_by or "-"),
                       ("delivered", "yes" if request.delivered else "not yet")))
        self.console.app.push_screen(DetailModal(f"Request {request.id}", body))
