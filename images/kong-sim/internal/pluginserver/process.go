// Package pluginserver plays Kong's side of an external plugin server: it
// queries the server's plugins (`-dump`), keeps the server process running
// the way kong/runloop/plugin_servers/process.lua does, and speaks to it in
// the protocol its `-dump` names: "ProtoBuf:1" as pb_rpc.lua does (go-pdk)
// or "MsgPack:1" as mp_rpc.lua does (Python and JavaScript PDKs).
package pluginserver

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/kong-plugin-matrix/kong-sim/internal/config"
	"github.com/kong-plugin-matrix/kong-sim/internal/konglog"
	"github.com/kong-plugin-matrix/kong-sim/internal/protocol"
	"github.com/kong-plugin-matrix/kong-sim/internal/release"
)

// PluginInfo is one plugin of a `-dump` answer.
type PluginInfo struct {
	Name     string
	Phases   []string
	Priority int
	Version  string
}

// Info is a plugin server's `-dump` answer.
type Info struct {
	Protocol   string
	SocketPath string
	Plugins    []PluginInfo
}

// Query runs the query command and decodes its JSON, as Kong's ask_info does.
// Commands are split on white space: the image has no shell.
func Query(ctx context.Context, command string) (Info, error) {
	args := strings.Fields(command)
	if len(args) == 0 {
		return Info{}, errors.New("empty query command")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).Output()
	if err != nil {
		return Info{}, fmt.Errorf("loading plugins info from [%s]: %w", command, err)
	}
	return decodeInfo(command, out)
}

func decodeInfo(command string, out []byte) (Info, error) {
	var info Info
	if err := json.Unmarshal(out, &info); err == nil && info.Plugins != nil {
		if info.Protocol == "" {
			info.Protocol = protocol.MsgPack
		}
		return info, nil
	}
	// Older servers print just the array of plugins, and speak MessagePack.
	var plugins []PluginInfo
	if err := json.Unmarshal(out, &plugins); err == nil {
		return Info{Protocol: protocol.MsgPack, Plugins: plugins}, nil
	}
	return Info{}, fmt.Errorf("Not a plugin info table: \n%s\n%s", command, out)
}

// LogFunc writes one error-log line from the plugin-server timer.
type LogFunc func(level konglog.Level, msg string)

// Supervisor keeps one plugin server running, as pluginserver_timer does:
// it logs `Starting NAME` (3.9: `[pluginserver] starting pluginserver
// process for NAME` and `[pluginserver] started, pid N`), relays the merged stdout/stderr at info level
// prefixed `[NAME:PID] `, logs the termination and respawns at most once a
// second, until its context ends.
type Supervisor struct {
	Server       config.PluginServer
	Log          LogFunc
	RespawnDelay time.Duration        // minimum time between two spawns; Kong uses 1s
	Lines        release.ProcessLines // the release's wording of the lines below
	Sites        release.Lines        // where the release's process.lua writes them
}

// log writes a process.lua line from its site in the release's source.
func (s *Supervisor) log(level konglog.Level, at release.Site, msg string) {
	s.Log(level, konglog.KongMessage(at.File, at.Line, "", msg))
}

// Run supervises until ctx is done, then stops the process with SIGTERM
// (SIGKILL after a grace period) and returns.
func (s *Supervisor) Run(ctx context.Context) {
	for ctx.Err() == nil {
		nextSpawn := time.Now().Add(s.RespawnDelay)
		s.runOnce(ctx)
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(nextSpawn)):
		}
	}
	exiting := fmt.Sprintf("Exiting: pluginserver '%s' not respawned.", s.Server.Name)
	if s.Lines == release.Lines39 {
		exiting = fmt.Sprintf("[pluginserver] exiting: pluginserver '%s' not respawned.", s.Server.Name)
	}
	s.log(konglog.Notice, s.Sites.Exiting, exiting)
}

func (s *Supervisor) runOnce(ctx context.Context) {
	if s.Lines == release.Lines39 {
		s.log(konglog.Notice, s.Sites.Starting, "[pluginserver] starting pluginserver process for "+s.Server.Name)
	} else {
		s.log(konglog.Notice, s.Sites.Starting, "Starting "+s.Server.Name)
	}
	args := strings.Fields(s.Server.StartCommand)
	reader, writer, err := os.Pipe()
	if err != nil {
		s.log(konglog.Error, s.Sites.Starting, "creating a pipe: "+err.Error())
		return
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = writer, writer // merge_stderr = true
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	writer.Close()
	if err != nil {
		reader.Close()
		s.log(konglog.Error, s.Sites.NotFound, fmt.Sprintf(
			"external pluginserver %q start command %q exited with \"command not found\"", s.Server.Name, s.Server.StartCommand))
		return
	}
	if s.Lines == release.Lines39 {
		s.log(konglog.Notice, s.Sites.Started, fmt.Sprintf("[pluginserver] started, pid %d", cmd.Process.Pid))
	}
	relayed := make(chan struct{})
	go func() {
		defer close(relayed)
		s.relay(reader, cmd.Process.Pid)
	}()
	stopped := make(chan struct{})
	go stopOnCancel(ctx, cmd.Process, stopped)
	<-relayed
	waitErr := cmd.Wait()
	close(stopped)
	reader.Close()
	s.log(konglog.Notice, s.Sites.Terminated, fmt.Sprintf(
		"external pluginserver '%s' terminated: %s", s.Server.Name, exitReason(cmd.ProcessState, waitErr)))
}

// relay logs every output line until the pipe closes.
func (s *Supervisor) relay(output io.Reader, pid int) {
	prefix := fmt.Sprintf("[%s:%d] ", s.Server.Name, pid)
	lines := bufio.NewScanner(output)
	lines.Buffer(make([]byte, 64*1024), 1024*1024)
	for lines.Scan() {
		if line := lines.Text(); line != "" {
			s.Log(konglog.Info, prefix+line)
		}
	}
}

// stopOnCancel sends SIGTERM when ctx ends (Kong's plugin_servers.stop),
// and SIGKILL to the process group if it has not exited 3 s later.
func stopOnCancel(ctx context.Context, process *os.Process, stopped <-chan struct{}) {
	select {
	case <-stopped:
		return
	case <-ctx.Done():
	}
	_ = process.Signal(syscall.SIGTERM)
	select {
	case <-stopped:
	case <-time.After(3 * time.Second):
		_ = syscall.Kill(-process.Pid, syscall.SIGKILL)
	}
}

// exitReason renders what ngx.pipe's wait() returns: `exit 2`, `signal 9`.
func exitReason(state *os.ProcessState, waitErr error) string {
	if state == nil {
		return fmt.Sprintf("error %v", waitErr)
	}
	if status, ok := state.Sys().(syscall.WaitStatus); ok && status.Signaled() {
		return fmt.Sprintf("signal %d", int(status.Signal()))
	}
	return fmt.Sprintf("exit %d", state.ExitCode())
}

// WaitReady polls the socket until it accepts a connection, as Kong's
// connection_check_timer does (every 100 ms, for at most timeout).
func WaitReady(ctx context.Context, socket string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("unix", socket, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
