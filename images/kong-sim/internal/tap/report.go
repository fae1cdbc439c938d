// Package tap is kpm-tap: a plugin-server wrapper that Kong starts as the
// plugin server. It starts the real server on a private socket, listens on
// Kong's socket, relays every byte both ways unchanged, and decodes a copy
// of what passes to count instance starts, closes, events and errors.
//
// Its counts go to its stdout, which Kong relays to its error log at info as
// `[NAME:PID] <line>`. Every line of its own starts with "kpm-tap: ", which
// neither Kong, go-pdk, nor the Python or JavaScript plugin servers print.
// The lines, exactly (%d a decimal integer, %s a word, %q a Go-quoted string):
//
//	kpm-tap: listening socket=%s server=%s pid=%d protocol=%s
//	kpm-tap: instance started id=%d total=%d
//	kpm-tap: instance closed id=%d total=%d
//	kpm-tap: error call=%s id=%d total=%d reason=%q
//	kpm-tap: error call=StartInstance total=%d reason=%q
//	kpm-tap: totals started=%d closed=%d events=%d errors=%d dropped=%d phases=%s
//	kpm-tap: decoder dropped %d bytes total=%d
//	kpm-tap: decoder gave up protocol=%s reason=%q
//	kpm-tap: server exited status=%q
//	kpm-tap: failed reason=%q
//
// "instance started" is a StartInstance the server answered (the id is the
// one it answered with); "instance closed" a CloseInstance it answered
// without error. "error" is an error answer (MsgPack: its error text) or the
// server closing the connection mid-call (reason="server closed"; go-pdk's
// only way of failing a call), or Kong closing it mid-call (reason="kong
// closed"); id= names the instance the call was about (StartInstance has
// none yet). call= is StartInstance, CloseInstance, HandleEvent or, for any
// other call, the method's name. total= counts the same kind of line so far.
// Events (HandleEvent calls answered without error, one or more per request)
// appear only in the totals line, at most once a second and when something
// changed, and once more at exit. phases= splits them by the event name on
// the wire (ProtoBuf CmdHandleEvent.event_name, MsgPack plugin.HandleEvent's
// EventName: access, response, log, ...) as NAME:N pairs joined by commas,
// names sorted (a name is kept to [A-Za-z0-9_-], anything else becoming _);
// the field is left out until there is an event, so the line then reads as
// it did before the field existed. "decoder dropped" says the decoder fell
// behind the relay and missed N bytes (since the previous such line; total=
// since start): the relay never waits for it, so counts are then low.
package tap

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// linePrefix starts every line kpm-tap writes.
const linePrefix = "kpm-tap: "

// Stats are the counts over all connections since the tap started.
type Stats struct {
	Started, Closed, Events, Errors, Dropped int64
}

// Reporter writes kpm-tap's lines, each in one Write (a pipe keeps writes
// under PIPE_BUF whole, so the plugin server's own lines, written to the
// same pipe, never cut into them), and keeps the counts.
type Reporter struct {
	mu  sync.Mutex
	out io.Writer

	started, closed, events, errors, dropped atomic.Int64

	phaseMu sync.Mutex
	phases  map[string]int64 // events by phase name
}

// NewReporter writes to out (the tap's stdout).
func NewReporter(out io.Writer) *Reporter {
	return &Reporter{out: out}
}

func (r *Reporter) printf(format string, args ...any) {
	line := fmt.Sprintf(linePrefix+format+"\n", args...)
	r.mu.Lock()
	defer r.mu.Unlock()
	_, _ = io.WriteString(r.out, line)
}

// Stats returns the counts so far.
func (r *Reporter) Stats() Stats {
	return Stats{
		Started: r.started.Load(),
		Closed:  r.closed.Load(),
		Events:  r.events.Load(),
		Errors:  r.errors.Load(),
		Dropped: r.dropped.Load(),
	}
}

// InstanceStarted records a StartInstance answered with instance id.
func (r *Reporter) InstanceStarted(id int64) {
	r.printf("instance started id=%d total=%d", id, r.started.Add(1))
}

// InstanceClosed records a CloseInstance answered without error.
func (r *Reporter) InstanceClosed(id int64) {
	r.printf("instance closed id=%d total=%d", id, r.closed.Add(1))
}

// Event records a HandleEvent of phase answered without error.
func (r *Reporter) Event(phase string) {
	r.phaseMu.Lock()
	if r.phases == nil {
		r.phases = map[string]int64{}
	}
	r.phases[phaseName(phase)]++
	r.phaseMu.Unlock()
	r.events.Add(1)
}

// Phases returns the events so far by phase name.
func (r *Reporter) Phases() map[string]int64 {
	r.phaseMu.Lock()
	defer r.phaseMu.Unlock()
	phases := make(map[string]int64, len(r.phases))
	for name, n := range r.phases {
		phases[name] = n
	}
	return phases
}

// phaseName keeps a name from the wire to characters that cannot break the
// totals line.
func phaseName(phase string) string {
	if phase == "" {
		return "_"
	}
	return strings.Map(func(c rune) rune {
		if c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
			return c
		}
		return '_'
	}, phase)
}

// phasesField is the totals line's ` phases=NAME:N,...`, "" without events.
func phasesField(phases map[string]int64) string {
	if len(phases) == 0 {
		return ""
	}
	names := make([]string, 0, len(phases))
	for name := range phases {
		names = append(names, name)
	}
	sort.Strings(names)
	pairs := make([]string, len(names))
	for i, name := range names {
		pairs[i] = fmt.Sprintf("%s:%d", name, phases[name])
	}
	return " phases=" + strings.Join(pairs, ",")
}

// Error records a failed call; id < 0 when the call names no instance.
func (r *Reporter) Error(call string, id int64, reason string) {
	total := r.errors.Add(1)
	if id < 0 {
		r.printf("error call=%s total=%d reason=%q", call, total, reason)
		return
	}
	r.printf("error call=%s id=%d total=%d reason=%q", call, id, total, reason)
}

// Dropped records bytes the decoder missed; they are reported by Report.
func (r *Reporter) Dropped(n int) {
	r.dropped.Add(int64(n))
}

// GaveUp says the decoder stopped decoding one connection (the relay goes on).
func (r *Reporter) GaveUp(protocol, reason string) {
	r.printf("decoder gave up protocol=%s reason=%q", protocol, reason)
}

// Listening is the tap's first line: it relays from socket to server.
func (r *Reporter) Listening(socket, server string, pid int, protocol string) {
	r.printf("listening socket=%s server=%s pid=%d protocol=%s", socket, server, pid, protocol)
}

// ServerExited is the tap's last line but the totals.
func (r *Reporter) ServerExited(status string) {
	r.printf("server exited status=%q", status)
}

// Failed says why the tap could not do its job.
func (r *Reporter) Failed(reason string) {
	r.printf("failed reason=%q", reason)
}

// Summary is what the last totals line said, so that Report writes only
// what changed.
type Summary struct {
	last       Stats
	lastPhases string
}

// Report writes the dropped-bytes line if more bytes were dropped, and the
// totals line if anything changed (or always, with force).
func (r *Reporter) Report(s *Summary, force bool) {
	now := r.Stats()
	if now.Dropped > s.last.Dropped {
		r.printf("decoder dropped %d bytes total=%d", now.Dropped-s.last.Dropped, now.Dropped)
	}
	phases := phasesField(r.Phases())
	if force || now != s.last || phases != s.lastPhases {
		r.printf("totals started=%d closed=%d events=%d errors=%d dropped=%d%s",
			now.Started, now.Closed, now.Events, now.Errors, now.Dropped, phases)
	}
	s.last, s.lastPhases = now, phases
}

// ReportEvery calls Report every interval until stop is closed.
func (r *Reporter) ReportEvery(interval time.Duration, s *Summary, stop <-chan struct{}) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ticker.C:
			r.Report(s, false)
		}
	}
}
