package tap

import (
	"bytes"
	"io"
	"math/rand"
	"net"
	"path/filepath"
	"sync"
	"testing"
)

// unixPair is two connected ends of a unix socket: what the tap accepts
// from Kong and what it dials at the server look like this.
func unixPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pair.socket")
	listener, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	accepted := make(chan *net.UnixConn, 1)
	go func() {
		conn, _ := listener.AcceptUnix()
		accepted <- conn
	}()
	dialed, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	return dialed, <-accepted
}

// TestRelayCarriesEveryByteUnchanged sends a few MiB of random bytes each
// way through Relay at once, in random-sized writes, and checks that each
// end receives exactly what the other sent, and the decoder exactly the same.
func TestRelayCarriesEveryByteUnchanged(t *testing.T) {
	kongEnd, tapKongSide := unixPair(t)
	tapServerSide, serverEnd := unixPair(t)
	random := rand.New(rand.NewSource(1))
	fromKong, fromServer := make([]byte, 3<<20), make([]byte, 2<<20+17)
	random.Read(fromKong)
	random.Read(fromServer)

	var decoderSaw [2][]byte
	relayed := make(chan struct{})
	go func() {
		defer close(relayed)
		Relay(tapKongSide, tapServerSide, 64<<20, func(n int) { t.Errorf("dropped %d bytes", n) },
			func(k, s io.Reader) {
				var wg sync.WaitGroup
				wg.Add(2)
				go func() { defer wg.Done(); decoderSaw[0], _ = io.ReadAll(k) }()
				go func() { defer wg.Done(); decoderSaw[1], _ = io.ReadAll(s) }()
				wg.Wait()
			})
	}()

	var received [2][]byte
	var ends sync.WaitGroup
	for i, end := range []struct {
		conn *net.UnixConn
		send []byte
	}{{kongEnd, fromKong}, {serverEnd, fromServer}} {
		i, end := i, end // go 1.21: one variable for all iterations
		ends.Add(2)
		go func() {
			defer ends.Done()
			writeInPieces(t, end.conn, end.send, rand.New(rand.NewSource(int64(i))))
			_ = end.conn.CloseWrite()
		}()
		go func() {
			defer ends.Done()
			received[i], _ = io.ReadAll(end.conn)
		}()
	}
	ends.Wait()
	<-relayed
	kongEnd.Close()
	serverEnd.Close()

	if !bytes.Equal(received[1], fromKong) {
		t.Errorf("the server received %d bytes, not the %d Kong sent", len(received[1]), len(fromKong))
	}
	if !bytes.Equal(received[0], fromServer) {
		t.Errorf("Kong received %d bytes, not the %d the server sent", len(received[0]), len(fromServer))
	}
	if !bytes.Equal(decoderSaw[0], fromKong) || !bytes.Equal(decoderSaw[1], fromServer) {
		t.Errorf("the decoder saw %d and %d bytes, not what was relayed", len(decoderSaw[0]), len(decoderSaw[1]))
	}
}

func writeInPieces(t *testing.T, conn net.Conn, data []byte, random *rand.Rand) {
	for len(data) > 0 {
		n := min(len(data), 1+random.Intn(70000))
		if _, err := conn.Write(data[:n]); err != nil {
			t.Error(err)
			return
		}
		data = data[n:]
	}
}

// TestRelayNeverWaitsForTheDecoder relays through a decoder that never reads:
// every byte still arrives, and what the decoder could not take is counted.
func TestRelayNeverWaitsForTheDecoder(t *testing.T) {
	kongEnd, tapKongSide := unixPair(t)
	tapServerSide, serverEnd := unixPair(t)
	payload := bytes.Repeat([]byte("kong"), 1<<18) // 1 MiB
	var dropped int64
	var mu sync.Mutex
	stuck := make(chan struct{})
	relayed := make(chan struct{})
	go func() {
		defer close(relayed)
		Relay(tapKongSide, tapServerSide, 4096, func(n int) { mu.Lock(); dropped += int64(n); mu.Unlock() },
			func(io.Reader, io.Reader) { <-stuck })
	}()
	go func() {
		_, _ = kongEnd.Write(payload)
		_ = kongEnd.CloseWrite()
	}()
	got, _ := io.ReadAll(serverEnd)
	serverEnd.Close()
	if !bytes.Equal(got, payload) {
		t.Fatalf("the server got %d bytes, not %d", len(got), len(payload))
	}
	_, _ = io.ReadAll(kongEnd)
	close(stuck)
	<-relayed
	mu.Lock()
	defer mu.Unlock()
	if dropped < int64(len(payload))-4096 {
		t.Fatalf("dropped %d bytes, want at least %d", dropped, len(payload)-4096)
	}
}
