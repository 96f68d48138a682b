#!/usr/bin/env python3
"""Follows `highlander elect`'s /watch and prints one JSON line per state it sees.

Usage: leader_watch.py http://127.0.0.1:PORT [COUNT]

Each line is the sidecar's answer plus "received_ns", this process's wall clock when
the answer arrived. With COUNT it exits after that many lines; otherwise it follows
until interrupted. Standard library only.

"Am I the leader?" is a race: by the time an answer is read the term may have ended.
Use is_leader to decide whether to start work, and pass fencing_token with every write
to a system that can check it (see the README's "fencing" section); term_valid_for_ms
says how long the term lasts at most without a renewal.
"""

import json
import sys
import time
import urllib.request


def follow(base, count=None):
    seq = None
    seen = 0
    while count is None or seen < count:
        url = f"{base}/watch?timeout=30s" + (f"&seq={seq}" if seq is not None else "")
        try:
            with urllib.request.urlopen(url, timeout=40) as answer:
                state = json.load(answer)
        except OSError as e:
            # The sidecar restarts or is not up yet: ask again shortly.
            print(f"leader_watch: {e}; retrying", file=sys.stderr)
            time.sleep(0.5)
            continue
        state["received_ns"] = time.time_ns()
        if state["seq"] != seq:
            seq = state["seq"]
            seen += 1
            print(json.dumps(state), flush=True)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    follow(sys.argv[1].rstrip("/"), int(sys.argv[2]) if len(sys.argv) == 3 else None)
