"""Meta-tests keeping the documentation honest.

- every hook in zoo/hookspecs.py is documented in docs/hooks.md and exercised by a test;
- the tutorial's code (docs/writing-a-plugin.md) is the example package, file for file, and
  its other Python blocks run;
- every ``zoo ...`` command shown in a console/bash block of docs/*.md or README.md is either
  run here (and its shown output checked) or covered by a named test file: see
  :data:`COMMAND_COVERAGE`, which whoever documents a new command extends.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers_example_plugin import EXAMPLE

from zoo import hookspecs, plugins

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
HOOKS_DOC = DOCS / "hooks.md"
TUTORIAL = DOCS / "writing-a-plugin.md"

RUN = "run"
#: How each documented ``zoo`` command is checked, by command prefix (the longest prefix wins).
#: ``RUN``: this module runs it in process (with the reference plugin and examples/zoo-mlp
#: installed) and checks that every output line the docs show is printed. Otherwise: the test
#: file that exercises the command; it must exist and mention the subcommand. Commands too slow
#: to run here (training, evaluation) belong in the second form.
COMMAND_COVERAGE: dict[str, str] = {
    "zoo --help": RUN,
    "zoo --version": RUN,
    "zoo list": RUN,
    "zoo info": RUN,
    "zoo plugins": RUN,
    "zoo train": "tests/test_trainer.py",
    "zoo train vae-conv-mnist --max-steps": "tests/test_quick_look.py",
    "zoo train vae-conv --data": "tests/test_own_images.py",
    "zoo sample": "tests/test_trainer.py",
    "zoo eval": "tests/test_evaluate.py",
    "zoo compare": "tests/test_compare.py",
    "zoo export": "tests/test_sharing.py",
    "zoo push": "tests/test_sharing.py",
    "zoo train vae-conv-mnist --init-from": "tests/test_sharing.py",
    "zoo eval weights": "tests/test_pretrained.py",
    "zoo fit-prior": "tests/test_fit_prior.py",
}


# -- reading the markdown ----------------------------------------------------------------------


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    marker: str | None  # the file named by a preceding <!-- file: ... --> comment


FENCE = re.compile(r"^```(\S*)\s*$")
MARKER = re.compile(r"^<!--\s*file:\s*(\S+)\s*-->\s*$")


def blocks(path: Path) -> list[Block]:
    found, lines, i = [], path.read_text().splitlines(), 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match and match.group(1):
            start, body = i, []
            i += 1
            while i < len(lines) and lines[i] != "```":
                body.append(lines[i])
                i += 1
            previous = lines[start - 1] if start else ""
            marker = MARKER.match(previous)
            found.append(
                Block(path, start + 1, match.group(1), "\n".join(body) + "\n", marker.group(1) if marker else None)
            )
        i += 1
    return found


def doc_files() -> list[Path]:
    files = sorted(DOCS.glob("*.md"))
    readme = ROOT / "README.md"
    return files + ([readme] if readme.is_file() else [])


@dataclass
class Command:
    where: str
    env: dict[str, str]
    args: list[str]  # after "zoo"
    shown_output: list[str]

    @property
    def key(self) -> str:
        first = next((a for a in self.args if not a.startswith("-")), None)
        if first is None:
            return "zoo " + " ".join(self.args)
        return f"zoo {first}"


def commands_in(block: Block) -> list[Command]:
    """The ``zoo`` invocations of a console block (``$ `` lines) or a bash block (every line)."""
    found: list[Command] = []
    lines = block.text.splitlines()
    for n, line in enumerate(lines):
        if block.lang == "console":
            if not line.startswith("$ "):
                continue
            command_line = line[2:]
            output = []
            for later in lines[n + 1 :]:
                if later.startswith("$ "):
                    break
                output.append(later)
        elif block.lang in ("bash", "sh", "shell"):
            command_line, output = line, []
        else:
            return []
        for segment in re.split(r"&&|\|\||;|\|", command_line):
            try:
                words = shlex.split(segment, comments=True)
            except ValueError:
                continue
            for i, word in enumerate(words):  # a redirection ends the command's own words
                if word[:1] in (">", "<") or word[:2] in ("2>", "1>"):
                    words = words[:i]
                    break
            env = {}
            while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
                name, _, value = words.pop(0).partition("=")
                env[name] = value
            if words and words[0] == "zoo":
                where = f"{block.path.relative_to(ROOT)}:{block.line + n + 1}"
                found.append(Command(where, env, words[1:], output))
    return found


def documented_commands() -> list[Command]:
    return [c for path in doc_files() for b in blocks(path) for c in commands_in(b)]


def coverage_for(command: Command) -> str | None:
    full = " ".join(["zoo", *command.args])
    matches = [prefix for prefix in COMMAND_COVERAGE if full == prefix or full.startswith(prefix + " ")]
    return COMMAND_COVERAGE[max(matches, key=len)] if matches else None


# -- hooks --------------------------------------------------------------------------------------


def hook_names() -> list[str]:
    return sorted(
        name
        for name in dir(hookspecs)
        if callable(getattr(hookspecs, name)) and hasattr(getattr(hookspecs, name), "zoo_spec")
    )


def test_hookspecs_are_found():
    assert "register_encoders" in hook_names() and "register_commands" in hook_names()


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_is_documented(hook):
    text = HOOKS_DOC.read_text()
    assert re.search(rf"^### `{hook}\(", text, re.M), f"docs/hooks.md has no '### `{hook}(...)`' section"


def test_hooks_doc_describes_no_missing_hook():
    documented = re.findall(r"^### `(\w+)\(", HOOKS_DOC.read_text(), re.M)
    assert sorted(documented) == hook_names()


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_is_exercised_by_a_test(hook):
    users = [
        p.name
        for p in sorted([*(ROOT / "tests").glob("test_*.py"), *(ROOT / "tests").glob("helpers_*.py")])
        if p.name != "test_docs.py" and re.search(rf"def {hook}\(|\.{hook} = |{hook}=", p.read_text())
    ]
    assert users, f"no test implements the hook {hook}"


def test_hooks_doc_mentions_the_environment_variables_and_security():
    text = HOOKS_DOC.read_text()
    for needle in (
        "ZOO_PLUGINS",
        "ZOO_DISABLE_PLUGINS",
        "ZOO_TRACE_PLUGINS",
        "check_pending",
        "## Security",
        '"package.module:attribute"',
        "register(recipe)",
    ):
        assert needle in text
    documented_variables = set(re.findall(r"``(ZOO_\w+)``", Path(plugins.__file__).read_text()))
    assert documented_variables <= set(re.findall(r"ZOO_\w+", text))


# -- the tutorial -------------------------------------------------------------------------------


def test_tutorial_shows_the_example_package_file_for_file():
    shown = {b.marker: b.text for b in blocks(TUTORIAL) if b.marker}
    second = ROOT / "examples" / "zoo-vqladder"  # sections 11 and 12
    files = [EXAMPLE / "pyproject.toml", *EXAMPLE.glob("zoo_mlp/*.py"), second / "pyproject.toml"]
    package = sorted(str(p.relative_to(ROOT)) for p in [*files, *second.glob("zoo_vqladder/*.py")])
    assert sorted(shown) == package
    for name, text in shown.items():
        assert text == (ROOT / name).read_text(), f"the tutorial's copy of {name} differs from the file"


def test_tutorial_python_examples_run(with_example):
    snippets = [b for b in blocks(TUTORIAL) if b.lang == "python" and not b.marker]
    assert snippets
    for block in snippets:
        namespace: dict = {}
        exec(compile(block.text, f"{TUTORIAL.name}:{block.line}", "exec"), namespace)
    assert namespace["wider"].encoder.net[1].out_features == 1000


# -- commands -----------------------------------------------------------------------------------

COMMANDS = documented_commands()


def test_docs_show_commands():
    keys = {c.key for c in COMMANDS}
    assert {"zoo list", "zoo info", "zoo plugins"} <= keys


@pytest.mark.parametrize("command", COMMANDS, ids=[f"{c.where} {c.key}" for c in COMMANDS])
def test_documented_command(command, with_example, monkeypatch):
    how = coverage_for(command)
    assert how is not None, (
        f"{command.where}: `zoo {' '.join(command.args)}` is documented but no test covers it; "
        "add it to COMMAND_COVERAGE in tests/test_docs.py"
    )
    if how != RUN:
        covering = ROOT / how
        assert covering.is_file(), f"{command.where}: `{command.key}` should be covered by {how}, which does not exist"
        subcommand = command.key.split()[1]
        assert re.search(rf"[\"']{re.escape(subcommand)}[\"']|zoo {re.escape(subcommand)}", covering.read_text()), (
            f"{how} does not seem to run `{command.key}`"
        )
        return
    for name, value in command.env.items():
        monkeypatch.setenv(name, value)
    plugins.reset()
    from zoo.cli import cli

    result = CliRunner().invoke(cli, command.args, catch_exceptions=False)
    assert result.exit_code == 0, f"{command.where}: {result.output}"
    printed = {line.rstrip() for line in result.stdout.splitlines()}
    for line in command.shown_output:
        if line.strip() and line.strip() != "...":
            assert line.rstrip() in printed, (
                f"{command.where}: the docs show {line!r}, the command printed:\n{result.stdout}"
            )


def test_command_coverage_is_well_formed():
    for prefix, how in COMMAND_COVERAGE.items():
        assert prefix.startswith("zoo "), prefix
        assert how == RUN or (how.startswith("tests/test_") and how.endswith(".py")), (prefix, how)


# -- the product's text describes the product ---------------------------------------------------

#: Text that says how the work on zoo was organised (its stages and their numbers, who had which
#: machine when, tracker numbers) or names a path of one particular machine. None of it belongs in
#: README.md, docs/, bench/ or tests/: a results page gives each figure's machine, command and
#: date, and the history of how it was reached is in git. The patterns are put together from
#: parts, so that this file does not match them itself.
ORGANISATION_WORDS: dict[str, re.Pattern[str]] = {
    "a numbered stage of the work": re.compile(r"\b" + "stops?" + r" \d", re.I),
    "a numbered stage of the work ": re.compile(r"\b" + "round" + r" \d", re.I),
    "machine loans": re.compile(r"\b" + "le" + "ase", re.I),
    "machine loans ": re.compile(r"\b" + "le" + r"nt\b", re.I),
    "a tracker number": re.compile(r"\b" + "issue" + r" #?\d", re.I),
    "a path of one machine": re.compile("/" + "work/"),
    "a path of one machine ": re.compile("/" + "root/"),
    "a path of one machine  ": re.compile("/" + r"home/\w+"),
}


def product_text_files() -> list[Path]:
    """README.md, docs/**/*.md, every text file under bench/, tests/**/*.py."""
    files = [ROOT / "README.md", *DOCS.rglob("*.md"), *(ROOT / "tests").rglob("*.py")]
    for path in (ROOT / "bench").rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            try:
                if "\0" not in path.read_text():
                    files.append(path)
            except UnicodeDecodeError:  # an image or other binary file
                pass
    return sorted(p for p in files if p.is_file() and "__pycache__" not in p.parts)


def organisation_words_in(path: Path) -> list[str]:
    found = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        for what, pattern in ORGANISATION_WORDS.items():
            match = pattern.search(line)
            if match:
                found.append(f"{path.relative_to(ROOT)}:{n}: {what.strip()} ({match.group(0)!r}): {line.strip()[:120]}")
    return found


def test_the_patterns_catch_what_they_are_for():
    samples = [
        " ".join(["Stop", "7: no GPU"]),
        " ".join(["stops", "5 to 8"]),
        "the " + "le" + "ase ran out",
        "no GPU " + "le" + "nt",
        " ".join(["Issue", "#10"]),
        " ".join(["Round", "4"]),
        "/" + "work/runs/vae",
        "/" + "root/data",
        "/" + "home/me/.cache",
    ]
    for sample in samples:
        assert any(p.search(sample) for p in ORGANISATION_WORDS.values()), sample
    for fine in (
        "please release the lock",
        "excellent",
        "the run stopped after epoch 3",
        "3 rounds",
        "work/runs",
        "a round-trip",
        "issues a warning",
    ):
        assert not any(p.search(fine) for p in ORGANISATION_WORDS.values()), fine


def test_product_text_files_are_found():
    names = {str(p.relative_to(ROOT)) for p in product_text_files()}
    assert {"README.md", "docs/benchmarks.md", "bench/README.md", "bench/gpu_check.sh", "tests/test_docs.py"} <= names
    assert "docs/families-iw-nll.png" not in names


def test_docs_bench_and_tests_describe_the_product_not_how_it_was_made():
    found = [hit for path in product_text_files() for hit in organisation_words_in(path)]
    assert not found, "words about how the work was organised, or paths of one machine:\n" + "\n".join(found)


def test_architecture_lists_every_module_with_its_job():
    """docs/architecture.md names every module of zoo/ (a package's modules may share one row) and
    every first-party plugin, and names nothing that does not exist."""
    text = (DOCS / "architecture.md").read_text()
    rows = dict(re.findall(r"^\| `([^`]+)` \| (.+) \|$", text, re.M))
    modules = sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "zoo").rglob("*.py")
        if p.name != "__init__.py" or p.parent.name == "zoo"
    )
    missing = [m for m in modules if m not in rows and str(Path(m).parent) + "/" not in rows]
    assert not missing, f"docs/architecture.md does not list {missing}"
    plugins_dirs = sorted(f"plugins/{p.name}/" for p in (ROOT / "plugins").iterdir() if (p / "plugin.py").is_file())
    assert not [p for p in plugins_dirs if p not in rows], plugins_dirs
    assert not [where for where in rows if not (ROOT / where).exists()], "architecture.md names missing files"
    assert all(job.strip() for job in rows.values())
