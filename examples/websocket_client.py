#!/usr/bin/env python3
"""Watch Budget live: connect to a WebSocket endpoint, subscribe to topics, print every update.

    python3 -m pip install websockets     (Debian's own Python: apt-get install python3-websockets)
    python examples/websocket_client.py --port 8013      (default: where the CLI looks, $BUDGET_URL or $BUDGET_PORT)
    BUDGET_API_KEY=bgt_… python examples/websocket_client.py   (once the service requires keys)
    python examples/websocket_client.py --endpoint alerts --topic price_updates --since 120

Endpoints (each with its default topic): updates (budget_events), alerts (budget_alerts),
allocations (allocation_updates), prices (price_updates); --topic usage_updates adds a line per batch
of usage records, whatever policy they fall under. Messages are JSON envelopes
{"type", "topic", "payload", "timestamp", "position"}; --since POSITION replays what was appended after
that log position before going live. Ctrl-C stops it.
"""

import argparse
import asyncio
import decimal
import json
import os
import sys
from urllib.parse import urlencode, urlsplit
from datetime import datetime, timezone

try:
    import websockets
except ImportError:  # pragma: no cover - a hint for the person running it
    sys.exit("this example needs the websockets library: pip install websockets")

ENDPOINTS = {
    "updates": "budget_events",
    "alerts": "budget_alerts",
    "allocations": "allocation_updates",
    "prices": "price_updates",
}
# Every topic the server offers: each endpoint's default, and usage_updates (a usage_update per batch
# of records, whatever policy they fall under), which is sent only to those who subscribe.
TOPICS = sorted([*ENDPOINTS.values(), "usage_updates"])


def envelope(kind, payload=None, topic=None):
    return json.dumps({
        "type": kind,
        "topic": topic,
        "payload": payload or {},
        "timestamp": datetime.now(timezone.utc).isoformat(),
    })


def dollars(amount):
    """$4,957.5572707: every digit the server sent (read as Decimal, not float), thousands grouped as
    the CLI and the dashboard print them."""
    return f"${decimal.Decimal(str(amount)).normalize():,f}"


def describe(message):
    """One line for a person; the raw JSON with --raw."""
    kind, payload = message.get("type"), message.get("payload") or {}
    at = message.get("position")
    if kind == "budget_update" and "summary" in payload:
        s = payload["summary"]
        cost = dollars(s.get("total_cost", 0)) + (f" of {dollars(s['cost_limit'])}" if s.get("cost_limit") is not None else "")
        tokens = f"{s.get('total_tokens_used', 0):,} tokens" + (
            f" of {s['token_limit']:,}" if s.get("token_limit") is not None else "")
        return f"[{at}] budget {payload.get('budget_name', payload.get('budget_id'))} {s.get('period')} {s.get('scope')}: {cost}, {tokens}, {s.get('state')}"
    if kind == "alert":
        return "\n".join(f"[{at}] ALERT {a['severity']} {a['type']}: {a['message']}" for a in payload.get("alerts", []))
    if kind == "allocation_update":
        a = payload.get("allocation", {})
        return f"[{at}] allocation {payload.get('allocation_id')} {a.get('component')}: {a.get('tokens_used', 0):,}/{a.get('tokens_allocated', 0):,} tokens, {a.get('state')}"
    if kind == "price_update":
        u = payload.get("update", {})
        return f"[{at}] price {payload.get('provider')}/{payload.get('model')}: in {u.get('input_cost_per_token')}/token, out {u.get('output_cost_per_token')}/token ({u.get('source')})"
    if kind == "usage_update":
        records, repriced = payload.get("records", 0), payload.get("repriced", 0)
        line = f"[{at}] usage: {records:,} record{'' if records == 1 else 's'}"
        return line + (f", {repriced:,} re-priced" if repriced else "")
    if kind in ("subscription", "unsubscription") and payload.get("success"):
        return f"{'subscribed to' if kind == 'subscription' else 'unsubscribed from'} {payload.get('topic')}"
    if kind == "budget_update" and "available_topics" in payload:
        return f"{payload.get('message')}; following {', '.join(payload.get('topics', []))} from position {at}"
    if kind == "error":
        return f"error from server: {payload.get('reason')}"
    return f"{kind}: {json.dumps(payload)}"


async def watch(args):
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"ws://{host}:{args.port}/ws/budget/{args.endpoint}"
    query = {}
    if args.since is not None:
        query["since"] = args.since
    if args.api_key:
        query["api_key"] = args.api_key  # a browser's WebSocket cannot send headers; the query can
    shown = url + (f"?since={args.since}" if args.since is not None else "")
    if query:
        url += "?" + urlencode(query)
    async with websockets.connect(url) as ws:
        print(f"connected to {shown}", flush=True)
        if args.client_id:
            hello = {"client_id": args.client_id}
            if args.api_key:
                hello["api_key"] = args.api_key
            await ws.send(envelope("authentication", hello))
        for topic in args.topic:
            await ws.send(envelope("subscription", {"topic": topic}, topic))
        received = 0
        async for raw in ws:
            message = json.loads(raw, parse_float=decimal.Decimal)
            print(raw if args.raw else describe(message), flush=True)
            received += 1
            if args.count and received >= args.count:
                return


def default_address():
    """Where the `budget` CLI looks: $BUDGET_URL, else where `budget start` listens ($BUDGET_HOST and
    $BUDGET_PORT, every interface reached on loopback), else 127.0.0.1:8013."""
    url = os.environ.get("BUDGET_URL", "").strip()
    if url:
        parsed = urlsplit(url)
        return parsed.hostname or "127.0.0.1", parsed.port or (443 if parsed.scheme == "https" else 80)
    host = os.environ.get("BUDGET_HOST", "").strip()
    host = "127.0.0.1" if host in ("", "0.0.0.0") else "::1" if host in ("::", "[::]") else host
    return host, int(os.environ.get("BUDGET_PORT", "").strip() or 8013)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    host, port = default_address()
    parser.add_argument("--host", default=host, help="default: $BUDGET_URL's, else $BUDGET_HOST's, else 127.0.0.1")
    parser.add_argument("--port", type=int, default=port, help="default: $BUDGET_URL's, else $BUDGET_PORT, else 8013")
    parser.add_argument("--endpoint", choices=sorted(ENDPOINTS), default="updates",
                        help="which endpoint (and so which default topic)")
    parser.add_argument("--topic", action="append", default=[], choices=TOPICS,
                        help="also subscribe to this topic (repeatable)")
    parser.add_argument("--since", type=int, help="replay from after this log position")
    parser.add_argument("--client-id", help="send an authentication message with this client id")
    parser.add_argument("--api-key", default=os.environ.get("BUDGET_API_KEY", ""),
                        help="API key (default: $BUDGET_API_KEY); needed once the service requires keys")
    parser.add_argument("--count", type=int, default=0, help="stop after this many messages (0: run until Ctrl-C)")
    parser.add_argument("--raw", action="store_true", help="print the JSON messages as received")
    args = parser.parse_args()
    try:
        asyncio.run(watch(args))
    except KeyboardInterrupt:
        pass
    except websockets.exceptions.InvalidStatus as e:
        sys.exit(f"Budget refused the connection ({e}); once keys are required, pass --api-key or set BUDGET_API_KEY")
    except OSError as e:
        sys.exit(f"cannot reach Budget at {args.host}:{args.port} ({e}); is `budget start` running?")


if __name__ == "__main__":
    main()
