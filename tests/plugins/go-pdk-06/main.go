// Command go-pdk-06 is a test fixture shaped like a user's plugin written for
// go-pdk v0.6.1, the last go-pdk whose embedded server speaks MessagePack
// (MsgPack:1): its -dump prints a bare list without Protocol or SocketPath, and
// it listens on <kong-prefix>/<binary name>.socket like every later go-pdk.
package main

import (
	"github.com/Kong/go-pdk"
	"github.com/Kong/go-pdk/server"
)

const (
	Version  = "0.6.0"
	Priority = 10
)

// Config is what a route gives the plugin.
type Config struct {
	Message string `json:"message"`
}

// New returns a fresh config for go-pdk to fill.
func New() interface{} {
	return &Config{}
}

// Access sets a header, so a request shows the plugin ran.
func (conf Config) Access(kong *pdk.PDK) {
	kong.Response.SetHeader("X-Go-Pdk-06", conf.Message)
}

func main() {
	server.StartServer(New, Version, Priority)
}
