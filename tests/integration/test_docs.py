"""The README and docs/: every relative link resolves (file and, where given, its #anchor),
and the README stays a short read."""
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.helpers.paths import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, punctuation dropped, spaces -> '-'."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, flags=re.M)}


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return [m.group(1) for m in LINK.finditer(text) if not re.match(r"[a-z]+:", m.group(1))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for link in links(page):
        target, _, anchor = link.partition("#")
        path = (page.parent / unquote(target)).resolve() if target else page
        if not path.exists():
            broken.append(link)
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(link)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def test_the_checker_sees_a_broken_link_and_a_broken_anchor(tmp_path):
    page = tmp_path / "a.md"
    page.write_text("# Title here\n[ok](#title-here) [bad](missing.md) [bad anchor](#nope)\n")
    assert links(page) == ["#title-here", "missing.md", "#nope"]
    assert anchors(page) == {"title-here"} and slug("Colour images (`--color`, beyond the paper)") == \
        "colour-images---color-beyond-the-paper"


def test_readme_is_short_and_keeps_its_two_setup_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    assert "bash scripts/setup.sh && .venv/bin/ssimae demo" in text
    assert "bash scripts/setup.sh && .venv/bin/python -m pytest -q" in text
    assert "bash scripts/setup.sh && .venv/bin/python -m pytest -q" in (ROOT / ".ci" / "run").read_text()


# --- docs that cannot drift: commands, option lists, the YAML example, no internal numbers ----------

from tests.helpers import doc_commands  # noqa: E402

COMMANDS_MD = ROOT / "docs" / "commands.md"


@pytest.fixture(scope="module")
def sandbox(demo_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("docs-sandbox")
    doc_commands.make_sandbox(root, demo_root)
    return root, {}


@pytest.mark.parametrize("page", doc_commands.PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_shown_runs_on_the_tiny_demo_data(page, sandbox, monkeypatch):
    """The rules of substitution: tests/helpers/doc_commands.py. Pages run in order in one
    sandbox (later pages use the runs earlier ones made, as a reader of the README would)."""
    from ssimae.cli.main import main
    from ssimae.cli.runtime import main as runtime_main
    from ssimae.data.demo_data import make_demo_data
    from tests.helpers.demo import tiny_demo

    root, written = sandbox
    tiny_demo(monkeypatch, make_demo_data, n_test_good=2, n_test_per_type=1)
    monkeypatch.chdir(root)
    doc_commands.run_page(page, root, main, runtime_main, written)


def test_the_command_runner_fails_on_a_failing_command_and_on_one_it_has_no_rule_for(tmp_path, monkeypatch):
    from ssimae.cli.main import main

    monkeypatch.chdir(tmp_path)
    for block, needle in (("ssimae predict no-such-run x.png --out o", "exit status 2"),
                          ("rm -rf /", "no rule"),
                          ("pip install something-else", "install step"),
                          ("ssimae train --model nope --out r", "exit status 2")):
        page = tmp_path / "page.md"
        page.write_text(f"# Page\n\n```bash\n{block}\n```\n")
        with pytest.raises((AssertionError, SystemExit)) as e:
            doc_commands.run_page(page, tmp_path, main, main, {})
        assert needle in str(e.value) or isinstance(e.value, SystemExit) and e.value.code == 2, e.value


def _option_lists() -> dict[str, list[str]]:
    """{command: the option items of its line} of docs/commands.md's "Options of every command"."""
    text = COMMANDS_MD.read_text(encoding="utf-8")
    section = text.split("## Options of every command", 1)[1].split("\n## ", 1)[0]
    return {m.group(1): re.findall(r"`(--[^`]+)`", m.group(2))
            for m in re.finditer(r"^- `ssimae ([\w-]+)`: (.*)$", section, flags=re.M)}


def _parser_options() -> dict[str, list[str]]:
    """{command: its options as `--flag {choices}` items}, from the parser (what --help lists)."""
    from ssimae.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    options = {}
    for name, parser in sub.choices.items():
        options[name] = []
        for action in parser._actions:
            flags = [o for o in action.option_strings if o.startswith("--") and o != "--help"]
            if flags:
                choices = " {" + ",".join(map(str, action.choices)) + "}" if action.choices else ""
                options[name].append(flags[0] + choices)
    return options


def test_the_option_lists_of_commands_md_are_those_of_help():
    documented, actual = _option_lists(), _parser_options()
    assert set(documented) == set(actual), "a command is missing from, or extra in, commands.md's option lists"
    for command, options in actual.items():
        assert documented[command] == options, f"ssimae {command}: commands.md lists {documented[command]}"


def test_every_choice_list_in_commands_md_is_the_parsers():
    """Wherever commands.md writes `--flag {a,b}`, those are the flag's choices (in order)."""
    actual = {item for options in _parser_options().values() for item in options if " {" in item}
    for flag, choices in re.findall(r"`(--[\w-]+) (\{[^}`]*\})`", COMMANDS_MD.read_text(encoding="utf-8")):
        assert f"{flag} {choices}" in actual, f"commands.md: {flag} {choices}; --help: " + \
            ", ".join(sorted(a for a in actual if a.startswith(flag + " ")))


def test_the_help_of_device_and_demo_says_what_the_docs_say():
    from ssimae.cli.main import build_parser
    from ssimae.commands.demo import DEMO_MODELS
    from ssimae.models import get_model

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    demo = sub.choices["demo"].description
    assert all(get_model(m).title.lower() in demo.lower() for m in DEMO_MODELS), demo
    device = next(a for a in sub.choices["train"]._actions if "--device" in a.option_strings)
    assert device.default == "auto" and device.help.startswith("auto") and "`--device auto`" in \
        COMMANDS_MD.read_text(encoding="utf-8")


def test_the_yaml_example_of_commands_md_loads_to_the_settings_it_names(tmp_path):
    pytest.importorskip("yaml", reason="YAML configs need PyYAML (in the [test] extra)")
    from ssimae.runs.config import read_config

    (shown,) = [s for s in doc_commands.shown_commands(COMMANDS_MD) if s.file is not None]
    name, text = shown.file
    path = tmp_path / name
    path.write_text(text)
    run = read_config(path)
    t, i = run.train, run.inference
    assert (t.model, t.recipe, t.epochs, t.patches_per_epoch, t.latent_dim, t.seed) == ("ssim", "fast", 20, 2000, 500, 1)
    assert tuple(i.preprocess.size) == (256, 256) and (i.threshold_rule, i.target_fpr) == ("fpr", 0.001)


def test_flat_keys_in_a_config_say_where_they_belong(tmp_path):
    from ssimae.errors import SsimaeError
    from ssimae.runs.config import read_config

    path = tmp_path / "flat.json"
    path.write_text('{"model": "ssim", "epochs": 3, "threshold_rule": "fpr"}')
    with pytest.raises(SsimaeError, match="epochs, model belong under train:; threshold_rule belong under inference:"):
        read_config(path)


INTERNAL = re.compile(r"(?<![\w(/\]])#\d+\b|\bissues?\b", re.I)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_internal_issue_numbers_in_the_docs(page):
    text = re.sub(r"\]\([^)]*\)", "]()", page.read_text(encoding="utf-8"))  # link targets (anchors) aside
    found = [m.group(0) for m in INTERNAL.finditer(text)]
    assert not found, f"{page.relative_to(ROOT)}: {found}"


def test_the_internal_number_check_sees_one():
    assert INTERNAL.search("the default before #11") and INTERNAL.search("(issue 4)")
    assert not INTERNAL.search("colour #fff, 3 tissues")
