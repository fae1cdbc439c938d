package gateway

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kong-plugin-matrix/kong-sim/internal/config"
)

// The files a running node keeps in its prefix, as Kong does.
func pidFile(env config.Env) string     { return filepath.Join(env.Prefix, "pids", "nginx.pid") }
func kongEnvFile(env config.Env) string { return filepath.Join(env.Prefix, ".kong_env") }

func writeRunFiles(env config.Env, pid int) error {
	if err := os.MkdirAll(filepath.Dir(pidFile(env)), 0o755); err != nil {
		return fmt.Errorf("creating the prefix %s: %w", env.Prefix, err)
	}
	kongEnv := fmt.Sprintf("prefix = %s\nadmin_listen = %s\nproxy_listen = %s\n", env.Prefix, env.AdminListen, env.ProxyListen)
	if err := os.WriteFile(kongEnvFile(env), []byte(kongEnv), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", kongEnvFile(env), err)
	}
	if err := os.WriteFile(pidFile(env), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", pidFile(env), err)
	}
	return nil
}

func removeRunFiles(env config.Env) {
	_ = os.Remove(pidFile(env))
	_ = os.Remove(kongEnvFile(env))
}

// Health is `kong health`: the node in this prefix runs (its pid file names
// a live process) and, when the admin API listens, its /status answers on
// loopback. It prints Kong's report to out; the error is Kong's message.
func Health(env config.Env, out io.Writer) error {
	if _, err := os.Stat(env.Prefix); err != nil {
		return fmt.Errorf("no such prefix: %s", env.Prefix)
	}
	if _, err := os.Stat(kongEnvFile(env)); err != nil {
		return fmt.Errorf("Kong is not running at %s", env.Prefix)
	}
	running := processRunning(pidFile(env)) && adminAnswers(env.AdminListen)
	state := "not running"
	if running {
		state = "running"
	}
	fmt.Fprintf(out, "%s%s\n\n", padDots("nginx", 12), state)
	if !running {
		return fmt.Errorf("Kong is not running at %s", env.Prefix)
	}
	fmt.Fprintf(out, "Kong is healthy at %s\n", env.Prefix)
	return nil
}

func padDots(name string, width int) string {
	if len(name) >= width {
		return name
	}
	return name + strings.Repeat(".", width-len(name))
}

func processRunning(pidPath string) bool {
	data, err := os.ReadFile(pidPath)
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return false
	}
	err = syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// adminAnswers asks GET /status of the admin listener, on loopback only.
// An admin API that is off, or bound to a non-loopback address, is not asked.
func adminAnswers(listen string) bool {
	if listen == "" {
		return true
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	switch ip := net.ParseIP(host); {
	case host == "" || host == "localhost" || (ip != nil && ip.IsUnspecified()):
		host = "127.0.0.1"
	case ip == nil || !ip.IsLoopback():
		return true
	}
	client := http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get("http://" + net.JoinHostPort(host, port) + "/status")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
