"""What redis_py.py and redis_py_async.py share: the arguments, the commands of each step in
either mode, and the one JSON object they print.

Mode `cart` drives cartd: a line is added with CART.ADD (its reply: the cart's version). Mode
`plain` drives a real redis-server with the same steps on lists: RPUSH (its reply: the list's
length, which rises exactly as a cart's version does), so one script is checked against Redis
and against cartd. docs/PROTOCOL.md has the CART.* commands.
"""

import json
import sys

HOST, PORT, PASSWORD, MODE = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
CART = MODE == "cart"
assert MODE in ("cart", "plain"), f"mode is cart or plain, not {MODE}"

USER = "matrix"
PIPELINE_COMMANDS = 1000
PIPELINE_CARTS = 10
WAIT_S = 5.0


def add(key, line):
    """The command that adds one line (one unit) to a cart, or one element to a list."""
    if CART:
        return ["CART.ADD", key, line, "-", "1", "PRICE", "100", "CURRENCY", "USD", "REPLY", "VERSION"]
    return ["RPUSH", key, line]


def pipeline_commands():
    """1,000 adds: 100 distinct lines in each of 10 carts."""
    return [
        add(f"cart:matrix:pipe:{i % PIPELINE_CARTS}", f"sku-{i // PIPELINE_CARTS}")
        for i in range(PIPELINE_COMMANDS)
    ]


def pipeline_keys():
    return [f"cart:matrix:pipe:{cart}" for cart in range(PIPELINE_CARTS)]


def state_command(key):
    """What reads a cart's lines and version back (parsed by `lines_and_version`)."""
    if CART:
        return ["CART.GET", key, "NOVALIDATE", "FORMAT", "JSON"]
    return ["LLEN", key]


def lines_and_version(reply):
    if CART:
        view = json.loads(reply)
        return len(view["items"]), view["version"]
    return reply, reply


def summarize_pipeline(replies, states):
    integers = [r for r in replies if isinstance(r, int) and not isinstance(r, bool)]
    parsed = [lines_and_version(s) for s in states]
    return {
        "replies": len(replies),
        "integers": len(integers),
        "sum": sum(integers),
        "errors": [describe(r) for r in replies if isinstance(r, Exception)][:3],
        "lines": sum(lines for lines, _ in parsed),
        "versions": [version for _, version in parsed],
    }


def client_info(text):
    """The fields of CLIENT INFO the handshake sets."""
    fields = dict(f.split("=", 1) for f in text.strip().split(" ") if "=" in f)
    return {
        "resp": int(fields.get("resp", "0")),
        "lib_name": fields.get("lib-name", ""),
        "lib_ver": fields.get("lib-ver", ""),
    }


def hello_fields(reply):
    """server, version and proto of a HELLO reply (a map in RESP3, a flat array in RESP2)."""
    if isinstance(reply, list):
        reply = dict(zip(reply[::2], reply[1::2]))
    return {"server": reply["server"], "version": reply["version"], "proto": reply["proto"]}


def describe(error):
    return f"{type(error).__name__}: {error}"


def message_fields(message):
    if message is None:
        return None
    fields = {"channel": message["channel"], "data": message["data"]}
    if message.get("pattern") is not None:
        fields["pattern"] = message["pattern"]
    return fields


def emit(out):
    print(json.dumps(out))
