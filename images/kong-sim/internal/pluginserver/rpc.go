package pluginserver

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"github.com/kong-plugin-matrix/kong-sim/internal/protocol"
	"google.golang.org/protobuf/proto"
)

// ErrClosed is what an OpenResty cosocket reports when the peer has gone:
// Kong's recovery path matches the text "closed".
var ErrClosed = errors.New("closed")

// ConnectError is a failure to reach the socket (Kong logs it as
// "trying to connect: ...").
type ConnectError struct{ Err error }

// Error is the bare words OpenResty gives a failed connect: the system's
// error text, lower-cased ("connection refused", "no such file or
// directory"), without Go's "dial unix PATH: connect: ".
func (e *ConnectError) Error() string { return openRestyWords(e.Err) }
func (e *ConnectError) Unwrap() error { return e.Err }

// SendError is a call that could not be written after the connect (the
// server died between the two). pb_rpc.lua sends with assert(c:send(...))
// in every release (3.4.0 pb_rpc.lua 283-284 and 318-319; 3.9.0
// rpc/pb_rpc.lua 264-265 and 284-285), so Kong raises a Lua error here
// instead of returning one: the caller's recovery and clean-up never run.
// mp_rpc.lua returns its send errors; MsgPackClient never gives this one.
type SendError struct{ Err error }

// Error is what c:send returns: the system's error text, lower-cased
// ("broken pipe", "connection reset by peer"), or "timeout".
func (e *SendError) Error() string {
	var netErr net.Error
	if errors.As(e.Err, &netErr) && netErr.Timeout() {
		return "timeout"
	}
	return openRestyWords(e.Err)
}
func (e *SendError) Unwrap() error { return e.Err }

// openRestyWords is how a cosocket reports a system error: strerror,
// lower-cased "for compatibility with LuaSocket" (lua-nginx-module's
// ngx_http_lua_socket_prepare_error_retvals).
func openRestyWords(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return strings.ToLower(errno.Error())
	}
	return err.Error()
}

// PDKFunc answers one PDK call made by a plugin during an event: the reply
// frame, or an error, on which Kong abandons the connection without replying.
type PDKFunc func(method string, args []byte) ([]byte, error)

// socketTimeout is OpenResty's default lua_socket_read_timeout.
const socketTimeout = 60 * time.Second

// maxIdle bounds the keepalive pool, like a cosocket pool would.
const maxIdle = 32

// Client is one nginx worker's RPC object for one plugin server: its own
// message counter and its own keepalive pool of connections.
type Client struct {
	socket string
	mu     sync.Mutex
	msgID  int64
	idle   []net.Conn
}

// NewClient returns a client for the plugin server listening on socket.
func NewClient(socket string) *Client {
	return &Client{socket: socket}
}

// StartInstance sends cmd_start_instance with the JSON config.
func (c *Client) StartInstance(name string, config []byte) (*pb.InstanceStatus, error) {
	ret, err := c.call(&pb.RpcCall{Call: &pb.RpcCall_CmdStartInstance{
		CmdStartInstance: &pb.CmdStartInstance{Name: name, Config: config},
	}}, nil)
	if err != nil {
		return nil, err
	}
	status := ret.GetInstanceStatus()
	if status == nil {
		return nil, fmt.Errorf("cmd_start_instance returned no instance status")
	}
	return status, nil
}

// CloseInstance sends cmd_close_instance.
func (c *Client) CloseInstance(id int32) error {
	_, err := c.call(&pb.RpcCall{Call: &pb.RpcCall_CmdCloseInstance{
		CmdCloseInstance: &pb.CmdCloseInstance{InstanceId: id},
	}}, nil)
	return err
}

// HandleEvent sends cmd_handle_event and answers the plugin's PDK calls
// until it ends the event with an empty method frame.
func (c *Client) HandleEvent(id int32, event string, pdk PDKFunc) error {
	_, err := c.call(&pb.RpcCall{Call: &pb.RpcCall_CmdHandleEvent{
		CmdHandleEvent: &pb.CmdHandleEvent{InstanceId: id, EventName: event},
	}}, pdk)
	return err
}

// Close drops the idle connections.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.idle {
		conn.Close()
	}
	c.idle = nil
}

// call is pb_rpc.lua's Rpc:call: one RpcCall frame, the bridge loop when
// pdk is set, then the RpcReturn frame. The connection goes back to the pool
// only after a complete exchange.
func (c *Client) call(msg *pb.RpcCall, pdk PDKFunc) (*pb.RpcReturn, error) {
	conn, err := c.connect()
	if err != nil {
		return nil, err
	}
	ret, err := c.exchange(conn, msg, pdk)
	if err != nil {
		conn.Close()
		return nil, err
	}
	c.release(conn)
	return ret, nil
}

func (c *Client) exchange(conn net.Conn, msg *pb.RpcCall, pdk PDKFunc) (*pb.RpcReturn, error) {
	_ = conn.SetDeadline(time.Now().Add(socketTimeout))
	msg.Sequence = c.nextSequence()
	data, err := proto.Marshal(msg)
	if err != nil {
		return nil, err
	}
	if err := writeFrame(conn, data); err != nil {
		return nil, err
	}
	if pdk != nil {
		if err := bridgeLoop(conn, pdk); err != nil {
			return nil, err
		}
	}
	data, err = readFrame(conn)
	if err != nil {
		return nil, err
	}
	var ret pb.RpcReturn
	if err := proto.Unmarshal(data, &ret); err != nil {
		return nil, fmt.Errorf("decoding RpcReturn: %w", err)
	}
	if ret.Sequence != msg.Sequence {
		return nil, fmt.Errorf("RpcReturn sequence %d does not answer call %d", ret.Sequence, msg.Sequence)
	}
	return &ret, nil
}

func bridgeLoop(conn net.Conn, pdk PDKFunc) error {
	for {
		method, err := readFrame(conn)
		if err != nil {
			return err
		}
		if len(method) == 0 {
			return nil
		}
		args, err := readFrame(conn)
		if err != nil {
			return err
		}
		reply, err := pdk(string(method), args)
		if err != nil {
			return err
		}
		if err := writeFrame(conn, reply); err != nil {
			return err
		}
	}
}

func (c *Client) nextSequence() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Kong bumps its counter and sends counter+1; only uniqueness matters.
	c.msgID++
	return c.msgID + 1
}

func (c *Client) connect() (net.Conn, error) {
	c.mu.Lock()
	for n := len(c.idle); n > 0; n = len(c.idle) {
		conn := c.idle[n-1]
		c.idle = c.idle[:n-1]
		if peerClosed(conn) {
			conn.Close()
			continue
		}
		c.mu.Unlock()
		return conn, nil
	}
	c.mu.Unlock()
	conn, err := net.DialTimeout("unix", c.socket, socketTimeout)
	if err != nil {
		return nil, &ConnectError{Err: err}
	}
	return conn, nil
}

// peerClosed reports whether the server has closed an idle connection (or
// sent on it unasked). nginx's keepalive pool drops such a connection as
// soon as the close arrives (its read handler on pooled connections), so
// after a plugin server dies Kong's next call dials the new one instead of
// failing on a dead pooled connection.
func peerClosed(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	alive := false
	err = raw.Read(func(fd uintptr) bool {
		// A non-blocking peek: EAGAIN is an open, quiet connection; 0 bytes
		// is the server's close; data nobody asked for is no better.
		var probe [1]byte
		_, _, peekErr := syscall.Recvfrom(int(fd), probe[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = errors.Is(peekErr, syscall.EAGAIN)
		return true
	})
	return err != nil || !alive
}

func (c *Client) release(conn net.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.idle) >= maxIdle {
		conn.Close()
		return
	}
	c.idle = append(c.idle, conn)
}

// readFrame reads one ProtoBuf:1 frame, with OpenResty's error words.
func readFrame(conn net.Conn) ([]byte, error) {
	data, err := protocol.ReadFrame(conn)
	return data, cosocketError(err)
}

// writeFrame writes one ProtoBuf:1 frame; a failure is a *SendError (Kong's
// assert raises on it).
func writeFrame(conn net.Conn, data []byte) error {
	if err := protocol.WriteFrame(conn, data); err != nil {
		return &SendError{Err: err}
	}
	return nil
}

// cosocketError maps Go's I/O errors to the words OpenResty uses.
func cosocketError(err error) error {
	var netErr net.Error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return ErrClosed
	case errors.As(err, &netErr) && netErr.Timeout():
		return errors.New("timeout")
	}
	return err
}
