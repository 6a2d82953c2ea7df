#!/usr/bin/env python3
"""How a component spends through Budget: reserve, call the model, record what it spent, release the rest.

Every request carries an Idempotency-Key made from the task's id, so running the same task again (a
worker that crashed and was restarted, a retry after a timeout) gets the first answers back and
counts nothing twice. Standard library only:

    python3 examples/reserve_then_record.py --task task-123 --component codex --tokens 8000 \
        --model gpt-4o --input-tokens 1200 --output-tokens 340

With keys configured, set BUDGET_API_KEY (a write key). Exit status: 0 done, 3 refused by a hard
limit (nothing was spent), 1 any other error.
"""

import argparse
import decimal
import json
import os
import sys
import time
import urllib.error
import urllib.request


def exact(answer):
    """JSON with its money as Decimal: the server writes exact decimals, a float would round them."""
    return json.load(answer, parse_float=decimal.Decimal)


def call(url, method, path, body, key):
    """One request with its Idempotency-Key. Retries what may not have arrived or been written (no
    answer, 503) with the same key: the server answers a retry with the first outcome."""
    headers = {"Content-Type": "application/json", "Idempotency-Key": key}
    if os.environ.get("BUDGET_API_KEY"):
        headers["Authorization"] = "Bearer " + os.environ["BUDGET_API_KEY"]
    data = json.dumps(body).encode()
    for attempt in range(5):
        request = urllib.request.Request(url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, exact(answer), answer.headers.get("Idempotent-Replayed") == "true"
        except urllib.error.HTTPError as error:
            if error.code != 503:
                return error.code, exact(error), False
        except (urllib.error.URLError, TimeoutError, ConnectionError):
            pass
        time.sleep(0.2 * 2**attempt)
    raise SystemExit(f"{method} {path}: no answer after 5 tries; run the task again, it is safe")


def default_url():
    """$BUDGET_URL, else where `budget start` listens ($BUDGET_HOST and $BUDGET_PORT, every interface
    reached on loopback), else the default port."""
    if os.environ.get("BUDGET_URL", "").strip():
        return os.environ["BUDGET_URL"].strip()
    host = os.environ.get("BUDGET_HOST", "").strip()
    host = "127.0.0.1" if host in ("", "0.0.0.0") else "[::1]" if host in ("::", "[::]") else host
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{host}:{os.environ.get('BUDGET_PORT', '').strip() or 8013}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default=default_url(),
                   help="default: where the `budget` CLI looks, $BUDGET_URL, else $BUDGET_HOST/$BUDGET_PORT, else 127.0.0.1:8013")
    p.add_argument("--task", required=True, help="the task's id: the reservation's context and the keys' root")
    p.add_argument("--component", required=True)
    p.add_argument("--tokens", type=int, required=True, help="tokens to reserve (the call's worst case)")
    p.add_argument("--provider", default="openai")
    p.add_argument("--model", default="gpt-4o")
    p.add_argument("--task-type", default="chat",
                   help="the call's kind of task; named in both, the reservation holds room only under the"
                        " limits its record will count against (left out, it would hold room under every"
                        " task type's)")
    p.add_argument("--input-tokens", type=int, default=1200, help="what the call spent (here, instead of a real call)")
    p.add_argument("--output-tokens", type=int, default=340)
    a = p.parse_args()

    # 1. Reserve before spending: a hard limit refuses here (402), before any money goes out.
    status, reserved, replayed = call(a.url, "POST", "/api/allocations", {
        "context_id": a.task, "component": a.component, "tokens": a.tokens,
        "provider": a.provider, "model": a.model, "task_type": a.task_type,
    }, f"{a.task}/reserve")
    if status == 402:
        print(f"refused: {reserved['error']['message']}")
        return 3
    if status >= 400:
        print(f"error: {reserved['error']['message']}", file=sys.stderr)
        return 1
    allocation = reserved["allocation_id"]
    print(f"reserved {reserved['tokens_allocated']:,} tokens (allocation {allocation}, "
          f"estimated ${reserved['estimated_cost']}){' [replayed]' if replayed else ''}")

    # 2. The model call goes here; its usage report gives the token counts.
    used_input, used_output = a.input_tokens, a.output_tokens

    # 3. Record what it spent, against the reservation.
    status, recorded, replayed = call(a.url, "POST", "/api/usage", {
        "provider": a.provider, "model": a.model, "component": a.component, "context_id": a.task,
        "task_type": a.task_type, "allocation_id": allocation, "input_tokens": used_input, "output_tokens": used_output,
    }, f"{a.task}/usage")
    if status >= 400:
        print(f"error: {recorded['error']['message']}", file=sys.stderr)
        return 1
    print(f"recorded {used_input + used_output:,} tokens costing ${recorded['cost']} "
          f"(record {recorded['record_id']}){' [replayed]' if replayed else ''}")

    # 4. Give back what the task did not use, for other tasks under the same limits.
    status, released, replayed = call(a.url, "POST", f"/api/allocations/{allocation}/release", {},
                                      f"{a.task}/release")
    if status >= 400:
        print(f"error: {released['error']['message']}", file=sys.stderr)
        return 1
    print(f"released {max(0, a.tokens - released['tokens_used']):,} unused tokens"
          f"{' [replayed]' if replayed else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
