<?php
// cartd's client matrix: phpredis (Debian's php-redis, 5.x: RESP2 only, no CLIENT SETINFO),
// run by tests/tests/client_matrix.rs.
//
//     php phpredis.php HOST PORT PASSWORD cart|plain
//
// Mode `cart` drives cartd with CART.ADD (its reply: the cart's version); `plain` drives a real
// redis-server with RPUSH on lists (its reply: the list's length, rising as a version does), so
// the same steps are checked against Redis and against cartd. Prints one JSON object: what
// each step observed, or {"error": ...} for a step that threw. The test decides what passes.
//
// phpredis throws RedisException for most error replies but reports an `ERR ...` reply as
// `false`, keeping its text for getLastError(); `call` below raises that too, so no step goes
// on past an error unseen.

[$_, $HOST, $PORT_TEXT, $PASSWORD, $MODE] = $argv;
if ($MODE !== 'cart' && $MODE !== 'plain') {
    throw new InvalidArgumentException("mode is cart or plain, not $MODE");
}
const USER = 'matrix';
const PIPELINE_COMMANDS = 1000;
const PIPELINE_CARTS = 10;
const WAIT_S = 5;
define('CART', $MODE === 'cart');
define('HOST', $HOST);
define('PORT', (int) $PORT_TEXT);
define('PASSWORD', $PASSWORD);

final class ReplyError extends RuntimeException
{
}

function connect(?array $credentials = null): Redis
{
    $redis = new Redis();
    $redis->connect(HOST, PORT, WAIT_S);
    if ($credentials !== null && !$redis->auth($credentials)) {
        throw new ReplyError((string) $redis->getLastError());
    }
    return $redis;
}

/** rawCommand, with an error reply raised as ReplyError. */
function call(Redis $redis, array $command)
{
    $redis->clearLastError();
    $reply = $redis->rawCommand(...$command);
    $error = $redis->getLastError();
    if ($error !== null) {
        throw new ReplyError($error);
    }
    return $reply;
}

/** The command that adds one line (one unit) to a cart, or one element to a list. */
function add(string $key, string $line): array
{
    if (CART) {
        return ['CART.ADD', $key, $line, '-', '1', 'PRICE', '100', 'CURRENCY', 'USD', 'REPLY', 'VERSION'];
    }
    return ['RPUSH', $key, $line];
}

function state_command(string $key): array
{
    return CART ? ['CART.GET', $key, 'NOVALIDATE', 'FORMAT', 'JSON'] : ['LLEN', $key];
}

function lines_and_version($reply): array
{
    if (!CART) {
        return [$reply, $reply];
    }
    $view = json_decode($reply, true, 512, JSON_THROW_ON_ERROR);
    return [count($view['items']), $view['version']];
}

function describe(Throwable $error): string
{
    return get_class($error) . ': ' . $error->getMessage();
}

function client_info(string $text): array
{
    $fields = [];
    foreach (explode(' ', trim($text)) as $field) {
        $pair = explode('=', $field, 2);
        if (count($pair) === 2) {
            $fields[$pair[0]] = $pair[1];
        }
    }
    return [
        'resp' => (int) ($fields['resp'] ?? 0),
        'lib_name' => $fields['lib-name'] ?? '',
        'lib_ver' => $fields['lib-ver'] ?? '',
    ];
}

function handshake(Redis $redis): array
{
    $hello = call($redis, ['HELLO']);
    $fields = [];
    for ($i = 0; $i + 1 < count($hello); $i += 2) {
        $fields[$hello[$i]] = $hello[$i + 1];
    }
    return [
        'connected' => $redis->isConnected(),
        'hello' => ['server' => $fields['server'], 'version' => $fields['version'], 'proto' => $fields['proto']],
    ] + client_info(call($redis, ['CLIENT', 'INFO']));
}

function cart(Redis $redis): array
{
    $key = 'cart:matrix:cart';
    $out = [
        'add' => call($redis, ['CART.ADD', $key, 'sku-1', '-', '2', 'PRICE', '1299', 'CURRENCY', 'USD']),
        'get' => call($redis, ['CART.GET', $key, 'NOVALIDATE']),
        'json' => call($redis, ['CART.GET', $key, 'FORMAT', 'JSON']),
        'missing' => call($redis, ['CART.GET', 'cart:matrix:nobody']),
        'refused' => null,
    ];
    try {
        call($redis, ['CART.SET', $key, 'nope', '-', '1']);
    } catch (RedisException | ReplyError $error) {
        $out['refused'] = describe($error);
    }
    return $out;
}

function pipeline(Redis $redis): array
{
    $redis->multi(Redis::PIPELINE);
    for ($i = 0; $i < PIPELINE_COMMANDS; $i++) {
        $redis->rawCommand(...add('cart:matrix:pipe:' . ($i % PIPELINE_CARTS), 'sku-' . intdiv($i, PIPELINE_CARTS)));
    }
    $replies = $redis->exec();
    if (!is_array($replies)) {
        throw new ReplyError('pipeline exec: ' . var_export($replies, true) . ' ' . $redis->getLastError());
    }
    $states = [];
    for ($c = 0; $c < PIPELINE_CARTS; $c++) {
        $states[] = lines_and_version(call($redis, state_command("cart:matrix:pipe:$c")));
    }
    $integers = array_values(array_filter($replies, 'is_int'));
    return [
        'replies' => count($replies),
        'integers' => count($integers),
        'sum' => array_sum($integers),
        // phpredis puts `false` where a pipelined command failed.
        'errors' => array_slice(array_values(array_filter($replies, fn ($r) => $r === false)), 0, 3),
        'lines' => array_sum(array_column($states, 0)),
        'versions' => array_column($states, 1),
    ];
}

function watch(Redis $redis): array
{
    $key = 'cart:matrix:watched';
    $other = connect();
    $redis->watch($key);
    $redis->multi();
    $redis->rawCommand(...add($key, 'first'));
    $clean = $redis->exec();
    $redis->watch($key);
    call($other, add($key, 'other'));
    $redis->multi();
    $redis->rawCommand(...add($key, 'second'));
    $second = $redis->exec();
    $other->close();
    [$lines] = lines_and_version(call($redis, state_command($key)));
    return [
        'clean' => $clean,
        'aborted' => $second === false,
        'reported_as' => $second === false ? 'false' : json_encode($second),
        'lines' => $lines,
    ];
}

function refused(callable $call): ?string
{
    try {
        $call();
        return null;
    } catch (Throwable $error) {
        return describe($error);
    }
}

function acl(): array
{
    $user = connect([USER, PASSWORD]);
    return [
        'whoami' => call($user, ['ACL', 'WHOAMI']),
        'added' => call($user, add('cart:matrix:acl', 'sku-1')),
        'refused_command' => refused(fn () => call($user, ['SAVE'])),
        'refused_key' => refused(fn () => call($user, add('other:matrix:acl', 'sku-1'))),
        'wrong_password' => refused(fn () => connect([USER, 'wrong'])),
    ];
}

/**
 * Subscribes with `$kind` ('subscribe' or 'psubscribe') to `$target` and returns the first
 * message. phpredis's subscribe blocks until its callback leaves the loop, so a forked child
 * publishes: it repeats the PUBLISH until the reply counts a receiver (the subscription is in
 * place) and exits with that count (255: the PUBLISH was refused). phpredis 5.3 leaves its
 * loop only when a read fails, so the callback closes the subscriber's connection.
 */
function receive_one(string $kind, string $target, string $channel, string $data): array
{
    $child = pcntl_fork();
    if ($child === -1) {
        throw new RuntimeException('pcntl_fork failed');
    }
    if ($child === 0) {
        $publisher = connect();
        $deadline = microtime(true) + WAIT_S;
        do {
            $receivers = $publisher->rawCommand('PUBLISH', $channel, $data);
            if (!is_int($receivers)) {
                exit(255);
            }
            if ($receivers >= 1) {
                exit(min($receivers, 254));
            }
            usleep(20000);
        } while (microtime(true) < $deadline);
        exit(0);
    }
    $subscriber = connect();
    $subscriber->setOption(Redis::OPT_READ_TIMEOUT, WAIT_S);
    $received = null;
    $failure = null;
    try {
        if ($kind === 'subscribe') {
            $returned = $subscriber->subscribe([$target], function ($redis, $from, $body) use (&$received) {
                $received = ['channel' => $from, 'data' => $body];
                $redis->close();
            });
        } else {
            $returned = $subscriber->psubscribe([$target], function ($redis, $pattern, $from, $body) use (&$received) {
                $received = ['channel' => $from, 'data' => $body, 'pattern' => $pattern];
                $redis->close();
            });
        }
        // phpredis 5.3 drops an ERR reply's text here: false is all it says.
        $failure = "$kind returned " . var_export($returned, true) . ', last error: '
            . var_export($subscriber->getLastError(), true);
    } catch (RedisException $exception) {
        $failure = describe($exception);
    }
    pcntl_waitpid($child, $status);
    $published = pcntl_wexitstatus($status);
    if ($received === null) {
        throw new ReplyError("no message: $failure (the publisher exited with $published)");
    }
    return [true, $published, $received];
}

function pubsub(): array
{
    [$subscribed, $published, $message] = receive_one('subscribe', 'matrix.news', 'matrix.news', 'hello');
    [$psubscribed, $ppublished, $pmessage] =
        receive_one('psubscribe', 'matrix.p.*', 'matrix.p.sale', 'half-price');
    return compact('subscribed', 'published', 'message', 'psubscribed', 'ppublished', 'pmessage');
}

$redis = connect();
$out = ['client' => 'phpredis', 'version' => phpversion('redis'), 'protocol' => 2];
$steps = [
    'handshake' => fn () => handshake($redis),
    'cart' => fn () => cart($redis),
    'pipeline' => fn () => pipeline($redis),
    'watch' => fn () => watch($redis),
    'pubsub' => 'pubsub',
    'acl' => 'acl',
];
if (!CART) {
    unset($steps['cart']);
}
foreach ($steps as $name => $step) {
    try {
        $out[$name] = $step();
    } catch (Throwable $error) { // reported, not swallowed: the test asserts on each step
        $out[$name] = ['error' => describe($error)];
    }
}
echo json_encode($out), "\n";
