"""Template mode: render a chat request into one raw prompt with a Jinja template.

The entry's ``template`` is compiled once, in a sandbox that cannot mutate the
values it is given (``ImmutableSandboxedEnvironment``) and that refuses
undefined names (``StrictUndefined``), so a typo fails loudly instead of
silently dropping part of the prompt. Variables a template sees:

``system_prompt``
    The system messages' contents joined by a blank line ("" when none).
``memory``
    The chat's persistent memory note (``ChatRequest.memory``), "" when none.
``history``
    Every message except the last user message, in order, as
    ``{"role": ..., "content": ...}`` dicts (system messages included, so a
    template that prints ``system_prompt`` separately skips ``role == "system"``).
``prompt``
    The content of the last user message ("" when there is none).
``messages``
    Every message, in order, as ``{"role": ..., "content": ...}`` dicts.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from providers.errors import PromptTemplateError
from providers.types import ChatRequest, Role

_TEMPLATE_FILENAME = "<template>"

# Errors that template code itself can raise while rendering (a bad filter
# argument, an index out of range, a division by zero): all are mistakes in the
# template, reported with its line.
_RENDER_ERRORS = (
    jinja2.TemplateError,
    TypeError,
    ValueError,
    ArithmeticError,
    LookupError,
    AttributeError,
)

_environment = ImmutableSandboxedEnvironment(
    undefined=jinja2.StrictUndefined,
    autoescape=False,  # the output is a prompt for a model, not HTML
    keep_trailing_newline=True,
)


class PromptTemplate:
    """A compiled prompt template; ``render`` turns a ``ChatRequest`` into one prompt string."""

    def __init__(self, source: str, *, provider: str = "") -> None:
        """Compile ``source``; raise ``PromptTemplateError`` naming the line of a syntax error."""
        self.provider = provider
        try:
            self._template = _environment.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise PromptTemplateError(
                f"the template has a syntax error on line {exc.lineno}: {exc.message}. "
                "Fix the `template` of this entry.",
                provider=provider,
                line=exc.lineno,
            ) from exc

    def render(self, request: ChatRequest) -> str:
        """Render ``request`` into the raw prompt; raise ``PromptTemplateError`` on failure."""
        try:
            return self._template.render(template_variables(request))
        except _RENDER_ERRORS as exc:
            line = _template_line(exc.__traceback__)
            where = f" on line {line}" if line is not None else ""
            detail = exc.message if isinstance(exc, jinja2.TemplateError) else str(exc)
            raise PromptTemplateError(
                f"the template failed to render{where}: {detail}. Available variables are "
                "system_prompt, memory, history, prompt and messages; fix the `template` "
                "of this entry.",
                provider=self.provider,
                line=line,
            ) from exc


def template_variables(request: ChatRequest) -> dict[str, Any]:
    """The variables a prompt template sees for ``request`` (see the module docstring)."""
    messages = [{"role": m.role.value, "content": m.content} for m in request.messages]
    last_user = next(
        (i for i in range(len(messages) - 1, -1, -1) if messages[i]["role"] == Role.USER.value),
        None,
    )
    prompt = messages[last_user]["content"] if last_user is not None else ""
    history = [m for i, m in enumerate(messages) if i != last_user]
    system_prompt = "\n\n".join(
        m.content for m in request.messages if m.role is Role.SYSTEM and m.content
    )
    return {
        "system_prompt": system_prompt,
        "memory": request.memory,
        "history": history,
        "prompt": prompt,
        "messages": messages,
    }


def _template_line(traceback: TracebackType | None) -> int | None:
    """The template line of the innermost template frame in ``traceback``, if any.

    Jinja rewrites tracebacks so that template code appears as frames whose
    filename is the template's name and whose line is the template line.
    """
    line: int | None = None
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename == _TEMPLATE_FILENAME:
            line = traceback.tb_lineno
        traceback = traceback.tb_next
    return line


def template_of(spec_template: str | None, provider: str) -> PromptTemplate | None:
    """The compiled template of an entry, or None when it does not use template mode."""
    if spec_template is None or not spec_template.strip():
        return None
    return PromptTemplate(spec_template, provider=provider)
