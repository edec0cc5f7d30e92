"""cartd's client matrix: redis-py, synchronous (tests/tests/client_matrix.rs runs it).

    python3 redis_py.py HOST PORT PASSWORD cart|plain 2|3

With hiredis on PYTHONPATH redis-py parses with it; the `parser` field says which parser ran.
Prints one JSON object: what each step observed, or {"error": ...} for a step that raised.
The test decides what passes.
"""

import sys
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.utils import HIREDIS_AVAILABLE

import matrix as m

PROTOCOL = int(sys.argv[5])


def connect(**options):
    return redis.Redis(
        host=m.HOST, port=m.PORT, protocol=PROTOCOL, decode_responses=True, **options
    )


def handshake(r):
    connection = r.connection_pool.get_connection()
    try:
        parser = type(connection._parser).__name__
    finally:
        r.connection_pool.release(connection)
    return {
        "hello": m.hello_fields(r.execute_command("HELLO")),
        "parser": parser,
        **m.client_info(r.execute_command("CLIENT", "INFO")),
    }


def cart(r):
    key = "cart:matrix:cart"
    out = {
        "add": r.execute_command("CART.ADD", key, "sku-1", "-", "2", "PRICE", "1299", "CURRENCY", "USD"),
        "get": r.execute_command("CART.GET", key, "NOVALIDATE"),
        "json": r.execute_command("CART.GET", key, "FORMAT", "JSON"),
        "missing": r.execute_command("CART.GET", "cart:matrix:nobody"),
    }
    try:
        r.execute_command("CART.SET", key, "nope", "-", "1")
        out["refused"] = None
    except redis.ResponseError as error:
        out["refused"] = m.describe(error)
    return out


def pipeline(r):
    pipe = r.pipeline(transaction=False)
    for command in m.pipeline_commands():
        pipe.execute_command(*command)
    replies = pipe.execute(raise_on_error=False)
    states = [r.execute_command(*m.state_command(key)) for key in m.pipeline_keys()]
    return m.summarize_pipeline(replies, states)


def watch(r):
    key = "cart:matrix:watched"
    other = connect()
    with r.pipeline() as pipe:
        pipe.watch(key)
        pipe.multi()
        pipe.execute_command(*m.add(key, "first"))
        clean = pipe.execute()
        pipe.watch(key)
        other.execute_command(*m.add(key, "other"))
        pipe.multi()
        pipe.execute_command(*m.add(key, "second"))
        try:
            pipe.execute()
            aborted, reported_as = False, "executed"
        except redis.WatchError:
            aborted, reported_as = True, "WatchError"
    lines, _ = m.lines_and_version(r.execute_command(*m.state_command(key)))
    return {"clean": clean, "aborted": aborted, "reported_as": reported_as, "lines": lines}


def refused(call):
    try:
        call()
        return None
    except redis.RedisError as error:
        return m.describe(error)


def acl():
    user = connect(username=m.USER, password=m.PASSWORD)
    return {
        "whoami": user.execute_command("ACL", "WHOAMI"),
        "added": user.execute_command(*m.add("cart:matrix:acl", "sku-1")),
        "refused_command": refused(lambda: user.execute_command("SAVE")),
        "refused_key": refused(lambda: user.execute_command(*m.add("other:matrix:acl", "sku-1"))),
        # No retries: redis-py retries a refused AUTH (AuthenticationError is a ConnectionError).
        "wrong_password": refused(
            lambda: connect(username=m.USER, password="wrong", retry=Retry(NoBackoff(), 0)).ping()
        ),
    }


def next_message(pubsub, kind):
    deadline = time.monotonic() + m.WAIT_S
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.1)
        if message is not None and message["type"] == kind:
            return message
    return None


def pubsub(r):
    publisher = connect()
    sub = r.pubsub()
    try:
        sub.subscribe("matrix.news")
        subscribed = next_message(sub, "subscribe")
        published = publisher.execute_command("PUBLISH", "matrix.news", "hello")
        message = m.message_fields(next_message(sub, "message"))
        sub.psubscribe("matrix.p.*")
        psubscribed = next_message(sub, "psubscribe")
        ppublished = publisher.execute_command("PUBLISH", "matrix.p.sale", "half-price")
        pmessage = m.message_fields(next_message(sub, "pmessage"))
        return {
            "subscribed": subscribed is not None,
            "published": published,
            "message": message,
            "psubscribed": psubscribed is not None,
            "ppublished": ppublished,
            "pmessage": pmessage,
        }
    finally:
        sub.close()


def main():
    r = connect()
    out = {
        "client": "redis-py",
        "version": redis.__version__,
        "hiredis": HIREDIS_AVAILABLE,
        "protocol": PROTOCOL,
    }
    steps = [("handshake", handshake), ("pipeline", pipeline), ("watch", watch), ("pubsub", pubsub)]
    if m.CART:
        steps.insert(1, ("cart", cart))
    for name, step in steps:
        try:
            out[name] = step(r)
        except Exception as error:  # reported, not swallowed: the test asserts on each step
            out[name] = {"error": m.describe(error)}
    try:
        out["acl"] = acl()
    except Exception as error:
        out["acl"] = {"error": m.describe(error)}
    m.emit(out)


main()
