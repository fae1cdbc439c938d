// Command hello-server stands in for Kong in the stack tests: it answers the
// same readiness probes (admin GET /status, proxy GET /hello with
// X-Example-Message) on the same ports, logs like a server does, and can be
// told to misbehave. FIXTURE_MODE selects the behaviour:
//
//	ready   (default) /hello carries X-Example-Message
//	silent  /hello answers without the header, so the stack never becomes ready
//	exit    log a line, wait two seconds without serving, exit with code 3
//
// Subcommands: `health` probes /status like `kong health` does; `echo ARGS`
// prints ARGS (the image has no shell, so tests exec this).
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
	"strings"
	"time"
)

const (
	proxyAddr  = ":8000"
	adminAddr  = ":8001"
	statusURL  = "http://127.0.0.1:8001/status"
	exitCode   = 3
	exitDelay  = 2 * time.Second
	markHeader = "X-Example-Message"
)

func main() {
	if len(os.Args) > 1 {
		os.Exit(runSubcommand(os.Args[1], os.Args[2:]))
	}
	mode := os.Getenv("FIXTURE_MODE")
	if mode == "" {
		mode = "ready"
	}
	if mode == "exit" {
		// The pause lets the stack come up, so the readiness wait sees the exit.
		log.Printf("fixture: mode %q, exiting with code %d before serving", mode, exitCode)
		time.Sleep(exitDelay)
		os.Exit(exitCode)
	}
	log.Printf("fixture: starting in mode %q", mode)
	go serve(adminAddr, adminHandler())
	serve(proxyAddr, proxyHandler(mode))
}

func runSubcommand(name string, args []string) int {
	switch name {
	case "health":
		return health()
	case "echo":
		fmt.Println(strings.Join(args, " "))
		return 0
	default:
		fmt.Fprintf(os.Stderr, "unknown subcommand %q\n", name)
		return 2
	}
}

func health() int {
	client := http.Client{Timeout: 2 * time.Second}
	res, err := client.Get(statusURL)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return 1
	}
	return 0
}

func serve(addr string, handler http.Handler) {
	log.Fatal(http.ListenAndServe(addr, handler))
}

func adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		accessLog(r, http.StatusOK)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"server":{"connections_active":1}}`)
	})
	return mux
}

func proxyHandler(mode string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		if mode == "ready" {
			w.Header().Set(markHeader, "New() calls: 1")
		} else {
			log.Printf("fixture: answering /hello without %s (mode %q)", markHeader, mode)
		}
		accessLog(r, http.StatusOK)
		fmt.Fprintln(w, "hello")
	})
	return mux
}

// accessLog writes one line per request to stdout, as Kong's access log does.
func accessLog(r *http.Request, status int) {
	fmt.Printf("%s \"%s %s\" %d\n", time.Now().Format("2006/01/02 15:04:05"), r.Method, r.URL.Path, status)
}
