package tap

import (
	"io"
	"net"
	"sync"
)

// relayBufferSize is one read's worth: Kong's and go-pdk's frames are far smaller.
const relayBufferSize = 32 << 10

// halfCloser is a connection whose write side can be closed on its own
// (*net.UnixConn, *net.TCPConn).
type halfCloser interface {
	net.Conn
	CloseWrite() error
}

// Relay carries bytes between Kong's connection and the server's, both ways,
// unchanged, until both directions have ended; then it closes both. A copy of
// each direction goes to decode through a bounded tee that never makes the
// relay wait: if decode falls behind by decoderBuffer bytes, the rest of
// that direction is dropped from the copy and counted with dropped.
func Relay(kong, server halfCloser, decoderBuffer int, dropped func(int), decode func(fromKong, fromServer io.Reader)) {
	toServer, toKong := newTee(decoderBuffer, dropped), newTee(decoderBuffer, dropped)
	decoded := make(chan struct{})
	go func() {
		defer close(decoded)
		decode(toServer, toKong)
		// Whatever follows is of no use to a decoder that stopped.
		toServer.Discard()
		toKong.Discard()
	}()
	var pipes sync.WaitGroup
	pipes.Add(2)
	go func() {
		defer pipes.Done()
		pipe(server, kong, toServer)
	}()
	go func() {
		defer pipes.Done()
		pipe(kong, server, toKong)
	}()
	pipes.Wait()
	kong.Close()
	server.Close()
	<-decoded
}

// pipe copies src to dst and tees what it wrote. The end of src is passed on
// as a half-close of dst, so each side sees the other's close as it would
// without the tap; a failed write means dst is gone: both connections are
// closed, which ends the other direction too.
func pipe(dst, src halfCloser, copies *tee) {
	defer copies.Close()
	buf := make([]byte, relayBufferSize)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				src.Close()
				dst.Close()
				return
			}
			copies.Push(buf[:n])
		}
		if err != nil {
			_ = dst.CloseWrite()
			return
		}
	}
}
