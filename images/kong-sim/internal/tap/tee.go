package tap

import (
	"errors"
	"io"
	"sync"
)

// errDropped ends a tee's stream once bytes were dropped from it: what
// follows cannot be framed any more.
var errDropped = errors.New("decoder fell behind: bytes dropped")

// tee is a bounded queue of the bytes one relay direction carried, read by
// that connection's decoder. Push never blocks: when the decoder has fallen
// limit bytes behind, Push drops the bytes (and every later byte of the
// stream) and counts them instead.
type tee struct {
	mu      sync.Mutex
	chunks  [][]byte
	size    int // bytes queued
	limit   int
	broken  bool // bytes were dropped: the stream ends after what is queued
	closed  bool
	discard bool          // the decoder has stopped: later bytes are not wanted
	more    chan struct{} // a wake-up for the one reader
	dropped func(n int)
}

func newTee(limit int, dropped func(n int)) *tee {
	return &tee{limit: limit, more: make(chan struct{}, 1), dropped: dropped}
}

// Push queues a copy of p, or drops it if the queue is full.
func (t *tee) Push(p []byte) {
	t.mu.Lock()
	if t.discard {
		t.mu.Unlock()
		return
	}
	if t.broken || t.size+len(p) > t.limit {
		t.broken = true
		t.mu.Unlock()
		t.dropped(len(p))
		return
	}
	t.chunks = append(t.chunks, append([]byte(nil), p...))
	t.size += len(p)
	t.mu.Unlock()
	t.wake()
}

// Discard drops what is queued and ignores later bytes without counting
// them: the decoder has stopped reading this stream.
func (t *tee) Discard() {
	t.mu.Lock()
	t.discard = true
	t.chunks, t.size = nil, 0
	t.mu.Unlock()
}

// Close ends the stream: the reader gets io.EOF after what is queued.
func (t *tee) Close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.wake()
}

func (t *tee) wake() {
	select {
	case t.more <- struct{}{}:
	default:
	}
}

// Read blocks until bytes are queued or the stream ends.
func (t *tee) Read(p []byte) (int, error) {
	for {
		t.mu.Lock()
		if len(t.chunks) > 0 {
			n := copy(p, t.chunks[0])
			if n == len(t.chunks[0]) {
				t.chunks[0] = nil
				t.chunks = t.chunks[1:]
			} else {
				t.chunks[0] = t.chunks[0][n:]
			}
			t.size -= n
			t.mu.Unlock()
			return n, nil
		}
		broken, closed := t.broken, t.closed
		t.mu.Unlock()
		switch {
		case broken:
			return 0, errDropped
		case closed:
			return 0, io.EOF
		}
		<-t.more
	}
}
