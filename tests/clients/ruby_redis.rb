# cartd's client matrix: redis-rb (Debian's ruby-redis, 4.x: RESP2 only, no CLIENT SETINFO),
# run by tests/tests/client_matrix.rs.
#
#     ruby ruby_redis.rb HOST PORT PASSWORD cart|plain
#
# Mode `cart` drives cartd with CART.ADD (its reply: the cart's version); `plain` drives a real
# redis-server with RPUSH on lists (its reply: the list's length, rising as a version does), so
# the same steps are checked against Redis and against cartd. Prints one JSON object: what
# each step observed, or {"error": ...} for a step that raised. The test decides what passes.

require "json"
require "redis"

HOST, PORT_TEXT, PASSWORD, MODE = ARGV
raise "mode is cart or plain, not #{MODE}" unless %w[cart plain].include?(MODE)

CART = MODE == "cart"
PORT = Integer(PORT_TEXT)
USER = "matrix"
PIPELINE_COMMANDS = 1000
PIPELINE_CARTS = 10
WAIT_S = 5

def connect(**options)
  Redis.new(host: HOST, port: PORT, **options)
end

# The command that adds one line (one unit) to a cart, or one element to a list.
def add(key, line)
  return ["CART.ADD", key, line, "-", "1", "PRICE", "100", "CURRENCY", "USD", "REPLY", "VERSION"] if CART

  ["RPUSH", key, line]
end

def state_command(key)
  CART ? ["CART.GET", key, "NOVALIDATE", "FORMAT", "JSON"] : ["LLEN", key]
end

def lines_and_version(reply)
  return [reply, reply] unless CART

  view = JSON.parse(reply)
  [view["items"].length, view["version"]]
end

def describe(error)
  "#{error.class}: #{error.message}"
end

def client_info(text)
  fields = text.strip.split(" ").map { |field| field.split("=", 2) }.select { |pair| pair.length == 2 }.to_h
  { resp: Integer(fields.fetch("resp", "0")), lib_name: fields.fetch("lib-name", ""), lib_ver: fields.fetch("lib-ver", "") }
end

def handshake(redis)
  hello = redis.call("HELLO").each_slice(2).to_h
  {
    connected: redis.connected?,
    hello: { server: hello["server"], version: hello["version"], proto: hello["proto"] },
    **client_info(redis.call("CLIENT", "INFO")),
  }
end

def cart(redis)
  key = "cart:matrix:cart"
  out = {
    add: redis.call("CART.ADD", key, "sku-1", "-", "2", "PRICE", "1299", "CURRENCY", "USD"),
    get: redis.call("CART.GET", key, "NOVALIDATE"),
    json: redis.call("CART.GET", key, "FORMAT", "JSON"),
    missing: redis.call("CART.GET", "cart:matrix:nobody"),
    refused: nil,
  }
  begin
    redis.call("CART.SET", key, "nope", "-", "1")
  rescue Redis::CommandError => e
    out[:refused] = describe(e)
  end
  out
end

def pipeline(redis)
  replies = redis.pipelined do |pipe|
    PIPELINE_COMMANDS.times do |i|
      pipe.call(*add("cart:matrix:pipe:#{i % PIPELINE_CARTS}", "sku-#{i / PIPELINE_CARTS}"))
    end
  end
  states = PIPELINE_CARTS.times.map { |c| lines_and_version(redis.call(*state_command("cart:matrix:pipe:#{c}"))) }
  integers = replies.grep(Integer)
  {
    replies: replies.length,
    integers: integers.length,
    sum: integers.sum,
    errors: replies.grep(StandardError).first(3).map { |e| describe(e) },
    lines: states.sum(&:first),
    versions: states.map(&:last),
  }
end

def watch(redis)
  key = "cart:matrix:watched"
  other = connect
  redis.watch(key)
  clean = redis.multi { |tx| tx.call(*add(key, "first")) }
  redis.watch(key)
  other.call(*add(key, "other"))
  second = redis.multi { |tx| tx.call(*add(key, "second")) }
  other.close
  lines, = lines_and_version(redis.call(*state_command(key)))
  { clean: clean, aborted: second.nil?, reported_as: second.nil? ? "nil" : second.inspect, lines: lines }
end

def refused
  yield
  nil
rescue Redis::BaseError => e
  describe(e)
end

def acl
  user = connect(username: USER, password: PASSWORD)
  {
    whoami: user.call("ACL", "WHOAMI"),
    added: user.call(*add("cart:matrix:acl", "sku-1")),
    refused_command: refused { user.call("SAVE") },
    refused_key: refused { user.call(*add("other:matrix:acl", "sku-1")) },
    wrong_password: refused { connect(username: USER, password: "wrong").call("PING") },
  }
end

# Subscribes with `kind` (:subscribe or :psubscribe), publishes once it is confirmed, and
# returns [confirmed, publish reply, the first message] (nil when none came within WAIT_S).
def receive_one(subscriber, publisher, kind, target, channel, data)
  confirmed = false
  published = nil
  received = nil
  subscriber.public_send(:"#{kind}_with_timeout", WAIT_S, target) do |on|
    on.public_send(kind) do
      confirmed = true
      published = publisher.call("PUBLISH", channel, data)
    end
    if kind == :subscribe
      on.message do |from, body|
        received = { channel: from, data: body }
        subscriber.unsubscribe
      end
    else
      on.pmessage do |pattern, from, body|
        received = { channel: from, data: body, pattern: pattern }
        subscriber.punsubscribe
      end
    end
  end
  [confirmed, published, received]
rescue Redis::TimeoutError
  [confirmed, published, received]
end

def pubsub(_redis)
  subscriber = connect
  publisher = connect
  subscribed, published, message = receive_one(subscriber, publisher, :subscribe, "matrix.news", "matrix.news", "hello")
  psubscribed, ppublished, pmessage =
    receive_one(subscriber, publisher, :psubscribe, "matrix.p.*", "matrix.p.sale", "half-price")
  {
    subscribed: subscribed, published: published, message: message,
    psubscribed: psubscribed, ppublished: ppublished, pmessage: pmessage,
  }
ensure
  subscriber&.close
  publisher&.close
end

redis = connect
out = { client: "redis-rb", version: Redis::VERSION, protocol: 2 }
steps = %i[handshake pipeline watch pubsub]
steps.insert(1, :cart) if CART
steps.each do |step|
  out[step] = send(step, redis)
rescue StandardError => e # reported, not swallowed: the test asserts on each step
  out[step] = { error: describe(e) }
end
begin
  out[:acl] = acl
rescue StandardError => e
  out[:acl] = { error: describe(e) }
end
puts JSON.generate(out)
