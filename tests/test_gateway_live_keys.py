"""``qwen-meter serve keys add|list|revoke`` while a gateway process runs: on the ledger the
config names, or (no ledger) in the config file, which the gateway re-reads — either way the
running gateway follows within 2 seconds. And the config file's keys are copied into a
ledger only when the ledger has no key of that name."""

from __future__ import annotations

import json
import time

import httpx
import pytest

pytest.importorskip("uvicorn")

from gateway_server import ROOT, eventually, gateway_process

from qwen_meter.cli.main import main
from qwen_meter.gateway.keys import hash_key, new_key
from qwen_meter.ledger import open_ledger
from qwen_meter.testing import FakeDashScope

ENV = {"QM_LIVE_REAL_KEY": "sk-REALliveKEY0123456789"}
CHAT = "/compatible-mode/v1/chat/completions"


@pytest.fixture(scope="module")
def fake():
    with FakeDashScope() as server:
        yield server


def status(url: str, key: str) -> int:
    return httpx.post(f"{url}{CHAT}", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                      json={"model": "qwen-plus", "max_tokens": 8,
                            "messages": [{"role": "user", "content": "hi"}]}).status_code



def add(config, name: str, capsys, *more: str) -> str:
    assert main(["serve", "keys", "add", name, "--config", str(config), "--json", *more]) == 0
    return json.loads(capsys.readouterr().out)["key"]


def write(config, fake, **more) -> None:
    config.write_text(json.dumps({
        "upstreams": {"default": {"url": fake.url, "api_key_env": "QM_LIVE_REAL_KEY"}},
        **more}), encoding="utf-8")


def test_yaml_gateway_rereads_its_keys(fake, tmp_path, capsys):
    config = tmp_path / "gateway.yaml"
    first = new_key()
    write(config, fake, keys=[{"name": "first", "hash": hash_key(first)}])
    with gateway_process("--config", str(config), "--log", str(tmp_path / "u.jsonl"),
                         env=ENV) as (url, _):
        assert status(url, first) == 200
        second = add(config, "second", capsys)
        assert eventually(lambda: status(url, second) == 200)
        assert main(["serve", "keys", "revoke", "first", "--config", str(config)]) == 0
        assert "within 2 seconds" in capsys.readouterr().out
        assert eventually(lambda: status(url, first) == 401)
        # A file that no longer validates is not applied: the keys read before stay.
        good = config.read_text(encoding="utf-8")
        config.write_text(good.replace('"second"', '"second", "rpm": "lots"')
                          if good.lstrip().startswith("{") else good + "\nport: eighty\n",
                          encoding="utf-8")
        time.sleep(1.5)
        assert status(url, second) == 200 and status(url, first) == 401


def test_serve_keys_on_the_ledger(fake, tmp_path, capsys):
    config = tmp_path / "gateway.yaml"
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    from_file = new_key()
    write(config, fake, ledger=ledger_url,
          keys=[{"name": "from-file", "hash": hash_key(from_file), "rpm": 50}])
    before = config.read_text(encoding="utf-8")
    with gateway_process("--config", str(config), env=ENV) as (url, _):
        assert status(url, from_file) == 200  # imported into the ledger at start
        made = add(config, "cli-made", capsys, "--team", "search", "--budget", "3 CNY/day",
                   "--rpm", "30")
        assert eventually(lambda: status(url, made) == 200)
        assert main(["serve", "keys", "list", "--config", str(config), "--json"]) == 0
        rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
        assert set(rows) == {"from-file", "cli-made"}
        assert rows["cli-made"]["team"] == "search" and rows["cli-made"]["rpm"] == 30
        assert rows["cli-made"]["budgets"] == ["3 CNY/day"]
        assert made not in json.dumps(rows) and "sha256" not in json.dumps(rows)
        assert main(["serve", "keys", "revoke", "from-file", "--config", str(config)]) == 0
        assert eventually(lambda: status(url, from_file) == 401)
        assert main(["serve", "keys", "add", "cli-made", "--config", str(config)]) == 2
        assert "already exists" in capsys.readouterr().err
        assert main(["serve", "keys", "add", "x", "--config", str(config),
                     "--budget", "3 CNY/fortnight"]) == 2
        assert "--budget" in capsys.readouterr().err
    assert config.read_text(encoding="utf-8") == before  # the keys live in the ledger
    # Restarted, the file's key (not revoked there) is not imported again: the ledger wins.
    with gateway_process("--config", str(config), env=ENV) as (url, _):
        assert status(url, from_file) == 401 and status(url, made) == 200
    with open_ledger(ledger_url) as ledger:
        assert ledger.get_key("from-file").revoked
        assert ledger.get_key("cli-made").hash == hash_key(made)


def test_the_fleet_example_is_a_valid_config():
    """examples/fleet: the gateway config validates; the compose file has PostgreSQL, Redis
    and three replicas that all read that config."""
    import yaml

    from qwen_meter.gateway.config import load_config

    folder = ROOT / "examples" / "fleet"
    config = load_config(folder / "gateway.yaml")
    assert config.ledger.startswith("postgresql://") and config.store.startswith("redis://")
    assert config.admin_token_env == "QWEN_METER_ADMIN_TOKEN" and config.virtual_keys
    compose = yaml.safe_load((folder / "compose.yaml").read_text(encoding="utf-8"))
    replicas = [s for n, s in compose["services"].items() if n.startswith("gateway-")]
    assert len(replicas) == 3 and {"postgres", "redis"} <= set(compose["services"])
    assert all("/etc/qwen-meter/gateway.yaml" in s["command"] for s in replicas)
