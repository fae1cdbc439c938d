// Command kong is kong-sim, the offline stand-in for a Kong Gateway image:
// it plays Kong's side of the external plugin-server protocol against the
// real plugin so the plugin's instance churn can be measured without a
// registry. It answers the same commands the images' entrypoint and health
// check use: `kong docker-start`, `kong start`, `kong health`, `kong version`.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kong-plugin-matrix/kong-sim/internal/config"
	"github.com/kong-plugin-matrix/kong-sim/internal/gateway"
	"github.com/kong-plugin-matrix/kong-sim/internal/konglog"
)

const usage = `Usage: kong COMMAND [OPTIONS]

The available commands are:
 docker-start    start the node in the foreground (the image's CMD)
 start           same as docker-start (kong-sim never daemonizes)
 health          exit 0 when the node in this container runs and is healthy
 version         print the Kong version this image stands in for

kong-sim, the kong-plugin-matrix simulator of Kong Gateway.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 1
	}
	switch args[0] {
	case "docker-start", "start":
		return start(args[0], stdout, stderr)
	case "health":
		return health(stdout, stderr)
	case "version":
		return version(stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	return fail(stderr, fmt.Errorf("No such command: %s", args[0]))
}

// fail prints an error the way Kong's CLI does and returns its exit code.
func fail(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "Error: %s\n\n  Run with --v (verbose) or --vv (debug) for more details\n", err)
	return 1
}

func loadEnv() (config.Env, error) {
	return config.FromEnv(os.Getenv, config.FileExists)
}

func version(stdout, stderr io.Writer) int {
	env, err := loadEnv()
	if err != nil {
		return fail(stderr, err)
	}
	fmt.Fprintln(stdout, gateway.VersionLine(env))
	return 0
}

func health(stdout, stderr io.Writer) int {
	env, err := loadEnv()
	if err != nil {
		return fail(stderr, err)
	}
	if err := gateway.Health(env, stdout); err != nil {
		return fail(stderr, err)
	}
	return 0
}

// start runs the node in the foreground until SIGTERM or SIGINT.
func start(command string, stdout, stderr io.Writer) int {
	env, err := loadEnv()
	if err != nil {
		return fail(stderr, err)
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	g, err := gateway.New(context.Background(), env, gateway.Options{})
	if err != nil {
		// Kong fails in init_by_lua, before its error log is set up: stderr.
		fmt.Fprintln(stderr, konglog.FormatLine(time.Now(), konglog.Error, os.Getpid(), konglog.Context{}, "init_by_lua error: "+err.Error()))
		return 1
	}
	if err := g.Start(context.Background()); err != nil {
		g.ErrorLog().Log(konglog.Emerg, os.Getpid(), konglog.Context{}, err.Error())
		return 1
	}
	if command == "start" {
		fmt.Fprintln(stdout, "Kong started")
	}
	sig := <-signals
	number := 0
	if s, ok := sig.(syscall.Signal); ok {
		number = int(s)
	}
	g.ErrorLog().Log(konglog.Notice, os.Getpid(), konglog.Context{}, fmt.Sprintf("signal %d (%s) received, exiting", number, signalName(sig)))
	g.Stop()
	return 0
}

func signalName(sig os.Signal) string {
	if sig == syscall.SIGINT {
		return "SIGINT"
	}
	return "SIGTERM"
}
