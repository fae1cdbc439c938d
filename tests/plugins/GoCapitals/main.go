// Command GoCapitals is a test plugin whose folder and binary are named with
// capitals. Kong lowercases plugin-server names (its relayed output is tagged
// `[gocapitals:PID]`), so the harness must find its lines under that name.
package main

import (
	"github.com/Kong/go-pdk"
	"github.com/Kong/go-pdk/server"
)

// Version and Priority are what `-dump` reports to Kong.
const (
	Version  = "0.1.0"
	Priority = 10
)

// Config is empty: the plugin only marks the response.
type Config struct{}

// New is called by go-pdk once at server start and once per StartInstance.
func New() interface{} {
	return &Config{}
}

// Access marks the response.
func (conf Config) Access(kong *pdk.PDK) {
	kong.Response.SetHeader("x-capitals", "yes")
}

func main() {
	server.StartServer(New, Version, Priority)
}
