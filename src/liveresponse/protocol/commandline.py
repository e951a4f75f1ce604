"""The console language (SPEC §4): one line is one command.

``NAME [ARG ...] [> FILE | >> FILE] [&]``

Pure and total: :func:`parse_line` returns a :class:`ParsedLine` or raises
:class:`CommandLineError` with a position; nothing else. :func:`split_words`
is the word splitter alone, which ``run -parameters`` also uses on the device
(SPEC §5: "split with the same rules").

Decisions (docs/architecture.md, DR-4):
- A quote opens a quoted word only at the start of a word; elsewhere it is an
  ordinary character, so ``O'Brien`` needs no quoting. A closing quote must end
  the word (followed by whitespace or the end of the line).
- A backslash is always ordinary.
- ``>``, ``>>`` and ``&`` are operators only as unquoted words (``>FILE`` and
  ``>>FILE`` are accepted too); a redirect takes exactly one file word and may
  only be followed by ``&``.
- ``-word`` names a parameter when unquoted and before ``--``; a word that is
  a negative number is a value, not a name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from liveresponse.protocol.catalogue import OUTPUT_PARAM, CommandSpec, ParamType, lookup
from liveresponse.protocol.errors import CommandLineError

_QUOTES = ("'", '"')


@dataclass(frozen=True)
class Word:
    text: str
    position: int  # index of the word's first character in the line
    quoted: bool


@dataclass(frozen=True)
class Redirect:
    mode: Literal["write", "append"]
    path: str


@dataclass(frozen=True)
class ParsedLine:
    line: str
    command: str  # canonical catalogue name
    args: dict[str, str | int | bool] = field(default_factory=dict)
    output: Literal["json", "table"] | None = None
    redirect: Redirect | None = None
    background: bool = False


def split_words(line: str) -> list[Word]:
    """Split ``line`` into words; raise CommandLineError on an unterminated quote."""
    words: list[Word] = []
    i = 0
    n = len(line)
    while i < n:
        ch = line[i]
        if ch.isspace():
            i += 1
            continue
        start = i
        if ch in _QUOTES:
            quote = ch
            i += 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise CommandLineError(f"unterminated {quote} quote starting at position {start}", start)
                if line[i] == quote:
                    if i + 1 < n and line[i + 1] == quote:
                        chars.append(quote)
                        i += 2
                        continue
                    i += 1
                    break
                chars.append(line[i])
                i += 1
            if i < n and not line[i].isspace():
                raise CommandLineError(
                    f"a closing quote must end the word (position {i}); put the whole word in quotes", i
                )
            words.append(Word("".join(chars), start, True))
        else:
            while i < n and not line[i].isspace():
                i += 1
            words.append(Word(line[start:i], start, False))
    return words


def _split_operators(words: list[Word], line: str) -> tuple[list[Word], Redirect | None, bool]:
    """Take the trailing ``&`` and a ``> FILE`` / ``>> FILE`` off the word list."""
    background = False
    if words and not words[-1].quoted and words[-1].text == "&":
        background = True
        words = words[:-1]
    redirect: Redirect | None = None
    body: list[Word] = []
    i = 0
    while i < len(words):
        w = words[i]
        if not w.quoted and w.text.startswith(">"):
            mode: Literal["write", "append"] = "append" if w.text.startswith(">>") else "write"
            target = w.text[2:] if mode == "append" else w.text[1:]
            rest = words[i + 1 :]
            if target:
                file_word = Word(target, w.position + (2 if mode == "append" else 1), False)
            elif rest:
                file_word, rest = rest[0], rest[1:]
            else:
                raise CommandLineError(f"'{w.text}' needs a file name after it", w.position)
            if not file_word.quoted and file_word.text.startswith(">"):
                raise CommandLineError("a redirect needs a file name, not another redirect", file_word.position)
            if rest:
                raise CommandLineError("nothing may follow the redirect's file name except '&'", rest[0].position)
            redirect = Redirect(mode, file_word.text)
            break
        if not w.quoted and w.text == "&":
            raise CommandLineError("'&' may only end the line", w.position)
        body.append(w)
        i += 1
    if not body:
        at = words[0].position if words else len(line)
        raise CommandLineError("no command given", at)
    return body, redirect, background


def _is_number(text: str) -> bool:
    return text.lstrip("-").isdigit() and text.count("-") <= 1 and text.startswith(("-", *"0123456789"))


def _convert(spec: CommandSpec, name: str, ptype: ParamType, choices: tuple[str, ...], word: Word) -> str | int | bool:
    if ptype is ParamType.INT:
        try:
            return int(word.text)
        except ValueError:
            raise CommandLineError(
                f"parameter {name} takes a whole number, not {word.text!r}", word.position, spec.usage
            ) from None
    if ptype is ParamType.CHOICE:
        lowered = word.text.lower()
        if lowered not in choices:
            raise CommandLineError(
                f"parameter {name} takes one of {', '.join(choices)}, not {word.text!r}", word.position, spec.usage
            )
        return lowered
    return word.text


def bind(spec: CommandSpec, words: list[Word], line_length: int) -> tuple[dict[str, str | int | bool], str | None]:
    """Bind argument words to ``spec``'s parameters. Returns (args, output format)."""
    args: dict[str, str | int | bool] = {}
    output: str | None = None
    positional = list(spec.positional)
    names_ended = False
    i = 0
    while i < len(words):
        w = words[i]
        if not w.quoted and not names_ended and w.text == "--":
            names_ended = True
            i += 1
            continue
        if not w.quoted and not names_ended and w.text.startswith("-") and len(w.text) > 1 and not _is_number(w.text):
            pname = w.text[1:]
            param = OUTPUT_PARAM if pname.lower() == OUTPUT_PARAM.name else spec.param(pname)
            if param is None:
                raise CommandLineError(f"{spec.name} has no parameter -{pname}", w.position, spec.usage)
            key = param.name
            if key in args or (key == OUTPUT_PARAM.name and output is not None):
                raise CommandLineError(f"parameter -{key} given twice", w.position, spec.usage)
            if param.type is ParamType.FLAG:
                args[key] = True
                i += 1
                continue
            if i + 1 >= len(words):
                raise CommandLineError(f"parameter -{key} needs a value", w.position, spec.usage)
            value = _convert(spec, key, param.type, param.choices, words[i + 1])
            if param is OUTPUT_PARAM:
                output = str(value)
            else:
                args[key] = value
            i += 2
            continue
        while positional and positional[0].name in args:
            positional.pop(0)
        if not positional:
            raise CommandLineError(f"too many arguments for {spec.name}: {w.text!r}", w.position, spec.usage)
        param = positional.pop(0)
        args[param.name] = _convert(spec, param.name, param.type, param.choices, w)
        i += 1
    for param in spec.all_params:
        if param.required and param.name not in args:
            raise CommandLineError(f"{spec.name} needs <{param.display}>", line_length, spec.usage)
    return args, output


def parse_line(line: str) -> ParsedLine:
    """Parse one console line against the catalogue."""
    words = split_words(line)
    if not words:
        raise CommandLineError("no command given", 0)
    body, redirect, background = _split_operators(words, line)
    head = body[0]
    spec = lookup(head.text)
    if spec is None:
        raise CommandLineError(f"unknown command {head.text!r}; type 'help' for the list", head.position)
    args, output = bind(spec, body[1:], len(line))
    return ParsedLine(
        line=line,
        command=spec.name,
        args=args,
        output=output,  # type: ignore[arg-type]
        redirect=redirect,
        background=background,
    )


def split_parameters(text: str) -> list[str]:
    """The argument vector of ``run -parameters "..."`` (SPEC §5)."""
    return [w.text for w in split_words(text)]


def quote_word(text: str) -> str:
    """A word that parses back to exactly ``text`` (double quotes, inner ones doubled)."""
    return '"' + text.replace('"', '""') + '"'
