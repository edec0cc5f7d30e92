// cartd's client matrix: go-redis v5 (Debian's golang-gopkg-redis.v5-dev, gopkg.in/redis.v5:
// RESP2 only, no CLIENT SETINFO, no user name option), built offline in GOPATH mode from
// /usr/share/gocode by tests/tests/client_matrix.rs.
//
//	goredis_v5 HOST PORT PASSWORD cart|plain
//
// Mode `cart` drives cartd with CART.ADD (its reply: the cart's version); `plain` drives a real
// redis-server with RPUSH on lists (its reply: the list's length, rising as a version does), so
// the same steps are checked against Redis and against cartd. Prints one JSON object: what
// each step observed, or {"error": ...} for a step that failed. The test decides what passes.
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	redis "gopkg.in/redis.v5"
)

const (
	user             = "matrix"
	pipelineCommands = 1000
	pipelineCarts    = 10
	wait             = 5 * time.Second
)

var (
	addr     string
	password string
	cartMode bool
)

type object = map[string]interface{}

func connect(poolSize int) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, PoolSize: poolSize, ReadTimeout: wait})
}

// do sends one command through the generic call: NewCmd and Process.
func do(c *redis.Client, args ...interface{}) (interface{}, error) {
	cmd := redis.NewCmd(args...)
	c.Process(cmd)
	return cmd.Result()
}

// add is the command that adds one line (one unit) to a cart, or one element to a list.
func add(key, line string) []interface{} {
	if cartMode {
		return []interface{}{"CART.ADD", key, line, "-", "1", "PRICE", "100", "CURRENCY", "USD", "REPLY", "VERSION"}
	}
	return []interface{}{"RPUSH", key, line}
}

func linesAndVersion(c *redis.Client, key string) (int64, int64, error) {
	if !cartMode {
		n, err := c.LLen(key).Result()
		return n, n, err
	}
	reply, err := do(c, "CART.GET", key, "NOVALIDATE", "FORMAT", "JSON")
	if err != nil {
		return 0, 0, err
	}
	text, ok := reply.(string)
	if !ok {
		return 0, 0, fmt.Errorf("CART.GET FORMAT JSON replied %#v", reply)
	}
	var view struct {
		Items   []json.RawMessage `json:"items"`
		Version int64             `json:"version"`
	}
	if err := json.Unmarshal([]byte(text), &view); err != nil {
		return 0, 0, err
	}
	return int64(len(view.Items)), view.Version, nil
}

func describe(err error) string {
	return fmt.Sprintf("%T: %v", err, err)
}

func handshake(c *redis.Client) (object, error) {
	reply, err := do(c, "HELLO")
	if err != nil {
		return nil, err
	}
	pairs, ok := reply.([]interface{})
	if !ok {
		return nil, fmt.Errorf("HELLO replied %#v", reply)
	}
	hello := object{}
	for i := 0; i+1 < len(pairs); i += 2 {
		hello[fmt.Sprint(pairs[i])] = pairs[i+1]
	}
	info, err := do(c, "CLIENT", "INFO")
	if err != nil {
		return nil, err
	}
	fields := map[string]string{}
	for _, field := range strings.Fields(fmt.Sprint(info)) {
		if pair := strings.SplitN(field, "=", 2); len(pair) == 2 {
			fields[pair[0]] = pair[1]
		}
	}
	var resp int
	fmt.Sscan(fields["resp"], &resp)
	return object{
		"hello":    object{"server": hello["server"], "version": hello["version"], "proto": hello["proto"]},
		"resp":     resp,
		"lib_name": fields["lib-name"],
		"lib_ver":  fields["lib-ver"],
	}, nil
}

func cart(c *redis.Client) (object, error) {
	key := "cart:matrix:cart"
	out := object{}
	steps := []struct {
		name string
		args []interface{}
	}{
		{"add", []interface{}{"CART.ADD", key, "sku-1", "-", "2", "PRICE", "1299", "CURRENCY", "USD"}},
		{"get", []interface{}{"CART.GET", key, "NOVALIDATE"}},
		{"json", []interface{}{"CART.GET", key, "FORMAT", "JSON"}},
	}
	for _, step := range steps {
		reply, err := do(c, step.args...)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", step.name, err)
		}
		out[step.name] = reply
	}
	// go-redis reports a null reply as the error redis.Nil.
	_, err := do(c, "CART.GET", "cart:matrix:nobody")
	out["missing"] = describe(err)
	_, err = do(c, "CART.SET", key, "nope", "-", "1")
	out["refused"] = describe(err)
	return out, nil
}

func pipeline(c *redis.Client) (object, error) {
	pipe := c.Pipeline()
	defer pipe.Close()
	cmds := make([]*redis.Cmd, 0, pipelineCommands)
	for i := 0; i < pipelineCommands; i++ {
		cmd := redis.NewCmd(add(fmt.Sprintf("cart:matrix:pipe:%d", i%pipelineCarts), fmt.Sprintf("sku-%d", i/pipelineCarts))...)
		pipe.Process(cmd)
		cmds = append(cmds, cmd)
	}
	executed, _ := pipe.Exec() // the first command's error, if any: each is read below
	integers, sum := 0, int64(0)
	errors := []string{}
	for _, cmd := range cmds {
		reply, err := cmd.Result()
		if n, ok := reply.(int64); ok && err == nil {
			integers++
			sum += n
		} else if err != nil && len(errors) < 3 {
			errors = append(errors, describe(err))
		}
	}
	lines, versions := int64(0), []int64{}
	for cart := 0; cart < pipelineCarts; cart++ {
		n, version, err := linesAndVersion(c, fmt.Sprintf("cart:matrix:pipe:%d", cart))
		if err != nil {
			return nil, err
		}
		lines += n
		versions = append(versions, version)
	}
	return object{"replies": len(executed), "integers": integers, "sum": sum, "errors": errors, "lines": lines, "versions": versions}, nil
}

// transaction runs MULTI, one add, EXEC under WATCH key; `meanwhile` runs after WATCH.
func transaction(c *redis.Client, key, line string, meanwhile func() error) ([]interface{}, error) {
	var replies []interface{}
	err := c.Watch(func(tx *redis.Tx) error {
		if err := meanwhile(); err != nil {
			return err
		}
		cmds, err := tx.Pipelined(func(pipe *redis.Pipeline) error {
			pipe.Process(redis.NewCmd(add(key, line)...))
			return nil
		})
		for _, cmd := range cmds {
			replies = append(replies, cmd.(*redis.Cmd).Val())
		}
		return err
	}, key)
	return replies, err
}

func watch(c *redis.Client) (object, error) {
	key := "cart:matrix:watched"
	other := connect(1)
	defer other.Close()
	clean, err := transaction(c, key, "first", func() error { return nil })
	if err != nil {
		return nil, err
	}
	_, err = transaction(c, key, "second", func() error {
		_, err := do(other, add(key, "other")...)
		return err
	})
	if err != nil && err != redis.TxFailedErr {
		return nil, err
	}
	lines, _, lineErr := linesAndVersion(c, key)
	if lineErr != nil {
		return nil, lineErr
	}
	reportedAs := "executed"
	if err != nil {
		reportedAs = "TxFailedErr: " + err.Error()
	}
	return object{"clean": clean, "aborted": err == redis.TxFailedErr, "reported_as": reportedAs, "lines": lines}, nil
}

func refused(err error) interface{} {
	if err == nil {
		return nil
	}
	return describe(err)
}

// acl logs in as the ACL user. go-redis v5 predates ACL users (its Password option sends
// AUTH password, the default user's), so AUTH user password goes through the generic call on
// a one-connection pool, where it holds for every later command.
func acl() (object, error) {
	u := connect(1)
	defer u.Close()
	if _, err := do(u, "AUTH", user, password); err != nil {
		return nil, err
	}
	whoami, err := do(u, "ACL", "WHOAMI")
	if err != nil {
		return nil, err
	}
	added, err := do(u, add("cart:matrix:acl", "sku-1")...)
	if err != nil {
		return nil, err
	}
	_, saveErr := do(u, "SAVE")
	_, keyErr := do(u, add("other:matrix:acl", "sku-1")...)
	wrong := connect(1)
	defer wrong.Close()
	_, wrongErr := do(wrong, "AUTH", user, "wrong")
	return object{
		"whoami": whoami, "added": added, "refused_command": refused(saveErr),
		"refused_key": refused(keyErr), "wrong_password": refused(wrongErr),
	}, nil
}

func message(event interface{}) interface{} {
	m, ok := event.(*redis.Message)
	if !ok {
		return nil
	}
	out := object{"channel": m.Channel, "data": m.Payload}
	if m.Pattern != "" {
		out["pattern"] = m.Pattern
	}
	return out
}

func pubsub(c *redis.Client) (object, error) {
	sub, err := c.Subscribe("matrix.news")
	if err != nil {
		return nil, fmt.Errorf("subscribe: %v", err)
	}
	defer sub.Close()
	out := object{}
	confirmation, err := sub.ReceiveTimeout(wait)
	if err != nil {
		return nil, fmt.Errorf("subscribe: %v", err)
	}
	_, out["subscribed"] = confirmation.(*redis.Subscription)
	if out["published"], err = c.Publish("matrix.news", "hello").Result(); err != nil {
		return nil, err
	}
	event, err := sub.ReceiveTimeout(wait)
	if err != nil {
		return nil, fmt.Errorf("message: %v", err)
	}
	out["message"] = message(event)
	if err := sub.PSubscribe("matrix.p.*"); err != nil {
		return nil, fmt.Errorf("psubscribe: %v", err)
	}
	if confirmation, err = sub.ReceiveTimeout(wait); err != nil {
		return nil, fmt.Errorf("psubscribe: %v", err)
	}
	_, out["psubscribed"] = confirmation.(*redis.Subscription)
	if out["ppublished"], err = c.Publish("matrix.p.sale", "half-price").Result(); err != nil {
		return nil, err
	}
	if event, err = sub.ReceiveTimeout(wait); err != nil {
		return nil, fmt.Errorf("pmessage: %v", err)
	}
	out["pmessage"] = message(event)
	return out, nil
}

func main() {
	if len(os.Args) != 5 || (os.Args[4] != "cart" && os.Args[4] != "plain") {
		fmt.Fprintln(os.Stderr, "usage: goredis_v5 HOST PORT PASSWORD cart|plain")
		os.Exit(2)
	}
	addr, password, cartMode = net.JoinHostPort(os.Args[1], os.Args[2]), os.Args[3], os.Args[4] == "cart"
	c := connect(10)
	defer c.Close()
	out := object{"client": "go-redis v5", "protocol": 2}
	steps := []struct {
		name string
		run  func() (object, error)
	}{
		{"handshake", func() (object, error) { return handshake(c) }},
		{"cart", func() (object, error) { return cart(c) }},
		{"pipeline", func() (object, error) { return pipeline(c) }},
		{"watch", func() (object, error) { return watch(c) }},
		{"pubsub", func() (object, error) { return pubsub(c) }},
		{"acl", acl},
	}
	for _, step := range steps {
		if step.name == "cart" && !cartMode {
			continue
		}
		result, err := step.run()
		if err != nil { // reported, not swallowed: the test asserts on each step
			result = object{"error": describe(err)}
		}
		out[step.name] = result
	}
	encoded, err := json.Marshal(out)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(string(encoded))
}
