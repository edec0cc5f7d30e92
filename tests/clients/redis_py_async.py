"""cartd's client matrix: redis-py's asyncio client, redis.asyncio (tests/tests/client_matrix.rs
runs it).

    python3 redis_py_async.py HOST PORT PASSWORD cart|plain 2|3

The same steps as redis_py.py, awaited. Prints one JSON object: what each step observed, or
{"error": ...} for a step that raised. The test decides what passes.
"""

import asyncio
import sys
import time

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.utils import HIREDIS_AVAILABLE

import matrix as m

PROTOCOL = int(sys.argv[5])


def connect(**options):
    return aioredis.Redis(
        host=m.HOST, port=m.PORT, protocol=PROTOCOL, decode_responses=True, **options
    )


async def handshake(r):
    return {
        "hello": m.hello_fields(await r.execute_command("HELLO")),
        **m.client_info(await r.execute_command("CLIENT", "INFO")),
    }


async def cart(r):
    key = "cart:matrix:cart"
    out = {
        "add": await r.execute_command("CART.ADD", key, "sku-1", "-", "2", "PRICE", "1299", "CURRENCY", "USD"),
        "get": await r.execute_command("CART.GET", key, "NOVALIDATE"),
        "json": await r.execute_command("CART.GET", key, "FORMAT", "JSON"),
        "missing": await r.execute_command("CART.GET", "cart:matrix:nobody"),
    }
    try:
        await r.execute_command("CART.SET", key, "nope", "-", "1")
        out["refused"] = None
    except redis.ResponseError as error:
        out["refused"] = m.describe(error)
    return out


async def pipeline(r):
    pipe = r.pipeline(transaction=False)
    for command in m.pipeline_commands():
        pipe.execute_command(*command)
    replies = await pipe.execute(raise_on_error=False)
    states = [await r.execute_command(*m.state_command(key)) for key in m.pipeline_keys()]
    return m.summarize_pipeline(replies, states)


async def watch(r):
    key = "cart:matrix:watched"
    other = connect()
    async with r.pipeline() as pipe:
        await pipe.watch(key)
        pipe.multi()
        pipe.execute_command(*m.add(key, "first"))
        clean = await pipe.execute()
        await pipe.watch(key)
        await other.execute_command(*m.add(key, "other"))
        pipe.multi()
        pipe.execute_command(*m.add(key, "second"))
        try:
            await pipe.execute()
            aborted, reported_as = False, "executed"
        except redis.WatchError:
            aborted, reported_as = True, "WatchError"
    await other.aclose()
    lines, _ = m.lines_and_version(await r.execute_command(*m.state_command(key)))
    return {"clean": clean, "aborted": aborted, "reported_as": reported_as, "lines": lines}


async def refused(call):
    try:
        await call()
        return None
    except redis.RedisError as error:
        return m.describe(error)


async def acl():
    user = connect(username=m.USER, password=m.PASSWORD)
    # No retries: redis-py retries a refused AUTH (AuthenticationError is a ConnectionError).
    wrong = connect(username=m.USER, password="wrong", retry=Retry(NoBackoff(), 0))
    out = {
        "whoami": await user.execute_command("ACL", "WHOAMI"),
        "added": await user.execute_command(*m.add("cart:matrix:acl", "sku-1")),
        "refused_command": await refused(lambda: user.execute_command("SAVE")),
        "refused_key": await refused(
            lambda: user.execute_command(*m.add("other:matrix:acl", "sku-1"))
        ),
        "wrong_password": await refused(wrong.ping),
    }
    await user.aclose()
    await wrong.aclose()
    return out


async def next_message(pubsub, kind):
    deadline = time.monotonic() + m.WAIT_S
    while time.monotonic() < deadline:
        message = await pubsub.get_message(timeout=0.1)
        if message is not None and message["type"] == kind:
            return message
    return None


async def pubsub(r):
    publisher = connect()
    sub = r.pubsub()
    try:
        await sub.subscribe("matrix.news")
        subscribed = await next_message(sub, "subscribe")
        published = await publisher.execute_command("PUBLISH", "matrix.news", "hello")
        message = m.message_fields(await next_message(sub, "message"))
        await sub.psubscribe("matrix.p.*")
        psubscribed = await next_message(sub, "psubscribe")
        ppublished = await publisher.execute_command("PUBLISH", "matrix.p.sale", "half-price")
        pmessage = m.message_fields(await next_message(sub, "pmessage"))
        return {
            "subscribed": subscribed is not None,
            "published": published,
            "message": message,
            "psubscribed": psubscribed is not None,
            "ppublished": ppublished,
            "pmessage": pmessage,
        }
    finally:
        await sub.aclose()
        await publisher.aclose()


async def main():
    r = connect()
    out = {
        "client": "redis-py asyncio",
        "version": redis.__version__,
        "hiredis": HIREDIS_AVAILABLE,
        "protocol": PROTOCOL,
    }
    steps = [("handshake", handshake), ("pipeline", pipeline), ("watch", watch), ("pubsub", pubsub)]
    if m.CART:
        steps.insert(1, ("cart", cart))
    for name, step in steps:
        try:
            out[name] = await step(r)
        except Exception as error:  # reported, not swallowed: the test asserts on each step
            out[name] = {"error": m.describe(error)}
    try:
        out["acl"] = await acl()
    except Exception as error:
        out["acl"] = {"error": m.describe(error)}
    await r.aclose()
    m.emit(out)


asyncio.run(main())
