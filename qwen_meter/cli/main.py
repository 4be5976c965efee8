"""The ``qwen-meter`` command."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..base.data import data_dir
from ..base.errors import InputDecodeError, InvalidMessages, QwenMeterError

EXAMPLE = "examples/chat.json"
#: Deployment regions of the bundled catalogue (cn = Beijing, intl = Singapore, ...).
REGIONS = ("cn", "intl", "global", "us", "eu")


def _read_text(path: str) -> str:
    raw = sys.stdin.buffer.read() if path == "-" else _read_bytes(path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = "stdin" if path == "-" else path
        raise InputDecodeError(f"{where} is not valid UTF-8 (byte {exc.start})") from None


def _read_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise QwenMeterError(f"cannot read {path}: {exc.strerror}") from None


def _load_request(path: str) -> dict[str, Any]:
    text = _read_text(path)
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InvalidMessages(f"{path} is not JSON: {exc}") from None
    if isinstance(doc, (list, dict)):
        from ..billing.request import normalize_request  # OpenAI or native DashScope bodies

        return normalize_request(doc)
    raise InvalidMessages(f"{path} must hold a list of messages or a request object")


def _print_count(result: Any, args: argparse.Namespace, label: str) -> None:
    if args.json:
        print(json.dumps({"input": label, **result.as_dict()}, ensure_ascii=False))
        return
    exact = "exact" if result.exact else "estimate"
    unit = "token" if result.tokens == 1 else "tokens"
    line = f"{result.tokens} {unit} ({exact}; {result.backend}, family {result.family}"
    if result.template:
        line += f", template {result.template}"
    print(line + f") — {label}")
    media = {k: getattr(result, f"{k}_tokens") for k in ("image", "audio", "video")}
    if any(media.values()):
        parts = ", ".join(f"{k} {v}" for k, v in media.items() if v)
        print(f"  text {result.text_tokens}, {parts}")
    for note in result.notes:
        print(f"  note: {note}")


def _count(args: argparse.Namespace) -> int:
    from ..billing.counting import DEFAULT_MODEL, count_messages, count_tokens

    options = {"tokenizer": args.tokenizer, "backend": args.backend}
    request_file = str(data_dir() / EXAMPLE) if args.example else args.messages
    if request_file is not None:
        request = _load_request(request_file)
        model = args.model or request.get("model") or DEFAULT_MODEL
        thinking = args.enable_thinking if args.enable_thinking is not None \
            else request.get("enable_thinking")
        result = count_messages(request, model,
                                enable_thinking=thinking, template=args.template,
                                high_resolution=bool(request.get("vl_high_resolution_images")),
                                **options)
        label = "bundled example" if args.example else request_file
        _print_count(result, args, f"{label}, model {model}")
        return 0
    if args.template is not None:
        raise InvalidMessages("--template applies to chat requests (-m FILE or --example); "
                              "plain text is counted without a template")
    if args.file is not None:
        text, label = _read_text(args.file), "stdin" if args.file == "-" else args.file
    elif args.text is not None:
        text, label = args.text, "text"
    else:
        text, label = _read_text("-"), "stdin"
    result = count_tokens(text, args.model or DEFAULT_MODEL, **options)
    _print_count(result, args, f"{label}, model {args.model or DEFAULT_MODEL}")
    return 0


def _money(value: Any) -> str:
    return "-" if value is None else f"{value.normalize():f}"


def _tokens(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, ["-" * w for w in widths], *rows]]
    return "\n".join(lines)


def _models(args: argparse.Namespace) -> int:
    from ..catalogue.core import default_catalogue

    if args.family:
        from ..tokens.families import get_family

        get_family(args.family)  # an unknown family is an error naming the known ones
    out: list[dict[str, Any]] = []
    for spec in default_catalogue():
        if args.family and spec.family != args.family:
            continue
        regions: list[str | None] = [args.region] if args.region else [*spec.regions] or [None]
        for region in regions:
            offers = spec.offers.get(region) if region else None
            offer = offers[0] if offers else None
            if args.region and offer is None:
                continue
            tier = offer.tiers[0] if offer and offer.tiers else None
            out.append({
                "model": spec.name, "family": spec.family, "template": spec.template,
                "thinking": spec.thinking, "status": spec.status, "region": region,
                "currency": offer.currency if offer else None,
                "context": offer.limits.context if offer else None,
                "max_input": offer.limits.max_input if offer else None,
                "max_output": offer.limits.max_output if offer else None,
                "input": tier.input if tier else None, "output": tier.output if tier else None,
                "output_thinking": tier.output_thinking if tier else None,
                "tiers": len(offer.tiers) if offer else 0,
                "rpm": offer.rate_limits.rpm if offer and offer.rate_limits else None,
                "tpm": offer.rate_limits.tpm if offer and offer.rate_limits else None,
                "as_of": offer.as_of.isoformat() if offer else None,
                "effective": offer.effective_date.isoformat() if offer else None,
                "source_kind": offer.source.kind if offer else None,
                "source": offer.source.url if offer else None})
    if args.json:
        print(json.dumps(out, ensure_ascii=False, default=str))
        return 0
    rows = [[r["model"], r["family"], r["region"] or "-", _tokens(r["context"]),
             _tokens(r["max_output"]),
             f"{_money(r['input'])}/{_money(r['output'])}" + (
                 f" (think {_money(r['output_thinking'])})" if r["output_thinking"] is not None
                 else "") + (f" +{r['tiers'] - 1} tiers" if r["tiers"] > 1 else ""),
             r["currency"] or "-", _tokens(r["rpm"]), _tokens(r["tpm"]), r["effective"] or "-",
             r["source_kind"] or "-"]
            for r in out]
    print(_table(rows, ["model", "family", "region", "context", "max out",
                        "price in/out per 1M", "cur", "rpm", "tpm", "effective", "source"]))
    print(f"\n{len(out)} rows; prices are the first (smallest-input) tier. "
          "`qwen-meter price MODEL` shows all tiers.")
    return 0


def _price(args: argparse.Namespace) -> int:
    from ..catalogue.core import resolve

    spec = resolve(args.model)
    regions = [args.region] if args.region else list(spec.regions)
    if args.region and args.region not in spec.offers:
        from ..base.errors import NotOffered

        raise NotOffered(spec.name, args.region, spec.regions)
    report: list[dict[str, Any]] = []
    for region in regions:
        offer = spec.offers[region][0]
        report.append({
            "region": region, "currency": offer.currency, "as_of": offer.as_of.isoformat(),
            "effective": offer.effective_date.isoformat(), "source_kind": offer.source.kind,
            "source": offer.source.url, "note": offer.note,
            "limits": {k: v for k, v in offer.limits.__dict__.items() if v is not None},
            "batch": None if offer.batch is None else str(offer.batch),
            "batch_chat": None if offer.batch_chat is None else str(offer.batch_chat),
            "tool_fees": {k: str(v.per_call) for k, v in offer.tool_fees.items()},
            "rate_limits": None if offer.rate_limits is None else
            {"rpm": offer.rate_limits.rpm, "tpm": offer.rate_limits.tpm,
             "rps": offer.rate_limits.rps, "tps": offer.rate_limits.tps,
             "source": offer.rate_limits.source.url},
            "free_quota": None if offer.free_quota is None else
            {"tokens": offer.free_quota.tokens, "days": offer.free_quota.days},
            "tiers": [{k: (str(v) if v is not None and k not in ("above", "upto") else v)
                       for k, v in tier.__dict__.items() if v is not None}
                      for tier in offer.tiers]})
    if args.json:
        print(json.dumps({"model": spec.name, "family": spec.family, "template": spec.template,
                          "thinking": spec.thinking, "regions": report}, ensure_ascii=False))
        return 0
    print(f"{spec.name}  (family {spec.family}, template {spec.template}, "
          f"thinking {spec.thinking}, {spec.status})")
    if not report:
        print("  no region data in the catalogue")
    for r in report:
        print(f"\n[{r['region']}] {r['currency']}, effective {r['effective']} (read {r['as_of']}) "
              f"— {r['source_kind']}: {r['source']}")
        if r["note"]:
            print(f"  note: {r['note']}")
        limits = ", ".join(f"{k} {v:,}" for k, v in r["limits"].items())
        print(f"  limits: {limits or 'unknown'}")
        if r["rate_limits"]:
            rl = r["rate_limits"]
            requests = f"{_tokens(rl['rps'])} RPS" if rl["rps"] else f"{_tokens(rl['rpm'])} RPM"
            tokens = f"{_tokens(rl['tps'])} TPS" if rl["tps"] else f"{_tokens(rl['tpm'])} TPM"
            print(f"  rate limits: {requests}, {tokens}")
        if r["free_quota"]:
            print(f"  free quota: {r['free_quota']['tokens']:,} tokens for "
                  f"{r['free_quota']['days']} days")
        if r["batch"]:
            print(f"  batch: x{r['batch']}")
        if r["batch_chat"]:
            print(f"  Batch Chat API: x{r['batch_chat']}")
        for tool, fee in r["tool_fees"].items():
            print(f"  {tool}: {fee} {r['currency']} per call")
        if not r["tiers"]:
            print("  price: unknown")
        for tier in r["tiers"]:
            upto = "∞" if tier.get("upto") is None else f"{tier['upto']:,}"
            prices = ", ".join(f"{k} {v}" for k, v in tier.items() if k not in ("above", "upto"))
            print(f"  input ({tier['above']:,}, {upto}]: {prices} per 1M")
    return 0


def _request_and_model(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    request = _load_request(args.request)
    model = args.model or request.get("model")
    if not model:
        raise InvalidMessages("name the model with --model or a 'model' key in the request")
    return request, str(model)


def _estimate(args: argparse.Namespace) -> int:
    from ..billing.pricing import estimate_cost
    from ..catalogue.core import resolve
    from .estimate_batch import is_batch_file, run

    if is_batch_file(args.request):  # a Batch API input file (JSON Lines)
        return run(args)

    request, model = _request_and_model(args)
    spec = resolve(model)
    regions = [args.region] if args.region else list(spec.regions)
    results = {}
    for region in regions:
        results[region] = estimate_cost(request, spec, region=region, max_tokens=args.max_tokens,
                                        batch=args.batch)
    if args.json:
        print(json.dumps({"model": spec.name, **{r: e.as_dict() for r, e in results.items()}},
                         ensure_ascii=False))
        return 0
    for region, estimate in results.items():
        print(f"{spec.name} [{region}]: {estimate.prompt_tokens:,} prompt tokens"
              f"{'' if estimate.exact_prompt else ' (estimated)'}, up to "
              f"{_tokens(estimate.max_output_tokens)} output tokens → "
              f"{estimate.low} .. {estimate.high}")
    if not results:
        print(f"{spec.name}: no region data in the catalogue")
    return 0


def _check(args: argparse.Namespace) -> int:
    from ..base.errors import LimitExceeded
    from ..billing.preflight import check

    request, model = _request_and_model(args)
    try:
        result = check(request, model, region=args.region, max_tokens=args.max_tokens)
    except LimitExceeded as exc:
        if args.json:
            print(json.dumps({"fits": False, "error": type(exc).__name__, "message": str(exc),
                              "prompt_tokens": exc.prompt_tokens, "max_input": exc.max_input,
                              "context_window": exc.context_window,
                              "requested_output": exc.requested_output,
                              "max_output": exc.max_output}))
        else:
            print(f"does not fit: {exc}")
        return 1
    if args.json:
        print(json.dumps({"fits": True, **result.as_dict()}))
    else:
        print(f"fits: {result.prompt.tokens:,} prompt tokens of {_tokens(result.max_input)} "
              f"({result.model}, {result.region}); context {_tokens(result.context_window)}, "
              f"max output {_tokens(result.max_output)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qwen-meter",
        description="Exact token counts, costs and limits for Qwen models on DashScope.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    count = sub.add_parser("count", help="count the tokens of text or of a chat request",
                           description="Count tokens of a string, a file, stdin, or a JSON "
                                       "chat request (messages, tools, enable_thinking).")
    source = count.add_mutually_exclusive_group()
    source.add_argument("text", nargs="?", help="text to count (default: read stdin)")
    source.add_argument("-f", "--file", help="count a UTF-8 text file ('-' for stdin)")
    source.add_argument("-m", "--messages", metavar="JSON",
                        help="count a chat request: a JSON list of messages, or an object "
                             "with messages / tools / enable_thinking / model")
    source.add_argument("--example", action="store_true",
                        help="count the bundled example chat request (qwen-plus)")
    count.add_argument("--model", help="model name (default: qwen-plus, or the request's)")
    count.add_argument("--template", help="override the chat-template profile")
    count.add_argument("--tokenizer", metavar="PATH",
                       help="a local Hugging Face tokenizer folder (transformers backend)")
    count.add_argument("--backend", choices=("tiktoken", "transformers", "heuristic"),
                       help="tokenizer backend (default: tiktoken, or transformers with "
                            "--tokenizer)")
    thinking = count.add_mutually_exclusive_group()
    thinking.add_argument("--thinking", dest="enable_thinking", action="store_const",
                          const=True, help="count with enable_thinking=true")
    thinking.add_argument("--no-thinking", dest="enable_thinking", action="store_const",
                          const=False, help="count with enable_thinking=false")
    count.add_argument("--json", action="store_true", help="print one JSON object")
    count.set_defaults(run=_count)

    models = sub.add_parser("models", help="list the model catalogue")
    models.add_argument("--family", help="only this tokenizer family (qwen2.5, qwen3, qwen3.5)")
    models.add_argument("--region", choices=REGIONS,
                        help="only this region")
    models.add_argument("--json", action="store_true", help="print JSON")
    models.set_defaults(run=_models)

    price = sub.add_parser("price", help="a model's limits and price tiers per region")
    price.add_argument("model", help="model name, e.g. qwen-plus")
    price.add_argument("--region", choices=REGIONS, help="only this region")
    price.add_argument("--json", action="store_true", help="print JSON")
    price.set_defaults(run=_price)
    from .catalogue import register as register_catalogue  # issue #12

    register_catalogue(sub)

    for name, run, helptext in (
            ("estimate", _estimate, "price a JSON request before sending it (every region)"),
            ("check", _check, "check a JSON request against the model's limits")):
        command = sub.add_parser(name, help=helptext)
        command.add_argument("request", help="JSON request file (messages, tools, max_tokens, "
                                             "enable_thinking, model), or '-' for stdin")
        command.add_argument("--model", help="model name (default: the request's)")
        command.add_argument("--region", choices=REGIONS,
                             help="price in this region (default: every region offered)"
                             if name == "estimate" else "check against this region's limits")
        command.add_argument("--max-tokens", type=int, help="override the request's max_tokens")
        if name == "estimate":
            command.add_argument("--batch", action="store_true", help="price as a batch call")
        command.add_argument("--json", action="store_true", help="print JSON")
        command.set_defaults(run=run)

    from . import log as cli_log
    from . import report as cli_report

    cli_report.register(sub)
    cli_log.register(sub)
    from .export import register as register_export  # issue #17

    register_export(sub)
    from .serve import register as register_serve  # issue 16: the gateway

    register_serve(sub)
    return parser


def _version() -> str:
    # The package's own constant (a test keeps it equal to pyproject's): installed metadata
    # can be stale in an editable install.
    from .. import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except QwenMeterError as exc:
        print(f"qwen-meter: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python from complaining
        # about the unflushable stdout at exit.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print("qwen-meter: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
