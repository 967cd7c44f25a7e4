"""The ``kb`` command line end to end (``CliRunner`` on ``kb.cli.app``) with the real model."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from kb.cli import app
from kb.embeddings import SentenceTransformerEmbedder
from kb.service import KnowledgeBase

runner = CliRunner()


def invoke(*args: str | Path, ok: bool = True) -> Any:
    result = runner.invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def as_json(*args: str | Path) -> Any:
    return json.loads(invoke(*args, "--json").stdout)


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command and sub-command (typer ships its own click, so groups are duck-typed)."""
    yield path, command
    for name, sub in (getattr(command, "commands", None) or {}).items():
        yield from _commands(sub, (*path, name))


ALL_COMMANDS = list(_commands(typer.main.get_command(app)))


@pytest.mark.parametrize(
    ("path", "command"), ALL_COMMANDS, ids=[" ".join(p) or "kb" for p, _ in ALL_COMMANDS]
)
def test_every_command_has_help(path: tuple[str, ...], command: Any) -> None:
    result = invoke(*path, "--help")
    assert "Usage:" in result.stdout
    assert (command.help or command.short_help or "").strip(), f"{path} has no help text"
    first_line = (command.help or command.short_help or "").strip().splitlines()[0]
    assert first_line[:30] in " ".join(result.stdout.split())


def test_core_commands_are_there() -> None:
    names = {p[0] for p, _ in ALL_COMMANDS if p}
    assert {
        "init",
        "add",
        "import",
        "search",
        "show",
        "list",
        "stats",
        "export",
        "reindex",
        "doctor",
    } <= names


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "cli-store"


def test_end_to_end(store: Path, tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    assert as_json("--store", store, "init") == {"path": str(store), "namespace": "default"}
    added = as_json(
        "--store",
        store,
        "add",
        "--task",
        "Refund a customer whose blender arrived broken",
        "--outcome",
        "success",
        "--domain",
        "shop",
        "--tag",
        "refund",
        "--lesson",
        "check the order first",
    )
    assert added["action"] == "added" and added["id"].startswith("exp_")
    record = tmp_path / "one.json"
    record.write_text(
        json.dumps(
            {
                "task": "Reset the password of a user who forgot it",
                "outcome": "failure",
                "domain": "accounts",
            }
        )
    )
    from_file = as_json("--store", store, "add", record)
    sample = tmp_path / "many.jsonl"
    sample.write_text(
        "\n".join(
            json.dumps({"task": t, "outcome": "success"})
            for t in ["Book a flight to Seattle", "Change a delivery address"]
        )
        + "\n"
    )
    report = as_json("--store", store, "import", sample)
    assert report["format"] == "native" and len(report["added"]) == 2

    hits = as_json("--store", store, "search", "money back for damaged kitchen appliance")
    assert hits[0]["id"] == added["id"]
    assert {"vector"} <= set(hits[0]["signals"])
    failures = as_json(
        "--store", store, "search", "password", "--outcome", "failure", "--mode", "lexical"
    )
    assert [h["id"] for h in failures] == [from_file["id"]]

    with KnowledgeBase.open(store, embedder=embedder) as kb:
        assert as_json("--store", store, "show", added["id"]) == kb.get_experience(
            added["id"]
        ).model_dump(mode="json")
        assert as_json("--store", store, "list") == [
            e.model_dump(mode="json") for e in kb.list_experiences()
        ]
        assert as_json("--store", store, "list", "--outcome", "failure") == [
            kb.get_experience(from_file["id"]).model_dump(mode="json")
        ]
        assert as_json("--store", store, "stats") == kb.stats().model_dump(mode="json")
        sdk_hits = kb.search("money back for damaged kitchen appliance")
        assert hits == [h.model_dump(mode="json") for h in sdk_hits]

    exported = as_json("--store", store, "export", tmp_path / "out.jsonl")
    assert exported["experiences"] == 4
    assert as_json("--store", store, "reindex") == {"reindexed": 4}
    doctor = as_json("--store", store, "doctor")
    assert doctor["ok"] is True
    other = tmp_path / "copy-store"
    assert len(as_json("--store", other, "import", tmp_path / "out.jsonl")["added"]) == 4
    assert as_json("--store", other, "stats")["experiences"] == 4


def column(table: str, number: int) -> str:
    """The text of one column of a one-row rich table (rich folds long cells over lines)."""
    rows = [line.split("│")[1:-1] for line in table.splitlines() if line.startswith("│")]
    return "".join(row[number].strip() for row in rows)


def test_human_output(store: Path, tmp_path: Path) -> None:
    invoke("--store", store, "init")
    added = invoke(
        "--store", store, "add", "--task", "Water the ficus on Fridays", "--outcome", "success"
    )
    item = added.stdout.split()[-1]
    assert added.stdout.startswith("added exp_")
    assert column(invoke("--store", store, "list").stdout, 0) == item
    assert "Water the ficus" in invoke("--store", store, "show", item).stdout
    assert column(invoke("--store", store, "search", "ficus").stdout, 1) == item
    assert "experiences: 1" in invoke("--store", store, "stats").stdout
    assert "ok index holds every record" in invoke("--store", store, "doctor").stdout
    assert "no hits" in invoke("--store", store, "search", "ficus", "--outcome", "failure").stdout


def test_store_option_else_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_store = tmp_path / "from-env"
    monkeypatch.setenv("KB_STORE", str(env_store))
    assert as_json("init")["path"] == str(env_store)
    assert as_json("--store", tmp_path / "explicit", "init")["path"] == str(tmp_path / "explicit")
    assert (env_store / "kb.sqlite").is_file()
    assert (tmp_path / "explicit" / "kb.sqlite").is_file()
    assert as_json("--namespace", "team-a", "init")["namespace"] == "team-a"


@pytest.fixture
def malformed(tmp_path: Path) -> Path:
    path = tmp_path / "malformed.json"
    path.write_text('{"task": ')
    return path


MISTAKES = [
    (["show", "exp_nope"], "no experience 'exp_nope'"),
    (["show", "no-such-skill"], "no skill named 'no-such-skill'"),
    (["search", "anything", "--mode", "fuzzy"], "mode must be one of"),
    (["search", "anything", "--kind", "tool"], "kind must be experience or skill"),
    (["import", "{tmp}/absent.json"], "no such file"),
    (["import", "{malformed}"], "not valid JSON"),
    (["import", "{tmp}/absent.json", "--format", "csv"], "format must be one of"),
    (["add", "{malformed}"], "not valid JSON"),
    (["add", "{tmp}/absent.json"], "No such file"),
    (["add"], "give a JSON file"),
    (["add", "--task", "x", "--outcome", "won"], "outcome"),
    (["list", "--limit", "0"], "limit must be between"),
    (["list", "--outcome", "sucess"], "outcome must be one of success, failure"),
    (["search", "anything", "--outcome", "sucess"], "outcome must be one of success"),
    (["skill", "list", "--status", "aproved"], "status must be one of draft, approved"),
]


@pytest.mark.parametrize("json_output", [False, True])
@pytest.mark.parametrize(("args", "message"), MISTAKES, ids=[" ".join(a) for a, _ in MISTAKES])
def test_user_mistakes_give_one_line_and_exit_1(
    store: Path, tmp_path: Path, malformed: Path, args: list[str], message: str, json_output: bool
) -> None:
    filled = [a.format(tmp=tmp_path, malformed=malformed) for a in args]
    result = invoke("--store", store, *filled, *(["--json"] if json_output else []), ok=False)
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    if json_output:
        error = json.loads(result.stdout)
        assert list(error) == ["error"]
        assert message in error["error"]
    else:
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith("error: ")
        assert message in lines[0]


def test_doctor_exits_1_when_a_check_fails(store: Path) -> None:
    invoke("--store", store, "add", "--task", "something to index")
    import shutil

    shutil.rmtree(store / "index")
    result = invoke("--store", store, "doctor", "--json", ok=False)
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert as_json("--store", store, "reindex") == {"reindexed": 1}
    assert as_json("--store", store, "doctor")["ok"] is True


LIGHT = """
import json, sys
from typer.testing import CliRunner
from kb.cli import app
store, item, out = sys.argv[1:4]
runner = CliRunner()
for args in (["--help"], ["list", "--json"], ["show", item, "--json"], ["stats", "--json"],
             ["history", item], ["list"], ["stats"], ["show", item]):
    result = runner.invoke(app, ["--store", store, *args])
    assert result.exit_code == 0, (args, result.output, result.exception)
    for heavy in ("torch", "sentence_transformers", "lancedb", "pyarrow", "networkx", "jsonschema",
                  "kb.services.gate", "kb.services.skills", "kb.services.tracing", "kb.importers"):
        assert heavy not in sys.modules, (args, heavy)
result = runner.invoke(app, ["--store", store, "export", out, "--json"])
assert result.exit_code == 0 and "torch" not in sys.modules, result.output
print("light")
"""


def test_commands_without_embedding_do_not_import_torch(kb: KnowledgeBase, tmp_path: Path) -> None:
    item = kb.add_experience({"task": "a record to show", "outcome": "success"}).id
    kb.close()
    done = subprocess.run(
        [sys.executable, "-c", LIGHT, str(kb.path), item, str(tmp_path / "out.jsonl")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "light"
    assert (tmp_path / "out.jsonl").is_file()


def test_console_script_runs(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "kb"
    if not script.exists():
        pytest.skip("the kb console script is not installed next to this interpreter")
    done = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0
    assert "Experience memory and skill library" in done.stdout
