"""``qwen-meter catalogue``: validate, diff, update and rollback against a local HTTP server,
with good, corrupt and hostile files; the installed catalogue is what the library then uses."""

from __future__ import annotations

import functools
import http.server
import threading
from decimal import Decimal
from pathlib import Path

import pytest

import qwen_meter as qm
from qwen_meter.catalogue import installed as catalogue_store
from qwen_meter.catalogue.core import Catalogue, default_catalogue
from qwen_meter.cli.main import main

BUNDLED = Path(__file__).resolve().parent.parent / "data" / "models.yaml"
ALIAS_BOMB = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]"
       for i in range(9)]
    + ["models: {m: {family: qwen3, template: qwen3, modalities: *j}}"])


def newer_catalogue() -> str:
    text = BUNDLED.read_text(encoding="utf-8")
    # qwen-plus cn first tier input 0.8 -> 0.7, and a model the bundled file lacks
    old = "          - {above: 0, upto: 131072, input: 0.8, output: 2, output_thinking: 8}\n"
    assert old in text
    text = text.replace(old, old.replace("input: 0.8", "input: 0.7"), 1)
    return text.replace("\nmodels:\n", """\nmodels:
  qwen9-max:
    family: qwen3.5
    template: dashscope-qwen3.5
    regions:
      intl:
        source: LL
        effective: 2027-01-05
        price: {input: 3, output: 9}
""", 1)


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "good.yaml").write_text(newer_catalogue(), encoding="utf-8")
    (root / "corrupt.yaml").write_text(newer_catalogue()[:5000], encoding="utf-8")
    (root / "hostile.yaml").write_text(ALIAS_BOMB, encoding="utf-8")
    (root / "latin1.yaml").write_bytes("models: {}\n# caf\xe9\n".encode("latin-1"))
    bad_price = newer_catalogue().replace("input: 3, output: 9", "input: three, output: 9")
    (root / "badprice.yaml").write_text(bad_price, encoding="utf-8")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def config(tmp_path, monkeypatch):
    folder = tmp_path / "config"
    monkeypatch.setenv("QWEN_METER_CONFIG_DIR", str(folder))
    return folder


def plus_input() -> Decimal | None:
    return default_catalogue().resolve("qwen-plus").offer("cn").tiers[0].input


def test_update_diff_and_rollback_end_to_end(server, config, capsys):
    bundled_bytes = BUNDLED.read_bytes()
    assert plus_input() == Decimal("0.8")
    assert main(["catalogue", "show"]) == 0
    assert "bundled" in capsys.readouterr().out

    assert main(["catalogue", "diff", f"{server}/good.yaml"]) == 0
    out = capsys.readouterr().out
    assert "+ model qwen9-max" in out
    assert "~ qwen-plus [cn] tiers[0].input: 0.8 -> 0.7" in out
    assert not (config / "models.yaml").exists()  # a diff installs nothing

    # without --yes and without a terminal: refused, nothing installed
    assert main(["catalogue", "update", "--from", f"{server}/good.yaml"]) == 1
    assert not (config / "models.yaml").exists()

    assert main(["catalogue", "update", "--from", f"{server}/good.yaml", "--yes"]) == 0
    assert (config / "models.yaml").exists()
    assert plus_input() == Decimal("0.7")
    assert qm.cost(qm.Usage(1000, 1000), "qwen9-max", region="intl").amount == Decimal("0.012")
    assert main(["catalogue", "show"]) == 0
    assert "installed" in capsys.readouterr().out.splitlines()[-3]
    assert BUNDLED.read_bytes() == bundled_bytes  # bundled data never modified

    # corrupt, hostile, non-UTF-8 and wrongly typed files are refused whole; nothing changes
    installed = (config / "models.yaml").read_bytes()
    for name in ("corrupt", "hostile", "latin1", "badprice", "missing"):
        assert main(["catalogue", "update", "--from", f"{server}/{name}.yaml", "--yes"]) == 2
        err = capsys.readouterr().err
        assert f"{server}/{name}.yaml" in err, err
        assert (config / "models.yaml").read_bytes() == installed
    assert plus_input() == Decimal("0.7")

    # a second install keeps the first for rollback
    local = config.parent / "third.yaml"
    local.write_text(newer_catalogue().replace("input: 0.7", "input: 0.6", 1), encoding="utf-8")
    assert main(["catalogue", "update", "--from", str(local), "--yes"]) == 0
    assert plus_input() == Decimal("0.6")
    assert main(["catalogue", "rollback"]) == 0
    assert plus_input() == Decimal("0.7")
    assert main(["catalogue", "rollback"]) == 0  # and back again (rollback swaps)
    assert plus_input() == Decimal("0.6")


def test_rollback_after_the_first_install_returns_to_the_bundled_catalogue(server, config):
    assert main(["catalogue", "rollback"]) == 2  # nothing installed yet
    assert main(["catalogue", "update", "--from", f"{server}/good.yaml", "--yes"]) == 0
    assert plus_input() == Decimal("0.7")
    assert main(["catalogue", "rollback"]) == 0
    assert not (config / "models.yaml").exists()
    assert plus_input() == Decimal("0.8")


def test_validate_command(server, config, capsys):
    assert main(["catalogue", "validate", str(BUNDLED)]) == 0
    assert "valid" in capsys.readouterr().out
    assert main(["catalogue", "validate", f"{server}/badprice.yaml"]) == 2
    err = capsys.readouterr().err
    assert "qwen9-max" in err and "regions.intl.price.input" in err


def test_alias_bomb_is_refused_before_it_expands():
    # Expanded, the bomb would take minutes and gigabytes: the refusal is the proof that the
    # aliases were counted on the event stream first.
    with pytest.raises(qm.CatalogueError, match="alias"):
        Catalogue.from_bytes(ALIAS_BOMB.encode(), "bomb.yaml")


@pytest.mark.parametrize(("data", "message"), [
    (b"\xff\xfemodels: {}", "UTF-8"),
    (b"models: {}\n" + b"#" * (catalogue_store.MAX_FILE_BYTES + 1), "larger"),
    (b"models: [1, 2", "malformed"),
    (b"- just a list", "mapping"),
    (b"models: {}\nsurprise: 1\n", "unknown key"),
])
def test_bad_bytes_are_a_catalogue_error(data, message):
    with pytest.raises(qm.CatalogueError, match=message) as info:
        Catalogue.from_bytes(data, "downloaded.yaml")
    assert info.value.file == "downloaded.yaml"


def test_a_broken_installed_file_is_an_error_not_a_silent_fallback(config):
    config.mkdir()
    (config / "models.yaml").write_text("models: [", encoding="utf-8")
    with pytest.raises(qm.CatalogueError) as info:
        default_catalogue()
    assert str(config / "models.yaml") in str(info.value)
