package tap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

// Options configure one tap; cmd/kpm-tap fills them from its flags.
type Options struct {
	Command        []string      // the real plugin server and its arguments
	Listen         string        // Kong's socket, where the tap listens
	PrivatePrefix  string        // a directory for the real server's socket
	PrefixFlag     string        // how the server is told PrivatePrefix ("": it is not)
	ServerSocket   string        // where the real server listens
	Protocol       string        // ProtocolAuto, protocol.ProtoBuf or protocol.MsgPack
	ReadyTimeout   time.Duration // how long the real server may take to answer
	DecoderBuffer  int           // bytes a decoder may fall behind per direction
	ReportInterval time.Duration // between totals lines
	Stdout         io.Writer     // the tap's lines; also the real server's output
}

// Exit is how the tap should end: with the real server's exit code, or
// killed by the signal that killed the real server.
type Exit struct {
	Code   int
	Signal syscall.Signal // 0: none
}

// pollInterval is between two dials of the real server's socket at start.
const pollInterval = 20 * time.Millisecond

// Run starts the real server, waits until its socket answers, then listens
// on Kong's socket and relays until the server exits. SIGTERM and SIGINT are
// passed on to the server; the tap ends as the server ended.
func Run(opts Options) Exit {
	rep := NewReporter(opts.Stdout)
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(signals)

	server, exited, err := startServer(opts)
	if err != nil {
		rep.Failed(err.Error())
		return Exit{Code: 1}
	}
	var summary Summary
	listener, state, err := waitAndListen(opts, server, exited, signals)
	if state != nil {
		return finish(rep, &summary, state)
	}
	if err != nil {
		rep.Failed(err.Error())
		_ = server.Process.Kill()
		return finish(rep, &summary, <-exited)
	}
	rep.Listening(opts.Listen, opts.ServerSocket, server.Process.Pid, opts.Protocol)
	stopReports := make(chan struct{})
	go rep.ReportEvery(opts.ReportInterval, &summary, stopReports)
	go serve(listener, opts, rep)
	for state == nil {
		select {
		case sig := <-signals:
			_ = server.Process.Signal(sig)
		case state = <-exited:
		}
	}
	listener.Close() // also removes Kong's socket file
	close(stopReports)
	return finish(rep, &summary, state)
}

// startServer starts the real server with its output on the tap's stdout,
// killed with the tap if the tap is killed first.
func startServer(opts Options) (*exec.Cmd, <-chan *os.ProcessState, error) {
	if len(opts.Command) == 0 {
		return nil, nil, errors.New("no plugin server command after --")
	}
	if err := os.MkdirAll(opts.PrivatePrefix, 0o700); err != nil {
		return nil, nil, err
	}
	// Stale files from a previous life: nobody must dial them before the new server listens.
	_ = os.Remove(opts.ServerSocket)
	_ = os.Remove(opts.Listen)
	args := append([]string(nil), opts.Command[1:]...)
	if opts.PrefixFlag != "" {
		args = append(args, opts.PrefixFlag, opts.PrivatePrefix)
	}
	cmd := exec.Command(opts.Command[0], args...)
	cmd.Stdout, cmd.Stderr = opts.Stdout, opts.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	exited := make(chan *os.ProcessState, 1)
	go func() {
		_ = cmd.Wait()
		exited <- cmd.ProcessState
	}()
	return cmd, exited, nil
}

// waitAndListen waits until the real server's socket accepts a connection,
// passing signals on meanwhile, then listens on Kong's socket. If the server
// exits first, it returns how.
func waitAndListen(opts Options, server *exec.Cmd, exited <-chan *os.ProcessState, signals <-chan os.Signal) (*net.UnixListener, *os.ProcessState, error) {
	deadline := time.Now().Add(opts.ReadyTimeout)
	for {
		conn, err := net.DialTimeout("unix", opts.ServerSocket, time.Second)
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("the plugin server did not answer on %s within %s: %v", opts.ServerSocket, opts.ReadyTimeout, err)
		}
		select {
		case sig := <-signals:
			_ = server.Process.Signal(sig)
		case state := <-exited:
			return nil, state, nil
		case <-time.After(pollInterval):
		}
	}
	listener, err := net.ListenUnix("unix", &net.UnixAddr{Name: opts.Listen, Net: "unix"})
	return listener, nil, err
}

func serve(listener *net.UnixListener, opts Options, rep *Reporter) {
	for {
		kong, err := listener.AcceptUnix()
		if err != nil {
			return // closed: the server exited
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var dialer net.Dialer
			conn, err := dialer.DialContext(ctx, "unix", opts.ServerSocket)
			if err != nil {
				rep.Error("connect", -1, err.Error())
				kong.Close()
				return
			}
			Relay(kong, conn.(*net.UnixConn), opts.DecoderBuffer, rep.Dropped, func(fromKong, fromServer io.Reader) {
				Decode(rep, opts.Protocol, fromKong, fromServer)
			})
		}()
	}
}

// finish writes the last lines and says how to exit.
func finish(rep *Reporter, summary *Summary, state *os.ProcessState) Exit {
	status, exit := describeExit(state)
	rep.Report(summary, true)
	rep.ServerExited(status)
	return exit
}

// describeExit renders the status as Kong does (`exit 2`, `signal 9`).
func describeExit(state *os.ProcessState) (string, Exit) {
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Sprintf("signal %d", int(ws.Signal())), Exit{Code: 128 + int(ws.Signal()), Signal: ws.Signal()}
	}
	return fmt.Sprintf("exit %d", state.ExitCode()), Exit{Code: state.ExitCode()}
}

// Leave ends the process as exit says: killed by the same signal as the real
// server (so Kong logs `signal 9` as it would have), or with its exit code.
func Leave(exit Exit) {
	if exit.Signal != 0 {
		signal.Reset(exit.Signal)
		_ = syscall.Kill(os.Getpid(), exit.Signal)
		time.Sleep(time.Second) // the signal is on its way
	}
	os.Exit(exit.Code)
}

// DefaultServerSocket is where a go-pdk server started with
// `-kong-prefix prefix` listens: prefix/NAME.socket, NAME its file's name.
func DefaultServerSocket(prefix, command string) string {
	return filepath.Join(prefix, filepath.Base(command)+".socket")
}
