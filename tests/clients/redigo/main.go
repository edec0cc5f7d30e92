// cartd's client matrix: redigo (Debian's golang-github-gomodule-redigo-dev: RESP2 only, no
// CLIENT SETINFO), built offline in GOPATH mode from /usr/share/gocode by
// tests/tests/client_matrix.rs.
//
//	redigo HOST PORT PASSWORD cart|plain
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

	"github.com/gomodule/redigo/redis"
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

func dial(options ...redis.DialOption) (redis.Conn, error) {
	options = append(options, redis.DialConnectTimeout(wait), redis.DialReadTimeout(wait))
	return redis.Dial("tcp", addr, options...)
}

// add is the command that adds one line (one unit) to a cart, or one element to a list.
func add(key, line string) (string, []interface{}) {
	if cartMode {
		return "CART.ADD", []interface{}{key, line, "-", "1", "PRICE", "100", "CURRENCY", "USD", "REPLY", "VERSION"}
	}
	return "RPUSH", []interface{}{key, line}
}

func linesAndVersion(c redis.Conn, key string) (int64, int64, error) {
	if !cartMode {
		n, err := redis.Int64(c.Do("LLEN", key))
		return n, n, err
	}
	text, err := redis.Bytes(c.Do("CART.GET", key, "NOVALIDATE", "FORMAT", "JSON"))
	if err != nil {
		return 0, 0, err
	}
	var view struct {
		Items   []json.RawMessage `json:"items"`
		Version int64             `json:"version"`
	}
	if err := json.Unmarshal(text, &view); err != nil {
		return 0, 0, err
	}
	return int64(len(view.Items)), view.Version, nil
}

// plain turns a redigo reply into JSON values: bulk strings become strings.
func plain(reply interface{}) interface{} {
	switch v := reply.(type) {
	case []byte:
		return string(v)
	case []interface{}:
		out := make([]interface{}, len(v))
		for i, element := range v {
			out[i] = plain(element)
		}
		return out
	case redis.Error:
		return "redis.Error: " + v.Error()
	default:
		return v
	}
}

func describe(err error) string {
	return fmt.Sprintf("%T: %v", err, err)
}

func clientInfo(c redis.Conn) (object, error) {
	text, err := redis.String(c.Do("CLIENT", "INFO"))
	if err != nil {
		return nil, err
	}
	fields := map[string]string{}
	for _, field := range strings.Fields(text) {
		if pair := strings.SplitN(field, "=", 2); len(pair) == 2 {
			fields[pair[0]] = pair[1]
		}
	}
	var resp int
	fmt.Sscan(fields["resp"], &resp)
	return object{"resp": resp, "lib_name": fields["lib-name"], "lib_ver": fields["lib-ver"]}, nil
}

func handshake(c redis.Conn) (object, error) {
	// A flat array of names and values in RESP2; not all values are strings (proto, modules).
	reply, err := redis.Values(c.Do("HELLO"))
	if err != nil {
		return nil, err
	}
	hello := object{}
	for i := 0; i+1 < len(reply); i += 2 {
		hello[string(reply[i].([]byte))] = plain(reply[i+1])
	}
	out, err := clientInfo(c)
	if err != nil {
		return nil, err
	}
	out["hello"] = object{"server": hello["server"], "version": hello["version"], "proto": hello["proto"]}
	return out, nil
}

func cart(c redis.Conn) (object, error) {
	key := "cart:matrix:cart"
	out := object{}
	steps := []struct {
		name string
		args []interface{}
	}{
		{"add", []interface{}{"CART.ADD", key, "sku-1", "-", "2", "PRICE", "1299", "CURRENCY", "USD"}},
		{"get", []interface{}{"CART.GET", key, "NOVALIDATE"}},
		{"json", []interface{}{"CART.GET", key, "FORMAT", "JSON"}},
		{"missing", []interface{}{"CART.GET", "cart:matrix:nobody"}},
	}
	for _, step := range steps {
		reply, err := c.Do(step.args[0].(string), step.args[1:]...)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", step.name, err)
		}
		out[step.name] = plain(reply)
	}
	out["refused"] = nil
	if _, err := c.Do("CART.SET", key, "nope", "-", "1"); err != nil {
		out["refused"] = describe(err)
	}
	return out, nil
}

func pipeline(c redis.Conn) (object, error) {
	for i := 0; i < pipelineCommands; i++ {
		name, args := add(fmt.Sprintf("cart:matrix:pipe:%d", i%pipelineCarts), fmt.Sprintf("sku-%d", i/pipelineCarts))
		if err := c.Send(name, args...); err != nil {
			return nil, err
		}
	}
	if err := c.Flush(); err != nil {
		return nil, err
	}
	replies, integers, sum := 0, 0, int64(0)
	errors := []string{}
	for i := 0; i < pipelineCommands; i++ {
		reply, err := c.Receive()
		if _, refused := err.(redis.Error); err != nil && !refused {
			return nil, err // the connection failed: the rest cannot be read
		}
		replies++
		if n, ok := reply.(int64); ok {
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
	return object{"replies": replies, "integers": integers, "sum": sum, "errors": errors, "lines": lines, "versions": versions}, nil
}

// transaction runs WATCH (already sent), MULTI, one add and EXEC; redigo gives EXEC's array,
// or nil when a watched key changed.
func transaction(c redis.Conn, key, line string) (interface{}, error) {
	if err := c.Send("MULTI"); err != nil {
		return nil, err
	}
	name, args := add(key, line)
	if err := c.Send(name, args...); err != nil {
		return nil, err
	}
	return c.Do("EXEC")
}

func watch(c redis.Conn) (object, error) {
	key := "cart:matrix:watched"
	other, err := dial()
	if err != nil {
		return nil, err
	}
	defer other.Close()
	if _, err := c.Do("WATCH", key); err != nil {
		return nil, err
	}
	clean, err := transaction(c, key, "first")
	if err != nil {
		return nil, err
	}
	if _, err := c.Do("WATCH", key); err != nil {
		return nil, err
	}
	name, args := add(key, "other")
	if _, err := other.Do(name, args...); err != nil {
		return nil, err
	}
	second, err := transaction(c, key, "second")
	if err != nil {
		return nil, err
	}
	lines, _, err := linesAndVersion(c, key)
	if err != nil {
		return nil, err
	}
	reportedAs := "nil"
	if second != nil {
		reportedAs = fmt.Sprint(plain(second))
	}
	return object{"clean": plain(clean), "aborted": second == nil, "reported_as": reportedAs, "lines": lines}, nil
}

func refused(err error) interface{} {
	if err == nil {
		return nil
	}
	return describe(err)
}

func acl() (object, error) {
	u, err := dial(redis.DialUsername(user), redis.DialPassword(password))
	if err != nil {
		return nil, err
	}
	defer u.Close()
	whoami, err := redis.String(u.Do("ACL", "WHOAMI"))
	if err != nil {
		return nil, err
	}
	name, args := add("cart:matrix:acl", "sku-1")
	added, err := u.Do(name, args...)
	if err != nil {
		return nil, err
	}
	_, saveErr := u.Do("SAVE")
	name, args = add("other:matrix:acl", "sku-1")
	_, keyErr := u.Do(name, args...)
	wrong, wrongErr := dial(redis.DialUsername(user), redis.DialPassword("wrong"))
	if wrong != nil {
		wrong.Close()
	}
	return object{
		"whoami": whoami, "added": added, "refused_command": refused(saveErr),
		"refused_key": refused(keyErr), "wrong_password": refused(wrongErr),
	}, nil
}

// receive returns the next pub/sub event, or the error that ended the wait.
func receive(sub redis.PubSubConn) (interface{}, error) {
	switch event := sub.ReceiveWithTimeout(wait).(type) {
	case error:
		return nil, event
	default:
		return event, nil
	}
}

func pubsub(c redis.Conn) (object, error) {
	conn, err := dial()
	if err != nil {
		return nil, err
	}
	sub := redis.PubSubConn{Conn: conn}
	defer sub.Close()
	out := object{}
	if err := sub.Subscribe("matrix.news"); err != nil {
		return nil, err
	}
	confirmation, err := receive(sub)
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	_, out["subscribed"] = confirmation.(redis.Subscription)
	if out["published"], err = c.Do("PUBLISH", "matrix.news", "hello"); err != nil {
		return nil, err
	}
	message, err := receive(sub)
	if err != nil {
		return nil, fmt.Errorf("message: %w", err)
	}
	if m, ok := message.(redis.Message); ok {
		out["message"] = object{"channel": m.Channel, "data": string(m.Data)}
	}
	if err := sub.PSubscribe("matrix.p.*"); err != nil {
		return nil, err
	}
	if confirmation, err = receive(sub); err != nil {
		return nil, fmt.Errorf("psubscribe: %w", err)
	}
	_, out["psubscribed"] = confirmation.(redis.Subscription)
	if out["ppublished"], err = c.Do("PUBLISH", "matrix.p.sale", "half-price"); err != nil {
		return nil, err
	}
	if message, err = receive(sub); err != nil {
		return nil, fmt.Errorf("pmessage: %w", err)
	}
	if m, ok := message.(redis.Message); ok {
		out["pmessage"] = object{"channel": m.Channel, "data": string(m.Data), "pattern": m.Pattern}
	}
	return out, nil
}

func main() {
	if len(os.Args) != 5 || (os.Args[4] != "cart" && os.Args[4] != "plain") {
		fmt.Fprintln(os.Stderr, "usage: redigo HOST PORT PASSWORD cart|plain")
		os.Exit(2)
	}
	addr, password, cartMode = net.JoinHostPort(os.Args[1], os.Args[2]), os.Args[3], os.Args[4] == "cart"
	c, err := dial()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer c.Close()
	out := object{"client": "redigo", "protocol": 2}
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
