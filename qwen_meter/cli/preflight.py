"""``qwen-meter estimate`` and ``qwen-meter check``: a JSON request priced (every region) or
checked against the model's limits before it is sent. A Batch API input file given to
``estimate`` is handed to :mod:`.estimate_batch`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .common import REGIONS, _request_and_model, _tokens


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


def register(subparsers: Any) -> None:
    """Add the ``estimate`` and ``check`` commands to the CLI's subparsers."""
    for name, run, helptext in (
            ("estimate", _estimate, "price a JSON request before sending it (every region)"),
            ("check", _check, "check a JSON request against the model's limits")):
        command = subparsers.add_parser(name, help=helptext)
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
