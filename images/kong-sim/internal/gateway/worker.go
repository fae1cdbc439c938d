package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kong-plugin-matrix/kong-sim/internal/config"
	"github.com/kong-plugin-matrix/kong-sim/internal/konglog"
	"github.com/kong-plugin-matrix/kong-sim/internal/pluginserver"
	"github.com/kong-plugin-matrix/kong-sim/internal/protocol"
	"github.com/kong-plugin-matrix/kong-sim/internal/release"
	"github.com/kong-plugin-matrix/kong-sim/internal/reuse"
)

// claimStep and claimSteps are Kong's SLEEP_STEP and WAIT_TIME/SLEEP_STEP:
// how a request waits for another one that is starting the instance.
const (
	claimStep  = 100 * time.Millisecond
	claimSteps = 100
)

// runningInstance is one entry of a worker's running_instances table.
type runningInstance struct {
	id         int32
	hasID      bool // false while a request is starting it (Kong's claim)
	conf       reuse.Conf
	pluginName string // set once an instance has started, as in Kong; a re-claim keeps it
}

// worker is one emulated nginx worker: its own pid, connection counter,
// running_instances table (keyed by plugin UUID), RPC clients and, where
// its release has it, the reset_instances handler's event queue.
type worker struct {
	g       *Gateway
	id      int
	pid     int
	conns   atomic.Int64
	nextSeq int64 // plugins_iterator.lua's per-worker next_seq, from 0 (guarded by g.reloadMu)
	mu      sync.Mutex
	running map[string]*runningInstance
	clients map[string]pluginserver.RPC // by plugin server name
	events  *eventQueue                 // nil: this worker never handles reset_instances
	// warnedNotReady is process.lua's plugin_already_warned: a module
	// local, so each worker warns once per plugin (guarded by mu).
	warnedNotReady map[string]bool
}

type workerKey struct{}

// generation is one loaded declarative config as the workers run it: the
// entities, and the metadata each worker's plugins iterator gave every
// plugin config. A request keeps the generation it started with.
type generation struct {
	decl  *config.Declarative
	hash  string                  // /status configuration_hash
	confs []map[string]reuse.Conf // by worker id, then plugin UUID
}

// newGeneration builds every worker's plugins iterator for decl, as
// init_worker does and a reconfigure does again: each plugin config gets its
// __key__ and a fresh __seq__ from the release's counter (the worker's own
// next_seq, which goes on counting, or the node-wide shm counter). Plugin
// ids come from the config, so a reload keeps them.
func (g *Gateway) newGeneration(decl *config.Declarative, hash string) *generation {
	gen := &generation{decl: decl, hash: hash, confs: make([]map[string]reuse.Conf, len(g.workers))}
	for _, w := range g.workers {
		confs := make(map[string]reuse.Conf, len(decl.Plugins))
		for _, p := range decl.Plugins {
			seq := w.nextSeq
			if g.env.Release.SeqSource == release.Node {
				seq = g.nodeSeq.Add(1) // ngx.shared.kong:incr(key, 1, 0): the first value is 1
			}
			w.nextSeq++
			confs[p.ID] = reuse.Conf{Seq: seq, Key: p.Key, PluginID: p.ID}
		}
		gen.confs[w.id] = confs
	}
	return gen
}

// conf is the metadata of plugin pluginID in this worker's current iterator.
func (w *worker) conf(pluginID string) reuse.Conf {
	return w.g.current.Load().confs[w.id][pluginID]
}

// startWorkers builds the workers and their first plugins iterators.
func (g *Gateway) startWorkers(ctx context.Context) {
	family := g.env.Release
	for i := 0; i < g.env.Workers; i++ {
		g.workers = append(g.workers, &worker{
			g: g, id: i, pid: g.masterPID + 1000 + i,
			running: map[string]*runningInstance{},
			clients: map[string]pluginserver.RPC{},

			warnedNotReady: map[string]bool{},
		})
	}
	g.reloadMu.Lock()
	g.current.Store(g.newGeneration(g.decl, g.initialHash()))
	g.reloadMu.Unlock()
	for _, w := range g.workers {
		for _, s := range g.servers {
			client, err := pluginserver.NewRPC(s.wire(), s.def.Socket)
			if err != nil { // queryPluginServers accepts only the protocols NewRPC knows
				panic(err)
			}
			w.clients[s.def.Name] = client
		}
		if handlesResets(family.ResetHandlers, w.id) {
			w.events = newEventQueue()
			g.tasks.Add(1)
			go func(w *worker) {
				defer g.tasks.Done()
				w.handleResetEvents(ctx)
			}(w)
		}
		g.masterLog(konglog.Notice, fmt.Sprintf("start worker process %d", w.pid))
	}
}

// handlesResets says whether worker id registers the reset_instances handler.
func handlesResets(handlers release.ResetHandlers, id int) bool {
	switch handlers {
	case release.Worker0, release.Worker0Raises:
		return id == 0
	case release.EveryWorker:
		return true
	}
	return false
}

// assignWorker hands each accepted connection to a worker the way the
// kernel's SO_REUSEPORT does: by a hash of the client's address and port,
// so one client connection always lands on the same worker and the spread
// over workers is uneven, not round robin.
func (g *Gateway) assignWorker(ctx context.Context, c net.Conn) context.Context {
	w := g.workers[reuseportWorker(c.RemoteAddr().String(), len(g.workers))]
	return context.WithValue(ctx, workerKey{}, &connection{worker: w, number: w.nextConn()})
}

// reuseportWorker picks a worker for a client address ("ip:port").
func reuseportWorker(remoteAddr string, workers int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(remoteAddr))
	return int(h.Sum32() % uint32(workers))
}

func (w *worker) nextConn() int64 { return w.conns.Add(1) }

func (w *worker) closeClients() {
	for _, c := range w.clients {
		c.Close()
	}
}

// log writes an error-log line from this worker.
func (w *worker) log(level konglog.Level, ctx konglog.Context, msg string) {
	w.g.errLog.Log(level, w.pid, ctx, msg)
}

// event is one phase of one external plugin for one request.
type event struct {
	req    *request
	plugin config.Plugin
	ext    externalPlugin
	phase  string
}

// conf is the plugin's metadata in the generation the request started with
// (the worker's current one for a request that has none, as in tests).
func (ev event) conf(w *worker) reuse.Conf {
	if ev.req.gen == nil {
		return w.conf(ev.plugin.ID)
	}
	return ev.req.gen.confs[w.id][ev.plugin.ID]
}

// kongMessage is a `[kong] file:line [NAME] msg` line of this event; in a
// log-phase timer there is no plugin namespace, so no `[NAME]`.
func (ev event) kongMessage(at release.Site, msg string) string {
	return konglog.KongMessage(at.File, at.Line, ev.req.namespace(ev.plugin.Name), msg)
}

// handleEvent is pb_rpc.lua's Rpc:handle_event: get an instance, send
// cmd_handle_event, and on "no plugin instance" / "closed" reset and retry.
// Kong retries without limit; here the retries end with the request's
// context (the client went away, or the node stops), which is what keeps a
// dead plugin server from holding a request for ever.
func (w *worker) handleEvent(ev event) error {
	wire := ev.ext.server.wire()
	recoverFrom := w.recoverProtoBuf
	if wire == protocol.MsgPack {
		recoverFrom = w.recoverMsgPack()
	}
	client := w.clients[ev.ext.server.def.Name]
	for {
		if err := ev.req.ctx.Err(); err != nil {
			return err
		}
		id, err := w.instanceID(ev)
		if errors.Is(err, errStartFailed) {
			return err // get_instance_id raises: the request answers 500
		}
		if err == nil {
			err = client.HandleEvent(id, ev.phase, ev.req.pdk(w, ev.plugin, wire))
			if err == nil || ev.req.exited() {
				return nil
			}
			if raised := raisedBySend(err); raised != nil {
				return raised // no reset, no retry: handle_event never gets to them
			}
		}
		if errors.Is(err, errNotReady) {
			w.warnNotReady(ev)
			return nil
		}
		w.logConnectError(ev, err)
		if !recoverFrom(ev, err.Error()) {
			if w.failedCallAnswers500(wire) {
				return errRPCFailed
			}
			return nil // the request goes on without the plugin
		}
	}
}

// failedCallAnswers500 says whether a call that failed for another reason
// than a lost instance answers 500 (kong.response.error) rather than letting
// the request go on without the plugin.
func (w *worker) failedCallAnswers500(wire string) bool {
	switch w.g.env.Release.FailedRPC {
	case release.Answer500:
		return true
	case release.ProtoBuf500:
		return wire == protocol.ProtoBuf
	}
	return false
}

// recoverProtoBuf is pb_rpc.lua's reaction to a failed event: on "no plugin
// instance" / "closed", log it the release's way, reset and retry (true).
func (w *worker) recoverProtoBuf(ev event, text string) bool {
	if !w.logRecovery(ev, text) {
		return false
	}
	w.resetInstance(ev.plugin)
	return true
}

// logRecovery logs a failed event the way the release does and reports
// whether Kong resets the instance and retries ("no plugin instance" or
// "closed" in the error text).
func (w *worker) logRecovery(ev event, text string) bool {
	lowered := strings.ToLower(text)
	recoverable := strings.Contains(lowered, "no plugin instance") || strings.Contains(lowered, "closed")
	ctx := ev.req.logContext()
	lines := w.g.env.Release.Lines()
	switch w.g.env.Release.RecoveryLog {
	case release.ErrorThenWarn:
		w.log(konglog.Error, ctx, ev.kongMessage(lines.PBError, text))
		if recoverable {
			w.log(konglog.Warn, ctx, ev.kongMessage(lines.PBWarn, text))
		}
	case release.ErrorLowercased:
		w.log(konglog.Error, ctx, ev.kongMessage(lines.PBError, lowered))
	default: // release.Warn: only the reset is worth a line; other errors stay errors
		switch {
		case recoverable:
			w.log(konglog.Warn, ctx, ev.kongMessage(lines.PBWarn, text))
		case w.g.env.Release.FailedRPC == release.SkipPlugin:
			w.log(konglog.Error, ctx, ev.kongMessage(lines.PBError, text))
		default: // 3.8.0+ (Kong commit 5a2f2d5723)
			w.log(konglog.Error, ctx, ev.kongMessage(lines.PBError, "pluginserver error: "+text))
		}
	}
	return recoverable
}

// raisedError is a Lua error that pb_rpc.lua's assert(c:send(...)) raised
// out of the plugin's handler: Kong's access iterator logs its text and
// answers 500, as for a failed instance start.
type raisedError struct{ text string }

func (e *raisedError) Error() string { return e.text }
func (e *raisedError) Unwrap() error { return errStartFailed }

// raisedBySend is the Lua error Kong raises for err when err is a failed
// send, else nil.
func raisedBySend(err error) *raisedError {
	var sendErr *pluginserver.SendError
	if errors.As(err, &sendErr) {
		return &raisedError{text: sendErr.Error()}
	}
	return nil
}

var (
	errStartFailed = errors.New("starting instance failed")
	errNotReady    = errors.New("not ready")
	// errRPCFailed is a failed call that 3.14.0.0+ answer 500 for, as a
	// failed instance start is answered (proxy.go: errStartFailed).
	errRPCFailed = fmt.Errorf("rpc call failed: %w", errStartFailed)
)

func (w *worker) logConnectError(ev event, err error) {
	var connectErr *pluginserver.ConnectError
	if errors.As(err, &connectErr) {
		at := w.g.env.Release.Lines().PBConnect
		if ev.ext.server.wire() == protocol.MsgPack {
			at = w.g.env.Release.Lines().MPConnect
		}
		w.log(konglog.Error, ev.req.logContext(), ev.kongMessage(at, "trying to connect: "+err.Error()))
	}
}

// warnNotReady logs once per plugin and worker, like process.lua's
// handle_not_ready (3.4.0 process.lua 278-287: plugin_already_warned is a
// module local, and every worker loads its own copy of the module).
func (w *worker) warnNotReady(ev event) {
	w.mu.Lock()
	warned := w.warnedNotReady[ev.plugin.Name]
	w.warnedNotReady[ev.plugin.Name] = true
	w.mu.Unlock()
	if !warned {
		at := w.g.env.Release.Lines().NotReady
		w.log(konglog.Warn, ev.req.logContext(), fmt.Sprintf(
			"[lua] %s:%d: handle_not_ready(): plugin server is not ready, %s will not be executed in this request", at.File, at.Line, ev.plugin.Name))
	}
}

// instanceID is init.lua's get_instance_id: reuse the running instance when
// the release's reuse test passes, else start a new one and close the old.
func (w *worker) instanceID(ev event) (int32, error) {
	key := ev.plugin.ID // kong.plugin.get_id()
	conf := ev.conf(w)
	w.mu.Lock()
	info, err := w.waitForClaim(ev, key)
	if err != nil {
		w.mu.Unlock()
		return 0, err
	}
	if info != nil && w.g.env.Release.Reuse.Reuses(info.conf, conf, key) {
		id := info.id
		w.mu.Unlock()
		return id, nil
	}
	oldID, hadOld := int32(0), info != nil
	if info == nil {
		info = &runningInstance{conf: conf}
		w.running[key] = info
	} else {
		oldID, info.hasID = info.id, false
	}
	w.mu.Unlock()

	// Only OSS 3.4.0-3.4.2 / EE 3.4.0.0 check readiness; later releases
	// just try, and a server that is not up yet fails the start (500).
	if w.g.env.Release.NotReadyGate && !ev.ext.server.ready.Load() {
		w.release(key, info)
		return 0, errNotReady
	}
	client := w.clients[ev.ext.server.def.Name]
	instanceID, err := client.StartInstance(ev.plugin.Name, w.instanceConfig(ev.plugin, conf))
	if raised := raisedBySend(err); raised != nil {
		// The assert raises out of call_start_instance before the line
		// that removes the claim: it stays, without an id, and the
		// worker's next requests wait on it (see waitForClaimSteps).
		return 0, raised
	}
	if err != nil {
		w.logConnectError(ev, err)
		w.log(konglog.Error, ev.req.logContext(), ev.kongMessage(w.g.env.Release.Lines().StartingInstance, "starting instance: "+err.Error()))
		w.release(key, info)
		return 0, errStartFailed
	}
	// pb_rpc.lua's call_start_instance logs this; mp_rpc.lua's has no line.
	if w.g.env.Release.StartedLine && ev.ext.server.wire() == protocol.ProtoBuf {
		w.log(konglog.Debug, ev.req.logContext(), ev.kongMessage(w.g.env.Release.Lines().PBStarted, fmt.Sprintf(
			"started plugin server: seq %d, worker %d, instance id %d", conf.Seq, w.id, instanceID)))
	}
	w.mu.Lock()
	info.id, info.hasID, info.conf, info.pluginName = instanceID, true, conf, ev.plugin.Name
	w.mu.Unlock()
	if hadOld {
		// As Kong: another request may have closed it first. Only a failed
		// send raises, after the new instance is in place.
		if raised := raisedBySend(client.CloseInstance(oldID)); raised != nil {
			return 0, raised
		}
	}
	return instanceID, nil
}

// waitForClaim waits (w.mu held, released while sleeping) while another
// request is starting the instance; it returns the entry, or nil if none.
func (w *worker) waitForClaim(ev event, key string) (*runningInstance, error) {
	return w.waitForClaimSteps(ev, key, claimSteps, claimStep)
}

// waitForClaimSteps is waitForClaim with Kong's MAX_WAIT_STEPS and
// SLEEP_STEP as arguments. On the time-out the claim is deleted where the
// release does (release.Family.ClaimTimeOutDeletes); 3.4.0-3.5.0 keep it,
// so the next request waits on it again.
func (w *worker) waitForClaimSteps(ev event, key string, maxSteps int, step time.Duration) (*runningInstance, error) {
	info := w.running[key]
	for steps := 0; info != nil && !info.hasID; steps++ {
		if steps >= maxSteps {
			if w.g.env.Release.ClaimTimeOutDeletes() {
				delete(w.running, key)
			}
			return nil, fmt.Errorf("Could not claim instance_id for %s (key: %s)", ev.plugin.Name, key)
		}
		w.mu.Unlock()
		time.Sleep(step)
		w.mu.Lock()
		info = w.running[key]
	}
	return info, nil
}

// release drops a claim that could not be completed.
func (w *worker) release(key string, info *runningInstance) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.running[key] == info {
		delete(w.running, key)
	}
}

// instanceConfig is the JSON Kong sends with cmd_start_instance: the plugin's
// config plus the metadata its plugins iterator adds.
func (w *worker) instanceConfig(p config.Plugin, conf reuse.Conf) []byte {
	fields := make(map[string]any, len(p.Config)+5)
	for k, v := range p.Config {
		fields[k] = v
	}
	if p.RouteID != "" {
		fields["route_id"] = p.RouteID
	}
	if p.ServiceID != "" {
		fields["service_id"] = p.ServiceID
	}
	fields["__plugin_id"] = conf.PluginID
	fields["__key__"] = conf.Key
	fields["__seq__"] = conf.Seq
	data, err := json.Marshal(fields)
	if err != nil { // the config came from YAML, so it always encodes
		panic(fmt.Sprintf("encoding the config of plugin %s: %v", p.ID, err))
	}
	return data
}

// resetInstance is init.lua's reset_instance, as the release has it: wipe
// this worker's entry (3.4.0), post a reset_instances event (OSS 3.5.0), or
// wipe this worker's entries of the plugin at once and post the event.
func (w *worker) resetInstance(p config.Plugin) {
	switch w.g.env.Release.OnClosed {
	case release.WipeLocal:
		w.mu.Lock()
		delete(w.running, p.ID)
		w.mu.Unlock()
		return
	case release.WipeLocalAndPostEvent:
		w.wipePlugin(p.Name)
	}
	w.g.postResetInstances(p.Name)
}

// wipePlugin forgets this worker's instances of a plugin (Kong's
// reset_instances_for_plugin, which matches instance.plugin_name). A first
// claim has no plugin name yet, so the request starting it keeps it; a
// re-claim keeps the name of the instance it replaces and goes, so the
// requests waiting on it start their own.
func (w *worker) wipePlugin(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for key, info := range w.running {
		if info.pluginName == name {
			delete(w.running, key)
		}
	}
}

// postResetInstances is kong.worker_events.post("plugin_server",
// "reset_instances", ...): it queues the event for every worker that has
// the handler (the sender included) and returns; the handlers run later.
func (g *Gateway) postResetInstances(pluginName string) {
	for _, w := range g.workers {
		if w.events != nil {
			w.events.push(pluginName)
		}
	}
}

// handleResetEvents is the reset_instances handler of one worker: it runs
// the queued events, in order, until ctx ends.
func (w *worker) handleResetEvents(ctx context.Context) {
	for {
		names, ok := w.events.wait(ctx)
		if !ok {
			return
		}
		w.applyResets(names)
	}
}

// applyResets runs the reset_instances handler for each queued event;
// open-source 3.5.0's raises first and resets nothing.
func (w *worker) applyResets(pluginNames []string) {
	if w.g.env.Release.ResetHandlers == release.Worker0Raises {
		return
	}
	for _, name := range pluginNames {
		w.wipePlugin(name)
	}
}

// eventQueue is one worker's inbox of worker events; posting never blocks,
// as lua-resty-events' post does not.
type eventQueue struct {
	mu      sync.Mutex
	pending []string
	ready   chan struct{} // holds a token while pending is not empty
}

func newEventQueue() *eventQueue {
	return &eventQueue{ready: make(chan struct{}, 1)}
}

func (q *eventQueue) push(name string) {
	q.mu.Lock()
	q.pending = append(q.pending, name)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default: // a token is already waiting
	}
}

// wait returns the events queued so far, or false once ctx has ended.
func (q *eventQueue) wait(ctx context.Context) ([]string, bool) {
	if ctx.Err() != nil { // a stopping worker handles no more events
		return nil, false
	}
	select {
	case <-ctx.Done():
		return nil, false
	case <-q.ready:
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	names := q.pending
	q.pending = nil
	return names, true
}
