"""The console language (SPEC §4): protocol/commandline.py. Tier 1, pure."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liveresponse.protocol.catalogue import lookup
from liveresponse.protocol.commandline import ParsedLine, Redirect, parse_line, split_words
from liveresponse.protocol.errors import CommandLineError

# -- words and quotes ---------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("fileinfo 'it''s'", ["fileinfo", "it's"]),
        ('fileinfo "say ""hi"""', ["fileinfo", 'say "hi"']),
        ("fileinfo ''", ["fileinfo", ""]),
        ('fileinfo ""', ["fileinfo", ""]),
        ("a '' \"\" b", ["a", "", "", "b"]),
        ("  dir \t /etc  ", ["dir", "/etc"]),
        ("'a \"b\" c'", ['a "b" c']),
        ("\"a 'b' c\"", ["a 'b' c"]),
        ("O'Brien", ["O'Brien"]),  # a quote inside a word is ordinary (DR-4)
        (r"dir C:\Users\x\ ", ["dir", "C:\\Users\\x\\"]),
        (r"'C:\new\table'", ["C:\\new\\table"]),
    ],
)
def test_split_words(line: str, words: list[str]) -> None:
    assert [w.text for w in split_words(line)] == words


def test_split_words_records_position_and_quoting() -> None:
    words = split_words("dir  'x y'  -z")
    assert [(w.text, w.position, w.quoted) for w in words] == [
        ("dir", 0, False),
        ("x y", 5, True),
        ("-z", 12, False),
    ]


def test_doubled_quote_escapes_reach_the_argument() -> None:
    assert parse_line("fileinfo 'it''s'").args == {"path": "it's"}
    assert parse_line('fileinfo "say ""hi"""').args == {"path": 'say "hi"'}


def test_empty_quoted_word_is_a_value() -> None:
    assert parse_line("fileinfo ''").args == {"path": ""}
    assert parse_line('dir ""').args == {"path": ""}


def test_backslash_is_an_ordinary_character() -> None:
    line = "dir C:\\Users\\x\\"
    assert parse_line(line) == ParsedLine(line=line, command="dir", args={"path": "C:\\Users\\x\\"})
    assert parse_line('fileinfo "C:\\a b\\"').args == {"path": "C:\\a b\\"}
    assert parse_line("registry HKLM\\SOFTWARE\\x").args == {"key": "HKLM\\SOFTWARE\\x"}


@pytest.mark.parametrize(
    ("line", "position", "quote"),
    [
        ("fileinfo 'abc", 9, "'"),
        ('dir "abc', 4, '"'),
        ("dir 'it''s", 4, "'"),
        ("'", 0, "'"),
        ('dir "a"" ', 4, '"'),
    ],
)
def test_unterminated_quote_is_an_error_with_its_position(line: str, position: int, quote: str) -> None:
    with pytest.raises(CommandLineError) as info:
        parse_line(line)
    assert info.value.position == position
    assert info.value.message == f"unterminated {quote} quote starting at position {position}"
    assert info.value.code == "parse_error"
    assert info.value.to_wire()["position"] == position


def test_closing_quote_must_end_the_word() -> None:
    with pytest.raises(CommandLineError) as info:
        split_words('fileinfo "a"b')
    assert info.value.position == 12


# -- parameters -----------------------------------------------------------------


def test_positional_and_named_in_any_order() -> None:
    expected = {"name": "*.so", "path": "/tmp"}
    assert parse_line("findfile *.so -path /tmp").args == expected
    assert parse_line("findfile -path /tmp *.so").args == expected
    assert parse_line("dir /etc -full_path").args == {"path": "/etc", "full_path": True}
    assert parse_line("dir -full_path /etc").args == {"path": "/etc", "full_path": True}


def test_positional_parameter_can_be_given_by_name() -> None:
    assert parse_line("fileinfo -path /etc/passwd").args == {"path": "/etc/passwd"}
    assert parse_line("processes -pid 42 -name sshd").args == {"pid": 42, "name": "sshd"}


def test_flags_take_no_value() -> None:
    assert parse_line("dir -full_path").args == {"full_path": True}
    assert parse_line("dir").args == {}


def test_double_dash_ends_parameter_names() -> None:
    assert parse_line("fileinfo -- -x").args == {"path": "-x"}
    assert parse_line("dir -full_path -- -full_path").args == {"full_path": True, "path": "-full_path"}
    assert parse_line("findfile -path /tmp -- -x").args == {"path": "/tmp", "name": "-x"}


def test_quoted_dash_word_is_a_value_not_a_name() -> None:
    assert parse_line('fileinfo "-x"').args == {"path": "-x"}
    assert parse_line("dir '-full_path'").args == {"path": "-full_path"}
    assert parse_line("fileinfo '--'").args == {"path": "--"}


def test_negative_number_is_a_value() -> None:
    assert parse_line("processes -5").args == {"pid": -5}


def test_int_parameter_is_converted() -> None:
    assert parse_line("processes 123").args == {"pid": 123}
    assert parse_line("process 7") == ParsedLine(line="process 7", command="processes", args={"pid": 7})


@pytest.mark.parametrize(
    ("line", "output"),
    [
        ("dir -output json", "json"),
        ("dir -output table", "table"),
        ("dir -output JSON", "json"),
        ("dir -OUTPUT Table", "table"),
        ("dir /etc -Output Json -full_path", "json"),
        ("connections", None),
    ],
)
def test_output_option(line: str, output: str | None) -> None:
    parsed = parse_line(line)
    assert parsed.output == output
    assert "output" not in parsed.args


def test_output_with_a_bad_value_quotes_usage() -> None:
    with pytest.raises(CommandLineError) as info:
        parse_line("dir -output xml")
    assert info.value.position == 12
    assert info.value.message == (
        "parameter output takes one of json, table, not 'xml'\nusage: dir [path] [-full_path] [-output json|table]"
    )


def test_output_given_twice_is_an_error() -> None:
    with pytest.raises(CommandLineError) as info:
        parse_line("dir -output json -output table")
    assert "given twice" in info.value.message
    assert info.value.position == 17


# -- redirection and background -------------------------------------------------


@pytest.mark.parametrize(
    ("line", "redirect", "background"),
    [
        ("dir > out.txt", Redirect("write", "out.txt"), False),
        ("dir >> out.txt", Redirect("append", "out.txt"), False),
        ("dir >out.txt", Redirect("write", "out.txt"), False),
        ("dir >>out.txt", Redirect("append", "out.txt"), False),
        ("dir /etc > 'my out.txt'", Redirect("write", "my out.txt"), False),
        ("dir &", None, True),
        ("dir /etc > f.json &", Redirect("write", "f.json"), True),
        ("dir >>f &", Redirect("append", "f"), True),
    ],
)
def test_redirect_and_background(line: str, redirect: Redirect | None, background: bool) -> None:
    parsed = parse_line(line)
    assert parsed.command == "dir"
    assert parsed.redirect == redirect
    assert parsed.background is background


def test_redirect_and_background_leave_arguments_alone() -> None:
    parsed = parse_line("findfile *.log -path /var -output json >> found.json &")
    assert parsed == ParsedLine(
        line="findfile *.log -path /var -output json >> found.json &",
        command="findfile",
        args={"name": "*.log", "path": "/var"},
        output="json",
        redirect=Redirect("append", "found.json"),
        background=True,
    )


def test_quoted_operators_are_values() -> None:
    parsed = parse_line("fileinfo '>' ")
    assert parsed.args == {"path": ">"}
    assert parsed.redirect is None
    parsed = parse_line("fileinfo '&'")
    assert parsed.args == {"path": "&"}
    assert parsed.background is False


@pytest.mark.parametrize(
    ("line", "position"),
    [
        ("dir >", 4),
        ("dir >>", 4),
        ("dir > a b", 8),
        ("dir > > a", 6),
        ("dir & /etc", 4),
        ("&", 1),  # nothing before the operator: reported at the end of the line
        ("> f", 0),
    ],
)
def test_bad_operators(line: str, position: int) -> None:
    with pytest.raises(CommandLineError) as info:
        parse_line(line)
    assert info.value.position == position


# -- names and aliases ------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("ls", "dir"),
        ("LS /etc", "dir"),
        ("process", "processes"),
        ("Process 1", "processes"),
        ("DIR", "dir"),
        ("FileInfo /etc/passwd", "fileinfo"),
        ("'dir'", "dir"),
    ],
)
def test_aliases_and_case_insensitive_command_names(line: str, command: str) -> None:
    assert parse_line(line).command == command


def test_parameter_names_are_case_insensitive() -> None:
    assert parse_line("DIR -FULL_PATH").args == {"full_path": True}
    assert parse_line("findfile x -PATH /tmp").args == {"name": "x", "path": "/tmp"}
    assert parse_line("processes -Name sshd").args == {"name": "sshd"}


def test_unknown_command() -> None:
    with pytest.raises(CommandLineError) as info:
        parse_line("nosuch /etc")
    assert info.value.position == 0
    assert info.value.message == "unknown command 'nosuch'; type 'help' for the list"


@pytest.mark.parametrize("line", ["", "   ", "\t"])
def test_empty_line(line: str) -> None:
    with pytest.raises(CommandLineError) as info:
        parse_line(line)
    assert info.value.message == "no command given"
    assert info.value.position == 0


# -- errors quote the usage line ----------------------------------------------------


@pytest.mark.parametrize(
    ("line", "command", "message", "position"),
    [
        ("dir a b", "dir", "too many arguments for dir: 'b'", 6),
        ("cls x", "cls", "too many arguments for cls: 'x'", 4),
        ("fileinfo", "fileinfo", "fileinfo needs <path>", 8),
        ("findfile -path /tmp", "findfile", "findfile needs <name>", 19),
        ("fg", "fg", "fg needs <id>", 2),
        ("dir -bogus", "dir", "dir has no parameter -bogus", 4),
        ("processes -full_path", "processes", "processes has no parameter -full_path", 10),
        ("processes abc", "processes", "parameter pid takes a whole number, not 'abc'", 10),
        ("processes -pid 1.5", "processes", "parameter pid takes a whole number, not '1.5'", 15),
        ("findfile x -path", "findfile", "parameter -path needs a value", 11),
        ("dir -full_path -FULL_PATH", "dir", "parameter -full_path given twice", 15),
    ],
)
def test_parameter_errors_quote_usage(line: str, command: str, message: str, position: int) -> None:
    spec = lookup(command)
    assert spec is not None
    with pytest.raises(CommandLineError) as info:
        parse_line(line)
    err = info.value
    assert err.message == f"{message}\nusage: {spec.usage}"
    assert "usage:" in str(err)
    assert err.usage == spec.usage
    assert err.position == position


def test_usage_lines_are_exact() -> None:
    dir_spec = lookup("dir")
    findfile = lookup("findfile")
    processes = lookup("processes")
    assert dir_spec is not None and findfile is not None and processes is not None
    assert dir_spec.usage == "dir [path] [-full_path] [-output json|table]"
    assert findfile.usage == "findfile <name> [-path ROOT] [-output json|table]"
    assert processes.usage == "processes [pid] [-name NAME] [-output json|table]"


# -- properties ------------------------------------------------------------------------

_LINE_ALPHABET = st.sampled_from([*list(" \t'\"\\>&-"), "dir", "ls", "fileinfo", "-output", "json", "--", "x", "é"])
_lines = st.one_of(st.text(), st.lists(_LINE_ALPHABET, max_size=20).map("".join))


@given(_lines)
def test_parse_line_is_total(line: str) -> None:
    try:
        parsed = parse_line(line)
    except CommandLineError as exc:
        assert isinstance(exc.position, int)
        assert 0 <= exc.position <= len(line)
    else:
        assert isinstance(parsed, ParsedLine)
        assert lookup(parsed.command) is not None
        assert parsed.line == line


def _quote(word: str) -> str:
    return '"' + word.replace('"', '""') + '"'


@given(st.lists(st.text()))
def test_split_words_round_trips_double_quoted_words(words: list[str]) -> None:
    line = " ".join(_quote(w) for w in words)
    split = split_words(line)
    assert [w.text for w in split] == words
    assert all(w.quoted for w in split)


@given(st.lists(st.text()))
def test_split_words_round_trips_single_quoted_words(words: list[str]) -> None:
    line = " ".join("'" + w.replace("'", "''") + "'" for w in words)
    assert [w.text for w in split_words(line)] == words
