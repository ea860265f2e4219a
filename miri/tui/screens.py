"""The dashboard's dialogs: forms that validate through the shop, confirmations, the job picker.

A form stays open until its ``submit`` coroutine succeeds; a refused operation (a
``ShopError``) shows its message next to the field it is about, or under the form.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, OptionList, Select, Static
from textual.widgets.option_list import Option

from miri.domain.errors import ShopError
from miri.domain.goods import CATEGORIES

Submit = Callable[[dict[str, Any]], Awaitable[Any]]


class FormError(Exception):
    """Field messages found before the shop was asked."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


class Field:
    """One labelled input and the line under it for its message."""

    def __init__(
        self,
        name: str,
        label: str,
        *,
        value: str = "",
        placeholder: str = "",
        kind: str = "text",  # text | int | optional-int | choice
        choices: tuple[str, ...] = (),
        aliases: tuple[str, ...] = (),  # the shop's names for this field (goodsName, ...)
    ) -> None:
        self.name = name
        self.label = label
        self.value = value
        self.placeholder = placeholder
        self.kind = kind
        self.choices = choices
        self.aliases = aliases

    def widgets(self) -> ComposeResult:
        yield Label(self.label, classes="field-label")
        if self.kind == "choice":
            yield Select(
                [(c, c) for c in self.choices],
                value=self.value or self.choices[0],
                allow_blank=False,
                id=f"field-{self.name}",
            )
        else:
            yield Input(
                value=self.value,
                placeholder=self.placeholder,
                id=f"field-{self.name}",
                type="integer" if "int" in self.kind else "text",
            )
        yield Static("", id=f"error-{self.name}", classes="field-error")


class FormScreen(ModalScreen[Any]):
    """A titled form; ``submit(values)`` is awaited in a worker and its result dismisses it."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        title: str,
        fields: list[Field],
        submit: Submit,
        *,
        note: str = "",
        ok: str = "OK",
    ) -> None:
        super().__init__()
        self.form_title = title
        self.fields = fields
        self.submit = submit
        self.note = note
        self.ok = ok
        self.busy = False

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text(self.form_title), classes="dialog-title")  # may hold a goods name
            if self.note:
                yield Static(Text(self.note), classes="dialog-note")
            with VerticalScroll(classes="form-fields"):
                for f in self.fields:
                    yield from f.widgets()
            yield Static("", id="form-error", classes="field-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.ok, variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        first = self.query("Input, Select").first()
        first.focus()

    def values(self) -> dict[str, Any]:
        """Raw values, turned into the right types; FormError names the fields that are not."""
        out: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for f in self.fields:
            if f.kind == "choice":
                out[f.name] = self.query_one(f"#field-{f.name}", Select).value
                continue
            raw = self.query_one(f"#field-{f.name}", Input).value.strip()
            if f.kind == "text":
                out[f.name] = raw
            elif f.kind == "optional-int" and raw == "":
                out[f.name] = None
            else:
                try:
                    out[f.name] = int(raw)
                except ValueError:
                    errors[f.name] = "a whole number" if raw else "required"
        if errors:
            raise FormError(errors)
        return out

    def show_errors(self, fields: dict[str, str], general: str = "") -> None:
        by_alias = {a: f.name for f in self.fields for a in (f.name, *f.aliases)}
        leftover = []
        for f in self.fields:
            self.query_one(f"#error-{f.name}", Static).update("")
        for key, message in fields.items():
            name = by_alias.get(key)
            if name is None:
                leftover.append(f"{key}: {message}")
            else:
                self.query_one(f"#error-{name}", Static).update(Text(message))
        text = "; ".join([general, *leftover]) if general or leftover else ""
        self.query_one("#form-error", Static).update(Text(text.strip("; ")))

    @on(Button.Pressed, "#ok")
    @on(Input.Submitted)
    def confirm(self) -> None:
        if self.busy:
            return
        try:
            values = self.values()
        except FormError as exc:
            self.show_errors(exc.fields)
            return
        self.busy = True
        self.query_one("#ok", Button).disabled = True
        self.run_worker(self._submit(values), group="form", exit_on_error=False)

    async def _submit(self, values: dict[str, Any]) -> None:
        try:
            result = await self.submit(values)
        except FormError as exc:
            self.show_errors(exc.fields)
        except ShopError as exc:
            data = exc.data if isinstance(exc.data, dict) else {}
            fields = {k: str(v) for k, v in data.items() if isinstance(v, str)}
            self.show_errors(fields, "" if fields else f"{exc.code}: {exc.message}")
        except Exception as exc:  # noqa: BLE001 - shown in the form, the dashboard goes on
            self.show_errors({}, f"{exc.__class__.__name__}: {exc}")
        else:
            self.dismiss(result)
            return
        finally:
            self.busy = False
        self.query_one("#ok", Button).disabled = False

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        if not self.busy:
            self.dismiss(None)


def goods_form(submit: Submit) -> FormScreen:
    fields = [
        Field("name", "Name (1-20 characters)", aliases=("goodsName",)),
        Field("description", "Description (1-255)", aliases=("goodsDescription",)),
        Field("price", "Price (won)", kind="int", placeholder="39000", aliases=("goodsPrice",)),
        Field("stock", "Stock", kind="int", placeholder="100", aliases=("stockQuantity",)),
        Field("category", "Category", kind="choice", choices=CATEGORIES),
        Field(
            "opens",
            "Sale opens (blank: now; ISO time, or +30m / +2h / +1d)",
            placeholder="2026-11-23T10:00",
            aliases=("reservationStartTime",),
        ),
        Field(
            "limit",
            "Per-buyer limit (blank: none)",
            kind="optional-int",
            aliases=("perBuyerLimit",),
        ),
    ]
    return FormScreen("Add goods", fields, submit, ok="Add")


def number_form(title: str, label: str, default: int, submit: Submit, note: str = "") -> FormScreen:
    field = Field("quantity", label, value=str(default), kind="int", aliases=("quantity",))
    return FormScreen(title, [field], submit, note=note)


class ConfirmScreen(ModalScreen[bool]):
    """A yes / no question before a change that cannot be taken back.

    "No" has the focus, so a stray Enter changes nothing; the dialog says so, and shows both
    keys on its buttons and in its own footer.
    """

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "No", show=False),
    ]

    def __init__(self, question: str, yes: str = "Yes") -> None:
        super().__init__()
        self.question = question
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self.question), classes="dialog-note")  # may hold a goods name
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.yes} (y)", variant="warning", id="yes")
                yield Button("No (n / Esc)", id="no")
            yield Static(
                f"y: {self.yes} · n or Esc: No\n"
                "Enter presses the focused button (No until Tab moves it)",
                id="confirm-keys",
                classes="dialog-keys",
            )
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class DetailScreen(ModalScreen[str | None]):
    """One record as field / value lines (an order item with its buyer and address).

    ``actions`` are (key, label) pairs offered as buttons; the screen dismisses with the chosen
    key, or None on Esc / Close.
    """

    BINDINGS = [Binding("escape", "dismiss(None)", "Close")]

    def __init__(
        self, title: str, rows: list[tuple[str, Any]], actions: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__()
        self.detail_title = title
        self.rows = rows
        self.actions = actions

    def compose(self) -> ComposeResult:
        width = max((len(k) for k, _ in self.rows), default=0)
        body = Text()
        for key, value in self.rows:
            body.append(f"{key:<{width}}  ", style="bold cyan")
            body.append("" if value is None else str(value))  # text, never markup
            body.append("\n")
        with Vertical(classes="dialog wide"):
            yield Label(Text(self.detail_title), classes="dialog-title")
            with VerticalScroll(classes="form-fields"):
                yield Static(body, id="detail-body")
            with Horizontal(classes="dialog-buttons"):
                for key, label in self.actions:
                    yield Button(label, variant="primary", id=f"do-{key}")
                yield Button("Close (Esc)", id="close")

    def on_mount(self) -> None:
        self.query_one("#close", Button).focus()

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        chosen = event.button.id or ""
        self.dismiss(chosen.removeprefix("do-") if chosen.startswith("do-") else None)


def ship_form(submit: Submit, note: str = "") -> FormScreen:
    fields = [
        Field("carrier", "Carrier (1-30 characters)", placeholder="CJ Logistics"),
        Field(
            "tracking",
            "Tracking number (4-40 letters, digits, -)",
            placeholder="6123-4567-8901",
            aliases=("trackingNumber",),
        ),
    ]
    return FormScreen("Ship order item", fields, submit, note=note, ok="Ship")


class JobPicker(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, jobs: list[tuple[str, str, str]]) -> None:
        """``jobs``: (name, schedule, description)."""
        super().__init__()
        self.jobs = jobs

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Run a job now", classes="dialog-title")
            # Text, not markup: a schedule reads like "cron[hour='6', ...]".
            yield OptionList(
                *(
                    Option(Text.assemble((n, "bold"), f"  {s}\n  ", (d, "dim")), id=n)
                    for n, s, d in self.jobs
                ),
                id="job-list",
            )
            yield Static("Enter runs the job; the bus is drained after it.", classes="dialog-note")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    @on(OptionList.OptionSelected)
    def picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
