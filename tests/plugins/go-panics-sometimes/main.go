// Command go-panics-sometimes is a test plugin with a bug: its Access handler
// panics on every 150th request it sees, which ends its plugin server (a panic
// in a go-pdk handler is not recovered). Kong starts the server again; the
// requests of each outage do not run the plugin. The chaos soak runs it: such
// a row must never read stable or churn, and its reason quotes the panic.
package main

import (
	"fmt"
	"sync/atomic"

	"github.com/Kong/go-pdk"
	"github.com/Kong/go-pdk/server"
)

// Version and Priority are what `-dump` reports to Kong.
const (
	Version  = "0.1.0"
	Priority = 1000
	every    = 150
)

var seen atomic.Int64

// Config is empty.
type Config struct{}

// New is called by go-pdk once at server start and once per StartInstance.
func New() interface{} {
	return &Config{}
}

// Access marks the response, and panics on every 150th request.
func (conf Config) Access(kong *pdk.PDK) {
	if n := seen.Add(1); n%every == 0 {
		panic(fmt.Sprintf("go-panics-sometimes: request %d", n))
	}
	kong.Response.SetHeader("x-panics-sometimes", "not this time")
}

func main() {
	server.StartServer(New, Version, Priority)
}
