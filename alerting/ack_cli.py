"""``ddetect ack DEDUP_KEY --router URL [--by NAME]``: acknowledge an alert, stopping its escalation."""
from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import urllib.error
import urllib.request
from urllib.parse import quote


def main_ack(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ddetect ack", description="Acknowledge an alert (stops escalation).")
    p.add_argument("dedup_key")
    p.add_argument("--router", default=os.environ.get("DDETECT_ROUTER_URL", "http://127.0.0.1:9095"),
                   help="router base URL (default $DDETECT_ROUTER_URL or http://127.0.0.1:9095)")
    p.add_argument("--by", default=None, help="who acknowledges (default: your user name)")
    p.add_argument("--timeout", type=float, default=10.0)
    args = p.parse_args(argv)
    url = f"{args.router.rstrip('/')}/ack/{quote(args.dedup_key, safe='')}"
    body = json.dumps({"by": args.by or getpass.getuser()}).encode()
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=args.timeout) as resp:
            result = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        print(f"ack failed: HTTP {exc.code}: {exc.read().decode(errors='replace')[:300]}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"ack failed: cannot reach router at {args.router}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 2
    print(f"acknowledged {args.dedup_key}: {result.get('escalations_stopped', 0)} escalation(s) stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main_ack())
