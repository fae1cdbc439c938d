package tap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kong-plugin-matrix/kong-sim/internal/protocol"
)

// The test binary plays both processes: run with fakeServerArg it is a
// plugin server; with KPM_TAP_TEST_LISTEN set it is kpm-tap, starting
// itself as that server.
const fakeServerArg = "kpm-tap-fake-server"

func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == fakeServerArg {
		fakeServer(os.Args[2:])
		return
	}
	if listen := os.Getenv("KPM_TAP_TEST_LISTEN"); listen != "" {
		prefix := os.Getenv("KPM_TAP_TEST_PREFIX")
		Leave(Run(Options{
			Command:        []string{os.Args[0], fakeServerArg, os.Getenv("KPM_TAP_TEST_SERVER")},
			Listen:         listen,
			PrivatePrefix:  prefix,
			PrefixFlag:     "--kong-prefix",
			ServerSocket:   DefaultServerSocket(prefix, os.Args[0]),
			Protocol:       protocol.ProtoBuf,
			ReadyTimeout:   10 * time.Second,
			DecoderBuffer:  1 << 20,
			ReportInterval: time.Second,
			Stdout:         os.Stdout,
		}))
	}
	os.Exit(m.Run())
}

// fakeServer listens where go-pdk would (--kong-prefix DIR: DIR/NAME.socket)
// and then behaves as its first argument says: "term" exits 7 on SIGTERM,
// "exit3" exits 3 by itself, "kill" dies of SIGKILL by itself.
func fakeServer(args []string) {
	terminated := make(chan os.Signal, 1)
	signal.Notify(terminated, syscall.SIGTERM)
	prefix := args[len(args)-1]
	listener, err := net.Listen("unix", DefaultServerSocket(prefix, os.Args[0]))
	if err != nil {
		fmt.Println("fake server:", err)
		os.Exit(1)
	}
	defer listener.Close()
	go func() {
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(conn, conn); conn.Close() }()
		}
	}()
	fmt.Println("fake server listening")
	switch args[0] {
	case "term":
		<-terminated
		fmt.Println("fake server got SIGTERM")
		listener.Close()
		os.Exit(7)
	case "exit3":
		time.Sleep(300 * time.Millisecond)
		listener.Close()
		os.Exit(3)
	case "kill":
		time.Sleep(300 * time.Millisecond)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	}
	select {}
}

// startTap runs the test binary as kpm-tap in front of a fake server, waits
// for its listening line, and returns it with its output's remaining lines.
func startTap(t *testing.T, behaviour string) (*exec.Cmd, string, <-chan string) {
	t.Helper()
	dir := t.TempDir()
	listen := filepath.Join(dir, "kong.socket")
	tap := exec.Command(os.Args[0], "-test.run=^$")
	tap.Env = append(os.Environ(),
		"KPM_TAP_TEST_LISTEN="+listen,
		"KPM_TAP_TEST_PREFIX="+filepath.Join(dir, "private"),
		"KPM_TAP_TEST_SERVER="+behaviour)
	out, err := tap.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := tap.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tap.Process.Kill() })
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		scanner := bufio.NewScanner(out)
		for scanner.Scan() {
			lines <- scanner.Text()
		}
	}()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case line := <-lines:
			if strings.HasPrefix(line, "kpm-tap: listening ") {
				return tap, listen, lines
			}
		case <-deadline:
			t.Fatal("kpm-tap never said it was listening")
		}
	}
}

func rest(lines <-chan string) string {
	var all []string
	for line := range lines {
		all = append(all, line)
	}
	return strings.Join(all, "\n")
}

func TestTapPassesSIGTERMOnAndExitsWithTheServersStatus(t *testing.T) {
	tap, listen, lines := startTap(t, "term")
	conn, err := net.Dial("unix", listen)
	if err != nil {
		t.Fatalf("Kong's socket does not answer: %v", err)
	}
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	echo := make([]byte, 4)
	if _, err := io.ReadFull(conn, echo); err != nil || string(echo) != "ping" {
		t.Fatalf("relay answered %q, %v", echo, err)
	}
	conn.Close()
	if err := tap.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	output := rest(lines)
	err = tap.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 7 {
		t.Fatalf("kpm-tap ended with %v, want exit status 7; output:\n%s", err, output)
	}
	for _, want := range []string{"fake server got SIGTERM", `kpm-tap: server exited status="exit 7"`} {
		if !strings.Contains(output, want) {
			t.Errorf("output lacks %q:\n%s", want, output)
		}
	}
	if _, err := os.Stat(listen); !os.IsNotExist(err) {
		t.Errorf("Kong's socket is still there after the tap ended: %v", err)
	}
}

func TestTapExitsWhenTheServerExits(t *testing.T) {
	tap, _, lines := startTap(t, "exit3")
	output := rest(lines)
	err := tap.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("kpm-tap ended with %v, want exit status 3; output:\n%s", err, output)
	}
}

func TestTapDiesOfTheSignalThatKilledTheServer(t *testing.T) {
	tap, _, lines := startTap(t, "kill")
	output := rest(lines)
	_ = tap.Wait()
	status, ok := tap.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !status.Signaled() || status.Signal() != syscall.SIGKILL {
		t.Fatalf("kpm-tap ended with %v, want signal 9; output:\n%s", tap.ProcessState, output)
	}
	if !strings.Contains(output, `kpm-tap: server exited status="signal 9"`) {
		t.Errorf("output:\n%s", output)
	}
}
