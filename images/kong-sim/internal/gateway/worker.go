package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kong-plugin-matrix/kong-sim/internal/config"
	"github.com/kong-plugin-matrix/kong-sim/internal/konglog"
	"github.com/kong-plugin-matrix/kong-sim/internal/pluginserver"
	"github.com/kong-plugin-matrix/kong-sim/internal/reuse"
)

const (
	// claimStep and claimSteps are Kong's SLEEP_STEP and WAIT_TIME/SLEEP_STEP:
	// how a request waits for another one that is starting the instance.
	claimStep  = 100 * time.Millisecond
	claimSteps = 100
	// maxEventAttempts bounds pb_rpc.lua's retry recursion (unbounded in
	// Kong), so a plugin server that always fails cannot loop forever.
	maxEventAttempts = 10
)

// runningInstance is one entry of a worker's running_instances table.
type runningInstance struct {
	id         int32
	hasID      bool // false while a request is starting it (Kong's claim)
	conf       reuse.Conf
	pluginName string
}

// worker is one emulated nginx worker: its own pid, connection counter,
// running_instances table (keyed by plugin UUID) and RPC clients.
type worker struct {
	g       *Gateway
	id      int
	pid     int
	conns   atomic.Int64
	confs   map[string]reuse.Conf // plugin UUID -> metadata of its config
	mu      sync.Mutex
	running map[string]*runningInstance
	clients map[string]*pluginserver.Client // by plugin server name
}

type workerKey struct{}

// startWorkers builds the workers and, as each one's plugins iterator does
// in init_worker, gives every plugin config its __key__ and __seq__.
func (g *Gateway) startWorkers() {
	for i := 0; i < g.env.Workers; i++ {
		w := &worker{
			g: g, id: i, pid: g.masterPID + 1000 + i,
			confs:   map[string]reuse.Conf{},
			running: map[string]*runningInstance{},
			clients: map[string]*pluginserver.Client{},
		}
		var workerSeq int64 // plugins_iterator.lua's per-worker next_seq
		for _, p := range g.decl.Plugins {
			seq := workerSeq
			if g.env.ReuseModel.NodeWideSeq() {
				seq = g.nodeSeq.Add(1)
			}
			workerSeq++
			w.confs[p.ID] = reuse.Conf{Seq: seq, Key: p.Key, PluginID: p.ID}
		}
		for _, s := range g.servers {
			w.clients[s.def.Name] = pluginserver.NewClient(s.def.Socket)
		}
		g.workers = append(g.workers, w)
		g.masterLog(konglog.Notice, fmt.Sprintf("start worker process %d", w.pid))
	}
}

// assignWorker hands each accepted connection to the next worker, as the
// nginx workers take turns accepting.
func (g *Gateway) assignWorker(ctx context.Context, _ net.Conn) context.Context {
	w := g.workers[(g.nextConn.Add(1)-1)%uint64(len(g.workers))]
	return context.WithValue(ctx, workerKey{}, &connection{worker: w, number: w.nextConn()})
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

// handleEvent is pb_rpc.lua's Rpc:handle_event: get an instance, send
// cmd_handle_event, and on "no plugin instance" / "closed" reset and retry.
func (w *worker) handleEvent(ev event) error {
	client := w.clients[ev.ext.server.def.Name]
	for attempt := 1; ; attempt++ {
		id, err := w.instanceID(ev)
		if errors.Is(err, errStartFailed) {
			return err
		}
		if err == nil {
			err = client.HandleEvent(id, ev.phase, ev.req.pdk(w, ev.plugin))
			if err == nil || ev.req.exited() {
				return nil
			}
		}
		if errors.Is(err, errNotReady) {
			w.warnNotReady(ev)
			return nil
		}
		w.logConnectError(ev, err)
		text := err.Error()
		w.log(konglog.Error, ev.req.logContext(), konglog.KongMessage("pb_rpc.lua", 413, ev.plugin.Name, text))
		lowered := strings.ToLower(text)
		if !strings.Contains(lowered, "no plugin instance") && !strings.Contains(lowered, "closed") {
			return nil
		}
		w.g.resetInstances(w, ev.plugin)
		w.log(konglog.Warn, ev.req.logContext(), konglog.KongMessage("pb_rpc.lua", 417, ev.plugin.Name, text))
		if attempt >= maxEventAttempts {
			w.log(konglog.Error, ev.req.logContext(), konglog.KongMessage("pb_rpc.lua", 417, ev.plugin.Name, fmt.Sprintf(
				"kong-sim: giving up the %s phase after %d attempts (Kong itself would keep retrying)", ev.phase, attempt)))
			return nil
		}
	}
}

var (
	errStartFailed = errors.New("starting instance failed")
	errNotReady    = errors.New("not ready")
)

func (w *worker) logConnectError(ev event, err error) {
	var connectErr *pluginserver.ConnectError
	if errors.As(err, &connectErr) {
		w.log(konglog.Error, ev.req.logContext(), konglog.KongMessage("pb_rpc.lua", 307, ev.plugin.Name, "trying to connect: "+err.Error()))
	}
}

// warnNotReady logs once per plugin, like process.lua's handle_not_ready.
func (w *worker) warnNotReady(ev event) {
	if ev.ext.server.warnedNotReady.CompareAndSwap(false, true) {
		w.log(konglog.Warn, ev.req.logContext(), fmt.Sprintf(
			"[lua] process.lua:285: handle_not_ready(): plugin server is not ready, %s will not be executed in this request", ev.plugin.Name))
	}
}

// instanceID is init.lua's get_instance_id: reuse the running instance when
// the version's reuse test passes, else start a new one and close the old.
func (w *worker) instanceID(ev event) (int32, error) {
	key := ev.plugin.ID // kong.plugin.get_id()
	conf := w.confs[key]
	w.mu.Lock()
	info, err := w.waitForClaim(ev, key)
	if err != nil {
		w.mu.Unlock()
		return 0, err
	}
	if info != nil && w.g.env.ReuseModel.Reuses(info.conf, conf, key) {
		id := info.id
		w.mu.Unlock()
		return id, nil
	}
	oldID, hadOld := int32(0), info != nil
	if info == nil {
		info = &runningInstance{conf: conf, pluginName: ev.plugin.Name}
		w.running[key] = info
	} else {
		oldID, info.hasID = info.id, false
	}
	w.mu.Unlock()

	if !ev.ext.server.ready.Load() {
		w.release(key, info)
		return 0, errNotReady
	}
	client := w.clients[ev.ext.server.def.Name]
	status, err := client.StartInstance(ev.plugin.Name, w.instanceConfig(ev.plugin, conf))
	if err != nil {
		w.logConnectError(ev, err)
		w.log(konglog.Error, ev.req.logContext(), konglog.KongMessage("init.lua", 249, ev.plugin.Name, "starting instance: "+err.Error()))
		w.release(key, info)
		return 0, errStartFailed
	}
	w.log(konglog.Debug, ev.req.logContext(), konglog.KongMessage("pb_rpc.lua", 381, ev.plugin.Name, fmt.Sprintf(
		"started plugin server: seq %d, worker %d, instance id %d", conf.Seq, w.id, status.InstanceId)))
	w.mu.Lock()
	info.id, info.hasID, info.conf = status.InstanceId, true, conf
	w.mu.Unlock()
	if hadOld {
		_ = client.CloseInstance(oldID) // as Kong: another request may have closed it first
	}
	return status.InstanceId, nil
}

// waitForClaim waits (w.mu held, released while sleeping) while another
// request is starting the instance; it returns the entry, or nil if none.
func (w *worker) waitForClaim(ev event, key string) (*runningInstance, error) {
	info := w.running[key]
	for steps := 0; info != nil && !info.hasID; steps++ {
		if steps >= claimSteps {
			delete(w.running, key)
			return nil, fmt.Errorf("Could not claim instance_id for %s (key: %s)", ev.plugin.Name, key)
		}
		w.mu.Unlock()
		time.Sleep(claimStep)
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

// resetInstances is init.lua's reset_instance. Up to 3.5.0 open source it
// drops only this worker's entry; from the 3.4.1.0-era change on it drops
// every instance of the plugin and tells the other workers to do the same
// (a "reset_instances" worker event).
func (g *Gateway) resetInstances(origin *worker, p config.Plugin) {
	if g.env.ReuseModel == reuse.Seq {
		origin.mu.Lock()
		delete(origin.running, p.ID)
		origin.mu.Unlock()
		return
	}
	for _, w := range g.workers {
		w.mu.Lock()
		for key, info := range w.running {
			if info.pluginName == p.Name {
				delete(w.running, key)
			}
		}
		w.mu.Unlock()
	}
}
