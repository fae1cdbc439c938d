// Command go-hello-priority1 is a test plugin in the shape of go-pdk's
// examples/go-hello.go: priority 1, below request-termination's 2, and one
// Access handler. It runs on a request only when nothing of higher priority
// answers it first (Kong skips the remaining access handlers of a delayed
// response), so it shows that the route is proxied, not terminated.
package main

import (
	"fmt"

	"github.com/Kong/go-pdk"
	"github.com/Kong/go-pdk/server"
)

// Version and Priority are what `-dump` reports to Kong.
const (
	Version  = "0.1.0"
	Priority = 1
)

// Config is the plugin's configuration, as in go-hello.
type Config struct {
	Message string `json:"message"`
}

// New is called by go-pdk once at server start and once per StartInstance.
func New() interface{} {
	return &Config{}
}

// Access greets the client in a header, as go-hello does.
func (conf Config) Access(kong *pdk.PDK) {
	host, err := kong.Request.GetHeader("host")
	if err != nil {
		kong.Log.Err(err.Error())
	}
	message := conf.Message
	if message == "" {
		message = "hello"
	}
	kong.Response.SetHeader("x-hello-from-go", fmt.Sprintf("Go says %s to %s", message, host))
}

func main() {
	server.StartServer(New, Version, Priority)
}
