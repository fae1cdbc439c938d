// Command kpm-tap is started by Kong as an external plugin server (through
// KONG_PLUGINSERVER_<NAME>_START_CMD). It starts the real plugin server, the
// command after `--`, on a private socket, listens on Kong's socket, relays
// every byte both ways unchanged, and counts the instance starts, closes,
// events and errors it sees pass, on its stdout (which Kong relays to its
// log). See package internal/tap for the line formats.
//
//	kpm-tap [flags] -- /usr/local/bin/example-plugin [its arguments]
//
// It lives in kong-sim's module to share kong-sim's protocol code
// (internal/protocol) and go-pdk's message types with it.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kong-plugin-matrix/kong-sim/internal/protocol"
	"github.com/kong-plugin-matrix/kong-sim/internal/tap"
)

func main() {
	tap.Leave(tap.Run(parseFlags(os.Args[1:])))
}

func parseFlags(arguments []string) tap.Options {
	flags := flag.NewFlagSet("kpm-tap", flag.ExitOnError)
	flags.Usage = func() {
		fmt.Fprintf(flags.Output(), "usage: kpm-tap [flags] -- PLUGIN-SERVER [ARGS...]\n")
		flags.PrintDefaults()
	}
	listen := flags.String("listen", "", "Kong's socket for this plugin server, where the tap listens (default /usr/local/kong/NAME.socket, NAME the server command's file name; Kong 3.9+ uses <prefix>/NAME.socket)")
	prefix := flags.String("private-prefix", "/tmp/kpm-tap", "directory for the real server's socket; passed to it with -prefix-flag")
	prefixFlag := flags.String("prefix-flag", "--kong-prefix", `the server's option for its socket directory (go-pdk, Python and JavaScript PDKs all take --kong-prefix); "" passes none`)
	serverSocket := flags.String("server-socket", "", "where the real server listens (default PRIVATE-PREFIX/NAME.socket, as go-pdk does; the Python and JavaScript PDKs use NAME.sock)")
	wire := flags.String("protocol", tap.ProtocolAuto, fmt.Sprintf("%s, %s, or %s to tell from the first bytes (the -dump answer's Protocol field)", protocol.ProtoBuf, protocol.MsgPack, tap.ProtocolAuto))
	ready := flags.Duration("ready-timeout", time.Minute, "how long the real server may take to answer on its socket")
	buffer := flags.Int("decoder-buffer", 4<<20, "bytes per connection and direction the decoder may fall behind the relay before it drops bytes")
	interval := flags.Duration("report-interval", time.Second, "at most how often the totals line is written")
	_ = flags.Parse(arguments)

	command := flags.Args()
	if len(command) == 0 {
		flags.Usage()
		os.Exit(2)
	}
	switch *wire {
	case protocol.ProtoBuf, protocol.MsgPack, tap.ProtocolAuto:
	default:
		fmt.Fprintf(os.Stderr, "kpm-tap: -protocol must be %s, %s or %s, got %q\n", protocol.ProtoBuf, protocol.MsgPack, tap.ProtocolAuto, *wire)
		os.Exit(2)
	}
	name := filepath.Base(command[0])
	if *listen == "" {
		*listen = filepath.Join("/usr/local/kong", name+".socket")
	}
	if *serverSocket == "" {
		*serverSocket = tap.DefaultServerSocket(*prefix, command[0])
	}
	return tap.Options{
		Command:        command,
		Listen:         *listen,
		PrivatePrefix:  *prefix,
		PrefixFlag:     *prefixFlag,
		ServerSocket:   *serverSocket,
		Protocol:       *wire,
		ReadyTimeout:   *ready,
		DecoderBuffer:  *buffer,
		ReportInterval: *interval,
		Stdout:         os.Stdout,
	}
}
